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
#include "sio_codec.h"
#include "../lua/sl_lua.h"

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
  ns->implicit_root = cfg == NULL;
  if (cfg && cfg->ntopics) {
    ns->ntopics = cfg->ntopics;
    ns->topics = sl_xcalloc(cfg->ntopics, sizeof(sl_topic));
    for (size_t i = 0; i < cfg->ntopics; i++) {
      ns->topics[i].name = sl_xstrdup(cfg->topics[i]);
      ns->topics[i].json_name = json_string_literal(cfg->topics[i]);
      ns->topics[i].ns = ns;
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
  }
  free(ns->topics);
  free(ns->path);
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
  if (l->qn == 0) {
    /* an idle lane holds no ring */
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

static void lane_ready(sl_lane *l) {
  sl_session *s = l->sock->sess;
  if (!sl_linked(&l->rlink)) sl_list_push(&s->ready, &l->rlink);
  sl_session_mark_dirty(s);
}

static bool key_matches(const sl_ns_config *cfg, const sl_msg *a, const sl_msg *b) {
  bool keyed = cfg->coalesce_key_path || cfg->coalesce_key_ref != SL_NOREF;
  if (!keyed) return true; /* no key: the topic is the key, latest value wins */
  return a->key && b->key && strcmp(a->key, b->key) == 0;
}

/* Replace the newest queued entry with the same key, in place. */
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

static void overflow(sl_lane *l, int reason) {
  l->topic->overflow[reason]++;
  (void)l;
}

/* Offer one delivery to a lane: StreamFenceJs's enqueue order (STREAMFENCE.md 1.5) with
 * Sluice's fixes (COALESCE works without coalesce:true, DROP_OLDEST counts every dropped
 * message). */
static void lane_offer(sl_lane *l, sl_msg *m) {
  const sl_ns_config *cfg = l->topic->ns->cfg;
  sl_topic *t = l->topic;
  if (m->est_bytes > (uint64_t)cfg->max_queued_bytes) {
    overflow(l, SL_OV_TOO_BIG);
    return;
  }
  if (cfg->overflow == SL_SNAPSHOT_ONLY) {
    lane_clear(l);
    lane_push(l, m);
    lane_ready(l);
    return;
  }
  if (cfg->coalesce && lane_coalesce(l, m, cfg)) {
    t->m[SL_M_COALESCED]++;
    lane_ready(l);
    return;
  }
  bool fits = l->qn < (uint64_t)cfg->max_queued_msgs &&
              l->qbytes + m->est_bytes <= (uint64_t)cfg->max_queued_bytes;
  if (!fits) {
    switch (cfg->overflow) {
    case SL_DROP_OLDEST:
      while (l->qn && !(l->qn < (uint64_t)cfg->max_queued_msgs &&
                        l->qbytes + m->est_bytes <= (uint64_t)cfg->max_queued_bytes)) {
        sl_msg_unref(lane_pop(l));
        t->m[SL_M_DROPPED]++;
      }
      break;
    case SL_COALESCE:
      if (lane_coalesce(l, m, cfg)) {
        t->m[SL_M_COALESCED]++;
        lane_ready(l);
      } else {
        overflow(l, SL_OV_NO_COALESCE_MATCH);
      }
      return;
    case SL_SPILL_TO_DISK:
      overflow(l, SL_OV_SPILL_FAILED);
      return;
    default:
      overflow(l, SL_OV_REJECT_NEW);
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
  /* SNAPSHOT_ONLY: a new subscriber first receives the last published message. */
  if (t->ns->cfg && t->ns->cfg->overflow == SL_SNAPSHOT_ONLY && t->last) lane_offer(l, t->last);
  return 0;
}

static void lane_free(sl_lane *l) {
  sl_topic *t = l->topic;
  if (l->sub_idx < t->nsubs && t->subs[l->sub_idx] == l) {
    sl_lane *last = t->subs[--t->nsubs];
    t->subs[l->sub_idx] = last;
    last->sub_idx = l->sub_idx;
  }
  sl_list_del(&l->rlink);
  lane_clear(l);
  free(l);
}

/* sl_unsubscribe: drop the subscription and whatever it still had queued. */
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

/* sl_delivery_ack: settle an AT_LEAST_ONCE message (not yet: BEST_EFFORT only). */
bool sl_delivery_ack(sl_socket *sock, sl_topic *t, const char *msgid) {
  (void)sock;
  (void)t;
  (void)msgid;
  return false;
}

/* sl_session_pull: move up to `budget` bytes of deliveries from the session's ready lanes
 * into its transport queue, round-robin across lanes. Returns true when anything moved. */
bool sl_session_pull(sl_session *s, size_t budget) {
  bool moved = false;
  while (!sl_list_empty(&s->ready)) {
    sl_link *ln = s->ready.next;
    sl_lane *l = sl_container_of(ln, sl_lane, rlink);
    sl_msg *m = lane_pop(l);
    sl_list_del(ln);
    if (l->qn) sl_list_push(&s->ready, ln);
    if (!m) continue;
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
  while (gw->dead) {
    sl_socket *k = gw->dead;
    gw->dead = k->next;
    free(k->principal);
    free(k);
  }
}

/* ---- publish ------------------------------------------------------------------------------- */

static char *key_from_path(const cJSON *root, const char *path) {
  const cJSON *cur = root;
  const char *p = path;
  while (*p && cur) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    char seg[128];
    if (n >= sizeof seg) return NULL;
    memcpy(seg, p, n);
    seg[n] = 0;
    cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, seg) : NULL;
    p = dot ? dot + 1 : p + n;
  }
  if (!cur) return NULL;
  if (cJSON_IsString(cur)) return sl_xstrdup(cur->valuestring);
  if (cJSON_IsNumber(cur)) {
    char b[40];
    snprintf(b, sizeof b, "%.17g", cur->valuedouble);
    return sl_xstrdup(b);
  }
  if (cJSON_IsBool(cur)) return sl_xstrdup(cJSON_IsTrue(cur) ? "true" : "false");
  return NULL;
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

/* Encode the delivery packet once: 42<nsp>,["topic",payload(,meta)] */
static sl_msg *encode_delivery(sl_ns *ns, sl_topic *t, const char *payload, size_t len,
                               const char *msgid) {
  bool alo = ns->cfg->delivery == SL_AT_LEAST_ONCE;
  char meta[512];
  int ml = 0;
  if (alo) {
    char *jns = json_string_literal(ns->path);
    ml = snprintf(meta, sizeof meta, ",{\"namespace\":%s,\"topic\":%s,\"messageId\":\"%s\",\"ackRequired\":true}",
                  jns, t->json_name, msgid);
    free(jns);
    if (ml >= (int)sizeof meta) ml = (int)sizeof meta - 1;
  }
  bool root = ns->pathlen == 1;
  size_t tl = strlen(t->json_name);
  size_t total = 2 + (root ? 0 : ns->pathlen + 1) + 1 + tl + 1 + len + (size_t)ml + 1;
  sl_msg *m = sl_msg_new(total, SL_MK_DELIVERY);
  uint8_t *p = sl_msg_packet(m);
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
  const sl_ns_config *cfg = ns->cfg;
  cJSON *parsed = NULL;
  if (!opts->trusted_json || cfg->coalesce_key_path) {
    parsed = cJSON_ParseWithLength(payload, len);
    if (!parsed) return SL_EINVAL;
  }
  char id[SL_MSGID_MAX];
  sl_gateway_next_msgid(gw, id);
  if (msgid) memcpy(msgid, id, strlen(id) + 1);
  sl_msg *m = encode_delivery(ns, t, payload, len, id);
  if (cfg->delivery == SL_AT_LEAST_ONCE) m->msgid = sl_xstrdup(id);
  if (cfg->coalesce_key_path) m->key = key_from_path(parsed, cfg->coalesce_key_path);
  else if (cfg->coalesce_key_ref != SL_NOREF && gw->lua)
    m->key = sl_lua_coalesce_key(gw->lua, cfg->coalesce_key_ref, topic, payload, len);
  cJSON_Delete(parsed);
  t->m[SL_M_PUBLISHED]++;
  t->m[SL_M_PUBLISHED_BYTES] += len;
  if (cfg->overflow == SL_SNAPSHOT_ONLY) {
    sl_msg_unref(t->last);
    t->last = sl_msg_ref(m);
  }
  if (opts->to) {
    sl_hent *e = sl_hash_get(&ns->sockets, opts->to);
    if (e) {
      sl_socket *sock = sl_container_of(e, sl_socket, hent);
      sl_lane *l = socket_lane(sock, t);
      if (l) lane_offer(l, m);
    }
  } else {
    for (uint32_t i = 0; i < t->nsubs; i++) lane_offer(t->subs[i], m);
  }
  sl_msg_unref(m);
  return 0;
}
