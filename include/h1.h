/* h1.h - the rules of an HTTP/1.1 response that both upstream clients apply.
 *
 * turnout's own client (upstream.c) and libcurl (upcurl.c) read what an
 * upstream sends; what they let through reaches the client as headers and
 * body. Both decide with these functions, so that they refuse and accept
 * exactly the same bytes: a status line, a header field, and a chunked body
 * decoded byte by byte (no line is buffered: the decoder works on whatever
 * pieces the bytes arrive in). */
#ifndef TURNOUT_H1_H
#define TURNOUT_H1_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define H1_LINE_MAX (64 * 1024)    /* the longest head, chunk-size or trailer line */
#define H1_RETRY_AFTER_DEFAULT_MS 1000   /* a 429 without a usable Retry-After */

/* The status of a status line "HTTP/1.x NNN[ reason]" (without CR LF), with
 * its minor version in *MINOR; -1 when the line is not one. */
int h1_status_line(const char *line, size_t len, int *minor);

/* Whether NAME is a token (RFC 9110 5.6.2) and VALUE holds no control byte
 * but HTAB: a field fit to relay. */
int h1_field_ok(const char *name, size_t nlen, const char *value, size_t vlen);

/* Whether the comma-separated VALUE lists TOKEN (case-insensitive). */
int h1_has_token(const char *value, size_t vlen, const char *token);

/* How long a Retry-After VALUE (NULL: none) asks to wait, in ms: delta
 * seconds, or an IMF-fixdate HTTP date measured from NOW (0 when it is
 * past); H1_RETRY_AFTER_DEFAULT_MS when it is missing or unreadable. */
double h1_retry_after_ms(const char *value, time_t now);

/* A Content-Length value: 1 and *OUT, or 0 when it is not a number. */
int h1_content_length(const char *value, size_t vlen, uint64_t *out);

/* One header line LINE (LEN bytes, no CR LF) split into its name and its
 * value without the whitespace around it; 0 when it is no field to relay
 * (no colon, as in a folded line; a name that is no token; a control byte). */
int h1_field(const char *line, size_t len, const char **name, size_t *nlen, const char **value, size_t *vlen);

/* What a final head says of its body's framing and its connection. */
typedef struct h1_framing {
    int has_len;                   /* a Content-Length, of CLEN */
    uint64_t clen;
    int chunked;                   /* 1: Transfer-Encoding ends in chunked; -1: another coding; 0: none */
    int close, keep;               /* Connection lists close / keep-alive */
} h1_framing_t;

/* Notes what field NAME: VALUE says of the framing; -1 for a Content-Length
 * that is not a number or differs from an earlier one. */
int h1_framing_field(h1_framing_t *f, const char *name, size_t nlen, const char *value, size_t vlen);

/* Whether the connection may take another request after an answer of this
 * framing in HTTP/1.MINOR: not after Connection: close (whatever else it
 * lists), an HTTP/1.0 answer without keep-alive, or one with both
 * Content-Length and chunks (RFC 9112 6.3). */
int h1_reusable(const h1_framing_t *f, int minor);

/* A chunked body being decoded. Zero it (h1_chunks_init) for a new body. */
typedef struct h1_chunks {
    int st;                        /* where in the framing the next byte is */
    int digits;                    /* hex digits of the size line so far */
    uint64_t left;                 /* data bytes left in the current chunk */
    size_t line;                   /* length of the line being skipped */
} h1_chunks_t;

enum {
    H1_MORE = 0,                   /* every byte was framing: send more */
    H1_DATA = 1,                   /* *DLEN data bytes follow the *SKIP framing bytes */
    H1_END = 2,                    /* the body ended after *SKIP bytes; any bytes after it are not its */
    H1_BAD = -1,                   /* malformed: the message says how */
};

void h1_chunks_init(h1_chunks_t *d);

/* Reads framing from BUF (LEN bytes) up to the next data or the end.
 * *SKIP framing bytes are consumed (whatever the return); on H1_DATA the
 * next *DLEN bytes are chunk data, which the caller hands on and then
 * reports with h1_chunks_took (it may take fewer, or none, and call again
 * with the rest). On H1_BAD, *WHY says what was wrong. */
int h1_chunks_next(h1_chunks_t *d, const char *buf, size_t len, size_t *skip, size_t *dlen, const char **why);

/* N bytes of the data h1_chunks_next announced were taken. */
void h1_chunks_took(h1_chunks_t *d, size_t n);

#endif
