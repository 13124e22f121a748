/* test_evhtp_edge.c - regression tests for the project's libevhtp patches
 * 0003-0005 (scripts/patches/) at the library level: the reason phrase of
 * every status turnout sends; empty lines before a request line and the
 * HTTP versions the parser accepts; optional whitespace around header
 * values. Each request is parsed whole and a byte per read (where a state
 * that spans reads goes wrong). The integration suite checks the same
 * behaviour on the wire (test_http_edge_rfc.py). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <evhtp/evhtp.h>

#include "unit.h"

/* What one parse saw. */
typedef struct seen {
    int messages;                  /* requests completed */
    char key[64];                  /* the last header name */
    char cl[64], te[64], ct[64];   /* the values of these headers, as the hooks got them */
    unsigned long long content_len;
    int major, minor;
} seen_t;

static void copy(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int on_key(htparser *p, const char *d, size_t n)
{
    seen_t *s = htparser_get_userdata(p);
    copy(s->key, sizeof(s->key), d, n);
    return 0;
}

static int on_val(htparser *p, const char *d, size_t n)
{
    seen_t *s = htparser_get_userdata(p);
    if (strcasecmp(s->key, "content-length") == 0)
        copy(s->cl, sizeof(s->cl), d, n);
    else if (strcasecmp(s->key, "transfer-encoding") == 0)
        copy(s->te, sizeof(s->te), d, n);
    else if (strcasecmp(s->key, "content-type") == 0)
        copy(s->ct, sizeof(s->ct), d, n);
    return 0;
}

static int on_headers(htparser *p)
{
    seen_t *s = htparser_get_userdata(p);
    s->content_len = htparser_get_content_length(p);
    s->major = htparser_get_major(p);
    s->minor = htparser_get_minor(p);
    return 0;
}

static int on_complete(htparser *p)
{
    ((seen_t *)htparser_get_userdata(p))->messages++;
    return 0;
}

/* Parses REQ whole (STEP 0) or STEP bytes per read, each read from its own
 * exact-size heap buffer (AddressSanitizer catches a read past it), and
 * calls the parser again on what a completed message left (as evhtp does).
 * Returns the parser's error. */
static htpparse_error parse(const char *req, size_t step, seen_t *s)
{
    htparse_hooks hooks;
    htparser *p = htparser_new();
    size_t len = strlen(req), off = 0;
    htpparse_error err = htparse_error_none;
    memset(&hooks, 0, sizeof(hooks));
    hooks.hdr_key = on_key;
    hooks.hdr_val = on_val;
    hooks.on_hdrs_complete = on_headers;
    hooks.on_msg_complete = on_complete;
    memset(s, 0, sizeof(*s));
    htparser_init(p, htp_type_request);
    htparser_set_userdata(p, s);
    while (off < len && err == htparse_error_none) {
        size_t n = step == 0 || len - off < step ? len - off : step, done = 0;
        char *buf = malloc(n);
        memcpy(buf, req + off, n);
        while (done < n && err == htparse_error_none) {
            size_t k = htparser_run(p, &hooks, buf + done, n - done);
            err = htparser_get_error(p);
            if (k == 0 && err == htparse_error_none)
                break;                    /* cannot happen: it would spin */
            done += k;
        }
        free(buf);
        off += n;
    }
    free(p);
    return err;
}

/* Parses REQ whole and a byte per read; both must give ERR and, when no
 * error, MESSAGES complete requests. Leaves the byte-wise result in *S. */
static void expect(const char *req, htpparse_error err, int messages, seen_t *s)
{
    seen_t whole;
    htpparse_error e1 = parse(req, 0, &whole), e2 = parse(req, 1, s);
    if (e1 != err || e2 != err || (err == htparse_error_none && (whole.messages != messages ||
                                                                  s->messages != messages)))
        fprintf(stderr, "request %.60s...: errors %d/%d (want %d), messages %d/%d (want %d)\n", req, e1, e2, err,
                whole.messages, s->messages, messages);
    CHECK(e1 == err && e2 == err);
    if (err == htparse_error_none)
        CHECK(whole.messages == messages && s->messages == messages);
}

static void reason_phrases(void)
{
    /* every status turnout sends (data plane, admin API, edge answers, 100
     * Continue), with RFC 9110's phrase */
    static const struct { int code; const char *reason; } sent[] = {
        { 100, "Continue" }, { 200, "OK" }, { 201, "Created" }, { 400, "Bad Request" }, { 401, "Unauthorized" },
        { 403, "Forbidden" }, { 404, "Not Found" }, { 405, "Method Not Allowed" }, { 408, "Request Timeout" },
        { 409, "Conflict" }, { 411, "Length Required" }, { 413, "Content Too Large" }, { 414, "URI Too Long" },
        { 415, "Unsupported Media Type" }, { 417, "Expectation Failed" }, { 422, "Unprocessable Content" },
        { 429, "Too Many Requests" }, { 431, "Request Header Fields Too Large" },
        { 500, "Internal Server Error" }, { 501, "Not Implemented" }, { 502, "Bad Gateway" },
        { 503, "Service Unavailable" }, { 504, "Gateway Timeout" }, { 505, "HTTP Version Not Supported" },
        { 507, "Insufficient Storage" },
    };
    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
        const char *got = evhtp_status_code_str((evhtp_res)sent[i].code);
        if (strcmp(got, sent[i].reason) != 0)
            fprintf(stderr, "%d: '%s', want '%s'\n", sent[i].code, got, sent[i].reason);
        CHECK_STR(got, sent[i].reason);
    }
    /* an unregistered code (or 499, which only the access log shows) has none */
    CHECK_STR(evhtp_status_code_str(499), "");
    CHECK_STR(evhtp_status_code_str(460), "");
    CHECK_STR(evhtp_status_code_str(299), "");
}

static void empty_lines_and_versions(void)
{
    seen_t s;
    /* empty lines before a request line: up to 8 CR/LF bytes */
    expect("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", htparse_error_none, 1, &s);
    expect("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", htparse_error_none, 1, &s);
    expect("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", htparse_error_inval_reqline, 0, &s);
    /* after a body, before the next request: the count starts again */
    expect("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
           htparse_error_none, 2, &s);
    /* versions */
    expect("GET / HTTP/1.1\r\n\r\n", htparse_error_none, 1, &s);
    CHECK(s.major == 1 && s.minor == 1);
    expect("GET / HTTP/1.0\r\n\r\n", htparse_error_none, 1, &s);
    CHECK(s.major == 1 && s.minor == 0);
    expect("GET / HTTP/1.12\r\n\r\n", htparse_error_inval_ver, 0, &s);
    expect("GET / HTTP/11.1\r\n\r\n", htparse_error_inval_ver, 0, &s);
    expect("GET / HTTP/1.\r\n\r\n", htparse_error_inval_ver, 0, &s);
    expect("GET / HTTP/2.0\r\n\r\n", htparse_error_unsupported_ver, 0, &s);
    expect("GET / HTTP/9.9 \r\n\r\n", htparse_error_unsupported_ver, 0, &s);
    expect("GET / HTTP/0.9\r\n\r\n", htparse_error_unsupported_ver, 0, &s);
    expect("GET / HTTP/1.2\r\n\r\n", htparse_error_unsupported_ver, 0, &s);
    /* no version (HTTP/0.9's request line) */
    expect("GET /\r\n\r\n", htparse_error_inval_reqline, 0, &s);
    expect("GET /a/b?c=d\r\n\r\n", htparse_error_inval_reqline, 0, &s);
    expect("GET /a \r\n\r\n", htparse_error_inval_reqline, 0, &s);
}

static void optional_whitespace(void)
{
    seen_t s;
    expect("POST / HTTP/1.1\r\nContent-Length:\t2\r\n\r\nab", htparse_error_none, 1, &s);
    CHECK(s.content_len == 2 && strcmp(s.cl, "2") == 0);
    expect("POST / HTTP/1.1\r\nContent-Length: \t2 \t \r\nContent-Type: \tapplication/json\t\r\n\r\nab",
           htparse_error_none, 1, &s);
    CHECK(s.content_len == 2 && strcmp(s.cl, "2") == 0 && strcmp(s.ct, "application/json") == 0);
    expect("POST / HTTP/1.1\r\nTransfer-Encoding:\tchunked \r\n\r\n2\r\nab\r\n0\r\n\r\n", htparse_error_none, 1, &s);
    CHECK(strcmp(s.te, "chunked") == 0);
    /* an empty value stays empty */
    expect("GET / HTTP/1.1\r\nContent-Type: \t \r\n\r\n", htparse_error_none, 1, &s);
    CHECK(strcmp(s.ct, "") == 0);
    /* whitespace in or after a field name, before the first field, obs-fold */
    expect("POST / HTTP/1.1\r\nContent-Length : 2\r\n\r\nab", htparse_error_inval_hdr, 0, &s);
    expect("POST / HTTP/1.1\r\nContent\tLength: 2\r\n\r\nab", htparse_error_inval_hdr, 0, &s);
    expect("POST / HTTP/1.1\r\n Content-Length: 2\r\n\r\nab", htparse_error_inval_hdr, 0, &s);
    expect("POST / HTTP/1.1\r\nContent-Length: 2\r\n\t0\r\n\r\nab", htparse_error_inval_hdr, 0, &s);
    expect("POST / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n", htparse_error_inval_hdr, 0, &s);
}

int main(void)
{
    reason_phrases();
    empty_lines_and_versions();
    optional_whitespace();
    DONE();
}
