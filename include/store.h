/* store.h - the LMDB route store: providers, routes, routers; one environment per process. */
#ifndef TURNOUT_STORE_H
#define TURNOUT_STORE_H

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct store store_t;
typedef struct store_reader store_reader_t;

/* Opens (creating if needed) the environment in DIR. Returns NULL and a
 * message in err on failure. Runs mdb_reader_check. */
store_t *store_open(const char *dir, size_t map_mb, char *err, size_t errlen);
void store_close(store_t *s);

/* 1 when the store holds no provider and no route. */
int store_is_empty(store_t *s);

/* Validates and imports the seed file FILE in one write transaction.
 * Returns 0, or -1 with a message naming the record and field. */
int store_import_seed(store_t *s, const char *file, char *err, size_t errlen);

/* A per-worker read handle: one read transaction, reset between lookups so it
 * never pins a snapshot across an event-loop turn. */
store_reader_t *store_reader_new(store_t *s);
void store_reader_free(store_reader_t *r);

/* Lookups. Each returns a parsed copy the caller frees with cJSON_Delete, or
 * NULL when absent. */
cJSON *store_get_provider(store_reader_t *r, const char *name);
/* Route NAME in SCOPE ("global", "tenant:T", "key:K") and ROUTER ("" = none). */
cJSON *store_get_route(store_reader_t *r, const char *scope, const char *router, const char *name);
/* Router by slug. */
cJSON *store_get_router(store_reader_t *r, const char *slug);

/* Calls FN for every record of a table ("providers", "routes", "routers"),
 * each parsed; FN borrows the record. */
typedef void (*store_each_fn)(const cJSON *rec, void *arg);
void store_each(store_reader_t *r, const char *table, store_each_fn fn, void *arg);

#endif
