/* jscan.c - validating JSON scanner: checks a whole body without building a tree.
 *
 * The gateway forwards the client's bytes unchanged except the model value,
 * so it never needs a parsed document; it needs to know the body is valid
 * JSON and where "model" sits. One pass, no allocation. */
#include "jscan.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_DEPTH 64

typedef struct scanner {
    const unsigned char *p, *end, *start;
    int depth;
} scanner_t;

static void skip_ws(scanner_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Length of a valid UTF-8 sequence starting at p, 0 if invalid. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return n;
}

/* Bytes that need no attention inside a string: printable ASCII except the
 * quote and the backslash. Most of a chat body is such runs. */
static const unsigned char plain[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),                                            /* 0x00-0x1F: control */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,            /* 0x20-0x2F: '"' */
    R16(1),                                                    /* 0x30-0x3F */
    R16(1),                                                    /* 0x40-0x4F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,            /* 0x50-0x5F: '\\' */
    R16(1), R16(1),                                            /* 0x60-0x7F */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), /* 0x80-0xFF: UTF-8 */
#undef R16
};

/* Skips plain bytes many at a time (a long message is almost all of
 * them): 64 and 16 at a time with SSE2, then whole 8-byte words; a block
 * needs a closer look when a byte is below 0x20, is '"' or '\\', or has its
 * top bit set. Stops at or before the first byte that is not plain. */
static const unsigned char *skip_plain(const unsigned char *p, const unsigned char *e)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
#ifdef __SSE2__
    /* 16 at a time where there is SSE2 (every x86-64): as signed bytes, both
     * the control bytes and those with the top bit set are below 0x20 */
    const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
#define NOT_PLAIN(v) _mm_or_si128(_mm_cmplt_epi8(v, space), _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)))
    while (e - p >= 64) {                 /* long text: 64 bytes a test */
        __m128i a = NOT_PLAIN(_mm_loadu_si128((const __m128i *)(const void *)p));
        __m128i b = NOT_PLAIN(_mm_loadu_si128((const __m128i *)(const void *)(p + 16)));
        __m128i c = NOT_PLAIN(_mm_loadu_si128((const __m128i *)(const void *)(p + 32)));
        __m128i d = NOT_PLAIN(_mm_loadu_si128((const __m128i *)(const void *)(p + 48)));
        if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))) != 0)
            break;                        /* the 16-byte steps below find where */
        p += 64;
    }
    while (e - p >= 16) {
        int m = _mm_movemask_epi8(NOT_PLAIN(_mm_loadu_si128((const __m128i *)(const void *)p)));
        if (m != 0)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#undef NOT_PLAIN
#endif
    while (e - p >= 8) {
        uint64_t w, q, b;
        memcpy(&w, p, 8);
        q = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        if (((w - ones * 0x20) | (q - ones) | (b - ones) | w) & high)
            break;
        p += 8;
    }
    return p;
}

static int scan_string(scanner_t *s)
{
    if (s->p >= s->end || *s->p != '"') return -1;
    s->p++;
    while (s->p < s->end) {
        const unsigned char *p = skip_plain(s->p, s->end), *e = s->end;
        while (p < e && plain[*p])
            p++;
        s->p = p;
        if (p >= e) break;
        unsigned char c = *s->p;
        if (c == '"') { s->p++; return 0; }
        if (c < 0x20) return -1;
        if (c == '\\') {
            if (++s->p >= s->end) return -1;
            c = *s->p;
            if (c == 'u') {
                if (s->end - s->p < 5) return -1;
                for (int i = 1; i <= 4; i++)
                    if (hexval(s->p[i]) < 0) return -1;
                s->p += 5;
                continue;
            }
            if (c == '\0' || !strchr("\"\\/bfnrt", c)) return -1;   /* (strchr finds the NUL too) */
            s->p++;
            continue;
        }
        if (c < 0x80) { s->p++; continue; }
        size_t n = utf8_len(s->p, s->end);
        if (n == 0) return -1;
        s->p += n;
    }
    return -1;
}

long jscan_string_len(const char *str, size_t len, int *escaped)
{
    scanner_t s = { (const unsigned char *)str, (const unsigned char *)str + len, (const unsigned char *)str, 0 };
    if (scan_string(&s) != 0)
        return -1;
    if (escaped)
        *escaped = memchr(str, '\\', (size_t)((const char *)s.p - str)) != NULL;
    return (long)((const char *)s.p - str);
}

static int scan_number(scanner_t *s)
{
    const unsigned char *p = s->p, *e = s->end;
    if (p < e && *p == '-') p++;
    if (p >= e) return -1;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < e && *p >= '0' && *p <= '9') p++;
    else return -1;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') return -1;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return -1;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    s->p = p;
    return 0;
}

static int scan_literal(scanner_t *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) return -1;
    s->p += n;
    return 0;
}

static int scan_value(scanner_t *s, jscan_t *out, int top);

static int scan_array(scanner_t *s, jscan_t *out)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') { s->p++; return 0; }
    for (;;) {
        if (scan_value(s, out, 0) < 0) return -1;
        skip_ws(s);
        if (s->p >= s->end) return -1;
        if (*s->p == ']') { s->p++; return 0; }
        if (*s->p != ',') return -1;
        s->p++;
    }
}

/* Objects at the top level record "model", "stream", "user",
 * "stream_options" and "max_completion_tokens" (else "max_tokens"), the
 * last of each as JSON parsers read them. A key is compared as its bytes,
 * or decoded when it holds an escape: an upstream reads "mod\u0065l" as
 * "model", so a body that spells it so must not keep a model of its own
 * past the one turnout writes. */
static int scan_object(scanner_t *s, jscan_t *out, int top)
{
    char dec[32];                          /* an escaped key, decoded and quoted again */
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') { s->p++; return 0; }
    for (;;) {
        const unsigned char *k;
        size_t klen;
        skip_ws(s);
        k = s->p;
        if (scan_string(s) < 0) return -1;
        klen = (size_t)(s->p - k);
        if (top && memchr(k, '\\', klen) != NULL) {
            /* one that does not decode here (longer than any of ours, or a \u0000) is none of ours */
            long n = jscan_string((const char *)k, 0, klen, dec + 1, sizeof(dec) - 2);
            if (n >= 0) {
                dec[0] = dec[n + 1] = '"';
                k = (const unsigned char *)dec;
                klen = (size_t)n + 2;
            }
        }
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') return -1;
        s->p++;
        skip_ws(s);
        const unsigned char *v = s->p;
        if (scan_value(s, out, 0) < 0) return -1;
        if (top && klen == 7 && memcmp(k, "\"model\"", 7) == 0) {
            out->has_model = 1;
            out->model_is_string = (*v == '"');
            out->model_off = (size_t)(v - s->start);
            out->model_len = (size_t)(s->p - v);
        } else if (top && klen == 8 && memcmp(k, "\"stream\"", 8) == 0) {
            out->stream = (*v == 't');
        } else if (top && klen == 6 && memcmp(k, "\"user\"", 6) == 0 && *v == '"') {
            out->user_off = (size_t)(v - s->start);
            out->user_len = (size_t)(s->p - v);
        } else if (top && klen == 16 && memcmp(k, "\"stream_options\"", 16) == 0) {
            out->opts_off = (size_t)(v - s->start);
            out->opts_len = (size_t)(s->p - v);
        } else if (top && ((klen == 12 && memcmp(k, "\"max_tokens\"", 12) == 0 && !out->max_completion) ||
                           (klen == 23 && memcmp(k, "\"max_completion_tokens\"", 23) == 0))) {
            out->max_completion = klen == 23;
            out->max_off = (size_t)(v - s->start);
            out->max_len = (size_t)(s->p - v);
        }
        skip_ws(s);
        if (s->p >= s->end) return -1;
        if (*s->p == '}') { s->p++; return 0; }
        if (*s->p != ',') return -1;
        s->p++;
    }
}

static int scan_value(scanner_t *s, jscan_t *out, int top)
{
    int rc;
    skip_ws(s);
    if (s->p >= s->end) return -1;
    switch (*s->p) {
    case '{':
    case '[':
        if (++s->depth > MAX_DEPTH) return -1;
        rc = *s->p == '{' ? scan_object(s, out, top) : scan_array(s, out);
        s->depth--;
        return rc;
    case '"': return scan_string(s);
    case 't': return scan_literal(s, "true");
    case 'f': return scan_literal(s, "false");
    case 'n': return scan_literal(s, "null");
    default:  return scan_number(s);
    }
}

jscan_status_t jscan_body(const char *body, size_t len, jscan_t *out)
{
    scanner_t s = { (const unsigned char *)body, (const unsigned char *)body + len,
                    (const unsigned char *)body, 0 };
    memset(out, 0, sizeof(*out));
    skip_ws(&s);
    int is_object = s.p < s.end && *s.p == '{';
    if (scan_value(&s, out, 1) < 0) {
        out->error_off = (size_t)(s.p - s.start);
        return JSCAN_INVALID;
    }
    skip_ws(&s);
    if (s.p != s.end) {
        out->error_off = (size_t)(s.p - s.start);
        return JSCAN_INVALID;
    }
    return is_object ? JSCAN_OK : JSCAN_NOT_OBJECT;
}

/* The end of the string at P in a body jscan_body accepted: the next quote
 * that no backslash escapes, found with memchr (E when there is none). */
static const unsigned char *skip_string_trusted(const unsigned char *p, const unsigned char *e)
{
    for (p++; p < e;) {
        const unsigned char *q = memchr(p, '"', (size_t)(e - p)), *b;
        if (q == NULL)
            return e;
        for (b = q; b > p && b[-1] == '\\'; b--)
            ;
        if ((q - b) % 2 == 0)
            return q + 1;             /* an even run of backslashes escapes each other */
        p = q + 1;
    }
    return e;
}

/* The end of the value at P in a body jscan_body accepted, without
 * validating it again: strings are skipped quote to quote, containers by
 * their nesting. Never beyond E, whatever the bytes. */
static const unsigned char *skip_value_trusted(const unsigned char *p, const unsigned char *e)
{
    int depth = 0;
    if (p < e && *p == '"')
        return skip_string_trusted(p, e);
    if (p < e && *p != '{' && *p != '[') {     /* a number or a literal */
        while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        return p;
    }
    while (p < e) {
        if (*p == '"') {
            p = skip_string_trusted(p, e);
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return e;
}

int jscan_next_item(const char *body, size_t len, size_t start, size_t *pos, jscan_item_t *it)
{
    scanner_t s = { (const unsigned char *)body + (*pos < len ? *pos : len), (const unsigned char *)body + len,
                    (const unsigned char *)body, 1 };
    char close;
    if (start >= len || (body[start] != '{' && body[start] != '['))
        return -1;
    close = body[start] == '{' ? '}' : ']';
    if (*pos == start) {                   /* the opening brace or bracket */
        s.p++;
        skip_ws(&s);
        if (s.p < s.end && *s.p == close) {
            *pos = (size_t)(s.p + 1 - s.start);
            return 0;
        }
    } else {                               /* after an item: a comma, or the end */
        skip_ws(&s);
        if (s.p < s.end && *s.p == close) {
            *pos = (size_t)(s.p + 1 - s.start);
            return 0;
        }
        if (s.p >= s.end || *s.p != ',')
            return -1;
        s.p++;
        skip_ws(&s);
    }
    it->key_off = it->key_len = 0;
    if (close == '}') {
        const unsigned char *k = s.p;
        if (scan_string(&s) < 0)
            return -1;
        it->key_off = (size_t)(k - s.start);
        it->key_len = (size_t)(s.p - k);
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return -1;
        s.p++;
        skip_ws(&s);
    }
    it->val_off = (size_t)(s.p - s.start);
    if (s.p >= s.end)
        return -1;
    s.p = skip_value_trusted(s.p, s.end);
    it->val_len = (size_t)(s.p - s.start) - it->val_off;
    *pos = (size_t)(s.p - s.start);
    return 1;
}

int jscan_next_key(const char *body, size_t len, size_t *pos, size_t *key_off, size_t *key_len)
{
    jscan_t ignored;
    scanner_t s = { (const unsigned char *)body + (*pos < len ? *pos : len), (const unsigned char *)body + len,
                    (const unsigned char *)body, 1 };
    const unsigned char *k;
    skip_ws(&s);
    if (*pos == 0) {                       /* the object's opening brace */
        if (s.p >= s.end || *s.p != '{')
            return -1;
        s.p++;
        skip_ws(&s);
        if (s.p < s.end && *s.p == '}') {
            *pos = len;
            return 0;
        }
    } else {                               /* after a member: a comma, or the end */
        if (s.p >= s.end || *s.p == '}') {
            *pos = len;
            return 0;
        }
        if (*s.p != ',')
            return -1;
        s.p++;
        skip_ws(&s);
    }
    k = s.p;
    if (scan_string(&s) < 0)
        return -1;
    *key_off = (size_t)(k - s.start);
    *key_len = (size_t)(s.p - k);
    skip_ws(&s);
    if (s.p >= s.end || *s.p != ':')
        return -1;
    s.p++;
    if (scan_value(&s, &ignored, 0) < 0)
        return -1;
    *pos = (size_t)(s.p - s.start);
    return 1;
}

static size_t put_utf8(uint32_t cp, char *d)
{
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) { d[0] = (char)(0xC0 | (cp >> 6)); d[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12)); d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18)); d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static uint32_t hex4(const char *p)
{
    return (uint32_t)(hexval((unsigned char)p[0]) << 12 | hexval((unsigned char)p[1]) << 8 |
                      hexval((unsigned char)p[2]) << 4 | hexval((unsigned char)p[3]));
}

long jscan_string(const char *body, size_t off, size_t len, char *dst, size_t dstlen)
{
    const char *p = body + off + 1, *e = body + off + len - 1; /* inside the quotes */
    size_t n = 0;
    while (p < e) {
        char tmp[4];
        size_t k = 1;
        if (*p != '\\') {
            tmp[0] = *p++;
        } else {
            char c = p[1];
            p += 2;
            switch (c) {
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u': {
                uint32_t cp = hex4(p);
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && e - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                    uint32_t lo = hex4(p + 2);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        p += 6;
                    }
                }
                if (cp == 0) return -1;
                k = put_utf8(cp, tmp);
                break;
            }
            default: tmp[0] = c; break;
            }
        }
        if (n + k >= dstlen) return -1;
        memcpy(dst + n, tmp, k);
        n += k;
    }
    dst[n] = '\0';
    return (long)n;
}

long jscan_quote(const char *s, char *dst, size_t cap)
{
    const unsigned char *u = (const unsigned char *)s, *end = u + strlen(s);
    size_t n = 0;
    if (cap < 3) return -1;
    dst[n++] = '"';
    while (u < end) {
        /* a run of bytes that need nothing goes across at once */
        const unsigned char *p = skip_plain(u, end);
        while (p < end && plain[*p])
            p++;
        if (p > u) {
            if (n + (size_t)(p - u) + 1 >= cap) return -1;
            memcpy(dst + n, u, (size_t)(p - u));
            n += (size_t)(p - u);
            u = p;
            continue;
        }
        unsigned char c = *u;
        char esc[8];
        size_t k, len = 1;
        const char *from = esc;
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; k = 2; }
        else if (c < 0x20) { k = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c); }
        else if (c < 0x80) { esc[0] = (char)c; k = 1; }
        else if ((len = utf8_len(u, end)) > 0) { from = (const char *)u; k = len; }
        else { from = "\\ufffd"; k = 6; len = 1; }   /* a byte of no valid sequence */
        if (n + k + 1 >= cap) return -1;
        memcpy(dst + n, from, k);
        n += k;
        u += len;
    }
    dst[n++] = '"';
    dst[n] = '\0';
    return (long)n;
}

size_t jscan_utf8_clean(const char *s, char *dst, size_t cap)
{
    const unsigned char *u = (const unsigned char *)s, *end = u + strlen(s);
    size_t n = 0;
    if (cap == 0)
        return 0;
    while (u < end) {
        size_t len = utf8_len(u, end), k = len > 0 ? len : 3;
        if (n + k >= cap)
            break;                        /* cut at a whole character */
        memcpy(dst + n, len > 0 ? (const char *)u : "\xEF\xBF\xBD", k);
        n += k;
        u += len > 0 ? len : 1;
    }
    dst[n] = '\0';
    return n;
}
