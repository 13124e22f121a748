/* attempt.c - the attempt engine: candidates one at a time, 429 retries on timers, caps and cooldowns, each attempt's limits. */
#include "plane.h"
#include "shared.h"
#include "edge.h"
#include "h1.h"
#include "jscan.h"
#include "log.h"
#include "stats.h"
#include "tally.h"
#include "text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_CAP_DEFAULT_MS 5000     /* retry.retry_after_cap_s absent or 0 */

void attempt_end(req_t *r)
{
    spend_settle(r, r->replied);          /* charged if its answer went out, else released */
    relay_end(r);
    event_del(&r->timer);
    r->waiting = 0;
    health_release(&r->health);
    if (r->m_target != NULL) {
        metrics_add(r->m_target, -1);
        r->m_target = NULL;
    }
    r->paused = 0;
    if (r->req != NULL && r->req->conn != NULL)
        evhtp_connection_set_hook(r->req->conn, evhtp_hook_on_write, NULL, NULL);
    if (r->call != NULL) {
        up_abort(r->call);
        r->call = NULL;
    }
    if (r->resp_headers != NULL) {
        evhtp_kvs_free(r->resp_headers);
        r->resp_headers = NULL;
    }
    if (r->resp != NULL)
        evbuffer_drain(r->resp, evbuffer_get_length(r->resp));
}

int attempt_fails_over(long s)
{
    return s >= 500 || s == 429 || s == 401 || s == 403;
}

/* What an attempt on a candidate counts into, found once per route,
 * provider record and model in a store generation and kept per thread
 * (built and looked up by name, they took some 1,500 instructions a
 * request): its first-byte histogram, its successful attempts, the
 * target's in-flight gauge and the latency slot the "latency" sort reads. */
enum { AS_TTFB, AS_OK, AS_TARGET, AS_LAT };
#define ATTEMPT_SERIES 64
static _Thread_local metrics_memo_t attempt_series[ATTEMPT_SERIES], attempt_scratch;

static void *const *cand_series(req_t *r, const candidate_t *c)
{
    metrics_t *m = r->w->metrics;
    metrics_memo_t *v;
    if (!metrics_memo(attempt_series, ATTEMPT_SERIES, &attempt_scratch, m, c->gen, r->res.route, c->prov, c->model,
                      &v)) {
        char lat[600];
        v->slot[AS_TTFB] = metrics_series(m, M_TTFB, c->provider, c->model, NULL, NULL);
        v->slot[AS_OK] = metrics_series(m, M_ATTEMPTS, c->provider, c->model, "ok", NULL);
        v->slot[AS_TARGET] = metrics_series(m, M_TARGET_IN_FLIGHT, r->res.route, c->provider, c->model, NULL);
        text_cat(lat, sizeof(lat), "lat:", c->provider, "/", c->model, NULL);   /* for sort: latency */
        v->slot[AS_LAT] = tally_get(lat);
    }
    return v->slot;
}

/* The upstream's final status line: the attempt's first byte. */
static void on_up_status(void *arg, int status)
{
    req_t *r = arg;
    const candidate_t *c = &r->res.cand[r->cand];
    void *const *sv;
    r->status = status;
    r->last_data_ms = edge_now_ms();
    if (r->resp_headers != NULL)
        evhtp_kvs_free(r->resp_headers);
    r->resp_headers = evhtp_kvs_new();
    r->up_hdrs_len = 0;                  /* (the kvs pointing into up_hdrs went with the old list) */
    if (r->got_first_byte)
        return;
    r->got_first_byte = 1;
    r->ttfb_ms = req_elapsed_ms(r);
    sv = cand_series(r, c);
    if (sv[AS_LAT] != NULL)
        tally_observe_ttfb(sv[AS_LAT], r->last_data_ms - r->attempt_ms);
    metrics_observe(sv[AS_TTFB], (r->last_data_ms - r->attempt_ms) / 1000.0);
    attempt_arm_timer(r, r->last_data_ms);  /* from the first-byte limit to the idle gap */
}

/* Sleeps until UNTIL (monotonic ms), then attempt_next tries the current
 * candidate again: a timer, so the worker goes on serving meanwhile. */
static void wait_then_retry(req_t *r, double until)
{
    r->waiting = 1;
    edge_timer_after(&r->timer, until - edge_now_ms() > 1 ? until - edge_now_ms() : 1);
}

void attempt_event(req_t *r, event_kind_t kind, int status, const char *detail)
{
    const candidate_t *c = &r->res.cand[r->cand];
    events_emit(r->w->events, kind, status, r->res.route, r->res.route_id, c->provider, c->model, r->request_id,
                detail);
}

/* A failed attempt counts towards its upstream's cooldown; the start of one
 * is logged and counted. */
static void count_failure(req_t *r, const char *code, double now)
{
    const config_t *cfg = r->w->cfg;
    const candidate_t *c = &r->res.cand[r->cand];
    uint64_t streak;
    if (!health_failure(&r->health, (int64_t)now, cfg->cooldown_after, cfg->cooldown_s * 1000LL, &streak))
        return;
    metrics_add(metrics_series(r->w->metrics, M_COOLDOWNS, c->provider, c->model, NULL, NULL), 1);
    tlog(LOG_WARN, "upstream %s/%s cools down for %d s after %llu failures in a row (the last: %s)", c->provider,
         c->model, cfg->cooldown_s, (unsigned long long)streak, code);
    attempt_event(r, EV_COOLDOWN_START, r->status > 0 && !r->relaying ? (int)r->status : 0, code);
}

/* Keeps DETAIL for the trace, in the request's own space. */
static const char *keep_detail(req_t *r, const char *detail)
{
    size_t len = detail != NULL ? strlen(detail) + 1 : 0;
    char *at = r->details + r->details_len;
    if (len == 0 || len > sizeof(r->details) - r->details_len)
        return NULL;
    memcpy(at, detail, len);
    r->details_len += len;
    return at;
}

/* One attempt is over: the call ended (FAILED is NULL when a whole
 * response arrived, else its error code and DETAIL), or our timer ended it
 * (FAILED names which limit). Replies, retries, fails over, or ends the
 * stream. */
void attempt_over(req_t *r, const char *failed, const char *detail)
{
    const candidate_t *c = &r->res.cand[r->cand];
    trace_t *t = &r->trace[r->ntrace > 0 ? r->ntrace - 1 : 0];   /* start_attempt added it */
    const char *code = failed;
    double now = edge_now_ms();

    if (failed == NULL && attempt_fails_over(r->status)) {
        code = r->status == 429 ? "upstream_rate_limited" : "upstream_error";
    } else if (failed == NULL) {
        code = relay_check(r, &detail);
    }
    t->detail = keep_detail(r, detail);
    t->status = failed == NULL ? (int)r->status : 0;
    t->error = code;
    t->ms = now - r->attempt_ms;
    metrics_add(code != NULL ? metrics_series(r->w->metrics, M_ATTEMPTS, c->provider, c->model, code, NULL)
                             : cand_series(r, c)[AS_OK], 1);
    stats_count(stats_line(r->w->stats, r->res.route_id, r->res.route, c->provider, c->model, r->res.variant),
                code != NULL, t->ms);

    if (code == NULL) {
        if (r->health.probe)              /* it was the probe of an upstream cooling down: it is back */
            attempt_event(r, EV_COOLDOWN_END, t->status, "its probe was answered");
        health_success(&r->health);       /* the upstream answered: success, or the caller's own error */
        relay_finish(r);
        attempt_end(r);
        return;
    }
    if (r->relaying) {                    /* past the commit point: no failover */
        count_failure(r, code, now);
        relay_abort(r, code, t->detail != NULL ? t->detail : code);
        attempt_end(r);
        return;
    }
    r->last_fail = code;
    if (t->status == 429) {
        /* no request on any worker goes to this upstream before UNTIL;
         * this one tries it again then, if retries and time are left */
        const char *ra = r->resp_headers ? evhtp_kv_find(r->resp_headers, "retry-after") : NULL;
        double wait = h1_retry_after_ms(ra, time(NULL)), until;
        if (wait > r->retry_cap_ms)
            wait = r->retry_cap_ms;
        until = now + wait;
        r->n429++;
        health_defer(&r->health, (int64_t)until);
        if (r->w->shared != NULL) {       /* and on no other node either */
            char slot[700];
            text_cat(slot, sizeof(slot), "up:", c->provider, "/", c->model, NULL);
            shared_defer(r->w->shared, slot, (int64_t)until);
        }
        attempt_end(r);
        if (r->tries <= r->max_429_retries && until < r->deadline_ms) {
            char why[80], num[24];
            metrics_add(metrics_series(r->w->metrics, M_RETRIES, c->provider, c->model, NULL, NULL), 1);
            text_cat(why, sizeof(why), "tried again in ", text_int(num, (long long)wait), " ms (Retry-After)", NULL);
            attempt_event(r, EV_RETRY_429, 429, why);
            wait_then_retry(r, until);
            return;
        }
    } else {
        /* connection error, timeout, 5xx, 401/403: counts towards a cooldown */
        count_failure(r, code, now);
        attempt_end(r);
    }
    if (r->cand + 1 < r->res.ncand) {      /* another candidate follows */
        metrics_add(metrics_series(r->w->metrics, M_FAILOVERS, r->res.route, code, NULL, NULL), 1);
        attempt_event(r, EV_FAILOVER, t->status, t->detail != NULL ? t->detail : code);
    }
    r->cand++;
    r->tries = 0;
    attempt_next(r);
}

static void on_up_done(void *arg, const char *code, const char *detail)
{
    req_t *r = arg;
    r->call = NULL;                       /* freed by the caller once this returns */
    attempt_over(r, code, detail);
}

static const up_handlers_t up_handlers = { on_up_status, relay_header, relay_data, on_up_done };

/* The attempt's timer: fires at the nearest of its limits and re-arms
 * itself for the next one, so bytes arriving cost no timer operation. */
void attempt_arm_timer(req_t *r, double now)
{
    double next = r->attempt_deadline_ms, wait;
    if (!r->got_first_byte) {
        if (r->attempt_ms + r->first_byte_ms < next)
            next = r->attempt_ms + r->first_byte_ms;
    } else if (!r->paused && r->last_data_ms + r->idle_ms < next) {
        next = r->last_data_ms + r->idle_ms;
    }
    wait = next - now;
    if (wait < 1)
        wait = 1;
    edge_timer_after(&r->timer, wait);
}

static void on_attempt_timer(evutil_socket_t fd, short what, void *arg)
{
    req_t *r = arg;
    double now = edge_now_ms();
    const char *code = NULL;
    (void)fd;
    (void)what;
    if (r->waiting) {                     /* a Retry-After wait is over */
        r->waiting = 0;
        attempt_next(r);
        return;
    }
    if (r->call == NULL)
        return;
    if (now >= r->attempt_deadline_ms)
        code = "upstream_total_timeout";
    else if (!r->got_first_byte && now >= r->attempt_ms + r->first_byte_ms)
        code = "upstream_first_byte_timeout";
    else if (r->got_first_byte && !r->paused && now >= r->last_data_ms + r->idle_ms)
        code = "upstream_idle_timeout";
    if (code == NULL) {
        attempt_arm_timer(r, now);
        return;
    }
    attempt_over(r, code, NULL);
}

/* The upstream body is the client's bytes with the model value replaced
 * and, for an OpenAI stream, the edit asking for its usage (intake.c):
 * pieces of the client's buffer around the new bytes, sent without a copy. */
static int body_pieces(req_t *r, const char *model, struct iovec *iov, int *n)
{
    long ql;
    size_t at = 0;
    struct edit { size_t off, cut; const char *ins; size_t len; } e[2];
    int ne = 0;
    if (r->multipart)
        ql = strlen(model) < sizeof(r->up_model) ? (long)text_cat(r->up_model, sizeof(r->up_model), model, NULL) : -1;
    else
        ql = jscan_quote(model, r->up_model, sizeof(r->up_model));
    if (ql < 0 || (size_t)ql >= sizeof(r->up_model))
        return -1;
    e[ne].off = r->model_off, e[ne].cut = r->model_len, e[ne].ins = r->up_model, e[ne++].len = (size_t)ql;
    if (r->usage_ins != NULL && r->up == DIALECT_OPENAI) {
        e[ne].off = r->usage_off, e[ne].cut = r->usage_cut, e[ne].ins = r->usage_ins, e[ne++].len = strlen(r->usage_ins);
        if (e[1].off < e[0].off) {        /* in the order they come */
            struct edit t = e[0];
            e[0] = e[1];
            e[1] = t;
        }
    }
    *n = 0;
    for (int i = 0; i < ne; i++) {
        iov[*n].iov_base = (void *)(r->body + at);
        iov[(*n)++].iov_len = e[i].off - at;
        iov[*n].iov_base = (void *)e[i].ins;
        iov[(*n)++].iov_len = e[i].len;
        at = e[i].off + e[i].cut;
    }
    iov[*n].iov_base = (void *)(r->body + at);
    iov[(*n)++].iov_len = r->body_len - at;
    r->drop_usage = r->usage_ins != NULL && r->up == DIALECT_OPENAI && !r->usage_asked;
    return 0;
}

static const char *const upstream_paths[EP__COUNT] = {
    "/chat/completions", "/completions", "/embeddings", "/audio/speech",
    "/audio/transcriptions", "/images/generations", "/responses",
};

/* A timeout for candidate C: the route's (ROUTE_V), else the provider's
 * (PROV_V), else DFLT (the config's); NAN is "not set". */
static double timeout_of(double route_v, double prov_v, double dflt)
{
    return !isnan(route_v) ? route_v : !isnan(prov_v) ? prov_v : dflt;
}

/* Appends "NAME: VALUE\r\n" to the head being built in BUF (*LEN < CAP),
 * NUL-terminated; -1 when it does not fit (BUF and *LEN unchanged). Four
 * copies of known lengths: text_append's walk of its arguments was a
 * third of the cost of the five lines every request has. */
static int head_line(char *buf, size_t cap, size_t *len, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value), at = *len;
    if (n + v + 4 >= cap - at)           /* ": ", CRLF and the NUL */
        return -1;
    memcpy(buf + at, name, n);
    at += n;
    buf[at++] = ':';
    buf[at++] = ' ';
    memcpy(buf + at, value, v);
    at += v;
    buf[at++] = '\r';
    buf[at++] = '\n';
    buf[at] = '\0';
    *len = at;
    return 0;
}

/* Where candidate C's provider takes the request, by its protocol: OpenAI's
 * {base_url}/chat/completions (and the other endpoints), Anthropic's
 * {base_url}/messages, Azure's {base_url}/openai/deployments/MODEL/...
 * ?api-version=V. Written into BUF; NULL when the provider has no such
 * endpoint (Anthropic's has only chat) or the deployment name cannot go in a path. */
static const char *upstream_path(const req_t *r, const candidate_t *c, const char *protocol, char *buf, size_t cap)
{
    if (strcmp(protocol, "anthropic") == 0)
        return r->ep == EP_CHAT ? "/messages" : NULL;
    if (strcmp(protocol, "azure") != 0)
        return upstream_paths[r->ep];
    if (strspn(c->model, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(c->model))
        return NULL;
    snprintf(buf, cap, "/openai/deployments/%s%s?api-version=%s", c->model, upstream_paths[r->ep],
             c->api_version);
    return buf;
}

/* The credentials and version headers of PROTOCOL, unless the provider's
 * own headers set them: Authorization: Bearer (OpenAI), api-key (Azure),
 * x-api-key and anthropic-version (Anthropic). */
static int auth_lines(const candidate_t *c, const char *protocol, const char *key, char *head, size_t cap,
                      size_t *len)
{
    char auth[1100];
    int anthropic = strcmp(protocol, "anthropic") == 0;
    if (key != NULL && *key != '\0') {
        if (anthropic || strcmp(protocol, "azure") == 0) {
            if (head_line(head, cap, len, anthropic ? "x-api-key" : "api-key", key) < 0)
                return -1;
        } else {
            text_cat(auth, sizeof(auth), "Bearer ", key, NULL);
            if (head_line(head, cap, len, "Authorization", auth) < 0)
                return -1;
        }
    }
    if (anthropic && cJSON_GetObjectItem(c->headers, "anthropic-version") == NULL &&   /* case-insensitive */
        head_line(head, cap, len, "anthropic-version", "2023-06-01") < 0)
        return -1;
    return 0;
}

/* The upstream body: the client's bytes with the model replaced, or, when
 * the dialects differ, its translation (in r->xbuf). Returns 0, -1 on a
 * failure of ours, or -2 after answering the client 400 (its request has
 * no translation to this upstream's dialect). */
static int upstream_body(req_t *r, const candidate_t *c, up_request_t *rq)
{
    dialect_req_opts_t o;
    dialect_err_t err;
    const cJSON *mt;
    if (r->xl == NULL)
        return body_pieces(r, c->model, rq->body, &rq->nbody);
    if (r->xbuf == NULL && (r->xbuf = evbuffer_new()) == NULL)
        return -1;
    evbuffer_drain(r->xbuf, evbuffer_get_length(r->xbuf));
    mt = c->default_max_tokens;
    o.model = c->model;
    o.default_max_tokens = cJSON_IsNumber(mt) ? (long)mt->valuedouble : 4096;
    memset(&err, 0, sizeof(err));
    if (r->xl->request(r->body, r->body_len, &o, r->xbuf, &r->xinfo, &err) < 0) {
        if (err.code != NULL && strcmp(err.code, "out_of_memory") == 0)
            return -1;                    /* ours, not the caller's: the next candidate, or a 502 */
        reply_error(r, 400, "invalid_request_error", err.code ? err.code : "unsupported_parameter",
                    err.param[0] ? err.param : NULL, "%s (the route's target %s/%s speaks another API)",
                    err.message[0] ? err.message : "the request cannot be translated", c->provider, c->model);
        return -2;
    }
    rq->body[0].iov_base = evbuffer_pullup(r->xbuf, -1);
    rq->body[0].iov_len = evbuffer_get_length(r->xbuf);
    rq->nbody = 1;
    return 0;
}

/* Returns 0 when the attempt is under way, -1 when it could not start
 * (the next candidate is tried), -2 when the client was answered already. */
static int start_attempt(req_t *r)
{
    const candidate_t *c = &r->res.cand[r->cand];
    const config_t *cfg = r->w->cfg;
    const char *key = c->api_key != NULL ? c->api_key : c->api_key_env ? getenv(c->api_key_env) : NULL;
    const char *protocol = c->protocol;
    char head[8192], path[700];
    size_t hlen = 0;
    const cJSON *h;
    up_request_t rq = { .base_url = c->base_url, .head = head, .nbody = 3 };
    int rc;

    r->up = dialect_of_protocol(protocol);
    r->xl = dialect_between(r->client, r->up);
    if ((rq.path = upstream_path(r, c, protocol, path, sizeof(path))) == NULL) {
        reply_error(r, 400, "invalid_request_error", "unsupported_endpoint", NULL,
                    "the route's target %s/%s (protocol %s) has no %s endpoint", c->provider, c->model, protocol,
                    schema_endpoint_name(r->ep));
        return -2;
    }
    r->drop_usage = 0;
    if ((rc = upstream_body(r, c, &rq)) < 0)
        return rc;
    if (auth_lines(c, protocol, key, head, sizeof(head), &hlen) < 0)
        return -1;
    if (head_line(head, sizeof(head), &hlen, "Content-Type",
                  r->xl == NULL && r->content_type[0] ? r->content_type : "application/json") < 0 ||
        head_line(head, sizeof(head), &hlen, "x-request-id", r->request_id) < 0 ||
        head_line(head, sizeof(head), &hlen, "User-Agent", "turnout/" TURNOUT_VERSION) < 0)
        return -1;
    cJSON_ArrayForEach(h, c->headers) {
        if (cJSON_IsString(h) && head_line(head, sizeof(head), &hlen, h->string, h->valuestring) < 0)
            return -1;
    }
    rq.head_len = hlen;
    if (r->resp == NULL && (r->resp = evbuffer_new()) == NULL)
        return -1;
    r->status = 0;
    r->got_first_byte = 0;
    r->up_framed = r->sse_done = 0;
    r->usage.prompt = r->usage.completion = r->usage.cached = -1;
    r->attempt_ms = r->last_data_ms = edge_now_ms();
    r->first_byte_ms = timeout_of(r->res.to.first_byte_s, c->to.first_byte_s, cfg->first_byte_timeout_s) * 1000.0;
    r->idle_ms = timeout_of(r->res.to.idle_s, c->to.idle_s, cfg->idle_gap_s) * 1000.0;
    r->attempt_deadline_ms = r->deadline_ms;
    if (!isnan(c->to.total_s) && r->attempt_ms + c->to.total_s * 1000.0 < r->deadline_ms)
        r->attempt_deadline_ms = r->attempt_ms + c->to.total_s * 1000.0;
    rq.connect_ms = (long)timeout_of(r->res.to.connect_ms, c->to.connect_ms, cfg->connect_timeout_ms);
    /* the attempt timer enforces first byte, idle gap and the total; this
     * is only a backstop behind it */
    rq.total_ms = (long)(r->attempt_deadline_ms - r->attempt_ms) + 5000L;
    r->attempts++;
    r->tries++;
    r->last_cand = r->cand;
    trace_add(r, NULL);
    r->m_target = cand_series(r, c)[AS_TARGET];
    metrics_add(r->m_target, 1);
    if ((r->call = up_start(r->w, &rq, &up_handlers, r)) == NULL) {
        r->trace[r->ntrace - 1].error = "upstream_error";
        attempt_end(r);
        return -1;
    }
    attempt_arm_timer(r, r->attempt_ms);
    return 0;
}

void attempt_init(req_t *r)
{
    evtimer_assign(&r->timer, r->w->base, on_attempt_timer, r);
}

void attempt_first(req_t *r)
{
    const resolution_t *res = &r->res;
    r->max_429_retries = res->max_429_retries >= 0 ? res->max_429_retries : 2;
    r->retry_cap_ms = res->retry_after_cap_s > 0 ? res->retry_after_cap_s * 1000.0 : RETRY_CAP_DEFAULT_MS;
    r->deadline_ms = edge_now_ms() + (!isnan(res->to.total_s) ? res->to.total_s : r->w->cfg->total_timeout_s) * 1000.0;
    r->cand = 0;
    r->m_route = metrics_series(r->w->metrics, M_ROUTE_IN_FLIGHT, r->res.route, NULL, NULL, NULL);
    metrics_add(r->m_route, 1);
    attempt_next(r);
}

/* The current candidate is passed over, for WHY. */
static void skipped(req_t *r, const char *why)
{
    const candidate_t *c = &r->res.cand[r->cand];
    trace_add(r, why);
    metrics_add(metrics_series(r->w->metrics, M_SKIPS, c->provider, c->model, why, NULL), 1);
    if (strcmp(why, "at_cap") == 0)
        attempt_event(r, EV_CAPACITY_EXHAUSTED, 0, "passed over: its max_in_flight is reached");
    else if (strcmp(why, "budget_exhausted") == 0)
        attempt_event(r, EV_BUDGET_EXHAUSTED, 0, "passed over: a budget of its own cannot take the request");
}

/* The current candidate's budgets answered RC (spend_reserve's): its
 * attempt starts (1), or it is passed over (0: the next one's turn), or
 * the client has its answer (1). */
static int reserved(req_t *r, int rc)
{
    if (rc != 0) {
        health_release(&r->health);
        if (rc < 0)
            return 1;                     /* a budget of the request's refused: the client has its 429 */
        skipped(r, "budget_exhausted");
        r->skipped_budget++;
        return 0;
    }
    if ((rc = start_attempt(r)) == 0)
        return 1;
    spend_settle(r, 0);
    health_release(&r->health);
    if (rc == -2)
        return 1;                         /* the client has its answer */
    r->last_fail = "upstream_error";
    return 0;
}

void attempt_reserved(req_t *r, int rc)
{
    if (reserved(r, rc))
        return;
    r->cand++;
    r->tries = 0;
    attempt_next(r);
}

/* Gives the current candidate, or the next one that is usable, an attempt;
 * replies when none is left. A candidate cooling down, whose probe is out,
 * at a cap or over a budget of its own is passed over (and listed in the
 * trace). */
void attempt_next(req_t *r)
{
    const config_t *cfg = r->w->cfg;
    int rc;
    for (; r->cand < r->res.ncand; r->cand++, r->tries = 0) {
        double now = edge_now_ms();
        int64_t until = 0;
        if (now >= r->deadline_ms) {
            r->last_fail = "upstream_total_timeout";
            break;
        }
        health_of(&r->res, r->cand, &r->health);
        switch (health_take(&r->health, (int64_t)now, cfg->cooldown_after, &until)) {
        case HEALTH_USABLE:
            if ((rc = spend_reserve(r)) == 2 || reserved(r, rc))
                return;                   /* Redis answers later (attempt_reserved), or this one is under way */
            break;
        case HEALTH_COOLING:
            if (r->tries > 0 && until < r->deadline_ms) {
                wait_then_retry(r, (double)until);   /* our 429 retry, put off by a later 429 */
                return;
            }
            skipped(r, "cooling_down");
            r->skipped_cool++;
            break;
        case HEALTH_PROBING:
            skipped(r, "probing");
            r->skipped_cool++;
            break;
        case HEALTH_AT_CAP:
            skipped(r, "at_cap");
            r->skipped_cap++;
            break;
        }
    }
    reply_exhausted(r);
}
