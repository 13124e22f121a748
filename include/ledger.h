/* ledger.h - spend counters shared by every worker without a lock: what budgets and rate limits count, per window, unbounded in number. */
#ifndef TURNOUT_LEDGER_H
#define TURNOUT_LEDGER_H

#include <stdint.h>

/* What an entry counts. USD is in nano-dollars. */
enum { LEDGER_USD, LEDGER_TOKENS, LEDGER_REQUESTS, LEDGER__N };

/* The windows a count runs over: calendar-aligned UTC, or the whole time. */
typedef enum { WIN_TOTAL = 1, WIN_MINUTE, WIN_HOUR, WIN_DAY, WIN_WEEK, WIN_MONTH } win_kind_t;

typedef struct ledger_entry ledger_entry_t;

/* A reservation on one entry: what it took of each counter, and in which
 * window (a window can turn between two counters: each has its own); and
 * what the counter held, spent and reserved, once it was taken. */
typedef struct ledger_hold {
    int64_t amt[LEDGER__N];
    int64_t tag[LEDGER__N];
    int64_t after[LEDGER__N];
} ledger_hold_t;

/* "1m", "1h", "1d", "1w", "1M", "total" -> its kind; 0 for anything else. */
win_kind_t ledger_window_kind(const char *s);

/* The window of KIND that holds NOW (epoch seconds): its tag (never 0,
 * growing with time, different for each kind), and its start and end in
 * epoch seconds (both 0 for WIN_TOTAL). */
int64_t ledger_window(win_kind_t kind, int64_t now, int64_t *start, int64_t *end);

/* The entry named NAME ("b:" and a budget id, "k:" and a key id, "t:" and a
 * tenant), made on first use; NULL only when out of memory. Entries live as
 * long as the process: a lookup is a few loads, never a lock; making one
 * takes a lock, once per name. */
ledger_entry_t *ledger_get(const char *name);
/* E's name, as given to ledger_get. */
const char *ledger_name(const ledger_entry_t *e);
/* The entry named NAME, or NULL if none was made. */
ledger_entry_t *ledger_find(const char *name);

/* Reserves AMT[i] of each counter i of E in the window of KIND at NOW,
 * all or none. A counter with LIMIT[i] >= 0 admits an amount only while
 * what it holds (spent and reserved) is below the limit and stays within
 * it with the amount. Returns -1 when reserved (*H says what to settle),
 * else the counter that would go over (nothing is taken). */
int ledger_reserve(ledger_entry_t *e, win_kind_t kind, int64_t now, const int64_t amt[LEDGER__N],
                   const int64_t limit[LEDGER__N], ledger_hold_t *h);

/* Replaces the reservation H by the ACTUAL amounts spent (NULL: released,
 * nothing spent). A window that is over is left alone. */
void ledger_settle(ledger_entry_t *e, const ledger_hold_t *h, const int64_t actual[LEDGER__N]);

/* What E holds in the window of KIND at NOW: SPENT (settled) and RESERVED
 * (outstanding), per counter (either may be NULL). */
void ledger_read(ledger_entry_t *e, win_kind_t kind, int64_t now, int64_t spent[LEDGER__N],
                 int64_t reserved[LEDGER__N]);

/* Sets what E has spent, counter I in the window TAG[I] (a restart
 * restoring its persisted spend; a tag of 0 is skipped); reservations
 * outstanding are kept. */
void ledger_restore(ledger_entry_t *e, const int64_t tag[LEDGER__N], const int64_t spent[LEDGER__N]);

/* The settled spend of E as it is now: the tag of each counter's window
 * and its amount. For persisting. */
void ledger_snapshot(ledger_entry_t *e, int64_t tag[LEDGER__N], int64_t spent[LEDGER__N]);

/* A number that changes whenever E's spend does. */
uint64_t ledger_version(ledger_entry_t *e);

/* For the one thread that persists the ledger: 1 when E changed since the
 * last call that returned 1 for it (or ever), else 0. */
int ledger_changed(ledger_entry_t *e);

/* 1 for the first caller in the window TAG, 0 for every other (an alert
 * is raised once per window). */
int ledger_first_in_window(ledger_entry_t *e, int64_t tag);

/* In-flight counting: takes a place when fewer than LIMIT are taken
 * (returns 1), else 0; ledger_leave gives it back. */
int ledger_enter(ledger_entry_t *e, int64_t limit);
void ledger_leave(ledger_entry_t *e);
int64_t ledger_in_flight(ledger_entry_t *e);

/* Calls FN for every entry (any thread; entries made meanwhile may be missed). */
void ledger_each(void (*fn)(const char *name, ledger_entry_t *e, void *arg), void *arg);

/* Frees everything (at exit, once no thread uses an entry). */
void ledger_free(void);

#endif
