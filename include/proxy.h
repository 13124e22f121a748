/* proxy.h - the data plane: request intake, resolution, upstream attempts and relaying. */
#ifndef TURNOUT_PROXY_H
#define TURNOUT_PROXY_H

#include <curl/curl.h>
#include "worker.h"

/* Installs the data-plane callbacks and hooks on the worker's evhtp. */
void proxy_install(worker_t *w);

/* Called by the worker when curl reports a finished transfer. */
void proxy_transfer_done(worker_t *w, CURL *easy, CURLcode result);

#endif
