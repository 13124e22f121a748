/* fuzz_ui_headers.c - libFuzzer driver for the dashboard's request header readers in src/ui.c: Accept-Encoding (accepts_gzip) and If-None-Match (etag_matches).
 *
 * The input, split at its first NUL, is a header value (and for
 * If-None-Match, after the NUL, the ETag to look for), each a heap copy of
 * exactly its length, so a read past its end is an AddressSanitizer report.
 * Beyond not crashing or looping: a value with no "gzip" and no "*" never
 * admits gzip, and one that does not hold the tag (nor "*") never matches. */
#include "../../src/ui.c"

#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ui.c serves the generated table: none is needed here */
const ui_asset_t ui_assets[1];
const size_t ui_asset_count = 0;

static char *copy(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int holds_ci(const char *s, const char *what)
{
    for (; *s; s++)
        if (strncasecmp(s, what, strlen(what)) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul != NULL ? (size_t)(nul - data) : size;
    char *value = copy(data, n), *tag;
    if (accepts_gzip(value) && !holds_ci(value, "gzip") && strchr(value, '*') == NULL)
        abort();
    tag = copy(nul != NULL ? nul + 1 : data, nul != NULL ? size - n - 1 : 0);
    if (etag_matches(value, tag) && strchr(value, '*') == NULL && strstr(value, tag) == NULL)
        abort();
    free(tag);
    free(value);
    return 0;
}
