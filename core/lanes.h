/* lanes.h - a client's subscriptions: one lane per (socket, topic), the overflow policy
 * that decides what enters a lane, and the pull that moves deliveries from the ready lanes
 * into the session's transport queue.
 *
 * Memory per client is bounded by lanes x maxQueuedBytesPerClient + the session's
 * high-water mark, whatever the client does: a session pulls only while its unsent bytes
 * are under the high-water mark. */
#ifndef SL_LANES_H
#define SL_LANES_H

#include "eio.h"

/* sl_subscribe: subscribe sock to topic t (idempotent: subscribing twice keeps the one
 * lane). A new subscriber first receives the topic's last delivery (the snapshot state, or
 * for SNAPSHOT_ONLY the last published message) when there is one. Returns 0. */
SL_WUR int sl_subscribe(sl_socket *sock, sl_topic *t);

/* sl_unsubscribe: drop sock's subscription to t and whatever it still had queued, in flight
 * or spilled (the spill files are deleted). No-op when not subscribed. */
void sl_unsubscribe(sl_socket *sock, sl_topic *t);

/* sl_socket_drop_lanes: release every lane of a socket, as sl_unsubscribe does (disconnect). */
void sl_socket_drop_lanes(sl_socket *sock);

/* sl_socket_hand_off_lanes: release every lane of a parked socket whose session another node
 * took (and now delivers): what they hold is not counted lost. */
void sl_socket_hand_off_lanes(sl_socket *sock);

/* sl_lane_detach: take lane l out of its topic's subscriber array (no more offers) and off
 * its session's ready list; what it holds stays. No-op when it is not attached. */
void sl_lane_detach(sl_lane *l);

/* sl_lane_attach: put a detached lane back into its topic's subscriber array (offers reach
 * it again). Aborts when memory runs out. No-op when it is attached. */
void sl_lane_attach(sl_lane *l);

/* sl_lane_restore: give sock (rebuilt from another node's session) a lane on t that is not
 * attached (sl_lane_attach), gets no snapshot and is marked rebuilt: its subscription started
 * at offset sub_from, on another node. Returns the lane (an existing one as it is). */
sl_lane *sl_lane_restore(sl_socket *sock, sl_topic *t, uint64_t sub_from);

/* sl_lane_offer: offer one delivery to a lane, applying the namespace's limits and overflow
 * action (STREAMFENCE.md 1.5). The lane takes its own reference when it keeps m; m stays
 * the caller's. What is refused is counted (topic metrics, overflow reasons) and reported
 * through the onOverflow event. Once per recipient: no allocation unless the lane's ring
 * grows. */
void sl_lane_offer(sl_lane *l, sl_msg *m);

/* sl_session_pull: move up to `budget` bytes of deliveries from the session's ready lanes
 * into its transport queue (the WebSocket connection's write queue, or the polling queue),
 * round-robin across lanes; the last message moved may overshoot the budget. AT_LEAST_ONCE
 * messages stay in flight until acked (acks.h). Returns true when anything moved. */
bool sl_session_pull(sl_session *s, size_t budget);

#endif
