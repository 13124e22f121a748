/* test_journal.c - rows counted and summed by hour and names, batches cycling between a counting thread and a taking one, nothing lost. */
#include "../../src/journal.c"
#include "unit.h"

#include <pthread.h>

#define ROUNDS 20000

typedef struct seen {
    int64_t requests, prompt, rows;
    int hours_ok;
} seen_t;

static void tally(const store_usage_t *row, void *arg)
{
    seen_t *s = arg;
    s->requests += row->requests;
    s->prompt += row->prompt_tokens;
    s->rows++;
    s->hours_ok &= row->hour == 3600 || row->hour == 7200;
}

static journal_t *j;
static _Atomic int done;

/* The worker: counts, and publishes every 100 requests (its beat). */
static void *worker(void *arg)
{
    char key[16];
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(key, sizeof(key), "k%d", i % 50);
        journal_add(j, i % 2 ? 3600 : 7200, key, "t", "route", "p", "m", 2, 1, 5);
        if (i % 100 == 99)
            journal_publish(j);
    }
    atomic_store(&done, 1);
    return NULL;
}

int main(void)
{
    seen_t s = { 0, 0, 0, 1 };
    pthread_t t;
    store_usage_t one;
    j = journal_new();
    CHECK(j != NULL);
    /* the same names in the same hour are one row */
    journal_add(j, 3600, "key", "acme", "r", "p", "m", 10, 5, 100);
    journal_add(j, 3600, "key", "acme", "r", "p", "m", 1, 2, 3);
    journal_add(j, 7200, "key", "acme", "r", "p", "m", 1, 0, 0);
    journal_add(j, 3600, NULL, NULL, "r", "p", "m", -1, -1, 0);     /* unknown counts add nothing */
    CHECK(journal_take(j, 0, tally, &s) == 0);                     /* nothing published yet */
    journal_publish(j);
    memset(&one, 0, sizeof(one));
    CHECK(journal_take(j, 0, tally, &s) == 3 && s.requests == 4 && s.prompt == 12 && s.rows == 3);
    CHECK(journal_take(j, 0, tally, &s) == 0);                     /* taken once */
    /* many rows: the table grows; the emptied batch is reused */
    for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        journal_add(j, 3600, k, "", "", "", "", 1, 0, 0);
    }
    journal_publish(j);
    memset(&s, 0, sizeof(s));
    s.hours_ok = 1;
    CHECK(journal_take(j, 0, tally, &s) == 1000 && s.requests == 1000);
    /* concurrently: every request counted exactly once */
    memset(&s, 0, sizeof(s));
    s.hours_ok = 1;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
    while (!atomic_load(&done))
        journal_take(j, 0, tally, &s);
    pthread_join(t, NULL);
    journal_take(j, 1, tally, &s);                                 /* the worker is done: all of it */
    CHECK(s.requests == ROUNDS && s.prompt == 2 * ROUNDS && s.hours_ok);
    journal_free(j);
    DONE();
}
