/* worker.c - a worker thread: event loop, evhtp listener, and libcurl's multi interface on libevent.
 *
 * The curl plumbing follows libcurl's hiperfifo pattern (DESIGN.md): one
 * persistent event per socket, the timer callback only arms a libevent
 * timer, and finished transfers are collected after every socket action,
 * never inside a curl callback. */
#include "worker.h"
#include "edge.h"
#include "proxy.h"

#include <evhtp/evhtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Per-socket state curl hands back to us (curl_multi_assign). */
typedef struct sock {
    struct event *ev;
    worker_t *w;
} sock_t;

void worker_check_multi(worker_t *w)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE)
            proxy_transfer_done(w, msg->easy_handle, msg->data.result);
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    int running, action = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(w->multi, fd, action, &running);
    worker_check_multi(w);
}

static void on_curl_timeout(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    int running;
    (void)fd;
    (void)what;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    worker_check_multi(w);
}

static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    worker_t *w = userp;
    sock_t *sk = socketp;
    short kind;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            event_free(sk->ev);
            free(sk);
        }
        curl_multi_assign(w->multi, s, NULL);
        return 0;
    }
    kind = (short)(EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0));
    if (sk == NULL) {
        if ((sk = calloc(1, sizeof(*sk))) == NULL)
            return -1;
        sk->w = w;
        curl_multi_assign(w->multi, s, sk);
    } else {
        event_free(sk->ev);
    }
    sk->ev = event_new(w->base, s, kind, on_sock_event, w);
    if (sk->ev == NULL)
        return -1;
    event_add(sk->ev, NULL);
    return 0;
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    worker_t *w = userp;
    struct timeval tv;
    (void)m;
    if (timeout_ms < 0) {
        evtimer_del(w->curl_timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(w->curl_timer, &tv);
    return 0;
}

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

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd;
    (void)what;
    if (w->stopping)
        return;
    w->stopping = 1;
    w->stop_deadline_ms = edge_now_ms() + w->cfg->shutdown_grace_s * 1000.0;
    evhtp_unbind_socket(w->htp);
    edge_close_idle(w);
    event_free(w->stop_ev);
    w->stop_ev = evtimer_new(w->base, on_drain_tick, w);
    on_drain_tick(-1, 0, w);
}

/* The worker's loop is turning: what the main thread checks before it
 * tells systemd's watchdog all is well. */
static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd;
    (void)what;
    atomic_store_explicit(&w->heartbeat_ms, (int64_t)edge_now_ms(), memory_order_relaxed);
}

/* Reload: from the next event on, this worker's requests see the new
 * config; the ones in progress read it too (they borrow w->cfg afresh in
 * each callback), which is what a reload means for timeouts and limits. */
static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd;
    (void)what;
    uint64_t gen = atomic_load(&w->gw->gen);
    w->cfg = atomic_load(&w->gw->live);
    atomic_store(&w->cfg_gen, gen);
}

void worker_reload(worker_t *w)
{
    event_active(w->reload_ev, EV_READ, 0);
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
    if ((w->base = event_base_new()) == NULL || (w->htp = evhtp_new(w->base, w)) == NULL ||
        (w->multi = curl_multi_init()) == NULL ||
        (w->curl_timer = evtimer_new(w->base, on_curl_timeout, w)) == NULL ||
        (w->stop_ev = event_new(w->base, -1, 0, on_stop, w)) == NULL ||
        (w->beat = event_new(w->base, -1, EV_PERSIST, on_beat, w)) == NULL || event_add(w->beat, &beat) < 0 ||
        (w->reload_ev = event_new(w->base, -1, 0, on_reload, w)) == NULL ||
        (w->metrics = metrics_new()) == NULL ||
        (w->reader = store_reader_new(gw->store)) == NULL) {
        snprintf(err, errlen, "worker %d: out of resources", id);
        return -1;
    }
    w->m_connections = metrics_series(w->metrics, M_CONNECTIONS, NULL, NULL, NULL, NULL);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
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

/* curl_easy_init allocates and initialises several kilobytes; a worker
 * keeps the handles of finished attempts and resets them for the next. */
CURL *worker_easy_get(worker_t *w)
{
    if (w->neasy > 0) {
        CURL *e = w->easy_pool[--w->neasy];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

void worker_easy_put(worker_t *w, CURL *easy)
{
    if (w->neasy < (int)(sizeof(w->easy_pool) / sizeof(w->easy_pool[0])))
        w->easy_pool[w->neasy++] = easy;
    else
        curl_easy_cleanup(easy);
}

void *worker_main(void *arg)
{
    worker_t *w = arg;
    on_beat(-1, 0, w);
    event_base_dispatch(w->base);
    /* Whatever is still open (idle keep-alive, or past the grace period) is
     * closed here, on the worker's own thread. */
    edge_close_all(w);
    return NULL;
}

void worker_stop(worker_t *w)
{
    /* event_active is safe across threads once evthread_use_pthreads ran */
    event_active(w->stop_ev, EV_READ, 0);
}

void worker_free(worker_t *w)
{
    if (w->htp != NULL)
        evhtp_free(w->htp);
    while (w->neasy > 0)
        curl_easy_cleanup(w->easy_pool[--w->neasy]);
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    if (w->curl_timer != NULL)
        event_free(w->curl_timer);
    if (w->stop_ev != NULL)
        event_free(w->stop_ev);
    if (w->beat != NULL)
        event_free(w->beat);
    if (w->reload_ev != NULL)
        event_free(w->reload_ev);
    metrics_free(w->metrics);
    store_reader_free(w->reader);
    if (w->base != NULL)
        event_base_free(w->base);
    memset(w, 0, sizeof(*w));
}
