/* fuzz_multipart.c - libFuzzer driver for the multipart/form-data reader (src/multipart.c) on arbitrary bytes.
 *
 * The first byte's low 7 bits are the length of the boundary that follows
 * it, and bit 7 says whether the Content-Type quotes it; the rest is the
 * body. As the data plane does (plane/intake.c, resolve.c), the boundary
 * is read from a Content-Type header made of those bytes, and the body is
 * searched for the "model" field and walked for its field names.
 * Besides the sanitizers' findings it checks: a boundary read is 1-70
 * bytes and fits the capacity given; a model field found lies inside the
 * body, right after its part's blank line and right before CR LF and the
 * next delimiter, and is the form's only model field (an upstream may
 * read either of two, and plane/intake.c rewrites one); the name walk
 * ends and moves on at each step, every name NUL-terminated within its
 * capacity. Seeds are in corpus/multipart. */
#include "multipart.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                        \
    do {                                                                                                \
        if (!(c))                                                                                       \
            abort();                                                                                    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char ct[256], boundary[80], delim[80], name[256];
    size_t bl, blen, off = 0, len = 0, pos = 0, last = 0, n = 0;
    const char *body;
    char *copy;
    long r;
    int rc, found;

    if (size < 1)
        return 0;
    bl = data[0] & 0x7F;
    if (bl > size - 1)
        bl = size - 1;
    snprintf(ct, sizeof(ct), data[0] & 0x80 ? "multipart/form-data; boundary=\"%.*s\"; charset=utf-8"
                                             : "multipart/form-data; boundary=%.*s",
             (int)bl, (const char *)data + 1);
    body = (const char *)data + 1 + bl;
    blen = size - 1 - bl;

    /* a capacity too small for it refuses the boundary, never overflows */
    {
        char *tight = malloc(8);
        CHECK(tight != NULL);
        r = multipart_boundary(ct, tight, 8);
        CHECK(r == -1 || (r >= 1 && r <= 7 && strlen(tight) == (size_t)r));
        free(tight);
    }
    r = multipart_boundary(ct, boundary, sizeof(boundary));
    if (r < 0)
        return 0;
    CHECK(r >= 1 && r <= 70 && strlen(boundary) == (size_t)r);
    snprintf(delim, sizeof(delim), "--%s", boundary);

    /* an exact-size copy: ASan sees any read past the body */
    CHECK((copy = malloc(blen ? blen : 1)) != NULL);
    memcpy(copy, body, blen);

    found = multipart_field(copy, blen, boundary, "model", &off, &len) == 0;
    if (found) {
        size_t dl = strlen(delim);
        CHECK(off >= 4 && off <= blen && len <= blen - off);
        CHECK(memcmp(copy + off - 4, "\r\n\r\n", 4) == 0);
        CHECK(blen - off - len >= 2 + dl && memcmp(copy + off + len, "\r\n", 2) == 0 &&
              memcmp(copy + off + len + 2, delim, dl) == 0);
        /* and it is the only one: no later part names the field again */
        size_t o2, l2, rest = off + len + 2;
        CHECK(multipart_field(copy + rest, blen - rest, boundary, "model", &o2, &l2) == -1);
    }

    while ((rc = multipart_next_name(copy, blen, boundary, &pos, name, sizeof(name))) == 1) {
        CHECK(strlen(name) < sizeof(name));
        CHECK(pos > last && pos <= blen);
        CHECK(++n <= blen);
        last = pos;
    }
    CHECK(rc == 0 || rc == -1);
    /* and once over, it stays over */
    CHECK(multipart_next_name(copy, blen, boundary, &pos, name, sizeof(name)) != 1);
    free(copy);
    return 0;
}
