/* metrics.h - Prometheus metrics: per-worker labelled series, merged only when /metrics is read. */
#ifndef TURNOUT_METRICS_H
#define TURNOUT_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct gateway;

/* The labelled families a worker counts into (their names, help texts and
 * label names are in metrics.c). */
typedef enum {
    M_REQUESTS,          /* counter   endpoint, route, provider, status */
    M_DURATION,          /* histogram endpoint, route: request start to last byte */
    M_TTFB,              /* histogram provider, model: attempt start to the upstream's first byte */
    M_ATTEMPTS,          /* counter   provider, model, result ("ok" or an error code) */
    M_RETRIES,           /* counter   provider, model: 429s tried again after Retry-After */
    M_FAILOVERS,         /* counter   route, reason: moved on to the next candidate */
    M_SKIPS,             /* counter   provider, model, reason: candidates passed over */
    M_COOLDOWNS,         /* counter   provider, model: cooldowns started */
    M_ROUTE_IN_FLIGHT,   /* gauge     route: requests being served */
    M_TARGET_IN_FLIGHT,  /* gauge     route, provider, model: upstream attempts open */
    M_AB,                /* counter   route, variant */
    M_CONNECTIONS,       /* gauge     (none): open client connections */
    M_TOKENS,            /* counter   route, provider, model, type (prompt, completion, cached) */
    M_COST,              /* counter   route, provider, model: nano-USD, shown as USD */
    M_BUDGET_ALERTS,     /* counter   budget: alert budgets that reached their limit (once a window) */
    M__COUNT
} metric_t;

typedef struct series series_t;     /* one label set of one family */
typedef struct metrics metrics_t;   /* one worker's series */

metrics_t *metrics_new(void);
void metrics_free(metrics_t *m);

/* The series of family F with label values V1.. (NULL reads as "", unused
 * ones are ignored), created on first use. Only M's worker may call it.
 * Never NULL: past the per-worker limit on series, new label sets all
 * count into one whose values are "_overflow" (and out of memory, into a
 * static sink that is never shown). */
series_t *metrics_series(metrics_t *m, metric_t f, const char *v1, const char *v2, const char *v3,
                         const char *v4);

/* A memo of what the request path finds by the same labels on every
 * request (series, tally slots), kept per thread in an array of these:
 * one entry per metrics_t, store generation GEN, two records or strings
 * of that generation A and B, and a label TEXT that may be no record's
 * (a model passed through), compared by value. */
#define METRICS_MEMO_SLOTS 6
typedef struct metrics_memo {
    size_t gen;                   /* 0: empty */
    const metrics_t *m;
    const void *a, *b;
    char text[128];
    void *slot[METRICS_MEMO_SLOTS];
} metrics_memo_t;

/* The entry of MEMO (N entries) for these keys: 1 when it holds them (its
 * slots are the caller's from before), else 0 with *OUT set to these keys
 * and empty slots for the caller to fill: an entry of MEMO, or SCRATCH
 * when they cannot be kept (GEN 0: records of their own; TEXT too long). */
int metrics_memo(metrics_memo_t *memo, int n, metrics_memo_t *scratch, const metrics_t *m, size_t gen, const void *a,
                 const void *b, const char *text, metrics_memo_t **out);

/* Counters and gauges: adds D. Histograms: records one observation of
 * SECONDS. Only the owning worker writes; any thread may read. */
void metrics_add(series_t *s, int64_t d);
void metrics_observe(series_t *s, double seconds);

/* Counts of the config reloads SIGHUP asked for (main thread). */
void metrics_reloaded(int ok);

/* Appends the whole exposition (every worker's series merged, the shared
 * upstream state, build info) to OUT. */
void metrics_render(const struct gateway *gw, struct evbuffer *out);

#endif
