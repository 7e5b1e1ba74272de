/* api.c - the HTTP API: POST /api/publish, POST /api/reload, GET /metrics (Prometheus text
 * format, StreamFenceJs metric names), GET /api/stats, GET / (a status page), and the probes
 * GET /healthz and GET /readyz. Served on the API's own listener (server key api) or, without
 * it, on the client port. Anything else is a 404 with a JSON error body, never a hang. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include "sl_internal.h"
#include "cluster.h"
#include "tls_server.h"
#include "sl_jscan.h"
#include "spill.h"
#include "api.h"
#include "drain.h"
#include "emitter_ingest.h"
#include "hooks.h"
#include "lane.h"
#include "procstat.h"
#include "publish.h"
#include "status.h"
#include "recovery.h"
#include "topics.h"

static bool path_is(const char *url, const char *path) {
  size_t n = strlen(path);
  return strncmp(url, path, n) == 0 && (url[n] == 0 || url[n] == '?');
}

/* The limit=N of a query string (1..10000), or def. */
static size_t query_limit(const char *url, size_t def) {
  const char *q = strchr(url, '?');
  const char *p = q ? strstr(q, "limit=") : NULL;
  if (!p || (p[-1] != '?' && p[-1] != '&')) return def;
  long v = strtol(p + 6, NULL, 10);
  return v >= 1 && v <= 10000 ? (size_t)v : def;
}

/* ---- the API's rules ------------------------------------------------------------------
 *
 * Who may call the API. With apiToken: "Authorization: Bearer <apiToken>", compared in
 * constant time, and nothing else. Without it "local" must mean something, so:
 *   - a request carrying Forwarded / X-Forwarded-For / X-Real-IP is refused: a proxy is in
 *     front, and behind a same-host proxy every remote caller is a loopback peer;
 *   - the peer must be loopback (or the API's Unix socket);
 *   - a request with an Origin header is refused: browsers send it on cross-site requests
 *     (and on every POST), scripts and Prometheus do not;
 *   - Host must be an IP literal, localhost, or a name of api.hosts (DNS rebinding: a page
 *     of evil.example resolved to 127.0.0.1 still says Host: evil.example);
 *   - a POST must say Content-Type: application/json (a form or text/plain POST is what a
 *     page can send without a preflight).
 * Every refusal is a JSON error naming its rule, counted in sluice_api_refused_total. */

static const char *const refusal_names[SL_API_REFUSED_COUNT] = {
    "token", "forwarded", "peer", "origin", "host", "content_type",
};

static bool refuse(sl_conn *c, int reason, int status, const char *code, const char *message) {
  c->srv->gw->api_refused[reason]++;
  sl_http_json_error(c, status, code, message);
  return false;
}

/* Constant time in the length of the configured token: every byte is looked at whatever
 * the first difference is, and a length mismatch is folded into the same result. */
static bool token_equal(const char *given, size_t glen, const char *tok) {
  size_t tlen = strlen(tok);
  unsigned char diff = (unsigned char)(glen != tlen);
  for (size_t i = 0; i < tlen; i++) diff |= (unsigned char)(tok[i] ^ (i < glen ? given[i] : 0));
  return diff == 0;
}

static bool ci_equal(const char *a, size_t alen, const char *b) {
  return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

/* host_allowed: an IP literal (v4, or v6 in brackets), localhost, or an api.hosts entry,
 * each with or without :port. */
static bool host_allowed(const sl_server_config *cfg, const char *h) {
  size_t len = strlen(h);
  for (size_t i = 0; i < cfg->api.nhosts; i++)
    if (ci_equal(h, len, cfg->api.hosts[i])) return true;
  char name[256];
  const char *end;
  if (h[0] == '[') {
    end = strchr(h, ']');
    if (!end || (end[1] && end[1] != ':')) return false;
    if ((size_t)(end - h - 1) >= sizeof name) return false;
    memcpy(name, h + 1, (size_t)(end - h - 1));
    name[end - h - 1] = 0;
    unsigned char a6[16];
    return inet_pton(AF_INET6, name, a6) == 1;
  }
  end = strchr(h, ':');
  size_t nl = end ? (size_t)(end - h) : len;
  if (end && strchr(end + 1, ':')) return false;
  if (nl == 0 || nl >= sizeof name) return false;
  memcpy(name, h, nl);
  name[nl] = 0;
  for (const char *p = end ? end + 1 : ""; *p; p++)
    if (*p < '0' || *p > '9') return false;
  unsigned char a4[4];
  if (inet_pton(AF_INET, name, a4) == 1 || strcasecmp(name, "localhost") == 0) return true;
  for (size_t i = 0; i < cfg->api.nhosts; i++)
    if (strcasecmp(name, cfg->api.hosts[i]) == 0) return true;
  return false;
}

static bool is_json_type(const char *ct) {
  if (!ct || strncasecmp(ct, "application/json", 16) != 0) return false;
  return ct[16] == 0 || ct[16] == ';' || ct[16] == ' ' || ct[16] == '\t';
}

/* api_allowed: apply the rules above; false when c was answered with a refusal. */
static bool api_allowed(sl_conn *c) {
  sl_req *r = c->req;
  const sl_server_config *cfg = c->srv->cfg;
  const char *tok = cfg->api_token;
  if (tok && *tok) {
    const char *a = r->authorization;
    if (a && strncasecmp(a, "bearer ", 7) == 0) {
      a += 7;
      while (*a == ' ') a++;
      size_t al = strlen(a);
      while (al && (a[al - 1] == ' ' || a[al - 1] == '\t')) al--;
      if (token_equal(a, al, tok)) return true;
    }
    return refuse(c, SL_API_REFUSED_TOKEN, 401, "UNAUTHORIZED",
                  "missing or invalid API token (Authorization: Bearer <apiToken>)");
  }
  if (r->proxied) {
    const char *h = r->proxied & SL_PROXY_FORWARDED         ? "Forwarded"
                    : r->proxied & SL_PROXY_X_FORWARDED_FOR ? "X-Forwarded-For"
                                                            : "X-Real-IP";
    char msg[256];
    snprintf(msg, sizeof msg,
             "refused: the request carries %s, so a proxy is in front and the peer being local "
             "means nothing; set apiToken to call the API through a proxy",
             h);
    return refuse(c, SL_API_REFUSED_FORWARDED, 403, "PROXIED", msg);
  }
  char peer[64];
  sl_conn_remote(c, peer, sizeof peer);
  if (strcmp(peer, "unix") != 0 && !sl_addr_is_loopback(peer))
    return refuse(c, SL_API_REFUSED_PEER, 401, "UNAUTHORIZED",
                  "the API answers loopback peers only unless apiToken is set");
  if (r->origin)
    return refuse(c, SL_API_REFUSED_ORIGIN, 403, "ORIGIN_REFUSED",
                  "refused: the request has an Origin header (a browser page); without apiToken "
                  "the API answers no browser");
  if (!r->host || !host_allowed(cfg, r->host))
    return refuse(c, SL_API_REFUSED_HOST, 403, "HOST_REFUSED",
                  r->host ? "refused: Host must be an IP literal, localhost or a name listed in "
                            "api.hosts (DNS rebinding protection)"
                          : "refused: a Host header is required");
  if (c->parser.method == HTTP_POST && !is_json_type(r->content_type))
    return refuse(c, SL_API_REFUSED_CONTENT_TYPE, 415, "UNSUPPORTED_MEDIA_TYPE",
                  "refused: a POST to the API must have Content-Type: application/json");
  return true;
}

/* sluice_api_refused_total{reason} */
static void refusal_metrics(sl_gateway *gw, sl_sbuf *b) {
  sl_sbuf_puts(b,
               "# HELP sluice_api_refused_total HTTP API requests refused by its rules, by rule\n"
               "# TYPE sluice_api_refused_total counter\n");
  for (int i = 0; i < SL_API_REFUSED_COUNT; i++)
    sl_sbuf_printf(b, "sluice_api_refused_total{reason=\"%s\"} %llu\n", refusal_names[i],
                   (unsigned long long)gw->api_refused[i]);
  sl_sbuf_puts(b, "# HELP sluice_eio_refused_total Engine.IO requests refused: by cors.origins "
                  "(origin) or by the allowRequest hook (allow_request)\n"
                  "# TYPE sluice_eio_refused_total counter\n");
  sl_sbuf_printf(b,
                 "sluice_eio_refused_total{reason=\"origin\"} %llu\n"
                 "sluice_eio_refused_total{reason=\"allow_request\"} %llu\n",
                 (unsigned long long)gw->eio_refused_origin,
                 (unsigned long long)gw->eio_refused_allow);
}

/* ---- POST /api/publish ---------------------------------------------------------------- */

static int check_item(sl_conn *c, const cJSON *it, int idx, char *err, size_t errlen, int *status,
                      const char **code) {
  char where[32] = "";
  if (idx >= 0) snprintf(where, sizeof where, "[%d] ", idx);
  *status = 400;
  *code = "INVALID_FIELD";
  if (!cJSON_IsObject(it)) {
    snprintf(err, errlen, "%smessage must be an object", where);
    return -1;
  }
  const cJSON *ns = cJSON_GetObjectItemCaseSensitive(it, "namespace");
  const cJSON *topic = cJSON_GetObjectItemCaseSensitive(it, "topic");
  const cJSON *to = cJSON_GetObjectItemCaseSensitive(it, "to");
  if (!cJSON_IsString(ns) || !ns->valuestring[0]) {
    snprintf(err, errlen, "%s\"namespace\" must be a non-empty string", where);
    return -1;
  }
  if (!cJSON_IsString(topic) || !topic->valuestring[0]) {
    snprintf(err, errlen, "%s\"topic\" must be a non-empty string", where);
    return -1;
  }
  if (to && !cJSON_IsString(to) && !cJSON_IsNull(to)) {
    snprintf(err, errlen, "%s\"to\" must be a string", where);
    return -1;
  }
  if (!cJSON_GetObjectItemCaseSensitive(it, "payload")) {
    snprintf(err, errlen, "%s\"payload\" is required", where);
    return -1;
  }
  sl_ns *n = sl_server_find_ns(c->srv, ns->valuestring, strlen(ns->valuestring));
  if (!n || n->implicit_root) {
    *status = 404;
    *code = "UNKNOWN_NAMESPACE";
    snprintf(err, errlen, "%sunknown namespace %s", where, ns->valuestring);
    return -1;
  }
  if (!sl_topic_find(n, topic->valuestring, strlen(topic->valuestring))) {
    *status = 404;
    *code = "UNKNOWN_TOPIC";
    snprintf(err, errlen, "%sunknown topic %s in namespace %s", where, topic->valuestring,
             ns->valuestring);
    return -1;
  }
  return 0;
}

static void api_publish(sl_conn *c) {
  sl_req *r = c->req;
  if (c->parser.method != HTTP_POST) {
    sl_http_json_error(c, 405, "METHOD_NOT_ALLOWED", "use POST");
    return;
  }
  if (r->too_big) {
    c->close_after_write = 1;
    sl_http_json_error(c, 413, "PAYLOAD_TOO_LARGE", "request body exceeds maxPayload");
    return;
  }
  /* the scanner first: cJSON alone would accept a leading zero ("01", RFC 8259 forbids
   * it), and re-printing the tree would then publish it as another number */
  cJSON *root = sl_js_valid(r->body.data ? r->body.data : "", r->body.len)
                    ? cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len)
                    : NULL;
  if (!root) {
    sl_http_json_error(c, 400, "INVALID_JSON", "request body is not valid JSON");
    return;
  }
  char err[512];
  int status;
  const char *code;
  bool arr = cJSON_IsArray(root);
  int n = arr ? cJSON_GetArraySize(root) : 1;
  if (arr && n == 0) {
    cJSON_Delete(root);
    sl_http_json_error(c, 400, "INVALID_FIELD", "empty array");
    return;
  }
  /* walk the array (cJSON_GetArrayItem(root, i) walks it from the start every time: a
   * batch of 1000 cost half a million steps) */
  const cJSON *it = arr ? root->child : root;
  for (int i = 0; i < n; i++, it = arr ? it->next : root) {
    if (check_item(c, it, arr ? i : -1, err, sizeof err, &status, &code) != 0) {
      cJSON_Delete(root);
      sl_http_json_error(c, status, code, err);
      return;
    }
  }
  sl_sbuf out = {0};
  sl_sbuf_puts(&out, "{\"messageIds\":[");
  it = arr ? root->child : root;
  for (int i = 0; i < n; i++, it = arr ? it->next : root) {
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(it, "to");
    char *payload = sl_json_print(cJSON_GetObjectItemCaseSensitive(it, "payload"));
    sl_publish_opts o = {.server = c->srv->cfg->name,
                         .source = SL_SRC_API,
                         .trusted_json = true,
                         .to = cJSON_IsString(to) ? to->valuestring : NULL};
    char id[SL_MSGID_MAX];
    int rc = payload ? sl_publish(c->srv->gw,
                                  cJSON_GetObjectItemCaseSensitive(it, "namespace")->valuestring,
                                  cJSON_GetObjectItemCaseSensitive(it, "topic")->valuestring,
                                  payload, strlen(payload), &o, id)
                     : SL_ENOMEM;
    free(payload);
    if (rc == SL_EFULL) {
      /* the cluster bus is unreachable and its buffer full (cluster.h) */
      sl_sbuf_free(&out);
      cJSON_Delete(root);
      snprintf(err, sizeof err,
               "[%d] the cluster's Redis is unreachable and its buffer is full; earlier items "
               "were published",
               i);
      sl_http_json_error(c, 503, "CLUSTER_UNAVAILABLE", err);
      return;
    }
    if (rc != 0) {
      /* Earlier items of the batch were published; say which. */
      sl_sbuf_free(&out);
      cJSON_Delete(root);
      snprintf(err, sizeof err, "[%d] %s", i, sl_strerror(rc));
      sl_http_json_error(c,
                         rc == SL_ETOOBIG      ? 413
                         : rc == SL_EFORBIDDEN ? 403
                                               : 400,
                         rc == SL_ETOOBIG      ? "PAYLOAD_TOO_LARGE"
                         : rc == SL_EFORBIDDEN ? "FORBIDDEN"
                                               : "PUBLISH_FAILED",
                         err);
      return;
    }
    sl_sbuf_printf(&out, "%s\"%s\"", i ? "," : "", id);
  }
  sl_sbuf_puts(&out, "]}");
  cJSON_Delete(root);
  sl_http_respond(c, 200, "application/json", out.data, out.len, NULL);
  sl_sbuf_free(&out);
}

/* ---- GET /metrics -------------------------------------------------------------------- */

static void label_escape(sl_sbuf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\')
      sl_sbuf_puts(b, "\\\\");
    else if (*s == '"')
      sl_sbuf_puts(b, "\\\"");
    else if (*s == '\n')
      sl_sbuf_puts(b, "\\n");
    else
      sl_sbuf_append(b, s, 1);
  }
}

static void metric_head(sl_sbuf *b, const char *name, const char *type, const char *help) {
  sl_sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void ns_label(sl_sbuf *b, const char *name, const sl_ns *ns) {
  sl_sbuf_printf(b, "%s{namespace=\"", name);
  label_escape(b, ns->path);
  sl_sbuf_puts(b, "\"");
}

static void topic_label(sl_sbuf *b, const char *name, const sl_topic *t) {
  ns_label(b, name, t->ns);
  sl_sbuf_puts(b, ",topic=\"");
  label_escape(b, t->name);
  sl_sbuf_puts(b, "\"");
}

typedef struct {
  const char *name, *help;
  int idx;
} topic_metric;

static const topic_metric topic_metrics[] = {
    {"streamfence_messages_published_total", "Total outbound messages published", SL_M_PUBLISHED},
    {"streamfence_messages_published_bytes_total", "Total outbound message bytes published",
     SL_M_PUBLISHED_BYTES},
    {"streamfence_messages_received_total", "Total inbound messages received", SL_M_RECEIVED},
    {"streamfence_messages_received_bytes_total", "Total inbound message bytes received",
     SL_M_RECEIVED_BYTES},
    {"streamfence_retries_total", "Total retry attempts", SL_M_RETRIES},
    {"streamfence_retries_exhausted_total", "Total exhausted retry outcomes",
     SL_M_RETRIES_EXHAUSTED},
    {"streamfence_messages_dropped_total", "Total dropped messages", SL_M_DROPPED},
    {"streamfence_messages_coalesced_total", "Total coalesced messages", SL_M_COALESCED},
    {"streamfence_messages_spilled_total", "Total messages spilled to disk", SL_M_SPILLED},
};

static uint64_t g_subscribers(const sl_topic *t) { return t->nsubs; }
static uint64_t g_queued(const sl_topic *t) {
  uint64_t n = 0;
  for (uint32_t s = 0; s < t->nsubs; s++) n += t->subs[s]->qn;
  return n;
}
static uint64_t g_queued_bytes(const sl_topic *t) {
  uint64_t n = 0;
  for (uint32_t s = 0; s < t->nsubs; s++) n += t->subs[s]->qbytes;
  return n;
}
static uint64_t g_in_flight(const sl_topic *t) {
  uint64_t n = 0;
  for (uint32_t s = 0; s < t->nsubs; s++) n += t->subs[s]->ninfl;
  return n;
}
static uint64_t g_spill_bytes(const sl_topic *t) {
  uint64_t n = 0;
  for (uint32_t s = 0; s < t->nsubs; s++)
    if (t->subs[s]->spill) n += sl_spill_disk_bytes(t->subs[s]->spill);
  return n;
}
static uint64_t g_spill_records(const sl_topic *t) {
  uint64_t n = 0;
  for (uint32_t s = 0; s < t->nsubs; s++)
    if (t->subs[s]->spill) n += sl_spill_count(t->subs[s]->spill);
  return n;
}
static uint64_t g_spill_corrupt(const sl_topic *t) { return t->spill_corrupt; }
static uint64_t g_delivered(const sl_topic *t) { return t->delivered; }
static uint64_t g_spill_read(const sl_topic *t) { return t->spill_read; }

static const struct {
  const char *name, *type, *help;
  uint64_t (*value)(const sl_topic *);
} topic_gauges[] = {
    {"sluice_subscribers", "gauge", "Current subscriptions per topic", g_subscribers},
    {"sluice_queued_messages", "gauge", "Messages waiting in lanes (not yet sent) per topic",
     g_queued},
    {"sluice_queued_bytes", "gauge",
     "Payload bytes held by lanes (pending and in flight) per topic", g_queued_bytes},
    {"sluice_in_flight_messages", "gauge", "AT_LEAST_ONCE messages sent and awaiting an ack",
     g_in_flight},
    {"sluice_spill_bytes", "gauge", "Bytes in spill files on disk", g_spill_bytes},
    {"sluice_spill_records", "gauge",
     "Spilled records not yet read back (on disk, or being written)", g_spill_records},
    {"sluice_spill_read_total", "counter", "Spilled records read back from disk into a lane",
     g_spill_read},
    {"sluice_spill_corrupt_records_total", "counter", "Spilled records skipped as corrupt",
     g_spill_corrupt},
    {"sluice_messages_delivered_total", "counter",
     "Messages handed to a client's transport (first sends; re-sends are "
     "streamfence_retries_total)",
     g_delivered},
};

/* Prometheus bucket edges of sluice_lua_hook_duration_seconds: each is an exact edge of
 * sl_lathist (a multiple of 10 ns up to 2.56 us, or a decade above). */
static const struct {
  uint64_t ns;
  const char *le;
} hook_buckets[] = {{50, "5e-08"},      {100, "1e-07"},     {250, "2.5e-07"},   {500, "5e-07"},
                    {1000, "1e-06"},    {2500, "2.5e-06"},  {10000, "1e-05"},   {100000, "0.0001"},
                    {1000000, "0.001"}, {10000000, "0.01"}, {100000000, "0.1"}, {1000000000, "1"}};

/* sluice_lua_hook_duration_seconds: a histogram per hook kind of the sampled calls. */
static void hook_time_metrics(sl_sbuf *b, const sl_lathist *ht) {
  metric_head(
      b, "sluice_lua_hook_duration_seconds", "histogram",
      "Wall time of Lua hook calls made by the core, sampled: one call in " SL_HOOK_SAMPLE_EVERY_STR
      " of each hook is timed");
  for (int k = 0; k < SL_HOOK_TIMED_KINDS; k++) {
    const sl_lathist *h = &ht[k];
    for (size_t i = 0; i < sizeof hook_buckets / sizeof hook_buckets[0]; i++)
      sl_sbuf_printf(b, "sluice_lua_hook_duration_seconds_bucket{hook=\"%s\",le=\"%s\"} %llu\n",
                     sl_hook_time_names[k], hook_buckets[i].le,
                     (unsigned long long)sl_lathist_le(h, hook_buckets[i].ns));
    sl_sbuf_printf(b, "sluice_lua_hook_duration_seconds_bucket{hook=\"%s\",le=\"+Inf\"} %llu\n",
                   sl_hook_time_names[k], (unsigned long long)h->n);
    sl_sbuf_printf(b, "sluice_lua_hook_duration_seconds_sum{hook=\"%s\"} %.9f\n",
                   sl_hook_time_names[k], (double)h->sum_ns / 1e9);
    sl_sbuf_printf(b, "sluice_lua_hook_duration_seconds_count{hook=\"%s\"} %llu\n",
                   sl_hook_time_names[k], (unsigned long long)h->n);
  }
}

/* Admission and inbound memory (net.c's sl_limits) of the scraped port's server. */
static void limits_metrics(sl_server *srv, sl_sbuf *b) {
  sl_gateway *gw = srv->gw;
  size_t i0 = (size_t)(srv - gw->servers), i1 = i0 + 1; /* this port's server only */
  metric_head(b, "sluice_connections", "gauge",
              "Open client connections (not the API listener's, not refusals being answered)");
  for (size_t i = i0; i < i1; i++) {
    sl_sbuf_puts(b, "sluice_connections{server=\"");
    label_escape(b, gw->servers[i].cfg->name);
    sl_sbuf_printf(b, "\"} %u\n", gw->servers[i].lim.nconns);
  }
  metric_head(
      b, "sluice_inbound_buffer_bytes", "gauge",
      "Bytes of partial inbound HTTP bodies and WebSocket messages held (maxInboundBufferBytes)");
  for (size_t i = i0; i < i1; i++) {
    sl_sbuf_puts(b, "sluice_inbound_buffer_bytes{server=\"");
    label_escape(b, gw->servers[i].cfg->name);
    sl_sbuf_printf(b, "\"} %llu\n", (unsigned long long)gw->servers[i].lim.inbound);
  }
  metric_head(b, "sluice_socket_writes_total", "counter",
              "Write system calls on this server's connections (one writev carries every frame "
              "queued for a connection; deliveries over writes is the frames per write)");
  sl_sbuf_puts(b, "sluice_socket_writes_total{server=\"");
  label_escape(b, srv->cfg->name);
  sl_sbuf_printf(b, "\"} %llu\n", (unsigned long long)srv->net_writes);
  metric_head(b, "sluice_flush_windows_total", "counter",
              "Batching windows (flushIntervalMs) that closed with connections to write");
  sl_sbuf_printf(b, "sluice_flush_windows_total %llu\n", (unsigned long long)gw->windows_closed);
  metric_head(b, "sluice_connections_refused_total", "counter",
              "Connections, handshakes and partial inputs refused by a limit");
  for (size_t i = i0; i < i1; i++)
    for (int r = 0; r < SL_REFUSE_COUNT; r++) {
      sl_sbuf_puts(b, "sluice_connections_refused_total{server=\"");
      label_escape(b, gw->servers[i].cfg->name);
      sl_sbuf_printf(b, "\",reason=\"%s\"} %llu\n", sl_refuse_reasons[r],
                     (unsigned long long)gw->servers[i].lim.refused[r]);
    }
}

/* Connection-state recovery, per namespace that has it (README "Connection-state recovery"). */
static void recovery_metrics(sl_server *srv, sl_sbuf *b) {
  static const char *const results[SL_REC_COUNT] = {"recovered", "expired", "unknown", "denied"};
  bool any = false;
  for (size_t j = 0; j < srv->nns; j++) any |= srv->ns[j].hist != NULL;
  if (!any) return;
  metric_head(b, "sluice_recoveries_total", "counter",
              "CONNECTs that presented a session id (pid), by outcome");
  for (size_t j = 0; j < srv->nns; j++) {
    sl_ns *ns = &srv->ns[j];
    if (!ns->hist) continue;
    for (int r = 0; r < SL_REC_COUNT; r++) {
      ns_label(b, "sluice_recoveries_total", ns);
      sl_sbuf_printf(b, ",result=\"%s\"} %llu\n", results[r],
                     (unsigned long long)ns->recoveries[r]);
    }
  }
  struct {
    const char *name, *type, *help;
    int which;
  } rows[] = {
      {"sluice_recovery_replayed_total", "counter",
       "Deliveries from the history offered again to recovered sessions", 0},
      {"sluice_recovery_resent_total", "counter",
       "AT_LEAST_ONCE messages in flight sent again when their session was recovered", 1},
      {"sluice_recovery_history_messages", "gauge", "Deliveries held in the history", 2},
      {"sluice_recovery_history_bytes", "gauge", "Encoded bytes held in the history", 3},
      {"sluice_recovery_sessions", "gauge",
       "Disconnected sessions kept for recovery (tombstones of expired ones excluded)", 4},
      {"sluice_recovery_store_failures_total", "counter",
       "Recoveries across nodes given up because Redis failed (a fresh session instead)", 5},
      {"sluice_recovery_handoffs_total", "counter",
       "Sessions kept here, taken and resumed by another node before they expired (released "
       "without loss)",
       6},
  };
  for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
    metric_head(b, rows[k].name, rows[k].type, rows[k].help);
    for (size_t j = 0; j < srv->nns; j++) {
      sl_ns *ns = &srv->ns[j];
      if (!ns->hist) continue;
      uint64_t v = 0;
      switch (rows[k].which) {
      case 0: v = ns->replayed; break;
      case 1: v = ns->resent_inflight; break;
      case 2: v = sl_recovery_history_len(ns); break;
      case 3: v = sl_recovery_history_bytes(ns); break;
      case 5: v = ns->store_failed; break;
      case 6: v = ns->handoffs; break;
      default:
        for (size_t bk = 0; bk < ns->parked.nb; bk++)
          for (sl_hent *e = ns->parked.b[bk]; e; e = e->hnext)
            v += sl_container_of(e, sl_socket, phent)->parked == SL_PARK_KEPT ||
                 sl_container_of(e, sl_socket, phent)->parked == SL_PARK_EXPIRING;
      }
      ns_label(b, rows[k].name, ns);
      sl_sbuf_printf(b, "} %llu\n", (unsigned long long)v);
    }
  }
}

/* metrics_text: the Prometheus exposition of one server (the one whose port was scraped)
 * plus the process-wide series. Each port exposes only its own server's namespaces and
 * topics: two servers of one file that both have /feed would otherwise give two identical
 * series, which Prometheus rejects, and scraping every port would count them twice. */
static void metrics_text(sl_server *srv, sl_sbuf *b) {
  sl_gateway *gw = srv->gw;
  size_t i0 = (size_t)(srv - gw->servers), i1 = i0 + 1; /* the one server of this port */
  struct {
    const char *name, *help;
    size_t off;
  } ns_metrics[] = {
      {"streamfence_connections_total", "Total successful client connections",
       offsetof(sl_ns, connections)},
      {"streamfence_disconnections_total", "Total client disconnections",
       offsetof(sl_ns, disconnections)},
      {"streamfence_auth_rejected_total", "Total auth rejections", offsetof(sl_ns, auth_rejected)},
      {"streamfence_auth_rate_limited_total", "Total auth rate-limited rejections",
       offsetof(sl_ns, auth_rate_limited)},
      {"sluice_route_dropped_total", "Publishes dropped by the route hook",
       offsetof(sl_ns, route_dropped)},
  };
  for (size_t k = 0; k < sizeof ns_metrics / sizeof ns_metrics[0]; k++) {
    metric_head(b, ns_metrics[k].name, "counter", ns_metrics[k].help);
    for (size_t i = i0; i < i1; i++)
      for (size_t j = 0; j < gw->servers[i].nns; j++) {
        sl_ns *ns = &gw->servers[i].ns[j];
        ns_label(b, ns_metrics[k].name, ns);
        sl_sbuf_printf(b, "} %llu\n",
                       (unsigned long long)*(uint64_t *)((char *)ns + ns_metrics[k].off));
      }
  }
  for (size_t k = 0; k < sizeof topic_metrics / sizeof topic_metrics[0]; k++) {
    metric_head(b, topic_metrics[k].name, "counter", topic_metrics[k].help);
    for (size_t i = i0; i < i1; i++)
      for (size_t j = 0; j < gw->servers[i].nns; j++)
        for (size_t t = 0; t < gw->servers[i].ns[j].ntopics; t++) {
          sl_topic *tp = &gw->servers[i].ns[j].topics[t];
          topic_label(b, topic_metrics[k].name, tp);
          sl_sbuf_printf(b, "} %llu\n", (unsigned long long)tp->m[topic_metrics[k].idx]);
        }
  }
  metric_head(b, "streamfence_queue_overflow_total", "counter", "Total queue overflow events");
  for (size_t i = i0; i < i1; i++)
    for (size_t j = 0; j < gw->servers[i].nns; j++)
      for (size_t t = 0; t < gw->servers[i].ns[j].ntopics; t++) {
        sl_topic *tp = &gw->servers[i].ns[j].topics[t];
        for (int r = 0; r < SL_OV_COUNT; r++) {
          if (!tp->overflow[r]) continue;
          topic_label(b, "streamfence_queue_overflow_total", tp);
          sl_sbuf_puts(b, ",reason=\"");
          label_escape(b, sl_overflow_reasons[r]);
          sl_sbuf_printf(b, "\"} %llu\n", (unsigned long long)tp->overflow[r]);
        }
      }
  metric_head(b, "sluice_messages_lost_total", "counter",
              "Deliveries accepted and never delivered: restart = held by a process that did "
              "not stop cleanly (counted at the next start), disconnect = held by a lane whose "
              "subscriber left, spill failed = could not be written to the spill, trimmed = in "
              "flight on a node, gone from the stream when another node recovered the session");
  uint64_t unlabelled = 0;
  for (size_t i = i0; i < i1; i++) {
    unlabelled += gw->servers[i].lost_restart_unlabelled;
    for (size_t j = 0; j < gw->servers[i].nns; j++)
      for (size_t t = 0; t < gw->servers[i].ns[j].ntopics; t++) {
        sl_topic *tp = &gw->servers[i].ns[j].topics[t];
        for (int r = 0; r < SL_LOST_COUNT; r++) {
          if (!tp->lost[r] && r != SL_LOST_RESTART) continue;
          topic_label(b, "sluice_messages_lost_total", tp);
          sl_sbuf_printf(b, ",reason=\"%s\"} %llu\n", sl_lost_reasons[r],
                         (unsigned long long)tp->lost[r]);
        }
      }
  }
  if (unlabelled)
    sl_sbuf_printf(b, "sluice_messages_lost_total{reason=\"restart\"} %llu\n",
                   (unsigned long long)unlabelled);
  /* Gauges and counters of Sluice's own, per topic. */
  for (size_t k = 0; k < sizeof topic_gauges / sizeof topic_gauges[0]; k++) {
    metric_head(b, topic_gauges[k].name, topic_gauges[k].type, topic_gauges[k].help);
    for (size_t i = i0; i < i1; i++)
      for (size_t j = 0; j < gw->servers[i].nns; j++)
        for (size_t t = 0; t < gw->servers[i].ns[j].ntopics; t++) {
          sl_topic *tp = &gw->servers[i].ns[j].topics[t];
          topic_label(b, topic_gauges[k].name, tp);
          sl_sbuf_printf(b, "} %llu\n", (unsigned long long)topic_gauges[k].value(tp));
        }
  }
  metric_head(b, "sluice_sessions", "gauge", "Open Engine.IO sessions");
  for (size_t i = i0; i < i1; i++) {
    sl_sbuf_puts(b, "sluice_sessions{server=\"");
    label_escape(b, gw->servers[i].cfg->name);
    sl_sbuf_printf(b, "\"} %zu\n", gw->servers[i].sessions.n);
  }
  limits_metrics(srv, b);
  recovery_metrics(srv, b);
  metric_head(b, "sluice_reloads_total", "counter", "Configuration reloads by result");
  sl_sbuf_printf(
      b, "sluice_reloads_total{result=\"ok\"} %llu\nsluice_reloads_total{result=\"error\"} %llu\n",
      (unsigned long long)gw->reloads_ok, (unsigned long long)gw->reloads_failed);
  metric_head(b, "sluice_reload_duration_milliseconds", "gauge",
              "Duration of the last successful reload");
  sl_sbuf_printf(b, "sluice_reload_duration_milliseconds %.3f\n", gw->last_reload_ms);
  sl_script_stats st = {0};
  if (gw->ops.stats) gw->ops.stats(gw->ops_ud, &st);
  metric_head(b, "sluice_lua_errors_total", "counter",
              "Errors raised by Lua hooks, timers and producers");
  sl_sbuf_printf(b, "sluice_lua_errors_total %llu\n", (unsigned long long)st.errors);
  metric_head(b, "sluice_lua_memory_bytes", "gauge", "Memory used by the Lua VM");
  sl_sbuf_printf(b, "sluice_lua_memory_bytes %zu\n", st.memory_bytes);
  hook_time_metrics(b, gw->hook_times);
  metric_head(b, "sluice_build_info", "gauge", "Always 1; the version of Sluice in its label");
  sl_sbuf_puts(b, "sluice_build_info{version=\"" SLUICE_VERSION "\"} 1\n");
  sl_procstat ps;
  sl_procstat_read(&ps);
  sl_procstat_text(b, &ps);
  refusal_metrics(gw, b);
  sl_tls_server_metrics(gw, b);
  sl_cluster_metrics(srv, b);
  sl_emitter_metrics(srv, b);
}

/* sl_api_probe: see sl_internal.h. */
bool sl_api_probe(sl_conn *c) {
  const char *url = c->req->url.data ? c->req->url.data : "/";
  if (path_is(url, "/healthz")) {
    sl_http_respond(c, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL);
    return true;
  }
  if (path_is(url, "/readyz")) {
    /* serving: listening, and not draining (sluice_drain) or stopping */
    if (c->srv->gw->stopping || c->srv->gw->draining || !c->srv->listening)
      sl_http_json_error(c, 503, "NOT_READY", "the server is draining or stopping");
    else
      sl_http_respond(c, 200, "application/json", "{\"status\":\"ready\"}", 18, NULL);
    return true;
  }
  return false;
}

static bool is_api_path(const char *url) {
  return strncmp(url, "/api/", 5) == 0 || path_is(url, "/metrics") || path_is(url, "/");
}

/* sl_api_http: see sl_internal.h. */
void sl_api_http(sl_conn *c) {
  const char *url = c->req->url.data ? c->req->url.data : "/";
  sl_gateway *gw = c->srv->gw;
  if (c->req->too_big) {
    /* the body was not read: nothing to judge it by */
    c->close_after_write = 1;
    sl_http_json_error(c, 413, "PAYLOAD_TOO_LARGE", "request body exceeds maxPayload");
    return;
  }
  /* With apiToken set, the status page itself (no data: it asks /api/status with the token
   * typed into it) is served without the token, or there would be nowhere to type it. */
  const char *tok = c->srv->cfg->api_token;
  bool open_page = path_is(url, "/") && tok && *tok;
  if ((c->api || is_api_path(url)) && !open_page) {
    /* On the API's own listener the rules cover every path (probes included); on the
     * client port, the API's paths. */
    if (!api_allowed(c)) return;
  }
  if (sl_api_probe(c)) return;
  if (path_is(url, "/metrics")) {
    sl_sbuf b = {0};
    metrics_text(c->srv, &b);
    sl_http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL);
    sl_sbuf_free(&b);
    return;
  }
  if (path_is(url, "/api/publish")) {
    api_publish(c);
    return;
  }
  if (path_is(url, "/api/reload")) {
    if (c->parser.method != HTTP_POST) {
      sl_http_json_error(c, 405, "METHOD_NOT_ALLOWED", "use POST");
      return;
    }
    char err[1024];
    if (sl_gateway_reload(gw, err, sizeof err) != 0) {
      sl_http_json_error(c, 400, "RELOAD_FAILED", err);
      return;
    }
    char body[128];
    int n = snprintf(body, sizeof body, "{\"reloaded\":true,\"ms\":%.3f}", gw->last_reload_ms);
    sl_http_respond(c, 200, "application/json", body, (size_t)n, NULL);
    return;
  }
  if (path_is(url, "/api/drain")) {
    if (c->parser.method != HTTP_POST) {
      sl_http_json_error(c, 405, "METHOD_NOT_ALLOWED", "use POST");
      return;
    }
    sl_drain_start(gw);
    sl_http_respond(c, 202, "application/json", "{\"draining\":true}", 17, NULL);
    return;
  }
  if (path_is(url, "/api/stats")) {
    char *t = sl_gateway_stats_json(gw);
    sl_http_respond(c, 200, "application/json", t, strlen(t), NULL);
    free(t);
    return;
  }
  if (path_is(url, "/api/status") || path_is(url, "/api/clients")) {
    char *t = path_is(url, "/api/status") ? sl_status_json(gw)
                                          : sl_status_clients_json(gw, query_limit(url, 100));
    if (!t) {
      sl_http_json_error(c, 503, "NO_MEMORY", "out of memory");
      return;
    }
    sl_http_respond(c, 200, "application/json", t, strlen(t), "Cache-Control: no-store\r\n");
    free(t);
    return;
  }
  if (path_is(url, "/")) {
    sl_http_respond(c, 200, "text/html; charset=utf-8", sl_status_html, sl_status_html_len, NULL);
    return;
  }
  sl_http_json_error(c, 404, "NOT_FOUND", "no such endpoint");
}
