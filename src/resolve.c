/* resolve.c - resolution order of SPEC 2, provider preferences, and the routing strategies.
 *
 * Nothing is cached: each request reads the store through the worker's
 * snapshot, so an admin write is seen by the next request. Exact names are
 * one B-tree lookup per scope; glob pools come from an index ordered by
 * priority (store_each_glob) so a miss costs one pattern match per pool and
 * no record parse. Shared state (round-robin positions, A/B counts, observed
 * latency) lives in the lock-free tally table. */
#include "resolve.h"
#include "jscan.h"
#include "multipart.h"
#include "residency.h"
#include "text.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

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

/* 1 when array ARR holds the string S. */
static int listed(const cJSON *arr, const char *s)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, arr)
        if (cJSON_IsString(v) && strcmp(v->valuestring, s) == 0)
            return 1;
    return 0;
}

/* A per-thread xorshift generator, seeded once from the kernel. */
static double uniform(void)
{
    static _Thread_local uint64_t x;
    while (x == 0 && getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x))
        ;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return (double)(x >> 11) / 9007199254740992.0;   /* [0, 1) */
}

const char *resolve_variant_label(const cJSON *target, char *buf, size_t cap)
{
    const char *v = schema_str(target, "variant", NULL);
    if (v != NULL)
        return v;
    text_cat(buf, cap, schema_str(target, "provider", "?"), "/", schema_str(target, "model", "*"), NULL);
    return buf;
}

int resolve_router_open(const cJSON *router, const char *tenant, int privileged)
{
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(router, "namespaces");
    return privileged || cJSON_GetArraySize(ns) == 0 || (*tenant && listed(ns, tenant));
}

/* The upstream model target T gets for the ASKED name: the first source of
 * its model_map that names or matches ASKED (Tyk's model mappings), else
 * its model, else ASKED itself (a pool's pass-through). */
static const char *upstream_model(const cJSON *t, const char *asked)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(t, "model_map")) {
        if (cJSON_IsString(m) && (strcmp(m->string, asked) == 0 ||
                                  (schema_is_glob(m->string) && fnmatch(m->string, asked, 0) == 0)))
            return m->valuestring;
    }
    return schema_str(t, "model", asked);
}

/* The "timeouts" object of REC, NAN for each field it does not give. */
static resolve_timeouts_t timeouts_of(const cJSON *rec)
{
    resolve_timeouts_t t = { NAN, NAN, NAN, NAN };
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(rec, "timeouts")) {
        if (!cJSON_IsNumber(f))
            continue;
        if (strcmp(f->string, "first_byte_s") == 0)
            t.first_byte_s = f->valuedouble;
        else if (strcmp(f->string, "idle_s") == 0)
            t.idle_s = f->valuedouble;
        else if (strcmp(f->string, "connect_ms") == 0)
            t.connect_ms = f->valuedouble;
        else if (strcmp(f->string, "total_s") == 0)
            t.total_s = f->valuedouble;
    }
    return t;
}

/* max_in_flight of REC; 0 when it sets none. */
static int cap_of(const cJSON *rec)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, "max_in_flight");
    return cJSON_IsNumber(v) && v->valuedouble >= 1 ? (int)v->valuedouble : 0;
}

/* A provider's fields every candidate of it carries, read from its record
 * once per store generation: a worker's records do not change within one,
 * and finding each of them by name took some 2,500 instructions per
 * candidate. Kept per thread (each has its own store reader), one entry
 * per slot of the record's address; a collision reads the record again. */
typedef struct prov_view {
    size_t gen;                    /* store_hold_generation of REC's hold; 0: empty */
    const cJSON *rec;
    const char *name, *base_url, *api_key, *api_key_env, *protocol, *api_version;
    const cJSON *headers, *default_max_tokens;
    resolve_timeouts_t to;
    int cap, enabled;
} prov_view_t;

#define PROV_VIEWS 64
static _Thread_local prov_view_t prov_views[PROV_VIEWS];

static void prov_read(prov_view_t *v, const cJSON *p)
{
    v->name = schema_str(p, "name", NULL);
    v->base_url = schema_str(p, "base_url", NULL);
    v->api_key = schema_str(p, "api_key", NULL);
    v->api_key_env = schema_str(p, "api_key_env", NULL);
    v->headers = cJSON_GetObjectItemCaseSensitive(p, "headers");
    v->protocol = schema_str(p, "protocol", "openai");
    v->api_version = schema_str(p, "api_version", "2024-10-21");
    v->default_max_tokens = cJSON_GetObjectItemCaseSensitive(p, "default_max_tokens");
    if (!cJSON_IsNumber(v->default_max_tokens))
        v->default_max_tokens = NULL;
    v->to = timeouts_of(p);
    v->cap = cap_of(p);
    v->enabled = flag(p, "enabled", 1);
}

/* Whether a view slot (its GEN and REC) must be read for REC of generation
 * GEN (0: a record of its own, read every time); the slot is then REC's. */
static int view_stale(size_t *slot_gen, const cJSON **slot_rec, const cJSON *rec, size_t gen)
{
    if (gen != 0 && *slot_gen == gen && *slot_rec == rec)
        return 0;
    *slot_gen = gen;
    *slot_rec = rec;
    return 1;
}

#define VIEW_SLOT(views, rec) (&(views)[((uintptr_t)(rec) >> 4) % (sizeof(views) / sizeof((views)[0]))])

/* P's view: the thread's, or read into SCRATCH for a record of its own. */
static const prov_view_t *prov_view(const cJSON *p, const store_hold_t *hold, prov_view_t *scratch)
{
    size_t gen = store_hold_generation(hold);
    prov_view_t *v = gen != 0 ? VIEW_SLOT(prov_views, p) : scratch;
    if (view_stale(&v->gen, &v->rec, p, gen))
        prov_read(v, p);
    return v;
}

/* Keeps provider record P (and HOLD, what keeps it alive) in RES and
 * appends a candidate for MODEL. */
static candidate_t *add_candidate(resolution_t *res, const cJSON *p, store_hold_t *hold, const char *model,
                                  const cJSON *target, int target_cap)
{
    prov_view_t scratch;
    const prov_view_t *v;
    candidate_t *c;
    if (res->ncand >= RESOLVE_MAX_CANDIDATES || res->nrec >= RESOLVE_MAX_CANDIDATES) {
        store_release(hold);
        return NULL;
    }
    v = prov_view(p, hold, &scratch);
    res->holds[res->nrec++] = hold;
    c = &res->cand[res->ncand++];
    c->provider = v->name;
    c->base_url = v->base_url;
    c->api_key = v->api_key;
    c->api_key_env = v->api_key_env;
    c->headers = v->headers;
    c->model = model;
    c->target = target;
    c->prov = p;
    c->protocol = v->protocol;
    c->api_version = v->api_version;
    c->default_max_tokens = v->default_max_tokens;
    c->to = v->to;
    c->prov_cap = v->cap;
    c->target_cap = target_cap;
    c->gen = v == &scratch ? 0 : v->gen;
    c->priced = 0;
    return c;
}

static void drop(resolution_t *res, const char *provider, const char *model, const char *state, const char *detail)
{
    if (res->ndropped < RESOLVE_MAX_CANDIDATES)
        res->dropped[res->ndropped++] = (dropped_t){ provider, model, state, detail };
}

static const cJSON *provider_model(const cJSON *p, const char *model)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "models")) {
        const char *n = schema_str(m, "name", NULL);
        if (n != NULL && strcmp(n, model) == 0 && flag(m, "enabled", 1))
            return m;
    }
    return NULL;
}

/* --- provider preferences ---------------------------------------------- */

#define MAX_PARAMS 64
#define PARAM_NAME_MAX 64       /* schema.c's bound on a supported_parameters entry */

/* The request's parameters for require_parameters, read from the body
 * the first time a candidate needs them (never for routes that do not ask). */
typedef struct params {
    int read;                   /* 0 until read_params ran */
    int n;
    int undeclarable;           /* a parameter no model can declare: too long, too many, or unreadable */
    char name[MAX_PARAMS][PARAM_NAME_MAX + 1];
} params_t;

/* Request fields that are not parameters: the model, the content asked
 * about (each endpoint's required input), how the answer is delivered, and
 * the end-user id every provider accepts. Everything else is a parameter. */
static const char *const not_params[] = {
    "model", "messages", "prompt", "input", "voice", "file", "stream", "stream_options", "user", NULL,
};

static void add_param(params_t *ps, const char *name, size_t len)
{
    for (const char *const *n = not_params; *n; n++)
        if (strlen(*n) == len && memcmp(*n, name, len) == 0)
            return;
    for (int i = 0; i < ps->n; i++)
        if (strlen(ps->name[i]) == len && memcmp(ps->name[i], name, len) == 0)
            return;
    if (len > PARAM_NAME_MAX || ps->n == MAX_PARAMS) {
        ps->undeclarable = 1;
        return;
    }
    memcpy(ps->name[ps->n], name, len);
    ps->name[ps->n++][len] = '\0';
}

/* The dry-run's assumed names, else the JSON body's top-level keys, else
 * the form's field names ("timestamp_granularities[]" is the parameter
 * timestamp_granularities). */
static void read_params(const resolve_in_t *in, params_t *ps)
{
    char name[PARAM_NAME_MAX + 8];
    size_t pos = 0, off, len;
    const cJSON *v;
    int rc;
    ps->read = 1;
    ps->n = 0;
    ps->undeclarable = 0;
    if (in->params != NULL) {
        cJSON_ArrayForEach(v, in->params)
            if (cJSON_IsString(v))
                add_param(ps, v->valuestring, strlen(v->valuestring));
    } else if (in->body != NULL && in->form_boundary != NULL) {
        while ((rc = multipart_next_name(in->body, in->body_len, in->form_boundary, &pos, name, sizeof(name))) == 1) {
            len = strlen(name);
            if (len > 2 && strcmp(name + len - 2, "[]") == 0)
                len -= 2;
            add_param(ps, name, len);
        }
        ps->undeclarable |= rc < 0;
    } else if (in->body != NULL) {
        while ((rc = jscan_next_key(in->body, in->body_len, &pos, &off, &len)) == 1) {
            long n = jscan_string(in->body, off, len, name, sizeof(name));
            if (n < 0)
                ps->undeclarable = 1;
            else
                add_param(ps, name, (size_t)n);
        }
        ps->undeclarable |= rc < 0;
    }
}

/* Provider P's entry for MODEL, enabled or not, or NULL. */
static const cJSON *model_entry(const cJSON *p, const char *model)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "models")) {
        const char *n = schema_str(m, "name", NULL);
        if (n != NULL && strcmp(n, model) == 0)
            return m;
    }
    return NULL;
}

/* 1 when REGION satisfies WANT, a region or set name or a list of them. */
static int region_wanted(const cJSON *want, const char *region)
{
    const cJSON *w;
    if (cJSON_IsString(want))
        return residency_within(region, want->valuestring);
    cJSON_ArrayForEach(w, want)
        if (cJSON_IsString(w) && residency_within(region, w->valuestring))
            return 1;
    return 0;
}

/* data_residency: every region provider P names (a string or a list) must
 * be wanted; a provider that names none is dropped. */
static int resident(const cJSON *want, const cJSON *p)
{
    const cJSON *region = cJSON_GetObjectItemCaseSensitive(p, "region"), *r;
    int n = 0;
    if (cJSON_IsString(region))
        return region_wanted(want, region->valuestring);
    cJSON_ArrayForEach(r, region) {
        if (!cJSON_IsString(r) || !region_wanted(want, r->valuestring))
            return 0;
        n++;
    }
    return n > 0;
}

/* The preference of PREFS that provider P serving MODEL fails, or NULL.
 * What a provider or model does not declare counts against it: no region,
 * no retention_days, no quantization (unless "unknown" is listed), no
 * supported_parameters. PS caches the request's parameters. */
static const char *filtered_by(const cJSON *prefs, const cJSON *p, const char *model, const resolve_in_t *in,
                               params_t *ps)
{
    const char *name = schema_str(p, "name", NULL), *v;
    const cJSON *only = cJSON_GetObjectItemCaseSensitive(prefs, "only"), *x;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(prefs, "data_residency");
    if (cJSON_IsArray(only) && !listed(only, name))
        return "only";
    if (listed(cJSON_GetObjectItemCaseSensitive(prefs, "ignore"), name))
        return "ignore";
    /* "deny": only providers that do not collect prompts (data_collection "deny") */
    if ((v = schema_str(prefs, "data_collection", NULL)) != NULL && strcmp(v, "deny") == 0 &&
        (schema_str(p, "data_collection", NULL) == NULL || strcmp(schema_str(p, "data_collection", NULL), "deny") != 0))
        return "data_collection";
    if ((cJSON_IsString(res) || cJSON_IsArray(res)) && !resident(res, p))
        return "data_residency";
    if (flag(prefs, "eu_owned", 0) && !flag(p, "eu_owned", 0))
        return "eu_owned";
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(prefs, "max_retention_days")) &&
        !(num(p, "retention_days", INFINITY) <= x->valuedouble))
        return "max_retention_days";
    if (cJSON_IsArray(x = cJSON_GetObjectItemCaseSensitive(prefs, "quantizations")) &&
        !listed(x, schema_str(model_entry(p, model), "quantization", "unknown")))
        return "quantizations";
    if (flag(prefs, "require_parameters", 0)) {
        if (!ps->read)
            read_params(in, ps);
        if (ps->undeclarable)
            return "require_parameters";
        x = cJSON_GetObjectItemCaseSensitive(model_entry(p, model), "supported_parameters");
        for (int i = 0; i < ps->n; i++)
            if (!listed(x, ps->name[i]))
                return "require_parameters";
    }
    return NULL;
}

/* The preferences in force for route RES->route_rec: its provider object,
 * or, for a what-if, a copy with IN->prefs merged in (owned by RES). */
static const cJSON *effective_prefs(const resolve_in_t *in, resolution_t *res, const cJSON *own)
{
    const cJSON *o;
    if (!cJSON_IsObject(in->prefs))
        return own;
    res->prefs_own = cJSON_IsObject(own) ? cJSON_Duplicate(own, 1) : cJSON_CreateObject();
    if (res->prefs_own == NULL)
        return own;
    cJSON_ArrayForEach(o, in->prefs) {
        cJSON_DeleteItemFromObjectCaseSensitive(res->prefs_own, o->string);
        if (!cJSON_IsNull(o))
            cJSON_AddItemToObject(res->prefs_own, o->string, cJSON_Duplicate(o, 1));
    }
    return res->prefs_own;
}

/* Sort keys of one candidate: its place in preferences' order list, then
 * price or latency, then its place in the route. */
typedef struct ranked {
    candidate_t c;
    double rank, metric;
    int pos;
} ranked_t;

static int by_rank(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->metric != y->metric)
        return x->metric < y->metric ? -1 : 1;
    return x->pos - y->pos;
}

static double price_of(const candidate_t *c)
{
    const cJSON *m = provider_model(c->prov, c->model);
    if (m == NULL || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "input_price")))
        return INFINITY;    /* unpriced models go last */
    return num(m, "input_price", 0) + num(m, "output_price", 0);
}

/* A provider model's prices, kept per thread and store generation as the
 * provider views are: every answer is priced, and finding the model entry
 * and its three prices by name took some 1,500 instructions. */
typedef struct price_view {
    size_t gen;                    /* 0: empty */
    const cJSON *prov;
    char model[128];
    usage_prices_t p;
} price_view_t;

#define PRICE_VIEWS 64
static _Thread_local price_view_t price_views[PRICE_VIEWS];

const usage_prices_t *resolve_prices(candidate_t *c)
{
    size_t len = strlen(c->model);
    price_view_t *v = &price_views[(((uintptr_t)c->prov >> 4) + len * 31 + (unsigned char)c->model[0]) % PRICE_VIEWS];
    usage_prices_t *p = &c->prices;
    const cJSON *m;
    if (c->priced)
        return p;
    c->priced = 1;
    if (c->gen != 0 && v->gen == c->gen && v->prov == c->prov && len < sizeof(v->model) &&
        memcmp(v->model, c->model, len + 1) == 0) {
        *p = v->p;
        return p;
    }
    m = model_entry(c->prov, c->model);
    p->input = num(m, "input_price", -1);
    p->output = num(m, "output_price", -1);
    p->cached = num(m, "cached_input_price", -1);
    if (c->gen != 0 && len < sizeof(v->model)) {
        v->gen = c->gen;
        v->prov = c->prov;
        memcpy(v->model, c->model, len + 1);
        v->p = *p;
    }
    return p;
}

static double latency_of(const candidate_t *c)
{
    char name[600];
    tally_t *t;
    text_cat(name, sizeof(name), "lat:", c->provider, "/", c->model, NULL);
    t = tally_find(name);
    /* unmeasured targets go first, so each is measured once */
    return t != NULL ? (double)atomic_load_explicit(&t->ewma_us, memory_order_relaxed) : 0;
}

/* Reorders the candidates by PREFS: providers named in "order" first, in
 * that order; then by "sort"; else the route's own order. */
static void apply_order(resolution_t *res, const cJSON *prefs)
{
    const cJSON *order = cJSON_GetObjectItemCaseSensitive(prefs, "order"), *o;
    const char *sort = schema_str(prefs, "sort", NULL);
    ranked_t rk[RESOLVE_MAX_CANDIDATES];
    if (!cJSON_IsArray(order) && sort == NULL)
        return;
    for (int i = 0; i < res->ncand; i++) {
        int k = 0;
        rk[i].c = res->cand[i];
        rk[i].pos = i;
        rk[i].rank = cJSON_GetArraySize(order);
        cJSON_ArrayForEach(o, order) {
            if (cJSON_IsString(o) && strcmp(o->valuestring, res->cand[i].provider) == 0) {
                rk[i].rank = k;
                break;
            }
            k++;
        }
        rk[i].metric = sort == NULL ? 0 : strcmp(sort, "price") == 0 ? price_of(&res->cand[i]) : latency_of(&res->cand[i]);
    }
    qsort(rk, (size_t)res->ncand, sizeof(rk[0]), by_rank);
    for (int i = 0; i < res->ncand; i++)
        res->cand[i] = rk[i].c;
}

/* --- strategies -------------------------------------------------------- */

/* Moves candidate I to the front, the others keeping their order. */
static void to_front(resolution_t *res, int i)
{
    candidate_t c = res->cand[i];
    memmove(&res->cand[1], &res->cand[0], sizeof(c) * (size_t)i);
    res->cand[0] = c;
}

/* Index picked by weight for a point U in [0, 1), or 0 when no weight. */
static int by_weight(const resolution_t *res, double u)
{
    double total = 0, at;
    for (int i = 0; i < res->ncand; i++)
        total += num(res->cand[i].target, "weight", 1);
    if (total <= 0)
        return 0;
    at = u * total;
    for (int i = 0; i < res->ncand; i++) {
        double w = num(res->cand[i].target, "weight", 1);
        if (at < w)
            return i;
        at -= w;
    }
    return res->ncand - 1;
}

static void apply_strategy(resolution_t *res, const resolve_in_t *in, const char *strategy, const char *id)
{
    char name[200];
    if (strategy == NULL || res->ncand < 1 || id == NULL)
        return;
    if (strcmp(strategy, "weighted") == 0) {
        to_front(res, by_weight(res, uniform()));
    } else if (strcmp(strategy, "round_robin") == 0) {
        tally_t *t;
        uint64_t n;
        text_cat(name, sizeof(name), "rr:", id, NULL);
        if ((t = tally_get(name)) == NULL) {
            n = (uint64_t)(uniform() * res->ncand);       /* table full: still spread */
        } else {
            n = in->dry ? atomic_load_explicit(&t->n, memory_order_relaxed)
                        : atomic_fetch_add_explicit(&t->n, 1, memory_order_relaxed);
        }
        /* rotate: the next in sequence first, the others after it in turn */
        for (uint64_t k = n % (uint64_t)res->ncand; k > 0; k--) {
            candidate_t c = res->cand[0];
            memmove(&res->cand[0], &res->cand[1], sizeof(c) * (size_t)(res->ncand - 1));
            res->cand[res->ncand - 1] = c;
        }
    } else if (strcmp(strategy, "ab") == 0) {
        char label[600];
        const char *sticky = in->sticky != NULL && *in->sticky ? in->sticky : NULL;
        char seed[400];
        double u;
        snprintf(seed, sizeof(seed), "ab-split:%s:%.300s", id, sticky ? sticky : "");
        u = sticky ? (double)(tally_hash(seed) >> 11) / 9007199254740992.0 : uniform();
        to_front(res, by_weight(res, u));
        text_cat(res->variant, sizeof(res->variant), resolve_variant_label(res->cand[0].target, label, sizeof(label)),
                 NULL);
        text_cat(name, sizeof(name), "ab:", id, ":", res->variant, NULL);
        res->variant_tally = tally_get(name);
    }
}

/* --- routes ------------------------------------------------------------ */

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


/* A route's fields resolution reads, once per store generation (as a
 * provider's, prov_view above): its settings, and its targets in `order`
 * with what each says. Read from the record they took some 3,500
 * instructions per request. */
typedef struct route_tgt {
    tref_t ref;
    const char *provider;          /* NULL: the target is skipped */
    const char *model;             /* its model (NULL: the name asked for), unless it has a model_map */
    int has_map, enabled, cap;
} route_tgt_t;

typedef struct route_view {
    size_t gen;                    /* store_hold_generation of REC's hold; 0: empty */
    const cJSON *rec;
    const char *name, *id, *endpoint, *strategy;
    const cJSON *prefs;            /* its "provider" preferences */
    resolve_timeouts_t to;
    int cap, enabled, has_max_429, max_429, has_cap_s;
    double cap_s;
    int n;
    route_tgt_t tg[RESOLVE_MAX_CANDIDATES];
} route_view_t;

#define ROUTE_VIEWS 16
static _Thread_local route_view_t route_views[ROUTE_VIEWS];

static void route_read(route_view_t *v, const cJSON *rec)
{
    const cJSON *retry = cJSON_GetObjectItemCaseSensitive(rec, "retry"), *x, *t;
    v->name = schema_str(rec, "name", NULL);
    v->id = schema_str(rec, "id", NULL);
    v->endpoint = schema_str(rec, "endpoint", NULL);
    v->strategy = schema_str(rec, "strategy", NULL);
    v->prefs = cJSON_GetObjectItemCaseSensitive(rec, "provider");
    v->to = timeouts_of(rec);
    v->cap = cap_of(rec);
    v->enabled = flag(rec, "enabled", 1);
    x = cJSON_GetObjectItemCaseSensitive(retry, "max_429_retries");
    if ((v->has_max_429 = cJSON_IsNumber(x)) != 0)
        v->max_429 = (int)x->valuedouble;
    x = cJSON_GetObjectItemCaseSensitive(retry, "retry_after_cap_s");
    if ((v->has_cap_s = cJSON_IsNumber(x)) != 0)
        v->cap_s = x->valuedouble;
    v->n = 0;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(rec, "targets")) {
        route_tgt_t *g;
        if (v->n == RESOLVE_MAX_CANDIDATES)
            break;
        g = &v->tg[v->n];
        g->ref.t = t;
        g->ref.order = num(t, "order", v->n);
        g->ref.pos = v->n;
        g->provider = schema_str(t, "provider", NULL);
        g->has_map = cJSON_GetObjectItemCaseSensitive(t, "model_map") != NULL;
        g->model = schema_str(t, "model", NULL);
        g->enabled = flag(t, "enabled", 1);
        g->cap = cap_of(t);
        v->n++;
    }
    qsort(v->tg, (size_t)v->n, sizeof(v->tg[0]), by_order);   /* (ref is its first member) */
}

/* REC's view: the thread's, or read into SCRATCH for a record of its own. */
static const route_view_t *route_view(const cJSON *rec, const store_hold_t *hold, route_view_t *scratch)
{
    size_t gen = store_hold_generation(hold);
    route_view_t *v = gen != 0 ? VIEW_SLOT(route_views, rec) : scratch;
    if (view_stale(&v->gen, &v->rec, rec, gen))
        route_read(v, rec);
    return v;
}

/* Builds the candidates of the matched route: its usable targets in
 * `order`, filtered by its provider preferences, ordered by them and by its
 * strategy. A disabled route skips its first target group (the lowest
 * order) so callers land on the fallbacks (TruLayer's incident switch). */
static void route_candidates(store_reader_t *r, const resolve_in_t *in, resolution_t *res, const route_view_t *v)
{
    const cJSON *prefs = res->prefs;
    params_t params;        /* filled on first use only: most routes never read it */
    int enabled = v->enabled;
    double first_order = v->n > 0 ? v->tg[0].ref.order : 0;

    params.read = 0;
    for (int i = 0; i < v->n; i++) {
        const route_tgt_t *g = &v->tg[i];
        const char *pn = g->provider, *why;
        const char *model = g->has_map ? upstream_model(g->ref.t, in->model) : g->model ? g->model : in->model;
        const cJSON *p;
        store_hold_t *hold;
        prov_view_t scratch;
        if (pn == NULL)
            continue;
        if (!enabled && g->ref.order == first_order) {
            drop(res, pn, model, "route_disabled", NULL);
            continue;
        }
        if (!g->enabled) {
            drop(res, pn, model, "target_disabled", NULL);
            continue;
        }
        p = store_get_provider(r, pn, &hold);
        if (p == NULL || !prov_view(p, hold, &scratch)->enabled) {
            drop(res, pn, model, p == NULL ? "provider_missing" : "provider_disabled", NULL);
            store_release(hold);
            continue;
        }
        if (prefs != NULL && (why = filtered_by(prefs, p, model, in, &params)) != NULL) {
            drop(res, pn, model, "filtered", why);
            store_release(hold);
            continue;
        }
        add_candidate(res, p, hold, model, g->ref.t, g->cap);
    }
    apply_order(res, prefs);
    apply_strategy(res, in, v->strategy, v->id);
    if (res->ncand > 1 && !flag(prefs, "allow_fallbacks", 1)) {
        for (int i = 1; i < res->ncand; i++)
            drop(res, res->cand[i].provider, res->cand[i].model, "no_fallbacks", "allow_fallbacks");
        res->ncand = 1;
    }
    if (res->ncand == 0 && !enabled)
        res->status = RESOLVE_DISABLED;
}

/* Takes route record REC (kept alive by HOLD, now RES's) as the match and
 * builds its candidates; returns 1. */
static int use_route(store_reader_t *r, const resolve_in_t *in, const cJSON *rec, store_hold_t *hold,
                     resolution_t *res)
{
    route_view_t scratch;
    const route_view_t *v = route_view(rec, hold, &scratch);
    res->route_rec = rec;
    res->route_hold = hold;
    res->route = v->name;
    res->route_id = v->id != NULL ? v->id : "";
    res->to = v->to;
    res->route_cap = v->cap;
    if (v->has_max_429)
        res->max_429_retries = v->max_429;
    if (v->has_cap_s)
        res->retry_after_cap_s = v->cap_s;
    res->prefs = effective_prefs(in, res, v->prefs);
    if (v->endpoint != NULL && schema_endpoint_parse(v->endpoint) != (int)in->ep) {
        res->status = RESOLVE_WRONG_ENDPOINT;
        return 1;
    }
    route_candidates(r, in, res, v);
    return 1;
}

/* Looks the route NAME up, most specific scope first (the caller's key,
 * its tenant, global); returns 1 if a route was found. */
static int try_route(store_reader_t *r, const resolve_in_t *in, const char *name, resolution_t *res)
{
    char scope[200];
    const cJSON *rec = NULL;
    store_hold_t *hold = NULL;
    if (*in->key_id) {
        text_cat(scope, sizeof(scope), "key:", in->key_id, NULL);
        rec = store_get_route(r, scope, in->router, name, &hold);
    }
    if (rec == NULL && *in->tenant) {
        text_cat(scope, sizeof(scope), "tenant:", in->tenant, NULL);
        rec = store_get_route(r, scope, in->router, name, &hold);
    }
    if (rec == NULL) {
        text_cat(scope, sizeof(scope), "global", NULL);
        rec = store_get_route(r, scope, in->router, name, &hold);
    }
    if (rec == NULL)
        return 0;
    if (!in->dry)
        ;                                /* (how it matched is for the dry-run's reader only) */
    else if (strlen(name) <= 200 && strlen(scope) <= 100)
        text_cat(res->why, sizeof(res->why), "route \"", name, "\" in scope ", scope, NULL);
    else                                 /* both cut, so that the end of the sentence stays */
        snprintf(res->why, sizeof(res->why), "route \"%.200s\" in scope %.100s", name, scope);
    return use_route(r, in, rec, hold, res);
}

/* --- glob pools -------------------------------------------------------- */

typedef struct glob_scan {
    const resolve_in_t *in;
    char pattern[300], scope[320];
    int tried;
} glob_scan_t;

static int scope_of_caller(const resolve_in_t *in, const char *scope)
{
    if (strcmp(scope, "global") == 0)
        return 1;
    if (strncmp(scope, "tenant:", 7) == 0)
        return *in->tenant && strcmp(scope + 7, in->tenant) == 0;
    return strncmp(scope, "key:", 4) == 0 && *in->key_id && strcmp(scope + 4, in->key_id) == 0;
}

static int on_glob(const char *scope, const char *endpoint, const char *pattern, void *arg)
{
    glob_scan_t *g = arg;
    if (!scope_of_caller(g->in, scope) || schema_endpoint_parse(endpoint) != (int)g->in->ep)
        return 0;
    g->tried++;
    if (fnmatch(pattern, g->in->model, 0) != 0)
        return 0;
    snprintf(g->pattern, sizeof(g->pattern), "%s", pattern);
    snprintf(g->scope, sizeof(g->scope), "%s", scope);
    return 1;
}

/* SPEC 2 step 3: the first pool, by priority, whose pattern matches. Pools
 * of other endpoint kinds and other callers' scopes are passed over. */
static int try_globs(store_reader_t *r, const resolve_in_t *in, resolution_t *res)
{
    glob_scan_t g;
    const cJSON *rec;
    store_hold_t *hold;
    memset(&g, 0, sizeof(g));
    g.in = in;
    store_each_glob(r, in->router, on_glob, &g);
    if (!g.pattern[0] || (rec = store_get_route(r, g.scope, in->router, g.pattern, &hold)) == NULL)
        return 0;
    if (in->dry)
        snprintf(res->why, sizeof(res->why), "pool \"%.120s\" (priority %g, scope %.60s) matched after %d pattern%s",
                 g.pattern, num(rec, "priority", 0), g.scope, g.tried, g.tried == 1 ? "" : "s");
    res->rule = "glob";
    return use_route(r, in, rec, hold, res);
}

/* --- aliases ----------------------------------------------------------- */

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
        cJSON *copy = cJSON_Duplicate(p, 1);   /* P is store_each's, for this call only */
        store_hold_t *hold = copy != NULL ? store_hold_own(copy) : NULL;
        if (hold != NULL)
            add_candidate(a->res, copy, hold, schema_str(provider_model(copy, a->model), "name", NULL), NULL, 0);
        else
            cJSON_Delete(copy);
    }
}

void resolve_clear(resolution_t *res)
{
    memset(res, 0, offsetof(resolution_t, why));
    res->status = RESOLVE_OK;
    res->route_id = "";
    res->to = (resolve_timeouts_t){ NAN, NAN, NAN, NAN };
    res->max_429_retries = -1;
    res->retry_after_cap_s = NAN;
    res->why[0] = '\0';
    res->variant[0] = '\0';
}

void resolve_model(store_reader_t *r, const resolve_in_t *in, resolution_t *res)
{
    const char *model = in->model, *slash;
    resolve_clear(res);

    if (*in->router != '\0') {
        store_hold_t *hold;
        const cJSON *rt = store_get_router(r, in->router, &hold);
        /* another tenant's router is as unknown as one that does not exist */
        int open = rt != NULL && flag(rt, "active", 1) && resolve_router_open(rt, in->tenant, in->privileged);
        store_release(hold);
        if (!open) {
            res->status = RESOLVE_NO_ROUTER;
            return;
        }
    }
    if (in->route != NULL) {      /* what-if: this route, whatever the model would reach */
        res->rule = "explicit";
        snprintf(res->why, sizeof(res->why), "route \"%.200s\" in scope %.60s, given by the dry-run",
                 schema_str(in->route, "name", "?"), schema_str(in->route, "scope", "global"));
        use_route(r, in, in->route, NULL, res);
        return;
    }
    if (strncmp(model, "route::", 7) == 0) {
        res->rule = "route";
        if (!try_route(r, in, model + 7, res))
            res->status = RESOLVE_NOT_FOUND;
        return;
    }
    res->rule = "exact";
    if (try_route(r, in, model, res) || try_globs(r, in, res))
        return;
    if (*in->router != '\0') {           /* a router serves only its own routes */
        res->status = RESOLVE_NOT_FOUND;
        return;
    }
    if ((slash = strchr(model, '/')) != NULL && slash != model && slash[1] != '\0') {
        char pname[128];
        size_t n = (size_t)(slash - model);
        if (n < sizeof(pname)) {
            const cJSON *p;
            store_hold_t *hold;
            memcpy(pname, model, n);
            pname[n] = '\0';
            p = store_get_provider(r, pname, &hold);
            if (p != NULL && flag(p, "enabled", 1) && provider_model(p, slash + 1) != NULL) {
                res->rule = "provider_model";
                if (in->dry)
                    snprintf(res->why, sizeof(res->why), "provider \"%s\" lists the model", pname);
                add_candidate(res, p, hold, schema_str(provider_model(p, slash + 1), "name", NULL), NULL, 0);
                return;
            }
            store_release(hold);
        }
    }
    alias_scan_t a = { res, model };
    store_each(r, STORE_PROVIDERS, on_provider, &a);
    if (res->ncand > 0) {
        res->rule = "bare_alias";
        if (in->dry)
            snprintf(res->why, sizeof(res->why), "%d provider%s list%s the model with bare_alias", res->ncand,
                     res->ncand == 1 ? "" : "s", res->ncand == 1 ? "s" : "");
        return;
    }
    res->rule = NULL;
    res->status = RESOLVE_NOT_FOUND;
}

void resolve_free(resolution_t *res)
{
    for (int i = 0; i < res->nrec; i++)
        store_release(res->holds[i]);
    store_release(res->route_hold);
    cJSON_Delete(res->prefs_own);
    res->prefs_own = NULL;
    res->prefs = NULL;
    res->nrec = 0;
    res->ncand = 0;
    res->route_rec = NULL;
    res->route_hold = NULL;
}
