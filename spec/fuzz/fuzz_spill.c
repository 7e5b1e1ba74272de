/* fuzz_spill.c - libFuzzer target for the spill segment reader (spill.c): every byte of a
 * segment file hostile. The spill writes a few records (so it knows a segment of the input's
 * size), then the segment file is overwritten with the fuzz bytes, and the records are read
 * back through the public API until the spill is empty. The reader must skip or abandon what
 * is bad, always make progress, hand out only records whose CRC matched, and leak nothing.
 *
 * Byte 0: bits 0-1 records written (1-4); bit 2 put a valid header over the first 16 bytes;
 * bit 3 cut the file short by (byte 1 & 15) + 1 bytes; bit 4 append one more record after
 * the damage; bits 5-7 the records per read (1-8). Byte 1 bits 4-7: the bytes per read
 * (16 << n). The rest is the segment file. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>
#include "spill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INVARIANT(c) do { if (!(c)) { fprintf(stderr, "invariant: %s\n", #c); abort(); } } while (0)

static uv_loop_t loop;
static char dir[128];

typedef struct {
  size_t written, failed, reads, recs, corrupt;
  bool read_done;
} ctx;

static void on_written(sl_spill *sp, void *arg, size_t ok, size_t failed, int err) {
  (void)sp;
  (void)err;
  ctx *c = arg;
  c->written += ok;
  c->failed += failed;
}

static void on_read(sl_spill *sp, void *arg, sl_spill_rec *recs, size_t n, size_t corrupt,
                    int status) {
  (void)sp;
  (void)status;
  ctx *c = arg;
  for (size_t i = 0; i < n; i++) {
    /* only records whose CRC matched are handed out: the bytes are readable to the end */
    volatile uint8_t sum = 0;
    for (size_t k = 0; k < recs[i].len; k++) sum ^= recs[i].data[k];
    (void)sum;
    free(recs[i].data);
  }
  free(recs);
  c->recs += n;
  c->corrupt += corrupt;
  c->read_done = true;
}

static bool segment_path(char *out, size_t len) {
  DIR *d = opendir(dir);
  if (!d) return false;
  struct dirent *e;
  bool found = false;
  while ((e = readdir(d))) {
    if (strstr(e->d_name, ".spill")) {
      snprintf(out, len, "%s/%s", dir, e->d_name);
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 + 16 + 8) return 0;
  if (!dir[0]) {
    uv_loop_init(&loop);
    snprintf(dir, sizeof dir, "%s/sluice-fuzz-spill-%d",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
  }
  uint8_t f0 = data[0], f1 = data[1];
  const uint8_t *file = data + 2;
  size_t fsize = size - 2;
  size_t nrec = 1 + (f0 & 3);
  while (nrec > 1 && fsize < 16 + 8 * nrec) nrec--;
  size_t payload = fsize - 16 - 8 * nrec;

  static const sl_spill_callbacks cb = {on_written, on_read};
  ctx c = {0};
  sl_spill *sp = sl_spill_open(&loop, dir, &cb, &c);
  INVARIANT(sp);
  uint8_t *zero = calloc(1, payload + 1);
  for (size_t i = 0; i < nrec; i++) {
    size_t len = i + 1 < nrec ? payload / nrec : payload - (payload / nrec) * (nrec - 1);
    INVARIANT(sl_spill_append(sp, zero, len) == 0);
  }
  free(zero);
  uv_run(&loop, UV_RUN_DEFAULT);
  INVARIANT(c.written == nrec && c.failed == 0);

  /* the damage: the segment becomes the input */
  char path[300];
  INVARIANT(segment_path(path, sizeof path));
  int fd = open(path, O_WRONLY);
  INVARIANT(fd >= 0);
  uint8_t *img = malloc(fsize);
  memcpy(img, file, fsize);
  if (f0 & 4) {
    memcpy(img, "SLSPILL1\x01\0\0\0\0\0\0\0", 16);
  }
  size_t flen = fsize;
  if (f0 & 8) flen -= (size_t)(f1 & 15) + 1 < flen ? (size_t)(f1 & 15) + 1 : flen;
  INVARIANT(pwrite(fd, img, flen, 0) == (ssize_t)flen);
  INVARIANT(ftruncate(fd, (off_t)flen) == 0);
  close(fd);
  free(img);
  size_t total = nrec;
  if (f0 & 0x10) {
    INVARIANT(sl_spill_append(sp, "tail", 4) == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    total++;
  }

  /* read everything back; every read job must move (a record or a skip) */
  size_t max_records = 1 + (f0 >> 5), max_bytes = (size_t)16 << (f1 >> 4);
  size_t rounds = 0;
  for (;;) {
    c.read_done = false;
    int r = sl_spill_read(sp, max_records, max_bytes);
    if (r == UV_ENOENT) break;
    INVARIANT(r == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    INVARIANT(c.read_done);
    INVARIANT(++rounds <= total + 2);
  }
  INVARIANT(sl_spill_count(sp) == 0);
  INVARIANT(c.recs <= total);
  INVARIANT(c.recs + c.corrupt >= 1);
  sl_spill_close(sp, true, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return 0;
}
