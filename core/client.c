/* client.c - the StreamFenceJs client protocol (subscribe, unsubscribe, ack, publish),
 * authorization with its per-address rate limit, onConnect / onEvent and the client server
 * events, on top of delivery. sio reaches it through sl_client_sio_handler. See client.h and
 * shared/STREAMFENCE.md section 2. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "client.h"
#include "sio_codec.h"
#include "acks.h"
#include "hooks.h"
#include "lanes.h"
#include "lane.h"
#include "msg.h"
#include "publish.h"
#include "topics.h"
#include "recovery.h"
#include "cluster.h"

/* Emit {"code","message"} on the `error` event (DESIGN.md 3.5 refusals). */
static void emit_error(sl_socket *sock, const char *code, const char *message) {
  cJSON *a = cJSON_CreateArray();
  cJSON_AddItemToArray(a, cJSON_CreateString("error"));
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "code", code);
  cJSON_AddStringToObject(o, "message", message);
  cJSON_AddItemToArray(a, o);
  char *t = sl_json_print(a);
  if (t) sl_sio_send(sock, SIO_EVENT, -1, t, strlen(t));
  free(t);
  cJSON_Delete(a);
}

/* sl_client_topic_removed: see client.h. */
void sl_client_topic_removed(sl_socket *sock, const char *topic) {
  cJSON *a = cJSON_CreateArray();
  cJSON_AddItemToArray(a, cJSON_CreateString("error"));
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "code", "TOPIC_REMOVED");
  char msg[512];
  snprintf(msg, sizeof msg,
           "topic %.200s was removed by a configuration reload; you are unsubscribed", topic);
  cJSON_AddStringToObject(o, "message", msg);
  cJSON_AddStringToObject(o, "namespace", sl_socket_ns(sock));
  cJSON_AddStringToObject(o, "topic", topic);
  cJSON_AddItemToArray(a, o);
  char *t = cJSON_PrintUnformatted(a);
  if (t) sl_sio_send(sock, SIO_EVENT, -1, t, strlen(t));
  free(t);
  cJSON_Delete(a);
}

/* Answer a Socket.IO ack id with [{"ok":true,...}] or [{"ok":false,"code","message"}]. */
static void ack_result(sl_socket *sock, int64_t ack_id, const char *code, const char *message,
                       const char *msgid) {
  if (ack_id < 0) return;
  cJSON *a = cJSON_CreateArray();
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ok", code == NULL);
  if (code) {
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", message);
  }
  if (msgid) cJSON_AddStringToObject(o, "messageId", msgid);
  cJSON_AddItemToArray(a, o);
  char *t = sl_json_print(a);
  if (t) sl_sio_send(sock, SIO_ACK, ack_id, t, strlen(t));
  free(t);
  cJSON_Delete(a);
}

static void refuse(sl_socket *sock, int64_t ack_id, const char *code, const char *message) {
  ack_result(sock, ack_id, code, message, NULL);
  emit_error(sock, code, message);
}

/* ---- authentication ------------------------------------------------------------------ */

#define SL_AUTH_MAX_FAILURES 5    /* failures from one address before it is rate limited */
#define SL_AUTH_COOLDOWN_MS 30000 /* how long it stays limited */
#define SL_AUTH_TABLE_MAX 10000   /* bound on tracked addresses */

typedef struct auth_fail {
  sl_hent hent;
  uint32_t failures;
  uint64_t until; /* limited until (loop ms), 0 = not limited */
  uint64_t last;
  char addr[46];
} auth_fail;

/* Forget the entries that are not limited at `now` (UINT64_MAX: every entry). */
static void auth_forget(sl_server *srv, uint64_t now) {
  for (size_t b = 0; b < srv->auth_failures.nb; b++) {
    sl_hent *x = srv->auth_failures.b[b];
    while (x) {
      sl_hent *nx = x->hnext;
      auth_fail *f = sl_container_of(x, auth_fail, hent);
      if (f->until <= now) {
        sl_hash_del(&srv->auth_failures, x);
        free(f);
      }
      x = nx;
    }
  }
}

static auth_fail *auth_entry(sl_server *srv, const char *addr, bool create) {
  sl_hent *e = sl_hash_get(&srv->auth_failures, addr);
  if (e) return sl_container_of(e, auth_fail, hent);
  if (!create) return NULL;
  if (srv->auth_failures.n >= SL_AUTH_TABLE_MAX) {
    auth_forget(srv, uv_now(srv->gw->loop)); /* keeps the table bounded */
    if (srv->auth_failures.n >= SL_AUTH_TABLE_MAX) return NULL;
  }
  auth_fail *f = sl_xcalloc(1, sizeof *f);
  snprintf(f->addr, sizeof f->addr, "%s", addr);
  sl_hash_put(&srv->auth_failures, &f->hent, f->addr);
  return f;
}

/* sl_auth_free_table: see client.h. */
void sl_auth_free_table(sl_server *srv) {
  auth_forget(srv, UINT64_MAX);
  sl_hash_free(&srv->auth_failures);
}

enum { AUTH_OK = 1, AUTH_REJECTED = 0, AUTH_LIMITED = -1 };

/* Authorize a token for a namespace (topic NULL: CONNECT) with the namespace's authorize
 * hook, or the server's static token list. Failures are counted per remote address; after
 * SL_AUTH_MAX_FAILURES the address is refused for SL_AUTH_COOLDOWN_MS (RATE_LIMITED). */
static int authorize(sl_socket *sock, const char *token, const char *topic, char *reason,
                     size_t rlen) {
  sl_ns *ns = sock->ns;
  sl_server *srv = ns->srv;
  sl_gateway *gw = srv->gw;
  uint64_t now = uv_now(gw->loop);
  auth_fail *f = auth_entry(srv, sock->sess->remote, false);
  if (f && f->until > now) {
    ns->auth_rate_limited++;
    snprintf(reason, rlen, "too many failed authentication attempts");
    return AUTH_LIMITED;
  }
  char *principal = NULL;
  int ok = 0;
  if (ns->hooks.fn.authorize) {
    ok = ns->hooks.fn.authorize(ns->hooks.ud[SL_HK_AUTHORIZE], token, ns->path, topic, sock,
                                &principal, reason, rlen);
  } else if (srv->cfg->ntokens) {
    for (size_t i = 0; token && i < srv->cfg->ntokens; i++) {
      if (strcmp(srv->cfg->tokens[i], token) == 0) {
        ok = 1;
        principal = sl_xstrdup(token);
      }
    }
    if (!ok) snprintf(reason, rlen, "%s", token ? "invalid token" : "missing token");
  } else {
    snprintf(reason, rlen, "no authorization is configured for %s", ns->path);
  }
  if (ok) {
    free(sock->principal);
    sock->principal = principal;
    if (f) f->failures = 0;
    return AUTH_OK;
  }
  free(principal);
  ns->auth_rejected++;
  f = auth_entry(srv, sock->sess->remote, true);
  if (f) {
    f->failures++;
    f->last = now;
    if (f->failures >= SL_AUTH_MAX_FAILURES) {
      f->until = now + SL_AUTH_COOLDOWN_MS;
      f->failures = 0;
    }
  }
  return AUTH_REJECTED;
}

static const char *token_of(const cJSON *obj) {
  const cJSON *t = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, "token") : NULL;
  return cJSON_IsString(t) && t->valuestring[0] ? t->valuestring : NULL;
}

/* ---- CONNECT ------------------------------------------------------------------------- */

/* on_connect: authRequired (the token from auth.token, else the handshake's bearer), then
 * the namespace's onConnect hook. */
static bool client_connect(sl_socket *sock, const cJSON *auth, char *why, size_t why_len,
                           const char **code) {
  sl_session *s = sock->sess;
  sl_ns *ns = sock->ns;
  const char *tok = token_of(auth);
  if (tok) sock->auth_token = sl_xstrdup(tok);
  if (ns->cfg && ns->cfg->auth_required) {
    int a = authorize(sock, tok ? tok : s->bearer, NULL, why, why_len);
    if (a != AUTH_OK || s->state == SL_ST_CLOSED) {
      *code = a == AUTH_LIMITED ? "RATE_LIMITED" : "AUTH_REJECTED";
      return false;
    }
  }
  if (ns->hooks.fn.connect) {
    snprintf(why, why_len, "Not authorized");
    sock->connecting = 1;
    char *text = auth ? sl_json_print(auth) : NULL;
    int ok = ns->hooks.fn.connect(ns->hooks.ud[SL_HK_CONNECT], sock, text, text ? strlen(text) : 0,
                                  why, why_len);
    free(text);
    sock->connecting = 0;
    if (!ok) return false;
  }
  return true;
}

static const char *transport_name(const sl_socket *sock) {
  return sock->sess->transport == SL_TR_WS ? "websocket" : "polling";
}

/* A recovery on this node of a session another node kept, with the stream's entries after
 * the client's offset (sl_cluster_range): set while sl_sio_pending_done runs (the CONNECT
 * is handled, the socket joined, synchronously), for client_recover_remote and
 * client_joined. status: as sl_cluster_range_cb's. */
typedef struct xr_inflight {
  char *topic;
  char id[SL_OFFSET_MAX];
  char msgid[SL_MSGID_MAX];
  sl_msg *m;   /* rebuilt from its stream entry; NULL: the entry is gone (trimmed) */
  void *owner; /* the lookup fetching it (client.c's lookup_ctx) */
} xr_inflight;

static struct {
  bool set;
  int status;
  const sl_cluster_entry *v;
  size_t n;
  const sl_socket *sock; /* the socket that recovered from it */
  xr_inflight *inf;      /* the session's in-flight AT_LEAST_ONCE messages */
  size_t ninf;
} xr;

static bool xr_inflight_has(const char *topic, const char *id) {
  for (size_t i = 0; i < xr.ninf; i++)
    if (strcmp(xr.inf[i].id, id) == 0 && strcmp(xr.inf[i].topic, topic) == 0) return true;
  return false;
}

static bool id_in(char *const *ids, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(ids[i], id) == 0) return true;
  return false;
}

/* Offer to sock's lanes the stream entries v[0..n) that are for it: its namespace, a topic
 * it holds (after the lane's subscription), addressed to it or to everyone (a room is a
 * client id), not excepting it. Each is encoded once, with its stream id as the offset and
 * its message id. Returns how many were offered. */
static uint64_t replay_range(sl_socket *sock, const sl_cluster_entry *v, size_t n) {
  sl_ns *ns = sock->ns;
  uint64_t k = 0, idn;
  for (size_t i = 1; i < n; i++) { /* v[0]: the client's offset, processed already */
    const sl_cl_entry *e = &v[i].e;
    if (v[i].rc != SL_CL_OK || strcmp(e->nsp, ns->path) != 0) continue;
    if (xr_inflight_has(e->topic, v[i].id)) continue; /* sent again as in flight */
    sl_topic *t = sl_topic_find(ns, e->topic, e->topiclen);
    sl_lane *l = t ? sl_lane_of(sock, t) : NULL;
    if (!l || !sl_recovery_stream_id(v[i].id, &idn) || idn <= sl_lane_sub_from(l)) continue;
    if ((e->nrooms && !id_in(e->rooms, e->nrooms, sock->id)) ||
        id_in(e->except, e->nexcept, sock->id))
      continue;
    sl_msg *m = sl_publish_encode_replay(ns, t, e->payload, e->len, e->key, e->msgid, v[i].id);
    sl_lane_offer(l, m);
    sl_msg_unref(m);
    k++;
  }
  /* the reader may deliver some of these entries after this reply: not twice */
  uint64_t last = 0;
  if (n && !sl_recovery_stream_id(v[n - 1].id, &last)) last = 0;
  for (sl_lane *l = sock->lanes; l; l = l->next) {
    if (l->rec) ((sl_lane_rec *)l)->replay_upto = last;
    if (l->topic->replay_upto < last) l->topic->replay_upto = last;
    sl_lane_ready(l);
  }
  ns->replayed += k;
  return k;
}

static void client_joined(sl_socket *sock) {
  if (sock->ns->implicit_root) return;
  if (sock->recovered) {
    uint64_t t0 = uv_hrtime();
    uint64_t n = sl_recovery_resume(sock, sl_socket_rec_of(sock)->rec_from);
    if (xr.set && xr.sock == sock) n += replay_range(sock, xr.v, xr.n);
    sl_log_info("client %s recovered: namespace %s, remote %s, transport %s, server \"%s\", %llu "
                "message(s) replayed into its lanes in %.3f ms",
                sock->id, sock->ns->path, sock->sess->remote, transport_name(sock),
                sock->sess->srv->cfg->name, (unsigned long long)n,
                (double)(uv_hrtime() - t0) / 1e6);
  } else {
    sl_log_info("client %s connected: namespace %s, remote %s, transport %s, server \"%s\"",
                sock->id, sock->ns->path, sock->sess->remote, transport_name(sock),
                sock->sess->srv->cfg->name);
  }
  sl_hooks_event(sock->sess->srv, SL_EV_CONNECT, sock, NULL, NULL, NULL, 0);
}

/* on_close: a joined socket's lanes go and the disconnect event fires; for any socket the
 * client_free hooks run (the Lua side clears its box). A socket parked for recovery keeps
 * its lanes (detached) and its box. */
/* How much longer than maxDisconnectionMs the record of a parked session lives in Redis: at
 * its expiry the node that kept it takes the record back (GETDEL) to learn whether another
 * node resumed the session (on_park_due), so the key must outlive the node's timer. */
#define SL_SESSION_KEY_MARGIN_MS 10000

/* A parked socket's session as the cluster's store keeps it (sio:session:<pid>), for another
 * node to rebuild: {"node","sid","pid","expires","principal","token","topics":[[name, from,
 * held], ...], "inflight":[[topic, stream id, messageId], ...]} (expires: the wall-clock time,
 * ms since the epoch, at which the session expires, as a decimal string; from: the lane's
 * subscription offset, a decimal string: it may exceed 2^53; held: what the lane holds, lost
 * if the session expires, a number: a parked lane's content does not change; inflight: the
 * AT_LEAST_ONCE messages sent and not acked, which the other node fetches from the stream by
 * id). */
static void session_store(sl_socket *sock) {
  sl_server *srv = sock->ns->srv;
  uint64_t ttl = (uint64_t)sock->ns->cfg->recovery.max_disconnection_ms;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "node", srv->gw->boot_id);
  char exp[24];
  exp[sl_u64_dec(exp, sl_wall_us() / 1000 + ttl)] = 0;
  cJSON_AddStringToObject(o, "expires", exp);
  cJSON_AddStringToObject(o, "sid", sock->id);
  cJSON_AddStringToObject(o, "pid", sl_socket_pid(sock));
  if (sock->principal) cJSON_AddStringToObject(o, "principal", sock->principal);
  if (sock->auth_token) cJSON_AddStringToObject(o, "token", sock->auth_token);
  cJSON *ts = cJSON_AddArrayToObject(o, "topics");
  for (sl_lane *l = sock->lanes; l; l = l->next) {
    cJSON *e = cJSON_CreateArray();
    char n[24];
    n[sl_u64_dec(n, sl_lane_sub_from(l))] = 0;
    cJSON_AddItemToArray(e, cJSON_CreateString(l->topic->name));
    cJSON_AddItemToArray(e, cJSON_CreateString(n));
    cJSON_AddItemToArray(e, cJSON_CreateNumber((double)sl_lane_held(l)));
    cJSON_AddItemToArray(ts, e);
  }
  cJSON *inf = cJSON_AddArrayToObject(o, "inflight");
  for (sl_lane *l = sock->lanes; l; l = l->next)
    for (uint32_t i = 0; i < l->ninfl; i++) {
      char off[SL_OFFSET_MAX];
      const sl_msg *m = l->infl[i]->m;
      if (!m->msgid || !sl_recovery_msg_offset(m, off)) continue; /* delivered without an id */
      cJSON *e = cJSON_CreateArray();
      cJSON_AddItemToArray(e, cJSON_CreateString(l->topic->name));
      cJSON_AddItemToArray(e, cJSON_CreateString(off));
      cJSON_AddItemToArray(e, cJSON_CreateString(m->msgid));
      cJSON_AddItemToArray(inf, e);
    }
  char *t = sl_json_print(o);
  cJSON_Delete(o);
  if (t && sl_cluster_session_put(srv->cluster, sl_socket_pid(sock), t, strlen(t),
                                  ttl + SL_SESSION_KEY_MARGIN_MS) != 0)
    sl_log_debug("client %s: the cluster is down: its session is kept on this node only", sock->id);
  free(t);
}

static void client_close(sl_socket *sock, const char *reason) {
  sl_server *srv = sock->sess->srv;
  bool parked = sock->parked == SL_PARK_KEPT;
  if (reason) {
    if (parked && srv->cluster) session_store(sock);
    if (parked)
      sl_recovery_park(sock);
    else
      sl_socket_drop_lanes(sock);
    if (!sock->ns->implicit_root) {
      sl_log_info("client %s disconnected: namespace %s, remote %s, transport %s, server "
                  "\"%s\", reason \"%s\"%s",
                  sock->id, sock->ns->path, sock->sess->remote, transport_name(sock),
                  srv->cfg->name, reason, parked ? " (kept for recovery)" : "");
      sl_hooks_event(srv, SL_EV_DISCONNECT, sock, NULL, reason, NULL, 0);
    }
  }
  if (!parked) sl_hooks_client_free(srv, sock);
}

/* on_recover: reauthorize (the token of this CONNECT, else the session's bearer, else the
 * one the socket had) for the CONNECT and for every topic it holds, as a new client would
 * be; the principal must not change. Then the history decides (recovery.h). */
static int client_recover(sl_socket *sock, const cJSON *auth, const char *offset) {
  sl_ns *ns = sock->ns;
  sl_server *srv = ns->srv;
  const char *tok = token_of(auth);
  if (ns->cfg->recovery.reauthorize) {
    if (!tok) tok = sock->sess->bearer ? sock->sess->bearer : sock->auth_token;
    char *was = sock->principal ? sl_xstrdup(sock->principal) : NULL;
    char why[256] = "";
    bool ok = true;
    if (ns->cfg->auth_required) ok = authorize(sock, tok, NULL, why, sizeof why) == AUTH_OK;
    if (ok && (srv->cfg->auth_token || ns->hooks.fn.authorize))
      for (sl_lane *l = sock->lanes; ok && l; l = l->next)
        ok = authorize(sock, tok, l->topic->name, why, sizeof why) == AUTH_OK;
    if (ok && was && (!sock->principal || strcmp(was, sock->principal) != 0)) ok = false;
    if (!ok) {
      sl_log_info("client %s: recovery refused on namespace %s: %s", sock->id, ns->path,
                  why[0] ? why : "the principal changed");
      free(was);
      return SL_REC_DENIED;
    }
    free(was);
  }
  int r;
  sl_socket_rec *rec = sl_socket_rec_of(sock);     /* a parked or rebuilt socket has one */
  if (xr.set && xr.status == 0 && !sock->parked) { /* rebuilt here: the stream replays */
    r = SL_REC_RECOVERED;
    rec->rec_from = UINT64_MAX; /* nothing from this node's history */
    xr.sock = sock;
  } else if (xr.set && !sock->parked) {
    r = SL_REC_EXPIRED; /* the offset's entry was trimmed, or too many follow it */
  } else {
    r = sl_recovery_check(sock, offset, &rec->rec_from);
  }
  const char *presented = token_of(auth);
  if (r == SL_REC_RECOVERED && presented) {
    free(sock->auth_token);
    sock->auth_token = sl_xstrdup(presented);
  }
  return r;
}

/* on_recover_lookup: in a cluster, the session of a pid is taken from the cluster's store
 * (GETDEL), wherever it was parked; a copy parked here that the store no longer names as
 * this node's is stale. */
typedef struct lookup_ctx {
  sl_sio_pending *p;
  sl_ns *ns;
  char pid[25];
  char offset[SL_OFFSET_MAX]; /* the client's, "" when it sent none */
  char *blob;                 /* the session taken, while the XRANGEs run */
  size_t len;
  xr_inflight *inf; /* its in-flight messages, fetched one XRANGE each */
  size_t ninf, fetched;
  int refs;  /* replies still awaited, plus one until the main range answered */
  bool done; /* the CONNECT went on (sl_sio_pending_done) */
} lookup_ctx;

static void lookup_unref(lookup_ctx *c) {
  if (--c->refs > 0) return;
  for (size_t i = 0; i < c->ninf; i++) {
    free(c->inf[i].topic);
    if (c->inf[i].m) sl_msg_unref(c->inf[i].m);
  }
  free(c->inf);
  free(c->blob);
  free(c);
}

/* One in-flight message's entry (sl_cluster_range with count 0): rebuilt as the packet its
 * node sent, same messageId, same offset (NULL when the entry is gone or not one of ns). */
static void inflight_done(void *ud, int status, const sl_cluster_entry *v, size_t n) {
  xr_inflight *f = ud;
  lookup_ctx *c = f->owner;
  sl_ns *ns = c->ns;
  const sl_cl_entry *e = status == 0 && n && v[0].rc == SL_CL_OK ? &v[0].e : NULL;
  sl_topic *t =
      e && !c->done && ns->cfg && strcmp(e->nsp, ns->path) == 0 && strcmp(e->topic, f->topic) == 0
          ? sl_topic_find(ns, e->topic, e->topiclen)
          : NULL;
  if (t) f->m = sl_publish_encode_replay(ns, t, e->payload, e->len, e->key, f->msgid, f->id);
  lookup_unref(c);
}

/* The main range (the entries after the client's offset) answered, after every in-flight
 * fetch (sent before it, on the same link). */
static void range_done(void *ud, int status, const sl_cluster_entry *v, size_t n) {
  lookup_ctx *c = ud;
  c->done = true;
  if (status == SL_ESTATE) {
    c->ns->store_failed++;
    sl_log_warn("recovery of a session on namespace %s: reading the stream from %s failed: a "
                "new session instead",
                c->ns->path, c->offset);
    sl_sio_pending_done(c->p, NULL, 0);
  } else {
    xr.set = true;
    xr.status = status;
    xr.v = v;
    xr.n = n;
    xr.sock = NULL;
    xr.inf = c->inf;
    xr.ninf = c->ninf;
    sl_sio_pending_done(c->p, c->blob, c->len);
    memset(&xr, 0, sizeof xr);
  }
  lookup_unref(c);
}

/* The in-flight list of a session record: [[topic, stream id, messageId], ...] into c. */
static void inflight_parse(lookup_ctx *c, const cJSON *o) {
  const cJSON *inf = cJSON_GetObjectItemCaseSensitive(o, "inflight"), *e;
  int n = cJSON_IsArray(inf) ? cJSON_GetArraySize(inf) : 0;
  if (n <= 0) return;
  c->inf = sl_xcalloc((size_t)n, sizeof *c->inf);
  cJSON_ArrayForEach(e, inf) {
    const cJSON *t = cJSON_GetArrayItem(e, 0), *id = cJSON_GetArrayItem(e, 1),
                *mid = cJSON_GetArrayItem(e, 2);
    uint64_t x;
    if (!cJSON_IsString(t) || !cJSON_IsString(id) || !cJSON_IsString(mid) ||
        strlen(id->valuestring) >= SL_OFFSET_MAX || !sl_recovery_stream_id(id->valuestring, &x) ||
        strlen(mid->valuestring) >= SL_MSGID_MAX)
      continue;
    xr_inflight *f = &c->inf[c->ninf++];
    f->topic = sl_xstrdup(t->valuestring);
    strcpy(f->id, id->valuestring);
    strcpy(f->msgid, mid->valuestring);
    f->owner = c;
  }
}

/* Kept by another node, the client with a stream id as offset: the in-flight messages and
 * the replay come from the stream. Returns whether the main read was sent (range_done
 * continues, c belongs to the callbacks); false: c->refs counts the fetches sent, plus one. */
static bool fetch_from_stream(lookup_ctx *c, const char *blob, size_t len, const cJSON *o) {
  sl_cluster *cl = c->ns->srv->cluster;
  inflight_parse(c, o);
  c->refs = 1;
  for (size_t i = 0; i < c->ninf; i++)
    if (sl_cluster_range(cl, c->inf[i].id, 0, inflight_done, &c->inf[i]) == 0) c->refs++;
  c->blob = sl_xmalloc(len + 1);
  memcpy(c->blob, blob, len);
  c->len = len;
  return sl_cluster_range(cl, c->offset, (size_t)c->ns->cfg->recovery.history_size, range_done,
                          c) == 0;
}

static void lookup_done(void *ud, int status, const char *blob, size_t len) {
  (void)status; /* a failure: as if the store had nothing, a new session */
  lookup_ctx *c = ud;
  sl_ns *ns = c->ns;
  uint64_t x;
  if (blob) {
    cJSON *o = cJSON_ParseWithLength(blob, len);
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(o, "node");
    bool remote = !cJSON_IsString(node) || strcmp(node->valuestring, ns->srv->gw->boot_id) != 0;
    if (remote) sl_sio_discard_pid(ns, c->pid);
    if (remote && ns->srv->cluster && ns->cfg && ns->cfg->recovery.enabled &&
        sl_recovery_stream_id(c->offset, &x)) {
      bool sent = fetch_from_stream(c, blob, len, o);
      cJSON_Delete(o);
      if (sent) return;
      c->done = true;
      ns->store_failed++;
      sl_log_warn("recovery of a session on namespace %s: the cluster is down: a new session "
                  "instead",
                  ns->path);
      sl_sio_pending_done(c->p, NULL, 0);
      lookup_unref(c);
      return;
    }
    cJSON_Delete(o);
  }
  sl_sio_pending_done(c->p, blob, len);
  free(c);
}

static bool client_recover_lookup(sl_sio_pending *p, sl_ns *ns, const char *pid,
                                  const char *offset) {
  if (!ns->srv->cluster || strlen(pid) >= sizeof((lookup_ctx *)0)->pid) return false;
  lookup_ctx *c = sl_xcalloc(1, sizeof *c);
  c->p = p;
  c->ns = ns;
  memcpy(c->pid, pid, strlen(pid) + 1);
  if (offset && strlen(offset) < sizeof c->offset) memcpy(c->offset, offset, strlen(offset) + 1);
  if (sl_cluster_session_take(ns->srv->cluster, pid, lookup_done, c) != 0) {
    free(c);
    return false;
  }
  return true;
}

/* The in-flight messages of a session rebuilt here from the stream go back in flight on
 * their lanes (parked: sl_recovery_resume sends them again, same messageId, and counts them);
 * one whose entry the stream no longer has is counted lost and logged. */
static void inflight_restore(sl_socket *sock) {
  for (size_t i = 0; i < xr.ninf; i++) {
    const xr_inflight *f = &xr.inf[i];
    sl_topic *t = sl_topic_find(sock->ns, f->topic, strlen(f->topic));
    sl_lane *l = t ? sl_lane_of(sock, t) : NULL;
    if (!l) continue; /* not a topic of the session: nothing was owed on it */
    if (f->m) {
      sl_acks_track(l, f->m);
      continue;
    }
    t->lost[SL_LOST_TRIMMED]++;
    sl_log_warn("client %s recovered on namespace %s: in-flight message %s (topic %s, stream id "
                "%s) is no longer in the stream: lost",
                sock->id, sock->ns->path, f->msgid, f->topic, f->id);
  }
  for (sl_lane *l = sock->lanes; l; l = l->next) sl_acks_park(l);
}

/* A session record past its "expires" (the key outlives it by SL_SESSION_KEY_MARGIN_MS): the
 * session expired, and taking its record means the node that kept it will release it as
 * taken, so the loss is counted here: what each lane held, on this node's topics of that
 * name (sluice_messages_lost_total{reason="disconnect"}), with a log line. */
static bool record_expired(sl_ns *ns, const cJSON *o, const char *sid) {
  const cJSON *exp = cJSON_GetObjectItemCaseSensitive(o, "expires");
  if (!cJSON_IsString(exp) || strtoull(exp->valuestring, NULL, 10) >= sl_wall_us() / 1000)
    return false;
  uint64_t lost = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "topics")) {
    const cJSON *name = cJSON_GetArrayItem(e, 0), *held = cJSON_GetArrayItem(e, 2);
    if (!cJSON_IsString(name) || !cJSON_IsNumber(held) || held->valuedouble < 1) continue;
    sl_topic *t = sl_topic_find(ns, name->valuestring, strlen(name->valuestring));
    if (!t) continue;
    t->lost[SL_LOST_DISCONNECT] += (uint64_t)held->valuedouble;
    lost += (uint64_t)held->valuedouble;
  }
  sl_log_info("client %s: the session another node kept on namespace %s expired before this "
              "recovery: a new session; %llu message(s) it held counted lost",
              sid, ns->path, (unsigned long long)lost);
  return true;
}

/* on_recover_remote: rebuild a session another node parked (session_store's blob): its id,
 * pid, principal, token and lanes (detached, from their subscription offsets); then decide
 * as for a session parked here (reauthorize), with what the stream gave (xr: the entries
 * after the offset, or why not; its in-flight messages go back in flight); without xr (the
 * client sent no offset) from this node's history. */
static int client_recover_remote(sl_socket *sock, const cJSON *auth, const char *offset,
                                 const char *blob, size_t len) {
  cJSON *o = cJSON_ParseWithLength(blob, len);
  const cJSON *sid = cJSON_GetObjectItemCaseSensitive(o, "sid");
  const cJSON *pid = cJSON_GetObjectItemCaseSensitive(o, "pid");
  const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "principal");
  const cJSON *tok = cJSON_GetObjectItemCaseSensitive(o, "token");
  const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "topics");
  int r = SL_REC_UNKNOWN;
  if (!cJSON_IsString(sid) || strlen(sid->valuestring) >= sizeof sock->id || !cJSON_IsString(pid) ||
      strlen(pid->valuestring) >= SL_PID_SIZE || !cJSON_IsArray(ts))
    goto out;
  if (record_expired(sock->ns, o, sid->valuestring)) {
    r = SL_REC_EXPIRED;
    goto out;
  }
  memcpy(sock->id, sid->valuestring, strlen(sid->valuestring) + 1);
  memcpy(sl_socket_rec_of(sock)->pid, pid->valuestring, strlen(pid->valuestring) + 1);
  if (cJSON_IsString(pr)) sock->principal = sl_xstrdup(pr->valuestring);
  if (cJSON_IsString(tok)) sock->auth_token = sl_xstrdup(tok->valuestring);
  const cJSON *e;
  r = SL_REC_EXPIRED;
  cJSON_ArrayForEach(e, ts) {
    const cJSON *name = cJSON_GetArrayItem(e, 0), *from = cJSON_GetArrayItem(e, 1);
    if (!cJSON_IsString(name) || !cJSON_IsString(from)) goto out;
    sl_topic *t = sl_topic_find(sock->ns, name->valuestring, strlen(name->valuestring));
    if (!t) goto out; /* a topic this node does not have: the replay would be partial */
    sl_lane_restore(sock, t, strtoull(from->valuestring, NULL, 10));
  }
  r = client_recover(sock, auth, offset);
  if (r == SL_REC_RECOVERED && xr.set) inflight_restore(sock);
out:
  cJSON_Delete(o);
  return r;
}

/* The parked sockets whose expiry awaits the cluster's answer (on_park_due). */
typedef struct park_check {
  sl_socket *sock; /* NULL once sio gave it up meanwhile */
  struct park_check *next;
} park_check;
static park_check *park_checks;

/* on_expire: a parked socket is given up: its lanes go (what they held is counted lost) and
 * the client_free hooks run. */
static void client_expire(sl_socket *sock) {
  for (park_check *c = park_checks; c; c = c->next)
    if (c->sock == sock) c->sock = NULL; /* its answer will find nothing to settle */
  sl_socket_drop_lanes(sock);
  sl_hooks_client_free(sock->ns->srv, sock);
}

/* on_park_due: in a cluster, the record of a parked session is taken back (GETDEL) when it
 * expires. None: another node took it (and resumed it, or counted it lost if it had expired
 * there): the lanes go without being counted lost, counted in
 * sluice_recovery_handoffs_total. The record: nobody took it, it expires as on one node
 * (its lanes counted lost). Redis down or failing: the same, logged as unknown. */
static void park_check_done(void *ud, int status, const char *blob, size_t len) {
  (void)len;
  park_check *c = ud;
  for (park_check **pp = &park_checks; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  sl_socket *sock = c->sock;
  free(c);
  if (!sock) return;
  bool taken = status == 0 && !blob;
  if (status != 0)
    sl_log_warn("client %s: session kept for recovery on namespace %s expired and Redis did not "
                "answer whether another node took it: counted lost (the outcome is unknown)",
                sock->id, sock->ns->path);
  if (taken) {
    sock->ns->handoffs++;
    sl_log_info("client %s: session kept for recovery on namespace %s was taken by another "
                "node: released",
                sock->id, sock->ns->path);
    sl_socket_hand_off_lanes(sock);
  }
  sl_sio_park_settle(sock, taken);
}

static bool client_park_due(sl_socket *sock) {
  sl_cluster *cl = sock->ns->srv->cluster;
  if (!cl) return false;
  park_check *c = sl_xcalloc(1, sizeof *c);
  c->sock = sock;
  if (sl_cluster_session_take(cl, sl_socket_pid(sock), park_check_done, c) != 0) {
    free(c);
    sl_log_warn("client %s: session kept for recovery on namespace %s expired while the cluster "
                "is down: counted lost (whether another node took it is unknown)",
                sock->id, sock->ns->path);
    return false;
  }
  c->next = park_checks;
  park_checks = c;
  return true;
}

/* ---- StreamFenceJs events ------------------------------------------------------------ */

static const char *topic_arg(cJSON *arg) {
  if (!cJSON_IsObject(arg)) return NULL;
  cJSON *t = cJSON_GetObjectItemCaseSensitive(arg, "topic");
  if (!cJSON_IsString(t) || !t->valuestring) return NULL;
  const char *v = t->valuestring;
  while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') v++;
  return *v ? t->valuestring : NULL;
}

/* The topic an event's argument names (*name: the argument's string, borrowed from arg), or
 * NULL after refusing the event: INVALID_PAYLOAD (with `usage`) when arg has no non-blank
 * {topic: string}, UNKNOWN_TOPIC when the namespace has no such topic. */
static sl_topic *topic_or_refuse(sl_socket *sock, cJSON *arg, int64_t ack_id, const char *usage,
                                 const char **name) {
  const char *topic = *name = topic_arg(arg);
  if (!topic) {
    refuse(sock, ack_id, "INVALID_PAYLOAD", usage);
    return NULL;
  }
  sl_topic *t = sl_topic_find(sock->ns, topic, strlen(topic));
  if (!t) {
    char msg[512];
    snprintf(msg, sizeof msg, "Unknown topic: %s", topic);
    refuse(sock, ack_id, "UNKNOWN_TOPIC", msg);
  }
  return t;
}

static void ev_subscribe(sl_socket *sock, bool sub, cJSON *arg, int64_t ack_id) {
  sl_ns *ns = sock->ns;
  const char *topic;
  sl_topic *t = topic_or_refuse(
      sock, arg, ack_id,
      sub ? "subscribe needs {topic: string}" : "unsubscribe needs {topic: string}", &topic);
  if (!t) return;
  if (sub) {
    if (sock->sess->srv->cfg->auth_token || ns->hooks.fn.authorize) {
      const char *tok = token_of(arg);
      if (!tok) tok = sock->auth_token ? sock->auth_token : sock->sess->bearer;
      char why[256] = "";
      int a = authorize(sock, tok, topic, why, sizeof why);
      if (sock->gone) return;
      if (a != AUTH_OK) {
        refuse(sock, ack_id, a == AUTH_LIMITED ? "RATE_LIMITED" : "AUTH_REJECTED", why);
        return;
      }
    }
    int r = sl_subscribe(sock, t);
    if (r != 0) {
      refuse(sock, ack_id, "SUBSCRIBE_FAILED", sl_strerror(r));
      return;
    }
  } else {
    sl_unsubscribe(sock, t);
  }
  ack_result(sock, ack_id, NULL, NULL, NULL);
  sl_hooks_event(sock->sess->srv, sub ? SL_EV_SUBSCRIBE : SL_EV_UNSUBSCRIBE, sock, t->name, NULL,
                 NULL, 0);
}

static void ev_ack(sl_socket *sock, cJSON *arg, int64_t ack_id) {
  cJSON *t = cJSON_IsObject(arg) ? cJSON_GetObjectItemCaseSensitive(arg, "topic") : NULL;
  cJSON *id = cJSON_IsObject(arg) ? cJSON_GetObjectItemCaseSensitive(arg, "messageId") : NULL;
  if (!cJSON_IsString(t) || !cJSON_IsString(id)) {
    refuse(sock, ack_id, "INVALID_PAYLOAD", "ack needs {topic: string, messageId: string}");
    return;
  }
  sl_topic *tp = sl_topic_find(sock->ns, t->valuestring, strlen(t->valuestring));
  bool settled = tp && sl_delivery_ack(sock, tp, id->valuestring);
  if (settled)
    ack_result(sock, ack_id, NULL, NULL, NULL);
  else
    ack_result(sock, ack_id, "UNKNOWN_MESSAGE", "no message in flight with that id", NULL);
}

static void ev_publish(sl_socket *sock, cJSON *arg, int64_t ack_id) {
  sl_ns *ns = sock->ns;
  const char *topic;
  sl_topic *t =
      topic_or_refuse(sock, arg, ack_id, "publish needs {topic: string, payload}", &topic);
  if (!t) return;
  if (!ns->cfg->client_publish) {
    refuse(sock, ack_id, "PUBLISH_FORBIDDEN", "clients may not publish in this namespace");
    return;
  }
  cJSON *payload = cJSON_GetObjectItemCaseSensitive(arg, "payload");
  char *text = payload ? sl_json_print(payload) : NULL;
  sl_gateway *gw = sock->sess->srv->gw;
  if (ns->hooks.fn.client_publish) {
    char *np = NULL;
    int allow = ns->hooks.fn.client_publish(ns->hooks.ud[SL_HK_CLIENT_PUBLISH], sock, topic,
                                            text ? text : "null", text ? strlen(text) : 4, &np);
    if (sock->gone) {
      free(np);
      free(text);
      return;
    }
    if (!allow) {
      free(np);
      free(text);
      refuse(sock, ack_id, "PUBLISH_FORBIDDEN", "refused by onClientPublish");
      return;
    }
    if (np) {
      free(text);
      text = np;
    }
  }
  sl_publish_opts o = {.source = SL_SRC_CLIENT,
                       .from = sock,
                       .trusted_json = true,
                       .server = sock->sess->srv->cfg->name};
  char id[SL_MSGID_MAX];
  t->m[SL_M_RECEIVED]++;
  t->m[SL_M_RECEIVED_BYTES] += text ? strlen(text) : 4;
  int r = sl_publish(gw, ns->path, topic, text ? text : "null", text ? strlen(text) : 4, &o, id);
  free(text);
  if (r == 0)
    ack_result(sock, ack_id, NULL, NULL, id);
  else if (r == SL_EFORBIDDEN)
    refuse(sock, ack_id, "PUBLISH_FORBIDDEN", "refused by policy");
  else if (r == SL_EFULL) /* the cluster bus (cluster.h) */
    refuse(sock, ack_id, "CLUSTER_UNAVAILABLE", "Redis is unreachable and the buffer is full");
  else
    refuse(sock, ack_id, "INVALID_PAYLOAD", sl_strerror(r));
}

/* Returns true when the event was one of the four StreamFenceJs events. */
static bool streamfence_event(sl_socket *sock, const char *ev, cJSON *arr, int64_t ack_id) {
  if (!sock->ns->cfg) return false;
  cJSON *arg = cJSON_GetArrayItem(arr, 1);
  if (strcmp(ev, "subscribe") == 0)
    ev_subscribe(sock, true, arg, ack_id);
  else if (strcmp(ev, "unsubscribe") == 0)
    ev_subscribe(sock, false, arg, ack_id);
  else if (strcmp(ev, "ack") == 0)
    ev_ack(sock, arg, ack_id);
  else if (strcmp(ev, "publish") == 0)
    ev_publish(sock, arg, ack_id);
  else
    return false;
  return true;
}

/* on_event: the StreamFenceJs events (only without attachments), else the namespace's
 * onEvent hook with the arguments after the event name. */
static void client_event(sl_socket *sock, const char *ev, cJSON *arr, const sl_bin *atts,
                         size_t natts, int64_t ack_id) {
  if (natts == 0 && streamfence_event(sock, ev, arr, ack_id)) return;
  sl_ns *ns = sock->ns;
  if (!ns->hooks.fn.event) return;
  char *evname = sl_xstrdup(ev); /* ev may live in arr[0], detached next */
  cJSON_Delete(cJSON_DetachItemFromArray(arr, 0));
  char *args = sl_json_print(arr);
  ns->hooks.fn.event(ns->hooks.ud[SL_HK_EVENT], sock, evname, args ? args : "[]",
                     args ? strlen(args) : 2, atts, natts, ack_id);
  free(evname);
  free(args);
}

/* sl_client_sio_handler: see client.h. */
const sl_sio_handler sl_client_sio_handler = {
    .find_ns = sl_server_find_ns,
    .on_connect = client_connect,
    .on_joined = client_joined,
    .on_event = client_event,
    .on_close = client_close,
    .on_recover = client_recover,
    .on_expire = client_expire,
    .on_recover_lookup = client_recover_lookup,
    .on_recover_remote = client_recover_remote,
    .on_park_due = client_park_due,
};
