/* clientio.h - a client connection's socket I/O: reads without FIONREAD, replies written at once. */
#ifndef TURNOUT_CLIENTIO_H
#define TURNOUT_CLIENTIO_H

#include "config.h"

struct client;
struct event_base;
struct ssl_ctx_st;

/* Takes over CL's socket (libevhtp patch 0007 left the bufferevent
 * without it) on the loop BASE: watches it for reading, and writes
 * whatever is added to the bufferevent's output at the end of the current
 * loop turn; over TLS with the context TLS (NULL: plain). *CFG is the
 * config in force (read for the send timeout each time). Returns 0, or -1
 * when the TLS connection cannot be made (out of memory: the connection
 * is failed). */
int cio_start(struct client *cl, struct event_base *base, const config_t *const *cfg, struct ssl_ctx_st *tls);

/* The connection is being freed: stops watching and closes the socket. */
void cio_stop(struct client *cl);

/* The request in progress is done: reading resumes if it was held back
 * for pipelined input piling up behind it. */
void cio_request_done(struct client *cl);

#endif
