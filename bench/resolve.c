/* bench/resolve.c - the cost of resolving a model name against a store of N routes.
 *
 * usage: bench_resolve build DIR N [POOLS]
 *        bench_resolve measure DIR N [POOLS]
 * "build" fills a store in DIR (which must not exist) with N exact routes
 * named route-0000000... and POOLS glob pools (default 1000) through the
 * seed import and prints import_s. "measure", run in a fresh process as a
 * restarted gateway would be, measures on that store:
 *   open_ms       store_open + store_is_empty (bench/resolve.sh also times
 *                 turnout's own start-up on it, which is what users wait for)
 *   exact_cold_us the same as exact_us in a process that has not yet touched
 *                 the store: each 4 KB page of the map costs a page fault
 *                 the first time (what a freshly restarted gateway pays)
 *   exact_us      one resolution of a random existing route name (uniform
 *                 over all N: the worst case for the CPU caches), after
 *                 one pass over all routes has mapped the whole store (the
 *                 steady state of a running gateway)
 *   exact_hot_us  the same over 1000 names drawn once and cycled (a
 *                 gateway's usual traffic: a few routes carry most of it)
 *   glob_miss_us  a name no pool matches: every pattern is tried, then the
 *                 PROVIDER/MODEL and bare-alias steps, then 404
 *   glob_last_us  a name only the lowest-priority pool matches
 * and prints them as one JSON object. */
#include "resolve.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Mean microseconds per resolution of the names NAME(i) for i < ITERS. */
static double timed(store_reader_t *r, int iters, const char *(*name)(int, char *), int want_status)
{
    char buf[64];
    resolution_t res;
    double t0 = now_us();
    for (int i = 0; i < iters; i++) {
        resolve_in_t in = { .ep = EP_CHAT, .model = name(i, buf), .router = "", .key_id = "", .tenant = "",
                            .sticky = "", .dry = 1 };
        resolve_model(r, &in, &res);
        if ((int)res.status != want_status) {
            fprintf(stderr, "bench_resolve: %s resolved to status %d, expected %d\n", in.model, res.status,
                    want_status);
            exit(1);
        }
        resolve_free(&res);
    }
    return (now_us() - t0) / iters;
}

static long nroutes;

static const char *random_route(int i, char *buf)
{
    (void)i;
    snprintf(buf, 64, "route-%07ld", random() % nroutes);
    return buf;
}

static const char *each_route(int i, char *buf)
{
    snprintf(buf, 64, "route-%07d", i);
    return buf;
}

static long hot[1000];

static const char *hot_route(int i, char *buf)
{
    snprintf(buf, 64, "route-%07ld", hot[i % 1000]);
    return buf;
}

static const char *missing(int i, char *buf)
{
    snprintf(buf, 64, "no-such-model-%d", i);
    return buf;
}

static const char *last_pool(int i, char *buf)
{
    snprintf(buf, 64, "pool-0000-%d", i);
    return buf;
}

static int build(const char *dir, long pools)
{
    char err[512], seed[4096];
    store_t *s;
    FILE *f;
    double t0;

    snprintf(seed, sizeof(seed), "%s.seed.json", dir);
    if ((f = fopen(seed, "w")) == NULL) {
        perror(seed);
        return 1;
    }
    fprintf(f, "{\"providers\":[{\"name\":\"p\",\"base_url\":\"http://127.0.0.1:9/v1\","
               "\"models\":[{\"name\":\"m\",\"bare_alias\":true}]}],\"routes\":[");
    for (long i = 0; i < nroutes; i++)
        fprintf(f, "%s{\"name\":\"route-%07ld\",\"targets\":[{\"provider\":\"p\",\"model\":\"m\"}]}", i ? "," : "", i);
    for (long i = 0; i < pools; i++)
        fprintf(f, ",{\"name\":\"pool-%04ld-*\",\"priority\":%ld,\"targets\":[{\"provider\":\"p\",\"model\":\"m\"}]}",
                i, i);
    fprintf(f, "]}\n");
    fclose(f);

    t0 = now_us();
    if ((s = store_open(dir, 8192, err, sizeof(err))) == NULL || store_import_seed(s, seed, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_resolve: %s\n", err);
        return 1;
    }
    printf("{\"routes\":%ld,\"pools\":%ld,\"import_s\":%.1f}\n", nroutes, pools, (now_us() - t0) / 1e6);
    store_close(s);
    remove(seed);
    return 0;
}

static int measure(const char *dir, long pools)
{
    char err[512];
    store_t *s;
    store_reader_t *r;
    double t0 = now_us(), open_ms, cold_us;

    if ((s = store_open(dir, 8192, err, sizeof(err))) == NULL || store_is_empty(s)) {
        fprintf(stderr, "bench_resolve: %s: %s\n", dir, s == NULL ? err : "empty store");
        return 1;
    }
    open_ms = (now_us() - t0) / 1e3;
    r = store_reader_new(s);
    srandom(1);
    for (int i = 0; i < 1000; i++)
        hot[i] = random() % nroutes;
    cold_us = timed(r, 200000, random_route, RESOLVE_OK);
    timed(r, (int)nroutes, each_route, RESOLVE_OK);       /* every page mapped */
    printf("{\"routes\":%ld,\"pools\":%ld,\"open_ms\":%.3f,\"exact_cold_us\":%.2f,"
           "\"exact_us\":%.2f,\"exact_hot_us\":%.2f,\"glob_miss_us\":%.2f,\"glob_last_us\":%.2f}\n",
           nroutes, pools, open_ms, cold_us, timed(r, 200000, random_route, RESOLVE_OK),
           timed(r, 200000, hot_route, RESOLVE_OK), timed(r, 5000, missing, RESOLVE_NOT_FOUND),
           pools ? timed(r, 5000, last_pool, RESOLVE_OK) : 0.0);
    store_reader_free(r);
    store_close(s);
    return 0;
}

int main(int argc, char **argv)
{
    long pools = argc > 4 ? atol(argv[4]) : 1000;
    if (argc < 4 || (nroutes = atol(argv[3])) < 1 || pools < 0 ||
        (strcmp(argv[1], "build") != 0 && strcmp(argv[1], "measure") != 0)) {
        fprintf(stderr, "usage: bench_resolve build|measure DIR N [POOLS]\n");
        return 2;
    }
    return strcmp(argv[1], "build") == 0 ? build(argv[2], pools) : measure(argv[2], pools);
}
