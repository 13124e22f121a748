/* resolve.h - turns (endpoint kind, model name, router) into an ordered list of upstream candidates. */
#ifndef TURNOUT_RESOLVE_H
#define TURNOUT_RESOLVE_H

#include "schema.h"
#include "store.h"

#define RESOLVE_MAX_CANDIDATES 64

typedef enum {
    RESOLVE_OK = 0,
    RESOLVE_NOT_FOUND,       /* 404 model_not_found */
    RESOLVE_WRONG_ENDPOINT,  /* 400 wrong_endpoint */
    RESOLVE_DISABLED,        /* 503 route_disabled */
    RESOLVE_NO_ROUTER,       /* 404 router_not_found */
} resolve_status_t;

/* One upstream to try. Strings are borrowed from the resolution's records. */
typedef struct candidate {
    const char *provider;     /* provider name */
    const char *base_url;     /* "http://host:port/v1", no trailing slash */
    const char *api_key;      /* the provider key stored in the store, or NULL */
    const char *api_key_env;  /* else the env var holding it, or NULL */
    const cJSON *headers;     /* extra upstream headers (object) or NULL */
    const char *model;        /* upstream model name (after mapping) */
} candidate_t;

/* The result of one resolution; owns the records it read. */
typedef struct resolution {
    resolve_status_t status;
    const char *route;        /* matched route name, NULL for direct/alias use */
    const char *rule;         /* which rule matched: "route", "exact", "provider_model", "bare_alias" */
    int ncand;
    candidate_t cand[RESOLVE_MAX_CANDIDATES];
    cJSON *route_rec;
    int nrec;
    cJSON *recs[RESOLVE_MAX_CANDIDATES];   /* provider records the candidates borrow from */
} resolution_t;

/* Resolves MODEL for endpoint EP within ROUTER ("" = none) for the caller
 * with KEY_ID and TENANT ("" for none), SPEC 2 steps 1, 2, 4 and 5 (glob
 * pools come with the resolver issue). Route names are looked up in the
 * scopes key:KEY_ID, tenant:TENANT, global, in that order. Always call
 * resolve_free afterwards. */
void resolve_model(store_reader_t *r, endpoint_t ep, const char *model, const char *router,
                   const char *key_id, const char *tenant, resolution_t *out);

void resolve_free(resolution_t *res);

#endif
