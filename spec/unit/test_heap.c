/* test_heap.c - core/heap.h: the intrusive indexed min-heap, checked against a brute-force
 * minimum after every operation. */
#include <stdlib.h>
#include <string.h>
#include "heap.h"
#include "sl_util.h"
#include "testlib.h"

typedef struct {
  int id;
  sl_heap_node hn;
} item;

/* Every node's slot points back at it and no child is smaller than its parent. */
static int heap_ok(const sl_heap *h) {
  for (uint32_t i = 0; i < h->n; i++) {
    if (h->v[i]->idx != i) return 0;
    if (i && h->v[(i - 1) / 2]->key > h->v[i]->key) return 0;
  }
  return 1;
}

static uint64_t brute_min(item *v, int n, const sl_heap *h) {
  uint64_t m = UINT64_MAX;
  for (int i = 0; i < n; i++)
    if (sl_heap_contains(h, &v[i].hn) && v[i].hn.key < m) m = v[i].hn.key;
  return m;
}

TEST(empty_heap) {
  sl_heap h;
  sl_heap_init(&h);
  CHECK(sl_heap_min(&h) == NULL);
  item a = {.id = 1};
  sl_heap_node_init(&a.hn);
  CHECK(!sl_heap_contains(&h, &a.hn));
  sl_heap_remove(&h, &a.hn); /* not in it: ignored */
  CHECK_EQ_INT(h.n, 0);
  sl_heap_free(&h);
}

TEST(zeroed_node_is_not_contained) {
  sl_heap h = {0};
  item a = {0}, b = {0};
  a.hn.key = 5;
  sl_heap_insert(&h, &a.hn);
  CHECK(sl_heap_contains(&h, &a.hn));
  CHECK(!sl_heap_contains(&h, &b.hn)); /* idx 0, but slot 0 holds a */
  sl_heap_remove(&h, &b.hn);
  CHECK_EQ_INT(h.n, 1);
  sl_heap_free(&h);
}

TEST(insert_pops_in_key_order) {
  sl_heap h = {0};
  enum { N = 500 };
  static item v[N];
  srand(7);
  for (int i = 0; i < N; i++) {
    v[i].id = i;
    sl_heap_node_init(&v[i].hn);
    v[i].hn.key = (uint64_t)(rand() % 100);
    sl_heap_insert(&h, &v[i].hn);
  }
  CHECK(heap_ok(&h));
  uint64_t last = 0;
  int n = 0;
  for (sl_heap_node *top; (top = sl_heap_min(&h));) {
    item *it = sl_container_of(top, item, hn);
    CHECK(top->key >= last);
    last = top->key;
    sl_heap_remove(&h, top);
    CHECK_EQ_INT(it->hn.idx, SL_HEAP_NONE);
    n++;
  }
  CHECK_EQ_INT(n, N);
  sl_heap_free(&h);
}

TEST(remove_and_update_anywhere) {
  sl_heap h = {0};
  enum { N = 300 };
  static item v[N];
  srand(11);
  for (int i = 0; i < N; i++) {
    sl_heap_node_init(&v[i].hn);
    v[i].hn.key = (uint64_t)(rand() % 1000);
    sl_heap_insert(&h, &v[i].hn);
  }
  for (int round = 0; round < 3000; round++) {
    item *it = &v[rand() % N];
    switch (rand() % 3) {
    case 0: sl_heap_remove(&h, &it->hn); break;
    case 1: sl_heap_update(&h, &it->hn, (uint64_t)(rand() % 1000)); break; /* inserts if out */
    default:
      if (!sl_heap_contains(&h, &it->hn)) {
        it->hn.key = (uint64_t)(rand() % 1000);
        sl_heap_insert(&h, &it->hn);
      }
    }
    if (!heap_ok(&h)) {
      TL_FAIL("heap order broken at round %d", round);
      break;
    }
    uint64_t bm = brute_min(v, N, &h);
    sl_heap_node *top = sl_heap_min(&h);
    if ((top ? top->key : UINT64_MAX) != bm) {
      TL_FAIL("min %llu, brute force %llu at round %d",
              (unsigned long long)(top ? top->key : UINT64_MAX), (unsigned long long)bm, round);
      break;
    }
  }
  sl_heap_free(&h);
  CHECK_EQ_INT(h.n, 0);
}

int main(void) {
  RUN(empty_heap);
  RUN(zeroed_node_is_not_contained);
  RUN(insert_pops_in_key_order);
  RUN(remove_and_update_anywhere);
  return tl_report();
}
