/* sl_lua_int.h - helpers shared inside the lua/ module (vm.c <-> config.c). Not public.
 *
 * STYLE.md 1: non-static helpers shared inside a module are named sl__x. The config loader
 * needs a few things only the VM knows: the one protected-call path, the sandbox used for
 * hook scripts, and the JSON <-> Lua conversion (which config.c reuses for .json files). */
#ifndef SL_LUA_INT_H
#define SL_LUA_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

struct lua_State;
struct cJSON;
typedef struct sl_lua sl_lua;

/* The JSON null sentinel in Lua: a light userdata holding NULL (sluice.json.null). */
#define sl__lua_pushnull(L) lua_pushlightuserdata((L), NULL)
#define sl__lua_isnull(L, i) (lua_type((L), (i)) == LUA_TLIGHTUSERDATA && !lua_touserdata((L), (i)))

/* sl__lua_pcall: the protected call used by the config loader; it goes through the same
 * sl_lua_call as every hook (traceback handler, instruction budget, error counting) but
 * writes the error ("file:line: message", no traceback) into err instead of logging it.
 * stack: fn, args... -> results (nresults) on success, nothing on failure.
 * Returns 0 or SL_ELUA. */
int sl__lua_pcall(struct lua_State *L, int nargs, int nresults, char *err, size_t errlen);

/* sl__lua_load_script: load a hook script file in its own sandboxed environment, with the
 * JIT off for all its functions, and run it. stack: -> value returned by the chunk.
 * Returns 0, SL_EIO (cannot read; err says why) or SL_ELUA (syntax or run-time error). */
int sl__lua_load_script(struct lua_State *L, const char *path, char *err, size_t errlen);

/* sl__lua_hook_prepare: turn the JIT off for the Lua function at stack index idx and all
 * functions defined inside it, so the instruction-count hook sees every instruction. C
 * functions are left alone. The stack is unchanged. */
void sl__lua_hook_prepare(struct lua_State *L, int idx);

/* sl__lua_unref: luaL_unref on the registry of the VM that owns L, keeping the VM's hook
 * cache right (every ref a VM made is released through here). */
void sl__lua_unref(struct lua_State *L, int ref);

/* sl__lua_alive: is L the state of a VM that is still open (created by sl_lua_new and not
 * yet closed)? Lets sl_config_free skip luaL_unref on a closed state. */
bool sl__lua_alive(struct lua_State *L);

/* sl__lua_push_json: push a parsed cJSON value as Lua (objects -> tables, arrays -> tables
 * carrying the array marker metatable, null -> sluice.json.null). Raises a Lua error when
 * nested too deeply. Must run inside a protected call. stack: -> value */
void sl__lua_push_json(struct lua_State *L, const struct cJSON *j);

/* sl__lua_set_limits: change a VM's per-call instruction budget (0 = unlimited) and its
 * memory limit in bytes (0 = unlimited). For tests and the CLI. */
void sl__lua_set_limits(sl_lua *vm, uint64_t instructions, size_t memory_bytes);

/* sl__lua_set_script_dir: the directory sluice.script resolves names against first (the
 * config file's directory; NULL = the working directory). Set by the config loader. */
void sl__lua_set_script_dir(struct lua_State *L, const char *dir);

/* sl__lua_script: sluice.script(name, options) from C, under the protected call: resolve
 * and load the script (sandboxed, cached per VM) and call its constructor with the table at
 * opts_idx (0 = none). stack: -> hook on success, nothing on failure (err written).
 * Returns 0 or SL_ELUA. */
int sl__lua_script(struct lua_State *L, const char *name, int opts_idx, char *err,
                   size_t errlen);

/* sl__lua_decode_text: decode JSON text into Lua (objects -> tables, arrays -> marked
 * tables, null -> sluice.json.null). Must run inside a protected call (raises on nesting or
 * memory). stack: -> value, or nothing and false when the text is not valid JSON. */
bool sl__lua_decode_text(struct lua_State *L, const char *text, size_t len);

/* Payload views (pview.c): the payload of route (msg.payload) and coalesceKey, read from
 * the JSON text in place. A scope is one hook call that hands out views; views made in it
 * are live until sl__pv_leave. Scopes nest (a hook publishing runs hooks again) and live
 * on the C stack of the hook function. */
typedef struct sl__pv_scope {
  uint64_t id;
  struct sl__pv_scope *prev;
} sl__pv_scope;
void sl__pv_enter(sl__pv_scope *s);
void sl__pv_leave(sl__pv_scope *s);

/* sl__pv_open: register the view metatable and install the base-library wrappers (type,
 * getmetatable, pairs, ipairs, next, rawget, unpack, table.concat) that let views pass for
 * read-only tables. Called once per VM, before the sandbox copies the base library. */
void sl__pv_open(struct lua_State *L);

/* sl__pv_new: push a new, unbound view meant to be reused (pinned by the VM).
 * stack: -> view. Returns its memory for sl__pv_bind. */
void *sl__pv_new(struct lua_State *L);

/* sl__pv_bind: rebind the reusable view to the payload text for scope. False when the
 * payload is not an object or array, or when an open outer scope still uses the view (a
 * nested call): then push a fresh one with sl__pv_push. */
bool sl__pv_bind(void *shared, const sl__pv_scope *scope, const char *text, size_t len);

/* sl__pv_push: push the payload text as a new view bound to scope (objects and arrays; a
 * scalar payload is pushed decoded, an empty or invalid one as nil). stack: -> value */
void sl__pv_push(struct lua_State *L, const sl__pv_scope *scope, const char *text, size_t len);

/* sl__pv_slice: when the value at idx is a payload view, set its JSON text and return true
 * (raises if the view outlived its hook call); false for anything else. */
bool sl__pv_slice(struct lua_State *L, int idx, const char **s, size_t *n);

/* sl__pv_valid: is [s, s+n) exactly one valid JSON value (surrounding whitespace allowed)? */
bool sl__pv_valid(const char *s, size_t n);

#endif
