/* spill.h - per-lane append-only spill files (SPILL_TO_DISK), I/O on libuv's thread pool.
 *
 * A spill is a FIFO of opaque records on disk, in segment files under one directory:
 *   <dir>/seg-<16 hex digits>.spill
 * Each segment starts with a header (magic "SLSPILL1", version, the offset up to which the
 * records were read back) and holds records
 * [u32 length][u32 CRC32 of the bytes][bytes]. Records are appended by a writer job and
 * read back in order by reader jobs, both on the uv thread pool (uv_queue_work); the loop
 * thread never blocks on the disk. At most one job per spill runs at a time.
 *
 * Readers treat every byte as hostile: a record whose CRC does not match is skipped and
 * counted; a length that cannot be right (over SL_SPILL_MAX_RECORD or past the end of the
 * segment) ends that segment (counted as corrupt) and reading continues with the next one.
 * Reading therefore always makes progress: never a busy loop.
 *
 * A write failure (ENOSPC, EACCES, EROFS...) is reported to the owner through on_written
 * with the number of records that did NOT reach the disk, so the owner can count them as
 * lost (and fall back to REJECT_NEW) instead of claiming they were spilled. */
#ifndef SL_SPILL_H
#define SL_SPILL_H

#include <stddef.h>
#include "sl_util.h"
#include <stdint.h>
#include <stdbool.h>
#include <uv.h>

#define SL_SPILL_MAX_RECORD (16u * 1024 * 1024)
#define SL_SPILL_SEGMENT_BYTES (4u * 1024 * 1024) /* rotate segments at this size */

typedef struct sl_spill sl_spill;

typedef struct sl_spill_rec {
  uint8_t *data; /* malloc'd; ownership passes to the callback's receiver */
  size_t len;
} sl_spill_rec;

typedef struct sl_spill_callbacks {
  /* After a write job: ok records are complete in the file (readable; not fsync'ed, see
   * spill.c: a spill does not outlive the process), failed records were
   * dropped because of err (a negative errno-style libuv code, e.g. UV_ENOSPC). When err != 0,
   * failed also counts the appends that were queued behind the failed job: every record
   * sl_spill_append accepted is reported exactly once, as ok or failed (unless closed first). */
  void (*on_written)(sl_spill *sp, void *arg, size_t ok, size_t failed, int err);
  /* After a read job started by sl_spill_read: n records in FIFO order (the array and each
   * data buffer are owned by the receiver: free them). corrupt = records/segments skipped.
   * status < 0 on an I/O error (n may still be > 0). */
  void (*on_read)(sl_spill *sp, void *arg, sl_spill_rec *recs, size_t n, size_t corrupt,
                  int status);
} sl_spill_callbacks;

/* sl_spill_open: a spill in directory dir (created with parents, mode 0700, on the first
 * write job, not here). Never touches the disk on the loop thread. Returns NULL only for a
 * NULL loop or an empty dir (allocation failure aborts). */
sl_spill *sl_spill_open(uv_loop_t *loop, const char *dir, const sl_spill_callbacks *cb, void *arg);

/* sl_spill_set_segment_bytes: rotate segments at `bytes` instead of SL_SPILL_SEGMENT_BYTES
 * (0 restores the default); applies from the next write job. For tests and tuning. */
void sl_spill_set_segment_bytes(sl_spill *sp, size_t bytes);

/* sl_spill_append: queue a copy of one record for writing (the write job starts right away
 * or after the running job). Returns 0, or UV_E2BIG for a record over SL_SPILL_MAX_RECORD,
 * or UV_ENOMEM if the copy cannot be allocated,
 * or the error of an earlier failed write (the spill stays failed: the owner must stop
 * spilling to it; sl_spill_reset clears the failure). */
SL_WUR int sl_spill_append(sl_spill *sp, const void *data, size_t len);

/* sl_spill_read: start a read job for up to max_records / max_bytes of the oldest records
 * not yet read (only records already written are visible). on_read fires once. Returns 0,
 * or UV_EBUSY if a read is already pending, or UV_ENOENT when nothing is readable now
 * (UV_EINVAL for max_records 0). The records total at most max_bytes of data, except that
 * the first one comes whatever its size (a record larger than max_bytes comes alone). */
SL_WUR int sl_spill_read(sl_spill *sp, size_t max_records, size_t max_bytes);

/* Records appended and not yet handed out by on_read (queued, being written, on disk). */
size_t sl_spill_count(const sl_spill *sp);
/* Bytes currently in segment files (for the spill-bytes gauge). */
uint64_t sl_spill_disk_bytes(const sl_spill *sp);
bool sl_spill_failed(const sl_spill *sp);
void sl_spill_reset(sl_spill *sp);

/* sl_spill_close: stop using the spill. Pending jobs finish on the pool; then, if
 * remove_files, the segment files and the directory (and its parents up to but excluding
 * stop_at, when they are empty) are removed; then the memory is freed. No callback fires
 * after this call. */
void sl_spill_close(sl_spill *sp, bool remove_files, const char *stop_at);

/* What a sweep found in one directory before removing it: segment files, their complete
 * records with a matching CRC, the corrupt units (a record with a bad CRC, a torn or
 * impossible tail, a file with a bad header or that cannot be opened) and the file bytes. */
typedef struct sl_spill_orphans {
  size_t files, records, corrupt;
  uint64_t bytes;
} sl_spill_orphans;

/* Called once per directory holding segment files, before they are removed. rel is the
 * directory's path under the root ("" for the root itself; the names as on disk). */
typedef void (*sl_spill_sweep_cb)(void *arg, const char *rel, const sl_spill_orphans *found);

/* sl_spill_sweep: remove orphaned *.spill files (left by a crash: every lane dies with the
 * process) and then empty directories under root, synchronously (startup only). Before a
 * directory's files are removed, their records are counted (every byte read as hostile) and
 * reported to cb (may be NULL). Returns the number of files removed, or a negative errno
 * when root cannot be read (ENOENT is 0). */
long sl_spill_sweep(const char *root, sl_spill_sweep_cb cb, void *arg);

#endif
