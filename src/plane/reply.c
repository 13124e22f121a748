/* reply.c - turnout's own answers: errors in the client's shape, JSON, retry hints, the attempt trace and the access log. */
#include "plane.h"
#include "edge.h"
#include "health.h"
#include "jscan.h"
#include "text.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

double req_elapsed_ms(const req_t *r)
{
    return edge_now_ms() - (r->t0.tv_sec * 1e3 + r->t0.tv_nsec / 1e6);
}

void reply_header(evhtp_request_t *req, const char *k, const char *v)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new(k, v, 0, 1));
}

/* A header whose value outlives the reply's head (it is in R, or in the
 * records R holds): evhtp writes the head out when the reply starts, so the
 * value is not copied. */
void reply_header_held(evhtp_request_t *req, const char *k, const char *v)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new(k, v, 0, 0));
}

void reply_std_headers(req_t *r)
{
    evhtp_request_t *req = r->req;
    char num[24];
    if (r->w->stopping || r->early)   /* draining, or the body is still coming: the connection ends with the reply */
        evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
    reply_header_held(req, "x-request-id", r->request_id);
    if (r->res.route != NULL)
        reply_header_held(req, "x-turnout-route", r->res.route);
    if (r->last_cand >= 0) {
        reply_header_held(req, "x-turnout-provider", r->res.cand[r->last_cand].provider);
        reply_header_held(req, "x-turnout-model", r->res.cand[r->last_cand].model);
    }
    text_cat(r->attempts_text, sizeof(r->attempts_text), text_int(num, r->attempts), NULL);
    reply_header_held(req, "x-turnout-attempts", r->attempts_text);
    if (r->res.variant[0])
        reply_header_held(req, "x-turnout-variant", r->res.variant);
    pace_headers(r);
}

/* The body bytes a buffered reply sends: none to HEAD (evhtp sends the
 * head alone, patch 0003). */
static uint64_t reply_body_bytes(evhtp_request_t *req)
{
    return req->method == htp_method_HEAD ? 0 : evbuffer_get_length(req->buffer_out);
}

/* Sends an OpenAI-shaped error. PARAM may be NULL (JSON null); EXTRA, if
 * not NULL, is more members of the error object (",\"attempts\":[...]"). */
static void reply_error_with(req_t *r, int status, const char *type, const char *code, const char *param,
                             const char *extra, const char *fmt, va_list ap)
{
    char msg[4096], qmsg[8400], qparam[128];
    evhtp_request_t *req = r->req;
    if (req == NULL || r->replied)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (jscan_quote(msg, qmsg, sizeof(qmsg)) < 0)
        snprintf(qmsg, sizeof(qmsg), "\"error\"");
    if (param == NULL || jscan_quote(param, qparam, sizeof(qparam)) < 0)
        snprintf(qparam, sizeof(qparam), "null");
    dialect_error_body(r->client, status, type, code, qparam, qmsg, extra, req->buffer_out);
    reply_header(req, "Content-Type", "application/json");
    reply_std_headers(r);
    r->replied = 1;
    r->final_status = status;
    r->bytes_out = reply_body_bytes(req);
    r->error = code;
    evhtp_send_reply(req, (evhtp_res)status);
}

void reply_error(req_t *r, int status, const char *type, const char *code, const char *param,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_with(r, status, type, code, param, NULL, fmt, ap);
    va_end(ap);
}

void reply_no_router(req_t *r, const char *router)
{
    reply_error(r, 404, "invalid_request_error", "router_not_found", NULL,
                "router '%s' does not exist or is not active", router);
}

/* --- access log -------------------------------------------------------- */

/* Writes V as a JSON string (or null) into BUF. */
static const char *qstr(const char *v, char *buf, size_t cap)
{
    if (v == NULL || jscan_quote(v, buf, cap) < 0)
        return "null";
    return buf;
}

/* --- attempt trace ---------------------------------------------------- */

trace_t *trace_add(req_t *r, const char *skipped)
{
    trace_t *t = r->ntrace < MAX_TRACE ? &r->trace[r->ntrace++] : &r->trace[MAX_TRACE - 1];
    memset(t, 0, sizeof(*t));
    t->cand = r->cand;
    t->skipped = skipped;
    t->start_ms = req_elapsed_ms(r);
    return t;
}

/* Appends to BUF (capacity CAP, *LEN used) unless it would not fit; returns -1 then. */
int plane_append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len) {
        buf[*len] = '\0';
        return -1;
    }
    *len += (size_t)n;
    return 0;
}

/* The trace as a JSON array: per entry provider, model, then either
 * "skipped" or status / error / start_ms / ms. Entries that do not fit are
 * left out. */
static const char *trace_json(const req_t *r, char *buf, size_t cap)
{
    size_t len = 0;
    plane_append(buf, cap, &len, "[");
    for (int i = 0; i < r->ntrace; i++) {
        const trace_t *t = &r->trace[i];
        const candidate_t *c = &r->res.cand[t->cand];
        char qp[160], qm[600], entry[1200], status[16];
        size_t keep = len;
        if (t->skipped != NULL)
            snprintf(entry, sizeof(entry), "{\"provider\":%s,\"model\":%s,\"skipped\":\"%s\"}",
                     qstr(c->provider, qp, sizeof(qp)), qstr(c->model, qm, sizeof(qm)), t->skipped);
        else
            snprintf(entry, sizeof(entry),
                     "{\"provider\":%s,\"model\":%s,\"status\":%s,\"error\":%s%s%s,\"start_ms\":%.1f,\"ms\":%.1f}",
                     qstr(c->provider, qp, sizeof(qp)), qstr(c->model, qm, sizeof(qm)),
                     t->status ? (snprintf(status, sizeof(status), "%d", t->status), status) : "null",
                     t->error ? "\"" : "", t->error ? t->error : "null", t->error ? "\"" : "", t->start_ms, t->ms);
        if (plane_append(buf, cap, &len, "%s%s", i ? "," : "", entry) < 0 || len + 2 > cap) {
            len = keep;
            buf[len] = '\0';
            break;
        }
    }
    plane_append(buf, cap, &len, "]");
    return buf;
}

/* The trace for people, for error messages: "a/m: HTTP 500 (12 ms); ...". */
static const char *trace_text(const req_t *r, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < r->ntrace; i++) {
        const trace_t *t = &r->trace[i];
        const candidate_t *c = &r->res.cand[t->cand];
        int rc;
        if (t->skipped != NULL)
            rc = plane_append(buf, cap, &len, "%s%s/%s: not called, %s", i ? "; " : "", c->provider, c->model,
                        t->skipped);
        else if (t->status != 0)
            rc = plane_append(buf, cap, &len, "%s%s/%s: HTTP %d (%.0f ms)", i ? "; " : "", c->provider, c->model,
                        t->status, t->ms);
        else
            rc = plane_append(buf, cap, &len, "%s%s/%s: %s%s%s%s (%.0f ms)", i ? "; " : "", c->provider, c->model,
                        t->error ? t->error : "failed", t->detail ? " (" : "", t->detail ? t->detail : "",
                        t->detail ? ")" : "", t->ms);
        if (rc < 0)
            break;
    }
    return buf;
}

void reply_access_log(req_t *r)
{
    char line[16384], qmodel[MAX_MODEL * 2 + 8], qroute[600], qprov[160], qup[600], qtenant[280], trace[8192];
    char pt[24] = "null", ct[24] = "null", cost[32] = "null";
    const candidate_t *c = r->last_cand >= 0 ? &r->res.cand[r->last_cand] : NULL;
    int fd = atomic_load_explicit(&r->w->gw->access_fd, memory_order_relaxed);
    int n;
    if (fd < 0)
        return;
    if (r->usage.prompt >= 0)
        text_int(pt, r->usage.prompt);
    if (r->usage.completion >= 0)
        text_int(ct, r->usage.completion);
    if (r->priced)
        usage_format_usd(r->cost_nusd, cost, sizeof(cost));
    n = snprintf(line, sizeof(line),
                 "{\"request_id\":\"%s\",\"worker\":%d,\"key_id\":%s%s%s,\"tenant\":%s,\"path\":\"%s\","
                 "\"endpoint\":%s%s%s,\"model\":%s,"
                 "\"route\":%s,\"provider\":%s,\"upstream_model\":%s,\"attempts\":%d,"
                 "\"status\":%d,\"error\":%s%s%s,\"bytes\":%llu,\"ttfb_ms\":%.3f,\"total_ms\":%.3f,"
                 "\"prompt_tokens\":%s,\"completion_tokens\":%s,\"cost_usd\":%s,\"trace\":%s}\n",
                 r->request_id, r->w->id, r->key_id[0] ? "\"" : "", r->key_id[0] ? r->key_id : "null",
                 r->key_id[0] ? "\"" : "", qstr(r->tenant[0] ? r->tenant : NULL, qtenant, sizeof(qtenant)),
                 r->path, r->is_data ? "\"" : "",
                 r->is_data ? schema_endpoint_name(r->ep) : "null", r->is_data ? "\"" : "",
                 qstr(r->is_data ? r->model : NULL, qmodel, sizeof(qmodel)),
                 qstr(r->res.route, qroute, sizeof(qroute)),
                 qstr(c ? c->provider : NULL, qprov, sizeof(qprov)),
                 qstr(c ? c->model : NULL, qup, sizeof(qup)),
                 r->attempts, r->final_status, r->error ? "\"" : "", r->error ? r->error : "null",
                 r->error ? "\"" : "", (unsigned long long)r->bytes_out, r->ttfb_ms,
                 req_elapsed_ms(r), pt, ct, cost, trace_json(r, trace, sizeof(trace)));
    if (n > 0 && (size_t)n < sizeof(line) && write(fd, line, (size_t)n) < 0) {
        /* the access log is best effort; a full disk must not stop serving */
    }
}

static int is_timeout(const char *code)
{
    return code != NULL && strstr(code, "timeout") != NULL;
}

static void reply_trace_error(req_t *r, int status, const char *type, const char *code, const char *fmt, ...)
{
    char extra[8300], trace[8192];
    va_list ap;
    snprintf(extra, sizeof(extra), ",\"attempts\":%s", trace_json(r, trace, sizeof(trace)));
    va_start(ap, fmt);
    reply_error_with(r, status, type, code, NULL, extra, fmt, ap);
    va_end(ap);
}

/* Tells the client when to come back and whether an SDK should retry by
 * itself (x-should-retry, which the OpenAI SDKs obey before their own
 * rules). WAIT_MS >= 0 adds Retry-After (whole seconds, at least 1: what
 * HTTP says) and retry-after-ms (exact; the SDKs prefer it). Returns the
 * Retry-After value, for messages. */
const char *reply_retry_hints(req_t *r, double wait_ms, int should_retry)
{
    char ms[24];
    if (wait_ms >= 0) {
        snprintf(r->retry_after, sizeof(r->retry_after), "%ld", wait_ms > 1000 ? (long)((wait_ms + 999) / 1000) : 1L);
        snprintf(ms, sizeof(ms), "%ld", (long)(wait_ms + 0.5));
        reply_header_held(r->req, "Retry-After", r->retry_after);
        reply_header(r->req, "retry-after-ms", ms);
    }
    reply_header_held(r->req, "x-should-retry", should_retry ? "true" : "false");
    return r->retry_after;
}

/* How long until the soonest candidate may be called again, in ms from
 * now: asked of the state every worker shares when the answer goes out, so
 * a not-before that a later 429 pushed back counts, and one already past
 * does not. */
static double soonest_usable_ms(req_t *r)
{
    double now = edge_now_ms(), soonest = -1;
    for (int i = 0; i < r->res.ncand; i++) {
        health_t h;
        int64_t until = 0;
        int which;
        double at;
        health_of(&r->res, i, &h);
        switch (health_peek(&h, (int64_t)now, r->w->cfg->cooldown_after, &until, &which)) {
        case HEALTH_USABLE:
            return 0;
        case HEALTH_COOLING:
            at = (double)until - now;
            break;
        default:                          /* a probe out, or at a cap: shortly */
            at = 1000;
            break;
        }
        if (soonest < 0 || at < soonest)
            soonest = at;
    }
    return soonest > 0 ? soonest : 0;
}

int reply_if_shared_closed(req_t *r, const char *type, const char *code)
{
    if (strcmp(r->w->cfg->cluster_redis_failure, "closed") != 0)
        return 0;
    reply_retry_hints(r, 1000, 1);
    reply_error(r, 429, type, code, NULL,
                "the cluster's shared counters (Redis) cannot be reached and cluster.redis_failure is \"closed\"; "
                "retry shortly");
    return -1;
}

/* No candidate is left. Nothing was called because every candidate was at
 * a cap: 429 capacity_exhausted. Every call was rate limited (or nothing
 * was called because the candidates are cooling down): 429 with the time
 * until the soonest one is usable again. Otherwise 504 when the last
 * failure was a timeout, else 502. The body lists the trace.
 *
 * The retry hints keep the SDKs' own retries from multiplying ours: after
 * turnout itself retried 429s or every candidate failed, a retry within
 * seconds would only repeat that (x-should-retry: false); a refusal that
 * called no upstream (caps, cooling down) is worth retrying after the wait. */
void reply_exhausted(req_t *r)
{
    char text[4000];
    const char *ra;
    trace_text(r, text, sizeof(text));
    if (r->attempts == 0 && r->skipped_budget > 0 && r->skipped_cap == 0 && r->skipped_cool == 0) {
        reply_retry_hints(r, r->budget_wait_set ? r->budget_wait_ms : -1,
                          r->budget_wait_set && r->budget_wait_ms <= 60000);
        reply_trace_error(r, 429, "insufficient_quota", "budget_exhausted",
                          "every upstream for model '%s' is over a budget of its own: %s", r->model, text);
    } else if (r->attempts == 0 && r->skipped_cap > 0) {
        reply_retry_hints(r, 1000, 1);
        reply_trace_error(r, 429, "rate_limit_error", "capacity_exhausted",
                          "every upstream for model '%s' is at its concurrency limit; retry shortly: %s", r->model,
                          text);
    } else if (r->attempts == r->n429 && r->n429 + r->skipped_cool > 0) {
        ra = reply_retry_hints(r, soonest_usable_ms(r), r->n429 == 0);
        reply_trace_error(r, 429, "rate_limit_error", "rate_limited",
                          "every upstream for model '%s' is rate limited or cooling down; retry after %s s: %s",
                          r->model, ra, text);
    } else if (is_timeout(r->last_fail)) {
        reply_retry_hints(r, -1, 0);
        reply_trace_error(r, 504, "upstream_error", r->last_fail,
                          "every upstream for model '%s' failed, the last by timing out: %s", r->model, text);
    } else {
        reply_retry_hints(r, -1, 0);
        reply_trace_error(r, 502, "upstream_error", "upstream_error", "every upstream for model '%s' failed: %s",
                          r->model, text);
    }
}

/* Sends what is in the reply's buffer as a whole answer of type CTYPE. */
void reply_buffered(req_t *r, int status, const char *ctype)
{
    reply_header(r->req, "Content-Type", ctype);
    reply_std_headers(r);
    r->replied = 1;
    r->final_status = status;
    r->bytes_out = reply_body_bytes(r->req);
    evhtp_send_reply(r->req, (evhtp_res)status);
}

void reply_json(req_t *r, int status, const char *text)
{
    evbuffer_add(r->req->buffer_out, text, strlen(text));
    reply_buffered(r, status, "application/json");
}

static const char *method_name(htp_method m)
{
    return m == htp_method_GET ? "GET" : m == htp_method_POST ? "POST" : m == htp_method_HEAD ? "HEAD" : "other";
}

void reply_not_allowed(req_t *r, htp_method m, const char *path, const char *allow)
{
    reply_header(r->req, "Allow", allow);
    reply_error(r, 405, "invalid_request_error", "method_not_allowed", NULL,
                "%s is not allowed on %s; use %s", method_name(m), path, allow);
}
