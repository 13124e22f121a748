/* store.c - LMDB environment, the workers' read path, and the one write path shared by the admin API and the seed import.
 *
 * Records are stored as normalised JSON (schema.c), each under the key the
 * data path looks it up by, so a lookup is one B-tree search. Tables:
 *   meta         "schema_version" -> "5"
 *   providers    name -> provider JSON
 *   routes       scope NUL router NUL name -> route JSON
 *   route_ids    id -> scope NUL router NUL name (for the admin API)
 *   route_globs  router NUL priority (4 bytes, highest first) id -> scope NUL endpoint NUL name
 *                (routes whose name is a glob pattern: the pools)
 *   routers      slug -> router JSON
 *   keys         SHA-256 of the secret (hex) -> key JSON (never the secret)
 *   key_ids      id -> SHA-256 hex
 *   budgets      scope NUL name -> budget JSON, the scope written as its kind
 *                and values, each NUL-terminated: "global", "key" NUL id,
 *                "tenant" NUL T, "route" NUL id, "provider" NUL name, or
 *                "target" NUL route id NUL provider NUL model. A name is
 *                unique within its scope, and the budgets of one scope are
 *                one key range (a prefix).
 *   budget_ids   id -> scope NUL name
 *   tenants      name -> tenant JSON (a tenant's rate limits; a tenant
 *                without one has none)
 *   tenant_ids   id -> name
 *   spend        ledger entry name ("b:ID", "k:ID", "t:NAME") -> its
 *                settled spend: 48 bytes, six little-endian int64s, the
 *                window tags of USD, tokens and requests, then their
 *                amounts (USD in nano-dollars). Written by the admin
 *                thread about once a second, read back at start-up.
 *   usage        hour (8 bytes, big-endian epoch seconds of its start, so
 *                the table is in time order) key_id NUL tenant NUL route
 *                NUL provider NUL model -> 32 bytes, four little-endian
 *                int64s: requests, prompt tokens, completion tokens, cost
 *                in nano-dollars. Hourly rollups, summed into by
 *                store_add_usage and pruned by age.
 * Older stores are upgraded in place when opened: 1-3 kept routes by id with
 * a name index (route_names), and are re-keyed by name; 1 lacked the keys
 * tables and 1-2 the glob index, which is then built from the routes; 1-4
 * lacked the budgets tables, 1-5 the tenants, spend and usage tables (all
 * created empty). The version goes up with a new table so that an older
 * build, which would ignore it (and let a key a budget names be deleted,
 * or tenants go unlimited and spend unrecorded), refuses the store
 * instead.
 * A worker keeps one read transaction and renews/resets it around each
 * lookup (DESIGN.md: a read txn held across a loop turn pins old pages). */
#include "store.h"
#include "fileio.h"
#include "schema.h"
#include "tally.h"

#include <errno.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION "6"
#define MAX_KEY 511   /* LMDB's default key size limit */
#define MAX_READERS 512

struct store {
    MDB_env *env;
    MDB_dbi meta, route_globs, spend, usage;
    MDB_dbi tbl[STORE__TABLES];   /* by store_table_t */
    MDB_dbi ids[STORE__TABLES];   /* id -> key, for the tables in which it is not the id */
    /* A store of record behind this one (SPEC 10), if any, and the plan the
     * write being checked for it fills: set only by the thread holding the
     * write transaction, and only while it does (remote_write). */
    store_remote_t remote;
    store_plan_t *plan;
    /* What readers need to keep their parsed records across a commit that
     * wrote no record (commit_txn): the last txn id whose commit, and every
     * commit before it, this process has seen, and the last one of those
     * that may have changed a record (any commit by another process does). */
    _Atomic size_t known_txnid, records_txnid;
};

/* Per table: its LMDB name (also its seed section), the field its key is
 * made of (a route's: scope + router + name), a noun for messages, and its
 * id index, if it has one. */
static const struct {
    const char *name, *key_field, *noun, *ids;
} tables[STORE__TABLES] = {
    [STORE_PROVIDERS] = { "providers", "name", "provider", NULL },
    [STORE_ROUTES] = { "routes", "name", "route", "route_ids" },
    [STORE_ROUTERS] = { "routers", "slug", "router", NULL },
    [STORE_KEYS] = { "keys", "secret_hash", "key", "key_ids" },
    [STORE_BUDGETS] = { "budgets", "name", "budget", "budget_ids" },
    [STORE_TENANTS] = { "tenants", "name", "tenant", "tenant_ids" },
};

/* Parsed records are kept per reader (per worker) for as long as the store
 * is unchanged: a lookup that finds its record in the cache costs a txn
 * renew and a hash probe instead of a cJSON parse (some 80 allocations for
 * a provider). A commit that may change a record (admin API, import, the
 * cluster's mirror, another process) gives the snapshot a new txn id; the
 * next lookup then starts a new generation, and the old one is freed once
 * no request holds a record of it. The usage journal and the spend totals,
 * written about once a second while requests flow, and keys' last_used_at
 * (once a minute per key in use) leave the generation as it was
 * (commit_txn): a cached key record's last_used_at may be older than the
 * store's. */
#define CACHE_BUCKETS 1024
#define CACHE_MAX 4096             /* records per generation; more are parsed per lookup */

typedef struct cached {
    struct cached *next;
    uint32_t hash;
    MDB_dbi dbi;
    size_t klen;
    cJSON *rec;
    char key[];
} cached_t;

/* A generation of a reader's cache, or a single record of its own. */
struct store_hold {
    int refs;                      /* the reader's while current, plus one per lookup */
    size_t txnid;
    size_t serial;                 /* which generation, of all this process has made (1 on) */
    int n;
    cJSON *own;                    /* a single record's */
    cached_t *bucket[];            /* CACHE_BUCKETS, for a generation */
};

struct store_reader {
    store_t *s;
    MDB_txn *txn;                  /* reset between lookups */
    store_hold_t *gen;             /* the cache of the snapshot last seen */
};

static int open_dbi(MDB_txn *txn, const char *name, MDB_dbi *dbi)
{
    return mdb_dbi_open(txn, name, MDB_CREATE, dbi);
}

/* Key of the glob index: router NUL, the priority as 4 big-endian bytes
 * ordering highest first, the id. */
static size_t glob_key(char *buf, size_t cap, const cJSON *route)
{
    const char *router = schema_str(route, "router", ""), *id = schema_str(route, "id", "");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(route, "priority");
    uint32_t rank = 0x7fffffffu - (uint32_t)(int32_t)(cJSON_IsNumber(p) ? p->valuedouble : 0);
    size_t a = strlen(router), b = strlen(id);
    if (a + 1 + 4 + b > cap)
        return 0;
    memcpy(buf, router, a + 1);
    buf[a + 1] = (char)(rank >> 24);
    buf[a + 2] = (char)(rank >> 16);
    buf[a + 3] = (char)(rank >> 8);
    buf[a + 4] = (char)rank;
    memcpy(buf + a + 5, id, b);
    return a + 5 + b;
}

/* Adds (ADD) or removes ROUTE's entry in the glob index, if it is a pool. */
static int index_glob(store_t *s, MDB_txn *txn, const cJSON *route, int add)
{
    char key[512], val[640];
    const char *scope = schema_str(route, "scope", "global"), *name = schema_str(route, "name", "");
    const char *ep = schema_str(route, "endpoint", "chat");
    MDB_val k, v;
    int rc;
    if (!schema_is_glob(name) || (k.mv_size = glob_key(key, sizeof(key), route)) == 0)
        return 0;
    k.mv_data = key;
    if (!add)
        return (rc = mdb_del(txn, s->route_globs, &k, NULL)) == MDB_NOTFOUND ? 0 : rc;
    v.mv_size = (size_t)snprintf(val, sizeof(val), "%s%c%s%c%s", scope, '\0', ep, '\0', name);
    if (v.mv_size >= sizeof(val))
        return EINVAL;
    v.mv_data = val;
    return mdb_put(txn, s->route_globs, &k, &v, 0);
}

static int index_all_globs(store_t *s, MDB_txn *txn)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->tbl[STORE_ROUTES], &c), err = 0;
    if (rc != 0)
        return rc;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && err == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cJSON *r = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (r != NULL)
            err = index_glob(s, txn, r, 1);
        cJSON_Delete(r);
    }
    mdb_cursor_close(c);
    return err;
}

/* Schema 1-3 kept routes by id, with route_names (scope NUL router NUL
 * name -> id) beside them: two B-tree searches per lookup. Moves each record
 * under its name key, records its id in route_ids and drops route_names.
 * Ids are UUIDs and name keys begin with "global", "tenant:" or "key:", so
 * both kinds of key can share the table while it is rewritten. */
static int rekey_routes(store_t *s, MDB_txn *txn)
{
    MDB_dbi names, routes = s->tbl[STORE_ROUTES];
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_dbi_open(txn, "route_names", 0, &names);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0 || (rc = mdb_cursor_open(txn, names, &c)) != 0)
        return rc;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        /* what LMDB returns is valid only until the next write: copy it */
        char key[MAX_KEY + 1], id[MAX_KEY + 1], *rec;
        MDB_val kv = { k.mv_size, key }, idv = { v.mv_size, id }, recv;
        if (k.mv_size > MAX_KEY || v.mv_size > MAX_KEY)
            continue;
        memcpy(key, k.mv_data, k.mv_size);
        memcpy(id, v.mv_data, v.mv_size);
        if ((rc = mdb_get(txn, routes, &idv, &recv)) == MDB_NOTFOUND)
            continue;                         /* a dangling name: nothing to move */
        if (rc != 0 || (rec = malloc(recv.mv_size)) == NULL)
            break;
        memcpy(rec, recv.mv_data, recv.mv_size);
        recv.mv_data = rec;
        if ((rc = mdb_put(txn, routes, &kv, &recv, 0)) == 0 && (rc = mdb_put(txn, s->ids[STORE_ROUTES], &idv, &kv, 0)) == 0)
            rc = mdb_del(txn, routes, &idv, NULL);
        free(rec);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND)
        return rc != 0 ? rc : ENOMEM;
    return mdb_drop(txn, names, 1);
}

/* What a commit wrote: records, or only what readers keep their parsed
 * records across (WROTE_KEPT): the usage journal, the spend totals, and
 * keys' last_used_at (which no worker reads from its cache but to decide
 * whether to write it again, and admin_key_use_due remembers that). */
enum { WROTE_RECORDS, WROTE_KEPT };

/* Commits TXN, noting for the readers whether it may have changed a record
 * (WROTE_RECORDS) or only what they keep their records across. Write txns are
 * one at a time, so records_txnid is only set while TXN holds the writer
 * lock; a txn id skipped since the last commit seen here is another
 * process's (or one this process has not noted yet) and counts as records.
 * known_txnid is raised after the commit, and cache_find reads it first:
 * a reader that sees a commit as known sees its records_txnid too. */
static int commit_txn(store_t *s, MDB_txn *txn, int wrote)
{
    size_t id = mdb_txn_id(txn), known = atomic_load(&s->known_txnid);
    int rc;
    if (wrote == WROTE_RECORDS || known + 1 != id)
        atomic_store(&s->records_txnid, id);
    if ((rc = mdb_txn_commit(txn)) == 0)
        while (known < id && !atomic_compare_exchange_weak(&s->known_txnid, &known, id))
            ;
    return rc;
}

store_t *store_open(const char *dir, size_t map_mb, char *err, size_t errlen)
{
    store_t *s = calloc(1, sizeof(*s));
    MDB_txn *txn = NULL;
    MDB_val k, v;
    int rc, dead = 0;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "data_dir %s: %s", dir, strerror(errno));
        free(s);
        return NULL;
    }
    if ((rc = mdb_env_create(&s->env)) != 0 ||
        (rc = mdb_env_set_maxdbs(s->env, 32)) != 0 ||
        (rc = mdb_env_set_maxreaders(s->env, MAX_READERS)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, map_mb << 20)) != 0 ||
        (rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0640)) != 0) {
        snprintf(err, errlen, "data_dir %s: cannot open the store: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    mdb_reader_check(s->env, &dead);   /* free reader slots left by a crashed process */
    if (dead > 0)
        fprintf(stderr, "turnout: store: cleared %d stale reader slot%s left by a dead process\n", dead,
                dead == 1 ? "" : "s");
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0 ||
        (rc = open_dbi(txn, "meta", &s->meta)) != 0 ||
        (rc = open_dbi(txn, "route_globs", &s->route_globs)) != 0 ||
        (rc = open_dbi(txn, "spend", &s->spend)) != 0 || (rc = open_dbi(txn, "usage", &s->usage)) != 0) {
        snprintf(err, errlen, "data_dir %s: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    for (int t = 0; t < STORE__TABLES; t++) {
        if ((rc = open_dbi(txn, tables[t].name, &s->tbl[t])) != 0 ||
            (tables[t].ids != NULL && (rc = open_dbi(txn, tables[t].ids, &s->ids[t])) != 0)) {
            snprintf(err, errlen, "data_dir %s: %s", dir, mdb_strerror(rc));
            goto fail;
        }
    }
    k.mv_data = "schema_version";
    k.mv_size = strlen("schema_version");
    rc = mdb_get(txn, s->meta, &k, &v);
    /* the tables an older store lacked were just created */
    if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size == 1 && *(char *)v.mv_data >= '1' && *(char *)v.mv_data <= '5')) {
        char from = rc == 0 ? *(char *)v.mv_data : SCHEMA_VERSION[0];
        if ((from < '4' && (rc = rekey_routes(s, txn)) != 0) ||
            (from < '3' && (rc = index_all_globs(s, txn)) != 0)) {
            snprintf(err, errlen, "data_dir %s: upgrading the store: %s", dir, mdb_strerror(rc));
            goto fail;
        }
        if (from < SCHEMA_VERSION[0])
            fprintf(stderr, "turnout: store: upgraded from schema version %c to %s\n", from, SCHEMA_VERSION);
        v.mv_data = SCHEMA_VERSION;
        v.mv_size = strlen(SCHEMA_VERSION);
        rc = mdb_put(txn, s->meta, &k, &v, 0);
    } else if (rc == 0 && (v.mv_size != strlen(SCHEMA_VERSION) ||
                           memcmp(v.mv_data, SCHEMA_VERSION, v.mv_size) != 0)) {
        snprintf(err, errlen, "data_dir %s: store schema version %.*s, this build reads %s", dir,
                 (int)v.mv_size, (char *)v.mv_data, SCHEMA_VERSION);
        goto fail;
    }
    if (rc != 0 || (rc = commit_txn(s, txn, WROTE_RECORDS)) != 0) {
        txn = NULL;
        snprintf(err, errlen, "data_dir %s: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    return s;
fail:
    if (txn != NULL)
        mdb_txn_abort(txn);
    mdb_env_close(s->env);
    free(s);
    return NULL;
}

void store_close(store_t *s)
{
    if (s == NULL)
        return;
    mdb_env_close(s->env);
    free(s);
}

int store_is_empty(store_t *s)
{
    MDB_txn *txn;
    MDB_stat a, b;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    int empty = mdb_stat(txn, s->tbl[STORE_PROVIDERS], &a) == 0 && mdb_stat(txn, s->tbl[STORE_ROUTES], &b) == 0 &&
                a.ms_entries == 0 && b.ms_entries == 0;
    mdb_txn_abort(txn);
    return empty;
}

static int put_json(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t klen, const cJSON *rec)
{
    char *text = cJSON_PrintUnformatted(rec);
    MDB_val k = { klen, (void *)key }, v;
    int rc;
    if (text == NULL)
        return ENOMEM;
    v.mv_data = text;
    v.mv_size = strlen(text);
    rc = mdb_put(txn, dbi, &k, &v, 0);
    free(text);
    return rc;
}

/* Key of the name index: scope NUL router NUL name. */
static size_t name_key(char *buf, size_t cap, const char *scope, const char *router, const char *name)
{
    size_t a = strlen(scope), b = strlen(router), c = strlen(name);
    if (a + b + c + 2 > cap)
        return 0;
    memcpy(buf, scope, a);
    buf[a] = '\0';
    memcpy(buf + a + 1, router, b);
    buf[a + 1 + b] = '\0';
    memcpy(buf + a + b + 2, name, c);
    return a + b + c + 2;
}

/* Appends S and its NUL to BUF at *N; 0, or -1 when CAP is exceeded. */
static int add_part(char *buf, size_t cap, size_t *n, const char *s)
{
    size_t len = strlen(s) + 1;
    if (*n + len > cap)
        return -1;
    memcpy(buf + *n, s, len);
    *n += len;
    return 0;
}

/* The key prefix of budget scope SCOPE (a normalised one): its kind and
 * values, each NUL-terminated (see the table list above). Returns its
 * length, or 0 when it is not a scope or exceeds CAP. */
static size_t budget_scope_key(const cJSON *scope, char *buf, size_t cap)
{
    const cJSON *m = cJSON_IsObject(scope) ? scope->child : NULL;
    size_t n = 0;
    if (cJSON_IsString(scope))
        return strcmp(scope->valuestring, "global") == 0 && add_part(buf, cap, &n, "global") == 0 ? n : 0;
    if (m == NULL || add_part(buf, cap, &n, m->string) < 0)
        return 0;
    if (cJSON_IsString(m))
        return add_part(buf, cap, &n, m->valuestring) == 0 ? n : 0;
    if (strcmp(m->string, "target") != 0 ||
        add_part(buf, cap, &n, schema_str(m, "route", "")) < 0 ||
        add_part(buf, cap, &n, schema_str(m, "provider", "")) < 0 ||
        add_part(buf, cap, &n, schema_str(m, "model", "")) < 0)
        return 0;
    return n;
}

/* The key REC is stored under in table T, NUL-terminated in BUF (a route's
 * and a budget's hold NULs: use the length). Returns its length, or 0 when
 * it exceeds LMDB's key size limit. */
static size_t rec_key(store_table_t t, const cJSON *rec, char *buf, size_t cap)
{
    size_t n;
    if (cap > MAX_KEY + 1)
        cap = MAX_KEY + 1;
    if (t == STORE_ROUTES) {
        n = name_key(buf, cap - 1, schema_str(rec, "scope", "global"), schema_str(rec, "router", ""),
                     schema_str(rec, "name", ""));
    } else if (t == STORE_BUDGETS) {
        const char *name = schema_str(rec, "name", "");
        size_t len = strlen(name);
        n = budget_scope_key(cJSON_GetObjectItemCaseSensitive(rec, "scope"), buf, cap - 1);
        if (n == 0 || n + len > cap - 1) {
            n = 0;
        } else {
            memcpy(buf + n, name, len);
            n += len;
        }
    } else if ((n = (size_t)snprintf(buf, cap, "%s", schema_str(rec, tables[t].key_field, ""))) >= cap)
        n = 0;
    buf[n] = '\0';
    return n;
}


store_reader_t *store_reader_new(store_t *s)
{
    store_reader_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->s = s;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn) != 0) {
        free(r);
        return NULL;
    }
    mdb_txn_reset(r->txn);
    return r;
}

void store_release(store_hold_t *hold)
{
    if (hold == NULL || --hold->refs > 0)
        return;
    if (hold->own != NULL) {
        cJSON_Delete(hold->own);
    } else {
        for (int b = 0; b < CACHE_BUCKETS; b++) {
            cached_t *c = hold->bucket[b], *next;
            for (; c != NULL; c = next) {
                next = c->next;
                cJSON_Delete(c->rec);
                free(c);
            }
        }
    }
    free(hold);
}

/* Generations made so far, by every reader: a generation's serial is never
 * reused, even by another reader or store at the same addresses. */
static _Atomic size_t generations;

size_t store_hold_generation(const store_hold_t *hold)
{
    return hold != NULL && hold->own == NULL ? hold->serial : 0;
}

store_hold_t *store_hold_own(cJSON *rec)
{
    store_hold_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->refs = 1;
    h->own = rec;
    return h;
}

void store_reader_free(store_reader_t *r)
{
    if (r == NULL)
        return;
    store_release(r->gen);
    mdb_txn_abort(r->txn);
    free(r);
}

static uint32_t key_hash(MDB_dbi dbi, const void *key, size_t klen)
{
    uint32_t h = 2166136261u ^ (uint32_t)dbi;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ ((const unsigned char *)key)[i]) * 16777619u;
    return h;
}

/* The current generation's record for KEY in DBI, if cached. Starts a new
 * generation when the snapshot (renewed by the caller) has changed. */
static cJSON *cache_find(store_reader_t *r, MDB_dbi dbi, const void *key, size_t klen, uint32_t h)
{
    size_t id = mdb_txn_id(r->txn);
    if (r->gen != NULL && r->gen->txnid != id) {
        if (id <= atomic_load(&r->s->known_txnid) && atomic_load(&r->s->records_txnid) <= r->gen->txnid) {
            r->gen->txnid = id;           /* only the journal was written since */
        } else {
            store_release(r->gen);
            r->gen = NULL;
        }
    }
    if (r->gen == NULL) {
        if ((r->gen = calloc(1, sizeof(store_hold_t) + CACHE_BUCKETS * sizeof(cached_t *))) == NULL)
            return NULL;
        r->gen->refs = 1;
        r->gen->txnid = id;
        r->gen->serial = atomic_fetch_add(&generations, 1) + 1;
    }
    for (cached_t *c = r->gen->bucket[h % CACHE_BUCKETS]; c != NULL; c = c->next)
        if (c->hash == h && c->dbi == dbi && c->klen == klen && memcmp(c->key, key, klen) == 0)
            return c->rec;
    return NULL;
}

/* Keeps REC (just parsed) in the current generation; 0, or -1 when it is full. */
static int cache_add(store_reader_t *r, MDB_dbi dbi, const void *key, size_t klen, uint32_t h, cJSON *rec)
{
    cached_t *c;
    if (r->gen == NULL || r->gen->n >= CACHE_MAX || (c = malloc(sizeof(*c) + klen)) == NULL)
        return -1;
    c->hash = h;
    c->dbi = dbi;
    c->klen = klen;
    c->rec = rec;
    memcpy(c->key, key, klen);
    c->next = r->gen->bucket[h % CACHE_BUCKETS];
    r->gen->bucket[h % CACHE_BUCKETS] = c;
    r->gen->n++;
    return 0;
}

/* KEY from DBI in a renewed snapshot: cached, or parsed (and cached). */
static const cJSON *get_json(store_reader_t *r, MDB_dbi dbi, const void *key, size_t klen, store_hold_t **hold)
{
    MDB_val k = { klen, (void *)key }, v;
    uint32_t h = key_hash(dbi, key, klen);
    cJSON *rec;
    *hold = NULL;
    if (mdb_txn_renew(r->txn) != 0)
        return NULL;
    if ((rec = cache_find(r, dbi, key, klen, h)) != NULL) {
        *hold = r->gen;
    } else if (mdb_get(r->txn, dbi, &k, &v) == 0 && (rec = cJSON_ParseWithLength(v.mv_data, v.mv_size)) != NULL) {
        if (cache_add(r, dbi, key, klen, h, rec) == 0)
            *hold = r->gen;
        else if ((*hold = store_hold_own(rec)) == NULL)
            cJSON_Delete(rec);
    }
    mdb_txn_reset(r->txn);
    if (*hold == NULL)
        return NULL;
    if (*hold == r->gen)
        r->gen->refs++;
    return rec;
}

const cJSON *store_get_provider(store_reader_t *r, const char *name, store_hold_t **hold)
{
    return get_json(r, r->s->tbl[STORE_PROVIDERS], name, strlen(name), hold);
}

const cJSON *store_get_router(store_reader_t *r, const char *slug, store_hold_t **hold)
{
    return get_json(r, r->s->tbl[STORE_ROUTERS], slug, strlen(slug), hold);
}

const cJSON *store_get_key(store_reader_t *r, const char *hash_hex, store_hold_t **hold)
{
    return get_json(r, r->s->tbl[STORE_KEYS], hash_hex, strlen(hash_hex), hold);
}

const cJSON *store_get_tenant(store_reader_t *r, const char *name, store_hold_t **hold)
{
    return get_json(r, r->s->tbl[STORE_TENANTS], name, strlen(name), hold);
}

const cJSON *store_get_route(store_reader_t *r, const char *scope, const char *router, const char *name,
                             store_hold_t **hold)
{
    char key[1024];
    size_t kl = name_key(key, sizeof(key), scope, router, name);
    *hold = NULL;
    return kl > 0 ? get_json(r, r->s->tbl[STORE_ROUTES], key, kl, hold) : NULL;
}

void store_each_glob(store_reader_t *r, const char *router, store_glob_fn fn, void *arg)
{
    size_t rl = strlen(router) + 1;
    MDB_cursor *c;
    MDB_val k = { rl, (void *)router }, v;
    if (mdb_txn_renew(r->txn) != 0)
        return;
    if (mdb_cursor_open(r->txn, r->s->route_globs, &c) == 0) {
        int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        for (; rc == 0 && k.mv_size > rl + 4 && memcmp(k.mv_data, router, rl) == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            char fields[3][320];
            const char *val = v.mv_data, *end = val + v.mv_size;
            int nf = 0;
            while (nf < 3 && val <= end) {     /* scope, endpoint, name */
                const char *nul = memchr(val, '\0', (size_t)(end - val));
                size_t n = nul != NULL ? (size_t)(nul - val) : (size_t)(end - val);
                if (n >= sizeof(fields[0]))
                    break;
                memcpy(fields[nf], val, n);
                fields[nf++][n] = '\0';
                val += n + 1;
            }
            if (nf != 3)
                continue;
            if (fn(fields[0], fields[1], fields[2], arg))
                break;
        }
        mdb_cursor_close(c);
    }
    mdb_txn_reset(r->txn);
}

void store_each(store_reader_t *r, store_table_t t, store_each_fn fn, void *arg)
{
    MDB_dbi dbi = r->s->tbl[t];
    MDB_cursor *c;
    MDB_val k, v;
    if (mdb_txn_renew(r->txn) != 0)
        return;
    if (mdb_cursor_open(r->txn, dbi, &c) == 0) {
        int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        while (rc == 0) {
            cJSON *rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
            if (rec != NULL) {
                fn(rec, arg);
                cJSON_Delete(rec);
            }
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(c);
    }
    mdb_txn_reset(r->txn);
}

/* --- admin writes ------------------------------------------------------ */

/* Finds the record with ID inside TXN: routes, keys and budgets through
 * their id index, the others by a scan (providers and routers are few).
 * Returns a parsed copy or NULL. */
static cJSON *find_in(store_t *s, MDB_txn *txn, store_table_t t, const char *id)
{
    MDB_val k, v;
    MDB_cursor *c;
    cJSON *out = NULL;
    int rc;
    if (tables[t].ids != NULL) {
        k.mv_data = (void *)id;
        k.mv_size = strlen(id);
        if (mdb_get(txn, s->ids[t], &k, &k) != 0)
            return NULL;
        return mdb_get(txn, s->tbl[t], &k, &v) == 0 ? cJSON_ParseWithLength(v.mv_data, v.mv_size) : NULL;
    }
    if (mdb_cursor_open(txn, s->tbl[t], &c) != 0)
        return NULL;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && out == NULL;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cJSON *rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (rec != NULL && strcmp(schema_str(rec, "id", ""), id) == 0)
            out = rec;
        else
            cJSON_Delete(rec);
    }
    mdb_cursor_close(c);
    return out;
}

/* The name of a route using provider or router NAME, or NULL. */
static int route_using(store_t *s, MDB_txn *txn, store_table_t t, const char *name, char *route, size_t cap)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc, found = 0;
    if ((t != STORE_PROVIDERS && t != STORE_ROUTERS) || mdb_cursor_open(txn, s->tbl[STORE_ROUTES], &c) != 0)
        return 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !found; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cJSON *r = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        const cJSON *tg;
        if (r == NULL)
            continue;
        if (t == STORE_ROUTERS) {
            found = strcmp(schema_str(r, "router", ""), name) == 0;
        } else {
            cJSON_ArrayForEach(tg, cJSON_GetObjectItemCaseSensitive(r, "targets"))
                if (strcmp(schema_str(tg, "provider", ""), name) == 0)
                    found = 1;
        }
        if (found)
            snprintf(route, cap, "%s", schema_str(r, "name", ""));
        cJSON_Delete(r);
    }
    mdb_cursor_close(c);
    return found;
}

static int commit_status(int rc, char *err, size_t errlen)
{
    if (rc == 0)
        return STORE_OK;
    if (rc == MDB_MAP_FULL) {
        snprintf(err, errlen, "the store is full (store.map_size_mb); nothing was written: raise the map size "
                              "and restart, or delete unused records");
        return STORE_FULL;
    }
    snprintf(err, errlen, "store write failed: %s", mdb_strerror(rc));
    return STORE_FAILED;
}

/* Checks that the providers and the router REC names exist inside TXN. */
static int check_route(store_t *s, MDB_txn *txn, const cJSON *rec, char *err, size_t errlen)
{
    const char *router = schema_str(rec, "router", "");
    const cJSON *tg;
    MDB_val k, v;
    int i = 0;
    cJSON_ArrayForEach(tg, cJSON_GetObjectItemCaseSensitive(rec, "targets")) {
        const char *pn = schema_str(tg, "provider", "");
        k.mv_data = (void *)pn;
        k.mv_size = strlen(pn);
        if (mdb_get(txn, s->tbl[STORE_PROVIDERS], &k, &v) != 0) {
            snprintf(err, errlen, "targets[%d].provider: no provider named \"%s\"", i, pn);
            return STORE_INVALID;
        }
        i++;
    }
    if (*router != '\0') {
        k.mv_data = (void *)router;
        k.mv_size = strlen(router);
        if (mdb_get(txn, s->tbl[STORE_ROUTERS], &k, &v) != 0) {
            snprintf(err, errlen, "router: no router \"%s\"", router);
            return STORE_INVALID;
        }
    }
    return STORE_OK;
}

/* 1 when KEY is in DBI inside TXN. */
static int exists(MDB_txn *txn, MDB_dbi dbi, const char *key)
{
    MDB_val k = { strlen(key), (void *)key }, v;
    return mdb_get(txn, dbi, &k, &v) == 0;
}

/* Checks that what budget REC's scope names exists inside TXN: a key or
 * route by id, a provider by name (a tenant is no record). */
static int check_budget(store_t *s, MDB_txn *txn, const cJSON *rec, char *err, size_t errlen)
{
    const cJSON *scope = cJSON_GetObjectItemCaseSensitive(rec, "scope"), *m;
    const char *kind, *v;
    if (!cJSON_IsObject(scope) || (m = scope->child) == NULL)
        return STORE_OK;                      /* global */
    kind = m->string;
    if (strcmp(kind, "target") == 0) {
        v = schema_str(m, "route", "");
        if (!exists(txn, s->ids[STORE_ROUTES], v)) {
            snprintf(err, errlen, "scope.target.route: no route with id %s", v);
            return STORE_INVALID;
        }
        v = schema_str(m, "provider", "");
        if (!exists(txn, s->tbl[STORE_PROVIDERS], v)) {
            snprintf(err, errlen, "scope.target.provider: no provider named \"%s\"", v);
            return STORE_INVALID;
        }
        return STORE_OK;
    }
    v = cJSON_IsString(m) ? m->valuestring : "";
    if ((strcmp(kind, "key") == 0 && !exists(txn, s->ids[STORE_KEYS], v)) ||
        (strcmp(kind, "route") == 0 && !exists(txn, s->ids[STORE_ROUTES], v))) {
        snprintf(err, errlen, "scope.%s: no %s with id %s", kind, kind, v);
        return STORE_INVALID;
    }
    if (strcmp(kind, "provider") == 0 && !exists(txn, s->tbl[STORE_PROVIDERS], v)) {
        snprintf(err, errlen, "scope.provider: no provider named \"%s\"", v);
        return STORE_INVALID;
    }
    return STORE_OK;
}

/* 1 when budget scope SCOPE names record REC of table T: a key or route by
 * its id, a provider by its name (a target names a route and a provider). */
static int scope_names(const cJSON *scope, store_table_t t, const cJSON *rec)
{
    const cJSON *m = cJSON_IsObject(scope) ? scope->child : NULL;
    const char *id = schema_str(rec, "id", "\1"), *name = schema_str(rec, "name", "\1");
    if (m == NULL)
        return 0;
    if (strcmp(m->string, "target") == 0)
        return (t == STORE_ROUTES && strcmp(schema_str(m, "route", ""), id) == 0) ||
               (t == STORE_PROVIDERS && strcmp(schema_str(m, "provider", ""), name) == 0);
    if (!cJSON_IsString(m))
        return 0;
    return (t == STORE_KEYS && strcmp(m->string, "key") == 0 && strcmp(m->valuestring, id) == 0) ||
           (t == STORE_ROUTES && strcmp(m->string, "route") == 0 && strcmp(m->valuestring, id) == 0) ||
           (t == STORE_PROVIDERS && strcmp(m->string, "provider") == 0 && strcmp(m->valuestring, name) == 0);
}

/* Writes to BUDGET the name of a budget whose scope names REC (a key, route
 * or provider of table T); 1 when there is one, else 0. Budgets are few: a
 * scan. */
static int budget_using(store_t *s, MDB_txn *txn, store_table_t t, const cJSON *rec, char *budget, size_t cap)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc, found = 0;
    if ((t != STORE_KEYS && t != STORE_ROUTES && t != STORE_PROVIDERS) ||
        mdb_cursor_open(txn, s->tbl[STORE_BUDGETS], &c) != 0)
        return 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !found; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cJSON *b = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (b != NULL && (found = scope_names(cJSON_GetObjectItemCaseSensitive(b, "scope"), t, rec)))
            snprintf(budget, cap, "%s", schema_str(b, "name", ""));
        cJSON_Delete(b);
    }
    mdb_cursor_close(c);
    return found;
}

/* The field budgets name a record of table T by: a provider's name, a key's
 * or route's id (a key's own LMDB key is its secret's hash). */
static const char *ref_field(store_table_t t)
{
    return t == STORE_PROVIDERS ? "name" : "id";
}

/* Finds which provider serves shorthand model SPEC ("PROVIDER/MODEL", or a
 * model some provider lists) and writes the target for it into TG. */
static int shorthand_target(store_t *s, MDB_txn *txn, const char *field, const char *spec, cJSON *tg,
                            char *err, size_t errlen)
{
    const char *slash = strchr(spec, '/');
    MDB_cursor *c;
    MDB_val k, v;
    int rc;

    if (slash != NULL && slash != spec && slash[1] != '\0') {
        k.mv_data = (void *)spec;
        k.mv_size = (size_t)(slash - spec);
        if (mdb_get(txn, s->tbl[STORE_PROVIDERS], &k, &v) == 0) {
            char name[128];
            snprintf(name, sizeof(name), "%.*s", (int)k.mv_size, spec);
            cJSON_AddStringToObject(tg, "provider", name);
            cJSON_AddStringToObject(tg, "model", slash + 1);
            return 0;
        }
    }
    /* a bare model: the first provider, in name order, that lists it enabled */
    if (mdb_cursor_open(txn, s->tbl[STORE_PROVIDERS], &c) != 0)
        return -1;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cJSON *p = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        const cJSON *m;
        int found = 0;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "models"))
            if (strcmp(schema_str(m, "name", ""), spec) == 0 &&
                !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(m, "enabled")))
                found = 1;
        if (found && !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "enabled"))) {
            cJSON_AddStringToObject(tg, "provider", schema_str(p, "name", ""));
            cJSON_AddStringToObject(tg, "model", spec);
            cJSON_Delete(p);
            mdb_cursor_close(c);
            return 0;
        }
        cJSON_Delete(p);
    }
    mdb_cursor_close(c);
    snprintf(err, errlen, "%s: no enabled provider lists the model \"%s\"; write it as PROVIDER/MODEL", field,
             spec);
    return -1;
}

/* Expands TruLayer's primary_model / fallback_model into REC's targets when
 * REC has no targets of its own (the shorthand fields stay, to be echoed). */
static int expand_shorthand(store_t *s, MDB_txn *txn, cJSON *rec, char *err, size_t errlen)
{
    static const char *const fields[] = { "primary_model", "fallback_model" };
    cJSON *targets;
    if (cJSON_GetObjectItemCaseSensitive(rec, "targets") != NULL ||
        cJSON_GetObjectItemCaseSensitive(rec, "primary_model") == NULL)
        return 0;
    targets = cJSON_AddArrayToObject(rec, "targets");
    for (int i = 0; i < 2; i++) {
        const char *spec = schema_str(rec, fields[i], NULL);
        cJSON *tg;
        if (spec == NULL)
            continue;
        tg = cJSON_CreateObject();
        cJSON_AddItemToArray(targets, tg);
        if (shorthand_target(s, txn, fields[i], spec, tg, err, errlen) < 0)
            return -1;
        cJSON_AddNumberToObject(tg, "weight", 1);
        cJSON_AddNumberToObject(tg, "order", i);
        cJSON_AddTrueToObject(tg, "enabled");
    }
    if (strcmp(schema_str(rec, "strategy", ""), "direct") == 0 && cJSON_GetArraySize(targets) != 1) {
        snprintf(err, errlen, "fallback_model: strategy \"direct\" takes no fallback");
        return -1;
    }
    return 0;
}

static int del_key(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t len)
{
    MDB_val k = { len, (void *)key };
    int rc = mdb_del(txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int put_bytes(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t klen, const char *val, size_t vlen)
{
    MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
    return mdb_put(txn, dbi, &k, &v, 0);
}

static size_t plan_slot(const store_plan_t *plan, store_table_t t, const char *id)
{
    size_t mask = (size_t)plan->nindex - 1, i = (size_t)(tally_hash(id) + (uint64_t)t) & mask;
    while (plan->index[i] >= 0 && (plan->v[plan->index[i]].t != t || strcmp(plan->v[plan->index[i]].id, id) != 0))
        i = (i + 1) & mask;
    return i;
}

/* Notes in PLAN that record ID of table T becomes REC (NULL: is deleted);
 * a later change of the same record replaces an earlier one (found by an
 * index: an import notes every record). 0 or ENOMEM. */
static int plan_note(store_plan_t *plan, store_table_t t, const char *id, const cJSON *rec)
{
    store_change_t *c;
    char *json = rec != NULL ? cJSON_PrintUnformatted(rec) : NULL;
    size_t slot;
    if (rec != NULL && json == NULL)
        return ENOMEM;
    if (plan->n == plan->cap) {                 /* room for one more, and an index at most half full */
        int cap = plan->cap ? plan->cap * 2 : 8, *index = malloc((size_t)cap * 2 * sizeof(int));
        store_change_t *v = realloc(plan->v, (size_t)cap * sizeof(*v));
        if (v != NULL)
            plan->v = v;
        if (v == NULL || index == NULL) {
            free(index);
            free(json);
            return ENOMEM;
        }
        free(plan->index);
        plan->index = index;
        plan->nindex = cap * 2;
        plan->cap = cap;
        for (int i = 0; i < plan->nindex; i++)
            index[i] = -1;
        for (int i = 0; i < plan->n; i++)
            index[plan_slot(plan, plan->v[i].t, plan->v[i].id)] = i;
    }
    slot = plan_slot(plan, t, id);
    if (plan->index[slot] >= 0) {
        c = &plan->v[plan->index[slot]];
        free(c->json);
    } else {
        plan->index[slot] = plan->n;
        c = &plan->v[plan->n++];
        c->t = t;
        snprintf(c->id, sizeof(c->id), "%s", id);
    }
    c->json = json;
    c->len = json != NULL ? strlen(json) : 0;
    return 0;
}

static void plan_free(store_plan_t *plan)
{
    for (int i = 0; i < plan->n; i++)
        free(plan->v[i].json);
    free(plan->v);
    free(plan->index);
    memset(plan, 0, sizeof(*plan));
}

/* Deletes the persisted spend of ledger entry PREFIX ID ("b:" and a
 * budget's id, "k:" and a key's) inside TXN: with the record gone, its
 * spend would never be read again, and a restart must not restore it. */
static int del_spend(store_t *s, MDB_txn *txn, const char *prefix, const char *id)
{
    char name[sizeof(((store_spend_t *)0)->name)];
    int n = snprintf(name, sizeof(name), "%s%s", prefix, id);
    return n > 0 && (size_t)n < sizeof(name) ? del_key(txn, s->spend, name, (size_t)n) : 0;
}

/* Writes REC inside TXN (see store_put); the seed import and the admin API
 * share it, so both check the same things. Route shorthand is expanded into
 * REC here, against the providers of this transaction. Returns STORE_OK or
 * an error status (an LMDB failure as commit_status maps it). */
static int put_in(store_t *s, MDB_txn *txn, store_table_t t, cJSON *rec, const char *old_id, char *err,
                  size_t errlen)
{
    MDB_dbi dbi = s->tbl[t];
    cJSON *old = NULL;
    char key[MAX_KEY + 1], okey[MAX_KEY + 1], user[256];
    size_t klen, oklen = 0;
    MDB_val k, v;
    int rc = 0, st = STORE_OK;

    if (old_id != NULL && (old = find_in(s, txn, t, old_id)) == NULL) {
        snprintf(err, errlen, "no %s with id %s", tables[t].noun, old_id);
        return STORE_NOT_FOUND;
    }
    if (t == STORE_ROUTES && expand_shorthand(s, txn, rec, err, errlen) < 0)
        return cJSON_Delete(old), STORE_INVALID;
    if ((klen = rec_key(t, rec, key, sizeof(key))) == 0) {
        snprintf(err, errlen, "%s: %s", tables[t].key_field,
                 t == STORE_ROUTES ? "scope, router and name together exceed 509 bytes" : "too long");
        st = STORE_INVALID;
        goto out;
    }
    if (t == STORE_ROUTES && (st = check_route(s, txn, rec, err, errlen)) != STORE_OK)
        goto out;
    if (t == STORE_BUDGETS && (st = check_budget(s, txn, rec, err, errlen)) != STORE_OK)
        goto out;
    /* what a budget names a record by may not change under it (a provider
     * renamed; an import replacing a key or route under another id) */
    if (old != NULL && strcmp(schema_str(old, ref_field(t), ""), schema_str(rec, ref_field(t), "")) != 0 &&
        budget_using(s, txn, t, old, user, sizeof(user))) {
        snprintf(err, errlen, "%s: cannot change the %s of %s \"%s\" while budget \"%s\" names it", ref_field(t),
                 ref_field(t), tables[t].noun, schema_str(old, ref_field(t), ""), user);
        st = STORE_CONFLICT;
        goto out;
    }
    if (old != NULL)
        oklen = rec_key(t, old, okey, sizeof(okey));
    if (oklen != klen || memcmp(okey, key, klen) != 0) {      /* new, or its key changes */
        k.mv_data = key;
        k.mv_size = klen;
        if (mdb_get(txn, dbi, &k, &v) == 0) {
            if (t == STORE_ROUTES)
                snprintf(err, errlen, "name: a route named \"%s\" already exists in this scope and router",
                         schema_str(rec, "name", ""));
            else if (t == STORE_BUDGETS)
                snprintf(err, errlen, "name: a budget named \"%s\" already exists in this scope",
                         schema_str(rec, "name", ""));
            else
                snprintf(err, errlen, "%s: a %s \"%s\" already exists", tables[t].key_field, tables[t].noun,
                         t == STORE_KEYS ? "with this secret" : key);
            st = STORE_CONFLICT;
            goto out;
        }
        if (oklen > 0 && route_using(s, txn, t, okey, user, sizeof(user))) {
            snprintf(err, errlen, "%s: cannot rename %s \"%s\" while route \"%s\" uses it", tables[t].key_field,
                     tables[t].noun, okey, user);
            st = STORE_CONFLICT;
            goto out;
        }
        /* the old record goes (a rename, or an import replacing a route
         * under another id) */
        if (oklen > 0 && (rc = del_key(txn, dbi, okey, oklen)) != 0)
            goto dberr;
    }
    if (t == STORE_ROUTES && ((old != NULL && (rc = index_glob(s, txn, old, 0)) != 0) ||
                              (rc = index_glob(s, txn, rec, 1)) != 0))
        goto dberr;
    if (tables[t].ids != NULL) {
        const char *id = schema_str(rec, "id", ""), *oid = old != NULL ? schema_str(old, "id", "") : "";
        if (*oid && strcmp(oid, id) != 0 && (rc = del_key(txn, s->ids[t], oid, strlen(oid))) != 0)
            goto dberr;
        /* a seed record replacing a budget or key under another id: the old id's spend goes with it */
        if (*oid && strcmp(oid, id) != 0 && (t == STORE_BUDGETS || t == STORE_KEYS) &&
            (rc = del_spend(s, txn, t == STORE_BUDGETS ? "b:" : "k:", oid)) != 0)
            goto dberr;
        if ((rc = put_bytes(txn, s->ids[t], id, strlen(id), key, klen)) != 0)
            goto dberr;
    }
    if ((rc = put_json(txn, dbi, key, klen, rec)) != 0)
        goto dberr;
    /* for the store of record: what changed (a record written as it was,
     * an import of an export, changes nothing there) */
    if (s->plan != NULL && !(old != NULL && cJSON_Compare(old, rec, 1))) {
        const char *id = schema_str(rec, "id", ""), *oid = old != NULL ? schema_str(old, "id", "") : "";
        if ((*oid && strcmp(oid, id) != 0 && (rc = plan_note(s->plan, t, oid, NULL)) != 0) ||
            (rc = plan_note(s->plan, t, id, rec)) != 0)
            goto dberr;
    }
    goto out;
dberr:
    st = commit_status(rc, err, errlen);   /* 507 for a full map, else 500 */
out:
    cJSON_Delete(old);
    return st;
}

/* One admin write, done inside a write transaction: returns STORE_OK or
 * an error status, with the message in err. */
typedef int (*writer_fn)(store_t *s, MDB_txn *txn, void *arg, char *err, size_t errlen);

static int64_t mirror_revision_in(store_t *s, MDB_txn *txn);
static int apply_plan(store_t *s, const store_plan_t *plan, int64_t revision);

/* A write checked against the mirror and committed to the store of record
 * (store.h); tried again, against the caught-up mirror, when the store of
 * record moved on in between. */
static int remote_write(store_t *s, writer_fn fn, void *arg, char *err, size_t errlen)
{
    for (int attempt = 0;; attempt++) {
        store_plan_t plan = { 0 };
        struct timespec now;
        MDB_txn *txn;
        int64_t rev = 0;
        int rc, st;
        if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
            return commit_status(rc, err, errlen);
        plan.revision = mirror_revision_in(s, txn);
        s->plan = &plan;
        st = fn(s, txn, arg, err, errlen);
        s->plan = NULL;
        mdb_txn_abort(txn);            /* the mirror changes only as the store of record does */
        if (st != STORE_OK || plan.n == 0) {
            plan_free(&plan);
            return st;
        }
        rc = s->remote.commit(s->remote.arg, &plan, &rev, err, errlen);
        if (rc == 0)
            apply_plan(s, &plan, rev);    /* should this fail, the mirror's watch brings the write */
        plan_free(&plan);
        if (rc == 0)
            return STORE_OK;
        if (rc < 0)
            return rc == -2 ? STORE_INVALID : STORE_UNAVAILABLE;
        if (attempt == 100) {
            snprintf(err, errlen, "the store of record kept changing under this write; try it again");
            return STORE_UNAVAILABLE;
        }
        if (s->remote.catch_up(s->remote.arg, rev, err, errlen) < 0)
            return STORE_UNAVAILABLE;
        /* nodes writing at once would otherwise go on checking and losing
         * in step: a random pause, up to a millisecond per attempt so far
         * (at most 20), lets one through */
        clock_gettime(CLOCK_MONOTONIC, &now);        /* (its nanoseconds: a different pause on each node) */
        usleep((useconds_t)(now.tv_nsec % (1000 * (attempt < 20 ? attempt + 1 : 20))));
    }
}

/* Runs FN in a write transaction and commits what it wrote (WROTE: what
 * that is, for commit_txn), or on a cluster sends it to the store of record. */
static int write_txn_as(store_t *s, writer_fn fn, void *arg, int wrote, char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc, st;
    if (s->remote.commit != NULL)
        return remote_write(s, fn, arg, err, errlen);
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        return commit_status(rc, err, errlen);
    if ((st = fn(s, txn, arg, err, errlen)) != STORE_OK) {
        mdb_txn_abort(txn);
        return st;
    }
    return commit_status(commit_txn(s, txn, wrote), err, errlen);
}

static int write_txn(store_t *s, writer_fn fn, void *arg, char *err, size_t errlen)
{
    return write_txn_as(s, fn, arg, WROTE_RECORDS, err, errlen);
}

typedef struct {
    store_table_t t;
    cJSON *rec;
    const char *id;           /* the record replaced, or deleted */
} write_args_t;

static int put_fn(store_t *s, MDB_txn *txn, void *arg, char *err, size_t errlen)
{
    write_args_t *a = arg;
    return put_in(s, txn, a->t, a->rec, a->id, err, errlen);
}

int store_put(store_t *s, store_table_t t, cJSON *rec, const char *old_id, char *err, size_t errlen)
{
    write_args_t a = { t, rec, old_id };
    int st = write_txn(s, put_fn, &a, err, errlen);
    return st == STORE_OK && old_id == NULL ? STORE_CREATED : st;
}

static int delete_fn(store_t *s, MDB_txn *txn, void *arg, char *err, size_t errlen)
{
    write_args_t *a = arg;
    store_table_t t = a->t;
    cJSON *old;
    char user[256], key[MAX_KEY + 1];
    size_t klen;
    int rc = 0, st = STORE_OK;

    if ((old = find_in(s, txn, t, a->id)) == NULL) {
        snprintf(err, errlen, "no %s with id %s", tables[t].noun, a->id);
        return STORE_NOT_FOUND;
    }
    klen = rec_key(t, old, key, sizeof(key));
    if (route_using(s, txn, t, key, user, sizeof(user))) {
        snprintf(err, errlen, "%s \"%s\" is used by route \"%s\"; change or delete the route first",
                 tables[t].noun, key, user);
        st = STORE_CONFLICT;
    } else if (budget_using(s, txn, t, old, user, sizeof(user))) {
        snprintf(err, errlen, "%s \"%s\" is named by budget \"%s\"; change or delete the budget first",
                 tables[t].noun, schema_str(old, ref_field(t), ""), user);
        st = STORE_CONFLICT;
    } else {
        if (t == STORE_ROUTES)
            rc = index_glob(s, txn, old, 0);
        if (rc == 0 && tables[t].ids != NULL)
            rc = del_key(txn, s->ids[t], a->id, strlen(a->id));
        if (rc == 0 && (t == STORE_BUDGETS || t == STORE_KEYS))
            rc = del_spend(s, txn, t == STORE_BUDGETS ? "b:" : "k:", a->id);
        if (rc == 0)
            rc = del_key(txn, s->tbl[t], key, klen);
        if (rc == 0 && s->plan != NULL)
            rc = plan_note(s->plan, t, a->id, NULL);
        st = commit_status(rc, err, errlen);
    }
    cJSON_Delete(old);
    return st;
}

int store_delete(store_t *s, store_table_t t, const char *id, char *err, size_t errlen)
{
    write_args_t a = { t, NULL, id };
    return write_txn(s, delete_fn, &a, err, errlen);
}

typedef struct {
    const char (*ids)[37];
    int n;
    const char *when, *stale;
} touch_args_t;

static int touch_fn(store_t *s, MDB_txn *txn, void *arg, char *err, size_t errlen)
{
    touch_args_t *a = arg;
    int changed = 0, rc = 0;
    for (int i = 0; i < a->n && rc == 0; i++) {
        cJSON *k = find_in(s, txn, STORE_KEYS, a->ids[i]);
        const char *hash = schema_str(k, "secret_hash", NULL), *last = schema_str(k, "last_used_at", NULL);
        if (hash != NULL && (last == NULL || strcmp(last, a->stale) < 0)) {  /* (another thread wrote it since) */
            cJSON_DeleteItemFromObjectCaseSensitive(k, "last_used_at");
            cJSON_AddStringToObject(k, "last_used_at", a->when);
            if ((rc = put_json(txn, s->tbl[STORE_KEYS], hash, strlen(hash), k)) == 0 && s->plan != NULL)
                rc = plan_note(s->plan, STORE_KEYS, a->ids[i], k);
            changed |= rc == 0;
        }
        cJSON_Delete(k);         /* a key deleted meanwhile is simply skipped */
    }
    if (rc != 0)
        return commit_status(rc, err, errlen);
    return changed ? STORE_OK : STORE_NOT_FOUND;
}

void store_touch_keys(store_t *s, const char (*ids)[37], int n, const char *when, const char *stale)
{
    touch_args_t a = { ids, n, when, stale };
    char err[256];
    if (n > 0 && (s->remote.up == NULL || s->remote.up(s->remote.arg)))   /* on a cluster, through the store of record */
        write_txn_as(s, touch_fn, &a, WROTE_KEPT, err, sizeof(err));
}

cJSON *store_find(store_t *s, store_table_t t, const char *id)
{
    MDB_txn *txn;
    cJSON *out;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return NULL;
    out = find_in(s, txn, t, id);
    mdb_txn_abort(txn);
    return out;
}

/* The route named NAME in SCOPE and ROUTER inside TXN, or NULL. */
static cJSON *route_by_name(store_t *s, MDB_txn *txn, const char *scope, const char *router, const char *name)
{
    char key[MAX_KEY + 1];
    MDB_val k = { name_key(key, sizeof(key), scope, router, name), key }, v;
    if (k.mv_size == 0 || mdb_get(txn, s->tbl[STORE_ROUTES], &k, &v) != 0)
        return NULL;
    return cJSON_ParseWithLength(v.mv_data, v.mv_size);
}

cJSON *store_find_route(store_t *s, const char *scope, const char *router, const char *name)
{
    MDB_txn *txn;
    cJSON *out;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return NULL;
    out = route_by_name(s, txn, scope, router, name);
    mdb_txn_abort(txn);
    return out;
}

int store_list(store_t *s, store_table_t t, const void *after, size_t after_len, int limit,
               store_keep_fn keep, void *arg, cJSON *out, char *next, size_t *next_len)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    int rc, n = 0;
    *next_len = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return -1;
    if (mdb_cursor_open(txn, s->tbl[t], &c) != 0) {
        mdb_txn_abort(txn);
        return -1;
    }
    if (after != NULL) {
        k.mv_data = (void *)after;
        k.mv_size = after_len;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == after_len && memcmp(k.mv_data, after, after_len) == 0)
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    } else {
        rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    }
    for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cJSON *rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (rec == NULL)
            continue;
        if (keep != NULL && !keep(rec, arg)) {
            cJSON_Delete(rec);
            continue;
        }
        if (n == limit) {          /* one more exists: the page ends at the previous key */
            cJSON_Delete(rec);
            break;
        }
        cJSON_AddItemToArray(out, rec);
        n++;
        if (k.mv_size <= 512) {
            memcpy(next, k.mv_data, k.mv_size);
            *next_len = k.mv_size;
        }
    }
    if (rc != 0)
        *next_len = 0;             /* the table ended: no next page */
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return 0;
}

/* --- seed import and export ------------------------------------------- */

/* The stored record a seed record replaces: the one with its id, else the
 * one with its natural key (provider name, router slug, route scope + router
 * + name, tenant name, key secret, budget scope + name). NULL when it is new. */
static cJSON *existing_for(store_t *s, MDB_txn *txn, store_table_t t, const cJSON *rec, int has_id)
{
    cJSON *old = has_id ? find_in(s, txn, t, schema_str(rec, "id", "")) : NULL;
    char key[MAX_KEY + 1];
    MDB_val k = { rec_key(t, rec, key, sizeof(key)), key }, v;
    if (old != NULL || k.mv_size == 0)
        return old;
    return mdb_get(txn, s->tbl[t], &k, &v) == 0 ? cJSON_ParseWithLength(v.mv_data, v.mv_size) : NULL;
}

/* 1 when record REC of table T, as stored, was written by this import (TXN)
 * rather than present before it (SNAP): a seed naming the same record twice
 * is a mistake, not an update. */
static int written_here(store_t *s, MDB_txn *txn, MDB_txn *snap, store_table_t t, const cJSON *rec)
{
    char key[MAX_KEY + 1];
    MDB_val k = { rec_key(t, rec, key, sizeof(key)), key }, now, before;
    if (mdb_get(txn, s->tbl[t], &k, &now) != 0)
        return 0;
    return mdb_get(snap, s->tbl[t], &k, &before) != 0 || before.mv_size != now.mv_size ||
           memcmp(before.mv_data, now.mv_data, now.mv_size) != 0;
}

/* Keeps the stored string FIELD of OLD where the seed gives none (GIVEN 0):
 * id and created_at, and the secrets an export leaves out. */
static void inherit(cJSON *rec, const cJSON *old, const char *field, int given)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(old, field);
    if (given || !cJSON_IsString(v))
        return;
    if (cJSON_GetObjectItemCaseSensitive(rec, field) != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(rec, field, cJSON_CreateString(v->valuestring));
    else
        cJSON_AddStringToObject(rec, field, v->valuestring);
}

/* A key record of the seed without secret_hash names a stored key by id:
 * it keeps that key's hash (and the hint that goes with it), as a provider
 * keeps its api_key; a key cannot be stored without one. */
static void inherit_key_hash(store_t *s, MDB_txn *txn, cJSON *rec)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "id");
    cJSON *old;
    if (cJSON_GetObjectItemCaseSensitive(rec, "secret_hash") != NULL || !cJSON_IsString(id) ||
        (old = find_in(s, txn, STORE_KEYS, id->valuestring)) == NULL)
        return;
    inherit(rec, old, "secret_hash", 0);
    inherit(rec, old, "secret_hint", cJSON_GetObjectItemCaseSensitive(rec, "secret_hint") != NULL);
    cJSON_Delete(old);
}

/* One seed section: each record normalised and written as the admin API
 * would write it, replacing the record it matches (existing_for). Secrets
 * are the exception to "replacing": an export leaves a provider's api_key
 * out, so a record without one keeps the stored key ("api_key": null
 * removes it, a string replaces it), and a key record without secret_hash
 * keeps the stored hash. Importing an export is thus a no-op. Returns 0,
 * or -1 with the message in err. */
static int import_section(store_t *s, MDB_txn *txn, MDB_txn *snap, store_table_t t, cJSON *recs,
                          const char *file, int (*normalise)(cJSON *, char *, size_t), char *err, size_t errlen)
{
    char msg[512];
    cJSON *rec;
    int i = 0, st;
    cJSON_ArrayForEach(rec, recs) {
        int has_id = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rec, "id"));
        int has_created = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rec, "created_at"));
        /* before normalise, which drops a null api_key */
        int has_api_key = cJSON_GetObjectItemCaseSensitive(rec, "api_key") != NULL;
        cJSON *old = NULL;
        if (t == STORE_KEYS && cJSON_IsObject(rec))
            inherit_key_hash(s, txn, rec);
        if (normalise(rec, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "seed %s: %s[%d].%s", file, tables[t].name, i, msg);
            return -1;
        }
        if ((old = existing_for(s, txn, t, rec, has_id)) != NULL) {
            if (written_here(s, txn, snap, t, old)) {
                snprintf(err, errlen, "seed %s: %s[%d]: the same %s as an earlier record of this seed (%s \"%s\")",
                         file, tables[t].name, i, tables[t].noun, tables[t].key_field,
                         schema_str(old, tables[t].key_field, ""));
                cJSON_Delete(old);
                return -1;
            }
            inherit(rec, old, "id", has_id);
            inherit(rec, old, "created_at", has_created);
            if (t == STORE_PROVIDERS)
                inherit(rec, old, "api_key", has_api_key);
        }
        st = put_in(s, txn, t, rec, old != NULL ? schema_str(old, "id", "") : NULL, msg, sizeof(msg));
        cJSON_Delete(old);
        if (st != STORE_OK) {
            snprintf(err, errlen, "seed %s: %s[%d].%s", file, tables[t].name, i, msg);
            return -1;
        }
        i++;
    }
    return 0;
}

typedef struct {
    const char *file, *text;
    size_t len;
} import_args_t;

/* providers and routers first: routes refer to them; tenants before
 * the keys that name them (nothing checks that they do); budgets last:
 * they refer to keys, routes and providers */
static int import_fn(store_t *s, MDB_txn *txn, void *arg, char *err, size_t errlen)
{
    static const struct {
        store_table_t t;
        int (*normalise)(cJSON *, char *, size_t);
    } order[] = {
        { STORE_PROVIDERS, schema_provider_normalise }, { STORE_ROUTERS, schema_router_normalise },
        { STORE_ROUTES, schema_route_normalise }, { STORE_TENANTS, schema_tenant_normalise },
        { STORE_KEYS, schema_key_normalise }, { STORE_BUDGETS, schema_budget_normalise },
    };
    import_args_t *a = arg;
    cJSON *root = cJSON_ParseWithLength(a->text, a->len), *rec;
    MDB_txn *snap = NULL;
    int st = STORE_INVALID, mrc;

    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "seed %s: not a JSON object", a->file);
        goto out;
    }
    cJSON_ArrayForEach(rec, root) {
        if (store_table_of(rec->string, strlen(rec->string)) < 0) {
            snprintf(err, errlen, "seed %s: %s: unknown field (expected providers, routers, routes, tenants, "
                                  "keys, budgets)", a->file, rec->string);
            goto out;
        }
        if (!cJSON_IsArray(rec)) {
            snprintf(err, errlen, "seed %s: %s: must be an array", a->file, rec->string);
            goto out;
        }
    }
    /* the snapshot before the import tells updates from duplicates
     * (written_here): begun while TXN holds the writer's lock, it sees
     * what TXN began with (MDB_NOTLS lets one thread hold both) */
    if ((mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &snap)) != 0) {
        st = commit_status(mrc, err, errlen);
        goto out;
    }
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (import_section(s, txn, snap, order[i].t, cJSON_GetObjectItemCaseSensitive(root, tables[order[i].t].name),
                           a->file, order[i].normalise, err, errlen) < 0)
            goto out;
    st = STORE_OK;
out:
    if (snap != NULL)
        mdb_txn_abort(snap);
    cJSON_Delete(root);
    return st;
}

int store_import_seed(store_t *s, const char *file, char *err, size_t errlen)
{
    import_args_t a = { file, NULL, 0 };
    char *text = file_read(file, &a.len);
    int st;
    if (text == NULL) {
        snprintf(err, errlen, "seed %s: %s", file, strerror(errno));
        return -1;
    }
    a.text = text;
    st = write_txn(s, import_fn, &a, err, errlen);
    free(text);
    return st == STORE_OK ? 0 : -1;
}

cJSON *store_export(store_t *s)
{
    static const store_table_t order[] = { STORE_PROVIDERS, STORE_ROUTERS, STORE_ROUTES, STORE_TENANTS, STORE_KEYS,
                                           STORE_BUDGETS };
    cJSON *root = cJSON_CreateObject();
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    if (root == NULL || mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0) {
        cJSON_Delete(root);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        cJSON *arr = cJSON_AddArrayToObject(root, tables[order[i]].name);
        if (mdb_cursor_open(txn, s->tbl[order[i]], &c) != 0)
            continue;
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            cJSON *rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
            if (rec == NULL)
                continue;
            /* secrets stay in the store: an import of this keeps them */
            cJSON_DeleteItemFromObjectCaseSensitive(rec, "api_key");
            cJSON_AddItemToArray(arr, rec);
        }
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    return root;
}

/* --- persisted spend ---------------------------------------------------- */

#define SPEND_VLEN 48              /* tag[3], spent[3] */
#define USAGE_VLEN 32              /* requests, prompt, completion, cost */

static void put_le64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static int64_t get_le64(const unsigned char *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | p[i];
    return (int64_t)u;
}

int store_put_spend(store_t *s, const store_spend_t *v, int n)
{
    MDB_txn *txn;
    int rc = 0;
    if (n <= 0)
        return 0;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0)
        return -1;
    for (int i = 0; i < n && rc == 0; i++) {
        unsigned char val[SPEND_VLEN];
        size_t len = strnlen(v[i].name, sizeof(v[i].name));
        if (len == 0 || len == sizeof(v[i].name))
            continue;                   /* empty or unterminated: no entry's name */
        for (int c = 0; c < 3; c++) {
            put_le64(val + 8 * c, v[i].tag[c]);
            put_le64(val + 24 + 8 * c, v[i].spent[c]);
        }
        rc = put_bytes(txn, s->spend, v[i].name, len, (const char *)val, sizeof(val));
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return -1;
    }
    return commit_txn(s, txn, WROTE_KEPT) == 0 ? 0 : -1;
}

void store_each_spend(store_t *s, void (*fn)(const store_spend_t *v, void *arg), void *arg)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return;
    if (mdb_cursor_open(txn, s->spend, &c) == 0) {
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            store_spend_t sp;
            const unsigned char *p = v.mv_data;
            if (k.mv_size == 0 || k.mv_size >= sizeof(sp.name) || v.mv_size != SPEND_VLEN)
                continue;               /* not a record this build wrote */
            memcpy(sp.name, k.mv_data, k.mv_size);
            sp.name[k.mv_size] = '\0';
            for (int i = 0; i < 3; i++) {
                sp.tag[i] = get_le64(p + 8 * i);
                sp.spent[i] = get_le64(p + 24 + 8 * i);
            }
            fn(&sp, arg);
        }
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
}

int store_delete_spend(store_t *s, const char *name)
{
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0)
        return -1;
    if (del_key(txn, s->spend, name, strlen(name)) != 0) {
        mdb_txn_abort(txn);
        return -1;
    }
    return commit_txn(s, txn, WROTE_KEPT) == 0 ? 0 : -1;
}

/* --- usage rollups ------------------------------------------------------ */

#define HOUR 3600
#define DAY 86400
#define PRUNE_BATCH 50000          /* rows deleted per transaction: bounds its dirty pages */

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Length of the first LEN bytes of S cut back to a UTF-8 character
 * boundary, so a shortened name stays valid text. */
static size_t utf8_cut(const char *s, size_t len)
{
    while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
        len--;
    return len;
}

/* The key of rollup row U in BUF (MAX_KEY bytes): see the table list. When
 * the five strings do not fit LMDB's key, route and model share what room
 * is left (half each, or what the shorter leaves), cut at a character
 * boundary: such rows then share a key and are summed together. Returns
 * the length, or 0 for a row before 1970. */
static size_t usage_key(const store_usage_t *u, unsigned char *buf)
{
    const char *f[5] = { u->key_id, u->tenant, u->route, u->provider, u->model };
    size_t len[5] = { strnlen(u->key_id, sizeof(u->key_id)), strnlen(u->tenant, sizeof(u->tenant)),
                      strnlen(u->route, sizeof(u->route)), strnlen(u->provider, sizeof(u->provider)),
                      strnlen(u->model, sizeof(u->model)) };
    /* key_id, tenant and provider are short enough to always fit */
    size_t n = 8, room = MAX_KEY - (8 + len[0] + len[1] + len[3] + 4);
    if (u->hour < 0)
        return 0;
    if (len[2] + len[4] > room) {
        if (len[2] <= room / 2)
            len[4] = room - len[2];
        else if (len[4] <= room / 2)
            len[2] = room - len[4];
        else
            len[2] = room / 2, len[4] = room - room / 2;
        len[2] = utf8_cut(f[2], len[2]);
        len[4] = utf8_cut(f[4], len[4]);
    }
    put_be64(buf, (uint64_t)(u->hour - u->hour % HOUR));
    for (int i = 0; i < 5; i++) {
        memcpy(buf + n, f[i], len[i]);
        n += len[i];
        if (i < 4)
            buf[n++] = '\0';
    }
    return n;
}

int store_add_usage(store_t *s, const store_usage_t *rows, int n)
{
    MDB_txn *txn;
    int rc = 0;
    if (n <= 0)
        return 0;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0)
        return -1;
    for (int i = 0; i < n && rc == 0; i++) {
        unsigned char key[MAX_KEY], val[USAGE_VLEN];
        MDB_val k = { usage_key(&rows[i], key), key }, v;
        int64_t add[4] = { rows[i].requests, rows[i].prompt_tokens, rows[i].completion_tokens, rows[i].cost_nusd };
        if (k.mv_size == 0)
            continue;
        rc = mdb_get(txn, s->usage, &k, &v);
        if (rc == 0 && v.mv_size == USAGE_VLEN) {
            for (int c = 0; c < 4; c++)   /* unsigned: a wrap is no undefined behaviour */
                add[c] = (int64_t)((uint64_t)add[c] + (uint64_t)get_le64((const unsigned char *)v.mv_data + 8 * c));
        } else if (rc != 0 && rc != MDB_NOTFOUND) {
            break;
        }
        for (int c = 0; c < 4; c++)
            put_le64(val + 8 * c, add[c]);
        v.mv_size = sizeof(val);
        v.mv_data = val;
        rc = mdb_put(txn, s->usage, &k, &v, 0);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return -1;
    }
    return commit_txn(s, txn, WROTE_KEPT) == 0 ? 0 : -1;
}

long store_prune_usage(store_t *s, int64_t before)
{
    long total = 0;
    int more = 1;
    while (more) {
        MDB_txn *txn;
        MDB_cursor *c;
        MDB_val k, v;
        int rc, n = 0;
        if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0)
            return -1;
        if (mdb_cursor_open(txn, s->usage, &c) != 0) {
            mdb_txn_abort(txn);
            return -1;
        }
        /* the table is in time order: the oldest row is always the first */
        while ((rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == 0 && n < PRUNE_BATCH &&
               (k.mv_size < 8 || (int64_t)get_be64(k.mv_data) < before)) {
            if ((rc = mdb_cursor_del(c, 0)) != 0)
                break;
            n++;
        }
        mdb_cursor_close(c);
        if ((rc != 0 && rc != MDB_NOTFOUND) || (n > 0 && commit_txn(s, txn, WROTE_KEPT) != 0)) {
            if (rc != 0 && rc != MDB_NOTFOUND)
                mdb_txn_abort(txn);
            return -1;
        }
        if (n == 0)
            mdb_txn_abort(txn);
        total += n;
        more = n == PRUNE_BATCH;
    }
    return total;
}

/* One group of a bucket being summed: its fields (those grouped by, each
 * NUL-terminated) at OFF in the report's arena, and its counters. */
typedef struct part {
    size_t off, len;
    const char *key;               /* set when the bucket is sorted */
    int64_t c[4];
} part_t;

typedef struct report {
    cJSON *data;
    unsigned mask;
    int64_t start, end;            /* the bucket being summed */
    part_t *parts;
    int nparts, cap;
    char *arena;
    size_t used, acap;
    long rows;
    int failed;                    /* errno */
} report_t;

static int part_cmp(const void *a, const void *b)
{
    const part_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int d = n > 0 ? memcmp(x->key, y->key, n) : 0;
    return d != 0 ? d : (x->len > y->len) - (x->len < y->len);
}

/* Adds NUSD (nano-dollars, possibly negative) to OBJ as NAME, a number
 * printed exactly with 9 decimals (a double would round it). */
static void add_nano_usd(cJSON *obj, const char *name, int64_t nusd)
{
    char text[40];
    uint64_t a = nusd < 0 ? (uint64_t)0 - (uint64_t)nusd : (uint64_t)nusd;
    snprintf(text, sizeof(text), "%s%llu.%09llu", nusd < 0 ? "-" : "", (unsigned long long)(a / 1000000000u),
             (unsigned long long)(a % 1000000000u));
    cJSON_AddRawToObject(obj, name, text);
}

static void add_int(cJSON *obj, const char *name, int64_t v)
{
    char text[24];
    snprintf(text, sizeof(text), "%lld", (long long)v);
    cJSON_AddRawToObject(obj, name, text);    /* exact past 2^53, unlike a double */
}

/* Writes the bucket summed so far to R's data, its groups in order, and
 * starts afresh. */
static void flush_bucket(report_t *r)
{
    static const char *const names[5] = { "key_id", "tenant", "route", "provider", "model" };
    char start[32], end[32];
    int i = 0;
    if (r->nparts == 0)
        return;
    for (int j = 0; j < r->nparts; j++)
        r->parts[j].key = r->arena + r->parts[j].off;
    qsort(r->parts, (size_t)r->nparts, sizeof(part_t), part_cmp);
    schema_time_iso(r->start, start);
    schema_time_iso(r->end, end);
    while (i < r->nparts && !r->failed) {
        part_t sum = r->parts[i];
        const char *f = sum.key;
        cJSON *row;
        for (i++; i < r->nparts && part_cmp(&sum, &r->parts[i]) == 0; i++)
            for (int c = 0; c < 4; c++)
                sum.c[c] = (int64_t)((uint64_t)sum.c[c] + (uint64_t)r->parts[i].c[c]);
        if (++r->rows > STORE_USAGE_REPORT_MAX || (row = cJSON_CreateObject()) == NULL) {
            r->failed = r->rows > STORE_USAGE_REPORT_MAX ? E2BIG : ENOMEM;
            break;
        }
        cJSON_AddItemToArray(r->data, row);
        cJSON_AddStringToObject(row, "start", start);
        cJSON_AddStringToObject(row, "end", end);
        for (int b = 0; b < 5; b++) {
            if (!(r->mask & (1u << b)))
                continue;
            if (*f)
                cJSON_AddStringToObject(row, names[b], f);
            else
                cJSON_AddNullToObject(row, names[b]);
            f += strlen(f) + 1;
        }
        add_int(row, "requests", sum.c[0]);
        add_int(row, "prompt_tokens", sum.c[1]);
        add_int(row, "completion_tokens", sum.c[2]);
        add_nano_usd(row, "cost_usd", sum.c[3]);
    }
    r->nparts = 0;
    r->used = 0;
}

/* Adds one rollup row (its five fields F of FLEN bytes, counters C) to
 * the bucket, as a group of the fields R groups by. */
static void add_group(report_t *r, const char *const f[5], const size_t flen[5], const int64_t c[4])
{
    size_t need = 0;
    part_t *p;
    for (int b = 0; b < 5; b++)
        if (r->mask & (1u << b))
            need += flen[b] + 1;
    if (r->nparts == r->cap) {
        int cap = r->cap ? 2 * r->cap : 256;
        part_t *np = realloc(r->parts, (size_t)cap * sizeof(*np));
        if (np == NULL) {
            r->failed = ENOMEM;
            return;
        }
        r->parts = np;
        r->cap = cap;
    }
    if (r->arena == NULL || r->used + need > r->acap) {    /* an arena even for no fields: keys point into it */
        size_t cap = r->acap ? 2 * r->acap : 16384;
        char *na;
        while (cap < r->used + need)
            cap *= 2;
        if ((na = realloc(r->arena, cap)) == NULL) {
            r->failed = ENOMEM;
            return;
        }
        r->arena = na;
        r->acap = cap;
    }
    p = &r->parts[r->nparts++];
    p->off = r->used;
    p->len = need;
    memcpy(p->c, c, sizeof(p->c));
    for (int b = 0; b < 5; b++) {
        if (!(r->mask & (1u << b)))
            continue;
        memcpy(r->arena + r->used, f[b], flen[b]);
        r->arena[r->used + flen[b]] = '\0';
        r->used += flen[b] + 1;
    }
}

cJSON *store_usage_report(store_t *s, int64_t from, int64_t to, unsigned group_mask, int day_buckets,
                          const char *tenant_only)
{
    report_t r;
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    unsigned char seek[8];
    int64_t width = day_buckets ? DAY : HOUR;
    int rc;

    memset(&r, 0, sizeof(r));
    r.mask = group_mask & 31u;
    r.start = -1;
    if (from < 0)
        from = 0;
    from -= from % HOUR;               /* whole hours: the one FROM falls in counts */
    if ((r.data = cJSON_CreateArray()) == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (from >= to)
        return r.data;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0) {
        cJSON_Delete(r.data);
        errno = EIO;
        return NULL;
    }
    if (mdb_cursor_open(txn, s->usage, &c) != 0) {
        mdb_txn_abort(txn);
        cJSON_Delete(r.data);
        errno = EIO;
        return NULL;
    }
    put_be64(seek, (uint64_t)from);
    k.mv_size = sizeof(seek);
    k.mv_data = seek;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && !r.failed;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const char *f[5], *p, *end;
        size_t flen[5];
        int64_t hour, cnt[4];
        int nf = 0;
        if (k.mv_size < 8)
            continue;
        hour = (int64_t)get_be64(k.mv_data);
        if (hour >= to)
            break;
        if (v.mv_size != USAGE_VLEN)
            continue;
        p = (const char *)k.mv_data + 8;
        end = (const char *)k.mv_data + k.mv_size;
        while (nf < 5) {               /* key_id, tenant, route, provider, model */
            const char *nul = memchr(p, '\0', (size_t)(end - p));
            f[nf] = p;
            flen[nf] = nul != NULL ? (size_t)(nul - p) : (size_t)(end - p);
            nf++;
            if (nul == NULL)
                break;
            p = nul + 1;
        }
        if (nf != 5 || f[4] + flen[4] != end)
            continue;
        if (tenant_only != NULL && (strlen(tenant_only) != flen[1] || memcmp(tenant_only, f[1], flen[1]) != 0))
            continue;
        if (hour - hour % width != r.start) {
            flush_bucket(&r);
            r.start = hour - hour % width;
            r.end = r.start + width;
        }
        for (int i = 0; i < 4; i++)
            cnt[i] = get_le64((const unsigned char *)v.mv_data + 8 * i);
        add_group(&r, f, flen, cnt);
    }
    if (!r.failed && rc != 0 && rc != MDB_NOTFOUND)
        r.failed = EIO;
    if (!r.failed)
        flush_bucket(&r);
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    free(r.parts);
    free(r.arena);
    if (r.failed) {
        cJSON_Delete(r.data);
        errno = r.failed;
        return NULL;
    }
    return r.data;
}

/* --- a mirror of a store of record (store.h; SPEC 10) --- */

#define MIRROR_REVISION "mirror_revision"

void store_set_remote(store_t *s, const store_remote_t *remote)
{
    if (remote != NULL)
        s->remote = *remote;
    else
        memset(&s->remote, 0, sizeof(s->remote));
}

int store_table_of(const char *name, size_t len)
{
    for (int t = 0; t < STORE__TABLES; t++)
        if (strlen(tables[t].name) == len && memcmp(tables[t].name, name, len) == 0)
            return t;
    return -1;
}

const char *store_table_name(store_table_t t)
{
    return tables[t].name;
}

static int64_t mirror_revision_in(store_t *s, MDB_txn *txn)
{
    MDB_val k = { strlen(MIRROR_REVISION), MIRROR_REVISION }, v;
    int64_t rev = 0;
    if (mdb_get(txn, s->meta, &k, &v) == 0 && v.mv_size == 8)
        rev = get_le64(v.mv_data);
    return rev;
}

int64_t store_mirror_revision(store_t *s)
{
    MDB_txn *txn;
    int64_t rev;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    rev = mirror_revision_in(s, txn);
    mdb_txn_abort(txn);
    return rev;
}

struct store_mirror {
    store_t *s;
    MDB_txn *txn;
    int64_t applied;
};

store_mirror_t *store_mirror_begin(store_t *s, int full)
{
    store_mirror_t *m = calloc(1, sizeof(*m));
    int rc = 0;
    if (m == NULL)
        return NULL;
    m->s = s;
    if (mdb_txn_begin(s->env, NULL, 0, &m->txn) != 0) {
        free(m);
        return NULL;
    }
    m->applied = mirror_revision_in(s, m->txn);
    for (int t = 0; full && rc == 0 && t < STORE__TABLES; t++) {
        rc = mdb_drop(m->txn, s->tbl[t], 0);
        if (rc == 0 && tables[t].ids != NULL)
            rc = mdb_drop(m->txn, s->ids[t], 0);
    }
    if (full && rc == 0)
        rc = mdb_drop(m->txn, s->route_globs, 0);
    if (rc != 0) {
        store_mirror_abort(m);
        return NULL;
    }
    return m;
}

int64_t store_mirror_applied(const store_mirror_t *m)
{
    return m->applied;
}

/* Takes record OLD (as stored) out of table T with its index entries. */
static int unlink_rec(store_t *s, MDB_txn *txn, store_table_t t, const cJSON *old)
{
    char key[MAX_KEY + 1];
    size_t klen = rec_key(t, old, key, sizeof(key));
    const char *id = schema_str(old, "id", "");
    int rc = klen > 0 ? del_key(txn, s->tbl[t], key, klen) : 0;
    if (rc == 0 && t == STORE_ROUTES)
        rc = index_glob(s, txn, old, 0);
    if (rc == 0 && tables[t].ids != NULL && *id)
        rc = del_key(txn, s->ids[t], id, strlen(id));
    return rc;
}

int store_mirror_put(store_mirror_t *m, store_table_t t, const char *id, const char *json, size_t len)
{
    store_t *s = m->s;
    cJSON *old = find_in(s, m->txn, t, id), *rec = NULL, *other = NULL;
    char key[MAX_KEY + 1];
    size_t klen = 0;
    MDB_val k, v;
    int rc = 0;

    if (old != NULL)
        rc = unlink_rec(s, m->txn, t, old);
    if (rc == 0 && json == NULL && (t == STORE_BUDGETS || t == STORE_KEYS))
        rc = del_spend(s, m->txn, t == STORE_BUDGETS ? "b:" : "k:", id);
    if (rc != 0 || json == NULL)
        goto out;
    /* a record the store of record holds is taken as it is; one that is not
     * a record of this id (a foreign write under the prefix) is left out */
    rec = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(rec) || strcmp(schema_str(rec, "id", ""), id) != 0 ||
        (klen = rec_key(t, rec, key, sizeof(key))) == 0)
        goto out;
    k.mv_data = key;
    k.mv_size = klen;
    if (mdb_get(m->txn, s->tbl[t], &k, &v) == 0 && (other = cJSON_ParseWithLength(v.mv_data, v.mv_size)) != NULL)
        rc = unlink_rec(s, m->txn, t, other);      /* its name went to this record in the same revision */
    if (rc == 0 && t == STORE_ROUTES)
        rc = index_glob(s, m->txn, rec, 1);
    if (rc == 0 && tables[t].ids != NULL)
        rc = put_bytes(m->txn, s->ids[t], id, strlen(id), key, klen);
    if (rc == 0)
        rc = put_bytes(m->txn, s->tbl[t], key, klen, json, len);
out:
    cJSON_Delete(old);
    cJSON_Delete(rec);
    cJSON_Delete(other);
    return rc == 0 ? 0 : -1;
}

int store_mirror_commit(store_mirror_t *m, int64_t revision)
{
    unsigned char buf[8];
    MDB_val k = { strlen(MIRROR_REVISION), MIRROR_REVISION }, v = { 8, buf };
    int rc;
    put_le64(buf, revision);
    rc = mdb_put(m->txn, m->s->meta, &k, &v, 0);
    rc = rc == 0 ? commit_txn(m->s, m->txn, WROTE_RECORDS) : (mdb_txn_abort(m->txn), rc);
    free(m);
    return rc == 0 ? 0 : -1;
}

void store_mirror_abort(store_mirror_t *m)
{
    if (m == NULL)
        return;
    mdb_txn_abort(m->txn);
    free(m);
}

/* A write just committed to the store of record at REVISION, applied here
 * unless the mirror already has it (its watch was quicker). */
static int apply_plan(store_t *s, const store_plan_t *plan, int64_t revision)
{
    store_mirror_t *m = store_mirror_begin(s, 0);
    if (m == NULL)
        return -1;
    if (m->applied >= revision) {
        store_mirror_abort(m);
        return 0;
    }
    for (int i = 0; i < plan->n; i++) {
        if (store_mirror_put(m, plan->v[i].t, plan->v[i].id, plan->v[i].json, plan->v[i].len) < 0) {
            store_mirror_abort(m);
            return -1;
        }
    }
    return store_mirror_commit(m, revision);
}
