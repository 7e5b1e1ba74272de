/* lanes.c - a client's subscriptions, the offer policy and the pull (lanes.h). */
#include <stdlib.h>
#include <string.h>
#include "lanes.h"
#include "lane.h"
#include "lane_spill.h"
#include "acks.h"
#include "spill.h"
#include "eio.h"
#include "msg.h"
#include "net.h"
#include "sl_util.h"

/* The offer policy: StreamFenceJs's enqueue order (STREAMFENCE.md 1.5) with
 * Sluice's fixes: COALESCE works without coalesce:true (when the lane is full), DROP_OLDEST
 * counts every dropped message, SPILL_TO_DISK keeps strict FIFO (nothing overtakes what is
 * on disk) and never counts a failed write as spilled. */
static void offer(sl_lane *l, sl_msg *m) {
  const sl_ns_config *cfg = sl_lane_cfg(l);
  sl_topic *t = l->topic;
  if (m->est_bytes > (uint64_t)cfg->max_queued_bytes) {
    sl_lane_overflow(l, SL_OV_TOO_BIG, 1);
    return;
  }
  if (cfg->overflow == SL_SNAPSHOT_ONLY) {
    sl_lane_clear(l);
    sl_lane_push(l, m);
    sl_lane_ready(l);
    return;
  }
  if (cfg->overflow == SL_SPILL_TO_DISK && l->spill && sl_spill_count(l->spill) > 0) {
    sl_lane_spill_append(l, m);
    return;
  }
  if (cfg->coalesce && sl_lane_coalesce(l, m, cfg)) {
    t->m[SL_M_COALESCED]++;
    sl_lane_ready(l);
    return;
  }
  if (!sl_lane_fits(l, m->est_bytes)) {
    switch (cfg->overflow) {
    case SL_DROP_OLDEST:
      while (l->qn && !sl_lane_fits(l, m->est_bytes)) {
        sl_msg_unref(sl_lane_pop(l));
        t->m[SL_M_DROPPED]++;
      }
      if (!sl_lane_fits(l, m->est_bytes)) { /* only in-flight entries left */
        sl_lane_overflow(l, SL_OV_REJECT_NEW, 1);
        return;
      }
      break;
    case SL_COALESCE:
      if (sl_lane_coalesce(l, m, cfg)) {
        t->m[SL_M_COALESCED]++;
        sl_lane_ready(l);
      } else {
        sl_lane_overflow(l, SL_OV_NO_COALESCE_MATCH, 1);
      }
      return;
    case SL_SPILL_TO_DISK: sl_lane_spill_append(l, m); return;
    default: sl_lane_overflow(l, SL_OV_REJECT_NEW, 1); return;
    }
  }
  sl_lane_push(l, m);
  sl_lane_ready(l);
}

/* sl_lane_offer: see lanes.h. Whatever the policy did, the crash ledger follows. */
void sl_lane_offer(sl_lane *l, sl_msg *m) {
  offer(l, m);
  sl_lane_held_sync(l);
}

/* A new lane of sock on t, first in sock->lanes, not attached to the topic yet. A socket
 * with a recovery part gets a lane with one (sl_lane_rec), zeroed. */
static sl_lane *lane_new(sl_socket *sock, sl_topic *t) {
  /* a bare lane comes from the gateway's pool, one with a recovery part from malloc */
  sl_pool *pool = &sock->ns->srv->gw->pool_lane;
  sl_lane *l = sock->rec ? sl_xcalloc(1, sizeof(sl_lane_rec)) : sl_pool_alloc(pool);
  l->rec = sock->rec;
  l->sock = sock;
  l->topic = t;
  l->next = sock->lanes;
  sock->lanes = l;
  l->sub_idx = UINT32_MAX;
  return l;
}

/* sl_subscribe: see lanes.h. */
int sl_subscribe(sl_socket *sock, sl_topic *t) {
  if (sl_lane_of(sock, t)) return 0;
  sl_lane *l = lane_new(sock, t);
  if (l->rec) ((sl_lane_rec *)l)->sub_from = t->ns->rec_seq;
  sl_lane_attach(l);
  /* A new subscriber first receives the snapshot state (snapshot hook), or for
   * SNAPSHOT_ONLY the last published message. */
  if (t->last) sl_lane_offer(l, t->last);
  return 0;
}

/* sl_lane_restore: see lanes.h. */
sl_lane *sl_lane_restore(sl_socket *sock, sl_topic *t, uint64_t sub_from) {
  sl_lane *l = sl_lane_of(sock, t);
  if (l) return l;
  l = lane_new(sock, t);
  if (l->rec) ((sl_lane_rec *)l)->sub_from = sub_from;
  l->rebuilt = 1;
  return l;
}

/* sl_lane_attach: see lanes.h. */
void sl_lane_attach(sl_lane *l) {
  sl_topic *t = l->topic;
  if (l->sub_idx < t->nsubs && t->subs[l->sub_idx] == l) return;
  if (t->nsubs == t->capsubs) {
    t->capsubs = t->capsubs ? t->capsubs * 2 : 8;
    t->subs = sl_xrealloc(t->subs, sizeof(sl_lane *) * t->capsubs);
  }
  l->sub_idx = t->nsubs;
  t->subs[t->nsubs++] = l;
}

/* sl_lane_detach: see lanes.h. */
void sl_lane_detach(sl_lane *l) {
  sl_topic *t = l->topic;
  if (l->sub_idx < t->nsubs && t->subs[l->sub_idx] == l) {
    sl_lane *last = t->subs[--t->nsubs];
    t->subs[l->sub_idx] = last;
    last->sub_idx = l->sub_idx;
  }
  l->sub_idx = UINT32_MAX;
  sl_list_del(&l->rlink);
}

/* Release a lane: its queue, its in-flight entries (their deadlines leave the heap, so an
 * unsubscribe with a message in flight never wedges a later subscription) and its spill
 * files. */
static void lane_free(sl_lane *l, bool count_lost) {
  sl_topic *t = l->topic;
  sl_lane_detach(l);
  /* What the lane still holds goes with it: counted, and out of the crash ledger. */
  uint64_t held = count_lost ? sl_lane_held(l) : 0;
  if (held) {
    t->lost[SL_LOST_DISCONNECT] += held;
    sl_log_debug("client %s left topic %s holding %llu undelivered message(s)", l->sock->id,
                 t->name, (unsigned long long)held);
  }
  if (t->held) *t->held -= l->held_rep;
  sl_acks_drop_lane(l);
  sl_lane_clear(l);
  sl_lane_spill_close(l);
  if (l->rec)
    free(l);
  else
    sl_pool_free(&l->sock->ns->srv->gw->pool_lane, l);
}

/* sl_unsubscribe: see lanes.h. */
void sl_unsubscribe(sl_socket *sock, sl_topic *t) {
  for (sl_lane **pp = &sock->lanes; *pp; pp = &(*pp)->next) {
    if ((*pp)->topic == t) {
      sl_lane *l = *pp;
      *pp = l->next;
      lane_free(l, true);
      return;
    }
  }
}

/* sl_socket_drop_lanes: see lanes.h. */
void sl_socket_drop_lanes(sl_socket *sock) {
  while (sock->lanes) {
    sl_lane *l = sock->lanes;
    sock->lanes = l->next;
    lane_free(l, true);
  }
}

/* sl_socket_hand_off_lanes: see lanes.h. */
void sl_socket_hand_off_lanes(sl_socket *sock) {
  while (sock->lanes) {
    sl_lane *l = sock->lanes;
    sock->lanes = l->next;
    lane_free(l, false);
  }
}

/* sl_session_pull: see lanes.h. */
bool sl_session_pull(sl_session *s, size_t budget) {
  bool moved = false;
  while (!sl_list_empty(&s->ready)) {
    sl_link *ln = s->ready.next;
    sl_lane *l = sl_container_of(ln, sl_lane, rlink);
    sl_list_del(ln);
    if (!sl_lane_can_send(l)) continue;
    sl_msg *m = sl_lane_pop(l);
    l->topic->delivered++;
    if (sl_lane_cfg(l)->delivery == SL_AT_LEAST_ONCE) {
      /* The message stays accounted in the lane until acked or exhausted. */
      sl_acks_track(l, m);
    }
    if (l->spill) sl_lane_spill_refill(l); /* the test keeps a call off the per-recipient path */
    sl_lane_held_sync(l);
    if (sl_lane_can_send(l)) sl_list_push(&s->ready, ln);
    size_t sz;
    if (s->transport == SL_TR_WS) {
      if (!s->ws) {
        sl_msg_unref(m);
        continue;
      }
      sz = sl_msg_frame_len(m);
    } else {
      sz = m->len;
    }
    sl_session_queue(s, m);
    moved = true;
    if (sz >= budget) break;
    budget -= sz;
  }
  return moved;
}
