/* text.c - joining strings and numbers into fixed buffers without printf (see text.h). */
#include "text.h"

#include <stdarg.h>
#include <string.h>

size_t text_cat(char *buf, size_t cap, ...)
{
    va_list ap;
    size_t len = 0;
    const char *s;
    va_start(ap, cap);
    while ((s = va_arg(ap, const char *)) != NULL && len + 1 < cap) {
        size_t n = strlen(s);
        if (n > cap - 1 - len)
            n = cap - 1 - len;
        memcpy(buf + len, s, n);
        len += n;
    }
    va_end(ap);
    if (cap > 0)
        buf[len] = '\0';
    return len;
}

int text_append(char *buf, size_t cap, size_t *len, ...)
{
    va_list ap;
    size_t at = *len;
    const char *s;
    va_start(ap, len);
    while ((s = va_arg(ap, const char *)) != NULL) {
        size_t n = strlen(s);
        if (n >= cap - at) {
            va_end(ap);
            if (*len < cap)
                buf[*len] = '\0';
            return -1;
        }
        memcpy(buf + at, s, n);
        at += n;
    }
    va_end(ap);
    buf[at] = '\0';
    *len = at;
    return 0;
}

char *text_int(char *buf, long long v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char tmp[24], *p = tmp + sizeof(tmp);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    size_t n;
    while (u >= 100) {                    /* two digits a division */
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--p = pairs[d + 1];
        *--p = pairs[d];
    }
    if (u >= 10) {
        *--p = pairs[u * 2 + 1];
        *--p = pairs[u * 2];
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0)
        *--p = '-';
    n = (size_t)(tmp + sizeof(tmp) - p);
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

char *text_hex64(char *buf, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        buf[i] = digits[v & 15];
    buf[16] = '\0';
    return buf;
}
