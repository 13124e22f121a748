/* store.h - the LMDB route store: providers, routes, routers, keys, tenants, budgets, persisted spend and usage rollups; one environment per process. */
#ifndef TURNOUT_STORE_H
#define TURNOUT_STORE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store_t;

typedef enum {
    STORE_PROVIDERS, STORE_ROUTES, STORE_ROUTERS, STORE_KEYS,
    STORE_BUDGETS,     /* SPEC 8; keyed by scope + name, so a name is unique within its scope */
    STORE_TENANTS,     /* SPEC 8's tenant rate limits; keyed by name, the tenant string keys carry */
    STORE__TABLES
} store_table_t;
typedef struct store_reader store_reader_t;

/* Opens (creating if needed) the environment in DIR. Returns NULL and a
 * message in err on failure. Runs mdb_reader_check. */
store_t *store_open(const char *dir, size_t map_mb, char *err, size_t errlen);
void store_close(store_t *s);

/* 1 when the store holds no provider and no route. */
int store_is_empty(store_t *s);

/* Validates and imports the seed file FILE (sections providers, routers,
 * routes, tenants, keys, budgets, imported in that order) in one write
 * transaction. A record replaces the stored one with its id, else the one
 * with its name (provider name, router slug, route scope + router + name,
 * tenant name, key secret hash, budget scope + name); others are created and
 * nothing is deleted. Secrets, which store_export leaves out, are kept
 * unless the record says otherwise: a provider record without api_key
 * keeps the stored key ("api_key": null removes it, a string replaces it),
 * and a key record without secret_hash keeps the hash of the stored key
 * with its id. So importing an export changes nothing. Returns 0, or -1
 * with a message naming the record and field. */
int store_import_seed(store_t *s, const char *file, char *err, size_t errlen);

/* A per-worker read handle: one read transaction, reset between lookups so it
 * never pins a snapshot across an event-loop turn. */
store_reader_t *store_reader_new(store_t *s);
void store_reader_free(store_reader_t *r);

/* Lookups. Each returns the record, read-only, or NULL when absent. The
 * reader keeps parsed records until the store changes (store.c), so *HOLD
 * is set to what keeps this one alive: give it back with store_release
 * when done with the record, on the reader's thread. */
typedef struct store_hold store_hold_t;
const cJSON *store_get_provider(store_reader_t *r, const char *name, store_hold_t **hold);
/* Route NAME in SCOPE ("global", "tenant:T", "key:K") and ROUTER ("" = none). */
const cJSON *store_get_route(store_reader_t *r, const char *scope, const char *router, const char *name,
                             store_hold_t **hold);
/* Router by slug. */
const cJSON *store_get_router(store_reader_t *r, const char *slug, store_hold_t **hold);
/* Key by the SHA-256 (64 lowercase hex digits) of its secret. */
const cJSON *store_get_key(store_reader_t *r, const char *hash_hex, store_hold_t **hold);
/* Tenant record by name (a key's "tenant"); NULL for a tenant without one
 * (it has no tenant limits). */
const cJSON *store_get_tenant(store_reader_t *r, const char *name, store_hold_t **hold);
/* Gives a looked-up record back (NULL is ignored). */
void store_release(store_hold_t *hold);
/* The generation of the reader's cache a looked-up record belongs to: the
 * same non-zero number for every record of one generation, never given to
 * another (of any reader, in this process); 0 for a record of its own (not
 * cached). With the record's address it names the record's contents, for
 * whatever a caller derives from a record once per generation. */
size_t store_hold_generation(const store_hold_t *hold);
/* A hold of its own for REC (owned; freed with the hold), so that records
 * made by the caller go back the same way; NULL when out of memory. */
store_hold_t *store_hold_own(cJSON *rec);

/* Calls FN for each pool (glob route) of ROUTER ("" = none), highest
 * priority first (ties in id order), with its scope, endpoint kind and
 * pattern (its name: store_get_route finds it), until FN returns non-zero.
 * Reads an index only: no route record is parsed, and FN must not use the
 * reader. */
typedef int (*store_glob_fn)(const char *scope, const char *endpoint, const char *pattern, void *arg);
void store_each_glob(store_reader_t *r, const char *router, store_glob_fn fn, void *arg);

/* Calls FN for every record of table T, each parsed; FN borrows the record. */
typedef void (*store_each_fn)(const cJSON *rec, void *arg);
void store_each(store_reader_t *r, store_table_t t, store_each_fn fn, void *arg);

/* --- admin writes and reads (the admin thread; each write is one durable
 * transaction: committed and synced before it returns) --- */

/* Results of admin calls, numerically the HTTP status the admin API answers. */
enum {
    STORE_OK = 200, STORE_CREATED = 201, STORE_INVALID = 400, STORE_NOT_FOUND = 404,
    STORE_CONFLICT = 409, STORE_FULL = 507, STORE_FAILED = 500,
    STORE_UNAVAILABLE = 503,   /* the store of record (cluster) cannot be reached */
};

/* Writes REC (already normalised by schema.c, carrying its id): a create when
 * OLD_ID is NULL, else a replacement of the record with that id (its name may
 * change). A route's primary_model / fallback_model are expanded into REC's
 * targets when it has none. Checks uniqueness (409), references (targets' providers and the
 * router must exist; a budget's scope key, route and provider must exist:
 * 400; a renamed provider or router must not be in use by a route or
 * budget: 409). Returns a STORE_* status with a message in err. */
int store_put(store_t *s, store_table_t t, cJSON *rec, const char *old_id, char *err, size_t errlen);

/* Deletes the record with ID; a provider or router still used by a route,
 * or a key, route or provider a budget's scope names, is not deleted
 * (409, the message naming the route or budget). A budget's persisted
 * spend ("b:ID") and a key's ("k:ID") go in the same transaction; a
 * tenant record's do not (its keys still name the tenant). */
int store_delete(store_t *s, store_table_t t, const char *id, char *err, size_t errlen);

/* Sets last_used_at to WHEN on the keys with the N ids IDS whose stored
 * last_used_at is before STALE (missing keys, and recent ones, are
 * skipped), in one transaction (on a cluster, through the store of record,
 * and not at all while it does not answer). Readers keep the records they
 * parsed across it (store.c): a key record's last_used_at may be older in
 * a reader's cache than in the store. */
void store_touch_keys(store_t *s, const char (*ids)[37], int n, const char *when, const char *stale);

/* The record with ID (parsed copy), or NULL. */
cJSON *store_find(store_t *s, store_table_t t, const char *id);

/* The route named NAME in SCOPE and ROUTER ("" = none), or NULL. */
cJSON *store_find_route(store_t *s, const char *scope, const char *router, const char *name);

/* The whole store in the seed format (providers, routers, routes, tenants,
 * keys, budgets; a budget's live spend is the ledger's, not part of it,
 * and neither are the usage rollups),
 * provider api_key values left out (keys carry their secret_hash, a
 * one-way digest, never the secret); NULL on failure. */
cJSON *store_export(store_t *s);

/* Appends to OUT up to LIMIT records whose key sorts after AFTER (NULL: from
 * the first) and for which KEEP (may be NULL) returns 1. When more remain,
 * writes the last returned key to NEXT (up to 512 bytes) and sets *NEXT_LEN;
 * else *NEXT_LEN = 0. Returns 0 or -1. */
typedef int (*store_keep_fn)(const cJSON *rec, void *arg);
int store_list(store_t *s, store_table_t t, const void *after, size_t after_len, int limit,
               store_keep_fn keep, void *arg, cJSON *out, char *next, size_t *next_len);

/* --- a store of record behind this one (SPEC 10: a cluster's etcd) ---
 *
 * With a remote set, this store is a mirror: store_put, store_delete and
 * store_import_seed check a write here, against the mirror, exactly as
 * they would a local one, but instead of committing it hand its changes
 * (a plan) to the remote, which commits them there only if the store of
 * record has not changed since the revision the mirror was at. On success
 * the changes are applied to the mirror at once (a node reads its own
 * writes); when the store of record moved on, the mirror catches up and
 * the write is checked again. Every other node's mirror gets the changes
 * through store_mirror_*, in the remote's order, without checks. */

/* One record's change: its table, id and new text (NULL: deleted). */
typedef struct store_change {
    store_table_t t;
    char id[40];
    char *json;
    size_t len;
} store_change_t;

typedef struct store_plan {
    int64_t revision;            /* the mirror's, which the write was checked against */
    int n, cap;
    store_change_t *v;
    int *index;                  /* (store.c's: V's positions by table and id, open addressing) */
    int nindex;
} store_plan_t;

typedef struct store_remote {
    /* Commits PLAN unless the store of record changed since plan->revision.
     * Returns 0 with *REV the revision made, 1 when it had changed (*REV:
     * the revision the mirror must reach before the write is tried again),
     * -1 when it cannot be reached, -2 when it refuses the write (too big
     * for it, say); the message in err. */
    int (*commit)(void *arg, const store_plan_t *plan, int64_t *rev, char *err, size_t errlen);
    /* Brings the mirror up to at least REV; 0, or -1 (message in err). */
    int (*catch_up)(void *arg, int64_t rev, char *err, size_t errlen);
    /* 1 while it answers, as far as is known: what is only worth writing
     * then (store_touch_keys) is not tried otherwise. */
    int (*up)(void *arg);
    void *arg;
} store_remote_t;

void store_set_remote(store_t *s, const store_remote_t *remote);

/* The table named NAME (its seed section), or -1. */
int store_table_of(const char *name, size_t len);
const char *store_table_name(store_table_t t);

/* Applying changes to the mirror: one write transaction. FULL empties the
 * record tables first (a snapshot follows). */
typedef struct store_mirror store_mirror_t;
store_mirror_t *store_mirror_begin(store_t *s, int full);
/* The revision the mirror had applied when M began (0: none). */
int64_t store_mirror_applied(const store_mirror_t *m);
/* Puts the record ID of table T with text JSON (LEN bytes), replacing the
 * record with that id and any other holding its name; JSON NULL deletes
 * it (and its persisted spend). Returns 0, or -1 (M must be aborted). */
int store_mirror_put(store_mirror_t *m, store_table_t t, const char *id, const char *json, size_t len);
/* Records REVISION as applied and commits; 0 or -1. Frees M either way. */
int store_mirror_commit(store_mirror_t *m, int64_t revision);
void store_mirror_abort(store_mirror_t *m);
/* The revision the mirror has applied (0: none yet). */
int64_t store_mirror_revision(store_t *s);

/* --- persisted spend (SPEC 8: spend survives restarts) --- */

/* One ledger entry's settled spend, as persisted: its name ("b:ID", "k:ID", "t:NAME"), and per counter (USD in nano-dollars, tokens, requests) the window tag and amount. */
typedef struct store_spend {
    char name[160];
    int64_t tag[3];
    int64_t spent[3];
} store_spend_t;
/* Writes N records in one durable transaction (replacing each name's). Returns 0 or -1. */
int store_put_spend(store_t *s, const store_spend_t *v, int n);
/* Calls FN for every persisted record (start-up restore). */
void store_each_spend(store_t *s, void (*fn)(const store_spend_t *v, void *arg), void *arg);
/* Deletes the records whose name is NAME (a deleted budget's). */
int store_delete_spend(store_t *s, const char *name);

/* --- usage rollups (SPEC 8: GET /v1/usage) --- */

/* One hour of usage for one (key, tenant, route, provider, model); strings "" when none. */
typedef struct store_usage {
    int64_t hour;                 /* epoch seconds of the hour's start (UTC) */
    char key_id[40], tenant[132], route[600], provider[132], model[600];
    int64_t requests, prompt_tokens, completion_tokens, cost_nusd;
} store_usage_t;
/* Adds N rows to the rollups (summing into existing ones) in one durable transaction. Returns 0 or -1. */
int store_add_usage(store_t *s, const store_usage_t *rows, int n);
/* Deletes rollup rows of hours before BEFORE (epoch seconds). Returns the count deleted or -1. */
long store_prune_usage(store_t *s, int64_t before);

/* What store_usage_report groups by (GROUP_MASK bits). */
enum {
    STORE_BY_KEY = 1, STORE_BY_TENANT = 2, STORE_BY_ROUTE = 4, STORE_BY_PROVIDER = 8, STORE_BY_MODEL = 16,
};
/* At most this many rows in one report. */
#define STORE_USAGE_REPORT_MAX 100000

/* The rollups of the hours in [FROM rounded down to its hour, TO), summed
 * per bucket (an hour, or a UTC day when DAY_BUCKETS) and per the fields
 * GROUP_MASK names (none: one total per bucket), only rows of tenant
 * TENANT_ONLY unless it is NULL. Returns a new array (the caller frees) of
 * {"start", "end" (RFC 3339 UTC), "key_id", "tenant", "route",
 * "provider", "model" (those grouped by; null for ""), "requests",
 * "prompt_tokens", "completion_tokens", "cost_usd" (exact, 9 decimals;
 * these four are raw numbers, cJSON_Raw with the text in valuestring)},
 * sorted by start, then the group fields in that order (byte order);
 * buckets without usage are left out. NULL on failure, with errno E2BIG
 * when the answer would exceed STORE_USAGE_REPORT_MAX rows. */
cJSON *store_usage_report(store_t *s, int64_t from, int64_t to, unsigned group_mask, int day_buckets,
                          const char *tenant_only);
#endif
