/* fuzz_upstream_response.c - libFuzzer driver for what an upstream sends back, read by turnout's own client (src/upstream.c).
 *
 * The response parsing of upstream.c lives in its static functions
 * (on_conn_read, parse, take_head, deliver, make_room) on top of src/h1.c,
 * so the driver includes upstream.c and runs them for real: one call on
 * one connection, the connection's recv() replaced by a stand-in that
 * hands over the fuzzer's bytes in pieces, then the end of the
 * connection. Everything else (sockets, name lookups, libcurl) is never
 * reached; its few outside functions are stubbed below.
 *
 * Input: byte 0 holds the number of split lengths (bits 0-2), how the
 * body handler pauses (bits 3-4: never, or every 2nd, 3rd or 4th call, then
 * resumed at once as up_resume does), whether it refuses the first body
 * bytes (bit 5: UP_ABORT) and whether the owner ends the call with
 * up_abort from inside the first field's handler (bit 6); then as many bytes of piece lengths
 * (each value + 1, used over and over); the rest is the response: status
 * line, 1xx answers, fields, a Content-Length, chunked or close-delimited
 * body, trailers, and whatever follows.
 *
 * Besides the sanitizers' findings it checks what upstream.h promises:
 * the handlers are called in order (status once, with a final 2xx-5xx
 * status, before any field; fields before the body; done once, last);
 * every field is fit to relay (h1_field_ok); every body byte handed over
 * lies in the connection's unparsed input, never more of them than were
 * received, never more than a Content-Length says and exactly that many
 * when the call ends well; and the response fed whole or in pieces gives
 * the same status, fields, body and outcome. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The connection's reads come from the fuzzer's input (see fuzz_recv). */
static ssize_t fuzz_recv(int fd, void *buf, size_t n, int flags);
#define recv fuzz_recv
#include "../../src/upstream.c"
#undef recv

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* upstream.c's outside functions that reading a response never needs, or
 * needs only as a clock. */
double edge_now_ms(void)
{
    return 1000.0;
}

upcurl_t *upcurl_start(worker_t *w, const up_request_t *rq, const up_handlers_t *h, void *arg)
{
    (void)w, (void)rq, (void)h, (void)arg;
    abort();
}

void upcurl_resume(upcurl_t *u)
{
    (void)u;
    abort();
}

void upcurl_abort(upcurl_t *u)
{
    (void)u;
    abort();
}

/* What the connection has received so far: PIECE[0, LEN) is the current
 * read's, POS of them taken; EOF: the upstream closed after them. */
static struct {
    const char *piece;
    size_t len, pos;
    int eof;
    uint64_t fed;                  /* bytes handed to the client in all */
} in;

static ssize_t fuzz_recv(int fd, void *buf, size_t n, int flags)
{
    size_t k = in.len - in.pos;
    (void)fd;
    (void)flags;
    if (k == 0) {
        if (in.eof)
            return 0;
        errno = EAGAIN;
        return -1;
    }
    if (k > n)
        k = n;
    memcpy(buf, in.piece + in.pos, k);
    in.pos += k;
    in.fed += k;
    return (ssize_t)k;
}

/* What the handlers saw: a transcript (records of a tag and a length, body
 * bytes merged into one record however they were handed over) and the
 * state the order checks need. */
typedef struct seen {
    char *t;
    size_t len, cap;
    size_t body_rec;               /* offset of the open body record, or 0 */
    up_conn_t *conn;
    up_call_t *call;
    int status, statuses, fields, done, calls, pause_every;
    int abort_body, abort_field;   /* what the owner does (see the top) */
    uint64_t body;
    h1_framing_t f;
} seen_t;

static void put(seen_t *s, const void *b, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2 + 256;
        if ((s->t = realloc(s->t, s->cap)) == NULL)
            abort();
    }
    if (n > 0)
        memcpy(s->t + s->len, b, n);
    s->len += n;
}

static void record(seen_t *s, char tag, const char *b, size_t n)
{
    uint32_t n32 = (uint32_t)n;
    s->body_rec = 0;
    put(s, &tag, 1);
    put(s, &n32, sizeof(n32));
    put(s, b, n);
}

/* Aborts unless B[0, N) lies in the connection's received bytes. */
static void in_input(const seen_t *s, const char *b, size_t n)
{
    const up_conn_t *c = s->conn;
    if (b < c->buf || b + n > c->buf + c->end)
        abort();
}

static void on_status(void *arg, int status)
{
    seen_t *s = arg;
    char b[4];
    if (s->done || s->statuses++ > 0 || status < 200 || status > 599)
        abort();
    s->status = status;
    b[0] = (char)('0' + status / 100), b[1] = (char)('0' + status / 10 % 10), b[2] = (char)('0' + status % 10);
    record(s, 'S', b, 3);
}

static void on_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    seen_t *s = arg;
    if (s->done || s->statuses != 1 || s->body > 0 || !h1_field_ok(name, nlen, value, vlen))
        abort();
    in_input(s, name, nlen);
    in_input(s, value, vlen);
    s->fields++;
    record(s, 'N', name, nlen);
    record(s, 'V', value, vlen);
    if (h1_framing_field(&s->f, name, nlen, value, vlen) < 0)
        abort();                          /* upstream.c ends a head with such a field before relaying it */
    if (s->abort_field) {                 /* the owner gives up: no handler runs again */
        up_abort(s->call);
        s->done = 1;
        record(s, 'A', "", 0);
    }
}

static int on_body(void *arg, const char *buf, size_t len)
{
    seen_t *s = arg;
    uint32_t n32;
    if (s->done || s->statuses != 1 || s->status == 204 || s->status == 304)
        abort();
    in_input(s, buf, len);
    if (s->abort_body)
        return UP_ABORT;                  /* done(upstream_error) follows */
    if (s->pause_every > 0 && ++s->calls % s->pause_every == 0)
        return UP_PAUSE;                  /* handed over again once resumed */
    s->body += len;
    if (s->body > in.fed)
        abort();                          /* more body than bytes received */
    if (s->f.chunked == 0 && s->f.has_len && s->body > s->f.clen)
        abort();                          /* more body than its Content-Length */
    if (s->body_rec == 0) {
        record(s, 'B', NULL, 0);
        s->body_rec = s->len - sizeof(n32);
    }
    put(s, buf, len);
    memcpy(&n32, s->t + s->body_rec, sizeof(n32));
    n32 += (uint32_t)len;
    memcpy(s->t + s->body_rec, &n32, sizeof(n32));
    return UP_TAKEN;
}

static void on_done(void *arg, const char *code, const char *detail)
{
    seen_t *s = arg;
    if (s->done++ || (code != NULL && (strcmp(code, "upstream_error") != 0 || detail == NULL)))
        abort();
    if (code == NULL && (s->statuses != 1 ||
                         ((s->status == 204 || s->status == 304) && s->body != 0) ||
                         (s->status != 204 && s->status != 304 && s->f.chunked == 0 && s->f.has_len &&
                          s->body != s->f.clen)))
        abort();                          /* a whole response, but not what its head framed */
    record(s, 'D', code != NULL ? code : "", code != NULL ? strlen(code) : 0);
}

static const up_handlers_t handlers = { on_status, on_header, on_body, on_done };

/* Hands a paused call its held bytes again until it takes them. */
static void resume_all(up_call_t *call, up_conn_t *c, const seen_t *s)
{
    while (!s->done && call->paused) {
        call->paused = 0;                 /* what up_resume does, but for the events */
        call->resumed = 1;
        on_conn_read(c->fd, EV_READ, c);
    }
}

/* One call reading RESP[0, LEN) in pieces of LENS[0, NLENS) bytes, over
 * and over (NLENS 0: whole), then the end of the connection. */
static void run(struct event_base *base, const char *resp, size_t len, const uint8_t *lens, size_t nlens, seen_t *s)
{
    worker_t w;
    up_pool_t *pool = calloc(1, sizeof(*pool));
    up_conn_t *c;
    up_call_t *call = calloc(1, sizeof(*call) + 1024);
    size_t pos = 0, li = 0;
    if (pool == NULL || call == NULL)
        abort();
    memset(&w, 0, sizeof(w));
    w.base = base;
    if ((c = conn_new(&w, pool, -1)) == NULL)
        abort();
    call->head_cap = 1024;
    call->w = &w;                         /* w.up is NULL: call_free frees the call */
    call->pool = pool;
    call->h = &handlers;
    call->arg = s;
    call->conn = c;
    call->st = ST_HEAD;
    evtimer_assign(&call->tev, base, on_call_timer, call);
    c->call = call;
    s->conn = c;
    s->call = call;
    memset(&in, 0, sizeof(in));
    while (pos < len && !s->done) {
        size_t n = nlens > 0 ? (size_t)lens[li++ % nlens] + 1 : len - pos;
        char *piece;
        if (n > len - pos)
            n = len - pos;
        if ((piece = malloc(n)) == NULL)  /* its own heap block: a read past it is caught */
            abort();
        memcpy(piece, resp + pos, n);
        in.piece = piece, in.len = n, in.pos = 0;
        while (in.pos < in.len && !s->done) {
            resume_all(call, c, s);
            if (!s->done)
                on_conn_read(c->fd, EV_READ, c);
        }
        resume_all(call, c, s);
        pos += in.pos;
        if (s->done && pool->idle == c && (in.pos < in.len || pos < len)) {
            /* bytes after a whole response, at an idle pooled connection: it is closed */
            in.eof = 0;
            on_conn_read(c->fd, EV_READ, c);
            if (pool->idle == c)
                abort();
        }
        free(piece);
        in.piece = NULL, in.len = in.pos = 0;
    }
    if (!s->done) {
        in.eof = 1;                       /* the upstream closes */
        on_conn_read(c->fd, EV_READ, c);
        if (!s->done)
            abort();                      /* the end of the connection ends the call */
    }
    if (pool->idle == c) {
        pool_unlink(c);
        conn_close(c);
    }
    if (pool->idle != NULL)
        abort();
    free(pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct event_base *base;
    static seen_t whole, split;
    size_t nlens;
    int pause;
    const char *resp;
    size_t len;
    if (base == NULL) {
        struct event_config *cfg = event_config_new();
        event_config_avoid_method(cfg, "epoll");   /* no descriptor is ever added */
        if (cfg == NULL || (base = event_base_new_with_config(cfg)) == NULL)
            abort();
        event_config_free(cfg);
    }
    if (size < 1)
        return 0;
    nlens = data[0] & 7;
    pause = (data[0] >> 3) & 3;
    if (size < 1 + nlens)
        return 0;
    resp = (const char *)data + 1 + nlens;
    len = size - 1 - nlens;

    whole.len = whole.body_rec = 0;
    memset(&whole.f, 0, sizeof(whole.f));
    whole.status = whole.statuses = whole.fields = whole.done = whole.calls = 0;
    whole.body = 0;
    whole.pause_every = pause ? pause + 1 : 0;
    whole.abort_body = split.abort_body = (data[0] >> 5) & 1;
    whole.abort_field = split.abort_field = (data[0] >> 6) & 1;
    split.len = split.body_rec = 0;
    memset(&split.f, 0, sizeof(split.f));
    split.status = split.statuses = split.fields = split.done = split.calls = 0;
    split.body = 0;
    split.pause_every = whole.pause_every;

    run(base, resp, len, NULL, 0, &whole);
    if (nlens > 0) {
        run(base, resp, len, data + 1, nlens, &split);
        if (split.len != whole.len || memcmp(split.t, whole.t, whole.len) != 0)
            abort();                      /* read otherwise in pieces than whole */
    }
    return 0;
}
