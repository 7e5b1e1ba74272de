/* msg.c - refcounted encoded messages, message queues, and the intrusive string hash. */
#include <stdlib.h>
#include <string.h>
#include "msg.h"
#include "sl_util.h"
#include "sio_codec.h"

static struct {
  sl_msg m;
  uint8_t b[SL_MSG_HDR + 1];
} rs_storage = {
    .m = {.refs = 1, .len = 1, .hdrlen = 0, .immortal = 1, .kind = SL_MK_RAW},
    .b = {[SL_MSG_HDR] = 0x1e},
};
sl_msg *sl_msg_rs = &rs_storage.m;

/* sl_msg_new: a message with `len` uninitialised packet bytes and one reference.
 * Aborts on allocation failure (callers bound len by maxPayload first). */
sl_msg *sl_msg_new(size_t len, int kind) {
  sl_msg *m = sl_xmalloc(sizeof(sl_msg) + SL_MSG_HDR + len);
  m->refs = 1;
  m->len = (uint32_t)len;
  m->hdrlen = 0;
  m->binary = 0;
  m->immortal = 0;
  m->kind = (uint8_t)kind;
  m->est_bytes = 0;
  m->key = NULL;
  m->msgid = NULL;
  return m;
}

/* sl_msg_frame_finish: write the WebSocket frame header in front of the packet bytes. Call
 * after the packet bytes and m->binary are final. */
void sl_msg_frame_finish(sl_msg *m) {
  uint8_t h[10];
  size_t n = sl_ws_frame_header(h, m->binary ? 2 : 1, m->len);
  memcpy(m->buf + SL_MSG_HDR - n, h, n);
  m->hdrlen = (uint8_t)n;
}

/* sl_msg_packet_new: a framed Engine.IO packet holding a copy of p. */
sl_msg *sl_msg_packet_new(const void *p, size_t len, bool binary, int kind) {
  sl_msg *m = sl_msg_new(len, kind);
  if (len) memcpy(sl_msg_packet(m), p, len);
  m->binary = binary;
  sl_msg_frame_finish(m);
  return m;
}

/* sl_msg_raw_new: raw bytes (an HTTP response, a WebSocket control frame). */
sl_msg *sl_msg_raw_new(const void *p, size_t len) {
  sl_msg *m = sl_msg_new(len, SL_MK_RAW);
  if (len) memcpy(sl_msg_packet(m), p, len);
  return m;
}

/* sl_msg_unref: drop one reference; frees on the last one. NULL-safe. */
void sl_msg_unref(sl_msg *m) {
  if (!m || m->immortal) return;
  if (--m->refs == 0) {
    if (m->key != (char *)sl_msg_packet(m) + m->len) free(m->key); /* else stored inline */
    free(m->msgid);
    free(m);
  }
}

/* sl_mq_push: append (takes the caller's reference). */
void sl_mq_push(sl_mq *q, sl_msg *m, bool raw) {
  if (q->n == q->cap) {
    uint32_t ncap = q->cap ? q->cap * 2 : 2; /* small: most queues of idle connections */
    uintptr_t *nv = sl_xmalloc(sizeof(uintptr_t) * ncap);
    for (uint32_t i = 0; i < q->n; i++) nv[i] = q->v[(q->head + i) & (q->cap - 1)];
    free(q->v);
    q->v = nv;
    q->head = 0;
    q->cap = ncap;
  }
  q->v[(q->head + q->n) & (q->cap - 1)] = (uintptr_t)m | (raw ? 1u : 0u);
  q->n++;
}

/* sl_mq_pop: remove the head and return its reference (NULL when empty). Releases the ring
 * storage when the queue becomes empty, so an idle connection holds no buffer. */
sl_msg *sl_mq_pop(sl_mq *q) {
  if (!q->n) return NULL;
  sl_msg *m = (sl_msg *)(q->v[q->head] & ~(uintptr_t)1);
  q->head = (q->head + 1) & (q->cap - 1);
  q->n--;
  if (q->n == 0 && q->cap > 64) {
    free(q->v);
    q->v = NULL;
    q->cap = 0;
    q->head = 0;
  }
  return m;
}

/* sl_mq_clear: drop every reference and the storage. */
void sl_mq_clear(sl_mq *q) {
  while (q->n) sl_msg_unref(sl_mq_pop(q));
  free(q->v);
  memset(q, 0, sizeof *q);
}

/* ---- string hash (chained, power-of-two buckets) ---- */

static uint32_t hash_str(const char *s) {
  uint32_t h = 2166136261u;
  while (*s) {
    h ^= (uint8_t)*s++;
    h *= 16777619u;
  }
  return h;
}

/* sl_hash_put: insert e under key (the key string must live as long as the entry). The table
 * doubles past four entries per bucket: chains stay short (no lookup is on a per-delivery
 * path: handshakes, CONNECTs, recoveries) and a table of 10,000 sessions costs 32 KiB of
 * buckets (3.3 bytes a session), not 128. */
void sl_hash_put(sl_hash *h, sl_hent *e, const char *key) {
  ptrdiff_t koff = key - (const char *)e;
  if (!h->koff) h->koff = koff;
  if (koff != h->koff || !koff) abort(); /* a key not where the table's keys are */
  if (h->n + 1 > 4 * h->nb) {
    size_t nb = h->nb ? h->nb * 2 : 16;
    sl_hent **b = sl_xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < h->nb; i++) {
      sl_hent *x = h->b[i];
      while (x) {
        sl_hent *nx = x->hnext;
        size_t j = hash_str(sl_hash_key(h, x)) & (nb - 1);
        x->hnext = b[j];
        b[j] = x;
        x = nx;
      }
    }
    free(h->b);
    h->b = b;
    h->nb = nb;
  }
  size_t j = hash_str(key) & (h->nb - 1);
  e->hnext = h->b[j];
  h->b[j] = e;
  h->n++;
}

/* sl_hash_get: the entry with key, or NULL. */
sl_hent *sl_hash_get(const sl_hash *h, const char *key) {
  if (!h->nb) return NULL;
  for (sl_hent *x = h->b[hash_str(key) & (h->nb - 1)]; x; x = x->hnext)
    if (strcmp(sl_hash_key(h, x), key) == 0) return x;
  return NULL;
}

/* sl_hash_del: remove e (which must be in h). */
void sl_hash_del(sl_hash *h, sl_hent *e) {
  if (!h->nb) return;
  sl_hent **pp = &h->b[hash_str(sl_hash_key(h, e)) & (h->nb - 1)];
  for (; *pp; pp = &(*pp)->hnext) {
    if (*pp == e) {
      *pp = e->hnext;
      h->n--;
      return;
    }
  }
}

/* sl_hash_free: see msg.h. */
void sl_hash_free(sl_hash *h) {
  free(h->b);
  memset(h, 0, sizeof *h);
}

/* ---- string pool ---- */

typedef struct sl_pooled {
  sl_hent hent; /* key: text */
  uint32_t refs;
  char text[];
} sl_pooled;

static sl_pooled *pooled_of(const char *p) {
  return (sl_pooled *)(void *)((char *)(uintptr_t)p - offsetof(sl_pooled, text));
}

/* sl_strpool_get: see msg.h. */
const char *sl_strpool_get(sl_hash *pool, const char *s) {
  sl_hent *e = sl_hash_get(pool, s);
  if (e) {
    sl_pooled *x = sl_container_of(e, sl_pooled, hent);
    x->refs++;
    return x->text;
  }
  size_t n = strlen(s);
  sl_pooled *x = sl_xmalloc(sizeof *x + n + 1);
  memcpy(x->text, s, n + 1);
  x->refs = 1;
  sl_hash_put(pool, &x->hent, x->text);
  return x->text;
}

/* sl_strpool_put: see msg.h. */
void sl_strpool_put(sl_hash *pool, const char *p) {
  if (!p) return;
  sl_pooled *x = pooled_of(p);
  if (--x->refs) return;
  sl_hash_del(pool, &x->hent);
  free(x);
}

/* sl_strpool_free: see msg.h. */
void sl_strpool_free(sl_hash *pool) {
  for (size_t i = 0; i < pool->nb; i++) {
    sl_hent *e = pool->b[i];
    while (e) {
      sl_hent *nx = e->hnext;
      free(sl_container_of(e, sl_pooled, hent));
      e = nx;
    }
  }
  sl_hash_free(pool);
}
