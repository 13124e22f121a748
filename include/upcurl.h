/* upcurl.h - the libcurl side of upstream calls: https:// (and every
 * upstream when upstream.client is "curl"), on the worker's curl multi. */
#ifndef TURNOUT_UPCURL_H
#define TURNOUT_UPCURL_H

#include <curl/curl.h>
#include "upstream.h"

typedef struct upcurl upcurl_t;

/* The worker's multi handle and its timer, driven by the worker's loop. */
int upcurl_init(worker_t *w);
void upcurl_free(worker_t *w);

/* As up_start, up_resume and up_abort (upstream.h). */
upcurl_t *upcurl_start(worker_t *w, const up_request_t *rq, const up_handlers_t *h, void *arg);
void upcurl_resume(upcurl_t *u);
void upcurl_abort(upcurl_t *u);

#endif
