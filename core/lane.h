/* lane.h - one lane: the bounded FIFO of deliveries of one (client, topic) subscription and
 * its accounting. Inside the delivery layer only (lanes.c, lane_spill.c, acks.c).
 *
 * A lane holds references to shared sl_msg (one encoded message per publish, never a copy).
 * qbytes counts the est_bytes of the pending AND the in-flight (AT_LEAST_ONCE, not yet
 * acked) messages; lane_count counts both against maxQueuedMessagesPerClient, spilled
 * records excepted (as StreamFenceJs does). The per-recipient operations are inline: a
 * fan-out calls them once per subscriber. */
#ifndef SL_LANE_H
#define SL_LANE_H

#include <stdlib.h>
#include "eio.h"
#include "spill.h"

/* sl_lane_cfg, sl_lane_gw: the lane's namespace config and gateway. */
static inline const sl_ns_config *sl_lane_cfg(const sl_lane *l) { return l->topic->ns->cfg; }
static inline sl_gateway *sl_lane_gw(const sl_lane *l) { return l->topic->ns->srv->gw; }

/* sl_lane_at: the i-th pending message (0 = oldest); i < l->qn. Borrowed. */
static inline sl_msg *sl_lane_at(const sl_lane *l, uint32_t i) {
  return l->q[(l->qhead + i) % l->qcap];
}

/* sl_lane_of: the lane of sock on topic t, or NULL when sock is not subscribed to t. */
static inline sl_lane *sl_lane_of(const sl_socket *sock, const sl_topic *t) {
  for (sl_lane *l = sock->lanes; l; l = l->next)
    if (l->topic == t) return l;
  return NULL;
}

/* sl__lane_grow: double the ring (first: 4 slots), keeping the order. Aborts on OOM. */
void sl__lane_grow(sl_lane *l);

/* sl_lane_push: append m, taking a new reference (the caller keeps its own), and count
 * its est_bytes. No limit is checked here: that is the offer policy's job (lanes.c). */
static inline void sl_lane_push(sl_lane *l, sl_msg *m) {
  if (l->qn == l->qcap) sl__lane_grow(l);
  l->q[(l->qhead + l->qn) % l->qcap] = sl_msg_ref(m);
  l->qn++;
  l->qbytes += m->est_bytes;
}

/* sl_lane_pop: remove the oldest pending message and return its reference (the caller
 * owns it), or NULL when nothing is pending. The ring is kept when the lane empties:
 * freeing it here would cost a malloc/free pair per delivery on a live feed; a drained
 * ring larger than 64 slots is released. */
static inline sl_msg *sl_lane_pop(sl_lane *l) {
  if (!l->qn) return NULL;
  sl_msg *m = l->q[l->qhead];
  l->qhead = (l->qhead + 1) % l->qcap;
  l->qn--;
  l->qbytes -= m->est_bytes;
  if (l->qn == 0 && l->qcap > 64) {
    free(l->q);
    l->q = NULL;
    l->qcap = l->qhead = 0;
  }
  return m;
}

/* sl_lane_count: entries counted against maxQueuedMessagesPerClient: pending + awaiting an
 * ack (not the spilled ones, as in StreamFenceJs). */
static inline uint64_t sl_lane_count(const sl_lane *l) { return (uint64_t)l->qn + l->ninfl; }

/* sl_lane_fits: would one more message of est bytes stay within both of the namespace's
 * per-client limits? */
static inline bool sl_lane_fits(const sl_lane *l, uint64_t est) {
  const sl_ns_config *cfg = sl_lane_cfg(l);
  return sl_lane_count(l) < (uint64_t)cfg->max_queued_msgs &&
         l->qbytes + est <= (uint64_t)cfg->max_queued_bytes;
}

/* sl_lane_can_send: something is pending and, for AT_LEAST_ONCE, the in-flight window
 * (maxInFlight, at least 1) has room. */
static inline bool sl_lane_can_send(const sl_lane *l) {
  if (!l->qn) return false;
  const sl_ns_config *cfg = sl_lane_cfg(l);
  if (cfg->delivery != SL_AT_LEAST_ONCE) return true;
  int64_t w = cfg->max_in_flight > 0 ? cfg->max_in_flight : 1;
  return l->ninfl < (uint64_t)w;
}

/* sl_lane_ready: when the lane can send, put it on its session's ready list (once) and mark
 * the session dirty (nothing while its socket is parked without a session), so the loop's flush pulls from it (sl_session_pull). With a batching
 * window (flushIntervalMs, 0 for AT_LEAST_ONCE namespaces) the session waits for it instead,
 * unless the lane is half full (count or bytes): a window never makes a lane overflow. */
static inline void sl_lane_ready(sl_lane *l) {
  if (!l->qn) return;
  const sl_ns_config *cfg = sl_lane_cfg(l);
  int64_t wait = 0;
  if (cfg->delivery == SL_AT_LEAST_ONCE) {
    if (!sl_lane_can_send(l)) return; /* the in-flight window is full */
  } else {
    wait = cfg->flush_interval_ms; /* read before the stores below (no reload) */
  }
  sl_session *s = l->sock->sess;
  if (!s) return; /* parked for recovery: no session to pull into until it comes back */
  if (!sl_linked(&l->rlink)) sl_list_push(&s->ready, &l->rlink);
  if (s->dirty == 1) return; /* written at the end of this iteration already */
  if (wait > 0 && 2 * sl_lane_count(l) < (uint64_t)cfg->max_queued_msgs &&
      2 * l->qbytes < (uint64_t)cfg->max_queued_bytes)
    sl_session_defer(s, (uint32_t)wait);
  else
    sl_session_mark_dirty(s);
}

/* sl_lane_clear: unref every pending message and free the ring (in-flight entries and
 * spill files are not touched). */
void sl_lane_clear(sl_lane *l);

/* sl_lane_coalesce: replace the newest pending (not yet sent) message whose coalesce key
 * matches m's (any message, when the namespace has no key) with m, in place, taking a
 * reference to m. Returns false, changing nothing, when none matches or the swap would
 * exceed maxQueuedBytesPerClient. */
bool sl_lane_coalesce(sl_lane *l, sl_msg *m, const sl_ns_config *cfg);

/* sl_lane_held: deliveries the lane is responsible for: pending, in flight and spilled
 * (appended, not yet read back or reported failed). */
static inline uint64_t sl_lane_held(const sl_lane *l) {
  return (uint64_t)l->qn + l->ninfl + (l->spill ? sl_spill_count(l->spill) : 0);
}

/* sl__lane_held_slot: the topic's crash-ledger counter, looked up once (NULL: untracked). */
uint64_t *sl__lane_held_slot(sl_lane *l);

/* sl_lane_held_sync: bring the topic's crash-ledger count up to date with this lane
 * (ledger.h). Called after every change of what the lane holds; one test when the server
 * keeps no ledger. */
static inline void sl_lane_held_sync(sl_lane *l) {
  uint64_t *slot = l->topic->held;
  if (!slot) {
    if (!l->topic->ns->srv->ledger || !(slot = sl__lane_held_slot(l))) return;
  }
  uint64_t h = sl_lane_held(l);
  *slot += h - l->held_rep;
  l->held_rep = h;
}

/* sl_lane_overflow: count n messages refused for `reason` (SL_OV_*) on the lane's topic and
 * fire the onOverflow event (no work when no hook is set). */
void sl_lane_overflow(sl_lane *l, int reason, uint64_t n);

#endif
