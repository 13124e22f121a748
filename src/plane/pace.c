/* pace.c - rate limits of keys and tenants: requests and tokens per minute and requests in flight, shared by all workers, and OpenAI's x-ratelimit-* headers.
 *
 * A key record's rpm, tpm and max_in_flight, and a tenant record's
 * (/v1/tenants), limit its callers together, across every worker (the
 * ledger's counters, "k:ID" and "t:NAME"). A request is admitted once its
 * body is parsed, before resolution, when each limit takes it: one request
 * and its estimated tokens (body bytes / 4 plus its max_tokens, else the
 * config's budgets.default_output_tokens) in the current minute (UTC
 * minutes, like the budgets' 1m window), and a place in flight. Over a
 * limit the client gets 429 rate_limited with Retry-After (the minute's
 * end; 1 s for in flight). When the request ends its tokens are reconciled
 * with what its answer used and its place is given back.
 *
 * Every answer to a limited caller carries x-ratelimit-limit-requests,
 * -remaining-requests, -reset-requests and the -tokens three: of the key's
 * limits and the tenant's, the one with the fewest requests left. */
#include "plane.h"
#include "budget.h"
#include "shared.h"
#include "text.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The limits of a key or tenant record as numbers, with the ledger entry
 * they count in: read from the record once per store generation and kept
 * per thread by record (finding three members of a key record by name and
 * its entry by a formatted name took some 2,000 instructions a request). */
typedef struct rule {
    const cJSON *rec;                     /* the record read, in generation GEN (0: the slot is empty) */
    size_t gen;
    int64_t limit[LEDGER__N], flight;     /* -1 where it sets none */
    ledger_entry_t *e;                    /* its counters; NULL when it sets no limit */
} rule_t;

#define RULES 64
static _Thread_local rule_t rules[RULES];

static int64_t limit_of(const cJSON *rec, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* The rule of REC (store generation GEN; 0 for a record of its own, read
 * each time), which WHO ("key", "tenant") NAME is; into *SCRATCH when it
 * is not kept. Its e is NULL when it limits nothing. */
static const rule_t *rule_of(const cJSON *rec, size_t gen, const char *who, const char *name, rule_t *scratch)
{
    rule_t *u = &rules[((uintptr_t)rec >> 4) % RULES];
    char ename[200];
    if (gen != 0 && u->gen == gen && u->rec == rec)
        return u;
    if (gen == 0)
        u = scratch;
    u->rec = rec;
    u->gen = gen;
    u->limit[LEDGER_USD] = -1;
    u->limit[LEDGER_REQUESTS] = limit_of(rec, "rpm");
    u->limit[LEDGER_TOKENS] = limit_of(rec, "tpm");
    u->flight = limit_of(rec, "max_in_flight");
    u->e = NULL;
    if (u->limit[LEDGER_REQUESTS] >= 0 || u->limit[LEDGER_TOKENS] >= 0 || u->flight >= 0) {
        ename[0] = *who;
        text_cat(ename + 1, sizeof(ename) - 1, ":", name, NULL);
        if ((u->e = ledger_get(ename)) == NULL)
            u->gen = 0;                   /* out of memory: not limited now (never refused for our sake), asked again */
    }
    return u;
}

/* The x-ratelimit-* values for R of a pace with limits LIMIT whose
 * counters hold HELD (spent and reserved, this request's included) until
 * RESET_S seconds from now, unless one with fewer requests left is shown
 * already (FORCE: shown anyway, a refusal's). */
static void show(req_t *r, const int64_t held[LEDGER__N], const int64_t limit[LEDGER__N], int64_t reset_s, int force)
{
    int64_t left[LEDGER__N], order;
    for (int i = LEDGER_TOKENS; i <= LEDGER_REQUESTS; i++)
        left[i] = limit[i] < 0 ? -1 : limit[i] - held[i] > 0 ? limit[i] - held[i] : 0;
    order = left[LEDGER_REQUESTS] >= 0 ? left[LEDGER_REQUESTS] : INT64_MAX;
    if (r->rl_shown && order >= r->rl_order && !force)
        return;
    r->rl_shown = 1;
    r->rl_order = order;
    r->rl_reset_s = reset_s;
    for (int i = LEDGER_TOKENS; i <= LEDGER_REQUESTS; i++) {
        r->rl_limit[i] = limit[i];
        r->rl_remaining[i] = left[i];
    }
}

/* show() for a refusal: what E holds now. */
static void show_refused(req_t *r, ledger_entry_t *e, const int64_t limit[LEDGER__N], int64_t now, int64_t end)
{
    int64_t spent[LEDGER__N], reserved[LEDGER__N];
    ledger_read(e, WIN_MINUTE, now, spent, reserved);
    for (int i = 0; i < LEDGER__N; i++)
        spent[i] += reserved[i];
    show(r, spent, limit, end - now, 1);
}

/* The 429 of a pace over its limit: counter OVER (LEDGER_TOKENS,
 * LEDGER_REQUESTS, or SHARED_FLIGHT for its places in flight). */
static void refuse(req_t *r, const char *who, const char *name, const rule_t *u, int over, int64_t now, int64_t end)
{
    if (over == SHARED_FLIGHT) {
        reply_retry_hints(r, 1000, 1);
        reply_error(r, 429, "rate_limit_error", "rate_limited", NULL,
                    "the %s '%s' has %lld requests in flight, its limit; retry shortly", who, name,
                    (long long)u->flight);
        return;
    }
    reply_retry_hints(r, (double)(end - now) * 1000.0, 1);
    reply_error(r, 429, "rate_limit_error", "rate_limited", NULL,
                "the %s '%s' is over its limit of %lld %s per minute; retry after %lld s", who, name,
                (long long)u->limit[over], over == LEDGER_TOKENS ? "tokens" : "requests", (long long)(end - now));
}

/* Takes one pace (the key's or the tenant's: record REC of store
 * generation GEN) for R; 0, or -1 after the 429. With SHARE > 1 (a
 * cluster whose Redis is unreachable) each limit is that many nodes'. */
static int take(req_t *r, const char *who, const char *name, const cJSON *rec, size_t gen,
                const int64_t amt[LEDGER__N], int64_t now, int share)
{
    rule_t scratch;
    const rule_t *u = rule_of(rec, gen, who, name, &scratch);
    pace_t *p = &r->pace[r->npace];
    int64_t end, limit[LEDGER__N], flight = u->flight;
    int over;
    if (u->e == NULL)
        return 0;
    p->e = u->e;
    for (int i = 0; i < LEDGER__N; i++)
        limit[i] = u->limit[i] >= 0 ? u->limit[i] / share : -1;
    if (flight >= 0)
        flight /= share;
    ledger_window(WIN_MINUTE, now, NULL, &end);
    if ((over = ledger_reserve(p->e, WIN_MINUTE, now, amt, limit, &p->h)) >= 0) {
        show_refused(r, p->e, limit, now, end);
        refuse(r, who, name, u, over, now, end);
        return -1;
    }
    if (flight >= 0 && !ledger_enter(p->e, flight)) {
        ledger_settle(p->e, &p->h, NULL);
        show_refused(r, p->e, limit, now, end);
        refuse(r, who, name, u, SHARED_FLIGHT, now, end);
        return -1;
    }
    p->in_flight = flight >= 0;
    r->npace++;
    show(r, p->h.after, limit, end - now, 0);
    return 0;
}

/* The key's and the tenant's rules that limit R, in order, copied into U
 * (the per-thread cache may reuse a slot for the second), their names
 * into WHO and NAME; how many. */
static int rules_of(req_t *r, rule_t u[2], const char *who[2], const char *name[2])
{
    const cJSON *tenant;
    store_hold_t *hold = NULL;
    rule_t scratch;
    int n = 0;
    if (r->key_rec != NULL &&
        (u[n] = *rule_of(r->key_rec, store_hold_generation(r->key_hold), "key", r->key_id, &scratch)).e != NULL) {
        who[n] = "key";
        name[n++] = r->key_id;
    }
    if (r->tenant[0] != '\0' && (tenant = store_get_tenant(r->w->reader, r->tenant, &hold)) != NULL &&
        !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(tenant, "enabled")) &&
        (u[n] = *rule_of(tenant, store_hold_generation(hold), "tenant", r->tenant, &scratch)).e != NULL) {
        who[n] = "tenant";
        name[n++] = r->tenant;
    }
    store_release(hold);
    return n;
}

/* The pace_admit of a cluster with cluster.redis: the request's paces
 * are taken in Redis in one call; 1 (intake_paced follows when it is
 * admitted), 0 (nothing to take), -1 (answered). Unreachable, the
 * failure policy decides. */
static void on_paced(void *arg, const shared_answer_t *a);

static int policy_fallback(req_t *r, int64_t now, const int64_t amt[LEDGER__N]);
static int pace_admit_local(req_t *r, int64_t now, const int64_t amt[LEDGER__N], int share);

static int admit_shared(req_t *r, const int64_t amt[LEDGER__N], int64_t now)
{
    rule_t u[2];
    const char *who[2], *name[2];
    shared_take_t t[2];
    int64_t end, tag = ledger_window(WIN_MINUTE, now, NULL, &end);
    int n = rules_of(r, u, who, name);
    if (n == 0)
        return 0;
    for (int i = 0; i < n; i++) {
        t[i].e = u[i].e;
        t[i].tag = tag;
        t[i].ttl_s = end - now + 1;
        memcpy(t[i].amt, amt, sizeof(t[i].amt));
        memcpy(t[i].limit, u[i].limit, sizeof(t[i].limit));
        t[i].flight = u[i].flight;
        /* what the answer is matched with (npace stays 0 until it is in) */
        r->pace[i].e = u[i].e;
        r->pace[i].in_flight = u[i].flight >= 0;
        for (int k = 0; k < LEDGER__N; k++) {
            r->pace[i].h.amt[k] = amt[k];
            r->pace[i].h.tag[k] = tag;
        }
    }
    r->pace_sent = n;
    if ((r->shared_call = shared_reserve(r->w->shared, t, n, on_paced, r)) == NULL)
        return policy_fallback(r, now, amt);
    return 1;
}

/* Of the rules U (N of them), the one counting in E, or -1. */
static int rule_for(const rule_t *u, int n, const ledger_entry_t *e)
{
    for (int i = 0; i < n; i++)
        if (u[i].e == e)
            return i;
    return -1;
}

static void on_paced(void *arg, const shared_answer_t *a)
{
    req_t *r = arg;
    rule_t u[2];
    const char *who[2], *name[2];
    int64_t now = (int64_t)time(NULL), end, amt[LEDGER__N];
    int n, j;
    r->shared_call = NULL;
    amt[LEDGER_USD] = 0;
    amt[LEDGER_TOKENS] = r->pace_estimate;
    amt[LEDGER_REQUESTS] = 1;
    if (a->result == SHARED_FAILED) {
        if (policy_fallback(r, now, amt) == 0)
            intake_paced(r);
        return;
    }
    /* the reservations are the ones sent (r->pace, in the window they were
     * sent in); the rules are read again for the limits shown and the
     * messages, found by their entry (a store change in between may have
     * taken one away) */
    ledger_window(WIN_MINUTE, now, NULL, &end);
    n = rules_of(r, u, who, name);
    if (a->result == SHARED_OVER) {
        if (a->item >= 0 && a->item < r->pace_sent && (j = rule_for(u, n, r->pace[a->item].e)) >= 0) {
            show(r, u[j].limit, u[j].limit, end - now, 1);   /* over: none left */
            refuse(r, who[j], name[j], &u[j], a->counter, now, end);
        } else {
            reply_retry_hints(r, 1000, 1);
            reply_error(r, 429, "rate_limit_error", "rate_limited", NULL, "a rate limit of the caller is reached");
        }
        return;
    }
    r->pace_shared = 1;
    r->npace = r->pace_sent;
    snprintf(r->pace_rid, sizeof(r->pace_rid), "%s", a->rid);
    for (int i = 0; i < r->npace; i++) {
        for (int k = 0; k < LEDGER__N; k++)
            r->pace[i].h.after[k] = a->after[i][k];
        if ((j = rule_for(u, n, r->pace[i].e)) >= 0)
            show(r, r->pace[i].h.after, u[j].limit, end - now, 0);
    }
    intake_paced(r);
}

/* Redis cannot be reached: cluster.redis_failure "local" takes the paces
 * here with each limit divided among the live nodes; "closed" refuses. */
static int policy_fallback(req_t *r, int64_t now, const int64_t amt[LEDGER__N])
{
    if (reply_if_shared_closed(r, "rate_limit_error", "rate_limited") < 0)
        return -1;
    return pace_admit_local(r, now, amt, shared_nodes());
}

int pace_admit(req_t *r)
{
    int64_t now = (int64_t)time(NULL), amt[LEDGER__N];
    if (r->key_rec == NULL && r->tenant[0] == '\0')
        return 0;
    amt[LEDGER_USD] = 0;
    amt[LEDGER_TOKENS] = (r->multipart ? 0 : (int64_t)(r->body_len / 4)) +
                         (r->ep == EP_EMBEDDINGS ? 0 : r->max_tokens > 0 ? r->max_tokens : r->w->cfg->default_output_tokens);
    amt[LEDGER_REQUESTS] = 1;
    r->pace_estimate = amt[LEDGER_TOKENS];
    if (r->w->shared != NULL)
        return admit_shared(r, amt, now);
    return pace_admit_local(r, now, amt, 1);
}

/* The paces taken in this process's ledger, each limit divided by SHARE. */
static int pace_admit_local(req_t *r, int64_t now, const int64_t amt[LEDGER__N], int share)
{
    const cJSON *tenant = NULL;
    store_hold_t *hold = NULL;
    int rc = 0;
    if (r->key_rec != NULL &&
        take(r, "key", r->key_id, r->key_rec, store_hold_generation(r->key_hold), amt, now, share) < 0)
        rc = -1;
    if (rc == 0 && r->tenant[0] != '\0' && (tenant = store_get_tenant(r->w->reader, r->tenant, &hold)) != NULL &&
        !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(tenant, "enabled")) &&
        take(r, "tenant", r->tenant, tenant, store_hold_generation(hold), amt, now, share) < 0)
        rc = -1;
    store_release(hold);
    if (rc < 0)
        pace_done(r);                     /* what the key took goes back */
    return rc;
}

void pace_done(req_t *r)
{
    int64_t act[LEDGER__N];
    const dialect_usage_t *u = &r->usage;
    act[LEDGER_USD] = 0;
    act[LEDGER_TOKENS] = u->prompt >= 0 || u->completion >= 0 ? usage_tokens(u)
                         : r->last_cand >= 0 ? r->pace_estimate : 0;
    act[LEDGER_REQUESTS] = 1;             /* a request made counts, answered or not */
    if (r->pace_shared) {
        shared_take_t t[2];
        int64_t delta[2][LEDGER__N];
        for (int i = 0; i < r->npace; i++) {
            t[i].e = r->pace[i].e;
            t[i].tag = r->pace[i].h.tag[0];
            t[i].flight = r->pace[i].in_flight ? 0 : -1;
            for (int k = 0; k < LEDGER__N; k++)
                delta[i][k] = act[k] - r->pace[i].h.amt[k];
        }
        shared_settle(r->w->shared, t, (const int64_t(*)[LEDGER__N])delta, r->npace, r->pace_rid);
        r->npace = 0;
        r->pace_shared = 0;
        return;
    }
    for (int i = 0; i < r->npace; i++) {
        ledger_settle(r->pace[i].e, &r->pace[i].h, act);
        if (r->pace[i].in_flight)
            ledger_leave(r->pace[i].e);
    }
    r->npace = 0;
}

void pace_headers(req_t *r)
{
    static const char *const names[LEDGER__N][3] = {
        [LEDGER_TOKENS] = { "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens" },
        [LEDGER_REQUESTS] = { "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                              "x-ratelimit-reset-requests" },
    };
    if (!r->rl_shown)
        return;
    /* written into R, which outlives the reply's head: the headers need no copies */
    text_cat(r->rl_text[2][0], sizeof(r->rl_text[2][0]), text_int(r->rl_text[2][1], r->rl_reset_s), "s", NULL);
    for (int i = LEDGER_TOKENS; i <= LEDGER_REQUESTS; i++) {
        if (r->rl_limit[i] < 0)
            continue;
        reply_header_held(r->req, names[i][0], text_int(r->rl_text[i - 1][0], r->rl_limit[i]));
        reply_header_held(r->req, names[i][1], text_int(r->rl_text[i - 1][1], r->rl_remaining[i]));
        reply_header_held(r->req, names[i][2], r->rl_text[2][0]);
    }
}
