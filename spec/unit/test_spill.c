/* test_spill.c - unit tests for core/spill.c on real files in a mkdtemp directory, driven by
 * a real uv loop: round trips across segments, interleaved append/read, corruption (CRC,
 * truncation, header, length, missing file), close with jobs in flight, sweep, and write
 * failures (ENOTDIR, and ENOSPC on a 64 KiB tmpfs when this process may mount one). */
#define _GNU_SOURCE /* nftw, scandir, umount2 */
#include "testlib.h"
#include "spill.h"
#include "sl_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

static char base[64]; /* mkdtemp result: short, so derived paths always fit */

/* ---- the owner: a test context that records everything the spill reports ---------------- */

typedef struct ctx {
  uv_loop_t loop;
  sl_spill *sp;
  char dir[PATH_MAX];
  /* on_written */
  size_t w_calls, w_ok, w_failed;
  int w_err;
  /* on_read */
  size_t r_calls, corrupt, max_batch;
  int r_status;
  uint32_t *ids;
  size_t n_ids, cap_ids;
  size_t bad_content, unwritten_seen, over_limit;
  /* driving */
  bool auto_read;
  size_t rd_records, rd_bytes;
  size_t feed_total, feed_next, feed_batch; /* append from callbacks */
  size_t close_after_reads;                 /* close from inside the n-th on_read */
  size_t min_files_seen, files_at_start;
  bool watch_files;
  bool closed;
  size_t after_close;
} ctx;

/* Record id's bytes: the id (LE) then a pattern; the length varies with the id. */
static size_t rec_len(uint32_t id) { return 4 + (id * 7919u) % 300u; }

static void rec_fill(uint32_t id, uint8_t *buf, size_t len) {
  for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(id * 31u + i * 7u);
  if (len >= 4) {
    buf[0] = (uint8_t)id;
    buf[1] = (uint8_t)(id >> 8);
    buf[2] = (uint8_t)(id >> 16);
    buf[3] = (uint8_t)(id >> 24);
  }
}

static int append_id(ctx *c, uint32_t id) {
  uint8_t buf[512];
  size_t len = rec_len(id);
  rec_fill(id, buf, len);
  return sl_spill_append(c->sp, buf, len);
}

static size_t count_files(const char *dir);

static void try_read(ctx *c) {
  int rc = sl_spill_read(c->sp, c->rd_records, c->rd_bytes);
  if (rc != 0 && rc != UV_ENOENT && rc != UV_EBUSY) TL_FAIL("sl_spill_read: %s", uv_strerror(rc));
}

static void feed(ctx *c) {
  for (size_t i = 0; i < c->feed_batch && c->feed_next < c->feed_total; i++) {
    int rc = append_id(c, (uint32_t)c->feed_next++);
    if (rc != 0) TL_FAIL("append: %s", uv_strerror(rc));
  }
}

static void on_written(sl_spill *sp, void *arg, size_t ok, size_t failed, int err) {
  ctx *c = arg;
  if (sp != c->sp) TL_FAIL("on_written: wrong spill");
  if (c->closed) c->after_close++;
  c->w_calls++;
  c->w_ok += ok;
  c->w_failed += failed;
  if (err) c->w_err = err;
  feed(c);
  if (c->auto_read) try_read(c);
}

static void on_read(sl_spill *sp, void *arg, sl_spill_rec *recs, size_t n, size_t corrupt,
                    int status) {
  ctx *c = arg;
  if (sp != c->sp) TL_FAIL("on_read: wrong spill");
  if (c->closed) c->after_close++;
  c->r_calls++;
  c->corrupt += corrupt;
  if (status) c->r_status = status;
  if (n > c->max_batch) c->max_batch = n;
  if (n > 0 && recs == NULL) TL_FAIL("on_read: n=%zu with NULL recs", n);
  size_t batch_bytes = 0;
  for (size_t i = 0; i < n; i++) batch_bytes += recs[i].len;
  if (n > c->rd_records || (n > 1 && batch_bytes > c->rd_bytes)) c->over_limit++;
  for (size_t i = 0; i < n; i++) {
    uint8_t want[512];
    uint32_t id = recs[i].len >= 4 ? (uint32_t)recs[i].data[0] | (uint32_t)recs[i].data[1] << 8 |
                                         (uint32_t)recs[i].data[2] << 16 |
                                         (uint32_t)recs[i].data[3] << 24
                                   : UINT32_MAX;
    if (id != UINT32_MAX && recs[i].len == rec_len(id)) {
      rec_fill(id, want, recs[i].len);
      if (memcmp(want, recs[i].data, recs[i].len) != 0) c->bad_content++;
    } else {
      c->bad_content++;
    }
    if (c->n_ids == c->cap_ids) {
      c->cap_ids = c->cap_ids ? c->cap_ids * 2 : 1024;
      c->ids = sl_xrealloc(c->ids, c->cap_ids * sizeof *c->ids);
    }
    c->ids[c->n_ids++] = id;
    free(recs[i].data);
  }
  free(recs);
  /* Everything handed out must have been reported written first. */
  if (c->n_ids + c->corrupt > c->w_ok) c->unwritten_seen++;
  if (c->watch_files) {
    size_t f = count_files(c->dir);
    if (f < c->min_files_seen) c->min_files_seen = f;
  }
  if (c->close_after_reads && c->r_calls == c->close_after_reads) {
    feed(c); /* queue more, then close with them pending */
    sl_spill_close(c->sp, true, base);
    c->closed = true;
    return;
  }
  feed(c);
  if (c->auto_read && sl_spill_count(c->sp) > 0) try_read(c);
}

static const sl_spill_callbacks test_cb = {on_written, on_read};

static void ctx_init(ctx *c, const char *sub) {
  memset(c, 0, sizeof *c);
  uv_loop_init(&c->loop);
  snprintf(c->dir, sizeof c->dir, "%s/%s", base, sub);
  c->sp = sl_spill_open(&c->loop, c->dir, &test_cb, c);
  c->rd_records = 100;
  c->rd_bytes = 1 << 20;
  c->min_files_seen = SIZE_MAX;
}

/* Close (if not yet), run the loop until the last job is done, and free the context. */
static void ctx_done(ctx *c, bool remove_files) {
  if (!c->closed) sl_spill_close(c->sp, remove_files, base);
  c->closed = true;
  uv_run(&c->loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(c->after_close, 0);
  CHECK_EQ_INT(uv_loop_close(&c->loop), 0);
  free(c->ids);
}

/* Drain: read until the count is 0 (each on_read asks for the next batch). */
static void drain(ctx *c) {
  c->auto_read = true;
  try_read(c);
  uv_run(&c->loop, UV_RUN_DEFAULT);
}

/* ---- file helpers (test side; the loop thread may touch the disk here) ------------------- */

static int is_seg(const struct dirent *e) {
  return strncmp(e->d_name, "seg-", 4) == 0 && strstr(e->d_name, ".spill") != NULL;
}

static size_t count_files(const char *dir) {
  struct dirent **list;
  int n = scandir(dir, &list, is_seg, alphasort);
  if (n < 0) return 0;
  for (int i = 0; i < n; i++) free(list[i]);
  free(list);
  return (size_t)n;
}

/* Path of the i-th (0-based, in name order) segment of dir into out; false if none. */
static bool seg_nth(const char *dir, size_t i, char *out, size_t cap) {
  struct dirent **list;
  int n = scandir(dir, &list, is_seg, alphasort);
  bool ok = n > 0 && i < (size_t)n;
  if (ok) snprintf(out, cap, "%s/%s", dir, list[i]->d_name);
  for (int k = 0; k < n; k++) free(list[k]);
  if (n >= 0) free(list);
  return ok;
}

static uint64_t seg_bytes_total(const char *dir) {
  struct dirent **list;
  uint64_t sum = 0;
  int n = scandir(dir, &list, is_seg, alphasort);
  for (int i = 0; i < n; i++) {
    char p[PATH_MAX + 300];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, list[i]->d_name);
    if (stat(p, &st) == 0) sum += (uint64_t)st.st_size;
    free(list[i]);
  }
  if (n >= 0) free(list);
  return sum;
}

static uint8_t *slurp(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close(fd);
    return NULL;
  }
  uint8_t *buf = malloc((size_t)st.st_size + 1);
  *len = (size_t)pread(fd, buf, (size_t)st.st_size, 0);
  close(fd);
  return buf;
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Parse a segment written by the spill (an independent reading of the format): record
 * offsets and ids. Returns the number of records. */
static size_t seg_parse(const char *path, size_t *offs, uint32_t *ids, size_t max) {
  size_t len, n = 0, off = 16;
  uint8_t *b = slurp(path, &len);
  if (!b) return 0;
  while (off + 8 <= len && n < max) {
    uint32_t rl = le32(b + off);
    if (off + 8 + rl > len) break;
    offs[n] = off;
    ids[n] = rl >= 4 ? le32(b + off + 8) : UINT32_MAX;
    n++;
    off += 8 + rl;
  }
  free(b);
  return n;
}

static void poke(const char *path, size_t off, const void *bytes, size_t n) {
  int fd = open(path, O_WRONLY);
  if (fd < 0 || pwrite(fd, bytes, n, (off_t)off) != (ssize_t)n) TL_FAIL("poke %s", path);
  if (fd >= 0) close(fd);
}

static bool exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  remove(p);
  return 0;
}

static void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* ids must be exactly 0..n-1 minus the (sorted) ids in lost. */
static void check_ids(ctx *c, size_t n, const uint32_t *lost, size_t n_lost) {
  size_t j = 0, k = 0;
  for (uint32_t id = 0; id < n; id++) {
    if (k < n_lost && lost[k] == id) {
      k++;
      continue;
    }
    if (j >= c->n_ids || c->ids[j] != id) {
      TL_FAIL("record %zu: got id %ld, want %u", j, j < c->n_ids ? (long)c->ids[j] : -1L, id);
      return;
    }
    j++;
  }
  CHECK_EQ_INT(c->n_ids, j);
  CHECK_EQ_INT(c->bad_content, 0);
}

/* Write n records (ids 0..n-1) and wait for the write jobs. */
static void write_all(ctx *c, size_t n) {
  for (size_t i = 0; i < n; i++) CHECK_EQ_INT(append_id(c, (uint32_t)i), 0);
  CHECK_EQ_INT(sl_spill_count(c->sp), n);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(c->w_ok, n);
  CHECK_EQ_INT(c->w_failed, 0);
  CHECK_EQ_INT(sl_spill_count(c->sp), n);
}

/* ---- tests ---------------------------------------------------------------------------- */

TEST(round_trip_across_segments) {
  ctx c;
  enum { N = 5000 };
  ctx_init(&c, "rt/ns/sid/topic");
  sl_spill_set_segment_bytes(c.sp, 8192);
  CHECK(!exists(c.dir)); /* nothing on disk before the first write job */
  write_all(&c, N);
  CHECK(c.w_calls >= 2 && c.w_calls < 10); /* batched: not one job per record */
  size_t files = count_files(c.dir);
  CHECK(files > 50);
  CHECK_EQ_INT(sl_spill_disk_bytes(c.sp), seg_bytes_total(c.dir));

  /* Header and naming. */
  char p[PATH_MAX + 300];
  size_t len = 0;
  CHECK(seg_nth(c.dir, 0, p, sizeof p));
  CHECK(strstr(p, "/seg-0000000000000001.spill") != NULL);
  uint8_t *b = slurp(p, &len);
  CHECK(b && len > 16 && len <= 8192);
  if (b) {
    CHECK_EQ_MEM(b, 8, "SLSPILL1", 8);
    CHECK_EQ_INT(le32(b + 8), 1);
    CHECK_EQ_INT(le32(b + 12), 0);
  }
  free(b);
  struct stat st;
  CHECK(stat(c.dir, &st) == 0 && (st.st_mode & 0777) == 0700);

  c.rd_records = 97;
  c.watch_files = true;
  drain(&c);
  check_ids(&c, N, NULL, 0);
  CHECK_EQ_INT(c.corrupt, 0);
  CHECK_EQ_INT(c.r_status, 0);
  CHECK(c.max_batch <= 97);
  CHECK_EQ_INT(sl_spill_count(c.sp), 0);
  CHECK_EQ_INT(sl_spill_disk_bytes(c.sp), 0);
  CHECK(c.min_files_seen < files / 2); /* disk use shrank while draining */
  CHECK_EQ_INT(count_files(c.dir), 0);
  CHECK_EQ_INT(sl_spill_read(c.sp, 10, 1000), UV_ENOENT);
  ctx_done(&c, true);
  snprintf(p, sizeof p, "%s/rt", base);
  CHECK(!exists(p)); /* dir and empty parents below stop_at removed */
  CHECK(exists(base));
}

TEST(interleaved_append_and_read) {
  ctx c;
  ctx_init(&c, "il");
  sl_spill_set_segment_bytes(c.sp, 4096);
  CHECK_EQ_INT(append_id(&c, 0), 0);
  CHECK_EQ_INT(sl_spill_count(c.sp), 1);
  CHECK_EQ_INT(sl_spill_read(c.sp, 10, 1000), UV_ENOENT); /* not written yet: invisible */
  CHECK_EQ_INT(sl_spill_read(c.sp, 0, 1000), UV_EINVAL);
  c.feed_total = 3000;
  c.feed_next = 1;
  c.feed_batch = 7;
  c.rd_records = 5;
  c.auto_read = true;
  uv_run(&c.loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(c.w_ok, 3000);
  check_ids(&c, 3000, NULL, 0);
  CHECK_EQ_INT(c.unwritten_seen, 0);
  CHECK_EQ_INT(sl_spill_count(c.sp), 0);
  CHECK_EQ_INT(count_files(c.dir), 0);
  CHECK(c.r_calls > 100);
  ctx_done(&c, true);
  CHECK(!exists(c.dir));
}

TEST(read_limits_and_sizes) {
  ctx c;
  ctx_init(&c, "sizes");
  static uint8_t big[200 * 1024];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 13u);
  CHECK_EQ_INT(sl_spill_append(c.sp, "", 0), 0);
  CHECK_EQ_INT(sl_spill_append(c.sp, big, sizeof big), 0);
  CHECK_EQ_INT(sl_spill_append(c.sp, "abc", 3), 0);
  uint8_t *huge = calloc(1, SL_SPILL_MAX_RECORD + 1);
  CHECK_EQ_INT(sl_spill_append(c.sp, huge, SL_SPILL_MAX_RECORD + 1), UV_E2BIG);
  CHECK_EQ_INT(sl_spill_append(c.sp, huge, SL_SPILL_MAX_RECORD), 0);
  memset(huge, 0x5a, SL_SPILL_MAX_RECORD);
  CHECK_EQ_INT(sl_spill_append(c.sp, huge, SL_SPILL_MAX_RECORD), 0);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(c.w_ok, 5);
  CHECK_EQ_INT(sl_spill_count(c.sp), 5);

  /* max_bytes 1: a read returns the first record however large, then only what still fits
   * (the empty record fits nowhere but first: 0 + 200 KiB > 1). */
  c.auto_read = false;
  size_t per_read[] = {1, 1, 1, 1, 1}, total = 0;
  for (size_t i = 0; i < 5; i++) {
    size_t before = c.n_ids;
    CHECK_EQ_INT(sl_spill_read(c.sp, 10, 1), 0);
    CHECK_EQ_INT(sl_spill_read(c.sp, 10, 1), UV_EBUSY);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(c.r_calls, i + 1);
    CHECK_EQ_INT(c.n_ids - before, per_read[i]);
    total += per_read[i];
    CHECK_EQ_INT(sl_spill_count(c.sp), 5 - total);
  }
  CHECK_EQ_INT(sl_spill_read(c.sp, 10, 1), UV_ENOENT);
  /* (The generic checker cannot decode these records; large_and_empty_records_content
   * checks their bytes.) */
  CHECK_EQ_INT(c.corrupt, 0);
  CHECK_EQ_INT(sl_spill_disk_bytes(c.sp), 0);
  CHECK_EQ_INT(count_files(c.dir), 0);
  free(huge);
  ctx_done(&c, true);
}

TEST(batch_limits) {
  ctx c;
  ctx_init(&c, "limits");
  sl_spill_set_segment_bytes(c.sp, 4096);
  write_all(&c, 500);
  c.rd_records = 7;
  c.rd_bytes = 1000; /* records are 4..303 bytes: some batches end on bytes, some on count */
  drain(&c);
  check_ids(&c, 500, NULL, 0);
  CHECK_EQ_INT(c.over_limit, 0);
  CHECK_EQ_INT(c.max_batch, 7);
  CHECK(c.r_calls > 500 / 7);
  ctx_done(&c, true);
}

/* Exact content of large and empty records (the generic checker only knows ids). */
static size_t got_lens[8], got_n;
static uint8_t got_ok[8];
static void on_read_sizes(sl_spill *sp, void *arg, sl_spill_rec *recs, size_t n, size_t corrupt,
                          int status) {
  (void)sp;
  (void)arg;
  (void)corrupt;
  (void)status;
  for (size_t i = 0; i < n; i++) {
    if (got_n < 8) {
      got_lens[got_n] = recs[i].len;
      got_ok[got_n] = 1;
      for (size_t k = 0; k < recs[i].len; k++)
        if (recs[i].data[k] != (uint8_t)(k * 13u)) {
          got_ok[got_n] = 0;
          break;
        }
      got_n++;
    }
    free(recs[i].data);
  }
  free(recs);
}

TEST(large_and_empty_records_content) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/content", base);
  sl_spill_callbacks cb = {NULL, on_read_sizes};
  sl_spill *sp = sl_spill_open(&loop, dir, &cb, NULL);
  static uint8_t big[300 * 1024];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 13u);
  CHECK_EQ_INT(sl_spill_append(sp, big, 0), 0);
  CHECK_EQ_INT(sl_spill_append(sp, big, sizeof big), 0);
  CHECK_EQ_INT(sl_spill_append(sp, big, 65536 - 8), 0); /* exactly the read window */
  CHECK_EQ_INT(sl_spill_append(sp, big, 10), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  got_n = 0;
  CHECK_EQ_INT(sl_spill_read(sp, 100, 1 << 30), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(got_n, 4);
  CHECK_EQ_INT(got_lens[0], 0);
  CHECK_EQ_INT(got_lens[1], sizeof big);
  CHECK_EQ_INT(got_lens[2], 65536 - 8);
  CHECK_EQ_INT(got_lens[3], 10);
  CHECK(got_ok[0] && got_ok[1] && got_ok[2] && got_ok[3]);
  CHECK_EQ_INT(sl_spill_count(sp), 0);
  sl_spill_close(sp, true, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(!exists(dir));
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(corrupt_crc_skipped_and_counted) {
  ctx c;
  enum { N = 400 };
  ctx_init(&c, "crc");
  sl_spill_set_segment_bytes(c.sp, 4096);
  write_all(&c, N);
  size_t offs[64];
  uint32_t ids[64];
  uint32_t lost[2];
  char p[PATH_MAX + 300];
  /* First record of the 3rd segment and the 4th record of the 5th: flip a payload byte. */
  CHECK(seg_nth(c.dir, 2, p, sizeof p));
  CHECK(seg_parse(p, offs, ids, 64) > 5);
  lost[0] = ids[0];
  uint8_t x = 0xff;
  poke(p, offs[0] + 8 + 4, &x, 1);
  CHECK(seg_nth(c.dir, 4, p, sizeof p));
  CHECK(seg_parse(p, offs, ids, 64) > 5);
  lost[1] = ids[3];
  poke(p, offs[3] + 8 + 4 + 1, &x, 1);
  drain(&c);
  CHECK_EQ_INT(c.corrupt, 2);
  check_ids(&c, N, lost, 2);
  CHECK_EQ_INT(sl_spill_count(c.sp), 0);
  CHECK_EQ_INT(count_files(c.dir), 0);
  ctx_done(&c, true);
}

TEST(truncated_segments_abandoned) {
  ctx c;
  enum { N = 400 };
  ctx_init(&c, "trunc");
  sl_spill_set_segment_bytes(c.sp, 4096);
  write_all(&c, N);
  size_t offs[64], n2, n4;
  uint32_t ids2[64], ids4[64], lost[128];
  size_t n_lost = 0;
  char p[PATH_MAX + 300];
  size_t len;

  /* 2nd segment: cut inside its last record; only that record is lost. */
  CHECK(seg_nth(c.dir, 1, p, sizeof p));
  n2 = seg_parse(p, offs, ids2, 64);
  CHECK(n2 > 3);
  free(slurp(p, &len));
  CHECK(truncate(p, (off_t)(len - 3)) == 0);
  lost[n_lost++] = ids2[n2 - 1];

  /* 4th segment: cut inside the first record's header; the whole segment is lost. */
  CHECK(seg_nth(c.dir, 3, p, sizeof p));
  n4 = seg_parse(p, offs, ids4, 64);
  CHECK(n4 > 3);
  CHECK(truncate(p, 16 + 4) == 0);
  for (size_t i = 0; i < n4; i++) lost[n_lost++] = ids4[i];

  drain(&c);
  CHECK_EQ_INT(c.corrupt, 2);
  check_ids(&c, N, lost, n_lost);
  CHECK_EQ_INT(sl_spill_count(c.sp), 0);
  CHECK_EQ_INT(count_files(c.dir), 0);
  CHECK_EQ_INT(sl_spill_disk_bytes(c.sp), 0);
  ctx_done(&c, true);
}

TEST(bad_header_length_and_missing_file) {
  ctx c;
  enum { N = 600 };
  ctx_init(&c, "hdr");
  sl_spill_set_segment_bytes(c.sp, 4096);
  write_all(&c, N);
  size_t offs[64], n;
  uint32_t ids[64], lost[256];
  size_t n_lost = 0;
  char p[PATH_MAX + 300];

  /* 2nd segment: garbage magic. */
  CHECK(seg_nth(c.dir, 1, p, sizeof p));
  n = seg_parse(p, offs, ids, 64);
  poke(p, 0, "GARBAGE!", 8);
  for (size_t i = 0; i < n; i++) lost[n_lost++] = ids[i];

  /* 4th segment: wrong version. */
  CHECK(seg_nth(c.dir, 3, p, sizeof p));
  n = seg_parse(p, offs, ids, 64);
  uint8_t v2[4] = {2, 0, 0, 0};
  poke(p, 8, v2, 4);
  for (size_t i = 0; i < n; i++) lost[n_lost++] = ids[i];

  /* 6th segment: an impossible length at its 3rd record; records 3.. are lost. */
  CHECK(seg_nth(c.dir, 5, p, sizeof p));
  n = seg_parse(p, offs, ids, 64);
  CHECK(n > 4);
  uint8_t huge_len[4] = {0xf0, 0xff, 0xff, 0x7f};
  poke(p, offs[2], huge_len, 4);
  for (size_t i = 2; i < n; i++) lost[n_lost++] = ids[i];

  /* 8th segment: a length within the limit but past the end of the segment. */
  CHECK(seg_nth(c.dir, 7, p, sizeof p));
  n = seg_parse(p, offs, ids, 64);
  CHECK(n > 4);
  uint8_t past_end[4] = {0x00, 0x10, 0x00, 0x00}; /* 4096 */
  poke(p, offs[1], past_end, 4);
  for (size_t i = 1; i < n; i++) lost[n_lost++] = ids[i];

  /* 10th segment: gone. */
  CHECK(seg_nth(c.dir, 9, p, sizeof p));
  n = seg_parse(p, offs, ids, 64);
  CHECK(unlink(p) == 0);
  for (size_t i = 0; i < n; i++) lost[n_lost++] = ids[i];

  /* 11th segment (the 10th file now): only the header survives. */
  CHECK(seg_nth(c.dir, 9, p, sizeof p));
  n = seg_parse(p, offs, ids, 64);
  CHECK(truncate(p, 10) == 0);
  for (size_t i = 0; i < n; i++) lost[n_lost++] = ids[i];

  /* The ids are in file order, which is id order: sort is not needed. */
  drain(&c);
  CHECK_EQ_INT(c.corrupt, 6);
  check_ids(&c, N, lost, n_lost);
  CHECK_EQ_INT(sl_spill_count(c.sp), 0);
  CHECK_EQ_INT(count_files(c.dir), 0);
  CHECK(c.r_calls < N); /* progress on every read: no spinning */
  ctx_done(&c, true);
}

TEST(all_corrupt_drains_to_zero) {
  ctx c;
  enum { N = 200 };
  ctx_init(&c, "allbad");
  sl_spill_set_segment_bytes(c.sp, 2048);
  write_all(&c, N);
  char p[PATH_MAX + 300];
  size_t files = count_files(c.dir);
  for (size_t i = 0; i < files; i++) {
    CHECK(seg_nth(c.dir, i, p, sizeof p));
    poke(p, 0, "XXXXXXXX", 8);
  }
  c.rd_records = 1;
  drain(&c);
  CHECK_EQ_INT(c.n_ids, 0);
  CHECK_EQ_INT(c.corrupt, files);
  CHECK_EQ_INT(sl_spill_count(c.sp), 0);
  CHECK_EQ_INT(count_files(c.dir), 0);
  CHECK(c.r_calls <= files); /* one read job can get through many bad segments */
  ctx_done(&c, true);
}

TEST(close_with_write_job_in_flight) {
  ctx c;
  ctx_init(&c, "close-w/a/b");
  static uint8_t big[64 * 1024];
  memset(big, 7, sizeof big);
  for (int i = 0; i < 200; i++) CHECK_EQ_INT(sl_spill_append(c.sp, big, sizeof big), 0);
  sl_spill_close(c.sp, true, base); /* job 1 in flight, 199 queued */
  c.closed = true;
  ctx_done(&c, true);
  CHECK_EQ_INT(c.w_calls, 0);
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/close-w", base);
  CHECK(!exists(p));
}

TEST(close_with_read_job_in_flight) {
  ctx c;
  ctx_init(&c, "close-r");
  sl_spill_set_segment_bytes(c.sp, 4096);
  write_all(&c, 300);
  CHECK_EQ_INT(sl_spill_read(c.sp, 1000, 1 << 30), 0);
  CHECK_EQ_INT(append_id(&c, 300), 0);
  sl_spill_close(c.sp, true, NULL);
  c.closed = true;
  ctx_done(&c, true);
  CHECK_EQ_INT(c.r_calls, 0);
  CHECK(!exists(c.dir));
}

TEST(close_from_callback) {
  ctx c;
  ctx_init(&c, "close-cb");
  sl_spill_set_segment_bytes(c.sp, 4096);
  c.feed_total = 2000;
  c.feed_batch = 50;
  c.rd_records = 10;
  c.auto_read = true;
  c.close_after_reads = 5;
  feed(&c);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(c.r_calls, 5);
  CHECK(c.n_ids > 0);
  check_ids(&c, c.n_ids, NULL, 0);
  ctx_done(&c, true);
  CHECK(!exists(c.dir));
}

TEST(close_keep_files_then_sweep) {
  ctx c;
  ctx_init(&c, "keep/sid/topic");
  sl_spill_set_segment_bytes(c.sp, 4096);
  write_all(&c, 300);
  size_t files = count_files(c.dir);
  CHECK(files > 3);
  ctx_done(&c, false);
  CHECK_EQ_INT(count_files(c.dir), files); /* left for the sweep, as after a crash */
  char root[PATH_MAX];
  snprintf(root, sizeof root, "%s/keep", base);
  CHECK_EQ_INT(sl_spill_sweep(root, NULL, NULL), files);
  CHECK(exists(root));
  CHECK(!exists(c.dir));
  snprintf(root, sizeof root, "%s/keep/sid", base);
  CHECK(!exists(root));
}

static void touch(const char *p) {
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write(fd, "x", 1) != 1) TL_FAIL("touch %s", p);
  if (fd >= 0) close(fd);
}

typedef struct {
  char rel[256];
  sl_spill_orphans found;
  bool files_present; /* the files were still there when the count was reported */
  char dir[PATH_MAX];
  int calls;
} sweep_seen;

static void on_sweep(void *arg, const char *rel, const sl_spill_orphans *found) {
  sweep_seen *s = arg;
  s->calls++;
  snprintf(s->rel, sizeof s->rel, "%s", rel);
  s->found = *found;
  s->files_present = count_files(s->dir) == found->files;
}

/* A crash leaves records on disk: the sweep counts the complete ones with a good CRC (a
 * flipped byte and a torn tail are corrupt, not records) and reports them, per directory,
 * before removing anything. */
TEST(sweep_counts_orphan_records_before_removing) {
  ctx c;
  ctx_init(&c, "count/ns/sid/topic");
  sl_spill_set_segment_bytes(c.sp, 4096);
  write_all(&c, 300);
  size_t files = count_files(c.dir);
  ctx_done(&c, false);
  /* flip one byte of the last record of the newest segment, then append a torn record */
  char seg[PATH_MAX + 64];
  snprintf(seg, sizeof seg, "%s/seg-%016llx.spill", c.dir, (unsigned long long)files);
  struct stat st;
  CHECK(stat(seg, &st) == 0);
  int fd = open(seg, O_RDWR);
  CHECK(fd >= 0);
  uint8_t b;
  CHECK(pread(fd, &b, 1, st.st_size - 1) == 1);
  b ^= 0xff;
  CHECK(pwrite(fd, &b, 1, st.st_size - 1) == 1);
  const uint8_t torn[] = {100, 0, 0, 0, 1, 2, 3, 4, 'x'}; /* says 100 bytes, holds 1 */
  CHECK(pwrite(fd, torn, sizeof torn, st.st_size) == (ssize_t)sizeof torn);
  close(fd);
  /* and a file that is not a segment at all */
  snprintf(seg, sizeof seg, "%s/seg-ffffffffffffffff.spill", c.dir);
  touch(seg);

  char root[PATH_MAX];
  snprintf(root, sizeof root, "%s/count", base);
  sweep_seen seen = {0};
  snprintf(seen.dir, sizeof seen.dir, "%s", c.dir);
  CHECK_EQ_INT(sl_spill_sweep(root, on_sweep, &seen), files + 1);
  CHECK_EQ_INT(seen.calls, 1);
  CHECK_EQ_STR(seen.rel, "ns/sid/topic");
  CHECK_EQ_INT(seen.found.files, files + 1);
  CHECK_EQ_INT(seen.found.records, 299); /* 300 written, one flipped */
  CHECK_EQ_INT(seen.found.corrupt, 3);   /* the flipped record, the torn tail, the bad file */
  CHECK(seen.files_present);
  CHECK(!exists(c.dir));
}

TEST(sweep_removes_only_spill_files_and_empty_dirs) {
  char root[PATH_MAX], p[PATH_MAX + 64], outside[PATH_MAX];
  snprintf(root, sizeof root, "%s/sweep", base);
  snprintf(outside, sizeof outside, "%s/outside", base);
  const char *dirs[] = {"", "/a", "/a/b", "/a/b/c", "/d", "/d/e", "/f", "/g.spill"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
    snprintf(p, sizeof p, "%s%s", root, dirs[i]);
    CHECK(mkdir(p, 0700) == 0);
  }
  CHECK(mkdir(outside, 0700) == 0);
  const char *spills[] = {"/a/b/c/seg-0000000000000001.spill", "/a/b/x.spill", "/d/e/y.spill",
                          "/top.spill", "/g.spill/z.spill"};
  for (size_t i = 0; i < sizeof spills / sizeof *spills; i++) {
    snprintf(p, sizeof p, "%s%s", root, spills[i]);
    touch(p);
  }
  snprintf(p, sizeof p, "%s/a/keep.txt", root);
  touch(p);
  snprintf(p, sizeof p, "%s/a/b/x.spill.bak", root);
  touch(p);
  snprintf(p, sizeof p, "%s/victim.spill", outside);
  touch(p);
  /* A symlink named *.spill, and a symlinked directory: neither is followed or removed. */
  snprintf(p, sizeof p, "%s/link.spill", root);
  char target[PATH_MAX + 64];
  snprintf(target, sizeof target, "%s/victim.spill", outside);
  CHECK(symlink(target, p) == 0);
  snprintf(p, sizeof p, "%s/dirlink", root);
  CHECK(symlink(outside, p) == 0);

  CHECK_EQ_INT(sl_spill_sweep(root, NULL, NULL), 5);
  CHECK(exists(root));
  struct { const char *path; bool present; } want[] = {
      {"/a", true},           {"/a/keep.txt", true}, {"/a/b", true},    {"/a/b/x.spill.bak", true},
      {"/a/b/c", false},      {"/a/b/x.spill", false}, {"/d", false},   {"/f", false},
      {"/g.spill", false},    {"/top.spill", false},  {"/link.spill", true}, {"/dirlink", true},
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    snprintf(p, sizeof p, "%s%s", root, want[i].path);
    if (exists(p) != want[i].present)
      TL_FAIL("%s: exists=%d, want %d", want[i].path, !want[i].present, want[i].present);
  }
  CHECK(exists(target));

  snprintf(p, sizeof p, "%s/no-such-dir", base);
  CHECK_EQ_INT(sl_spill_sweep(p, NULL, NULL), 0);
  snprintf(p, sizeof p, "%s/a/keep.txt", root);
  CHECK_EQ_INT(sl_spill_sweep(p, NULL, NULL), -ENOTDIR);
  CHECK_EQ_INT(sl_spill_sweep(root, NULL, NULL), 0); /* idempotent */
}

TEST(write_failure_enotdir) {
  ctx c;
  char file[PATH_MAX];
  snprintf(file, sizeof file, "%s/plainfile", base);
  touch(file);
  ctx_init(&c, "plainfile/lane");
  CHECK_EQ_INT(append_id(&c, 0), 0);
  CHECK_EQ_INT(append_id(&c, 1), 0);
  CHECK_EQ_INT(append_id(&c, 2), 0);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  /* Job 1 carried record 0; 1 and 2 were queued behind it: one report for all three. */
  CHECK_EQ_INT(c.w_calls, 1);
  CHECK_EQ_INT(c.w_ok, 0);
  CHECK_EQ_INT(c.w_failed, 3);
  CHECK_EQ_INT(c.w_err, UV_ENOTDIR);
  CHECK(sl_spill_failed(c.sp));
  CHECK_EQ_INT(sl_spill_count(c.sp), 0);
  CHECK_EQ_INT(append_id(&c, 3), UV_ENOTDIR);
  CHECK_EQ_INT(sl_spill_read(c.sp, 1, 1), UV_ENOENT);

  /* Still broken after a reset: fails again, counted again. */
  sl_spill_reset(c.sp);
  CHECK(!sl_spill_failed(c.sp));
  CHECK_EQ_INT(append_id(&c, 3), 0);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(c.w_failed, 4);
  CHECK(sl_spill_failed(c.sp));

  /* Fixed: the next write makes the directory and works. */
  CHECK(unlink(file) == 0);
  sl_spill_reset(c.sp);
  for (uint32_t i = 0; i < 10; i++) CHECK_EQ_INT(append_id(&c, i), 0);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(c.w_ok, 10);
  drain(&c);
  check_ids(&c, 10, NULL, 0);
  ctx_done(&c, true);
  CHECK(!exists(c.dir));
  snprintf(file, sizeof file, "%s/plainfile", base);
  CHECK(!exists(file));
}

TEST(directory_removed_under_us) {
  ctx c;
  ctx_init(&c, "gone/lane");
  write_all(&c, 5);
  drain(&c);
  check_ids(&c, 5, NULL, 0);
  CHECK_EQ_INT(count_files(c.dir), 0);
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/gone", base);
  CHECK(rmdir(c.dir) == 0 && rmdir(p) == 0);
  c.auto_read = false;
  CHECK_EQ_INT(append_id(&c, 5), 0);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(c.w_err, UV_ENOENT);
  CHECK_EQ_INT(c.w_failed, 1);
  sl_spill_reset(c.sp);
  CHECK_EQ_INT(append_id(&c, 5), 0); /* the directory is made again */
  uv_run(&c.loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(c.w_ok, 6);
  drain(&c);
  check_ids(&c, 6, NULL, 0);
  ctx_done(&c, true);
  CHECK(!exists(p));
}

/* 1500-byte records: 1508 bytes each on disk, which does not divide 64 KiB - 16, so the
 * failing write leaves a torn record that must stay invisible. */
static int append_1500(sl_spill *sp, uint32_t id) {
  uint8_t buf[1500];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(id + i);
  memcpy(buf, &id, 4);
  return sl_spill_append(sp, buf, sizeof buf);
}

static size_t n1500;
static uint32_t ids1500[256];
static size_t w1500_calls, w1500_ok, w1500_failed;
static int w1500_err;
static void on_written_1500(sl_spill *sp, void *arg, size_t ok, size_t failed, int err) {
  (void)sp;
  (void)arg;
  w1500_calls++;
  w1500_ok += ok;
  w1500_failed += failed;
  if (err) w1500_err = err;
}
static void on_read_1500(sl_spill *sp, void *arg, sl_spill_rec *recs, size_t n, size_t corrupt,
                         int status) {
  (void)arg;
  (void)status;
  if (corrupt) TL_FAIL("corrupt %zu", corrupt);
  for (size_t i = 0; i < n; i++) {
    uint32_t id;
    memcpy(&id, recs[i].data, 4);
    if (recs[i].len != 1500 || recs[i].data[100] != (uint8_t)(id + 100)) TL_FAIL("bad record");
    if (n1500 < 256) ids1500[n1500++] = id;
    free(recs[i].data);
  }
  free(recs);
  if (sl_spill_count(sp) > 0 && sl_spill_read(sp, 1000, 1 << 30) != 0) TL_FAIL("read refused");
}

TEST(write_failure_enospc_tmpfs) {
  char mnt[128], dir[PATH_MAX], filler[PATH_MAX];
  snprintf(mnt, sizeof mnt, "%s/tmpfs", base);
  snprintf(dir, sizeof dir, "%s/lane", mnt);
  snprintf(filler, sizeof filler, "%s/filler", mnt);
  CHECK(mkdir(mnt, 0700) == 0);
  if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
    printf("# ENOSPC test skipped: cannot mount a tmpfs here (euid %d: %s); "
           "write_failure_enotdir covers the failure path\n",
           (int)geteuid(), strerror(errno));
    return;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  sl_spill_callbacks cb = {on_written_1500, on_read_1500};
  sl_spill *sp = sl_spill_open(&loop, dir, &cb, NULL);
  n1500 = w1500_calls = w1500_ok = w1500_failed = 0;
  w1500_err = 0;

  /* Phase A: 200 x 1508 bytes into 64 KiB. */
  for (uint32_t i = 0; i < 200; i++) CHECK_EQ_INT(append_1500(sp, i), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(w1500_err, UV_ENOSPC);
  CHECK_EQ_INT(w1500_ok + w1500_failed, 200);
  char seg[PATH_MAX + 300];
  struct stat st;
  CHECK(seg_nth(dir, 0, seg, sizeof seg));
  CHECK(stat(seg, &st) == 0);
  CHECK(st.st_size <= 65536);
  CHECK_EQ_INT(w1500_ok, ((size_t)st.st_size - 16) / 1508); /* exactly the whole records */
  CHECK(((size_t)st.st_size - 16) % 1508 != 0);             /* and a torn one after them */
  CHECK(w1500_ok > 30);
  CHECK(sl_spill_failed(sp));
  CHECK_EQ_INT(sl_spill_count(sp), w1500_ok);
  CHECK_EQ_INT(sl_spill_disk_bytes(sp), (uint64_t)st.st_size);
  CHECK_EQ_INT(append_1500(sp, 999), UV_ENOSPC);
  printf("# ENOSPC on a 64k tmpfs: %zu written, %zu failed, file %lld bytes\n", w1500_ok,
         w1500_failed, (long long)st.st_size);

  /* Phase B: exactly the written records come back, in order; the torn one never does. */
  CHECK_EQ_INT(sl_spill_read(sp, 1000, 1 << 30), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(n1500, w1500_ok);
  for (size_t i = 0; i < n1500; i++)
    if (ids1500[i] != i) {
      TL_FAIL("record %zu has id %u", i, ids1500[i]);
      break;
    }
  CHECK_EQ_INT(sl_spill_count(sp), 0);
  CHECK_EQ_INT(count_files(dir), 0); /* drained: the space is free again */
  CHECK_EQ_INT(sl_spill_disk_bytes(sp), 0);

  /* Phase C: the disk is full before the job starts; the records queued behind job 1 are
   * reported in the same callback. */
  int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  static char chunk[4096];
  while (fd >= 0 && write(fd, chunk, sizeof chunk) > 0) {}
  if (fd >= 0) close(fd);
  sl_spill_reset(sp);
  size_t calls = w1500_calls, failed = w1500_failed;
  for (uint32_t i = 0; i < 5; i++) CHECK_EQ_INT(append_1500(sp, i), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(w1500_calls, calls + 1);
  CHECK_EQ_INT(w1500_failed, failed + 5);
  CHECK_EQ_INT(sl_spill_count(sp), 0);
  CHECK(sl_spill_failed(sp));
  CHECK_EQ_INT(count_files(dir), 0); /* no empty segment left behind */

  /* Phase D: space again; reset; works. */
  CHECK(unlink(filler) == 0);
  sl_spill_reset(sp);
  size_t ok = w1500_ok;
  n1500 = 0;
  for (uint32_t i = 0; i < 10; i++) CHECK_EQ_INT(append_1500(sp, i), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(w1500_ok, ok + 10);
  CHECK_EQ_INT(sl_spill_read(sp, 1000, 1 << 30), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(n1500, 10);
  for (size_t i = 0; i < n1500 && i < 10; i++) CHECK_EQ_INT(ids1500[i], i);

  sl_spill_close(sp, true, mnt);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(!exists(dir));
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  CHECK(umount2(mnt, MNT_DETACH) == 0);
  rmdir(mnt);
}

TEST(write_failure_after_reset_on_torn_segment_starts_new_segment) {
  /* After a failure mid-segment, records already on disk stay readable and the next write
   * goes to a new segment (seen through the file names). Simulated with ENOTDIR is not
   * possible mid-segment, so this runs on the tmpfs only when it can be mounted. */
  char mnt[128], dir[PATH_MAX], filler[PATH_MAX];
  snprintf(mnt, sizeof mnt, "%s/tmpfs2", base);
  snprintf(dir, sizeof dir, "%s/lane", mnt);
  snprintf(filler, sizeof filler, "%s/filler", mnt);
  CHECK(mkdir(mnt, 0700) == 0);
  if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
    printf("# torn-segment test skipped: cannot mount a tmpfs here\n");
    return;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  sl_spill_callbacks cb = {on_written_1500, on_read_1500};
  sl_spill *sp = sl_spill_open(&loop, dir, &cb, NULL);
  n1500 = w1500_calls = w1500_ok = w1500_failed = 0;
  w1500_err = 0;
  /* Leave room for ~20 records, then fill the rest with the filler. */
  for (uint32_t i = 0; i < 5; i++) CHECK_EQ_INT(append_1500(sp, i), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(w1500_ok, 5);
  int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  static char chunk[4096];
  for (int i = 0; i < 8 && fd >= 0; i++)
    if (write(fd, chunk, sizeof chunk) <= 0) break;
  if (fd >= 0) close(fd);
  for (uint32_t i = 5; i < 100; i++) CHECK_EQ_INT(append_1500(sp, i), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(w1500_err, UV_ENOSPC);
  size_t ok = w1500_ok;
  CHECK(ok > 5 && ok < 100);
  CHECK_EQ_INT(ok + w1500_failed, 100);
  CHECK(unlink(filler) == 0);
  sl_spill_reset(sp);
  for (uint32_t i = 100; i < 103; i++) CHECK_EQ_INT(append_1500(sp, i), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(w1500_ok, ok + 3);
  CHECK_EQ_INT(count_files(dir), 2);
  char seg[PATH_MAX + 300];
  CHECK(seg_nth(dir, 1, seg, sizeof seg) && strstr(seg, "seg-0000000000000002.spill"));
  CHECK_EQ_INT(sl_spill_read(sp, 1000, 1 << 30), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(n1500, ok + 3);
  for (size_t i = 0; i < ok && i < 256; i++) CHECK_EQ_INT(ids1500[i], i);
  for (size_t i = 0; i < 3; i++) CHECK_EQ_INT(ids1500[ok + i], 100 + i);
  CHECK_EQ_INT(count_files(dir), 0);
  sl_spill_close(sp, true, mnt);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  CHECK(umount2(mnt, MNT_DETACH) == 0);
  rmdir(mnt);
}

int main(void) {
  snprintf(base, sizeof base, "/tmp/sluice-spill-XXXXXX");
  if (!mkdtemp(base)) {
    perror("mkdtemp");
    return 2;
  }
  sl_log_threshold = SL_LOG_ERROR; /* corruption tests warn on purpose */
  RUN(round_trip_across_segments);
  RUN(interleaved_append_and_read);
  RUN(read_limits_and_sizes);
  RUN(batch_limits);
  RUN(large_and_empty_records_content);
  RUN(corrupt_crc_skipped_and_counted);
  RUN(truncated_segments_abandoned);
  RUN(bad_header_length_and_missing_file);
  RUN(all_corrupt_drains_to_zero);
  RUN(close_with_write_job_in_flight);
  RUN(close_with_read_job_in_flight);
  RUN(close_from_callback);
  RUN(close_keep_files_then_sweep);
  RUN(sweep_removes_only_spill_files_and_empty_dirs);
  RUN(sweep_counts_orphan_records_before_removing);
  RUN(write_failure_enotdir);
  RUN(directory_removed_under_us);
  RUN(write_failure_enospc_tmpfs);
  RUN(write_failure_after_reset_on_torn_segment_starts_new_segment);
  rm_rf(base);
  return tl_report();
}
