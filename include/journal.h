/* journal.h - the usage a worker counted, by hour, key, tenant, route, provider and model, handed to the keeper thread without a lock on the request path. */
#ifndef TURNOUT_JOURNAL_H
#define TURNOUT_JOURNAL_H

#include "store.h"

#include <stdint.h>

typedef struct journal journal_t;

journal_t *journal_new(void);
void journal_free(journal_t *j);

/* Counts one request into the worker's own batch (its thread only): the
 * hour it ended in, who and what served it, its tokens and cost. Strings
 * may be NULL (none). */
void journal_add(journal_t *j, int64_t hour, const char *key_id, const char *tenant, const char *route,
                 const char *provider, const char *model, int64_t prompt, int64_t completion, int64_t cost_nusd);

/* The worker's beat: hands the batch over when the keeper has taken the
 * last one (else it keeps counting into it), and goes on in an emptied one. */
void journal_publish(journal_t *j);

/* The keeper: calls FN for each row of the batch handed over (if any),
 * then gives the emptied batch back. With ALL (the worker has stopped) the
 * worker's own batch is taken too. Returns the rows given. */
int journal_take(journal_t *j, int all, void (*fn)(const store_usage_t *row, void *arg), void *arg);

#endif
