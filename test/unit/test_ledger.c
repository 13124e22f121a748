/* test_ledger.c - windows and their turn, reservations under limits (all or none, exact under threads), settling, the index growing while read. */
#include "../../src/ledger.c"
#include "unit.h"

#include <stdio.h>

#define THREADS 8

static _Atomic int admitted;

/* Each thread tries 100 one-request reservations against a limit of 10 on the same entry. */
static void *race(void *arg)
{
    ledger_entry_t *e = arg;
    int64_t amt[LEDGER__N] = { 0, 0, 1 }, lim[LEDGER__N] = { -1, -1, 10 };
    ledger_hold_t h;
    for (int i = 0; i < 100; i++)
        if (ledger_reserve(e, WIN_TOTAL, 0, amt, lim, &h) < 0)
            atomic_fetch_add(&admitted, 1);
    return NULL;
}

/* Reservations of 7 nano-USD against 1000, each settled at 5 right away:
 * what is admitted never passes the limit while it runs. */
static void *spend(void *arg)
{
    ledger_entry_t *e = arg;
    int64_t amt[LEDGER__N] = { 7, 0, 0 }, lim[LEDGER__N] = { 1000, -1, -1 }, act[LEDGER__N] = { 5, 0, 0 };
    ledger_hold_t h;
    for (int i = 0; i < 1000; i++)
        if (ledger_reserve(e, WIN_HOUR, 7200, amt, lim, &h) < 0)
            ledger_settle(e, &h, act);
    return NULL;
}

/* Makes and finds entries of its own while others do the same (the index grows under them). */
static void *make_many(void *arg)
{
    char name[64];
    int t = (int)(intptr_t)arg, bad = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "b:%d:%d", t, i);
        ledger_entry_t *e = ledger_get(name);
        bad += e == NULL || ledger_find(name) != e || strcmp(e->name, name) != 0;
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "b:%d:%d", t, i);
        bad += ledger_find(name) == NULL;
    }
    return (void *)(intptr_t)bad;
}

static void count_each(const char *name, ledger_entry_t *e, void *arg)
{
    (void)name;
    (void)e;
    (*(int *)arg)++;
}

int main(void)
{
    int64_t s, e, spent[LEDGER__N], res[LEDGER__N], tag[LEDGER__N];
    ledger_hold_t h, h2, h3;
    ledger_entry_t *a;
    pthread_t th[THREADS];
    void *ret;

    /* windows: calendar-aligned UTC */
    CHECK(ledger_window_kind("1m") == WIN_MINUTE && ledger_window_kind("1M") == WIN_MONTH &&
          ledger_window_kind("total") == WIN_TOTAL && ledger_window_kind("2d") == 0);
    ledger_window(WIN_MINUTE, 1700000059, &s, &e);
    CHECK(s == 1700000040 && e == 1700000100);
    ledger_window(WIN_WEEK, 1764547200 + 3 * 86400 + 5, &s, &e);   /* Thu 2025-12-04: the week of Mon 2025-12-01 */
    CHECK(s == 1764547200 && e == 1764547200 + 7 * 86400);
    ledger_window(WIN_MONTH, 1767225599, &s, &e);                   /* 2025-12-31 23:59:59 */
    CHECK(s == 1764547200 && e == 1767225600);
    ledger_window(WIN_MONTH, 1767225600, &s, &e);                   /* 2026-01-01 */
    CHECK(s == 1767225600 && e == 1769904000);
    CHECK(ledger_window(WIN_TOTAL, 123, &s, &e) == ledger_window(WIN_TOTAL, 999999, NULL, NULL) && s == 0 && e == 0);
    CHECK(ledger_window(WIN_MINUTE, 60, NULL, NULL) != ledger_window(WIN_HOUR, 60, NULL, NULL));

    /* reserve, settle with the actual amounts, read */
    a = ledger_get("b:one");
    CHECK(a != NULL && ledger_get("b:one") == a && ledger_find("b:one") == a && ledger_find("b:two") == NULL);
    {
        int64_t amt[LEDGER__N] = { 500, 100, 1 }, lim[LEDGER__N] = { 1000, -1, 3 }, act[LEDGER__N] = { 300, 80, 1 };
        CHECK(ledger_reserve(a, WIN_MINUTE, 120, amt, lim, &h) == -1);
        ledger_read(a, WIN_MINUTE, 130, spent, res);
        CHECK(spent[0] == 0 && res[0] == 500 && res[1] == 100 && res[2] == 1);
        CHECK(ledger_reserve(a, WIN_MINUTE, 121, amt, lim, &h2) == -1);      /* 1000 of 1000 */
        CHECK(h.after[0] == 500 && h.after[1] == 100 && h.after[2] == 1);    /* what each held once taken */
        CHECK(h2.after[0] == 1000 && h2.after[1] == 200 && h2.after[2] == 2);
        CHECK(ledger_reserve(a, WIN_MINUTE, 122, amt, lim, &h3) == LEDGER_USD && h3.amt[0] == 0);   /* over: usd */
        ledger_read(a, WIN_MINUTE, 130, spent, res);
        CHECK(res[0] == 1000 && res[2] == 2);                            /* the refused one took nothing */
        ledger_settle(a, &h, act);
        ledger_read(a, WIN_MINUTE, 130, spent, res);
        CHECK(spent[0] == 300 && spent[1] == 80 && spent[2] == 1 && res[0] == 500 && res[2] == 1);
        ledger_settle(a, &h2, NULL);                                     /* released: nothing spent */
        ledger_read(a, WIN_MINUTE, 130, spent, res);
        CHECK(spent[0] == 300 && res[0] == 0 && res[1] == 0 && res[2] == 0 && spent[2] == 1);
        /* the next minute starts from nothing, without anyone resetting it */
        ledger_read(a, WIN_MINUTE, 180, spent, res);
        CHECK(spent[0] == 0 && spent[2] == 0);
        /* a reservation of the old minute settled in the new one leaves it alone */
        CHECK(ledger_reserve(a, WIN_MINUTE, 170, amt, lim, &h) == -1);
        CHECK(ledger_reserve(a, WIN_MINUTE, 185, amt, lim, &h2) == -1);
        ledger_settle(a, &h, act);
        ledger_read(a, WIN_MINUTE, 186, spent, res);
        CHECK(spent[0] == 0 && res[0] == 500 && res[2] == 1);
        ledger_snapshot(a, tag, spent);
        CHECK(tag[0] == ledger_window(WIN_MINUTE, 185, NULL, NULL) && spent[0] == 0);
        ledger_settle(a, &h2, act);
        ledger_snapshot(a, tag, spent);
        CHECK(spent[0] == 300 && spent[1] == 80 && spent[2] == 1);
        /* a limit reached admits nothing more, not even a free request */
        int64_t zero[LEDGER__N] = { 0, 0, 0 }, lim2[LEDGER__N] = { 300, -1, -1 };
        CHECK(ledger_reserve(a, WIN_MINUTE, 186, zero, lim2, &h) == LEDGER_USD);
        /* restored spend (a restart) counts against the limit */
        int64_t back[LEDGER__N] = { 900, 0, 2 }, w = ledger_window(WIN_MINUTE, 240, NULL, NULL);
        int64_t tags[LEDGER__N] = { w, 0, w };
        CHECK(ledger_changed(a) == 1 && ledger_changed(a) == 0);
        ledger_restore(a, tags, back);
        CHECK(ledger_changed(a) == 1);
        CHECK(ledger_reserve(a, WIN_MINUTE, 241, amt, lim, &h) == LEDGER_USD);
        ledger_read(a, WIN_MINUTE, 241, spent, res);
        CHECK(spent[0] == 900 && spent[2] == 2 && res[0] == 0);
    }
    {   /* an amount that would pass INT64_MAX saturates, never wraps to a negative (a refund) */
        ledger_entry_t *big = ledger_get("b:big");
        int64_t huge[LEDGER__N] = { INT64_MAX - 5, 0, 0 }, none[LEDGER__N] = { -1, -1, -1 };
        CHECK(ledger_reserve(big, WIN_TOTAL, 0, huge, none, &h) == -1 && ledger_reserve(big, WIN_TOTAL, 0, huge, none, &h2) == -1);
        ledger_read(big, WIN_TOTAL, 0, spent, res);
        CHECK(spent[0] + res[0] == INT64_MAX || res[0] == INT64_MAX);
        CHECK(res[0] > 0);
    }
    {   /* a budget's window edited from 1d to 1h: in the day's first hour the hour's tag is below the
         * day's (tags are start * 8 + kind), and the cell counts from 0 in the new window, not refused */
        ledger_entry_t *w = ledger_get("b:rewindowed");
        int64_t one[LEDGER__N] = { 10, 0, 1 }, lim[LEDGER__N] = { 100, -1, 5 }, day0 = 86400 * 20000;
        CHECK(ledger_reserve(w, WIN_DAY, day0 + 60, one, lim, &h) == -1);
        CHECK(ledger_reserve(w, WIN_HOUR, day0 + 120, one, lim, &h2) == -1);
        ledger_read(w, WIN_HOUR, day0 + 120, spent, res);
        CHECK(res[0] == 10 && res[2] == 1);
        /* the day's reservation settled now leaves the hour's counts alone */
        ledger_settle(w, &h, one);
        ledger_read(w, WIN_HOUR, day0 + 120, spent, res);
        CHECK(spent[0] == 0 && res[0] == 10 && res[2] == 1);
        ledger_settle(w, &h2, one);
        ledger_read(w, WIN_HOUR, day0 + 120, spent, res);
        CHECK(spent[0] == 10 && spent[2] == 1 && res[0] == 0 && res[2] == 0);
    }
    CHECK(ledger_first_in_window(a, 10) == 1 && ledger_first_in_window(a, 10) == 0 && ledger_first_in_window(a, 18) == 1);
    CHECK(ledger_enter(a, 2) && ledger_enter(a, 2) && !ledger_enter(a, 2) && ledger_in_flight(a) == 2);
    ledger_leave(a);
    CHECK(ledger_enter(a, 2));

    /* exactly 10 of 800 racing requests are admitted */
    a = ledger_get("b:race");
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, race, a) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(atomic_load(&admitted) == 10);
    ledger_read(a, WIN_TOTAL, 0, spent, res);
    CHECK(res[2] == 10);

    /* reserve-settle loops: admitted estimates never pass the limit; the
     * end is settled amounts only */
    a = ledger_get("b:spend");
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, spend, a) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ledger_read(a, WIN_HOUR, 7200, spent, res);
    CHECK(res[0] == 0 && spent[0] <= 1000 && spent[0] >= 1000 - 7 && spent[0] % 5 == 0);

    /* the index grows while other threads read it */
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, make_many, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], &ret);
        CHECK(ret == NULL);
    }
    {
        int n = 0;
        ledger_each(count_each, &n);
        CHECK(n == THREADS * 2000 + 5);
    }
    ledger_free();
    CHECK(ledger_find("b:one") == NULL);
    DONE();
}
