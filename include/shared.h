/* shared.h - counters a cluster's nodes share on Redis (SPEC 10): budget and rate-limit reservations, places in flight, upstreams' not-before times. */
#ifndef TURNOUT_SHARED_H
#define TURNOUT_SHARED_H

#include "config.h"
#include "ledger.h"

#include <stdint.h>

struct worker;
typedef struct shared shared_t;
typedef struct shared_call shared_call_t;

/* One ledger entry's part of a reservation: what it takes of each counter
 * in its window (TAG, which ends in TTL_S seconds), under which limits
 * (-1: none), and whether it takes a place in flight (FLIGHT: how many it
 * allows; -1: it counts none). */
typedef struct shared_take {
    ledger_entry_t *e;
    int64_t tag, ttl_s;
    int64_t amt[LEDGER__N], limit[LEDGER__N];
    int64_t flight;
} shared_take_t;

#define SHARED_MAX_TAKES 20
#define SHARED_FLIGHT 3                 /* the "counter" a full in-flight count refuses with */

/* What a reservation came to. OK: all of it was taken, AFTER[i] is what
 * take i's counters hold now (this reservation's included). OVER: take
 * ITEM's COUNTER (SHARED_FLIGHT: its places in flight) would go over its
 * limit, and nothing was taken. FAILED: Redis did not answer in time (or
 * is not connected): nothing is known to be taken. */
typedef enum { SHARED_OK, SHARED_OVER, SHARED_FAILED } shared_result_t;
#define SHARED_RID 96
typedef struct shared_answer {
    shared_result_t result;
    char rid[SHARED_RID];              /* the reservation's name: what settles it */
    int item, counter;
    int64_t after[SHARED_MAX_TAKES][LEDGER__N];
} shared_answer_t;
typedef void (*shared_done_fn)(void *arg, const shared_answer_t *a);

/* Connects worker W to cfg->cluster_redis (in the background, again and
 * again while it is down); NULL when no Redis is configured or out of
 * memory. Worker 0's also beats for the node (the live-node count) and
 * listens for other nodes' not-before times. */
shared_t *shared_new(struct worker *w, const config_t *cfg);
void shared_free(shared_t *s);

/* Reserves the N takes at once (one script call). DONE(ARG, answer) is
 * called exactly once, from the worker's loop, never inside this call.
 * Returns the call, or NULL when it was not sent (not connected): then
 * nothing was taken and DONE is never called. A reservation that fails
 * for want of an answer is given back by shared.c should it have been
 * made. */
shared_call_t *shared_reserve(shared_t *s, const shared_take_t *t, int n, shared_done_fn done, void *arg);
/* The one who asked is gone: DONE will not be called, and whatever the
 * reservation took is given back when its answer comes. */
void shared_forget(shared_call_t *c);

/* Replaces the reservation RID (its N takes) by what was used: DELTA[i]
 * per counter (used minus reserved; a window that is over is left alone),
 * and gives back take i's place in flight if it has one. Not waited for;
 * a reservation is settled once however often this is called. */
void shared_settle(shared_t *s, const shared_take_t *t, const int64_t (*delta)[LEDGER__N], int n, const char *rid);

/* Tells every node that upstream slot SLOT ("up:PROVIDER/MODEL") takes
 * nothing before UNTIL_MS (monotonic, this node's clock). */
void shared_defer(shared_t *s, const char *slot, int64_t until_ms);

/* What ledger entry NAME holds in Redis in window TAG (spent and reserved
 * together), read synchronously, for the admin thread only (its own
 * connection, 200 ms at most); 0, or -1 when Redis does not answer. */
int shared_counts(const char *name, int64_t tag, int64_t out[LEDGER__N]);
/* Set once at start-up: where shared_counts connects (cluster.redis, cluster.prefix). */
void shared_configure(const config_t *cfg);

/* Nodes alive (their beats in the last 5 s), as last seen; at least 1. */
int shared_nodes(void);

/* For /metrics: the round trip's moving average in µs, calls that failed,
 * and whether worker 0's connection is up. */
void shared_figures(double *rtt_us, uint64_t *errors, int *up);

#endif
