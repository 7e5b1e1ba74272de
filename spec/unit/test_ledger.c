/* test_ledger.c - the crash ledger (core/ledger.h): counts survive the process that wrote
 * them (a child killed with SIGKILL), the next open reports and resets them, and every byte
 * of a ledger file is checked (bad header, bad slot, absurd count). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "ledger.h"
#include "testlib.h"

static char dir[] = "/tmp/sluice-ledger-XXXXXX";
static char path[256];

typedef struct {
  int n;
  char ns[8][64], topic[8][64];
  uint64_t held[8];
} seen;

static void on_prev(void *arg, const char *ns, const char *topic, uint64_t held) {
  seen *s = arg;
  if (s->n == 8) return;
  snprintf(s->ns[s->n], 64, "%s", ns);
  snprintf(s->topic[s->n], 64, "%s", topic);
  s->held[s->n++] = held;
}

static sl_ledger *open_seen(seen *s, size_t *bad) {
  int err = 0;
  memset(s, 0, sizeof *s);
  sl_ledger *lg = sl_ledger_open(path, 64, on_prev, s, bad, &err);
  if (!lg) TL_FAIL("sl_ledger_open: %d", err);
  return lg;
}

TEST(counts_survive_sigkill_and_are_reported_once) {
  seen s;
  size_t bad = 9;
  sl_ledger_close(open_seen(&s, &bad), false); /* a fresh, empty ledger */
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(s.n, 0);
  pid_t pid = fork();
  if (pid == 0) {
    int err;
    sl_ledger *lg = sl_ledger_open(path, 64, NULL, NULL, NULL, &err);
    if (!lg) _exit(1);
    uint64_t *a = sl_ledger_slot(lg, "/feed", "prices");
    uint64_t *b = sl_ledger_slot(lg, "/feed", "news");
    uint64_t *z = sl_ledger_slot(lg, "/feed", "idle");
    if (!a || !b || !z || sl_ledger_slot(lg, "/feed", "prices") != a) _exit(2);
    *a += 40;
    *b += 2;
    *a += 2;
    raise(SIGKILL); /* no close, no unmap: what a crash leaves */
    _exit(3);
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  sl_ledger *lg = open_seen(&s, &bad);
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(s.n, 2); /* the slot at 0 is not reported */
  CHECK_EQ_STR(s.ns[0], "/feed");
  CHECK_EQ_STR(s.topic[0], "prices");
  CHECK_EQ_INT(s.held[0], 42);
  CHECK_EQ_STR(s.topic[1], "news");
  CHECK_EQ_INT(s.held[1], 2);
  sl_ledger_close(lg, false);
  lg = open_seen(&s, &bad); /* reported once: the new file starts empty */
  CHECK_EQ_INT(s.n, 0);
  sl_ledger_close(lg, false);
}

TEST(names_that_do_not_fit_get_no_slot) {
  seen s;
  size_t bad;
  sl_ledger *lg = open_seen(&s, &bad);
  char big[300];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  CHECK(sl_ledger_slot(lg, "/ns", big) == NULL);
  CHECK(sl_ledger_slot(lg, "", "t") == NULL);
  CHECK(sl_ledger_slot(lg, "/ns", "t") != NULL);
  sl_ledger_close(lg, true);
  struct stat sb;
  CHECK(stat(path, &sb) != 0 && errno == ENOENT); /* removed on a clean close */
}

static void write_file(const void *p, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write(fd, p, n) != (ssize_t)n) TL_FAIL("write %s", path);
  if (fd >= 0) close(fd);
}

TEST(hostile_files) {
  seen s;
  size_t bad;
  /* not a ledger at all: counted bad, replaced */
  write_file("garbage that is not a ledger, long enough to fill a header...", 60);
  sl_ledger *lg = open_seen(&s, &bad);
  CHECK_EQ_INT(bad, 1);
  CHECK_EQ_INT(s.n, 0);
  uint64_t *a = sl_ledger_slot(lg, "/a", "t");
  uint64_t *b = sl_ledger_slot(lg, "/b", "t");
  uint64_t *c = sl_ledger_slot(lg, "/c", "t");
  *a = 5;
  *b = 7;
  *c = (uint64_t)1 << 60; /* more than any process holds */
  ((uint8_t *)b)[17] ^= 1; /* a name byte changed: the slot's CRC fails */
  sl_ledger_close(lg, false);
  lg = open_seen(&s, &bad);
  CHECK_EQ_INT(bad, 2);
  CHECK_EQ_INT(s.n, 1);
  CHECK_EQ_STR(s.ns[0], "/a");
  CHECK_EQ_INT(s.held[0], 5);
  sl_ledger_close(lg, false);
  /* a header that promises more slots than the file has */
  uint8_t hdr[32] = {'S', 'L', 'L', 'E', 'D', 'G', 'R', '1', 1, 0, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0};
  write_file(hdr, sizeof hdr);
  lg = open_seen(&s, &bad);
  CHECK_EQ_INT(bad, 1);
  CHECK_EQ_INT(s.n, 0);
  sl_ledger_close(lg, true);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  snprintf(path, sizeof path, "%s/ledger-main.bin", dir);
  RUN(counts_survive_sigkill_and_are_reported_once);
  RUN(names_that_do_not_fit_get_no_slot);
  RUN(hostile_files);
  unlink(path);
  rmdir(dir);
  return tl_report();
}
