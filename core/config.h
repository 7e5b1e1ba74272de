/* config.h - the configuration data model shared by the loaders (lua/config.c) and the core.
 *
 * One schema, three syntaxes (.lua, .json, .yaml/.yml): the loaders in lua/ (sl_config.h)
 * fill these structs; the core reads them and frees them with sl_config_free. Functions in a
 * Lua config (hooks) are kept as registry refs of the VM that loaded them; SL_NOREF (-2,
 * LUA_NOREF) means "not set" and costs nothing at run time. Nothing here calls Lua: refs are
 * released through the config's unref callback. */
#ifndef SL_CORE_CONFIG_H
#define SL_CORE_CONFIG_H

#include <stddef.h>
#include "sl_util.h"
#include <stdint.h>
#include <stdbool.h>

struct lua_State;

#define SL_NOREF (-2) /* == LUA_NOREF */

typedef enum { SL_BEST_EFFORT = 0, SL_AT_LEAST_ONCE = 1 } sl_delivery_mode;
typedef enum {
  SL_DROP_OLDEST = 0,
  SL_REJECT_NEW,
  SL_COALESCE,
  SL_SNAPSHOT_ONLY,
  SL_SPILL_TO_DISK
} sl_overflow_action;

/* recovery = { maxDisconnectionMs, historySize, historyBytes, reauthorize }: connection-state
 * recovery as socket.io 4.6+ does it (README "Connection-state recovery"). enabled false: the
 * block is absent and nothing of it runs (no offset in the packets, no history). */
typedef struct sl_recovery_config {
  bool enabled;
  int64_t max_disconnection_ms; /* 120000: how long a disconnected session is kept */
  int64_t history_size;         /* 1000: messages kept per namespace for replay */
  int64_t history_bytes;        /* 1048576: their encoded bytes, at most */
  bool reauthorize;             /* true: a recovering client's token is authorized again */
} sl_recovery_config;
/* flushIntervalMs: the longest batching window (server and namespace keys). */
#define SL_FLUSH_INTERVAL_MAX_MS 1000

typedef struct sl_ns_config {
  char *path;    /* "/feed" */
  char **topics; /* ntopics names, unique, non-blank */
  size_t ntopics;
  sl_delivery_mode delivery;   /* BEST_EFFORT */
  sl_overflow_action overflow; /* REJECT_NEW */
  int64_t max_queued_msgs;     /* 64 */
  int64_t max_queued_bytes;    /* 524288 */
  int64_t ack_timeout_ms;      /* 1000 */
  int64_t max_retries;         /* 0 */
  int64_t max_in_flight;       /* 1 (<=0 normalized to 1) */
  bool coalesce;               /* false */
  bool allow_polling;          /* true */
  bool auth_required;          /* false */
  bool client_publish;         /* true from JSON/YAML, false default in Lua configs */
  double retry_backoff;        /* 1.0 = fixed delay; >1 multiplies the delay per retry */
  int64_t retry_max_delay_ms;  /* cap for backoff; default 30000 */
  int64_t flush_interval_ms;   /* flushIntervalMs: the batching window (the server's when not
                                  set; always 0 for AT_LEAST_ONCE) */
  char *coalesce_key_path;     /* "symbol" / "data.id" or NULL */
  sl_recovery_config recovery; /* connection-state recovery (off unless configured) */
  /* Lua hooks (registry refs, SL_NOREF when unset) */
  int coalesce_key_ref;      /* function(topic, payload) -> key */
  int snapshot_ref;          /* function(state, topic, payload) -> state */
  int route_ref;             /* function(msg) -> nil|true|false|table */
  int authorize_ref;         /* function(token, ns, topic, client) -> principal|nil, reason */
  int on_connect_ref;        /* function(client, auth) -> nil|false, reason */
  int on_event_ref;          /* function(client, event, args, ack) */
  int on_client_publish_ref; /* function(client, topic, payload) -> allow [, payload] */
} sl_ns_config;

/* transport WSS: the tls block (paths resolved against the config file's directory). */
typedef struct sl_tls_config {
  char *cert_chain;  /* certChainPemPath */
  char *private_key; /* privateKeyPemPath */
  char *password;    /* privateKeyPassword, NULL when not set */
  int min_version;   /* protocol: 0x0304 TLSv1.3 (default) or 0x0303 TLSv1.2 */
} sl_tls_config;

/* api = { host, port, path, hosts }: where the HTTP API, /metrics and the status page are
 * served. listen false: on the client port, as before (only `hosts` may be set then). */
typedef struct sl_api_config {
  bool listen;  /* a listener of its own (port or path given) */
  char *host;   /* "127.0.0.1" (TCP) */
  int port;     /* 0 = OS-assigned */
  char *path;   /* a Unix socket path instead of host:port, or NULL */
  char **hosts; /* Host names accepted besides IP literals and localhost */
  size_t nhosts;
} sl_api_config;

/* cors = { origins, credentials, methods, headers }: socket.io's `cors` option (the npm cors
 * package's semantics). set false: no CORS header at all and no Origin check. */
typedef struct sl_cors_config {
  bool set;
  char **origins;   /* "*", exact origins, or patterns whose host starts "*." */
  size_t norigins;  /* 0 with set: no origin is allowed (every Origin refused) */
  bool credentials; /* Access-Control-Allow-Credentials: true */
  char *methods;    /* preflight Allow-Methods, "GET,HEAD,PUT,PATCH,POST,DELETE" */
  char *headers;    /* preflight Allow-Headers; NULL: the request's are reflected */
} sl_cors_config;

/* cluster = { redis, streamKey, maxLen, readCount, blockMs, bufferMax, acceptEmitter,
 * emitterKey }: this server's namespaces share a Redis stream with the other nodes of a
 * cluster (cluster.h). NULL in the server config when the key is absent: nothing connects. */
typedef struct sl_cluster_config {
  char *redis;         /* "redis://[user:pass@]host[:port][/db]", validated by the loader */
  char *stream_key;    /* streamKey, "socket.io" (the adapter's default) */
  int64_t max_len;     /* maxLen, 10000: XADD MAXLEN ~ */
  int64_t read_count;  /* readCount, 100: XREAD COUNT */
  int64_t block_ms;    /* blockMs, 5000: XREAD BLOCK */
  int64_t buffer_max;  /* bufferMax, 10000: publishes kept while Redis is unreachable */
  bool accept_emitter; /* acceptEmitter, false: ingest @socket.io/redis-emitter messages */
  char *emitter_key;   /* emitterKey, "socket.io": the emitter's channel prefix */
} sl_cluster_config;

typedef struct sl_server_config {
  char *name;          /* key in servers = { NAME = ... } */
  char *host;          /* "0.0.0.0" */
  int port;            /* 0 = OS-assigned */
  bool websocket_only; /* engineIoTransport == WEBSOCKET_ONLY */
  bool auth_token;     /* auth == TOKEN */
  sl_tls_config *tls;  /* transport WSS; NULL: plain WS */
  char **tokens;       /* static token list (key "tokens") */
  size_t ntokens;
  char *spill_root;           /* ".streamfence-spill" */
  int64_t ping_interval_ms;   /* 25000 */
  int64_t ping_timeout_ms;    /* 20000 */
  int64_t connect_timeout_ms; /* 45000 */
  int64_t drain_timeout_ms;   /* drainTimeoutMs, 10000: how long a drain waits for lanes */
  int64_t max_payload;        /* 1000000 */
  int64_t socket_high_water;  /* socketHighWaterBytes, default 65536 */
  int64_t socket_sndbuf;      /* socketSendBufferBytes (SO_SNDBUF), 0 = kernel default */
  int64_t flush_interval_ms;  /* flushIntervalMs, 0: deliveries written every loop iteration */
  /* Admission limits and the inbound budget (net.c; README "Limits"). */
  int64_t max_connections;    /* maxConnections, 20000 */
  int64_t max_conns_per_addr; /* maxConnectionsPerAddress, 500 */
  int64_t max_sessions;       /* maxSessions, 20000 */
  int64_t max_handshake_rate; /* maxHandshakesPerSecondPerAddress, 50 */
  int64_t max_inbound_bytes;  /* maxInboundBufferBytes, 64 MiB */
  int64_t partial_timeout_ms; /* partialMessageTimeoutMs, 30000 */
  bool limit_loopback;        /* limitLoopback: per-address limits apply to loopback peers */
  char *api_token;            /* NULL: HTTP API answers loopback peers only */
  sl_api_config api;          /* where the API is served (api) */
  sl_cors_config cors;        /* CORS and the Origin check of Engine.IO requests (cors) */
  sl_cluster_config *cluster; /* cluster (Redis Streams bus), NULL: a single node */
  char *eio_path;             /* engineIo.path, NULL when no raw Engine.IO endpoint */
  int eio_on_message_ref;     /* engineIo.onMessage(conn, data) */
  int eio_on_open_ref;        /* engineIo.onOpen(conn) (optional) */
  int eio_on_close_ref;       /* engineIo.onClose(conn, reason) (optional) */
  int on_start_ref;           /* onStart(server) */
  int allow_request_ref;      /* allowRequest(req) -> true | false, message, status */
  int on_connect_ref, on_disconnect_ref, on_subscribe_ref, on_unsubscribe_ref;
  int on_overflow_ref, on_retry_exhausted_ref;
  sl_ns_config *ns;
  size_t nns;
} sl_server_config;

typedef struct sl_config {
  char *path; /* file it came from ("<string>" for strings) */
  sl_server_config *servers;
  size_t nservers;
  int64_t lua_watchdog_ms; /* luaWatchdogMs: top level, or the smallest a server sets
                               * (1000; 0 = not watched) */
  struct lua_State *L;     /* state that owns the refs (not owned by the config) */
  /* unref: how sl_config_free releases a hook ref (> 0) of this config, set by the loader
   * (lua/config.c) so the core never calls into lua/ by name. NULL: refs are not released
   * (they go away with their state). The loader's version skips a closed state. */
  void (*unref)(const struct sl_config *cfg, int ref);
  unsigned warnings; /* warnings the loader logged (`sluice check` exits 3 if any) */
} sl_config;

/* sl_config_free: free cfg and everything it owns; each hook ref that is set (> 0) is passed
 * to cfg->unref first (when set). NULL is a no-op. */
void sl_config_free(sl_config *cfg);

/* sl_cluster_config_equal: the same cluster settings (both NULL counts as equal). A reload
 * whose cluster block is unchanged keeps its Redis links. */
bool sl_cluster_config_equal(const sl_cluster_config *a, const sl_cluster_config *b);

/* sl_cluster_config_free: free c and its strings. NULL is a no-op. */
void sl_cluster_config_free(sl_cluster_config *c);

/* sl_config_summary: a human-readable multi-line summary (for `sluice check`): one block
 * per server, one line per namespace. Returns a malloc'd string the caller frees. */
SL_WUR char *sl_config_summary(const sl_config *cfg);

/* The config spellings of the enums, indexed by value and NULL-terminated (the loader
 * validates against them): "BEST_EFFORT", "AT_LEAST_ONCE" / "DROP_OLDEST", "REJECT_NEW",
 * "COALESCE", "SNAPSHOT_ONLY", "SPILL_TO_DISK". */
extern const char *const sl_delivery_names[];
extern const char *const sl_overflow_names[];

/* sl_overflow_name: the config spelling of a, or "?" for a value out of range. */
const char *sl_overflow_name(sl_overflow_action a);

/* sl_delivery_name: the config spelling of m, or "?" for a value out of range. */
const char *sl_delivery_name(sl_delivery_mode m);

#endif
