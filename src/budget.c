/* budget.c - the budgets of the store, compiled once per store generation for a worker, found by the scope a request's attempt is in.
 *
 * A worker reads its budgets as a table of plain C structs, made when the
 * store has changed (a new generation of its reader's cache) and indexed
 * by scope key, so an attempt finds what applies to it with a hash probe
 * per scope, and a store with no budget costs one comparison. The amounts
 * spent are not here: they are the ledger's, shared by all workers and
 * kept across generations (a budget's entry is named by its id, so an
 * edit of its limits keeps what it has spent). */
#include "budget.h"
#include "schema.h"
#include "tally.h"
#include "text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct budgets {
    size_t gen;                    /* the generation compiled; 0 before the first */
    int n;
    int per_scope[BS__COUNT];      /* how many of each scope kind: a kind with none is not looked up */
    budget_t **all;                /* the N budgets */
    budget_t **bucket;             /* NBUCKETS chains by scope key */
    size_t nbuckets;               /* a power of two */
};

budgets_t *budgets_new(void)
{
    return calloc(1, sizeof(budgets_t));
}

static void clear(budgets_t *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->all[i]);
    free(b->all);
    free(b->bucket);
    b->all = b->bucket = NULL;
    b->n = 0;
    memset(b->per_scope, 0, sizeof(b->per_scope));
    b->nbuckets = 0;
}

void budgets_free(budgets_t *b)
{
    if (b == NULL)
        return;
    clear(b);
    free(b);
}

int budgets_count(const budgets_t *b)
{
    return b != NULL ? b->n : 0;
}

char *budget_scope_key(budget_scope_t s, const char *a, const char *b, const char *c, char *buf, size_t cap)
{
    static const char *const prefix[BS__COUNT] = { "target:", "provider:", "route:", "key:", "tenant:", "global" };
    size_t len = 0;
    buf[0] = '\0';
    if (s == BS_TARGET)
        return text_append(buf, cap, &len, prefix[s], a, "\037", b, "\037", c, NULL) == 0 ? buf : NULL;
    if (s == BS_GLOBAL)
        return text_append(buf, cap, &len, prefix[s], NULL) == 0 ? buf : NULL;
    return text_append(buf, cap, &len, prefix[s], a, NULL) == 0 ? buf : NULL;
}

int budgets_in_scope(const budgets_t *b, budget_scope_t s)
{
    return b != NULL && b->per_scope[s] > 0;
}

/* The scope of REC and its key. */
static int record_scope(const cJSON *rec, budget_scope_t *s, char *buf, size_t cap)
{
    static const char *const names[] = { "target", "provider", "route", "key", "tenant" };
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(rec, "scope"), *v;
    if (cJSON_IsString(sc) && strcmp(sc->valuestring, "global") == 0) {
        *s = BS_GLOBAL;
        return budget_scope_key(BS_GLOBAL, NULL, NULL, NULL, buf, cap) != NULL ? 0 : -1;
    }
    if (!cJSON_IsObject(sc) || (v = sc->child) == NULL || v->string == NULL)
        return -1;
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
        if (strcmp(v->string, names[i]) != 0)
            continue;
        *s = (budget_scope_t)i;
        if (i == BS_TARGET)
            return budget_scope_key(BS_TARGET, schema_str(v, "route", ""), schema_str(v, "provider", ""),
                                    schema_str(v, "model", ""), buf, cap) != NULL ? 0 : -1;
        return cJSON_IsString(v) && budget_scope_key(*s, v->valuestring, NULL, NULL, buf, cap) != NULL ? 0 : -1;
    }
    return -1;
}

char *budget_record_key(const cJSON *rec, char *buf, size_t cap)
{
    budget_scope_t s;
    return record_scope(rec, &s, buf, cap) == 0 ? buf : NULL;
}

void budget_record_limits(const cJSON *rec, int64_t limit[LEDGER__N], win_kind_t *window)
{
    const cJSON *usd = cJSON_GetObjectItemCaseSensitive(rec, "limit_usd");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(rec, "limit_tokens");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(rec, "limit_requests");
    limit[LEDGER_USD] = cJSON_IsNumber(usd) ? (int64_t)llround(usd->valuedouble * 1e9) : -1;
    limit[LEDGER_TOKENS] = cJSON_IsNumber(tok) ? (int64_t)tok->valuedouble : -1;
    limit[LEDGER_REQUESTS] = cJSON_IsNumber(req) ? (int64_t)req->valuedouble : -1;
    if ((*window = ledger_window_kind(schema_str(rec, "window", "total"))) == 0)
        *window = WIN_TOTAL;
}

typedef struct compiling {
    budget_t **all;
    int n, cap, failed;
} compiling_t;

static void compile_one(const cJSON *rec, void *arg)
{
    compiling_t *c = arg;
    char key[1200], ename[48];
    budget_scope_t s;
    budget_t *bg;
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(rec, "enabled");
    const char *id = schema_str(rec, "id", "");
    size_t klen;
    if (c->failed || cJSON_IsFalse(en) || record_scope(rec, &s, key, sizeof(key)) < 0 || strlen(id) >= 40)
        return;
    klen = strlen(key) + 1;
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        budget_t **more = realloc(c->all, (size_t)cap * sizeof(*more));
        if (more == NULL) {
            c->failed = 1;
            return;
        }
        c->all = more;
        c->cap = cap;
    }
    snprintf(ename, sizeof(ename), "b:%s", id);
    if ((bg = calloc(1, sizeof(*bg) + klen)) == NULL || (bg->e = ledger_get(ename)) == NULL) {
        free(bg);
        c->failed = 1;
        return;
    }
    snprintf(bg->id, sizeof(bg->id), "%s", id);
    snprintf(bg->name, sizeof(bg->name), "%s", schema_str(rec, "name", ""));
    bg->scope = s;
    budget_record_limits(rec, bg->limit, &bg->window);
    bg->alert = strcmp(schema_str(rec, "action_on_exhaust", "block"), "alert") == 0;
    memcpy(bg->scope_key, key, klen);
    bg->hash = tally_hash(key);
    c->all[c->n++] = bg;
}

void budgets_refresh(budgets_t *b, store_reader_t *r, size_t gen)
{
    compiling_t c = { 0 };
    size_t nb = 16;
    budget_t **bucket;
    if (gen != 0 && gen == b->gen)
        return;
    store_each(r, STORE_BUDGETS, compile_one, &c);
    while (nb < (size_t)c.n * 2)
        nb *= 2;
    if (c.failed || (bucket = calloc(nb, sizeof(*bucket))) == NULL) {
        for (int i = 0; i < c.n; i++)
            free(c.all[i]);
        free(c.all);
        return;                           /* out of memory: the old set stays (and is tried again) */
    }
    clear(b);
    for (int i = 0; i < c.n; i++) {
        budget_t *bg = c.all[i];
        bg->next = bucket[bg->hash & (nb - 1)];
        bucket[bg->hash & (nb - 1)] = bg;
        b->per_scope[bg->scope]++;
    }
    b->all = c.all;
    b->n = c.n;
    b->bucket = bucket;
    b->nbuckets = nb;
    b->gen = gen;
}

int budgets_each_in(const budgets_t *b, const char *key, int (*fn)(const budget_t *bg, void *arg), void *arg)
{
    uint64_t h;
    int rc;
    if (b == NULL || b->n == 0)
        return 0;
    h = tally_hash(key);
    for (const budget_t *bg = b->bucket[h & (b->nbuckets - 1)]; bg != NULL; bg = bg->next)
        if (bg->hash == h && strcmp(bg->scope_key, key) == 0 && (rc = fn(bg, arg)) != 0)
            return rc;
    return 0;
}

/* EPOCH as ISO 8601 UTC to BUF. */
static void iso(int64_t epoch, char *buf, size_t cap)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void budget_live_fields(const cJSON *rec, cJSON *out, budget_counts_fn counts)
{
    char name[48], when[32];
    int64_t limit[LEDGER__N], spent[LEDGER__N] = { 0 }, reserved[LEDGER__N] = { 0 }, start, end, now = time(NULL);
    win_kind_t window;
    ledger_entry_t *e;
    int exhausted = 0;
    snprintf(name, sizeof(name), "b:%s", schema_str(rec, "id", ""));
    budget_record_limits(rec, limit, &window);
    if (counts != NULL) {
        if (counts(name, ledger_window(window, now, NULL, NULL), spent) < 0)
            memset(spent, 0, sizeof(spent));
    } else if ((e = ledger_find(name)) != NULL) {
        ledger_read(e, window, now, spent, reserved);
    }
    ledger_window(window, now, &start, &end);
    for (int i = 0; i < LEDGER__N; i++)
        exhausted |= limit[i] >= 0 && spent[i] + reserved[i] >= limit[i];
    cJSON_AddNumberToObject(out, "spent_usd", (double)spent[LEDGER_USD] / 1e9);
    cJSON_AddNumberToObject(out, "spent_tokens", (double)spent[LEDGER_TOKENS]);
    cJSON_AddNumberToObject(out, "requests", (double)spent[LEDGER_REQUESTS]);
    if (window == WIN_TOTAL) {
        cJSON_AddNullToObject(out, "window_start");
        cJSON_AddNullToObject(out, "resets_at");
    } else {
        iso(start, when, sizeof(when));
        cJSON_AddStringToObject(out, "window_start", when);
        iso(end, when, sizeof(when));
        cJSON_AddStringToObject(out, "resets_at", when);
    }
    cJSON_AddBoolToObject(out, "exhausted", exhausted);
}

/* NAME as a Prometheus label value into BUF (backslash, quote and newline escaped). */
static const char *label(const char *name, char *buf, size_t cap)
{
    size_t n = 0;
    for (; *name && n + 3 < cap; name++) {
        if (*name == '\\' || *name == '"' || *name == '\n')
            buf[n++] = '\\';
        buf[n++] = *name == '\n' ? 'n' : *name;
    }
    buf[n] = '\0';
    return buf;
}

void budgets_render(const budgets_t *b, struct evbuffer *out)
{
    static const char *const kinds[LEDGER__N] = { "usd", "tokens", "requests" };
    int64_t now = time(NULL), spent[LEDGER__N], reserved[LEDGER__N];
    char name[300];
    if (b == NULL || b->n == 0)
        return;
    evbuffer_add_printf(out, "# HELP turnout_budget_spent_ratio What a budget holds (spent and reserved) over its "
                             "limit, in its current window.\n# TYPE turnout_budget_spent_ratio gauge\n");
    for (int i = 0; i < b->n; i++) {
        const budget_t *bg = b->all[i];
        ledger_read(bg->e, bg->window, now, spent, reserved);
        for (int k = 0; k < LEDGER__N; k++)
            if (bg->limit[k] > 0)
                evbuffer_add_printf(out, "turnout_budget_spent_ratio{budget=\"%s\",id=\"%s\",limit=\"%s\"} %.6f\n",
                                    label(bg->name, name, sizeof(name)), bg->id, kinds[k],
                                    (double)(spent[k] + reserved[k]) / (double)bg->limit[k]);
    }
    evbuffer_add_printf(out, "# HELP turnout_budget_exhausted 1 while a budget admits nothing more in its window.\n"
                             "# TYPE turnout_budget_exhausted gauge\n");
    for (int i = 0; i < b->n; i++) {
        const budget_t *bg = b->all[i];
        int ex = 0;
        ledger_read(bg->e, bg->window, now, spent, reserved);
        for (int k = 0; k < LEDGER__N; k++)
            ex |= bg->limit[k] >= 0 && spent[k] + reserved[k] >= bg->limit[k];
        evbuffer_add_printf(out, "turnout_budget_exhausted{budget=\"%s\",id=\"%s\"} %d\n",
                            label(bg->name, name, sizeof(name)), bg->id, ex);
    }
}

typedef struct explaining {
    cJSON *arr;
    int blocks;
    budget_counts_fn counts;
} explaining_t;

static int explain_one(const budget_t *bg, void *arg)
{
    static const char *const scope[BS__COUNT] = { "target", "provider", "route", "key", "tenant", "global" };
    static const char *const windows[] = { [WIN_TOTAL] = "total", [WIN_MINUTE] = "1m", [WIN_HOUR] = "1h",
                                           [WIN_DAY] = "1d", [WIN_WEEK] = "1w", [WIN_MONTH] = "1M" };
    explaining_t *x = arg;
    cJSON *o = cJSON_CreateObject(), *rec = cJSON_CreateObject();
    const cJSON *ex;
    int blocks;
    if (o == NULL || rec == NULL) {
        cJSON_Delete(o);
        cJSON_Delete(rec);
        return 0;
    }
    /* the live fields, from the compiled budget as a record would give them */
    cJSON_AddStringToObject(rec, "id", bg->id);
    cJSON_AddStringToObject(rec, "window", windows[bg->window]);
    if (bg->limit[LEDGER_USD] >= 0)
        cJSON_AddNumberToObject(rec, "limit_usd", (double)bg->limit[LEDGER_USD] / 1e9);
    if (bg->limit[LEDGER_TOKENS] >= 0)
        cJSON_AddNumberToObject(rec, "limit_tokens", (double)bg->limit[LEDGER_TOKENS]);
    if (bg->limit[LEDGER_REQUESTS] >= 0)
        cJSON_AddNumberToObject(rec, "limit_requests", (double)bg->limit[LEDGER_REQUESTS]);
    cJSON_AddStringToObject(o, "id", bg->id);
    cJSON_AddStringToObject(o, "name", bg->name);
    cJSON_AddStringToObject(o, "scope", scope[bg->scope]);
    cJSON_AddStringToObject(o, "action_on_exhaust", bg->alert ? "alert" : "block");
    cJSON_AddStringToObject(o, "window", windows[bg->window]);
    budget_live_fields(rec, o, x->counts);
    ex = cJSON_GetObjectItemCaseSensitive(o, "exhausted");
    blocks = !bg->alert && cJSON_IsTrue(ex);
    cJSON_AddBoolToObject(o, "blocks", blocks);
    x->blocks |= blocks;
    cJSON_AddItemToArray(x->arr, o);
    cJSON_Delete(rec);
    return 0;
}

int budgets_explain(const budgets_t *b, const char *key, cJSON *arr, budget_counts_fn counts)
{
    explaining_t x = { arr, 0, counts };
    budgets_each_in(b, key, explain_one, &x);
    return x.blocks;
}
