/* pool.h - a pool of fixed-size objects carved from 64 KiB blocks (a slab allocator), for the
 * objects every connection has (sl_conn, sl_session, sl_socket, sl_lane): each costs its
 * size rounded up to 8 bytes, where malloc adds an 8-byte header and rounds up to 16
 * (a 456-byte connection takes a 464-byte malloc chunk, an 88-byte socket 96).
 *
 * A block is one aligned mmap; its header (at its start) keeps the free objects of that
 * block, so sl_pool_free finds it from the object's address. Objects never used are handed
 * out in address order (their pages are touched only then), freed ones first. A block whose
 * objects are all free goes back to the system unless it is the pool's last one with room.
 * Objects are 8-byte aligned (enough for every struct pooled: no long double, no SIMD type).
 *
 * Under AddressSanitizer (SL_POOL_MALLOC) every object is its own calloc, so a use after
 * free or an overflow is still caught there.
 *
 * Not thread-safe: one pool per gateway, used on its loop thread. */
#ifndef SL_POOL_H
#define SL_POOL_H

#include <stddef.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define SL_POOL_MALLOC 1
#endif

struct sl_pool_block;

typedef struct sl_pool {
  uint32_t size;               /* object size (a multiple of 8) */
  uint32_t per_block;          /* objects in a block */
  struct sl_pool_block *avail; /* blocks with a free or unused object (doubly linked) */
  struct sl_pool_block *full;  /* blocks with none */
  size_t nblocks;              /* blocks mapped */
  size_t nobjs;                /* objects handed out and not freed */
} sl_pool;

/* sl_pool_init: an empty pool of objects of `size` bytes (1 .. 16 KiB). No memory is taken
 * before the first sl_pool_alloc. */
void sl_pool_init(sl_pool *p, size_t size);

/* sl_pool_alloc: a zeroed object of p's size, owned by the caller until sl_pool_free.
 * Aborts when memory runs out (as sl_xcalloc). */
void *sl_pool_alloc(sl_pool *p);

/* sl_pool_free: give back obj, a result of sl_pool_alloc on the same pool. NULL is a no-op. */
void sl_pool_free(sl_pool *p, void *obj);

/* sl_pool_destroy: unmap every block, with whatever objects were not freed (under
 * SL_POOL_MALLOC those stay allocated: the leak checker reports them). The pool is empty
 * and may be used again. */
void sl_pool_destroy(sl_pool *p);

#endif
