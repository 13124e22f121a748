/* spend.c - what a request costs and who pays: budget reservations before each attempt, settled with the answer's usage, and the cost in the metrics and the access log.
 *
 * Before an attempt, its estimated cost is reserved against every enabled
 * budget that applies (ledger.c: all workers share the counts, without a
 * lock): the candidate's target and provider, then the request's route,
 * key, tenant and the global ones. The estimate: prompt tokens as the
 * body's bytes / 4, output tokens as its max_completion_tokens /
 * max_tokens, else the provider's default_max_tokens, else the config's
 * budgets.default_output_tokens (0 for embeddings), priced at the candidate
 * model's prices; and one request. A budget that cannot take it refuses:
 * on the candidate's own scopes the candidate is passed over
 * ("budget_exhausted" in the trace, failover goes on); on the request's
 * the client gets 429 budget_exhausted with Retry-After = the seconds to
 * the window's reset. An "alert" budget never refuses; the first
 * reservation that reaches its limit in a window logs one warning.
 *
 * When the attempt ends, its reservations are settled: an answer that
 * reached the client (whole, or a stream however far it got) is charged
 * its usage as the upstream reported it (the estimate when it reported
 * none), and anything else (a failed attempt, failover, a refusal of
 * ours) releases them. */
#include "plane.h"
#include "budget.h"
#include "journal.h"
#include "log.h"
#include "shared.h"
#include "text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct reserving {
    req_t *r;
    int64_t amt[LEDGER__N];
    int64_t now;
    int share;                     /* each limit is this many nodes' (Redis unreachable); else 1 */
    const budget_t *over;          /* the budget that refused */
    struct spend_wait *wait;       /* gathering the takes for Redis, or NULL */
} reserving_t;

/* A budget reservation sent to Redis (shared.c), until its answer: the
 * takes, and what a refusal needs of each budget (the worker's compiled
 * budgets may be compiled again meanwhile). */
typedef struct spend_wait {
    int n;
    shared_take_t t[MAX_BUDGET_HOLDS];
    struct {
        budget_scope_t scope;
        win_kind_t window;
        int alert;
        char name[132];
        int64_t limit[LEDGER__N];
    } b[MAX_BUDGET_HOLDS];
    int64_t amt[LEDGER__N];
} spend_wait_t;

/* An alert budget reached its limit: said once per window. */
static void alert_if_reached(req_t *r, const budget_t *bg, int64_t now)
{
    int64_t spent[LEDGER__N], reserved[LEDGER__N], tag;
    int reached = 0;
    ledger_read(bg->e, bg->window, now, spent, reserved);
    for (int i = 0; i < LEDGER__N; i++)
        reached |= bg->limit[i] >= 0 && spent[i] + reserved[i] >= bg->limit[i];
    tag = ledger_window(bg->window, now, NULL, NULL);
    if (!reached || !ledger_first_in_window(bg->e, tag))
        return;
    metrics_add(metrics_series(r->w->metrics, M_BUDGET_ALERTS, bg->name, NULL, NULL, NULL), 1);
    tlog(LOG_WARN, "budget %s (%s, action alert) reached its limit in this window: %.6f USD, %lld tokens, "
         "%lld requests; requests go on", bg->name, bg->id, (double)(spent[LEDGER_USD] + reserved[LEDGER_USD]) / 1e9,
         (long long)(spent[LEDGER_TOKENS] + reserved[LEDGER_TOKENS]),
         (long long)(spent[LEDGER_REQUESTS] + reserved[LEDGER_REQUESTS]));
}

/* Adds budget BG to the takes of the Redis call being made. */
static int gather(const budget_t *bg, void *arg)
{
    reserving_t *x = arg;
    spend_wait_t *w = x->wait;
    shared_take_t *t;
    int64_t end;
    if (w->n == MAX_BUDGET_HOLDS) {
        x->over = bg;                     /* more than an attempt can hold: refused, as by the ledger */
        return 1;
    }
    t = &w->t[w->n];
    t->e = bg->e;
    t->tag = ledger_window(bg->window, x->now, NULL, &end);
    t->ttl_s = bg->window == WIN_TOTAL ? 0 : end - x->now + 1;
    t->flight = -1;
    memcpy(t->amt, x->amt, sizeof(t->amt));
    for (int i = 0; i < LEDGER__N; i++)
        t->limit[i] = bg->alert ? -1 : bg->limit[i];
    w->b[w->n].scope = bg->scope;
    w->b[w->n].window = bg->window;
    w->b[w->n].alert = bg->alert;
    memcpy(w->b[w->n].limit, bg->limit, sizeof(bg->limit));
    snprintf(w->b[w->n].name, sizeof(w->b[w->n].name), "%s", bg->name);
    w->n++;
    return 0;
}

static int take(const budget_t *bg, void *arg)
{
    reserving_t *x = arg;
    req_t *r = x->r;
    int64_t limit[LEDGER__N];
    if (x->wait != NULL)
        return gather(bg, arg);
    for (int i = 0; i < LEDGER__N; i++)
        limit[i] = bg->alert || bg->limit[i] < 0 ? -1 : bg->limit[i] / x->share;
    if (r->nheld == MAX_BUDGET_HOLDS ||
        ledger_reserve(bg->e, bg->window, x->now, x->amt, limit, &r->held[r->nheld].h) >= 0) {
        x->over = bg;                     /* (more budgets on one attempt than it can hold: refused too) */
        return 1;
    }
    r->held[r->nheld++].e = bg->e;
    if (bg->alert)
        alert_if_reached(r, bg, x->now);
    return 0;
}

/* What the attempt on candidate C is expected to use, into *U. */
static void estimate(const req_t *r, const candidate_t *c, dialect_usage_t *u)
{
    u->prompt = r->multipart ? 0 : (int64_t)(r->body_len / 4);
    u->completion = r->ep == EP_EMBEDDINGS ? 0
                    : r->max_tokens > 0 ? r->max_tokens
                    : cJSON_IsNumber(c->default_max_tokens) ? (int64_t)c->default_max_tokens->valuedouble
                                                            : r->w->cfg->default_output_tokens;
    u->cached = -1;
}

/* The 429 for a budget of the request's own scopes: its SCOPE, NAME and WINDOW. */
static void refuse(req_t *r, budget_scope_t bscope, const char *bname, win_kind_t window, int64_t now)
{
    static const char *const scope[BS__COUNT] = { "target", "provider", "route", "key", "tenant", "global" };
    int64_t end;
    double wait_ms;
    char resets[64] = "it has no window: it does not reset", why[300];
    ledger_window(window, now, NULL, &end);
    wait_ms = window == WIN_TOTAL ? -1 : (double)(end - now) * 1000.0;
    if (wait_ms >= 0)
        snprintf(resets, sizeof(resets), "it resets in %lld s", (long long)(end - now));
    reply_retry_hints(r, wait_ms, wait_ms >= 0 && wait_ms <= 60000);
    reply_error(r, 429, "insufficient_quota", "budget_exhausted", NULL,
                "the %s budget '%s' cannot take this request (model '%s'): %s", scope[bscope], bname, r->model,
                resets);
    text_cat(why, sizeof(why), "refused (429): the ", scope[bscope], " budget '", bname, "' is spent; ", resets,
             NULL);
    attempt_event(r, EV_BUDGET_EXHAUSTED, 429, why);
}

/* A budget of scope SCOPE and WINDOW refused at NOW: the candidate's
 * own passes it over until the window turns (1), the request's is a 429
 * (-1). */
static int refused(req_t *r, budget_scope_t scope, const char *name, win_kind_t window, int64_t now)
{
    if (scope <= BS_PROVIDER) {
        int64_t end;
        ledger_window(window, now, NULL, &end);
        if (window != WIN_TOTAL && (!r->budget_wait_set || (double)(end - now) * 1000.0 < r->budget_wait_ms)) {
            r->budget_wait_ms = (double)(end - now) * 1000.0;
            r->budget_wait_set = 1;
        }
        return 1;
    }
    refuse(r, scope, name, window, now);
    return -1;
}

/* Takes X's amounts from every budget that applies to R's current
 * candidate C (into the ledger, or, with X->wait, gathered for Redis). */
static int reserve_all(req_t *r, candidate_t *c, reserving_t *x)
{
    budgets_t *b = r->w->budgets;
    char key[1200];
    for (int s = 0; s < BS__COUNT; s++) {
        const char *a = NULL;
        switch ((budget_scope_t)s) {
        case BS_TARGET: case BS_ROUTE: a = r->res.route_id; break;
        case BS_PROVIDER: a = c->provider; break;
        case BS_KEY: a = r->key_id; break;
        case BS_TENANT: a = r->tenant; break;
        default: a = ""; break;
        }
        if (!budgets_in_scope(b, (budget_scope_t)s) || (s != BS_GLOBAL && (a == NULL || *a == '\0')) ||
            budget_scope_key((budget_scope_t)s, a, c->provider, c->model, key, sizeof(key)) == NULL ||
            budgets_each_in(b, key, take, x) == 0)
            continue;
        spend_settle(r, 0);               /* all or none */
        return refused(r, x->over->scope, x->over->name, x->over->window, x->now);
    }
    return 0;
}

static void on_spent(void *arg, const shared_answer_t *a);

/* Redis cannot be reached: cluster.redis_failure "local" reserves here,
 * each limit divided among the live nodes; "closed" refuses. */
static int spend_fallback(req_t *r, const int64_t amt[LEDGER__N])
{
    reserving_t x = { .r = r, .now = (int64_t)time(NULL), .share = shared_nodes() };
    if (reply_if_shared_closed(r, "insufficient_quota", "budget_exhausted") < 0)
        return -1;
    memcpy(x.amt, amt, sizeof(x.amt));
    return reserve_all(r, &r->res.cand[r->cand], &x);
}

int spend_reserve(req_t *r)
{
    candidate_t *c = &r->res.cand[r->cand];
    budgets_t *b = r->w->budgets;
    size_t gen = c->gen;
    reserving_t x = { .r = r, .now = (int64_t)time(NULL), .share = 1 };
    spend_wait_t *w, gathered;
    int rc;
    /* compiled again only when the store changed (and each time for a record
     * of its own, which a store too big for the reader's cache hands out) */
    budgets_refresh(b, r->w->reader, gen);
    if (budgets_count(b) == 0)
        return 0;
    estimate(r, c, &r->estimate);
    x.amt[LEDGER_USD] = usage_cost_nusd(&r->estimate, resolve_prices(c));
    x.amt[LEDGER_TOKENS] = r->estimate.prompt + r->estimate.completion;
    x.amt[LEDGER_REQUESTS] = 1;
    if (r->w->shared == NULL)
        return reserve_all(r, c, &x);
    /* a cluster's: every budget that applies, in one call to Redis (gathered
     * here, kept only when there is one) */
    x.wait = &gathered;
    gathered.n = 0;
    memcpy(gathered.amt, x.amt, sizeof(gathered.amt));
    if ((rc = reserve_all(r, c, &x)) != 0 || gathered.n == 0)
        return rc;
    if ((w = malloc(sizeof(*w))) == NULL)
        return spend_fallback(r, x.amt);  /* (out of memory: as if Redis could not be reached) */
    memcpy(w, &gathered, sizeof(*w));
    if ((r->shared_call = shared_reserve(r->w->shared, w->t, w->n, on_spent, r)) == NULL) {
        free(w);
        return spend_fallback(r, x.amt);
    }
    r->spend_wait = w;
    return 2;
}

static void on_spent(void *arg, const shared_answer_t *a)
{
    req_t *r = arg;
    spend_wait_t *w = r->spend_wait;
    int64_t now = (int64_t)time(NULL);
    int rc = 0;
    r->shared_call = NULL;
    r->spend_wait = NULL;
    if (a->result == SHARED_FAILED) {
        rc = spend_fallback(r, w->amt);
    } else if (a->result == SHARED_OVER && a->item >= 0 && a->item < w->n) {
        rc = refused(r, w->b[a->item].scope, w->b[a->item].name, w->b[a->item].window, now);
    } else if (a->result == SHARED_OK) {
        r->held_shared = 1;
        snprintf(r->held_rid, sizeof(r->held_rid), "%s", a->rid);
        for (int i = 0; i < w->n; i++) {
            ledger_hold_t *h = &r->held[i].h;
            int reached = 0;
            r->held[i].e = w->t[i].e;
            for (int k = 0; k < LEDGER__N; k++) {
                h->amt[k] = w->t[i].amt[k];
                h->tag[k] = w->t[i].tag;
                h->after[k] = a->after[i][k];
                reached |= w->b[i].limit[k] >= 0 && a->after[i][k] >= w->b[i].limit[k];
            }
            if (w->b[i].alert && reached && ledger_first_in_window(w->t[i].e, w->t[i].tag))
                tlog(LOG_WARN, "budget %s (action alert) reached its limit in this window across the cluster; "
                     "requests go on", w->b[i].name);
        }
        r->nheld = w->n;
    } else {
        rc = -1;
        reply_error(r, 500, "server_error", "internal_error", NULL, "the shared counters gave an answer not understood");
    }
    free(w);
    attempt_reserved(r, rc);
}

void spend_forget(req_t *r)
{
    shared_forget(r->shared_call);
    r->shared_call = NULL;
    free(r->spend_wait);
    r->spend_wait = NULL;
}

/* What the answer of the attempt on candidate C cost, from its usage (the
 * estimate when the upstream reported none) into ACT; *COST for the log. */
static void actual(const req_t *r, candidate_t *c, int64_t act[LEDGER__N])
{
    const dialect_usage_t *u = r->usage.prompt >= 0 || r->usage.completion >= 0 ? &r->usage : &r->estimate;
    act[LEDGER_USD] = usage_cost_nusd(u, resolve_prices(c));
    act[LEDGER_TOKENS] = usage_tokens(u);
    act[LEDGER_REQUESTS] = 1;
}

void spend_settle(req_t *r, int answered)
{
    int64_t act[LEDGER__N];
    if (r->nheld == 0)
        return;
    if (answered)
        actual(r, &r->res.cand[r->cand], act);
    if (r->held_shared) {                 /* Redis's: told, not waited for */
        shared_take_t t[MAX_BUDGET_HOLDS];
        int64_t delta[MAX_BUDGET_HOLDS][LEDGER__N];
        for (int i = 0; i < r->nheld; i++) {
            t[i].e = r->held[i].e;
            t[i].tag = r->held[i].h.tag[0];
            t[i].flight = -1;
            for (int k = 0; k < LEDGER__N; k++)
                delta[i][k] = (answered ? act[k] : 0) - r->held[i].h.amt[k];
        }
        shared_settle(r->w->shared, t, (const int64_t(*)[LEDGER__N])delta, r->nheld, r->held_rid);
        r->nheld = 0;
        r->held_shared = 0;
        return;
    }
    for (int i = 0; i < r->nheld; i++)
        ledger_settle(r->held[i].e, &r->held[i].h, answered ? act : NULL);
    r->nheld = 0;
}

/* The series an answer's tokens and cost count into, kept per thread by
 * route, provider record and model for the store generation (finding four
 * labelled series took some 1,300 instructions per request). */
enum { SV_PROMPT, SV_COMPLETION, SV_CACHED, SV_COST };
#define SPEND_SERIES 64
static _Thread_local metrics_memo_t spend_series[SPEND_SERIES], spend_scratch;

static series_t *const *series_of(req_t *r, const candidate_t *c)
{
    metrics_t *m = r->w->metrics;
    metrics_memo_t *v;
    if (!metrics_memo(spend_series, SPEND_SERIES, &spend_scratch, m, c->gen, r->res.route, c->prov, c->model, &v)) {
        v->slot[SV_PROMPT] = metrics_series(m, M_TOKENS, r->res.route, c->provider, c->model, "prompt");
        v->slot[SV_COMPLETION] = metrics_series(m, M_TOKENS, r->res.route, c->provider, c->model, "completion");
        v->slot[SV_CACHED] = metrics_series(m, M_TOKENS, r->res.route, c->provider, c->model, "cached");
        v->slot[SV_COST] = metrics_series(m, M_COST, r->res.route, c->provider, c->model, NULL);
    }
    return (series_t *const *)v->slot;
}

/* The request is over: the usage of the attempt that answered (usage.c read
 * it on the way, or the translation did) priced, counted by route,
 * provider and model in the metrics, and into the worker's journal for the
 * hourly rollups (a request that reached an upstream counts, its tokens
 * as reported). */
void spend_done(req_t *r)
{
    candidate_t *c = r->last_cand >= 0 ? &r->res.cand[r->last_cand] : NULL;
    const usage_prices_t *p;
    series_t *const *sv;
    int64_t now = (int64_t)time(NULL);
    if (c == NULL)
        return;
    if (r->usage.prompt < 0 && r->usage.completion < 0) {
        journal_add(r->w->journal, now - now % 3600, r->key_id, r->tenant, r->res.route, c->provider, c->model, 0, 0, 0);
        return;
    }
    p = resolve_prices(c);
    r->priced = p->input >= 0 || p->output >= 0;
    r->cost_nusd = usage_cost_nusd(&r->usage, p);
    journal_add(r->w->journal, now - now % 3600, r->key_id, r->tenant, r->res.route, c->provider, c->model,
                r->usage.prompt, r->usage.completion, r->cost_nusd);
    sv = series_of(r, c);
    if (r->usage.prompt > 0)
        metrics_add(sv[SV_PROMPT], r->usage.prompt);
    if (r->usage.completion > 0)
        metrics_add(sv[SV_COMPLETION], r->usage.completion);
    if (r->usage.cached > 0)
        metrics_add(sv[SV_CACHED], r->usage.cached);
    if (r->cost_nusd > 0)
        metrics_add(sv[SV_COST], r->cost_nusd);
}
