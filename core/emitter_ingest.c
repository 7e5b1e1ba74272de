/* emitter_ingest.c - the @socket.io/redis-emitter subscription of a server and the delivery
 * of what it receives (emitter_ingest.h). */
#include <stdlib.h>
#include <string.h>
#include "emitter_ingest.h"
#include "publish.h"
#include "cluster.h"
#include "sl_util.h"

#define LOG_WINDOW_MS 10000
#define LOG_LINES 5

/* One server's ingest: its counters and the emitterKey it checks channels against. Owned by
 * srv->emitter; it outlives cluster nodes (a reload may replace srv->cluster). */
typedef struct sl_emitter_sub {
  sl_server *srv;
  sl_cluster *cl; /* the node whose pub/sub handler we are, NULL while off */
  char *key;      /* emitterKey */
  sl_emitter_stats st;
} sl_emitter_sub;

/* ---- the rate-limited log -------------------------------------------------------------- */

static void log_summary(sl_emitter_stats *st, const char *server) {
  if (st->log_suppressed)
    sl_log_warn("server \"%s\": emitter: %llu more ignored message(s) in the last %d s (see "
                "sluice_emitter_ignored_total)",
                server, (unsigned long long)st->log_suppressed, LOG_WINDOW_MS / 1000);
  st->log_suppressed = 0;
}

/* The channel name for a log line: at most 120 bytes, anything but printable ASCII as '?'
 * (a channel name is whatever a publisher chose). */
static const char *printable(char *out, size_t outlen, const char *ch, size_t chlen) {
  size_t n = chlen < outlen - 1 ? chlen : outlen - 1;
  for (size_t i = 0; i < n; i++) out[i] = ch[i] >= 0x20 && ch[i] < 0x7f ? ch[i] : '?';
  out[n] = 0;
  return out;
}

/* Count one ignored message and say why, at most LOG_LINES lines per window. Messages of the
 * streams adapter's nodes belong on that channel: debug level only. */
static sl_emit_reason ignore(sl_server *srv, sl_emitter_stats *st, sl_emit_reason r,
                             const char *channel, size_t chlen, char *why) {
  for (char *p = why; *p; p++) /* names from the message: no control characters in a log line */
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
  st->ignored[r]++;
  const char *name = srv->cfg->name;
  char ch[121];
  if (r == SL_EMIT_NOT_EMITTER) {
    sl_log_debug("server \"%s\": emitter: not an emitter message on %s: %s", name,
                 printable(ch, sizeof ch, channel, chlen), why);
    return r;
  }
  uint64_t now = sl_now_ms();
  if (now - st->log_window_ms >= LOG_WINDOW_MS) {
    log_summary(st, name);
    st->log_window_ms = now;
    st->log_lines = 0;
  }
  if (st->log_lines >= LOG_LINES) {
    st->log_suppressed++;
    return r;
  }
  st->log_lines++;
  sl_log_warn("server \"%s\": emitter: message on %s ignored (%s): %s", name,
              printable(ch, sizeof ch, channel, chlen), sl_emitter_reason_name(r), why);
  return r;
}

/* ---- one message ------------------------------------------------------------------------- */

static sl_ns *find_ns(sl_server *srv, const char *path) {
  for (size_t i = 0; i < srv->nns; i++)
    if (strcmp(srv->ns[i].path, path) == 0) return &srv->ns[i];
  return NULL;
}

/* Is channel <key>#<nsp># or <key>#<nsp>#<room>#? */
static bool channel_of(const char *channel, size_t chlen, const char *key, const char *nsp) {
  size_t kl = strlen(key), nl = strlen(nsp);
  return chlen >= kl + nl + 2 && memcmp(channel, key, kl) == 0 && channel[kl] == '#' &&
         memcmp(channel + kl + 1, nsp, nl) == 0 && channel[kl + 1 + nl] == '#' &&
         channel[chlen - 1] == '#';
}

sl_emit_reason sl_emitter_ingest(sl_server *srv, const char *key, const char *channel, size_t chlen,
                                 const void *msg, size_t len, sl_emitter_stats *st) {
  st->received++;
  sl_emitter_msg m;
  char err[160];
  size_t max = srv->cfg->max_payload > 0 ? (size_t)srv->cfg->max_payload : 0;
  sl_emit_reason r = sl_emitter_decode(msg, len, max, &m, err, sizeof err);
  if (r != SL_EMIT_OK) return ignore(srv, st, r, channel, chlen, err);
  sl_ns *ns = NULL;
  if (!channel_of(channel, chlen, key, m.nsp)) {
    snprintf(err, sizeof err, "the packet's namespace %.64s is not the channel's", m.nsp);
    r = SL_EMIT_NAMESPACE;
  } else if (!(ns = find_ns(srv, m.nsp))) {
    snprintf(err, sizeof err, "no namespace %.64s here", m.nsp);
    r = SL_EMIT_NAMESPACE;
  } else {
    sl_remote_opts o = {
        .rooms = (const char *const *)m.rooms,
        .nrooms = m.nrooms,
        .except = (const char *const *)m.except,
        .nexcept = m.nexcept,
        .trusted_json = true, /* written by the decoder, checked by sl_js_valid in the fuzzer */
    };
    int rc = sl_publish_remote(srv->gw, ns, m.event, strlen(m.event), m.payload, m.payload_len, &o);
    if (rc == SL_ENOENT) {
      snprintf(err, sizeof err, "no topic \"%.64s\" in namespace %.64s", m.event, m.nsp);
      r = SL_EMIT_TOPIC;
    } else if (rc == SL_ETOOBIG) {
      snprintf(err, sizeof err, "payload larger than maxPayload");
      r = SL_EMIT_TOO_LARGE;
    } else if (rc != 0) {
      snprintf(err, sizeof err, "not delivered: %s", sl_strerror(rc));
      r = SL_EMIT_MALFORMED;
    }
  }
  sl_emitter_msg_free(&m);
  if (r != SL_EMIT_OK) return ignore(srv, st, r, channel, chlen, err);
  st->delivered++;
  return SL_EMIT_OK;
}

/* ---- the subscription ---------------------------------------------------------------- */

/* cluster.c's pub/sub link hands over each message once, whether it came on the public
 * channel <key>#<nsp># (SUBSCRIBE, for the streams adapter's node count) or on a room channel
 * through the pattern <key>#<nsp>#* (PSUBSCRIBE, made because acceptEmitter is on). */
static void on_message(void *ud, sl_cluster *cl, const char *channel, size_t chlen,
                       const char *data, size_t len) {
  sl_emitter_sub *s = ud;
  sl_emitter_ingest(s->srv, s->key, channel, chlen, data, len, &s->st);
}

static void detach(sl_emitter_sub *s) {
  if (s->cl && s->srv->cluster == s->cl) sl_cluster_set_pubsub_handler(s->cl, NULL, NULL);
  s->cl = NULL;
  log_summary(&s->st, s->srv->cfg->name);
}

void sl_emitter_server_sync(sl_server *srv) {
  sl_cluster *cl = srv->cluster;
  const sl_cluster_config *c = cl ? sl_cluster_config_of(cl) : NULL;
  sl_emitter_sub *s = srv->emitter;
  if (!c || !c->accept_emitter) {
    if (s) detach(s);
    return;
  }
  if (!s) {
    s = srv->emitter = sl_xcalloc(1, sizeof *s);
    s->srv = srv;
  }
  if (s->cl != cl) {
    s->cl = cl;
    sl_log_info("server \"%s\": emitter: accepting @socket.io/redis-emitter messages on "
                "%s#<namespace>#[<room>#] (acceptEmitter)",
                srv->cfg->name, c->emitter_key);
  }
  free(s->key);
  s->key = sl_xstrdup(c->emitter_key);
  sl_cluster_set_pubsub_handler(cl, on_message, s);
}

void sl_emitter_server_stop(sl_server *srv) {
  sl_emitter_sub *s = srv->emitter;
  if (!s) return;
  detach(s);
  free(s->key);
  free(s);
  srv->emitter = NULL;
}

/* ---- metrics ----------------------------------------------------------------------------- */

void sl_emitter_stats_text(const sl_emitter_stats *st, sl_sbuf *b) {
  sl_sbuf_printf(b,
                 "# HELP sluice_emitter_received_total Messages received on the "
                 "@socket.io/redis-emitter channels (cluster.acceptEmitter)\n"
                 "# TYPE sluice_emitter_received_total counter\n"
                 "sluice_emitter_received_total %llu\n"
                 "# HELP sluice_emitter_ignored_total Messages on the emitter channels not "
                 "delivered, by reason\n"
                 "# TYPE sluice_emitter_ignored_total counter\n",
                 (unsigned long long)st->received);
  for (int i = 1; i < SL_EMIT_REASONS; i++)
    sl_sbuf_printf(b, "sluice_emitter_ignored_total{reason=\"%s\"} %llu\n",
                   sl_emitter_reason_name(i), (unsigned long long)st->ignored[i]);
}

void sl_emitter_metrics(const sl_server *srv, sl_sbuf *b) {
  if (srv->emitter) sl_emitter_stats_text(&srv->emitter->st, b);
}
