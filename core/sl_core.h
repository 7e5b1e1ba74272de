/* sl_core.h - the core's internal API used by the Lua binding (lua/) and by tests.
 *
 * The core owns transport, sessions, namespaces, queues and delivery. The Lua binding calls
 * these functions from hooks, timers and producers; all of them run on the loop thread. */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <uv.h>
#include "sl_util.h"
#include "sluice.h"

typedef struct sl_gateway sl_gateway;   /* == sluice_t, the whole process-level gateway */
typedef struct sl_server sl_server;     /* one configured server (one listening port) */
typedef struct sl_socket sl_socket;     /* one Socket.IO socket: a client in one namespace */
typedef struct sl_eio_conn sl_eio_conn; /* one session on a raw Engine.IO endpoint */

/* A binary attachment (borrowed pointer; valid for the duration of the call). The struct is
 * public (sluice_bin in sluice.h). */
typedef struct sl_bin sl_bin;

enum { SL_SRC_API = 0, SL_SRC_LUA = 1, SL_SRC_CLIENT = 2 };

typedef struct sl_publish_opts {
  const char *server; /* server name, NULL = the first server that has the namespace */
  const char *to;     /* target client id (publishTo), NULL = all subscribers */
  int source;         /* SL_SRC_* */
  sl_socket *from;    /* publishing client for SL_SRC_CLIENT, else NULL */
  bool trusted_json;  /* payload_json was produced by our own encoder: skip validation */
} sl_publish_opts;

/* A message delivered from the cluster bus (sl_publish_remote, publish.h). */
typedef struct sl_remote_opts {
  const char *const *rooms; /* socket.io rooms (client ids), nrooms 0: every subscriber */
  size_t nrooms;
  const char *const *except; /* client ids excluded */
  size_t nexcept;
  const char *key;    /* coalesce key chosen by the origin, or NULL */
  const char *msgid;  /* AT_LEAST_ONCE message id chosen by the origin, or NULL */
  const char *offset; /* the stream entry id, or NULL */
  bool snapshot_set;  /* o->snapshot replaces the topic's snapshot state */
  const char *snapshot;
  size_t snapshot_len;
  bool trusted_json; /* payload validated already */
} sl_remote_opts;

/* Size of a message id buffer: "msg-" + unique part + NUL. */
#define SL_MSGID_MAX 48

/* sl_publish: publish a JSON payload (payload_json, len bytes, must be valid JSON text) on
 * namespace `ns`, topic `topic`. Encodes once and fans out to subscribers' lanes. Writes the
 * message id into msgid (may be NULL). Returns 0, or SL_ENOENT (unknown server, namespace or
 * topic; publishTo to an unknown/unsubscribed client is NOT an error: 0, nothing delivered),
 * SL_EINVAL (invalid JSON), SL_ETOOBIG (payload larger than the server's maxPayload),
 * SL_EFULL (the server is in a cluster whose bus is unreachable and whose buffer is full:
 * nothing delivered, counted by the bus). */
int sl_publish(sl_gateway *gw, const char *ns, const char *topic, const char *payload_json,
               size_t len, const sl_publish_opts *opts, char *msgid);

/* The loop the gateway runs on. */
uv_loop_t *sl_gateway_loop(sl_gateway *gw);

/* sl_gateway_stats_json: malloc'd JSON text of /api/stats. */
SL_WUR char *sl_gateway_stats_json(sl_gateway *gw);

/* Server accessors (for onStart(server) and Lua's server object). */
const char *sl_server_name(const sl_server *srv);
int sl_server_port(const sl_server *srv); /* bound port */

/* Socket (client) accessors, implemented by the Socket.IO layer (core/sio.c). A socket
 * pointer handed to a hook is valid until the core calls the client_free hooks for it. The
 * strings returned are borrowed from the socket: valid until it is freed, or (principal)
 * until the next authorization of it. None of these fails. A socket kept for
 * connection-state recovery (its session gone) has remote "" and transport "none"; emits and
 * acks to it fail with SL_ESTATE; a disconnect ends its recovery. */
const char *sl_socket_id(const sl_socket *s);        /* per-namespace socket id (clientId) */
const char *sl_socket_ns(const sl_socket *s);        /* namespace path */
const char *sl_socket_principal(const sl_socket *s); /* authenticated principal or NULL */
const char *sl_socket_remote(const sl_socket *s);    /* peer address "127.0.0.1" */
/* sl_socket_transport: the session's current transport, "websocket" or "polling" (a static
 * string; it changes when a polling session upgrades). */
const char *sl_socket_transport(const sl_socket *s);
int *sl_socket_lua_slot(sl_socket *s); /* the hook implementation's slot */

/* sl_socket_emit: send an EVENT to this client. json_array is a JSON array text whose first
 * element is the event name; binary attachments must appear in it as
 * {"_placeholder":true,"num":i} for i in 0..natts-1 (then a BINARY_EVENT is sent).
 * Returns 0, SL_EINVAL (bad array), SL_ESTATE (socket gone). */
int sl_socket_emit(sl_socket *s, const char *json_array, size_t len, const sl_bin *atts,
                   size_t natts);

/* sl_socket_ack: answer a client's ack request `ack_id` with the args in json_array (a JSON
 * array, possibly empty, placeholders as above). Each ack id is answered at most once. */
int sl_socket_ack(sl_socket *s, uint64_t ack_id, const char *json_array, size_t len,
                  const sl_bin *atts, size_t natts);

/* sl_socket_disconnect: kick the client from the namespace (sends DISCONNECT 41). Safe to
 * call from inside a hook for that socket; the socket is released later. */
void sl_socket_disconnect(sl_socket *s);

/* Raw Engine.IO endpoint sessions (server key engineIo; core/eio_raw.c). An sl_eio_conn is
 * valid from the eio_open hook until the core calls the eio_free hooks for it. */
const char *sl_eio_conn_id(const sl_eio_conn *c); /* the session id */
int *sl_eio_conn_lua_slot(sl_eio_conn *c);        /* the hook implementation's slot */
/* sl_eio_conn_send: send one message (binary, or text sent as "4" + data; data is copied).
 * Returns 0, or SL_ESTATE when the session is closed. */
int sl_eio_conn_send(sl_eio_conn *c, const void *data, size_t len, bool binary);
/* sl_eio_conn_close: close the session ("server close"). onClose runs at once (also when
 * called from inside a hook) and c is freed before this returns: do not use it afterwards. */
void sl_eio_conn_close(sl_eio_conn *c);

#endif
