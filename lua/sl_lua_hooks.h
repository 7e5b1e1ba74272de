/* sl_lua_hooks.h - the policy hooks (lua/hooks.c). Their entry points are declared in
 * sl_lua.h (the core calls them); this header has what sl_lua_new needs. */
#ifndef SL_LUA_HOOKS_H
#define SL_LUA_HOOKS_H

#include "sl_lua.h"

/* sl__lua_inject_hooks: preallocate what the per-publish hooks use (see "Policy hooks" in
 * hooks.c): the message view metatable and the shared view, the decode trampoline, encoder
 * and route-table refs, the arity cache and a private copy of debug.getinfo. Adds nothing
 * to the sluice table. stack: unchanged */
void sl__lua_inject_hooks(sl_lua *vm);

#endif
