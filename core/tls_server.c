/* tls_server.c - a WSS server's TLS context: start, reload, file watch, metrics (see
 * tls_server.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tls_server.h"

#define SL_TLS_DEBOUNCE_MS 250

/* Watches on the directories of the certificate and key files (a rotation usually renames
 * a new file into place, which a watch on the old file would miss). */
struct sl_tls_watch {
  sl_server *srv;
  uv_fs_event_t ev[2];
  uv_timer_t debounce;
  char *base[2]; /* file names to react to, in ev[0]'s and ev[1]'s directories */
  bool on[2];
};

static void watch_debounce_cb(uv_timer_t *t) {
  struct sl_tls_watch *w = t->data;
  if (w->srv->gw->stopping) return;
  sl_log_info("server \"%s\": TLS certificate or key file changed", w->srv->cfg->name);
  sl_tls_server_reload(w->srv);
}

static void watch_event_cb(uv_fs_event_t *h, const char *filename, int events, int status) {
  struct sl_tls_watch *w = h->data;
  (void)events;
  if (status < 0 || w->srv->gw->stopping) return;
  if (filename) {
    bool ours = false;
    for (int i = 0; i < 2; i++)
      if (w->base[i] && strcmp(filename, w->base[i]) == 0) ours = true;
    if (!ours) return;
  }
  uv_timer_start(&w->debounce, watch_debounce_cb, SL_TLS_DEBOUNCE_MS, 0);
}

static char *dir_of(const char *path, char **base) {
  const char *slash = strrchr(path, '/');
  *base = sl_xstrdup(slash ? slash + 1 : path);
  if (!slash) return sl_xstrdup(".");
  if (slash == path) return sl_xstrdup("/");
  return sl_xstrndup(path, (size_t)(slash - path));
}

/* (Re)point the watches at the files of srv->cfg->tls. A watch that cannot start is logged:
 * SIGHUP and POST /api/reload still reload the certificate. */
static void watch_files(sl_server *srv) {
  struct sl_tls_watch *w = srv->tls_watch;
  if (!w) {
    w = srv->tls_watch = sl_xcalloc(1, sizeof *w);
    w->srv = srv;
    uv_timer_init(srv->gw->loop, &w->debounce);
    w->debounce.data = w;
    uv_unref((uv_handle_t *)&w->debounce);
    for (int i = 0; i < 2; i++) {
      uv_fs_event_init(srv->gw->loop, &w->ev[i]);
      w->ev[i].data = w;
    }
  }
  const char *paths[2] = {srv->cfg->tls->cert_chain, srv->cfg->tls->private_key};
  char *dirs[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++) {
    if (w->on[i]) uv_fs_event_stop(&w->ev[i]);
    w->on[i] = false;
    free(w->base[i]);
    dirs[i] = dir_of(paths[i], &w->base[i]);
  }
  for (int i = 0; i < 2; i++) {
    if (i == 1 && strcmp(dirs[0], dirs[1]) == 0) continue; /* ev[0] sees both names */
    int r = uv_fs_event_start(&w->ev[i], watch_event_cb, dirs[i], 0);
    if (r) {
      sl_log_warn("server \"%s\": cannot watch %s for certificate changes: %s", srv->cfg->name,
                  dirs[i], uv_strerror(r));
      continue;
    }
    w->on[i] = true;
    uv_unref((uv_handle_t *)&w->ev[i]);
  }
  free(dirs[0]);
  free(dirs[1]);
}

static void log_ctx(sl_server *srv, sl_tls_ctx *ctx, const char *what) {
  time_t na = (time_t)sl_tls_ctx_not_after(ctx);
  struct tm tm;
  char when[64] = "?";
  if (gmtime_r(&na, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  sl_log_info("server \"%s\": TLS certificate %s (serial %s, expires %s)", srv->cfg->name, what,
              sl_tls_ctx_serial(ctx), when);
}

/* sl_tls_server_start: see tls_server.h. */
int sl_tls_server_start(sl_server *srv, char *err, size_t errlen) {
  if (!srv->cfg->tls) return 0;
  char e[900];
  sl_tls_ctx *ctx = sl_tls_ctx_new(srv->cfg->tls, e, sizeof e);
  if (!ctx) {
    snprintf(err, errlen, "server \"%s\": %s (TLS cannot be served; not starting)", srv->cfg->name,
             e);
    return SL_ECONFIG;
  }
  srv->tls = ctx;
  log_ctx(srv, ctx, "loaded");
  watch_files(srv);
  return 0;
}

/* sl_tls_server_prepare: see tls_server.h. */
int sl_tls_server_prepare(sl_server *srv, const sl_server_config *nc, sl_tls_ctx **out, char *err,
                          size_t errlen) {
  *out = NULL;
  if (!nc->tls) return 0;
  char e[900];
  sl_tls_ctx *ctx = sl_tls_ctx_new(nc->tls, e, sizeof e);
  if (!ctx) {
    srv->tls_reloads_failed++;
    snprintf(err, errlen, "server \"%s\": %s (the current certificate stays)", nc->name, e);
    return SL_ECONFIG;
  }
  *out = ctx;
  return 0;
}

/* sl_tls_server_commit: see tls_server.h. */
void sl_tls_server_commit(sl_server *srv, sl_tls_ctx *ctx) {
  if (!ctx) return;
  sl_tls_ctx_unref(srv->tls);
  srv->tls = ctx;
  srv->tls_reloads_ok++;
  log_ctx(srv, ctx, "reloaded");
  if (!srv->gw->stopping) watch_files(srv);
}

/* sl_tls_server_reload: see tls_server.h. */
int sl_tls_server_reload(sl_server *srv) {
  if (!srv->cfg->tls) return 0;
  char e[900];
  sl_tls_ctx *ctx = sl_tls_ctx_new(srv->cfg->tls, e, sizeof e);
  if (!ctx) {
    srv->tls_reloads_failed++;
    sl_log_error("server \"%s\": TLS reload failed, the current certificate stays: %s",
                 srv->cfg->name, e);
    return SL_ECONFIG;
  }
  sl_tls_ctx_unref(srv->tls);
  srv->tls = ctx;
  srv->tls_reloads_ok++;
  log_ctx(srv, ctx, "reloaded");
  return 0;
}

/* sl_tls_server_stop: see tls_server.h. */
void sl_tls_server_stop(sl_server *srv, void (*close_handle)(sl_gateway *, uv_handle_t *)) {
  struct sl_tls_watch *w = srv->tls_watch;
  if (!w) return;
  close_handle(srv->gw, (uv_handle_t *)&w->debounce);
  for (int i = 0; i < 2; i++) close_handle(srv->gw, (uv_handle_t *)&w->ev[i]);
}

/* sl_tls_server_free: see tls_server.h. */
void sl_tls_server_free(sl_server *srv) {
  sl_tls_ctx_unref(srv->tls);
  srv->tls = NULL;
  if (srv->tls_watch) {
    free(srv->tls_watch->base[0]);
    free(srv->tls_watch->base[1]);
    free(srv->tls_watch);
    srv->tls_watch = NULL;
  }
}

static void server_label(sl_sbuf *b, const char *name) {
  sl_sbuf_puts(b, "server=\"");
  for (const char *s = name; *s; s++) {
    if (*s == '\\' || *s == '"') sl_sbuf_append(b, "\\", 1);
    sl_sbuf_append(b, s, 1);
  }
  sl_sbuf_puts(b, "\"");
}

/* sl_tls_server_metrics: see tls_server.h. */
void sl_tls_server_metrics(sl_gateway *gw, sl_sbuf *b) {
  bool any = false;
  for (size_t i = 0; i < gw->nservers; i++) any |= gw->servers[i].cfg->tls != NULL;
  if (!any) return;
  sl_sbuf_puts(b, "# HELP sluice_tls_reloads_total TLS certificate reloads by result\n"
                  "# TYPE sluice_tls_reloads_total counter\n");
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    if (!srv->cfg->tls) continue;
    static const char *const res[2] = {"ok", "error"};
    uint64_t v[2] = {srv->tls_reloads_ok, srv->tls_reloads_failed};
    for (int k = 0; k < 2; k++) {
      sl_sbuf_puts(b, "sluice_tls_reloads_total{");
      server_label(b, srv->cfg->name);
      sl_sbuf_printf(b, ",result=\"%s\"} %llu\n", res[k], (unsigned long long)v[k]);
    }
  }
  sl_sbuf_puts(b, "# HELP sluice_tls_cert_expiry_timestamp_seconds notAfter of the certificate "
                  "new connections get\n# TYPE sluice_tls_cert_expiry_timestamp_seconds gauge\n");
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    if (!srv->tls) continue;
    sl_sbuf_puts(b, "sluice_tls_cert_expiry_timestamp_seconds{");
    server_label(b, srv->cfg->name);
    sl_sbuf_printf(b, "} %lld\n", (long long)sl_tls_ctx_not_after(srv->tls));
  }
  sl_sbuf_puts(b, "# HELP sluice_tls_handshake_errors_total TLS handshakes that failed\n"
                  "# TYPE sluice_tls_handshake_errors_total counter\n");
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    if (!srv->cfg->tls) continue;
    sl_sbuf_puts(b, "sluice_tls_handshake_errors_total{");
    server_label(b, srv->cfg->name);
    sl_sbuf_printf(b, "} %llu\n", (unsigned long long)srv->tls_handshake_errors);
  }
  sl_sbuf_puts(b, "# HELP sluice_tls_connections_total TLS handshakes completed, by the record "
                  "layer that then ran the connection (sluice: handed off to tls_record.c, "
                  "openssl: kept on OpenSSL, e.g. TLSv1.2)\n"
                  "# TYPE sluice_tls_connections_total counter\n");
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    if (!srv->cfg->tls) continue;
    static const char *const layer[2] = {"sluice", "openssl"};
    uint64_t v[2] = {srv->tls_conns_offloaded, srv->tls_conns_openssl};
    for (int k = 0; k < 2; k++) {
      sl_sbuf_puts(b, "sluice_tls_connections_total{");
      server_label(b, srv->cfg->name);
      sl_sbuf_printf(b, ",record_layer=\"%s\"} %llu\n", layer[k], (unsigned long long)v[k]);
    }
  }
  sl_sbuf_puts(b, "# HELP sluice_tls_record_errors_total connections closed for a TLS error after "
                  "the handshake (bad record MAC, unexpected record, alert)\n"
                  "# TYPE sluice_tls_record_errors_total counter\n");
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    if (!srv->cfg->tls) continue;
    sl_sbuf_puts(b, "sluice_tls_record_errors_total{");
    server_label(b, srv->cfg->name);
    sl_sbuf_printf(b, "} %llu\n", (unsigned long long)srv->tls_record_errors);
  }
}
