/* pool.c - fixed-size objects from 64 KiB blocks (pool.h). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include "pool.h"
#include "sl_util.h"

#define SL_POOL_BLOCK ((size_t)64 * 1024)

/* At the start of every block, 8-byte aligned; the objects follow it. */
typedef struct sl_pool_block {
  struct sl_pool_block *prev, *next; /* in pool->avail while it has room, else pool->full */
  void *free;                        /* freed objects of this block (a list through them) */
  uint32_t used;                     /* objects handed out */
  uint32_t fresh;                    /* objects [fresh, per_block) never handed out yet */
} sl_pool_block;

#define SL_POOL_FIRST ((sizeof(sl_pool_block) + 7) & ~(size_t)7)

static sl_pool_block *block_of(const void *obj) {
  return (sl_pool_block *)((uintptr_t)obj & ~(uintptr_t)(SL_POOL_BLOCK - 1));
}

static void list_push(sl_pool_block **head, sl_pool_block *b) {
  b->prev = NULL;
  b->next = *head;
  if (*head) (*head)->prev = b;
  *head = b;
}

static void list_del(sl_pool_block **head, sl_pool_block *b) {
  if (b->prev)
    b->prev->next = b->next;
  else
    *head = b->next;
  if (b->next) b->next->prev = b->prev;
  b->prev = b->next = NULL;
}

static void oom(void) {
  static const char msg[] = "sluice: out of memory (pool block)\n";
  if (write(2, msg, sizeof msg - 1) < 0) abort();
  abort();
}

/* A new block aligned on its size: map twice the size, unmap what is around the aligned
 * part. Aborts when the system has no memory (as every control structure does). */
static sl_pool_block *block_new(sl_pool *p) {
  size_t len = 2 * SL_POOL_BLOCK;
  char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) oom();
  uintptr_t at = ((uintptr_t)m + SL_POOL_BLOCK - 1) & ~(uintptr_t)(SL_POOL_BLOCK - 1);
  size_t head = at - (uintptr_t)m;
  if (head) munmap(m, head);
  if (len - head - SL_POOL_BLOCK) munmap((char *)at + SL_POOL_BLOCK, len - head - SL_POOL_BLOCK);
  sl_pool_block *b = (sl_pool_block *)at; /* fresh anonymous memory: zeroed */
  p->nblocks++;
  list_push(&p->avail, b);
  return b;
}

/* sl_pool_init: see pool.h. */
void sl_pool_init(sl_pool *p, size_t size) {
  memset(p, 0, sizeof *p);
  if (size < sizeof(void *)) size = sizeof(void *);
  p->size = (uint32_t)((size + 7) & ~(size_t)7);
  p->per_block = (uint32_t)((SL_POOL_BLOCK - SL_POOL_FIRST) / p->size);
}

#ifdef SL_POOL_MALLOC

void *sl_pool_alloc(sl_pool *p) {
  p->nobjs++;
  return sl_xcalloc(1, p->size);
}

void sl_pool_free(sl_pool *p, void *obj) {
  if (!obj) return;
  p->nobjs--;
  free(obj);
}

#else

/* sl_pool_alloc: see pool.h. */
void *sl_pool_alloc(sl_pool *p) {
  sl_pool_block *b = p->avail ? p->avail : block_new(p);
  void *obj;
  if (b->free) {
    obj = b->free;
    b->free = *(void **)obj;
  } else {
    obj = (char *)b + SL_POOL_FIRST + (size_t)b->fresh++ * p->size;
  }
  if (++b->used == p->per_block) { /* full: off the list of blocks with room */
    list_del(&p->avail, b);
    list_push(&p->full, b);
  }
  p->nobjs++;
  memset(obj, 0, p->size);
  return obj;
}

/* sl_pool_free: see pool.h. */
void sl_pool_free(sl_pool *p, void *obj) {
  if (!obj) return;
  sl_pool_block *b = block_of(obj);
  if (b->used-- == p->per_block) { /* it was full: it has room again */
    list_del(&p->full, b);
    list_push(&p->avail, b);
  }
  *(void **)obj = b->free;
  b->free = obj;
  p->nobjs--;
  if (b->used == 0 && (b->prev || b->next)) { /* empty, and not the only block with room */
    list_del(&p->avail, b);
    munmap(b, SL_POOL_BLOCK);
    p->nblocks--;
  }
}

#endif

/* sl_pool_destroy: see pool.h. */
void sl_pool_destroy(sl_pool *p) {
  sl_pool_block **lists[2] = {&p->avail, &p->full};
  for (int i = 0; i < 2; i++)
    while (*lists[i]) {
      sl_pool_block *b = *lists[i];
      list_del(lists[i], b);
      munmap(b, SL_POOL_BLOCK);
    }
  size_t size = p->size;
  sl_pool_init(p, size);
}
