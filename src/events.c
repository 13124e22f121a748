/* events.c - attempt events for the control loop: written by each worker into a ring of its own without a lock, read by one other thread.
 *
 * A ring is a fixed array of slots and a count of events written. Its one
 * writer (a worker, on the request path) fills the slot of event n as a
 * sequence lock: the slot's sequence goes odd, the event is copied in, the
 * sequence goes to 2n + 2, then the count to n + 1. Its one reader (the
 * admin thread, a few times a second) copies each slot it has not read
 * and keeps the copy only if the sequence said 2n + 2 before and after:
 * an event overwritten while it was read, or before, is skipped and
 * counted as lost, never shown half-written. The writer never waits for
 * the reader; nothing is allocated after the ring is made. */
#include "events.h"
#include "jscan.h"
#include "text.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING 256                   /* slots, a power of two: ~2.5 s of a failover storm at 100/s */

typedef struct slot {
    _Atomic uint64_t seq;          /* 2n + 2 when it holds event n whole; odd while written */
    ctl_event_t ev;
} slot_t;

struct event_ring {
    _Atomic uint64_t written;      /* events written: the next one's number */
    slot_t slot[RING];
};

event_ring_t *events_ring_new(void)
{
    return calloc(1, sizeof(event_ring_t));
}

void events_ring_free(event_ring_t *ring)
{
    free(ring);
}

static void put(char *dst, size_t cap, const char *s)
{
    text_cat(dst, cap, s != NULL ? s : "", NULL);
}

void events_emit(event_ring_t *ring, event_kind_t kind, int status, const char *route, const char *route_id,
                 const char *provider, const char *model, const char *request_id, const char *detail)
{
    uint64_t n = atomic_load_explicit(&ring->written, memory_order_relaxed);
    slot_t *s = &ring->slot[n & (RING - 1)];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store_explicit(&s->seq, 2 * n + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);    /* the odd sequence is seen before any byte of the event */
    s->ev.ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    s->ev.kind = kind;
    s->ev.status = status;
    put(s->ev.route, sizeof(s->ev.route), route);
    put(s->ev.route_id, sizeof(s->ev.route_id), route_id);
    put(s->ev.provider, sizeof(s->ev.provider), provider);
    put(s->ev.model, sizeof(s->ev.model), model);
    put(s->ev.request_id, sizeof(s->ev.request_id), request_id);
    put(s->ev.detail, sizeof(s->ev.detail), detail);
    atomic_store_explicit(&s->seq, 2 * n + 2, memory_order_release);
    atomic_store_explicit(&ring->written, n + 1, memory_order_release);
}

size_t events_collect(event_ring_t *ring, uint64_t *cursor, ctl_event_t *out, size_t cap, uint64_t *lost)
{
    uint64_t end = atomic_load_explicit(&ring->written, memory_order_acquire), n = *cursor;
    size_t got = 0;
    if (end - n > RING) {                 /* the writer went round past what was not read */
        if (lost != NULL)
            *lost += end - RING - n;
        n = end - RING;
    }
    for (; n < end && got < cap; n++) {
        slot_t *s = &ring->slot[n & (RING - 1)];
        uint64_t before = atomic_load_explicit(&s->seq, memory_order_acquire), after;
        if (before == 2 * n + 2) {
            memcpy(&out[got], &s->ev, sizeof(ctl_event_t));
            atomic_thread_fence(memory_order_acquire);   /* the copy is done before the sequence is read again */
            after = atomic_load_explicit(&s->seq, memory_order_relaxed);
            if (after == before) {
                got++;
                continue;
            }
        }
        if (lost != NULL)
            (*lost)++;
    }
    *cursor = n;
    return got;
}

const char *events_kind_name(event_kind_t kind)
{
    static const char *const names[EV__COUNT] = {
        [EV_FAILOVER] = "failover", [EV_RETRY_429] = "retry_429", [EV_COOLDOWN_START] = "cooldown_start",
        [EV_COOLDOWN_END] = "cooldown_end", [EV_CAPACITY_EXHAUSTED] = "capacity_exhausted",
        [EV_BUDGET_EXHAUSTED] = "budget_exhausted",
    };
    return kind >= 0 && kind < EV__COUNT ? names[kind] : "unknown";
}

/* Appends "KEY": and S quoted (null when S is empty and NULL_EMPTY) to BUF. */
static int member(char *buf, size_t cap, size_t *len, const char *key, const char *s, int null_empty)
{
    long q;
    if (text_append(buf, cap, len, ",\"", key, "\":", NULL) != 0)
        return -1;
    if (null_empty && *s == '\0')
        return text_append(buf, cap, len, "null", NULL);
    if ((q = jscan_quote(s, buf + *len, cap - *len)) < 0)
        return -1;
    *len += (size_t)q;
    return 0;
}

size_t events_json(const ctl_event_t *ev, char *buf, size_t cap)
{
    char when[40], num[24];
    time_t t = (time_t)(ev->ms / 1000);
    struct tm tm;
    size_t len = 0, n;
    if (gmtime_r(&t, &tm) == NULL || (n = strftime(when, sizeof(when) - 6, "%Y-%m-%dT%H:%M:%S", &tm)) == 0)
        return 0;
    when[n] = '.';                        /* and the milliseconds: 2026-12-01T15:00:00.123Z */
    when[n + 1] = (char)('0' + ev->ms % 1000 / 100);
    when[n + 2] = (char)('0' + ev->ms % 100 / 10);
    when[n + 3] = (char)('0' + ev->ms % 10);
    when[n + 4] = 'Z';
    when[n + 5] = '\0';
    if (text_append(buf, cap, &len, "{\"type\":\"", events_kind_name(ev->kind), "\",\"time\":\"", when, "\"", NULL) != 0 ||
        member(buf, cap, &len, "route", ev->route, 1) != 0 || member(buf, cap, &len, "route_id", ev->route_id, 1) != 0 ||
        member(buf, cap, &len, "provider", ev->provider, 1) != 0 || member(buf, cap, &len, "model", ev->model, 1) != 0 ||
        text_append(buf, cap, &len, ",\"status\":", ev->status > 0 ? text_int(num, ev->status) : "null", NULL) != 0 ||
        member(buf, cap, &len, "request_id", ev->request_id, 1) != 0 ||
        member(buf, cap, &len, "detail", ev->detail, 0) != 0 || text_append(buf, cap, &len, "}", NULL) != 0)
        return 0;
    return len;
}
