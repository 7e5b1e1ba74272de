/* lane_spill.c - SPILL_TO_DISK glue between lanes and core/spill.c (lane_spill.h). */
#include <stdlib.h>
#include <string.h>
#include "lane_spill.h"
#include "lane.h"
#include "spill.h"
#include "eio.h"
#include "msg.h"
#include "sl_util.h"

/* A spill write completed: count what reached the disk and what did not. */
static void spill_on_written(sl_spill *sp, void *arg, size_t ok, size_t failed, int err) {
  (void)sp;
  sl_lane *l = arg;
  l->topic->m[SL_M_SPILLED] += ok;
  sl_lane_overflow(l, SL_OV_SPILLED, ok);
  if (failed) {
    sl_lane_overflow(l, SL_OV_SPILL_FAILED, failed);
    sl_log_warn("spill to disk failed for client %s topic %s: %s; %zu message(s) lost, "
                "falling back to REJECT_NEW until the disk accepts writes again",
                l->sock->id, l->topic->name, uv_strerror(err), failed);
  }
  sl_lane_spill_refill(l);
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
      }
    }
    free(d);
  }
  free(recs);
  sl_lane_ready(l);
  if (status >= 0 || n > 0) sl_lane_spill_refill(l); /* no tight retry loop on a read error */
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

/* sl_spill_sweep_server: see lane_spill.h. */
void sl_spill_sweep_server(sl_server *srv) {
  bool any = false;
  for (size_t i = 0; i < srv->cfg->nns; i++) any |= srv->cfg->ns[i].overflow == SL_SPILL_TO_DISK;
  if (!any) return;
  long n = sl_spill_sweep(spill_root(srv));
  if (n > 0)
    sl_log_info("server \"%s\": removed %ld orphaned spill file(s) under %s", srv->cfg->name, n,
                spill_root(srv));
  else if (n < 0)
    sl_log_warn("server \"%s\": cannot sweep spill root %s: %s", srv->cfg->name, spill_root(srv),
                uv_strerror((int)n));
}
