/* ledger.h - the crash ledger: per-topic counts of the deliveries a process holds (queued,
 * in flight, spilled), kept in a file mapped MAP_SHARED, so that what a process that dies
 * (kill -9, a crash) still held can be counted by the next start instead of vanishing.
 *
 * The counts live in the page cache: a store is visible in the file as soon as it is made,
 * whatever happens to the process afterwards. They do not survive the loss of the machine
 * (nothing is fsync'ed): the ledger answers "how much did the crashed process drop", not
 * "what were the messages".
 *
 * File: a 32-byte header ("SLLEDGR1", u32 version, u32 slot count, u32 slot size, 12 zero
 * bytes), then fixed 256-byte slots: u64 held, u32 CRC32 of the names part, u16 namespace
 * length, u16 topic length, the two names. A slot whose lengths are 0 is free. Readers
 * check every field. */
#ifndef SL_LEDGER_H
#define SL_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_ledger sl_ledger;

/* Called for every slot of a previous process's ledger whose held count is not 0. */
typedef void (*sl_ledger_prev_cb)(void *arg, const char *ns, const char *topic, uint64_t held);

/* sl_ledger_open: first read the ledger a previous process left at path (if any; every byte
 * treated as hostile: a bad header makes the whole file unreadable, a bad slot is skipped)
 * and report its non-zero slots to prev; then replace it with a fresh, empty, mapped ledger
 * of nslots slots (0 or more than 4096: 4096), its disk space allocated at once (a full disk
 * fails here with UV_ENOSPC instead of a SIGBUS at the first store).
 * Returns the ledger or NULL (*err: a negative errno; the old file is then left alone when
 * it could not be read). *bad_slots gets the number of slots skipped as corrupt (or 1 for an
 * unreadable file). Synchronous: startup only. */
sl_ledger *sl_ledger_open(const char *path, size_t nslots, sl_ledger_prev_cb prev, void *arg,
                          size_t *bad_slots, int *err);

/* sl_ledger_slot: the held counter of (ns, topic), creating its slot on first use. NULL when
 * the ledger is full or the names do not fit a slot (that topic is then not tracked). The
 * pointer stays valid until sl_ledger_close. */
uint64_t *sl_ledger_slot(sl_ledger *lg, const char *ns, const char *topic);

/* sl_ledger_close: unmap; with remove, delete the file (a clean stop: nothing was held). */
void sl_ledger_close(sl_ledger *lg, bool remove);

#endif
