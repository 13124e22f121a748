/* text.h - joining strings and numbers into fixed buffers without printf's format parser.
 *
 * The request path builds a few dozen short strings per request (metrics
 * and health keys, header lines, ids); snprintf's format parsing was a
 * tenth of its instructions. These do the same with memcpy. */
#ifndef TURNOUT_TEXT_H
#define TURNOUT_TEXT_H
#include <stddef.h>
#include <stdint.h>

/* BUF (capacity CAP > 0) = the strings up to the NULL, joined, cut to fit
 * and NUL-terminated, as snprintf(buf, cap, "%s%s...") would; returns the
 * length written. */
size_t text_cat(char *buf, size_t cap, ...) __attribute__((sentinel));

/* Appends the strings up to the NULL to BUF (capacity CAP, *LEN used,
 * NUL-terminated) all or nothing: when they do not fit, BUF is left as it
 * was and -1 returned. */
int text_append(char *buf, size_t cap, size_t *len, ...) __attribute__((sentinel));

/* V in decimal (with its sign) into BUF, which must hold 21 bytes;
 * returns BUF. */
char *text_int(char *buf, long long v);

/* V as 16 lowercase hex digits into BUF, which must hold 17 bytes; returns BUF. */
char *text_hex64(char *buf, uint64_t v);
#endif
