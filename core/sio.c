/* sio.c - Socket.IO v5 over an Engine.IO session: namespaces, events, acks, binary
 * attachments, socket lifetime. The StreamFenceJs client protocol above it lives in client.c
 * and is reached only through srv->sio_handler. See sio.h and shared/PROTOCOL.md section 3. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "sio.h"
#include "sio_codec.h"
#include "eio.h"
#include "msg.h"
#include "sl_util.h"

struct sl_pending_bin {
  int type;
  char nsp[SIO_MAX_NSP + 1];
  size_t nsplen;
  int64_t ack_id;
  char *json;
  size_t jsonlen;
  int need, have;
  uint8_t *bufs[SIO_MAX_ATTACHMENTS];
  size_t lens[SIO_MAX_ATTACHMENTS];
};

/* What a session's Socket.IO layer waits for; sess->wait only while either is set. */
typedef struct sl_sio_wait {
  struct sl_pending_bin *pbin;    /* a binary packet being reassembled */
  struct sl_sio_pending *pending; /* CONNECTs waiting for a recovery lookup (a cluster's) */
} sl_sio_wait;

static sl_sio_wait *wait_of(sl_session *s) {
  if (!s->wait) s->wait = sl_xcalloc(1, sizeof *s->wait);
  return s->wait;
}
static struct sl_pending_bin *pbin_of(const sl_session *s) {
  return s->wait ? s->wait->pbin : NULL;
}
static struct sl_sio_pending *pending_of(const sl_session *s) {
  return s->wait ? s->wait->pending : NULL;
}
/* Free s->wait once it holds nothing. */
static void wait_trim(sl_session *s) {
  if (s->wait && !s->wait->pbin && !s->wait->pending) {
    free(s->wait);
    s->wait = NULL;
  }
}

struct sl_sio_pending {
  sl_session *sess; /* NULL once the session closed */
  struct sl_sio_pending *next;
  char nsp[SIO_MAX_NSP + 1];
  size_t nsplen;
  cJSON *payload; /* the CONNECT's auth (a copy), or NULL */
};

/* The packets a socket emits inside onConnect wait for the CONNECT reply in the gateway's
 * queue: the hook runs inside the CONNECT's handling (client.c sets sock->connecting around
 * it), so one socket at a time can be connecting, and the CONNECT's handling empties the
 * queue right after (join sends it, connect_refuse drops it). A socket costs nothing for it. */
static void early_push(sl_socket *s, sl_msg *m) { sl_mq_push(&s->ns->srv->gw->early, m, false); }

/* Drop what the socket whose CONNECT is being handled emitted (it was refused). */
static void early_drop(sl_gateway *gw) { sl_mq_clear(&gw->early); }

static void pbin_free(struct sl_pending_bin *p) {
  if (!p) return;
  for (int i = 0; i < p->have; i++) free(p->bufs[i]);
  free(p->json);
  free(p);
}

/* sl_sio_encode: see sio.h. */
sl_msg *sl_sio_encode(int type, const char *nsp, size_t nsplen, int64_t ack_id, const char *json,
                      size_t jsonlen, int attachments) {
  char h[SIO_MAX_NSP + 64];
  h[0] = '4';
  size_t hl = 1 + sl_sio_encode_header(h + 1, type, attachments, nsp, nsplen, ack_id);
  sl_msg *m = sl_msg_new(hl + jsonlen, SL_MK_CONTROL);
  memcpy(sl_msg_packet(m), h, hl);
  if (jsonlen) memcpy(sl_msg_packet(m) + hl, json, jsonlen);
  sl_msg_frame_finish(m);
  return m;
}

/* sl_sio_send: see sio.h. */
void sl_sio_send(sl_socket *sock, int type, int64_t ack_id, const char *json, size_t len) {
  sl_session_send(sock->sess,
                  sl_sio_encode(type, sock->ns->path, sock->ns->pathlen, ack_id, json, len, 0));
}

static sl_socket *session_socket(sl_session *s, const char *nsp, size_t nsplen) {
  for (sl_socket *k = s->sockets; k; k = k->next)
    if (!k->gone && k->ns->pathlen == nsplen && memcmp(k->ns->path, nsp, nsplen) == 0) return k;
  return NULL;
}

/* ---- recovery: parked sockets ---------------------------------------------------------- */

/* The disconnect reasons socket.io keeps a session for (its RECOVERABLE_DISCONNECT_REASONS). */
static bool recoverable_reason(const char *r) {
  static const char *const ok[] = {"transport close",      "transport error", "ping timeout",
                                   "server shutting down", "forced close",    NULL};
  for (int i = 0; r && ok[i]; i++)
    if (strcmp(r, ok[i]) == 0) return true;
  return false;
}

static bool ns_recovers(const sl_ns *ns) { return ns->cfg && ns->cfg->recovery.enabled; }

/* A new socket of ns: with recovery on it has its recovery part (sl_socket_rec, malloc'd),
 * else it is a bare sl_socket from the gateway's pool. Zeroed. */
static sl_socket *socket_alloc(sl_ns *ns, bool rec) {
  sl_socket *k =
      rec ? sl_xcalloc(1, sizeof(sl_socket_rec)) : sl_pool_alloc(&ns->srv->gw->pool_socket);
  k->rec = rec;
  return k;
}

/* The struct itself (what it points to is the caller's). Not through k->ns: a socket of a
 * namespace a reload removed is freed (sl_sio_free_dead) after its namespace. */
static void socket_free(sl_gateway *gw, sl_socket *k) {
  if (k->rec)
    free(k);
  else
    sl_pool_free(&gw->pool_socket, k);
}

static void park_timer_arm(sl_gateway *gw);

/* Free a parked socket or tombstone: out of the pid index and the expiry heap; the layer
 * above lets go of a kept one first. */
static void parked_free(sl_gateway *gw, sl_socket *k) {
  sl_socket_rec *r = sl_socket_rec_of(k); /* a parked socket has a pid: it has one */
  sl_hash_del(&k->ns->parked, &r->phent);
  if (k->parked != SL_PARK_EXPIRING) sl_heap_remove(&gw->parked, &r->pn);
  if (k->parked == SL_PARK_KEPT || k->parked == SL_PARK_EXPIRING)
    k->ns->srv->sio_handler->on_expire(k);
  free(k->principal);
  free(k->auth_token);
  socket_free(gw, k);
}

/* A parked socket's time is up: the layer above lets go of its lanes and hooks, and a
 * tombstone (the bare struct under its pid, about 200 bytes) stays for another
 * maxDisconnectionMs (at least SL_TOMBSTONE_MIN_MS), so a client coming back late is told
 * apart from an unknown pid (result "expired"). k is out of gw->parked. */
#define SL_TOMBSTONE_MIN_MS 60000
static void park_expire(sl_gateway *gw, sl_socket *k, uint64_t now) {
  sl_log_debug("client %s: session kept for recovery expired (namespace %s)", k->id, k->ns->path);
  k->ns->srv->sio_handler->on_expire(k);
  free(k->principal);
  free(k->auth_token);
  k->principal = k->auth_token = NULL;
  k->parked = SL_PARK_TOMBSTONE;
  uint64_t keep = (uint64_t)k->ns->cfg->recovery.max_disconnection_ms;
  sl_socket_rec *r = sl_socket_rec_of(k);
  r->pn.key = now + (keep > SL_TOMBSTONE_MIN_MS ? keep : SL_TOMBSTONE_MIN_MS);
  sl_heap_insert(&gw->parked, &r->pn);
}

static void park_timer_cb(uv_timer_t *t) {
  sl_gateway *gw = t->data;
  uint64_t now = uv_now(gw->loop);
  sl_heap_node *top;
  while ((top = sl_heap_min(&gw->parked)) && top->key <= now) {
    sl_socket *k = &sl_container_of(top, sl_socket_rec, pn)->sock;
    sl_heap_remove(&gw->parked, top);
    const sl_sio_handler *h = k->ns->srv->sio_handler;
    if (k->parked == SL_PARK_KEPT && h->on_park_due && h->on_park_due(k))
      k->parked = SL_PARK_EXPIRING; /* sl_sio_park_settle continues */
    else if (k->parked == SL_PARK_KEPT)
      park_expire(gw, k, now);
    else
      parked_free(gw, k);
  }
  park_timer_arm(gw);
}

/* sl_sio_park_settle: see sio.h. */
void sl_sio_park_settle(sl_socket *k, bool taken) {
  if (k->parked != SL_PARK_EXPIRING) return;
  sl_gateway *gw = k->ns->srv->gw;
  if (taken) { /* resumed elsewhere: no tombstone, the pid is not this node's any more */
    k->parked = SL_PARK_KEPT;
    sl_heap_insert(&gw->parked, &sl_socket_rec_of(k)->pn); /* parked_free takes it out again */
    parked_free(gw, k);
  } else {
    park_expire(gw, k, uv_now(gw->loop));
  }
  park_timer_arm(gw);
}

static void park_timer_arm(sl_gateway *gw) {
  if (!gw->park_timer.loop || gw->stopping) return;
  sl_heap_node *top = sl_heap_min(&gw->parked);
  if (!top) {
    uv_timer_stop(&gw->park_timer);
    return;
  }
  uint64_t now = uv_now(gw->loop);
  uv_timer_start(&gw->park_timer, park_timer_cb, top->key > now ? top->key - now : 0, 0);
}

/* sl_sio_start: see sio.h. */
void sl_sio_start(sl_gateway *gw) {
  uv_timer_init(gw->loop, &gw->park_timer);
  gw->park_timer.data = gw;
  uv_unref((uv_handle_t *)&gw->park_timer);
}

/* sl_sio_ns_discard_parked: see sio.h. */
void sl_sio_ns_discard_parked(sl_ns *ns) {
  sl_gateway *gw = ns->srv->gw;
  while (ns->parked.n) {
    sl_socket *k = NULL;
    for (size_t b = 0; b < ns->parked.nb && !k; b++)
      if (ns->parked.b[b]) k = sl_parked_socket(ns->parked.b[b]);
    if (!k) break;
    parked_free(gw, k);
  }
}

/* sl_sio_discard_pid: see sio.h. */
void sl_sio_discard_pid(sl_ns *ns, const char *pid) {
  sl_hent *e = sl_hash_get(&ns->parked, pid);
  if (e) parked_free(ns->srv->gw, sl_parked_socket(e));
}

/* sl_sio_stop: see sio.h. */
void sl_sio_stop(sl_gateway *gw, void (*close_cb)(sl_gateway *gw, uv_handle_t *h)) {
  for (size_t i = 0; i < gw->nservers; i++)
    for (size_t j = 0; j < gw->servers[i].nns; j++) sl_sio_ns_discard_parked(&gw->servers[i].ns[j]);
  sl_heap_free(&gw->parked);
  if (gw->park_timer.loop && !uv_is_closing((uv_handle_t *)&gw->park_timer))
    close_cb(gw, (uv_handle_t *)&gw->park_timer);
}

/* Keep a socket whose session went for a recoverable reason: under its pid, until
 * maxDisconnectionMs from now. */
static void park(sl_socket *sock) {
  sl_ns *ns = sock->ns;
  sl_gateway *gw = ns->srv->gw;
  sock->sess = NULL;
  sl_socket_rec *r = sl_socket_rec_of(sock);
  sl_hash_put(&ns->parked, &r->phent, r->pid);
  r->pn.key = uv_now(gw->loop) + (uint64_t)ns->cfg->recovery.max_disconnection_ms;
  sl_heap_insert(&gw->parked, &r->pn);
  if (sl_heap_min(&gw->parked) == &r->pn) park_timer_arm(gw);
}

/* Release a socket: out of the session and namespace indexes, then the layer above lets go
 * of it (lanes, hooks). The struct itself is freed at a safe point (sl_sio_free_dead),
 * because a policy hook up the stack may still hold it. recoverable: the session went for a
 * reason socket.io recovers from: with `recovery`, the socket is parked instead. */
static void socket_remove(sl_socket *sock, const char *reason, bool recoverable) {
  if (sock->gone) return;
  sl_session *s = sock->sess;
  sl_socket **pp = &s->sockets;
  while (*pp && *pp != sock) pp = &(*pp)->next;
  if (*pp) *pp = sock->next;
  sl_hash_del(&sock->ns->sockets, &sock->hent);
  sock->ns->disconnections++;
  sl_gateway *gw = s->srv->gw;
  if (recoverable && sl_socket_pid(sock)[0] && ns_recovers(sock->ns) && !gw->stopping) {
    sock->parked = SL_PARK_KEPT;
    sock->recovered = 0;
    s->srv->sio_handler->on_close(sock, reason);
    park(sock);
    return;
  }
  sock->gone = 1;
  s->srv->sio_handler->on_close(sock, reason);
  free(sock->auth_token);
  sock->auth_token = NULL;
  sock->next = gw->dead;
  gw->dead = sock;
}

/* sl_sio_free_dead: see sio.h. */
void sl_sio_free_dead(sl_gateway *gw) {
  while (gw->dead) {
    sl_socket *k = gw->dead;
    gw->dead = k->next;
    free(k->principal);
    socket_free(gw, k);
  }
}

/* sl_sio_session_closed: see sio.h. */
void sl_sio_session_closed(sl_session *s, const char *reason) {
  for (sl_sio_pending *p = pending_of(s); p; p = p->next) p->sess = NULL;
  if (s->wait) s->wait->pending = NULL;
  bool keep = recoverable_reason(reason);
  while (s->sockets) socket_remove(s->sockets, "transport close", keep);
  if (s->wait) {
    pbin_free(s->wait->pbin);
    s->wait->pbin = NULL;
  }
  wait_trim(s);
}

/* A protocol error of the client: say why where the protocol lets us, then end the session
 * (the reference closes the whole connection on any of them). For a problem with one
 * namespace (nsp not NULL) a CONNECT_ERROR {"message": reason} for it comes first (the
 * client's socket emits connect_error with that message); sl_session_fail then lets a
 * WebSocket read the reason in its close frame, or a held GET receive "1". Logged at debug. */
static void protocol_error(sl_session *s, const char *nsp, size_t nsplen, const char *reason) {
  if (s->state == SL_ST_CLOSED) return;
  if (nsp && nsplen)
    sl_log_debug("session %s: Socket.IO protocol error in namespace %.*s: %s", s->sid, (int)nsplen,
                 nsp, reason);
  else
    sl_log_debug("session %s: Socket.IO protocol error: %s", s->sid, reason);
  if (nsp) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", reason);
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (t) {
      sl_session_send(s, sl_sio_encode(SIO_CONNECT_ERROR, nsp, nsplen, -1, t, strlen(t), 0));
      free(t);
    }
  }
  sl_session_fail(s, reason);
}

/* Refuse a CONNECT: CONNECT_ERROR {"message", "data":{"code"}} (when the session is still
 * open), then discard the socket that was never joined. */
static void connect_refuse(sl_session *s, const sio_packet *p, sl_socket *sock, const char *message,
                           const char *code) {
  if (s->state != SL_ST_CLOSED) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", message);
    if (code) cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "data"), "code", code);
    char *t = sl_json_print(o);
    sl_session_send(s, sl_sio_encode(SIO_CONNECT_ERROR, p->nsp, p->nsplen, -1, t, strlen(t), 0));
    free(t);
    cJSON_Delete(o);
  }
  early_drop(s->srv->gw);
  s->srv->sio_handler->on_close(sock, NULL);
  free(sock->principal);
  free(sock->auth_token);
  socket_free(s->srv->gw, sock);
}

/* ---- CONNECT ------------------------------------------------------------------------- */

/* Index a socket the layer above accepted (new, or recovered), answer the CONNECT with its
 * id (and pid, with recovery), then what on_connect emitted, then tell the layer above. */
static void join(sl_session *s, sl_socket *sock) {
  sl_ns *ns = sock->ns;
  sl_hash_put(&ns->sockets, &sock->hent, sock->id);
  sock->next = s->sockets;
  s->sockets = sock;
  s->ever_joined = 1;
  ns->connections++;
  char body[96];
  const char *pid = sl_socket_pid(sock);
  int n = pid[0] ? snprintf(body, sizeof body, "{\"sid\":\"%s\",\"pid\":\"%s\"}", sock->id, pid)
                 : snprintf(body, sizeof body, "{\"sid\":\"%s\"}", sock->id);
  sl_sio_send(sock, SIO_CONNECT, -1, body, (size_t)n);
  /* What on_connect emitted follows the CONNECT reply, in order. */
  sl_mq *early = &s->srv->gw->early;
  while (early->n) sl_session_send(s, sl_mq_pop(early));
  sl_mq_clear(early); /* the ring goes too */
  s->srv->sio_handler->on_joined(sock);
}

/* A CONNECT with auth {pid, offset}: the parked socket of that pid, taken back for session s
 * when the layer above agrees (on_recover), or NULL (counted by why: a pid not parked here,
 * live on another session, or from before a restart is "unknown"; a tombstone "expired").
 * A refused parked socket is discarded: one pid recovers one session, once. */
static sl_socket *recover(sl_session *s, sl_ns *ns, const cJSON *auth) {
  const cJSON *pid = cJSON_IsObject(auth) ? cJSON_GetObjectItemCaseSensitive(auth, "pid") : NULL;
  if (!cJSON_IsString(pid)) return NULL;
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(auth, "offset");
  sl_hent *e = sl_hash_get(&ns->parked, pid->valuestring);
  if (!e) {
    ns->recoveries[SL_REC_UNKNOWN]++;
    return NULL;
  }
  sl_socket *k = sl_parked_socket(e);
  sl_gateway *gw = s->srv->gw;
  if (k->parked == SL_PARK_TOMBSTONE || k->parked == SL_PARK_EXPIRING) {
    ns->recoveries[SL_REC_EXPIRED]++;
    parked_free(gw, k);
    return NULL;
  }
  k->sess = s;
  int r = s->srv->sio_handler->on_recover(k, auth, cJSON_IsString(off) ? off->valuestring : NULL);
  if (s->state == SL_ST_CLOSED) { /* the session went during the call: keep it parked */
    k->sess = NULL;
    return NULL;
  }
  if (r != SL_REC_RECOVERED) {
    ns->recoveries[r >= 0 && r < SL_REC_COUNT ? r : SL_REC_DENIED]++;
    k->sess = NULL;
    parked_free(gw, k);
    return NULL;
  }
  ns->recoveries[SL_REC_RECOVERED]++;
  sl_hash_del(&ns->parked, &sl_socket_rec_of(k)->phent);
  sl_heap_remove(&gw->parked, &sl_socket_rec_of(k)->pn);
  k->parked = SL_PARK_NONE;
  k->recovered = 1;
  k->next = NULL;
  return k;
}

/* A session another node kept (the cluster's store had it): a new socket that the layer
 * above fills from blob, joined when it agrees (counted like recover()). */
static sl_socket *recover_remote(sl_session *s, sl_ns *ns, const cJSON *auth, const char *blob,
                                 size_t len) {
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(auth, "offset");
  sl_socket *k = socket_alloc(ns, true); /* another node's pid: recovering */
  k->sess = s;
  k->ns = ns;
  k->slot = SLUICE_NOSLOT;
  const sl_sio_handler *h = s->srv->sio_handler;
  int r =
      h->on_recover_remote
          ? h->on_recover_remote(k, auth, cJSON_IsString(off) ? off->valuestring : NULL, blob, len)
          : SL_REC_UNKNOWN;
  if (r == SL_REC_RECOVERED && (s->state == SL_ST_CLOSED || sl_hash_get(&ns->sockets, k->id) ||
                                !k->id[0] || !sl_socket_pid(k)[0]))
    r = SL_REC_UNKNOWN;
  ns->recoveries[r >= 0 && r < SL_REC_COUNT ? r : SL_REC_DENIED]++;
  if (r != SL_REC_RECOVERED) {
    h->on_expire(k);
    free(k->principal);
    free(k->auth_token);
    socket_free(s->srv->gw, k);
    return NULL;
  }
  k->recovered = 1;
  return k;
}

static bool pending_for(const sl_session *s, const char *nsp, size_t nsplen) {
  for (const sl_sio_pending *p = pending_of(s); p; p = p->next)
    if (p->nsplen == nsplen && memcmp(p->nsp, nsp, nsplen) == 0) return true;
  return false;
}

static const char *auth_pid(const cJSON *auth) {
  const cJSON *pid = cJSON_IsObject(auth) ? cJSON_GetObjectItemCaseSensitive(auth, "pid") : NULL;
  return cJSON_IsString(pid) ? pid->valuestring : NULL;
}

/* looked_up: a recovery lookup in the cluster's store ran (blob: what it found, or NULL). */
static void handle_connect(sl_session *s, const sio_packet *p, const cJSON *payload, bool looked_up,
                           const char *blob, size_t bloblen) {
  const sl_sio_handler *h = s->srv->sio_handler;
  sl_ns *ns = h->find_ns(s->srv, p->nsp, p->nsplen);
  if (!ns) {
    sl_session_send(s, sl_sio_encode(SIO_CONNECT_ERROR, p->nsp, p->nsplen, -1,
                                     "{\"message\":\"Invalid namespace\"}", 31, 0));
    return;
  }
  if (session_socket(s, p->nsp, p->nsplen) || (!looked_up && pending_for(s, p->nsp, p->nsplen))) {
    protocol_error(s, p->nsp, p->nsplen, "invalid state: namespace joined twice");
    return;
  }
  const char *pid = ns_recovers(ns) ? auth_pid(payload) : NULL;
  if (pid && !looked_up && h->on_recover_lookup) {
    sl_sio_pending *pd = sl_xcalloc(1, sizeof *pd);
    pd->sess = s;
    memcpy(pd->nsp, p->nsp, p->nsplen);
    pd->nsplen = p->nsplen;
    pd->payload = payload ? cJSON_Duplicate(payload, 1) : NULL;
    pd->next = wait_of(s)->pending;
    s->wait->pending = pd;
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(payload, "offset");
    if (h->on_recover_lookup(pd, ns, pid, cJSON_IsString(off) ? off->valuestring : NULL))
      return; /* sl_sio_pending_done continues */
    /* not kept: off the list again (unless the session closed meanwhile and emptied it) */
    if (s->wait && s->wait->pending == pd) s->wait->pending = pd->next;
    wait_trim(s);
    cJSON_Delete(pd->payload);
    free(pd);
  }
  sl_socket *sock = NULL;
  if (pid && looked_up && !blob) {
    /* the store does not have it (expired, taken by another node, never kept): neither may
     * a copy parked here be used */
    sl_hent *e = sl_hash_get(&ns->parked, pid);
    uint8_t st = e ? sl_parked_socket(e)->parked : SL_PARK_NONE;
    ns->recoveries[st == SL_PARK_TOMBSTONE || st == SL_PARK_EXPIRING ? SL_REC_EXPIRED
                                                                     : SL_REC_UNKNOWN]++;
    if (e) parked_free(s->srv->gw, sl_parked_socket(e));
  } else if (pid && looked_up && !sl_hash_get(&ns->parked, pid)) {
    sock = recover_remote(s, ns, payload, blob, bloblen);
  } else if (pid) {
    sock = recover(s, ns, payload);
  }
  if (sock) {
    join(s, sock);
    return;
  }
  if (s->state == SL_ST_CLOSED) return;
  /* with recovery on, the socket gets its recovery part (pid, parking) */
  sock = socket_alloc(ns, ns_recovers(ns));
  sock->sess = s;
  sock->ns = ns;
  sock->slot = SLUICE_NOSLOT;
  do { sl_random_id(sock->id, 20); } while (sl_hash_get(&ns->sockets, sock->id));
  if (ns_recovers(ns)) {
    /* 144 random bits; never one that is parked or a tombstone */
    char *npid = sl_socket_rec_of(sock)->pid;
    do { sl_random_id(npid, 24); } while (sl_hash_get(&ns->parked, npid));
  }
  char why[256] = "";
  const char *code = NULL;
  if (!h->on_connect(sock, payload, why, sizeof why, &code) || s->state == SL_ST_CLOSED) {
    connect_refuse(s, p, sock, why, code);
    return;
  }
  join(s, sock);
}

/* sl_sio_pending_done: see sio.h. */
void sl_sio_pending_done(sl_sio_pending *p, const char *blob, size_t len) {
  sl_session *s = p->sess;
  if (s) {
    for (sl_sio_pending **pp = &s->wait->pending; *pp; pp = &(*pp)->next)
      if (*pp == p) {
        *pp = p->next;
        break;
      }
    wait_trim(s);
    sio_packet pk = {.type = SIO_CONNECT, .nsp = p->nsp, .nsplen = p->nsplen, .ack_id = -1};
    if (s->state != SL_ST_CLOSED) handle_connect(s, &pk, p->payload, true, blob, len);
  }
  cJSON_Delete(p->payload);
  free(p);
}

/* ---- events ---------------------------------------------------------------------------- */

static void dispatch_event(sl_session *s, const sio_packet *p, cJSON *arr, uint8_t **bufs,
                           size_t *lens, int natts) {
  sl_socket *sock = session_socket(s, p->nsp, p->nsplen);
  if (!sock) {
    protocol_error(s, p->nsp, p->nsplen, "invalid state: event for a namespace not joined");
    return;
  }
  cJSON *first = cJSON_GetArrayItem(arr, 0);
  char numbuf[32];
  const char *ev;
  if (cJSON_IsString(first)) {
    ev = first->valuestring;
  } else {
    snprintf(numbuf, sizeof numbuf, "%.17g", first->valuedouble);
    ev = numbuf;
  }
  sl_bin atts[SIO_MAX_ATTACHMENTS];
  for (int i = 0; i < natts; i++) {
    atts[i].data = bufs[i];
    atts[i].len = lens[i];
  }
  s->srv->sio_handler->on_event(sock, ev, arr, atts, (size_t)natts, p->ack_id);
}

static void handle_event_json(sl_session *s, const sio_packet *p, const char *json, size_t len,
                              uint8_t **bufs, size_t *lens, int natts) {
  cJSON *arr = NULL;
  if (sl_sio_parse_json(json, len, &arr) != 0 || !arr ||
      sl_sio_validate_payload(p->type, arr) != 0 ||
      (natts && sl_sio_count_placeholders(arr, natts) != natts)) {
    cJSON_Delete(arr);
    protocol_error(s, p->nsp, p->nsplen,
                   natts ? "invalid payload or attachment mismatch" : "invalid payload");
    return;
  }
  if (p->type == SIO_ACK || p->type == SIO_BINARY_ACK) {
    cJSON_Delete(arr); /* the server asks no acks of clients: an unknown id is ignored */
    return;
  }
  dispatch_event(s, p, arr, bufs, lens, natts);
  cJSON_Delete(arr);
}

/* sl_sio_message: see sio.h. */
void sl_sio_message(sl_session *s, const uint8_t *data, size_t len, bool binary) {
  if (binary) {
    struct sl_pending_bin *pb = pbin_of(s);
    if (!pb) {
      protocol_error(s, NULL, 0, "unexpected binary attachment");
      return;
    }
    pb->bufs[pb->have] = sl_xmalloc(len ? len : 1);
    if (len) memcpy(pb->bufs[pb->have], data, len);
    pb->lens[pb->have] = len;
    pb->have++;
    if (pb->have == pb->need) {
      s->wait->pbin = NULL;
      wait_trim(s);
      sio_packet p = {.type = pb->type,
                      .nsp = pb->nsp,
                      .nsplen = pb->nsplen,
                      .ack_id = pb->ack_id,
                      .attachments = pb->need};
      handle_event_json(s, &p, pb->json, pb->jsonlen, pb->bufs, pb->lens, pb->need);
      pbin_free(pb);
    }
    return;
  }
  if (pbin_of(s)) {
    protocol_error(s, pbin_of(s)->nsp, pbin_of(s)->nsplen,
                   "attachment mismatch: text packet while binary attachments are pending");
    return;
  }
  sio_packet p;
  if (sl_sio_parse((const char *)data, len, &p) != 0) {
    protocol_error(s, NULL, 0, "invalid Socket.IO packet");
    return;
  }
  switch (p.type) {
  case SIO_CONNECT: {
    cJSON *payload = NULL;
    if (p.jsonlen) {
      if (sl_sio_parse_json(p.json, p.jsonlen, &payload) != 0 || !payload) {
        protocol_error(s, p.nsp, p.nsplen, "invalid CONNECT payload");
        return;
      }
    }
    if (sl_sio_validate_payload(SIO_CONNECT, payload) != 0) {
      cJSON_Delete(payload);
      protocol_error(s, p.nsp, p.nsplen, "invalid CONNECT payload");
      return;
    }
    handle_connect(s, &p, payload, false, NULL, 0);
    cJSON_Delete(payload);
    return;
  }
  case SIO_DISCONNECT: {
    if (p.jsonlen) {
      protocol_error(s, p.nsp, p.nsplen, "invalid DISCONNECT");
      return;
    }
    sl_socket *sock = session_socket(s, p.nsp, p.nsplen);
    if (!sock) {
      protocol_error(s, p.nsp, p.nsplen, "invalid state: DISCONNECT for a namespace not joined");
      return;
    }
    socket_remove(sock, "client namespace disconnect", false);
    return;
  }
  case SIO_EVENT:
  case SIO_ACK:
    if (!session_socket(s, p.nsp, p.nsplen)) {
      protocol_error(s, p.nsp, p.nsplen, "invalid state: packet for a namespace not joined");
      return;
    }
    handle_event_json(s, &p, p.json, p.jsonlen, NULL, NULL, 0);
    return;
  case SIO_BINARY_EVENT:
  case SIO_BINARY_ACK: {
    if (!session_socket(s, p.nsp, p.nsplen) || p.attachments < 1) {
      protocol_error(s, p.nsp, p.nsplen, "invalid binary packet");
      return;
    }
    struct sl_pending_bin *pb = sl_xcalloc(1, sizeof *pb);
    pb->type = p.type;
    memcpy(pb->nsp, p.nsp, p.nsplen);
    pb->nsplen = p.nsplen;
    pb->ack_id = p.ack_id;
    /* all jsonlen bytes: a NUL inside the text (valid inside a JSON string) must not make
     * the copy shorter than the length it is parsed with */
    pb->json = sl_xmalloc(p.jsonlen + 1);
    memcpy(pb->json, p.json, p.jsonlen);
    pb->json[p.jsonlen] = 0;
    pb->jsonlen = p.jsonlen;
    pb->need = p.attachments;
    wait_of(s)->pbin = pb;
    return;
  }
  default: protocol_error(s, NULL, 0, "invalid Socket.IO packet type"); return;
  }
}

/* ---- socket API (contracts in sl_core.h) ------------------------------------------------ */

const char *sl_socket_id(const sl_socket *s) { return s->id; }
const char *sl_socket_ns(const sl_socket *s) { return s->ns->path; }
const char *sl_socket_principal(const sl_socket *s) { return s->principal; }
const char *sl_socket_remote(const sl_socket *s) { return s->sess ? s->sess->remote : ""; }
const char *sl_socket_transport(const sl_socket *s) {
  if (!s->sess) return "none"; /* parked for recovery */
  return s->sess->transport == SL_TR_WS ? "websocket" : "polling";
}
int *sl_socket_lua_slot(sl_socket *s) { return &s->slot; }

static int emit_packet(sl_socket *s, int type, int btype, int64_t ack_id, const char *json,
                       size_t len, const sl_bin *atts, size_t natts) {
  if (s->gone || !s->sess || s->sess->state == SL_ST_CLOSED) return SL_ESTATE;
  if (natts > SIO_MAX_ATTACHMENTS) return SL_EINVAL;
  cJSON *arr = cJSON_ParseWithLength(json, len);
  bool ok = arr && cJSON_IsArray(arr) &&
            (!natts || sl_sio_count_placeholders(arr, (int)natts) == (int)natts);
  cJSON_Delete(arr);
  if (!ok) return SL_EINVAL;
  sl_msg *m = sl_sio_encode(natts ? btype : type, s->ns->path, s->ns->pathlen, ack_id, json, len,
                            (int)natts);
  if (s->connecting)
    early_push(s, m);
  else
    sl_session_send(s->sess, m);
  for (size_t i = 0; i < natts; i++) {
    sl_msg *a = sl_msg_packet_new(atts[i].data, atts[i].len, true, SL_MK_CONTROL);
    if (s->connecting)
      early_push(s, a);
    else
      sl_session_send(s->sess, a);
  }
  return 0;
}

/* sl_socket_emit: see sl_core.h. */
int sl_socket_emit(sl_socket *s, const char *json_array, size_t len, const sl_bin *atts,
                   size_t natts) {
  return emit_packet(s, SIO_EVENT, SIO_BINARY_EVENT, -1, json_array, len, atts, natts);
}

/* sl_socket_ack: see sl_core.h. */
int sl_socket_ack(sl_socket *s, uint64_t ack_id, const char *json_array, size_t len,
                  const sl_bin *atts, size_t natts) {
  return emit_packet(s, SIO_ACK, SIO_BINARY_ACK, (int64_t)ack_id, json_array, len, atts, natts);
}

/* sl_socket_disconnect: see sl_core.h. */
void sl_socket_disconnect(sl_socket *s) {
  if (s->gone) return;
  if (s->parked) { /* a kick ends a kept session: no recovery any more */
    sl_gateway *gw = s->ns->srv->gw;
    sl_hash_del(&s->ns->parked, &sl_socket_rec_of(s)->phent);
    sl_heap_remove(&gw->parked, &sl_socket_rec_of(s)->pn);
    if (s->parked == SL_PARK_KEPT) s->ns->srv->sio_handler->on_expire(s);
    s->parked = SL_PARK_NONE;
    s->gone = 1;
    free(s->auth_token);
    s->auth_token = NULL;
    s->next = gw->dead; /* a hook up the stack may still hold it */
    gw->dead = s;
    return;
  }
  if (s->sess->state != SL_ST_CLOSED) sl_sio_send(s, SIO_DISCONNECT, -1, NULL, 0);
  socket_remove(s, "io server disconnect", false);
}
