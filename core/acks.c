/* acks.c - AT_LEAST_ONCE in flight: ack deadlines on a min-heap, one uv timer (acks.h).
 *
 * When a deadline passes the identical packet (same messageId) is sent again, up to
 * maxRetries times with the namespace's backoff; then the message is dropped, counted and
 * onRetryExhausted fires. Every exit from the in-flight set frees room in the lane, so each
 * one refills the lane from its spill and makes it ready. */
#include <stdlib.h>
#include <string.h>
#include "acks.h"
#include "lane.h"
#include "lane_spill.h"
#include "eio.h"
#include "heap.h"
#include "hooks.h"
#include "msg.h"
#include "sl_util.h"

static sl_inflight *inflight_of(sl_heap_node *n) { return sl_container_of(n, sl_inflight, hn); }

static void ack_timer_arm(sl_gateway *gw);

static void deadline_push(sl_gateway *gw, sl_inflight *e) {
  sl_heap_insert(&gw->acks, &e->hn);
  if (sl_heap_min(&gw->acks) == &e->hn) ack_timer_arm(gw);
}

static uint64_t retry_delay(const sl_ns_config *cfg, uint32_t retries) {
  double d = (double)cfg->ack_timeout_ms;
  if (cfg->retry_backoff > 1.0) {
    for (uint32_t i = 0; i < retries; i++) d *= cfg->retry_backoff;
    double cap = cfg->retry_max_delay_ms > 0 ? (double)cfg->retry_max_delay_ms : 30000.0;
    if (d > cap) d = cap;
  }
  return (uint64_t)d;
}

/* Remove an in-flight entry from its lane (swap-remove) and free it. */
static void inflight_drop(sl_inflight *e) {
  sl_lane *l = e->lane;
  sl_heap_remove(&sl_lane_gw(l)->acks, &e->hn);
  for (uint32_t i = 0; i < l->ninfl; i++) {
    if (l->infl[i] == e) {
      l->infl[i] = l->infl[--l->ninfl];
      break;
    }
  }
  if (!l->ninfl) {
    free(l->infl);
    l->infl = NULL;
  }
  l->qbytes -= e->m->est_bytes;
  sl_msg_unref(e->m);
  free(e);
}

/* sl_acks_track: see acks.h. */
void sl_acks_track(sl_lane *l, sl_msg *m) {
  sl_inflight *e = sl_xcalloc(1, sizeof *e);
  e->m = sl_msg_ref(m);
  e->lane = l;
  sl_heap_node_init(&e->hn);
  e->hn.key = uv_now(sl_lane_gw(l)->loop) + retry_delay(sl_lane_cfg(l), 0);
  l->infl = sl_xrealloc(l->infl, sizeof(sl_inflight *) * (l->ninfl + 1));
  l->infl[l->ninfl++] = e;
  l->qbytes += m->est_bytes;
  deadline_push(sl_lane_gw(l), e);
}

/* sl_acks_drop_lane: see acks.h. */
void sl_acks_drop_lane(sl_lane *l) {
  while (l->ninfl) inflight_drop(l->infl[0]);
}

/* sl_acks_park: see acks.h. */
void sl_acks_park(sl_lane *l) {
  sl_gateway *gw = sl_lane_gw(l);
  for (uint32_t i = 0; i < l->ninfl; i++) sl_heap_remove(&gw->acks, &l->infl[i]->hn);
}

/* sl_acks_resume: see acks.h. */
uint32_t sl_acks_resume(sl_lane *l) {
  sl_gateway *gw = sl_lane_gw(l);
  uint64_t now = uv_now(gw->loop);
  for (uint32_t i = 0; i < l->ninfl; i++) {
    sl_inflight *e = l->infl[i];
    l->topic->m[SL_M_RETRIES]++;
    sl_session_send(l->sock->sess, sl_msg_ref(e->m));
    e->hn.key = now + retry_delay(sl_lane_cfg(l), e->retries);
    deadline_push(gw, e);
  }
  return l->ninfl;
}

static void ack_timer_cb(uv_timer_t *t) {
  sl_gateway *gw = t->data;
  uint64_t now = uv_now(gw->loop);
  sl_heap_node *top;
  while ((top = sl_heap_min(&gw->acks)) && top->key <= now) {
    sl_inflight *e = inflight_of(top);
    sl_lane *l = e->lane;
    const sl_ns_config *cfg = sl_lane_cfg(l);
    sl_heap_remove(&gw->acks, &e->hn);
    if ((int64_t)e->retries < cfg->max_retries) {
      /* Re-send the identical packet (same messageId) and wait again. */
      e->retries++;
      l->topic->m[SL_M_RETRIES]++;
      sl_session_send(l->sock->sess, sl_msg_ref(e->m));
      e->hn.key = now + retry_delay(cfg, e->retries);
      deadline_push(gw, e);
    } else {
      l->topic->m[SL_M_RETRIES_EXHAUSTED]++;
      sl_log_debug("message %s to %s exhausted its %lld retries", e->m->msgid ? e->m->msgid : "?",
                   l->sock->id, (long long)cfg->max_retries);
      sl_log_info("retries exhausted: namespace %s topic %s client %s message %s after %u retries",
                  l->topic->ns->path, l->topic->name, l->sock->id, e->m->msgid ? e->m->msgid : "?",
                  e->retries);
      sl_hooks_event(l->topic->ns->srv, SL_EV_RETRY_EXHAUSTED, l->sock, l->topic->name, NULL,
                     e->m->msgid, e->retries);
      inflight_drop(e);
      sl_lane_spill_refill(l);
      sl_lane_held_sync(l);
      sl_lane_ready(l);
    }
  }
  ack_timer_arm(gw);
}

static void ack_timer_arm(sl_gateway *gw) {
  if (!gw->ack_timer.loop || gw->stopping) return;
  sl_heap_node *top = sl_heap_min(&gw->acks);
  if (!top) {
    uv_timer_stop(&gw->ack_timer);
    return;
  }
  uint64_t now = uv_now(gw->loop);
  uv_timer_start(&gw->ack_timer, ack_timer_cb, top->key > now ? top->key - now : 0, 0);
}

/* sl_delivery_start: see acks.h. */
void sl_delivery_start(sl_gateway *gw) {
  uv_timer_init(gw->loop, &gw->ack_timer);
  gw->ack_timer.data = gw;
  uv_unref((uv_handle_t *)&gw->ack_timer);
}

/* sl_delivery_stop: see acks.h. */
void sl_delivery_stop(sl_gateway *gw) {
  if (gw->ack_timer.loop && !uv_is_closing((uv_handle_t *)&gw->ack_timer))
    uv_close((uv_handle_t *)&gw->ack_timer, NULL);
}

/* sl_delivery_ack: see acks.h. */
bool sl_delivery_ack(sl_socket *sock, sl_topic *t, const char *msgid) {
  sl_lane *l = sl_lane_of(sock, t);
  if (!l) return false;
  for (uint32_t i = 0; i < l->ninfl; i++) {
    sl_inflight *e = l->infl[i];
    if (e->m->msgid && strcmp(e->m->msgid, msgid) == 0) {
      inflight_drop(e);
      sl_lane_spill_refill(l);
      sl_lane_held_sync(l);
      sl_lane_ready(l);
      return true;
    }
  }
  return false;
}
