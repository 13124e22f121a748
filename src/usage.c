/* usage.c - token counts read from an upstream's answer bytes (either dialect), and what they cost.
 *
 * A passthrough answer goes to the client as the upstream wrote it, so its
 * counts are read from the bytes without building a tree: the "usage" key
 * whose value is an object is found by a search (from the end in a whole
 * answer, where OpenAI and Anthropic put it; a memmem in a stream), which
 * is safe because a quote inside a JSON string is escaped, so the bytes
 * "usage" followed by a colon are always a key; and jscan_next_item steps through that object's members,
 * never reading past the end whatever the bytes are (an upstream is not
 * trusted to send JSON). Both dialects' names are read in the same pass:
 *   OpenAI     prompt_tokens (cached ones included), completion_tokens,
 *              prompt_tokens_details.cached_tokens; embeddings have
 *              prompt_tokens only
 *   Anthropic  input_tokens (fresh ones only), cache_read_input_tokens,
 *              cache_creation_input_tokens, output_tokens; a stream's
 *              message_start carries them in message.usage, and its
 *              message_delta the final output_tokens (and, lately, the
 *              input counts again)
 * and kept as OpenAI counts them: prompt = every input token, cached
 * among them. */
#include "usage.h"
#include "jscan.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* KEY (quotes included, as the bytes spell it) is LIT. */
static int key_is(const char *b, const jscan_item_t *it, const char *lit, size_t litlen)
{
    return it->key_len == litlen + 2 && memcmp(b + it->key_off + 1, lit, litlen) == 0;
}

#define KEY(b, it, lit) key_is(b, it, lit, sizeof(lit) - 1)

/* A count: digits only (a JSON integer >= 0, or a float's integer part), at most 15 of them; else -1. */
static int64_t count_of(const char *b, const jscan_item_t *it)
{
    int64_t v = 0;
    size_t i = 0;
    for (; i < it->val_len && i < 16 && b[it->val_off + i] >= '0' && b[it->val_off + i] <= '9'; i++)
        v = v * 10 + (b[it->val_off + i] - '0');
    if (i == 0 || i > 15)
        return -1;
    return v;
}

/* Reads the usage object whose value starts at B[AT]. */
static int read_usage(const char *b, size_t len, size_t at, dialect_usage_t *u)
{
    int64_t prompt = -1, completion = -1, cached = -1, input = -1, cache_read = -1, cache_write = -1;
    size_t pos = at;
    jscan_item_t it;
    if (at >= len || b[at] != '{')
        return 0;
    while (jscan_next_item(b, len, at, &pos, &it) == 1) {
        if (KEY(b, &it, "prompt_tokens")) {
            prompt = count_of(b, &it);
        } else if (KEY(b, &it, "completion_tokens") || KEY(b, &it, "output_tokens")) {
            completion = count_of(b, &it);
        } else if (KEY(b, &it, "input_tokens")) {
            input = count_of(b, &it);
        } else if (KEY(b, &it, "cache_read_input_tokens")) {
            cache_read = count_of(b, &it);
        } else if (KEY(b, &it, "cache_creation_input_tokens")) {
            cache_write = count_of(b, &it);
        } else if (KEY(b, &it, "prompt_tokens_details") && b[it.val_off] == '{') {
            size_t p2 = it.val_off;
            jscan_item_t d;
            while (jscan_next_item(b, len, it.val_off, &p2, &d) == 1)
                if (KEY(b, &d, "cached_tokens"))
                    cached = count_of(b, &d);
        }
    }
    if (input >= 0) {                     /* Anthropic's: cached and cache-writing tokens beside the input */
        prompt = input + (cache_read > 0 ? cache_read : 0) + (cache_write > 0 ? cache_write : 0);
        cached = cache_read;
    }
    if (prompt >= 0)
        u->prompt = prompt;
    if (completion >= 0)
        u->completion = completion;
    if (cached >= 0)
        u->cached = cached;
    return prompt >= 0 || completion >= 0;
}

/* The first non-blank byte of B[0, LEN) at or after AT. */
static size_t skip_blank(const char *b, size_t len, size_t at)
{
    while (at < len && (b[at] == ' ' || b[at] == '\t' || b[at] == '\r' || b[at] == '\n'))
        at++;
    return at;
}

/* Where the last "usage" key with an object for its value is in
 * B[FROM, LEN), or LEN: searched from the end, where answers put it. */
static size_t usage_find_last(const char *b, size_t len, size_t from)
{
    for (size_t i = len >= 7 ? len - 7 : 0; len >= 7 && i + 1 > from; i--) {
        const char *q = memrchr(b + from, '"', i + 1 - from);
        size_t at;
        if (q == NULL)
            break;
        i = (size_t)(q - b);
        if (i + 7 > len || memcmp(q, "\"usage\"", 7) != 0)
            continue;
        at = skip_blank(b, len, i + 7);
        if (at < len && b[at] == ':' && (at = skip_blank(b, len, at + 1)) < len && b[at] == '{')
            return i;
    }
    return len;
}

int usage_from_answer(const char *body, size_t len, dialect_usage_t *u)
{
    size_t at = skip_blank(body, len, 0), k;
    if (at >= len || body[at] != '{' || (k = usage_find_last(body, len, at)) >= len)
        return 0;
    at = skip_blank(body, len, k + 7);    /* the colon, then the object */
    return read_usage(body, len, skip_blank(body, len, at + 1), u);
}

/* The JSON after the event's first "data:" (and its one space), to its line end. */
static const char *event_data(const char *ev, size_t len, size_t *dlen)
{
    size_t i = 0;
    while (i + 5 <= len) {
        if (memcmp(ev + i, "data:", 5) == 0) {
            size_t s = i + 5, e;
            if (s < len && ev[s] == ' ')
                s++;
            for (e = s; e < len && ev[e] != '\n' && ev[e] != '\r'; e++)
                ;
            *dlen = e - s;
            return ev + s;
        }
        while (i < len && ev[i] != '\n' && ev[i] != '\r')   /* the next line */
            i++;
        while (i < len && (ev[i] == '\n' || ev[i] == '\r'))
            i++;
    }
    return NULL;
}

int usage_from_event(const char *ev, size_t len, dialect_usage_t *u, int *usage_only)
{
    size_t dlen = 0, at, pos;
    const char *d = event_data(ev, len, &dlen);
    jscan_item_t it;
    int got = 0, no_choices = 0;
    if (usage_only != NULL)
        *usage_only = 0;
    if (d == NULL || (at = skip_blank(d, dlen, 0)) >= dlen || d[at] != '{')
        return 0;
    pos = at;
    while (jscan_next_item(d, dlen, at, &pos, &it) == 1) {
        if (KEY(d, &it, "usage")) {
            got |= read_usage(d, dlen, it.val_off, u);
        } else if (KEY(d, &it, "message") && d[it.val_off] == '{') {   /* Anthropic's message_start */
            size_t p2 = it.val_off;
            jscan_item_t m;
            while (jscan_next_item(d, dlen, it.val_off, &p2, &m) == 1)
                if (KEY(d, &m, "usage"))
                    got |= read_usage(d, dlen, m.val_off, u);
        } else if (KEY(d, &it, "choices")) {
            size_t p2 = it.val_off;
            jscan_item_t c;
            no_choices = d[it.val_off] == '[' && jscan_next_item(d, dlen, it.val_off, &p2, &c) == 0;
        }
    }
    if (usage_only != NULL)
        *usage_only = got && no_choices;
    return got;
}

size_t usage_find(const char *buf, size_t len, size_t from)
{
    while (from < len) {
        const char *k = memmem(buf + from, len - from, "\"usage\"", 7);
        size_t at;
        if (k == NULL)
            return len;
        at = skip_blank(buf, len, (size_t)(k - buf) + 7);
        if (at < len && buf[at] == ':') {
            at = skip_blank(buf, len, at + 1);
            if (at < len && buf[at] == '{')
                return (size_t)(k - buf);
        }
        from = (size_t)(k - buf) + 7;
    }
    return len;
}

/* The most one answer can cost: $1e9, the largest limit_usd a budget
 * has. Counts are an upstream's word (up to 15 digits each) and prices go
 * to 1e9 USD per 1M tokens, so the product can pass what an int64_t holds,
 * where llround's answer is no number at all (a negative one, here): a
 * cost that crediting a budget would turn into a refund. */
#define COST_MAX_NUSD 1e18

int64_t usage_tokens(const dialect_usage_t *u)
{
    int64_t sum;
    if (__builtin_add_overflow(u->prompt > 0 ? u->prompt : 0, u->completion > 0 ? u->completion : 0, &sum))
        sum = INT64_MAX;                  /* (an upstream's word: saturate) */
    return sum;
}

int64_t usage_cost_nusd(const dialect_usage_t *u, const usage_prices_t *p)
{
    double nusd = 0;                      /* a price is USD per 1M tokens: 1000 nano-USD per token */
    int64_t prompt = u->prompt > 0 ? u->prompt : 0, cached = u->cached > 0 ? u->cached : 0;
    if (cached > prompt)
        cached = prompt;
    if (p->input > 0)
        nusd += (double)(prompt - cached) * p->input * 1000.0;
    if (cached > 0 && (p->cached >= 0 ? p->cached : p->input) > 0)
        nusd += (double)cached * (p->cached >= 0 ? p->cached : p->input) * 1000.0;
    if (p->output > 0 && u->completion > 0)
        nusd += (double)u->completion * p->output * 1000.0;
    return nusd < COST_MAX_NUSD ? (int64_t)llround(nusd) : (int64_t)COST_MAX_NUSD;
}

void usage_format_usd(int64_t n, char *buf, size_t cap)
{
    int neg = n < 0;
    uint64_t a = neg ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
    snprintf(buf, cap, "%s%llu.%09llu", neg ? "-" : "", (unsigned long long)(a / 1000000000ull),
             (unsigned long long)(a % 1000000000ull));
}
