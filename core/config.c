/* config.c - the configuration data model (config.h): freeing a config, the enum spellings
 * and the `sluice check` summary. The loaders live in lua/config.c; nothing here calls Lua
 * (hook refs are released through the config's unref callback). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sl_util.h"

const char *const sl_delivery_names[] = {"BEST_EFFORT", "AT_LEAST_ONCE", NULL};
const char *const sl_overflow_names[] = {"DROP_OLDEST",   "REJECT_NEW",    "COALESCE",
                                         "SNAPSHOT_ONLY", "SPILL_TO_DISK", NULL};

static void unref(const sl_config *cfg, int ref) {
  if (cfg->unref && ref != SL_NOREF && ref > 0) cfg->unref(cfg, ref);
}

static void free_strv(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

static bool str_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* sl_cluster_config_equal: see config.h. */
bool sl_cluster_config_equal(const sl_cluster_config *a, const sl_cluster_config *b) {
  if (!a || !b) return a == b;
  return str_eq(a->redis, b->redis) && str_eq(a->stream_key, b->stream_key) &&
         a->max_len == b->max_len && a->read_count == b->read_count && a->block_ms == b->block_ms &&
         a->buffer_max == b->buffer_max && a->accept_emitter == b->accept_emitter &&
         str_eq(a->emitter_key, b->emitter_key);
}

/* sl_cluster_config_free: see config.h. */
void sl_cluster_config_free(sl_cluster_config *c) {
  if (!c) return;
  free(c->redis);
  free(c->stream_key);
  free(c->emitter_key);
  free(c);
}

/* sl_config_free: see config.h. */
void sl_config_free(sl_config *cfg) {
  if (!cfg) return;
  for (size_t i = 0; i < cfg->nservers; i++) {
    sl_server_config *s = &cfg->servers[i];
    for (size_t j = 0; j < s->nns; j++) {
      sl_ns_config *ns = &s->ns[j];
      free(ns->path);
      free_strv(ns->topics, ns->ntopics);
      free(ns->coalesce_key_path);
      unref(cfg, ns->coalesce_key_ref);
      unref(cfg, ns->snapshot_ref);
      unref(cfg, ns->route_ref);
      unref(cfg, ns->authorize_ref);
      unref(cfg, ns->on_connect_ref);
      unref(cfg, ns->on_event_ref);
      unref(cfg, ns->on_client_publish_ref);
    }
    free(s->ns);
    free(s->name);
    free(s->host);
    free_strv(s->tokens, s->ntokens);
    free(s->spill_root);
    free(s->api_token);
    free(s->api.host);
    free(s->api.path);
    free_strv(s->api.hosts, s->api.nhosts);
    free_strv(s->cors.origins, s->cors.norigins);
    free(s->cors.methods);
    free(s->cors.headers);
    free(s->eio_path);
    sl_cluster_config_free(s->cluster);
    if (s->tls) {
      free(s->tls->cert_chain);
      free(s->tls->private_key);
      free(s->tls->password);
      free(s->tls);
    }
    unref(cfg, s->eio_on_message_ref);
    unref(cfg, s->eio_on_open_ref);
    unref(cfg, s->eio_on_close_ref);
    unref(cfg, s->on_start_ref);
    unref(cfg, s->allow_request_ref);
    unref(cfg, s->on_connect_ref);
    unref(cfg, s->on_disconnect_ref);
    unref(cfg, s->on_subscribe_ref);
    unref(cfg, s->on_unsubscribe_ref);
    unref(cfg, s->on_overflow_ref);
    unref(cfg, s->on_retry_exhausted_ref);
  }
  free(cfg->servers);
  free(cfg->path);
  free(cfg);
}

/* sl_overflow_name: see config.h. */
const char *sl_overflow_name(sl_overflow_action a) {
  return (unsigned)a < 5 ? sl_overflow_names[a] : "?";
}

/* sl_delivery_name: see config.h. */
const char *sl_delivery_name(sl_delivery_mode m) {
  return (unsigned)m < 2 ? sl_delivery_names[m] : "?";
}

/* A tiny growable string for the summary (kept local: vsnprintf straight into it). */
typedef struct sbuf {
  char *p;
  size_t len, cap;
} sbuf;

SL_PRINTF(2, 3) static void sb_printf(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (b->p && (size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    b->cap = (b->cap + (size_t)n + 1) * 2;
    b->p = sl_xrealloc(b->p, b->cap);
  }
}

static int hooks_set(const sl_ns_config *ns) {
  return (ns->coalesce_key_ref != SL_NOREF) + (ns->snapshot_ref != SL_NOREF) +
         (ns->route_ref != SL_NOREF) + (ns->authorize_ref != SL_NOREF) +
         (ns->on_connect_ref != SL_NOREF) + (ns->on_event_ref != SL_NOREF) +
         (ns->on_client_publish_ref != SL_NOREF);
}

/* sl_config_summary: see config.h. One block per server, one line per namespace. */
char *sl_config_summary(const sl_config *cfg) {
  sbuf b = {0};
  sb_printf(&b, "%s: %zu server%s\n", cfg->path, cfg->nservers, cfg->nservers == 1 ? "" : "s");
  for (size_t i = 0; i < cfg->nservers; i++) {
    const sl_server_config *s = &cfg->servers[i];
    sb_printf(&b, "server \"%s\" on %s:%d (%s, auth %s%s)\n", s->name, s->host, s->port,
              s->websocket_only ? "WEBSOCKET_ONLY" : "WEBSOCKET_OR_POLLING",
              s->auth_token ? "TOKEN" : "NONE", s->api_token ? ", API token set" : "");
    if (s->tls)
      sb_printf(&b, "  TLS (WSS/HTTPS) %s+, certificate %s, key %s\n",
                s->tls->min_version == 0x0303 ? "TLSv1.2" : "TLSv1.3", s->tls->cert_chain,
                s->tls->private_key);
    if (s->api.listen && s->api.path)
      sb_printf(&b, "  API on unix:%s\n", s->api.path);
    else if (s->api.listen)
      sb_printf(&b, "  API on %s:%d\n", s->api.host, s->api.port);
    if (s->cors.set)
      sb_printf(&b, "  CORS: %zu origin%s%s\n", s->cors.norigins, s->cors.norigins == 1 ? "" : "s",
                s->cors.credentials ? ", credentials" : "");
    if (s->eio_path) sb_printf(&b, "  engineIo endpoint %s\n", s->eio_path);
    if (s->cluster) {
      /* the URL without its credentials */
      const char *u = s->cluster->redis, *at = strrchr(u, '@');
      sb_printf(&b, "  cluster: redis://%s, stream \"%s\" (maxLen %lld)%s\n",
                at ? at + 1 : u + (strncmp(u, "redis://", 8) == 0 ? 8 : 0), s->cluster->stream_key,
                (long long)s->cluster->max_len,
                s->cluster->accept_emitter ? ", emitter ingest on" : "");
    }
    if (s->on_start_ref != SL_NOREF) sb_printf(&b, "  onStart hook\n");
    if (s->allow_request_ref != SL_NOREF) sb_printf(&b, "  allowRequest hook\n");
    sb_printf(&b,
              "  limits: %lld connections (%lld per address%s), %lld sessions, %lld handshakes/s "
              "per address, inbound buffers %lld bytes, partial messages %lld ms\n",
              (long long)s->max_connections, (long long)s->max_conns_per_addr,
              s->limit_loopback ? "" : ", loopback exempt", (long long)s->max_sessions,
              (long long)s->max_handshake_rate, (long long)s->max_inbound_bytes,
              (long long)s->partial_timeout_ms);
    for (size_t j = 0; j < s->nns; j++) {
      const sl_ns_config *ns = &s->ns[j];
      sb_printf(&b, "  namespace %s: %s, %s, queue %lld msgs / %lld bytes", ns->path,
                sl_delivery_name(ns->delivery), sl_overflow_name(ns->overflow),
                (long long)ns->max_queued_msgs, (long long)ns->max_queued_bytes);
      if (ns->delivery == SL_AT_LEAST_ONCE)
        sb_printf(&b, ", ack %lldms x%lld retries, in-flight %lld", (long long)ns->ack_timeout_ms,
                  (long long)ns->max_retries, (long long)ns->max_in_flight);
      if (ns->coalesce) sb_printf(&b, ", coalesce");
      if (ns->coalesce_key_path) sb_printf(&b, " by \"%s\"", ns->coalesce_key_path);
      sb_printf(&b, ", client publish %s", ns->client_publish ? "on" : "off");
      if (ns->recovery.enabled)
        sb_printf(&b, ", recovery %lldms / %lld msgs / %lld bytes%s",
                  (long long)ns->recovery.max_disconnection_ms,
                  (long long)ns->recovery.history_size, (long long)ns->recovery.history_bytes,
                  ns->recovery.reauthorize ? "" : " (no reauthorize)");
      int h = hooks_set(ns);
      if (h) sb_printf(&b, ", %d hook%s", h, h == 1 ? "" : "s");
      sb_printf(&b, "\n    topics:");
      for (size_t k = 0; k < ns->ntopics; k++) sb_printf(&b, " %s", ns->topics[k]);
      sb_printf(&b, "\n");
    }
  }
  return b.p;
}
