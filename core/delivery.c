/* delivery.c - namespaces, topics, per-(client, topic) lanes, fan-out and overflow policy.
 *
 * One publish = one sl_msg holding the encoded Socket.IO packet and its WebSocket frame.
 * Fan-out appends a pointer to that message to every subscriber's lane (no copies, no
 * per-recipient encoding, no Lua per recipient). Lanes apply the namespace's limits and
 * overflow action; sessions pull from their lanes only while their unsent bytes are under
 * the high-water mark (sl_session_pull), so the bound on memory per client is
 * lanes x maxQueuedBytesPerClient + the high-water mark, whatever the client does. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "sl_internal.h"
#include "sl_jscan.h"
#include "sio_codec.h"
#include "../lua/sl_lua.h"
#include "spill.h"

const char *const sl_overflow_reasons[SL_OV_COUNT] = {
  [SL_OV_TOO_BIG] = "message exceeds maxQueuedBytesPerClient",
  [SL_OV_REJECT_NEW] = "queue full with REJECT_NEW",
  [SL_OV_NO_COALESCE_MATCH] = "queue full and no coalesce match",
  [SL_OV_SPILLED] = "spilled to disk",
  [SL_OV_SPILL_FAILED] = "spill to disk failed",
};

/* ---- namespaces and topics -------------------------------------------------------------- */

static char *json_string_literal(const char *s) {
  cJSON *j = cJSON_CreateString(s);
  char *t = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!t) abort();
  return t;
}

/* sl_ns_init: build a namespace from its config (cfg NULL = the implicit "/" namespace,
 * which accepts connections and handles nothing, like socket.io's main namespace). */
int sl_ns_init(sl_ns *ns, sl_server *srv, sl_ns_config *cfg) {
  memset(ns, 0, sizeof *ns);
  ns->srv = srv;
  ns->cfg = cfg;
  ns->path = sl_xstrdup(cfg ? cfg->path : "/");
  ns->pathlen = strlen(ns->path);
  ns->json_path = json_string_literal(ns->path);
  ns->implicit_root = cfg == NULL;
  if (cfg && cfg->ntopics) {
    ns->ntopics = cfg->ntopics;
    ns->topics = sl_xcalloc(cfg->ntopics, sizeof(sl_topic));
    for (size_t i = 0; i < cfg->ntopics; i++) {
      ns->topics[i].name = sl_xstrdup(cfg->topics[i]);
      ns->topics[i].json_name = json_string_literal(cfg->topics[i]);
      ns->topics[i].ns = ns;
      ns->topics[i].snap_ref = SL_NOREF;
    }
  }
  return 0;
}

/* sl_ns_free: release topics (every socket must already be gone). */
void sl_ns_free(sl_ns *ns) {
  for (size_t i = 0; i < ns->ntopics; i++) {
    free(ns->topics[i].name);
    free(ns->topics[i].json_name);
    free(ns->topics[i].subs);
    sl_msg_unref(ns->topics[i].last);
    free(ns->topics[i].snap_json);
  }
  free(ns->topics);
  free(ns->path);
  free(ns->json_path);
  sl_hash_free(&ns->sockets);
}

/* sl_topic_find: the topic named name[0..len) in ns, or NULL. */
sl_topic *sl_topic_find(sl_ns *ns, const char *name, size_t len) {
  for (size_t i = 0; i < ns->ntopics; i++)
    if (strlen(ns->topics[i].name) == len && memcmp(ns->topics[i].name, name, len) == 0)
      return &ns->topics[i];
  return NULL;
}

/* sl_server_find_ns: the namespace with that path; "/" always resolves (implicit root). */
sl_ns *sl_server_find_ns(sl_server *srv, const char *path, size_t len) {
  for (size_t i = 0; i < srv->nns; i++)
    if (srv->ns[i].pathlen == len && memcmp(srv->ns[i].path, path, len) == 0) return &srv->ns[i];
  if (len == 1 && path[0] == '/') return &srv->root;
  return NULL;
}

/* ---- lanes -------------------------------------------------------------------------------- */

static sl_msg *lane_at(const sl_lane *l, uint32_t i) { return l->q[(l->qhead + i) % l->qcap]; }
static void lane_set(sl_lane *l, uint32_t i, sl_msg *m) { l->q[(l->qhead + i) % l->qcap] = m; }
static const sl_ns_config *lane_cfg(const sl_lane *l) { return l->topic->ns->cfg; }
static sl_gateway *lane_gw(const sl_lane *l) { return l->topic->ns->srv->gw; }

static void lane_push(sl_lane *l, sl_msg *m) {
  if (l->qn == l->qcap) {
    uint32_t ncap = l->qcap ? l->qcap * 2 : 4;
    sl_msg **nq = sl_xmalloc(sizeof(sl_msg *) * ncap);
    for (uint32_t i = 0; i < l->qn; i++) nq[i] = lane_at(l, i);
    free(l->q);
    l->q = nq;
    l->qhead = 0;
    l->qcap = ncap;
  }
  l->q[(l->qhead + l->qn) % l->qcap] = sl_msg_ref(m);
  l->qn++;
  l->qbytes += m->est_bytes;
}

static sl_msg *lane_pop(sl_lane *l) {
  if (!l->qn) return NULL;
  sl_msg *m = l->q[l->qhead];
  l->qhead = (l->qhead + 1) % l->qcap;
  l->qn--;
  l->qbytes -= m->est_bytes;
  /* The ring is kept when the lane empties: freeing it here would cost a malloc/free pair
   * per delivery on a live feed. A drained ring larger than 64 slots is released. */
  if (l->qn == 0 && l->qcap > 64) {
    free(l->q);
    l->q = NULL;
    l->qcap = l->qhead = 0;
  }
  return m;
}

static void lane_clear(sl_lane *l) {
  while (l->qn) sl_msg_unref(lane_pop(l));
  free(l->q);
  l->q = NULL;
  l->qcap = l->qhead = 0;
}

/* Entries counted against maxQueuedMessagesPerClient: pending + awaiting an ack (not the
 * spilled ones, as in StreamFenceJs). */
static uint64_t lane_count(const sl_lane *l) { return (uint64_t)l->qn + l->ninfl; }

static bool lane_fits(const sl_lane *l, uint64_t est) {
  const sl_ns_config *cfg = lane_cfg(l);
  return lane_count(l) < (uint64_t)cfg->max_queued_msgs &&
         l->qbytes + est <= (uint64_t)cfg->max_queued_bytes;
}

static bool lane_can_send(const sl_lane *l) {
  if (!l->qn) return false;
  const sl_ns_config *cfg = lane_cfg(l);
  if (cfg->delivery != SL_AT_LEAST_ONCE) return true;
  int64_t w = cfg->max_in_flight > 0 ? cfg->max_in_flight : 1;
  return l->ninfl < (uint64_t)w;
}

static void lane_ready(sl_lane *l) {
  if (!lane_can_send(l)) return;
  sl_session *s = l->sock->sess;
  if (!sl_linked(&l->rlink)) sl_list_push(&s->ready, &l->rlink);
  sl_session_mark_dirty(s);
}

static bool key_matches(const sl_ns_config *cfg, const sl_msg *a, const sl_msg *b) {
  bool keyed = cfg->coalesce_key_path || cfg->coalesce_key_ref != SL_NOREF;
  if (!keyed) return true; /* no key: the topic is the key, latest value wins */
  return a->key && b->key && strcmp(a->key, b->key) == 0;
}

/* Replace the newest queued (not yet sent) entry with the same key, in place. */
static bool lane_coalesce(sl_lane *l, sl_msg *m, const sl_ns_config *cfg) {
  for (uint32_t i = l->qn; i-- > 0;) {
    sl_msg *old = lane_at(l, i);
    if (!key_matches(cfg, old, m)) continue;
    if (l->qbytes - old->est_bytes + m->est_bytes > (uint64_t)cfg->max_queued_bytes) return false;
    l->qbytes = l->qbytes - old->est_bytes + m->est_bytes;
    lane_set(l, i, sl_msg_ref(m));
    sl_msg_unref(old);
    return true;
  }
  return false;
}

static void overflow(sl_lane *l, int reason, uint64_t n) {
  l->topic->overflow[reason] += n;
  sl_gateway_event(l->topic->ns->srv, SL_EV_OVERFLOW, l->sock, l->topic->name,
                   sl_overflow_reasons[reason], NULL, 0);
}

/* ---- AT_LEAST_ONCE: ack deadlines on a min-heap, one uv timer ----------------------------- */

static void heap_set(sl_gateway *gw, uint32_t i, sl_inflight *e) {
  gw->acks[i] = e;
  e->heap_idx = i;
}

static void heap_up(sl_gateway *gw, uint32_t i) {
  sl_inflight *e = gw->acks[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (gw->acks[p]->deadline <= e->deadline) break;
    heap_set(gw, i, gw->acks[p]);
    i = p;
  }
  heap_set(gw, i, e);
}

static void heap_down(sl_gateway *gw, uint32_t i) {
  sl_inflight *e = gw->acks[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= gw->nacks) break;
    if (c + 1 < gw->nacks && gw->acks[c + 1]->deadline < gw->acks[c]->deadline) c++;
    if (gw->acks[c]->deadline >= e->deadline) break;
    heap_set(gw, i, gw->acks[c]);
    i = c;
  }
  heap_set(gw, i, e);
}

static void ack_timer_arm(sl_gateway *gw);

static void heap_push(sl_gateway *gw, sl_inflight *e) {
  if (gw->nacks == gw->capacks) {
    gw->capacks = gw->capacks ? gw->capacks * 2 : 64;
    gw->acks = sl_xrealloc(gw->acks, sizeof(sl_inflight *) * gw->capacks);
  }
  gw->acks[gw->nacks] = e;
  e->heap_idx = gw->nacks++;
  heap_up(gw, e->heap_idx);
  if (e->heap_idx == 0) ack_timer_arm(gw);
}

static void heap_remove(sl_gateway *gw, sl_inflight *e) {
  uint32_t i = e->heap_idx;
  if (i >= gw->nacks || gw->acks[i] != e) return;
  sl_inflight *last = gw->acks[--gw->nacks];
  if (i < gw->nacks) {
    heap_set(gw, i, last);
    heap_down(gw, i);
    heap_up(gw, last->heap_idx);
  }
  e->heap_idx = UINT32_MAX;
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
  heap_remove(lane_gw(l), e);
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

static void lane_maybe_refill(sl_lane *l);

static void ack_timer_cb(uv_timer_t *t) {
  sl_gateway *gw = t->data;
  uint64_t now = uv_now(gw->loop);
  while (gw->nacks && gw->acks[0]->deadline <= now) {
    sl_inflight *e = gw->acks[0];
    sl_lane *l = e->lane;
    const sl_ns_config *cfg = lane_cfg(l);
    heap_remove(gw, e);
    if ((int64_t)e->retries < cfg->max_retries) {
      /* Re-send the identical packet (same messageId) and wait again. */
      e->retries++;
      l->topic->m[SL_M_RETRIES]++;
      sl_session_send(l->sock->sess, sl_msg_ref(e->m));
      e->deadline = now + retry_delay(cfg, e->retries);
      heap_push(gw, e);
    } else {
      l->topic->m[SL_M_RETRIES_EXHAUSTED]++;
      sl_log_debug("message %s to %s exhausted its %lld retries", e->m->msgid ? e->m->msgid : "?",
                   l->sock->id, (long long)cfg->max_retries);
      sl_gateway_retry_exhausted(gw, l->sock, l->topic, e->m->msgid, e->retries);
      inflight_drop(e);
      lane_maybe_refill(l);
      lane_ready(l);
    }
  }
  ack_timer_arm(gw);
}

static void ack_timer_arm(sl_gateway *gw) {
  if (!gw->ack_timer.loop || gw->stopping) return;
  if (!gw->nacks) {
    uv_timer_stop(&gw->ack_timer);
    return;
  }
  uint64_t now = uv_now(gw->loop);
  uint64_t d = gw->acks[0]->deadline;
  uv_timer_start(&gw->ack_timer, ack_timer_cb, d > now ? d - now : 0, 0);
}

/* sl_delivery_start: initialise the ack-deadline timer (loop thread, before serving). */
void sl_delivery_start(sl_gateway *gw) {
  uv_timer_init(gw->loop, &gw->ack_timer);
  gw->ack_timer.data = gw;
  uv_unref((uv_handle_t *)&gw->ack_timer);
}

/* sl_delivery_stop: close the ack-deadline timer. */
void sl_delivery_stop(sl_gateway *gw) {
  if (gw->ack_timer.loop && !uv_is_closing((uv_handle_t *)&gw->ack_timer))
    uv_close((uv_handle_t *)&gw->ack_timer, NULL);
}

/* sl_delivery_ack: the client acknowledged msgid on topic t. Settles only a message that was
 * sent to this client on this topic and is still awaiting its ack; anything else (unknown,
 * never sent, already settled) is ignored. Returns whether something was settled. */
bool sl_delivery_ack(sl_socket *sock, sl_topic *t, const char *msgid) {
  sl_lane *l = NULL;
  for (sl_lane *k = sock->lanes; k; k = k->next)
    if (k->topic == t) l = k;
  if (!l) return false;
  for (uint32_t i = 0; i < l->ninfl; i++) {
    sl_inflight *e = l->infl[i];
    if (e->m->msgid && strcmp(e->m->msgid, msgid) == 0) {
      inflight_drop(e);
      lane_maybe_refill(l);
      lane_ready(l);
      return true;
    }
  }
  return false;
}

/* ---- SPILL_TO_DISK --------------------------------------------------------------------- */

/* Record layout: u32 est_bytes, u16 id length, id, packet bytes. */
static void spill_on_written(sl_spill *sp, void *arg, size_t ok, size_t failed, int err) {
  (void)sp;
  sl_lane *l = arg;
  l->topic->m[SL_M_SPILLED] += ok;
  overflow(l, SL_OV_SPILLED, ok);
  if (failed) {
    overflow(l, SL_OV_SPILL_FAILED, failed);
    sl_log_warn("spill to disk failed for client %s topic %s: %s; %zu message(s) lost, "
                "falling back to REJECT_NEW until the disk accepts writes again",
                l->sock->id, l->topic->name, uv_strerror(err), failed);
  }
  lane_maybe_refill(l);
}

static void spill_on_read(sl_spill *sp, void *arg, sl_spill_rec *recs, size_t n, size_t corrupt,
                          int status) {
  (void)sp;
  sl_lane *l = arg;
  l->refilling = 0;
  if (corrupt) {
    l->topic->spill_corrupt += corrupt;
    sl_log_warn("spill for client %s topic %s: skipped %zu corrupt record(s)", l->sock->id,
                l->topic->name, corrupt);
  }
  if (status < 0) sl_log_warn("spill read failed: %s", uv_strerror(status));
  for (size_t i = 0; i < n; i++) {
    uint8_t *d = recs[i].data;
    size_t len = recs[i].len;
    if (len >= 6) {
      uint32_t est;
      uint16_t idl;
      memcpy(&est, d, 4);
      memcpy(&idl, d + 4, 2);
      if ((size_t)6 + idl <= len) {
        size_t pl = len - 6 - idl;
        sl_msg *m = sl_msg_new(pl, SL_MK_DELIVERY);
        memcpy(sl_msg_packet(m), d + 6 + idl, pl);
        sl_msg_frame_finish(m);
        m->est_bytes = est;
        if (idl) m->msgid = sl_xstrndup((const char *)d + 6, idl);
        lane_push(l, m);
        sl_msg_unref(m);
      }
    }
    free(d);
  }
  free(recs);
  lane_ready(l);
  if (status >= 0 || n > 0) lane_maybe_refill(l); /* no tight retry loop on a read error */
}

static const sl_spill_callbacks spill_cbs = {spill_on_written, spill_on_read};

static void path_segment(sl_sbuf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (strchr("\\/:\"*?<>|", c) || (unsigned char)c < 0x20) c = '_';
    sl_sbuf_append(b, &c, 1);
  }
}

static const char *spill_root(const sl_server *srv) {
  return srv->cfg->spill_root ? srv->cfg->spill_root : ".streamfence-spill";
}

static sl_spill *lane_spill(sl_lane *l) {
  if (l->spill) return l->spill;
  sl_server *srv = l->topic->ns->srv;
  sl_sbuf b = {0};
  sl_sbuf_puts(&b, spill_root(srv));
  const char *p = l->topic->ns->path;
  while (*p) {
    while (*p == '/') p++;
    size_t n = strcspn(p, "/");
    if (n) {
      sl_sbuf_puts(&b, "/");
      path_segment(&b, p, n);
    }
    p += n;
  }
  sl_sbuf_puts(&b, "/");
  path_segment(&b, l->sock->id, strlen(l->sock->id));
  sl_sbuf_puts(&b, "/");
  path_segment(&b, l->topic->name, strlen(l->topic->name));
  sl_sbuf_append(&b, "", 1);
  l->spill = sl_spill_open(lane_gw(l)->loop, b.data, &spill_cbs, l);
  sl_sbuf_free(&b);
  return l->spill;
}

static void lane_spill_append(sl_lane *l, sl_msg *m) {
  sl_spill *sp = lane_spill(l);
  if (sp && sl_spill_failed(sp) && sl_spill_count(sp) == 0) sl_spill_reset(sp);
  size_t idl = m->msgid ? strlen(m->msgid) : 0;
  size_t len = 6 + idl + m->len;
  uint8_t stackbuf[4096];
  uint8_t *rec = len <= sizeof stackbuf ? stackbuf : malloc(len);
  int r = UV_ENOMEM;
  if (rec && sp) {
    uint32_t est = m->est_bytes;
    uint16_t il = (uint16_t)idl;
    memcpy(rec, &est, 4);
    memcpy(rec + 4, &il, 2);
    if (idl) memcpy(rec + 6, m->msgid, idl);
    memcpy(rec + 6 + idl, sl_msg_packet(m), m->len);
    r = sl_spill_append(sp, rec, len);
  }
  if (rec != stackbuf) free(rec);
  if (r < 0) {
    /* REJECT_NEW fallback: counted as lost, never as spilled. */
    overflow(l, SL_OV_SPILL_FAILED, 1);
    if (!l->spill_failed_logged) {
      l->spill_failed_logged = 1;
      sl_log_warn("spill to disk unavailable for client %s topic %s (%s): rejecting new "
                  "messages for this lane while it lasts",
                  l->sock->id, l->topic->name, uv_strerror(r));
    }
  }
}

/* Pull spilled records back into memory when the lane has room (FIFO: only the oldest). */
static void lane_maybe_refill(sl_lane *l) {
  if (!l->spill || l->refilling || sl_spill_count(l->spill) == 0) return;
  const sl_ns_config *cfg = lane_cfg(l);
  uint64_t cnt = lane_count(l);
  if (cnt * 2 > (uint64_t)cfg->max_queued_msgs) return;
  uint64_t room = (uint64_t)cfg->max_queued_msgs - cnt;
  uint64_t room_bytes = (uint64_t)cfg->max_queued_bytes - l->qbytes;
  if (!room || !room_bytes) return;
  if (sl_spill_read(l->spill, (size_t)room, (size_t)room_bytes) == 0) l->refilling = 1;
}

/* Offer one delivery to a lane: StreamFenceJs's enqueue order (STREAMFENCE.md 1.5) with
 * Sluice's fixes: COALESCE works without coalesce:true (when the lane is full), DROP_OLDEST
 * counts every dropped message, SPILL_TO_DISK keeps strict FIFO (nothing overtakes what is
 * on disk) and never counts a failed write as spilled. */
static void lane_offer(sl_lane *l, sl_msg *m) {
  const sl_ns_config *cfg = lane_cfg(l);
  sl_topic *t = l->topic;
  if (m->est_bytes > (uint64_t)cfg->max_queued_bytes) {
    overflow(l, SL_OV_TOO_BIG, 1);
    return;
  }
  if (cfg->overflow == SL_SNAPSHOT_ONLY) {
    lane_clear(l);
    lane_push(l, m);
    lane_ready(l);
    return;
  }
  if (cfg->overflow == SL_SPILL_TO_DISK && l->spill && sl_spill_count(l->spill) > 0) {
    lane_spill_append(l, m);
    return;
  }
  if (cfg->coalesce && lane_coalesce(l, m, cfg)) {
    t->m[SL_M_COALESCED]++;
    lane_ready(l);
    return;
  }
  if (!lane_fits(l, m->est_bytes)) {
    switch (cfg->overflow) {
    case SL_DROP_OLDEST:
      while (l->qn && !lane_fits(l, m->est_bytes)) {
        sl_msg_unref(lane_pop(l));
        t->m[SL_M_DROPPED]++;
      }
      if (!lane_fits(l, m->est_bytes)) { /* only in-flight entries left */
        overflow(l, SL_OV_REJECT_NEW, 1);
        return;
      }
      break;
    case SL_COALESCE:
      if (lane_coalesce(l, m, cfg)) {
        t->m[SL_M_COALESCED]++;
        lane_ready(l);
      } else {
        overflow(l, SL_OV_NO_COALESCE_MATCH, 1);
      }
      return;
    case SL_SPILL_TO_DISK:
      lane_spill_append(l, m);
      return;
    default:
      overflow(l, SL_OV_REJECT_NEW, 1);
      return;
    }
  }
  lane_push(l, m);
  lane_ready(l);
}

static sl_lane *socket_lane(sl_socket *sock, sl_topic *t) {
  for (sl_lane *l = sock->lanes; l; l = l->next)
    if (l->topic == t) return l;
  return NULL;
}

/* sl_subscribe: subscribe a socket to a topic (idempotent). Returns 0. */
int sl_subscribe(sl_socket *sock, sl_topic *t) {
  if (socket_lane(sock, t)) return 0;
  sl_lane *l = sl_xcalloc(1, sizeof *l);
  l->sock = sock;
  l->topic = t;
  l->next = sock->lanes;
  sock->lanes = l;
  if (t->nsubs == t->capsubs) {
    t->capsubs = t->capsubs ? t->capsubs * 2 : 8;
    t->subs = sl_xrealloc(t->subs, sizeof(sl_lane *) * t->capsubs);
  }
  l->sub_idx = t->nsubs;
  t->subs[t->nsubs++] = l;
  /* A new subscriber first receives the snapshot state (snapshot hook), or for
   * SNAPSHOT_ONLY the last published message. */
  if (t->last) lane_offer(l, t->last);
  return 0;
}

/* Release a lane: its queue, its in-flight entries (their deadlines leave the heap, so an
 * unsubscribe with a message in flight never wedges a later subscription) and its spill
 * files. */
static void lane_free(sl_lane *l) {
  sl_topic *t = l->topic;
  if (l->sub_idx < t->nsubs && t->subs[l->sub_idx] == l) {
    sl_lane *last = t->subs[--t->nsubs];
    t->subs[l->sub_idx] = last;
    last->sub_idx = l->sub_idx;
  }
  sl_list_del(&l->rlink);
  while (l->ninfl) inflight_drop(l->infl[0]);
  lane_clear(l);
  if (l->spill) {
    sl_spill_close(l->spill, true, spill_root(t->ns->srv));
    l->spill = NULL;
  }
  free(l);
}

/* sl_unsubscribe: drop the subscription and whatever it still had queued or in flight. */
void sl_unsubscribe(sl_socket *sock, sl_topic *t) {
  for (sl_lane **pp = &sock->lanes; *pp; pp = &(*pp)->next) {
    if ((*pp)->topic == t) {
      sl_lane *l = *pp;
      *pp = l->next;
      lane_free(l);
      return;
    }
  }
}

/* sl_socket_drop_lanes: release every lane of a socket (disconnect). */
void sl_socket_drop_lanes(sl_socket *sock) {
  while (sock->lanes) {
    sl_lane *l = sock->lanes;
    sock->lanes = l->next;
    lane_free(l);
  }
}

/* sl_spill_sweep_server: remove spill files left by an earlier process (startup). */
void sl_spill_sweep_server(sl_server *srv) {
  bool any = false;
  for (size_t i = 0; i < srv->cfg->nns; i++) any |= srv->cfg->ns[i].overflow == SL_SPILL_TO_DISK;
  if (!any) return;
  long n = sl_spill_sweep(spill_root(srv));
  if (n > 0)
    sl_log_info("server \"%s\": removed %ld orphaned spill file(s) under %s", srv->cfg->name, n,
                spill_root(srv));
  else if (n < 0)
    sl_log_warn("server \"%s\": cannot sweep spill root %s: %s", srv->cfg->name, spill_root(srv),
                uv_strerror((int)n));
}

/* sl_session_pull: move up to `budget` bytes of deliveries from the session's ready lanes
 * into its transport queue, round-robin across lanes. Returns true when anything moved. */
bool sl_session_pull(sl_session *s, size_t budget) {
  bool moved = false;
  while (!sl_list_empty(&s->ready)) {
    sl_link *ln = s->ready.next;
    sl_lane *l = sl_container_of(ln, sl_lane, rlink);
    sl_list_del(ln);
    if (!lane_can_send(l)) continue;
    sl_msg *m = lane_pop(l);
    if (lane_cfg(l)->delivery == SL_AT_LEAST_ONCE) {
      /* The message stays accounted in the lane until acked or exhausted. */
      sl_inflight *e = sl_xcalloc(1, sizeof *e);
      e->m = m;
      e->lane = l;
      e->deadline = uv_now(lane_gw(l)->loop) + retry_delay(lane_cfg(l), 0);
      l->infl = sl_xrealloc(l->infl, sizeof(sl_inflight *) * (l->ninfl + 1));
      l->infl[l->ninfl++] = e;
      l->qbytes += m->est_bytes;
      heap_push(lane_gw(l), e);
      m = sl_msg_ref(m);
    }
    lane_maybe_refill(l);
    if (lane_can_send(l)) sl_list_push(&s->ready, ln);
    size_t sz;
    if (s->transport == SL_TR_WS) {
      if (!s->ws) {
        sl_msg_unref(m);
        continue;
      }
      sz = sl_msg_frame_len(m);
      sl_conn_queue(s->ws, m, false);
    } else {
      sz = m->len;
      s->pq_bytes += m->len;
      sl_mq_push(&s->pq, m, true);
    }
    moved = true;
    if (sz >= budget) break;
    budget -= sz;
  }
  return moved;
}

/* sl_gateway_flush_dirty: flush every session that got packets this iteration, then free
 * sockets released during it. */
void sl_gateway_flush_dirty(sl_gateway *gw) {
  int guard = 0;
  while (!sl_list_empty(&gw->dirty) && guard++ < 1000000) {
    sl_link *ln = gw->dirty.next;
    sl_session *s = sl_container_of(ln, sl_session, dlink);
    sl_list_del(ln);
    s->dirty = 0;
    sl_session_flush(s);
  }
  sl_eio_free_dead(gw);
  while (gw->dead) {
    sl_socket *k = gw->dead;
    gw->dead = k->next;
    free(k->principal);
    free(k);
  }
}

/* ---- publish ------------------------------------------------------------------------------- */

/* The key of a parsed value: in buf (cap bytes) when it fits, else malloc'd; NULL when the
 * value is not a string, number or boolean. */
static char *key_of_item(const cJSON *cur, char *buf, size_t cap) {
  int n;
  if (cJSON_IsString(cur))
    n = snprintf(buf, cap, "%s", cur->valuestring);
  else if (cJSON_IsNumber(cur))
    n = snprintf(buf, cap, "%.17g", cur->valuedouble);
  else if (cJSON_IsBool(cur))
    n = snprintf(buf, cap, "%s", cJSON_IsTrue(cur) ? "true" : "false");
  else
    return NULL;
  if (n >= 0 && (size_t)n < cap) return buf;
  return cJSON_IsString(cur) ? sl_xstrdup(cur->valuestring) : NULL; /* numbers always fit */
}

/* The rare shapes (escaped member names or string values): a cJSON tree, as before. */
static char *key_from_tree(const char *text, size_t len, const char *path, char *buf, size_t cap) {
  cJSON *root = cJSON_ParseWithLength(text, len);
  const cJSON *cur = root;
  const char *p = path;
  while (*p && cur) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    char seg[128];
    if (n >= sizeof seg) {
      cur = NULL;
      break;
    }
    memcpy(seg, p, n);
    seg[n] = 0;
    cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, seg) : NULL;
    p = dot ? dot + 1 : p + n;
  }
  char *key = cur ? key_of_item(cur, buf, cap) : NULL;
  cJSON_Delete(root);
  return key;
}

/* The key at a field path ("symbol", "quote.symbol") of the payload text: in buf (cap
 * bytes) when it fits, else malloc'd; NULL when the field is missing or not a scalar. The
 * text is scanned in place (sl_jscan.h), not parsed into a tree: once per publish. Keys are
 * the same as cJSON gives (first of duplicate names, numbers %.17g). */
static char *key_from_path(const char *text, size_t len, const char *path, char *buf, size_t cap) {
  const char *e = text + len, *p = sl_js_ws(text, e), *seg = path, *vs = NULL, *ve = NULL;
  for (;;) {
    const char *dot = strchr(seg, '.');
    size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
    if (n >= 128) return NULL;
    int r = sl_js_member(p, e, seg, n, &vs, &ve);
    /* escaped names, or text the strict scanner refuses but cJSON (which validated it)
     * accepts, such as a leading zero: ask cJSON, as before */
    if (r < 0) return key_from_tree(text, len, path, buf, cap);
    if (r == 0) return NULL;
    if (!dot) break;
    p = vs;
    seg = dot + 1;
  }
  size_t vn = (size_t)(ve - vs);
  switch (*vs) {
  case '"':
    if (memchr(vs + 1, '\\', vn - 2)) return key_from_tree(text, len, path, buf, cap);
    if (vn - 2 >= cap) return sl_xstrndup(vs + 1, vn - 2);
    memcpy(buf, vs + 1, vn - 2);
    buf[vn - 2] = 0;
    return buf;
  case 't': return cap > 4 ? strcpy(buf, "true") : NULL;
  case 'f': return cap > 5 ? strcpy(buf, "false") : NULL;
  case '{':
  case '[':
  case 'n': return NULL;
  default: {
    char num[64];
    if (vn >= sizeof num) return key_from_tree(text, len, path, buf, cap);
    memcpy(num, vs, vn);
    num[vn] = 0;
    int n = snprintf(buf, cap, "%.17g", strtod(num, NULL));
    return n >= 0 && (size_t)n < cap ? buf : NULL;
  }
  }
}

static sl_server *find_server(sl_gateway *gw, const char *name, const char *ns, sl_ns **nsout) {
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    if (name && strcmp(srv->cfg->name, name) != 0) continue;
    for (size_t j = 0; j < srv->nns; j++) {
      if (strcmp(srv->ns[j].path, ns) == 0) {
        *nsout = &srv->ns[j];
        return srv;
      }
    }
  }
  return NULL;
}

/* Encode the delivery packet once: 42<nsp>,["topic",payload(,meta)]. A coalesce key is
 * stored in the same allocation, right after the packet (sl_msg_unref knows). */
static sl_msg *encode_delivery(sl_ns *ns, sl_topic *t, const char *payload, size_t len,
                               const char *msgid, const char *key) {
  bool alo = ns->cfg->delivery == SL_AT_LEAST_ONCE;
  char meta[512];
  int ml = 0;
  if (alo) {
    ml = snprintf(meta, sizeof meta, ",{\"namespace\":%s,\"topic\":%s,\"messageId\":\"%s\",\"ackRequired\":true}",
                  ns->json_path, t->json_name, msgid);
    if (ml >= (int)sizeof meta) ml = (int)sizeof meta - 1;
  }
  bool root = ns->pathlen == 1;
  size_t tl = strlen(t->json_name);
  size_t total = 2 + (root ? 0 : ns->pathlen + 1) + 1 + tl + 1 + len + (size_t)ml + 1;
  size_t kl = key ? strlen(key) + 1 : 0;
  sl_msg *m = sl_msg_new(total + kl, SL_MK_DELIVERY);
  m->len = (uint32_t)total;
  uint8_t *p = sl_msg_packet(m);
  if (key) m->key = memcpy(p + total, key, kl);
  *p++ = '4';
  *p++ = '2';
  if (!root) {
    memcpy(p, ns->path, ns->pathlen);
    p += ns->pathlen;
    *p++ = ',';
  }
  *p++ = '[';
  memcpy(p, t->json_name, tl);
  p += tl;
  *p++ = ',';
  memcpy(p, payload, len);
  p += len;
  if (ml) {
    memcpy(p, meta, (size_t)ml);
    p += ml;
  }
  *p++ = ']';
  sl_msg_frame_finish(m);
  m->est_bytes = (uint32_t)len;
  return m;
}

static void offer_to(sl_ns *ns, sl_topic *t, sl_msg *m, const char *id) {
  sl_hent *e = sl_hash_get(&ns->sockets, id);
  if (!e) return;
  sl_lane *l = socket_lane(sl_container_of(e, sl_socket, hent), t);
  if (l) lane_offer(l, m);
}

/* Encode once and fan out on one topic. */
static void deliver(sl_gateway *gw, sl_ns *ns, sl_topic *t, const char *payload, size_t len,
                    const char *id, const sl_publish_opts *opts,
                    char **to, size_t nto) {
  const sl_ns_config *cfg = ns->cfg;
  char kbuf[256], *key = NULL;
  if (cfg->coalesce_key_path)
    key = key_from_path(payload, len, cfg->coalesce_key_path, kbuf, sizeof kbuf);
  else if (cfg->coalesce_key_ref != SL_NOREF && gw->lua)
    key = sl_lua_coalesce_key_buf(gw->lua, cfg->coalesce_key_ref, t->name, payload, len, kbuf,
                                  sizeof kbuf);
  sl_msg *m = encode_delivery(ns, t, payload, len, id, key);
  if (key != kbuf) free(key);
  if (cfg->delivery == SL_AT_LEAST_ONCE) m->msgid = sl_xstrdup(id);
  t->m[SL_M_PUBLISHED]++;
  t->m[SL_M_PUBLISHED_BYTES] += len;
  if (cfg->snapshot_ref != SL_NOREF && gw->lua) {
    /* The snapshot hook folds this message into the topic's state; a new subscriber gets
     * the state first. On error the previous state stays. */
    char *state = NULL;
    if (sl_lua_snapshot(gw->lua, cfg->snapshot_ref, &t->snap_ref, t->snap_json,
                        t->snap_json ? strlen(t->snap_json) : 0, t->name, payload, len, &state) == 0) {
      /* state NULL: the hook returned nil, which clears the state */
      free(t->snap_json);
      t->snap_json = state;
      sl_msg_unref(t->last);
      t->last = NULL;
      if (state) {
        t->last = encode_delivery(ns, t, state, strlen(state), id, NULL);
        if (cfg->delivery == SL_AT_LEAST_ONCE) t->last->msgid = sl_xstrdup(id);
      }
    }
  } else if (cfg->overflow == SL_SNAPSHOT_ONLY) {
    sl_msg_unref(t->last);
    t->last = sl_msg_ref(m);
  }
  if (opts->to) {
    offer_to(ns, t, m, opts->to);
  } else if (nto) {
    for (size_t i = 0; i < nto; i++) offer_to(ns, t, m, to[i]);
  } else {
    for (uint32_t i = 0; i < t->nsubs; i++) lane_offer(t->subs[i], m);
  }
  sl_msg_unref(m);
}

/* sl_publish: see sl_core.h. */
int sl_publish(sl_gateway *gw, const char *nspath, const char *topic, const char *payload,
               size_t len, const sl_publish_opts *opts, char *msgid) {
  sl_publish_opts none = {0};
  if (!opts) opts = &none;
  if (!gw) return SL_ESTATE;
  sl_ns *ns = NULL;
  sl_server *srv = find_server(gw, opts->server, nspath, &ns);
  if (!srv) return SL_ENOENT;
  sl_topic *t = sl_topic_find(ns, topic, strlen(topic));
  if (!t) return SL_ENOENT;
  if (len > (size_t)srv->cfg->max_payload) return SL_ETOOBIG;
  char id[SL_MSGID_MAX];
  sl_gateway_next_msgid(gw, id);
  if (msgid) memcpy(msgid, id, strlen(id) + 1);
  /* The route hook runs once per publish, before anything is encoded. */
  sluice_route_result rr = {0};
  if (sl_ns_hook_route(ns)) {
    if (!opts->trusted_json) {
      cJSON *chk = NULL;
      if (!(chk = cJSON_ParseWithLength(payload, len))) return SL_EINVAL;
      cJSON_Delete(chk);
    }
    sl_hooks_route(ns, topic, payload, len, opts, &rr);
    if (rr.action == SLUICE_ROUTE_DROP) {
      ns->route_dropped++;
      sl_hooks_route_free(&rr);
      return 0;
    }
    if (rr.payload_json) {
      payload = rr.payload_json;
      len = strlen(rr.payload_json);
    }
  }
  /* Text from outside is validated once (the route hook's path validated it already; our
   * own encoder's output needs none). Nothing downstream needs a tree. */
  if (!opts->trusted_json && !rr.payload_json && !sl_ns_hook_route(ns)) {
    cJSON *chk = cJSON_ParseWithLength(payload, len);
    if (!chk) {
      sl_hooks_route_free(&rr);
      return SL_EINVAL;
    }
    cJSON_Delete(chk);
  }
  if (rr.ntopics) {
    for (size_t i = 0; i < rr.ntopics; i++) {
      sl_topic *rt = sl_topic_find(ns, rr.topics[i], strlen(rr.topics[i]));
      if (!rt) {
        sl_log_warn("route hook of %s redirected to unknown topic \"%s\": skipped", ns->path, rr.topics[i]);
        continue;
      }
      deliver(gw, ns, rt, payload, len, id, opts, rr.to, rr.nto);
    }
  } else {
    deliver(gw, ns, t, payload, len, id, opts, rr.to, rr.nto);
  }
  sl_hooks_route_free(&rr);
  return 0;
}
