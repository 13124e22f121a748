/* main.c - turnout's entry point: command line, start-up, signals, shutdown. */
#include "admin.h"
#include "keeper.h"
#include "ledger.h"
#include "config.h"
#include "edge.h"
#include "etcd.h"
#include "shared.h"
#include "log.h"
#include "notify.h"
#include "reload.h"
#include "smallmem.h"
#include "store.h"
#include "worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <evhtp/evhtp.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: turnout [-t] -c FILE\n"
            "       turnout export -c FILE        print the store as a seed (provider api_key values left out)\n"
            "       turnout import -c FILE SEED   load SEED into the store, validated, in one transaction\n"
            "                                     (stored api_keys are kept unless SEED sets them or says null)\n"
            "  -c, --config FILE  run with the JSON config FILE\n"
            "  -t, --test         check the config (and the seed file it names) and exit\n"
            "  -v, --version      print the version and exit\n"
            "  -h, --help         print this help and exit\n"
            "Signals: TERM/INT drain and exit 0; HUP re-reads the config.\n");
}

/* Every client connection and upstream connection is a descriptor: take the
 * hard limit, and say so when even that cannot hold max_connections. */
static void raise_fd_limit(const config_t *cfg)
{
    struct rlimit rl;
    uint64_t want = (uint64_t)cfg->workers * (uint64_t)cfg->max_connections * 2 + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        tlog(LOG_WARN, "the open-file limit (%llu) is below what %d workers x %d connections "
             "(client and upstream) may need (%llu); raise LimitNOFILE or lower limits.max_connections",
             (unsigned long long)rl.rlim_cur, cfg->workers, cfg->max_connections, (unsigned long long)want);
}

/* `turnout export` and `turnout import`: the store of config FILE, opened
 * beside a running gateway if there is one (LMDB allows many processes). */
static int store_command(const char *cmd, const config_t *cfg, const char *seed)
{
    char err[1024];
    store_t *s = store_open(cfg->data_dir, (size_t)cfg->map_size_mb, err, sizeof(err));
    etcd_t *etcd = NULL;
    int rc = 1;
    if (s == NULL) {
        tlog(LOG_ERROR, "%s", err);
        return 1;
    }
    /* on a cluster: the mirror brought up to etcd's revision first, so
     * that an export is the cluster's store and an import is checked
     * against it (and then committed to etcd) */
    if (cfg->cluster_etcd[0] != '\0' && (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
                                         (etcd = etcd_open(cfg, s, err, sizeof(err))) == NULL ||
                                         etcd_sync(etcd, err, sizeof(err)) < 0)) {
        tlog(LOG_ERROR, "%s", err);
        etcd_close(etcd);
        store_close(s);
        return 1;
    }
    if (strcmp(cmd, "export") == 0) {
        cJSON *all = store_export(s);
        char *text = all != NULL ? cJSON_Print(all) : NULL;
        if (text != NULL && printf("%s\n", text) > 0 && fflush(stdout) == 0)
            rc = 0;
        else
            tlog(LOG_ERROR, "export failed (out of memory, or stdout closed)");
        free(text);
        cJSON_Delete(all);
    } else if (store_import_seed(s, seed, err, sizeof(err)) < 0) {
        tlog(LOG_ERROR, "%s", err);
    } else {
        tlog(LOG_INFO, "imported %s", seed);
        rc = 0;
    }
    etcd_close(etcd);
    store_close(s);
    if (cfg->cluster_etcd[0] != '\0')
        curl_global_cleanup();
    return rc;
}

/* On a cluster (cluster.etcd): etcd becomes the store of record. A node
 * whose mirror has a revision serves from it at once, and its watch
 * resumes from that revision (a snapshot if etcd compacted past it). One
 * with an empty mirror loads a full snapshot first, waiting up to 10 s for
 * etcd, then gives up: it would serve nothing. */
static int cluster_store(gateway_t *gw)
{
    char err[1024];
    if ((gw->etcd = etcd_open(&gw->cfg, gw->store, err, sizeof(err))) == NULL) {
        tlog(LOG_ERROR, "%s", err);
        return -1;
    }
    if (store_mirror_revision(gw->store) > 0) {
        tlog(LOG_INFO, "etcd: serving from the mirror at revision %lld; the watch brings it up to date",
             (long long)store_mirror_revision(gw->store));
        return 0;
    }
    for (int i = 0;; i++) {
        if (etcd_sync(gw->etcd, err, sizeof(err)) == 0)
            return 0;
        if (i == 20) {
            tlog(LOG_ERROR, "%s; the mirror is empty, so there is nothing to serve without etcd", err);
            return -1;
        }
        usleep(500000);
    }
}

/* 1 when every worker's loop turned within the last LIMIT ms. */
static int workers_alive(gateway_t *gw, int64_t limit)
{
    int64_t now = (int64_t)edge_now_ms();
    for (int i = 0; i < gw->nworkers; i++)
        if (now - atomic_load_explicit(&gw->workers[i].heartbeat_ms, memory_order_relaxed) > limit)
            return 0;
    return 1;
}

/* Waits for one of SIGS; meanwhile, when systemd asked for a watchdog,
 * pings it at half its interval as long as every worker's loop is turning
 * (a stuck worker stops the pings, and systemd restarts the service). */
static int wait_for_signal(gateway_t *gw, const sigset_t *sigs)
{
    int64_t every = notify_watchdog_ms(), limit = every * 2 > 1000 ? every * 2 : 1000;
    int sig = 0;
    if (every == 0) {
        while (sigwait(sigs, &sig) != 0)
            ;
        return sig;
    }
    for (;;) {
        struct timespec ts = { every / 1000, (every % 1000) * 1000000 };
        if ((sig = sigtimedwait(sigs, NULL, &ts)) > 0)
            return sig;
        if (workers_alive(gw, limit))
            notify_send("WATCHDOG=1");
        else
            tlog(LOG_ERROR, "a worker's event loop is stuck; withholding the watchdog ping");
    }
}

int main(int argc, char **argv)
{
    const char *file = NULL, *cmd = NULL, *seed = NULL;
    int test_only = 0, rc = 1, started = 0, started_admin = 0;
    char err[1024];
    gateway_t gw;
    sigset_t sigs;

    if (argc > 1 && (strcmp(argv[1], "export") == 0 || strcmp(argv[1], "import") == 0)) {
        cmd = argv[1];
        argv++;
        argc--;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (++i == argc) {
                usage(stderr);
                return 2;
            }
            file = argv[i];
        } else if (strcmp(argv[i], "-t") == 0 || strcmp(argv[i], "--test") == 0) {
            test_only = 1;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("turnout %s\n", TURNOUT_VERSION);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (cmd != NULL && strcmp(cmd, "import") == 0 && seed == NULL && argv[i][0] != '-') {
            seed = argv[i];
        } else {
            fprintf(stderr, "turnout: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (file == NULL || (cmd != NULL && (test_only || (strcmp(cmd, "import") == 0) != (seed != NULL)))) {
        usage(stderr);
        return 2;
    }
    memset(&gw, 0, sizeof(gw));
    notify_init();
    if (config_load(file, &gw.cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "turnout: config %s: %s\n", file, err);
        return 1;
    }
    if (cmd != NULL)
        return store_command(cmd, &gw.cfg, seed);
    if (config_prepare(&gw.cfg, err, sizeof(err)) < 0) {   /* the certificate and key load */
        fprintf(stderr, "turnout: config %s: %s\n", file, err);
        return 1;
    }
    if (test_only) {
        config_release(&gw.cfg);
        printf("turnout: config %s is valid\n", file);
        return 0;
    }
    atomic_store(&gw.live, &gw.cfg);
    gw.started_at = time(NULL);
    if (reload_open_logs(&gw, err, sizeof(err)) < 0) {
        fprintf(stderr, "turnout: %s\n", err);
        reload_cleanup(&gw);
        return 1;
    }

    gw.store = store_open(gw.cfg.data_dir, (size_t)gw.cfg.map_size_mb, err, sizeof(err));
    if (gw.store == NULL) {
        tlog(LOG_ERROR, "%s", err);
        reload_cleanup(&gw);
        return 1;
    }
    /* libcurl before any thread: the upstream client's and etcd's */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        tlog(LOG_ERROR, "cannot initialise libcurl");
        store_close(gw.store);
        reload_cleanup(&gw);
        return 1;
    }
    if (gw.cfg.cluster_etcd[0] != '\0' && cluster_store(&gw) < 0) {
        etcd_close(gw.etcd);
        curl_global_cleanup();
        store_close(gw.store);
        reload_cleanup(&gw);
        return 1;
    }
    if (gw.cfg.seed[0] != '\0' && store_is_empty(gw.store)) {
        if (store_import_seed(gw.store, gw.cfg.seed, err, sizeof(err)) < 0) {
            tlog(LOG_ERROR, "%s", err);
            etcd_close(gw.etcd);
            curl_global_cleanup();
            store_close(gw.store);
            reload_cleanup(&gw);
            return 1;
        }
        tlog(LOG_INFO, "imported seed %s into the empty store", gw.cfg.seed);
    }
    if (gw.etcd != NULL && etcd_start(gw.etcd) < 0) {
        tlog(LOG_ERROR, "cannot start the etcd watch thread");
        goto out;
    }
    gw.admin_key = getenv(gw.cfg.admin_key_env);

    raise_fd_limit(&gw.cfg);

    /* Signals are taken by this thread with sigwait; workers never see them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* before libevent allocates anything (its locks, just below) */
    evhtp_set_mem_functions(smallmem_malloc, smallmem_realloc, smallmem_free);
    if (evthread_use_pthreads() != 0) {
        tlog(LOG_ERROR, "cannot initialise libevent threading");
        goto out;
    }
    keeper_restore(&gw);                  /* spend back in the ledger before anything is served */
    if (gw.cfg.cluster_redis[0] != '\0')
        shared_configure(&gw.cfg);
    gw.nworkers = gw.cfg.workers;
    gw.workers = calloc((size_t)gw.nworkers, sizeof(worker_t));
    if (gw.workers == NULL)
        goto out;
    for (int i = 0; i < gw.nworkers; i++) {
        if (worker_init(&gw.workers[i], &gw, i, err, sizeof(err)) < 0) {
            tlog(LOG_ERROR, "%s", err);
            worker_free(&gw.workers[i]);
            goto out;
        }
        started = i + 1;
    }
    started = 0;
    for (int i = 0; i < gw.nworkers; i++) {
        if (pthread_create(&gw.workers[i].thread, NULL, worker_main, &gw.workers[i]) != 0) {
            tlog(LOG_ERROR, "cannot start a worker thread");
            break;
        }
        started++;
    }
    if (started == gw.nworkers && keeper_start(&gw) < 0) {
        tlog(LOG_ERROR, "cannot start the keeper thread");
        started_admin = -1;
    }
    if (started == gw.nworkers && started_admin == 0 && admin_start(&gw, err, sizeof(err)) < 0) {
        tlog(LOG_ERROR, "%s", err);
        started_admin = -1;
    }
    if (started == gw.nworkers && started_admin == 0) {
        char what[160];
        snprintf(what, sizeof(what), "%s:%d with %d workers", gw.cfg.listen_host,
                 gw.cfg.listen_port, gw.nworkers);
        tlog(LOG_INFO, "listening on %s", what);
        tlog(LOG_INFO, "admin API on %s", gw.cfg.admin_listen);
        gw.ready = 1;
        rc = 0;
        notify_send("READY=1\nSTATUS=serving");
        for (;;) {
            int sig = wait_for_signal(&gw, &sigs);
            if (sig == SIGHUP) {
                reload_config(&gw, file);
                continue;
            }
            tlog(LOG_INFO, "%s: draining in-flight requests, then exiting", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
    }
    notify_send("STOPPING=1\nSTATUS=draining");
    gw.ready = 0;
    admin_stop();
    for (int i = 0; i < started; i++)
        worker_stop(&gw.workers[i]);
    for (int i = 0; i < started; i++)
        pthread_join(gw.workers[i].thread, NULL);
    keeper_stop();                        /* the workers are done: what they counted last is written */
    if (started != gw.nworkers || started_admin != 0)
        rc = 1;
out:
    if (gw.workers != NULL) {
        for (int i = 0; i < gw.nworkers; i++)
            worker_free(&gw.workers[i]);
        free(gw.workers);
    }
    etcd_close(gw.etcd);                  /* before the store it writes */
    curl_global_cleanup();
    store_close(gw.store);
    ledger_free();
    reload_cleanup(&gw);
    libevent_global_shutdown();
    return rc;
}
