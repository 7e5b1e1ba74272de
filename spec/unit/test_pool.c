/* test_pool.c - unit tests for core/pool.c (fixed-size objects from 64 KiB blocks). */
#include "testlib.h"
#include "pool.h"

#include <stdlib.h>
#include <string.h>

#define N 3000

TEST(objects_are_zeroed_aligned_distinct_and_reused) {
  sl_pool p;
  sl_pool_init(&p, 100); /* rounded up to 104 */
  CHECK_EQ_INT(p.size, 104);
  static unsigned char *v[N];
  for (int i = 0; i < N; i++) {
    v[i] = sl_pool_alloc(&p);
    CHECK(((uintptr_t)v[i] & 7) == 0);
    for (int k = 0; k < 104; k++) CHECK(v[i][k] == 0);
    memset(v[i], 0xab, 104); /* the whole object is ours */
  }
  CHECK_EQ_INT((int)p.nobjs, N);
  for (int i = 1; i < N; i++) CHECK(v[i] != v[i - 1]);
  /* free every other one; what comes back is zeroed again */
  for (int i = 0; i < N; i += 2) sl_pool_free(&p, v[i]);
  CHECK_EQ_INT((int)p.nobjs, N / 2);
  for (int i = 0; i < N; i += 2) {
    v[i] = sl_pool_alloc(&p);
    for (int k = 0; k < 104; k++) CHECK(v[i][k] == 0);
  }
  for (int i = 0; i < N; i++) sl_pool_free(&p, v[i]);
  CHECK_EQ_INT((int)p.nobjs, 0);
  sl_pool_free(&p, NULL); /* no-op */
  sl_pool_destroy(&p);
  CHECK_EQ_INT((int)p.nblocks, 0);
}

#ifndef SL_POOL_MALLOC
TEST(empty_blocks_go_back_but_the_last_one_stays) {
  sl_pool p;
  sl_pool_init(&p, 456);
  static void *v[N];
  for (int i = 0; i < N; i++) v[i] = sl_pool_alloc(&p);
  size_t per = p.per_block;
  CHECK(per > 100);
  CHECK_EQ_INT((int)p.nblocks, (int)((N + per - 1) / per));
  for (int i = 0; i < N; i++) sl_pool_free(&p, v[i]);
  CHECK_EQ_INT((int)p.nblocks, 1); /* one block kept for the next allocation */
  void *x = sl_pool_alloc(&p);
  CHECK_EQ_INT((int)p.nblocks, 1);
  sl_pool_free(&p, x);
  /* destroy also unmaps blocks still holding objects (full ones included) */
  for (int i = 0; i < N; i++) v[i] = sl_pool_alloc(&p);
  sl_pool_destroy(&p);
  CHECK_EQ_INT((int)p.nblocks, 0);
  CHECK_EQ_INT((int)p.nobjs, 0);
  CHECK_EQ_INT(p.size, 456);
}
#endif

int main(void) {
  RUN(objects_are_zeroed_aligned_distinct_and_reused);
#ifndef SL_POOL_MALLOC
  RUN(empty_blocks_go_back_but_the_last_one_stays);
#endif
  return tl_report();
}
