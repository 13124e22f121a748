/* worker.c - a worker thread: its event loop, evhtp listener, upstream clients and store reader. */
#include "worker.h"
#include "shared.h"
#include "budget.h"
#include "edge.h"
#include "events.h"
#include "journal.h"
#include "proxy.h"
#include "smallmem.h"
#include "stats.h"
#include "upcurl.h"
#include "upstream.h"

#include <errno.h>
#include <evhtp/evhtp.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* 16 KB blocks (a client read's chain) a worker keeps ready before
 * serving: 256 KB, enough for the reads of a few dozen requests at once. */
#define WORKER_READ_RESERVE 16
#define TRIM_FLOOR (256 * 1024)    /* what a worker keeps of each block size however idle (the reserve's 16 x 16 KB) */

/* Drain: the listener is closed at once; the loop ends when the last
 * request finishes or the grace period runs out. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    static const struct timeval tick = { 0, 50000 };
    (void)fd;
    (void)what;
    if (w->in_flight <= 0 || edge_now_ms() >= w->stop_deadline_ms) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    event_add(w->stop_ev, &tick);
}

static void stop(worker_t *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    w->stop_deadline_ms = edge_now_ms() + w->cfg->shutdown_grace_s * 1000.0;
    evhtp_unbind_socket(w->htp);
    edge_close_idle(w);
    on_drain_tick(-1, 0, w);
}

/* The worker's loop is turning: what the main thread checks before it
 * tells systemd's watchdog all is well. */
static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd;
    atomic_store_explicit(&w->heartbeat_ms, (int64_t)edge_now_ms(), memory_order_relaxed);
    if (w->journal != NULL)
        journal_publish(w->journal);      /* the usage counted since, for the keeper */
    /* once a second: the blocks a burst left (64 streams' read chains are a
     * megabyte) go back to malloc, and malloc gives its free pages back to
     * the system when that was much; a steady load keeps what it uses */
    if (what && ++w->beats % 4 == 0) {   /* (the timer, not worker_main's first call) */
        smallmem_trim(TRIM_FLOOR);
        smallmem_release_heap();
    }
}

/* Reload: from the next event on, this worker's requests see the new
 * config; the ones in progress read it too (they borrow w->cfg afresh in
 * each callback), which is what a reload means for timeouts and limits. */
static void reload(worker_t *w)
{
    uint64_t gen = atomic_load(&w->gw->gen);
    w->cfg = atomic_load(&w->gw->live);
    atomic_store(&w->cfg_gen, gen);
}

/* Another thread asked for something (worker_stop, worker_reload): the
 * worker's loop runs without libevent's locks (a lock and an unlock on
 * every event operation), so other threads reach it only through this
 * eventfd and the flags beside it. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    uint64_t n;
    (void)what;
    while (read(fd, &n, sizeof(n)) > 0)
        ;
    if (atomic_exchange(&w->want_reload, 0))
        reload(w);
    if (atomic_exchange(&w->want_stop, 0))
        stop(w);
}

static void wake(worker_t *w)
{
    uint64_t one = 1;
    while (write(w->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

void worker_reload(worker_t *w)
{
    atomic_store(&w->want_reload, 1);
    wake(w);
}

/* A loop of the worker's own: no locks (see on_wake). */
static struct event_base *base_new(void)
{
    struct event_config *c = event_config_new();
    struct event_base *b;
    if (c == NULL)
        return NULL;
    event_config_set_flag(c, EVENT_BASE_FLAG_NOLOCK);
    b = event_base_new_with_config(c);
    event_config_free(c);
    return b;
}

int worker_init(worker_t *w, gateway_t *gw, int id, char *err, size_t errlen)
{
    static const struct timeval beat = { 0, 250000 };
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->gw = gw;
    w->cfg = atomic_load(&gw->live);
    atomic_store(&w->cfg_gen, atomic_load(&gw->gen));
    w->rng = ((uint64_t)time(NULL) << 16) ^ ((uint64_t)(uintptr_t)w) ^ ((uint64_t)id * 0x9E3779B97F4A7C15ull);
    if (w->rng == 0)
        w->rng = 88172645463325252ull;
    w->wake_fd = -1;
    if ((w->base = base_new()) == NULL || (w->htp = evhtp_new(w->base, w)) == NULL || upcurl_init(w) < 0 ||
        (w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
        (w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w)) == NULL ||
        event_add(w->wake_ev, NULL) < 0 ||
        (w->stop_ev = evtimer_new(w->base, on_drain_tick, w)) == NULL ||
        (w->beat = event_new(w->base, -1, EV_PERSIST, on_beat, w)) == NULL || event_add(w->beat, &beat) < 0 ||
        (w->metrics = metrics_new()) == NULL ||
        (w->reader = store_reader_new(gw->store)) == NULL || (w->budgets = budgets_new()) == NULL ||
        (w->journal = journal_new()) == NULL || (w->events = events_ring_new()) == NULL ||
        (w->stats = stats_new()) == NULL ||
        (w->cfg->cluster_redis[0] != '\0' && (w->shared = shared_new(w, w->cfg)) == NULL)) {
        snprintf(err, errlen, "worker %d: out of resources", id);
        return -1;
    }
    w->m_connections = metrics_series(w->metrics, M_CONNECTIONS, NULL, NULL, NULL, NULL);
    evhtp_enable_flag(w->htp, EVHTP_FLAG_ENABLE_REUSEPORT | EVHTP_FLAG_ENABLE_NODELAY);
    evhtp_disable_flag(w->htp, EVHTP_FLAG_ENABLE_100_CONT);
    edge_install(w);
    proxy_install(w);
    if (evhtp_bind_socket(w->htp, w->cfg->listen_host, (uint16_t)w->cfg->listen_port, 1024) < 0) {
        snprintf(err, errlen, "listen %s:%d: cannot bind (in use, or a bad address)",
                 w->cfg->listen_host, w->cfg->listen_port);
        return -1;
    }
    return 0;
}

void *worker_main(void *arg)
{
    worker_t *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "turnout-w%d", w->id);
    pthread_setname_np(pthread_self(), name);
    smallmem_prime(16384, WORKER_READ_RESERVE);
    on_beat(-1, 0, w);
    event_base_dispatch(w->base);
    /* Whatever is still open (idle keep-alive, or past the grace period) is
     * closed here, on the worker's own thread. */
    edge_close_all(w);
    return NULL;
}

void worker_stop(worker_t *w)
{
    atomic_store(&w->want_stop, 1);
    wake(w);
}

void worker_free(worker_t *w)
{
    if (w->htp != NULL)
        evhtp_free(w->htp);
    up_worker_free(w);
    upcurl_free(w);
    proxy_worker_free(w);
    if (w->stop_ev != NULL)
        event_free(w->stop_ev);
    if (w->beat != NULL)
        event_free(w->beat);
    if (w->wake_ev != NULL)
        event_free(w->wake_ev);
    if (w->base != NULL && w->wake_fd >= 0)   /* base: worker_init ran (it sets wake_fd) */
        close(w->wake_fd);
    shared_free(w->shared);               /* on its loop: before the loop goes */
    metrics_free(w->metrics);
    store_reader_free(w->reader);
    budgets_free(w->budgets);
    journal_free(w->journal);
    events_ring_free(w->events);
    stats_free(w->stats);
    if (w->base != NULL)
        event_base_free(w->base);
    memset(w, 0, sizeof(*w));
}
