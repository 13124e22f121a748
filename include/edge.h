/* edge.h - client connections at the HTTP edge: limits, client-side timeouts, and answers to malformed requests. */
#ifndef TURNOUT_EDGE_H
#define TURNOUT_EDGE_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <evhtp/evhtp.h>
#include <stdint.h>

#include "worker.h"

/* What a client connection is doing, which decides its timeout. */
typedef enum {
    CLIENT_IDLE,      /* between requests: idle_timeout_s (header_timeout_s before the first), silent close */
    CLIENT_HEADERS,   /* a request has begun: header_timeout_s from its first byte, then 408 */
    CLIENT_BODY,      /* reading the body: idle_timeout_s between reads, then 408 */
    CLIENT_BUSY,      /* the request is complete and being answered: no read timeout */
} client_phase_t;

typedef struct client {
    worker_t *w;
    evhtp_connection_t *conn;
    struct event timer;          /* the current phase's timeout */
    client_phase_t phase;
    double since;                /* monotonic ms: phase start, or last body read */
    double limit_ms;             /* the phase's limit, from SINCE */
    double due;                  /* monotonic ms the timer is set for; 0 when it is not */
    int over_limit;              /* accepted past limits.max_connections */
    /* header checks of the request being read */
    int nheaders;
    int64_t header_bytes;
    int content_lengths;
    int transfer_encoding;
    const char *error;           /* why a header check failed, for the 4xx body */
    /* the socket's I/O (clientio.c) */
    const config_t *const *cfg;  /* the config in force where it runs (worker's or admin's) */
    int fd;
    struct event rev;            /* readable: for the connection's life, unless held */
    struct event wev;            /* writable: only while the socket would block */
    struct event flush;          /* made active when output is added: written at the turn's end */
    struct evbuffer_cb_entry *out_cb;
    unsigned flush_armed : 1, read_held : 1, eof_pending : 1, io_failed : 1;
    /* over TLS (the listener's tls): the connection, and where it waits */
    struct ssl_st *ssl;
    size_t tls_retry;            /* a write that must be retried with these many bytes, 0: none */
    unsigned tls_seen : 1,       /* its first byte was a TLS record (else it was plain HTTP) */
             read_wants_write : 1, write_wants_read : 1;
    struct client *prev, *next;
} client_t;

/* Installs the accept hook, the per-header checks, the parse-error answers
 * and the client timeouts on the worker's evhtp. */
void edge_install(worker_t *w);

/* The client a request arrived on (never NULL for a live request). */
client_t *edge_client(evhtp_request_t *req);

/* Phase changes reported by the data plane. */
void edge_body_read(client_t *cl);             /* some body bytes arrived */
void edge_request_complete(client_t *cl);      /* headers and body are in */
void edge_request_done(client_t *cl);          /* the request was freed; keep-alive may follow */

/* Writes a complete OpenAI-shaped error response with Connection: close
 * straight to CONN's output (for requests evhtp cannot answer through the
 * request: parse failures, timeouts). MESSAGE must need no JSON escaping.
 * Does nothing when the request has been answered already. */
void edge_write_error(evhtp_connection_t *conn, int status, const char *message);

/* The message for a request the parser refused with STATUS (414, 431, 505,
 * else what the parser's error says: version, request line, header line,
 * chunk), for edge_write_error. Static text. */
const char *edge_parse_error_message(evhtp_connection_t *conn, int status);

/* 1 when REQ (headers parsed) has a body to read: a Content-Length over 0
 * or chunked. */
int edge_expects_body(evhtp_request_t *req);

/* 1 when an Expect header VALUE is one turnout meets: 100-continue (any
 * case), or empty. Anything else gets 417. */
int edge_expectation_ok(const char *value);

/* Sends "100 Continue" when REQ asked for it (Expect: 100-continue over
 * HTTP/1.1) and has a body to send. Called once the request has passed
 * every check that needs no body; a request that fails one is answered with
 * its final status instead, and no 100 is ever sent for it. */
void edge_continue(evhtp_request_t *req);

/* Stopping: closes connections that are idle between requests. */
void edge_close_idle(worker_t *w);
/* Loop exit: frees every connection still open. */
void edge_close_all(worker_t *w);

/* Monotonic milliseconds. */
double edge_now_ms(void);

/* Adds (or re-arms) timer EV to fire after MS milliseconds. */
void edge_timer_after(struct event *ev, double ms);

#endif
