/* sio.h - Socket.IO v5 sockets inside Engine.IO sessions (shared/PROTOCOL.md section 3).
 *
 * sio parses the Socket.IO packets of a session (CONNECT, DISCONNECT, EVENT, ACK and their
 * BINARY_ forms), reassembles binary attachments, creates and removes sockets (one per joined
 * namespace) and sends packets on them. It knows nothing of topics, delivery or policy: it
 * tells the layer above through the sl_sio_handler its server was given (srv->sio_handler),
 * the way libuv hands a stream its read callback. Everything runs on the loop thread. */
#ifndef SL_SIO_H
#define SL_SIO_H

#include <cjson/cJSON.h>
#include "eio.h"

struct sl_sio_pending; /* a CONNECT waiting for a recovery lookup (sio.c) */

/* What sio tells the layer above, one table per server (srv->sio_handler, set before the
 * server accepts connections; the table must outlive the server). A callback may close the
 * session (sl_session_close) or disconnect sockets (sl_socket_disconnect): sio checks the
 * session's state after every call that can run policy code. */
typedef struct sl_sio_handler {
  /* The namespace a CONNECT packet names (path, len bytes, not NUL-terminated), or NULL:
   * sio answers CONNECT_ERROR {"message":"Invalid namespace"}. */
  sl_ns *(*find_ns)(sl_server *srv, const char *path, size_t len);

  /* A client asks to join sock->ns. The socket is new and not yet joined (not in
   * ns->sockets, not in sess->sockets, no CONNECT reply sent). auth is the CONNECT payload
   * (a JSON object) or NULL; borrowed for the call. Return true to accept. To refuse, write
   * a NUL-terminated message into why (why_len bytes; it starts as "") and set *code (a
   * static string, or leave NULL) for the CONNECT_ERROR {"message", "data":{"code"}}; sio
   * then calls on_close(sock, NULL) and frees the socket. A session closed during the call
   * refuses whatever is returned (and nothing is sent). While sock->connecting is set, what
   * is emitted on the socket is held and sent right after the CONNECT reply; the handler
   * sets it around the code that may emit. The handler may set sock->principal and
   * sock->auth_token (malloc'd; sio frees them with the socket). */
  bool (*on_connect)(sl_socket *sock, const cJSON *auth, char *why, size_t why_len,
                     const char **code);

  /* The socket joined: it is indexed in its namespace, and the CONNECT reply (plus what was
   * emitted during on_connect) is queued on the session. */
  void (*on_joined)(sl_socket *sock);

  /* An EVENT or BINARY_EVENT for a joined socket. args is the packet's JSON array, already
   * validated (args[0] is the event name; with attachments, the placeholders
   * {"_placeholder":true,"num":i} in it refer to atts[i]); borrowed for the call, the handler
   * may detach items from it. event is the name as text (a numeric name is printed "%.17g");
   * it may point into args[0], so copy it before detaching that item. atts (natts entries)
   * are borrowed for the call. ack_id is the client's ack request, or -1. */
  void (*on_event)(sl_socket *sock, const char *event, cJSON *args, const sl_bin *atts,
                   size_t natts, int64_t ack_id);

  /* sio forgets the socket. reason NULL: a refused CONNECT (the socket never joined).
   * Otherwise the joined socket left ("client namespace disconnect", "transport close", "io
   * server disconnect"); sock->gone is set and it is out of the session and namespace
   * indexes. After the call sio frees sock->auth_token; the struct (and sock->principal) is
   * freed at the next sl_sio_free_dead, so a policy hook up the stack may still read it.
   * Recovery: when sock->parked is SL_PARK_KEPT the socket is not forgotten but parked (its
   * session went for a recoverable reason and the namespace has `recovery`): sock->sess is
   * still readable during the call and NULL after it; sio keeps the struct, principal and
   * auth_token until it is recovered (on_recover) or expires (on_expire). */
  void (*on_close)(sl_socket *sock, const char *reason);

  /* Recovery: a CONNECT on session sock->sess (set for the call) presented the pid of parked
   * socket sock and `offset` (the client's last offset, NULL when it sent none); auth is the
   * CONNECT payload. Return SL_REC_RECOVERED to take the session back (sio then joins sock,
   * sets sock->recovered and calls on_joined), or why not (SL_REC_EXPIRED, SL_REC_DENIED):
   * sio then discards the parked socket (on_expire) and handles the CONNECT as a new
   * socket. */
  int (*on_recover)(sl_socket *sock, const cJSON *auth, const char *offset);

  /* Recovery: parked socket sock (sock->sess NULL) is given up (expired, refused, its
   * namespace removed, the gateway stopping): release what the layer above keeps for it.
   * sio frees principal, auth_token and the struct afterwards. */
  void (*on_expire)(sl_socket *sock);

  /* Recovery in a cluster (may be NULL): a CONNECT presented `pid`. Return true after
   * starting to look the session up in the cluster's store: the layer above then calls
   * sl_sio_pending_done(p, ...) exactly once (never if the gateway stops first), and the
   * CONNECT waits. false: nothing started, sio looks in its own parked sockets now. offset:
   * the auth's offset (a string), or NULL. */
  bool (*on_recover_lookup)(struct sl_sio_pending *p, sl_ns *ns, const char *pid,
                            const char *offset);

  /* Recovery in a cluster (may be NULL): the store held a session for the pid that this
   * node did not keep. sock is a new socket of session sock->sess (not joined); fill it from
   * blob[0..len) (its id and pid, principal, token, lanes) and decide as on_recover: return
   * SL_REC_RECOVERED to join it (recovered), or why not; sio then lets go of it (on_expire)
   * and handles the CONNECT as a new socket. */
  int (*on_recover_remote)(sl_socket *sock, const cJSON *auth, const char *offset, const char *blob,
                           size_t len);

  /* Recovery in a cluster (may be NULL): parked socket sock's maxDisconnectionMs is up.
   * Return true after starting to ask the cluster's store whether another node took the
   * session: sock is then SL_PARK_EXPIRING (a CONNECT for its pid is refused as expired) and
   * the layer above calls sl_sio_park_settle(sock, ...) exactly once, unless sock is given
   * up first (on_expire: the layer above must then forget the pending question). false: it
   * expires now (on_expire, tombstone). */
  bool (*on_park_due)(sl_socket *sock);
} sl_sio_handler;

/* sl_sio_park_settle: the answer to on_park_due for parked socket k (SL_PARK_EXPIRING;
 * anything else: nothing happens). taken: another node took the session: it is released
 * (on_expire; the layer above has already let go of its lanes without counting them lost)
 * and its pid forgotten, no tombstone. Otherwise it expires as without a cluster (on_expire,
 * tombstone). */
void sl_sio_park_settle(sl_socket *k, bool taken);

/* A CONNECT waiting for a recovery lookup (on_recover_lookup). */
typedef struct sl_sio_pending sl_sio_pending;

/* sl_sio_pending_done: the lookup of p ended: blob[0..len) is the session the cluster's
 * store held for the pid (taken: no other node will get it), or NULL when it held none. The
 * CONNECT then proceeds: recovered from this node's parked socket or from blob, else as a new
 * socket. Frees p; nothing happens when p's session closed meanwhile. */
void sl_sio_pending_done(sl_sio_pending *p, const char *blob, size_t len);

/* sl_sio_message: one Engine.IO message (text packet or binary attachment) of session s for
 * the Socket.IO layer; data is borrowed. Protocol errors close the session
 * (sl_session_close with a reason); nothing is returned. Called by eio. */
void sl_sio_message(sl_session *s, const uint8_t *data, size_t len, bool binary);

/* sl_sio_session_closed: session s ended for `reason` (eio's): every socket of it is removed
 * (on_close with "transport close") and a half-received binary packet is dropped. When the
 * reason is one socket.io recovers from (transport close or error, ping timeout, server
 * shutting down, forced close) and the namespace has `recovery`, the socket is parked
 * instead of freed, under its pid, until it is recovered or maxDisconnectionMs pass. Called
 * by eio (through the router). */
void sl_sio_session_closed(sl_session *s, const char *reason);

/* sl_sio_start: initialise the gateway's expiry timer of parked sockets (unref'd). */
void sl_sio_start(sl_gateway *gw);

/* sl_sio_stop: discard every parked socket of every namespace (on_expire) and close the
 * expiry timer (through close_cb, as the gateway's stop closes its handles; idempotent). */
void sl_sio_stop(sl_gateway *gw, void (*close_cb)(sl_gateway *gw, uv_handle_t *h));

/* sl_sio_discard_pid: discard the parked socket (or tombstone) of ns under pid, if any (its
 * session was taken elsewhere: this copy is stale). */
void sl_sio_discard_pid(sl_ns *ns, const char *pid);

/* sl_sio_ns_discard_parked: discard every parked socket (and tombstone) of ns: on_expire for
 * the kept ones, then they are freed. Called before ns's topics go (topics.c, reload.c). */
void sl_sio_ns_discard_parked(sl_ns *ns);

/* sl_sio_free_dead: free the sockets removed since the last call. Call it only at a safe
 * point (no policy hook on the stack), after the sessions' packets were flushed. */
void sl_sio_free_dead(sl_gateway *gw);

/* sl_sio_send: send one Socket.IO packet (type SIO_*, ack_id or -1, json/len the payload
 * text, borrowed, may be empty) on the socket's namespace, as it is: no validation, no
 * holding during on_connect. A session already closed drops it. */
void sl_sio_send(sl_socket *sock, int type, int64_t ack_id, const char *json, size_t len);

/* sl_sio_encode: one Socket.IO packet as a framed Engine.IO message ("4" + header + json).
 * Returns a new message with one reference (the caller owns it); never NULL (aborts when
 * out of memory). nsp/json are copied. */
sl_msg *sl_sio_encode(int type, const char *nsp, size_t nsplen, int64_t ack_id, const char *json,
                      size_t jsonlen, int attachments);

/* The socket accessors and sl_socket_emit / sl_socket_ack / sl_socket_disconnect, also
 * implemented in sio.c, are declared in sl_core.h (the Lua binding calls them). */

#endif
