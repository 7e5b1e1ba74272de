/* publish.c - the publish pipeline (publish.h): message ids, the route hook, coalesce keys,
 * the snapshot hook, one encoding per publish and topic, the fan-out to the lanes.
 *
 * One publish = one sl_msg holding the encoded Socket.IO packet and its WebSocket frame.
 * Fan-out appends a pointer to that message to every subscriber's lane (no copies, no
 * per-recipient encoding, no Lua per recipient). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "publish.h"
#include "topics.h"
#include "lanes.h"
#include "lane.h"
#include "keys.h"
#include "recovery.h"
#include "sl_jscan.h"
#include "sio_codec.h"
#include "hooks.h"
#include "msg.h"
#include "sl_util.h"

/* The next message id, "msg-<boot id>-<n>": unique across namespaces and restarts (the
 * boot id is random per process), still the StreamFenceJs string shape with its prefix. */
static void next_msgid(sl_gateway *gw, char *out) {
  /* by hand: once per publish, and snprintf costs more than the rest of this id's work */
  size_t b = strlen(gw->boot_id);
  if (4 + b + 1 + 20 + 1 > SL_MSGID_MAX) {
    snprintf(out, SL_MSGID_MAX, "msg-%s-%llu", gw->boot_id, (unsigned long long)++gw->msg_counter);
    return;
  }
  memcpy(out, "msg-", 4);
  memcpy(out + 4, gw->boot_id, b);
  out[4 + b] = '-';
  size_t n = sl_u64_dec(out + 5 + b, ++gw->msg_counter);
  out[5 + b + n] = 0;
}

/* The server (the named one, or the first) that has namespace path ns, and that namespace. */
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

/* The delivery of one publish on c->topic as one immutable message: the EVENT packet
 * (sl_sio_encode_delivery) behind room for its WebSocket frame header, c->key in the same
 * allocation right after the packet (sl_msg_unref knows), the message id for AT_LEAST_ONCE.
 * payload may differ from c->payload (a snapshot state). */
static sl_msg *encode(const sl_pubctx *c, const char *payload, size_t len) {
  const char *key = c->key;
  const sl_ns *ns = c->ns;
  bool alo = ns->cfg->delivery == SL_AT_LEAST_ONCE;
  sl_sio_delivery d = {
      .nsp = ns->path,
      .nsplen = ns->pathlen,
      .nsp_json = ns->json_path,
      .topic_json = c->topic->json_name,
      .payload = payload,
      .len = len,
      .msgid = alo ? c->msgid : NULL,
      .offset = c->offset,
      .offlen = c->offlen,
  };
  size_t total = sl_sio_delivery_len(&d);
  size_t kl = key ? strlen(key) + 1 : 0;
  sl_msg *m = sl_msg_new(total + kl, SL_MK_DELIVERY);
  m->len = (uint32_t)total;
  uint8_t *p = sl_msg_packet(m);
  if (key) m->key = memcpy(p + total, key, kl);
  sl_sio_encode_delivery(p, &d);
  sl_msg_frame_finish(m);
  m->est_bytes = (uint32_t)len;
  if (alo) m->msgid = sl_xstrdup(c->msgid);
  return m;
}

/* sl_publish_encode_replay: see publish.h. */
sl_msg *sl_publish_encode_replay(sl_ns *ns, sl_topic *t, const char *payload, size_t len,
                                 const char *key, const char *msgid, const char *offset) {
  char mid[SL_MSGID_MAX];
  if (!msgid && ns->cfg->delivery == SL_AT_LEAST_ONCE) {
    next_msgid(ns->srv->gw, mid);
    msgid = mid;
  }
  sl_pubctx c = {.gw = ns->srv->gw,
                 .ns = ns,
                 .topic = t,
                 .msgid = msgid,
                 .key = key,
                 .offset = offset,
                 .offlen = offset ? strlen(offset) : 0};
  return encode(&c, payload, len);
}

/* Did a recovery's replay from the stream offer this delivery to l already? (Its reply can
 * overtake the reader's for the same entries.) */
static bool replayed(const sl_pubctx *c, const sl_lane *l) {
  return c->off_n && c->off_n <= sl_lane_replay_upto(l);
}

static void offer_to(const sl_pubctx *c, sl_msg *m, const char *id) {
  sl_hent *e = sl_hash_get(&c->ns->sockets, id);
  if (!e) return;
  sl_lane *l = sl_lane_of(sl_container_of(e, sl_socket, hent), c->topic);
  if (l && !replayed(c, l)) sl_lane_offer(l, m);
}

/* The snapshot hook folds this message into the topic's state; a new subscriber gets the
 * state first. On error the previous state stays; nil clears it. */
static void snapshot(sl_pubctx *c) {
  const sl_hookset *hs = &c->ns->hooks;
  sl_topic *t = c->topic;
  char *state = NULL;
  if (hs->fn.snapshot(hs->ud[SL_HK_SNAPSHOT], &t->snap_slot, t->snap_json,
                      t->snap_json ? strlen(t->snap_json) : 0, t->name, c->payload, c->len,
                      &state) != 0)
    return;
  free(t->snap_json);
  t->snap_json = state;
  sl_msg_unref(t->last);
  t->last = state ? encode(c, state, strlen(state)) : NULL; /* c->key is NULL */
}

static bool excluded(const sl_remote_opts *o, const char *id) {
  for (size_t i = 0; i < o->nexcept; i++)
    if (strcmp(o->except[i], id) == 0) return true;
  return false;
}

/* Fan m out on c->topic: to the one recipient, the chosen ones, or every subscriber (less
 * the excluded ones of a remote message). */
static void fan_out(const sl_pubctx *c, sl_msg *m) {
  sl_topic *t = c->topic;
  const sl_remote_opts *o = c->remote;
  if (c->to) {
    offer_to(c, m, c->to);
  } else if (c->nroute_to) {
    for (size_t i = 0; i < c->nroute_to; i++)
      if (!o || !o->nexcept || !excluded(o, c->route_to[i])) offer_to(c, m, c->route_to[i]);
  } else if ((o && o->nexcept) || (c->off_n && c->off_n <= t->replay_upto)) {
    for (uint32_t i = 0; i < t->nsubs; i++)
      if ((!o || !excluded(o, t->subs[i]->sock->id)) && !replayed(c, t->subs[i]))
        sl_lane_offer(t->subs[i], m);
  } else {
    for (uint32_t i = 0; i < t->nsubs; i++) sl_lane_offer(t->subs[i], m);
  }
}

/* A remote message's snapshot state becomes the topic's (sl_publish_remote). */
static void snapshot_remote(sl_pubctx *c) {
  const sl_remote_opts *o = c->remote;
  sl_topic *t = c->topic;
  free(t->snap_json);
  t->snap_json = o->snapshot ? sl_xstrndup(o->snapshot, o->snapshot_len) : NULL;
  if (t->snap_slot > 0) t->snap_slot = SLUICE_SLOT_STALE(t->snap_slot);
  sl_msg_unref(t->last);
  t->last = t->snap_json ? encode(c, t->snap_json, o->snapshot_len) : NULL;
}

/* Hand one publish on c->topic to the bus (after the snapshot hook, which runs here, on the
 * origin). Returns SL_BUS_LOCAL (deliver here now, the snapshot done), SL_BUS_TAKEN or
 * SL_EFULL. */
static int to_bus(sl_pubctx *c, const char *key) {
  sl_server *srv = c->ns->srv;
  sl_topic *t = c->topic;
  const sl_hookset *hs = &c->ns->hooks;
  sl_bus_pub p = {.ns = c->ns,
                  .topic = t,
                  .payload = c->payload,
                  .len = c->len,
                  .key = key,
                  .msgid = c->msgid,
                  .to = c->to ? &c->to : (const char *const *)c->route_to,
                  .nto = c->to ? 1 : c->nroute_to};
  if (hs->fn.snapshot) {
    char *before = t->snap_json;
    t->snap_json = before ? sl_xstrdup(before) : NULL;
    snapshot(c);
    p.snapshot_set = !(before == NULL && t->snap_json == NULL) &&
                     !(before && t->snap_json && strcmp(before, t->snap_json) == 0);
    p.snapshot = t->snap_json;
    free(before);
  }
  return srv->bus(srv->bus_ud, &p);
}

/* Encode once and fan out on c->topic. */
static void deliver(sl_pubctx *c) {
  sl_topic *t = c->topic;
  const sl_ns_config *cfg = c->ns->cfg;
  const sl_hookset *hs = &c->ns->hooks;
  char kbuf[256], *key = NULL;
  bool snapped = false;
  if (c->remote)
    key = (char *)c->remote->key;
  else if (cfg->coalesce_key_path)
    key = sl_key_from_path(c->payload, c->len, cfg->coalesce_key_path, kbuf, sizeof kbuf);
  else if (hs->fn.coalesce_key)
    key = hs->fn.coalesce_key(hs->ud[SL_HK_COALESCE_KEY], t->name, c->payload, c->len, kbuf,
                              sizeof kbuf);
  if (!c->remote && c->ns->srv->bus) {
    int r = to_bus(c, key);
    if (r != SL_BUS_LOCAL) {
      if (r < 0 && !c->rc) c->rc = r;
      if (key != kbuf) free(key);
      return;
    }
    snapped = true;
  }
  c->key = key;
  /* recovery: the delivery's offset, in the packet (once) and in the history: the stream
   * entry id of a message from the cluster bus, else the namespace's own counter */
  char off[SL_OFFSET_MAX];
  if (c->ns->hist) {
    bool cluster = c->ns->srv->bus || c->remote;
    c->offlen = sl_recovery_next_offset(c->ns, cluster, c->remote ? c->remote->offset : NULL, off,
                                        &c->off_n);
    c->offset = c->offlen ? off : NULL;
    if (!c->offset) sl_recovery_gap(c->ns, t);
  }
  sl_msg *m = encode(c, c->payload, c->len);
  if (key != kbuf && !c->remote) free(key);
  c->key = NULL;
  t->m[SL_M_PUBLISHED]++;
  t->m[SL_M_PUBLISHED_BYTES] += c->len;
  if (c->remote) {
    if (c->remote->snapshot_set) snapshot_remote(c);
  } else if (hs->fn.snapshot) {
    if (!snapped) snapshot(c);
  }
  if (!hs->fn.snapshot && !(c->remote && c->remote->snapshot_set) &&
      cfg->overflow == SL_SNAPSHOT_ONLY) {
    sl_msg_unref(t->last);
    t->last = sl_msg_ref(m);
  }
  if (c->offset) {
    sl_recovery_record(c->ns, t, m, c->off_n, c->to, c->route_to, c->nroute_to);
    c->offset = NULL;
  }
  fan_out(c, m);
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
  next_msgid(gw, id);
  if (msgid) memcpy(msgid, id, strlen(id) + 1);
  sl_pubctx c = {.gw = gw,
                 .ns = ns,
                 .topic = t,
                 .payload = payload,
                 .len = len,
                 .source = opts->source,
                 .from = opts->from,
                 .msgid = id,
                 .to = opts->to};
  /* The route hook runs once per publish, before anything is encoded. */
  sluice_route_result rr = {0};
  if (sl_ns_hook_route(ns)) {
    if (!opts->trusted_json && !sl_js_valid(payload, len)) return SL_EINVAL;
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
   * own encoder's output needs none). Nothing downstream needs a tree. The scanner, not
   * cJSON, judges it: cJSON accepts a leading zero ("01"), which RFC 8259 forbids and
   * every scanner downstream (payload views, field-path keys) refuses. */
  if (!opts->trusted_json && !rr.payload_json && !sl_ns_hook_route(ns) &&
      !sl_js_valid(payload, len)) {
    sl_hooks_route_free(&rr);
    return SL_EINVAL;
  }
  c.payload = payload;
  c.len = len;
  c.route_to = rr.to;
  c.nroute_to = rr.nto;
  if (rr.ntopics) {
    for (size_t i = 0; i < rr.ntopics; i++) {
      sl_topic *rt = sl_topic_find(ns, rr.topics[i], strlen(rr.topics[i]));
      if (!rt) {
        sl_log_warn("route hook of %s redirected to unknown topic \"%s\": skipped", ns->path,
                    rr.topics[i]);
        continue;
      }
      c.topic = rt;
      deliver(&c);
    }
  } else {
    deliver(&c);
  }
  sl_hooks_route_free(&rr);
  return c.rc;
}

/* sl_publish_remote: see publish.h. */
int sl_publish_remote(sl_gateway *gw, sl_ns *ns, const char *topic, size_t topiclen,
                      const char *payload, size_t len, const sl_remote_opts *o) {
  static const sl_remote_opts none = {0};
  if (!o) o = &none;
  if (!gw || !ns || !topic || !payload || !ns->cfg) return SL_EINVAL;
  sl_topic *t = sl_topic_find(ns, topic, topiclen);
  if (!t) return SL_ENOENT;
  if (len > (size_t)ns->srv->cfg->max_payload) return SL_ETOOBIG;
  if (!o->trusted_json && !sl_js_valid(payload, len)) return SL_EINVAL;
  char id[SL_MSGID_MAX];
  const char *msgid = o->msgid;
  if (ns->cfg->delivery == SL_AT_LEAST_ONCE &&
      (!msgid || !msgid[0] || strlen(msgid) >= SL_MSGID_MAX)) {
    next_msgid(gw, id);
    msgid = id;
  }
  sl_pubctx c = {.gw = gw,
                 .ns = ns,
                 .topic = t,
                 .payload = payload,
                 .len = len,
                 .source = SL_SRC_API,
                 .msgid = msgid,
                 .route_to = (char *const *)o->rooms,
                 .nroute_to = o->nrooms,
                 .remote = o};
  deliver(&c);
  return 0;
}
