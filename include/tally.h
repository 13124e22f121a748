/* tally.h - process-wide counters shared by all workers without locks: round-robin positions, A/B variant counts, observed latency. */
#ifndef TURNOUT_TALLY_H
#define TURNOUT_TALLY_H

#include <stdatomic.h>
#include <stdint.h>

/* One named slot. Counters are updated with relaxed atomics: each is exact
 * on its own, a reader may see one a moment before another. */
typedef struct tally {
    _Atomic uint64_t key;          /* hash of the name; 0 = free */
    _Atomic uint64_t n;            /* round-robin position, or requests */
    _Atomic uint64_t errors;
    _Atomic uint64_t total_us;     /* summed latency */
    _Atomic uint64_t ewma_us;      /* smoothed time to first byte, 0 = none yet */
    /* upstream health and caps (health.c) */
    _Atomic int64_t in_flight;     /* a cap's slot: attempts open now, all workers */
    _Atomic int64_t not_before_ms; /* monotonic: nothing is sent before (429, cooldown) */
    _Atomic uint64_t fail_streak;  /* failures in a row */
    _Atomic int probing;           /* a cooled-down upstream's one probe is out */
} tally_t;

/* A 64-bit hash of S (FNV-1a and a final mix), never 0; also what the A/B
 * split hashes its sticky keys with. */
uint64_t tally_hash(const char *s);

/* The slot for NAME (e.g. "rr:ROUTE-ID"), created on first use. NULL when
 * the table is full (callers fall back: a random pick, no counts). */
tally_t *tally_get(const char *name);

/* The slot for NAME if it exists, else NULL (never creates). */
tally_t *tally_find(const char *name);

/* Folds a time-to-first-byte sample into the slot's moving average. */
void tally_observe_ttfb(tally_t *t, double ms);

#endif
