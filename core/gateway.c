/* gateway.c - the top of the core (gateway.h) and the embedding API of sluice.h that needs
 * no config loader: build from a loaded config, start, publish, hooks, stop, free. The
 * file-based constructors and sluice_reload live with the loader (lua/embed.c). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <signal.h>
#include "sl_internal.h"
#include "client.h"
#include "sio.h"
#include "router.h"
#include "tls_server.h"
#include "gateway.h"
#include "acks.h"
#include "eio.h"
#include "emitter_ingest.h"
#include "heap.h"
#include "hooks.h"
#include "lane_spill.h"
#include "lane.h"
#include "ledger.h"
#include "msg.h"
#include "net.h"
#include "drain.h"
#include "cluster.h"
#include "publish.h"
#include "topics.h"
#include "window.h"
#include "sl_util.h"

const char *sluice_strerror(int err) { return sl_strerror(err); }

uv_loop_t *sl_gateway_loop(sl_gateway *gw) { return gw->loop; }
const char *sl_server_name(const sl_server *srv) { return srv->cfg->name; }
int sl_server_port(const sl_server *srv) { return srv->port; }

/* sluice_server_name, sluice_server_port: see sluice.h. */
const char *sluice_server_name(const sluice_server *srv) { return srv->cfg->name; }
int sluice_server_port(const sluice_server *srv) { return srv->port; }

/* sluice_client_*: see sluice.h (the client is a Socket.IO socket of sio.c). */
const char *sluice_client_id(const sluice_client *c) { return sl_socket_id(c); }
const char *sluice_client_namespace(const sluice_client *c) { return sl_socket_ns(c); }
const char *sluice_client_principal(const sluice_client *c) { return sl_socket_principal(c); }
const char *sluice_client_remote(const sluice_client *c) { return sl_socket_remote(c); }
int sluice_client_emit(sluice_client *c, const char *json_array, size_t len) {
  return sl_socket_emit(c, json_array, len, NULL, 0);
}
int sluice_client_ack(sluice_client *c, int64_t ack_id, const char *json_array, size_t len) {
  return ack_id < 0 ? SL_EINVAL : sl_socket_ack(c, (uint64_t)ack_id, json_array, len, NULL, 0);
}
void sluice_client_disconnect(sluice_client *c) { sl_socket_disconnect(c); }

/* sl_gateway_flush_dirty: see gateway.h. Run from both prepare and check, so that work queued
 * by any callback is written before the loop sleeps. */
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
  sl_sio_free_dead(gw);
}

/* The end of a loop phase: clients' writes, then each cluster node's appends of this
 * iteration (one MULTI/EXEC per node, cluster.h). */
static void flush_all(sl_gateway *gw) {
  sl_gateway_flush_dirty(gw);
  for (size_t i = 0; i < gw->nservers; i++) sl_cluster_flush(gw->servers[i].cluster);
}
static void flush_cb_prep(uv_prepare_t *h) { flush_all(h->data); }
static void flush_cb_check(uv_check_t *h) { flush_all(h->data); }

/* A drain (drain.c) is over: stop as sluice_stop does. */
static void drained(sl_gateway *gw) { sluice_stop(gw, NULL, NULL); }

/* sl_gateway_new: see gateway.h. */
sl_gateway *sl_gateway_new(uv_loop_t *loop) {
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
  gw->on_drained = drained;
  return gw;
}

/* sl_gateway_build: see gateway.h. */
void sl_gateway_build(sl_gateway *gw, sl_config *cfg) {
  gw->cfg = cfg;
  gw->nservers = gw->cfg->nservers;
  gw->servers = sl_xcalloc(gw->nservers ? gw->nservers : 1, sizeof(sl_server));
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    srv->gw = gw;
    srv->cfg = &gw->cfg->servers[i];
    srv->sio_handler = &sl_client_sio_handler;
    sl_list_init(&srv->conns);
    sl_router_install(srv);
    srv->nns = srv->cfg->nns;
    srv->ns = sl_xcalloc(srv->nns ? srv->nns : 1, sizeof(sl_ns));
    for (size_t j = 0; j < srv->nns; j++) sl_ns_init(&srv->ns[j], srv, &srv->cfg->ns[j]);
    sl_ns_init(&srv->root, srv, NULL);
  }
  sl_hooks_resolve(gw);
}

/* sl_gateway_set_ops: see gateway.h. */
void sl_gateway_set_ops(sl_gateway *gw, const sl_gateway_ops *ops, void *ud) {
  gw->ops = *ops;
  gw->ops_ud = ud;
}

/* sl_gateway_config: see gateway.h. */
sl_config *sl_gateway_config(sl_gateway *gw) { return gw->cfg; }

/* sl_gateway_hook_times: see gateway.h. */
sl_lathist *sl_gateway_hook_times(sl_gateway *gw) { return gw->hook_times; }

static void gateway_destroy(sl_gateway *gw) {
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    sl_cluster_stop(srv); /* freed without a stop: its handles close on the next loop run */
    for (size_t j = 0; j < srv->nns; j++) sl_ns_free(&srv->ns[j]);
    sl_ns_free(&srv->root);
    free(srv->ns);
    /* every lane is gone, so nothing is held: a clean stop leaves no ledger behind */
    sl_ledger_close(srv->ledger, true);
    srv->ledger = NULL;
    sl_hash_free(&srv->sessions);
    sl_auth_free_table(srv);
    sl_tls_server_free(srv);
    sl_net_server_free(srv);
    sl_emitter_server_stop(srv); /* when freed without a stop */
  }
  free(gw->servers);
  sl_heap_free(&gw->acks);
  sl_heap_free(&gw->sheap);
  sl_heap_free(&gw->parked);
  sl_window_free(gw);
  sl_strpool_free(&gw->remotes);
  sl_hooks_free(gw);
  /* the embedder owns the configs (and the VM): released after everything pointing in */
  if (gw->ops.destroy) gw->ops.destroy(gw->ops_ud);
  free(gw);
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
  sl_sio_start(gw);
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    sl_spill_sweep_server(srv);
    /* A server configured for TLS that cannot serve it does not start: never plaintext. */
    if (sl_tls_server_start(srv, err, errlen) != 0) return SL_ECONFIG;
    int r = sl_server_listen(srv, sl_router_request);
    if (r) {
      snprintf(err, errlen, "server \"%s\": cannot listen on %s:%d: %s", srv->cfg->name,
               srv->cfg->host ? srv->cfg->host : "0.0.0.0", srv->cfg->port, uv_strerror(r));
      return SL_EIO;
    }
    sl_log_info("server \"%s\" listening on %s://%s:%d", srv->cfg->name,
                srv->tls ? "https" : "http", srv->cfg->host ? srv->cfg->host : "0.0.0.0",
                srv->port);
    const sl_api_config *a = &srv->cfg->api;
    if (!a->listen) continue;
    r = sl_server_listen_api(srv, sl_router_api_request);
    if (r) {
      if (a->path)
        snprintf(err, errlen, "server \"%s\": cannot listen for the API on unix:%s: %s",
                 srv->cfg->name, a->path, uv_strerror(r));
      else
        snprintf(err, errlen, "server \"%s\": cannot listen for the API on %s:%d: %s",
                 srv->cfg->name, a->host, a->port, uv_strerror(r));
      return SL_EIO;
    }
    /* not "listening on http://": that line counts the client ports */
    if (a->path)
      sl_log_info("server \"%s\" API, /metrics and status page on unix:%s", srv->cfg->name,
                  a->path);
    else
      sl_log_info("server \"%s\" API, /metrics and status page on http://%s:%d/", srv->cfg->name,
                  a->host, srv->api_port);
  }
  for (size_t i = 0; i < gw->nservers; i++) {
    if (sl_cluster_start(&gw->servers[i], err, errlen) != 0) return SL_ECONFIG;
    sl_emitter_server_sync(&gw->servers[i]); /* cluster.acceptEmitter: the ingest's handler */
  }
  sl_hooks_on_start(gw, false);
  sl_gateway_flush_dirty(gw);
  return 0;
}

/* sluice_server_name_at: see sluice.h. */
const char *sluice_server_name_at(const sluice_t *gw, size_t i) {
  return i < gw->nservers ? gw->servers[i].cfg->name : NULL;
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

/* sluice_drain: see sluice.h (the waiting is drain.c's; it calls drained() when done). */
void sluice_drain(sluice_t *gw) { sl_drain_start(gw); }

/* sluice_draining: see sluice.h. */
int sluice_draining(const sluice_t *gw) { return gw->draining ? 1 : 0; }

static void on_signal(uv_signal_t *h, int signum) {
  sl_gateway *gw = h->data;
  if (signum == SIGHUP) {
    char err[1024];
    sl_log_info("SIGHUP: reloading the configuration");
    sl_gateway_reload(gw, err, sizeof err);
    return;
  }
  if (signum == SIGTERM && !gw->draining) {
    sl_log_info("SIGTERM: draining (a second SIGTERM stops at once)");
    sluice_drain(gw);
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

/* A stop drops what the lanes still hold (queued, in flight, spilled): say how much, per
 * topic, so that no accepted message goes without a trace. */
static void log_held_at_stop(sl_gateway *gw) {
  for (size_t i = 0; i < gw->nservers; i++)
    for (size_t j = 0; j < gw->servers[i].nns; j++)
      for (size_t k = 0; k < gw->servers[i].ns[j].ntopics; k++) {
        sl_topic *t = &gw->servers[i].ns[j].topics[k];
        uint64_t held = 0;
        for (uint32_t n = 0; n < t->nsubs; n++) held += sl_lane_held(t->subs[n]);
        if (held)
          sl_log_warn("stopping: namespace %s topic %s: %llu undelivered message(s) held for "
                      "%u subscriber(s) are dropped",
                      t->ns->path, t->name, (unsigned long long)held, t->nsubs);
      }
}

/* sluice_stop: see sluice.h. */
void sluice_stop(sluice_t *gw, void (*cb)(sluice_t *, void *), void *arg) {
  if (gw->stopping) return;
  gw->stopping = true;
  gw->on_stopped = cb;
  gw->on_stopped_arg = arg;
  gw->closing_handles = 1; /* held until the end of this function */
  log_held_at_stop(gw);
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    sl_cluster_stop(srv);
    if (srv->listening) close_handle(gw, (uv_handle_t *)&srv->listener);
    srv->listening = false;
    sl_tls_server_stop(srv, close_handle);
    sl_emitter_server_stop(srv);
    if (srv->api_listening) {
      gw->closing_handles++;
      sl_server_close_api(srv, handle_closed, gw);
    }
    /* Close sessions (Lua sees onDisconnect while the VM is still open). */
    while (srv->sessions.n) {
      sl_session *victim = NULL;
      for (size_t b = 0; b < srv->sessions.nb && !victim; b++)
        if (srv->sessions.b[b]) victim = sl_container_of(srv->sessions.b[b], sl_session, hent);
      if (!victim) break;
      sl_session_close(victim, "server shutting down");
    }
  }
  /* Sessions kept for recovery go too (their hooks run while the VM is open). */
  sl_sio_stop(gw, close_handle);
  sl_gateway_flush_dirty(gw);
  for (size_t i = 0; i < gw->nservers; i++) sl_server_close_conns(&gw->servers[i]);
  if (gw->prep.loop) close_handle(gw, (uv_handle_t *)&gw->prep);
  if (gw->check.loop) close_handle(gw, (uv_handle_t *)&gw->check);
  sl_window_stop(gw, close_handle);
  if (gw->sweep.loop) close_handle(gw, (uv_handle_t *)&gw->sweep);
  if (gw->ack_timer.loop) close_handle(gw, (uv_handle_t *)&gw->ack_timer);
  if (gw->sess_timer.loop) close_handle(gw, (uv_handle_t *)&gw->sess_timer);
  if (gw->watch.loop) close_handle(gw, (uv_handle_t *)&gw->watch);
  if (gw->watch_scripts.loop) close_handle(gw, (uv_handle_t *)&gw->watch_scripts);
  if (gw->reload_timer.loop) close_handle(gw, (uv_handle_t *)&gw->reload_timer);
  if (gw->drain_timer.loop) close_handle(gw, (uv_handle_t *)&gw->drain_timer);
  if (gw->drain_check.loop) close_handle(gw, (uv_handle_t *)&gw->drain_check);
  for (int i = 0; i < 3; i++)
    if (gw->sigs[i].loop) close_handle(gw, (uv_handle_t *)&gw->sigs[i]);
  /* Sessions are closed (the hooks saw their disconnects): no script hook runs from here on,
   * and the embedder stops what it runs on the loop (a VM's timers). */
  sl_hooks_clear_script(gw);
  if (gw->ops.stop) gw->ops.stop(gw->ops_ud);
  if (--gw->closing_handles == 0 && cb) cb(gw, arg);
}

/* sluice_free: see sluice.h. */
void sluice_free(sluice_t *gw) {
  if (!gw) return;
  sl_gateway_flush_dirty(gw);
  gateway_destroy(gw);
}
