/* gateway.c - the embedding API (sluice.h): create from a config, start, publish, stop. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <signal.h>
#include "sl_internal.h"
#include "../lua/sl_lua.h"
#include "router.h"

const char *sluice_strerror(int err) { return sl_strerror(err); }

uv_loop_t *sl_gateway_loop(sl_gateway *gw) { return gw->loop; }
const char *sl_server_name(const sl_server *srv) { return srv->cfg->name; }
int sl_server_port(const sl_server *srv) { return srv->port; }

/* sl_gateway_next_msgid: "msg-<boot id>-<n>": unique across namespaces and restarts (the
 * boot id is random per process), still the StreamFenceJs string shape with its prefix. */
void sl_gateway_next_msgid(sl_gateway *gw, char *out) {
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

/* sl_gateway_is_loopback: is a textual peer address on the loopback network? */
bool sl_gateway_is_loopback(const char *a) {
  return strncmp(a, "127.", 4) == 0 || strcmp(a, "::1") == 0 || strncmp(a, "::ffff:127.", 11) == 0;
}

/* sl_gateway_defer_free_socket: free a released socket at the next safe point. */
void sl_gateway_defer_free_socket(sl_gateway *gw, sl_socket *sock) {
  sock->next = gw->dead;
  gw->dead = sock;
}

/* sl_gateway_retry_exhausted: an AT_LEAST_ONCE message ran out of retries for a client. */
void sl_gateway_retry_exhausted(sl_gateway *gw, sl_socket *sock, sl_topic *t, const char *msgid,
                                uint32_t retries) {
  (void)gw;
  sl_log_info("retries exhausted: namespace %s topic %s client %s message %s after %u retries",
              t->ns->path, t->name, sock->id, msgid ? msgid : "?", retries);
  sl_gateway_event(t->ns->srv, SL_EV_RETRY_EXHAUSTED, sock, t->name, NULL, msgid, retries);
}

static void json_field(sl_sbuf *b, const char *key, const char *val) {
  if (!val) return;
  sl_sbuf_printf(b, ",\"%s\":\"", key);
  for (const char *p = val; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch == '"' || ch == '\\') sl_sbuf_printf(b, "\\%c", ch);
    else if (ch < 0x20) sl_sbuf_printf(b, "\\u%04x", ch);
    else sl_sbuf_append(b, p, 1);
  }
  sl_sbuf_puts(b, "\"");
}

/* sl_gateway_event: fire a server event hook with a StreamFenceJs-shaped event table. */
void sl_gateway_event(sl_server *srv, int ev, sl_socket *sock, const char *topic,
                      const char *reason, const char *msgid, long retries) {
  static const char *const names[] = {"connect", "disconnect", "subscribe", "unsubscribe",
                                      "overflow", "retryExhausted"};
  const sl_server_config *c = srv->cfg;
  int ref = ev == SL_EV_CONNECT ? c->on_connect_ref
          : ev == SL_EV_DISCONNECT ? c->on_disconnect_ref
          : ev == SL_EV_SUBSCRIBE ? c->on_subscribe_ref
          : ev == SL_EV_UNSUBSCRIBE ? c->on_unsubscribe_ref
          : ev == SL_EV_OVERFLOW ? c->on_overflow_ref
                                 : c->on_retry_exhausted_ref;
  sl_gateway *gw = srv->gw;
  if (ref == SL_NOREF || !gw->lua) return;
  sl_sbuf b = {0};
  sl_sbuf_printf(&b, "{\"type\":\"%s\"", names[ev]);
  json_field(&b, "server", c->name);
  if (sock) {
    json_field(&b, "namespace", sock->ns->path);
    json_field(&b, "clientId", sock->id);
    json_field(&b, "principal", sock->principal);
    json_field(&b, "remoteAddress", sock->sess->remote);
    json_field(&b, "transport", sock->sess->transport == SL_TR_WS ? "websocket" : "polling");
  }
  json_field(&b, "topic", topic);
  json_field(&b, "reason", reason);
  json_field(&b, "messageId", msgid);
  if (ev == SL_EV_RETRY_EXHAUSTED) sl_sbuf_printf(&b, ",\"retryCount\":%ld", retries);
  sl_sbuf_puts(&b, "}");
  sl_lua_server_event(gw->lua, ref, b.data, b.len);
  sl_sbuf_free(&b);
}

static void flush_cb_prep(uv_prepare_t *h) { sl_gateway_flush_dirty(h->data); }
static void flush_cb_check(uv_check_t *h) { sl_gateway_flush_dirty(h->data); }

static sl_gateway *gateway_alloc(uv_loop_t *loop) {
  sl_gateway *gw = sl_xcalloc(1, sizeof *gw);
  gw->loop = loop;
  sl_list_init(&gw->dirty);
  sl_list_init(&gw->timeouts);
  static const char a36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  uint8_t rb[8];
  sl_random_bytes(rb, sizeof rb);
  for (int i = 0; i < 8; i++) gw->boot_id[i] = a36[rb[i] % 36];
  gw->boot_id[8] = 0;
  gw->started_ms = sl_now_ms();
  gw->lua = sl_lua_new(gw);
  sl_lua_set_hook_times(gw->lua, gw->hook_times);
  return gw;
}

static int gateway_build(sl_gateway *gw) {
  gw->nservers = gw->cfg->nservers;
  gw->servers = sl_xcalloc(gw->nservers ? gw->nservers : 1, sizeof(sl_server));
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    srv->gw = gw;
    srv->cfg = &gw->cfg->servers[i];
    sl_list_init(&srv->conns);
    sl_router_install(srv);
    srv->nns = srv->cfg->nns;
    srv->ns = sl_xcalloc(srv->nns ? srv->nns : 1, sizeof(sl_ns));
    for (size_t j = 0; j < srv->nns; j++) sl_ns_init(&srv->ns[j], srv, &srv->cfg->ns[j]);
    sl_ns_init(&srv->root, srv, NULL);
  }
  return 0;
}

static void gateway_destroy(sl_gateway *gw) {
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    for (size_t j = 0; j < srv->nns; j++) sl_ns_free(&srv->ns[j]);
    sl_ns_free(&srv->root);
    free(srv->ns);
    sl_hash_free(&srv->sessions);
    sl_auth_free_table(srv);
  }
  free(gw->servers);
  free(gw->acks);
  free(gw->sheap);
  if (gw->cfg) sl_config_free(gw->cfg);
  if (gw->lua) sl_lua_close(gw->lua);
  free(gw);
}

/* sluice_new_from_file: see sluice.h. */
sluice_t *sluice_new_from_file(uv_loop_t *loop, const char *path, char *err, size_t errlen) {
  sl_gateway *gw = gateway_alloc(loop);
  if (sl_config_load(sl_lua_state(gw->lua), path, &gw->cfg, err, errlen) != 0) {
    gw->cfg = NULL;
    gateway_destroy(gw);
    return NULL;
  }
  gateway_build(gw);
  return gw;
}

/* sluice_new_from_string: see sluice.h. */
sluice_t *sluice_new_from_string(uv_loop_t *loop, const char *text, size_t len, const char *fmt,
                                 char *err, size_t errlen) {
  sl_gateway *gw = gateway_alloc(loop);
  if (sl_config_load_string(sl_lua_state(gw->lua), text, len, fmt, "<string>", &gw->cfg, err,
                            errlen) != 0) {
    gw->cfg = NULL;
    gateway_destroy(gw);
    return NULL;
  }
  gateway_build(gw);
  return gw;
}

/* sluice_select_server: see sluice.h. Selected servers are marked; the rest are dropped at
 * start. */
int sluice_select_server(sluice_t *gw, const char *name) {
  for (size_t i = 0; i < gw->nservers; i++) {
    if (strcmp(gw->servers[i].cfg->name, name) == 0) {
      gw->servers[i].listening = true; /* reused as "selected" until start */
      return 0;
    }
  }
  return SL_ENOENT;
}

/* sluice_start: see sluice.h. */
int sluice_start(sluice_t *gw, char *err, size_t errlen) {
  bool any_selected = false;
  for (size_t i = 0; i < gw->nservers; i++) any_selected |= gw->servers[i].listening;
  if (any_selected) {
    size_t k = 0;
    for (size_t i = 0; i < gw->nservers; i++) {
      if (gw->servers[i].listening) {
        gw->servers[k] = gw->servers[i];
        sl_list_init(&gw->servers[k].conns);
        for (size_t j = 0; j < gw->servers[k].nns; j++) gw->servers[k].ns[j].srv = &gw->servers[k];
        gw->servers[k].root.srv = &gw->servers[k];
        gw->servers[k].listening = false;
        k++;
      } else {
        for (size_t j = 0; j < gw->servers[i].nns; j++) sl_ns_free(&gw->servers[i].ns[j]);
        sl_ns_free(&gw->servers[i].root);
        free(gw->servers[i].ns);
      }
    }
    gw->nservers = k;
  }
  uv_prepare_init(gw->loop, &gw->prep);
  gw->prep.data = gw;
  uv_prepare_start(&gw->prep, flush_cb_prep);
  uv_unref((uv_handle_t *)&gw->prep);
  uv_check_init(gw->loop, &gw->check);
  gw->check.data = gw;
  uv_check_start(&gw->check, flush_cb_check);
  uv_unref((uv_handle_t *)&gw->check);
  sl_net_start_sweeper(gw);
  sl_delivery_start(gw);
  sl_eio_start(gw);
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    sl_spill_sweep_server(srv);
    int r = sl_server_listen(srv, sl_router_request);
    if (r) {
      snprintf(err, errlen, "server \"%s\": cannot listen on %s:%d: %s", srv->cfg->name,
               srv->cfg->host ? srv->cfg->host : "0.0.0.0", srv->cfg->port, uv_strerror(r));
      return SL_EIO;
    }
    sl_log_info("server \"%s\" listening on http://%s:%d", srv->cfg->name,
                srv->cfg->host ? srv->cfg->host : "0.0.0.0", srv->port);
  }
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    if (srv->cfg->on_start_ref != SL_NOREF && gw->lua)
      sl_lua_on_start(gw->lua, srv->cfg->on_start_ref, srv);
  }
  sl_gateway_flush_dirty(gw);
  return 0;
}

/* sluice_port: see sluice.h. */
int sluice_port(const sluice_t *gw, size_t i) {
  return i < gw->nservers ? gw->servers[i].port : -1;
}

/* sluice_publish: see sluice.h. */
int sluice_publish(sluice_t *gw, const char *ns, const char *topic, const char *json, size_t len,
                   const char *to, char *msgid) {
  sl_publish_opts o = {.to = to, .source = SL_SRC_API};
  return sl_publish(gw, ns, topic, json, len, &o, msgid);
}

static void on_signal(uv_signal_t *h, int signum) {
  sl_gateway *gw = h->data;
  if (signum == SIGHUP) {
    char err[1024];
    sl_log_info("SIGHUP: reloading the configuration");
    sluice_reload(gw, err, sizeof err);
    return;
  }
  sl_log_info("signal %d: stopping", signum);
  sluice_stop(gw, NULL, NULL);
}

/* sluice_handle_signals: see sluice.h. */
void sluice_handle_signals(sluice_t *gw) {
  int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(gw->loop, &gw->sigs[i]);
    gw->sigs[i].data = gw;
    uv_signal_start(&gw->sigs[i], on_signal, sigs[i]);
    uv_unref((uv_handle_t *)&gw->sigs[i]);
  }
}

static void handle_closed(uv_handle_t *h) {
  sl_gateway *gw = h->data;
  if (--gw->closing_handles == 0 && gw->on_stopped) gw->on_stopped(gw, gw->on_stopped_arg);
}

static void close_handle(sl_gateway *gw, uv_handle_t *h) {
  if (!h->loop || uv_is_closing(h)) return;
  h->data = gw;
  gw->closing_handles++;
  uv_close(h, handle_closed);
}

/* sluice_stop: see sluice.h. */
void sluice_stop(sluice_t *gw, void (*cb)(sluice_t *, void *), void *arg) {
  if (gw->stopping) return;
  gw->stopping = true;
  gw->on_stopped = cb;
  gw->on_stopped_arg = arg;
  gw->closing_handles = 1; /* held until the end of this function */
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    if (srv->listening) close_handle(gw, (uv_handle_t *)&srv->listener);
    srv->listening = false;
    /* Close sessions (Lua sees onDisconnect while the VM is still open). */
    while (srv->sessions.n) {
      sl_session *victim = NULL;
      for (size_t b = 0; b < srv->sessions.nb && !victim; b++)
        if (srv->sessions.b[b]) victim = sl_container_of(srv->sessions.b[b], sl_session, hent);
      if (!victim) break;
      sl_session_close(victim, "server shutting down");
    }
  }
  sl_gateway_flush_dirty(gw);
  for (size_t i = 0; i < gw->nservers; i++) sl_server_close_conns(&gw->servers[i]);
  if (gw->prep.loop) close_handle(gw, (uv_handle_t *)&gw->prep);
  if (gw->check.loop) close_handle(gw, (uv_handle_t *)&gw->check);
  if (gw->sweep.loop) close_handle(gw, (uv_handle_t *)&gw->sweep);
  if (gw->ack_timer.loop) close_handle(gw, (uv_handle_t *)&gw->ack_timer);
  if (gw->sess_timer.loop) close_handle(gw, (uv_handle_t *)&gw->sess_timer);
  if (gw->watch.loop) close_handle(gw, (uv_handle_t *)&gw->watch);
  if (gw->watch_scripts.loop) close_handle(gw, (uv_handle_t *)&gw->watch_scripts);
  if (gw->reload_timer.loop) close_handle(gw, (uv_handle_t *)&gw->reload_timer);
  for (int i = 0; i < 3; i++)
    if (gw->sigs[i].loop) close_handle(gw, (uv_handle_t *)&gw->sigs[i]);
  if (gw->lua) {
    if (gw->cfg) gw->cfg->L = NULL;
    sl_lua_close(gw->lua);
    gw->lua = NULL;
  }
  if (--gw->closing_handles == 0 && cb) cb(gw, arg);
}

/* sluice_free: see sluice.h. */
void sluice_free(sluice_t *gw) {
  if (!gw) return;
  sl_gateway_flush_dirty(gw);
  gateway_destroy(gw);
}
