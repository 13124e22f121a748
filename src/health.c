/* health.c - upstream health and concurrency caps shared by every worker, without a lock.
 *
 * Each upstream (provider + model) has a tally slot "up:PROVIDER/MODEL"
 * holding the time before which nothing may be sent to it (a 429's
 * Retry-After, or a cooldown), its failures in a row, and whether its probe
 * is out. An attempt on a well upstream only reads it, so the workers do
 * not pass its cache line to and fro. Each cap that is set has a slot of
 * its own counting the attempts open against it: "cap:r:ROUTE-ID",
 * "cap:t:ROUTE-ID:PROVIDER/MODEL", "cap:p:PROVIDER". A cap is taken with an
 * atomic increment that is undone when it overshoots, so no worker ever
 * waits for another and the count never stays above the cap. */
#include "health.h"
#include "metrics.h"
#include "text.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t health_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The slots of a candidate (its upstream's, and its caps' when they are
 * set), found by name once per route, provider record and model in a
 * store generation and kept per thread (naming and finding them took
 * some 500 instructions a request). */
enum { HS_UP, HS_ROUTE, HS_TARGET, HS_PROVIDER };
#define HEALTH_SLOTS 64
static _Thread_local metrics_memo_t health_slots[HEALTH_SLOTS], health_scratch;

void health_of(const resolution_t *res, int i, health_t *h)
{
    const candidate_t *c = &res->cand[i];
    const char *route_id = res->route_id;
    metrics_memo_t *v;
    char name[700];
    memset(h, 0, sizeof(*h));
    h->limit[CAP_ROUTE] = *route_id ? res->route_cap : 0;
    h->limit[CAP_TARGET] = *route_id ? c->target_cap : 0;
    h->limit[CAP_PROVIDER] = c->prov_cap;
    if (!metrics_memo(health_slots, HEALTH_SLOTS, &health_scratch, NULL, c->gen, route_id, c->prov, c->model, &v)) {
        text_cat(name, sizeof(name), "up:", c->provider, "/", c->model, NULL);
        v->slot[HS_UP] = tally_get(name);
        /* a cap's slot is named (and looked up) only when the cap is set */
        if (h->limit[CAP_ROUTE] > 0) {
            text_cat(name, sizeof(name), "cap:r:", route_id, NULL);
            v->slot[HS_ROUTE] = tally_get(name);
        }
        if (h->limit[CAP_TARGET] > 0) {
            text_cat(name, sizeof(name), "cap:t:", route_id, ":", c->provider, "/", c->model, NULL);
            v->slot[HS_TARGET] = tally_get(name);
        }
        if (h->limit[CAP_PROVIDER] > 0) {
            text_cat(name, sizeof(name), "cap:p:", c->provider, NULL);
            v->slot[HS_PROVIDER] = tally_get(name);
        }
    }
    h->up = v->slot[HS_UP];
    if (h->limit[CAP_ROUTE] > 0)
        h->cap[CAP_ROUTE] = v->slot[HS_ROUTE];
    if (h->limit[CAP_TARGET] > 0)
        h->cap[CAP_TARGET] = v->slot[HS_TARGET];
    if (h->limit[CAP_PROVIDER] > 0)
        h->cap[CAP_PROVIDER] = v->slot[HS_PROVIDER];
}

health_state_t health_peek(const health_t *h, int64_t now, int cooldown_after, int64_t *until, int *which)
{
    if (h->up != NULL) {
        int64_t nb = atomic_load_explicit(&h->up->not_before_ms, memory_order_relaxed);
        if (now < nb) {
            *until = nb;
            return HEALTH_COOLING;
        }
        if (atomic_load_explicit(&h->up->fail_streak, memory_order_relaxed) >= (uint64_t)cooldown_after &&
            atomic_load_explicit(&h->up->probing, memory_order_relaxed))
            return HEALTH_PROBING;
    }
    for (int i = 0; i < CAP__COUNT; i++) {
        if (h->cap[i] != NULL && atomic_load_explicit(&h->cap[i]->in_flight, memory_order_relaxed) >= h->limit[i]) {
            *which = i;
            return HEALTH_AT_CAP;
        }
    }
    return HEALTH_USABLE;
}

static void end_probe(health_t *h)
{
    if (h->probe) {
        atomic_store_explicit(&h->up->probing, 0, memory_order_release);
        h->probe = 0;
    }
}

health_state_t health_take(health_t *h, int64_t now, int cooldown_after, int64_t *until)
{
    int taken = 0;
    if (h->up != NULL) {
        int64_t nb = atomic_load_explicit(&h->up->not_before_ms, memory_order_acquire);
        if (now < nb) {
            *until = nb;
            return HEALTH_COOLING;
        }
        if (atomic_load_explicit(&h->up->fail_streak, memory_order_relaxed) >= (uint64_t)cooldown_after) {
            int free_slot = 0;
            if (!atomic_compare_exchange_strong(&h->up->probing, &free_slot, 1))
                return HEALTH_PROBING;
            h->probe = 1;
        }
    }
    for (; taken < CAP__COUNT; taken++) {
        tally_t *t = h->cap[taken];
        if (t != NULL && atomic_fetch_add_explicit(&t->in_flight, 1, memory_order_acq_rel) >= h->limit[taken]) {
            atomic_fetch_sub_explicit(&t->in_flight, 1, memory_order_acq_rel);
            break;
        }
    }
    if (taken < CAP__COUNT) {             /* one cap is full: give back the others */
        while (taken-- > 0)
            if (h->cap[taken] != NULL)
                atomic_fetch_sub_explicit(&h->cap[taken]->in_flight, 1, memory_order_acq_rel);
        end_probe(h);
        return HEALTH_AT_CAP;
    }
    h->held = 1;
    return HEALTH_USABLE;
}

void health_release(health_t *h)
{
    if (h->held) {
        for (int i = 0; i < CAP__COUNT; i++)
            if (h->cap[i] != NULL)
                atomic_fetch_sub_explicit(&h->cap[i]->in_flight, 1, memory_order_acq_rel);
        h->held = 0;
    }
    end_probe(h);      /* an attempt given up without an outcome frees the probe */
}

void health_defer(health_t *h, int64_t until)
{
    int64_t nb;
    if (h->up == NULL)
        return;
    nb = atomic_load_explicit(&h->up->not_before_ms, memory_order_relaxed);
    while (nb < until &&
           !atomic_compare_exchange_weak_explicit(&h->up->not_before_ms, &nb, until, memory_order_release,
                                                  memory_order_relaxed))
        ;
}

void health_success(health_t *h)
{
    if (h->up == NULL)
        return;
    if (atomic_load_explicit(&h->up->fail_streak, memory_order_relaxed) != 0)
        atomic_store_explicit(&h->up->fail_streak, 0, memory_order_relaxed);
    end_probe(h);
}

int health_failure(health_t *h, int64_t now, int cooldown_after, int64_t cooldown_ms, uint64_t *streak)
{
    int cooled = 0;
    *streak = 0;
    if (h->up == NULL)
        return 0;
    *streak = atomic_fetch_add_explicit(&h->up->fail_streak, 1, memory_order_relaxed) + 1;
    if (h->probe || *streak >= (uint64_t)cooldown_after) {
        health_defer(h, now + cooldown_ms);
        cooled = 1;
    }
    end_probe(h);
    return cooled;
}
