/* proxy.c - the data plane: one request from headers to the access-log line.
 *
 * Lifecycle of a request (req_t):
 *   on_headers hook   (after edge.c's header checks) allocate req_t; for a
 *                     request with a body, every check that needs no body
 *                     (413, admit: path, method, key, Content-Type) and then
 *                     "100 Continue" if the client waits for it; a refusal
 *                     here is answered at once and closes the connection
 *   on_read hook      count body bytes; 413 when a chunked body crosses the limit
 *   on_request (gencb) body complete: admit a request without a body, serve
 *                     by path: parse the few fields needed, resolve, start
 *                     the first attempt
 *   upstream handlers capture status and headers, buffer or relay the body;
 *                     pause the call while the client is behind (upstream.c
 *                     makes the call: our HTTP/1.1 client, or libcurl)
 *   next_attempt      the first candidate that is not cooling down (a 429's
 *                     Retry-After, a cooldown) or at a concurrency cap
 *                     (health.c, shared by all workers) gets the attempt
 *   attempt timer     first byte, idle gap inside the response, deadlines;
 *                     between 429 retries, the Retry-After wait
 *   attempt over      success -> reply; 429 -> the same candidate again after
 *                     its Retry-After (up to max_429_retries, inside the
 *                     deadline); other failover-able failures before the
 *                     first byte reached the client -> next candidate; after
 *                     it -> an SSE error event ends the stream
 *   on_request_fini   client done or gone: abort any transfer, log, free
 * The req_t is reachable from evhtp through the request's fini hook argument
 * and from the upstream call through its handlers' argument.
 *
 * Every failure has its own error code, used in the reply, the SSE error
 * event and the access log's "error" field: upstream_connect_error,
 * upstream_connect_timeout, upstream_first_byte_timeout, upstream_idle_timeout,
 * upstream_total_timeout, upstream_rate_limited (429), upstream_error (5xx,
 * 401/403, reset, a body cut short), upstream_truncated (a stream framed
 * only by the close that ended before its terminator). */
#include "proxy.h"
#include "admin.h"
#include "auth.h"
#include "tally.h"
#include "edge.h"
#include "health.h"
#include "jscan.h"
#include "log.h"
#include "metrics.h"
#include "multipart.h"
#include "resolve.h"
#include "sse.h"
#include "upstream.h"

#include <event2/bufferevent.h>
#include <event2/event_struct.h>
#include <evhtp/evhtp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_MODEL 512
#define MAX_TRACE 32
#define RETRY_AFTER_DEFAULT_MS 1000   /* a 429 without a usable Retry-After */
#define RETRY_CAP_DEFAULT_MS 5000     /* retry.retry_after_cap_s absent or 0 */
#define MAX_QUOTED_MODEL (MAX_MODEL * 6 + 3)   /* a model name as a JSON string, at worst */
#define SSE_EVENT_MAX (1024 * 1024)   /* the longest stream event held back whole */

/* One entry of the attempt trace: an attempt, or a candidate passed over. */
typedef struct trace {
    int cand;                    /* index into res.cand */
    int status;                  /* the upstream's HTTP status, 0 for none */
    const char *error;           /* error code, NULL for none */
    const char *detail;          /* the upstream client's message (in req_t.details), or NULL */
    const char *skipped;         /* "cooling_down", "probing", "at_cap": not called */
    double start_ms, ms;         /* since the request started; how long it took */
} trace_t;

/* Where admit() sends a request. */
typedef enum { TO_NONE, TO_HEALTH, TO_METRICS, TO_MODELS, TO_DATA } target_t;

typedef struct req {
    worker_t *w;
    evhtp_request_t *req;        /* NULL once the client is gone */
    int refused;                 /* a reply was sent before the body completed */
    int early;                   /* in the headers phase of a request with a body: a reply closes the connection */
    target_t target;             /* what admit() decided, TO_NONE before */
    char router[128];            /* /router/{slug}/..., "" for none */
    int replied;
    uint64_t body_bytes;
    endpoint_t ep;
    char model[MAX_MODEL];       /* as asked by the client */
    int stream;
    char request_id[64];
    const char *body;            /* borrowed from req->buffer_in */
    size_t body_len;
    size_t model_off, model_len; /* where the model value sits in the body */
    size_t user_off, user_len;   /* the body's "user" string, if any */
    int multipart;
    char boundary[80];           /* a multipart body's boundary */
    int is_data;                 /* a data-plane endpoint (has a kind and a model) */
    char path[128];              /* for the access log */
    char content_type[256];
    char key_id[40];             /* the caller's key id, "" for none */
    char tenant[132];            /* the caller's tenant, "" for none */
    const cJSON *key_rec;        /* the caller's stored key, or NULL */
    store_hold_t *key_hold;      /* what keeps it alive */
    resolution_t res;
    int resolved;
    int cand;                    /* index of the candidate being tried */
    int last_cand;               /* the last one called, -1 before any */
    int attempts;
    char attempts_text[12];      /* for the x-turnout-attempts header */
    char retry_after[24];        /* for the Retry-After header */
    int tries;                   /* attempts on the current candidate */
    int ntrace;                  /* entries in trace (below) */
    size_t details_len;          /* bytes used in details (below) */
    const char *last_fail;       /* error code of the last failed attempt */
    const char *error;           /* the error code this request ended with, for the log */
    double deadline_ms;          /* the route's total_s after the request started */
    int max_429_retries;         /* the route's retry settings */
    double retry_cap_ms;
    int n429;                    /* attempts answered 429 */
    int skipped_cap, skipped_cool;   /* candidates passed over, and why */
    int waiting;                 /* the timer is a Retry-After wait */
    health_t health;             /* the current attempt's shared slots */
    const char *m_endpoint;      /* the endpoint label of its metrics */
    series_t *m_route;           /* its route's in-flight gauge, once counted in it */
    series_t *m_target;          /* the current attempt's target in-flight gauge */
    /* the current attempt */
    up_call_t *call;
    long status;
    evhtp_headers_t *resp_headers;
    int relaying;                /* chunked relay to the client has started */
    int up_framed;               /* the upstream's answer has a Content-Length or chunks (not the close) */
    int sse_done;                /* the last event relayed is the stream's terminator */
    int paused;                  /* the transfer waits for the client to drain */
    int got_first_byte;          /* the current attempt has a response */
    double attempt_ms;           /* when the current attempt started */
    double attempt_deadline_ms;  /* the request's deadline, or the provider's total_s for one attempt */
    double first_byte_ms, idle_ms;   /* its limits: route, else provider, else config */
    double last_data_ms;         /* when its last bytes arrived */
    struct event timer;          /* the current attempt's timeouts */
    struct timespec t0;
    double ttfb_ms;
    int final_status;
    uint64_t bytes_out;
    /* Not cleared for a new request (req_new): kept, or written before being read. */
    struct req *next_free;       /* the worker's list of freed requests */
    struct evbuffer *resp;       /* a buffered non-streaming response; kept empty with a freed request */
    char up_model[MAX_QUOTED_MODEL];   /* the target's model, as the upstream body has it */
    trace_t trace[MAX_TRACE];
    char details[1024];          /* the trace's detail messages */
} req_t;

#define REQ_CLEARED offsetof(req_t, next_free)
#define REQ_FREE_MAX 64          /* freed requests a worker keeps for the next ones */

/* A request's state: one the worker freed before (a request is over 10 KB,
 * and a fresh one every time goes through malloc's slow path), or new. */
static req_t *req_new(worker_t *w)
{
    req_t *r = w->free_reqs;
    if (r != NULL) {
        w->free_reqs = r->next_free;
        w->nfree_reqs--;
    } else if ((r = malloc(sizeof(*r))) != NULL) {
        r->resp = NULL;
    } else {
        return NULL;
    }
    memset(r, 0, REQ_CLEARED);
    return r;
}

static void req_drop(worker_t *w, req_t *r)
{
    if (w->nfree_reqs >= REQ_FREE_MAX) {
        if (r->resp != NULL)
            evbuffer_free(r->resp);
        free(r);
        return;
    }
    r->next_free = w->free_reqs;
    w->free_reqs = r;
    w->nfree_reqs++;
}

void proxy_worker_free(worker_t *w)
{
    while (w->free_reqs != NULL) {
        req_t *r = w->free_reqs;
        w->free_reqs = r->next_free;
        if (r->resp != NULL)
            evbuffer_free(r->resp);
        free(r);
    }
    w->nfree_reqs = 0;
}

static double since_ms(const req_t *r)
{
    return edge_now_ms() - (r->t0.tv_sec * 1e3 + r->t0.tv_nsec / 1e6);
}

static void add_header(evhtp_request_t *req, const char *k, const char *v)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new(k, v, 0, 1));
}

/* A header whose value outlives the reply's head (it is in R, or in the
 * records R holds): evhtp writes the head out when the reply starts, so the
 * value is not copied. */
static void add_header_held(evhtp_request_t *req, const char *k, const char *v)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new(k, v, 0, 0));
}

static void add_std_headers(req_t *r)
{
    evhtp_request_t *req = r->req;
    if (r->w->stopping || r->early)   /* draining, or the body is still coming: the connection ends with the reply */
        evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
    add_header_held(req, "x-request-id", r->request_id);
    if (r->res.route != NULL)
        add_header_held(req, "x-turnout-route", r->res.route);
    if (r->last_cand >= 0) {
        add_header_held(req, "x-turnout-provider", r->res.cand[r->last_cand].provider);
        add_header_held(req, "x-turnout-model", r->res.cand[r->last_cand].model);
    }
    snprintf(r->attempts_text, sizeof(r->attempts_text), "%d", r->attempts);
    add_header_held(req, "x-turnout-attempts", r->attempts_text);
    if (r->res.variant[0])
        add_header_held(req, "x-turnout-variant", r->res.variant);
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
    evbuffer_add_printf(req->buffer_out,
                        "{\"error\":{\"message\":%s,\"type\":\"%s\",\"param\":%s,\"code\":\"%s\"%s}}\n",
                        qmsg, type, qparam, code, extra != NULL ? extra : "");
    add_header(req, "Content-Type", "application/json");
    add_std_headers(r);
    r->replied = 1;
    r->final_status = status;
    r->bytes_out = reply_body_bytes(req);
    r->error = code;
    evhtp_send_reply(req, (evhtp_res)status);
}

static void reply_error(req_t *r, int status, const char *type, const char *code, const char *param,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_with(r, status, type, code, param, NULL, fmt, ap);
    va_end(ap);
}

static void reply_no_router(req_t *r, const char *router)
{
    reply_error(r, 404, "invalid_request_error", "router_not_found", NULL,
                "router '%s' does not exist or is not active", router);
}

/* --- request ids ------------------------------------------------------- */

static uint64_t next_rand(worker_t *w)
{
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng = x;
}

static void set_request_id(req_t *r)
{
    const char *id = evhtp_kv_find(r->req->headers_in, "x-request-id");
    size_t n = id ? strlen(id) : 0;
    int ok = n > 0 && n < sizeof(r->request_id);
    for (size_t i = 0; ok && i < n; i++)  /* echo only what is safe to put in a header */
        ok = id[i] > 0x20 && id[i] < 0x7f && id[i] != '"' && id[i] != '\\';
    if (ok)
        memcpy(r->request_id, id, n + 1);
    else
        snprintf(r->request_id, sizeof(r->request_id), "req_%016llx",
                 (unsigned long long)next_rand(r->w));
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

static trace_t *trace_add(req_t *r, const char *skipped)
{
    trace_t *t = r->ntrace < MAX_TRACE ? &r->trace[r->ntrace++] : &r->trace[MAX_TRACE - 1];
    memset(t, 0, sizeof(*t));
    t->cand = r->cand;
    t->skipped = skipped;
    t->start_ms = since_ms(r);
    return t;
}

/* Appends to BUF (capacity CAP, *LEN used) unless it would not fit; returns -1 then. */
static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
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
    append(buf, cap, &len, "[");
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
        if (append(buf, cap, &len, "%s%s", i ? "," : "", entry) < 0 || len + 2 > cap) {
            len = keep;
            buf[len] = '\0';
            break;
        }
    }
    append(buf, cap, &len, "]");
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
            rc = append(buf, cap, &len, "%s%s/%s: not called, %s", i ? "; " : "", c->provider, c->model,
                        t->skipped);
        else if (t->status != 0)
            rc = append(buf, cap, &len, "%s%s/%s: HTTP %d (%.0f ms)", i ? "; " : "", c->provider, c->model,
                        t->status, t->ms);
        else
            rc = append(buf, cap, &len, "%s%s/%s: %s%s%s%s (%.0f ms)", i ? "; " : "", c->provider, c->model,
                        t->error ? t->error : "failed", t->detail ? " (" : "", t->detail ? t->detail : "",
                        t->detail ? ")" : "", t->ms);
        if (rc < 0)
            break;
    }
    return buf;
}

static void access_log(req_t *r)
{
    char line[16384], qmodel[MAX_MODEL * 2 + 8], qroute[600], qprov[160], qup[600], qtenant[280], trace[8192];
    const candidate_t *c = r->last_cand >= 0 ? &r->res.cand[r->last_cand] : NULL;
    int fd = atomic_load_explicit(&r->w->gw->access_fd, memory_order_relaxed);
    int n;
    if (fd < 0)
        return;
    n = snprintf(line, sizeof(line),
                 "{\"request_id\":\"%s\",\"worker\":%d,\"key_id\":%s%s%s,\"tenant\":%s,\"path\":\"%s\","
                 "\"endpoint\":%s%s%s,\"model\":%s,"
                 "\"route\":%s,\"provider\":%s,\"upstream_model\":%s,\"attempts\":%d,"
                 "\"status\":%d,\"error\":%s%s%s,\"bytes\":%llu,\"ttfb_ms\":%.3f,\"total_ms\":%.3f,\"trace\":%s}\n",
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
                 since_ms(r), trace_json(r, trace, sizeof(trace)));
    if (n > 0 && (size_t)n < sizeof(line) && write(fd, line, (size_t)n) < 0) {
        /* the access log is best effort; a full disk must not stop serving */
    }
}

/* --- upstream attempt -------------------------------------------------- */

static void end_attempt(req_t *r)
{
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

static int failover_status(long s)
{
    return s >= 500 || s == 429 || s == 401 || s == 403;
}

static void arm_attempt_timer(req_t *r, double now);

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer",
    "upgrade", "proxy-authenticate", "proxy-authorization", "date", "server", NULL,
};

/* The upstream's final status line: the attempt's first byte. */
static void on_up_status(void *arg, int status)
{
    req_t *r = arg;
    const candidate_t *c = &r->res.cand[r->cand];
    char lat[600];
    tally_t *t;
    r->status = status;
    r->last_data_ms = edge_now_ms();
    if (r->resp_headers != NULL)
        evhtp_kvs_free(r->resp_headers);
    r->resp_headers = evhtp_kvs_new();
    if (r->got_first_byte)
        return;
    r->got_first_byte = 1;
    r->ttfb_ms = since_ms(r);
    snprintf(lat, sizeof(lat), "lat:%s/%s", c->provider, c->model);   /* for sort: latency */
    if ((t = tally_get(lat)) != NULL)
        tally_observe_ttfb(t, r->last_data_ms - r->attempt_ms);
    metrics_observe(metrics_series(r->w->metrics, M_TTFB, c->provider, c->model, NULL, NULL),
                    (r->last_data_ms - r->attempt_ms) / 1000.0);
    arm_attempt_timer(r, r->last_data_ms);  /* from the first-byte limit to the idle gap */
}

/* One upstream response header: kept for the client unless it is about
 * the upstream connection itself. */
static void on_up_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    req_t *r = arg;
    char n[128], v[1024];
    if (nlen >= sizeof(n) || vlen >= sizeof(v) || r->resp_headers == NULL)
        return;
    memcpy(n, name, nlen);
    n[nlen] = '\0';
    if (strcasecmp(n, "content-length") == 0 || strcasecmp(n, "transfer-encoding") == 0)
        r->up_framed = 1;                /* the framing tells where the answer ends, not the close */
    for (const char *const *h = hop_by_hop; *h; h++)
        if (strcasecmp(n, *h) == 0)
            return;
    memcpy(v, value, vlen);
    v[vlen] = '\0';
    evhtp_headers_add_header(r->resp_headers, evhtp_header_new(n, v, 1, 1));
}

static int is_event_stream(req_t *r)
{
    const char *ct = r->resp_headers ? evhtp_kv_find(r->resp_headers, "content-type") : NULL;
    return ct != NULL && strncasecmp(ct, "text/event-stream", 17) == 0;
}

/* Moves the upstream's headers and ours onto the client reply. */
static void commit_headers(req_t *r)
{
    if (r->resp_headers != NULL) {
        evhtp_kvs_add_kvs(r->req->headers_out, r->resp_headers);
        evhtp_kvs_free(r->resp_headers);   /* the kvs now belong to headers_out */
        r->resp_headers = NULL;
    }
    add_std_headers(r);
}

/* The client's output has drained to the low watermark: resume a paused
 * transfer (connection on_write hook, set only while paused). */
static evhtp_res on_client_drained(evhtp_connection_t *conn, void *arg)
{
    req_t *r = arg;
    if (!r->paused || r->call == NULL ||
        evbuffer_get_length(bufferevent_get_output(conn->bev)) >= PROXY_SEND_HIGH_WATER)
        return EVHTP_RES_OK;
    r->paused = 0;
    r->last_data_ms = edge_now_ms();           /* the upstream was silent because we paused it */
    arm_attempt_timer(r, r->last_data_ms);
    evhtp_connection_set_hook(conn, evhtp_hook_on_write, NULL, NULL);
    up_resume(r->call);                   /* libcurl may deliver held data at once */
    return EVHTP_RES_OK;
}

/* Writes LEN stream bytes straight into the client's socket output (what
 * evhtp_send_reply_chunk does, without a temporary buffer); BUF is the
 * call's, so it is copied. They end with a whole event. */
static int relay(req_t *r, const char *buf, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(r->req->conn->bev);
    int chunked = (r->req->flags & EVHTP_REQ_FLAG_CHUNKED) != 0;
    if ((chunked && evbuffer_add_printf(out, "%zx\r\n", len) < 0) || evbuffer_add(out, buf, len) < 0 ||
        (chunked && evbuffer_add(out, "\r\n", 2) < 0))
        return -1;
    r->bytes_out += len;
    r->sse_done = sse_is_done(buf, len);
    return 0;
}

/* Stream bytes: the whole events among what has come are relayed at once,
 * and the start of an unfinished one is held back (in r->resp, unused
 * while relaying) until its end comes. So whatever ends the stream (an
 * error event, the deadline) follows a whole event: a half-sent one would
 * be joined to it by the client's SSE parser, hiding the error. An upstream
 * read usually ends at an event's end: then nothing is held or copied. */
static int relay_events(req_t *r, const char *buf, size_t len)
{
    size_t held = evbuffer_get_length(r->resp), cut;
    const char *all;
    if (held == 0) {
        cut = sse_whole(buf, len, 0);
        if ((cut > 0 && relay(r, buf, cut) < 0) || (cut < len && evbuffer_add(r->resp, buf + cut, len - cut) < 0))
            return UP_ABORT;
        return UP_TAKEN;
    }
    if (evbuffer_add(r->resp, buf, len) < 0 || (all = (const char *)evbuffer_pullup(r->resp, -1)) == NULL)
        return UP_ABORT;
    /* an event's end is at most 4 bytes long: the held ones were searched */
    cut = sse_whole(all, held + len, held > 3 ? held - 3 : 0);
    if (cut > 0 && (relay(r, all, cut) < 0 || evbuffer_drain(r->resp, cut) < 0))
        return UP_ABORT;
    if (evbuffer_get_length(r->resp) > SSE_EVENT_MAX)
        return UP_ABORT;                  /* no event is that long: not a stream we can relay whole */
    return UP_TAKEN;
}

static int on_up_data(void *arg, const char *buf, size_t len)
{
    req_t *r = arg;
    r->last_data_ms = edge_now_ms();
    if (failover_status(r->status))
        return UP_TAKEN;                  /* discarded: the attempt failed */
    if (r->req == NULL)
        return UP_ABORT;                  /* client gone */
    if (!r->relaying && r->status < 300 && is_event_stream(r)) {
        /* Streams are relayed event by event; the commit point is here. */
        commit_headers(r);
        r->relaying = 1;
        r->replied = 1;
        r->final_status = (int)r->status;
        evhtp_send_reply_chunk_start(r->req, (evhtp_res)r->status);
    }
    if (r->relaying) {
        if (evbuffer_get_length(bufferevent_get_output(r->req->conn->bev)) >= PROXY_SEND_HIGH_WATER) {
            /* the client is behind: the call keeps these bytes and hands
             * them over again when on_client_drained resumes it */
            r->paused = 1;
            evhtp_connection_set_hook(r->req->conn, evhtp_hook_on_write, (evhtp_hook)on_client_drained, r);
            return UP_PAUSE;
        }
        return relay_events(r, buf, len);
    }
    return evbuffer_add(r->resp, buf, len) < 0 ? UP_ABORT : UP_TAKEN;
}

static int start_attempt(req_t *r);

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
static const char *add_retry_hints(req_t *r, double wait_ms, int should_retry)
{
    char ms[24];
    if (wait_ms >= 0) {
        snprintf(r->retry_after, sizeof(r->retry_after), "%ld", wait_ms > 1000 ? (long)((wait_ms + 999) / 1000) : 1L);
        snprintf(ms, sizeof(ms), "%ld", (long)(wait_ms + 0.5));
        add_header_held(r->req, "Retry-After", r->retry_after);
        add_header(r->req, "retry-after-ms", ms);
    }
    add_header_held(r->req, "x-should-retry", should_retry ? "true" : "false");
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
static void reply_exhausted(req_t *r)
{
    char text[4000];
    const char *ra;
    trace_text(r, text, sizeof(text));
    if (r->attempts == 0 && r->skipped_cap > 0) {
        add_retry_hints(r, 1000, 1);
        reply_trace_error(r, 429, "rate_limit_error", "capacity_exhausted",
                          "every upstream for model '%s' is at its concurrency limit; retry shortly: %s", r->model,
                          text);
    } else if (r->attempts == r->n429 && r->n429 + r->skipped_cool > 0) {
        ra = add_retry_hints(r, soonest_usable_ms(r), r->n429 == 0);
        reply_trace_error(r, 429, "rate_limit_error", "rate_limited",
                          "every upstream for model '%s' is rate limited or cooling down; retry after %s s: %s",
                          r->model, ra, text);
    } else if (is_timeout(r->last_fail)) {
        add_retry_hints(r, -1, 0);
        reply_trace_error(r, 504, "upstream_error", r->last_fail,
                          "every upstream for model '%s' failed, the last by timing out: %s", r->model, text);
    } else {
        add_retry_hints(r, -1, 0);
        reply_trace_error(r, 502, "upstream_error", "upstream_error", "every upstream for model '%s' failed: %s",
                          r->model, text);
    }
}

static void finish_reply(req_t *r)
{
    if (r->relaying) {
        size_t held = evbuffer_get_length(r->resp);   /* an unfinished last event: passed on as it came */
        if (held > 0)
            relay(r, (const char *)evbuffer_pullup(r->resp, -1), held);
        evhtp_send_reply_chunk_end(r->req);
        return;
    }
    commit_headers(r);
    r->bytes_out = evbuffer_get_length(r->resp);
    evbuffer_add_buffer(r->req->buffer_out, r->resp);
    r->replied = 1;
    r->final_status = (int)r->status;
    evhtp_send_reply(r->req, (evhtp_res)r->status);
}

/* Ends a relayed stream that broke: an SSE error event, and never [DONE]. */
static void abort_stream(req_t *r, const char *code, const char *why)
{
    struct evbuffer *ev = evbuffer_new();
    char q[300];
    r->error = code;
    if (ev != NULL) {
        if (jscan_quote(why, q, sizeof(q)) < 0)
            snprintf(q, sizeof(q), "\"upstream stream failed\"");
        evbuffer_add_printf(ev, "event: error\ndata: {\"error\":{\"message\":%s,\"type\":\"upstream_error\","
                                "\"param\":null,\"code\":\"%s\"}}\n\n", q, code);
        evhtp_send_reply_chunk(r->req, ev);
        evbuffer_free(ev);
    }
    evhtp_send_reply_chunk_end(r->req);
}

/* How long a 429 asks us to wait, in ms: Retry-After as seconds or an HTTP
 * date; RETRY_AFTER_DEFAULT_MS when it is missing or unreadable. */
static double retry_after_ms(const char *ra)
{
    char *end;
    double secs;
    time_t when;
    struct tm tm;
    if (ra == NULL || *ra == '\0')
        return RETRY_AFTER_DEFAULT_MS;
    secs = strtod(ra, &end);
    if (end != ra && *end == '\0')
        return secs > 0 ? secs * 1000.0 : 0;
    memset(&tm, 0, sizeof(tm));
    end = strptime(ra, "%a, %d %b %Y %H:%M:%S GMT", &tm);   /* an IMF-fixdate */
    if (end == NULL || *end != '\0' || (when = timegm(&tm)) == -1)
        return RETRY_AFTER_DEFAULT_MS;
    return when > time(NULL) ? (double)(when - time(NULL)) * 1000.0 : 0;
}

static void next_attempt(req_t *r);

/* Sleeps until UNTIL (monotonic ms), then next_attempt tries the current
 * candidate again: a timer, so the worker goes on serving meanwhile. */
static void wait_then_retry(req_t *r, double until)
{
    r->waiting = 1;
    edge_timer_after(&r->timer, until - edge_now_ms() > 1 ? until - edge_now_ms() : 1);
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

/* Whether a whole answer is an event stream that was cut: one framed only
 * by the close cannot tell a cut from an end, so it is judged by its
 * dialect's terminator (SPEC 4.4): OpenAI's data: [DONE]. */
static int cut_stream(req_t *r)
{
    size_t held;
    if (r->up_framed || r->status >= 300 || !(r->relaying || is_event_stream(r)))
        return 0;
    held = evbuffer_get_length(r->resp);  /* the unrelayed tail, or (before relaying) all of it */
    if (held > 0)
        return !sse_is_done((const char *)evbuffer_pullup(r->resp, -1), held);
    return !r->sse_done;
}

/* One attempt is over: the call ended (FAILED is NULL when a whole
 * response arrived, else its error code and DETAIL), or our timer ended it
 * (FAILED names which limit). Replies, retries, fails over, or ends the
 * stream. */
static void attempt_over(req_t *r, const char *failed, const char *detail)
{
    const candidate_t *c = &r->res.cand[r->cand];
    trace_t *t = &r->trace[r->ntrace > 0 ? r->ntrace - 1 : 0];   /* start_attempt added it */
    const char *code = failed;
    double now = edge_now_ms();

    if (failed == NULL && failover_status(r->status)) {
        code = r->status == 429 ? "upstream_rate_limited" : "upstream_error";
    } else if (failed == NULL && cut_stream(r)) {
        code = "upstream_truncated";
        detail = "the upstream closed the stream before its last event (data: [DONE])";
    }
    t->detail = keep_detail(r, detail);
    t->status = failed == NULL ? (int)r->status : 0;
    t->error = code;
    t->ms = now - r->attempt_ms;
    metrics_add(metrics_series(r->w->metrics, M_ATTEMPTS, c->provider, c->model, code ? code : "ok", NULL), 1);

    if (code == NULL) {
        health_success(&r->health);       /* the upstream answered: success, or the caller's own error */
        finish_reply(r);
        end_attempt(r);
        return;
    }
    if (r->relaying) {                    /* past the commit point: no failover */
        count_failure(r, code, now);
        abort_stream(r, code, t->detail != NULL ? t->detail : code);
        end_attempt(r);
        return;
    }
    r->last_fail = code;
    if (t->status == 429) {
        /* no request on any worker goes to this upstream before UNTIL;
         * this one tries it again then, if retries and time are left */
        const char *ra = r->resp_headers ? evhtp_kv_find(r->resp_headers, "retry-after") : NULL;
        double wait = retry_after_ms(ra), until;
        if (wait > r->retry_cap_ms)
            wait = r->retry_cap_ms;
        until = now + wait;
        r->n429++;
        health_defer(&r->health, (int64_t)until);
        end_attempt(r);
        if (r->tries <= r->max_429_retries && until < r->deadline_ms) {
            metrics_add(metrics_series(r->w->metrics, M_RETRIES, c->provider, c->model, NULL, NULL), 1);
            wait_then_retry(r, until);
            return;
        }
    } else {
        /* connection error, timeout, 5xx, 401/403: counts towards a cooldown */
        count_failure(r, code, now);
        end_attempt(r);
    }
    if (r->cand + 1 < r->res.ncand)        /* another candidate follows */
        metrics_add(metrics_series(r->w->metrics, M_FAILOVERS, r->res.route, code, NULL, NULL), 1);
    r->cand++;
    r->tries = 0;
    next_attempt(r);
}

static void on_up_done(void *arg, const char *code, const char *detail)
{
    req_t *r = arg;
    r->call = NULL;                       /* freed by the caller once this returns */
    attempt_over(r, code, detail);
}

static const up_handlers_t up_handlers = { on_up_status, on_up_header, on_up_data, on_up_done };

/* The attempt's timer: fires at the nearest of its limits and re-arms
 * itself for the next one, so bytes arriving cost no timer operation. */
static void arm_attempt_timer(req_t *r, double now)
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
        next_attempt(r);
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
        arm_attempt_timer(r, now);
        return;
    }
    attempt_over(r, code, NULL);
}

/* The upstream body is the client's bytes with the model value replaced:
 * three pieces (before the value, the new value, after it), sent from the
 * client's buffer without a copy. */
static int body_pieces(req_t *r, const char *model, struct iovec *iov)
{
    long ql;
    if (r->multipart)
        ql = snprintf(r->up_model, sizeof(r->up_model), "%s", model);
    else
        ql = jscan_quote(model, r->up_model, sizeof(r->up_model));
    if (ql < 0 || (size_t)ql >= sizeof(r->up_model))
        return -1;
    iov[0].iov_base = (void *)r->body;
    iov[0].iov_len = r->model_off;
    iov[1].iov_base = r->up_model;
    iov[1].iov_len = (size_t)ql;
    iov[2].iov_base = (void *)(r->body + r->model_off + r->model_len);
    iov[2].iov_len = r->body_len - r->model_off - r->model_len;
    return 0;
}

static const char *const upstream_paths[EP__COUNT] = {
    "/chat/completions", "/completions", "/embeddings", "/audio/speech",
    "/audio/transcriptions", "/images/generations",
};

/* Timeout NAME (timeouts.NAME) for candidate C: the route's, else the
 * provider's, else DFLT (the config's). */
static double timeout_of(const req_t *r, const candidate_t *c, const char *name, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r->res.route_rec, "timeouts"), name);
    if (!cJSON_IsNumber(v))
        v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c->prov, "timeouts"), name);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* Appends "NAME: VALUE\r\n" to the head being built in BUF; -1 when it does not fit. */
static int head_line(char *buf, size_t cap, size_t *len, const char *name, const char *value)
{
    return append(buf, cap, len, "%s: %s\r\n", name, value);
}

static int start_attempt(req_t *r)
{
    const candidate_t *c = &r->res.cand[r->cand];
    const config_t *cfg = r->w->cfg;
    const cJSON *prov_total = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c->prov, "timeouts"),
                                                               "total_s");
    const char *key = c->api_key != NULL ? c->api_key : c->api_key_env ? getenv(c->api_key_env) : NULL;
    char head[8192], auth[1100];
    size_t hlen = 0;
    const cJSON *h;
    up_request_t rq = { .base_url = c->base_url, .path = upstream_paths[r->ep], .head = head, .nbody = 3 };

    if (body_pieces(r, c->model, rq.body) < 0)
        return -1;
    if (key != NULL && *key != '\0') {
        snprintf(auth, sizeof(auth), "Bearer %s", key);
        if (head_line(head, sizeof(head), &hlen, "Authorization", auth) < 0)
            return -1;
    }
    if (head_line(head, sizeof(head), &hlen, "Content-Type",
                  r->content_type[0] ? r->content_type : "application/json") < 0 ||
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
    r->attempt_ms = r->last_data_ms = edge_now_ms();
    r->first_byte_ms = timeout_of(r, c, "first_byte_s", cfg->first_byte_timeout_s) * 1000.0;
    r->idle_ms = timeout_of(r, c, "idle_s", cfg->idle_gap_s) * 1000.0;
    r->attempt_deadline_ms = r->deadline_ms;
    if (cJSON_IsNumber(prov_total) && r->attempt_ms + prov_total->valuedouble * 1000.0 < r->deadline_ms)
        r->attempt_deadline_ms = r->attempt_ms + prov_total->valuedouble * 1000.0;
    rq.connect_ms = (long)timeout_of(r, c, "connect_ms", cfg->connect_timeout_ms);
    /* the attempt timer enforces first byte, idle gap and the total; this
     * is only a backstop behind it */
    rq.total_ms = (long)(r->attempt_deadline_ms - r->attempt_ms) + 5000L;
    r->attempts++;
    r->tries++;
    r->last_cand = r->cand;
    trace_add(r, NULL);
    r->m_target = metrics_series(r->w->metrics, M_TARGET_IN_FLIGHT, r->res.route, c->provider, c->model, NULL);
    metrics_add(r->m_target, 1);
    if ((r->call = up_start(r->w, &rq, &up_handlers, r)) == NULL) {
        r->trace[r->ntrace - 1].error = "upstream_error";
        end_attempt(r);
        return -1;
    }
    arm_attempt_timer(r, r->attempt_ms);
    return 0;
}

/* The current candidate is passed over, for WHY. */
static void skipped(req_t *r, const char *why)
{
    const candidate_t *c = &r->res.cand[r->cand];
    trace_add(r, why);
    metrics_add(metrics_series(r->w->metrics, M_SKIPS, c->provider, c->model, why, NULL), 1);
}

/* Gives the current candidate, or the next one that is usable, an attempt;
 * replies when none is left. A candidate cooling down, whose probe is out,
 * or at a cap is passed over (and listed in the trace). */
static void next_attempt(req_t *r)
{
    const config_t *cfg = r->w->cfg;
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
            if (start_attempt(r) == 0)
                return;
            health_release(&r->health);
            r->last_fail = "upstream_error";
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

/* --- intake ------------------------------------------------------------ */

typedef struct route_path {
    const char *path;
    endpoint_t ep;
} route_path_t;

static const route_path_t data_paths[] = {
    { "/v1/chat/completions", EP_CHAT },
    { "/v1/completions", EP_COMPLETIONS },
    { "/v1/embeddings", EP_EMBEDDINGS },
    { "/v1/audio/speech", EP_AUDIO_SPEECH },
    { "/v1/audio/transcriptions", EP_AUDIO_TRANSCRIPTION },
    { "/v1/images/generations", EP_IMAGE_GENERATION },
};

static req_t *req_of(evhtp_request_t *req)
{
    return req->hooks != NULL ? req->hooks->on_request_fini_arg : NULL;
}

/* Finds the caller's key: the bootstrap admin key, or a stored enabled key
 * of any role. Returns 0 when the request may go on (a key was found, or
 * none is required). */
static int authorised(req_t *r)
{
    const char *h = evhtp_kv_find(r->req->headers_in, "authorization"), *token = auth_bearer_token(h);
    if (token == NULL)
        return !r->w->cfg->require_key;
    if (auth_bearer_matches(h, r->w->gw->admin_key)) {
        snprintf(r->key_id, sizeof(r->key_id), "bootstrap");
        return 1;
    }
    if ((r->key_rec = auth_find_key(r->w->reader, token, &r->key_hold)) != NULL) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(r->key_rec, "id");
        const cJSON *tenant = cJSON_GetObjectItemCaseSensitive(r->key_rec, "tenant");
        if (cJSON_IsString(id))
            snprintf(r->key_id, sizeof(r->key_id), "%s", id->valuestring);
        if (cJSON_IsString(tenant))
            snprintf(r->tenant, sizeof(r->tenant), "%s", tenant->valuestring);
        if (cJSON_IsString(id) &&
            admin_key_use_stale(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->key_rec, "last_used_at"))))
            admin_key_used(id->valuestring);
        return 1;
    }
    return !r->w->cfg->require_key;
}

/* 1 when the caller's key may use the resolved route: a key with
 * allowed_routes reaches only those routes, by name. */
static int route_allowed(const req_t *r)
{
    const cJSON *allowed = cJSON_GetObjectItemCaseSensitive(r->key_rec, "allowed_routes"), *a;
    if (cJSON_GetArraySize(allowed) == 0)
        return 1;
    if (r->res.route == NULL)
        return 0;
    cJSON_ArrayForEach(a, allowed)
        if (cJSON_IsString(a) && strcmp(a->valuestring, r->res.route) == 0)
            return 1;
    return 0;
}

/* GET /v1/models: what the caller may name. */
typedef struct models_list {
    cJSON *data;
    cJSON *seen;                 /* names listed so far (a set) */
    const req_t *r;
    const char *router;
} models_list_t;

static void add_model(models_list_t *l, const char *id, const char *owner)
{
    cJSON *m;
    if (cJSON_GetObjectItemCaseSensitive(l->seen, id) != NULL)
        return;                  /* a name in several scopes, or a bare alias on several providers */
    cJSON_AddItemToObject(l->seen, id, cJSON_CreateTrue());
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", owner);
    cJSON_AddItemToArray(l->data, m);
}

/* A route is listed when the caller's scopes and router reach it, it is a
 * name rather than a pool pattern, and the key's allowed_routes (if any)
 * name it. */
static void on_list_route(const cJSON *rec, void *arg)
{
    models_list_t *l = arg;
    const req_t *r = l->r;
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "name"));
    const char *scope = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "scope"));
    const char *router = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "router"));
    const cJSON *allowed = cJSON_GetObjectItemCaseSensitive(r->key_rec, "allowed_routes"), *a;
    int ok = cJSON_GetArraySize(allowed) == 0;
    if (name == NULL || scope == NULL || store_is_glob(name) || strcmp(router ? router : "", l->router) != 0)
        return;
    if (!(strcmp(scope, "global") == 0 ||
          (strncmp(scope, "tenant:", 7) == 0 && r->tenant[0] && strcmp(scope + 7, r->tenant) == 0) ||
          (strncmp(scope, "key:", 4) == 0 && r->key_id[0] && strcmp(scope + 4, r->key_id) == 0)))
        return;
    cJSON_ArrayForEach(a, allowed)
        ok |= cJSON_IsString(a) && strcmp(a->valuestring, name) == 0;
    if (ok)
        add_model(l, name, "turnout");
}

static void on_list_provider(const cJSON *p, void *arg)
{
    models_list_t *l = arg;
    const cJSON *m, *pn = cJSON_GetObjectItemCaseSensitive(p, "name");
    char id[512];
    if (!cJSON_IsString(pn) || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "enabled")))
        return;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "models")) {
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(m, "name");
        if (!cJSON_IsString(mn) || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(m, "enabled")))
            continue;
        snprintf(id, sizeof(id), "%s/%s", pn->valuestring, mn->valuestring);
        add_model(l, id, pn->valuestring);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "bare_alias")))
            add_model(l, mn->valuestring, pn->valuestring);
    }
}

/* Sends what is in the reply's buffer as a whole answer of type CTYPE. */
static void send_buffered(req_t *r, int status, const char *ctype)
{
    add_header(r->req, "Content-Type", ctype);
    add_std_headers(r);
    r->replied = 1;
    r->final_status = status;
    r->bytes_out = reply_body_bytes(r->req);
    evhtp_send_reply(r->req, (evhtp_res)status);
}

static void reply_json(req_t *r, int status, const char *text)
{
    evbuffer_add(r->req->buffer_out, text, strlen(text));
    send_buffered(r, status, "application/json");
}

static void serve_metrics(req_t *r)
{
    metrics_render(r->w->gw, r->req->buffer_out);
    send_buffered(r, 200, "text/plain; version=0.0.4; charset=utf-8");
}

static void serve_models(req_t *r, const char *router)
{
    models_list_t l = { NULL, cJSON_CreateObject(), r, router };
    cJSON *root = cJSON_CreateObject();
    char *text;
    cJSON_AddStringToObject(root, "object", "list");
    l.data = cJSON_AddArrayToObject(root, "data");
    if (*router != '\0') {
        store_hold_t *hold;
        const cJSON *rt = store_get_router(r->w->reader, router, &hold);
        int active = rt != NULL && !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rt, "active"));
        store_release(hold);
        if (!active) {
            cJSON_Delete(root);
            cJSON_Delete(l.seen);
            reply_no_router(r, router);
            return;
        }
    }
    store_each(r->w->reader, STORE_ROUTES, on_list_route, &l);
    /* PROVIDER/MODEL names and bare aliases: outside routers, for keys not
     * limited to named routes */
    if (*router == '\0' && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->key_rec, "allowed_routes")) == 0)
        store_each(r->w->reader, STORE_PROVIDERS, on_list_provider, &l);
    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    cJSON_Delete(l.seen);
    if (text == NULL) {
        reply_error(r, 500, "server_error", "internal_error", NULL, "out of memory");
        return;
    }
    reply_json(r, 200, text);
    free(text);
}

/* Reads model (and stream) from a JSON or multipart body. Returns 0, or -1
 * after replying with the error. */
static int parse_body(req_t *r)
{
    jscan_t js;
    long n;
    if (r->multipart) {
        size_t off, len;
        if (multipart_boundary(r->content_type, r->boundary, sizeof(r->boundary)) < 0) {
            reply_error(r, 400, "invalid_request_error", "invalid_multipart", NULL,
                        "multipart/form-data needs a boundary parameter of 1-70 characters");
            return -1;
        }
        if (multipart_field(r->body, r->body_len, r->boundary, "model", &off, &len) < 0) {
            reply_error(r, 400, "invalid_request_error", "missing_model", "model",
                        "the form has no 'model' field (or the multipart body is malformed)");
            return -1;
        }
        if (len == 0 || len >= sizeof(r->model) || memchr(r->body + off, '\0', len) != NULL) {
            reply_error(r, 400, "invalid_request_error", "invalid_model", "model",
                        "'model' must be a non-empty string of at most %zu bytes", sizeof(r->model) - 1);
            return -1;
        }
        memcpy(r->model, r->body + off, len);
        r->model[len] = '\0';
        r->model_off = off;
        r->model_len = len;
        return 0;
    }
    switch (jscan_body(r->body, r->body_len, &js)) {
    case JSCAN_INVALID:
        reply_error(r, 400, "invalid_request_error", "invalid_json", NULL,
                    "the request body is not valid JSON (error at byte %zu)", js.error_off);
        return -1;
    case JSCAN_NOT_OBJECT:
        reply_error(r, 400, "invalid_request_error", "missing_model", "model",
                    "the request body must be a JSON object with a 'model' field");
        return -1;
    case JSCAN_OK:
        break;
    }
    if (!js.has_model) {
        reply_error(r, 400, "invalid_request_error", "missing_model", "model",
                    "you must provide a model parameter");
        return -1;
    }
    if (!js.model_is_string ||
        (n = jscan_string(r->body, js.model_off, js.model_len, r->model, sizeof(r->model))) <= 0) {
        reply_error(r, 400, "invalid_request_error", "invalid_model", "model",
                    "'model' must be a non-empty string of at most %zu bytes", sizeof(r->model) - 1);
        return -1;
    }
    r->model_off = js.model_off;
    r->model_len = js.model_len;
    r->stream = js.stream;
    r->user_off = js.user_off;
    r->user_len = js.user_len;
    return 0;
}

static int content_type_ok(req_t *r)
{
    const char *ct = r->content_type;
    if (r->ep == EP_AUDIO_TRANSCRIPTION) {
        r->multipart = 1;
        return strncasecmp(ct, "multipart/form-data", 19) == 0;
    }
    if (*ct == '\0')
        return 1;                          /* curl -d without -H: treat as JSON */
    return strncasecmp(ct, "application/json", 16) == 0 && (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ');
}

/* The A/B stickiness key: the body's "user", else the x-turnout-ab-key
 * header, else the caller's key id; "" for none (a random split). */
static const char *sticky_key(req_t *r, char *buf, size_t cap)
{
    const char *h;
    if (r->user_len > 0 && jscan_string(r->body, r->user_off, r->user_len, buf, cap) > 0)
        return buf;
    if ((h = evhtp_kv_find(r->req->headers_in, "x-turnout-ab-key")) != NULL && *h)
        return h;
    return r->key_id;
}

/* A data-plane request admit() let in (its endpoint kind in r->ep): the
 * body's model, resolution, the first attempt. */
static void serve_data(req_t *r)
{
    struct evbuffer *in = r->req->buffer_in;
    const char *router = r->router;
    endpoint_t ep = r->ep;
    const cJSON *retry, *v;
    char sticky[256];
    r->body_len = evbuffer_get_length(in);
    r->body = r->body_len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (parse_body(r) < 0)
        return;
    resolve_in_t ask = { .ep = ep, .model = r->model, .router = router, .key_id = r->key_id, .tenant = r->tenant,
                         .sticky = sticky_key(r, sticky, sizeof(sticky)), .body = r->body, .body_len = r->body_len,
                         .form_boundary = r->multipart ? r->boundary : NULL };
    resolve_model(r->w->reader, &ask, &r->res);
    r->resolved = 1;
    if (r->res.status != RESOLVE_NO_ROUTER && !route_allowed(r))
        r->res.status = RESOLVE_NOT_FOUND;   /* as if absent: a key does not learn other routes */
    switch (r->res.status) {
    case RESOLVE_OK:
        break;
    case RESOLVE_NOT_FOUND:
        reply_error(r, 404, "invalid_request_error", "model_not_found", "model",
                    "the model '%s' does not exist or you do not have access to it", r->model);
        return;
    case RESOLVE_WRONG_ENDPOINT:
        reply_error(r, 400, "invalid_request_error", "wrong_endpoint", "model",
                    "route '%s' serves the %s endpoint, not %s", r->model,
                    cJSON_GetObjectItemCaseSensitive(r->res.route_rec, "endpoint")->valuestring,
                    schema_endpoint_name(ep));
        return;
    case RESOLVE_DISABLED:
        add_retry_hints(r, -1, 0);       /* an operator's switch: retrying will not help */
        reply_error(r, 503, "server_error", "route_disabled", "model",
                    "route '%s' is disabled and has no fallback target", r->model);
        return;
    case RESOLVE_NO_ROUTER:
        reply_no_router(r, router);
        return;
    }
    if (r->res.ncand == 0) {
        add_retry_hints(r, -1, 0);
        reply_error(r, 503, "server_error", "no_upstream", "model",
                    "model '%s' has no enabled upstream target", r->model);
        return;
    }
    retry = cJSON_GetObjectItemCaseSensitive(r->res.route_rec, "retry");
    v = cJSON_GetObjectItemCaseSensitive(retry, "max_429_retries");
    r->max_429_retries = cJSON_IsNumber(v) ? (int)v->valuedouble : 2;
    v = cJSON_GetObjectItemCaseSensitive(retry, "retry_after_cap_s");
    r->retry_cap_ms = cJSON_IsNumber(v) && v->valuedouble > 0 ? v->valuedouble * 1000.0 : RETRY_CAP_DEFAULT_MS;
    v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r->res.route_rec, "timeouts"), "total_s");
    r->deadline_ms = edge_now_ms() + (cJSON_IsNumber(v) ? v->valuedouble : r->w->cfg->total_timeout_s) * 1000.0;
    r->cand = 0;
    r->m_route = metrics_series(r->w->metrics, M_ROUTE_IN_FLIGHT, r->res.route, NULL, NULL, NULL);
    metrics_add(r->m_route, 1);
    next_attempt(r);
}

static const char *method_name(htp_method m)
{
    return m == htp_method_GET ? "GET" : m == htp_method_POST ? "POST" : m == htp_method_HEAD ? "HEAD" : "other";
}

static void reply_not_allowed(req_t *r, htp_method m, const char *path, const char *allow)
{
    add_header(r->req, "Allow", allow);
    reply_error(r, 405, "invalid_request_error", "method_not_allowed", NULL,
                "%s is not allowed on %s; use %s", method_name(m), path, allow);
}


static int is_health_path(const char *path)
{
    return path != NULL && (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0);
}

/* Decides from the request line and headers alone where the request goes
 * and whether it may: the path (404), the method (405), the caller's key
 * (401), the Content-Type (415). Runs in the headers phase for a request
 * with a body, so that a refusal is answered before the body is sent (a
 * client waiting for "100 Continue" gets its 401 at once), else when the
 * request is complete. Returns 0 (r->target set), or -1 after replying. */
static int admit(req_t *r)
{
    evhtp_request_t *req = r->req;
    const char *path = req->uri && req->uri->path ? req->uri->path->full : NULL;
    htp_method m = evhtp_request_get_method(req);
    const route_path_t *dp = NULL;

    if (path == NULL) {
        reply_error(r, 400, "invalid_request_error", "bad_request", NULL, "missing request path");
        return -1;
    }
    if (is_health_path(path)) {
        r->m_endpoint = path + 1;
        if (m != htp_method_GET && m != htp_method_HEAD) {
            reply_not_allowed(r, m, path, "GET, HEAD");
            return -1;
        }
        r->target = TO_HEALTH;
        return 0;
    }
    if (strcmp(path, "/metrics") == 0) {  /* like the health checks: no key (it holds no secret) */
        r->m_endpoint = "metrics";
        if (m != htp_method_GET && m != htp_method_HEAD) {
            reply_not_allowed(r, m, path, "GET, HEAD");
            return -1;
        }
        r->target = TO_METRICS;
        return 0;
    }
    if (strncmp(path, "/router/", 8) == 0) {
        const char *slug = path + 8, *end = strchr(slug, '/');
        if (end == NULL || end == slug || (size_t)(end - slug) >= sizeof(r->router)) {
            reply_error(r, 404, "invalid_request_error", "not_found", NULL, "no such path: %s", path);
            return -1;
        }
        memcpy(r->router, slug, (size_t)(end - slug));
        r->router[end - slug] = '\0';
        path = end;
    }
    for (size_t i = 0; i < sizeof(data_paths) / sizeof(data_paths[0]); i++)
        if (strcmp(path, data_paths[i].path) == 0)
            dp = &data_paths[i];
    if (dp != NULL)
        r->m_endpoint = schema_endpoint_name(dp->ep);   /* a 401 is counted under it too */
    if (!authorised(r)) {
        add_header(req, "WWW-Authenticate", "Bearer");
        reply_error(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                    "a valid API key is required: send 'Authorization: Bearer KEY'");
        return -1;
    }
    if (strcmp(path, "/v1/models") == 0) {
        r->m_endpoint = "models";
        if (m != htp_method_GET && m != htp_method_HEAD) {
            reply_not_allowed(r, m, path, "GET, HEAD");
            return -1;
        }
        r->target = TO_MODELS;
        return 0;
    }
    if (dp != NULL) {
        if (m != htp_method_POST) {
            reply_not_allowed(r, m, path, "POST");
            return -1;
        }
        r->ep = dp->ep;
        r->is_data = 1;
        if (!content_type_ok(r)) {
            reply_error(r, 415, "invalid_request_error", "unsupported_media_type", NULL,
                        "Content-Type '%s' is not supported here; use %s", r->content_type,
                        r->multipart ? "multipart/form-data" : "application/json");
            return -1;
        }
        r->target = TO_DATA;
        return 0;
    }
    reply_error(r, 404, "invalid_request_error", "not_found", NULL, "no such path: %s", path);
    return -1;
}

/* The request is complete (headers and body): serve it. */
static void on_request(evhtp_request_t *req, void *arg)
{
    worker_t *w = arg;
    req_t *r = req_of(req);
    int ok;

    edge_request_complete(edge_client(req));
    if (r == NULL || r->refused)
        return;                            /* answered already (413, 503) */
    if (r->target == TO_NONE && admit(r) < 0)
        return;
    switch (r->target) {
    case TO_HEALTH:
        ok = r->m_endpoint[0] == 'h' || (w->gw->ready && !w->stopping);
        reply_json(r, ok ? 200 : 503, ok ? "{\"status\":\"ok\"}\n" : "{\"status\":\"unavailable\"}\n");
        break;
    case TO_METRICS:
        serve_metrics(r);
        break;
    case TO_MODELS:
        serve_models(r, r->router);
        break;
    case TO_DATA:
        serve_data(r);
        break;
    case TO_NONE:
        break;
    }
}

/* A request answered in its headers phase or while its body arrives: the
 * reply (sent, with Connection: close) ends the connection. Returning its
 * status from the hook stops evhtp's parser; the parse-error path (patch
 * 0002, edge.c) then adds nothing (the request is answered), sends the
 * reply, half-closes and reads and discards whatever of the body still
 * comes until the client closes, so the client reads its answer instead of
 * a reset. */
static evhtp_res refuse(req_t *r)
{
    r->refused = 1;
    return (evhtp_res)r->final_status;
}

static evhtp_res on_read(evhtp_request_t *req, struct evbuffer *buf, void *arg)
{
    req_t *r = arg;
    r->body_bytes += evbuffer_get_length(buf);
    edge_body_read(edge_client(req));
    if (r->body_bytes > (uint64_t)r->w->cfg->max_body_bytes) {
        /* a chunked body has no length up front: refuse when it crosses */
        evbuffer_drain(buf, evbuffer_get_length(buf));
        evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
        reply_error(r, 413, "invalid_request_error", "request_too_large", NULL,
                    "the request body exceeds the limit of %lld bytes",
                    (long long)r->w->cfg->max_body_bytes);
        return refuse(r);
    }
    return EVHTP_RES_OK;
}

/* The request's metrics, once it is over. */
static void count_request(req_t *r)
{
    const candidate_t *c = r->last_cand >= 0 ? &r->res.cand[r->last_cand] : NULL;
    metrics_t *m = r->w->metrics;
    char status[16];
    snprintf(status, sizeof(status), "%d", r->final_status);
    metrics_add(metrics_series(m, M_REQUESTS, r->m_endpoint, r->res.route, c ? c->provider : NULL, status), 1);
    if (r->is_data)
        metrics_observe(metrics_series(m, M_DURATION, r->m_endpoint, r->res.route, NULL, NULL), since_ms(r) / 1000.0);
    if (r->m_route != NULL)
        metrics_add(r->m_route, -1);
    if (r->res.variant[0])
        metrics_add(metrics_series(m, M_AB, r->res.route, r->res.variant, NULL, NULL), 1);
}

static evhtp_res on_fini(evhtp_request_t *req, void *arg)
{
    req_t *r = arg;
    if (r->call != NULL || r->waiting) {
        if (r->call != NULL && r->ntrace > 0) {
            const candidate_t *c = &r->res.cand[r->cand];
            r->trace[r->ntrace - 1].error = "client_closed";
            r->trace[r->ntrace - 1].ms = edge_now_ms() - r->attempt_ms;
            metrics_add(metrics_series(r->w->metrics, M_ATTEMPTS, c->provider, c->model, "client_closed", NULL), 1);
        }
        if (!r->replied) {
            r->final_status = 499;         /* nginx's code for "client went away" */
            r->error = "client_closed";
        } else if (r->relaying) {
            r->error = "client_closed";
        }
    } else if (!r->replied && req->status >= 400) {
        r->final_status = req->status;     /* the edge answered it (408, 4xx) */
        r->error = "client_error";
    }
    end_attempt(r);
    r->req = NULL;
    access_log(r);
    count_request(r);
    if (r->res.variant_tally != NULL) {      /* A/B counts, read by the dry-run (metrics count their own) */
        tally_t *t = r->res.variant_tally;
        atomic_fetch_add_explicit(&t->n, 1, memory_order_relaxed);
        if (r->final_status >= 500 || r->final_status == 429 || r->error != NULL)
            atomic_fetch_add_explicit(&t->errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->total_us, (uint64_t)(since_ms(r) * 1000.0), memory_order_relaxed);
    }
    if (r->resolved)
        resolve_free(&r->res);
    store_release(r->key_hold);   /* r->resp stays with r, drained by end_attempt */
    r->w->in_flight--;
    edge_request_done(edge_client(req));
    req_drop(r->w, r);
    return EVHTP_RES_OK;
}

evhtp_res proxy_on_headers(evhtp_request_t *req, evhtp_headers_t *hdrs, void *arg)
{
    worker_t *w = arg;
    req_t *r = req_new(w);
    client_t *cl = edge_client(req);
    const char *ct, *path = req->uri && req->uri->path ? req->uri->path->full : NULL;
    (void)hdrs;
    if (r == NULL)
        return EVHTP_RES_FATAL;
    r->w = w;
    r->req = req;
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    evtimer_assign(&r->timer, w->base, on_attempt_timer, r);
    r->last_cand = -1;
    r->m_endpoint = "other";
    w->in_flight++;
    evhtp_request_set_hook(req, evhtp_hook_on_request_fini, (evhtp_hook)on_fini, r);
    evhtp_request_set_hook(req, evhtp_hook_on_read, (evhtp_hook)on_read, r);
    set_request_id(r);
    ct = evhtp_kv_find(req->headers_in, "content-type");
    if (ct != NULL)
        snprintf(r->content_type, sizeof(r->content_type), "%s", ct);
    if (path != NULL) {
        size_t i = 0;   /* logged as a JSON string: keep only safe bytes */
        for (; path[i] && i < sizeof(r->path) - 1; i++)
            r->path[i] = (path[i] > 0x20 && path[i] < 0x7f && path[i] != '"' && path[i] != '\\') ? path[i] : '?';
        r->path[i] = '\0';
    }
    if (cl != NULL && cl->over_limit) {
        /* past limits.max_connections: health checks are still answered,
         * everything else is turned away; either way the connection closes */
        evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
        if (!is_health_path(path)) {
            add_retry_hints(r, 1000, 1);
            reply_error(r, 503, "server_error", "too_many_connections", NULL,
                        "this gateway worker is at its limit of %d client connections; retry shortly",
                        w->cfg->max_connections);
            return refuse(r);
        }
    }
    if (req->conn->parser == NULL || !edge_expects_body(req))
        return EVHTP_RES_OK;             /* admitted when complete; the connection stays open */
    /* A body is coming: whatever can be refused without it is refused now
     * (and the connection closed after the answer); what passes is told to
     * send its body if it waits for "100 Continue" (README, HTTP edge). */
    r->early = 1;
    if (evhtp_request_content_len(req) > (uint64_t)w->cfg->max_body_bytes) {
        reply_error(r, 413, "invalid_request_error", "request_too_large", NULL,
                    "the request body of %llu bytes exceeds the limit of %lld bytes",
                    (unsigned long long)evhtp_request_content_len(req),
                    (long long)w->cfg->max_body_bytes);
        return refuse(r);
    }
    if (admit(r) < 0)
        return refuse(r);
    r->early = 0;
    edge_continue(req);
    return EVHTP_RES_OK;
}

void proxy_install(worker_t *w)
{
    evhtp_set_gencb(w->htp, on_request, w);
}
