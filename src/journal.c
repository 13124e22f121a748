/* journal.c - the usage a worker counted, by hour, key, tenant, route, provider and model, handed to the keeper thread without a lock on the request path.
 *
 * A worker counts each request into its own batch: a hash table of rows,
 * their strings in an arena. Two batches cycle between the worker and the
 * keeper through two atomic pointers: on its beat the worker publishes a
 * non-empty batch in `ready` if the keeper has taken the last one, and
 * goes on in the `spare` one the keeper emptied and gave back (the keeper
 * copies the rows out and gives the batch back before it writes the
 * store). So a request costs a hash and a probe, and nothing is allocated
 * once each batch's table has grown to the rows a second brings: an
 * emptied batch keeps its table and arena. */
#include "journal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_ROWS 64              /* a power of two */
#define FIRST_ARENA 4096
#define KEY_MAX 2048               /* a row's strings, NULs included; longer ones are cut */

typedef struct row {
    uint64_t hash;                 /* 0: free */
    int64_t hour;
    size_t str, len;               /* its five strings in the arena, NUL after each */
    int64_t requests, prompt, completion, cost;
} row_t;

typedef struct batch {
    row_t *rows;
    size_t cap, n;
    char *arena;
    size_t acap, alen;
} batch_t;

struct journal {
    batch_t *active;               /* the worker's */
    _Atomic(batch_t *) ready;      /* published for the keeper */
    _Atomic(batch_t *) spare;      /* emptied by the keeper, for the worker */
};

static void batch_free(batch_t *b)
{
    if (b != NULL) {
        free(b->rows);
        free(b->arena);
        free(b);
    }
}

static batch_t *batch_new(void)
{
    batch_t *b = calloc(1, sizeof(*b));
    if (b != NULL && ((b->rows = calloc(FIRST_ROWS, sizeof(row_t))) == NULL ||
                      (b->arena = malloc(FIRST_ARENA)) == NULL)) {
        batch_free(b);
        return NULL;
    }
    if (b != NULL) {
        b->cap = FIRST_ROWS;
        b->acap = FIRST_ARENA;
    }
    return b;
}

static void batch_clear(batch_t *b)
{
    if (b->n > 0)
        memset(b->rows, 0, b->cap * sizeof(row_t));
    b->n = 0;
    b->alen = 0;
}

void journal_free(journal_t *j)
{
    if (j == NULL)
        return;
    batch_free(j->active);
    batch_free(atomic_exchange(&j->ready, NULL));
    batch_free(atomic_exchange(&j->spare, NULL));
    free(j);
}

journal_t *journal_new(void)
{
    journal_t *j = calloc(1, sizeof(*j));
    batch_t *spare;
    if (j == NULL)
        return NULL;
    /* both batches now: the cycle between worker and keeper allocates nothing */
    if ((j->active = batch_new()) == NULL || (spare = batch_new()) == NULL) {
        journal_free(j);
        return NULL;
    }
    atomic_store(&j->spare, spare);
    return j;
}


/* Eight bytes a step, then a final mix for the low bits the table uses: a
 * row's strings are some 100 bytes, and a byte a step was half of
 * journal_add's cost. */
static uint64_t hash_of(int64_t hour, const char *k, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)hour, w;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, k + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    w = 0;                             /* the tail; the length goes in with it */
    memcpy(&w, k + i, len - i);
    h = (h ^ w ^ ((uint64_t)len << 56)) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h ? h : 1;
}

/* Doubles B's table (the rows move, the arena stays). */
static int grow(batch_t *b)
{
    size_t cap = b->cap * 2;
    row_t *rows = calloc(cap, sizeof(row_t));
    if (rows == NULL)
        return -1;
    for (size_t i = 0; i < b->cap; i++) {
        size_t at;
        if (b->rows[i].hash == 0)
            continue;
        for (at = b->rows[i].hash & (cap - 1); rows[at].hash != 0; at = (at + 1) & (cap - 1))
            ;
        rows[at] = b->rows[i];
    }
    free(b->rows);
    b->rows = rows;
    b->cap = cap;
    return 0;
}

void journal_add(journal_t *j, int64_t hour, const char *key_id, const char *tenant, const char *route,
                 const char *provider, const char *model, int64_t prompt, int64_t completion, int64_t cost_nusd)
{
    const char *parts[5] = { key_id, tenant, route, provider, model };
    char key[KEY_MAX];
    size_t len = 0, at;
    uint64_t h;
    batch_t *b = j->active;
    row_t *r;
    for (int i = 0; i < 5; i++) {     /* the five strings, NUL after each */
        size_t n = parts[i] != NULL ? strlen(parts[i]) : 0;
        if (n > KEY_MAX / 5 - 1)
            n = KEY_MAX / 5 - 1;
        memcpy(key + len, parts[i] != NULL ? parts[i] : "", n);
        len += n;
        key[len++] = '\0';
    }
    h = hash_of(hour, key, len);
    for (at = h & (b->cap - 1);; at = (at + 1) & (b->cap - 1)) {
        r = &b->rows[at];
        if (r->hash == 0)
            break;
        if (r->hash == h && r->hour == hour && r->len == len && memcmp(b->arena + r->str, key, len) == 0)
            goto count;
    }
    if ((b->n + 1) * 2 > b->cap) {    /* a new row: room first */
        if (grow(b) < 0)
            return;
        for (at = h & (b->cap - 1); b->rows[at].hash != 0; at = (at + 1) & (b->cap - 1))
            ;
        r = &b->rows[at];
    }
    if (b->alen + len > b->acap) {
        size_t acap = b->acap * 2;
        char *arena;
        while (acap < b->alen + len)
            acap *= 2;
        if ((arena = realloc(b->arena, acap)) == NULL)
            return;
        b->arena = arena;
        b->acap = acap;
    }
    memcpy(b->arena + b->alen, key, len);
    r->hash = h;
    r->hour = hour;
    r->str = b->alen;
    r->len = len;
    b->alen += len;
    b->n++;
count:
    r->requests++;
    r->prompt += prompt > 0 ? prompt : 0;
    r->completion += completion > 0 ? completion : 0;
    r->cost += cost_nusd > 0 ? cost_nusd : 0;
}

void journal_publish(journal_t *j)
{
    batch_t *next, *none = NULL;
    if (j->active->n == 0)
        return;
    if (!atomic_compare_exchange_strong(&j->ready, &none, j->active))
        return;                           /* the keeper has not taken the last one: go on counting */
    if ((next = atomic_exchange(&j->spare, NULL)) == NULL && (next = batch_new()) == NULL) {
        /* out of memory: take the batch back and go on in it */
        j->active = atomic_exchange(&j->ready, NULL);
        return;
    }
    j->active = next;
}

/* The rows of B to FN, as the store takes them. */
static int give(batch_t *b, void (*fn)(const store_usage_t *row, void *arg), void *arg)
{
    static _Thread_local store_usage_t u;  /* (2 KB: not on the stack of every call) */
    char *out[5] = { u.key_id, u.tenant, u.route, u.provider, u.model };
    size_t cap[5] = { sizeof(u.key_id), sizeof(u.tenant), sizeof(u.route), sizeof(u.provider), sizeof(u.model) };
    int n = 0;
    for (size_t i = 0; i < b->cap; i++) {
        const row_t *r = &b->rows[i];
        const char *s;
        if (r->hash == 0)
            continue;
        s = b->arena + r->str;
        for (int k = 0; k < 5; k++) {
            size_t l = strlen(s);
            size_t c = l < cap[k] ? l : cap[k] - 1;
            memcpy(out[k], s, c);
            out[k][c] = '\0';
            s += l + 1;
        }
        u.hour = r->hour;
        u.requests = r->requests;
        u.prompt_tokens = r->prompt;
        u.completion_tokens = r->completion;
        u.cost_nusd = r->cost;
        fn(&u, arg);
        n++;
    }
    return n;
}

int journal_take(journal_t *j, int all, void (*fn)(const store_usage_t *row, void *arg), void *arg)
{
    batch_t *b = atomic_exchange(&j->ready, NULL);
    int n = 0;
    if (b != NULL) {
        n += give(b, fn, arg);
        batch_clear(b);
        /* back before the store is written: the worker's next beat finds it (if it
         * made one of its own meanwhile, that one is dropped here) */
        batch_free(atomic_exchange(&j->spare, b));
    }
    if (all && j->active->n > 0) {
        n += give(j->active, fn, arg);
        batch_clear(j->active);
    }
    return n;
}
