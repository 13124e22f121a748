/* smallmem.c - per-thread free lists for libevent's and libevhtp's small blocks (see smallmem.h). */
#include "smallmem.h"

#include <pthread.h>
#include <stdint.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CLASSES 10                 /* 32, 64, ... 16384 bytes (a buffer chain for a 13 KB stream is 16 KB) */
#define KEEP_BYTES (1024 * 1024)   /* what a thread keeps per class (so at most 10 MB); more goes back to malloc */
#define BIG UINT32_MAX             /* the class of a block larger than the largest */

/* Before every block: its class, and its size (a big block) or the next
 * kept block (a kept one). 16 bytes, so blocks stay aligned as malloc's. */
typedef struct head {
    uint32_t cls;
    uint32_t unused;
    union {
        size_t size;
        struct head *next;
    } u;
} head_t;

typedef struct kept {
    head_t *list[CLASSES];
    size_t n[CLASSES];
    size_t low[CLASSES];           /* the fewest kept since the last smallmem_trim: blocks no one needed */
} kept_t;

static _Thread_local kept_t kept;
static _Thread_local int registered;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static size_t class_size(uint32_t c)
{
    return (size_t)32 << c;
}

/* The smallest class that holds N bytes; CLASSES when none does. */
static uint32_t class_of(size_t n)
{
    if (n <= 32)
        return 0;
    if (n > class_size(CLASSES - 1))
        return CLASSES;
    return (uint32_t)(64 - __builtin_clzll((unsigned long long)(n - 1))) - 5;   /* ceil(log2 n) - 5 */
}

/* A thread's kept blocks go back to malloc when it ends. */
static void release(void *arg)
{
    kept_t *k = arg;
    for (int c = 0; c < CLASSES; c++) {
        while (k->list[c] != NULL) {
            head_t *h = k->list[c];
            UNPOISON(h + 1, class_size((uint32_t)c));
            k->list[c] = h->u.next;
            free(h);
        }
        k->n[c] = 0;
    }
    registered = 0;                    /* a block freed by a later destructor registers the lists again */
}

static void make_key(void)
{
    (void)pthread_key_create(&exit_key, release);
}

/* The calling thread's lists are given back to malloc when it ends. */
static void keep_for_this_thread(void)
{
    if (registered)
        return;
    registered = 1;
    (void)pthread_once(&exit_once, make_key);
    (void)pthread_setspecific(exit_key, &kept);
}

void *smallmem_malloc(size_t n)
{
    uint32_t c = class_of(n);
    head_t *h;
    if (c == CLASSES) {
        if (n > SIZE_MAX - sizeof(head_t) || (h = malloc(sizeof(head_t) + n)) == NULL)
            return NULL;
        h->cls = BIG;
        h->u.size = n;
        return h + 1;
    }
    if ((h = kept.list[c]) != NULL) {
        kept.list[c] = h->u.next;
        if (--kept.n[c] < kept.low[c])
            kept.low[c] = kept.n[c];
    } else if ((h = malloc(sizeof(head_t) + class_size(c))) != NULL) {
        h->cls = c;
    } else {
        return NULL;
    }
    /* only the N bytes asked for are addressable: ASan sees an overflow into the rest */
    UNPOISON(h + 1, n);
    POISON((char *)(h + 1) + n, class_size(c) - n);
    return h + 1;
}

void smallmem_free(void *p)
{
    head_t *h;
    if (p == NULL)
        return;
    h = (head_t *)p - 1;
    /* (KEEP_BYTES / class_size, with shifts: a division on every free is not free) */
    if (h->cls == BIG || kept.n[h->cls] >= ((size_t)KEEP_BYTES >> 5) >> h->cls) {
        if (h->cls != BIG)
            UNPOISON(p, class_size(h->cls));
        free(h);
        return;
    }
    keep_for_this_thread();
    h->u.next = kept.list[h->cls];
    kept.list[h->cls] = h;
    kept.n[h->cls]++;
    POISON(p, class_size(h->cls));
}

void *smallmem_realloc(void *p, size_t n)
{
    head_t *h;
    size_t have;
    void *q;
    if (p == NULL)
        return smallmem_malloc(n);
    h = (head_t *)p - 1;
    if (h->cls == BIG) {
        if (n > SIZE_MAX - sizeof(head_t) || (h = realloc(h, sizeof(head_t) + n)) == NULL)
            return NULL;
        h->u.size = n;
        return h + 1;
    }
    if (n <= (have = class_size(h->cls))) {
        UNPOISON(p, n);
        POISON((char *)p + n, have - n);
        return p;
    }
    if ((q = smallmem_malloc(n)) == NULL)
        return NULL;
    UNPOISON(p, have);                 /* (what was asked for before is not known: the class is copied) */
    memcpy(q, p, have);
    smallmem_free(p);
    return q;
}

void smallmem_prime(size_t size, unsigned count)
{
    uint32_t c = class_of(size);
    size_t limit;
    if (c == CLASSES)
        return;                        /* a big block: never kept */
    limit = ((size_t)KEEP_BYTES >> 5) >> c;
    while (kept.n[c] < count && kept.n[c] < limit) {
        head_t *h = malloc(sizeof(head_t) + class_size(c));
        if (h == NULL)
            return;                    /* (only a reserve: the blocks are made when asked for instead) */
        h->cls = c;
        keep_for_this_thread();
        h->u.next = kept.list[c];
        kept.list[c] = h;
        kept.n[c]++;
        POISON(h + 1, class_size(c));
    }
}

size_t smallmem_trim(size_t floor_bytes)
{
    size_t freed = 0;
    for (uint32_t c = 0; c < CLASSES; c++) {
        size_t floor_n = floor_bytes / class_size(c), spare = kept.low[c];
        /* blocks kept all along since the last trim were not needed: they go, down to the floor */
        if (kept.n[c] < floor_n + spare)
            spare = kept.n[c] > floor_n ? kept.n[c] - floor_n : 0;
        for (; spare > 0 && kept.list[c] != NULL; spare--) {
            head_t *h = kept.list[c];
            UNPOISON(h + 1, class_size(c));
            kept.list[c] = h->u.next;
            kept.n[c]--;
            free(h);
            freed += class_size(c);
        }
        kept.low[c] = kept.n[c];
    }
    return freed;
}

size_t smallmem_kept(void)
{
    size_t n = 0;
    for (int c = 0; c < CLASSES; c++)
        n += kept.n[c];
    return n;
}

void smallmem_release_heap(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    malloc_trim(0);
#endif
}
