/* recovery.c - connection-state recovery, the delivery half: offsets, the per-namespace
 * history, parking and resuming a session's lanes (recovery.h). */
#include <stdlib.h>
#include <string.h>
#include "recovery.h"
#include "acks.h"
#include "lane.h"
#include "lanes.h"
#include "msg.h"
#include "sl_util.h"

/* One delivery kept for replay. */
typedef struct hist_ent {
  sl_msg *m;   /* a reference */
  sl_topic *t; /* NULL once a reload removed the topic */
  uint64_t n;  /* offset number */
  uint64_t at; /* loop ms when recorded */
  char *to;    /* addressed: nto socket ids back to back (each NUL-terminated), else NULL */
  uint32_t nto;
  uint32_t tid; /* t's id: how t is found again after a reload moved the topics */
} hist_ent;

/* The history of one namespace: a ring of entries in offset order. */
struct sl_history {
  hist_ent *v;
  uint32_t cap, head, n;
  uint64_t bytes;
  uint64_t floor; /* in a cluster: just before the first stream id this node read: it saw
                   * every entry after it, not those before; 0 without a cluster */
};

static hist_ent *ent_at(const struct sl_history *h, uint32_t i) {
  return &h->v[(h->head + i) % h->cap];
}

static size_t ent_bytes(const hist_ent *e) { return sl_msg_frame_len(e->m); }

static void evict_oldest(struct sl_history *h) {
  hist_ent *e = ent_at(h, 0);
  if (e->t && e->t->hist_evicted < e->n) e->t->hist_evicted = e->n;
  h->bytes -= ent_bytes(e);
  sl_msg_unref(e->m);
  free(e->to);
  memset(e, 0, sizeof *e);
  h->head = (h->head + 1) % h->cap;
  h->n--;
}

/* Evict beyond the config's bounds (keep_one: at least the newest entry stays whatever its
 * size, so a delivery larger than historyBytes is still replayable right after it). */
static void evict(sl_ns *ns, bool keep_one) {
  struct sl_history *h = ns->hist;
  const sl_recovery_config *rc = &ns->cfg->recovery;
  uint64_t now = uv_now(ns->srv->gw->loop);
  uint32_t floor = keep_one ? 1 : 0;
  while (h->n > floor &&
         (h->n > (uint64_t)rc->history_size || h->bytes > (uint64_t)rc->history_bytes ||
          ent_at(h, 0)->at + (uint64_t)rc->max_disconnection_ms < now))
    evict_oldest(h);
}

/* sl_recovery_ns_free: see recovery.h. */
void sl_recovery_ns_free(sl_ns *ns) {
  struct sl_history *h = ns->hist;
  if (!h) return;
  while (h->n) evict_oldest(h);
  free(h->v);
  free(h);
  ns->hist = NULL;
}

/* sl_recovery_ns_sync: see recovery.h. */
void sl_recovery_ns_sync(sl_ns *ns) {
  /* a reload may have moved or removed topics (the old array is gone already): entries
   * follow their topic by id, before anything reads them */
  struct sl_history *h = ns->hist;
  for (uint32_t i = 0; h && i < h->n; i++) {
    hist_ent *e = ent_at(h, i);
    e->t = NULL;
    for (size_t k = 0; k < ns->ntopics; k++)
      if (ns->topics[k].tid == e->tid) e->t = &ns->topics[k];
  }
  if (!ns->cfg || !ns->cfg->recovery.enabled) {
    sl_recovery_ns_free(ns);
    return;
  }
  if (!ns->hist) ns->hist = sl_xcalloc(1, sizeof *ns->hist);
  evict(ns, false);
}

/* sl_recovery_next_offset: see recovery.h. */
/* A decimal number of 1..19 digits without a leading zero (except "0" when zero_ok), ending
 * at `end` (or the NUL); NULL when it does not parse, else where it stopped. */
static const char *parse_dec(const char *p, char end, bool zero_ok, uint64_t *v) {
  const char *s = p;
  *v = 0;
  for (; *p && *p != end; p++) {
    if (*p < '0' || *p > '9' || p - s >= 19) return NULL;
    *v = *v * 10 + (uint64_t)(*p - '0');
  }
  if (p == s || (*s == '0' && (p - s > 1 || !zero_ok))) return NULL;
  return p;
}

/* sl_recovery_stream_id: see recovery.h. */
bool sl_recovery_stream_id(const char *s, uint64_t *n) {
  uint64_t ms, seq;
  const char *p = parse_dec(s, '-', true, &ms);
  if (!p || *p != '-' || !(p = parse_dec(p + 1, 0, true, &seq)) || *p) return false;
  if (ms >= (1ull << 44) || seq >= (1ull << 20)) return false;
  *n = ms << 20 | seq;
  return true;
}

/* sl_recovery_next_offset: see recovery.h. */
size_t sl_recovery_next_offset(sl_ns *ns, bool cluster, const char *stream_id, char *out,
                               uint64_t *n) {
  if (cluster) {
    size_t l = stream_id ? strlen(stream_id) : 0;
    uint64_t v;
    if (!l || l >= SL_OFFSET_MAX || !sl_recovery_stream_id(stream_id, &v) || v <= ns->rec_seq)
      return 0;
    if (!ns->hist->floor) ns->hist->floor = v - 1;
    memcpy(out, stream_id, l + 1);
    *n = ns->rec_seq = v;
    return l;
  }
  const char *boot = ns->srv->gw->boot_id;
  size_t b = strlen(boot);
  memcpy(out, boot, b);
  out[b] = '-';
  *n = ++ns->rec_seq;
  size_t k = sl_u64_dec(out + b + 1, *n);
  out[b + 1 + k] = 0;
  return b + 1 + k;
}

/* sl_recovery_msg_offset: see recovery.h. */
size_t sl_recovery_msg_offset(const sl_msg *m, char *out) {
  const char *p = (const char *)sl_msg_packet(m);
  size_t n = m->len;
  if (n < 4 || p[n - 1] != ']' || p[n - 2] != '"') return 0;
  size_t end = n - 2, i = end; /* the offset is the last argument: ,"<offset>"] */
  while (i > 0 && p[i - 1] != '"') {
    char ch = p[i - 1];
    if (!(ch >= '0' && ch <= '9') && ch != '-' && !(ch >= 'a' && ch <= 'z') &&
        !(ch >= 'A' && ch <= 'Z'))
      return 0;
    i--;
  }
  if (i == 0 || end - i == 0 || end - i >= SL_OFFSET_MAX) return 0;
  memcpy(out, p + i, end - i);
  out[end - i] = 0;
  return end - i;
}

/* sl_recovery_gap: see recovery.h. */
void sl_recovery_gap(sl_ns *ns, sl_topic *t) {
  (void)ns;
  t->hist_gap = 1;
}

/* Parse an offset text for ns: this process's "<boot id>-<n>", or a stream entry id (in a
 * cluster), no larger than the last one given out. */
static bool parse_offset(const sl_ns *ns, const char *s, uint64_t *n) {
  const char *boot = ns->srv->gw->boot_id;
  size_t b = strlen(boot);
  uint64_t v;
  if (strncmp(s, boot, b) == 0 && s[b] == '-') {
    const char *p = parse_dec(s + b + 1, 0, false, &v);
    if (!p || *p) return false;
  } else if (!sl_recovery_stream_id(s, &v)) {
    return false;
  }
  if (v > ns->rec_seq) return false;
  *n = v;
  return true;
}

/* sl_recovery_record: see recovery.h. */
void sl_recovery_record(sl_ns *ns, sl_topic *t, sl_msg *m, uint64_t n, const char *to,
                        char *const *route_to, size_t nroute_to) {
  struct sl_history *h = ns->hist;
  if (h->n == h->cap) {
    uint32_t ncap = h->cap ? h->cap * 2 : 64;
    hist_ent *nv = sl_xcalloc(ncap, sizeof *nv);
    for (uint32_t i = 0; i < h->n; i++) nv[i] = *ent_at(h, i);
    free(h->v);
    h->v = nv;
    h->head = 0;
    h->cap = ncap;
  }
  if (t->hist_gap) { /* a delivery before this one was not recorded */
    t->hist_gap = 0;
    if (t->hist_evicted < n - 1) t->hist_evicted = n - 1;
  }
  hist_ent *e = &h->v[(h->head + h->n) % h->cap];
  e->m = sl_msg_ref(m);
  e->t = t;
  e->tid = t->tid;
  e->n = n;
  e->at = uv_now(ns->srv->gw->loop);
  e->to = NULL;
  e->nto = 0;
  if (to || nroute_to) {
    size_t total = 0, cnt = to ? 1 : nroute_to;
    for (size_t i = 0; i < cnt; i++) total += strlen(to ? to : route_to[i]) + 1;
    e->to = sl_xmalloc(total ? total : 1);
    char *p = e->to;
    for (size_t i = 0; i < cnt; i++) {
      const char *id = to ? to : route_to[i];
      size_t l = strlen(id) + 1;
      memcpy(p, id, l);
      p += l;
    }
    e->nto = (uint32_t)cnt;
  }
  h->n++;
  h->bytes += ent_bytes(e);
  evict(ns, true);
}

/* sl_recovery_park: see recovery.h. */
void sl_recovery_park(sl_socket *sock) {
  for (sl_lane *l = sock->lanes; l; l = l->next) {
    sl_lane_detach(l);
    sl_acks_park(l);
  }
}

static uint64_t lane_from(const sl_lane *l, uint64_t from) {
  uint64_t sub = sl_lane_sub_from(l);
  return sub > from ? sub : from;
}

/* sl_recovery_check: see recovery.h. */
int sl_recovery_check(const sl_socket *sock, const char *offset, uint64_t *from) {
  const sl_ns *ns = sock->ns;
  if (!ns->hist) return SL_REC_EXPIRED;
  uint64_t x = 0;
  if (offset && !parse_offset(ns, offset, &x)) return SL_REC_EXPIRED;
  for (const sl_lane *l = sock->lanes; l; l = l->next)
    if (l->rebuilt && (!ns->hist->floor || lane_from(l, x) < ns->hist->floor))
      return SL_REC_EXPIRED; /* what this node saw does not reach back to the offset */
  for (const sl_lane *l = sock->lanes; l; l = l->next)
    if (l->topic->hist_gap || l->topic->hist_evicted > lane_from(l, x)) return SL_REC_EXPIRED;
  *from = x;
  return SL_REC_RECOVERED;
}

static bool addressed_to(const hist_ent *e, const char *id) {
  const char *p = e->to;
  for (uint32_t i = 0; i < e->nto; i++) {
    if (strcmp(p, id) == 0) return true;
    p += strlen(p) + 1;
  }
  return false;
}

/* What the lanes of a socket held when it was parked (pending or awaiting an ack), which the
 * replay must not offer twice: one array for all of them, taken before anything is offered
 * (the replay's own offers need no check: each history entry is offered once). */
typedef struct held_set {
  const sl_msg **v;
  size_t n;
} held_set;

static void held_collect(const sl_socket *sock, held_set *h) {
  size_t n = 0;
  for (const sl_lane *l = sock->lanes; l; l = l->next) n += (size_t)l->qn + l->ninfl;
  h->v = n ? sl_xmalloc(n * sizeof *h->v) : NULL;
  h->n = 0;
  for (const sl_lane *l = sock->lanes; l; l = l->next) {
    for (uint32_t i = 0; i < l->qn; i++) h->v[h->n++] = sl_lane_at(l, i);
    for (uint32_t i = 0; i < l->ninfl; i++) h->v[h->n++] = l->infl[i]->m;
  }
}

static bool held_has(const held_set *h, const sl_msg *m) {
  for (size_t i = 0; i < h->n; i++)
    if (h->v[i] == m) return true;
  return false;
}

/* The first entry with an offset above x (h->n when none). */
static uint32_t first_after(const struct sl_history *h, uint64_t x) {
  uint32_t lo = 0, hi = h->n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (ent_at(h, mid)->n <= x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* sl_recovery_resume: see recovery.h. */
uint64_t sl_recovery_resume(sl_socket *sock, uint64_t from) {
  sl_ns *ns = sock->ns;
  uint64_t replayed = 0, lowest = UINT64_MAX;
  for (sl_lane *l = sock->lanes; l; l = l->next) {
    sl_lane_attach(l);
    ns->resent_inflight += sl_acks_resume(l);
    uint64_t f = lane_from(l, from);
    if (f < lowest) lowest = f;
  }
  struct sl_history *h = ns->hist;
  if (h && sock->lanes) {
    held_set held;
    held_collect(sock, &held);
    for (uint32_t i = first_after(h, lowest); i < h->n; i++) {
      hist_ent *e = ent_at(h, i);
      if (!e->t) continue;
      sl_lane *l = sl_lane_of(sock, e->t);
      if (!l || e->n <= lane_from(l, from)) continue;
      if (e->nto && !addressed_to(e, sock->id)) continue;
      if (held.n && held_has(&held, e->m)) continue;
      sl_lane_offer(l, e->m);
      replayed++;
    }
    free(held.v);
  }
  for (sl_lane *l = sock->lanes; l; l = l->next) sl_lane_ready(l);
  ns->replayed += replayed;
  return replayed;
}

/* sl_recovery_history_len: see recovery.h. */
uint64_t sl_recovery_history_len(const sl_ns *ns) { return ns->hist ? ns->hist->n : 0; }

/* sl_recovery_history_bytes: see recovery.h. */
uint64_t sl_recovery_history_bytes(const sl_ns *ns) { return ns->hist ? ns->hist->bytes : 0; }
