/* resolve.c - resolution order of SPEC 2: route::NAME, exact name, PROVIDER/MODEL, bare alias. */
#include "resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *str(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int flag(const cJSON *obj, const char *name, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static double num(const cJSON *obj, const char *name, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* Keeps provider record P alive in RES and appends a candidate for MODEL. */
static void add_candidate(resolution_t *res, cJSON *p, const char *model)
{
    candidate_t *c;
    if (res->ncand >= RESOLVE_MAX_CANDIDATES || res->nrec >= RESOLVE_MAX_CANDIDATES) {
        cJSON_Delete(p);
        return;
    }
    res->recs[res->nrec++] = p;
    c = &res->cand[res->ncand++];
    c->provider = str(p, "name");
    c->base_url = str(p, "base_url");
    c->api_key = str(p, "api_key");
    c->api_key_env = str(p, "api_key_env");
    c->headers = cJSON_GetObjectItemCaseSensitive(p, "headers");
    c->model = model;
}

static const cJSON *provider_model(const cJSON *p, const char *model)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "models")) {
        const char *n = str(m, "name");
        if (n != NULL && strcmp(n, model) == 0 && flag(m, "enabled", 1))
            return m;
    }
    return NULL;
}

typedef struct tref {
    const cJSON *t;
    double order;
    int pos;
} tref_t;

static int by_order(const void *a, const void *b)
{
    const tref_t *x = a, *y = b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return x->pos - y->pos;   /* stable: list position breaks ties */
}

/* Builds candidates from the route's enabled targets in `order`. A disabled
 * route skips its first target group (the lowest order) so callers land on
 * the fallbacks (TruLayer's incident switch). */
static void route_candidates(store_reader_t *r, resolution_t *res)
{
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(res->route_rec, "targets"), *t;
    tref_t refs[RESOLVE_MAX_CANDIDATES];
    int n = 0, enabled = flag(res->route_rec, "enabled", 1);
    double first_order = 0;

    cJSON_ArrayForEach(t, targets) {
        if (n == RESOLVE_MAX_CANDIDATES)
            break;
        refs[n].t = t;
        refs[n].order = num(t, "order", n);
        refs[n].pos = n;
        n++;
    }
    qsort(refs, (size_t)n, sizeof(refs[0]), by_order);
    if (n > 0)
        first_order = refs[0].order;
    for (int i = 0; i < n; i++) {
        const char *pn = str(refs[i].t, "provider"), *model = str(refs[i].t, "model");
        cJSON *p;
        if (!enabled && refs[i].order == first_order)
            continue;
        if (!flag(refs[i].t, "enabled", 1) || pn == NULL || model == NULL)
            continue;
        p = store_get_provider(r, pn);
        if (p == NULL || !flag(p, "enabled", 1)) {
            cJSON_Delete(p);
            continue;
        }
        add_candidate(res, p, model);
    }
    if (res->ncand == 0 && !enabled)
        res->status = RESOLVE_DISABLED;
}

/* The caller, for scoped lookups. */
typedef struct caller {
    const char *key_id, *tenant;   /* "" for none */
} caller_t;

/* Looks the route NAME up, most specific scope first (the caller's key,
 * its tenant, global), and fills RES; returns 1 if a route was found. */
static int try_route(store_reader_t *r, endpoint_t ep, const char *name, const char *router,
                     const caller_t *who, resolution_t *res)
{
    char scope[200];
    const char *kind;
    if (*who->key_id) {
        snprintf(scope, sizeof(scope), "key:%s", who->key_id);
        res->route_rec = store_get_route(r, scope, router, name);
    }
    if (res->route_rec == NULL && *who->tenant) {
        snprintf(scope, sizeof(scope), "tenant:%s", who->tenant);
        res->route_rec = store_get_route(r, scope, router, name);
    }
    if (res->route_rec == NULL)
        res->route_rec = store_get_route(r, "global", router, name);
    if (res->route_rec == NULL)
        return 0;
    res->route = str(res->route_rec, "name");
    kind = str(res->route_rec, "endpoint");
    if (kind != NULL && schema_endpoint_parse(kind) != (int)ep) {
        res->status = RESOLVE_WRONG_ENDPOINT;
        return 1;
    }
    route_candidates(r, res);
    return 1;
}

typedef struct alias_scan {
    resolution_t *res;
    const char *model;
} alias_scan_t;

static void on_provider(const cJSON *p, void *arg)
{
    alias_scan_t *a = arg;
    const cJSON *m;
    if (!flag(p, "enabled", 1))
        return;
    m = provider_model(p, a->model);
    if (m != NULL && flag(m, "bare_alias", 0)) {
        cJSON *copy = cJSON_Duplicate(p, 1);
        if (copy != NULL)
            add_candidate(a->res, copy, str(provider_model(copy, a->model), "name"));
    }
}

void resolve_model(store_reader_t *r, endpoint_t ep, const char *model, const char *router,
                   const char *key_id, const char *tenant, resolution_t *res)
{
    const caller_t who = { key_id, tenant };
    const char *slash;
    memset(res, 0, sizeof(*res));
    res->status = RESOLVE_OK;

    if (*router != '\0') {
        cJSON *rt = store_get_router(r, router);
        int active = rt != NULL && flag(rt, "active", 1);
        cJSON_Delete(rt);
        if (!active) {
            res->status = RESOLVE_NO_ROUTER;
            return;
        }
    }
    if (strncmp(model, "route::", 7) == 0) {
        res->rule = "route";
        if (!try_route(r, ep, model + 7, router, &who, res))
            res->status = RESOLVE_NOT_FOUND;
        return;
    }
    res->rule = "exact";
    if (try_route(r, ep, model, router, &who, res))
        return;
    if (*router != '\0') {           /* a router serves only its own routes */
        res->status = RESOLVE_NOT_FOUND;
        return;
    }
    if ((slash = strchr(model, '/')) != NULL && slash != model && slash[1] != '\0') {
        char pname[128];
        size_t n = (size_t)(slash - model);
        if (n < sizeof(pname)) {
            cJSON *p;
            memcpy(pname, model, n);
            pname[n] = '\0';
            p = store_get_provider(r, pname);
            if (p != NULL && flag(p, "enabled", 1) && provider_model(p, slash + 1) != NULL) {
                res->rule = "provider_model";
                add_candidate(res, p, str(provider_model(p, slash + 1), "name"));
                return;
            }
            cJSON_Delete(p);
        }
    }
    alias_scan_t a = { res, model };
    store_each(r, STORE_PROVIDERS, on_provider, &a);
    if (res->ncand > 0) {
        res->rule = "bare_alias";
        return;
    }
    res->rule = NULL;
    res->status = RESOLVE_NOT_FOUND;
}

void resolve_free(resolution_t *res)
{
    for (int i = 0; i < res->nrec; i++)
        cJSON_Delete(res->recs[i]);
    cJSON_Delete(res->route_rec);
    res->nrec = 0;
    res->ncand = 0;
    res->route_rec = NULL;
}
