/* smallmem.h - per-thread free lists for the small blocks libevent and libevhtp allocate per request.
 *
 * A request through libevhtp allocates some thirty small blocks (the
 * request, its URI and path, each header's key, value and kv, the hooks,
 * buffer chains) and frees them when it ends; with glibc each is a trip
 * through malloc's bins. smallmem keeps freed blocks per thread and size
 * class (32 bytes to 16 KB, up to 1 MB of each) and hands them out again, so a worker in its
 * steady state allocates nothing for them. Installed for both libraries
 * with evhtp_set_mem_functions before libevent is used. Under
 * AddressSanitizer a kept block is poisoned, so a use after free is still
 * reported. */
#ifndef TURNOUT_SMALLMEM_H
#define TURNOUT_SMALLMEM_H
#include <stddef.h>

void *smallmem_malloc(size_t n);
void *smallmem_realloc(void *p, size_t n);
void smallmem_free(void *p);

/* Fills the calling thread's list of the class of SIZE to COUNT blocks (a
 * worker does it for its 16 KB read chains before its loop starts).
 * Warm-up alone leaves a list at the highest count of live blocks reached
 * so far, and a later, slightly higher peak (one more read chain at one
 * moment) went to malloc in the steady state; the reserve covers such
 * peaks. */
void smallmem_prime(size_t size, unsigned count);

/* Gives back to malloc the calling thread's kept blocks that no one took
 * since the last call (a burst's, say 64 streams' read chains), keeping
 * FLOOR_BYTES of each class at least; returns the bytes given back. A
 * worker calls it every second or so, so a steady load keeps what it
 * uses and allocates nothing. */
size_t smallmem_trim(size_t floor_bytes);

/* glibc malloc's free pages back to the system (malloc_trim). Not under
 * AddressSanitizer, whose allocator is the heap: there glibc's malloc is
 * never set up, and malloc_trim would set it up with this thread on its
 * main arena but not counted there, which glibc's thread exit then finds
 * (and aborts on). */
void smallmem_release_heap(void);

/* Blocks kept by the calling thread now (for tests). */
size_t smallmem_kept(void);
#endif
