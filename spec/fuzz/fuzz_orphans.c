/* fuzz_orphans.c - libFuzzer target for the readers of files a crashed process left behind:
 * the orphan segment counter of sl_spill_sweep (core/spill.c) and the crash ledger reader of
 * sl_ledger_open (core/ledger.c). The input is written as a segment file, swept, then as a
 * ledger file, opened. Oracles: the sweep reports the one file, never more complete records
 * than the bytes allow, and removes it; the ledger reports only slots with sane names and
 * counts, and a fresh ledger replaces the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "spill.h"
#include "ledger.h"

static char dir[64], seg_dir[96], seg[160], ledger[96];

static void fail(const char *why) {
  fprintf(stderr, "fuzz_orphans: %s\n", why);
  abort();
}

static void cleanup(void) { rmdir(dir); }

static void write_file(const char *path, const uint8_t *d, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) fail("open");
  if (n && write(fd, d, n) != (ssize_t)n) fail("write");
  close(fd);
}

static void on_dir(void *arg, const char *rel, const sl_spill_orphans *f) {
  sl_spill_orphans *all = arg;
  if (strcmp(rel, "ns/sid/topic") != 0) fail("wrong directory");
  all->files += f->files;
  all->records += f->records;
  all->corrupt += f->corrupt;
  all->bytes += f->bytes;
}

static void on_slot(void *arg, const char *ns, const char *topic, uint64_t held) {
  (void)arg;
  if (!*ns || !*topic || strlen(ns) + strlen(topic) > 240 || held == 0 || held > (1ull << 48))
    fail("a ledger slot that should have been refused");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) {
    /* a tmpfs when there is one: every input is two files */
    snprintf(dir, sizeof dir, "%s/sluice-fuzz-spill-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir)) fail("mkdtemp");
    atexit(cleanup);
    snprintf(seg_dir, sizeof seg_dir, "%s/ns/sid/topic", dir);
    snprintf(seg, sizeof seg, "%s/seg-0000000000000001.spill", seg_dir);
    snprintf(ledger, sizeof ledger, "%s/ledger-main.bin", dir);
  }
  char p[96];
  snprintf(p, sizeof p, "%s/ns", dir);
  mkdir(p, 0700);
  snprintf(p, sizeof p, "%s/ns/sid", dir);
  mkdir(p, 0700);
  mkdir(seg_dir, 0700);
  write_file(seg, data, size);
  sl_spill_orphans all = {0};
  if (sl_spill_sweep(dir, on_dir, &all) != 1) fail("sweep did not remove the file");
  if (all.files != 1 || all.bytes != size) fail("wrong file count or size");
  if (size < 16 ? all.records != 0 : all.records * 8 > size - 16) fail("more records than bytes");
  if (access(seg, F_OK) == 0) fail("segment left behind");

  write_file(ledger, data, size);
  size_t bad = 0;
  int err = 0;
  sl_ledger *lg = sl_ledger_open(ledger, 8, on_slot, NULL, &bad, &err);
  if (!lg) fail("ledger not replaced");
  sl_ledger_close(lg, true);
  return 0;
}
