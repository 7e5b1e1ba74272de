/* ledger.c - the crash ledger (ledger.h): held counts per topic in a MAP_SHARED file. */
#include "ledger.h"
#include "sl_util.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define LG_HDR_BYTES 32u
#define LG_SLOT_BYTES 256u
#define LG_SLOT_NAMES (LG_SLOT_BYTES - 16u) /* room for the two names */
#define LG_SLOTS 4096u                      /* at most (a reader refuses more) */
#define LG_VERSION 1u
#define LG_HELD_MAX (1ull << 48) /* more than any process could hold: a bad slot */

static const char lg_magic[8] = {'S', 'L', 'L', 'E', 'D', 'G', 'R', '1'};

struct sl_ledger {
  char *path;
  uint8_t *map;
  size_t map_len;
  uint32_t nslots; /* slots in the file */
  uint32_t used;   /* slots handed out (they are used in order) */
};

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static uint16_t get16(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

static uint32_t names_crc(const uint8_t *slot, size_t n) {
  return (uint32_t)crc32(crc32(0L, Z_NULL, 0), slot + 12, (uInt)(4 + n));
}

/* Read and report the ledger at path. Returns 0 (also when there is none), 1 when the file
 * exists but is not a ledger (counted in *bad), or a negative errno. */
static int read_prev(const char *path, sl_ledger_prev_cb prev, void *arg, size_t *bad) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  struct stat st;
  uint8_t hdr[LG_HDR_BYTES];
  int rc = 0;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr || memcmp(hdr, lg_magic, 8) != 0 ||
      get32(hdr + 8) != LG_VERSION || get32(hdr + 16) != LG_SLOT_BYTES ||
      get32(hdr + 12) > LG_SLOTS ||
      (uint64_t)st.st_size < LG_HDR_BYTES + (uint64_t)get32(hdr + 12) * LG_SLOT_BYTES) {
    (*bad)++;
    close(fd);
    return 1;
  }
  uint32_t n = get32(hdr + 12);
  uint8_t slot[LG_SLOT_BYTES];
  char ns[LG_SLOT_NAMES + 1], topic[LG_SLOT_NAMES + 1];
  for (uint32_t i = 0; i < n; i++) {
    if (pread(fd, slot, sizeof slot, LG_HDR_BYTES + (off_t)i * LG_SLOT_BYTES) !=
        (ssize_t)sizeof slot) {
      (*bad)++;
      break;
    }
    uint16_t nl = get16(slot + 12), tl = get16(slot + 14);
    if (nl == 0 && tl == 0) continue; /* never used */
    uint64_t held;
    memcpy(&held, slot, 8);
    if (nl == 0 || tl == 0 || (size_t)nl + tl > LG_SLOT_NAMES ||
        names_crc(slot, (size_t)nl + tl) != get32(slot + 8) || held > LG_HELD_MAX ||
        memchr(slot + 16, 0, (size_t)nl + tl)) {
      (*bad)++;
      continue;
    }
    if (held == 0) continue;
    memcpy(ns, slot + 16, nl);
    ns[nl] = '\0';
    memcpy(topic, slot + 16 + nl, tl);
    topic[tl] = '\0';
    if (prev) prev(arg, ns, topic, held);
  }
  close(fd);
  return rc;
}

/* sl_ledger_open: see ledger.h. The new file is written under a temporary name, then
 * renamed over the old one: a crash in between leaves the old ledger, read again next time. */
sl_ledger *sl_ledger_open(const char *path, size_t nslots, sl_ledger_prev_cb prev, void *arg,
                          size_t *bad_slots, int *err) {
  size_t bad = 0;
  *err = 0;
  int rc = read_prev(path, prev, arg, &bad);
  if (bad_slots) *bad_slots = bad;
  if (rc < 0) {
    *err = rc;
    return NULL;
  }
  size_t plen = strlen(path);
  char *tmp = sl_xmalloc(plen + 5);
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".new", 5);
  if (nslots == 0 || nslots > LG_SLOTS) nslots = LG_SLOTS;
  size_t len = LG_HDR_BYTES + nslots * LG_SLOT_BYTES;
  uint8_t *map = MAP_FAILED;
  int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)len) != 0) goto fail;
  /* Every page allocated now: a store into a hole of a MAP_SHARED file on a full disk is a
   * SIGBUS, so a full disk must show here, as an error, not later as a crash. */
  int frc = posix_fallocate(fd, 0, (off_t)len);
  if (frc != 0) {
    errno = frc;
    goto fail;
  }
  map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) goto fail;
  memcpy(map, lg_magic, 8);
  put32(map + 8, LG_VERSION);
  put32(map + 12, (uint32_t)nslots);
  put32(map + 16, LG_SLOT_BYTES);
  if (rename(tmp, path) != 0) goto fail;
  close(fd);
  free(tmp);
  sl_ledger *lg = sl_xcalloc(1, sizeof *lg);
  lg->path = sl_xstrdup(path);
  lg->map = map;
  lg->map_len = len;
  lg->nslots = (uint32_t)nslots;
  return lg;
fail:
  *err = -errno;
  if (*err == 0) *err = -EIO;
  if (map != MAP_FAILED) munmap(map, len);
  if (fd >= 0) {
    close(fd);
    unlink(tmp);
  }
  free(tmp);
  return NULL;
}

/* sl_ledger_slot: see ledger.h. Linear in the slots in use: called once per topic. */
uint64_t *sl_ledger_slot(sl_ledger *lg, const char *ns, const char *topic) {
  if (!lg) return NULL;
  size_t nl = strlen(ns), tl = strlen(topic);
  if (nl == 0 || tl == 0 || nl + tl > LG_SLOT_NAMES) return NULL;
  for (uint32_t i = 0; i < lg->used; i++) {
    uint8_t *s = lg->map + LG_HDR_BYTES + (size_t)i * LG_SLOT_BYTES;
    if (get16(s + 12) == nl && get16(s + 14) == tl && memcmp(s + 16, ns, nl) == 0 &&
        memcmp(s + 16 + nl, topic, tl) == 0)
      return (uint64_t *)(void *)s;
  }
  if (lg->used == lg->nslots) return NULL;
  uint8_t *s = lg->map + LG_HDR_BYTES + (size_t)lg->used++ * LG_SLOT_BYTES;
  uint16_t n16 = (uint16_t)nl, t16 = (uint16_t)tl;
  memcpy(s + 16, ns, nl);
  memcpy(s + 16 + nl, topic, tl);
  memcpy(s + 12, &n16, 2);
  memcpy(s + 14, &t16, 2);
  put32(s + 8, names_crc(s, nl + tl));
  return (uint64_t *)(void *)s; /* slots are 8-byte aligned: the map is page-aligned */
}

/* sl_ledger_close: see ledger.h. */
void sl_ledger_close(sl_ledger *lg, bool remove) {
  if (!lg) return;
  munmap(lg->map, lg->map_len);
  if (remove) unlink(lg->path);
  free(lg->path);
  free(lg);
}
