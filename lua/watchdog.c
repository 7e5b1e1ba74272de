/* watchdog.c - no call into Lua may freeze the gateway (sl_lua_set_watchdog in sl_lua.h).
 *
 * The instruction budget stops loops written in Lua and the counted pattern functions stop
 * runaway matches, but a call can still spend unbounded time where neither looks: a long C
 * function (os.execute in a trusted config, a huge string operation repeated), compiled
 * code, a budget set to 0. The watchdog is the last line:
 *
 *   - The loop thread brackets every outermost call of a watched VM (sl__lua_wd_enter /
 *     sl__lua_wd_leave, from sl_lua_call): it bumps a sequence number, says it is in a
 *     call and notes the call's kind (a few stores: nothing is looked up per call).
 *   - One thread per process wakes every quarter of the smallest luaWatchdogMs (10..250
 *     ms). A VM in a call whose sequence number has not moved for luaWatchdogMs is tripped:
 *     the watchdog installs the count hook to fire at every instruction (lua_sethook, the
 *     one Lua API meant to be called asynchronously) and flags the call, and the VM raises
 *     "watchdog: ..." at its next instruction, or at the next pattern step (pattern.c).
 *     That error is logged and counted like any hook error, and the gateway goes on.
 *   - If the same call is still running luaWatchdogMs after that, it is inside C code that
 *     cannot be interrupted: the watchdog logs what it knows (the call's kind, where its
 *     function is defined and the Lua frames down to the C function, read from the stuck
 *     stack without calling into the VM; the traceback of an earlier stop whose error was
 *     swallowed) and _exit(SL_LUA_WATCHDOG_EXIT), so that a supervisor restarts it.
 *
 * The thread only reads the call fields and writes wd_tripped / wd_trip_seq; the hook it
 * installs is put back by the loop thread when the tripped call ends (or the next begins).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "sl_lua_call.h"

static uv_once_t wd_once = UV_ONCE_INIT;
static uv_mutex_t wd_mu;
static uv_cond_t wd_cv;
static sl_lua *wd_list; /* watched VMs, under wd_mu */
static bool wd_running;

/* ------------------------------------------------------------------------------------- */
/* The loop thread's side                                                                 */

/* sl__lua_wd_reset: see sl_lua_call.h. The watchdog made the count hook fire at every
 * instruction; the VM runs with it every SL_LUA_HOOK_STEP (or none without a budget). The
 * traceback of the stop is dropped with it. */
void sl__lua_wd_reset(sl_lua *vm) {
  atomic_store_explicit(&vm->wd_tripped, 0, memory_order_relaxed);
  vm->wd_trace[0] = 0;
  if (vm->instr_limit)
    lua_sethook(vm->L, vm->count_hook, LUA_MASKCOUNT, SL_LUA_HOOK_STEP);
  else
    lua_sethook(vm->L, NULL, 0, 0);
}

/* sl__lua_wd_message: see sl_lua_call.h. */
const char *sl__lua_wd_message(sl_lua *vm) {
  (void)vm;
  return "watchdog: the call ran longer than luaWatchdogMs and was stopped";
}

/* ------------------------------------------------------------------------------------- */
/* The watchdog thread                                                                    */

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000u; }

/* The stack of the stuck call, read from this thread: the loop thread is blocked inside a
 * C function, so the frames below it stay as they are. Only lua_getstack and lua_getinfo
 * with "Sl" are used: they read frames and allocate nothing. The outermost Lua function
 * (the hook itself) is where it is defined, into where; each Lua frame is one line of
 * trace, innermost first. */
static void stuck_stack(lua_State *L, char *where, size_t wlen, char *trace, size_t tlen) {
  lua_Debug ar;
  size_t o = 0;
  where[0] = trace[0] = 0;
  for (int level = 0; level < 64 && lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar)) break;
    if (ar.currentline < 0 && ar.linedefined < 0) { /* a C function */
      if (o < tlen) o += (size_t)snprintf(trace + o, tlen - o, "\n\t[C]: in a C function");
      continue;
    }
    if (o < tlen)
      o += (size_t)snprintf(trace + o, tlen - o, "\n\t%s:%d: in function <%s:%d>", ar.short_src,
                            ar.currentline, ar.short_src, ar.linedefined);
    snprintf(where, wlen, "%s:%d", ar.short_src, ar.linedefined);
  }
}

/* The call of vm has not returned for 2 x luaWatchdogMs, in spite of the hook: say what it
 * is and leave. Runs on the watchdog thread while the loop thread is stuck. */
__attribute__((noreturn)) static void give_up(sl_lua *vm, uint64_t ms) {
  char where[160], trace[1536];
  stuck_stack(vm->wd_L ? vm->wd_L : vm->L, where, sizeof where, trace, sizeof trace);
  sl_log_error("lua: watchdog: one call into Lua (%s, function defined at %s) has run for "
               "%llu ms (luaWatchdogMs %u) and did not stop when asked, so it is inside C "
               "code that cannot be interrupted; exiting with status %d for a supervisor "
               "to restart the gateway\nstack traceback:%s%s%s",
               vm->wd_what ? vm->wd_what : "a call", where[0] ? where : "a C function",
               (unsigned long long)ms, vm->wd_ms, SL_LUA_WATCHDOG_EXIT, trace,
               vm->wd_trace[0] ? "\nwhen the hook stopped it before:\n" : "", vm->wd_trace);
  fflush(stderr);
  _exit(SL_LUA_WATCHDOG_EXIT);
}

static void wd_main(void *arg) {
  (void)arg;
  uv_mutex_lock(&wd_mu);
  for (;;) {
    uint32_t tick = 250;
    for (sl_lua *v = wd_list; v; v = v->wd_next)
      if (v->wd_ms / 4 < tick) tick = v->wd_ms / 4;
    if (tick < 10) tick = 10;
    if (!wd_list)
      uv_cond_wait(&wd_cv, &wd_mu);
    else
      (void)uv_cond_timedwait(&wd_cv, &wd_mu, (uint64_t)tick * 1000000u);
    uint64_t now = mono_ms();
    for (sl_lua *v = wd_list; v; v = v->wd_next) {
      uint64_t seq = atomic_load_explicit(&v->wd_seq, memory_order_acquire);
      if (!atomic_load_explicit(&v->wd_in_call, memory_order_acquire) || seq != v->wd_seen_seq) {
        v->wd_seen_seq = seq;
        v->wd_seen_ms = now;
        continue;
      }
      uint64_t stuck = now - v->wd_seen_ms;
      bool tripped = atomic_load_explicit(&v->wd_tripped, memory_order_relaxed) &&
                     atomic_load_explicit(&v->wd_trip_seq, memory_order_relaxed) == seq;
      if (!tripped && stuck >= v->wd_ms) {
        atomic_store_explicit(&v->wd_trip_seq, seq, memory_order_relaxed);
        lua_sethook(v->L, v->count_hook, LUA_MASKCOUNT, 1);
        atomic_store_explicit(&v->wd_tripped, 1, memory_order_release);
      } else if (tripped && stuck >= 2 * (uint64_t)v->wd_ms) {
        give_up(v, stuck);
      }
    }
  }
}

static void wd_init(void) {
  if (uv_mutex_init(&wd_mu) || uv_cond_init(&wd_cv)) abort();
}

/* sl_lua_set_watchdog: see sl_lua.h. */
void sl_lua_set_watchdog(sl_lua *vm, uint32_t ms) {
  uv_once(&wd_once, wd_init);
  sl__lua_wd_forget(vm);
  if (!ms) return;
  uv_mutex_lock(&wd_mu);
  vm->wd_ms = ms;
  vm->wd_seen_seq = atomic_load(&vm->wd_seq);
  vm->wd_seen_ms = mono_ms();
  vm->wd_next = wd_list;
  wd_list = vm;
  if (!wd_running) {
    uv_thread_t tid;
    if (uv_thread_create(&tid, wd_main, NULL) == 0)
      wd_running = true;
    else
      sl_log_error("lua: cannot start the watchdog thread; calls into Lua are not watched");
  }
  uv_cond_signal(&wd_cv);
  uv_mutex_unlock(&wd_mu);
}

/* sl__lua_wd_forget: see sl_lua_call.h. */
void sl__lua_wd_forget(sl_lua *vm) {
  if (!vm->wd_ms) return;
  uv_mutex_lock(&wd_mu);
  for (sl_lua **p = &wd_list; *p; p = &(*p)->wd_next)
    if (*p == vm) {
      *p = vm->wd_next;
      break;
    }
  vm->wd_ms = 0;
  uv_mutex_unlock(&wd_mu);
  if (atomic_load(&vm->wd_tripped)) sl__lua_wd_reset(vm);
}
