/* ledger.c - spend counters shared by every worker without a lock: what budgets and rate limits count, per window, unbounded in number.
 *
 * Each counter is one 16-byte cell, the window it counts for (its tag)
 * and its amount, changed only by a compare-and-swap of the whole cell
 * (cmpxchg16b on x86-64, through libatomic). So a window turns over by
 * itself: a cell whose tag is older than the window of now reads as 0, and
 * the first change in the new window writes the new tag and its amount at
 * once; no thread has to reset anything at the boundary, and a read
 * after the boundary shows the new window even if no request came. A
 * reservation remembers the tag it was made in: settled after its window
 * is over, it leaves the new window alone.
 *
 * Reserving under a limit loads the cell, checks the amount against the
 * limit and swaps in the sum; it never adds first and takes back after, so
 * two requests that do not both fit never make a third, which would have,
 * see the counter over its limit (the false "exhausted" of check-then-add
 * counters). Several counters (and several budgets) are taken in turn and
 * given back if a later one does not fit.
 *
 * Entries are found through an open-addressing index of pointers, read
 * with acquire loads and no lock. Making an entry takes a mutex (once per
 * name); when the index is half full a twice larger copy is published and
 * the old one kept until exit, as a reader may still be walking it. */
#include "ledger.h"
#include "tally.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Changed only with a 16-byte compare-and-swap (cell_cas) and read whole
 * with a 16-byte atomic load (cell_load); cell_guess reads its two halves
 * with plain 8-byte loads, which may tear: only as the first guess of a
 * compare-and-swap, which checks it (a locked load saved per change). */
typedef struct cell {
    int64_t tag, v;
} __attribute__((aligned(16))) cell_t;

struct ledger_entry {
    cell_t spent[LEDGER__N];              /* settled plus reserved: what a limit is checked against */
    cell_t reserved[LEDGER__N];           /* reserved, not yet settled */
    _Atomic int64_t in_flight;
    _Atomic int64_t alerted;              /* the tag of the window whose alert was raised */
    _Atomic uint64_t version;
    uint64_t saved;                       /* the version last persisted (the persisting thread's own) */
    uint64_t hash;
    char name[];
};

typedef struct index {
    size_t cap;                           /* a power of two */
    struct index *older;                  /* replaced ones, freed at exit */
    _Atomic(ledger_entry_t *) slot[];
} index_t;

static _Atomic(index_t *) current;
static pthread_mutex_t make_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t count;                      /* entries made (under make_lock) */

#define FIRST_CAP 256

win_kind_t ledger_window_kind(const char *s)
{
    static const struct { const char *name; win_kind_t kind; } names[] = {
        { "1m", WIN_MINUTE }, { "1h", WIN_HOUR }, { "1d", WIN_DAY }, { "1w", WIN_WEEK }, { "1M", WIN_MONTH },
        { "total", WIN_TOTAL },
    };
    for (size_t i = 0; s != NULL && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].kind;
    return 0;
}

/* The first second of the month after (DELTA 1) or holding (0) NOW, UTC. */
static int64_t month_start(int64_t now, int delta)
{
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mon += delta;
    return (int64_t)timegm(&tm);
}

int64_t ledger_window(win_kind_t kind, int64_t now, int64_t *start, int64_t *end)
{
    int64_t s = 0, e = 0, day = 86400;
    switch (kind) {
    case WIN_MINUTE: s = now - now % 60, e = s + 60; break;
    case WIN_HOUR: s = now - now % 3600, e = s + 3600; break;
    case WIN_DAY: s = now - now % day, e = s + day; break;
    case WIN_WEEK:                        /* Monday 00:00 UTC; 1970-01-01 was a Thursday */
        s = (now / day - (now / day + 3) % 7) * day, e = s + 7 * day;
        break;
    case WIN_MONTH: s = month_start(now, 0), e = month_start(now, 1); break;
    case WIN_TOTAL:
    default: kind = WIN_TOTAL; break;
    }
    if (start != NULL)
        *start = s;
    if (end != NULL)
        *end = e;
    return s * 8 + (int64_t)kind;         /* kinds are 1..6: never 0, and no two kinds share a tag */
}

static ledger_entry_t *find_in(index_t *ix, const char *name, uint64_t h)
{
    for (size_t i = h & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
        ledger_entry_t *e = atomic_load_explicit(&ix->slot[i], memory_order_acquire);
        if (e == NULL)
            return NULL;
        if (e->hash == h && strcmp(e->name, name) == 0)
            return e;
    }
}

ledger_entry_t *ledger_find(const char *name)
{
    index_t *ix = atomic_load_explicit(&current, memory_order_acquire);
    return ix != NULL ? find_in(ix, name, tally_hash(name)) : NULL;
}

static void put_in(index_t *ix, ledger_entry_t *e)
{
    size_t i = e->hash & (ix->cap - 1);
    while (atomic_load_explicit(&ix->slot[i], memory_order_relaxed) != NULL)
        i = (i + 1) & (ix->cap - 1);
    atomic_store_explicit(&ix->slot[i], e, memory_order_release);
}

static index_t *index_new(size_t cap)
{
    index_t *ix = calloc(1, sizeof(*ix) + cap * sizeof(ix->slot[0]));
    if (ix != NULL)
        ix->cap = cap;
    return ix;
}

/* Room for one more entry (under make_lock): a twice larger index when
 * this one would be over half full. */
static index_t *room_for_one(void)
{
    index_t *ix = atomic_load_explicit(&current, memory_order_relaxed), *bigger;
    if (ix != NULL && (count + 1) * 2 <= ix->cap)
        return ix;
    if ((bigger = index_new(ix != NULL ? ix->cap * 2 : FIRST_CAP)) == NULL)
        return NULL;
    if (ix != NULL) {
        for (size_t i = 0; i < ix->cap; i++) {
            ledger_entry_t *e = atomic_load_explicit(&ix->slot[i], memory_order_relaxed);
            if (e != NULL)
                put_in(bigger, e);
        }
        bigger->older = ix;
    }
    atomic_store_explicit(&current, bigger, memory_order_release);
    return bigger;
}

ledger_entry_t *ledger_get(const char *name)
{
    uint64_t h = tally_hash(name);
    size_t len = strlen(name) + 1, size = (sizeof(ledger_entry_t) + len + 15) & ~(size_t)15;
    index_t *ix = atomic_load_explicit(&current, memory_order_acquire);
    ledger_entry_t *e;
    if (ix != NULL && (e = find_in(ix, name, h)) != NULL)
        return e;
    pthread_mutex_lock(&make_lock);
    if ((ix = atomic_load_explicit(&current, memory_order_relaxed)) != NULL && (e = find_in(ix, name, h)) != NULL) {
        pthread_mutex_unlock(&make_lock);
        return e;                         /* another thread made it meanwhile */
    }
    if ((ix = room_for_one()) != NULL && (e = aligned_alloc(16, size)) != NULL) {
        memset(e, 0, size);
        e->hash = h;
        memcpy(e->name, name, len);
        put_in(ix, e);
        count++;
    } else {
        e = NULL;
    }
    pthread_mutex_unlock(&make_lock);
    return e;
}

static cell_t cell_load(cell_t *c)
{
    cell_t v;
    __atomic_load(c, &v, __ATOMIC_ACQUIRE);
    return v;
}

static cell_t cell_guess(const cell_t *c)
{
    cell_t g = { __atomic_load_n(&c->tag, __ATOMIC_RELAXED), __atomic_load_n(&c->v, __ATOMIC_RELAXED) };
    return g;
}

/* Replaces *C by NEXT if it holds *OLD; else *OLD is what it holds. */
static int cell_cas(cell_t *c, cell_t *old, cell_t next)
{
    return __atomic_compare_exchange(c, old, &next, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Whether cell C holds OLD still, checked by a compare-and-swap of it with
 * itself (else *OLD is what it holds): a decision not to change a cell,
 * made on a guess, is made again on what the cell holds. */
static int cell_holds(cell_t *c, cell_t *old)
{
    return cell_cas(c, old, *old);
}

/* D added to V, saturating (counts are an upstream's word: never wrap). */
static int64_t plus(int64_t v, int64_t d)
{
    int64_t sum;
    return __builtin_add_overflow(v, d, &sum) ? d > 0 ? INT64_MAX : INT64_MIN : sum;
}

/* Adds D to cell C in window TAG (a cell of an older window, or of
 * another kind, counts from 0; one already in a later window of TAG's kind
 * is left alone: returns 0). */
static int cell_add(cell_t *c, int64_t tag, int64_t d)
{
    cell_t old = cell_guess(c), next;
    for (;;) {
        if (old.tag > tag && old.tag % 8 == tag % 8) {
            if (cell_holds(c, &old))
                return 0;
            continue;
        }
        next.tag = tag;
        next.v = plus(old.tag == tag ? old.v : 0, d);
        if (cell_cas(c, &old, next))
            return 1;
    }
}

/* Takes D from cell C in the window TAG is of: that one, or a later window
 * of the same kind the cell is in already (a clock a moment ahead on
 * another thread: never count into a past window). With LIMIT >= 0 only
 * while the amount is below it and stays within it. Returns the tag of
 * the window taken in, with *AFTER the amount the cell holds then, or 0
 * when it would go over (nothing is taken). */
static int64_t cell_take(cell_t *c, int64_t tag, int64_t d, int64_t limit, int64_t *after)
{
    cell_t old = cell_guess(c), next;
    for (;;) {
        /* (a tag of another kind, as after an edit of the window, is an older window's) */
        int64_t t = old.tag > tag && old.tag % 8 == tag % 8 ? old.tag : tag, v = old.tag == t ? old.v : 0;
        next.tag = t;
        next.v = plus(v, d);
        if (limit >= 0 && (v >= limit || next.v > limit)) {
            if (cell_holds(c, &old))
                return 0;
            continue;
        }
        if (cell_cas(c, &old, next)) {
            *after = next.v;
            return next.tag;
        }
    }
}

/* Adds D to cell C while it is in the window TAG; a cell in another
 * window is left alone (a reservation settled after its window ended). */
static void cell_adjust(cell_t *c, int64_t tag, int64_t d)
{
    cell_t old = cell_guess(c), next;
    for (;;) {
        if (old.tag != tag) {
            if (cell_holds(c, &old))
                return;
            continue;
        }
        next.tag = tag;
        next.v = plus(old.v, d);
        if (cell_cas(c, &old, next))
            return;
    }
}

int ledger_reserve(ledger_entry_t *e, win_kind_t kind, int64_t now, const int64_t amt[LEDGER__N],
                   const int64_t limit[LEDGER__N], ledger_hold_t *h)
{
    int64_t tag = ledger_window(kind, now, NULL, NULL);
    int i, over = -1;
    memset(h, 0, sizeof(*h));
    for (i = 0; i < LEDGER__N; i++) {
        if (amt[i] == 0 && limit[i] < 0)
            continue;                     /* nothing to take, nothing to check */
        if ((h->tag[i] = cell_take(&e->spent[i], tag, amt[i], limit[i], &h->after[i])) == 0) {
            over = i;
            break;
        }
        h->amt[i] = amt[i];
        if (amt[i] != 0)
            cell_add(&e->reserved[i], h->tag[i], amt[i]);
    }
    if (over >= 0) {                      /* give back what was taken */
        while (i-- > 0) {
            if (h->tag[i] != 0 && h->amt[i] != 0) {
                cell_adjust(&e->spent[i], h->tag[i], -h->amt[i]);
                cell_adjust(&e->reserved[i], h->tag[i], -h->amt[i]);
            }
        }
        memset(h, 0, sizeof(*h));
        return over;
    }
    atomic_fetch_add_explicit(&e->version, 1, memory_order_relaxed);
    return -1;
}

void ledger_settle(ledger_entry_t *e, const ledger_hold_t *h, const int64_t actual[LEDGER__N])
{
    for (int i = 0; i < LEDGER__N; i++) {
        int64_t a = actual != NULL ? actual[i] : 0;
        if (h->tag[i] == 0)
            continue;
        if (a != h->amt[i])
            cell_adjust(&e->spent[i], h->tag[i], a - h->amt[i]);
        if (h->amt[i] != 0)
            cell_adjust(&e->reserved[i], h->tag[i], -h->amt[i]);
    }
    atomic_fetch_add_explicit(&e->version, 1, memory_order_relaxed);
}

/* Cell C's amount in the window TAG (0 when it holds an older one). */
static int64_t cell_in(cell_t *c, int64_t tag)
{
    cell_t v = cell_load(c);
    return v.tag == tag ? v.v : 0;
}

void ledger_read(ledger_entry_t *e, win_kind_t kind, int64_t now, int64_t spent[LEDGER__N],
                 int64_t reserved[LEDGER__N])
{
    int64_t tag = ledger_window(kind, now, NULL, NULL);
    for (int i = 0; i < LEDGER__N; i++) {
        int64_t r = cell_in(&e->reserved[i], tag), all = cell_in(&e->spent[i], tag);
        if (spent != NULL)
            spent[i] = all - r;
        if (reserved != NULL)
            reserved[i] = r;
    }
}

void ledger_restore(ledger_entry_t *e, const int64_t tag[LEDGER__N], const int64_t spent[LEDGER__N])
{
    for (int i = 0; i < LEDGER__N; i++) {
        cell_t old = cell_load(&e->spent[i]), next;
        if (tag[i] == 0)
            continue;
        do {
            int64_t r = cell_in(&e->reserved[i], tag[i]);
            if (old.tag > tag[i])
                break;
            next.tag = tag[i];
            next.v = spent[i] + r;
        } while (!cell_cas(&e->spent[i], &old, next));
    }
    atomic_fetch_add_explicit(&e->version, 1, memory_order_relaxed);
}

void ledger_snapshot(ledger_entry_t *e, int64_t tag[LEDGER__N], int64_t spent[LEDGER__N])
{
    for (int i = 0; i < LEDGER__N; i++) {
        cell_t all = cell_load(&e->spent[i]);
        tag[i] = all.tag;
        spent[i] = all.v - cell_in(&e->reserved[i], all.tag);
    }
}

uint64_t ledger_version(ledger_entry_t *e)
{
    return atomic_load_explicit(&e->version, memory_order_relaxed);
}

int ledger_changed(ledger_entry_t *e)
{
    uint64_t v = atomic_load_explicit(&e->version, memory_order_acquire);
    if (v == e->saved)
        return 0;
    e->saved = v;
    return 1;
}

int ledger_first_in_window(ledger_entry_t *e, int64_t tag)
{
    int64_t old = atomic_load_explicit(&e->alerted, memory_order_relaxed);
    while (old < tag)
        if (atomic_compare_exchange_weak_explicit(&e->alerted, &old, tag, memory_order_relaxed, memory_order_relaxed))
            return 1;
    return 0;
}

int ledger_enter(ledger_entry_t *e, int64_t limit)
{
    int64_t old = atomic_load_explicit(&e->in_flight, memory_order_relaxed);
    do {
        if (old >= limit)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&e->in_flight, &old, old + 1, memory_order_acq_rel,
                                                    memory_order_relaxed));
    return 1;
}

void ledger_leave(ledger_entry_t *e)
{
    atomic_fetch_sub_explicit(&e->in_flight, 1, memory_order_acq_rel);
}

int64_t ledger_in_flight(ledger_entry_t *e)
{
    return atomic_load_explicit(&e->in_flight, memory_order_relaxed);
}

void ledger_each(void (*fn)(const char *name, ledger_entry_t *e, void *arg), void *arg)
{
    index_t *ix = atomic_load_explicit(&current, memory_order_acquire);
    for (size_t i = 0; ix != NULL && i < ix->cap; i++) {
        ledger_entry_t *e = atomic_load_explicit(&ix->slot[i], memory_order_acquire);
        if (e != NULL)
            fn(e->name, e, arg);
    }
}

void ledger_free(void)
{
    index_t *ix = atomic_exchange(&current, NULL), *older;
    if (ix == NULL)
        return;
    for (size_t i = 0; i < ix->cap; i++)
        free(atomic_load_explicit(&ix->slot[i], memory_order_relaxed));
    for (; ix != NULL; ix = older) {
        older = ix->older;
        free(ix);
    }
    count = 0;
}

const char *ledger_name(const ledger_entry_t *e)
{
    return e->name;
}
