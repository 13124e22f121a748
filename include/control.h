/* control.h - the control loop's feeds on the admin listener: GET /v1/events (attempt events as server-sent events) and GET /v1/stats (per-route and per-target figures). */
#ifndef TURNOUT_CONTROL_H
#define TURNOUT_CONTROL_H

#include <event2/event.h>
#include <cjson/cJSON.h>
#include <evhtp/evhtp.h>
#include <stddef.h>

#include "worker.h"

/* Whether a tenant admin of TENANT may see the route with ROUTE_ID (the
 * admin API's rule for route records); events and figures of no route
 * are an admin's only. */
typedef int (*control_visible_fn)(const char *tenant, const char *route_id);

/* Starts reading the workers' events and counts on the admin thread's
 * loop BASE (a timer a few times a second). Returns 0 or -1. */
int control_start(struct event_base *base, gateway_t *gw, control_visible_fn visible);

/* Stops it and ends every open event stream (the admin thread, before its loop is freed). */
void control_stop(void);

/* GET /v1/events: the last 100 events, then each new one as it comes, to
 * an admin (TENANT NULL) or a tenant admin of TENANT. Returns -1, having
 * sent nothing, when it cannot take another stream (64 are open). */
int control_events(evhtp_request_t *req, const char *tenant);

/* The GET /v1/stats answer: per route and target, requests, errors,
 * rates and latency percentiles over 1 min, 5 min and 1 h, for an admin
 * (TENANT NULL) or a tenant admin of TENANT; NULL when it cannot be made. */
cJSON *control_stats(const char *tenant);

/* REQ is over (its client left, or its connection is freed): it is no
 * longer written to. */
void control_request_gone(evhtp_request_t *req);

#endif
