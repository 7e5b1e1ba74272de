/* sl_lua.h - the embedded LuaJIT VM: the `sluice` module, sandboxed chunks, hooks.
 *
 * One sl_lua per loaded config generation. All calls into Lua go through one function
 * (sl_lua_call in lua/vm.c) that installs a traceback handler, uses lua_pcall, logs errors
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
struct lua_State *sl_lua_state(sl_lua *vm);
/* sl_lua_close: stops this VM's timers (uv handles are closed asynchronously) and closes the
 * lua_State once they are closed. */
void sl_lua_close(sl_lua *vm);
uint64_t sl_lua_error_count(const sl_lua *vm);
size_t sl_lua_memory_bytes(const sl_lua *vm);

/* sl_lua_on_start: call a server's onStart(server) hook. Returns 0 or SL_ELUA (logged). */
int sl_lua_on_start(sl_lua *vm, int ref, sl_server *srv);

/* sl_lua_on_connect: namespace onConnect(client, auth). auth_json is the CONNECT payload
 * object text or NULL. Returns 1 to accept, 0 to refuse (reason written, NUL-terminated;
 * "Not authorized" by default); a Lua error refuses. */
int sl_lua_on_connect(sl_lua *vm, int ref, sl_socket *s, const char *auth_json, size_t len,
                      char *reason, size_t reasonlen);

/* sl_lua_on_event: namespace onEvent(client, event, args, ack). args_json is a JSON array of
 * the arguments after the event name (placeholders {"_placeholder":true,"num":i} refer to
 * atts[i], which reach Lua as binary values, not strings). ack_id < 0 means the client asked
 * no ack (then `ack` is nil); otherwise `ack(...)` answers via sl_socket_ack at most once. */
void sl_lua_on_event(sl_lua *vm, int ref, sl_socket *s, const char *event,
                     const char *args_json, size_t len, const sl_bin *atts, size_t natts,
                     int64_t ack_id);

/* sl_lua_socket_gone: the core is about to free s; any Lua box for it is cleared so a stale
 * reference raises an error instead of touching freed memory. */
void sl_lua_socket_gone(sl_lua *vm, sl_socket *s);

/* Raw Engine.IO endpoint: onMessage(conn, data); data is a string for text, a binary value
 * for binary messages. */
void sl_lua_eio_message(sl_lua *vm, int ref, sl_eio_conn *c, const uint8_t *data, size_t len,
                        bool binary);
void sl_lua_eio_event(sl_lua *vm, int ref, sl_eio_conn *c, const char *reason); /* open/close */
void sl_lua_eio_gone(sl_lua *vm, sl_eio_conn *c);

/* sl_lua_coalesce_key: call coalesceKey(topic, payload) once per publish. Returns a malloc'd
 * key (strings and numbers are accepted, numbers formatted %.14g) or NULL (no key / error). */
char *sl_lua_coalesce_key(sl_lua *vm, int ref, const char *topic, const char *payload_json,
                          size_t len);

#endif
