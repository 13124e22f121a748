/* fuzz_usage.c - libFuzzer driver for the token counts read from upstream answer bytes (src/usage.c).
 *
 * The input is what an upstream sent: read as a whole answer
 * (usage_from_answer), and as a stream the way the relay reads one
 * (relay.c relay_plain: usage_find, then usage_from_event on the event it
 * is in, split with sse_first). Besides the sanitizers' findings it checks
 * what usage.h promises: usage_find returns a position where the bytes
 * "usage" (a key whose value is an object) are, at or after FROM, or LEN;
 * a count read is left as it was or is >= 0; a "usage only" chunk carried
 * counts. Then usage_cost_nusd is never negative, for the counts read and
 * for any counts at all (the input's last 24 bytes), at any prices the
 * schema accepts (0 to 1e9 USD per 1M tokens, cached -1 for unset), and
 * usage_format_usd writes the exact amount into any capacity. Seeds are
 * in corpus/usage. */
#include "sse.h"
#include "usage.h"

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

/* Each count of U is the one OLD had, or a count >= 0. */
static void counts_ok(const dialect_usage_t *u, const dialect_usage_t *old)
{
    CHECK(u->prompt == old->prompt || u->prompt >= 0);
    CHECK(u->completion == old->completion || u->completion >= 0);
    CHECK(u->cached == old->cached || u->cached >= 0);
}

/* B[AT] starts "usage" followed by blanks, a colon, blanks and a brace. */
static int usage_key_at(const char *b, size_t len, size_t at)
{
    if (at + 7 > len || memcmp(b + at, "\"usage\"", 7) != 0)
        return 0;
    at += 7;
    while (at < len && strchr(" \t\r\n", b[at]) != NULL && b[at] != '\0')
        at++;
    if (at >= len || b[at++] != ':')
        return 0;
    while (at < len && strchr(" \t\r\n", b[at]) != NULL && b[at] != '\0')
        at++;
    return at < len && b[at] == '{';
}

/* A price from 4 input bytes: 0, the schema's 1e9, or in between. */
static double price_of(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (v == 0xFFFFFFFFu)
        return 1e9;
    return (double)v / 4294967295.0 * (v & 1 ? 1e9 : 100.0);
}

/* The cost of U at P is never negative, and its text reads back. */
static void cost_ok(const dialect_usage_t *u, const usage_prices_t *p, unsigned cut)
{
    int64_t c = usage_cost_nusd(u, p);
    char buf[32], *small;
    size_t cap = cut % 24;
    unsigned long long whole, frac;
    int used = 0;
    CHECK(c >= 0);
    usage_format_usd(c, buf, sizeof(buf));
    CHECK(sscanf(buf, "%llu.%9llu%n", &whole, &frac, &used) == 2 && (size_t)used == strlen(buf));
    CHECK(strlen(buf) - (size_t)(strchr(buf, '.') - buf) == 10);
    CHECK(whole * 1000000000ull + frac == (unsigned long long)c);
    CHECK((small = malloc(cap ? cap : 1)) != NULL);
    usage_format_usd(c, small, cap);
    CHECK(cap == 0 || (strlen(small) < cap && strncmp(small, buf, cap - 1) == 0));
    free(small);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    dialect_usage_t u = { -1, -1, -1 }, old, any;
    usage_prices_t p = { 0, 0, -1 };
    size_t from = 0, ev = 0, k, steps = 0;
    int got, only;

    /* usage_find: every hit is a usage key, in order, then LEN */
    while ((k = usage_find(b, size, from)) < size) {
        CHECK(k >= from && usage_key_at(b, size, k));
        from = k + 1;
        CHECK(++steps <= size);
    }
    CHECK(k == size && usage_find(b, size, size + 3) == size);

    /* a whole answer, from nothing and over counts already there */
    got = usage_from_answer(b, size, &u);
    old = (dialect_usage_t){ -1, -1, -1 };
    counts_ok(&u, &old);
    CHECK(!got || u.prompt >= 0 || u.completion >= 0);
    old = (dialect_usage_t){ 7, 8, 9 };
    any = old;
    usage_from_answer(b, size, &any);
    counts_ok(&any, &old);

    /* a stream, as relay_plain reads it */
    steps = 0;
    while ((k = usage_find(b, size, ev)) < size) {
        size_t n;
        for (;;) {
            if ((n = sse_first(b + ev, size - ev)) == 0)
                n = size - ev;
            if (k < ev + n)
                break;
            ev += n;
        }
        old = u;
        only = -1;
        got = usage_from_event(b + ev, n, &u, &only);
        counts_ok(&u, &old);
        CHECK(only == 0 || only == 1);
        CHECK(!only || got);
        ev += n;
        CHECK(++steps <= size);
    }
    /* the whole input as one event too, with no usage_only to set */
    old = u;
    usage_from_event(b, size, &u, NULL);
    counts_ok(&u, &old);

    /* costs: the counts read, at prices from the input's first bytes */
    if (size >= 12) {
        p.input = price_of(data);
        p.output = price_of(data + 4);
        p.cached = data[8] & 1 ? -1 : price_of(data + 8);
    }
    cost_ok(&u, &p, size);
    /* and any counts at all, from its last bytes */
    if (size >= 24 + 12) {
        memcpy(&any.prompt, data + size - 24, 8);
        memcpy(&any.completion, data + size - 16, 8);
        memcpy(&any.cached, data + size - 8, 8);
        cost_ok(&any, &p, data[size - 1]);
        p.cached = -1;
        cost_ok(&any, &p, data[size - 2]);
        p = (usage_prices_t){ 1e9, 1e9, 1e9 };
        cost_ok(&any, &p, data[size - 3]);
    }
    return 0;
}
