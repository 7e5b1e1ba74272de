/* lane_spill.c - SPILL_TO_DISK glue between lanes and core/spill.c (lane_spill.h). */
#include <stdlib.h>
#include <string.h>
#include "lane_spill.h"
#include "lane.h"
#include "spill.h"
#include "eio.h"
#include "msg.h"
#include "sl_util.h"
#include "ledger.h"
#include <errno.h>
#include <sys/stat.h>

/* A spill write completed: count what reached the disk and what did not. */
static void spill_on_written(sl_spill *sp, void *arg, size_t ok, size_t failed, int err) {
  (void)sp;
  sl_lane *l = arg;
  l->topic->m[SL_M_SPILLED] += ok;
  sl_lane_overflow(l, SL_OV_SPILLED, ok);
  if (failed) {
    sl_lane_overflow(l, SL_OV_SPILL_FAILED, failed);
    l->topic->lost[SL_LOST_SPILL_FAILED] += failed;
    sl_log_warn("spill to disk failed for client %s topic %s: %s; %zu message(s) lost, "
                "falling back to REJECT_NEW until the disk accepts writes again",
                l->sock->id, l->topic->name, uv_strerror(err), failed);
  }
  sl_lane_spill_refill(l);
  sl_lane_held_sync(l);
}

/* A spill read completed: push the records back, oldest first, and keep refilling. */
static void spill_on_read(sl_spill *sp, void *arg, sl_spill_rec *recs, size_t n, size_t corrupt,
                          int status) {
  (void)sp;
  sl_lane *l = arg;
  l->refilling = 0;
  if (corrupt) {
    l->topic->spill_corrupt += corrupt;
    sl_log_warn("spill for client %s topic %s: skipped %zu corrupt record(s)", l->sock->id,
                l->topic->name, corrupt);
  }
  if (status < 0) sl_log_warn("spill read failed: %s", uv_strerror(status));
  for (size_t i = 0; i < n; i++) {
    uint8_t *d = recs[i].data;
    size_t len = recs[i].len;
    if (len >= 6) {
      uint32_t est;
      uint16_t idl;
      memcpy(&est, d, 4);
      memcpy(&idl, d + 4, 2);
      if ((size_t)6 + idl <= len) {
        size_t pl = len - 6 - idl;
        sl_msg *m = sl_msg_new(pl, SL_MK_DELIVERY);
        memcpy(sl_msg_packet(m), d + 6 + idl, pl);
        sl_msg_frame_finish(m);
        m->est_bytes = est;
        if (idl) m->msgid = sl_xstrndup((const char *)d + 6, idl);
        sl_lane_push(l, m);
        sl_msg_unref(m);
        l->topic->spill_read++;
      } else {
        l->topic->spill_corrupt++;
      }
    } else {
      l->topic->spill_corrupt++; /* a good CRC over bytes we did not write: count, not lose */
    }
    free(d);
  }
  free(recs);
  sl_lane_ready(l);
  if (status >= 0 || n > 0) sl_lane_spill_refill(l); /* no tight retry loop on a read error */
  sl_lane_held_sync(l);
}

static const sl_spill_callbacks spill_cbs = {spill_on_written, spill_on_read};

static void path_segment(sl_sbuf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (strchr("\\/:\"*?<>|", c) || (unsigned char)c < 0x20) c = '_';
    sl_sbuf_append(b, &c, 1);
  }
}

static const char *spill_root(const sl_server *srv) {
  return srv->cfg->spill_root ? srv->cfg->spill_root : ".streamfence-spill";
}

/* The lane's spill, opened on first use (NULL when it cannot be opened). */
static sl_spill *spill_of(sl_lane *l) {
  if (l->spill) return l->spill;
  sl_server *srv = l->topic->ns->srv;
  sl_sbuf b = {0};
  sl_sbuf_puts(&b, spill_root(srv));
  const char *p = l->topic->ns->path;
  while (*p) {
    while (*p == '/') p++;
    size_t n = strcspn(p, "/");
    if (n) {
      sl_sbuf_puts(&b, "/");
      path_segment(&b, p, n);
    }
    p += n;
  }
  sl_sbuf_puts(&b, "/");
  path_segment(&b, l->sock->id, strlen(l->sock->id));
  sl_sbuf_puts(&b, "/");
  path_segment(&b, l->topic->name, strlen(l->topic->name));
  sl_sbuf_append(&b, "", 1);
  l->spill = sl_spill_open(sl_lane_gw(l)->loop, b.data, &spill_cbs, l);
  sl_sbuf_free(&b);
  return l->spill;
}

/* sl_lane_spill_append: see lane_spill.h. */
void sl_lane_spill_append(sl_lane *l, sl_msg *m) {
  sl_spill *sp = spill_of(l);
  if (sp && sl_spill_failed(sp) && sl_spill_count(sp) == 0) sl_spill_reset(sp);
  size_t idl = m->msgid ? strlen(m->msgid) : 0;
  size_t len = 6 + idl + m->len;
  uint8_t stackbuf[4096];
  uint8_t *rec = len <= sizeof stackbuf ? stackbuf : malloc(len);
  int r = UV_ENOMEM;
  if (rec && sp) {
    uint32_t est = m->est_bytes;
    uint16_t il = (uint16_t)idl;
    memcpy(rec, &est, 4);
    memcpy(rec + 4, &il, 2);
    if (idl) memcpy(rec + 6, m->msgid, idl);
    memcpy(rec + 6 + idl, sl_msg_packet(m), m->len);
    r = sl_spill_append(sp, rec, len);
  }
  if (rec != stackbuf) free(rec);
  if (r < 0) {
    /* REJECT_NEW fallback: counted as lost, never as spilled. */
    sl_lane_overflow(l, SL_OV_SPILL_FAILED, 1);
    l->topic->lost[SL_LOST_SPILL_FAILED]++;
    if (!l->spill_failed_logged) {
      l->spill_failed_logged = 1;
      sl_log_warn("spill to disk unavailable for client %s topic %s (%s): rejecting new "
                  "messages for this lane while it lasts",
                  l->sock->id, l->topic->name, uv_strerror(r));
    }
  }
}

/* sl_lane_spill_refill: see lane_spill.h. FIFO: only the oldest records come back. */
void sl_lane_spill_refill(sl_lane *l) {
  if (!l->spill || l->refilling || sl_spill_count(l->spill) == 0) return;
  const sl_ns_config *cfg = sl_lane_cfg(l);
  uint64_t cnt = sl_lane_count(l);
  if (cnt * 2 > (uint64_t)cfg->max_queued_msgs) return;
  uint64_t room = (uint64_t)cfg->max_queued_msgs - cnt;
  uint64_t room_bytes = (uint64_t)cfg->max_queued_bytes - l->qbytes;
  if (!room || !room_bytes) return;
  if (sl_spill_read(l->spill, (size_t)room, (size_t)room_bytes) == 0) l->refilling = 1;
}

/* sl_lane_spill_close: see lane_spill.h. */
void sl_lane_spill_close(sl_lane *l) {
  if (!l->spill) return;
  sl_spill_close(l->spill, true, spill_root(l->topic->ns->srv));
  l->spill = NULL;
}

/* ---- startup: what an earlier process left ------------------------------------------ */

/* One (namespace, topic) an earlier process held deliveries for. */
typedef struct prev_loss {
  char *ns, *topic; /* as in the ledger, or from the spill path (sanitized names) */
  uint64_t held;    /* the ledger's count: queued + in flight + spilled */
  uint64_t spilled; /* complete records found in its spill files */
} prev_loss;

typedef struct sweep_ctx {
  sl_server *srv;
  prev_loss *v;
  size_t n, cap;
  uint64_t unplaced; /* spilled records under a path that names no namespace/topic */
} sweep_ctx;

static prev_loss *loss_of(sweep_ctx *x, const char *ns, const char *topic) {
  for (size_t i = 0; i < x->n; i++)
    if (strcmp(x->v[i].ns, ns) == 0 && strcmp(x->v[i].topic, topic) == 0) return &x->v[i];
  if (x->n == x->cap) {
    x->cap = x->cap ? x->cap * 2 : 8;
    x->v = sl_xrealloc(x->v, x->cap * sizeof *x->v);
  }
  x->v[x->n] = (prev_loss){sl_xstrdup(ns), sl_xstrdup(topic), 0, 0};
  return &x->v[x->n++];
}

static void on_prev_ledger(void *arg, const char *ns, const char *topic, uint64_t held) {
  loss_of(arg, ns, topic)->held += held;
}

/* name as path_segment writes it (so a spill directory can be matched to a topic). */
static bool same_segment(const char *name, const char *seg, size_t n) {
  sl_sbuf b = {0};
  path_segment(&b, name, strlen(name));
  bool eq = b.len == n && (n == 0 || memcmp(b.data, seg, n) == 0);
  sl_sbuf_free(&b);
  return eq;
}

/* The namespace whose path the directory segments [rel, rel+n) spell, or NULL. */
static sl_ns *ns_of_dir(sl_server *srv, const char *rel, size_t n) {
  for (size_t i = 0; i < srv->nns; i++) {
    const char *p = srv->ns[i].path, *d = rel, *end = rel + n;
    bool ok = true;
    while (*p && ok) {
      while (*p == '/') p++;
      size_t k = strcspn(p, "/");
      if (!k) break;
      size_t dk = strcspn(d, "/");
      if (d + dk > end) dk = (size_t)(end - d);
      sl_sbuf b = {0};
      path_segment(&b, p, k);
      ok = d < end && b.len == dk && memcmp(b.data, d, dk) == 0;
      sl_sbuf_free(&b);
      d += dk;
      if (d < end && *d == '/') d++;
      p += k;
    }
    if (ok && d >= end) return &srv->ns[i];
  }
  return NULL;
}

/* A directory of segment files an earlier process left: <ns segments>/<client id>/<topic>. */
static void on_orphans(void *arg, const char *rel, const sl_spill_orphans *f) {
  sweep_ctx *x = arg;
  sl_server *srv = x->srv;
  const char *topic = strrchr(rel, '/');
  const char *sid = NULL;
  if (topic) {
    sid = topic;
    while (sid > rel && sid[-1] != '/') sid--;
  }
  sl_ns *ns = NULL;
  sl_topic *t = NULL;
  if (topic && sid) {
    size_t nsn = sid > rel ? (size_t)(sid - rel - 1) : 0;
    ns = ns_of_dir(srv, rel, nsn);
    for (size_t i = 0; ns && i < ns->ntopics && !t; i++)
      if (same_segment(ns->topics[i].name, topic + 1, strlen(topic + 1))) t = &ns->topics[i];
  }
  sl_log_warn("server \"%s\": %zu spilled message(s) of a previous process in %s/%s (%zu "
              "file(s), %llu bytes, %zu corrupt unit(s)): undeliverable, counted as lost "
              "(reason restart) and removed",
              srv->cfg->name, f->records, spill_root(srv), rel, f->files,
              (unsigned long long)f->bytes, f->corrupt);
  if (t)
    loss_of(x, ns->path, t->name)->spilled += f->records;
  else
    x->unplaced += f->records;
}

/* mkdir -p root (mode 0700). Returns 0 or a negative errno. */
static int mkdir_root(const char *root) {
  char *p = sl_xstrdup(root);
  int rc = 0;
  for (char *q = p + 1;; q++) {
    if (*q != '/' && *q != '\0') continue;
    char c = *q;
    *q = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) rc = -errno;
    *q = c;
    if (!c) break;
  }
  struct stat st;
  if (rc == 0 && (stat(root, &st) != 0 || !S_ISDIR(st.st_mode))) rc = UV_ENOTDIR;
  free(p);
  return rc;
}

/* The path of the server's crash ledger (malloc'd). */
static char *ledger_path(sl_server *srv) {
  sl_sbuf b = {0};
  sl_sbuf_puts(&b, spill_root(srv));
  sl_sbuf_puts(&b, "/ledger-");
  path_segment(&b, srv->cfg->name, strlen(srv->cfg->name));
  sl_sbuf_puts(&b, ".bin");
  sl_sbuf_append(&b, "", 1);
  return b.data;
}

/* sl_spill_sweep_server: see lane_spill.h. What the previous process held at its end is
 * known twice: the crash ledger's count per topic (queued, in flight and spilled), and the
 * complete records in its spill files. The larger of the two is counted as lost (the files
 * are a part of the ledger's count; the files alone serve when the ledger is missing). */
void sl_spill_sweep_server(sl_server *srv) {
  bool any = false;
  for (size_t i = 0; i < srv->cfg->nns; i++) any |= srv->cfg->ns[i].overflow == SL_SPILL_TO_DISK;
  if (!any) return;
  sweep_ctx x = {.srv = srv};
  const char *root = spill_root(srv);
  int r = mkdir_root(root);
  char *lpath = ledger_path(srv);
  size_t bad = 0;
  int err = 0;
  /* a slot per topic, twice over for topics a reload adds */
  size_t ntopics = 0;
  for (size_t i = 0; i < srv->cfg->nns; i++) ntopics += srv->cfg->ns[i].ntopics;
  if (r == 0)
    srv->ledger = sl_ledger_open(lpath, 2 * ntopics + 16, on_prev_ledger, &x, &bad, &err);
  else
    err = r;
  if (!srv->ledger)
    sl_log_warn("server \"%s\": no crash ledger at %s (%s): deliveries held in memory at a "
                "crash will not be counted after a restart",
                srv->cfg->name, lpath, uv_strerror(err));
  if (bad)
    sl_log_warn("server \"%s\": crash ledger %s: %zu corrupt slot(s) skipped", srv->cfg->name,
                lpath, bad);
  free(lpath);
  long n = sl_spill_sweep(root, on_orphans, &x);
  if (n > 0)
    sl_log_info("server \"%s\": removed %ld orphaned spill file(s) under %s", srv->cfg->name, n,
                root);
  else if (n < 0)
    sl_log_warn("server \"%s\": cannot sweep spill root %s: %s", srv->cfg->name, root,
                uv_strerror((int)n));
  uint64_t total = x.unplaced;
  for (size_t i = 0; i < x.n; i++) {
    prev_loss *p = &x.v[i];
    uint64_t lost = p->held > p->spilled ? p->held : p->spilled;
    total += lost;
    sl_topic *t = NULL;
    for (size_t j = 0; j < srv->nns && !t; j++) {
      if (strcmp(srv->ns[j].path, p->ns) != 0) continue;
      for (size_t k = 0; k < srv->ns[j].ntopics && !t; k++)
        if (strcmp(srv->ns[j].topics[k].name, p->topic) == 0) t = &srv->ns[j].topics[k];
    }
    sl_log_warn("server \"%s\": the previous process ended holding %llu undelivered "
                "message(s) for namespace %s topic %s (%llu of them spilled to disk): lost, "
                "counted in sluice_messages_lost_total{reason=\"restart\"}",
                srv->cfg->name, (unsigned long long)lost, p->ns, p->topic,
                (unsigned long long)p->spilled);
    if (t)
      t->lost[SL_LOST_RESTART] += lost;
    else
      srv->lost_restart_unlabelled += lost;
    free(p->ns);
    free(p->topic);
  }
  srv->lost_restart_unlabelled += x.unplaced;
  free(x.v);
  if (total)
    sl_log_warn("server \"%s\": %llu message(s) accepted by the previous process were never "
                "delivered (it did not stop cleanly)",
                srv->cfg->name, (unsigned long long)total);
}
