/* acks.h - AT_LEAST_ONCE: messages sent and not yet acknowledged, their ack deadlines on one
 * min-heap (gw->acks, heap.h) served by one uv timer, retries with backoff, and the
 * client's acks. Nothing here runs for BEST_EFFORT namespaces. */
#ifndef SL_ACKS_H
#define SL_ACKS_H

#include "sl_internal.h"

/* sl_acks_track: m, just taken off lane l, was sent: keep it in flight (a new reference; it
 * stays counted in the lane's qbytes and lane count) with an ack deadline of
 * ackTimeoutMs from now. One allocation per sent AT_LEAST_ONCE message; aborts on OOM. */
void sl_acks_track(sl_lane *l, sl_msg *m);

/* sl_acks_drop_lane: forget every in-flight message of l (their deadlines leave the heap,
 * so an unsubscribe with a message in flight never wedges a later subscription). */
void sl_acks_drop_lane(sl_lane *l);

/* sl_acks_park: the lane's session went and its socket is kept for recovery: the in-flight
 * entries stay (with their messages and retry counts) but leave the deadline heap, so no
 * retry is sent to a socket without a session. */
void sl_acks_park(sl_lane *l);

/* sl_acks_resume: the parked lane's socket was recovered on a live session: every in-flight
 * message is sent again at once (the identical packet: same messageId), counted in
 * streamfence_retries_total, and gets a fresh ack deadline. The entries' own retry counts do
 * not grow (a reconnection is not an ack timeout). Returns how many were sent. */
uint32_t sl_acks_resume(sl_lane *l);

/* sl_delivery_ack: the client acknowledged msgid on topic t. Settles only a message that was
 * sent to this client on this topic and is still awaiting its ack; anything else (unknown,
 * never sent, already settled) is ignored. A settled message frees room: the lane refills
 * from its spill and becomes ready. Returns whether something was settled. */
bool sl_delivery_ack(sl_socket *sock, sl_topic *t, const char *msgid);

/* sl_delivery_start: initialise the ack-deadline timer (loop thread, before serving). The
 * timer is unref'd: it never keeps the loop alive by itself. */
void sl_delivery_start(sl_gateway *gw);

/* sl_delivery_stop: close the ack-deadline timer (idempotent). The heap's array is freed
 * with the gateway (sl_heap_free). */
void sl_delivery_stop(sl_gateway *gw);

#endif
