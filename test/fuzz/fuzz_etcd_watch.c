/* fuzz_etcd_watch.c - libFuzzer driver for what turnout reads from etcd: the watch stream's framing and messages, and base64 (src/etcdwire.c).
 *
 * Byte 0 picks a split point. The rest is a watch stream: fed whole, then
 * in two pieces at the split, the messages framed must be the same, and
 * each is decoded as the mirror decodes it (after a revision taken from
 * byte 0). Every change handed over must name a table and an id of at most
 * 39 bytes without NUL, come with a revision above that one, and a put's
 * text must be exactly as long as said (a heap copy of that length, so a
 * read past it is an AddressSanitizer report). Then base64 must give back
 * the input's bytes. */
#include "etcdwire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
    uint64_t hash;
    size_t count;
} seen_t;

static int count_message(const char *msg, size_t n, void *arg)
{
    seen_t *s = arg;
    for (size_t i = 0; i < n; i++)
        s->hash = (s->hash ^ (unsigned char)msg[i]) * 1099511628211ull;
    s->hash = (s->hash ^ 0xff) * 1099511628211ull;   /* message boundary */
    s->count++;
    return 0;
}

static int check_put(store_table_t t, const char *id, const char *json, size_t len, void *arg)
{
    char *copy;
    (void)arg;
    if ((int)t < 0 || t >= STORE__TABLES || id[0] == '\0' || strlen(id) >= 40)
        abort();
    if (json != NULL) {
        if ((copy = malloc(len + 1)) == NULL)
            abort();
        memcpy(copy, json, len);
        copy[len] = '\0';
        free(copy);
    }
    return 0;
}

static int decode_message(const char *msg, size_t n, void *arg)
{
    int64_t rev, compacted, after = *(const int64_t *)arg;
    int created;
    if (etcdwire_decode_watch(msg, n, "/turnout/records/", after, check_put, NULL, &rev, &compacted, &created) == 0 &&
        (rev < 0 || (rev > 0 && rev <= after) || compacted < 0))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    etcd_line_t a = { 0 }, b = { 0 }, c = { 0 };
    seen_t whole = { 14695981039346656037ull, 0 }, split = { 14695981039346656037ull, 0 };
    int64_t after;
    size_t cut, n;
    char *enc, *dec;
    if (size < 1)
        return 0;
    after = data[0] * 3;
    cut = size > 1 ? data[0] % (size - 1) : 0;
    data++;
    size--;
    int ra = etcdwire_feed(&a, (const char *)data, size, count_message, &whole);
    int rb = etcdwire_feed(&b, (const char *)data, cut, count_message, &split);
    if (rb == 0)
        rb = etcdwire_feed(&b, (const char *)data + cut, size - cut, count_message, &split);
    if (ra != rb || (ra == 0 && (whole.hash != split.hash || whole.count != split.count || a.len != b.len)))
        abort();                          /* the framing depends on how the bytes arrived */
    etcdwire_feed(&c, (const char *)data, size, decode_message, &after);
    free(a.buf);
    free(b.buf);
    free(c.buf);
    if ((enc = etcdwire_b64((const char *)data, size)) == NULL)
        return 0;
    dec = etcdwire_unb64(enc, &n);
    if (dec == NULL || n != size || memcmp(dec, data, size) != 0)
        abort();                          /* base64 does not give the bytes back */
    free(enc);
    free(dec);
    return 0;
}
