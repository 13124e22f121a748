/* test_evhtp_split.c - regression test for the project's libevhtp parser patch
 * (scripts/patches/0001-parser-request-line-split.patch): a request line split
 * across two reads, at every byte offset, must parse to the same path, query
 * and headers as the whole line. Unpatched 1.2.18 gets a wrong byte or fails. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhtp/evhtp.h>

#include "unit.h"

typedef struct seen {
    char path[256], args[256], host[64];
    int complete;
} seen_t;

static void copy(char *dst, const char *src, size_t len)
{
    if (len > 255)
        len = 255;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int on_path(htparser *p, const char *d, size_t n)
{
    copy(((seen_t *)htparser_get_userdata(p))->path, d, n);
    return 0;
}

static int on_args(htparser *p, const char *d, size_t n)
{
    copy(((seen_t *)htparser_get_userdata(p))->args, d, n);
    return 0;
}

static int on_hdr_val(htparser *p, const char *d, size_t n)
{
    seen_t *s = htparser_get_userdata(p);
    if (n < sizeof(s->host))
        copy(s->host, d, n);
    return 0;
}

static int on_complete(htparser *p)
{
    ((seen_t *)htparser_get_userdata(p))->complete = 1;
    return 0;
}

int main(void)
{
    static const char req[] = "GET /v1/some/long/path/name?alpha=1&beta=two HTTP/1.1\r\nHost: x\r\n\r\n";
    const size_t len = sizeof(req) - 1, line = (size_t)(strstr(req, "\r\n") - req) + 2;
    htparse_hooks hooks;
    int wrong = 0;

    memset(&hooks, 0, sizeof(hooks));
    hooks.path = on_path;
    hooks.args = on_args;
    hooks.hdr_val = on_hdr_val;
    hooks.on_msg_complete = on_complete;

    for (size_t cut = 1; cut < line; cut++) {
        htparser *p = htparser_new();
        seen_t s;
        /* copy each part into its own exact-size heap buffer, so a read past
         * either end is caught by AddressSanitizer */
        char *a = malloc(cut), *b = malloc(len - cut);
        memset(&s, 0, sizeof(s));
        memcpy(a, req, cut);
        memcpy(b, req + cut, len - cut);
        htparser_init(p, htp_type_request);
        htparser_set_userdata(p, &s);
        size_t n1 = htparser_run(p, &hooks, a, cut);
        size_t n2 = htparser_run(p, &hooks, b, len - cut);
        int ok = n1 == cut && n2 == len - cut && s.complete && strcmp(s.path, "/v1/some/long/path/name") == 0 &&
                 strcmp(s.args, "alpha=1&beta=two") == 0 && strcmp(s.host, "x") == 0;
        if (!ok) {
            wrong++;
            fprintf(stderr, "split at %zu: path '%s' args '%s' host '%s' complete %d consumed %zu+%zu\n",
                    cut, s.path, s.args, s.host, s.complete, n1, n2);
        }
        CHECK(ok);
        free(a);
        free(b);
        free(p);
    }
    printf("evhtp_split: %d wrong of %zu splits\n", wrong, line - 1);
    DONE();
}
