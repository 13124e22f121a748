/* budget.h - the budgets of the store, compiled once per store generation for a worker, found by the scope a request's attempt is in. */
#ifndef TURNOUT_BUDGET_H
#define TURNOUT_BUDGET_H

#include "ledger.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

/* What a budget is set on, in the order an attempt is checked: the
 * candidate's own first (a refusal there passes the candidate over), then
 * the request's (a refusal there answers 429). */
typedef enum { BS_TARGET, BS_PROVIDER, BS_ROUTE, BS_KEY, BS_TENANT, BS_GLOBAL, BS__COUNT } budget_scope_t;

typedef struct budget {
    char id[40];
    char name[132];
    budget_scope_t scope;
    int64_t limit[LEDGER__N];      /* -1 where none: USD in nano-dollars, tokens, requests */
    win_kind_t window;
    int alert;                     /* action_on_exhaust "alert": counted, never refused */
    ledger_entry_t *e;             /* its counters ("b:" and its id) */
    uint64_t hash;                 /* of its scope key */
    struct budget *next;           /* in its bucket */
    char scope_key[];              /* see budget_scope_key */
} budget_t;

typedef struct budgets budgets_t;

budgets_t *budgets_new(void);
void budgets_free(budgets_t *b);

/* Compiles the enabled budgets of the store R reads, unless it did for
 * generation GEN already (store_hold_generation of any record the reader
 * handed out; 0: compile now). Keeps the old set on failure. */
void budgets_refresh(budgets_t *b, store_reader_t *r, size_t gen);

/* How many budgets are compiled (0: nothing to check, the usual case). */
int budgets_count(const budgets_t *b);

/* Writes the key of a scope to BUF: "global", "key:ID", "tenant:T",
 * "route:ID", "provider:P", "target:ROUTE-ID\037PROVIDER\037MODEL" (A, B, C
 * as they apply). Returns BUF, or NULL when it does not fit. */
char *budget_scope_key(budget_scope_t s, const char *a, const char *b, const char *c, char *buf, size_t cap);

/* Whether any budget of scope kind S is compiled (else its key need not be made). */
int budgets_in_scope(const budgets_t *b, budget_scope_t s);

/* Calls FN for each budget whose scope key is KEY, until FN returns non-zero (returned). */
int budgets_each_in(const budgets_t *b, const char *key, int (*fn)(const budget_t *bg, void *arg), void *arg);

/* The scope key of a stored budget record REC (its "scope" member); NULL when it has none. */
char *budget_record_key(const cJSON *rec, char *buf, size_t cap);

/* A record's limits and window as budget_t holds them (limit -1: none). */
void budget_record_limits(const cJSON *rec, int64_t limit[LEDGER__N], win_kind_t *window);

/* Where the counts of ledger entry NAME in window TAG are read when they
 * are not this process's own (a cluster's Redis): into OUT (spent and
 * reserved together); 0, or -1 when they cannot be read. */
typedef int (*budget_counts_fn)(const char *name, int64_t tag, int64_t out[LEDGER__N]);

/* The dry-run's view of the budgets whose scope key is KEY, each appended
 * to ARR: id, name, scope, action_on_exhaust, window, the live fields, and
 * "blocks": true for a block budget that admits nothing more now. Returns
 * 1 when one blocks. */
int budgets_explain(const budgets_t *b, const char *key, cJSON *arr, budget_counts_fn counts);

/* Appends the budgets' gauges to a /metrics exposition OUT:
 * turnout_budget_spent_ratio{budget,id,limit} (spent and reserved over
 * the limit, per limit set) and turnout_budget_exhausted{budget,id}. */
void budgets_render(const budgets_t *b, struct evbuffer *out);

/* The live fields of stored budget REC, added to OUT (admin reads):
 * spent_usd, spent_tokens, requests, window_start, resets_at (ISO 8601
 * UTC, null for a total window), exhausted. With COUNTS (may be NULL) the
 * counts are read there, else from this process's ledger. */
void budget_live_fields(const cJSON *rec, cJSON *out, budget_counts_fn counts);

#endif
