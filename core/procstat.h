/* procstat.h - the process_* metrics as the Prometheus client libraries define them
 * (client_golang's process collector): CPU seconds, resident and virtual memory, open and
 * maximum file descriptors, start time. Linux reads /proc/self; elsewhere the series that
 * cannot be read are left out rather than reported as 0. */
#ifndef SL_PROCSTAT_H
#define SL_PROCSTAT_H

#include "sl_util.h"

/* Figures of the running process. A field that could not be read is negative. */
typedef struct sl_procstat {
  double cpu_seconds;    /* user + system CPU time */
  double resident_bytes; /* RSS */
  double virtual_bytes;  /* VmSize */
  double open_fds;       /* entries of /proc/self/fd */
  double max_fds;        /* RLIMIT_NOFILE soft limit */
  double start_time;     /* seconds since the Unix epoch */
} sl_procstat;

/* sl_procstat_read: fill *st with the current figures. Never fails: what cannot be read is
 * set to -1. Costs a few small /proc reads; meant for a scrape, not a hot path. */
void sl_procstat_read(sl_procstat *st);

/* sl_procstat_text: append the process_* series (HELP, TYPE, sample; no labels) of *st to b,
 * skipping the negative fields. */
void sl_procstat_text(sl_sbuf *b, const sl_procstat *st);

#endif
