/* h1.c - the rules of an HTTP/1.1 response that both upstream clients apply (see h1.h).
 *
 * The chunked decoder is a byte-at-a-time state machine over the framing
 * (size lines, the CR LF after each chunk, trailer lines) that hands data
 * back as runs, so the body itself is never copied or scanned. A line ends
 * at LF, with an optional CR before it, as in the heads (RFC 9112 2.2);
 * extensions and trailer fields are skipped unread, but count towards the
 * line limit. */
#include "h1.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum {
    S_SIZE,          /* the size's hex digits */
    S_EXT,           /* after them: whitespace and extensions, up to the line end */
    S_SIZE_LF,       /* a CR right after the digits: the LF must follow */
    S_DATA,          /* LEFT data bytes */
    S_DATA_CR,       /* the line end after a chunk's data */
    S_DATA_LF,
    S_TRAILER,       /* the start of a trailer line (an empty one ends the body) */
    S_TRAILER_CR,    /* a CR at its start */
    S_TRAILER_LINE,  /* inside a trailer field, skipped */
    S_END,
};

double h1_retry_after_ms(const char *ra, time_t now)
{
    char *end;
    double secs;
    time_t when;
    struct tm tm;
    if (ra == NULL || *ra == '\0')
        return H1_RETRY_AFTER_DEFAULT_MS;
    secs = strtod(ra, &end);
    if (end != ra && *end == '\0')
        return secs > 0 ? (secs < 1e9 ? secs * 1000.0 : 1e12) : 0;   /* (NaN and negatives: none) */
    memset(&tm, 0, sizeof(tm));
    end = strptime(ra, "%a, %d %b %Y %H:%M:%S GMT", &tm);   /* an IMF-fixdate */
    if (end == NULL || *end != '\0' || (when = timegm(&tm)) == -1)
        return H1_RETRY_AFTER_DEFAULT_MS;
    return when > now ? (double)(when - now) * 1000.0 : 0;
}

int h1_status_line(const char *line, size_t len, int *minor)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
        line[9] < '1' || line[9] > '5' || line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9' ||
        (len > 12 && line[12] != ' '))
        return -1;
    for (size_t i = 13; i < len; i++)     /* reason-phrase: HTAB, SP, VCHAR, obs-text */
        if (((unsigned char)line[i] < ' ' && line[i] != '\t') || line[i] == 127)
            return -1;
    *minor = line[7] - '0';
    return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

/* tchar: "!#$%&'*+-.^_`|~", digits and letters (every header name's every
 * byte is looked up here). */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1,
    ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

static int is_tchar(unsigned char c)
{
    return tchar[c];
}

/* 1 when no byte of the 8 at P is a control (below 0x20, or 0x7f): a
 * word at a time, the usual bit trick (a byte's high bit is set in
 * "x - 0x20" only where x < 0x20 or the borrow of a lower byte ran into
 * it; any such is checked again byte by byte by the caller). */
static int word_clean(const char *p)
{
    uint64_t x, del;
    memcpy(&x, p, 8);
    del = x ^ 0x7f7f7f7f7f7f7f7full;
    return (((x - 0x2020202020202020ull) | (del - 0x0101010101010101ull)) & ~x & 0x8080808080808080ull) == 0;
}

int h1_field_ok(const char *name, size_t nlen, const char *value, size_t vlen)
{
    size_t i = 0;
    if (nlen == 0)
        return 0;
    for (size_t j = 0; j < nlen; j++)
        if (!is_tchar((unsigned char)name[j]))
            return 0;
    /* a value's bytes are read 8 at a time while they are plainly fine
     * (a tab, or a byte that only looked like one, goes to the byte loop) */
    while (i + 8 <= vlen && word_clean(value + i))
        i += 8;
    for (; i < vlen; i++)
        if (((unsigned char)value[i] < ' ' && value[i] != '\t') || value[i] == 127)
            return 0;
    return 1;
}

int h1_has_token(const char *v, size_t vlen, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= vlen; i++)   /* (where a token can start, before the bytes are compared) */
        if ((i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') && strncasecmp(v + i, tok, tl) == 0 &&
            (i + tl == vlen || v[i + tl] == ',' || v[i + tl] == ' ' || v[i + tl] == ';'))
            return 1;
    return 0;
}

int h1_content_length(const char *v, size_t len, uint64_t *out)
{
    uint64_t n = 0;
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9' || n > (UINT64_MAX - 9) / 10)
            return 0;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    *out = n;
    return 1;
}

int h1_field(const char *line, size_t len, const char **name, size_t *nlen, const char **value, size_t *vlen)
{
    const char *colon = memchr(line, ':', len), *v;
    size_t n, vl;
    if (colon == NULL)
        return 0;
    n = (size_t)(colon - line);
    v = colon + 1;
    vl = len - n - 1;
    while (vl > 0 && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    if (!h1_field_ok(line, n, v, vl))
        return 0;
    *name = line;
    *nlen = n;
    *value = v;
    *vlen = vl;
    return 1;
}

int h1_framing_field(h1_framing_t *f, const char *name, size_t nlen, const char *v, size_t vlen)
{
    if (nlen == 14 && strncasecmp(name, "content-length", 14) == 0) {
        uint64_t n;
        if (!h1_content_length(v, vlen, &n) || (f->has_len && n != f->clen))
            return -1;
        f->clen = n;
        f->has_len = 1;
    } else if (nlen == 17 && strncasecmp(name, "transfer-encoding", 17) == 0) {
        f->chunked = h1_has_token(v, vlen, "chunked") && strncasecmp(v + vlen - 7, "chunked", 7) == 0 ? 1 : -1;
    } else if (nlen == 10 && strncasecmp(name, "connection", 10) == 0) {
        f->close |= h1_has_token(v, vlen, "close");
        f->keep |= h1_has_token(v, vlen, "keep-alive");
    }
    return 0;
}

int h1_reusable(const h1_framing_t *f, int minor)
{
    return !f->close && (minor == 1 || f->keep) && !(f->chunked == 1 && f->has_len);
}

void h1_chunks_init(h1_chunks_t *d)
{
    memset(d, 0, sizeof(*d));
    d->st = S_SIZE;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The size line is over: data follows, or the trailer for the last chunk. */
static void size_done(h1_chunks_t *d)
{
    d->st = d->left > 0 ? S_DATA : S_TRAILER;
    d->line = 0;
}

int h1_chunks_next(h1_chunks_t *d, const char *buf, size_t len, size_t *skip, size_t *dlen, const char **why)
{
    size_t i;
    *dlen = 0;
    for (i = 0; i < len; i++) {
        char c = buf[i];
        int x;
        if (d->st == S_DATA) {
            *skip = i;
            *dlen = len - i < d->left ? len - i : (size_t)d->left;
            return H1_DATA;
        }
        if (++d->line > H1_LINE_MAX) {
            *why = "a chunk-size or trailer line over 64 KiB";
            return H1_BAD;
        }
        switch (d->st) {
        case S_SIZE:
            if ((x = hex_digit(c)) >= 0) {
                if (d->left > (UINT64_MAX >> 4)) {
                    *why = "a chunk size over 2^64";
                    return H1_BAD;
                }
                d->left = d->left * 16 + (uint64_t)x;
                d->digits++;
                break;
            }
            if (d->digits == 0 || (c != ';' && c != ' ' && c != '\t' && c != '\r' && c != '\n')) {
                *why = "a malformed chunk size";   /* "0x10", "-5", "10zz" */
                return H1_BAD;
            }
            if (c == '\n')
                size_done(d);
            else
                d->st = c == '\r' ? S_SIZE_LF : S_EXT;
            break;
        case S_EXT:                       /* an extension (;name=value) is allowed and ignored */
            if (c == '\n')
                size_done(d);
            break;
        case S_SIZE_LF:
            if (c != '\n') {
                *why = "a malformed chunk size";
                return H1_BAD;
            }
            size_done(d);
            break;
        case S_DATA_CR:
        case S_DATA_LF:
            if (c == '\r' && d->st == S_DATA_CR) {
                d->st = S_DATA_LF;
            } else if (c == '\n') {
                d->st = S_SIZE;
                d->digits = 0;
                d->line = 0;
            } else {
                *why = "a chunk longer than its size";
                return H1_BAD;
            }
            break;
        case S_TRAILER:
        case S_TRAILER_CR:
            if (c == '\n') {
                d->st = S_END;
                *skip = i + 1;
                return H1_END;
            }
            d->st = c == '\r' && d->st == S_TRAILER ? S_TRAILER_CR : S_TRAILER_LINE;
            break;
        case S_TRAILER_LINE:              /* trailer fields are dropped */
            if (c == '\n') {
                d->st = S_TRAILER;
                d->line = 0;
            }
            break;
        default:
            *skip = i;
            return H1_END;
        }
    }
    *skip = len;
    return d->st == S_END ? H1_END : H1_MORE;
}

void h1_chunks_took(h1_chunks_t *d, size_t n)
{
    d->left -= n;
    if (d->left == 0) {
        d->st = S_DATA_CR;
        d->line = 0;
    }
}
