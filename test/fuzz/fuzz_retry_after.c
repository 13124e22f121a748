/* fuzz_retry_after.c - libFuzzer driver for the Retry-After parser, h1_retry_after_ms (src/h1.c).
 *
 * Byte 0 picks the mode. Even: the rest of the input, NUL-terminated, is
 * the header's value, read at a NOW taken from byte 0; the wait must be
 * finite and not negative, and for delay-seconds (digits only, RFC 9110
 * 10.2.3) it must be those seconds in milliseconds (capped at 10^9 s).
 * Odd: bytes 1-16 are two instants T and NOW (years 1970-9999); T written
 * as an IMF-fixdate must read back as T - NOW in milliseconds, or 0 when it
 * is past. The value is a heap copy of exactly its length, so a read past
 * its NUL is an AddressSanitizer report. */
#include "h1.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define YEAR_10000 253402300800LL  /* 10000-01-01T00:00:00Z */

static double wait_for(const char *v, size_t len, time_t now)
{
    char *s = malloc(len + 1);
    double ms;
    if (s == NULL)
        abort();
    memcpy(s, v, len);
    s[len] = '\0';
    ms = h1_retry_after_ms(s, now);
    free(s);
    if (!isfinite(ms) || ms < 0)
        abort();
    return ms;
}

static time_t instant(const uint8_t *b)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | b[i];
    return (time_t)(x % (uint64_t)YEAR_10000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if ((data[0] & 1) == 0) {
        const char *v = (const char *)data + 1;
        size_t len = size - 1, digits = 0;
        time_t now = (time_t)1764547200 + (time_t)data[0] * 40000;   /* 2025-12-01, and the next 4 months */
        double ms = wait_for(v, len, now);
        while (digits < len && v[digits] >= '0' && v[digits] <= '9')
            digits++;
        if (len > 0 && digits == len) {
            double secs = 0;
            for (size_t i = 0; i < len; i++)
                secs = secs * 10 + (v[i] - '0');
            if (secs < 1e9 ? ms != secs * 1000.0 : ms < 1e12)
                abort();                  /* delay-seconds, not read as such */
        }
    } else if (size >= 17) {
        time_t t = instant(data + 1), now = instant(data + 9);
        struct tm tm;
        char v[64];
        size_t len;
        if (gmtime_r(&t, &tm) == NULL || (len = strftime(v, sizeof(v), "%a, %d %b %Y %H:%M:%S GMT", &tm)) == 0)
            return 0;
        if (tm.tm_year + 1900 < 1000)
            return 0;                     /* an IMF-fixdate has four digits of year */
        if (wait_for(v, len, now) != (t > now ? (double)(t - now) * 1000.0 : 0))
            abort();                      /* the date misread */
    }
    return 0;
}
