/* alloccount.so: an LD_PRELOAD counter of heap allocations, for bench/bench.py.
 *
 *   cc -shared -fPIC -O2 -o alloccount.so alloccount.c
 *   ALLOCCOUNT_FILE=/tmp/x.counts LD_PRELOAD=./alloccount.so turnout -c ...
 *
 * Every call of malloc, calloc, realloc, reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc, pvalloc and free in the process (all
 * threads) is counted, then handed to glibc's own allocator through its
 * __libc_* entry points (not dlsym, which may itself call calloc). The counters
 * live in a shared mapping of the file named by ALLOCCOUNT_FILE (created and
 * sized here), so a reader (bench.py) takes a snapshot before and after a run
 * by reading the file, without signals and without stopping the process.
 * Without ALLOCCOUNT_FILE the counts go to a private struct nobody reads.
 *
 * The file's layout (little-endian, all uint64):
 *   [0] magic ALLOC_MAGIC  [1] version 2  [2] NCOUNT  [3] NSITES  [4] DEPTH
 *   [5..8) zero
 *   [8 .. 8+NCOUNT)   the counters, in the order of enum counter below
 *   then NSITES entries of DEPTH + 1 words: the call site of an allocating call
 *   (not free) as the DEPTH innermost return addresses above the hook (the
 *   caller of malloc first, then its caller, ...; 0 past the stack's end), then
 *   the number of allocating calls made from there. The stack comes from
 *   glibc's backtrace() (the unwinder and .eh_frame: no frame pointers
 *   needed), so a wrapper like libevhtp's htp__malloc_ shows who called it.
 *   A call made while this thread is already inside the hook (the unwinder's
 *   own first allocation) or when the table is full counts in SITES_DROPPED.
 *   The reader maps addresses to a module and offset with /proc/PID/maps.
 *   Walking the stack costs a microsecond or so per allocation: this build of
 *   the process is for counting, never for timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern void __libc_free(void *);

#define ALLOC_MAGIC 0x544e434f4c4c41ULL /* "ALLOCNT" */
#define NSITES 2048                     /* a power of two */
#define DEPTH 4                         /* return addresses per call site */

enum counter {
    C_MALLOC, C_CALLOC, C_REALLOC, C_REALLOCARRAY, C_POSIX_MEMALIGN, C_ALIGNED_ALLOC,
    C_MEMALIGN, C_VALLOC, C_PVALLOC, C_FREE, C_FREE_NULL, C_BYTES, C_SITES_DROPPED, NCOUNT
};

struct counts {
    uint64_t magic, version, ncount, nsites, depth, pad[3];
    uint64_t n[NCOUNT];
    struct { uint64_t pc[DEPTH], count; } sites[NSITES];
};

static __thread int in_hook __attribute__((tls_model("initial-exec")));
static int sites_lock;

static struct counts private_counts;
static struct counts *ctr = &private_counts;

__attribute__((constructor(101))) static void alloccount_init(void)
{
    void *warm[2];
    in_hook = 1;            /* backtrace() loads the unwinder (libgcc_s) on first use, allocating */
    backtrace(warm, 2);
    in_hook = 0;
    const char *path = getenv("ALLOCCOUNT_FILE");
    if (!path || !*path)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (ftruncate(fd, sizeof(struct counts)) != 0) {
        close(fd);
        return;
    }
    void *m = mmap(NULL, sizeof(struct counts), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return;
    struct counts *c = m;
    memcpy(c, &private_counts, sizeof *c);     /* what ld.so and the constructors before this one did */
    c->version = 2;
    c->ncount = NCOUNT;
    c->nsites = NSITES;
    c->depth = DEPTH;
    __atomic_store_n(&c->magic, ALLOC_MAGIC, __ATOMIC_RELEASE);
    __atomic_store_n(&ctr, c, __ATOMIC_RELEASE);
}

static inline void count(enum counter k, size_t bytes)
{
    struct counts *c = __atomic_load_n(&ctr, __ATOMIC_ACQUIRE);
    __atomic_fetch_add(&c->n[k], 1, __ATOMIC_RELAXED);
    if (bytes)
        __atomic_fetch_add(&c->n[C_BYTES], bytes, __ATOMIC_RELAXED);
}

/* Counts an allocating call at the call site of its caller's caller (frame 0
 * is site() itself, 1 the hook, 2 the code that called malloc). */
__attribute__((noinline)) static void site(void)
{
    struct counts *c = __atomic_load_n(&ctr, __ATOMIC_ACQUIRE);
    if (in_hook) {
        __atomic_fetch_add(&c->n[C_SITES_DROPPED], 1, __ATOMIC_RELAXED);
        return;
    }
    in_hook = 1;
    void *bt[DEPTH + 2];
    uint64_t pc[DEPTH] = { 0 };
    int n = backtrace(bt, DEPTH + 2);
    for (int i = 2; i < n; i++)
        pc[i - 2] = (uint64_t)(uintptr_t)bt[i];
    uint64_t h = 0;
    for (int i = 0; i < DEPTH; i++)
        h = (h ^ pc[i]) * 0x9e3779b97f4a7c15ULL;
    int done = 0;
    while (__atomic_exchange_n(&sites_lock, 1, __ATOMIC_ACQUIRE))
        ;
    for (unsigned i = 0; i < 64 && !done; i++) {
        unsigned j = (unsigned)((h >> 40) + i) & (NSITES - 1);
        if (c->sites[j].count == 0) {
            memcpy(c->sites[j].pc, pc, sizeof pc);
            c->sites[j].count = 1;
            done = 1;
        } else if (memcmp(c->sites[j].pc, pc, sizeof pc) == 0) {
            c->sites[j].count++;
            done = 1;
        }
    }
    __atomic_store_n(&sites_lock, 0, __ATOMIC_RELEASE);
    if (!done)
        __atomic_fetch_add(&c->n[C_SITES_DROPPED], 1, __ATOMIC_RELAXED);
    in_hook = 0;
}

void *malloc(size_t n)
{
    count(C_MALLOC, n);
    site();
    return __libc_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    count(C_CALLOC, k * n);
    site();
    return __libc_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    count(C_REALLOC, n);
    site();
    return __libc_realloc(p, n);
}

void *reallocarray(void *p, size_t k, size_t n)
{
    size_t b;
    int over = __builtin_mul_overflow(k, n, &b);
    count(C_REALLOCARRAY, over ? 0 : b);
    site();
    if (over) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, b);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count(C_POSIX_MEMALIGN, n);
    site();
    if (align % sizeof(void *) != 0 || (align & (align - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    count(C_ALIGNED_ALLOC, n);
    site();
    return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
    count(C_MEMALIGN, n);
    site();
    return __libc_memalign(align, n);
}

void *valloc(size_t n)
{
    count(C_VALLOC, n);
    site();
    return __libc_valloc(n);
}

void *pvalloc(size_t n)
{
    count(C_PVALLOC, n);
    site();
    return __libc_pvalloc(n);
}

void free(void *p)
{
    count(p ? C_FREE : C_FREE_NULL, 0);
    __libc_free(p);
}
