/* metrics.h - Prometheus metrics: per-worker labelled series, merged only when /metrics is read. */
#ifndef TURNOUT_METRICS_H
#define TURNOUT_METRICS_H

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
