/* upstream.h - one call to an upstream provider: an HTTP request, its response.
 *
 * Plain http:// upstreams are served by turnout's own HTTP/1.1 client on the
 * worker's event loop (upstream.c): keep-alive connections pooled per
 * host:port, the request head and body in one write, the response parsed
 * in place out of one read buffer. Everything else (https://) goes through
 * libcurl (upcurl.c), behind the same interface, or through libcurl for
 * every upstream when the config says upstream_client "curl".
 *
 * The caller gets the response through its handlers, on the worker's
 * thread, never from inside up_start (libcurl may hand held-back body bytes
 * over from inside up_resume). */
#ifndef TURNOUT_UPSTREAM_H
#define TURNOUT_UPSTREAM_H

#include <stddef.h>
#include <sys/uio.h>

#include "worker.h"

typedef struct up_call up_call_t;

/* What a body handler returns. */
enum {
    UP_TAKEN = 0,    /* the bytes were used */
    UP_PAUSE = 1,    /* not now: the call stops reading; up_resume hands them over again */
    UP_ABORT = -1,   /* the call ends with done("upstream_error") */
};

typedef struct up_handlers {
    /* The final status line, as soon as it is in (interim 1xx responses are
     * skipped): the response's first byte. Its header fields follow, then
     * the body; a head that turns out malformed ends in done(upstream_error). */
    void (*status)(void *arg, int status);
    /* One response header; hop-by-hop ones included. Not NUL-terminated. */
    void (*header)(void *arg, const char *name, size_t nlen, const char *value, size_t vlen);
    /* Body bytes, de-chunked. */
    int (*body)(void *arg, const char *buf, size_t len);
    /* The call is over: CODE is NULL when the whole response arrived, else
     * an error code (upstream_connect_error, upstream_connect_timeout,
     * upstream_total_timeout, upstream_error) with a human DETAIL. The call
     * is freed once this returns: done must not call up_abort on it. */
    void (*done)(void *arg, const char *code, const char *detail);
} up_handlers_t;

#define UP_MAX_BODY_PIECES 5

typedef struct up_request {
    const char *base_url;          /* the provider's, e.g. http://10.0.0.7:8000/v1 */
    const char *path;              /* appended to it, e.g. /chat/completions */
    const char *head;              /* header lines "Name: value\r\n", without Host and Content-Length */
    size_t head_len;
    struct iovec body[UP_MAX_BODY_PIECES];   /* borrowed until done or up_abort */
    int nbody;
    long connect_ms;               /* name lookup and connect, when a new connection is needed */
    long total_ms;                 /* a backstop behind the caller's own timer (libcurl only) */
} up_request_t;

/* Starts a call. Returns NULL (nothing to clean up) when it cannot start. */
up_call_t *up_start(worker_t *w, const up_request_t *rq, const up_handlers_t *h, void *arg);

/* Resumes a call whose body handler returned UP_PAUSE. */
void up_resume(up_call_t *c);

/* Ends a call before done; its handlers are not called again. */
void up_abort(up_call_t *c);

/* A worker's upstream state: created lazily, freed with the worker. */
void up_worker_free(worker_t *w);

#endif
