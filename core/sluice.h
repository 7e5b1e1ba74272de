/* sluice.h - embedding API of Sluice, a scriptable Socket.IO delivery gateway.
 *
 * A program creates a gateway from a config file or string, optionally plugs in its own C
 * hooks, runs it on its own uv_loop_t, publishes from C, and stops it:
 *
 *   static void route(void *ud, const sluice_message *m, sluice_route_result *out) {
 *     if (m->len > 1000) out->action = SLUICE_ROUTE_DROP;   // zeroed out = deliver as is
 *   }
 *   static void on_connect(void *ud, const sluice_event *ev) { printf("%s\n", ev->client_id); }
 *
 *   uv_loop_t *loop = uv_default_loop();
 *   char err[512];
 *   sluice_t *gw = sluice_new_from_file(loop, "sluice.lua", err, sizeof err);
 *   if (!gw) { fprintf(stderr, "%s\n", err); return 1; }
 *   sluice_hooks ns = {.route = route}, srv = {.on_connect = on_connect};
 *   sluice_set_hooks(gw, NULL, "/feed", &ns, NULL);  // policy hooks of namespace /feed
 *   sluice_set_hooks(gw, NULL, NULL, &srv, NULL);    // lifecycle events of every server
 *   if (sluice_start(gw, err, sizeof err) != 0) { ... }
 *   sluice_publish(gw, "/feed", "prices", "{\"p\":1}", 7, NULL, NULL);
 *   uv_run(loop, UV_RUN_DEFAULT);     // until sluice_stop() and its handles are closed
 *   sluice_free(gw);
 *
 * Hooks: the core calls a table of function pointers (sluice_hooks). A config's Lua hooks
 * (route = function ... end, onConnect, ...) are one implementation of that table, installed
 * by the config loader; a C program installs its own with sluice_set_hooks. Per hook kind a
 * C hook takes precedence over the Lua hook of the same kind; a kind set by neither costs
 * nothing (the core tests a pointer). C hooks belong to the gateway and survive hot reloads
 * (they are kept by server and namespace name); Lua hooks belong to the config generation and
 * are replaced by a reload. examples/embed.c is a complete program.
 *
 * Every function must be called on the loop's thread. Errors are negative SL_E* codes
 * (see sl_util.h; sluice_strerror turns them into text). */
#ifndef SLUICE_H
#define SLUICE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_VERSION "0.1.0"

typedef struct sl_gateway sluice_t;

/* sluice_new_from_file: load and validate a config (.lua, .json, .yaml, .yml). Returns NULL
 * on error with a one-line message in err (file, server, namespace, key). The gateway does
 * not listen until sluice_start. loop must outlive the gateway. */
sluice_t *sluice_new_from_file(uv_loop_t *loop, const char *path, char *err, size_t errlen);

/* sluice_new_from_string: the same from text; fmt is "lua", "json" or "yaml". */
sluice_t *sluice_new_from_string(uv_loop_t *loop, const char *text, size_t len, const char *fmt,
                                 char *err, size_t errlen);

/* sluice_select_server: keep only the named server (call before start, repeatable: the
 * union of the named ones is kept). Returns 0 or -3 (no such server). */
int sluice_select_server(sluice_t *gw, const char *name);

/* sluice_start: bind every server, then run onStart hooks. Returns 0 or a negative code
 * with a message in err (e.g. the port is in use). */
int sluice_start(sluice_t *gw, char *err, size_t errlen);

/* sluice_server_name_at: the name of the server at index i (0-based, config order), or NULL
 * past the last one. Owned by the gateway's config. */
const char *sluice_server_name_at(const sluice_t *gw, size_t i);

/* sluice_port: the bound port of the server at index i (0-based), or -1. */
int sluice_port(const sluice_t *gw, size_t i);

/* sluice_publish: publish JSON text on (namespace, topic); to = client id or NULL.
 * msgid (may be NULL) receives the message id (at least 48 bytes). Returns 0 or SL_E*. */
int sluice_publish(sluice_t *gw, const char *ns, const char *topic, const char *json, size_t len,
                   const char *to, char *msgid);

/* sluice_handle_signals: SIGTERM drains (sluice_drain; a second SIGTERM stops at once),
 * SIGINT stops (sluice_stop), SIGHUP reloads. Optional: an embedder may handle signals
 * itself. */
void sluice_handle_signals(sluice_t *gw);

/* sluice_reload: load the config file again into a fresh Lua VM and, if it is valid, swap
 * it in without dropping a connection (see README "Hot reload"). On failure the running
 * config stays and err says why. Returns 0 or a negative code. */
int sluice_reload(sluice_t *gw, char *err, size_t errlen);

/* sluice_watch_config: reload automatically when a file in the config's directory (or its
 * scripts/ subdirectory) changes. Returns 0 or a negative libuv error. */
int sluice_watch_config(sluice_t *gw);

/* sluice_drain: stop gracefully, giving clients time to move: new Engine.IO handshakes are
 * refused (503) and /readyz answers 503, while the sessions already open keep working; once
 * no AT_LEAST_ONCE message is in flight and every lane is empty, or after drainTimeoutMs
 * (the largest of the servers'), sluice_stop closes each session the way socket.io's
 * io.close() does (a WebSocket close, or an Engine.IO close packet to a held poll), so that
 * socket.io-client reconnects by itself. Idempotent; a no-op once stopping. */
void sluice_drain(sluice_t *gw);

/* sluice_draining: 1 from sluice_drain until the gateway is freed, else 0. */
int sluice_draining(const sluice_t *gw);

/* sluice_stop: stop accepting, close every connection and timer. The loop then runs out of
 * the gateway's handles; cb (may be NULL) is called once they are all closed. Idempotent. */
void sluice_stop(sluice_t *gw, void (*cb)(sluice_t *, void *), void *arg);

/* sluice_free: release a stopped gateway (after uv_run returned or cb was called). */
void sluice_free(sluice_t *gw);

/* sluice_strerror: the text of an SL_E* code (a static string). */
const char *sluice_strerror(int err);

/* ---- hooks ---------------------------------------------------------------------------- */

typedef struct sl_server sluice_server;     /* one configured server (one listening port) */
typedef struct sl_socket sluice_client;     /* one Socket.IO client in one namespace */
typedef struct sl_eio_conn sluice_eio_conn; /* one session of a raw Engine.IO endpoint */

/* A binary attachment of a client event (borrowed: valid for the duration of the call). */
typedef struct sl_bin {
  const uint8_t *data;
  size_t len;
} sluice_bin;

/* Where a publish came from (sluice_message.source). */
enum { SLUICE_SRC_API = 0, SLUICE_SRC_LUA = 1, SLUICE_SRC_CLIENT = 2 };

/* One publish as the route hook sees it (borrowed: valid for the duration of the call). */
typedef struct sluice_message {
  const char *ns; /* namespace path, "/feed" */
  const char *topic;
  const char *payload; /* JSON text, len bytes, valid JSON (not NUL-terminated) */
  size_t len;
  int source;          /* SLUICE_SRC_* */
  sluice_client *from; /* the publishing client for SLUICE_SRC_CLIENT, else NULL */
} sluice_message;

enum { SLUICE_ROUTE_DELIVER = 0, SLUICE_ROUTE_DROP = 1, SLUICE_ROUTE_REWRITE = 2 };

/* What the route hook decides. The hook receives it zeroed (deliver unchanged) and fills
 * what it changes; every pointer it stores must come from malloc: the core frees them. */
typedef struct sluice_route_result {
  int action;         /* SLUICE_ROUTE_* */
  char *payload_json; /* replacement payload (valid JSON text, NUL-terminated) or NULL */
  char **topics;      /* deliver to these topics of the same namespace instead ... */
  size_t ntopics;     /* ... 0 = the original topic */
  char **to;          /* restrict recipients to these client ids ... */
  size_t nto;         /* ... 0 = no restriction */
} sluice_route_result;

/* One Engine.IO handshake as allow_request sees it (borrowed: valid for the duration of the
 * call). */
typedef struct sluice_request {
  const char *method;         /* "GET" */
  const char *path;           /* "/socket.io/" (the URL without its query) */
  const char *query;          /* "EIO=4&transport=polling" (without '?'; "" when none), raw */
  const char *remote_address; /* "127.0.0.1" */
  const char *const *headers; /* 2 * nheaders strings: name (lowercase), value, ... in order */
  size_t nheaders;
} sluice_request;

/* Lifecycle events of a server (StreamFenceJs's listener events). */
typedef enum {
  SLUICE_EV_CONNECT = 0,     /* a client joined a namespace */
  SLUICE_EV_DISCONNECT,      /* a client left (reason set) */
  SLUICE_EV_SUBSCRIBE,       /* topic set */
  SLUICE_EV_UNSUBSCRIBE,     /* topic set */
  SLUICE_EV_OVERFLOW,        /* a lane refused or dropped a message (topic, reason set) */
  SLUICE_EV_RETRY_EXHAUSTED, /* an AT_LEAST_ONCE message ran out of retries */
  SLUICE_EV_COUNT
} sluice_event_type;

/* One lifecycle event (borrowed: valid for the duration of the call). Strings that do not
 * apply are NULL. */
typedef struct sluice_event {
  sluice_event_type type;
  const char *type_name; /* "connect", "disconnect", "subscribe", "unsubscribe",
                              "overflow", "retryExhausted" */
  const char *server;    /* server name */
  sluice_client *client; /* the client (NULL if none) */
  const char *ns;        /* the client's namespace path */
  const char *client_id;
  const char *principal; /* authenticated principal or NULL */
  const char *remote_address;
  const char *transport; /* "websocket" | "polling" */
  const char *topic;
  const char *reason;
  const char *message_id;
  long retry_count; /* SLUICE_EV_RETRY_EXHAUSTED only */
  /* connection-state recovery: -1 when the client's namespace has no `recovery`; connect:
   * 1 when the client's session was recovered (same id, subscriptions, missed messages
   * replayed), 0 for a new one; disconnect: 1 when the session is kept for recovery */
  int recovered;
} sluice_event;

/* The hooks table. Every member is optional (NULL = not set = never called, no cost). ud is
 * the pointer given to sluice_set_hooks. All hooks run on the loop thread, inside the core's
 * processing of one message or client request: they must not block, and must not free the
 * gateway. Strings and clients handed in are borrowed for the duration of the call.
 *
 * Namespace policy hooks (sluice_set_hooks with ns != NULL): */
typedef struct sluice_hooks {
  /* route: once per publish, before anything is encoded. Leave out zeroed to deliver, set
   * out->action = SLUICE_ROUTE_DROP to drop, or fill out (SLUICE_ROUTE_REWRITE) to replace
   * the payload, redirect to other topics or restrict the recipients. */
  void (*route)(void *ud, const sluice_message *msg, sluice_route_result *out);
  /* coalesce_key: the coalescing key of a message (namespaces with coalesce). Return buf
   * holding a NUL-terminated key when it fits in cap bytes, else a malloc'd key (the core
   * frees it), or NULL for "no key". */
  char *(*coalesce_key)(void *ud, const char *topic, const char *payload, size_t len, char *buf,
                        size_t cap);
  /* snapshot: fold a published message into the topic's state; a new subscriber gets the
   * state first. state_json (NULL at first) is the current state. *slot is a per-topic
   * integer the hook may use to cache its own state (SLUICE_NOSLOT at first and after a
   * reload; below SLUICE_NOSLOT when the cache is stale, see SLUICE_SLOT_STALE). Return 0 with *new_state = malloc'd JSON text (NULL clears the state), or a
   * negative value to keep the state unchanged. */
  int (*snapshot)(void *ud, int *slot, const char *state_json, size_t state_len, const char *topic,
                  const char *payload, size_t len, char **new_state);
  /* authorize: token (may be NULL) for namespace ns and topic (NULL on CONNECT). Return 1
   * with *principal = a malloc'd principal to accept, or 0 with a NUL-terminated reason in
   * reason[reasonlen] to refuse. */
  int (*authorize)(void *ud, const char *token, const char *ns, const char *topic,
                   sluice_client *client, char **principal, char *reason, size_t reasonlen);
  /* client_publish: a client publishes on topic. Return 1 to allow (optionally with
   * *new_payload = malloc'd replacement JSON), 0 to refuse. */
  int (*client_publish)(void *ud, sluice_client *client, const char *topic, const char *payload,
                        size_t len, char **new_payload);
  /* connect: a client asks to join the namespace; auth_json is its CONNECT payload (or
   * NULL). Return 1 to accept, 0 to refuse with a NUL-terminated reason in reason. */
  int (*connect)(void *ud, sluice_client *client, const char *auth_json, size_t len, char *reason,
                 size_t reasonlen);
  /* event: an application event from a client; args_json is the JSON array of the
   * arguments (binary ones as {"_placeholder":true,"num":i} referring to atts[i]). ack_id
   * < 0: no ack asked; otherwise answer at most once with sluice_client_ack. */
  void (*event)(void *ud, sluice_client *client, const char *name, const char *args_json,
                size_t len, const sluice_bin *atts, size_t natts, int64_t ack_id);

  /* Server hooks (sluice_set_hooks with ns == NULL): the lifecycle events, one pointer per
   * type (an unset type builds no event), on_start, client_free and the raw endpoint's. */
  void (*on_connect)(void *ud, const sluice_event *ev);
  void (*on_disconnect)(void *ud, const sluice_event *ev);
  void (*on_subscribe)(void *ud, const sluice_event *ev);
  void (*on_unsubscribe)(void *ud, const sluice_event *ev);
  void (*on_overflow)(void *ud, const sluice_event *ev);
  void (*on_retry_exhausted)(void *ud, const sluice_event *ev);
  /* on_start: the server is listening (sluice_start). A config's Lua onStart also runs
   * after each reload; a C on_start runs once. */
  void (*on_start)(void *ud, sluice_server *srv);
  /* client_free: the core is about to free client: every client it created, in any
   * namespace, also one whose CONNECT was refused (then without a disconnect event before
   * it). Drop every reference kept to it; it must not be used afterwards. Unlike every other
   * kind, a C client_free does not replace the config's: both run (the C one first), so the
   * Lua side can always invalidate what it handed to scripts. */
  void (*client_free)(void *ud, sluice_client *client);

  /* The raw Engine.IO endpoint of a server (config key engineIo; sessions without Socket.IO).
   * A conn is valid from eio_open until eio_free returns; answer with sluice_eio_send. */
  /* eio_open: a session completed its handshake on the endpoint. */
  void (*eio_open)(void *ud, sluice_eio_conn *conn);
  /* eio_message: one message of the session: text (binary 0; not NUL-terminated) or binary
   * (binary 1), borrowed for the duration of the call. */
  void (*eio_message)(void *ud, sluice_eio_conn *conn, const uint8_t *data, size_t len, int binary);
  /* eio_close: the session closed for reason (e.g. "server close"); conn can no longer
   * send. */
  void (*eio_close)(void *ud, sluice_eio_conn *conn, const char *reason);
  /* eio_free: the core is about to free conn (right after eio_close). As for client_free, a
   * C eio_free and the config's both run. */
  void (*eio_free)(void *ud, sluice_eio_conn *conn);

  /* allow_request: an Engine.IO handshake (a request without sid: polling or WebSocket, on
   * /socket.io/ or the engineIo path) passed the transport, Origin (cors) and method checks,
   * like socket.io's allowRequest. Return 1 to accept; 0 to refuse: the client gets *status
   * (preset 403; kept when 400..599) and {"code":4,"message":message}; message[msglen] is
   * preset "Forbidden", write a NUL-terminated replacement. */
  int (*allow_request)(void *ud, const sluice_request *req, int *status, char *message,
                       size_t msglen);
} sluice_hooks;

#define SLUICE_NOSLOT (-2) /* initial value of a snapshot slot */
/* A snapshot slot s > 0 whose cached state is stale: a cluster node got a newer state from
 * another node (state_json). The hook sees SLUICE_SLOT_STALE(s) in *slot; it must start
 * again from state_json and may reuse SLUICE_SLOT_UNSTALE(*slot) for its cache. */
#define SLUICE_SLOT_STALE(s) (-(s)-3)
#define SLUICE_SLOT_UNSTALE(s) (-(s)-3)

/* sluice_set_hooks: install C hooks for namespace ns (its policy hooks) or, with ns NULL,
 * for the server (its lifecycle events and on_start), on the server named server or, with
 * server NULL, on every server. The table is copied; a later call for the same (server, ns)
 * replaces it and h NULL removes it. Per hook kind the most specific C registration (named
 * server before NULL) wins, then the config's Lua hook (client_free and eio_free: both run).
 * Registrations are kept by name and
 * survive sluice_reload (a namespace a reload adds gets the hooks registered for its path).
 * ud is handed to every hook and must outlive the registration.
 * Returns 0, SL_EINVAL (a policy hook with ns NULL, or an event hook with ns set), or
 * SL_ENOENT (no such server, or no server has that namespace; nothing is kept). */
int sluice_set_hooks(sluice_t *gw, const char *server, const char *ns, const sluice_hooks *h,
                     void *ud);

/* Clients handed to hooks (valid until the hook returns, or until the client's disconnect
 * event for those kept longer). */
const char *sluice_client_id(const sluice_client *c);        /* the client id (per namespace) */
const char *sluice_client_namespace(const sluice_client *c); /* "/feed" */
const char *sluice_client_principal(const sluice_client *c); /* or NULL */
const char *sluice_client_remote(const sluice_client *c);    /* "127.0.0.1" */
/* sluice_client_emit: send an event to the client; json_array is a JSON array whose first
 * element is the event name. Returns 0, SL_EINVAL (bad array), SL_ESTATE (client gone). */
int sluice_client_emit(sluice_client *c, const char *json_array, size_t len);
/* sluice_client_ack: answer the client's ack request ack_id with the JSON array args. */
int sluice_client_ack(sluice_client *c, int64_t ack_id, const char *json_array, size_t len);
/* sluice_client_disconnect: kick the client from its namespace (safe inside a hook). */
void sluice_client_disconnect(sluice_client *c);

/* Raw Engine.IO sessions handed to the eio_* hooks (valid until eio_free). */
const char *sluice_eio_id(const sluice_eio_conn *conn); /* the session id, "" once closed */
/* sluice_eio_send: send one message, text (binary 0) or binary (binary 1); data is copied.
 * Returns 0 or SL_ESTATE (the session is closed). */
int sluice_eio_send(sluice_eio_conn *conn, const void *data, size_t len, int binary);
/* sluice_eio_close: close the session ("server close"). eio_close and eio_free run before
 * this returns (also when called from inside a hook for conn): do not use conn afterwards. */
void sluice_eio_close(sluice_eio_conn *conn);

/* Servers handed to on_start. */
const char *sluice_server_name(const sluice_server *srv);
int sluice_server_port(const sluice_server *srv); /* the bound port */

#ifdef __cplusplus
}
#endif
#endif
