/* store.c - LMDB environment, seed import and the workers' read path.
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

/* Checks that every target of route R names a provider of the seed. */
static int check_targets(const cJSON *r, const cJSON *providers, char *err, size_t errlen)
{
    const cJSON *t;
    int i = 0;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(r, "targets")) {
        const char *pn = str_or(t, "provider", "");
        const cJSON *p;
        int found = 0;
        cJSON_ArrayForEach(p, providers)
            if (strcmp(str_or(p, "name", ""), pn) == 0)
                found = 1;
        if (!found) {
            snprintf(err, errlen, "targets[%d].provider: no provider named \"%s\"", i, pn);
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
    char msg[384], key[1024];
    cJSON *root = NULL, *rec;
    const cJSON *providers, *routes, *routers;
    MDB_txn *txn = NULL;
    int rc = -1, i, mrc;

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
    providers = cJSON_GetObjectItemCaseSensitive(root, "providers");
    routes = cJSON_GetObjectItemCaseSensitive(root, "routes");
    routers = cJSON_GetObjectItemCaseSensitive(root, "routers");
    if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) {
        snprintf(err, errlen, "seed %s: %s", file, mdb_strerror(mrc));
        goto out;
    }
    i = 0;
    cJSON_ArrayForEach(rec, providers) {
        const char *name;
        MDB_val k, v;
        if (schema_provider_normalise(rec, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "seed %s: providers[%d].%s", file, i, msg);
            goto out;
        }
        name = str_or(rec, "name", "");
        k.mv_data = (void *)name;
        k.mv_size = strlen(name);
        if (mdb_get(txn, s->providers, &k, &v) == 0) {
            snprintf(err, errlen, "seed %s: providers[%d].name: duplicate provider \"%s\"", file, i, name);
            goto out;
        }
        if ((mrc = put_json(txn, s->providers, name, strlen(name), rec)) != 0)
            goto dberr;
        i++;
    }
    i = 0;
    cJSON_ArrayForEach(rec, routers) {
        const char *slug;
        if (schema_router_normalise(rec, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "seed %s: routers[%d].%s", file, i, msg);
            goto out;
        }
        slug = str_or(rec, "slug", "");
        if ((mrc = put_json(txn, s->routers, slug, strlen(slug), rec)) != 0)
            goto dberr;
        i++;
    }
    i = 0;
    cJSON_ArrayForEach(rec, routes) {
        const char *id;
        MDB_val k, v;
        size_t kl;
        if (schema_route_normalise(rec, msg, sizeof(msg)) < 0 ||
            check_targets(rec, providers, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "seed %s: routes[%d].%s", file, i, msg);
            goto out;
        }
        const char *router = str_or(rec, "router", "");
        if (*router != '\0') {
            k.mv_data = (void *)router;
            k.mv_size = strlen(router);
            if (mdb_get(txn, s->routers, &k, &v) != 0) {
                snprintf(err, errlen, "seed %s: routes[%d].router: no router \"%s\"", file, i, router);
                goto out;
            }
        }
        kl = name_key(key, sizeof(key), str_or(rec, "scope", "global"), router,
                      str_or(rec, "name", ""));
        k.mv_data = key;
        k.mv_size = kl;
        if (mdb_get(txn, s->route_names, &k, &v) == 0) {
            snprintf(err, errlen, "seed %s: routes[%d].name: duplicate route \"%s\" in this scope and router",
                     file, i, str_or(rec, "name", ""));
            goto out;
        }
        id = str_or(rec, "id", "");
        v.mv_data = (void *)id;
        v.mv_size = strlen(id);
        if ((mrc = mdb_put(txn, s->route_names, &k, &v, 0)) != 0 ||
            (mrc = put_json(txn, s->routes, id, strlen(id), rec)) != 0)
            goto dberr;
        i++;
    }
    mrc = mdb_txn_commit(txn);
    txn = NULL;
    if (mrc != 0)
        goto dberr;
    rc = 0;
    goto out;
dberr:
    snprintf(err, errlen, "seed %s: store write failed: %s", file, mdb_strerror(mrc));
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    cJSON_Delete(root);
    free(text);
    return rc;
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
