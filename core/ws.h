/* ws.h - WebSocket (RFC 6455) over a net connection: the handshake, inbound frames through
 * wslay, and the close frame (ws.c). Outbound data frames are pre-built sl_msg frames that
 * the layers above queue with sl_conn_queue/sl_conn_send.
 *
 * ws calls net below it and nothing above: what happens on a WebSocket goes to the
 * sl_ws_handler given to sl_ws_handshake. */
#ifndef SL_WS_H
#define SL_WS_H

#include "net.h"

/* Where a WebSocket connection's events go. It begins with the connection ops net calls
 * (read bytes, write done, close), so a WebSocket costs its connection one pointer:
 * sl_ws_handshake installs &h->conn as c->ops, and ws finds the handler again from c->ops.
 * Build it with SL_WS_HANDLER, which puts ws's own functions into conn. The handler must
 * outlive every connection using it (make it a static const). */
typedef struct sl_ws_handler {
  sl_conn_ops conn; /* net -> ws: filled by SL_WS_HANDLER */
  /* A complete data message (text unless binary). data is wslay's buffer: writable, valid
   * only during the call. Not called after a close frame was sent or received. */
  void (*on_message)(sl_conn *c, const uint8_t *data, size_t len, bool binary);
  /* The WebSocket is going away: a protocol error, an oversized frame, a close handshake,
   * or the connection closing. May come more than once for one connection (first when the
   * protocol fails, then again when net closes it): it must be idempotent. */
  void (*on_close)(sl_conn *c);
} sl_ws_handler;

/* on_message, on_drain (net's on_drain: the write in flight completed, may be NULL), and
 * on_close of a WebSocket handler. */
#define SL_WS_HANDLER(on_message_, on_drain_, on_close_)                                           \
  { {sl_ws_feed, (on_drain_), sl_ws_conn_closed, sl_ws_conn_limit}, (on_message_), (on_close_) }

/* sl_ws_handshake: validate c's upgrade request (RFC 6455 4.2.1: GET, Upgrade: websocket,
 * Connection: Upgrade, a 24-character Sec-WebSocket-Key, version 13) and queue the 101
 * response without flushing; the connection is then upgraded (sl_conn_upgrade) with h's
 * callbacks. On an invalid request queues a 400 (426 for another version), marks the
 * connection close_after_write, and returns false (h is not installed). */
bool sl_ws_handshake(sl_conn *c, const sl_ws_handler *h);

/* sl_ws_close: queue a close frame (code, reason cut at 120 bytes), stop reading, and close
 * the connection once the queue is written. No-op when closing already. */
void sl_ws_close(sl_conn *c, uint16_t code, const char *reason);

/* sl_ws_feed: net's on_data for a WebSocket (through SL_WS_HANDLER; not to be called
 * directly): runs wslay over the bytes read, answers pings and closes, hands messages to
 * on_message; on a protocol error or an oversized frame sends the close frame, calls
 * on_close and closes the connection after the write. */
void sl_ws_feed(sl_conn *c, const uint8_t *data, size_t len);

/* sl_ws_conn_closed: net's on_close for a WebSocket (through SL_WS_HANDLER): calls the
 * handler's on_close, then gives the connection's wslay context back. */
void sl_ws_conn_closed(sl_conn *c);

/* sl_ws_conn_limit: net's on_limit for a WebSocket (through SL_WS_HANDLER): the partial
 * message is dropped (its wslay context freed), the handler's on_close called, and the
 * connection closed with 1013 (inbound buffers full) or 1008 (message timeout) after a
 * lingering read. */
void sl_ws_conn_limit(sl_conn *c, int reason);

#endif
