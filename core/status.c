/* status.c - the status page's data (status.h). Counters only: the page turns two polls into
 * rates, so the server keeps no time series and costs nothing between polls. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "status.h"
#include "eio.h"
#include "cluster.h"
#include "hooks.h"
#include "net.h"
#include "procstat.h"
#include "spill.h"

static void topic_json(cJSON *arr, const sl_topic *tp) {
  uint64_t qn = 0, qb = 0, infl = 0, spill = 0, ov = 0;
  for (uint32_t s = 0; s < tp->nsubs; s++) {
    const sl_lane *l = tp->subs[s];
    qn += l->qn;
    qb += l->qbytes;
    infl += l->ninfl;
    if (l->spill) spill += sl_spill_disk_bytes(l->spill);
  }
  for (int r = 0; r < SL_OV_COUNT; r++) ov += tp->overflow[r];
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", tp->name);
  cJSON_AddNumberToObject(o, "subscribers", tp->nsubs);
  cJSON_AddNumberToObject(o, "published", (double)tp->m[SL_M_PUBLISHED]);
  cJSON_AddNumberToObject(o, "delivered", (double)tp->delivered);
  cJSON_AddNumberToObject(o, "dropped", (double)tp->m[SL_M_DROPPED]);
  cJSON_AddNumberToObject(o, "overflowed", (double)ov);
  cJSON_AddNumberToObject(o, "coalesced", (double)tp->m[SL_M_COALESCED]);
  cJSON_AddNumberToObject(o, "spilled", (double)tp->m[SL_M_SPILLED]);
  cJSON_AddNumberToObject(o, "retries", (double)tp->m[SL_M_RETRIES]);
  cJSON_AddNumberToObject(o, "retriesExhausted", (double)tp->m[SL_M_RETRIES_EXHAUSTED]);
  cJSON_AddNumberToObject(o, "queuedMessages", (double)qn);
  cJSON_AddNumberToObject(o, "queuedBytes", (double)qb);
  cJSON_AddNumberToObject(o, "inFlight", (double)infl);
  cJSON_AddNumberToObject(o, "spillBytes", (double)spill);
  cJSON_AddItemToArray(arr, o);
}

/* "luaHooks": per hook kind with samples, their count and quantiles in ns (null above 1 s). */
static void hooks_json(cJSON *root, const sl_lathist *ht) {
  cJSON *o = cJSON_AddObjectToObject(root, "luaHooks");
  cJSON_AddNumberToObject(o, "sampleEvery", SL_HOOK_SAMPLE_EVERY);
  cJSON_AddNumberToObject(o, "clockOverheadNs", (double)sl_clock_overhead_ns());
  for (int k = 0; k < SL_HOOK_TIMED_KINDS; k++) {
    const sl_lathist *h = &ht[k];
    if (!h->n) continue;
    cJSON *x = cJSON_AddObjectToObject(o, sl_hook_time_names[k]);
    cJSON_AddNumberToObject(x, "samples", (double)h->n);
    cJSON_AddNumberToObject(x, "meanNs", (double)h->sum_ns / (double)h->n);
    static const struct {
      const char *name;
      double q;
    } qs[] = {{"p10Ns", 0.10}, {"p50Ns", 0.50}, {"p90Ns", 0.90}, {"p99Ns", 0.99}};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
      uint64_t v = sl_lathist_quantile(h, qs[i].q);
      if (v == UINT64_MAX)
        cJSON_AddNullToObject(x, qs[i].name); /* above 1 s */
      else
        cJSON_AddNumberToObject(x, qs[i].name, (double)v);
    }
  }
}

/* "servers": per server its namespaces, per namespace its topics (topic_json), and the
 * server's cluster node (cluster.h); the same for /api/status and /api/stats. */
static void servers_json(sl_gateway *gw, cJSON *root) {
  cJSON *servers = cJSON_AddArrayToObject(root, "servers");
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    cJSON *so = cJSON_CreateObject();
    cJSON_AddStringToObject(so, "name", srv->cfg->name);
    cJSON_AddNumberToObject(so, "port", srv->port);
    cJSON_AddNumberToObject(so, "sessions", (double)srv->sessions.n);
    cJSON *nss = cJSON_AddArrayToObject(so, "namespaces");
    for (size_t j = 0; j < srv->nns; j++) {
      sl_ns *ns = &srv->ns[j];
      cJSON *no = cJSON_CreateObject();
      cJSON_AddStringToObject(no, "path", ns->path);
      cJSON_AddStringToObject(no, "delivery", sl_delivery_name(ns->cfg->delivery));
      cJSON_AddNumberToObject(no, "clients", (double)ns->sockets.n);
      cJSON_AddNumberToObject(no, "connections", (double)ns->connections);
      cJSON_AddNumberToObject(no, "disconnections", (double)ns->disconnections);
      cJSON_AddNumberToObject(no, "authRejected", (double)ns->auth_rejected);
      cJSON *ts = cJSON_AddArrayToObject(no, "topics");
      for (size_t t = 0; t < ns->ntopics; t++) topic_json(ts, &ns->topics[t]);
      cJSON_AddItemToArray(nss, no);
    }
    sl_cluster_stats_json(srv, so);
    cJSON_AddItemToArray(servers, so);
  }
}

/* sl_status_json: see status.h. */
char *sl_status_json(sl_gateway *gw) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "version", SLUICE_VERSION);
  cJSON_AddNumberToObject(root, "uptimeMs", (double)(sl_now_ms() - gw->started_ms));
  cJSON_AddNumberToObject(root, "nowMs", (double)sl_wall_us() / 1000.0);
  cJSON_AddBoolToObject(root, "draining", gw->draining);
  sl_procstat ps;
  sl_procstat_read(&ps);
  cJSON *p = cJSON_AddObjectToObject(root, "process");
  cJSON_AddNumberToObject(p, "cpuSeconds", ps.cpu_seconds);
  cJSON_AddNumberToObject(p, "residentBytes", ps.resident_bytes);
  cJSON_AddNumberToObject(p, "openFds", ps.open_fds);
  cJSON_AddNumberToObject(p, "maxFds", ps.max_fds);
  cJSON *rl = cJSON_AddObjectToObject(root, "reloads");
  cJSON_AddNumberToObject(rl, "ok", (double)gw->reloads_ok);
  cJSON_AddNumberToObject(rl, "failed", (double)gw->reloads_failed);
  cJSON_AddNumberToObject(rl, "lastMs", gw->last_reload_ms);
  sl_script_stats st = {0};
  if (gw->ops.stats) gw->ops.stats(gw->ops_ud, &st);
  cJSON *lua = cJSON_AddObjectToObject(root, "lua");
  cJSON_AddNumberToObject(lua, "errors", (double)st.errors);
  cJSON_AddNumberToObject(lua, "memoryBytes", (double)st.memory_bytes);
  hooks_json(root, gw->hook_times);
  servers_json(gw, root);
  char *out = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return out;
}

typedef struct {
  const sl_socket *sock;
  const char *server;
  uint64_t backlog; /* queued + in flight */
  uint64_t bytes;   /* lane bytes */
  uint64_t unsent;  /* bytes written to the transport but not yet sent */
} client_row;

static int slowest_first(const void *a, const void *b) {
  const client_row *x = a, *y = b;
  if (x->backlog != y->backlog) return x->backlog < y->backlog ? 1 : -1;
  if (x->unsent != y->unsent) return x->unsent < y->unsent ? 1 : -1;
  if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
  return strcmp(x->sock->id, y->sock->id);
}

/* sl_status_clients_json: see status.h. */
char *sl_status_clients_json(sl_gateway *gw, size_t limit) {
  size_t n = 0, cap = 0;
  client_row *rows = NULL;
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    for (size_t j = 0; j < srv->nns; j++) {
      sl_hash *h = &srv->ns[j].sockets;
      for (size_t b = 0; b < h->nb; b++)
        for (sl_hent *e = h->b[b]; e; e = e->hnext) {
          const sl_socket *s = sl_container_of(e, sl_socket, hent);
          if (n == cap) rows = sl_xrealloc(rows, (cap = cap ? cap * 2 : 64) * sizeof *rows);
          client_row *r = &rows[n++];
          memset(r, 0, sizeof *r);
          r->sock = s;
          r->server = srv->cfg->name;
          for (const sl_lane *l = s->lanes; l; l = l->next) {
            r->backlog += l->qn + l->ninfl;
            r->bytes += l->qbytes;
          }
          const sl_session *ss = s->sess;
          if (ss)
            r->unsent = ss->transport == SL_TR_WS ? (ss->ws ? ss->ws->wq_bytes : 0) : ss->pq_bytes;
        }
    }
  }
  if (n) qsort(rows, n, sizeof *rows, slowest_first);
  cJSON *root = cJSON_CreateObject();
  cJSON_AddNumberToObject(root, "total", (double)n);
  cJSON *arr = cJSON_AddArrayToObject(root, "clients");
  uint64_t now = uv_now(gw->loop); /* the clock of created_ms */
  for (size_t k = 0; k < n && k < limit; k++) {
    const client_row *r = &rows[k];
    const sl_socket *s = r->sock;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->id);
    cJSON_AddStringToObject(o, "server", r->server);
    cJSON_AddStringToObject(o, "namespace", s->ns->path);
    if (s->principal) cJSON_AddStringToObject(o, "principal", s->principal);
    if (s->sess) {
      cJSON_AddStringToObject(o, "remote", s->sess->remote);
      cJSON_AddStringToObject(o, "transport",
                              s->sess->transport == SL_TR_WS ? "websocket" : "polling");
      cJSON_AddNumberToObject(o, "connectedMs", (double)(now - s->sess->created_ms));
    }
    cJSON_AddNumberToObject(o, "backlog", (double)r->backlog);
    cJSON_AddNumberToObject(o, "queuedBytes", (double)r->bytes);
    cJSON_AddNumberToObject(o, "unsentBytes", (double)r->unsent);
    cJSON *ls = cJSON_AddArrayToObject(o, "topics");
    for (const sl_lane *l = s->lanes; l; l = l->next) {
      cJSON *lo = cJSON_CreateObject();
      cJSON_AddStringToObject(lo, "topic", l->topic->name);
      cJSON_AddNumberToObject(lo, "queued", l->qn);
      cJSON_AddNumberToObject(lo, "inFlight", l->ninfl);
      cJSON_AddNumberToObject(lo, "spilled", l->spill ? (double)sl_spill_count(l->spill) : 0);
      cJSON_AddItemToArray(ls, lo);
    }
    cJSON_AddItemToArray(arr, o);
  }
  free(rows);
  char *out = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return out;
}

/* sl_gateway_stats_json: see sl_core.h. /api/stats: the servers as on /api/status, and the
 * Lua hook timings. */
char *sl_gateway_stats_json(sl_gateway *gw) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddNumberToObject(root, "uptimeMs", (double)(sl_now_ms() - gw->started_ms));
  servers_json(gw, root);
  hooks_json(root, gw->hook_times);
  char *t = sl_json_print(root);
  cJSON_Delete(root);
  return t;
}
