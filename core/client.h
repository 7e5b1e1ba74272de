/* client.h - the StreamFenceJs client protocol on top of delivery (shared/STREAMFENCE.md
 * section 2): the subscribe / unsubscribe / ack / publish events, authorization (CONNECT and
 * subscribe) with a per-address failure rate limit, onConnect and onEvent for application
 * events, and the connect / disconnect / subscribe / unsubscribe server events.
 *
 * It is the Socket.IO layer's upper half: sio calls it through sl_client_sio_handler, and it
 * calls down into delivery (topics, lanes, publish) and sio (sending on a socket). */
#ifndef SL_CLIENT_H
#define SL_CLIENT_H

#include "sio.h"

/* The sio handler a server uses for StreamFenceJs clients: install it with
 * srv->sio_handler = &sl_client_sio_handler before the server listens. Stateless; the
 * per-server state it needs (srv->auth_failures) lives in the server. */
extern const sl_sio_handler sl_client_sio_handler;

/* sl_auth_free_table: free the per-address authentication-failure table of a server
 * (srv->auth_failures) and leave it empty. Call when the server is destroyed; no socket of
 * the server may authorize afterwards. Never fails. */
void sl_auth_free_table(sl_server *srv);

/* sl_client_topic_removed: tell sock that topic `topic` of its namespace was removed by a
 * reload: an `error` event {"code":"TOPIC_REMOVED","message","namespace","topic"}. The caller
 * has already unsubscribed it (sl_topic_teardown). Never fails (nothing is sent when the
 * payload cannot be built). */
void sl_client_topic_removed(sl_socket *sock, const char *topic);

#endif
