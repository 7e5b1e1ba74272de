/* sl_lua.h - the embedded LuaJIT VM: the `sluice` module, sandboxed chunks, hooks.
 *
 * One sl_lua per loaded config generation. All calls into Lua go through one function
 * (sl_lua_call in lua/call.c) that installs a traceback handler, uses lua_pcall, logs errors
 * with file:line, counts them and returns a fallback decision: a Lua error never stops the
 * gateway. Hooks that are not set (SL_NOREF) are never called. */
#ifndef SL_LUA_H
#define SL_LUA_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "../core/sl_core.h"

struct lua_State;
typedef struct sl_lua sl_lua;

/* sl_lua_new: a fresh VM with the `sluice` module (global and require("sluice")), the
 * standard libraries a config may use, and os.getenv. Never returns NULL (aborts on OOM).
 * gw may be NULL (for `sluice check` and unit tests: publish then fails with SL_ESTATE). */
sl_lua *sl_lua_new(sl_gateway *gw);
/* sl_lua_state: the VM's main state. The bottom 4 stack slots belong to the VM (values the
 * per-publish hooks push without a registry lookup): push and pop above them, never
 * lua_settop(L, 0). */
struct lua_State *sl_lua_state(sl_lua *vm);
/* sl_lua_close: stops this VM's timers (uv handles are closed asynchronously) and closes the
 * lua_State once they are closed. */
void sl_lua_close(sl_lua *vm);
uint64_t sl_lua_error_count(const sl_lua *vm);

/* sl_lua_set_watchdog: watch vm's calls from now on (ms > 0; 0 stops watching). A call
 * still running after ms (luaWatchdogMs) is asked to stop: the VM raises at its next
 * instruction or pattern step, as for the instruction limit. If it is still running ms
 * later (stuck inside a C function), the process logs the call (its kind, where its
 * function is defined, its Lua frames read from the stuck stack) and exits with status
 * SL_LUA_WATCHDOG_EXIT, for a supervisor to restart it: never a frozen gateway. One
 * watchdog thread serves every watched VM of the process. */
#define SL_LUA_WATCHDOG_EXIT 70
void sl_lua_set_watchdog(sl_lua *vm, uint32_t ms);
size_t sl_lua_memory_bytes(const sl_lua *vm);

/* sl_lua_on_start: call a server's onStart(server) hook. Returns 0 or SL_ELUA (logged). */
int sl_lua_on_start(sl_lua *vm, int ref, sl_server *srv);

/* sl_lua_allow_request: a server's allowRequest(req) for one Engine.IO handshake; req is
 * {method, path, query = {k = v}, headers = {name = value}, remoteAddress} (header names
 * lowercase; repeated headers joined with ", "; query values not percent-decoded). Returns 1
 * when the hook returns true; else 0 with its second result (a string) in message and its
 * third (an integer 400..599) in *status. Fails closed: nil, a non-boolean, or a Lua error
 * (logged, counted) refuses with the preset status and message. */
int sl_lua_allow_request(sl_lua *vm, int ref, const char *method, const char *path,
                         const char *query, const char *remote, const char *const *headers,
                         size_t nheaders, int *status, char *message, size_t msglen);

/* sl_lua_on_connect: namespace onConnect(client, auth). auth_json is the CONNECT payload
 * object text or NULL. Returns 1 to accept, 0 to refuse (reason written, NUL-terminated;
 * "Not authorized" by default); a Lua error refuses. */
int sl_lua_on_connect(sl_lua *vm, int ref, sl_socket *s, const char *auth_json, size_t len,
                      char *reason, size_t reasonlen);

/* sl_lua_on_event: namespace onEvent(client, event, args, ack). args_json is a JSON array of
 * the arguments after the event name (placeholders {"_placeholder":true,"num":i} refer to
 * atts[i], which reach Lua as binary values, not strings). ack_id < 0 means the client asked
 * no ack (then `ack` is nil); otherwise `ack(...)` answers via sl_socket_ack at most once. */
void sl_lua_on_event(sl_lua *vm, int ref, sl_socket *s, const char *event, const char *args_json,
                     size_t len, const sl_bin *atts, size_t natts, int64_t ack_id);

/* sl_lua_socket_gone: the core is about to free s; any Lua box for it is cleared so a stale
 * reference raises an error instead of touching freed memory. */
void sl_lua_socket_gone(sl_lua *vm, sl_socket *s);

/* Raw Engine.IO endpoint: onMessage(conn, data); data is a string for text, a binary value
 * for binary messages. */
void sl_lua_eio_message(sl_lua *vm, int ref, sl_eio_conn *c, const uint8_t *data, size_t len,
                        bool binary);
void sl_lua_eio_event(sl_lua *vm, int ref, sl_eio_conn *c, const char *reason); /* open/close */
void sl_lua_eio_gone(sl_lua *vm, sl_eio_conn *c);

/* Timing of the Lua hooks the core calls per publish or per client request: one call in
 * SL_HT_SAMPLE_EVERY of each kind is timed (CLOCK_MONOTONIC around the whole call: pushing
 * the arguments, the protected call, reading the result) and added to a latency histogram,
 * exported as sluice_lua_hook_duration_seconds and in /api/stats. Sampling keeps the two
 * clock reads (about 20 ns each) off the other calls. */
enum {
  SL_HT_ROUTE,
  SL_HT_COALESCE_KEY,
  SL_HT_SNAPSHOT,
  SL_HT_CLIENT_PUBLISH,
  SL_HT_AUTHORIZE,
  SL_HT_KINDS
};
#define SL_HT_SAMPLE_EVERY 16
extern const char *const sl_ht_names[SL_HT_KINDS]; /* "route", "coalesceKey", ... */
#define SL_HT_SAMPLE_EVERY_STR "16"                /* the same, for help texts */
/* sl_lua_set_hook_times: record into h[SL_HT_KINDS] (the gateway's, which outlive reloads)
 * instead of the VM's own histograms. */
void sl_lua_set_hook_times(sl_lua *vm, sl_lathist *h);

/* sl_lua_coalesce_key_buf: call coalesceKey(topic, payload) once per publish (the payload
 * is a read-only view of payload_json, see pview.c). Strings and numbers are keys (numbers
 * formatted %.14g). Returns the NUL-terminated key in buf when it fits in cap bytes, else in
 * a malloc'd string (the caller frees it when it is not buf), or NULL (no key / error). */
char *sl_lua_coalesce_key_buf(sl_lua *vm, int ref, const char *topic, const char *payload_json,
                              size_t len, char *buf, size_t cap);

/* sl_lua_coalesce_key: the same, always returning a malloc'd key or NULL. */
char *sl_lua_coalesce_key(sl_lua *vm, int ref, const char *topic, const char *payload_json,
                          size_t len);

/* ---- policy hooks (issue 4). Each is called once per publish / subscribe / connect, never
 * per recipient; an unset hook (SL_NOREF) is never called. Hooks see read-only views: route's
 * msg.payload (or second argument) and coalesceKey's payload are payload views reading the
 * JSON text in place (pview.c); snapshot and onClientPublish get decoded tables (the latter
 * only if the hook declares the parameter); msg.json gives the raw JSON text. ---- */

/* The route hook's decision is the core's (sluice.h): malloc'd fields the core frees. */
enum {
  SL_ROUTE_DELIVER = SLUICE_ROUTE_DELIVER,
  SL_ROUTE_DROP = SLUICE_ROUTE_DROP,
  SL_ROUTE_REWRITE = SLUICE_ROUTE_REWRITE
};
typedef sluice_route_result sl_route_result;

/* sl_lua_route: call route(msg [, payload]) where msg has .namespace .topic .payload (view) .json
 * .source ("api"|"lua"|"client") .clientId .principal (client publishes only). The hook
 * returns nil/true (deliver), false (drop), or a table {payload=?, topic=? or topics={..},
 * to={ids..}} (rewrite). A Lua error logs, counts and delivers as is (documented default).
 * Returns 0 and fills *out (free with sl_route_result_free). */
int sl_lua_route(sl_lua *vm, int ref, const char *ns, const char *topic, const char *payload_json,
                 size_t len, int source, sl_socket *from, sl_route_result *out);
void sl_route_result_free(sl_route_result *r);

/* sl_lua_authorize: authorize(token, namespace, topic, client) -> principal | nil, reason.
 * topic is NULL on CONNECT. token may be NULL. Returns 1 (accepted: *principal is a malloc'd
 * string, the returned value tostring'd; true gives the token or "anonymous") or 0 (refused:
 * reason written; an error refuses with "authorization failed"). */
int sl_lua_authorize(sl_lua *vm, int ref, const char *token, const char *ns, const char *topic,
                     sl_socket *s, char **principal, char *reason, size_t reasonlen);

/* sl_lua_client_publish: onClientPublish(client, topic, payload) -> allow [, payload].
 * Returns 1 allow (with *new_payload malloc'd JSON when the hook returned a second value,
 * else NULL), 0 refuse (false/nil or an error). */
int sl_lua_client_publish(sl_lua *vm, int ref, sl_socket *s, const char *topic,
                          const char *payload_json, size_t len, char **new_payload);

/* sl_lua_snapshot: state = snapshot(state, topic, payload). The state lives in the VM under
 * *state_ref (SL_NOREF at first; when SL_NOREF and prev_json is not NULL the state is first
 * decoded from prev_json, which is how state survives a reload into a new VM). On success
 * returns 0 and *state_json = malloc'd JSON of the new state (what a new subscriber gets
 * first). On error returns SL_ELUA and leaves the state unchanged. */
int sl_lua_snapshot(sl_lua *vm, int ref, int *state_ref, const char *prev_json, size_t prev_len,
                    const char *topic, const char *payload_json, size_t len, char **state_json);
/* sl_lua_unref: release a registry ref of this VM. Refs handed to the sl_lua_* hook calls
 * must be released here (or with sl__lua_unref), never with luaL_unref: the VM caches hook
 * functions by ref, and only this path drops the cached entry before the number is reused. */
void sl_lua_unref(sl_lua *vm, int ref);

/* sl_lua_server_event: call a server event hook (onConnect, onDisconnect, onSubscribe,
 * onUnsubscribe, onOverflow, onRetryExhausted) with one table decoded from event_json
 * (fields as StreamFenceJs's listener events: namespace, clientId, topic, reason, messageId,
 * retryCount, transport, principal...). */
void sl_lua_server_event(sl_lua *vm, int ref, const char *event_json, size_t len);

#endif
