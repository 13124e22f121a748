/* health.h - what all workers share about an upstream before calling it: "not before" times, failure streaks and probes, and the in-flight counts behind the concurrency caps. Lock-free, on tally slots. */
#ifndef TURNOUT_HEALTH_H
#define TURNOUT_HEALTH_H

#include <stdint.h>

#include "resolve.h"
#include "tally.h"

/* Why a candidate cannot be called now. */
typedef enum {
    HEALTH_USABLE = 0,
    HEALTH_COOLING,      /* not before a time (a 429's Retry-After, or a cooldown) */
    HEALTH_PROBING,      /* cooled down; another request is its one probe */
    HEALTH_AT_CAP,       /* the route, target or provider max_in_flight is reached */
} health_state_t;

enum { CAP_ROUTE, CAP_TARGET, CAP_PROVIDER, CAP__COUNT };

/* The shared slots of one candidate. A slot is NULL where there is nothing
 * to share (no cap set) or the tally table is full (then nothing is
 * enforced for it: fail open, never fail closed). */
typedef struct health {
    tally_t *up;                    /* "up:PROVIDER/MODEL": not-before, streak, probe */
    tally_t *cap[CAP__COUNT];       /* in-flight counts where a cap is set */
    int limit[CAP__COUNT];
    int held;                       /* the caps are taken by this attempt */
    int probe;                      /* this attempt is the upstream's probe */
} health_t;

/* Finds the slots of candidate I of RES (its route's, target's and
 * provider's caps and the upstream's health). */
void health_of(const resolution_t *res, int i, health_t *h);

/* Looks without taking anything: the state of H at NOW (monotonic ms), and
 * for HEALTH_COOLING the time it ends in *UNTIL; for HEALTH_AT_CAP *WHICH
 * says which cap (CAP_ROUTE...). COOLDOWN_AFTER is the failure streak that
 * makes an upstream need a probe. */
health_state_t health_peek(const health_t *h, int64_t now, int cooldown_after, int64_t *until, int *which);

/* Takes H for an attempt: the caps (all or none) and, for an upstream whose
 * cooldown has ended, its one probe. Returns HEALTH_USABLE when taken, else
 * why not (as health_peek). */
health_state_t health_take(health_t *h, int64_t now, int cooldown_after, int64_t *until);

/* Gives back what health_take took (safe to call twice). */
void health_release(health_t *h);

/* The attempt's outcome: a success (or the caller's own error) ends the
 * streak; a failure extends it and, at COOLDOWN_AFTER in a row or when a
 * probe fails, cools the upstream down for COOLDOWN_MS. health_failure
 * returns 1 when it did (*STREAK: the failures in a row, this one included). */
void health_success(health_t *h);
int health_failure(health_t *h, int64_t now, int cooldown_after, int64_t cooldown_ms, uint64_t *streak);

/* A 429: nothing goes to the upstream before UNTIL (kept if later already). */
void health_defer(health_t *h, int64_t until);

/* Monotonic milliseconds, the clock of every time above. */
int64_t health_now(void);

#endif
