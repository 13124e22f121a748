/* test_stats.c - per-route and per-target counts summed over workers into windows: counts from start-up, percentiles from the histogram, lines found by address and content. */
#include "../../src/stats.c"
#include "unit.h"

/* The window W of the route with ROUTE_ID in REPORT (its own line when
 * PROVIDER is NULL), or NULL. */
static const cJSON *window_of(const cJSON *report, const char *route_id, const char *provider, const char *w)
{
    const cJSON *r, *t;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(report, "routes")) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(r, "route_id"));
        if (id == NULL || strcmp(id, route_id) != 0)
            continue;
        if (provider == NULL)
            return cJSON_GetObjectItem(cJSON_GetObjectItem(r, "stats"), w);
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(r, "targets"))
            if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(t, "provider")), provider) == 0)
                return cJSON_GetObjectItem(cJSON_GetObjectItem(t, "stats"), w);
    }
    return NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static int only_b(const char *route_id, void *arg)
{
    (void)arg;
    return strcmp(route_id, "id-b") == 0;
}

int main(void)
{
    stats_t *w[2] = { stats_new(), stats_new() };
    stats_view_t *v = stats_view_new();
    char model[8] = "m1", other[8] = "m1";
    const cJSON *x;
    cJSON *rep;
    int64_t t0 = 1700000000;

    /* buckets: two per doubling from 64 us */
    CHECK(bucket_of(0) == 0 && bucket_of(63) == 0 && bucket_of(64) == 0 && bucket_of(91) == 1 && bucket_of(128) == 2);
    CHECK(bucket_of(1000000000) == NB - 1);

    /* the same line whatever the address of its parts; a reused address with other text is another line */
    stats_line_t *a = stats_line(w[0], "id-a", "a", "p1", model, NULL);
    CHECK(stats_line(w[0], "id-a", "a", "p1", other, "") == a);
    strcpy(model, "m2");
    CHECK(stats_line(w[0], "id-a", "a", "p1", model, NULL) != a);
    strcpy(model, "m1");
    CHECK(stats_line(w[0], "id-a", "a", "p1", model, NULL) == a);

    /* counted before the first snapshot: not lost (counts start at 0 with the process) */
    for (int i = 0; i < 4; i++) {
        stats_count(stats_line(w[i % 2], "id-a", "a", NULL, NULL, NULL), i == 3, 10.0);   /* 10 ms */
        stats_count(stats_line(w[i % 2], "id-a", "a", "p1", "m1", NULL), i >= 2, 5.0);
    }
    stats_view_tick(v, w, 2, t0);
    rep = stats_view_report(v, w, 2, t0 + 2, t0 - 2, NULL, NULL);
    x = window_of(rep, "id-a", NULL, "1m");
    CHECK(x != NULL && num(x, "requests") == 4 && num(x, "errors") == 1 && num(x, "error_rate") == 0.25);
    CHECK(num(x, "rps") == 1);                                   /* 4 requests in the 4 s since start */
    CHECK(num(x, "p50_ms") > 8 && num(x, "p50_ms") < 12.5 && num(x, "p99_ms") == num(x, "p50_ms"));
    x = window_of(rep, "id-a", "p1", "1h");
    CHECK(x != NULL && num(x, "requests") == 4 && num(x, "errors") == 2);
    cJSON_Delete(rep);

    /* a minute on: the 1 m window starts at the snapshot a minute old, the 1 h one still at start-up */
    for (int i = 0; i < 6; i++)                                   /* ticks every 10 s, no traffic */
        stats_view_tick(v, w, 2, t0 + 10 * (i + 1));
    stats_count(stats_line(w[1], "id-a", "a", NULL, NULL, NULL), 0, 1000.0);   /* one of 1 s */
    rep = stats_view_report(v, w, 2, t0 + 65, t0 - 2, NULL, NULL);
    x = window_of(rep, "id-a", NULL, "1m");
    CHECK(x != NULL && num(x, "requests") == 1 && num(x, "errors") == 0 && num(x, "p50_ms") > 800);
    x = window_of(rep, "id-a", NULL, "1h");
    CHECK(x != NULL && num(x, "requests") == 5 && num(x, "errors") == 1);
    x = window_of(rep, "id-a", NULL, "5m");
    CHECK(x != NULL && num(x, "requests") == 5);
    cJSON_Delete(rep);

    /* no requests in a window: its rates and percentiles are null */
    for (int i = 7; i <= 14; i++)
        stats_view_tick(v, w, 2, t0 + 10 * i);
    rep = stats_view_report(v, w, 2, t0 + 140, t0 - 2, NULL, NULL);
    x = window_of(rep, "id-a", NULL, "1m");
    CHECK(x != NULL && num(x, "requests") == 0 && cJSON_IsNull(cJSON_GetObjectItem(x, "p99_ms")) &&
          cJSON_IsNull(cJSON_GetObjectItem(x, "error_rate")));
    cJSON_Delete(rep);

    /* a filter shows only what it lets through */
    stats_count(stats_line(w[0], "id-b", "b", NULL, NULL, NULL), 0, 1.0);
    rep = stats_view_report(v, w, 2, t0 + 141, t0 - 2, only_b, NULL);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(rep, "routes")) == 1 && window_of(rep, "id-b", NULL, "1m") != NULL &&
          window_of(rep, "id-a", NULL, "1m") == NULL);
    cJSON_Delete(rep);

    stats_view_free(v);
    stats_free(w[0]);
    stats_free(w[1]);
    DONE();
}
