/* worker.h - one thread, one event loop: its listener, upstream clients, store reader and metrics. */
#ifndef TURNOUT_WORKER_H
#define TURNOUT_WORKER_H

#include <curl/curl.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "metrics.h"
#include "store.h"

struct evhtp;
struct up_state;
struct req;
struct curl_sock;
struct gateway;

typedef struct worker {
    int id;
    pthread_t thread;
    struct gateway *gw;            /* borrowed: process-wide state */
    const config_t *cfg;           /* borrowed, immutable: the config in force (reload swaps it) */
    _Atomic uint64_t cfg_gen;      /* the generation of cfg, for the reloading thread */
    int wake_fd;                   /* owned: an eventfd other threads write to (on_wake) */
    struct event *wake_ev;         /* owned: reads it */
    _Atomic int want_stop, want_reload;   /* what they asked for */
    metrics_t *metrics;            /* owned: this worker's series, merged only when /metrics is read */
    series_t *m_connections;       /* its open client connections */
    struct event_base *base;       /* owned */
    struct evhtp *htp;             /* owned: listener bound with SO_REUSEPORT */
    struct up_state *up;           /* owned: pooled upstream connections (upstream.c) */
    struct req *free_reqs;         /* owned: finished requests' state, for the next ones (plane/intake.c) */
    int nfree_reqs;
    CURLM *multi;                  /* owned: libcurl's upstream transfers (upcurl.c) */
    struct event *curl_timer;      /* owned: libcurl's timeout */
    struct event *stop_ev;         /* owned: the drain's tick, once stopping */
    struct event *beat;            /* owned: a timer that sets heartbeat_ms */
    _Atomic int64_t heartbeat_ms;  /* when the loop last turned (monotonic) */
    unsigned beats;                /* on_beat calls (for what it does every few) */
    store_reader_t *reader;        /* owned: LMDB read transaction */
    struct budgets *budgets;       /* owned: the store's budgets, compiled for this worker (budget.c) */
    struct journal *journal;       /* owned: the usage it counted, for the keeper (journal.c) */
    struct event_ring *events;     /* owned: its attempt events, read by the admin thread (events.c) */
    struct stats *stats;           /* owned: its per-route and per-target counts, read likewise (stats.c) */
    struct shared *shared;         /* owned: its Redis connection for the cluster's counters, or NULL (shared.c) */
    uint64_t req_seq;              /* request id sequence */
    uint64_t rng;                  /* xorshift state for ids */
    int in_flight;                 /* requests being served */
    int stopping;                  /* draining after SIGTERM */
    double stop_deadline_ms;       /* monotonic: the grace period ends */
    struct client *clients;        /* open client connections (edge.c) */
    int nclients;
    struct curl_sock **curl_socks; /* owned: libcurl's sockets by descriptor (upcurl.c) */
    int ncurl_socks;               /* entries in curl_socks */
} worker_t;

/* Process-wide state shared read-only by workers (after start-up). */
typedef struct gateway {
    config_t cfg;                  /* as started: listen, workers, data_dir, admin are fixed here */
    _Atomic(const config_t *) live;    /* the config in force; SIGHUP publishes a new one */
    _Atomic uint64_t gen;          /* live's generation */
    _Atomic uint64_t admin_gen;    /* the generation the admin thread took */
    time_t started_at;
    store_t *store;
    struct etcd *etcd;             /* the cluster's store of record (SPEC 10), NULL on a single node */
    int nworkers;
    worker_t *workers;
    _Atomic int access_fd;         /* -1 = off */
    const char *admin_key;         /* bootstrap admin key (from env) or NULL */
    volatile int ready;
} gateway_t;

/* Creates the worker's loop, listener and multi handle. Returns 0 or -1
 * with a message in err. */
int worker_init(worker_t *w, gateway_t *gw, int id, char *err, size_t errlen);

/* Thread entry: runs the loop until worker_stop. */
void *worker_main(void *arg);

/* Thread-safe: asks the worker to stop accepting, finish in-flight requests
 * (up to the grace period) and leave its loop. */
void worker_stop(worker_t *w);

/* Thread-safe: asks the worker to take gw->live as its config; it stores
 * gw->gen in cfg_gen once it has. */
void worker_reload(worker_t *w);

/* Frees what worker_init created; safe after a failed init. */
void worker_free(worker_t *w);

#endif
