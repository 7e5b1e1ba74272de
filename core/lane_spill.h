/* lane_spill.h - SPILL_TO_DISK for lanes: a full lane's overflow goes to a per-lane spill
 * file (core/spill.c) and comes back in FIFO order when the lane has room again.
 *
 * Files live under <spillRoot>/<namespace path>/<client id>/<topic> (each segment with
 * \ / : " * ? < > | and control characters replaced by '_'). Record layout: u32 est_bytes,
 * u16 message id length, the id, the packet bytes. */
#ifndef SL_LANE_SPILL_H
#define SL_LANE_SPILL_H

#include "sl_internal.h"

/* sl_lane_spill_append: write m to the lane's spill (opening it on first use; a spill
 * whose last write failed and that holds nothing is reset first). The spilled count and
 * the onOverflow event come when the write completes. When it cannot be written, counts
 * one SL_OV_SPILL_FAILED overflow (the message is lost, as with REJECT_NEW) and logs a
 * warning once per lane. m stays the caller's. */
void sl_lane_spill_append(sl_lane *l, sl_msg *m);

/* sl_lane_spill_refill: when the lane has spilled records, no read pending, and is at most
 * half full, start reading as many of the oldest records as fit back; they are pushed and
 * the lane made ready when the read completes. No-op otherwise. */
void sl_lane_spill_refill(sl_lane *l);

/* sl_lane_spill_close: close the lane's spill, deleting its files (lane teardown). */
void sl_lane_spill_close(sl_lane *l);

/* sl_spill_sweep_server: remove spill files left by an earlier process under the server's
 * spill root (startup). Only when one of its namespaces uses SPILL_TO_DISK; logs what it
 * removed or why it could not. */
void sl_spill_sweep_server(sl_server *srv);

#endif
