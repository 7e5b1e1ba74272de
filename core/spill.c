/* spill.c - per-lane spill files: a FIFO of records in segment files, all I/O on the pool.
 *
 * Threading. Every disk operation runs in a uv_queue_work job; a spill has at most one job in
 * flight (sp->in_flight), so the job may use the "disk state" below without locks. The loop
 * thread touches the disk state only while no job is in flight; the threadpool's queue gives
 * the needed happens-before in both directions. Results travel back in sp->w / sp->r and are
 * applied to the loop-side counters in after_job, which is also the only place callbacks fire.
 *
 * Durability. A spill is an overflow buffer for memory, not storage: every lane dies with the
 * process and orphans are swept at start. So nothing is fsync'ed: the reader is the same
 * process and sees the page cache. What matters is that a record is either complete or not
 * visible: a write job publishes a segment's new end (and record count) only after the bytes
 * of whole records were accepted by write(2); a torn tail left by a failed write lies past the
 * published end, is never read, and the next write after sl_spill_reset starts a new segment.
 *
 * Corruption. The reader trusts nothing it reads, only what it remembers having written (the
 * segment list with each segment's end and record count): it never reads past a segment's
 * published end, and every record it gives up on is subtracted from the count. A bad CRC
 * skips one record; an impossible length, a truncated file, a missing file or a bad header
 * abandons the rest of the segment. Either way the read position moves forward, so a corrupt
 * spill drains to zero instead of spinning (StreamFenceJs bug B4). */
#include "spill.h"
#include "sl_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#define SEG_HDR_BYTES 16u /* "SLSPILL1" + u32 version + u32 read mark */
#define SEG_MARK_OFF 12u  /* u32: records before this offset were read back (0: none) */
#define REC_HDR_BYTES 8u  /* u32 length + u32 CRC32 */
#define SEG_VERSION 1u
#define READ_BUF_BYTES (64u * 1024)
#define SWEEP_MAX_DEPTH 64
#if defined(IOV_MAX) && IOV_MAX < 1024
#define WRITE_IOVS IOV_MAX
#else
#define WRITE_IOVS 1024
#endif

static const char seg_magic[8] = {'S', 'L', 'S', 'P', 'I', 'L', 'L', '1'};

enum { JOB_NONE = 0, JOB_WRITE, JOB_READ, JOB_CLOSE };

/* One queued append: the record header is filled in by the write job (CRC off the loop). */
typedef struct spill_node {
  struct spill_node *next;
  size_t len;
  uint8_t hdr[REC_HDR_BYTES];
  uint8_t data[];
} spill_node;

/* What the spill remembers about one segment file it wrote. */
typedef struct spill_seg {
  uint64_t seq;
  uint64_t size; /* bytes in the file, a torn tail after a failed write included */
  uint64_t end;  /* end of the last complete record: readers never look past it */
  size_t nrec;   /* complete records in the file */
  size_t nread;  /* records consumed: delivered, skipped or abandoned */
} spill_seg;

struct sl_spill {
  /* read-only after sl_spill_open */
  uv_loop_t *loop;
  sl_spill_callbacks cb;
  void *arg;
  char *dir;

  /* loop-thread state */
  spill_node *q_head, *q_tail; /* appends not yet handed to a write job */
  size_t q_n;
  size_t count;    /* appended and not yet consumed (see sl_spill_count) */
  size_t readable; /* written completely and not yet consumed */
  uint64_t disk_bytes;
  size_t seg_bytes;
  int err; /* sticky write error, 0 when healthy */
  bool read_wanted;
  size_t want_records, want_bytes;
  bool in_flight, in_cb, closing, remove_files;
  int kind, last_kind;
  char *stop_at;

  /* the job slot: filled by the loop before uv_queue_work, read back in after_job */
  uv_work_t work;
  struct {
    spill_node *head; /* owned (and freed) by the job */
    size_t n, seg_bytes, ok, failed;
    uint64_t added;
    int err;
  } w;
  struct {
    size_t max_records, max_bytes;
    sl_spill_rec *recs;
    size_t n, cap, corrupt, consumed;
    uint64_t freed;
    int status;
  } r;

  /* disk state: owned by the job in flight (or by the loop while none is) */
  bool dir_made;
  bool wbroken; /* the write segment has a torn tail: start a new one */
  int wfd, rfd; /* wfd: last entry of segs; rfd: segs[0] at offset roff */
  uint64_t roff;
  uint64_t next_seq;
  spill_seg *segs;
  size_t nsegs, segs_cap;
  char *path; /* scratch for segment paths */
  size_t path_cap;
  uint8_t *rbuf; /* read job only: window [rbuf_off, rbuf_off + rbuf_len) of segs[0] */
  uint64_t rbuf_off;
  size_t rbuf_len;
};

/* ---- small helpers -------------------------------------------------------------------- */

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t rec_crc(const uint8_t *p, size_t n) {
  return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n); /* n <= SL_SPILL_MAX_RECORD */
}

/* The path of segment seq in sp->path (job side only). */
static const char *seg_path(sl_spill *sp, uint64_t seq) {
  snprintf(sp->path, sp->path_cap, "%s/seg-%016llx.spill", sp->dir, (unsigned long long)seq);
  return sp->path;
}

static void free_nodes(spill_node *n) {
  while (n) {
    spill_node *next = n->next;
    free(n);
    n = next;
  }
}

/* Transient errors leave the read position where it is (the owner may retry later); any
 * other read error means the bytes are gone and the segment is abandoned. */
static bool transient(int err) {
  return err == UV_ENOMEM || err == UV_EMFILE || err == UV_ENFILE || err == UV_EINTR;
}

/* write(2) all of iov, resuming after short writes. *done gets the bytes written, also on
 * error. Returns 0 or a negative errno. */
static int write_iov(int fd, struct iovec *iov, int cnt, uint64_t *done) {
  *done = 0;
  while (cnt > 0) {
    ssize_t k = writev(fd, iov, cnt);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (k == 0) return UV_EIO; /* no progress and no error: do not spin */
    *done += (uint64_t)k;
    size_t left = (size_t)k;
    while (cnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0) {
      iov->iov_base = (char *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

/* pread(2) up to n bytes at off, resuming after short reads; stops at EOF. Returns the
 * bytes read or a negative errno. */
static ssize_t read_at(int fd, void *buf, size_t n, uint64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
    if (k < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (k == 0) break;
    got += (size_t)k;
  }
  return (ssize_t)got;
}

/* mkdir -p with mode 0700 for the parts that do not exist. Returns 0 or a negative errno. */
static int mkdir_p(const char *dir) {
  size_t n = strlen(dir);
  char *p = malloc(n + 1);
  if (!p) return UV_ENOMEM;
  memcpy(p, dir, n + 1);
  int rc = 0;
  for (size_t i = 1; i <= n && rc == 0; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    char c = p[i];
    p[i] = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) rc = -errno;
    p[i] = c;
  }
  if (rc == 0) {
    struct stat st;
    if (stat(dir, &st) != 0)
      rc = -errno;
    else if (!S_ISDIR(st.st_mode))
      rc = UV_ENOTDIR;
  }
  free(p);
  return rc;
}

/* ---- write job ------------------------------------------------------------------------ */

/* Create segment next_seq as the write segment. Returns 0 or a negative errno (then no file
 * is left behind). */
static int seg_create(sl_spill *sp) {
  uint64_t seq = sp->next_seq;
  const char *path = seg_path(sp, seq);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  uint8_t hdr[SEG_HDR_BYTES];
  memcpy(hdr, seg_magic, sizeof seg_magic);
  put_le32(hdr + 8, SEG_VERSION);
  put_le32(hdr + 12, 0);
  struct iovec iov = {hdr, sizeof hdr};
  uint64_t done;
  int rc = write_iov(fd, &iov, 1, &done);
  if (rc != 0) {
    close(fd);
    unlink(path);
    return rc;
  }
  if (sp->nsegs == sp->segs_cap) {
    sp->segs_cap = sp->segs_cap ? sp->segs_cap * 2 : 8;
    sp->segs = sl_xrealloc(sp->segs, sp->segs_cap * sizeof *sp->segs);
  }
  sp->segs[sp->nsegs++] = (spill_seg){seq, SEG_HDR_BYTES, SEG_HDR_BYTES, 0, 0};
  sp->next_seq++;
  sp->wfd = fd;
  sp->wbroken = false;
  sp->w.added += SEG_HDR_BYTES;
  return 0;
}

/* Stop appending to the write segment (it stays readable). */
static void seg_seal(sl_spill *sp) {
  if (sp->wfd >= 0) close(sp->wfd);
  sp->wfd = -1;
}

/* Write the records of sp->w.head in order, rotating segments at w.seg_bytes; each batch
 * that fits a segment is one writev (or a few, past WRITE_IOVS). Stops at the first error:
 * the whole records before it count as ok, the rest as failed. Frees the nodes. */
static void job_write(sl_spill *sp) {
  spill_node *n = sp->w.head;
  struct iovec iov[WRITE_IOVS];
  int err = 0;

  if (!sp->dir_made) {
    err = mkdir_p(sp->dir);
    if (err == 0) sp->dir_made = true;
  }
  while (n && err == 0) {
    uint64_t need = REC_HDR_BYTES + (uint64_t)n->len;
    spill_seg *s = sp->wfd >= 0 ? &sp->segs[sp->nsegs - 1] : NULL;
    if (s && (sp->wbroken || (s->nrec > 0 && s->size + need > sp->w.seg_bytes))) {
      seg_seal(sp);
      s = NULL;
    }
    if (!s) {
      err = seg_create(sp);
      if (err != 0) break;
      s = &sp->segs[sp->nsegs - 1];
    }
    /* Gather the records that fit this segment (the first always does: it is alone or fits). */
    spill_node *first = n;
    int cnt = 0;
    size_t k = 0;
    uint64_t bytes = 0;
    while (n && cnt + 2 <= WRITE_IOVS) {
      need = REC_HDR_BYTES + (uint64_t)n->len;
      if (k > 0 && s->size + bytes + need > sp->w.seg_bytes) break;
      put_le32(n->hdr, (uint32_t)n->len);
      put_le32(n->hdr + 4, rec_crc(n->data, n->len));
      iov[cnt++] = (struct iovec){n->hdr, REC_HDR_BYTES};
      if (n->len > 0) iov[cnt++] = (struct iovec){n->data, n->len};
      bytes += need;
      k++;
      n = n->next;
    }
    uint64_t done = 0;
    err = write_iov(sp->wfd, iov, cnt, &done);
    s->size += done;
    sp->w.added += done;
    if (err == 0) {
      s->end = s->size;
      s->nrec += k;
      sp->w.ok += k;
      continue;
    }
    /* Count the whole records among the bytes that made it; the rest is a torn tail. */
    for (spill_node *m = first; m != n; m = m->next) {
      uint64_t m_bytes = REC_HDR_BYTES + (uint64_t)m->len;
      if (done < m_bytes) break;
      done -= m_bytes;
      s->end += m_bytes;
      s->nrec++;
      sp->w.ok++;
    }
    sp->wbroken = true;
  }
  if (err != 0) {
    sp->w.err = err;
    sp->w.failed = sp->w.n - sp->w.ok;
    if (err == UV_ENOENT) sp->dir_made = false; /* removed under us: make it again next time */
  }
  free_nodes(sp->w.head);
  sp->w.head = NULL;
}

/* ---- read job ------------------------------------------------------------------------- */

/* Forget segs[0]: close its descriptors and unlink it (it is fully consumed or abandoned). */
static void seg_drop_head(sl_spill *sp) {
  spill_seg *s = &sp->segs[0];
  if (sp->rfd >= 0) close(sp->rfd);
  sp->rfd = -1;
  sp->rbuf_len = 0;
  if (sp->nsegs == 1) seg_seal(sp); /* the write segment, drained: the next write starts anew */
  unlink(seg_path(sp, s->seq));
  sp->r.freed += s->size;
  sp->nsegs--;
  memmove(sp->segs, sp->segs + 1, sp->nsegs * sizeof *sp->segs);
}

/* Give up on the rest of segs[0]: its unconsumed records are lost, counted as one. */
static void seg_abandon(sl_spill *sp) {
  spill_seg *s = &sp->segs[0];
  sp->r.corrupt++;
  sp->r.consumed += s->nrec - s->nread;
  s->nread = s->nrec;
}

/* Open segs[0] for reading and check its header. Returns 0, 1 when the segment is bad or
 * missing (abandoned), or a negative errno for a transient failure. */
static int seg_open_read(sl_spill *sp) {
  spill_seg *s = &sp->segs[0];
  int fd = open(seg_path(sp, s->seq), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = -errno;
    if (transient(err)) return err;
    if (err != UV_ENOENT) sp->r.status = err;
    seg_abandon(sp);
    return 1;
  }
  uint8_t hdr[SEG_HDR_BYTES];
  ssize_t k = read_at(fd, hdr, sizeof hdr, 0);
  if (k != (ssize_t)sizeof hdr || memcmp(hdr, seg_magic, sizeof seg_magic) != 0 ||
      get_le32(hdr + 8) != SEG_VERSION) {
    if (k < 0) sp->r.status = (int)k;
    close(fd);
    seg_abandon(sp);
    return 1;
  }
  sp->rfd = fd;
  sp->roff = SEG_HDR_BYTES;
  sp->rbuf_len = 0;
  return 0;
}

/* Point *out at n bytes of segs[0] at off (off + n <= the segment's end, n <= the window),
 * refilling the read-ahead window. Returns 0, 1 if the file is shorter than it should be,
 * or a negative errno. */
static int rbuf_get(sl_spill *sp, uint64_t off, size_t n, const uint8_t **out) {
  if (off < sp->rbuf_off || off + n > sp->rbuf_off + sp->rbuf_len) {
    uint64_t end = sp->segs[0].end;
    size_t want = end - off < READ_BUF_BYTES ? (size_t)(end - off) : READ_BUF_BYTES;
    ssize_t k = read_at(sp->rfd, sp->rbuf, want, off);
    sp->rbuf_len = 0;
    if (k < 0) return (int)k;
    sp->rbuf_off = off;
    sp->rbuf_len = (size_t)k;
    if ((size_t)k < n) return 1;
  }
  *out = sp->rbuf + (off - sp->rbuf_off);
  return 0;
}

#define READ_FULL 2 /* read_one: the next record would pass max_bytes */

/* Read one record of segs[0] (which has one unconsumed). Returns 0 when the read position
 * moved (a record delivered or skipped, or the segment abandoned), READ_FULL when the record
 * would take the batch past max_bytes (the first record of a batch always fits), or a
 * negative errno for a transient failure (nothing moved). */
static int read_one(sl_spill *sp, size_t *bytes) {
  spill_seg *s = &sp->segs[0];
  const uint8_t *p;
  uint64_t off = sp->roff;
  int rc;

  if (off + REC_HDR_BYTES > s->end) goto abandon;
  rc = rbuf_get(sp, off, REC_HDR_BYTES, &p);
  if (rc != 0) goto bad_read;
  uint32_t len = get_le32(p), crc = get_le32(p + 4);
  if (len > SL_SPILL_MAX_RECORD || off + REC_HDR_BYTES + len > s->end) goto abandon;
  if (sp->r.n > 0 && (*bytes >= sp->r.max_bytes || len > sp->r.max_bytes - *bytes))
    return READ_FULL;

  if (sp->r.n == sp->r.cap) {
    size_t cap = sp->r.cap ? sp->r.cap * 2 : 16;
    if (cap > sp->r.max_records) cap = sp->r.max_records;
    sl_spill_rec *recs = realloc(sp->r.recs, cap * sizeof *recs);
    if (!recs) return UV_ENOMEM;
    sp->r.recs = recs;
    sp->r.cap = cap;
  }
  uint8_t *data = malloc(len ? len : 1);
  if (!data) return UV_ENOMEM;
  if (len <= READ_BUF_BYTES) {
    if (len > 0) {
      rc = rbuf_get(sp, off + REC_HDR_BYTES, len, &p);
      if (rc == 0) memcpy(data, p, len);
    }
  } else {
    ssize_t k = read_at(sp->rfd, data, len, off + REC_HDR_BYTES);
    rc = k < 0 ? (int)k : (k < (ssize_t)len ? 1 : 0);
  }
  if (rc != 0) {
    free(data);
    goto bad_read;
  }
  sp->roff = off + REC_HDR_BYTES + len;
  s->nread++;
  sp->r.consumed++;
  if (rec_crc(data, len) != crc) {
    free(data);
    sp->r.corrupt++;
    return 0;
  }
  sp->r.recs[sp->r.n++] = (sl_spill_rec){data, len};
  *bytes += len;
  return 0;

bad_read:
  if (rc < 0 && transient(rc)) return rc;
  if (rc < 0) sp->r.status = rc;
abandon:
  seg_abandon(sp);
  return 0;
}

/* Read up to r.max_records records totalling at most r.max_bytes (but at least one record,
 * whatever its size: a big record must not stall the spill), dropping
 * every segment as soon as it is consumed. The read-ahead window lives only for the job: an
 * idle spilling lane should not hold 64 KiB. */
static void job_read(sl_spill *sp) {
  size_t bytes = 0;
  sp->rbuf = malloc(READ_BUF_BYTES);
  sp->rbuf_len = 0;
  if (!sp->rbuf) {
    sp->r.status = UV_ENOMEM;
    return;
  }
  for (;;) {
    while (sp->nsegs > 0 && sp->segs[0].nread == sp->segs[0].nrec) seg_drop_head(sp);
    if (sp->nsegs == 0 || sp->r.n >= sp->r.max_records) break;
    int rc = 0;
    if (sp->rfd < 0) rc = seg_open_read(sp);
    if (rc == 1) continue; /* bad header or missing file: abandoned */
    if (rc == 0) rc = read_one(sp, &bytes);
    if (rc == READ_FULL) break;
    if (rc < 0) {
      sp->r.status = rc;
      break;
    }
  }
  free(sp->rbuf);
  sp->rbuf = NULL;
  sp->rbuf_len = 0;
  /* Leave the read position in the segment's header: what a crash leaves behind is then
   * counted without the records already handed out (the sweep skips them). One 4-byte
   * write per read job; a failure only makes that count larger. */
  if (sp->rfd >= 0 && sp->nsegs > 0 && sp->roff <= UINT32_MAX) {
    uint8_t mark[4];
    put_le32(mark, (uint32_t)sp->roff);
    ssize_t k = pwrite(sp->rfd, mark, sizeof mark, SEG_MARK_OFF);
    (void)k; /* see above */
  }
}

/* ---- close job ------------------------------------------------------------------------ */

/* Remove the segment files, the directory and its empty parents below stop_at. */
static void job_close(sl_spill *sp) {
  if (sp->rfd >= 0) close(sp->rfd);
  sp->rfd = -1;
  seg_seal(sp);
  if (!sp->remove_files) return;
  for (size_t i = 0; i < sp->nsegs; i++) unlink(seg_path(sp, sp->segs[i].seq));
  if (rmdir(sp->dir) != 0 || !sp->stop_at) return;

  /* Climb only while the parent is strictly inside stop_at; an unrelated stop_at stops
   * the climb at once, so nothing outside the spill root is ever touched. */
  size_t root = strlen(sp->stop_at);
  char *p = sl_xstrdup(sp->dir);
  for (;;) {
    char *slash = strrchr(p, '/');
    if (!slash || slash == p) break;
    *slash = '\0';
    size_t n = strlen(p);
    if (n <= root || strncmp(p, sp->stop_at, root) != 0 || p[root] != '/') break;
    if (rmdir(p) != 0) break;
  }
  free(p);
}

/* ---- job plumbing (loop thread) ------------------------------------------------------- */

static void do_job(uv_work_t *req) {
  sl_spill *sp = sl_container_of(req, sl_spill, work);
  switch (sp->kind) {
  case JOB_WRITE: job_write(sp); break;
  case JOB_READ: job_read(sp); break;
  case JOB_CLOSE: job_close(sp); break;
  default: break;
  }
}

static void after_job(uv_work_t *req, int status);

static void start_job(sl_spill *sp, int kind) {
  sp->kind = kind;
  sp->in_flight = true;
  if (kind != JOB_CLOSE) sp->last_kind = kind;
  int rc = uv_queue_work(sp->loop, &sp->work, do_job, after_job);
  if (rc != 0) abort(); /* only fails for a NULL work callback */
}

static void start_close(sl_spill *sp) {
  free_nodes(sp->q_head);
  sp->q_head = sp->q_tail = NULL;
  sp->q_n = 0;
  start_job(sp, JOB_CLOSE);
}

/* Start the next job if none runs: reads and writes alternate when both wait, so neither a
 * steady producer nor a steady reader starves the other. */
static void kick(sl_spill *sp) {
  if (sp->in_flight || sp->closing) return;
  bool want_read = sp->read_wanted, want_write = sp->q_head != NULL && sp->err == 0;
  if (want_read && want_write) want_read = sp->last_kind != JOB_READ;
  if (want_read) {
    sp->read_wanted = false;
    memset(&sp->r, 0, sizeof sp->r);
    sp->r.max_records = sp->want_records;
    sp->r.max_bytes = sp->want_bytes;
    start_job(sp, JOB_READ);
  } else if (want_write) {
    memset(&sp->w, 0, sizeof sp->w);
    sp->w.head = sp->q_head;
    sp->w.n = sp->q_n;
    sp->w.seg_bytes = sp->seg_bytes;
    sp->q_head = sp->q_tail = NULL;
    sp->q_n = 0;
    start_job(sp, JOB_WRITE);
  }
}

static void finish_write(sl_spill *sp) {
  size_t ok = sp->w.ok, failed = sp->w.failed;
  int err = sp->w.err;
  sp->readable += ok;
  sp->count -= failed;
  sp->disk_bytes += sp->w.added;
  if (err != 0) {
    /* Appends queued behind the failed job would fail the same way: drop them now, so the
     * owner hears about every record exactly once. */
    failed += sp->q_n;
    sp->count -= sp->q_n;
    free_nodes(sp->q_head);
    sp->q_head = sp->q_tail = NULL;
    sp->q_n = 0;
    if (sp->err == 0)
      sl_log_warn("spill %s: write failed: %s (%zu record(s) not spilled)", sp->dir,
                  uv_strerror(err), failed);
    sp->err = err;
  }
  if (sp->cb.on_written) sp->cb.on_written(sp, sp->arg, ok, failed, err);
}

static void finish_read(sl_spill *sp) {
  sl_spill_rec *recs = sp->r.recs;
  size_t n = sp->r.n;
  sp->r.recs = NULL;
  sp->readable -= sp->r.consumed;
  sp->count -= sp->r.consumed;
  sp->disk_bytes -= sp->r.freed;
  if (sp->r.corrupt > 0)
    sl_log_warn("spill %s: skipped %zu corrupt record(s)/segment(s)", sp->dir, sp->r.corrupt);
  if (n == 0) {
    free(recs);
    recs = NULL;
  }
  if (sp->cb.on_read) {
    sp->cb.on_read(sp, sp->arg, recs, n, sp->r.corrupt, sp->r.status);
  } else {
    for (size_t i = 0; i < n; i++) free(recs[i].data);
    free(recs);
  }
}

static void spill_free(sl_spill *sp) {
  free(sp->segs);
  free(sp->path);
  free(sp->stop_at);
  free(sp->dir);
  free(sp);
}

static void after_job(uv_work_t *req, int status) {
  sl_spill *sp = sl_container_of(req, sl_spill, work);
  int kind = sp->kind;
  SL_UNUSED(status); /* never cancelled */
  sp->in_flight = false;
  sp->kind = JOB_NONE;
  if (kind == JOB_CLOSE) {
    spill_free(sp);
    return;
  }
  if (sp->closing) { /* closed while the job ran: its results go nowhere */
    if (kind == JOB_READ) {
      for (size_t i = 0; i < sp->r.n; i++) free(sp->r.recs[i].data);
      free(sp->r.recs);
      sp->r.recs = NULL;
    }
    start_close(sp);
    return;
  }
  sp->in_cb = true;
  if (kind == JOB_WRITE)
    finish_write(sp);
  else
    finish_read(sp);
  sp->in_cb = false;
  if (sp->closing) { /* closed from the callback */
    if (!sp->in_flight) start_close(sp);
    return;
  }
  kick(sp);
}

/* ---- public API ----------------------------------------------------------------------- */

/* sl_spill_open: a spill in dir (the directory is made by the first write job). cb is
 * copied; arg is passed to every callback. Returns NULL only if dir is empty (the control
 * structures come from the aborting allocator). Owns nothing of the caller's. */
sl_spill *sl_spill_open(uv_loop_t *loop, const char *dir, const sl_spill_callbacks *cb, void *arg) {
  if (!loop || !dir || !*dir) return NULL;
  sl_spill *sp = sl_xcalloc(1, sizeof *sp);
  sp->loop = loop;
  if (cb) sp->cb = *cb;
  sp->arg = arg;
  sp->dir = sl_xstrdup(dir);
  for (size_t n = strlen(sp->dir); n > 1 && sp->dir[n - 1] == '/'; n--) sp->dir[n - 1] = '\0';
  sp->path_cap = strlen(sp->dir) + sizeof "/seg-0123456789abcdef.spill";
  sp->path = sl_xmalloc(sp->path_cap);
  sp->seg_bytes = SL_SPILL_SEGMENT_BYTES;
  sp->wfd = sp->rfd = -1;
  sp->next_seq = 1;
  return sp;
}

/* sl_spill_set_segment_bytes: rotate segments at `bytes` instead of SL_SPILL_SEGMENT_BYTES
 * (0 restores the default). Takes effect with the next write job; a record larger than a
 * segment gets a segment of its own. */
void sl_spill_set_segment_bytes(sl_spill *sp, size_t bytes) {
  sp->seg_bytes = bytes ? bytes : SL_SPILL_SEGMENT_BYTES;
}

/* sl_spill_append: copy the record into the write queue and start a write job if none runs.
 * Returns 0, UV_E2BIG (len > SL_SPILL_MAX_RECORD), the sticky error of a failed write, or
 * UV_ENOMEM (the copy could not be allocated). On error nothing is queued and on_written
 * will not mention the record. */
int sl_spill_append(sl_spill *sp, const void *data, size_t len) {
  if (sp->err != 0) return sp->err;
  if (len > SL_SPILL_MAX_RECORD) return UV_E2BIG;
  spill_node *n = malloc(sizeof *n + len);
  if (!n) return UV_ENOMEM;
  n->next = NULL;
  n->len = len;
  if (len > 0) memcpy(n->data, data, len);
  if (sp->q_tail)
    sp->q_tail->next = n;
  else
    sp->q_head = n;
  sp->q_tail = n;
  sp->q_n++;
  sp->count++;
  kick(sp);
  return 0;
}

/* sl_spill_read: ask for the oldest written records; on_read fires once, later, from the
 * loop (never from inside this call). The records delivered total at most max_bytes of
 * data, except that the first one is delivered whatever its size, so a big record cannot
 * stall the spill.
 * Returns 0, UV_EINVAL (max_records 0), UV_EBUSY (a read is pending) or UV_ENOENT (nothing
 * written and unread now; on_written tells when that changes). */
int sl_spill_read(sl_spill *sp, size_t max_records, size_t max_bytes) {
  if (max_records == 0) return UV_EINVAL;
  if (sp->read_wanted || (sp->in_flight && sp->kind == JOB_READ)) return UV_EBUSY;
  if (sp->readable == 0) return UV_ENOENT;
  sp->read_wanted = true;
  sp->want_records = max_records;
  sp->want_bytes = max_bytes;
  kick(sp);
  return 0;
}

/* sl_spill_count: records appended and not yet consumed: queued, being written, or on disk
 * and unread. A record leaves the count when on_written reports it failed, or when a read
 * delivers it or gives up on it (corrupt). */
size_t sl_spill_count(const sl_spill *sp) { return sp->count; }

/* sl_spill_disk_bytes: bytes in this spill's segment files as of the last finished job
 * (headers and any torn tail included). */
uint64_t sl_spill_disk_bytes(const sl_spill *sp) { return sp->disk_bytes; }

/* sl_spill_failed: true after a write failure, until sl_spill_reset. */
bool sl_spill_failed(const sl_spill *sp) { return sp->err != 0; }

/* sl_spill_reset: accept appends again after a write failure. Records already on disk stay
 * readable; the next write starts a new segment if the failure left a torn tail. */
void sl_spill_reset(sl_spill *sp) { sp->err = 0; }

/* sl_spill_close: see spill.h. Queued appends are dropped at once (no on_written for them);
 * the descriptors are closed and, with remove_files, the files and directories removed by a
 * last pool job whose completion frees sp, so the loop must keep running until then. stop_at
 * is copied; NULL (or a path that does not contain dir) removes dir alone. Safe to call from
 * inside on_written / on_read; calling it twice is a no-op. */
void sl_spill_close(sl_spill *sp, bool remove_files, const char *stop_at) {
  if (!sp || sp->closing) return;
  sp->closing = true;
  sp->remove_files = remove_files;
  if (stop_at) {
    sp->stop_at = sl_xstrdup(stop_at);
    for (size_t n = strlen(sp->stop_at); n > 1 && sp->stop_at[n - 1] == '/'; n--)
      sp->stop_at[n - 1] = '\0';
  }
  sp->read_wanted = false;
  free_nodes(sp->q_head);
  sp->q_head = sp->q_tail = NULL;
  sp->q_n = 0;
  if (!sp->in_flight && !sp->in_cb) start_close(sp);
}

/* ---- sweep ---------------------------------------------------------------------------- */

static bool is_spill_name(const char *name) {
  size_t n = strlen(name);
  return n > 6 && strcmp(name + n - 6, ".spill") == 0;
}

/* Count the complete records of one segment file left by an earlier process, trusting none
 * of its bytes: a bad header makes the whole file one corrupt unit, a record whose CRC does
 * not match is corrupt (its length is plausible, so counting goes on), an impossible length
 * or a truncated record ends the file (one more corrupt unit). Records before the header's
 * read mark were handed out before the crash and are not counted. Adds to *st. */
static void count_segment(int dfd, const char *name, sl_spill_orphans *st) {
  int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat fs;
  if (fd < 0 || fstat(fd, &fs) != 0) {
    if (fd >= 0) close(fd);
    st->corrupt++;
    return;
  }
  st->bytes += (uint64_t)fs.st_size;
  uint64_t size = (uint64_t)fs.st_size, off = SEG_HDR_BYTES;
  uint8_t hdr[SEG_HDR_BYTES];
  uint8_t *buf = malloc(READ_BUF_BYTES);
  if (!buf || read_at(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
      memcmp(hdr, seg_magic, sizeof seg_magic) != 0 || get_le32(hdr + 8) != SEG_VERSION) {
    st->corrupt++;
    goto done;
  }
  uint64_t mark = get_le32(hdr + SEG_MARK_OFF); /* records before it were read back */
  while (off < size) {
    uint8_t rh[REC_HDR_BYTES];
    if (size - off < REC_HDR_BYTES || read_at(fd, rh, sizeof rh, off) != (ssize_t)sizeof rh) {
      st->corrupt++; /* a torn tail: the write of that record never completed */
      break;
    }
    uint32_t len = get_le32(rh), crc = get_le32(rh + 4);
    if (len > SL_SPILL_MAX_RECORD || size - off - REC_HDR_BYTES < len) {
      st->corrupt++;
      break;
    }
    uLong c = crc32(0L, Z_NULL, 0);
    uint64_t at = off + REC_HDR_BYTES, left = len;
    bool ok = true;
    while (left > 0) {
      size_t want = left < READ_BUF_BYTES ? (size_t)left : READ_BUF_BYTES;
      if (read_at(fd, buf, want, at) != (ssize_t)want) {
        ok = false;
        break;
      }
      c = crc32(c, buf, (uInt)want);
      at += want;
      left -= want;
    }
    if (!ok) {
      st->corrupt++;
      break;
    }
    if ((uint32_t)c != crc)
      st->corrupt++;
    else if (off >= mark)
      st->records++;
    off += REC_HDR_BYTES + (uint64_t)len;
  }
done:
  free(buf);
  close(fd);
}

/* Sweep the directory open as fd (closed here), whose path under the root is rel->data:
 * first count the records of its regular *.spill files and report them (cb), then unlink
 * them, recurse into real subdirectories (never symlinks) and rmdir those left empty. */
static long sweep_dir(int fd, int depth, sl_sbuf *rel, sl_spill_sweep_cb cb, void *arg) {
  long removed = 0;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return 0;
  }
  sl_spill_orphans st = {0};
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    struct stat s;
    if (!is_spill_name(e->d_name) || fstatat(dirfd(d), e->d_name, &s, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(s.st_mode))
      continue;
    st.files++;
    count_segment(dirfd(d), e->d_name, &st);
  }
  if (st.files && cb) cb(arg, rel->len ? rel->data : "", &st);
  rewinddir(d);
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat s;
    if (fstatat(dirfd(d), e->d_name, &s, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISREG(s.st_mode) && is_spill_name(e->d_name)) {
      if (unlinkat(dirfd(d), e->d_name, 0) == 0) removed++;
    } else if (S_ISDIR(s.st_mode) && depth < SWEEP_MAX_DEPTH) {
      int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) continue;
      size_t keep = rel->len;
      if (keep) sl_sbuf_puts(rel, "/");
      sl_sbuf_puts(rel, e->d_name);
      sl_sbuf_append(rel, "", 1);
      rel->len--; /* NUL-terminated, not counted */
      removed += sweep_dir(sub, depth + 1, rel, cb, arg);
      rel->len = keep;
      if (rel->data) rel->data[keep] = '\0';
      unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR); /* fails, harmlessly, unless empty */
    }
  }
  closedir(d);
  return removed;
}

/* sl_spill_sweep: see spill.h. root itself is kept; subdirectories deeper than 64 levels
 * are left alone. Returns the number of files removed, 0 if root does not exist, or a
 * negative errno if root cannot be opened as a directory (then cb is never called). */
long sl_spill_sweep(const char *root, sl_spill_sweep_cb cb, void *arg) {
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  sl_sbuf rel = {0};
  long n = sweep_dir(fd, 0, &rel, cb, arg);
  sl_sbuf_free(&rel);
  return n;
}
