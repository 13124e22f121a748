/* fuzz_jscan.c - libFuzzer driver for the request-body scanner (src/jscan.c) on arbitrary bytes.
 *
 * The input is a client's request body. Besides the sanitizers' findings
 * it checks what jscan.h promises:
 *   - jscan_body accepts exactly what an oracle written apart says is
 *     JSON (RFC 8259, strict UTF-8, 64 levels), and tells an object from
 *     the rest; every offset it records lies inside the body; on an
 *     accepted object the model and user values are whole string literals,
 *     the stream_options and token-limit values whole JSON values, and
 *     each is the value of the last top-level key that *decodes* to its
 *     name (what an upstream's JSON parser reads, escapes and all);
 *   - jscan_next_key and jscan_next_item walk an accepted body in step,
 *     every item inside it and a whole value, to the closing brace; on
 *     refused bytes they stay inside the buffer and always move on;
 *   - jscan_string_len and jscan_string on the first string literal;
 *   - jscan_quote of the bytes (cut at a NUL) is a literal jscan_body
 *     accepts inside {"k": ...}, fits exactly the length it returns, and
 *     jscan_string gives back jscan_utf8_clean's text;
 *   - jscan_utf8_clean writes valid UTF-8, into any capacity, cut at a
 *     whole character.
 * Buffers are allocated to the exact capacity passed, so that ASan sees a
 * write one byte too far. Seeds are in corpus/jscan. */
#include "jscan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                        \
    do {                                                                                                \
        if (!(c))                                                                                       \
            abort();                                                                                    \
    } while (0)

/* OFF and LEN name bytes inside a buffer of SIZE. */
#define INSIDE(off, len, size) ((off) <= (size) && (len) <= (size) - (off))

/* Whether S[0, N) is well-formed UTF-8 (no overlong forms, surrogates or
 * code points past U+10FFFF): written apart from jscan.c's own check. */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) k = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) k = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) k = 4, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (n - i < k)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k;
    }
    return 1;
}

/* An oracle written apart from jscan.c: RFC 8259 JSON with strict UTF-8
 * and at most 64 containers deep, one recursive descent over B[*I, N).
 * Each returns 0 or -1 and moves *I past what it read. */
static void o_ws(const unsigned char *b, size_t n, size_t *i)
{
    while (*i < n && (b[*i] == ' ' || b[*i] == '\t' || b[*i] == '\n' || b[*i] == '\r'))
        (*i)++;
}

static int o_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int o_string(const unsigned char *b, size_t n, size_t *i)
{
    size_t k = *i + 1;
    if (*i >= n || b[*i] != '"')
        return -1;
    while (k < n) {
        unsigned char c = b[k];
        if (c == '"') {
            *i = k + 1;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (k + 1 >= n)
                return -1;
            c = b[k + 1];
            if (c == 'u') {
                if (n - k < 6 || !o_hex(b[k + 2]) || !o_hex(b[k + 3]) || !o_hex(b[k + 4]) || !o_hex(b[k + 5]))
                    return -1;
                k += 6;
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
                       c == 't') {
                k += 2;
            } else {
                return -1;
            }
            continue;
        }
        if (c < 0x80) {
            k++;
            continue;
        }
        size_t m = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (n - k < m || !valid_utf8(b + k, m))
            return -1;
        k += m;
    }
    return -1;
}

static int o_digits(const unsigned char *b, size_t n, size_t *i)
{
    size_t s = *i;
    while (*i < n && b[*i] >= '0' && b[*i] <= '9')
        (*i)++;
    return *i > s ? 0 : -1;
}

static int o_number(const unsigned char *b, size_t n, size_t *i)
{
    if (*i < n && b[*i] == '-')
        (*i)++;
    if (*i < n && b[*i] == '0')
        (*i)++;
    else if (*i >= n || b[*i] < '1' || b[*i] > '9' || o_digits(b, n, i) < 0)
        return -1;
    if (*i < n && b[*i] == '.') {
        (*i)++;
        if (o_digits(b, n, i) < 0)
            return -1;
    }
    if (*i < n && (b[*i] == 'e' || b[*i] == 'E')) {
        (*i)++;
        if (*i < n && (b[*i] == '+' || b[*i] == '-'))
            (*i)++;
        if (o_digits(b, n, i) < 0)
            return -1;
    }
    return 0;
}

static int o_value(const unsigned char *b, size_t n, size_t *i, int depth)
{
    o_ws(b, n, i);
    if (*i >= n)
        return -1;
    if (b[*i] == '{' || b[*i] == '[') {
        unsigned char close = b[*i] == '{' ? '}' : ']';
        if (depth >= 64)
            return -1;
        (*i)++;
        o_ws(b, n, i);
        if (*i < n && b[*i] == close) {
            (*i)++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                o_ws(b, n, i);
                if (o_string(b, n, i) < 0)
                    return -1;
                o_ws(b, n, i);
                if (*i >= n || b[(*i)++] != ':')
                    return -1;
            }
            if (o_value(b, n, i, depth + 1) < 0)
                return -1;
            o_ws(b, n, i);
            if (*i >= n)
                return -1;
            if (b[*i] == close) {
                (*i)++;
                return 0;
            }
            if (b[(*i)++] != ',')
                return -1;
        }
    }
    if (b[*i] == '"')
        return o_string(b, n, i);
    if (n - *i >= 4 && (memcmp(b + *i, "true", 4) == 0 || memcmp(b + *i, "null", 4) == 0)) {
        *i += 4;
        return 0;
    }
    if (n - *i >= 5 && memcmp(b + *i, "false", 5) == 0) {
        *i += 5;
        return 0;
    }
    return o_number(b, n, i);
}

/* What jscan_body should say of B[0, N). */
static jscan_status_t oracle(const char *s, size_t n)
{
    const unsigned char *b = (const unsigned char *)s;
    size_t i = 0;
    o_ws(b, n, &i);
    int object = i < n && b[i] == '{';
    if (o_value(b, n, &i, 0) < 0)
        return JSCAN_INVALID;
    o_ws(b, n, &i);
    return i != n ? JSCAN_INVALID : object ? JSCAN_OK : JSCAN_NOT_OBJECT;
}

/* Whether B[OFF, OFF+LEN) is exactly one string literal. */
static int is_literal(const char *b, size_t off, size_t len)
{
    return len >= 2 && jscan_string_len(b + off, len, NULL) == (long)len;
}

/* Walks the container at B[START] with jscan_next_item, and everything in
 * it down to DEPTH 64. TRUSTED: B is a body jscan_body accepted, so each
 * item is a whole value and the walk ends at the closing bracket;
 * otherwise only bounds and progress are checked, and each place is walked
 * from once (WALKED, a byte per place): on refused bytes the items may
 * overlap, and walking each of them again at every level grew with the
 * nesting's power (a 3 KB input took 39 s; turnout never walks refused
 * bytes deeper than the two levels of a usage object). */
static void walk(const char *b, size_t len, size_t start, int depth, int trusted, unsigned char *walked)
{
    size_t pos = start, last = start, n = 0;
    char close = b[start] == '{' ? '}' : ']';
    jscan_item_t it;
    int rc;
    if (!trusted) {
        if (walked[start])
            return;
        walked[start] = 1;
    }
    while ((rc = jscan_next_item(b, len, start, &pos, &it)) == 1) {
        CHECK(pos > last && pos <= len);
        CHECK(INSIDE(it.val_off, it.val_len, len));
        CHECK(it.key_len == 0 || INSIDE(it.key_off, it.key_len, len));
        CHECK(++n <= len);
        if (trusted) {
            jscan_t j;
            CHECK(close == '}' ? is_literal(b, it.key_off, it.key_len) : it.key_len == 0);
            CHECK(it.val_len > 0 && jscan_body(b + it.val_off, it.val_len, &j) != JSCAN_INVALID);
        }
        if (depth < 64 && it.val_off < len && (b[it.val_off] == '{' || b[it.val_off] == '['))
            walk(b, len, it.val_off, depth + 1, trusted, walked);
        last = pos;
    }
    if (trusted)
        CHECK(rc == 0 && pos > start && pos <= len && b[pos - 1] == close);
}

/* One top-level key the walk decoded: where its value is. */
typedef struct seen {
    int found;
    size_t off, len;
} seen_t;

/* Walks the top-level keys of an accepted object with jscan_next_key and
 * jscan_next_item in step, and checks what jscan_body recorded against the
 * last value of each key as decoded. */
static void top_level(const char *b, size_t len, size_t start, const jscan_t *j)
{
    size_t kpos = 0, ipos = start, koff, klen, n = 0;
    seen_t model = { 0, 0, 0 }, user = { 0, 0, 0 }, opts = { 0, 0, 0 }, max = { 0, 0, 0 }, maxc = { 0, 0, 0 };
    int stream = 0, rk, ri;
    jscan_item_t it;
    char *name = malloc(len + 1);
    CHECK(name != NULL);
    for (;;) {
        rk = jscan_next_key(b, len, &kpos, &koff, &klen);
        ri = jscan_next_item(b, len, start, &ipos, &it);
        CHECK(rk == ri);
        if (rk != 1)
            break;
        CHECK(++n <= len);
        CHECK(koff == it.key_off && klen == it.key_len && kpos == ipos);
        CHECK(is_literal(b, koff, klen));
        if (jscan_string(b, koff, klen, name, len + 1) < 0)
            continue;                     /* an escaped NUL: no field of ours */
        seen_t *s = NULL;
        if (strcmp(name, "model") == 0) s = &model;
        else if (strcmp(name, "stream_options") == 0) s = &opts;
        else if (strcmp(name, "max_tokens") == 0) s = &max;
        else if (strcmp(name, "max_completion_tokens") == 0) s = &maxc;
        else if (strcmp(name, "user") == 0 && b[it.val_off] == '"') s = &user;
        else if (strcmp(name, "stream") == 0) stream = b[it.val_off] == 't';
        if (s != NULL)
            *s = (seen_t){ 1, it.val_off, it.val_len };
    }
    CHECK(rk == 0);
    free(name);
    if (maxc.found)
        max = maxc;
    CHECK(j->has_model == model.found);
    CHECK(!model.found || (j->model_off == model.off && j->model_len == model.len));
    CHECK(j->model_is_string == (model.found && b[model.off] == '"'));
    CHECK(user.found ? j->user_off == user.off && j->user_len == user.len : j->user_len == 0);
    CHECK(opts.found ? j->opts_off == opts.off && j->opts_len == opts.len : j->opts_len == 0);
    CHECK(max.found ? j->max_off == max.off && j->max_len == max.len : j->max_len == 0);
    CHECK(j->max_completion == maxc.found);
    CHECK(j->stream == stream);
}

static void scan(const char *b, size_t len)
{
    jscan_t j;
    jscan_status_t st = jscan_body(b, len, &j);
    size_t start = 0, pos, koff, klen, n;
    CHECK(st == oracle(b, len));
    CHECK(j.error_off <= len);
    CHECK(INSIDE(j.model_off, j.model_len, len) && INSIDE(j.user_off, j.user_len, len) &&
          INSIDE(j.opts_off, j.opts_len, len) && INSIDE(j.max_off, j.max_len, len));
    while (start < len && (b[start] == ' ' || b[start] == '\t' || b[start] == '\n' || b[start] == '\r'))
        start++;
    if (st == JSCAN_OK) {
        if (j.has_model && j.model_is_string) {
            char *model = malloc(j.model_len);
            long m;
            CHECK(model != NULL && is_literal(b, j.model_off, j.model_len));
            m = jscan_string(b, j.model_off, j.model_len, model, j.model_len);
            CHECK(m == -1 || (m >= 0 && (size_t)m <= j.model_len - 2 && strlen(model) == (size_t)m));
            free(model);
        }
        CHECK(j.user_len == 0 || is_literal(b, j.user_off, j.user_len));
        if (j.opts_len > 0) {
            jscan_t v;
            CHECK(jscan_body(b + j.opts_off, j.opts_len, &v) != JSCAN_INVALID);
        }
        if (j.max_len > 0) {
            jscan_t v;
            CHECK(jscan_body(b + j.max_off, j.max_len, &v) != JSCAN_INVALID);
        }
        top_level(b, len, start, &j);
        walk(b, len, start, 0, 1, NULL);
        return;
    }
    if (st == JSCAN_NOT_OBJECT) {
        if (start < len && b[start] == '[')
            walk(b, len, start, 0, 1, NULL);
        return;
    }
    /* refused bytes: the walks stay inside and always move on */
    pos = 0;
    n = 0;
    while (jscan_next_key(b, len, &pos, &koff, &klen) == 1) {
        CHECK(INSIDE(koff, klen, len) && pos <= len && pos > koff);
        CHECK(++n <= len);
    }
    for (size_t i = 0; i < len && i < 64; i++)
        if (b[i] == '{' || b[i] == '[') {
            unsigned char *walked = calloc(len, 1);
            if (walked != NULL)
                walk(b, len, i, 0, 0, walked);
            free(walked);
            break;
        }
}

/* The first string literal in B: its length, escapes and decoding. */
static void literal(const char *b, size_t len)
{
    const char *q = memchr(b, '"', len);
    size_t off, rest;
    int esc = -1;
    long n;
    char *dst;
    if (q == NULL)
        return;
    off = (size_t)(q - b);
    rest = len - off;
    if ((n = jscan_string_len(q, rest, &esc)) < 0)
        return;
    CHECK(n >= 2 && (size_t)n <= rest && q[n - 1] == '"');
    CHECK(esc == (memchr(q, '\\', (size_t)n) != NULL));
    CHECK((dst = malloc((size_t)n)) != NULL);
    long d = jscan_string(b, off, (size_t)n, dst, (size_t)n);
    CHECK(d == -1 || (d >= 0 && d <= n - 2 && strlen(dst) == (size_t)d));
    CHECK(d >= 0 || esc);                 /* only an escaped NUL is refused at this size */
    free(dst);
}

/* jscan_quote and jscan_utf8_clean of S (N bytes, no NUL); CUT picks a
 * short capacity. */
static void quote(const char *s, size_t n, unsigned cut)
{
    size_t cap = 6 * n + 3, ccap = 3 * n + 1, small;
    char *q = malloc(cap), *exact, *dec, *clean = malloc(ccap), *part, *wrap;
    long ql, dl;
    size_t cl, pl;
    jscan_t j;
    CHECK(q != NULL && clean != NULL);
    ql = jscan_quote(s, q, cap);
    CHECK(ql >= 2 && (size_t)ql < cap && q[ql] == '\0' && strlen(q) == (size_t)ql);
    CHECK(valid_utf8((const unsigned char *)q, (size_t)ql));
    CHECK(is_literal(q, 0, (size_t)ql));
    /* the capacity it needs is exactly its length and the NUL */
    CHECK((exact = malloc((size_t)ql + 1)) != NULL);
    CHECK(jscan_quote(s, exact, (size_t)ql + 1) == ql && memcmp(exact, q, (size_t)ql + 1) == 0);
    free(exact);
    CHECK((exact = malloc((size_t)ql)) != NULL);
    CHECK(jscan_quote(s, exact, (size_t)ql) == -1);
    free(exact);
    /* inside a body it is a valid string member */
    CHECK((wrap = malloc((size_t)ql + 8)) != NULL);
    memcpy(wrap, "{\"k\": ", 6);
    memcpy(wrap + 6, q, (size_t)ql);
    wrap[6 + ql] = '}';
    CHECK(jscan_body(wrap, (size_t)ql + 7, &j) == JSCAN_OK);
    free(wrap);
    /* and decodes to the cleaned text */
    cl = jscan_utf8_clean(s, clean, ccap);
    CHECK(cl < ccap && clean[cl] == '\0' && valid_utf8((const unsigned char *)clean, cl));
    CHECK((dec = malloc((size_t)ql)) != NULL);
    dl = jscan_string(q, 0, (size_t)ql, dec, (size_t)ql);
    CHECK(dl >= 0 && (size_t)dl == cl && memcmp(dec, clean, cl) == 0);
    free(dec);
    /* any capacity: a prefix of the whole, cut at a whole character */
    small = cut % (cl + 2);
    CHECK((part = malloc(small ? small : 1)) != NULL);
    pl = jscan_utf8_clean(s, part, small);
    if (small == 0) {
        CHECK(pl == 0);
    } else {
        CHECK(pl < small && part[pl] == '\0' && memcmp(part, clean, pl) == 0);
        CHECK(valid_utf8((const unsigned char *)part, pl));
        if (pl < cl) {                    /* stopped only because the next character did not fit */
            size_t k = 1;
            while (pl + k < cl && ((unsigned char)clean[pl + k] & 0xC0) == 0x80)
                k++;
            CHECK(pl + k >= small);
        }
    }
    free(part);
    free(clean);
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    char *s;
    size_t n = strnlen(b, size);
    scan(b, size);
    literal(b, size);
    if ((s = malloc(n + 1)) == NULL)
        return 0;
    memcpy(s, b, n);
    s[n] = '\0';
    quote(s, n, size > 0 ? data[size - 1] * 7u + (unsigned)size : 0);
    free(s);
    return 0;
}
