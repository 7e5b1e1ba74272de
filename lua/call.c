/* call.c - the VM's state and the one protected call: the counting allocator with the
 * memory cap, the instruction-count hook, the traceback handler, sl_lua_call, registry
 * refs and helpers, the list of open VMs and the deferred close, the error log's rate
 * limit. See sl_lua_call.h.
 *
 * Limits (this block is the text for the README's "Lua limits" section):
 *
 *   Every call from the gateway into Lua (hooks, timer callbacks, the config chunk) runs
 *   under an instruction budget, 10 million VM instructions per call by default
 *   (SLUICE_LUA_INSTRUCTION_LIMIT overrides it, 0 disables it). A call that exceeds it is
 *   stopped with "instruction limit exceeded", logged and counted, and the hook falls back
 *   to its safe default; the gateway keeps running. The budget is enforced by a count hook,
 *   which LuaJIT only honours in the interpreter, so the JIT is switched off for every
 *   function of a config or hook script (luaJIT_setmode ALLFUNC|OFF on the chunk). The
 *   budget therefore stops loops written in Lua. Pattern matching counts its steps against
 *   the same budget (pattern.c). Other long calls into C (string.rep of a huge string, a big
 *   table.concat) are bounded by the memory limit, and anything still stuck in one call is
 *   stopped, or failing that ends the process, by the watchdog (watchdog.c).
 *   Functions of the embedded lua/ library may still be JIT-compiled; they are ours and
 *   do bounded work.
 *   Sandboxed scripts cannot swallow the budget error: their pcall/xpcall/coroutine.resume
 *   re-raise it, and once exceeded the hook keeps firing every 1000 instructions.
 *
 *   The VM's memory is capped at 256 MiB by default (SLUICE_LUA_MEMORY_LIMIT, bytes, 0 = no
 *   limit) with a counting allocator; an allocation past the cap fails with "not enough
 *   memory" inside the call that made it. (This LuaJIT build accepts a custom allocator in
 *   lua_newstate; if a build refuses it, the VM falls back to luaL_newstate and reports
 *   memory from lua_gc(LUA_GCCOUNT) with no cap.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>

#include "gateway.h" /* sl_gateway_loop, for the summary timer */
#include "sl_lua_call.h"

char sl__lua_k_vm;

static sl_lua *g_alive; /* open VMs, for sl__lua_alive (loop thread only) */

/* ------------------------------------------------------------------------------------- */
/* Allocator                                                                              */

/* sl__lua_alloc: see sl_lua_call.h. */
void *sl__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  sl_lua *vm = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    vm->mem -= old;
    return NULL;
  }
  /* The cap applies only while Lua code runs (depth > 0), where a failed allocation is a
   * catchable "not enough memory". The gateway's own bookkeeping between calls (boxes,
   * refs) and the arguments it pushes for a nested hook call (vm->uncapped, outside any
   * pcall of their own) never fail, so a script sitting near the cap cannot make the VM
   * panic. */
  if (nsize > old && vm->mem_limit && vm->depth > 0 && !vm->uncapped &&
      vm->mem - old + nsize > vm->mem_limit)
    return NULL;
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  vm->mem = vm->mem - old + nsize;
  return p;
}

/* sl__lua_vm: see sl_lua_call.h. */
sl_lua *sl__lua_vm(lua_State *L) {
  lua_pushlightuserdata(L, &sl__lua_k_vm);
  lua_rawget(L, LUA_REGISTRYINDEX);
  sl_lua *vm = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return vm;
}

/* ------------------------------------------------------------------------------------- */
/* The one protected call                                                                 */

/* sl__lua_count_hook: see sl_lua_call.h. */
void sl__lua_count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  sl_lua *vm = sl__lua_vm(L);
  if (!vm || vm->depth == 0) return; /* never raise outside a pcall */
  if (__builtin_expect(vm->wd_ms && sl__lua_wd_tripped(vm), 0)) {
    /* the watchdog set this hook to fire at every instruction: stop the call, keeping
     * the traceback in case the error is swallowed and the watchdog must exit */
    vm->limit_hit = true; /* sandboxed pcall re-raises, as for the instruction limit */
    luaL_traceback(L, L, sl__lua_wd_message(vm), 0);
    snprintf(vm->wd_trace, sizeof vm->wd_trace, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    luaL_where(L, 0);
    lua_pushstring(L, sl__lua_wd_message(vm));
    lua_concat(L, 2);
    lua_error(L);
  }
  if (!vm->instr_limit) return;
  vm->instr_used += (uint64_t)lua_gethookcount(L); /* SL_LUA_HOOK_STEP, or 1 (watchdog) */
  if (vm->instr_used >= vm->instr_limit) {
    vm->limit_hit = true;
    char n[32];
    snprintf(n, sizeof n, "%llu", (unsigned long long)vm->instr_limit);
    luaL_where(L, 0); /* level 0 in a hook: the Lua function being interrupted */
    lua_pushfstring(L, "instruction limit exceeded (%s instructions)", n);
    lua_concat(L, 2);
    lua_error(L);
  }
}

/* sl__lua_traceback: see sl_lua_call.h. stack: msg -> msg .. "\n" .. traceback */
int sl__lua_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Report a failed call (the error value on top): write it to err (or vm->err_out) or log
 * it with the traceback, count it. stack: error -> (nothing) */
__attribute__((noinline, cold)) static void report(sl_lua *vm, lua_State *L, int status,
                                                   const char *what, char *err, size_t errlen) {
  size_t len;
  const char *full = lua_tolstring(L, -1, &len);
  if (!full) full = "(no message)", len = strlen(full);
  const char *trace = strstr(full, "\nstack traceback:");
  size_t mlen = trace ? (size_t)(trace - full) : len;
  if (status == LUA_ERRMEM) {
    full = "not enough memory (Lua memory limit reached)";
    mlen = strlen(full);
    trace = NULL;
  }
  if (vm) {
    vm->errors++;
    err = vm->err_out;
    errlen = vm->err_outlen;
  }
  if (err)
    snprintf(err, errlen, "%.*s", (int)mlen, full);
  else
    sl__lua_log_error(vm, what ? what : "call", full, mlen, trace);
  lua_pop(L, 1);
}

/* ------------------------------------------------------------------------------------- */
/* Error log rate limit                                                                   */

/* The part of an error message that names where it was raised ("file:line:"), or the
 * whole first line when it names no line. */
static size_t where_len(const char *msg, size_t mlen) {
  const char *nl = memchr(msg, '\n', mlen);
  size_t n = nl ? (size_t)(nl - msg) : mlen;
  for (size_t i = 0; i < n; i++) {
    if (msg[i] != ':' || i + 1 >= n || msg[i + 1] < '0' || msg[i + 1] > '9') continue;
    size_t j = i + 1;
    while (j < n && msg[j] >= '0' && msg[j] <= '9') j++;
    if (j < n && msg[j] == ':') return j + 1;
  }
  return n;
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static void log_summary(sl_lua_logkey *k, uint64_t now) {
  if (!k->suppressed) return;
  sl_log_error("lua: %s ... repeated %llu more times in the last %llu s", k->label,
               (unsigned long long)k->suppressed,
               (unsigned long long)((now - k->since_ms + 999) / 1000));
  k->suppressed = 0;
}

/* sl__lua_log_flush: see sl_lua_call.h. Returns when the next window with suppressed errors
 * ends (ms from now), 0 when none is left. */
static uint64_t log_flush(sl_lua *vm, bool all) {
  if (!vm || !vm->logkeys) return 0;
  uint64_t now = sl_now_ms(), next = 0;
  for (int i = 0; i < SL_LUA_LOG_KEYS; i++) {
    sl_lua_logkey *k = &vm->logkeys[i];
    if (!k->key || !k->suppressed) continue;
    if (all || now - k->since_ms >= SL_LUA_LOG_WINDOW_MS) {
      log_summary(k, now);
    } else {
      uint64_t due = k->since_ms + SL_LUA_LOG_WINDOW_MS - now;
      if (!next || due < next) next = due;
    }
  }
  return next;
}
void sl__lua_log_flush(sl_lua *vm, bool all) { (void)log_flush(vm, all); }

/* The summary timer: a burst of identical errors followed by silence is still summarised
 * when its window ends. Unref'd: it never keeps the loop alive. */
static void log_timer_cb(uv_timer_t *t) {
  sl_lua *vm = t->data;
  uint64_t next = log_flush(vm, false);
  if (next) uv_timer_start(t, log_timer_cb, next + 1, 0);
}

static void log_timer_arm(sl_lua *vm, uint64_t due_ms) {
  if (!vm->gw || vm->closing) return;
  if (!vm->log_timer) {
    vm->log_timer = sl_xcalloc(1, sizeof *vm->log_timer);
    uv_timer_init(sl_gateway_loop(vm->gw), vm->log_timer);
    uv_unref((uv_handle_t *)vm->log_timer);
    vm->log_timer->data = vm;
  }
  if (!uv_is_active((uv_handle_t *)vm->log_timer))
    uv_timer_start(vm->log_timer, log_timer_cb, due_ms + 1, 0);
}

static void log_timer_closed(uv_handle_t *h) {
  sl_lua *vm = h->data;
  free(h);
  vm->pending_closes--;
  sl__lua_leave(vm);
}

/* sl__lua_log_stop: see sl_lua_call.h. */
void sl__lua_log_stop(sl_lua *vm) {
  if (!vm->log_timer) return;
  uv_timer_stop(vm->log_timer);
  vm->pending_closes++;
  uv_close((uv_handle_t *)vm->log_timer, log_timer_closed);
  vm->log_timer = NULL;
}

/* sl__lua_log_error: see sl_lua_call.h. */
void sl__lua_log_error(sl_lua *vm, const char *what, const char *msg, size_t mlen,
                       const char *trace) {
  if (!vm) {
    sl_log_error("lua: %s: %.*s%s", what, (int)mlen, msg, trace ? trace : "");
    return;
  }
  if (!vm->logkeys) vm->logkeys = sl_xcalloc(SL_LUA_LOG_KEYS, sizeof *vm->logkeys);
  uint64_t now = sl_now_ms();
  sl__lua_log_flush(vm, false);
  uint64_t key =
      fnv1a(fnv1a(14695981039346656037ull, what, strlen(what)), msg, where_len(msg, mlen)) | 1;
  sl_lua_logkey *k = NULL, *spare = NULL; /* spare: a free slot, else the oldest */
  for (int i = 0; i < SL_LUA_LOG_KEYS && !k; i++) {
    sl_lua_logkey *c = &vm->logkeys[i];
    if (c->key == key)
      k = c;
    else if (!spare || (spare->key && (!c->key || c->since_ms < spare->since_ms)))
      spare = c;
  }
  if (!k) { /* a new kind of error */
    k = spare;
    if (k->key) log_summary(k, now);
    memset(k, 0, sizeof *k);
    k->key = key;
    k->since_ms = now;
    const char *nl = memchr(msg, '\n', mlen); /* the first line names the error */
    snprintf(k->label, sizeof k->label, "%s: %.*s", what, (int)(nl ? (size_t)(nl - msg) : mlen),
             msg);
  } else if (now - k->since_ms >= SL_LUA_LOG_WINDOW_MS) {
    log_summary(k, now);
    k->since_ms = now;
    k->logged = 0;
  }
  if (k->logged >= SL_LUA_LOG_BURST) {
    if (k->suppressed++ == 0) log_timer_arm(vm, k->since_ms + SL_LUA_LOG_WINDOW_MS - now);
    return;
  }
  if (++k->logged < SL_LUA_LOG_BURST)
    sl_log_error("lua: %s: %.*s%s", what, (int)mlen, msg, trace ? trace : "");
  else
    sl_log_error("lua: %s: %.*s%s\n(logged %d times in %d s: the next ones are counted and "
                 "summarised)",
                 what, (int)mlen, msg, trace ? trace : "", SL_LUA_LOG_BURST,
                 SL_LUA_LOG_WINDOW_MS / 1000);
}

/* The general case of sl_lua_call: the handler still to be found (tb == 0), errors going
 * to err, or the VM to be looked up. */
static int call_general(sl_lua *vm, lua_State *L, int tb, int nargs, int nresults, const char *what,
                        char *err, size_t errlen) {
  int inserted = 0;            /* index of a handler inserted below fn for this call */
  if (!vm) vm = sl__lua_vm(L); /* a cold caller (config, tests); NULL on a bare state */
  if (!tb) {
    int base = lua_gettop(L) - nargs; /* index of fn */
    if (vm && AT_BASE(vm, L) && base > SLOT_LAST) {
      tb = SLOT_TB;
    } else {
      if (vm && vm->tb_ref > 0)
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->tb_ref);
      else
        lua_pushcfunction(L, sl__lua_traceback);
      lua_insert(L, base);
      tb = inserted = base;
    }
  }
  char *saved = NULL;
  size_t savedlen = 0;
  if (vm && err) { /* nested calls write their errors there too */
    saved = vm->err_out;
    savedlen = vm->err_outlen;
    vm->err_out = err;
    vm->err_outlen = errlen;
  }
  bool watched = vm && vm->depth == 0 && vm->wd_ms;
  if (vm && vm->depth == 0) {
    vm->instr_used = 0;
    vm->limit_hit = false;
  }
  if (watched) sl__lua_wd_enter(vm, L, what);
  if (vm) vm->depth++;
  int status = lua_pcall(L, nargs, nresults, tb);
  if (vm) vm->depth--;
  if (watched) sl__lua_wd_leave(vm);
  if (status) report(vm, L, status, what, err, errlen);
  if (vm && err) {
    vm->err_out = saved;
    vm->err_outlen = savedlen;
  }
  if (inserted) lua_remove(L, inserted);
  return status ? SL_ELUA : 0;
}

/* sl_lua_call: see sl_lua_call.h. The hook path (vm known, handler placed by sl__lua_tb,
 * errors logged) is the straight line here; the rest is call_general. */
int sl_lua_call(sl_lua *vm, lua_State *L, int tb, int nargs, int nresults, const char *what,
                char *err, size_t errlen) {
  if (__builtin_expect(!vm || !tb || err, 0))
    return call_general(vm, L, tb, nargs, nresults, what, err, errlen);
  if (vm->depth == 0) {
    /* The count hook stays installed (all Lua in this VM runs through here), so a call
     * only resets the budget; re-installing it per call cost ~200 ns. The first tick of a
     * call may come up to SL_LUA_HOOK_STEP instructions early, which the budget absorbs. */
    vm->instr_used = 0;
    vm->limit_hit = false;
    if (vm->wd_ms) {
      sl__lua_wd_enter(vm, L, what);
      vm->depth++;
      int status = lua_pcall(L, nargs, nresults, tb);
      vm->depth--;
      sl__lua_wd_leave(vm);
      if (status) {
        report(vm, L, status, what, NULL, 0);
        return SL_ELUA;
      }
      return 0;
    }
  }
  vm->depth++;
  int status = lua_pcall(L, nargs, nresults, tb);
  vm->depth--;
  if (__builtin_expect(status != 0, 0)) {
    report(vm, L, status, what, NULL, 0);
    return SL_ELUA;
  }
  return 0;
}

/* sl__lua_leave: see sl_lua_call.h. */
void sl__lua_leave(sl_lua *vm) {
  if (!vm->closing || vm->depth != 0 || vm->pending_closes != 0) return;
  for (sl_lua **p = &g_alive; *p; p = &(*p)->next_alive)
    if (*p == vm) {
      *p = vm->next_alive;
      break;
    }
  sl__lua_wd_forget(vm);
  sl__lua_log_flush(vm, true);
  free(vm->logkeys);
  lua_close(vm->L);
  free(vm->jb);
  free(vm->bins);
  free(vm);
}

/* sl__lua_register: see sl_lua_call.h. */
void sl__lua_register(sl_lua *vm) {
  vm->next_alive = g_alive;
  g_alive = vm;
}

/* sl__lua_hook_prepare: see sl_lua_call.h. */
void sl__lua_hook_prepare(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION && !lua_iscfunction(L, idx))
    luaJIT_setmode(L, idx, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF);
}

/* sl__lua_alive: see sl_lua_call.h. */
bool sl__lua_alive(lua_State *L) {
  for (sl_lua *v = g_alive; v; v = v->next_alive)
    if (v->L == L) return true;
  return false;
}

/* sl__lua_set_limits: see sl_lua_call.h. */
void sl__lua_set_limits(sl_lua *vm, uint64_t instructions, size_t memory_bytes) {
  /* (the watchdog's reset follows the same rule: the count hook when there is a budget) */
  vm->instr_limit = instructions;
  vm->mem_limit = vm->custom_alloc ? memory_bytes : 0;
  if (instructions)
    lua_sethook(vm->L, sl__lua_count_hook, LUA_MASKCOUNT, SL_LUA_HOOK_STEP);
  else
    lua_sethook(vm->L, NULL, 0, 0);
}

/* sl__lua_gw: see sl_lua_call.h. */
sl_gateway *sl__lua_gw(lua_State *L) {
  sl_lua *vm = sl__lua_vm(L);
  if (!vm || !vm->gw) luaL_error(L, "gateway not running");
  return vm->gw;
}

/* ------------------------------------------------------------------------------------- */
/* Registry refs and userdata helpers                                                     */

/* sl__lua_release: see sl_lua_call.h. */
void sl__lua_release(sl_lua *vm, int ref) {
  if (ref <= 0) return;
  int i = ref & (SL_HOOK_SLOTS - 1);
  if (vm->hk_ref[i] == ref) {
    vm->hk_ref[i] = 0;
    vm->hk_pinned[i] = false;
    lua_State *L = vm->L;
    if (AT_BASE(vm, L)) { /* let the function be collected */
      lua_pushnil(L);
      lua_replace(L, SLOT_HOOK + i);
    }
  }
  luaL_unref(vm->L, LUA_REGISTRYINDEX, ref);
}

/* sl__lua_unref: see sl_lua_call.h. */
void sl__lua_unref(lua_State *L, int ref) {
  sl_lua *vm = sl__lua_vm(L);
  if (vm)
    sl__lua_release(vm, ref);
  else if (ref > 0)
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

/* sl__lua_push_reg: see sl_lua_call.h. stack: -> registry[key] */
void sl__lua_push_reg(lua_State *L, void *key) {
  lua_pushlightuserdata(L, key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

/* sl__lua_test_ud: see sl_lua_call.h. stack: unchanged */
void *sl__lua_test_ud(lua_State *L, int idx, void *mtkey) {
  void *p = lua_touserdata(L, idx);
  if (!p || lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  sl__lua_push_reg(L, mtkey);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}

/* sl__lua_check_ud: see sl_lua_call.h. */
void *sl__lua_check_ud(lua_State *L, int idx, void *mtkey, const char *tname) {
  void *p = sl__lua_test_ud(L, idx, mtkey);
  if (!p) luaL_typerror(L, idx, tname);
  return p;
}

/* sl__lua_new_mt: see sl_lua_call.h. stack: unchanged (the metatable goes to the registry) */
void sl__lua_new_mt(lua_State *L, void *key, const luaL_Reg *fns, const luaL_Reg *methods,
                    const char *name) {
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  if (methods) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pushlightuserdata(L, key);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}
