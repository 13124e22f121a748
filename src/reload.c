/* reload.c - the logs' targets, and config reload on SIGHUP.
 *
 * A config, once published, is immutable. Reload parses the file into a new
 * one, publishes it in gw->live with a new generation, and wakes every event
 * loop (the workers' and the admin thread's); each takes the new pointer
 * between two of its events and reports the generation it took. When all
 * have, nothing can read the previous config any more and it is freed.
 *
 * The access log keeps one descriptor number for the life of the process:
 * a reopened file is dup2()ed over it, so a worker writing at that moment
 * writes its whole line to the old file or to the new one. */
#include "reload.h"
#include "admin.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static config_t **retired;         /* replaced, but a loop may not have let go yet */
static int nretired;
static int access_spare = -1;            /* the access log's number while log.access is off */

/* A new descriptor for log.access TARGET: -1 for "off", -2 on failure. */
static int open_access(const char *target)
{
    int fd;
    if (strcmp(target, "off") == 0)
        return -1;
    if (strcmp(target, "stdout") == 0 || strcmp(target, "stderr") == 0)
        fd = fcntl(target[3] == 'o' ? STDOUT_FILENO : STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    else
        fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    return fd < 0 ? -2 : fd;
}

/* Points the access log at FD (from open_access; -1 turns it off). */
static void switch_access(gateway_t *gw, int fd)
{
    int cur = atomic_load(&gw->access_fd);
    if (fd < 0) {
        if (cur >= 0)
            access_spare = cur;      /* kept open: a worker may be writing to it */
        atomic_store(&gw->access_fd, -1);
        return;
    }
    if (cur < 0)
        cur = access_spare;
    if (cur >= 0 && dup2(fd, cur) >= 0) {
        close(fd);
        fd = cur;
    } else if (cur >= 0) {
        close(cur);                  /* cannot happen with a valid FD; keep the new one */
    }
    access_spare = -1;
    atomic_store(&gw->access_fd, fd);
}

int reload_open_logs(gateway_t *gw, char *err, size_t errlen)
{
    int fd;
    log_set_level(log_level_of(gw->cfg.log_level));
    if (log_open(gw->cfg.log_error, err, errlen) < 0)
        return -1;
    if ((fd = open_access(gw->cfg.log_access)) == -2) {
        snprintf(err, errlen, "log.access: cannot open %s", gw->cfg.log_access);
        return -1;
    }
    atomic_store(&gw->access_fd, fd);
    return 0;
}

/* Settings bound at start-up: a new value waits for a restart. */
static void keep_fixed(const config_t *run, config_t *next)
{
    struct {
        const char *name;
        int changed;
    } fixed[] = {
        { "listen", strcmp(run->listen_host, next->listen_host) != 0 || run->listen_port != next->listen_port },
        { "workers", run->workers != next->workers },
        { "data_dir", strcmp(run->data_dir, next->data_dir) != 0 },
        { "admin.listen", strcmp(run->admin_listen, next->admin_listen) != 0 },
        { "admin.key_env", strcmp(run->admin_key_env, next->admin_key_env) != 0 },
        { "store.map_size_mb", run->map_size_mb != next->map_size_mb },
        { "cluster", strcmp(run->cluster_etcd, next->cluster_etcd) != 0 ||
                     strcmp(run->cluster_prefix, next->cluster_prefix) != 0 ||
                     strcmp(run->cluster_redis, next->cluster_redis) != 0 ||
                     strcmp(run->cluster_redis_failure, next->cluster_redis_failure) != 0 },
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (fixed[i].changed)
            tlog(LOG_WARN, "reload: %s changed; it takes effect at the next restart", fixed[i].name);
    memcpy(next->listen_host, run->listen_host, sizeof(next->listen_host));
    next->listen_port = run->listen_port;
    next->workers = run->workers;
    memcpy(next->data_dir, run->data_dir, sizeof(next->data_dir));
    memcpy(next->admin_listen, run->admin_listen, sizeof(next->admin_listen));
    memcpy(next->admin_key_env, run->admin_key_env, sizeof(next->admin_key_env));
    next->map_size_mb = run->map_size_mb;
    memcpy(next->seed, run->seed, sizeof(next->seed));
    memcpy(next->cluster_etcd, run->cluster_etcd, sizeof(next->cluster_etcd));
    memcpy(next->cluster_prefix, run->cluster_prefix, sizeof(next->cluster_prefix));
    memcpy(next->cluster_redis, run->cluster_redis, sizeof(next->cluster_redis));
    memcpy(next->cluster_redis_failure, run->cluster_redis_failure, sizeof(next->cluster_redis_failure));
}

/* 1 once every loop has taken generation GEN (waits up to 2 s). */
static int all_took(gateway_t *gw, uint64_t gen)
{
    struct timespec nap = { 0, 1000000 };
    for (int waited = 0; waited < 2000; waited++) {
        int all = atomic_load(&gw->admin_gen) >= gen;
        for (int i = 0; all && i < gw->nworkers; i++)
            all = atomic_load(&gw->workers[i].cfg_gen) >= gen;
        if (all)
            return 1;
        nanosleep(&nap, NULL);
    }
    return 0;
}

/* Frees a config no loop reads any more (and its TLS context: connections
 * made with it hold their own reference). */
static void drop(config_t *c)
{
    config_release(c);
    free(c);
}

static void free_retired(void)
{
    while (nretired > 0)
        drop(retired[--nretired]);
    free(retired);
    retired = NULL;
}

/* The reload of FILE failed for WHY: said, counted, and NEXT freed; the
 * running config goes on. Returns -1. */
static int reject(const char *file, const char *why, config_t *next)
{
    tlog(LOG_ERROR, "reload: config %s rejected: %s; the running config keeps serving", file, why);
    if (next != NULL)
        drop(next);
    metrics_reloaded(0);
    notify_send("READY=1\nSTATUS=serving (the last reload was rejected)");
    return -1;
}

int reload_config(gateway_t *gw, const char *file)
{
    char err[1100], msg[80];
    config_t *next = malloc(sizeof(*next));
    const config_t *prev = atomic_load(&gw->live);
    struct timespec now;
    uint64_t gen;
    int fd = -1;

    clock_gettime(CLOCK_MONOTONIC, &now);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000);
    notify_send(msg);
    if (next != NULL)
        next->tls_ctx = next->admin_tls_ctx = NULL;
    if (next == NULL || config_load(file, next, err, sizeof(err)) < 0 || config_prepare(next, err, sizeof(err)) < 0 ||
        (fd = open_access(next->log_access)) == -2) {
        if (next != NULL && fd == -2)
            snprintf(err, sizeof(err), "log.access: cannot open %s", next->log_access);
        return reject(file, next == NULL ? "out of memory" : err, next);
    }
    if (log_open(next->log_error, err, sizeof(err)) < 0) {
        if (fd >= 0)
            close(fd);
        return reject(file, err, next);
    }
    keep_fixed(prev, next);
    log_set_level(log_level_of(next->log_level));
    switch_access(gw, fd);

    gen = atomic_load(&gw->gen) + 1;
    atomic_store(&gw->live, next);
    atomic_store(&gw->gen, gen);
    for (int i = 0; i < gw->nworkers; i++)
        worker_reload(&gw->workers[i]);
    admin_reload();
    if (all_took(gw, gen)) {
        free_retired();              /* older still: every loop is past them too */
        if (prev != &gw->cfg)
            drop((config_t *)prev);
    } else if (prev != &gw->cfg) {
        tlog(LOG_WARN, "reload: an event loop has not taken the new config within 2 s");
        config_t **more = realloc(retired, (size_t)(nretired + 1) * sizeof(*retired));
        if (more != NULL) {          /* else it is never freed: better than freed while read */
            retired = more;
            retired[nretired++] = (config_t *)prev;
        }
    }
    metrics_reloaded(1);
    tlog(LOG_INFO, "reload: config %s applied (generation %llu)", file, (unsigned long long)gen);
    notify_send("READY=1\nSTATUS=serving");
    return 0;
}

void reload_cleanup(gateway_t *gw)
{
    const config_t *live = atomic_load(&gw->live);
    int fd = atomic_exchange(&gw->access_fd, -1);
    free_retired();
    if (live != &gw->cfg)
        drop((config_t *)live);
    config_release(&gw->cfg);
    atomic_store(&gw->live, &gw->cfg);
    if (fd >= 0)
        close(fd);
    if (access_spare >= 0)
        close(access_spare);
    access_spare = -1;
    log_close();
}
