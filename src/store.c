/* store.c - LMDB environment, the workers' read path, and the one write path shared by the admin API and the seed import.
 *
 * Records are stored as normalised JSON (schema.c). Tables:
 *   meta         "schema_version" -> "1"
 *   providers    name -> provider JSON
 *   routes       id -> route JSON
 *   route_names  scope NUL router NUL name -> id
 *   routers      slug -> router JSON
 * A worker keeps one read transaction and renews/resets it around each
 * lookup (DESIGN.md: a read txn held across a loop turn pins old pages). */
#include "store.h"
#include "fileio.h"
#include "schema.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SCHEMA_VERSION "1"
#define MAX_READERS 512

struct store {
    MDB_env *env;
    MDB_dbi meta, providers, routes, route_names, routers;
};

struct store_reader {
    store_t *s;
    MDB_txn *txn;    /* reset between lookups */
};

static int open_dbi(MDB_txn *txn, const char *name, MDB_dbi *dbi)
{
    return mdb_dbi_open(txn, name, MDB_CREATE, dbi);
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
        (rc = mdb_env_set_maxdbs(s->env, 16)) != 0 ||
        (rc = mdb_env_set_maxreaders(s->env, MAX_READERS)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, map_mb << 20)) != 0 ||
        (rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0640)) != 0) {
        snprintf(err, errlen, "data_dir %s: cannot open the store: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    mdb_reader_check(s->env, &dead);   /* free reader slots left by a crashed process */
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0 ||
        (rc = open_dbi(txn, "meta", &s->meta)) != 0 ||
        (rc = open_dbi(txn, "providers", &s->providers)) != 0 ||
        (rc = open_dbi(txn, "routes", &s->routes)) != 0 ||
        (rc = open_dbi(txn, "route_names", &s->route_names)) != 0 ||
        (rc = open_dbi(txn, "routers", &s->routers)) != 0) {
        snprintf(err, errlen, "data_dir %s: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    k.mv_data = "schema_version";
    k.mv_size = strlen("schema_version");
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        v.mv_data = SCHEMA_VERSION;
        v.mv_size = strlen(SCHEMA_VERSION);
        rc = mdb_put(txn, s->meta, &k, &v, 0);
    } else if (rc == 0 && (v.mv_size != strlen(SCHEMA_VERSION) ||
                           memcmp(v.mv_data, SCHEMA_VERSION, v.mv_size) != 0)) {
        snprintf(err, errlen, "data_dir %s: store schema version %.*s, this build reads %s", dir,
                 (int)v.mv_size, (char *)v.mv_data, SCHEMA_VERSION);
        goto fail;
    }
    if (rc != 0 || (rc = mdb_txn_commit(txn)) != 0) {
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
    int empty = mdb_stat(txn, s->providers, &a) == 0 && mdb_stat(txn, s->routes, &b) == 0 &&
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

static const char *str_or(const cJSON *obj, const char *name, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : dflt;
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

void store_reader_free(store_reader_t *r)
{
    if (r == NULL)
        return;
    mdb_txn_abort(r->txn);
    free(r);
}

/* Gets KEY from DBI inside a renewed snapshot and parses a copy. */
static cJSON *get_json(store_reader_t *r, MDB_dbi dbi, const void *key, size_t klen)
{
    MDB_val k = { klen, (void *)key }, v;
    cJSON *out = NULL;
    if (mdb_txn_renew(r->txn) != 0)
        return NULL;
    if (mdb_get(r->txn, dbi, &k, &v) == 0)
        out = cJSON_ParseWithLength(v.mv_data, v.mv_size);
    mdb_txn_reset(r->txn);
    return out;
}

cJSON *store_get_provider(store_reader_t *r, const char *name)
{
    return get_json(r, r->s->providers, name, strlen(name));
}

cJSON *store_get_router(store_reader_t *r, const char *slug)
{
    return get_json(r, r->s->routers, slug, strlen(slug));
}

cJSON *store_get_route(store_reader_t *r, const char *scope, const char *router, const char *name)
{
    char key[1024];
    size_t kl = name_key(key, sizeof(key), scope, router, name);
    MDB_val k = { kl, key }, id, v;
    cJSON *out = NULL;
    if (kl == 0 || mdb_txn_renew(r->txn) != 0)
        return NULL;
    /* The id and the record are read in the same snapshot, so a concurrent
     * delete never leaves a dangling id between the two gets. */
    if (mdb_get(r->txn, r->s->route_names, &k, &id) == 0 &&
        mdb_get(r->txn, r->s->routes, &id, &v) == 0)
        out = cJSON_ParseWithLength(v.mv_data, v.mv_size);
    mdb_txn_reset(r->txn);
    return out;
}

void store_each(store_reader_t *r, const char *table, store_each_fn fn, void *arg)
{
    MDB_dbi dbi = strcmp(table, "providers") == 0 ? r->s->providers
                : strcmp(table, "routes") == 0    ? r->s->routes
                                                  : r->s->routers;
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

static MDB_dbi table_dbi(store_t *s, store_table_t t)
{
    return t == STORE_PROVIDERS ? s->providers : t == STORE_ROUTES ? s->routes : s->routers;
}

/* The field a table is keyed by. */
static const char *table_key_field(store_table_t t)
{
    return t == STORE_PROVIDERS ? "name" : t == STORE_ROUTES ? "id" : "slug";
}

static const char *table_noun(store_table_t t)
{
    return t == STORE_PROVIDERS ? "provider" : t == STORE_ROUTES ? "route" : "router";
}

/* Finds the record with ID inside TXN: routes by key, the others by a scan
 * (providers and routers are few). Returns a parsed copy or NULL. */
static cJSON *find_in(store_t *s, MDB_txn *txn, store_table_t t, const char *id)
{
    MDB_val k, v;
    MDB_cursor *c;
    cJSON *out = NULL;
    int rc;
    if (t == STORE_ROUTES) {
        k.mv_data = (void *)id;
        k.mv_size = strlen(id);
        return mdb_get(txn, s->routes, &k, &v) == 0 ? cJSON_ParseWithLength(v.mv_data, v.mv_size) : NULL;
    }
    if (mdb_cursor_open(txn, table_dbi(s, t), &c) != 0)
        return NULL;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && out == NULL;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cJSON *rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (rec != NULL && strcmp(str_or(rec, "id", ""), id) == 0)
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
    if (mdb_cursor_open(txn, s->routes, &c) != 0)
        return 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !found; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cJSON *r = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        const cJSON *tg;
        if (r == NULL)
            continue;
        if (t == STORE_ROUTERS) {
            found = strcmp(str_or(r, "router", ""), name) == 0;
        } else {
            cJSON_ArrayForEach(tg, cJSON_GetObjectItemCaseSensitive(r, "targets"))
                if (strcmp(str_or(tg, "provider", ""), name) == 0)
                    found = 1;
        }
        if (found)
            snprintf(route, cap, "%s", str_or(r, "name", ""));
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

/* Checks a route's references and name inside TXN; SELF is its own id. */
static int check_route(store_t *s, MDB_txn *txn, const cJSON *rec, char *key, size_t *klen, char *err,
                       size_t errlen)
{
    const char *router = str_or(rec, "router", "");
    const cJSON *tg;
    MDB_val k, v;
    int i = 0;
    cJSON_ArrayForEach(tg, cJSON_GetObjectItemCaseSensitive(rec, "targets")) {
        const char *pn = str_or(tg, "provider", "");
        k.mv_data = (void *)pn;
        k.mv_size = strlen(pn);
        if (mdb_get(txn, s->providers, &k, &v) != 0) {
            snprintf(err, errlen, "targets[%d].provider: no provider named \"%s\"", i, pn);
            return STORE_INVALID;
        }
        i++;
    }
    if (*router != '\0') {
        k.mv_data = (void *)router;
        k.mv_size = strlen(router);
        if (mdb_get(txn, s->routers, &k, &v) != 0) {
            snprintf(err, errlen, "router: no router \"%s\"", router);
            return STORE_INVALID;
        }
    }
    *klen = name_key(key, 1024, str_or(rec, "scope", "global"), router, str_or(rec, "name", ""));
    if (*klen == 0) {
        snprintf(err, errlen, "name: too long");
        return STORE_INVALID;
    }
    k.mv_data = key;
    k.mv_size = *klen;
    if (mdb_get(txn, s->route_names, &k, &v) == 0 &&
        (v.mv_size != strlen(str_or(rec, "id", "")) || memcmp(v.mv_data, str_or(rec, "id", ""), v.mv_size) != 0)) {
        snprintf(err, errlen, "name: a route named \"%s\" already exists in this scope and router",
                 str_or(rec, "name", ""));
        return STORE_CONFLICT;
    }
    return STORE_OK;
}

/* Writes REC inside TXN (see store_put); the seed import and the admin API
 * share it, so both check the same things. Returns STORE_OK or an error
 * status; an LMDB failure is returned as -(its code) for the caller. */
static int put_in(store_t *s, MDB_txn *txn, store_table_t t, const cJSON *rec, const char *old_id, char *err,
                  size_t errlen)
{
    MDB_dbi dbi = table_dbi(s, t);
    cJSON *old = NULL;
    const char *key = str_or(rec, table_key_field(t), "");
    char nkey[1024], okey[1024], user[256];
    size_t nklen = 0, oklen = 0;
    MDB_val k, v;
    int rc, st = STORE_OK;

    if (old_id != NULL && (old = find_in(s, txn, t, old_id)) == NULL) {
        snprintf(err, errlen, "no %s with id %s", table_noun(t), old_id);
        return STORE_NOT_FOUND;
    }
    if (t == STORE_ROUTES) {
        if ((st = check_route(s, txn, rec, nkey, &nklen, err, errlen)) != STORE_OK)
            goto out;
        if (old != NULL)
            oklen = name_key(okey, sizeof(okey), str_or(old, "scope", "global"), str_or(old, "router", ""),
                             str_or(old, "name", ""));
    } else {
        const char *old_key = old != NULL ? str_or(old, table_key_field(t), "") : NULL;
        if (old_key == NULL || strcmp(old_key, key) != 0) {
            k.mv_data = (void *)key;
            k.mv_size = strlen(key);
            if (mdb_get(txn, dbi, &k, &v) == 0) {
                snprintf(err, errlen, "%s: a %s \"%s\" already exists", table_key_field(t), table_noun(t), key);
                st = STORE_CONFLICT;
                goto out;
            }
            if (old_key != NULL && route_using(s, txn, t, old_key, user, sizeof(user))) {
                snprintf(err, errlen, "%s: cannot rename %s \"%s\" while route \"%s\" uses it", table_key_field(t),
                         table_noun(t), old_key, user);
                st = STORE_CONFLICT;
                goto out;
            }
            if (old_key != NULL) {
                k.mv_data = (void *)old_key;
                k.mv_size = strlen(old_key);
                if ((rc = mdb_del(txn, dbi, &k, NULL)) != 0)
                    goto dberr;
            }
        }
    }
    if (oklen > 0) {
        k.mv_data = okey;
        k.mv_size = oklen;
        if ((rc = mdb_del(txn, s->route_names, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
            goto dberr;
    }
    if (nklen > 0) {
        k.mv_data = nkey;
        k.mv_size = nklen;
        v.mv_data = (void *)key;
        v.mv_size = strlen(key);
        if ((rc = mdb_put(txn, s->route_names, &k, &v, 0)) != 0)
            goto dberr;
    }
    if ((rc = put_json(txn, dbi, key, strlen(key), rec)) != 0)
        goto dberr;
    goto out;
dberr:
    st = -rc;
out:
    cJSON_Delete(old);
    return st;
}

int store_put(store_t *s, store_table_t t, const cJSON *rec, const char *old_id, char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc, st;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        return commit_status(rc, err, errlen);
    st = put_in(s, txn, t, rec, old_id, err, errlen);
    if (st != STORE_OK) {
        mdb_txn_abort(txn);
        return st < 0 ? commit_status(-st, err, errlen) : st;
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        return commit_status(rc, err, errlen);
    return old_id == NULL ? STORE_CREATED : STORE_OK;
}

int store_delete(store_t *s, store_table_t t, const char *id, char *err, size_t errlen)
{
    MDB_txn *txn;
    cJSON *old;
    char user[256], nkey[1024];
    const char *key;
    MDB_val k;
    int rc, st;

    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        return commit_status(rc, err, errlen);
    if ((old = find_in(s, txn, t, id)) == NULL) {
        mdb_txn_abort(txn);
        snprintf(err, errlen, "no %s with id %s", table_noun(t), id);
        return STORE_NOT_FOUND;
    }
    key = str_or(old, table_key_field(t), "");
    if (t != STORE_ROUTES && route_using(s, txn, t, key, user, sizeof(user))) {
        snprintf(err, errlen, "%s \"%s\" is used by route \"%s\"; change or delete the route first",
                 table_noun(t), key, user);
        st = STORE_CONFLICT;
        goto out;
    }
    if (t == STORE_ROUTES) {
        k.mv_size = name_key(nkey, sizeof(nkey), str_or(old, "scope", "global"), str_or(old, "router", ""),
                             str_or(old, "name", ""));
        k.mv_data = nkey;
        if ((rc = mdb_del(txn, s->route_names, &k, NULL)) != 0 && rc != MDB_NOTFOUND) {
            st = commit_status(rc, err, errlen);
            goto out;
        }
    }
    k.mv_data = (void *)key;
    k.mv_size = strlen(key);
    if ((rc = mdb_del(txn, table_dbi(s, t), &k, NULL)) != 0) {
        st = commit_status(rc, err, errlen);
        goto out;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    st = commit_status(rc, err, errlen);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    cJSON_Delete(old);
    return st;
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
    if (mdb_cursor_open(txn, table_dbi(s, t), &c) != 0) {
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

/* --- seed import ------------------------------------------------------- */

/* One seed section: each record normalised and written as the admin API
 * would write it. Returns 0, or -1 with the message in err. */
static int import_section(store_t *s, MDB_txn *txn, store_table_t t, const cJSON *recs, const char *file,
                          const char *section, int (*normalise)(cJSON *, char *, size_t), char *err,
                          size_t errlen)
{
    char msg[512];
    cJSON *rec;
    int i = 0, st;
    cJSON_ArrayForEach(rec, recs) {
        if (normalise(rec, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "seed %s: %s[%d].%s", file, section, i, msg);
            return -1;
        }
        if ((st = put_in(s, txn, t, rec, NULL, msg, sizeof(msg))) != STORE_OK) {
            if (st < 0)
                commit_status(-st, msg, sizeof(msg));
            snprintf(err, errlen, "seed %s: %s[%d].%s", file, section, i, msg);
            return -1;
        }
        i++;
    }
    return 0;
}

int store_import_seed(store_t *s, const char *file, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = file_read(file, &len);
    cJSON *root = NULL, *rec;
    MDB_txn *txn = NULL;
    int rc = -1, mrc;

    if (text == NULL) {
        snprintf(err, errlen, "seed %s: %s", file, strerror(errno));
        return -1;
    }
    root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "seed %s: not a JSON object", file);
        goto out;
    }
    cJSON_ArrayForEach(rec, root) {
        if (strcmp(rec->string, "providers") != 0 && strcmp(rec->string, "routes") != 0 &&
            strcmp(rec->string, "routers") != 0) {
            snprintf(err, errlen, "seed %s: %s: unknown field", file, rec->string);
            goto out;
        }
        if (!cJSON_IsArray(rec)) {
            snprintf(err, errlen, "seed %s: %s: must be an array", file, rec->string);
            goto out;
        }
    }
    if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) {
        snprintf(err, errlen, "seed %s: %s", file, mdb_strerror(mrc));
        goto out;
    }
    /* providers and routers first: routes refer to them */
    if (import_section(s, txn, STORE_PROVIDERS, cJSON_GetObjectItemCaseSensitive(root, "providers"), file,
                       "providers", schema_provider_normalise, err, errlen) < 0 ||
        import_section(s, txn, STORE_ROUTERS, cJSON_GetObjectItemCaseSensitive(root, "routers"), file,
                       "routers", schema_router_normalise, err, errlen) < 0 ||
        import_section(s, txn, STORE_ROUTES, cJSON_GetObjectItemCaseSensitive(root, "routes"), file,
                       "routes", schema_route_normalise, err, errlen) < 0)
        goto out;
    mrc = mdb_txn_commit(txn);
    txn = NULL;
    if (mrc != 0) {
        snprintf(err, errlen, "seed %s: store write failed: %s", file, mdb_strerror(mrc));
        goto out;
    }
    rc = 0;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    cJSON_Delete(root);
    free(text);
    return rc;
}
