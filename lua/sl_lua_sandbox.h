/* sl_lua_sandbox.h - the sandbox for hook scripts and script loading (lua/sandbox.c). */
#ifndef SL_LUA_SANDBOX_H
#define SL_LUA_SANDBOX_H

#include <stddef.h>

#include "sl_lua.h"

struct lua_State;

/* sl__lua_load_script: load a hook script file in its own sandboxed environment, with the
 * JIT off for all its functions, and run it. stack: -> value returned by the chunk.
 * Returns 0, SL_EIO (cannot read; err says why) or SL_ELUA (syntax or run-time error). */
int sl__lua_load_script(struct lua_State *L, const char *path, char *err, size_t errlen);

/* sl__lua_set_script_dir: the directory sluice.script resolves names against first (the
 * config file's directory; NULL = the working directory). Set by the config loader. */
void sl__lua_set_script_dir(struct lua_State *L, const char *dir);

/* sl__lua_script: sluice.script(name, options) from C, under the protected call: resolve
 * and load the script (sandboxed, cached per VM) and call its constructor with the table at
 * opts_idx (0 = none). stack: -> hook on success, nothing on failure (err written).
 * Returns 0 or SL_ELUA. */
int sl__lua_script(struct lua_State *L, const char *name, int opts_idx, char *err, size_t errlen);

/* sl__lua_inject_sandbox: add sluice.script, the script cache, package.preload loaders for
 * "sluice" and the embedded lua/ modules, and build the sandbox factory from the current
 * (pristine) globals; payload views must already wrap the base library (sl__pv_open) so
 * scripts copy the wrapped functions. Aborts if the factory cannot be built.
 * stack: sluice -> sluice */
void sl__lua_inject_sandbox(sl_lua *vm, struct lua_State *L);

#endif
