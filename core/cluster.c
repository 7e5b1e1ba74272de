/* cluster.c - a server's node in a cluster over a Redis stream (cluster.h).
 *
 * Publishes become entries (cl_entry: the XADD fields, encoded once) that live on one of two
 * FIFOs: `sent` (XADD written, reply pending; replies come in order, so each reply pops the
 * head) and `kept` (waiting for the write link). When the write link drops, hiredis answers
 * every pending XADD with NULL (it may or may not have been appended) and the sent FIFO goes
 * back in front of kept: they are appended again when the link returns, with the same
 * sequence number, and readers drop the second copy (per origin uid, the highest sequence
 * number seen). Entries delivered here before they were appended carry "d":1 and this node
 * skips them when it reads them back.
 *
 * The XADDs of one loop iteration go out as one transaction: MULTI before the first, EXEC
 * when the gateway's loop flush calls sl_cluster_flush (or before any other command on the
 * write link). Redis serves a blocked XREAD after each command it runs, so a pipeline of
 * plain XADDs woke every reader with the first entry alone and then again with the rest;
 * after EXEC it wakes them once with the whole iteration's entries, and a reading node
 * writes them to each of its clients together (one write per client per batch, as on the
 * origin). The EXEC reply holds one result per XADD; the last entry of each transaction is
 * marked, so the sent FIFO is popped up to it.
 *
 * The reader positions itself once with XINFO STREAM (last-generated-id, entries-added),
 * then loops on XREAD BLOCK from the last id it read. An XINFO STREAM goes right before an
 * XREAD on the same link (never alone), so the counts it returns match what was read: of the
 * entries added since the start (entries-added then and now), those neither read nor still
 * in the stream past the last id read (none at the end of the stream, at most its length
 * otherwise) were trimmed unread: counted and logged, never waited for. The check goes with
 * the first XREAD after the link (re)connects and then at most every GAP_CHECK_MS (not before
 * every XREAD: at high rates it cost as much as the read); the counts are cumulative, so a
 * check that comes later still counts every entry lost before it. Exact once the node
 * catches up (a check made at the end of the stream). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cluster.h"
#include "cluster_codec.h"
#include "publish.h"
#include "redis_link.h"
#include "topics.h"
#include "sl_util.h"

#define TICK_MS 1000
#define NUMSUB_EVERY_MS 2000
#define READ_RETRY_MS 1000
#define GAP_CHECK_MS 100 /* at most this often an XINFO STREAM goes before an XREAD */
#define SEEN_SLOTS 64
#define LOG_WINDOW_MS 10000

enum { DROP_BUFFER_FULL = 0, DROP_REDIS_ERROR, DROP_STOPPED, DROP_COUNT };
static const char *const drop_names[DROP_COUNT] = {"buffer_full", "redis_error", "stopped"};
enum {
  SKIP_OWN = 0,
  SKIP_DUPLICATE,
  SKIP_UNKNOWN_NAMESPACE,
  SKIP_UNKNOWN_TOPIC,
  SKIP_REFUSED,
  SKIP_COUNT
};
static const char *const skip_names[SKIP_COUNT] = {"own", "duplicate", "unknown_namespace",
                                                   "unknown_topic", "refused"};

typedef struct cl_entry {
  struct cl_entry *next;
  uint64_t seq;
  bool last; /* the last XADD of its transaction (EXEC pops the sent FIFO up to it) */
  size_t dlen;
  char *nsp;   /* points into data's allocation, after data */
  char data[]; /* the data field, then NUL, then nsp, NUL */
} cl_entry;

typedef struct cl_fifo {
  cl_entry *head, *tail;
  size_t n;
} cl_fifo;

/* A rate-limited log line: at most one per LOG_WINDOW_MS per kind; the rest are counted
 * and reported with the next one. */
typedef struct cl_rlog {
  uint64_t last, suppressed;
} cl_rlog;

typedef struct take_ctx take_ctx;

struct sl_cluster {
  sl_server *srv;
  take_ctx *takes; /* recovery session lookups awaiting their reply */
  sl_gateway *gw;
  sl_cluster_config cfg; /* own copy */
  sl_redis_url url;
  sl_redis_link *w, *r, *s;
  char uid[48];
  char maxlen[24];
  uint64_t seq;
  cl_fifo sent, kept;
  bool batch_open; /* MULTI sent, EXEC not yet */
  size_t batch_n;  /* XADDs queued in it */
  sl_sbuf enc;
  /* reader */
  char last_id[48];
  bool positioned, reading;
  int64_t base_added; /* entries-added at the position (rebased when the stream restarts) */
  uint64_t read_total;
  uint64_t reads; /* XREAD replies that carried entries */
  uint64_t last_check, read_retry_at;
  bool check_due; /* the next XREAD gets its XINFO STREAM whatever the time (reconnected) */
  struct {
    char uid[48];
    uint64_t seq, used;
  } seen[SEEN_SLOTS];
  uint64_t seen_clock;
  /* node counting and pub/sub */
  uv_timer_t tick;
  uint64_t last_numsub;
  int64_t *nodes; /* per namespace of srv (srv->nns), -1 unknown */
  size_t nnodes;
  sl_cluster_msg_fn on_msg;
  void *on_msg_ud;
  /* metrics */
  uint64_t published, received, lost, reconnects, pubsub_ignored;
  uint64_t dropped[DROP_COUNT];
  uint64_t skipped[SKIP_COUNT];
  uint64_t bad[SL_CL_NREASONS];
  cl_rlog log_full, log_err, log_gap, log_bad;
};

struct take_ctx {
  sl_cluster_session_cb cb;     /* a GETDEL, or */
  sl_cluster_range_cb range_cb; /* an XRANGE (sl_cluster_range) */
  char after[48];
  size_t count;
  void *ud;
  struct take_ctx *next, **pprev; /* in cl->takes while the reply is awaited */
};

/* t waits for its reply: on cl->takes, so that sl_cluster_stop can answer it. */
static void take_link(sl_cluster *cl, take_ctx *t) {
  t->next = cl->takes;
  if (t->next) t->next->pprev = &t->next;
  t->pprev = &cl->takes;
  cl->takes = t;
}

static void take_unlink(take_ctx *t) {
  *t->pprev = t->next;
  if (t->next) t->next->pprev = t->pprev;
}

static void read_next(sl_cluster *cl);

/* ---- helpers --------------------------------------------------------------------------- */

static bool rlog_ok(cl_rlog *l, uint64_t *suppressed) {
  uint64_t now = sl_now_ms();
  if (l->last && now - l->last < LOG_WINDOW_MS) {
    l->suppressed++;
    return false;
  }
  l->last = now;
  *suppressed = l->suppressed;
  l->suppressed = 0;
  return true;
}

static void fifo_push(cl_fifo *q, cl_entry *e) {
  e->next = NULL;
  if (q->tail)
    q->tail->next = e;
  else
    q->head = e;
  q->tail = e;
  q->n++;
}

static cl_entry *fifo_pop(cl_fifo *q) {
  cl_entry *e = q->head;
  if (!e) return NULL;
  q->head = e->next;
  if (!q->head) q->tail = NULL;
  q->n--;
  return e;
}

/* q's entries go in front of into's, in order; q is left empty. */
static void fifo_prepend(cl_fifo *into, cl_fifo *q) {
  if (!q->head) return;
  q->tail->next = into->head;
  if (!into->tail) into->tail = q->tail;
  into->head = q->head;
  into->n += q->n;
  q->head = q->tail = NULL;
  q->n = 0;
}

static size_t fifo_clear(cl_fifo *q) {
  size_t n = q->n;
  cl_entry *e;
  while ((e = fifo_pop(q))) free(e);
  return n;
}

static bool cluster_up(const sl_cluster *cl) {
  return sl_redis_link_up(cl->w) && sl_redis_link_up(cl->r) && cl->positioned;
}

/* ---- appending ------------------------------------------------------------------------- */

/* One XADD's result r (an element of the EXEC reply, or the EXEC error itself). */
static void xadd_done(sl_cluster *cl, const redisReply *r) {
  if (r && r->type != REDIS_REPLY_ERROR && r->type != REDIS_REPLY_NIL) {
    cl->published++;
    return;
  }
  cl->dropped[DROP_REDIS_ERROR]++;
  uint64_t sup;
  if (rlog_ok(&cl->log_err, &sup))
    sl_log_error("cluster (server \"%s\"): XADD to \"%s\" refused: %s; the publish is lost "
                 "(%llu more in the last %d s)",
                 cl->srv->cfg->name, cl->cfg.stream_key,
                 r && r->type == REDIS_REPLY_ERROR ? r->str : "no result", (unsigned long long)sup,
                 LOG_WINDOW_MS / 1000);
}

/* EXEC's reply: one result per XADD of the transaction, in the sent FIFO's order up to the
 * entry marked last; an error (EXECABORT) or nil refuses them all. */
static void exec_cb(sl_redis_link *l, redisReply *r, void *ud) {
  (void)l;
  sl_cluster *cl = ud;
  if (!r) return; /* the link dropped: on_w_down puts the sent entries back */
  bool arr = r->type == REDIS_REPLY_ARRAY;
  for (size_t i = 0;; i++) {
    cl_entry *e = fifo_pop(&cl->sent);
    if (!e) return;
    xadd_done(cl, arr ? (i < r->elements ? r->element[i] : NULL) : r);
    bool last = e->last;
    free(e);
    if (last) return;
  }
}

/* Close the open transaction (EXEC), if any. Called at the end of each loop iteration and
 * before any other command on the write link. */
static void batch_close(sl_cluster *cl) {
  if (!cl->batch_open) return;
  cl->batch_open = false;
  if (!cl->batch_n) { /* nothing was queued after all */
    (void)sl_redis_link_cmd(cl->w, NULL, NULL, "DISCARD");
    return;
  }
  cl->sent.tail->last = true;
  /* not up: on_w_down already put the sent entries back (and closed the batch) */
  (void)sl_redis_link_cmd(cl->w, exec_cb, cl, "EXEC");
}

/* sl_cluster_flush: see cluster.h. */
void sl_cluster_flush(sl_cluster *cl) {
  if (cl) batch_close(cl);
}

/* Queue e's XADD on the write link (up), in this iteration's transaction, and move it to
 * sent. */
static void send_entry(sl_cluster *cl, cl_entry *e) {
  e->last = false;
  if (!cl->batch_open) {
    if (sl_redis_link_cmd(cl->w, NULL, NULL, "MULTI") != 0) {
      fifo_push(&cl->kept, e); /* not up after all: kept for the next connect */
      return;
    }
    cl->batch_open = true;
    cl->batch_n = 0;
  }
  const char *argv[14] = {"XADD",     cl->cfg.stream_key,
                          "MAXLEN",   "~",
                          cl->maxlen, "*",
                          "uid",      cl->uid,
                          "nsp",      e->nsp,
                          "type",     "3",
                          "data",     e->data};
  size_t argl[14];
  for (int i = 0; i < 13; i++) argl[i] = strlen(argv[i]);
  argl[13] = e->dlen;
  /* the reply is QUEUED; its result comes in EXEC's */
  if (sl_redis_link_cmd_argv(cl->w, NULL, NULL, 14, argv, argl) != 0) {
    fifo_push(&cl->kept, e);
    return;
  }
  fifo_push(&cl->sent, e);
  cl->batch_n++;
}

static cl_entry *make_entry(sl_cluster *cl, const sl_bus_pub *p, bool delivered) {
  cl->enc.len = 0;
  sl_cl_out o = {.nsp_json = p->ns->json_path,
                 .topic_json = p->topic->json_name,
                 .payload = p->payload,
                 .len = p->len,
                 .rooms = p->to,
                 .nrooms = p->nto,
                 .seq = ++cl->seq,
                 .delivered = delivered,
                 .key = p->key,
                 .msgid = p->ns->cfg->delivery == SL_AT_LEAST_ONCE ? p->msgid : NULL,
                 .snapshot_set = p->snapshot_set,
                 .snapshot = p->snapshot};
  sl_cl_encode(&cl->enc, &o);
  size_t nl = p->ns->pathlen;
  cl_entry *e = sl_xmalloc(sizeof *e + cl->enc.len + 1 + nl + 1);
  e->seq = o.seq;
  e->dlen = cl->enc.len;
  memcpy(e->data, cl->enc.data, cl->enc.len);
  e->data[cl->enc.len] = 0;
  e->nsp = e->data + cl->enc.len + 1;
  memcpy(e->nsp, p->ns->path, nl + 1);
  return e;
}

/* The bus hook (publish.h): append, or deliver here and keep, or refuse. */
static int bus(void *ud, const sl_bus_pub *p) {
  sl_cluster *cl = ud;
  bool take = cluster_up(cl), wup = sl_redis_link_up(cl->w);
  if (!wup && cl->kept.n >= (size_t)cl->cfg.buffer_max) {
    cl->dropped[DROP_BUFFER_FULL]++;
    uint64_t sup;
    if (rlog_ok(&cl->log_full, &sup))
      sl_log_warn("cluster (server \"%s\"): Redis unreachable and %zu publishes kept "
                  "(bufferMax): publish on %s/%s refused (CLUSTER_UNAVAILABLE; %llu more in the "
                  "last %d s)",
                  cl->srv->cfg->name, cl->kept.n, p->ns->path, p->topic->name,
                  (unsigned long long)sup, LOG_WINDOW_MS / 1000);
    return SL_EFULL;
  }
  cl_entry *e = make_entry(cl, p, !take);
  if (wup)
    send_entry(cl, e);
  else
    fifo_push(&cl->kept, e);
  return take ? SL_BUS_TAKEN : SL_BUS_LOCAL;
}

/* ---- reading --------------------------------------------------------------------------- */

/* Has this (origin uid, seq) been seen? Records it. Entries of one origin arrive in its
 * order, so the highest sequence number seen per origin is enough. */
static bool seen_before(sl_cluster *cl, const char *uid, uint64_t seq) {
  size_t lru = 0;
  for (size_t i = 0; i < SEEN_SLOTS; i++) {
    if (cl->seen[i].used && strcmp(cl->seen[i].uid, uid) == 0) {
      cl->seen[i].used = ++cl->seen_clock;
      if (seq <= cl->seen[i].seq) return true;
      cl->seen[i].seq = seq;
      return false;
    }
    if (cl->seen[i].used < cl->seen[lru].used) lru = i;
  }
  if (strlen(uid) >= sizeof cl->seen[lru].uid) return false;
  strcpy(cl->seen[lru].uid, uid);
  cl->seen[lru].seq = seq;
  cl->seen[lru].used = ++cl->seen_clock;
  return false;
}

static void deliver_entry(sl_cluster *cl, const char *id, const redisReply *fields) {
  size_t nf = fields && fields->type == REDIS_REPLY_ARRAY ? fields->elements : 0;
  const char *fv[32];
  size_t fl[32];
  if (nf > 32) nf = 32; /* the adapter writes 8 values; more is not its format */
  for (size_t i = 0; i < nf; i++) {
    const redisReply *x = fields->element[i];
    fv[i] = x->type == REDIS_REPLY_STRING ? x->str : "";
    fl[i] = x->type == REDIS_REPLY_STRING ? x->len : 0;
  }
  sl_cl_entry e;
  int rc = sl_cl_decode(fv, fl, nf, &e);
  if (rc != SL_CL_OK) {
    cl->bad[rc]++;
    uint64_t sup;
    if (rc == SL_CL_OTHER_TYPE || rc == SL_CL_WITH_ACK)
      sl_log_debug("cluster: entry %s (type %d) skipped: %s", id, e.type, sl_cl_reasons[rc]);
    else if (rlog_ok(&cl->log_bad, &sup))
      sl_log_warn("cluster (server \"%s\"): stream entry %s from \"%s\" skipped: %s (%llu more "
                  "in the last %d s)",
                  cl->srv->cfg->name, id, e.uid ? e.uid : "?", sl_cl_reasons[rc],
                  (unsigned long long)sup, LOG_WINDOW_MS / 1000);
    sl_cl_entry_free(&e);
    return;
  }
  int skip = -1;
  if (e.sluice && seen_before(cl, e.uid, e.seq))
    skip = SKIP_DUPLICATE;
  else if (e.sluice && e.delivered && strcmp(e.uid, cl->uid) == 0)
    skip = SKIP_OWN;
  sl_ns *ns = skip < 0 ? sl_server_find_ns(cl->srv, e.nsp, strlen(e.nsp)) : NULL;
  if (skip < 0 && (!ns || !ns->cfg)) skip = SKIP_UNKNOWN_NAMESPACE;
  if (skip < 0) {
    sl_remote_opts o = {.rooms = (const char *const *)e.rooms,
                        .nrooms = e.nrooms,
                        .except = (const char *const *)e.except,
                        .nexcept = e.nexcept,
                        .key = e.key,
                        .msgid = e.msgid,
                        .offset = id,
                        .snapshot_set = e.snapshot_set,
                        .snapshot = e.snapshot,
                        .snapshot_len = e.snapshot_len,
                        .trusted_json = true};
    int r = sl_publish_remote(cl->gw, ns, e.topic, e.topiclen, e.payload, e.len, &o);
    if (r == 0)
      cl->received++;
    else
      skip = r == SL_ENOENT ? SKIP_UNKNOWN_TOPIC : SKIP_REFUSED;
  }
  if (skip >= 0) {
    cl->skipped[skip]++;
    if (skip != SKIP_OWN && skip != SKIP_DUPLICATE)
      sl_log_debug("cluster: entry %s (%s %s) not delivered: %s", id, e.nsp, e.topic,
                   skip_names[skip]);
  }
  sl_cl_entry_free(&e);
}

static void read_cb(sl_redis_link *l, redisReply *r, void *ud) {
  sl_cluster *cl = ud;
  cl->reading = false;
  if (!r) return; /* dropped: resumed from last_id when the link is back */
  if (r->type == REDIS_REPLY_ERROR) {
    uint64_t sup;
    if (rlog_ok(&cl->log_err, &sup))
      sl_log_error("cluster (server \"%s\"): XREAD on \"%s\" failed: %s; retrying in %d ms",
                   cl->srv->cfg->name, cl->cfg.stream_key, r->str, READ_RETRY_MS);
    cl->read_retry_at = sl_now_ms() + READ_RETRY_MS;
    return;
  }
  size_t n = 0;
  if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1) {
    const redisReply *st = r->element[0];
    if (st->type == REDIS_REPLY_ARRAY && st->elements == 2 &&
        st->element[1]->type == REDIS_REPLY_ARRAY) {
      const redisReply *entries = st->element[1];
      for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *en = entries->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements < 1 ||
            en->element[0]->type != REDIS_REPLY_STRING || en->element[0]->len >= sizeof cl->last_id)
          continue;
        memcpy(cl->last_id, en->element[0]->str, en->element[0]->len + 1);
        cl->read_total++;
        n++;
        if (n == 1) cl->reads++;
        deliver_entry(cl, cl->last_id, en->elements > 1 ? en->element[1] : NULL);
        if (!cl->r) return; /* stopped by what a delivery ran */
      }
    }
  }
  read_next(cl);
}

/* Fields of an XINFO STREAM reply (RESP2: name, value, ...). */
typedef struct xinfo {
  long long length, added;
  bool has_added;
  char first[48], last[48];
} xinfo;

static void xinfo_parse(const redisReply *r, xinfo *x) {
  memset(x, 0, sizeof *x);
  if (r->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const redisReply *k = r->element[i], *v = r->element[i + 1];
    if (k->type != REDIS_REPLY_STRING) continue;
    if (!strcmp(k->str, "length") && v->type == REDIS_REPLY_INTEGER)
      x->length = v->integer;
    else if (!strcmp(k->str, "entries-added") && v->type == REDIS_REPLY_INTEGER) {
      x->added = v->integer;
      x->has_added = true;
    } else if (!strcmp(k->str, "last-generated-id") && v->type == REDIS_REPLY_STRING &&
               v->len < sizeof x->last)
      memcpy(x->last, v->str, v->len + 1);
    else if (!strcmp(k->str, "first-entry") && v->type == REDIS_REPLY_ARRAY && v->elements &&
             v->element[0]->type == REDIS_REPLY_STRING && v->element[0]->len < sizeof x->first)
      memcpy(x->first, v->element[0]->str, v->element[0]->len + 1);
  }
}

static void position_cb(sl_redis_link *l, redisReply *r, void *ud) {
  sl_cluster *cl = ud;
  cl->reading = false;
  if (!r) return;
  xinfo x;
  if (r->type == REDIS_REPLY_ERROR) { /* no stream yet: from the beginning */
    x = (xinfo){0};
    strcpy(x.last, "0-0");
  } else {
    xinfo_parse(r, &x);
    if (!x.last[0]) strcpy(x.last, "0-0");
  }
  strcpy(cl->last_id, x.last);
  cl->base_added = x.added;
  cl->read_total = 0;
  cl->positioned = true;
  cl->last_check = sl_now_ms();
  sl_log_info("cluster (server \"%s\"): reading stream \"%s\" from %s as \"%s\"",
              cl->srv->cfg->name, cl->cfg.stream_key, cl->last_id, cl->uid);
  read_next(cl);
}

static void gap_cb(sl_redis_link *l, redisReply *r, void *ud) {
  sl_cluster *cl = ud;
  if (!r) return;
  xinfo x;
  if (r->type == REDIS_REPLY_ERROR) { /* the stream is gone (deleted, Redis restarted empty) */
    cl->base_added = -(int64_t)cl->read_total;
    return;
  }
  xinfo_parse(r, &x);
  if (!x.has_added) return; /* Redis before 7.0: no count */
  /* entries added after our position and neither read nor counted: still in the stream
   * past last_id (none when we are at the last id, all of it when the stream starts past
   * last_id, at most its length otherwise), or trimmed before we read them */
  int64_t unaccounted = x.added - cl->base_added - (int64_t)cl->read_total;
  bool at_end = strcmp(x.last, cl->last_id) == 0 || x.length == 0;
  int64_t lost = unaccounted - (at_end ? 0 : x.length);
  if (unaccounted < 0) {
    cl->base_added += unaccounted; /* the stream started again (deleted and recreated) */
  } else if (lost > 0) {
    cl->lost += (uint64_t)lost;
    cl->read_total += (uint64_t)lost;
    uint64_t sup;
    if (rlog_ok(&cl->log_gap, &sup))
      sl_log_warn("cluster (server \"%s\"): stream \"%s\" was trimmed past the last entry read "
                  "(%s; the oldest left is %s): %lld entries lost here (maxLen %lld is too small "
                  "for how far this node fell behind)",
                  cl->srv->cfg->name, cl->cfg.stream_key, cl->last_id,
                  x.first[0] ? x.first : "none", (long long)lost, (long long)cl->cfg.max_len);
  }
}

static void read_next(sl_cluster *cl) {
  if (cl->reading || !cl->positioned || !sl_redis_link_up(cl->r)) return;
  uint64_t now = sl_now_ms();
  if (cl->read_retry_at && now < cl->read_retry_at) return; /* the tick resumes */
  cl->read_retry_at = 0;
  /* right before an XREAD, on the same link: its counts match what was read so far */
  if (cl->check_due || now - cl->last_check >= GAP_CHECK_MS) {
    cl->last_check = now;
    cl->check_due = false;
    (void)sl_redis_link_cmd(cl->r, gap_cb, cl, "XINFO STREAM %s", cl->cfg.stream_key);
  }
  if (sl_redis_link_cmd(cl->r, read_cb, cl, "XREAD COUNT %lld BLOCK %lld STREAMS %s %s",
                        (long long)cl->cfg.read_count, (long long)cl->cfg.block_ms,
                        cl->cfg.stream_key, cl->last_id) == 0)
    cl->reading = true;
}

/* ---- links ----------------------------------------------------------------------------- */

static void numsub_cb(sl_redis_link *l, redisReply *r, void *ud) {
  sl_cluster *cl = ud;
  if (!r || r->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i + 1 < r->elements && i / 2 < cl->nnodes; i += 2)
    if (r->element[i + 1]->type == REDIS_REPLY_INTEGER)
      cl->nodes[i / 2] = r->element[i + 1]->integer;
}

static void count_nodes(sl_cluster *cl) {
  if (!sl_redis_link_up(cl->w) || !cl->nnodes) return;
  batch_close(cl);
  cl->last_numsub = sl_now_ms();
  size_t n = 2 + cl->nnodes;
  const char **argv = sl_xcalloc(n, sizeof *argv);
  char **own = sl_xcalloc(cl->nnodes, sizeof *own);
  argv[0] = "PUBSUB";
  argv[1] = "NUMSUB";
  for (size_t i = 0; i < cl->nnodes; i++) {
    sl_sbuf b = {0};
    sl_sbuf_printf(&b, "%s#%s#", cl->cfg.emitter_key, cl->srv->ns[i].path);
    own[i] = b.data;
    argv[2 + i] = own[i];
  }
  (void)sl_redis_link_cmd_argv(cl->w, numsub_cb, cl, (int)n, argv, NULL);
  for (size_t i = 0; i < cl->nnodes; i++) free(own[i]);
  free(own);
  free(argv);
}

static void on_w_up(sl_redis_link *l, void *ud) {
  sl_cluster *cl = ud;
  size_t n = cl->kept.n;
  cl_entry *e;
  while (sl_redis_link_up(cl->w) && (e = fifo_pop(&cl->kept))) send_entry(cl, e);
  if (n)
    sl_log_info("cluster (server \"%s\"): Redis is back: appending %zu publish(es) kept while it "
                "was unreachable",
                cl->srv->cfg->name, n);
  count_nodes(cl);
}

static void on_w_down(sl_redis_link *l, void *ud, const char *reason) {
  sl_cluster *cl = ud;
  cl->reconnects++;
  /* every pending XADD got its NULL reply: they may or may not be in the stream; append them
   * again (same sequence numbers: readers drop a second copy) */
  cl->batch_open = false;
  fifo_prepend(&cl->kept, &cl->sent);
  if (cl->kept.n)
    sl_log_warn("cluster (server \"%s\"): %zu publish(es) kept until Redis is back (bufferMax "
                "%lld)",
                cl->srv->cfg->name, cl->kept.n, (long long)cl->cfg.buffer_max);
}

static void on_r_up(sl_redis_link *l, void *ud) {
  sl_cluster *cl = ud;
  cl->reading = false;
  cl->check_due = true;
  if (!cl->positioned) {
    if (sl_redis_link_cmd(cl->r, position_cb, cl, "XINFO STREAM %s", cl->cfg.stream_key) == 0)
      cl->reading = true;
    return;
  }
  read_next(cl);
}

static void on_r_down(sl_redis_link *l, void *ud, const char *reason) {
  sl_cluster *cl = ud;
  cl->reading = false;
}

static bool is_public_channel(const sl_cluster *cl, const char *ch, size_t len) {
  size_t kl = strlen(cl->cfg.emitter_key);
  if (len < kl + 2 || memcmp(ch, cl->cfg.emitter_key, kl) != 0 || ch[kl] != '#' ||
      ch[len - 1] != '#')
    return false;
  return memchr(ch + kl + 1, '#', len - kl - 2) == NULL; /* <key>#<nsp># exactly */
}

static void sub_cb(sl_redis_link *l, redisReply *r, void *ud) {
  sl_cluster *cl = ud;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
  const redisReply *kind = r->element[0];
  if (kind->type != REDIS_REPLY_STRING) return;
  const redisReply *ch, *data;
  if (!strcmp(kind->str, "message")) {
    ch = r->element[1];
    data = r->element[2];
  } else if (!strcmp(kind->str, "pmessage") && r->elements >= 4) {
    ch = r->element[2];
    data = r->element[3];
    /* the public channel also matches the pattern: it came as "message" already */
    if (ch->type == REDIS_REPLY_STRING && is_public_channel(cl, ch->str, ch->len)) return;
  } else {
    return; /* subscribe confirmations */
  }
  if (ch->type != REDIS_REPLY_STRING || data->type != REDIS_REPLY_STRING) return;
  if (cl->on_msg)
    cl->on_msg(cl->on_msg_ud, cl, ch->str, ch->len, data->str, data->len);
  else
    cl->pubsub_ignored++;
}

static void on_s_up(sl_redis_link *l, void *ud) {
  sl_cluster *cl = ud;
  for (size_t i = 0; i < cl->srv->nns; i++) {
    sl_sbuf b = {0};
    sl_sbuf_printf(&b, "%s#%s#", cl->cfg.emitter_key, cl->srv->ns[i].path);
    const char *argv[2] = {"SUBSCRIBE", b.data};
    (void)sl_redis_link_cmd_argv(cl->s, sub_cb, cl, 2, argv, NULL);
    if (cl->cfg.accept_emitter) {
      sl_sbuf_puts(&b, "*");
      const char *pv[2] = {"PSUBSCRIBE", b.data};
      (void)sl_redis_link_cmd_argv(cl->s, sub_cb, cl, 2, pv, NULL);
    }
    sl_sbuf_free(&b);
  }
}

static void tick_cb(uv_timer_t *t) {
  sl_cluster *cl = t->data;
  uint64_t now = sl_now_ms();
  if (now - cl->last_numsub >= NUMSUB_EVERY_MS) count_nodes(cl);
  if (cl->read_retry_at && now >= cl->read_retry_at) {
    cl->read_retry_at = 0;
    read_next(cl);
  }
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void copy_cfg(sl_cluster_config *d, const sl_cluster_config *s) {
  *d = *s;
  d->redis = sl_xstrdup(s->redis);
  d->stream_key = sl_xstrdup(s->stream_key);
  d->emitter_key = sl_xstrdup(s->emitter_key);
}

/* sl_cluster_start: see cluster.h. */
int sl_cluster_start(sl_server *srv, char *err, size_t errlen) {
  const sl_cluster_config *k = srv->cfg->cluster;
  if (!k || srv->cluster) return 0;
  sl_cluster *cl = sl_xcalloc(1, sizeof *cl);
  if (sl_redis_url_parse(k->redis, &cl->url, err, errlen) != 0) {
    free(cl);
    return SL_ECONFIG;
  }
  cl->srv = srv;
  cl->gw = srv->gw;
  copy_cfg(&cl->cfg, k);
  snprintf(cl->uid, sizeof cl->uid, "sluice-%s-%zu", srv->gw->boot_id,
           (size_t)(srv - srv->gw->servers));
  snprintf(cl->maxlen, sizeof cl->maxlen, "%lld", (long long)k->max_len);
  cl->nnodes = srv->nns;
  cl->nodes = sl_xcalloc(cl->nnodes ? cl->nnodes : 1, sizeof *cl->nodes);
  for (size_t i = 0; i < cl->nnodes; i++) cl->nodes[i] = -1;
  uv_loop_t *loop = srv->gw->loop;
  sl_redis_link_ops w = {on_w_up, on_w_down}, r = {on_r_up, on_r_down}, s = {on_s_up, NULL};
  cl->w = sl_redis_link_new(loop, &cl->url, "cluster", &w, cl);
  cl->r = sl_redis_link_new(loop, &cl->url, "cluster-read", &r, cl);
  cl->s = sl_redis_link_new(loop, &cl->url, "cluster-pubsub", &s, cl);
  sl_redis_link_set_timeout(cl->w, 10000);
  sl_redis_link_set_timeout(cl->r, (uint64_t)k->block_ms + 5000);
  uv_timer_init(loop, &cl->tick);
  cl->tick.data = cl;
  uv_timer_start(&cl->tick, tick_cb, TICK_MS, TICK_MS);
  uv_unref((uv_handle_t *)&cl->tick);
  srv->cluster = cl;
  srv->bus_ud = cl;
  srv->bus = bus;
  sl_log_info("server \"%s\": cluster node \"%s\" on redis://%s:%d/%d, stream \"%s\"",
              srv->cfg->name, cl->uid, cl->url.host, cl->url.port, cl->url.db, cl->cfg.stream_key);
  return 0;
}

static void tick_closed(uv_handle_t *h) {
  sl_cluster *cl = h->data;
  sl_sbuf_free(&cl->enc);
  sl_redis_url_free(&cl->url);
  free(cl->cfg.redis);
  free(cl->cfg.stream_key);
  free(cl->cfg.emitter_key);
  free(cl->nodes);
  free(cl);
}

/* sl_cluster_stop: see cluster.h. */
void sl_cluster_stop(sl_server *srv) {
  sl_cluster *cl = srv->cluster;
  if (!cl) return;
  srv->cluster = NULL;
  srv->bus = NULL;
  srv->bus_ud = NULL;
  sl_redis_link_free(cl->w);
  /* session lookups still waiting: nothing will answer them now */
  while (cl->takes) {
    take_ctx *t = cl->takes;
    take_unlink(t);
    if (t->range_cb)
      t->range_cb(t->ud, SL_ESTATE, NULL, 0);
    else
      t->cb(t->ud, SL_ESTATE, NULL, 0);
    free(t);
  }
  sl_redis_link_free(cl->r);
  sl_redis_link_free(cl->s);
  cl->w = cl->r = cl->s = NULL;
  size_t n = fifo_clear(&cl->sent) + fifo_clear(&cl->kept);
  if (n) {
    cl->dropped[DROP_STOPPED] += n;
    sl_log_warn("cluster (server \"%s\"): stopping with %zu publish(es) not confirmed by Redis: "
                "they may be missing from the stream",
                srv->cfg->name, n);
  }
  uv_timer_stop(&cl->tick);
  uv_close((uv_handle_t *)&cl->tick, tick_closed);
}

/* sl_cluster_reconfigure: see cluster.h. */
int sl_cluster_reconfigure(sl_server *srv, char *err, size_t errlen) {
  sl_cluster *cl = srv->cluster;
  const sl_cluster_config *k = srv->cfg->cluster;
  if (cl && k && sl_cluster_config_equal(&cl->cfg, k)) {
    /* the same bus: keep the links; the namespaces may have changed */
    free(cl->nodes);
    cl->nnodes = srv->nns;
    cl->nodes = sl_xcalloc(cl->nnodes ? cl->nnodes : 1, sizeof *cl->nodes);
    for (size_t i = 0; i < cl->nnodes; i++) cl->nodes[i] = -1;
    if (sl_redis_link_up(cl->s)) on_s_up(cl->s, cl);
    count_nodes(cl);
    return 0;
  }
  if (cl) {
    sl_log_info("server \"%s\": the cluster block changed: reconnecting", srv->cfg->name);
    sl_cluster_stop(srv);
  }
  return sl_cluster_start(srv, err, errlen);
}

/* sl_cluster_set_pubsub_handler: see cluster.h. */
void sl_cluster_set_pubsub_handler(sl_cluster *cl, sl_cluster_msg_fn fn, void *ud) {
  cl->on_msg = fn;
  cl->on_msg_ud = ud;
}

/* ---- recovery sessions ----------------------------------------------------------------- */

#define SESSION_PREFIX "sio:session:"

/* sl_cluster_session_put: see cluster.h. */
int sl_cluster_session_put(sl_cluster *cl, const char *pid, const char *blob, size_t len,
                           uint64_t ttl_ms) {
  if (!sl_redis_link_up(cl->w)) return SL_ESTATE;
  batch_close(cl);
  return sl_redis_link_cmd(cl->w, NULL, NULL, "SET " SESSION_PREFIX "%s %b PX %llu", pid, blob, len,
                           (unsigned long long)ttl_ms);
}

static void take_cb(sl_redis_link *l, redisReply *r, void *ud) {
  (void)l;
  take_ctx *t = ud;
  take_unlink(t);
  if (r && r->type == REDIS_REPLY_STRING)
    t->cb(t->ud, 0, r->str, r->len);
  else if (r && r->type == REDIS_REPLY_NIL)
    t->cb(t->ud, 0, NULL, 0);
  else
    t->cb(t->ud, SL_ESTATE, NULL, 0);
  free(t);
}

/* sl_cluster_session_take: see cluster.h. */
int sl_cluster_session_take(sl_cluster *cl, const char *pid, sl_cluster_session_cb cb, void *ud) {
  if (!sl_redis_link_up(cl->w)) return SL_ESTATE;
  batch_close(cl);
  take_ctx *t = sl_xcalloc(1, sizeof *t);
  t->cb = cb;
  t->ud = ud;
  if (sl_redis_link_cmd(cl->w, take_cb, t, "GETDEL " SESSION_PREFIX "%s", pid) != 0) {
    free(t);
    return SL_ESTATE;
  }
  take_link(cl, t);
  return 0;
}

/* Decode the entries of an XRANGE reply r into a new array (r->elements of them). */
static sl_cluster_entry *range_decode(const redisReply *r) {
  sl_cluster_entry *v = sl_xcalloc(r->elements, sizeof *v);
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *x = r->element[i];
    const redisReply *f = x->type == REDIS_REPLY_ARRAY && x->elements == 2 ? x->element[1] : NULL;
    const redisReply *id = f ? x->element[0] : NULL;
    size_t nf = f && f->type == REDIS_REPLY_ARRAY ? f->elements : 0;
    const char *fv[32];
    size_t fl[32];
    if (nf > 32) nf = 32; /* the adapter writes 8 values; more is not its format */
    for (size_t k = 0; k < nf; k++) {
      fv[k] = f->element[k]->type == REDIS_REPLY_STRING ? f->element[k]->str : "";
      fl[k] = f->element[k]->type == REDIS_REPLY_STRING ? f->element[k]->len : 0;
    }
    if (id && id->type == REDIS_REPLY_STRING && id->len < sizeof v[i].id)
      memcpy(v[i].id, id->str, id->len);
    v[i].rc = v[i].id[0] ? sl_cl_decode(fv, fl, nf, &v[i].e) : SL_CL_MALFORMED;
  }
  return v;
}

static void range_cb(sl_redis_link *l, redisReply *r, void *ud) {
  (void)l;
  take_ctx *t = ud;
  take_unlink(t);
  if (!r || r->type != REDIS_REPLY_ARRAY) {
    t->range_cb(t->ud, SL_ESTATE, NULL, 0);
  } else {
    const redisReply *first = r->elements ? r->element[0] : NULL;
    const redisReply *fid = first && first->type == REDIS_REPLY_ARRAY && first->elements == 2
                                ? first->element[0]
                                : NULL;
    if (!fid || fid->type != REDIS_REPLY_STRING || fid->len != strlen(t->after) ||
        memcmp(fid->str, t->after, fid->len) != 0 || r->elements - 1 > t->count) {
      t->range_cb(t->ud, SL_ENOENT, NULL, 0); /* trimmed, or more than the bound */
    } else {
      sl_cluster_entry *v = range_decode(r);
      t->range_cb(t->ud, 0, v, r->elements);
      for (size_t i = 0; i < r->elements; i++) sl_cl_entry_free(&v[i].e);
      free(v);
    }
  }
  free(t);
}

/* sl_cluster_range: see cluster.h. */
int sl_cluster_range(sl_cluster *cl, const char *after, size_t count, sl_cluster_range_cb cb,
                     void *ud) {
  if (!sl_redis_link_up(cl->w) || strlen(after) >= sizeof((take_ctx *)0)->after) return SL_ESTATE;
  batch_close(cl);
  take_ctx *t = sl_xcalloc(1, sizeof *t);
  t->range_cb = cb;
  t->ud = ud;
  t->count = count;
  memcpy(t->after, after, strlen(after) + 1);
  /* inclusive of `after`: the reply starts with its entry while it is still in the stream
   * (the adapter's check), then at most count entries after it; one more means too many */
  int rc = count ? sl_redis_link_cmd(cl->w, range_cb, t, "XRANGE %s %s + COUNT %llu",
                                     cl->cfg.stream_key, after, (unsigned long long)count + 2)
                 : sl_redis_link_cmd(cl->w, range_cb, t, "XRANGE %s %s %s", cl->cfg.stream_key,
                                     after, after);
  if (rc != 0) {
    free(t);
    return SL_ESTATE;
  }
  take_link(cl, t);
  return 0;
}

sl_server *sl_cluster_server(const sl_cluster *cl) { return cl->srv; }
const char *sl_cluster_uid(const sl_cluster *cl) { return cl->uid; }
const sl_cluster_config *sl_cluster_config_of(const sl_cluster *cl) { return &cl->cfg; }

/* ---- metrics --------------------------------------------------------------------------- */

static void head(sl_sbuf *b, const char *name, const char *type, const char *help) {
  sl_sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void label_path(sl_sbuf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') sl_sbuf_append(b, "\\", 1);
    if (*s == '\n')
      sl_sbuf_puts(b, "\\n");
    else
      sl_sbuf_append(b, s, 1);
  }
}

/* sl_cluster_metrics: see cluster.h. */
void sl_cluster_metrics(const sl_server *srv, sl_sbuf *b) {
  const sl_cluster *cl = srv->cluster;
  if (!cl) return;
  head(b, "sluice_cluster_up", "gauge", "1 when the Redis links of the cluster are up");
  sl_sbuf_printf(b, "sluice_cluster_up %d\n", cluster_up(cl) ? 1 : 0);
  head(b, "sluice_cluster_nodes", "gauge",
       "Nodes subscribed to the namespace's channel (PUBSUB NUMSUB, as the adapter counts)");
  for (size_t i = 0; i < cl->nnodes && i < srv->nns; i++) {
    sl_sbuf_puts(b, "sluice_cluster_nodes{namespace=\"");
    label_path(b, srv->ns[i].path);
    sl_sbuf_printf(b, "\"} %lld\n", (long long)(cl->nodes[i] < 0 ? 0 : cl->nodes[i]));
  }
  head(b, "sluice_cluster_published_total", "counter", "Publishes appended to the stream");
  sl_sbuf_printf(b, "sluice_cluster_published_total %llu\n", (unsigned long long)cl->published);
  head(b, "sluice_cluster_received_total", "counter", "Stream entries delivered by this node");
  sl_sbuf_printf(b, "sluice_cluster_received_total %llu\n", (unsigned long long)cl->received);
  head(b, "sluice_cluster_reads_total", "counter",
       "XREAD replies that carried entries (received / reads: entries per read)");
  sl_sbuf_printf(b, "sluice_cluster_reads_total %llu\n", (unsigned long long)cl->reads);
  head(b, "sluice_cluster_buffered", "gauge",
       "Publishes kept while Redis is unreachable, or sent and not yet confirmed");
  sl_sbuf_printf(b, "sluice_cluster_buffered %zu\n", cl->kept.n + cl->sent.n);
  head(b, "sluice_cluster_dropped_total", "counter", "Publishes that could not be appended");
  for (int i = 0; i < DROP_COUNT; i++)
    sl_sbuf_printf(b, "sluice_cluster_dropped_total{reason=\"%s\"} %llu\n", drop_names[i],
                   (unsigned long long)cl->dropped[i]);
  head(b, "sluice_cluster_entries_lost_total", "counter",
       "Stream entries trimmed before this node read them");
  sl_sbuf_printf(b, "sluice_cluster_entries_lost_total %llu\n", (unsigned long long)cl->lost);
  head(b, "sluice_cluster_skipped_total", "counter", "Stream entries read and not delivered");
  for (int i = 0; i < SKIP_COUNT; i++)
    sl_sbuf_printf(b, "sluice_cluster_skipped_total{reason=\"%s\"} %llu\n", skip_names[i],
                   (unsigned long long)cl->skipped[i]);
  for (int i = 1; i < SL_CL_NREASONS; i++)
    sl_sbuf_printf(b, "sluice_cluster_skipped_total{reason=\"%s\"} %llu\n", sl_cl_reasons[i],
                   (unsigned long long)cl->bad[i]);
  head(b, "sluice_cluster_reconnects_total", "counter", "Times the Redis write link dropped");
  sl_sbuf_printf(b, "sluice_cluster_reconnects_total %llu\n", (unsigned long long)cl->reconnects);
}

/* sl_cluster_stats_json: see cluster.h. */
void sl_cluster_stats_json(const sl_server *srv, cJSON *so) {
  const sl_cluster *cl = srv->cluster;
  if (!cl) return;
  int64_t nodes = 0;
  for (size_t i = 0; i < cl->nnodes; i++)
    if (cl->nodes[i] > nodes) nodes = cl->nodes[i];
  uint64_t dropped = 0;
  for (int i = 0; i < DROP_COUNT; i++) dropped += cl->dropped[i];
  cJSON *o = cJSON_AddObjectToObject(so, "cluster");
  cJSON_AddStringToObject(o, "uid", cl->uid);
  cJSON_AddBoolToObject(o, "up", cluster_up(cl));
  cJSON_AddNumberToObject(o, "nodes", (double)nodes);
  cJSON_AddNumberToObject(o, "published", (double)cl->published);
  cJSON_AddNumberToObject(o, "received", (double)cl->received);
  cJSON_AddNumberToObject(o, "reads", (double)cl->reads);
  cJSON_AddNumberToObject(o, "buffered", (double)(cl->kept.n + cl->sent.n));
  cJSON_AddNumberToObject(o, "dropped", (double)dropped);
  cJSON_AddNumberToObject(o, "entriesLost", (double)cl->lost);
  cJSON_AddNumberToObject(o, "reconnects", (double)cl->reconnects);
  cJSON_AddStringToObject(o, "lastId", cl->last_id);
}
