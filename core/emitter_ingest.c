/* emitter_ingest.c - the @socket.io/redis-emitter subscription of a server and the delivery
 * of what it receives (emitter_ingest.h). */
#include <stdlib.h>
#include <string.h>
#include "emitter_ingest.h"
#include "publish.h"
#include "redis_link.h"
#include "sl_util.h"

#define LOG_WINDOW_MS 10000
#define LOG_LINES 5

/* One server's subscription. Owned by srv->emitter. */
typedef struct sl_emitter_sub {
  sl_server *srv;
  sl_redis_link *link; /* NULL while stopped (the counters stay) */
  sl_redis_url url;
  char *key;     /* emitterKey */
  char *pattern; /* <key>#* with the glob characters of key escaped */
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

/* Count one ignored message and say why, at most LOG_LINES lines per window. Messages of the
 * streams adapter's nodes belong on that channel: debug level only. */
static sl_emit_reason ignore(sl_server *srv, sl_emitter_stats *st, sl_emit_reason r,
                             const char *channel, size_t chlen, const char *why) {
  st->ignored[r]++;
  const char *name = srv->cfg->name;
  if (r == SL_EMIT_NOT_EMITTER) {
    sl_log_debug("server \"%s\": emitter: not an emitter message on %.*s: %s", name, (int)chlen,
                 channel, why);
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
  sl_log_warn("server \"%s\": emitter: message on %.*s ignored (%s): %s", name,
              (int)(chlen > 200 ? 200 : chlen), channel, sl_emitter_reason_name(r), why);
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

/* ---- the subscription -------------------------------------------------------------------- */

/* A pmessage reply is [ "pmessage", pattern, channel, message ]; the subscription's
 * confirmation ["psubscribe", pattern, n] and a NULL reply (the link dropped: on_up
 * subscribes again) carry nothing to deliver. */
static void on_message(sl_redis_link *l, redisReply *r, void *ud) {
  sl_emitter_sub *s = ud;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4) return;
  redisReply *kind = r->element[0], *ch = r->element[2], *msg = r->element[3];
  if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "pmessage") != 0) return;
  if (ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING) return;
  sl_emitter_ingest(s->srv, s->key, ch->str, ch->len, msg->str, msg->len, &s->st);
}

static void on_up(sl_redis_link *l, void *ud) {
  sl_emitter_sub *s = ud;
  if (sl_redis_link_cmd(l, on_message, s, "PSUBSCRIBE %s", s->pattern) == 0)
    sl_log_info("server \"%s\": emitter: subscribed to %s (acceptEmitter)", s->srv->cfg->name,
                s->pattern);
}

/* <key>#* with \ in front of the characters PSUBSCRIBE's glob treats specially. */
static char *make_pattern(const char *key) {
  size_t n = strlen(key);
  char *p = sl_xmalloc(2 * n + 3), *o = p;
  for (size_t i = 0; i < n; i++) {
    if (strchr("*?[]\\", key[i])) *o++ = '\\';
    *o++ = key[i];
  }
  memcpy(o, "#*", 3);
  return p;
}

static void stop_link(sl_emitter_sub *s) {
  if (!s->link) return;
  sl_redis_link_free(s->link);
  s->link = NULL;
  log_summary(&s->st, s->srv->cfg->name);
  sl_redis_url_free(&s->url);
  free(s->key);
  free(s->pattern);
  s->key = s->pattern = NULL;
}

void sl_emitter_server_sync(sl_server *srv) {
  const sl_cluster_config *c = srv->cfg->cluster;
  bool want = c && c->accept_emitter && c->redis;
  sl_emitter_sub *s = srv->emitter;
  sl_redis_url url;
  char err[200];
  if (want && sl_redis_url_parse(c->redis, &url, err, sizeof err) != 0) {
    sl_log_error("server \"%s\": emitter: %s", srv->cfg->name, err); /* the loader checked it */
    want = false;
  }
  const char *key = want && c->emitter_key ? c->emitter_key : "socket.io";
  if (s && s->link && want && sl_redis_url_equal(&s->url, &url) && strcmp(s->key, key) == 0) {
    sl_redis_url_free(&url);
    return; /* unchanged */
  }
  if (s) stop_link(s);
  if (!want) return;
  if (!s) {
    s = srv->emitter = sl_xcalloc(1, sizeof *s);
    s->srv = srv;
  }
  s->url = url;
  s->key = sl_xstrdup(key);
  s->pattern = make_pattern(key);
  sl_redis_link_ops ops = {.on_up = on_up};
  s->link = sl_redis_link_new(srv->gw->loop, &s->url, "emitter", &ops, s);
}

void sl_emitter_server_stop(sl_server *srv) {
  sl_emitter_sub *s = srv->emitter;
  if (!s) return;
  stop_link(s);
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
