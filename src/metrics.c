/* metrics.c - per-worker labelled series and their Prometheus text exposition.
 *
 * A worker counts into its own series with plain relaxed loads and stores
 * (it is their only writer), so counting costs no lock and no atomic
 * read-modify-write. A series, once made, is never moved or freed until
 * the worker is: the worker finds its series through a private hash index,
 * and publishes each new one at the head of a list with a release store.
 * A scrape, on whichever worker it lands, walks every worker's list, sorts
 * the series by family and labels, and prints each label set once with the
 * workers' values summed. */
#include "metrics.h"
#include "etcd.h"
#include "shared.h"
#include "health.h"
#include "tally.h"
#include "worker.h"

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LABELS 4
#define MAX_VALUE 256              /* a label value's bytes beyond this are cut */
#define MAX_SERIES 20000           /* per worker; then "_overflow" */
#define NBUCKETS 15

static const double bounds[NBUCKETS] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 };

typedef enum { COUNTER, GAUGE, HISTOGRAM, NANO_COUNTER } kind_t;   /* NANO_COUNTER: counts 1e-9, shows units */

typedef struct family {
    const char *name;
    kind_t kind;
    const char *help;
    int nlabels;
    const char *labels[MAX_LABELS];
} family_t;

static const family_t families[M__COUNT] = {
    [M_REQUESTS] = { "turnout_requests_total", COUNTER,
                     "Requests answered, by endpoint, route, provider and HTTP status (499: the client went away).",
                     4, { "endpoint", "route", "provider", "status" } },
    [M_DURATION] = { "turnout_request_duration_seconds", HISTOGRAM,
                     "Time from a data-plane request's arrival to the end of its reply.", 2, { "endpoint", "route" } },
    [M_TTFB] = { "turnout_upstream_ttfb_seconds", HISTOGRAM,
                 "Time from the start of an upstream attempt to the upstream's first response byte.", 2,
                 { "provider", "model" } },
    [M_ATTEMPTS] = { "turnout_upstream_attempts_total", COUNTER,
                     "Upstream attempts by outcome: ok, or the error code that ended them.", 3,
                     { "provider", "model", "result" } },
    [M_RETRIES] = { "turnout_upstream_retries_total", COUNTER,
                    "429 answers tried again on the same upstream after their Retry-After.", 2,
                    { "provider", "model" } },
    [M_FAILOVERS] = { "turnout_failovers_total", COUNTER,
                      "Requests moved on to their next candidate, by the error code of the failed attempt.", 2,
                      { "route", "reason" } },
    [M_SKIPS] = { "turnout_upstream_skipped_total", COUNTER,
                  "Candidates passed over without a call: cooling_down, probing or at_cap.", 3,
                  { "provider", "model", "reason" } },
    [M_COOLDOWNS] = { "turnout_upstream_cooldowns_total", COUNTER,
                      "Cooldowns started (upstream.cooldown_after failures in a row, or a failed probe).", 2,
                      { "provider", "model" } },
    [M_ROUTE_IN_FLIGHT] = { "turnout_route_in_flight", GAUGE,
                            "Requests being served per route, waiting for a retry included.", 1, { "route" } },
    [M_TARGET_IN_FLIGHT] = { "turnout_target_in_flight", GAUGE, "Upstream attempts open now per route target.", 3,
                             { "route", "provider", "model" } },
    [M_AB] = { "turnout_ab_requests_total", COUNTER, "Requests served per A/B variant.", 2, { "route", "variant" } },
    [M_CONNECTIONS] = { "turnout_connections", GAUGE, "Open client connections.", 0, { NULL } },
    [M_TOKENS] = { "turnout_tokens_total", COUNTER,
                   "Tokens the upstreams reported, by route, provider, model and type (prompt: every input token, "
                   "cached among them; completion; cached).", 4, { "route", "provider", "model", "type" } },
    [M_COST] = { "turnout_cost_usd_total", NANO_COUNTER,
                 "What the answers cost in USD at their provider model's prices.", 3, { "route", "provider", "model" } },
    [M_BUDGET_ALERTS] = { "turnout_budget_alerts_total", COUNTER,
                          "Budgets with action_on_exhaust alert that reached their limit (once per window).", 1,
                          { "budget" } },
};

struct series {
    series_t *next;                /* the worker's published list */
    uint64_t hash;
    metric_t family;
    size_t klen;                   /* the label values, each followed by a NUL */
    const char *key;
    _Atomic uint64_t v[];          /* counter/gauge: v[0]; histogram: buckets, +Inf, then the sum in us */
};

struct metrics {
    _Atomic(series_t *) head;
    series_t **index;              /* private: open addressing on hash */
    size_t cap, count;
};

static _Atomic uint64_t reloads_ok, reloads_failed;
static _Atomic int64_t last_reload_ok = 1;

static size_t nvalues(metric_t f)
{
    return families[f].kind == HISTOGRAM ? NBUCKETS + 2 : 1;
}

metrics_t *metrics_new(void)
{
    metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->cap = 256;
    if ((m->index = calloc(m->cap, sizeof(*m->index))) == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void metrics_free(metrics_t *m)
{
    series_t *s, *next;
    if (m == NULL)
        return;
    for (s = atomic_load(&m->head); s != NULL; s = next) {
        next = s->next;
        free(s);
    }
    free(m->index);
    free(m);
}

static uint64_t hash_key(metric_t f, const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)f;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static int grow(metrics_t *m)
{
    size_t cap = m->cap * 2;
    series_t **idx = calloc(cap, sizeof(*idx));
    if (idx == NULL)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        series_t *s = m->index[i];
        size_t j;
        if (s == NULL)
            continue;
        for (j = s->hash & (cap - 1); idx[j] != NULL; j = (j + 1) & (cap - 1))
            ;
        idx[j] = s;
    }
    free(m->index);
    m->index = idx;
    m->cap = cap;
    return 0;
}

/* The series of F with label values KEY; past MAX_SERIES only when FORCE
 * (the overflow series). NULL when it cannot be made. */
static series_t *find_or_make(metrics_t *m, metric_t f, const char *key, size_t klen, int force)
{
    uint64_t h = hash_key(f, key, klen);
    size_t i, nv = nvalues(f);
    series_t *s;
    for (i = h & (m->cap - 1); (s = m->index[i]) != NULL; i = (i + 1) & (m->cap - 1))
        if (s->hash == h && s->family == f && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return s;
    if ((m->count >= MAX_SERIES && !force) || (m->count + 1) * 2 > m->cap)
        return NULL;               /* the index stays at most half full (grow below) */
    if ((s = calloc(1, sizeof(*s) + nv * sizeof(s->v[0]) + klen)) == NULL)
        return NULL;
    s->hash = h;
    s->family = f;
    s->klen = klen;
    s->key = (const char *)&s->v[nv];
    memcpy((char *)&s->v[nv], key, klen);
    m->index[i] = s;
    m->count++;
    s->next = atomic_load_explicit(&m->head, memory_order_relaxed);
    atomic_store_explicit(&m->head, s, memory_order_release);
    if ((m->count + 2) * 2 > m->cap && m->count < MAX_SERIES + M__COUNT)
        (void)grow(m);             /* if it fails, the next new series is refused */
    return s;
}

series_t *metrics_series(metrics_t *m, metric_t f, const char *v1, const char *v2, const char *v3, const char *v4)
{
    static _Alignas(series_t) char sink[sizeof(series_t) + (NBUCKETS + 2) * sizeof(uint64_t)];
    const char *vals[MAX_LABELS] = { v1, v2, v3, v4 };
    char key[MAX_LABELS * (MAX_VALUE + 1)];   /* written up to klen: no initialiser, which would clear it all */
    size_t klen = 0;
    series_t *s;
    key[0] = '\0';
    if (m == NULL)
        return (series_t *)sink;
    for (int i = 0; i < families[f].nlabels; i++) {
        size_t n = vals[i] != NULL ? strnlen(vals[i], MAX_VALUE) : 0;
        memcpy(key + klen, vals[i] != NULL ? vals[i] : "", n);
        klen += n;
        key[klen++] = '\0';
    }
    if ((s = find_or_make(m, f, key, klen, 0)) != NULL)
        return s;
    klen = 0;
    for (int i = 0; i < families[f].nlabels; i++) {
        memcpy(key + klen, "_overflow", 10);
        klen += 10;
    }
    s = find_or_make(m, f, key, klen, 1);
    return s != NULL ? s : (series_t *)sink;   /* counted where nobody reads */
}

int metrics_memo(metrics_memo_t *memo, int n, metrics_memo_t *scratch, const metrics_t *m, size_t gen, const void *a,
                 const void *b, const char *text, metrics_memo_t **out)
{
    size_t len = strlen(text);
    metrics_memo_t *v = &memo[(((uintptr_t)a >> 4) + ((uintptr_t)b >> 4) + len) % (unsigned)n];
    if (gen != 0 && v->gen == gen && v->m == m && v->a == a && v->b == b && len < sizeof(v->text) &&
        memcmp(v->text, text, len + 1) == 0) {
        *out = v;
        return 1;
    }
    if (gen == 0 || len >= sizeof(v->text))
        v = scratch;
    memset(v, 0, sizeof(*v));
    v->gen = gen;
    v->m = m;
    v->a = a;
    v->b = b;
    if (len < sizeof(v->text))
        memcpy(v->text, text, len + 1);
    *out = v;
    return 0;
}

void metrics_add(series_t *s, int64_t d)
{
    uint64_t v = atomic_load_explicit(&s->v[0], memory_order_relaxed);
    atomic_store_explicit(&s->v[0], v + (uint64_t)d, memory_order_relaxed);
}

static void bump(_Atomic uint64_t *p, uint64_t d)
{
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + d, memory_order_relaxed);
}

void metrics_observe(series_t *s, double seconds)
{
    int b = 0;
    while (b < NBUCKETS && seconds > bounds[b])
        b++;
    bump(&s->v[b], 1);
    bump(&s->v[NBUCKETS + 1], seconds > 0 ? (uint64_t)(seconds * 1e6) : 0);
}

void metrics_reloaded(int ok)
{
    atomic_fetch_add(ok ? &reloads_ok : &reloads_failed, 1);
    atomic_store(&last_reload_ok, ok);
}

/* --- exposition ------------------------------------------------------------ */

static int by_family_and_labels(const void *a, const void *b)
{
    const series_t *x = *(series_t *const *)a, *y = *(series_t *const *)b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c;
    if (x->family != y->family)
        return x->family < y->family ? -1 : 1;
    if ((c = memcmp(x->key, y->key, n)) != 0)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

/* Writes {name="value",...} for the label values KEY of family F, and EXTRA
 * (e.g. le="0.5") as the last label; nothing for no labels. */
static void put_labels(struct evbuffer *out, metric_t f, const char *key, const char *extra)
{
    const family_t *fam = &families[f];
    if (fam->nlabels == 0 && extra == NULL)
        return;
    evbuffer_add(out, "{", 1);
    for (int i = 0; i < fam->nlabels; i++) {
        evbuffer_add_printf(out, "%s%s=\"", i ? "," : "", fam->labels[i]);
        for (; *key; key++) {      /* the text format's escapes: \\ \" \n */
            if (*key == '\\' || *key == '"')
                evbuffer_add_printf(out, "\\%c", *key);
            else if (*key == '\n')
                evbuffer_add(out, "\\n", 2);
            else
                evbuffer_add(out, key, 1);
        }
        key++;
        evbuffer_add(out, "\"", 1);
    }
    if (extra != NULL)
        evbuffer_add_printf(out, "%s%s", fam->nlabels ? "," : "", extra);
    evbuffer_add(out, "}", 1);
}

/* One label set: the values of SAME (series of equal family and labels, one
 * per worker at most) summed. */
static void put_series(struct evbuffer *out, series_t *const *same, size_t n)
{
    const series_t *s = same[0];
    const family_t *fam = &families[s->family];
    uint64_t v[NBUCKETS + 2] = { 0 };
    size_t nv = nvalues(s->family);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < nv; j++)
            v[j] += atomic_load_explicit(&same[i]->v[j], memory_order_relaxed);
    if (fam->kind != HISTOGRAM) {
        evbuffer_add_printf(out, "%s", fam->name);
        put_labels(out, s->family, s->key, NULL);
        if (fam->kind == GAUGE)
            evbuffer_add_printf(out, " %lld\n", (long long)(int64_t)v[0]);
        else if (fam->kind == NANO_COUNTER)
            evbuffer_add_printf(out, " %llu.%09llu\n", (unsigned long long)(v[0] / 1000000000u),
                                (unsigned long long)(v[0] % 1000000000u));
        else
            evbuffer_add_printf(out, " %llu\n", (unsigned long long)v[0]);
        return;
    }
    uint64_t cum = 0;
    char le[32];
    for (int b = 0; b <= NBUCKETS; b++) {
        cum += v[b];
        if (b < NBUCKETS)
            snprintf(le, sizeof(le), "le=\"%g\"", bounds[b]);
        else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        evbuffer_add_printf(out, "%s_bucket", fam->name);
        put_labels(out, s->family, s->key, le);
        evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "%s_sum", fam->name);
    put_labels(out, s->family, s->key, NULL);
    evbuffer_add_printf(out, " %.6f\n", (double)v[NBUCKETS + 1] / 1e6);
    evbuffer_add_printf(out, "%s_count", fam->name);
    put_labels(out, s->family, s->key, NULL);
    evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
}

static void put_header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* turnout_upstream_cooling: 1 for each upstream (of those attempted so far)
 * that no worker may call now, from the slots all workers share. ALL is
 * sorted; the attempts series are grouped by provider and model. */
static void put_cooling(struct evbuffer *out, series_t *const *all, size_t n)
{
    int64_t now = health_now();
    const char *prev = NULL;
    size_t prev_len = 0;
    put_header(out, "turnout_upstream_cooling", "gauge",
               "1 while an upstream (provider/model) is cooling down or rate limited: no worker calls it.");
    for (size_t i = 0; i < n; i++) {
        const series_t *s = all[i];
        size_t plen, mlen;
        char name[2 * MAX_VALUE + 8];
        tally_t *t;
        if (s->family != M_ATTEMPTS)
            continue;
        plen = strlen(s->key);
        mlen = strlen(s->key + plen + 1);
        if (prev != NULL && prev_len == plen + mlen + 2 && memcmp(prev, s->key, prev_len) == 0)
            continue;              /* the same upstream, another result */
        prev = s->key;
        prev_len = plen + mlen + 2;
        snprintf(name, sizeof(name), "up:%s/%s", s->key, s->key + plen + 1);
        t = tally_find(name);
        evbuffer_add_printf(out, "turnout_upstream_cooling");
        put_labels(out, M_RETRIES, s->key, NULL);   /* the same labels: provider, model */
        evbuffer_add_printf(out, " %d\n",
                            t != NULL && atomic_load_explicit(&t->not_before_ms, memory_order_relaxed) > now);
    }
}

void metrics_render(const gateway_t *gw, struct evbuffer *out)
{
    series_t **all = NULL;
    size_t n = 0, cap = 0, i = 0;
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);

    for (int w = 0; w < gw->nworkers; w++) {
        metrics_t *m = gw->workers[w].metrics;
        for (series_t *s = m ? atomic_load_explicit(&m->head, memory_order_acquire) : NULL; s; s = s->next) {
            if (n == cap) {
                series_t **more = realloc(all, (cap = cap ? cap * 2 : 1024) * sizeof(*all));
                if (more == NULL)
                    break;
                all = more;
            }
            all[n++] = s;
        }
    }
    if (n > 0)
        qsort(all, n, sizeof(*all), by_family_and_labels);

    put_header(out, "turnout_build_info", "gauge", "Version and libraries of this build (always 1).");
    evbuffer_add_printf(out, "turnout_build_info{version=\"%s\",libcurl=\"%s\",libevent=\"%s\",lmdb=\"%d.%d.%d\"} 1\n",
                        TURNOUT_VERSION, cv->version, event_get_version(), MDB_VERSION_MAJOR, MDB_VERSION_MINOR,
                        MDB_VERSION_PATCH);
    put_header(out, "turnout_start_time_seconds", "gauge", "When this process started, in seconds since the epoch.");
    evbuffer_add_printf(out, "turnout_start_time_seconds %lld\n", (long long)gw->started_at);
    put_header(out, "turnout_workers", "gauge", "Worker threads (each an event loop with its own listener).");
    evbuffer_add_printf(out, "turnout_workers %d\n", gw->nworkers);
    put_header(out, "turnout_config_reloads_total", "counter", "Config reloads asked for by SIGHUP, by result.");
    evbuffer_add_printf(out, "turnout_config_reloads_total{result=\"ok\"} %llu\n",
                        (unsigned long long)atomic_load(&reloads_ok));
    evbuffer_add_printf(out, "turnout_config_reloads_total{result=\"failed\"} %llu\n",
                        (unsigned long long)atomic_load(&reloads_failed));
    put_header(out, "turnout_config_last_reload_successful", "gauge",
               "0 when the last reload was rejected (the previous config keeps serving), else 1.");
    evbuffer_add_printf(out, "turnout_config_last_reload_successful %lld\n", (long long)atomic_load(&last_reload_ok));
    if (gw->etcd != NULL) {
        etcd_status_t st;
        etcd_status(gw->etcd, &st);
        put_header(out, "turnout_etcd_revision", "gauge", "The etcd revision this node's mirror of the store has applied.");
        evbuffer_add_printf(out, "turnout_etcd_revision %lld\n", (long long)st.revision);
        put_header(out, "turnout_etcd_connected", "gauge", "1 while this node's watch on etcd is up.");
        evbuffer_add_printf(out, "turnout_etcd_connected %d\n", st.connected);
        put_header(out, "turnout_etcd_behind_seconds", "gauge",
                   "0 while the watch is up, else how long the mirror has been cut off from etcd.");
        evbuffer_add_printf(out, "turnout_etcd_behind_seconds %.3f\n", st.behind_s);
        put_header(out, "turnout_etcd_errors_total", "counter", "Calls to etcd that failed and watches that dropped.");
        evbuffer_add_printf(out, "turnout_etcd_errors_total %llu\n", (unsigned long long)st.errors);
    }
    if (gw->cfg.cluster_redis[0] != '\0') {
        double rtt_us;
        uint64_t errors;
        int up;
        shared_figures(&rtt_us, &errors, &up);
        put_header(out, "turnout_redis_connected", "gauge", "1 while the shared counters' Redis is connected.");
        evbuffer_add_printf(out, "turnout_redis_connected %d\n", up);
        put_header(out, "turnout_redis_rtt_seconds", "gauge", "Moving average of a reservation's round trip to Redis.");
        evbuffer_add_printf(out, "turnout_redis_rtt_seconds %.6f\n", rtt_us / 1e6);
        put_header(out, "turnout_redis_errors_total", "counter",
                   "Reservations Redis did not answer in time, or answered with an error.");
        evbuffer_add_printf(out, "turnout_redis_errors_total %llu\n", (unsigned long long)errors);
        put_header(out, "turnout_cluster_nodes", "gauge", "Nodes alive, as their beats in Redis show.");
        evbuffer_add_printf(out, "turnout_cluster_nodes %d\n", shared_nodes());
    }

    for (int f = 0; f < M__COUNT; f++) {
        const family_t *fam = &families[f];
        put_header(out, fam->name, fam->kind == COUNTER || fam->kind == NANO_COUNTER ? "counter" : fam->kind == GAUGE ? "gauge" : "histogram",
                   fam->help);
        if (f == M_CONNECTIONS && (i >= n || all[i]->family != M_CONNECTIONS))
            evbuffer_add_printf(out, "%s 0\n", fam->name);
        while (i < n && all[i]->family == (metric_t)f) {
            size_t j = i + 1;
            while (j < n && by_family_and_labels(&all[i], &all[j]) == 0)
                j++;
            put_series(out, &all[i], j - i);
            i = j;
        }
    }
    put_cooling(out, all, n);
    free(all);
}
