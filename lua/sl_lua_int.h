/* sl_lua_int.h - the private headers of the Lua binding in one include, for the unit tests,
 * fuzzers and benchmarks that reach inside the VM. Production files include the header of
 * each module they call instead:
 *   sl_lua_call.h     call.c     the VM state, sl_lua_call, limits, refs
 *   sl_lua_bytes.h    bytes.c    binary values
 *   sl_lua_json.h     json.c     JSON <-> Lua, sluice.json
 *   sl_lua_pview.h    pview.c    payload views
 *   sl_lua_boxes.h    boxes.c    client / conn / timer boxes
 *   sl_lua_sandbox.h  sandbox.c  script sandbox and loading
 * Not public. */
#ifndef SL_LUA_INT_H
#define SL_LUA_INT_H

#include "sl_lua_boxes.h"
#include "sl_lua_bytes.h"
#include "sl_lua_call.h"
#include "sl_lua_json.h"
#include "sl_lua_pview.h"
#include "sl_lua_sandbox.h"

#endif
