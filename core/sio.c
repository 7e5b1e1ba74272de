/* sio.c - Socket.IO v5 over an Engine.IO session: namespaces, events, acks, binary
 * attachments, and the StreamFenceJs client protocol (subscribe, unsubscribe, ack, publish).
 * See shared/PROTOCOL.md section 3 and shared/STREAMFENCE.md section 2. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "sl_internal.h"
#include "sio_codec.h"
#include "../lua/sl_lua.h"

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

static void pbin_free(struct sl_pending_bin *p) {
  if (!p) return;
  for (int i = 0; i < p->have; i++) free(p->bufs[i]);
  free(p->json);
  free(p);
}

/* sl_sio_encode: one Socket.IO packet as an Engine.IO message ("4" + header + json), framed. */
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

static void sock_send(sl_socket *sock, int type, int64_t ack_id, const char *json, size_t len) {
  sl_session_send(sock->sess, sl_sio_encode(type, sock->ns->path, sock->ns->pathlen, ack_id, json, len, 0));
}

/* Emit {"code","message"} on the `error` event (DESIGN.md 3.5 refusals). */
static void emit_error(sl_socket *sock, const char *code, const char *message) {
  cJSON *a = cJSON_CreateArray();
  cJSON_AddItemToArray(a, cJSON_CreateString("error"));
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "code", code);
  cJSON_AddStringToObject(o, "message", message);
  cJSON_AddItemToArray(a, o);
  char *t = cJSON_PrintUnformatted(a);
  if (t) sock_send(sock, SIO_EVENT, -1, t, strlen(t));
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
  char *t = cJSON_PrintUnformatted(a);
  if (t) sock_send(sock, SIO_ACK, ack_id, t, strlen(t));
  free(t);
  cJSON_Delete(a);
}

static void refuse(sl_socket *sock, int64_t ack_id, const char *code, const char *message) {
  ack_result(sock, ack_id, code, message, NULL);
  emit_error(sock, code, message);
}

static sl_socket *session_socket(sl_session *s, const char *nsp, size_t nsplen) {
  for (sl_socket *k = s->sockets; k; k = k->next)
    if (!k->gone && k->ns->pathlen == nsplen && memcmp(k->ns->path, nsp, nsplen) == 0) return k;
  return NULL;
}

/* Release a socket: lanes, indexes, hooks. The struct itself is freed at a safe point
 * (sl_gateway_flush_dirty), because a Lua hook up the stack may still hold it. */
static void socket_remove(sl_socket *sock, const char *reason) {
  if (sock->gone) return;
  sock->gone = 1;
  sl_session *s = sock->sess;
  sl_socket **pp = &s->sockets;
  while (*pp && *pp != sock) pp = &(*pp)->next;
  if (*pp) *pp = sock->next;
  sl_socket_drop_lanes(sock);
  sl_hash_del(&sock->ns->sockets, &sock->hent);
  sock->ns->disconnections++;
  sl_gateway *gw = s->srv->gw;
  if (!sock->ns->implicit_root) sl_gateway_event(s->srv, SL_EV_DISCONNECT, sock, NULL, reason, NULL, 0);
  if (gw->lua) sl_lua_socket_gone(gw->lua, sock);
  free(sock->auth_token);
  sock->auth_token = NULL;
  sl_gateway_defer_free_socket(gw, sock);
}

/* sl_sio_session_closed: the Engine.IO session ended: release all its sockets. */
void sl_sio_session_closed(sl_session *s) {
  while (s->sockets) socket_remove(s->sockets, "transport close");
  pbin_free(s->pbin);
  s->pbin = NULL;
}

/* ---- authentication ------------------------------------------------------------------ */

#define SL_AUTH_MAX_FAILURES 5      /* failures from one address before it is rate limited */
#define SL_AUTH_COOLDOWN_MS 30000   /* how long it stays limited */
#define SL_AUTH_TABLE_MAX 10000     /* bound on tracked addresses */

typedef struct auth_fail {
  sl_hent hent;
  uint32_t failures;
  uint64_t until;     /* limited until (loop ms), 0 = not limited */
  uint64_t last;
  char addr[46];
} auth_fail;

static auth_fail *auth_entry(sl_server *srv, const char *addr, bool create) {
  sl_hent *e = sl_hash_get(&srv->auth_failures, addr);
  if (e) return sl_container_of(e, auth_fail, hent);
  if (!create) return NULL;
  if (srv->auth_failures.n >= SL_AUTH_TABLE_MAX) {
    /* Forget entries that are not limited any more; keeps the table bounded. */
    uint64_t now = uv_now(srv->gw->loop);
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
    if (srv->auth_failures.n >= SL_AUTH_TABLE_MAX) return NULL;
  }
  auth_fail *f = sl_xcalloc(1, sizeof *f);
  snprintf(f->addr, sizeof f->addr, "%s", addr);
  sl_hash_put(&srv->auth_failures, &f->hent, f->addr);
  return f;
}

/* sl_auth_free_table: release the rate-limit table of a server (stop). */
void sl_auth_free_table(sl_server *srv) {
  for (size_t b = 0; b < srv->auth_failures.nb; b++) {
    sl_hent *x = srv->auth_failures.b[b];
    while (x) {
      sl_hent *nx = x->hnext;
      free(sl_container_of(x, auth_fail, hent));
      x = nx;
    }
  }
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
  if (ns->cfg && ns->cfg->authorize_ref != SL_NOREF && gw->lua) {
    ok = sl_lua_authorize(gw->lua, ns->cfg->authorize_ref, token, ns->path, topic, sock,
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

/* Refuse a CONNECT: CONNECT_ERROR {"message", "data":{"code"}} (when the session is still
 * open), then discard the socket that was never joined. */
static void connect_refuse(sl_session *s, const sio_packet *p, sl_socket *sock,
                           const char *message, const char *code) {
  if (s->state != SL_ST_CLOSED) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", message);
    if (code) cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "data"), "code", code);
    char *t = cJSON_PrintUnformatted(o);
    sl_session_send(s, sl_sio_encode(SIO_CONNECT_ERROR, p->nsp, p->nsplen, -1, t, strlen(t), 0));
    free(t);
    cJSON_Delete(o);
  }
  sl_mq_clear(&sock->early);
  if (s->srv->gw->lua) sl_lua_socket_gone(s->srv->gw->lua, sock);
  free(sock->principal);
  free(sock->auth_token);
  free(sock);
}

/* ---- CONNECT ------------------------------------------------------------------------- */

static void handle_connect(sl_session *s, const sio_packet *p, cJSON *payload) {
  sl_ns *ns = sl_server_find_ns(s->srv, p->nsp, p->nsplen);
  if (!ns) {
    sl_session_send(s, sl_sio_encode(SIO_CONNECT_ERROR, p->nsp, p->nsplen, -1,
                                     "{\"message\":\"Invalid namespace\"}", 31, 0));
    return;
  }
  if (session_socket(s, p->nsp, p->nsplen)) {
    sl_session_close(s, "invalid state: namespace joined twice");
    return;
  }
  sl_socket *sock = sl_xcalloc(1, sizeof *sock);
  sock->sess = s;
  sock->ns = ns;
  sock->lua_ref = SL_NOREF;
  do {
    sl_random_id(sock->id, 20);
  } while (sl_hash_get(&ns->sockets, sock->id));
  sl_gateway *gw = s->srv->gw;
  const char *tok = token_of(payload);
  if (tok) sock->auth_token = sl_xstrdup(tok);
  if (ns->cfg && ns->cfg->auth_required) {
    char why[256] = "";
    int a = authorize(sock, tok ? tok : s->bearer, NULL, why, sizeof why);
    if (a != AUTH_OK || s->state == SL_ST_CLOSED) {
      connect_refuse(s, p, sock, why, a == AUTH_LIMITED ? "RATE_LIMITED" : "AUTH_REJECTED");
      return;
    }
  }
  if (ns->cfg && ns->cfg->on_connect_ref != SL_NOREF && gw->lua) {
    char reason[256] = "Not authorized";
    sock->connecting = 1;
    char *auth = payload ? cJSON_PrintUnformatted(payload) : NULL;
    int ok = sl_lua_on_connect(gw->lua, ns->cfg->on_connect_ref, sock, auth,
                               auth ? strlen(auth) : 0, reason, sizeof reason);
    free(auth);
    sock->connecting = 0;
    if (!ok || s->state == SL_ST_CLOSED) {
      connect_refuse(s, p, sock, reason, NULL);
      return;
    }
  }
  sl_hash_put(&ns->sockets, &sock->hent, sock->id);
  sock->next = s->sockets;
  s->sockets = sock;
  s->ever_joined = 1;
  ns->connections++;
  char body[48];
  int n = snprintf(body, sizeof body, "{\"sid\":\"%s\"}", sock->id);
  sock_send(sock, SIO_CONNECT, -1, body, (size_t)n);
  /* What onConnect emitted follows the CONNECT reply, in order. */
  while (sock->early.n) sl_session_send(s, sl_mq_pop(&sock->early));
  sl_mq_clear(&sock->early);
  if (!ns->implicit_root) sl_gateway_event(s->srv, SL_EV_CONNECT, sock, NULL, NULL, NULL, 0);
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

/* Returns true when the event was one of the four StreamFenceJs events. */
static bool streamfence_event(sl_socket *sock, const char *ev, cJSON *arr, int64_t ack_id) {
  sl_ns *ns = sock->ns;
  if (!ns->cfg) return false;
  cJSON *arg = cJSON_GetArrayItem(arr, 1);
  char msg[512];
  if (strcmp(ev, "subscribe") == 0 || strcmp(ev, "unsubscribe") == 0) {
    bool sub = ev[0] == 's';
    const char *topic = topic_arg(arg);
    if (!topic) {
      refuse(sock, ack_id, "INVALID_PAYLOAD", sub ? "subscribe needs {topic: string}" : "unsubscribe needs {topic: string}");
      return true;
    }
    sl_topic *t = sl_topic_find(ns, topic, strlen(topic));
    if (!t) {
      snprintf(msg, sizeof msg, "Unknown topic: %s", topic);
      refuse(sock, ack_id, "UNKNOWN_TOPIC", msg);
      return true;
    }
    if (sub) {
      if (sock->sess->srv->cfg->auth_token || ns->cfg->authorize_ref != SL_NOREF) {
        const char *tok = token_of(arg);
        if (!tok) tok = sock->auth_token ? sock->auth_token : sock->sess->bearer;
        char why[256] = "";
        int a = authorize(sock, tok, topic, why, sizeof why);
        if (sock->gone) return true;
        if (a != AUTH_OK) {
          refuse(sock, ack_id, a == AUTH_LIMITED ? "RATE_LIMITED" : "AUTH_REJECTED", why);
          return true;
        }
      }
      int r = sl_subscribe(sock, t);
      if (r != 0) {
        refuse(sock, ack_id, "SUBSCRIBE_FAILED", sl_strerror(r));
        return true;
      }
    } else {
      sl_unsubscribe(sock, t);
    }
    ack_result(sock, ack_id, NULL, NULL, NULL);
    sl_gateway_event(sock->sess->srv, sub ? SL_EV_SUBSCRIBE : SL_EV_UNSUBSCRIBE, sock, t->name,
                     NULL, NULL, 0);
    return true;
  }
  if (strcmp(ev, "ack") == 0) {
    cJSON *t = cJSON_IsObject(arg) ? cJSON_GetObjectItemCaseSensitive(arg, "topic") : NULL;
    cJSON *id = cJSON_IsObject(arg) ? cJSON_GetObjectItemCaseSensitive(arg, "messageId") : NULL;
    if (!cJSON_IsString(t) || !cJSON_IsString(id)) {
      refuse(sock, ack_id, "INVALID_PAYLOAD", "ack needs {topic: string, messageId: string}");
      return true;
    }
    sl_topic *tp = sl_topic_find(ns, t->valuestring, strlen(t->valuestring));
    bool settled = tp && sl_delivery_ack(sock, tp, id->valuestring);
    if (settled) ack_result(sock, ack_id, NULL, NULL, NULL);
    else ack_result(sock, ack_id, "UNKNOWN_MESSAGE", "no message in flight with that id", NULL);
    return true;
  }
  if (strcmp(ev, "publish") == 0) {
    const char *topic = topic_arg(arg);
    if (!topic) {
      refuse(sock, ack_id, "INVALID_PAYLOAD", "publish needs {topic: string, payload}");
      return true;
    }
    sl_topic *t = sl_topic_find(ns, topic, strlen(topic));
    if (!t) {
      snprintf(msg, sizeof msg, "Unknown topic: %s", topic);
      refuse(sock, ack_id, "UNKNOWN_TOPIC", msg);
      return true;
    }
    if (!ns->cfg->client_publish) {
      refuse(sock, ack_id, "PUBLISH_FORBIDDEN", "clients may not publish in this namespace");
      return true;
    }
    cJSON *payload = cJSON_GetObjectItemCaseSensitive(arg, "payload");
    char *text = payload ? cJSON_PrintUnformatted(payload) : NULL;
    sl_gateway *gw = sock->sess->srv->gw;
    if (ns->cfg->on_client_publish_ref != SL_NOREF && gw->lua) {
      char *np = NULL;
      int allow = sl_lua_client_publish(gw->lua, ns->cfg->on_client_publish_ref, sock, topic,
                                        text ? text : "null", text ? strlen(text) : 4, &np);
      if (sock->gone) {
        free(np);
        free(text);
        return true;
      }
      if (!allow) {
        free(np);
        free(text);
        refuse(sock, ack_id, "PUBLISH_FORBIDDEN", "refused by onClientPublish");
        return true;
      }
      if (np) {
        free(text);
        text = np;
      }
    }
    sl_publish_opts o = {.source = SL_SRC_CLIENT, .from = sock, .trusted_json = true,
                         .server = sock->sess->srv->cfg->name};
    char id[SL_MSGID_MAX];
    t->m[SL_M_RECEIVED]++;
    t->m[SL_M_RECEIVED_BYTES] += text ? strlen(text) : 4;
    int r = sl_publish(sock->sess->srv->gw, ns->path, topic, text ? text : "null",
                       text ? strlen(text) : 4, &o, id);
    free(text);
    if (r == 0) ack_result(sock, ack_id, NULL, NULL, id);
    else if (r == SL_EFORBIDDEN) refuse(sock, ack_id, "PUBLISH_FORBIDDEN", "refused by policy");
    else refuse(sock, ack_id, "INVALID_PAYLOAD", sl_strerror(r));
    return true;
  }
  return false;
}

/* ---- events ---------------------------------------------------------------------------- */

static void dispatch_event(sl_session *s, const sio_packet *p, cJSON *arr, uint8_t **bufs,
                           size_t *lens, int natts) {
  sl_socket *sock = session_socket(s, p->nsp, p->nsplen);
  if (!sock) {
    sl_session_close(s, "invalid state: event for a namespace not joined");
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
  if (natts == 0 && streamfence_event(sock, ev, arr, p->ack_id)) return;
  sl_ns_config *cfg = sock->ns->cfg;
  sl_gateway *gw = s->srv->gw;
  if (!cfg || cfg->on_event_ref == SL_NOREF || !gw->lua) return;
  char *evname = sl_xstrdup(ev);
  cJSON_Delete(cJSON_DetachItemFromArray(arr, 0));
  char *args = cJSON_PrintUnformatted(arr);
  sl_bin atts[SIO_MAX_ATTACHMENTS];
  for (int i = 0; i < natts; i++) {
    atts[i].data = bufs[i];
    atts[i].len = lens[i];
  }
  sl_lua_on_event(gw->lua, cfg->on_event_ref, sock, evname, args ? args : "[]",
                  args ? strlen(args) : 2, atts, (size_t)natts, p->ack_id);
  free(evname);
  free(args);
}

static void handle_event_json(sl_session *s, const sio_packet *p, const char *json, size_t len,
                              uint8_t **bufs, size_t *lens, int natts) {
  cJSON *arr = NULL;
  if (sl_sio_parse_json(json, len, &arr) != 0 || !arr || sl_sio_validate_payload(p->type, arr) != 0 ||
      (natts && sl_sio_count_placeholders(arr, natts) != natts)) {
    cJSON_Delete(arr);
    sl_session_close(s, "invalid payload");
    return;
  }
  if (p->type == SIO_ACK || p->type == SIO_BINARY_ACK) {
    cJSON_Delete(arr); /* the server asks no acks of clients: an unknown id is ignored */
    return;
  }
  dispatch_event(s, p, arr, bufs, lens, natts);
  cJSON_Delete(arr);
}

/* sl_sio_message: one Engine.IO message for the Socket.IO layer. */
void sl_sio_message(sl_session *s, const uint8_t *data, size_t len, bool binary) {
  if (binary) {
    struct sl_pending_bin *pb = s->pbin;
    if (!pb) {
      sl_session_close(s, "unexpected binary attachment");
      return;
    }
    pb->bufs[pb->have] = sl_xmalloc(len ? len : 1);
    if (len) memcpy(pb->bufs[pb->have], data, len);
    pb->lens[pb->have] = len;
    pb->have++;
    if (pb->have == pb->need) {
      s->pbin = NULL;
      sio_packet p = {.type = pb->type, .nsp = pb->nsp, .nsplen = pb->nsplen, .ack_id = pb->ack_id,
                      .attachments = pb->need};
      handle_event_json(s, &p, pb->json, pb->jsonlen, pb->bufs, pb->lens, pb->need);
      pbin_free(pb);
    }
    return;
  }
  if (s->pbin) {
    sl_session_close(s, "text packet while binary attachments are pending");
    return;
  }
  sio_packet p;
  if (sl_sio_parse((const char *)data, len, &p) != 0) {
    sl_session_close(s, "invalid Socket.IO packet");
    return;
  }
  switch (p.type) {
  case SIO_CONNECT: {
    cJSON *payload = NULL;
    if (p.jsonlen) {
      if (sl_sio_parse_json(p.json, p.jsonlen, &payload) != 0 || !payload) {
        sl_session_close(s, "invalid CONNECT payload");
        return;
      }
    }
    if (sl_sio_validate_payload(SIO_CONNECT, payload) != 0) {
      cJSON_Delete(payload);
      sl_session_close(s, "invalid CONNECT payload");
      return;
    }
    handle_connect(s, &p, payload);
    cJSON_Delete(payload);
    return;
  }
  case SIO_DISCONNECT: {
    if (p.jsonlen) {
      sl_session_close(s, "invalid DISCONNECT");
      return;
    }
    sl_socket *sock = session_socket(s, p.nsp, p.nsplen);
    if (!sock) {
      sl_session_close(s, "invalid state: DISCONNECT for a namespace not joined");
      return;
    }
    socket_remove(sock, "client namespace disconnect");
    return;
  }
  case SIO_EVENT:
  case SIO_ACK:
    if (!session_socket(s, p.nsp, p.nsplen)) {
      sl_session_close(s, "invalid state: packet for a namespace not joined");
      return;
    }
    handle_event_json(s, &p, p.json, p.jsonlen, NULL, NULL, 0);
    return;
  case SIO_BINARY_EVENT:
  case SIO_BINARY_ACK: {
    if (!session_socket(s, p.nsp, p.nsplen) || p.attachments < 1) {
      sl_session_close(s, "invalid binary packet");
      return;
    }
    struct sl_pending_bin *pb = sl_xcalloc(1, sizeof *pb);
    pb->type = p.type;
    memcpy(pb->nsp, p.nsp, p.nsplen);
    pb->nsplen = p.nsplen;
    pb->ack_id = p.ack_id;
    pb->json = sl_xstrndup(p.json, p.jsonlen);
    pb->jsonlen = p.jsonlen;
    pb->need = p.attachments;
    s->pbin = pb;
    return;
  }
  default:
    sl_session_close(s, "invalid Socket.IO packet type");
    return;
  }
}

/* ---- socket API (sl_core.h) ------------------------------------------------------------ */

const char *sl_socket_id(const sl_socket *s) { return s->id; }
const char *sl_socket_ns(const sl_socket *s) { return s->ns->path; }
const char *sl_socket_principal(const sl_socket *s) { return s->principal; }
const char *sl_socket_remote(const sl_socket *s) { return s->sess->remote; }
const char *sl_socket_transport(const sl_socket *s) {
  return s->sess->transport == SL_TR_WS ? "websocket" : "polling";
}
int *sl_socket_lua_slot(sl_socket *s) { return &s->lua_ref; }

static int emit_packet(sl_socket *s, int type, int btype, int64_t ack_id, const char *json,
                       size_t len, const sl_bin *atts, size_t natts) {
  if (s->gone || s->sess->state == SL_ST_CLOSED) return SL_ESTATE;
  if (natts > SIO_MAX_ATTACHMENTS) return SL_EINVAL;
  cJSON *arr = cJSON_ParseWithLength(json, len);
  bool ok = arr && cJSON_IsArray(arr) &&
            (!natts || sl_sio_count_placeholders(arr, (int)natts) == (int)natts);
  cJSON_Delete(arr);
  if (!ok) return SL_EINVAL;
  sl_msg *m = sl_sio_encode(natts ? btype : type, s->ns->path, s->ns->pathlen, ack_id, json,
                            len, (int)natts);
  if (s->connecting) sl_mq_push(&s->early, m, false);
  else sl_session_send(s->sess, m);
  for (size_t i = 0; i < natts; i++) {
    sl_msg *a = sl_msg_packet_new(atts[i].data, atts[i].len, true, SL_MK_CONTROL);
    if (s->connecting) sl_mq_push(&s->early, a, false);
    else sl_session_send(s->sess, a);
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
  if (s->sess->state != SL_ST_CLOSED) sock_send(s, SIO_DISCONNECT, -1, NULL, 0);
  socket_remove(s, "io server disconnect");
}
