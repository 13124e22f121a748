/* tally.c - a fixed open-addressing table of named atomic counters, shared by every worker.
 *
 * Slots are claimed with a compare-and-swap on the name's 64-bit hash and
 * never freed, so a lookup is a few loads and no lock. 16384 slots hold a
 * round-robin position per route, counts per A/B variant and a latency
 * average per provider model; two names sharing a 64-bit hash would share a
 * slot, which at these sizes does not happen in practice. */
#include "tally.h"

#include <string.h>

#define TALLY_SLOTS 16384           /* a power of two */
#define TALLY_PROBES 64

static tally_t table[TALLY_SLOTS];

uint64_t tally_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a, then a final mix */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static tally_t *lookup(const char *name, int create)
{
    uint64_t h = tally_hash(name);
    for (unsigned i = 0; i < TALLY_PROBES; i++) {
        tally_t *t = &table[(h + i) & (TALLY_SLOTS - 1)];
        uint64_t k = atomic_load_explicit(&t->key, memory_order_acquire);
        if (k == h)
            return t;
        if (k == 0) {
            uint64_t zero = 0;
            if (!create)
                return NULL;
            if (atomic_compare_exchange_strong(&t->key, &zero, h) || zero == h)
                return t;
        }
    }
    return NULL;
}

tally_t *tally_get(const char *name)
{
    return lookup(name, 1);
}

tally_t *tally_find(const char *name)
{
    return lookup(name, 0);
}

void tally_observe_ttfb(tally_t *t, double ms)
{
    uint64_t us = ms > 0 ? (uint64_t)(ms * 1000.0) : 1, old = atomic_load_explicit(&t->ewma_us, memory_order_relaxed);
    uint64_t next;
    do   /* weight 1/8 for the new sample; the first sample is taken as it is */
        next = old == 0 ? us : old - old / 8 + us / 8;
    while (!atomic_compare_exchange_weak_explicit(&t->ewma_us, &old, next, memory_order_relaxed,
                                                  memory_order_relaxed));
}

