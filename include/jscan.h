/* jscan.h - one-pass JSON validation that also finds the top-level fields the data plane reads ("model", "stream", "user", "stream_options", the output limit). */
#ifndef TURNOUT_JSCAN_H
#define TURNOUT_JSCAN_H

#include <stddef.h>

typedef enum {
    JSCAN_OK = 0,
    JSCAN_INVALID,        /* not well-formed JSON */
    JSCAN_NOT_OBJECT,     /* valid JSON, but the top level is not an object */
} jscan_status_t;

/* What the scan learned about a request body. Offsets index the body. */
typedef struct jscan {
    int    has_model;     /* a top-level "model" key was seen */
    int    model_is_string;
    size_t model_off;     /* first byte of the model value (its opening quote) */
    size_t model_len;     /* length of the value including both quotes */
    int    stream;        /* top-level "stream": true */
    size_t user_off;      /* a top-level string "user" (quotes included); */
    size_t user_len;      /*   user_len is 0 when there is none */
    size_t opts_off;      /* the top-level "stream_options" value, any type; */
    size_t opts_len;      /*   opts_len is 0 when there is none */
    size_t max_off;       /* the top-level "max_completion_tokens", else "max_tokens", */
    size_t max_len;       /*   value (any type); max_len is 0 when there is neither */
    int    max_completion;   /* it is "max_completion_tokens" */
    size_t error_off;     /* where validation failed */
} jscan_t;

/* Validates BODY (LEN bytes) as one JSON value (RFC 8259, nesting up to 64
 * levels) and fills *out. Nothing is allocated; the body is not modified. */
jscan_status_t jscan_body(const char *body, size_t len, jscan_t *out);

/* Validates the JSON string literal at STR (its opening quote first; at
 * most LEN bytes) as jscan_body would inside a body; returns its length
 * quotes included, or -1. *ESCAPED (when not NULL) says whether it holds
 * an escape. Nothing is allocated. */
long jscan_string_len(const char *str, size_t len, int *escaped);
/* Steps through the top-level keys of BODY (LEN bytes, an object that
 * jscan_body accepted), in order, duplicates included. Start with *pos = 0;
 * each call sets *key_off and *key_len to the next key (quotes included:
 * decode it with jscan_string) and returns 1, or returns 0 after the last
 * (and -1 on a body jscan_body would refuse). Reading every key costs a
 * scan of the body, so callers do it only when they need the keys. */
int jscan_next_key(const char *body, size_t len, size_t *pos, size_t *key_off, size_t *key_len);

/* Steps through the members of the object, or the elements of the array,
 * whose value starts at BODY[START], in a body jscan_body accepted: values
 * are skipped (strings quote to quote with memchr), not validated again.
 * Start with *pos = START; each call fills *IT (key_off and key_len: the
 * member's key, quotes included, 0 for an array's element; val_off and
 * val_len: its value) and returns 1, or returns 0 after the last (*pos is
 * then past the closing brace). On bytes jscan_body refuses it may return
 * -1 or items that mean nothing, but never reads or points beyond LEN.
 * Nothing is allocated. */
typedef struct jscan_item {
    size_t key_off, key_len, val_off, val_len;
} jscan_item_t;
int jscan_next_item(const char *body, size_t len, size_t start, size_t *pos, jscan_item_t *it);
/* Decodes the JSON string value at BODY[off..off+len) (quotes included) into
 * DST (NUL-terminated, at most DSTLEN-1 bytes). Returns the decoded length or
 * -1 if it does not fit or contains an escaped NUL. */
long jscan_string(const char *body, size_t off, size_t len, char *dst, size_t dstlen);

/* Appends S as a JSON string literal (with quotes and escapes) to DST of
 * capacity CAP; returns the length written or -1 if it does not fit. The
 * literal is valid UTF-8 whatever S holds: well-formed UTF-8 is copied, each byte
 * of no valid sequence becomes \ufffd (a path or header of raw bytes). */
long jscan_quote(const char *s, char *dst, size_t cap);

/* Copies S to DST (capacity CAP, NUL-terminated, cut at a whole character)
 * with each byte of no valid UTF-8 sequence replaced by U+FFFD; returns the length.
 * For text another encoder (cJSON) puts into JSON as it is. */
size_t jscan_utf8_clean(const char *s, char *dst, size_t cap);

#endif
