/* vm.c - builds and closes the embedded LuaJIT VM (sl_lua.h): the lua_State with the
 * counting allocator, the pinned stack slots, and the `sluice` module, which each area of
 * the binding fills with its sl__lua_inject_* function (like lua-nginx-module's
 * ngx_http_lua_inject_*_api):
 *
 *   call.c     the one protected call, allocator, instruction budget (sl_lua_call.h)
 *   bytes.c    sluice.bytes, sluice.is_bytes
 *   json.c     sluice.json
 *   lib.c      sluice.publish, publish_to, stats, log, now_ms, now_us
 *   pattern.c  string.find/match/gmatch/gsub counted against the instruction budget
 *   watchdog.c the thread that stops (or, failing that, exits on) a call that never returns
 *   boxes.c    client / conn / timer boxes, sluice.every, sluice.after
 *   crypto.c   sluice.crypto
 *   pview.c    payload views (wraps the base library)
 *   sandbox.c  sluice.script, require of the embedded modules, the script sandbox
 *   hooks.c    the policy hooks the core calls (preallocated views and refs)
 */
#include <errno.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sl_lua_boxes.h"
#include "sl_lua_bytes.h"
#include "sl_lua_call.h"
#include "sl_lua_crypto.h"
#include "sl_lua_hooks.h"
#include "sl_lua_json.h"
#include "sl_lua_lib.h"
#include "sl_lua_pattern.h"
#include "sl_lua_pview.h"
#include "sl_lua_sandbox.h"

#define SL_LUA_REF_BLOCK 256 /* registry array slots reserved for refs (sl_lua_new) */

static uint64_t env_u64(const char *name, uint64_t def) {
  const char *v = getenv(name);
  if (!v || !*v) return def;
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (errno || *end) {
    sl_log_warn("ignoring %s=%s (not a number)", name, v);
    return def;
  }
  return x;
}

/* Build the sluice module: every area adds its part, then it becomes the global `sluice`
 * and package.loaded.sluice; payload views wrap the base library and the sandbox factory
 * is built last, from the finished table and the pristine globals. stack: unchanged */
static void install_module(sl_lua *vm) {
  lua_State *L = vm->L;
  sl__lua_inject_patterns(vm, L); /* before the sandbox copies the string library */
  lua_newtable(L);                /* stack: sluice */
  sl__lua_inject_bytes(L);
  sl__lua_inject_json(L);
  sl__lua_inject_lib(L);
  sl__lua_inject_boxes(L);
  sl__lua_inject_crypto(L);
  lua_newtable(L);
  lua_pushnumber(L, (double)vm->instr_limit);
  lua_setfield(L, -2, "instructions");
  lua_pushnumber(L, (double)vm->mem_limit);
  lua_setfield(L, -2, "memory");
  lua_setfield(L, -2, "limits");
  lua_pushliteral(L, "sluice");
  lua_setfield(L, -2, "_NAME");
  lua_pushvalue(L, -1);
  lua_setglobal(L, "sluice");
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "sluice");
  lua_pop(L, 2); /* stack: sluice */
  /* Payload views pass for read-only tables: wrap the base library before the sandbox
   * copies it (pview.c). */
  sl__pv_open(L);
  sl__lua_inject_sandbox(vm, L);
  lua_pop(L, 1);
}

/* sl_lua_new: see sl_lua.h. Limits come from SLUICE_LUA_INSTRUCTION_LIMIT and
 * SLUICE_LUA_MEMORY_LIMIT when set. */
sl_lua *sl_lua_new(sl_gateway *gw) {
  sl_lua *vm = sl_xcalloc(1, sizeof *vm);
  vm->gw = gw;
  vm->count_hook = sl__lua_count_hook;
  vm->ht = vm->own_ht;
  for (int k = 0; k < SL_HT_KINDS; k++) vm->ht_tick[k] = SL_HT_SAMPLE_EVERY;
  vm->instr_limit = env_u64("SLUICE_LUA_INSTRUCTION_LIMIT", SL_LUA_DEFAULT_INSTRUCTIONS);
  vm->L = lua_newstate(sl__lua_alloc, vm);
  vm->custom_alloc = vm->L != NULL;
  if (!vm->L) {
    vm->L = luaL_newstate(); /* this build refuses custom allocators: no memory cap */
    if (!vm->L) {
      sl_log_error("lua: cannot create a Lua state");
      abort();
    }
  } else {
    vm->mem_limit = (size_t)env_u64("SLUICE_LUA_MEMORY_LIMIT", SL_LUA_DEFAULT_MEMORY);
  }
  lua_State *L = vm->L;
  lua_pushlightuserdata(L, &sl__lua_k_vm);
  lua_pushlightuserdata(L, vm);
  lua_rawset(L, LUA_REGISTRYINDEX);
  /* Hooks are found by registry ref once per publish. Refs taken one by one can stay in the
   * registry's hash part (a hashed lookup per call); taking a block and releasing it sizes
   * the array part, and luaL_ref reuses the released slots first. */
  int block[SL_LUA_REF_BLOCK];
  for (int i = 0; i < SL_LUA_REF_BLOCK; i++) {
    lua_pushboolean(L, 1);
    block[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  for (int i = SL_LUA_REF_BLOCK - 1; i >= 0; i--) luaL_unref(L, LUA_REGISTRYINDEX, block[i]);
  luaL_openlibs(L);
  /* The handler stays at stack index 1 for the VM's life: sl_lua_call names it as the error
   * function without pushing and moving it per call. */
  lua_pushcfunction(L, sl__lua_traceback);
  lua_pushvalue(L, -1);
  vm->tb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  vm->view_text = sl__pv_slice;
  install_module(vm);
  sl__lua_inject_hooks(vm);
  /* the pinned slots after SLOT_TB (see the enum) */
  vm->pview = sl__pv_new(L);
  lua_pushvalue(L, -1);
  vm->pview_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->view_ref);
  lua_pushliteral(L, "");
  lua_pushvalue(L, -1);
  vm->topic_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  for (int i = 0; i < SL_HOOK_SLOTS; i++) lua_pushnil(L);
  if (lua_gettop(L) != SLOT_LAST) abort();
  if (vm->instr_limit) lua_sethook(L, sl__lua_count_hook, LUA_MASKCOUNT, SL_LUA_HOOK_STEP);
  sl__lua_register(vm);
  return vm;
}

/* sl_lua_state: the VM's lua_State (owned by the VM). */
lua_State *sl_lua_state(sl_lua *vm) { return vm->L; }

/* sl_lua_error_count: Lua errors caught so far (hooks, timers, config). */
uint64_t sl_lua_error_count(const sl_lua *vm) { return vm->errors; }

/* sl_lua_memory_bytes: bytes held by the VM's Lua heap. */
size_t sl_lua_memory_bytes(const sl_lua *vm) {
  if (vm->custom_alloc) return vm->mem;
  return (size_t)lua_gc(vm->L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(vm->L, LUA_GCCOUNTB, 0);
}

/* sl_lua_close: see sl_lua.h. Safe to call from inside a hook of this VM (the close then
 * completes when the outermost call returns). vm may be NULL. */
void sl_lua_close(sl_lua *vm) {
  if (!vm || vm->closing) return;
  vm->closing = true;
  sl__box_timers_stop(vm);
  sl__lua_log_stop(vm);
  sl__lua_leave(vm);
}
