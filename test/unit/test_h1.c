/* test_h1.c - the response rules both upstream clients share: status lines, fields, and chunked bodies fed in every split. */
#include "../../src/h1.c"
#include "unit.h"

/* Decodes BODY fed in pieces of STEP bytes; the data goes to OUT. Returns
 * H1_END with *USED the bytes up to the body's end, H1_MORE, or H1_BAD. */
static int decode(const char *body, size_t len, size_t step, char *out, size_t cap, size_t *olen, size_t *used)
{
    h1_chunks_t d;
    size_t pos = 0, skip, dlen;
    const char *why;
    h1_chunks_init(&d);
    *olen = 0;
    while (pos < len) {
        size_t n = len - pos < step ? len - pos : step;
        int r = h1_chunks_next(&d, body + pos, n, &skip, &dlen, &why);
        pos += skip;
        if (r == H1_BAD || r == H1_END) {
            *used = pos;
            return r;
        }
        if (r == H1_DATA) {
            if (*olen + dlen > cap)
                return H1_BAD;
            memcpy(out + *olen, body + pos, dlen);
            *olen += dlen;
            h1_chunks_took(&d, dlen);
            pos += dlen;
        }
    }
    *used = pos;
    return H1_MORE;
}

int main(void)
{
    int minor;
    char out[256];
    size_t olen, used;
    static const char good[] = "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\nSTRAY";
    static const char *const bad[] = {
        "0x10\r\ndata\r\n\r\n", "10zz\r\n", "-5\r\n", "\r\n", "5\r\nhelloX\r\n", "5\r\nhello\r\r\n",
        "5\r\r\nhello\r\n", "ffffffffffffffffff\r\n",
    };

    CHECK(h1_status_line("HTTP/1.1 200 OK", 15, &minor) == 200 && minor == 1);
    CHECK(h1_status_line("HTTP/1.0 404", 12, &minor) == 404 && minor == 0);
    CHECK(h1_status_line("HTTP/1.1 200\tOK", 15, &minor) < 0);
    CHECK(h1_status_line("HTTP/1.1 2000 OK", 16, &minor) < 0);
    CHECK(h1_status_line("HTTP/2 200 OK", 13, &minor) < 0);
    CHECK(h1_status_line("HTTP/1.1 200 O\x01K", 16, &minor) < 0);
    CHECK(h1_status_line("HTTP/1.1 099 X", 14, &minor) < 0);

    CHECK(h1_field_ok("Content-Type", 12, "text/plain; a=\"b\"", 17));
    CHECK(!h1_field_ok("Content-Length ", 15, "2", 1));
    CHECK(!h1_field_ok("Transfer-E\xcd" "coding", 17, "chunked", 7));
    CHECK(!h1_field_ok("", 0, "x", 1));
    CHECK(!h1_field_ok("X-A", 3, "1\rX-B: 2", 8));
    /* values are read 8 bytes at a time: every byte value at every place
     * of a 37-byte value (a word's edges, and the tail byte by byte) */
    {
        char v[37];
        int wrong = 0;
        for (int c = 0; c < 256; c++) {
            int want = c >= 0x20 ? c != 0x7f : c == '\t';
            for (size_t at = 0; at < sizeof(v); at++) {
                memset(v, 'a', sizeof(v));
                v[at] = (char)c;
                wrong += h1_field_ok("X", 1, v, sizeof(v)) != want;
                if (at > 0) {            /* a tab before it must not hide it */
                    v[at - 1] = '\t';
                    wrong += h1_field_ok("X", 1, v, sizeof(v)) != want;
                }
            }
        }
        CHECK(wrong == 0);
        memset(v, 0x80, sizeof(v));      /* obs-text */
        CHECK(h1_field_ok("X", 1, v, sizeof(v)));
        memset(v, 0xff, sizeof(v));
        CHECK(h1_field_ok("X", 1, v, sizeof(v)));
    }
    CHECK(h1_field_ok("X-A", 3, "caf\xc3\xa9\tok", 8));   /* obs-text in values is relayed */

    CHECK(h1_has_token("gzip, chunked", 13, "chunked") && !h1_has_token("notchunked", 10, "chunked"));
    uint64_t n;
    CHECK(h1_content_length("123", 3, &n) && n == 123);
    CHECK(!h1_content_length("12a", 3, &n) && !h1_content_length("", 0, &n));
    CHECK(!h1_content_length("99999999999999999999999", 23, &n));

    {
        const char *name, *value;
        size_t nlen, vlen;
        h1_framing_t f = { 0 };
        CHECK(h1_field("Content-Length: \t 12 \t", 21, &name, &nlen, &value, &vlen) && nlen == 14 && vlen == 2);
        CHECK(memcmp(value, "12", 2) == 0 && h1_framing_field(&f, name, nlen, value, vlen) == 0 && f.clen == 12);
        CHECK(h1_framing_field(&f, "content-length", 14, "13", 2) < 0);      /* a second, different length */
        CHECK(h1_framing_field(&f, "Content-Length", 14, "12", 2) == 0);     /* the same one again */
        CHECK(!h1_field("  folded: x", 11, &name, &nlen, &value, &vlen) && !h1_field("no colon", 8, &name, &nlen, &value, &vlen));
        CHECK(h1_reusable(&f, 1) && !h1_reusable(&f, 0));
        h1_framing_field(&f, "Connection", 10, "keep-alive, close", 17);
        CHECK(!h1_reusable(&f, 1));                                            /* close, whatever else is listed */
        memset(&f, 0, sizeof(f));
        h1_framing_field(&f, "Connection", 10, "keep-alive", 10);
        CHECK(h1_reusable(&f, 0));
        h1_framing_field(&f, "Transfer-Encoding", 17, "gzip, chunked", 13);
        h1_framing_field(&f, "Content-Length", 14, "5", 1);
        CHECK(f.chunked == 1 && !h1_reusable(&f, 1));                        /* both framings: close */
        h1_framing_field(&f, "Transfer-Encoding", 17, "chunked, gzip", 13);
        CHECK(f.chunked == -1);
    }

    /* every way of splitting a good body gives the same data and the same end */
    for (size_t step = 1; step <= sizeof(good); step++) {
        int r = decode(good, sizeof(good) - 1, step, out, sizeof(out), &olen, &used);
        CHECK(r == H1_END);
        CHECK(olen == 31 && memcmp(out, "helloabcdefghijklmnopqrstuvwxyz", 31) == 0);
        CHECK(strcmp(good + used, "STRAY") == 0);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        for (size_t step = 1; step < 4; step++) {
            int r = decode(bad[i], strlen(bad[i]), step, out, sizeof(out), &olen, &used);
            CHECK(r == H1_BAD);
            if (r != H1_BAD)
                fprintf(stderr, "  accepted: %s (step %zu)\n", bad[i], step);
        }
    /* a body cut short is not over */
    CHECK(decode("5\r\nhel", 6, 2, out, sizeof(out), &olen, &used) == H1_MORE);
    /* a size line longer than H1_LINE_MAX */
    {
        static char longline[H1_LINE_MAX + 16];
        memset(longline, ' ', sizeof(longline));
        longline[0] = '1';
        longline[1] = ';';
        CHECK(decode(longline, sizeof(longline), 4096, out, sizeof(out), &olen, &used) == H1_BAD);
    }
    DONE();
}
