/* edge.c - client connections at the HTTP edge: limits, client-side timeouts, and answers to malformed requests.
 *
 * Every accepted connection gets a client_t that lives until the connection
 * is freed. It owns one timer whose meaning follows the connection's phase:
 *
 *   IDLE     no request in progress     idle_timeout_s (header_timeout_s before
 *                                       the first request), then a silent close
 *   HEADERS  first byte of a request    header_timeout_s for the whole header
 *            seen (patch 0002's begin   block, however slowly it trickles in,
 *            callback)                  then 408
 *   BODY     headers in, body expected  idle_timeout_s between reads, then 408
 *   BUSY     request complete           none: a slow upstream or a long stream
 *                                       must not be cut by a read timeout
 *
 * libevhtp's own read timeout is not used (it would also fire while a
 * response streams); the send timeout (send_timeout_s, clientio.c) drops
 * clients that stop reading. Requests the parser rejects are answered here
 * (patch 0002's error callback) with an OpenAI-shaped 4xx and closed after
 * the answer is sent. */
#include "edge.h"
#include "clientio.h"
#include "proxy.h"

#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

double edge_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static client_t *client_of(evhtp_connection_t *conn)
{
    return conn != NULL && conn->hooks != NULL ? conn->hooks->on_connection_fini_arg : NULL;
}

client_t *edge_client(evhtp_request_t *req)
{
    return req != NULL ? client_of(req->conn) : NULL;
}

void edge_timer_after(struct event *ev, double ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms - tv.tv_sec * 1000.0) * 1000);
    event_add(ev, &tv);
}

static void set_timer(client_t *cl, double now, double ms)
{
    edge_timer_after(&cl->timer, ms);
    cl->due = now + ms;
}

/* The timer is lazy: a new phase moves it only when its limit comes before
 * the time the timer is set for, and a firing timer compares the phase's
 * limit with the time since the phase began, then waits out what is left.
 * So the phases of a keep-alive request, which follow each other within
 * microseconds, move no timer; a busy connection's timer fires about once
 * per header_timeout_s instead of being set and cleared three times per
 * request. */
static void arm(client_t *cl, client_phase_t phase, double after_ms)
{
    double now = edge_now_ms();
    cl->phase = phase;
    cl->since = now;
    cl->limit_ms = after_ms;
    if (phase != CLIENT_BUSY && (cl->due == 0 || now + after_ms < cl->due))
        set_timer(cl, now, after_ms);
}

static const char *status_code_name(int status)
{
    switch (status) {
    case 408: return "request_timeout";
    case 411: return "length_required";
    case 413: return "request_too_large";
    case 414: return "uri_too_long";
    case 417: return "expectation_failed";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 503: return "server_busy";
    case 505: return "http_version_not_supported";
    default:  return "bad_request";
    }
}

void edge_write_error(evhtp_connection_t *conn, int status, const char *message)
{
    char body[700];
    evhtp_request_t *req = conn->request;
    int n;
    if (req != NULL) {
        if (req->flags & EVHTP_REQ_FLAG_FINISHED)
            return;                      /* it has been answered already */
        req->status = (evhtp_res)status; /* for the access log */
    }
    n = snprintf(body, sizeof(body),
                 "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"param\":null,"
                 "\"code\":\"%s\"}}\n", message, status_code_name(status));
    if (n < 0 || (size_t)n >= sizeof(body))
        return;
    /* the reason phrase from libevhtp's table (patch 0003), as every other reply;
     * a reply to HEAD is its head alone, as evhtp's own replies (patch 0003) */
    evbuffer_add_printf(bufferevent_get_output(conn->bev),
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                        "Connection: close\r\n\r\n%s", status, evhtp_status_code_str((evhtp_res)status), n,
                        req != NULL && req->method == htp_method_HEAD ? "" : body);
}

const char *edge_parse_error_message(evhtp_connection_t *conn, int status)
{
    switch (status) {
    case 414: return "the request line is longer than 8 KiB";
    case 431: return "a header line is longer than 8 KiB";
    case 505: return "HTTP version not supported: this server speaks HTTP/1.1 and HTTP/1.0";
    default:  break;
    }
    switch (conn->parser != NULL ? htparser_get_error(conn->parser) : htparse_error_none) {
    case htparse_error_inval_ver:
        return "malformed HTTP version: the request line must end in HTTP/1.1 or HTTP/1.0";
    case htparse_error_inval_method:
    case htparse_error_inval_reqline:
    case htparse_error_inval_schema:
    case htparse_error_inval_proto:
        return "malformed request line: expected METHOD SP TARGET SP HTTP/1.1 (at most 4 empty lines before it)";
    case htparse_error_inval_hdr:
        return "malformed header line: expected NAME: VALUE (no whitespace in or after the name, "
               "no folded lines, a Content-Length of digits)";
    case htparse_error_inval_chunk_sz:
    case htparse_error_inval_chunk:
        return "malformed chunked body";
    default:
        return "malformed HTTP request";
    }
}

int edge_expects_body(evhtp_request_t *req)
{
    /* not through client_t: the admin listener's connections have none; a
     * Transfer-Encoding that got this far is chunked (on_header, admin's 411) */
    return evhtp_request_content_len(req) > 0 || evhtp_kv_find(req->headers_in, "transfer-encoding") != NULL;
}

int edge_expectation_ok(const char *value)
{
    return *value == '\0' || strcasecmp(value, "100-continue") == 0;
}

void edge_continue(evhtp_request_t *req)
{
    static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
    const char *expect = evhtp_kv_find(req->headers_in, "expect");
    /* RFC 9110 section 10.1.1: an HTTP/1.0 client's 100-continue is ignored */
    if (expect == NULL || *expect == '\0' || req->proto != EVHTP_PROTO_11 || !edge_expects_body(req))
        return;
    evbuffer_add(bufferevent_get_output(req->conn->bev), interim, sizeof(interim) - 1);
}

static void on_parse_error(evhtp_connection_t *conn, evhtp_res status, void *arg)
{
    client_t *cl = client_of(conn);
    const char *msg;
    (void)arg;
    if (cl == NULL)
        return;
    msg = cl->error;
    if (msg == NULL)
        msg = edge_parse_error_message(conn, status);
    edge_write_error(conn, status, msg);
    cl->phase = CLIENT_BUSY;
    event_del(&cl->timer);
    cl->due = 0;
    /* evhtp closes the connection once this is sent */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    client_t *cl = arg;
    const config_t *cfg = cl->w->cfg;
    double now = edge_now_ms(), left = cl->limit_ms - (now - cl->since);
    char msg[128];
    (void)fd;
    (void)what;
    cl->due = 0;
    if (cl->phase == CLIENT_BUSY)
        return;                           /* no read timeout while a request is answered */
    if (left > 1) {                       /* the phase began (or body bytes came) since it was set */
        set_timer(cl, now, left);
        return;
    }
    switch (cl->phase) {
    case CLIENT_IDLE:
        evhtp_connection_free(cl->conn);  /* no request in progress: nothing to answer */
        return;
    case CLIENT_HEADERS:
        snprintf(msg, sizeof(msg), "the request headers did not arrive within %d s", cfg->header_timeout_s);
        break;
    default:
        snprintf(msg, sizeof(msg), "the request body stalled for %d s", cfg->idle_timeout_s);
        break;
    }
    edge_write_error(cl->conn, 408, msg);
    cl->phase = CLIENT_BUSY;
    evhtp_connection_close_after_write(cl->conn);
}

static void on_request_begin(evhtp_connection_t *conn, void *arg)
{
    client_t *cl = client_of(conn);
    (void)arg;
    if (cl == NULL)
        return;
    cl->nheaders = 0;
    cl->header_bytes = 0;
    cl->content_lengths = 0;
    cl->transfer_encoding = 0;
    cl->error = NULL;
    arm(cl, CLIENT_HEADERS, cl->w->cfg->header_timeout_s * 1000.0);
}

/* Each header as it is parsed: limits, and the framing rules that keep a
 * request from being read two ways (RFC 9112 section 6). */
static evhtp_res on_header(evhtp_request_t *req, evhtp_header_t *h, void *arg)
{
    client_t *cl = arg;
    const config_t *cfg = cl->w->cfg;
    (void)req;
    cl->nheaders++;
    cl->header_bytes += (int64_t)(h->klen + h->vlen + 4);
    if (cl->nheaders > cfg->max_headers) {
        cl->error = "too many header fields";
        return 431;
    }
    if (cl->header_bytes > cfg->max_header_bytes) {
        cl->error = "the request headers are too large";
        return 431;
    }
    /* (lengths first: most fields are none of these three) */
    if (h->klen == 14 && strcasecmp(h->key, "content-length") == 0) {
        if (++cl->content_lengths > 1) {
            cl->error = "more than one Content-Length header";
            return 400;
        }
        if (h->vlen == 0 || strspn(h->val, "0123456789") != h->vlen) {
            cl->error = "Content-Length is not a number";
            return 400;
        }
    } else if (h->klen == 6 && strcasecmp(h->key, "expect") == 0) {
        if (!edge_expectation_ok(h->val)) {
            cl->error = "the only expectation supported is Expect: 100-continue";
            return 417;
        }
        return EVHTP_RES_OK;
    } else if (h->klen == 17 && strcasecmp(h->key, "transfer-encoding") == 0) {
        if (cl->transfer_encoding++) {
            cl->error = "more than one Transfer-Encoding header";
            return 400;
        }
        if (strcasecmp(h->val, "chunked") != 0) {
            cl->error = "only Transfer-Encoding: chunked is supported";
            return 501;
        }
    } else {
        return EVHTP_RES_OK;
    }
    if (cl->content_lengths && cl->transfer_encoding) {
        cl->error = "Content-Length and Transfer-Encoding together";
        return 400;
    }
    return EVHTP_RES_OK;
}

static evhtp_res on_headers(evhtp_request_t *req, evhtp_headers_t *hdrs, void *arg)
{
    client_t *cl = client_of(req->conn);
    if (cl != NULL) {
        if (cl->transfer_encoding || evhtp_request_content_len(req) > 0)
            arm(cl, CLIENT_BODY, cl->w->cfg->idle_timeout_s * 1000.0);
        else
            arm(cl, CLIENT_BUSY, 0);
    }
    return proxy_on_headers(req, hdrs, arg);
}

void edge_body_read(client_t *cl)
{
    if (cl != NULL && cl->phase == CLIENT_BODY)
        cl->since = edge_now_ms();        /* the timer compares when it fires */
}

void edge_request_complete(client_t *cl)
{
    if (cl != NULL && cl->phase != CLIENT_BUSY)
        arm(cl, CLIENT_BUSY, 0);
}

void edge_request_done(client_t *cl)
{
    if (cl == NULL)
        return;
    /* when draining, a connection closes as soon as its request is done */
    if (cl->phase == CLIENT_BUSY)
        arm(cl, CLIENT_IDLE, cl->w->stopping ? 0 : cl->w->cfg->idle_timeout_s * 1000.0);
    cio_request_done(cl);
}

static evhtp_res on_conn_fini(evhtp_connection_t *conn, void *arg)
{
    client_t *cl = arg;
    worker_t *w = cl->w;
    event_del(&cl->timer);
    cio_stop(cl);
    if (cl->prev != NULL)
        cl->prev->next = cl->next;
    else
        w->clients = cl->next;
    if (cl->next != NULL)
        cl->next->prev = cl->prev;
    w->nclients--;
    metrics_add(w->m_connections, -1);
    /* the request (if any) is freed after this hook: it must not find us */
    conn->hooks->on_connection_fini_arg = NULL;
    free(cl);
    return EVHTP_RES_OK;
}

static evhtp_res on_accept(evhtp_connection_t *conn, void *arg)
{
    worker_t *w = arg;
    client_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return EVHTP_RES_FATAL;
    cl->w = w;
    cl->conn = conn;
    cl->over_limit = w->nclients >= w->cfg->max_connections;
    cl->next = w->clients;
    if (w->clients != NULL)
        w->clients->prev = cl;
    w->clients = cl;
    w->nclients++;
    metrics_add(w->m_connections, 1);
    event_assign(&cl->timer, w->base, -1, 0, on_timer, cl);
    evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_conn_fini, cl);
    evhtp_connection_set_hook(conn, evhtp_hook_on_header, (evhtp_hook)on_header, cl);
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers, (evhtp_hook)on_headers, w);
    /* evhtp's write callback (which resumes paused upstream transfers) runs
     * once the output is down to this, not only when it is empty */
    bufferevent_setwatermark(conn->bev, EV_WRITE, PROXY_SEND_LOW_WATER, 0);
    arm(cl, CLIENT_IDLE, w->cfg->header_timeout_s * 1000.0);
    cio_start(cl, w->base, &w->cfg, w->cfg->tls_ctx);
    return EVHTP_RES_OK;
}

void edge_close_idle(worker_t *w)
{
    client_t *cl = w->clients, *next;
    for (; cl != NULL; cl = next) {
        next = cl->next;
        if (cl->phase == CLIENT_IDLE)
            evhtp_connection_free(cl->conn);
    }
}

void edge_close_all(worker_t *w)
{
    while (w->clients != NULL)
        evhtp_connection_free(w->clients->conn);
}

void edge_install(worker_t *w)
{
    /* the sockets' I/O, and so the send timeout, is clientio.c's */
    evhtp_set_external_io(w->htp, 1);
    evhtp_set_post_accept_cb(w->htp, on_accept, w);
    evhtp_set_edge_cbs(w->htp, on_request_begin, on_parse_error, w);
}
