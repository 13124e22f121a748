/* resolve.h - turns (endpoint kind, model name, router, caller) into an ordered list of upstream candidates. */
#ifndef TURNOUT_RESOLVE_H
#define TURNOUT_RESOLVE_H

#include "schema.h"
#include "store.h"
#include "tally.h"
#include "usage.h"

#define RESOLVE_MAX_CANDIDATES 64

typedef enum {
    RESOLVE_OK = 0,
    RESOLVE_NOT_FOUND,       /* 404 model_not_found */
    RESOLVE_WRONG_ENDPOINT,  /* 400 wrong_endpoint */
    RESOLVE_DISABLED,        /* 503 route_disabled */
    RESOLVE_NO_ROUTER,       /* 404 router_not_found */
} resolve_status_t;

/* What is asked, by whom. Strings are borrowed; "" for none. */
typedef struct resolve_in {
    endpoint_t ep;
    const char *model;
    const char *router;
    const char *key_id, *tenant;   /* the caller's key: scopes key:ID, tenant:T */
    const char *sticky;            /* A/B key: the body's user, x-turnout-ab-key, else the key id */
    /* The request's body, read only when a route's preferences need it
     * (require_parameters): JSON that jscan_body accepted, or a multipart
     * form when form_boundary is set. Borrowed; NULL for none. */
    const char *body;
    size_t body_len;
    const char *form_boundary;
    /* What-if (the dry-run); NULL for a real request. params: the request's
     * field names to assume instead of reading a body (array of strings).
     * route: the route to use whatever the model would reach (borrowed,
     * alive until resolve_free). prefs: preference overrides merged over
     * the route's (an override key replaces the route's; null removes it). */
    const cJSON *params, *route, *prefs;
    int dry;                       /* a dry-run: no round-robin position is used up */
    int privileged;                /* an admin key (or the bootstrap key): every router, whatever its namespaces */
} resolve_in_t;

/* One upstream to try. Strings are borrowed from the resolution's records. */
/* A record's "timeouts" object read once; NAN where a field is absent. */
typedef struct resolve_timeouts {
    double first_byte_s, idle_s, connect_ms, total_s;
} resolve_timeouts_t;

typedef struct candidate {
    const char *provider;     /* provider name */
    const char *base_url;     /* "http://host:port/v1", no trailing slash */
    const char *api_key;      /* the provider key stored in the store, or NULL */
    const char *api_key_env;  /* else the env var holding it, or NULL */
    const cJSON *headers;     /* extra upstream headers (object) or NULL */
    const char *model;        /* upstream model name (after mapping; the asked one, passed through) */
    const cJSON *target;      /* the route target it came from, or NULL */
    const cJSON *prov;        /* the provider record */
    /* read from the records once, when the candidate is made: the request
     * path reads these fields instead of looking them up by name */
    const char *protocol;     /* "openai" (the default), "anthropic", "azure" */
    const char *api_version;  /* azure's (its default when the record has none) */
    const cJSON *default_max_tokens;   /* the provider's (a number), or NULL */
    resolve_timeouts_t to;    /* the provider's timeouts */
    int prov_cap, target_cap; /* max_in_flight of the provider and the target; 0: none */
    size_t gen;               /* the store generation of its provider record (0: a record of its own) */
    int priced;               /* prices holds its model's prices (resolve_prices) */
    usage_prices_t prices;
} candidate_t;

/* A target left out, and why: "target_disabled", "provider_disabled",
 * "provider_missing", "route_disabled" (the first group of a disabled
 * route), "filtered" (DETAIL names the preference: only, ignore,
 * data_collection, data_residency, eu_owned, max_retention_days,
 * quantizations, require_parameters), "no_fallbacks". */
typedef struct dropped {
    const char *provider, *model;
    const char *state, *detail;
} dropped_t;

/* The result of one resolution; owns the records it read. */
typedef struct resolution {
    resolve_status_t status;
    const char *route;        /* matched route name, NULL for direct/alias use */
    const char *rule;         /* "route", "exact", "glob", "provider_model", "bare_alias", "explicit" (in->route) */
    tally_t *variant_tally;   /* the A/B variant's counters, or NULL */
    int ncand;
    int ndropped;
    const cJSON *route_rec;
    store_hold_t *route_hold;
    const cJSON *prefs;       /* the route's preferences in force (with in->prefs merged in), or NULL */
    cJSON *prefs_own;         /* that merge, when there was one */
    int nrec;
    /* the matched route's fields the request path reads (as route_rec has them) */
    const char *route_id;     /* "" for none */
    resolve_timeouts_t to;    /* its timeouts; all NAN for none */
    int route_cap;            /* its max_in_flight; 0: none */
    int max_429_retries;      /* its retry settings; -1 and NAN when absent */
    double retry_after_cap_s;
    /* resolve_clear zeroes what is above and empties the strings; the
     * arrays' entries are written before they are read (up to the counts) */
    char why[320];            /* how it matched, for people (the dry-run's only: "" for a real request's route or pool) */
    char variant[128];        /* the A/B variant picked, "" for none */
    candidate_t cand[RESOLVE_MAX_CANDIDATES];
    dropped_t dropped[RESOLVE_MAX_CANDIDATES];
    store_hold_t *holds[RESOLVE_MAX_CANDIDATES];   /* keep the candidates' provider records alive */
} resolution_t;

/* An empty resolution (what resolve_model starts from): a few dozen bytes
 * written, not the 7 KB of the arrays. */
void resolve_clear(resolution_t *res);

/* Resolves IN->model as SPEC 2 orders it: route::NAME; an exact route name
 * (scopes key:ID, tenant:T, global); glob pools by priority; PROVIDER/MODEL;
 * bare aliases. A route's targets are filtered by its provider preferences
 * and ordered by its strategy. Always call resolve_free afterwards. */
void resolve_model(store_reader_t *r, const resolve_in_t *in, resolution_t *out);

void resolve_free(resolution_t *res);

/* The prices of candidate C's model (USD per 1M tokens, -1 where the
 * provider's model entry sets none; all -1 when it has no entry), read
 * the first time they are asked for and kept in C. */
const usage_prices_t *resolve_prices(candidate_t *c);

/* Whether ROUTER (a router record) lets a caller of TENANT ("" for none)
 * in: it lists no namespaces, or TENANT is one of them, or PRIVILEGED. */
int resolve_router_open(const cJSON *router, const char *tenant, int privileged);

/* The A/B label of a target: its "variant", else "PROVIDER/MODEL" (a star for
 * MODEL when the target passes the asked model through). */
const char *resolve_variant_label(const cJSON *target, char *buf, size_t cap);

#endif
