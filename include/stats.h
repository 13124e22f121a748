/* stats.h - requests, errors and latency per route and per target: running counts each worker keeps, turned into 1 min / 5 min / 1 h figures by one reader. */
#ifndef TURNOUT_STATS_H
#define TURNOUT_STATS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct stats stats_t;             /* one worker's lines */
typedef struct stats_line stats_line_t;   /* the counts of one route, or one target of a route */
typedef struct stats_view stats_view_t;   /* the reader's: snapshots of every worker's lines, over time */

stats_t *stats_new(void);
void stats_free(stats_t *s);

/* The line of the route with ROUTE_ID (named ROUTE; "" or NULL for
 * requests that matched none) as a whole (PROVIDER NULL), or of its
 * target PROVIDER / MODEL / VARIANT ("" or NULL: none), made on first
 * use; only S's worker may call it. Past the per-worker limit on lines,
 * new ones all count into one of route "_overflow". Never NULL. */
stats_line_t *stats_line(stats_t *s, const char *route_id, const char *route, const char *provider,
                         const char *model, const char *variant);

/* Counts one request (a route's line) or attempt (a target's) that took MS
 * milliseconds, and whether it failed. Only the line's worker calls it. */
void stats_count(stats_line_t *l, int failed, double ms);

stats_view_t *stats_view_new(void);
void stats_view_free(stats_view_t *v);

/* Takes a snapshot of the lines of the N workers' S[] (the reader's
 * thread; call it every STATS_TICK_S seconds: the windows count in ticks). */
#define STATS_TICK_S 10
void stats_view_tick(stats_view_t *v, stats_t *const *s, int n, int64_t now);

/* The /v1/stats answer as of NOW: {"generated_at", "windows", "routes":
 * [{"route", "route_id", "stats": {"1m": {...}, "5m", "1h"}, "targets":
 * [{"provider", "model", "variant", "stats"}]}]}, each window's requests,
 * errors, rps, error_rate, p50_ms and p99_ms (null without requests); a
 * window longer than the history kept counts since SINCE (when the counts
 * started). Only routes for which SHOW(route id, ARG) says 1 (SHOW NULL: all). */
cJSON *stats_view_report(stats_view_t *v, stats_t *const *s, int n, int64_t now, int64_t since,
                         int (*show)(const char *route, void *arg), void *arg);

#endif
