/* events.h - attempt events for the control loop: written by each worker into a ring of its own without a lock, read by one other thread. */
#ifndef TURNOUT_EVENTS_H
#define TURNOUT_EVENTS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    EV_FAILOVER,            /* an attempt failed and the next candidate is tried */
    EV_RETRY_429,           /* an upstream's 429: the same candidate again after Retry-After */
    EV_COOLDOWN_START,      /* an upstream failed cooldown_after times in a row: passed over for a while */
    EV_COOLDOWN_END,        /* an upstream cooling down answered its probe */
    EV_CAPACITY_EXHAUSTED,  /* a candidate passed over at its max_in_flight */
    EV_BUDGET_EXHAUSTED,    /* a candidate passed over, or a request refused, by a budget */
    EV__COUNT
} event_kind_t;

/* One event, every field as text of bounded length (cut to fit). */
typedef struct ctl_event {
    int64_t ms;                     /* wall clock, epoch milliseconds */
    event_kind_t kind;
    int status;                     /* the upstream's HTTP status, or ours; 0 for none */
    char route[128];                /* the route's name ("" for none), and its id */
    char route_id[40];
    char provider[128];
    char model[128];
    char request_id[64];
    char detail[192];
} ctl_event_t;

typedef struct event_ring event_ring_t;

event_ring_t *events_ring_new(void);
void events_ring_free(event_ring_t *ring);

/* Writes an event into RING (its one writer's thread only): a copy of a
 * few hundred bytes, no lock, no allocation. NULL strings read as "". */
void events_emit(event_ring_t *ring, event_kind_t kind, int status, const char *route, const char *route_id,
                 const char *provider, const char *model, const char *request_id, const char *detail);

/* For the one reader of RING: copies the events written since *CURSOR (0
 * at first) into OUT, at most CAP, oldest first, and moves *CURSOR past
 * them. Events overwritten before they were read are skipped and counted
 * in *LOST (may be NULL). Returns how many it copied. */
size_t events_collect(event_ring_t *ring, uint64_t *cursor, ctl_event_t *out, size_t cap, uint64_t *lost);

/* "failover", "retry_429", ... */
const char *events_kind_name(event_kind_t kind);

/* EV as one JSON object (no newline) into BUF; its length, or 0 when it
 * does not fit. */
size_t events_json(const ctl_event_t *ev, char *buf, size_t cap);

#endif
