/* msg.h - the data every layer shares: refcounted encoded messages (one per publish, shared by
 * every lane and write queue holding it), message queues (rings of tagged references), an
 * intrusive doubly linked list and an intrusive string-keyed hash (msg.c). Bottom layer: calls
 * only util and the codec's frame header writer. */
#ifndef SL_MSG_H
#define SL_MSG_H

#include <stdbool.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>

/* ---- messages ------------------------------------------------------------------------ */

#define SL_MSG_HDR 10 /* room reserved in front of the packet for a WebSocket frame header */

/* An immutable, refcounted byte buffer. For Engine.IO packets, buf[SL_MSG_HDR..] holds the
 * packet ("42/feed,[...]" or raw binary) and the WebSocket frame header sits right before it,
 * so the same bytes serve a WebSocket frame and a polling record. For raw HTTP bytes, hdrlen
 * is 0 and the bytes are written as they are. */
typedef struct sl_msg {
  uint32_t refs;
  uint32_t len;       /* packet length (after the header room) */
  uint8_t hdrlen;     /* WebSocket header length (0: raw bytes / not framed) */
  uint8_t binary;     /* Engine.IO binary message (opcode 2 / polling "b" + base64) */
  uint8_t immortal;   /* static message: refcount ignored */
  uint8_t kind;       /* SL_MK_* */
  uint32_t est_bytes; /* queue accounting: JSON length of the payload (StreamFenceJs) */
  char *key;          /* coalesce key or NULL: owned, or inline right after the packet */
  char *msgid;        /* message id (owned) for deliveries, NULL otherwise */
  uint8_t buf[];
} sl_msg;

enum { SL_MK_CONTROL = 0, SL_MK_DELIVERY = 1, SL_MK_RAW = 2 };

#define sl_msg_packet(m) ((m)->buf + SL_MSG_HDR)
#define sl_msg_frame(m) ((m)->buf + SL_MSG_HDR - (m)->hdrlen)
#define sl_msg_frame_len(m) ((size_t)(m)->hdrlen + (m)->len)

/* sl_msg_new: a message of kind SL_MK_* with len uninitialised packet bytes and one
 * reference; no frame header yet (call sl_msg_frame_finish once the bytes are written).
 * Aborts when memory runs out: callers bound len by maxPayload first. */
sl_msg *sl_msg_new(size_t len, int kind);
/* sl_msg_packet_new: a framed message holding a copy of the len bytes at p (binary selects
 * the WebSocket opcode and the polling encoding); one reference, owned by the caller. */
sl_msg *sl_msg_packet_new(const void *p, size_t len, bool binary, int kind);
/* sl_msg_frame_finish: write the WebSocket frame header for m->len and m->binary in the room
 * in front of the packet. Call after the packet bytes and m->binary are final. */
void sl_msg_frame_finish(sl_msg *m);
/* sl_msg_raw_new: raw bytes written as they are (HTTP responses), no frame; one reference. */
sl_msg *sl_msg_raw_new(const void *p, size_t len);
/* sl_msg_ref: take one more reference (a no-op for immortal messages); returns m. */
static inline sl_msg *sl_msg_ref(sl_msg *m) {
  if (!m->immortal) m->refs++;
  return m;
}
/* sl_msg_unref: drop one reference; the last one frees the message, its key and msgid. */
void sl_msg_unref(sl_msg *m);
extern sl_msg *sl_msg_rs; /* the polling record separator "\x1e" (immortal) */

/* A FIFO of message references (ring buffer). Entries are tagged: bit 0 set = write the raw
 * packet bytes (no WebSocket header). Costs nothing until first used. */
typedef struct sl_mq {
  uintptr_t *v;
  uint32_t head, n, cap;
} sl_mq;

/* sl_mq_push: append m (raw: write the packet bytes without the frame header), taking over
 * the caller's reference. Grows the ring by doubling; aborts when memory runs out. */
void sl_mq_push(sl_mq *q, sl_msg *m, bool raw);
static inline sl_msg *sl_mq_at(const sl_mq *q, uint32_t i) {
  return (sl_msg *)(q->v[(q->head + i) & (q->cap - 1)] & ~(uintptr_t)1);
}
static inline bool sl_mq_raw_at(const sl_mq *q, uint32_t i) {
  return q->v[(q->head + i) & (q->cap - 1)] & 1;
}
/* sl_mq_pop: remove the first entry and hand its reference to the caller (who unrefs it);
 * the queue must not be empty. */
sl_msg *sl_mq_pop(sl_mq *q);
/* sl_mq_release: free the ring storage of an empty queue (the next push allocates again).
 * No-op on a queue that holds anything. */
static inline void sl_mq_release(sl_mq *q) {
  if (q->n || !q->v) return;
  free(q->v);
  q->v = NULL;
  q->cap = q->head = 0;
}

/* sl_mq_clear: unref every entry and free the ring; the queue is empty and reusable. */
void sl_mq_clear(sl_mq *q);
static inline size_t sl_mq_bytes_at(const sl_mq *q, uint32_t i) {
  sl_msg *m = sl_mq_at(q, i);
  return sl_mq_raw_at(q, i) ? m->len : sl_msg_frame_len(m);
}

/* ---- intrusive lists and a string-keyed hash ------------------------------------------ */

typedef struct sl_link {
  struct sl_link *prev, *next;
} sl_link;
static inline void sl_list_init(sl_link *h) { h->prev = h->next = h; }
static inline bool sl_list_empty(const sl_link *h) { return h->next == h; }
static inline bool sl_linked(const sl_link *l) { return l->next != NULL; }
static inline void sl_list_push(sl_link *h, sl_link *l) {
  l->prev = h->prev;
  l->next = h;
  h->prev->next = l;
  h->prev = l;
}
static inline void sl_list_del(sl_link *l) {
  if (!l->next) return;
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->next = l->prev = NULL;
}

/* A table entry is one pointer: the key is not stored, it is found at the same offset from
 * every entry of a table (each owner embeds its entry and its key string: a session's sid, a
 * socket's id), which sl_hash_put learns from its first entry. */
typedef struct sl_hent {
  struct sl_hent *hnext;
} sl_hent;
typedef struct sl_hash {
  sl_hent **b;
  size_t nb, n;
  ptrdiff_t koff; /* key - (char *)entry, the same for every entry (0: no entry yet) */
} sl_hash;
/* sl_hash_put: index entry e (embedded in its owner) under key, a string that lives in the
 * same owner, at the same offset from e as every other entry's key in h (checked: aborts
 * otherwise), for as long as e is in h. The table grows as needed (aborts when memory runs
 * out). Keys are not checked for duplicates: the caller looks up first. */
void sl_hash_put(sl_hash *h, sl_hent *e, const char *key);
/* sl_hash_key: the key of e, an entry of h. */
static inline const char *sl_hash_key(const sl_hash *h, const sl_hent *e) {
  return (const char *)e + h->koff;
}
/* sl_hash_get: the entry indexed under key, or NULL. */
sl_hent *sl_hash_get(const sl_hash *h, const char *key);
/* sl_hash_del: take e out of the table (e must be in it); the entry itself is the caller's. */
void sl_hash_del(sl_hash *h, sl_hent *e);

/* A string pool: shared, counted copies of short strings that many owners repeat (the peer
 * address of every session: clients behind one proxy, or a benchmark on loopback, all have
 * the same), so each owner keeps a pointer instead of a copy. The pool is an sl_hash. */
/* sl_strpool_get: a copy of s shared by every holder of an equal string (one more count).
 * Valid until the matching sl_strpool_put. Aborts when memory runs out. */
const char *sl_strpool_get(sl_hash *pool, const char *s);
/* sl_strpool_put: give back one count of p (a result of sl_strpool_get on this pool); the
 * copy goes with its last count. NULL is a no-op. */
void sl_strpool_put(sl_hash *pool, const char *p);
/* sl_strpool_free: free every copy still in the pool and its table. */
void sl_strpool_free(sl_hash *pool);
/* sl_hash_free: free the bucket array (not the entries, which belong to their owners); the
 * table is empty and reusable afterwards. */
void sl_hash_free(sl_hash *h);

#endif
