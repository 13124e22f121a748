/* proxy.h - the data plane: request intake, resolution, upstream attempts and relaying. */
#ifndef TURNOUT_PROXY_H
#define TURNOUT_PROXY_H

#include <stddef.h>
#include <evhtp/evhtp.h>
#include "worker.h"

/* Backpressure on a relayed stream: above HIGH bytes waiting for the client
 * the upstream transfer is paused; it resumes once the client's output is
 * down to LOW (the connection's write low watermark). */
#define PROXY_SEND_HIGH_WATER (256 * 1024)
#define PROXY_SEND_LOW_WATER (64 * 1024)

/* Installs the data-plane request callback on the worker's evhtp. */
void proxy_install(worker_t *w);

/* Frees what the data plane keeps per worker. */
void proxy_worker_free(worker_t *w);

/* The headers of a request are in (connection hook, run by edge.c after its
 * checks): allocates the request's state and applies the body limit. */
evhtp_res proxy_on_headers(evhtp_request_t *req, evhtp_headers_t *hdrs, void *arg);

#endif
