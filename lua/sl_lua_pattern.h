/* sl_lua_pattern.h - string.find/match/gmatch/gsub that count their steps against the
 * instruction budget (lua/pattern.c). Private to lua/. */
#ifndef SL_LUA_PATTERN_H
#define SL_LUA_PATTERN_H

#include "sl_lua.h"

struct lua_State;

/* sl__lua_inject_patterns: replace find, match, gmatch and gsub in the VM's string table
 * (the global `string`, which is also the strings' method table) with the counted
 * versions, bound to vm. Call before the sandbox copies the string library.
 * stack: unchanged */
void sl__lua_inject_patterns(sl_lua *vm, struct lua_State *L);

#endif
