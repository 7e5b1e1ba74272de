/* reload.c - hot reload, the core's half: a new config swapped in while every connection,
 * subscription, queue, in-flight message and spill file stays.
 *
 * Triggers: SIGHUP, a change in the config file's directory (uv_fs_event, debounced), and
 * POST /api/reload; each calls sl_gateway_reload, which asks the embedder (ops.reload; for
 * config files lua/embed.c: a new config in a fresh Lua VM) and counts, times and logs the
 * outcome. The embedder puts a loaded config in place with sl_gateway_swap: the namespaces and
 * topics are reconciled by name (kept ones keep their subscribers and counters; removed
 * topics unsubscribe their subscribers; removed namespaces send their sockets a Socket.IO
 * DISCONNECT) and the server config pointers are swapped. Adding or removing servers, or
 * changing a server's host or port, needs a restart: such a swap is refused with that
 * message. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "sl_internal.h"
#include "cluster.h"
#include "client.h"
#include "emitter_ingest.h"
#include "tls_server.h"
#include "hooks.h"
#include "sio.h"
#include "topics.h"
#include "recovery.h"
#include "sl_util.h"

static sl_ns_config *find_ns_cfg(sl_server_config *sc, const char *path) {
  for (size_t i = 0; i < sc->nns; i++)
    if (strcmp(sc->ns[i].path, path) == 0) return &sc->ns[i];
  return NULL;
}

static bool has_topic(const sl_ns_config *nc, const char *name) {
  for (size_t i = 0; i < nc->ntopics; i++)
    if (strcmp(nc->topics[i], name) == 0) return true;
  return false;
}

/* Sockets of a namespace, collected first: removing them edits the hash. */
static size_t ns_sockets(sl_ns *ns, sl_socket ***out) {
  sl_socket **v = sl_xcalloc(ns->sockets.n + 1, sizeof *v);
  size_t n = 0;
  for (size_t b = 0; b < ns->sockets.nb; b++)
    for (sl_hent *e = ns->sockets.b[b]; e; e = e->hnext)
      v[n++] = sl_container_of(e, sl_socket, hent);
  *out = v;
  return n;
}

/* Move one namespace into its new slot with its new config, reconciling topics. */
static void ns_move(sl_ns *dst, sl_ns *old, sl_ns_config *nc) {
  sl_socket **socks;
  size_t nsocks = ns_sockets(old, &socks);
  /* Sessions parked for recovery keep lanes on the topics; when one goes, they all go
   * (a recovery that silently lost a topic would be a partial replay). */
  for (size_t t = 0; t < old->ntopics && old->parked.n; t++)
    if (!has_topic(nc, old->topics[t].name)) {
      sl_log_info("reload: namespace %s lost topic %s: %zu session(s) kept for recovery are "
                  "discarded",
                  old->path, old->topics[t].name, old->parked.n);
      sl_sio_ns_discard_parked(old);
    }
  /* Topics that disappear: unsubscribe their subscribers, free them (name NULL after), and
   * tell each former subscriber with a TOPIC_REMOVED error event. */
  for (size_t t = 0; t < old->ntopics; t++) {
    sl_topic *tp = &old->topics[t];
    if (has_topic(nc, tp->name)) continue;
    char *name = sl_xstrdup(tp->name);
    uint32_t n = tp->nsubs;
    sl_socket **subs = sl_xcalloc(n + 1, sizeof *subs);
    for (uint32_t s = 0; s < n; s++) subs[s] = tp->subs[s]->sock;
    sl_topic_teardown(tp);
    for (uint32_t s = 0; s < n; s++) sl_client_topic_removed(subs[s], name);
    if (n)
      sl_log_info("reload: topic %s removed from namespace %s (%u subscriber(s) told)", name,
                  old->path, n);
    free(subs);
    free(name);
  }
  *dst = *old;
  dst->cfg = nc;
  sl_topic *topics = sl_xcalloc(nc->ntopics ? nc->ntopics : 1, sizeof(sl_topic));
  for (size_t i = 0; i < nc->ntopics; i++) {
    sl_topic *ot = NULL;
    for (size_t t = 0; t < old->ntopics; t++)
      if (old->topics[t].name && strcmp(old->topics[t].name, nc->topics[i]) == 0)
        ot = &old->topics[t];
    if (ot) {
      topics[i] = *ot;
      topics[i].snap_slot = SLUICE_NOSLOT; /* the new hooks start again from snap_json */
      ot->name = NULL;                     /* moved */
      for (uint32_t s = 0; s < topics[i].nsubs; s++) topics[i].subs[s]->topic = &topics[i];
    } else {
      sl_ns tmp;
      sl_ns_config one = *nc;
      one.topics = &nc->topics[i];
      one.ntopics = 1;
      sl_ns_init(&tmp, dst->srv, &one);
      topics[i] = tmp.topics[0];
      sl_recovery_ns_free(&tmp);
      free(tmp.topics);
      free(tmp.path);
      free(tmp.json_path);
    }
    topics[i].ns = dst;
  }
  /* Parked sockets follow, and their lanes (out of the subscriber arrays) follow their
   * topics by id (every topic they use was kept: see above). */
  for (size_t b = 0; b < dst->parked.nb; b++)
    for (sl_hent *e = dst->parked.b[b]; e; e = e->hnext) {
      sl_socket *k = sl_parked_socket(e);
      k->ns = dst;
      for (sl_lane *l = k->lanes; l; l = l->next)
        for (size_t i = 0; i < nc->ntopics; i++)
          if (topics[i].tid == l->topic->tid) l->topic = &topics[i];
    }
  free(old->topics); /* every old topic was moved or torn down */
  dst->topics = topics;
  dst->ntopics = nc->ntopics;
  for (size_t k = 0; k < nsocks; k++) socks[k]->ns = dst;
  free(socks);
  /* recovery turned off lets the parked sessions go; the history follows its topics */
  if (!nc->recovery.enabled) sl_sio_ns_discard_parked(dst);
  sl_recovery_ns_sync(dst);
}

static sl_server_config *find_server_cfg(sl_config *nc, const char *name) {
  for (size_t j = 0; j < nc->nservers; j++)
    if (strcmp(nc->servers[j].name, name) == 0) return &nc->servers[j];
  return NULL;
}

static int check_compatible(sl_gateway *gw, sl_config *nc, char *err, size_t errlen) {
  if (nc->nservers != gw->nservers) {
    snprintf(err, errlen, "%s: adding or removing servers needs a restart", nc->path);
    return SL_ECONFIG;
  }
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server_config *o = gw->servers[i].cfg, *n = NULL;
    for (size_t j = 0; j < nc->nservers; j++)
      if (strcmp(nc->servers[j].name, o->name) == 0) n = &nc->servers[j];
    if (!n) {
      snprintf(err, errlen, "%s: server \"%s\" was removed: that needs a restart", nc->path,
               o->name);
      return SL_ECONFIG;
    }
    if (n->port != o->port || strcmp(n->host ? n->host : "", o->host ? o->host : "") != 0) {
      snprintf(err, errlen, "%s: server \"%s\": changing host or port needs a restart", nc->path,
               o->name);
      return SL_ECONFIG;
    }
    if (!n->tls != !o->tls) {
      snprintf(err, errlen, "%s: server \"%s\": changing transport (WS/WSS) needs a restart",
               nc->path, o->name);
      return SL_ECONFIG;
    }
    const sl_api_config *na = &n->api, *oa = &o->api;
    if (na->listen != oa->listen || na->port != oa->port ||
        strcmp(na->host ? na->host : "", oa->host ? oa->host : "") != 0 ||
        strcmp(na->path ? na->path : "", oa->path ? oa->path : "") != 0) {
      snprintf(err, errlen,
               "%s: server \"%s\": changing where the API listens (api) needs a restart", nc->path,
               o->name);
      return SL_ECONFIG;
    }
  }
  return 0;
}

/* sl_gateway_swap: see gateway.h. */
int sl_gateway_swap(sl_gateway *gw, sl_config *nc, char *err, size_t errlen) {
  int r = check_compatible(gw, nc, err, errlen);
  if (r != 0) return r;
  /* TLS contexts first: a certificate that does not load refuses the whole reload, before
   * anything changed (the running certificate stays). */
  sl_tls_ctx **tls = sl_xcalloc(gw->nservers ? gw->nservers : 1, sizeof *tls);
  for (size_t i = 0; i < gw->nservers && r == 0; i++)
    r = sl_tls_server_prepare(&gw->servers[i], find_server_cfg(nc, gw->servers[i].cfg->name),
                              &tls[i], err, errlen);
  if (r != 0) {
    for (size_t i = 0; i < gw->nservers; i++) sl_tls_ctx_unref(tls[i]);
    free(tls);
    return r;
  }
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    sl_server_config *sc = find_server_cfg(nc, srv->cfg->name);
    /* Namespaces that disappear: their clients get a Socket.IO DISCONNECT. */
    for (size_t j = 0; j < srv->nns; j++) {
      if (find_ns_cfg(sc, srv->ns[j].path)) continue;
      sl_socket **socks;
      size_t n = ns_sockets(&srv->ns[j], &socks);
      for (size_t k = 0; k < n; k++) sl_socket_disconnect(socks[k]);
      free(socks);
      sl_log_info("reload: namespace %s removed from server \"%s\" (%zu client(s) disconnected)",
                  srv->ns[j].path, sc->name, n);
    }
    sl_ns *nns = sl_xcalloc(sc->nns ? sc->nns : 1, sizeof(sl_ns));
    for (size_t j = 0; j < sc->nns; j++) {
      sl_ns *old = NULL;
      for (size_t k = 0; k < srv->nns; k++)
        if (srv->ns[k].path && strcmp(srv->ns[k].path, sc->ns[j].path) == 0) old = &srv->ns[k];
      if (old) {
        ns_move(&nns[j], old, &sc->ns[j]);
        old->path = NULL; /* moved */
      } else {
        sl_ns_init(&nns[j], srv, &sc->ns[j]);
      }
    }
    for (size_t k = 0; k < srv->nns; k++)
      if (srv->ns[k].path) sl_ns_free(&srv->ns[k]);
    free(srv->ns);
    srv->ns = nns;
    srv->nns = sc->nns;
    srv->cfg = sc;
    sl_tls_server_commit(srv, tls[i]);
    char cerr[256];
    if (sl_cluster_reconfigure(srv, cerr, sizeof cerr) != 0)
      sl_log_error("reload: server \"%s\": cluster not started: %s", sc->name, cerr);
    sl_emitter_server_sync(srv); /* a new cluster node, or acceptEmitter changed */
  }
  free(tls);
  gw->cfg = nc;
  /* The old generation's hooks ran during the reconciliation above; none may run past here
   * (the caller is about to free them). C hooks are re-resolved onto the new namespaces. */
  sl_hooks_clear_script(gw);
  return 0;
}

/* sl_gateway_reload: see gateway.h. */
int sl_gateway_reload(sl_gateway *gw, char *err, size_t errlen) {
  if (gw->stopping || !gw->cfg) {
    snprintf(err, errlen, "gateway is stopping");
    return SL_ESTATE;
  }
  if (!gw->ops.reload) {
    snprintf(err, errlen, "this gateway has no configuration loader to reload");
    return SL_ESTATE;
  }
  uint64_t t0 = uv_hrtime();
  int r = gw->ops.reload(gw->ops_ud, err, errlen);
  if (r != 0) {
    gw->reloads_failed++;
    sl_log_error("reload failed, the running configuration stays: %s", err);
    return r;
  }
  gw->reloads_ok++;
  double ms = (double)(uv_hrtime() - t0) / 1e6;
  gw->last_reload_ms = ms;
  sl_log_info("configuration reloaded from %s in %.2f ms", gw->cfg->path, ms);
  return 0;
}

/* ---- file watch ---------------------------------------------------------------------- */

static void debounce_cb(uv_timer_t *t) {
  sl_gateway *gw = t->data;
  char err[1024];
  sl_gateway_reload(gw, err, sizeof err);
}

static void fs_event_cb(uv_fs_event_t *h, const char *filename, int events, int status) {
  sl_gateway *gw = h->data;
  (void)events;
  if (status < 0 || gw->stopping) return;
  if (filename) {
    size_t n = strlen(filename);
    bool relevant = (n > 4 && strcmp(filename + n - 4, ".lua") == 0) ||
                    (n > 5 && (strcmp(filename + n - 5, ".json") == 0 ||
                               strcmp(filename + n - 5, ".yaml") == 0)) ||
                    (n > 4 && strcmp(filename + n - 4, ".yml") == 0);
    if (!relevant) return;
  }
  uv_timer_start(&gw->reload_timer, debounce_cb, 200, 0);
}

/* sluice_watch_config: reload when a config or script file in the config's directory (or
 * its scripts/ subdirectory) changes. Returns 0 or a libuv error. */
int sluice_watch_config(sluice_t *gw) {
  if (!gw->cfg || !gw->cfg->path) return SL_ESTATE;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", gw->cfg->path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = 0;
  else
    snprintf(dir, sizeof dir, ".");
  uv_timer_init(gw->loop, &gw->reload_timer);
  gw->reload_timer.data = gw;
  uv_unref((uv_handle_t *)&gw->reload_timer);
  int r = uv_fs_event_init(gw->loop, &gw->watch);
  if (!r) {
    gw->watch.data = gw;
    r = uv_fs_event_start(&gw->watch, fs_event_cb, dir, 0);
    uv_unref((uv_handle_t *)&gw->watch);
  }
  char sdir[4200];
  snprintf(sdir, sizeof sdir, "%s/scripts", dir);
  if (uv_fs_event_init(gw->loop, &gw->watch_scripts) == 0) {
    gw->watch_scripts.data = gw;
    if (uv_fs_event_start(&gw->watch_scripts, fs_event_cb, sdir, 0) != 0) {
      uv_close((uv_handle_t *)&gw->watch_scripts, NULL);
    } else {
      uv_unref((uv_handle_t *)&gw->watch_scripts);
    }
  }
  if (r)
    sl_log_warn("cannot watch %s for changes: %s (SIGHUP and POST /api/reload still work)", dir,
                uv_strerror(r));
  return r;
}
