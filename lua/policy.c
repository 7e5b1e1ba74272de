/* policy.c - the Lua implementation of the hooks table (see sl_policy.h).
 *
 * Each hook's user data is a binding: the generation's VM and the config entry holding the
 * refs. Per call this adds one indirect call and one pointer load to the Lua call itself. */
#include <stdlib.h>
#include <string.h>
#include "hooks.h"
#include "sl_config.h"
#include "sl_lua.h"
#include "sl_policy.h"

_Static_assert((int)SL_ROUTE_DELIVER == SLUICE_ROUTE_DELIVER &&
                   (int)SL_ROUTE_DROP == SLUICE_ROUTE_DROP &&
                   (int)SL_ROUTE_REWRITE == SLUICE_ROUTE_REWRITE,
               "route actions");
_Static_assert(SL_NOREF == SLUICE_NOSLOT, "snapshot slot = Lua ref");

typedef struct binding {
  struct sl_lua *vm;
  const sl_ns_config *nc;     /* namespace hooks */
  const sl_server_config *sc; /* server hooks */
} binding;

struct sl_lua_policy {
  size_t n;
  binding b[];
};

/* ---- namespace hooks ---- */

static void lp_route(void *ud, const sluice_message *m, sluice_route_result *out) {
  const binding *b = ud;
  sl_lua_route(b->vm, b->nc->route_ref, m->ns, m->topic, m->payload, m->len, m->source, m->from,
               out);
}

static char *lp_coalesce_key(void *ud, const char *topic, const char *payload, size_t len,
                             char *buf, size_t cap) {
  const binding *b = ud;
  return sl_lua_coalesce_key_buf(b->vm, b->nc->coalesce_key_ref, topic, payload, len, buf, cap);
}

static int lp_snapshot(void *ud, int *slot, const char *state_json, size_t state_len,
                       const char *topic, const char *payload, size_t len, char **new_state) {
  const binding *b = ud;
  return sl_lua_snapshot(b->vm, b->nc->snapshot_ref, slot, state_json, state_len, topic, payload,
                         len, new_state);
}

static int lp_authorize(void *ud, const char *token, const char *ns, const char *topic,
                        sluice_client *c, char **principal, char *reason, size_t reasonlen) {
  const binding *b = ud;
  return sl_lua_authorize(b->vm, b->nc->authorize_ref, token, ns, topic, c, principal, reason,
                          reasonlen);
}

static int lp_client_publish(void *ud, sluice_client *c, const char *topic, const char *payload,
                             size_t len, char **new_payload) {
  const binding *b = ud;
  return sl_lua_client_publish(b->vm, b->nc->on_client_publish_ref, c, topic, payload, len,
                               new_payload);
}

static int lp_connect(void *ud, sluice_client *c, const char *auth_json, size_t len, char *reason,
                      size_t reasonlen) {
  const binding *b = ud;
  return sl_lua_on_connect(b->vm, b->nc->on_connect_ref, c, auth_json, len, reason, reasonlen);
}

static void lp_event(void *ud, sluice_client *c, const char *name, const char *args_json,
                     size_t len, const sluice_bin *atts, size_t natts, int64_t ack_id) {
  const binding *b = ud;
  sl_lua_on_event(b->vm, b->nc->on_event_ref, c, name, args_json, len, atts, natts, ack_id);
}

/* ---- server hooks ---- */

static void json_field(sl_sbuf *sb, const char *key, const char *val) {
  if (!val) return;
  sl_sbuf_printf(sb, ",\"%s\":\"", key);
  for (const char *p = val; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch == '"' || ch == '\\')
      sl_sbuf_printf(sb, "\\%c", ch);
    else if (ch < 0x20)
      sl_sbuf_printf(sb, "\\u%04x", ch);
    else
      sl_sbuf_append(sb, p, 1);
  }
  sl_sbuf_puts(sb, "\"");
}

static int event_ref(const sl_server_config *sc, sluice_event_type t) {
  switch (t) {
  case SLUICE_EV_CONNECT: return sc->on_connect_ref;
  case SLUICE_EV_DISCONNECT: return sc->on_disconnect_ref;
  case SLUICE_EV_SUBSCRIBE: return sc->on_subscribe_ref;
  case SLUICE_EV_UNSUBSCRIBE: return sc->on_unsubscribe_ref;
  case SLUICE_EV_OVERFLOW: return sc->on_overflow_ref;
  default: return sc->on_retry_exhausted_ref;
  }
}

/* A server event reaches Lua as one StreamFenceJs-shaped table (built from JSON text). */
static void lp_server_event(void *ud, const sluice_event *ev) {
  const binding *b = ud;
  sl_sbuf sb = {0};
  sl_sbuf_printf(&sb, "{\"type\":\"%s\"", ev->type_name);
  json_field(&sb, "server", ev->server);
  if (ev->client) {
    json_field(&sb, "namespace", ev->ns);
    json_field(&sb, "clientId", ev->client_id);
    json_field(&sb, "principal", ev->principal);
    json_field(&sb, "remoteAddress", ev->remote_address);
    json_field(&sb, "transport", ev->transport);
  }
  json_field(&sb, "topic", ev->topic);
  json_field(&sb, "reason", ev->reason);
  json_field(&sb, "messageId", ev->message_id);
  if (ev->recovered >= 0)
    sl_sbuf_printf(&sb, ",\"%s\":%s", ev->type == SLUICE_EV_CONNECT ? "recovered" : "recoverable",
                   ev->recovered ? "true" : "false");
  if (ev->type == SLUICE_EV_RETRY_EXHAUSTED)
    sl_sbuf_printf(&sb, ",\"retryCount\":%ld", ev->retry_count);
  sl_sbuf_puts(&sb, "}");
  sl_lua_server_event(b->vm, event_ref(b->sc, ev->type), sb.data, sb.len);
  sl_sbuf_free(&sb);
}

static void lp_on_start(void *ud, sluice_server *srv) {
  const binding *b = ud;
  sl_lua_on_start(b->vm, b->sc->on_start_ref, srv);
}

/* The VM's boxes of a client or raw endpoint connection are cleared whenever the core frees
 * one, so a stale reference in a script raises instead of touching freed memory. */
static void lp_client_free(void *ud, sluice_client *c) {
  const binding *b = ud;
  sl_lua_socket_gone(b->vm, c);
}

static void lp_eio_free(void *ud, sluice_eio_conn *c) {
  const binding *b = ud;
  sl_lua_eio_gone(b->vm, c);
}

/* ---- the raw Engine.IO endpoint (engineIo.onOpen / onMessage / onClose) ---- */

static void lp_eio_open(void *ud, sluice_eio_conn *c) {
  const binding *b = ud;
  sl_lua_eio_event(b->vm, b->sc->eio_on_open_ref, c, "open");
}

static void lp_eio_message(void *ud, sluice_eio_conn *c, const uint8_t *data, size_t len,
                           int binary) {
  const binding *b = ud;
  sl_lua_eio_message(b->vm, b->sc->eio_on_message_ref, c, data, len, binary != 0);
}

static void lp_eio_close(void *ud, sluice_eio_conn *c, const char *reason) {
  const binding *b = ud;
  sl_lua_eio_event(b->vm, b->sc->eio_on_close_ref, c, reason);
}

static int lp_allow_request(void *ud, const sluice_request *req, int *status, char *message,
                            size_t msglen) {
  const binding *b = ud;
  return sl_lua_allow_request(b->vm, b->sc->allow_request_ref, req->method, req->path, req->query,
                              req->remote_address, req->headers, req->nheaders, status, message,
                              msglen);
}

#define SET(ref, member, fn)                                                                       \
  if ((ref) != SL_NOREF) h.member = fn

/* sl_lua_policy_install: see sl_policy.h. */
sl_lua_policy *sl_lua_policy_install(sl_gateway *gw, struct sl_lua *vm, struct sl_config *cfg) {
  size_t n = cfg->nservers;
  for (size_t i = 0; i < cfg->nservers; i++) n += cfg->servers[i].nns;
  sl_lua_policy *p = sl_xcalloc(1, sizeof *p + n * sizeof(binding));
  for (size_t i = 0; i < cfg->nservers; i++) {
    const sl_server_config *sc = &cfg->servers[i];
    binding *b = &p->b[p->n++];
    *b = (binding){.vm = vm, .sc = sc};
    sluice_hooks h = {0};
    SET(sc->on_connect_ref, on_connect, lp_server_event);
    SET(sc->on_disconnect_ref, on_disconnect, lp_server_event);
    SET(sc->on_subscribe_ref, on_subscribe, lp_server_event);
    SET(sc->on_unsubscribe_ref, on_unsubscribe, lp_server_event);
    SET(sc->on_overflow_ref, on_overflow, lp_server_event);
    SET(sc->on_retry_exhausted_ref, on_retry_exhausted, lp_server_event);
    SET(sc->on_start_ref, on_start, lp_on_start);
    SET(sc->eio_on_open_ref, eio_open, lp_eio_open);
    SET(sc->eio_on_message_ref, eio_message, lp_eio_message);
    SET(sc->eio_on_close_ref, eio_close, lp_eio_close);
    SET(sc->allow_request_ref, allow_request, lp_allow_request);
    h.client_free = lp_client_free; /* the VM may hold boxes of any client or connection */
    h.eio_free = lp_eio_free;
    /* SL_ENOENT: a server not selected with --server is gone; nothing to install */
    (void)sl_hooks_set_script(gw, sc->name, NULL, &h, b);
    for (size_t j = 0; j < sc->nns; j++) {
      const sl_ns_config *nc = &sc->ns[j];
      b = &p->b[p->n++];
      *b = (binding){.vm = vm, .nc = nc, .sc = sc};
      memset(&h, 0, sizeof h);
      SET(nc->route_ref, route, lp_route);
      SET(nc->coalesce_key_ref, coalesce_key, lp_coalesce_key);
      SET(nc->snapshot_ref, snapshot, lp_snapshot);
      SET(nc->authorize_ref, authorize, lp_authorize);
      SET(nc->on_client_publish_ref, client_publish, lp_client_publish);
      SET(nc->on_connect_ref, connect, lp_connect);
      SET(nc->on_event_ref, event, lp_event);
      (void)sl_hooks_set_script(gw, sc->name, nc->path, &h, b);
    }
  }
  return p;
}

/* sl_lua_policy_free: see sl_policy.h. */
void sl_lua_policy_free(sl_lua_policy *p) { free(p); }
