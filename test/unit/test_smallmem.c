/* test_smallmem.c - blocks kept per thread and handed out again, realloc across classes, big blocks, threads ending. */
#include "../../src/smallmem.c"
#include "unit.h"

#include <pthread.h>

static void *in_thread(void *arg)
{
    void *p[100];
    (void)arg;
    for (int i = 0; i < 100; i++)
        p[i] = smallmem_malloc(40);
    for (int i = 0; i < 100; i++)
        smallmem_free(p[i]);
    return (void *)(uintptr_t)smallmem_kept();   /* its lists go back to malloc when it ends (LSan checks) */
}

/* A primed thread has its reserve in the class asked for, up to the
 * class's limit, and serves from it without malloc; its lists go back when
 * it ends. */
static void *primed_thread(void *arg)
{
    void *p;
    (void)arg;
    smallmem_prime(16384, 16);
    if (smallmem_kept() != 16 || kept.n[CLASSES - 1] != 16)
        return (void *)1;
    smallmem_prime(16000, 16);                   /* the same class, full already: nothing more */
    if (smallmem_kept() != 16)
        return (void *)2;
    smallmem_prime(16384, 100);                  /* the 16 KB class stops at its 1 MB: 64 */
    smallmem_prime(40, 100);
    smallmem_prime(100000, 5);                   /* a big block: never kept */
    if (kept.n[CLASSES - 1] != 64 || kept.n[1] != 100 || smallmem_kept() != 164)
        return (void *)3;
    p = smallmem_malloc(16000);                  /* from the reserve */
    if (kept.n[CLASSES - 1] != 63)
        return (void *)4;
    memset(p, 0, 16000);
    smallmem_free(p);
    return NULL;
}

int main(void)
{
    /* the class of every size up to the largest and past it: the smallest that holds it */
    {
        int bad = 0;
        for (size_t n = 0; n <= class_size(CLASSES - 1) + 64; n++) {
            uint32_t want = 0;
            while (want < CLASSES && n > class_size(want))
                want++;
            bad += class_of(n) != want;
        }
        CHECK(bad == 0);
        CHECK(class_of(SIZE_MAX) == CLASSES);
    }

    char *a, *b, *c;
    void *ret;
    pthread_t t;
    CHECK(smallmem_kept() == 0);
    a = smallmem_malloc(10);
    memcpy(a, "123456789", 10);
    smallmem_free(a);
    CHECK(smallmem_kept() == 1);
    b = smallmem_malloc(32);                     /* the same class: the same block again */
    CHECK(b == a && smallmem_kept() == 0);
    memcpy(b, "abcdefghijklmnopqrstuvwxyz01234", 32);
    c = smallmem_realloc(b, 20);                 /* fits: stays */
    CHECK(c == b);
    c = smallmem_realloc(b, 100);                /* grows to another class: copied */
    CHECK(c != NULL && memcmp(c, "abcdefghijklmnopqrstuvwxyz01234", 32) == 0 && smallmem_kept() == 1);
    c = smallmem_realloc(c, 10000);              /* to a big block */
    CHECK(c != NULL && memcmp(c, "abcdefghijklmnopqrstuvwxyz01234", 32) == 0);
    memset(c + 32, 'x', 10000 - 32);
    c = smallmem_realloc(c, 20000);              /* a big block grows as realloc grows it */
    CHECK(c != NULL && memcmp(c, "abcdefghijklmnopqrstuvwxyz01234", 32) == 0 && c[9999] == 'x');
    smallmem_free(c);
    smallmem_free(NULL);
    a = smallmem_realloc(NULL, 5);               /* realloc of nothing: a new block */
    CHECK(a != NULL);
    smallmem_free(a);
    a = smallmem_malloc(0);
    CHECK(a != NULL);
    smallmem_free(a);
    for (size_t n = 1; n <= 32768; n *= 2) {     /* every class, and the first big size */
        char *p = smallmem_malloc(n);
        CHECK(p != NULL && ((uintptr_t)p % 16) == 0);
        memset(p, 1, n);
        smallmem_free(p);
    }
#if defined(__SANITIZE_ADDRESS__)
    /* only what was asked for is addressable, and a kept block not at all */
    a = smallmem_malloc(10);
    CHECK(!__asan_address_is_poisoned(a + 9) && __asan_address_is_poisoned(a + 10) &&
          __asan_address_is_poisoned(a + 31));
    a = smallmem_realloc(a, 20);
    CHECK(!__asan_address_is_poisoned(a + 19) && __asan_address_is_poisoned(a + 20));
    smallmem_free(a);
    CHECK(__asan_address_is_poisoned(a));
#endif
    {   /* a class keeps at most 1 MB: 256 blocks of 4 KB; the rest go back to malloc */
        static void *big[300];
        size_t before = smallmem_kept();
        for (int i = 0; i < 300; i++)
            big[i] = smallmem_malloc(4000);
        for (int i = 0; i < 300; i++)
            smallmem_free(big[i]);
        CHECK(kept.n[7] == 256 && smallmem_kept() > before);
        /* trim: what no one took since the last trim goes, down to the floor; what was taken stays */
        smallmem_trim(64 * 1024);                  /* the first call only starts the watch */
        CHECK(kept.n[7] == 256);
        for (int i = 0; i < 100; i++)              /* 100 of them in use at once, then back */
            big[i] = smallmem_malloc(4000);
        for (int i = 0; i < 100; i++)
            smallmem_free(big[i]);
        CHECK(smallmem_trim(64 * 1024) == (size_t)(256 - 100) * 4096 && kept.n[7] == 100);
        CHECK(smallmem_trim(64 * 1024) == (size_t)(100 - 16) * 4096 && kept.n[7] == 16);   /* the 64 KB floor */
        CHECK(smallmem_trim(64 * 1024) == 0 && kept.n[7] == 16);
    }
    CHECK(pthread_create(&t, NULL, in_thread, NULL) == 0 && pthread_join(t, &ret) == 0);
    CHECK((uintptr_t)ret == 100);
    CHECK(pthread_create(&t, NULL, primed_thread, NULL) == 0 && pthread_join(t, &ret) == 0);
    CHECK(ret == NULL);
    DONE();
}
