/* fuzz_http_request.c - libFuzzer driver for the HTTP/1.1 request parser clients' bytes go through (libevhtp's htparser, patched).
 *
 * parser.c is built instrumented with the driver and run the way libevhtp
 * runs it for turnout: its hooks keep what evhtp's keep (the field names
 * and values as C strings, a port that strtoul must read whole) and apply
 * src/edge.c's on_header rules (limits.max_headers and max_header_bytes at
 * their defaults, one Content-Length of digits, one Transfer-Encoding that
 * is "chunked", not both, Expect: 100-continue only); a hook's refusal
 * stops the parse as evhtp's does. One htparser_run per read, over all
 * the input not parsed yet (evhtp's evbuffer_pullup); after a complete
 * request the parser is reset and run again over what is left, as evhtp
 * does once the request has been answered, unless it was not keep-alive
 * (then the connection closes); input left after a run that neither
 * completed a request nor failed waits for the next read.
 *
 * Input: byte 0 holds the number of split lengths (bits 0-2); then as
 * many bytes of piece lengths (each value + 1, used over and over); the
 * rest is what the client sends, pipelined requests included.
 *
 * Besides the sanitizers' findings it checks:
 * - a request reported complete had a method, a path and its whole head,
 *   and its head was reported complete once (a second on_hdrs_complete
 *   runs turnout's on_headers, which starts a request, a second time);
 *   no field name was left without its value (evhtp's list would hold a
 *   field whose value is NULL);
 * - body bytes lie in the buffer being parsed, never more of them than
 *   were fed; the framing the parser applies is the one edge.c checked:
 *   chunks only after an accepted Transfer-Encoding: chunked, which must
 *   end in its last chunk; with an accepted Content-Length exactly that
 *   many body bytes, and that length reported by the parser; else none;
 * - the same bytes fed whole and fed in pieces give the same events
 *   (the property of turnout's patch 0001), the same failure and the same
 *   bytes left unparsed.
 * Every buffer handed to htparser_run is a heap copy of exactly its
 * length, so a read past its end is an AddressSanitizer report. */
#include <stddef.h>
#include <sys/types.h>

#include <evhtp/parser.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEADERS 100            /* limits.max_headers' default (src/config.c) */
#define MAX_HEADER_BYTES 65536     /* limits.max_header_bytes' default */

/* One client connection: the parser, a transcript of what its hooks saw
 * (records of a tag and a length; body bytes merged into one record
 * however they were handed over), and the state of the request being
 * parsed that evhtp and edge.c keep. */
typedef struct conn {
    htparser *p;
    char *t;
    size_t len, cap;
    size_t body_rec;               /* offset of the open body record's length, or 0 */
    const char *buf;               /* the buffer htparser_run is parsing */
    size_t buf_len;
    uint64_t fed, body_total;
    int completed;                 /* a request completed in this run */
    int closed;                    /* not keep-alive: the connection closes after the answer */
    /* the request */
    int began, method, path, heads_done, chunks, chunks_done;
    char *key;                     /* the last field name, as evhtp keeps it */
    int key_has_val;               /* it has its value: another value has no field (evhtp_header_val_add) */
    int nheaders;
    long long header_bytes;
    int content_lengths, transfer_encoding;
    unsigned long long clen;
    uint64_t body;
} conn_t;

static void put(conn_t *c, const void *b, size_t n)
{
    if (c->len + n > c->cap) {
        c->cap = (c->len + n) * 2 + 256;
        if ((c->t = realloc(c->t, c->cap)) == NULL)
            abort();
    }
    if (n > 0)
        memcpy(c->t + c->len, b, n);
    c->len += n;
}

static void record(conn_t *c, char tag, const char *b, size_t n)
{
    uint32_t n32 = (uint32_t)n;
    c->body_rec = 0;
    put(c, &tag, 1);
    put(c, &n32, sizeof(n32));
    put(c, b, n);
}

static conn_t *conn_of(htparser *p)
{
    return htparser_get_userdata(p);
}

/* A hook's refusal (evhtp: cr_status), for the transcript. */
static int refuse(conn_t *c, int status)
{
    char b[4];
    snprintf(b, sizeof(b), "%d", status);
    record(c, '!', b, 3);
    return -1;
}

static int on_msg_begin(htparser *p)
{
    conn_t *c = conn_of(p);
    if (c->began)
        abort();                          /* a request began inside another */
    c->began = 1;
    c->method = c->path = c->heads_done = c->chunks = c->chunks_done = 0;
    c->nheaders = c->content_lengths = c->transfer_encoding = 0;
    c->header_bytes = 0;
    c->clen = 0;
    c->body = 0;
    free(c->key);
    c->key = NULL;
    c->key_has_val = 0;
    record(c, 'b', NULL, 0);
    return 0;
}

static int on_method(htparser *p, const char *d, size_t n)
{
    conn_t *c = conn_of(p);
    c->method = 1;
    record(c, 'M', d, n);
    return 0;
}

static int on_scheme(htparser *p, const char *d, size_t n)
{
    record(conn_of(p), 's', d, n);
    return 0;
}

static int on_host(htparser *p, const char *d, size_t n)
{
    record(conn_of(p), 'h', d, n);
    return 0;
}

/* evhtp's htp__request_parse_port_: strtoul over the data as given. */
static int on_port(htparser *p, const char *d, size_t n)
{
    conn_t *c = conn_of(p);
    char *end;
    unsigned long port = strtoul(d, &end, 10);
    record(c, 'p', d, n);
    if ((size_t)(end - d) != n || port > 65535)
        return refuse(c, 500);
    return 0;
}

static int on_path(htparser *p, const char *d, size_t n)
{
    conn_t *c = conn_of(p);
    c->path = 1;
    record(c, 'P', d, n);
    return 0;
}

static int on_args(htparser *p, const char *d, size_t n)
{
    record(conn_of(p), 'A', d, n);
    return 0;
}

static int on_hdrs_begin(htparser *p)
{
    record(conn_of(p), 'H', NULL, 0);
    return 0;
}

static int on_hdr_key(htparser *p, const char *d, size_t n)
{
    conn_t *c = conn_of(p);
    record(c, 'K', d, n);
    free(c->key);
    if ((c->key = malloc(n + 1)) == NULL)
        abort();
    memcpy(c->key, d, n);
    c->key[n] = '\0';
    c->key_has_val = 0;
    return 0;
}

/* The value's NUL-terminated copy, with edge.c's on_header applied to it
 * (as evhtp passes it: lengths by strlen). */
static int on_hdr_val(htparser *p, const char *d, size_t n)
{
    conn_t *c = conn_of(p);
    char *val = malloc(n + 1);
    const char *key = c->key;
    size_t klen, vlen;
    int r = 0;
    record(c, 'V', d, n);
    if (val == NULL)
        abort();
    if (key == NULL || c->key_has_val) {  /* a line without a colon: evhtp finds no field for it */
        free(val);
        return refuse(c, 999);
    }
    c->key_has_val = 1;
    memcpy(val, d, n);
    val[n] = '\0';
    klen = strlen(key);
    vlen = strlen(val);
    c->nheaders++;
    c->header_bytes += (long long)(klen + vlen + 4);
    if (c->nheaders > MAX_HEADERS || c->header_bytes > MAX_HEADER_BYTES) {
        r = refuse(c, 431);
    } else if (strcasecmp(key, "content-length") == 0) {
        if (++c->content_lengths > 1 || vlen == 0 || strspn(val, "0123456789") != vlen)
            r = refuse(c, 400);
        else
            c->clen = strtoull(val, NULL, 10);
    } else if (strcasecmp(key, "expect") == 0) {
        if (*val != '\0' && strcasecmp(val, "100-continue") != 0)
            r = refuse(c, 417);
        free(val);
        return r;
    } else if (strcasecmp(key, "transfer-encoding") == 0) {
        if (c->transfer_encoding++)
            r = refuse(c, 400);
        else if (strcasecmp(val, "chunked") != 0)
            r = refuse(c, 501);
    } else {
        free(val);
        return 0;
    }
    if (r == 0 && c->content_lengths && c->transfer_encoding)
        r = refuse(c, 400);
    free(val);
    return r;
}

static int on_hostname(htparser *p, const char *d, size_t n)
{
    record(conn_of(p), 'n', d, n);
    return 0;
}

static int on_hdrs_complete(htparser *p)
{
    conn_t *c = conn_of(p);
    char ka = htparser_should_keep_alive(p) ? 'k' : 'c';
    if (!c->began || c->heads_done++)
        abort();                          /* a head completed twice: turnout's on_headers runs again */
    if (c->content_lengths == 1 && !c->transfer_encoding && htparser_get_content_length(p) != c->clen)
        abort();                          /* another length than the Content-Length edge.c read */
    record(c, 'C', &ka, 1);
    return 0;
}

static int on_new_chunk(htparser *p)
{
    conn_t *c = conn_of(p);
    uint64_t n = htparser_get_content_length(p);
    if (!c->heads_done || c->transfer_encoding != 1)
        abort();                          /* chunks without an accepted Transfer-Encoding: chunked */
    c->chunks++;
    record(c, 'c', (const char *)&n, sizeof(n));
    return 0;
}

static int on_chunk_complete(htparser *p)
{
    record(conn_of(p), 'e', NULL, 0);
    return 0;
}

static int on_chunks_complete(htparser *p)
{
    conn_t *c = conn_of(p);
    if (!c->heads_done || c->transfer_encoding != 1)
        abort();
    c->chunks_done = 1;
    record(c, 'z', NULL, 0);
    return 0;
}

static int on_body(htparser *p, const char *d, size_t n)
{
    conn_t *c = conn_of(p);
    uint32_t n32;
    if (!c->heads_done || d < c->buf || d + n > c->buf + c->buf_len)
        abort();                          /* body bytes from outside the buffer */
    c->body += n;
    c->body_total += n;
    if (c->body_total > c->fed || (c->transfer_encoding != 1 && c->body > c->clen))
        abort();                          /* more body than was fed, or than its Content-Length */
    if (c->body_rec == 0) {
        record(c, 'B', NULL, 0);
        c->body_rec = c->len - sizeof(n32);
    }
    put(c, d, n);
    memcpy(&n32, c->t + c->body_rec, sizeof(n32));
    n32 += (uint32_t)n;
    memcpy(c->t + c->body_rec, &n32, sizeof(n32));
    return 0;
}

static int on_msg_complete(htparser *p)
{
    conn_t *c = conn_of(p);
    char ka = htparser_should_keep_alive(p) ? 'k' : 'c';
    if (!c->began || !c->method || !c->path || !c->heads_done)
        abort();                          /* complete without a method, a path or a head */
    if (c->transfer_encoding == 1 ? !c->chunks_done : (c->chunks > 0 || c->body != c->clen))
        abort();                          /* framed otherwise than edge.c checked */
    if (c->key != NULL && !c->key_has_val)
        abort();                          /* a field left without its value (evhtp: a NULL val) */
    c->began = 0;
    c->completed = 1;
    c->closed = ka == 'c';
    record(c, 'X', &ka, 1);
    return 0;
}

static htparse_hooks hooks = {
    .on_msg_begin = on_msg_begin,
    .method = on_method,
    .scheme = on_scheme,
    .host = on_host,
    .port = on_port,
    .path = on_path,
    .args = on_args,
    .uri = NULL,
    .on_hdrs_begin = on_hdrs_begin,
    .hdr_key = on_hdr_key,
    .hdr_val = on_hdr_val,
    .hostname = on_hostname,
    .on_hdrs_complete = on_hdrs_complete,
    .on_new_chunk = on_new_chunk,
    .on_chunk_complete = on_chunk_complete,
    .on_chunks_complete = on_chunks_complete,
    .body = on_body,
    .on_msg_complete = on_msg_complete,
};

/* The client sends S[0, LEN) in pieces of LENS[0, NLENS) bytes, over and
 * over (NLENS 0: all at once). The transcript ends with how it ended: a
 * parse error, the connection closed after a request, or the bytes left. */
static void run(conn_t *c, const char *s, size_t len, const uint8_t *lens, size_t nlens)
{
    char *pending = NULL;              /* the input not parsed yet */
    size_t npending = 0, pos = 0, li = 0;
    int failed = 0;
    char end[32];
    c->len = c->body_rec = 0;
    c->fed = c->body_total = 0;
    c->began = c->closed = 0;
    htparser_init(c->p, htp_type_request);
    htparser_set_userdata(c->p, c);
    while (pos < len && !failed && !c->closed) {
        size_t n = nlens > 0 ? (size_t)lens[li++ % nlens] + 1 : len - pos, ran;
        char *all;
        if (n > len - pos)
            n = len - pos;
        /* what evbuffer_pullup gives: the bytes left over, then the new ones */
        if ((all = malloc(npending + n)) == NULL)
            abort();
        if (npending > 0)
            memcpy(all, pending, npending);
        memcpy(all + npending, s + pos, n);
        free(pending);
        pending = all;
        npending += n;
        pos += n;
        c->fed += n;
        for (;;) {                        /* one run per read, another after each answered request */
            c->buf = pending;
            c->buf_len = npending;
            c->completed = 0;
            ran = htparser_run(c->p, &hooks, pending, npending);
            if (ran > npending)
                abort();
            if (htparser_get_error(c->p) != htparse_error_none) {
                failed = 1;
                break;
            }
            /* the parsed bytes are drained: the rest, in a block of its own */
            if ((all = malloc(npending - ran + 1)) == NULL)
                abort();
            memcpy(all, pending + ran, npending - ran);
            free(pending);
            pending = all;
            npending -= ran;
            if (!c->completed || c->closed)
                break;
            htparser_init(c->p, htp_type_request);   /* the request was answered: the next one */
            htparser_set_userdata(c->p, c);
            if (npending == 0)
                break;
        }
    }
    if (failed)
        snprintf(end, sizeof(end), "error %d", (int)htparser_get_error(c->p));
    else if (c->closed)
        snprintf(end, sizeof(end), "closed");
    else
        snprintf(end, sizeof(end), "left %zu", npending);
    record(c, '.', end, strlen(end));
    free(pending);
}

/* Prints a transcript (before a mismatch aborts), one record a line. */
static void dump(const char *what, const conn_t *c)
{
    fprintf(stderr, "%s:\n", what);
    for (size_t at = 0; at + 5 <= c->len;) {
        uint32_t n;
        memcpy(&n, c->t + at + 1, sizeof(n));
        fprintf(stderr, "  %c %u ", c->t[at], n);
        for (uint32_t i = 0; i < n && i < 64; i++) {
            unsigned char ch = (unsigned char)c->t[at + 5 + i];
            fprintf(stderr, ch >= ' ' && ch < 127 ? "%c" : "\\x%02x", ch);
        }
        fprintf(stderr, "\n");
        at += 5 + n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static conn_t whole, split;
    size_t nlens;
    if (whole.p == NULL && ((whole.p = htparser_new()) == NULL || (split.p = htparser_new()) == NULL))
        abort();
    if (size < 1)
        return 0;
    nlens = data[0] & 7;
    if (size < 1 + nlens)
        return 0;
    run(&whole, (const char *)data + 1 + nlens, size - 1 - nlens, NULL, 0);
    if (nlens > 0) {
        run(&split, (const char *)data + 1 + nlens, size - 1 - nlens, data + 1, nlens);
        if (split.len != whole.len || memcmp(split.t, whole.t, whole.len) != 0) {
            dump("whole", &whole);
            dump("in pieces", &split);
            abort();                      /* other events in pieces than whole */
        }
    }
    return 0;
}
