/* procstat.c - process_* metrics (procstat.h). The names, types and units are those of the
 * Prometheus client libraries, so stock dashboards and alerts (e.g. "process restarted":
 * changes(process_start_time_seconds[1h])) work unchanged. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>
#include "procstat.h"

/* Boot time (btime of /proc/stat) in seconds since the epoch, or -1. */
static double boot_time(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return -1;
  char line[256];
  double bt = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long long v;
    if (sscanf(line, "btime %llu", &v) == 1) {
      bt = (double)v;
      break;
    }
  }
  fclose(f);
  return bt;
}

/* /proc/self/stat: fields after the parenthesised command name (which may hold spaces and
 * parentheses, hence strrchr). starttime is field 22 (clock ticks after boot), vsize 23. */
static void read_stat(sl_procstat *st) {
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f) return;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return;
  /* field 3 (state) is the first after ") " */
  unsigned long long starttime = 0, vsize = 0;
  int field = 3;
  for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " "), field++) {
    if (field == 22)
      starttime = strtoull(tok, NULL, 10);
    else if (field == 23) {
      vsize = strtoull(tok, NULL, 10);
      break;
    }
  }
  if (field != 23) return;
  st->virtual_bytes = (double)vsize;
  long hz = sysconf(_SC_CLK_TCK);
  double bt = boot_time();
  if (hz > 0 && bt >= 0) st->start_time = bt + (double)starttime / (double)hz;
}

static double count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  double n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the descriptor opendir itself holds */
}

/* sl_procstat_read: see procstat.h. */
void sl_procstat_read(sl_procstat *st) {
  st->cpu_seconds = st->resident_bytes = st->virtual_bytes = -1;
  st->open_fds = st->max_fds = st->start_time = -1;
  uv_rusage_t ru;
  if (uv_getrusage(&ru) == 0)
    st->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  size_t rss;
  if (uv_resident_set_memory(&rss) == 0) st->resident_bytes = (double)rss;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    st->max_fds = (double)rl.rlim_cur;
  st->open_fds = count_fds();
  read_stat(st);
}

/* sl_procstat_text: see procstat.h. */
void sl_procstat_text(sl_sbuf *b, const sl_procstat *st) {
  static const struct {
    const char *name, *type, *help;
    size_t off;
  } m[] = {
      {"process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
       offsetof(sl_procstat, cpu_seconds)},
      {"process_open_fds", "gauge", "Number of open file descriptors.",
       offsetof(sl_procstat, open_fds)},
      {"process_max_fds", "gauge", "Maximum number of open file descriptors.",
       offsetof(sl_procstat, max_fds)},
      {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
       offsetof(sl_procstat, virtual_bytes)},
      {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
       offsetof(sl_procstat, resident_bytes)},
      {"process_start_time_seconds", "gauge",
       "Start time of the process since unix epoch in seconds.", offsetof(sl_procstat, start_time)},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
    double v = *(const double *)((const char *)st + m[i].off);
    if (v < 0) continue;
    sl_sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", m[i].name, m[i].help, m[i].name,
                   m[i].type, m[i].name, v);
  }
}
