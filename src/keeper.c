/* keeper.c - the thread that keeps what was spent: the ledger's spend and the workers' usage journals, written to the store once a second.
 *
 * Workers never write the store on the request path. Once a second this
 * thread takes the usage each worker's journal handed over (journal.c)
 * and adds it to the hourly rollups, and writes the settled spend of every
 * ledger entry that changed, each in one durable LMDB transaction. So a
 * crash (even SIGKILL) loses at most the last second of spend and usage; a
 * clean stop loses nothing (a last round once the workers are done). At
 * start-up the spend is put back into the ledger before any worker
 * serves. Once an hour, rollups older than usage.retention_days go. */
#include "keeper.h"
#include "journal.h"
#include "ledger.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUND_MS 1000

static struct {
    gateway_t *gw;
    pthread_t thread;
    int running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    int64_t pruned_hour;           /* the hour of the last prune */
    store_usage_t *rows;           /* this round's usage (grown as needed) */
    int nrows, caprows;
    store_spend_t *spend;          /* this round's changed spend */
    int nspend, capspend;
} k = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static void restore_one(const store_spend_t *v, void *arg)
{
    ledger_entry_t *e = ledger_get(v->name);
    int *n = arg;
    if (e != NULL) {
        ledger_restore(e, v->tag, v->spent);
        (void)ledger_changed(e);          /* as it is stored already */
        (*n)++;
    }
}

void keeper_restore(gateway_t *gw)
{
    int n = 0;
    store_each_spend(gw->store, restore_one, &n);
    if (n > 0)
        tlog(LOG_INFO, "restored the spend of %d budgets and limits", n);
}

static void add_row(const store_usage_t *row, void *arg)
{
    (void)arg;
    if (k.nrows == k.caprows) {
        int cap = k.caprows ? k.caprows * 2 : 64;
        store_usage_t *more = realloc(k.rows, (size_t)cap * sizeof(*more));
        if (more == NULL)
            return;                       /* out of memory: this row is lost (budgets keep their own spend) */
        k.rows = more;
        k.caprows = cap;
    }
    k.rows[k.nrows++] = *row;
}

static void add_spend(const char *name, ledger_entry_t *e, void *arg)
{
    store_spend_t *v;
    (void)arg;
    if (strlen(name) >= sizeof(v->name) || !ledger_changed(e))
        return;
    if (k.nspend == k.capspend) {
        int cap = k.capspend ? k.capspend * 2 : 64;
        store_spend_t *more = realloc(k.spend, (size_t)cap * sizeof(*more));
        if (more == NULL)
            return;
        k.spend = more;
        k.capspend = cap;
    }
    v = &k.spend[k.nspend++];
    memset(v, 0, sizeof(*v));
    memcpy(v->name, name, strlen(name) + 1);
    ledger_snapshot(e, v->tag, v->spent);
}

/* Rows older than the retention go, once an hour. */
static void prune(void)
{
    const config_t *cfg = atomic_load(&k.gw->live);
    int64_t now = (int64_t)time(NULL), hour = now - now % 3600;
    long n;
    if (hour == k.pruned_hour)
        return;
    n = store_prune_usage(k.gw->store, hour - (int64_t)cfg->usage_retention_days * 86400);
    if (n > 0)
        tlog(LOG_INFO, "usage: %ld rollup rows older than %d days deleted", n, cfg->usage_retention_days);
    k.pruned_hour = hour;
}

/* One round: usage and spend to the store. ALL: the workers have stopped
 * (their own batches are taken too). */
static void round_once(int all)
{
    gateway_t *gw = k.gw;
    k.nrows = k.nspend = 0;
    for (int i = 0; i < gw->nworkers; i++)
        if (gw->workers[i].journal != NULL)
            journal_take(gw->workers[i].journal, all, add_row, NULL);
    if (k.nrows > 0 && store_add_usage(gw->store, k.rows, k.nrows) < 0)
        tlog(LOG_ERROR, "usage: cannot write %d rollup rows to the store", k.nrows);
    ledger_each(add_spend, NULL);
    if (k.nspend > 0 && store_put_spend(gw->store, k.spend, k.nspend) < 0)
        tlog(LOG_ERROR, "budgets: cannot write the spend of %d budgets and limits to the store", k.nspend);
    prune();
}

static void *keeper_main(void *arg)
{
    pthread_setname_np(pthread_self(), "turnout-keeper");
    (void)arg;
    prune();                              /* at start-up, not in the first round of traffic */
    pthread_mutex_lock(&k.lock);
    while (!k.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += ROUND_MS / 1000;
        while (!k.stop && pthread_cond_timedwait(&k.wake, &k.lock, &until) != ETIMEDOUT)
            ;
        if (k.stop)
            break;
        pthread_mutex_unlock(&k.lock);
        round_once(0);
        pthread_mutex_lock(&k.lock);
    }
    pthread_mutex_unlock(&k.lock);
    return NULL;
}

int keeper_start(gateway_t *gw)
{
    k.gw = gw;
    k.stop = 0;
    /* room for a round of 64 rows and spends from the start: rounds that need
     * more grow them once, and the steady state allocates nothing */
    if (k.rows == NULL && (k.rows = malloc(64 * sizeof(*k.rows))) != NULL)
        k.caprows = 64;
    if (k.spend == NULL && (k.spend = malloc(64 * sizeof(*k.spend))) != NULL)
        k.capspend = 64;
    if (pthread_create(&k.thread, NULL, keeper_main, NULL) != 0)
        return -1;
    k.running = 1;
    return 0;
}

void keeper_stop(void)
{
    if (!k.running)
        return;
    pthread_mutex_lock(&k.lock);
    k.stop = 1;
    pthread_cond_signal(&k.wake);
    pthread_mutex_unlock(&k.lock);
    pthread_join(k.thread, NULL);
    k.running = 0;
    round_once(1);                        /* the workers are done: the last of it */
    free(k.rows);
    free(k.spend);
    k.rows = NULL;
    k.spend = NULL;
    k.caprows = k.capspend = 0;
}
