/* heap.h - an intrusive, indexed binary min-heap keyed by a uint64_t (deadlines in loop ms).
 *
 * The element embeds an sl_heap_node; the heap is an array of pointers to those nodes, and
 * each node keeps its own slot, so remove and update are O(log n) with no search. Nothing is
 * allocated per element: the array grows by doubling (an aborting allocation, like every
 * control structure) and is released by sl_heap_free. Recover the element from a node with
 * sl_container_of. libuv's src/heap-inl.h is the model for the intrusive idea; this one is
 * array-based because both users want the minimum often and insert in bulk.
 *
 * Ordering of equal keys is deterministic (it depends only on the sequence of calls) but
 * not FIFO. Not thread-safe; loop thread only, like the rest of the core. */
#ifndef SL_HEAP_H
#define SL_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_HEAP_NONE UINT32_MAX /* sl_heap_node.idx of a node that is in no heap */

typedef struct sl_heap_node {
  uint64_t key; /* read-only while in a heap: change it with sl_heap_update */
  uint32_t idx; /* private: slot in the heap, SL_HEAP_NONE when not in it */
} sl_heap_node;

typedef struct sl_heap {
  sl_heap_node **v; /* private */
  uint32_t n;       /* read-only: number of nodes */
  uint32_t cap;     /* private */
} sl_heap;

/* sl_heap_init: an empty heap (all-zero memory is an empty heap too). */
static inline void sl_heap_init(sl_heap *h) {
  h->v = NULL;
  h->n = h->cap = 0;
}

/* sl_heap_node_init: mark a node as in no heap. A zeroed node also works with every call
 * below (sl_heap_contains checks the slot, not just the index). */
static inline void sl_heap_node_init(sl_heap_node *x) { x->idx = SL_HEAP_NONE; }

/* sl_heap_min: the node with the smallest key, or NULL when the heap is empty. */
static inline sl_heap_node *sl_heap_min(const sl_heap *h) { return h->n ? h->v[0] : NULL; }

/* sl_heap_contains: is x in h? */
static inline bool sl_heap_contains(const sl_heap *h, const sl_heap_node *x) {
  return x->idx < h->n && h->v[x->idx] == x;
}

/* sl_heap_insert: add x (not in any heap) with the key already in x->key. Grows the array
 * by doubling; aborts when memory runs out (sl_xrealloc). */
void sl_heap_insert(sl_heap *h, sl_heap_node *x);

/* sl_heap_remove: take x out of h. A node that is not in h is ignored. Afterwards
 * x->idx == SL_HEAP_NONE. */
void sl_heap_remove(sl_heap *h, sl_heap_node *x);

/* sl_heap_update: give x the key `key` and restore the order in place; inserts x when it
 * is not in h yet. */
void sl_heap_update(sl_heap *h, sl_heap_node *x, uint64_t key);

/* sl_heap_free: release the array (not the nodes, which belong to their elements); the heap
 * is empty afterwards and may be reused. */
void sl_heap_free(sl_heap *h);

#endif
