/* sl_config.h - the configuration model shared by the loader (lua/config.c) and the core.
 *
 * One schema, three syntaxes (.lua, .json, .yaml/.yml). The loader turns every syntax into a
 * Lua table in the gateway's lua_State and validates that table once, in C, so the three
 * syntaxes share defaults and error messages (StreamFenceJs's, see shared/STREAMFENCE.md 1.3).
 * Functions in a Lua config (hooks) are kept as registry refs in the same lua_State;
 * LUA_NOREF (-2) means "not set" and costs nothing at run time. */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>
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

typedef struct sl_ns_config {
  char *path;                 /* "/feed" */
  char **topics;              /* ntopics names, unique, non-blank */
  size_t ntopics;
  sl_delivery_mode delivery;  /* BEST_EFFORT */
  sl_overflow_action overflow;/* REJECT_NEW */
  int64_t max_queued_msgs;    /* 64 */
  int64_t max_queued_bytes;   /* 524288 */
  int64_t ack_timeout_ms;     /* 1000 */
  int64_t max_retries;        /* 0 */
  int64_t max_in_flight;      /* 1 (<=0 normalized to 1) */
  bool coalesce;              /* false */
  bool allow_polling;         /* true */
  bool auth_required;         /* false */
  bool client_publish;        /* true from JSON/YAML, false default in Lua configs */
  double retry_backoff;       /* 1.0 = fixed delay; >1 multiplies the delay per retry */
  int64_t retry_max_delay_ms; /* cap for backoff; default 30000 */
  char *coalesce_key_path;    /* "symbol" / "data.id" or NULL */
  /* Lua hooks (registry refs, SL_NOREF when unset) */
  int coalesce_key_ref;       /* function(topic, payload) -> key */
  int snapshot_ref;           /* function(state, topic, payload) -> state */
  int route_ref;              /* function(msg) -> nil|true|false|table */
  int authorize_ref;          /* function(token, ns, topic, client) -> principal|nil, reason */
  int on_connect_ref;         /* function(client, auth) -> nil|false, reason */
  int on_event_ref;           /* function(client, event, args, ack) */
  int on_client_publish_ref;  /* function(client, topic, payload) -> allow [, payload] */
} sl_ns_config;

typedef struct sl_server_config {
  char *name;                 /* key in servers = { NAME = ... } */
  char *host;                 /* "0.0.0.0" */
  int port;                   /* 0 = OS-assigned */
  bool websocket_only;        /* engineIoTransport == WEBSOCKET_ONLY */
  bool auth_token;            /* auth == TOKEN */
  char **tokens;              /* static token list (key "tokens") */
  size_t ntokens;
  char *spill_root;           /* ".streamfence-spill" */
  int64_t ping_interval_ms;   /* 25000 */
  int64_t ping_timeout_ms;    /* 20000 */
  int64_t connect_timeout_ms; /* 45000 */
  int64_t max_payload;        /* 1000000 */
  int64_t socket_high_water;  /* socketHighWaterBytes, default 65536 */
  int64_t socket_sndbuf;      /* socketSendBufferBytes (SO_SNDBUF), 0 = kernel default */
  char *api_token;            /* NULL: HTTP API answers loopback peers only */
  char *eio_path;             /* engineIo.path, NULL when no raw Engine.IO endpoint */
  int eio_on_message_ref;     /* engineIo.onMessage(conn, data) */
  int eio_on_open_ref;        /* engineIo.onOpen(conn) (optional) */
  int eio_on_close_ref;       /* engineIo.onClose(conn, reason) (optional) */
  int on_start_ref;           /* onStart(server) */
  int on_connect_ref, on_disconnect_ref, on_subscribe_ref, on_unsubscribe_ref;
  int on_overflow_ref, on_retry_exhausted_ref;
  sl_ns_config *ns;
  size_t nns;
} sl_server_config;

typedef struct sl_config {
  char *path;                 /* file it came from ("<string>" for strings) */
  sl_server_config *servers;
  size_t nservers;
  struct lua_State *L;        /* state that owns the refs (not owned by the config) */
} sl_config;

/* sl_config_load: read and validate a config file (.lua/.json/.yaml/.yml, case-insensitive
 * extension) using the given lua_State (which must already have the `sluice` module
 * installed, see sl_lua.h). On success returns 0 and *out (free with sl_config_free).
 * On failure returns SL_ECONFIG and writes a one-line message into err (never NULL on
 * failure) naming the file and, where relevant, server, namespace and key, e.g.
 *   config.yaml: server "feed": namespace /alo: AT_LEAST_ONCE namespaces must allow at least one retry
 * The StreamFenceJs messages (STREAMFENCE.md 1.3) appear verbatim after the prefix. */
int sl_config_load(struct lua_State *L, const char *path, sl_config **out, char *err, size_t errlen);

/* sl_config_load_string: same, from text; fmt is "lua", "json" or "yaml". */
int sl_config_load_string(struct lua_State *L, const char *text, size_t len, const char *fmt,
                          const char *chunkname, sl_config **out, char *err, size_t errlen);

/* sl_config_free: release the config and unref its hooks in cfg->L (if L still open). */
void sl_config_free(sl_config *cfg);

/* sl_config_summary: a human-readable multi-line summary (for `sluice check`), malloc'd. */
char *sl_config_summary(const sl_config *cfg);

const char *sl_overflow_name(sl_overflow_action a);
const char *sl_delivery_name(sl_delivery_mode m);

#endif
