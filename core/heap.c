/* heap.c - the intrusive indexed min-heap (heap.h). */
#include <stdlib.h>
#include "heap.h"
#include "sl_util.h"

static void put(sl_heap *h, uint32_t i, sl_heap_node *x) {
  h->v[i] = x;
  x->idx = i;
}

/* Move the node at slot i towards the root while its parent's key is larger. */
static void sift_up(sl_heap *h, uint32_t i) {
  sl_heap_node *x = h->v[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (h->v[p]->key <= x->key) break;
    put(h, i, h->v[p]);
    i = p;
  }
  put(h, i, x);
}

/* Move the node at slot i towards the leaves while a child's key is smaller. */
static void sift_down(sl_heap *h, uint32_t i) {
  sl_heap_node *x = h->v[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && h->v[c + 1]->key < h->v[c]->key) c++;
    if (h->v[c]->key >= x->key) break;
    put(h, i, h->v[c]);
    i = c;
  }
  put(h, i, x);
}

/* sl_heap_insert: see heap.h. */
void sl_heap_insert(sl_heap *h, sl_heap_node *x) {
  if (h->n == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 64;
    h->v = sl_xrealloc(h->v, sizeof(sl_heap_node *) * h->cap);
  }
  put(h, h->n++, x);
  sift_up(h, x->idx);
}

/* sl_heap_remove: see heap.h. The last node fills the hole and may have to move either way. */
void sl_heap_remove(sl_heap *h, sl_heap_node *x) {
  if (!sl_heap_contains(h, x)) return;
  uint32_t i = x->idx;
  sl_heap_node *last = h->v[--h->n];
  if (i < h->n) {
    put(h, i, last);
    sift_down(h, i);
    sift_up(h, last->idx);
  }
  x->idx = SL_HEAP_NONE;
}

/* sl_heap_update: see heap.h. */
void sl_heap_update(sl_heap *h, sl_heap_node *x, uint64_t key) {
  if (!sl_heap_contains(h, x)) {
    x->key = key;
    sl_heap_insert(h, x);
    return;
  }
  uint64_t old = x->key;
  x->key = key;
  if (key < old)
    sift_up(h, x->idx);
  else if (key > old)
    sift_down(h, x->idx);
}

/* sl_heap_free: see heap.h. */
void sl_heap_free(sl_heap *h) {
  free(h->v);
  sl_heap_init(h);
}
