/* test_key_use.c - when a key's use is worth recording (admin_key_use_due): by its record's last_used_at and the thread's memory.
 *
 * A worker keeps the key record it parsed across the write of last_used_at
 * (store.c), so its copy can say "stale" for a minute after the write; the
 * thread's memory of what it reported keeps it from reporting the key on
 * every request meanwhile. admin.o is linked as the Makefile builds it. */
#include "admin.h"
#include "unit.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define A "11111111-1111-4111-8111-111111111111"
#define B "22222222-2222-4222-8222-222222222222"

/* RFC 3339 (UTC) of now + DELTA seconds. */
static const char *at(char *buf, size_t cap, long delta)
{
    time_t t = time(NULL) + delta;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static void *other_thread(void *arg)
{
    (void)arg;
    return (void *)(long)admin_key_use_due(A, NULL);   /* its own memory: due there too */
}

int main(void)
{
    char t[32];
    pthread_t th;
    void *ret = NULL;

    CHECK(admin_key_use_due(A, NULL) == 1);                      /* never used: due */
    CHECK(admin_key_use_due(A, NULL) == 0);                      /* just reported by this thread */
    CHECK(admin_key_use_due(A, at(t, sizeof(t), -3600)) == 0);   /* a cached copy an hour old: still reported */
    CHECK(admin_key_use_due(B, at(t, sizeof(t), -10)) == 0);     /* used 10 s ago: recent */
    CHECK(admin_key_use_due(B, at(t, sizeof(t), -120)) == 1);    /* two minutes ago: due */
    CHECK(admin_key_use_due(B, at(t, sizeof(t), -120)) == 0);
    CHECK(admin_key_use_due("not-a-uuid", NULL) == 0);           /* not a stored key's id */
    CHECK(pthread_create(&th, NULL, other_thread, NULL) == 0 && pthread_join(th, &ret) == 0 && ret == (void *)1);

    /* 64 other keys through the thread's memory (64 places, by a hash of the id): each is due once; a key
     * whose place another took is only reported once more, never missed */
    {
        char id[37];
        int due = 0;
        for (int i = 0; i < 64; i++) {
            snprintf(id, sizeof(id), "33333333-3333-4333-8333-%012d", i);
            due += admin_key_use_due(id, NULL);
        }
        CHECK(due == 64);
    }
    DONE();
}
