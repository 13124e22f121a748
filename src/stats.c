/* stats.c - requests, errors and latency per route and per target: running counts each worker keeps, turned into 1 min / 5 min / 1 h figures by one reader.
 *
 * A worker keeps one line per route (its requests, end to end) and per
 * target of a route (its attempts): a count, a count of failures and a
 * latency histogram, each only ever growing, written by that worker alone
 * (relaxed stores, no lock) and read by the admin thread. Lines are made
 * on first use, found again through the worker's own hash table, and
 * published on a list the reader walks.
 *
 * The reader takes a snapshot of every line, summed over the workers,
 * every STATS_TICK_S seconds, and keeps the last five minutes of them and
 * one every five minutes for an hour. A window's figures are what the
 * counts grew by since the snapshot that starts it (since the process
 * started, while there is not that much history yet: counts start at 0,
 * so nothing counted before the first snapshot is lost); its percentiles come from the
 * histogram's growth: 2 buckets per doubling, from 64 us to 2 min, so a
 * percentile is good to about 20%. */
#include "stats.h"
#include "tally.h"
#include "text.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NB 44                      /* latency buckets: 64 us * 2^(i/2) up, the last open-ended */
#define NBUCKETS 1024              /* a worker's hash table (chained) */
#define MAX_LINES 4096             /* per worker; more count into route "_overflow" */

struct stats_line {
    _Atomic uint64_t n, failed, hist[NB];
    uint64_t hash;
    stats_line_t *next;            /* in its bucket (the worker's) */
    _Atomic(stats_line_t *) later; /* the list the reader walks, newest first */
    const char *route_id, *provider, *model, *variant, *route;   /* into key */
    size_t klen;
    char key[];                    /* route id \037 provider \037 model \037 variant, then these four and the
                                    * route's name, each NUL-terminated */
};

#define MEMO 64

/* A line found before, by the addresses its parts had then. */
typedef struct memo {
    const char *part[4];
    stats_line_t *l;
} memo_t;

struct stats {
    memo_t memo[MEMO];             /* hashing the key took ~800 instructions a call; a hit, ~100 */
    stats_line_t *bucket[NBUCKETS];
    _Atomic(stats_line_t *) all;
    int nlines;
    stats_line_t *overflow;
};

stats_t *stats_new(void)
{
    return calloc(1, sizeof(stats_t));
}

void stats_free(stats_t *s)
{
    if (s == NULL)
        return;
    for (stats_line_t *l = atomic_load(&s->all), *next; l != NULL; l = next) {
        next = atomic_load_explicit(&l->later, memory_order_relaxed);
        free(l);
    }
    free(s);
}

static stats_line_t *make(stats_t *s, const char *key, size_t klen, uint64_t h, const char *const part[5])
{
    size_t size = sizeof(stats_line_t) + klen + 1, at = klen + 1;
    stats_line_t *l;
    const char **field[5];
    for (int i = 0; i < 5; i++)
        size += strlen(part[i]) + 1;
    if ((l = calloc(1, size)) == NULL)
        return NULL;
    field[0] = &l->route_id, field[1] = &l->provider, field[2] = &l->model, field[3] = &l->variant;
    field[4] = &l->route;
    memcpy(l->key, key, klen + 1);
    l->klen = klen;
    l->hash = h;
    for (int i = 0; i < 5; i++) {
        size_t n = strlen(part[i]) + 1;
        memcpy(l->key + at, part[i], n);
        *field[i] = l->key + at;
        at += n;
    }
    l->next = s->bucket[h & (NBUCKETS - 1)];
    s->bucket[h & (NBUCKETS - 1)] = l;
    atomic_store_explicit(&l->later, atomic_load_explicit(&s->all, memory_order_relaxed), memory_order_relaxed);
    atomic_store_explicit(&s->all, l, memory_order_release);   /* whole before the reader can see it */
    s->nlines++;
    return l;
}

stats_line_t *stats_line(stats_t *s, const char *route_id, const char *route, const char *provider,
                         const char *model, const char *variant)
{
    static stats_line_t sink;      /* out of memory: counted nowhere anyone reads */
    const char *part[5] = { route_id ? route_id : "", provider ? provider : "", model ? model : "",
                            variant ? variant : "", route ? route : "" };
    char key[1024];
    size_t klen = 0;
    uint64_t h;
    stats_line_t *l;
    memo_t *m = &s->memo[(((uintptr_t)part[0] ^ (uintptr_t)part[1] ^ (uintptr_t)part[2] ^ (uintptr_t)part[3]) >> 4) %
                         MEMO];
    /* the same addresses as before, checked by content: a freed and reused
     * address (a record of a later store generation) never counts into
     * another line */
    if (m->l != NULL && m->part[0] == part[0] && m->part[1] == part[1] && m->part[2] == part[2] &&
        m->part[3] == part[3] && strcmp(m->l->route_id, part[0]) == 0 && strcmp(m->l->provider, part[1]) == 0 &&
        strcmp(m->l->model, part[2]) == 0 && strcmp(m->l->variant, part[3]) == 0)
        return m->l;
    if (text_append(key, sizeof(key), &klen, part[0], "\037", part[1], "\037", part[2], "\037", part[3], NULL) != 0)
        return &sink;              /* (names are bounded far below this by the store's validation) */
    h = tally_hash(key);
    for (l = s->bucket[h & (NBUCKETS - 1)]; l != NULL; l = l->next)
        if (l->hash == h && l->klen == klen && memcmp(l->key, key, klen) == 0)
            break;
    if (l != NULL) {
        memcpy(m->part, part, sizeof(m->part));
        m->l = l;
        return l;
    }
    if (s->nlines >= MAX_LINES) {
        if (s->overflow == NULL) {
            static const char *const over[5] = { "_overflow", "", "", "", "_overflow" };
            s->overflow = make(s, "_overflow\037\037\037", 12, tally_hash("_overflow\037\037\037"), over);
        }
        return s->overflow != NULL ? s->overflow : &sink;
    }
    l = make(s, key, klen, h, part);
    return l != NULL ? l : &sink;
}

static void bump(_Atomic uint64_t *c)
{
    /* one writer: a plain read and store, no locked add */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* The bucket of a latency of US microseconds: two per doubling from 64 us. */
static int bucket_of(uint64_t us)
{
    int b, i;
    if (us < 64)
        return 0;
    b = 63 - __builtin_clzll(us);                         /* 2^b <= us < 2^(b+1) */
    i = 2 * (b - 6) + (us >= ((uint64_t)181 << b) / 128);  /* 181/128 ~ sqrt(2): the upper half-step */
    return i < NB ? i : NB - 1;
}

/* The lower bound of bucket I, in milliseconds. */
static double bucket_low_ms(int i)
{
    return 0.064 * pow(2.0, i / 2) * (i % 2 ? 1.4142 : 1.0);
}

void stats_count(stats_line_t *l, int failed, double ms)
{
    bump(&l->n);
    if (failed)
        bump(&l->failed);
    bump(&l->hist[bucket_of(ms > 0 ? (uint64_t)(ms * 1000.0) : 0)]);
}

/* ---- the reader ---------------------------------------------------------- */

#define COLS (2 + NB)              /* a snapshot row: n, failed, hist */
#define RECENT 31                  /* one a tick: 5 minutes and the one before */
#define HOURLY 13                  /* one each 5 minutes: an hour and the one before */

typedef struct row_key {           /* a line of any worker, by its key */
    char *key;                     /* route id \037 provider \037 model \037 variant, then the route's name */
    const char *route_id, *provider, *model, *variant, *route;   /* into key's copy, cut at the separators */
    uint64_t hash;
} row_key_t;

typedef struct snapshot {
    int64_t t;                     /* 0: empty */
    size_t nrows;
    uint64_t (*rows)[COLS];
} snapshot_t;

struct stats_view {
    row_key_t *keys;
    size_t nkeys, capkeys;
    size_t *index;                 /* open addressing into keys: +1, 0 for empty */
    size_t capindex;               /* a power of two */
    snapshot_t recent[RECENT], hourly[HOURLY];
    int nrecent, nhourly;          /* the next slot to fill (rings) */
    int64_t last_hourly;
};

stats_view_t *stats_view_new(void)
{
    return calloc(1, sizeof(stats_view_t));
}

void stats_view_free(stats_view_t *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->nkeys; i++)
        free(v->keys[i].key);
    free(v->keys);
    free(v->index);
    for (int i = 0; i < RECENT; i++)
        free(v->recent[i].rows);
    for (int i = 0; i < HOURLY; i++)
        free(v->hourly[i].rows);
    free(v);
}

/* The row of line L's key, made when new; (size_t)-1 when out of memory. */
static size_t row_of(stats_view_t *v, const stats_line_t *l)
{
    size_t i, klen = l->klen, nlen = strlen(l->route);
    row_key_t *rk;
    char *p;
    if ((v->nkeys + 1) * 2 > v->capindex) {            /* grow the index: at most half full */
        size_t cap = v->capindex ? v->capindex * 2 : 256, *ix = calloc(cap, sizeof(size_t));
        if (ix == NULL)
            return (size_t)-1;
        for (size_t j = 0; j < v->nkeys; j++) {
            for (i = v->keys[j].hash & (cap - 1); ix[i] != 0; i = (i + 1) & (cap - 1))
                ;
            ix[i] = j + 1;
        }
        free(v->index);
        v->index = ix;
        v->capindex = cap;
    }
    for (i = l->hash & (v->capindex - 1); v->index[i] != 0; i = (i + 1) & (v->capindex - 1)) {
        rk = &v->keys[v->index[i] - 1];
        if (rk->hash == l->hash && strlen(rk->key) == klen && memcmp(rk->key, l->key, klen) == 0)
            return v->index[i] - 1;
    }
    if (v->nkeys == v->capkeys) {
        size_t cap = v->capkeys ? v->capkeys * 2 : 64;
        row_key_t *keys = realloc(v->keys, cap * sizeof(row_key_t));
        if (keys == NULL)
            return (size_t)-1;
        v->keys = keys;
        v->capkeys = cap;
    }
    rk = &v->keys[v->nkeys];
    /* the key, then a copy of the line's five parts: its NUL-terminated strings after the key */
    if ((rk->key = malloc(2 * (klen + 1) + nlen + 1)) == NULL)
        return (size_t)-1;
    memcpy(rk->key, l->key, klen);
    rk->key[klen] = '\0';
    p = rk->key + klen + 1;
    rk->route_id = p, p = stpcpy(p, l->route_id) + 1;
    rk->provider = p, p = stpcpy(p, l->provider) + 1;
    rk->model = p, p = stpcpy(p, l->model) + 1;
    rk->variant = p, p = stpcpy(p, l->variant) + 1;
    rk->route = p, stpcpy(p, l->route);
    rk->hash = l->hash;
    v->index[i] = ++v->nkeys;
    return v->nkeys - 1;
}

/* Every worker's lines summed into *SNAP (its rows by the view's keys). */
static void take(stats_view_t *v, stats_t *const *s, int n, int64_t now, snapshot_t *snap)
{
    snap->t = 0;
    for (int w = 0; w < n; w++) {
        if (s[w] == NULL)
            continue;
        for (stats_line_t *l = atomic_load_explicit(&s[w]->all, memory_order_acquire); l != NULL;
             l = atomic_load_explicit(&l->later, memory_order_acquire))
            (void)row_of(v, l);
    }
    if (snap->nrows < v->nkeys || snap->rows == NULL) {
        uint64_t (*rows)[COLS] = realloc(snap->rows, (v->nkeys ? v->nkeys : 1) * sizeof(*rows));
        if (rows == NULL)
            return;
        snap->rows = rows;
    }
    snap->nrows = v->nkeys;
    memset(snap->rows, 0, snap->nrows * sizeof(*snap->rows));
    for (int w = 0; w < n; w++) {
        if (s[w] == NULL)
            continue;
        for (stats_line_t *l = atomic_load_explicit(&s[w]->all, memory_order_acquire); l != NULL;
             l = atomic_load_explicit(&l->later, memory_order_acquire)) {
            size_t r = row_of(v, l);
            if (r == (size_t)-1 || r >= snap->nrows)
                continue;
            snap->rows[r][0] += atomic_load_explicit(&l->n, memory_order_relaxed);
            snap->rows[r][1] += atomic_load_explicit(&l->failed, memory_order_relaxed);
            for (int b = 0; b < NB; b++)
                snap->rows[r][2 + b] += atomic_load_explicit(&l->hist[b], memory_order_relaxed);
        }
    }
    snap->t = now;
}

void stats_view_tick(stats_view_t *v, stats_t *const *s, int n, int64_t now)
{
    take(v, s, n, now, &v->recent[v->nrecent]);
    v->nrecent = (v->nrecent + 1) % RECENT;
    if (v->last_hourly == 0 || now - v->last_hourly >= 300) {
        take(v, s, n, now, &v->hourly[v->nhourly]);
        v->nhourly = (v->nhourly + 1) % HOURLY;
        v->last_hourly = now;
    }
}

/* The snapshot that starts a window of SECONDS before NOW: the newest at or
 * before its start (NULL: none is that old). */
static const snapshot_t *start_of(const stats_view_t *v, int64_t now, int64_t seconds)
{
    const snapshot_t *best = NULL;
    const snapshot_t *sets[2] = { v->recent, v->hourly };
    int lens[2] = { RECENT, HOURLY };
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < lens[k]; i++) {
            const snapshot_t *sn = &sets[k][i];
            if (sn->t == 0 || sn->t >= now)
                continue;
            if (sn->t <= now - seconds && (best == NULL || sn->t > best->t))
                best = sn;
        }
    return best;
}

/* The latency at fraction Q of the growth D (the histogram part) in ms: the
 * middle of the bucket it falls in. */
static double percentile(const uint64_t *d, uint64_t total, double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)total), seen = 0;
    for (int b = 0; b < NB; b++) {
        seen += d[b];
        if (seen >= want && d[b] > 0)
            return b == NB - 1 ? bucket_low_ms(b) : sqrt(bucket_low_ms(b) * bucket_low_ms(b + 1));
    }
    return bucket_low_ms(NB - 1);
}

static cJSON *window(const uint64_t *now_row, const uint64_t *then_row, double seconds)
{
    cJSON *o = cJSON_CreateObject();
    uint64_t d[COLS];
    for (int c = 0; c < COLS; c++)
        d[c] = now_row[c] - (then_row != NULL ? then_row[c] : 0);
    cJSON_AddNumberToObject(o, "requests", (double)d[0]);
    cJSON_AddNumberToObject(o, "errors", (double)d[1]);
    cJSON_AddNumberToObject(o, "rps", round((double)d[0] / (seconds >= 1 ? seconds : 1) * 1000.0) / 1000.0);
    if (d[0] == 0) {
        cJSON_AddNullToObject(o, "error_rate");
        cJSON_AddNullToObject(o, "p50_ms");
        cJSON_AddNullToObject(o, "p99_ms");
    } else {
        cJSON_AddNumberToObject(o, "error_rate", round((double)d[1] / (double)d[0] * 10000.0) / 10000.0);
        cJSON_AddNumberToObject(o, "p50_ms", round(percentile(d + 2, d[0], 0.50) * 1000.0) / 1000.0);
        cJSON_AddNumberToObject(o, "p99_ms", round(percentile(d + 2, d[0], 0.99) * 1000.0) / 1000.0);
    }
    return o;
}

static cJSON *windows(const snapshot_t *cur, const snapshot_t *const start[3], int64_t since, size_t r)
{
    static const char *const names[3] = { "1m", "5m", "1h" };
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < 3; i++) {
        const uint64_t *then = start[i] != NULL && r < start[i]->nrows ? start[i]->rows[r] : NULL;
        double secs = (double)(cur->t - (start[i] != NULL ? start[i]->t : since));
        cJSON_AddItemToObject(o, names[i], window(cur->rows[r], then, secs));
    }
    return o;
}

static int by_key(const void *a, const void *b, void *arg)
{
    const stats_view_t *v = arg;
    return strcmp(v->keys[*(const size_t *)a].key, v->keys[*(const size_t *)b].key);
}

cJSON *stats_view_report(stats_view_t *v, stats_t *const *s, int n, int64_t now, int64_t since,
                         int (*show)(const char *route, void *arg), void *arg)
{
    static const int64_t span[3] = { 60, 300, 3600 };
    snapshot_t cur = { 0 };
    const snapshot_t *start[3];
    cJSON *out = cJSON_CreateObject(), *routes, *wins, *route = NULL;
    const char *route_id = NULL;
    size_t *order;
    char iso[32];
    time_t t = (time_t)now;
    struct tm tm;
    take(v, s, n, now, &cur);
    for (int i = 0; i < 3; i++)
        start[i] = start_of(v, now, span[i]);
    if (gmtime_r(&t, &tm) != NULL && strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0)
        cJSON_AddStringToObject(out, "generated_at", iso);
    wins = cJSON_AddArrayToObject(out, "windows");
    cJSON_AddItemToArray(wins, cJSON_CreateString("1m"));
    cJSON_AddItemToArray(wins, cJSON_CreateString("5m"));
    cJSON_AddItemToArray(wins, cJSON_CreateString("1h"));
    routes = cJSON_AddArrayToObject(out, "routes");
    if (cur.t == 0 || (order = malloc((cur.nrows ? cur.nrows : 1) * sizeof(size_t))) == NULL) {
        free(cur.rows);
        return out;
    }
    for (size_t r = 0; r < cur.nrows; r++)
        order[r] = r;
    /* by key: a route's own line ("route\037\037\037") before its targets' */
    qsort_r(order, cur.nrows, sizeof(size_t), by_key, v);
    for (size_t i = 0; i < cur.nrows; i++) {
        const row_key_t *k = &v->keys[order[i]];
        cJSON *tgt;
        if (show != NULL && !show(k->route_id, arg))
            continue;
        if (route == NULL || strcmp(route_id, k->route_id) != 0) {   /* the next route */
            route_id = k->route_id;
            route = cJSON_CreateObject();
            if (*k->route_id) {
                cJSON_AddStringToObject(route, "route", k->route);
                cJSON_AddStringToObject(route, "route_id", k->route_id);
            } else {                      /* requests that matched no route */
                cJSON_AddNullToObject(route, "route");
                cJSON_AddNullToObject(route, "route_id");
            }
            /* its own line sorts first ("id\037\037\037"); there is none yet while its first request is on */
            if (*k->provider == '\0')
                cJSON_AddItemToObject(route, "stats", windows(&cur, start, since, order[i]));
            else
                cJSON_AddNullToObject(route, "stats");
            cJSON_AddArrayToObject(route, "targets");
            cJSON_AddItemToArray(routes, route);
            if (*k->provider == '\0')
                continue;
        }
        tgt = cJSON_CreateObject();
        cJSON_AddStringToObject(tgt, "provider", k->provider);
        cJSON_AddStringToObject(tgt, "model", k->model);
        if (*k->variant)
            cJSON_AddStringToObject(tgt, "variant", k->variant);
        else
            cJSON_AddNullToObject(tgt, "variant");
        cJSON_AddItemToObject(tgt, "stats", windows(&cur, start, since, order[i]));
        cJSON_AddItemToArray(cJSON_GetObjectItem(route, "targets"), tgt);
    }
    free(order);
    free(cur.rows);
    return out;
}
