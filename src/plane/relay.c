/* relay.c - the upstream's answer to the client: buffered whole, or relayed event by event with backpressure.
 *
 * When the client's dialect is not the upstream's, the answer passes
 * through the translation (dialect.h) on its way: a whole answer once it is
 * in (relay_check, before the commit), a stream event by event as whole
 * events come (relay_events cuts them). Otherwise the bytes go out as they
 * came. */
#include "plane.h"
#include "edge.h"
#include "jscan.h"
#include "sse.h"
#include "usage.h"

#include <event2/bufferevent.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SSE_EVENT_MAX (1024 * 1024)   /* the longest stream event held back whole */

/* NAME (NLEN bytes, any case) is about the upstream connection or is one
 * of ours: connection, keep-alive, transfer-encoding, content-length, te,
 * trailer, upgrade, proxy-authenticate, proxy-authorization, date, server.
 * Looked up by length first: every answer's every header passes here. */
static int hop_by_hop(const char *name, size_t nlen)
{
    static const char *const by_len[20][3] = {
        [2] = { "te" }, [4] = { "date" }, [6] = { "server" }, [7] = { "trailer", "upgrade" },
        [10] = { "connection", "keep-alive" }, [14] = { "content-length" }, [17] = { "transfer-encoding" },
        [18] = { "proxy-authenticate" }, [19] = { "proxy-authorization" },
    };
    if (nlen >= 20)
        return 0;
    for (int i = 0; i < 3 && by_len[nlen][i] != NULL; i++)
        if (strncasecmp(name, by_len[nlen][i], nlen) == 0)
            return 1;
    return 0;
}

/* One upstream response header: kept for the client unless it is about
 * the upstream connection itself. */
void relay_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    req_t *r = arg;
    char n[128], v[1024], *at = r->up_hdrs + r->up_hdrs_len;
    if (nlen >= sizeof(n) || vlen >= sizeof(v) || r->resp_headers == NULL)
        return;
    if ((nlen == 14 && strncasecmp(name, "content-length", 14) == 0) ||
        (nlen == 17 && strncasecmp(name, "transfer-encoding", 17) == 0))
        r->up_framed = 1;                /* the framing tells where the answer ends, not the close */
    if (hop_by_hop(name, nlen))
        return;
    if (nlen + vlen + 2 <= sizeof(r->up_hdrs) - r->up_hdrs_len) {
        /* kept in R until the reply's head is written (commit_headers): not copied again */
        memcpy(at, name, nlen);
        at[nlen] = '\0';
        memcpy(at + nlen + 1, value, vlen);
        at[nlen + 1 + vlen] = '\0';
        r->up_hdrs_len += nlen + vlen + 2;
        evhtp_headers_add_header(r->resp_headers, evhtp_header_new(at, at + nlen + 1, 0, 0));
        return;
    }
    memcpy(n, name, nlen);
    n[nlen] = '\0';
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
        /* moved, not copied (evhtp_kvs_add_kvs would copy each one) */
        TAILQ_CONCAT(r->req->headers_out, r->resp_headers, next);
        evhtp_kvs_free(r->resp_headers);   /* empty now */
        r->resp_headers = NULL;
    }
    reply_std_headers(r);
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
    attempt_arm_timer(r, r->last_data_ms);
    evhtp_connection_set_hook(conn, evhtp_hook_on_write, NULL, NULL);
    up_resume(r->call);                   /* libcurl may deliver held data at once */
    return EVHTP_RES_OK;
}

/* Writes LEN stream bytes straight into the client's socket output (what
 * evhtp_send_reply_chunk does, without a temporary buffer); BUF is the
 * call's, so it is copied. */
static int send_bytes(req_t *r, const char *buf, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(r->req->conn->bev);
    int chunked = (r->req->flags & EVHTP_REQ_FLAG_CHUNKED) != 0;
    if (len == 0)
        return 0;
    if ((chunked && evbuffer_add_printf(out, "%zx\r\n", len) < 0) || evbuffer_add(out, buf, len) < 0 ||
        (chunked && evbuffer_add(out, "\r\n", 2) < 0))
        return -1;
    r->bytes_out += len;
    return 0;
}

/* Moves what is in BUF into the client's socket output, framed as one
 * chunk when the reply is chunked: no copy, the buffer's chains move. */
static int send_buffer(req_t *r, struct evbuffer *buf)
{
    struct evbuffer *out = bufferevent_get_output(r->req->conn->bev);
    size_t len = evbuffer_get_length(buf);
    int chunked = (r->req->flags & EVHTP_REQ_FLAG_CHUNKED) != 0;
    if (len == 0)
        return 0;
    if ((chunked && evbuffer_add_printf(out, "%zx\r\n", len) < 0) || evbuffer_add_buffer(out, buf) < 0 ||
        (chunked && evbuffer_add(out, "\r\n", 2) < 0))
        return -1;
    r->bytes_out += len;
    return 0;
}

/* Passthrough events BUF[0, LEN) go out as they came, their usage read on
 * the way (usage_find is a memmem: the events without a usage object cost
 * nothing more); a stream whose usage the client did not ask for goes
 * through relay_unasked. */
/* The start of a JSON member "usage": null whose key is at B[K], with the
 * comma that joins it to the one before (or, for a first member, the one
 * after, in *END), so that cutting [start, *END) leaves valid JSON; LEN
 * when its value is not null. */
static size_t null_usage(const char *b, size_t len, size_t k, size_t *end)
{
    size_t at = k + 7, start = k;
    while (at < len && (b[at] == ' ' || b[at] == '\t'))
        at++;
    if (at >= len || b[at] != ':')
        return len;
    for (at++; at < len && (b[at] == ' ' || b[at] == '\t'); at++)
        ;
    if (at + 4 > len || memcmp(b + at, "null", 4) != 0)
        return len;
    *end = at + 4;
    while (start > 0 && (b[start - 1] == ' ' || b[start - 1] == '\t'))
        start--;
    if (start > 0 && b[start - 1] == ',')
        return start - 1;
    for (at = *end; at < len && (b[at] == ' ' || b[at] == '\t'); at++)
        ;
    if (at < len && b[at] == ',')
        *end = at + 1;
    return k;
}

/* The event of BUF[0, LEN) (whole events, or at a stream's end an
 * unfinished last one) that holds offset K, searched from the event
 * starting at *EV: *EV is set to its start; returns its length. */
static size_t event_holding(const char *buf, size_t len, size_t k, size_t *ev)
{
    size_t n;
    for (;;) {
        if ((n = sse_first(buf + *ev, len - *ev)) == 0)
            n = len - *ev;                /* the unfinished last event of a stream that ended */
        if (k < *ev + n)
            return n;
        *ev += n;
    }
}

/* Passthrough events of a stream whose usage turnout asked for itself:
 * what the client gets is what it would have got had it not been asked,
 * byte for byte: the usage chunk is left out, and so is the "usage": null
 * member every other chunk then carries. Written into r->xout and sent as
 * one piece. */
static int relay_unasked(req_t *r, const char *buf, size_t len)
{
    size_t from = 0, copied = 0, ev = 0, k, end;
    if (r->xout == NULL && (r->xout = evbuffer_new()) == NULL)
        return -1;
    evbuffer_drain(r->xout, evbuffer_get_length(r->xout));
    while (from < len) {
        const char *q = memmem(buf + from, len - from, "\"usage\"", 7);
        size_t cut, n;
        int only;
        if (q == NULL)
            break;
        k = (size_t)(q - buf);
        if ((cut = null_usage(buf, len, k, &end)) < len) {
            if (evbuffer_add(r->xout, buf + copied, cut - copied) < 0)
                return -1;
            copied = from = end;
            continue;
        }
        if (usage_find(buf, len, k) != k) {   /* not a usage object either */
            from = k + 7;
            continue;
        }
        n = event_holding(buf, len, k, &ev);
        usage_from_event(buf + ev, n, &r->usage, &only);
        if (only) {                       /* (ev >= copied: cuts end before the event holding them does) */
            if (evbuffer_add(r->xout, buf + copied, ev - copied) < 0)
                return -1;
            copied = ev + n;
        }
        from = ev + n;
        ev += n;
    }
    if (evbuffer_add(r->xout, buf + copied, len - copied) < 0)
        return -1;
    return send_buffer(r, r->xout);
}

static int relay_plain(req_t *r, const char *buf, size_t len)
{
    size_t ev = 0, k;
    if (r->drop_usage)
        return relay_unasked(r, buf, len);
    while ((k = usage_find(buf, len, ev)) < len) {
        size_t n = event_holding(buf, len, k, &ev);
        usage_from_event(buf + ev, n, &r->usage, NULL);
        ev += n;
    }
    return send_bytes(r, buf, len);
}

/* Whole stream events BUF[0, LEN) (or, at a clean end, an unfinished last
 * one) go to the client: as they are, or each translated. */
static int relay(req_t *r, const char *buf, size_t len)
{
    if (r->xl == NULL) {
        r->sse_done = dialect_stream_ended(r->up, buf, len);
        return relay_plain(r, buf, len);
    }
    if (r->xs == NULL && (r->xs = r->xl->stream_new(r->model, &r->xinfo)) == NULL)
        return -1;
    evbuffer_drain(r->xout, evbuffer_get_length(r->xout));
    while (len > 0) {
        size_t n = sse_first(buf, len);
        int rc = 0;
        if (n == 0)
            n = len;                      /* the unfinished last event of a stream that ended */
        /* (an event without data, a comment or keep-alive, translates to nothing) */
        if (r->sse_done == 0 && (rc = r->xl->stream_event(r->xs, buf, n, r->xout, &r->usage)) < 0)
            return -1;
        if (rc == 1)
            r->sse_done = 1;              /* its terminator, and the client's went out */
        buf += n;
        len -= n;
    }
    return send_buffer(r, r->xout);
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

int relay_data(void *arg, const char *buf, size_t len)
{
    req_t *r = arg;
    r->last_data_ms = edge_now_ms();
    if (attempt_fails_over(r->status))
        return UP_TAKEN;                  /* discarded: the attempt failed */
    if (r->req == NULL)
        return UP_ABORT;                  /* client gone */
    if (!r->relaying && r->status < 300 && is_event_stream(r)) {
        /* Streams are relayed event by event; the commit point is here. */
        if (r->xl != NULL && r->xout == NULL && (r->xout = evbuffer_new()) == NULL)
            return UP_ABORT;
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

void relay_finish(req_t *r)
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

/* Ends a relayed stream that broke: an SSE error event in the client's
 * shape (its data the error object of a reply), and never a terminator. */
void relay_abort(req_t *r, const char *code, const char *why)
{
    struct evbuffer *ev = evbuffer_new();
    char q[300];
    r->error = code;
    if (ev != NULL) {
        if (jscan_quote(why, q, sizeof(q)) < 0)
            snprintf(q, sizeof(q), "\"upstream stream failed\"");
        evbuffer_add(ev, "event: error\ndata: ", 19);
        dialect_error_body(r->client, 502, "upstream_error", code, "null", q, NULL, ev);   /* ends with LF */
        evbuffer_add(ev, "\n", 1);
        evhtp_send_reply_chunk(r->req, ev);
        evbuffer_free(ev);
    }
    evhtp_send_reply_chunk_end(r->req);
}

/* Whether a whole answer is an event stream that was cut: one framed only
 * by the close cannot tell a cut from an end, so it is judged by its
 * dialect's terminator (SPEC 4.4): OpenAI's data: [DONE], Anthropic's
 * message_stop. */
static int cut_stream(req_t *r)
{
    size_t held;
    if (r->up_framed || r->status >= 300 || !(r->relaying || is_event_stream(r)))
        return 0;
    held = evbuffer_get_length(r->resp);  /* the unrelayed tail, or (before relaying) all of it */
    if (held > 0)
        return !dialect_stream_ended(r->up, (const char *)evbuffer_pullup(r->resp, -1), held);
    return !r->sse_done;
}

/* Puts the answer in r->xout in place of the upstream's, as JSON. */
static void take_translation(req_t *r)
{
    evhtp_kv_t *ct = r->resp_headers != NULL ? evhtp_kvs_find_kv(r->resp_headers, "content-type") : NULL;
    evbuffer_drain(r->resp, evbuffer_get_length(r->resp));
    evbuffer_add_buffer(r->resp, r->xout);
    if (ct != NULL)
        evhtp_kv_rm_and_free(r->resp_headers, ct);
    if (r->resp_headers != NULL)
        evhtp_headers_add_header(r->resp_headers, evhtp_header_new("Content-Type", "application/json", 0, 0));
}

const char *relay_check(req_t *r, const char **detail)
{
    const char *body;
    size_t len;
    if (cut_stream(r)) {
        *detail = "the upstream closed the stream before its last event";
        return "upstream_truncated";
    }
    if (r->relaying)
        return NULL;
    if (r->xl == NULL) {                  /* passthrough: the usage is read, the bytes go as they are */
        if (r->status < 300 && (len = evbuffer_get_length(r->resp)) > 0)
            usage_from_answer((const char *)evbuffer_pullup(r->resp, -1), len, &r->usage);
        return NULL;
    }
    if (r->xout == NULL && (r->xout = evbuffer_new()) == NULL) {
        *detail = "out of memory";
        return "upstream_error";
    }
    evbuffer_drain(r->xout, evbuffer_get_length(r->xout));
    len = evbuffer_get_length(r->resp);
    body = len > 0 ? (const char *)evbuffer_pullup(r->resp, -1) : "";
    if (r->status >= 300) {               /* the caller's error, told in its own dialect */
        r->xl->error((int)r->status, body, len, r->xout);
    } else if (r->xl->answer(body, len, r->model, r->xout, &r->usage) < 0) {
        *detail = "the answer is not one of its API's";
        return "upstream_error";
    }
    take_translation(r);
    return NULL;
}

void relay_end(req_t *r)
{
    if (r->xs != NULL) {
        r->xl->stream_free(r->xs);
        r->xs = NULL;
    }
}
