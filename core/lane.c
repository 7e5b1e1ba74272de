/* lane.c - one lane's queue: the out-of-line parts of lane.h. */
#include <stdlib.h>
#include <string.h>
#include "lane.h"
#include "hooks.h"
#include "ledger.h"
#include "msg.h"
#include "sl_util.h"

const char *const sl_overflow_reasons[SL_OV_COUNT] = {
    [SL_OV_TOO_BIG] = "message exceeds maxQueuedBytesPerClient",
    [SL_OV_REJECT_NEW] = "queue full with REJECT_NEW",
    [SL_OV_NO_COALESCE_MATCH] = "queue full and no coalesce match",
    [SL_OV_SPILLED] = "spilled to disk",
    [SL_OV_SPILL_FAILED] = "spill to disk failed",
};

const char *const sl_lost_reasons[SL_LOST_COUNT] = {
    [SL_LOST_RESTART] = "restart",
    [SL_LOST_DISCONNECT] = "disconnect",
    [SL_LOST_SPILL_FAILED] = "spill failed",
    [SL_LOST_TRIMMED] = "trimmed",
};

/* sl__lane_held_slot: see lane.h. */
uint64_t *sl__lane_held_slot(sl_lane *l) {
  sl_topic *t = l->topic;
  sl_server *srv = t->ns->srv;
  if (!srv->ledger || t->held_tried) return NULL;
  t->held_tried = 1;
  t->held = sl_ledger_slot(srv->ledger, t->ns->path, t->name);
  if (!t->held)
    sl_log_warn("crash ledger: no room for namespace %s topic %s: what it holds at a crash "
                "will not be counted",
                t->ns->path, t->name);
  return t->held;
}

/* sl__lane_grow: see lane.h. */
void sl__lane_grow(sl_lane *l) {
  uint32_t ncap = l->qcap ? l->qcap * 2 : 4;
  sl_msg **nq = sl_xmalloc(sizeof(sl_msg *) * ncap);
  for (uint32_t i = 0; i < l->qn; i++) nq[i] = sl_lane_at(l, i);
  free(l->q);
  l->q = nq;
  l->qhead = 0;
  l->qcap = ncap;
}

/* sl_lane_clear: see lane.h. */
void sl_lane_clear(sl_lane *l) {
  while (l->qn) sl_msg_unref(sl_lane_pop(l));
  free(l->q);
  l->q = NULL;
  l->qcap = l->qhead = 0;
}

/* keyed: the namespace has a coalescing key (a path or a coalesce_key hook); without one
 * the topic is the key and the latest value wins. */
static bool key_matches(bool keyed, const sl_msg *a, const sl_msg *b) {
  if (!keyed) return true;
  return a->key && b->key && strcmp(a->key, b->key) == 0;
}

/* sl_lane_coalesce: see lane.h. */
bool sl_lane_coalesce(sl_lane *l, sl_msg *m, const sl_ns_config *cfg) {
  bool keyed = cfg->coalesce_key_path || l->topic->ns->hooks.fn.coalesce_key;
  for (uint32_t i = l->qn; i-- > 0;) {
    sl_msg *old = sl_lane_at(l, i);
    if (!key_matches(keyed, old, m)) continue;
    if (l->qbytes - old->est_bytes + m->est_bytes > (uint64_t)cfg->max_queued_bytes) return false;
    l->qbytes = l->qbytes - old->est_bytes + m->est_bytes;
    l->q[(l->qhead + i) % l->qcap] = sl_msg_ref(m);
    sl_msg_unref(old);
    return true;
  }
  return false;
}

/* sl_lane_overflow: see lane.h. */
void sl_lane_overflow(sl_lane *l, int reason, uint64_t n) {
  l->topic->overflow[reason] += n;
  sl_hooks_event(l->topic->ns->srv, SL_EV_OVERFLOW, l->sock, l->topic->name,
                 sl_overflow_reasons[reason], NULL, 0);
}
