/* recovery.h - connection-state recovery, the delivery half (socket.io 4.6+'s
 * connectionStateRecovery; README "Connection-state recovery"): the offsets of a namespace's
 * deliveries, its history of recent deliveries, and the lanes of a parked session.
 *
 * With `recovery` configured, every delivery of a namespace gets the next number of a
 * per-namespace counter as its offset; its text, "<boot id>-<n>", is the last argument of the
 * packet (encoded once, shared by every recipient) and so unrecognizable after a restart.
 * The history keeps references to the last deliveries (the immutable sl_msg the lanes share),
 * bounded by historySize, historyBytes and maxDisconnectionMs. A session that goes for a
 * recoverable reason is parked by sio (sio.h): its lanes leave their topics (no offers, no
 * retries) and keep what they hold. When the client comes back with its pid and the offset of
 * the last event it processed, the lanes rejoin their topics, the AT_LEAST_ONCE messages in
 * flight are sent again, and every delivery of the history after that offset on its topics
 * (and after each lane's subscription) is offered to its lane again, through the overflow
 * policy. Inside the delivery layer; calls lanes, lane, acks. */
#ifndef SL_RECOVERY_H
#define SL_RECOVERY_H

#include "sl_internal.h"

#define SL_OFFSET_MAX 48 /* an offset's text with its NUL */

/* sl_recovery_ns_sync: give ns the history its config asks for: create it when recovery is
 * on, free it (and every reference it holds) when off; a smaller historySize or
 * historyBytes evicts the oldest entries. Call after sl_ns_init and after a reload gave ns a
 * new config. Aborts when memory runs out. */
void sl_recovery_ns_sync(sl_ns *ns);

/* sl_recovery_ns_free: release the history of ns (every message reference it holds). */
void sl_recovery_ns_free(sl_ns *ns);

/* sl_recovery_next_offset: the offset of the next delivery of ns (recovery on: ns->hist set):
 * writes its text into out (SL_OFFSET_MAX bytes, NUL-terminated), its number into *n (which
 * becomes ns->rec_seq) and returns the text's length. Without a cluster: the next number of
 * the namespace's counter, text "<boot id>-<n>". In a cluster (the server has a bus): the
 * stream entry id "<ms>-<seq>" the message was read with (stream_id), its number ms * 2^20 +
 * seq; returns 0 (no offset: the delivery cannot be recorded, call sl_recovery_gap) for a
 * message delivered without one (the bus was down) or with an id that does not parse or does
 * not grow. */
size_t sl_recovery_next_offset(sl_ns *ns, bool cluster, const char *stream_id, char *out,
                               uint64_t *n);

/* sl_recovery_stream_id: a Redis stream entry id "<ms>-<seq>" as the one ordered number
 * offsets use in a cluster (ms * 2^20 + seq): true with *n set, false when s does not parse
 * (ms >= 2^44 or seq >= 2^20 included). */
bool sl_recovery_stream_id(const char *s, uint64_t *n);

/* sl_recovery_msg_offset: the offset text delivery m carries (its last argument, as
 * sl_recovery_next_offset gave it) into out (SL_OFFSET_MAX bytes, NUL-terminated); returns
 * its length, 0 when m has none. */
size_t sl_recovery_msg_offset(const sl_msg *m, char *out);

/* sl_recovery_gap: a delivery on topic t could not be recorded (no offset): no session may
 * recover topic t from an offset before the next recorded delivery on t. */
void sl_recovery_gap(sl_ns *ns, sl_topic *t);

/* sl_recovery_record: keep delivery m of topic t with offset number n (the ns->rec_seq that
 * sl_recovery_next_offset gave) in the history, taking a reference. Targets: `to` (one socket
 * id) or route_to (nroute_to ids) when the delivery was addressed, else every subscriber; they
 * are copied. Evicts the oldest entries beyond historySize / historyBytes and those older than
 * maxDisconnectionMs. */
void sl_recovery_record(sl_ns *ns, sl_topic *t, sl_msg *m, uint64_t n, const char *to,
                        char *const *route_to, size_t nroute_to);

/* sl_recovery_park: sock's session went and sio keeps it for recovery: its lanes leave their
 * topics and the session's ready list, their in-flight messages leave the ack deadlines.
 * What they hold stays (within the namespace's caps). */
void sl_recovery_park(sl_socket *sock);

/* sl_recovery_check: can parked sock be recovered from `offset` (the client's last offset
 * text, NULL when it sent none: it processed no delivery)? SL_REC_RECOVERED, with *from set
 * to the offset number to replay after; SL_REC_EXPIRED when the offset is not one of this
 * process's for the namespace or when the history no longer holds every delivery after it
 * (and after each lane's subscription): a replay would be partial. Changes nothing. */
int sl_recovery_check(const sl_socket *sock, const char *offset, uint64_t *from);

/* sl_recovery_resume: sock (checked by sl_recovery_check) is joined on a live session again:
 * its lanes rejoin their topics, their in-flight AT_LEAST_ONCE messages are sent again (same
 * messageId), and every delivery of the history after `from` on its topics that its lanes do
 * not hold already is offered to them (overflow policies apply). Counts ns->replayed and
 * ns->resent_inflight. Returns the number of deliveries replayed. */
uint64_t sl_recovery_resume(sl_socket *sock, uint64_t from);

/* sl_recovery_history_len, _bytes: the entries and encoded bytes the history of ns holds
 * (0 when recovery is off). */
uint64_t sl_recovery_history_len(const sl_ns *ns);
uint64_t sl_recovery_history_bytes(const sl_ns *ns);

#endif
