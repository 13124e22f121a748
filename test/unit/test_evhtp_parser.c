/* test_evhtp_parser.c - regression tests for libevhtp parser patch 0009 (scripts/patches): what fuzz_http_request found.
 *
 * Each case failed before the patch: an absolute-form request whose read
 * ended right after its host; NUL in a field; a bare LF after the request
 * line; a chunked request with trailer fields. (Its other two findings,
 * an int shift by 31 and misaligned loads, are undefined behaviour the
 * sanitizers report in test/fuzz/fuzz_http_request, which builds parser.c
 * instrumented.) */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhtp/evhtp.h>

#include "unit.h"

typedef struct seen {
    char path[64];
    int keys, vals, heads, complete;
} seen_t;

static int on_path(htparser *p, const char *d, size_t n)
{
    seen_t *s = htparser_get_userdata(p);
    if (n >= sizeof(s->path))
        n = sizeof(s->path) - 1;
    memcpy(s->path, d, n);
    s->path[n] = '\0';
    return 0;
}

static int on_key(htparser *p, const char *d, size_t n)
{
    (void)d, (void)n;
    ((seen_t *)htparser_get_userdata(p))->keys++;
    return 0;
}

static int on_val(htparser *p, const char *d, size_t n)
{
    (void)d, (void)n;
    ((seen_t *)htparser_get_userdata(p))->vals++;
    return 0;
}

static int on_heads(htparser *p)
{
    ((seen_t *)htparser_get_userdata(p))->heads++;
    return 0;
}

static int on_complete(htparser *p)
{
    ((seen_t *)htparser_get_userdata(p))->complete++;
    return 0;
}

static htparse_hooks hooks = {
    .path = on_path, .hdr_key = on_key, .hdr_val = on_val, .on_hdrs_complete = on_heads, .on_msg_complete = on_complete,
};

/* Runs REQ (LEN bytes) through a new parser, in two reads cut at CUT (0:
 * one read), each from a heap block of its exact size. Returns the bytes
 * consumed in all; the parser's error goes to *ERR. */
static size_t parse(htparser *p, seen_t *s, const char *req, size_t len, size_t cut, htpparse_error *err)
{
    size_t used = 0;
    memset(s, 0, sizeof(*s));
    htparser_init(p, htp_type_request);
    htparser_set_userdata(p, s);
    for (size_t from = 0; from < len && *err == htparse_error_none;) {
        size_t to = cut > from && cut < len ? cut : len, n;
        char *b = malloc(to - from);
        memcpy(b, req + from, to - from);
        n = htparser_run(p, &hooks, b, to - from);
        free(b);
        *err = htparser_get_error(p);
        used += n;
        if (n < to - from)
            break;                        /* an error, or a message complete */
        from = to;
    }
    return used;
}

#define LIT(s) s, sizeof(s) - 1

int main(void)
{
    htparser *p = htparser_new();
    htpparse_error err;
    seen_t s;
    size_t used;

    /* absolute form without a path, cut at every byte: the path is "/" */
    {
        static const char *const reqs[] = {
            "GET http://gw.example.com HTTP/1.1\r\nHost: gw.example.com\r\n\r\n",
            "GET http://gw.example.com:8080 HTTP/1.1\r\nHost: gw.example.com\r\n\r\n",
        };
        for (int r = 0; r < 2; r++) {
            size_t len = strlen(reqs[r]);
            int wrong = 0;
            for (size_t cut = 0; cut < len; cut++) {
                err = htparse_error_none;
                used = parse(p, &s, reqs[r], len, cut, &err);
                if (err != htparse_error_none || used != len || s.complete != 1 || strcmp(s.path, "/") != 0)
                    wrong++;
            }
            CHECK(wrong == 0);
        }
    }

    /* NUL in a field name or value: 400, not a C string that ends early */
    err = htparse_error_none;
    parse(p, &s, LIT("POST / HTTP/1.1\r\nContent-Length\0x: 5\r\n\r\nhello"), 0, &err);
    CHECK(err == htparse_error_inval_hdr && s.complete == 0);
    err = htparse_error_none;
    parse(p, &s, LIT("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\0, gzip\r\n\r\n0\r\n\r\n"), 0, &err);
    CHECK(err == htparse_error_inval_hdr && s.complete == 0);
    err = htparse_error_none;
    parse(p, &s, LIT("GET / HTTP/1.1\r\n\0Host: x\r\n\r\n"), 0, &err);
    CHECK(err == htparse_error_inval_hdr);

    /* a bare LF after the request line: 400, in one read as in two (it
     * used to stop the read there, with no error and the rest unparsed) */
    for (size_t cut = 0; cut <= 17; cut += 17) {
        err = htparse_error_none;
        parse(p, &s, LIT("GET / HTTP/1.1\r\n\nHost: x\r\n\r\n"), cut, &err);
        CHECK(err == htparse_error_inval_hdr && s.complete == 0);
    }

    /* a trailer section of two fields ends the request at its empty line;
     * its fields are not reported, and the head completed once */
    {
        static const char req[] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "2\r\n{}\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
        size_t len = sizeof(req) - 1, end = (size_t)(strstr(req, "GET /next") - req);
        for (size_t cut = 0; cut < len; cut += 7) {
            err = htparse_error_none;
            used = parse(p, &s, req, len, cut, &err);
            CHECK(err == htparse_error_none && used == end && s.complete == 1 && s.heads == 1 && s.keys == 2 &&
                  s.vals == 2);
        }
    }
    err = htparse_error_none;
    used = parse(p, &s, LIT("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET"), 0, &err);
    CHECK(err == htparse_error_none && used == 52 && s.complete == 1 && s.heads == 1);   /* no trailer */
    err = htparse_error_none;
    parse(p, &s, LIT("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nNoColon\r\n\r\n"), 0, &err);
    CHECK(err == htparse_error_inval_hdr && s.complete == 0);

    free(p);
    DONE();
}
