/* sl_lua_call.h - the VM's state and the one way to call Lua (lua/call.c).
 *
 * struct sl_lua is shared by the files of the binding (each reads the fields of its area:
 * JSON scratch for json.c, hook caches for hooks.c, timers for boxes.c). call.c owns its
 * life: the counting allocator with the memory cap, the instruction-count hook, the
 * traceback handler, sl_lua_call, registry refs (sl__lua_release) and the close that
 * finishes once no call is in flight. Private to lua/. */
#ifndef SL_LUA_CALL_H
#define SL_LUA_CALL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "config.h" /* SL_NOREF */
#include "sl_lua.h"

#define SL_LUA_DEFAULT_INSTRUCTIONS 10000000ULL
#define SL_LUA_DEFAULT_MEMORY ((size_t)256 << 20)
#define SL_LUA_HOOK_STEP 1000
#define SL_HOOK_SLOTS 4 /* hook functions pinned on the stack (a power of two) */
/* Nested calls into Lua allowed by sluice.publish: a hook that publishes runs the publish
 * hooks again, recursing through the C stack (a route hook publishing on its own topic
 * would recurse until the stack overflows). A publish made inside this many nested calls
 * raises instead, and the hook falls back as on any error. */
#define SL_LUA_MAX_NEST 8

/* Error log rate limit (call.c): identical errors (the same call kind and script:line, or
 * the same message when it names no line) are logged at most SL_LUA_LOG_BURST times per
 * SL_LUA_LOG_WINDOW_MS, the rest counted and summarised once the window is over. */
#define SL_LUA_LOG_BURST 5
#define SL_LUA_LOG_WINDOW_MS 10000
#define SL_LUA_LOG_KEYS 32
typedef struct sl_lua_logkey {
  uint64_t key;        /* 0: free */
  uint64_t since_ms;   /* start of the current window */
  uint32_t logged;     /* lines written in this window */
  uint64_t suppressed; /* errors not written in this window */
  char label[160];     /* "what: file:line: message", for the summary */
} sl_lua_logkey;

typedef struct sl_timer sl_timer; /* boxes.c */
struct msg_view;                  /* hooks.c */

struct sl_lua {
  lua_State *L;
  sl_gateway *gw;
  uint64_t errors;
  size_t mem;       /* bytes currently allocated (custom allocator) */
  size_t mem_limit; /* 0 = unlimited */
  bool custom_alloc;
  uint64_t instr_limit; /* per outermost call, 0 = unlimited */
  uint64_t instr_used;
  bool limit_hit;
  int depth;          /* nesting of sl_lua_call */
  bool closing;       /* sl_lua_close was called */
  int pending_closes; /* timer handles still closing */
  sl_timer *timers;
  sl_lua *next_alive;
  /* the watchdog (watchdog.c). The loop thread writes the call fields at the start of
   * each outermost call; the watchdog thread reads them and may set wd_tripped. */
  uint32_t wd_ms;          /* luaWatchdogMs; 0 = not watched */
  lua_Hook count_hook;     /* sl__lua_count_hook, which the watchdog installs (set by vm.c) */
  _Atomic uint64_t wd_seq; /* outermost calls started */
  _Atomic int wd_in_call;  /* 1 while one runs */
  _Atomic int wd_tripped;  /* the watchdog asked the call numbered wd_trip_seq to stop */
  _Atomic uint64_t wd_trip_seq;
  const char *wd_what;              /* the running call's kind ("route") */
  lua_State *wd_L;                  /* and the state it runs on (its stack names the functions) */
  char wd_trace[2048];              /* the traceback taken when the count hook stopped a call */
  uint64_t wd_seen_seq, wd_seen_ms; /* the watchdog thread's own: last seq seen, since when */
  sl_lua *wd_next;                  /* the watched VMs (under the watchdog's mutex) */
  sl_lua_logkey *logkeys; /* the error log rate limit (SL_LUA_LOG_KEYS, made on first use) */
  uv_timer_t *log_timer;  /* writes the summaries when a window ends (NULL: none yet) */
  char *err_out;          /* sl_lua_call with err: where to write the message instead of logging */
  size_t err_outlen;
  /* is the value at idx a payload view (pview.c)? then its JSON text. Set by sl_lua_new,
   * so the JSON encoder (json.c) reads views without calling pview.c by name. */
  bool (*view_text)(lua_State *L, int idx, const char **s, size_t *n);
  /* scratch for the JSON encoder (never reentrant: encoding calls no Lua) */
  char *jb;
  size_t jlen, jcap;
  sl_bin *bins;
  size_t nbins, capbins;
  /* preallocated for the per-publish hooks (no allocation per call, see "Policy hooks") */
  int tb_ref;        /* traceback_handler as a Lua function */
  int tramp_ref;     /* l_call_decoded */
  int encode_ref;    /* l_json_encode */
  int route_tbl_ref; /* l_route_table */
  int view_ref;      /* the shared message view (userdata) */
  int pview_ref;     /* the shared payload view (pview.c), rebound per call */
  void *pview;       /* its memory */
  char topic_c[64];  /* the topic string pinned at SLOT_TOPIC (push_topic), NUL-ended */
  size_t topic_n;
  int topic_ref;         /* the same string in the registry, for nested calls */
  bool topic_pinned;     /* SLOT_TOPIC holds it too */
  int uncapped;          /* > 0 while the core pushes hook arguments (outside any pcall) */
  struct msg_view *view; /* its memory (userdata never move) */
  /* hook_arity's front cache: functions kept alive by ar_hold (so an address is never
   * reused while cached), their declared parameter counts */
  const void *ar_fn[4];
  int ar_n[4];
  unsigned ar_next;
  int ar_hold; /* registry ref of a table {fn1..fn4} */
  /* push_ref's front cache, by ref % SL_HOOK_SLOTS: the ref last pushed there (0: none;
   * it holds a function), its arity (-1: not known yet) and whether the function is also
   * pinned at SLOT_HOOK + i (only a push from the base level can pin it). Every luaL_unref
   * goes through unref(), which drops the entry, so a ref number reused for another value
   * is never served from here. */
  int hk_ref[SL_HOOK_SLOTS];
  int hk_arity[SL_HOOK_SLOTS];
  bool hk_pinned[SL_HOOK_SLOTS];
  /* sampled hook timing (sl_lua.h): calls until the next timed one, per kind; where the
   * samples go (own_ht, or the gateway's after sl_lua_set_hook_times) */
  uint32_t ht_tick[SL_HT_KINDS];
  sl_lathist *ht;
  sl_lathist own_ht[SL_HT_KINDS];
};

/* vm->L keeps a few values at fixed stack slots below everything else, so the per-publish
 * hooks push them with lua_pushvalue instead of a registry lookup (set in sl_lua_new).
 * Stack indices are relative to the running C function, so the slots are only reachable
 * at the base level: from the core, on vm->L, with no Lua call in progress (AT_BASE).
 * Nested calls (a hook publishing) and coroutines use the registry refs. */
enum {
  SLOT_TB = 1,
  SLOT_PVIEW = 2,
  SLOT_MSG = 3,
  SLOT_TOPIC = 4,
  SLOT_HOOK = 5, /* SL_HOOK_SLOTS of them */
  SLOT_LAST = SLOT_HOOK + SL_HOOK_SLOTS - 1
};
#define AT_BASE(vm, L) ((L) == (vm)->L && (vm)->depth == 0)

/* Registry key of the VM pointer (a light userdata under &sl__lua_k_vm). */
extern char sl__lua_k_vm;

/* sl__lua_alloc: the VM's lua_Alloc (ud = the sl_lua): counts vm->mem and refuses growth
 * past vm->mem_limit while Lua code runs (depth > 0, not uncapped). */
void *sl__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* sl__lua_vm: the sl_lua that owns L (or a coroutine of it); NULL for a bare state. */
sl_lua *sl__lua_vm(lua_State *L);

/* sl__lua_traceback: the traceback handler (a lua_CFunction).
 * stack: msg -> msg .. "\n" .. traceback */
int sl__lua_traceback(lua_State *L);

/* sl__lua_count_hook: the instruction-count hook (lua_Hook), installed by sl_lua_new and
 * sl__lua_set_limits: raises "instruction limit exceeded" inside a call over budget. */
void sl__lua_count_hook(lua_State *L, lua_Debug *ar);

/* sl_lua_call: THE protected call; nothing else in Sluice calls lua_pcall.
 *
 * Runs the function below the nargs arguments under the traceback handler and the
 * instruction budget (reset by the outermost call), counting nesting in vm->depth.
 *   vm    the VM of L, or NULL to look it up (cold callers: config loading, tests; a bare
 *         state has none: nothing is counted).
 *   tb    stack index of the traceback handler, pushed BEFORE the function by the caller
 *         with sl__lua_tb (the hot path: no lua_insert/lua_remove; the caller's lua_settop
 *         drops it); or 0: the handler is found here (the pinned slot at the base level,
 *         else inserted below the function and removed after the call).
 *   what  names the call in the log ("route", "onConnect", ...).
 *   err   NULL: an error is logged as "lua: what: file:line: message" plus the traceback.
 *         Otherwise just the message ("file:line: message") is written there (errlen
 *         bytes, NUL-terminated), for this call and every call nested in it.
 * Every error is counted (sl_lua_error_count) and leaves nothing on the stack; a memory
 * error reads "not enough memory (Lua memory limit reached)".
 * stack: [handler at tb], fn, args... -> [handler], results (nresults) | [handler]
 * Returns 0 or SL_ELUA. */
int sl_lua_call(sl_lua *vm, lua_State *L, int tb, int nargs, int nresults, const char *what,
                char *err, size_t errlen);

/* sl__lua_log_error: log the error "lua: what: msg" (mlen bytes of msg) followed by trace
 * (NULL: none), under the rate limit above: past SL_LUA_LOG_BURST identical errors in a
 * window, nothing is written until the window is over; then one line says how many were
 * left out ("... repeated N more times in the last 10 s"). Counts nothing (the callers
 * count every error in vm->errors). vm NULL: logged without a limit. */
void sl__lua_log_error(sl_lua *vm, const char *what, const char *msg, size_t mlen,
                       const char *trace);

/* sl__lua_log_flush: write the summaries of rate-limited errors whose window is over (all
 * of them when all is true: the VM is closing). */
void sl__lua_log_flush(sl_lua *vm, bool all);

/* sl__lua_log_stop: close the summary timer (sl_lua_close; the close completes in
 * sl__lua_leave once its handle is closed, as for the VM's other timers). */
void sl__lua_log_stop(sl_lua *vm);

/* Watchdog (watchdog.c). sl__lua_wd_enter / sl__lua_wd_leave bracket every outermost call
 * of a watched VM (sl_lua_call does it: a few stores, nothing is looked up).
 * sl__lua_wd_tripped: has the watchdog asked the running call to stop? (The count hook
 * and the pattern matcher then raise sl__lua_wd_message.) sl__lua_wd_forget: stop watching
 * vm (before it is freed). */
void sl__lua_wd_reset(sl_lua *vm); /* put back the count hook after a stop */
void sl__lua_wd_forget(sl_lua *vm);
static inline void sl__lua_wd_enter(sl_lua *vm, lua_State *L, const char *what) {
  if (__builtin_expect(atomic_load_explicit(&vm->wd_tripped, memory_order_relaxed), 0))
    sl__lua_wd_reset(vm);
  vm->wd_what = what;
  vm->wd_L = L;
  /* only the loop thread writes wd_seq: a plain increment, no locked instruction */
  uint64_t seq = atomic_load_explicit(&vm->wd_seq, memory_order_relaxed);
  atomic_store_explicit(&vm->wd_seq, seq + 1, memory_order_release);
  atomic_store_explicit(&vm->wd_in_call, 1, memory_order_release);
}
static inline void sl__lua_wd_leave(sl_lua *vm) {
  atomic_store_explicit(&vm->wd_in_call, 0, memory_order_release);
  if (__builtin_expect(atomic_load_explicit(&vm->wd_tripped, memory_order_acquire), 0))
    sl__lua_wd_reset(vm);
}
static inline bool sl__lua_wd_tripped(sl_lua *vm) {
  return atomic_load_explicit(&vm->wd_tripped, memory_order_acquire) &&
         atomic_load_explicit(&vm->wd_trip_seq, memory_order_relaxed) ==
             atomic_load_explicit(&vm->wd_seq, memory_order_relaxed);
}
const char *sl__lua_wd_message(sl_lua *vm);

/* sl__lua_tb: make the traceback handler available for the next sl_lua_call: from the base
 * level (the core calling on vm->L, no call in flight) it is the pinned SLOT_TB; otherwise
 * (a nested call, a coroutine) it is pushed now. Call it before pushing the function, and
 * only on a built VM (sl_lua_new pins the slots last). stack: -> [handler]. Returns its
 * index. */
static inline int sl__lua_tb(sl_lua *vm, lua_State *L) {
  if (AT_BASE(vm, L)) return SLOT_TB;
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->tb_ref);
  return lua_gettop(L);
}

/* sl__lua_leave: called by every entry point after its calls into Lua; finishes a close
 * requested from inside a call (sl_lua_close) once the outermost call is done and no timer
 * handle is still closing. vm may be freed on return. */
void sl__lua_leave(sl_lua *vm);

/* sl__lua_register: add a new vm to the list of open VMs (sl__lua_alive); the close
 * started by sl_lua_close removes it. */
void sl__lua_register(sl_lua *vm);

/* sl__lua_release: release a registry ref of vm, dropping it from the hook cache first
 * (push_ref in hooks.c serves cached refs by number). ref <= 0 is ignored. */
void sl__lua_release(sl_lua *vm, int ref);

/* sl__lua_gw: the gateway of the VM running L; raises "gateway not running" without one. */
sl_gateway *sl__lua_gw(lua_State *L);

/* Registry helpers. sl__lua_push_reg: stack: -> registry[key]. sl__lua_test_ud: the
 * userdata at idx when its metatable is registry[mtkey], else NULL (stack unchanged).
 * sl__lua_check_ud: the same, raising a type error naming tname. sl__lua_new_mt: register
 * a locked metatable with fns and __name under key; methods, when not NULL, become a table
 * at its __index (fns then has no __index of its own). stack: unchanged. */
void sl__lua_push_reg(lua_State *L, void *key);
void *sl__lua_test_ud(lua_State *L, int idx, void *mtkey);
void *sl__lua_check_ud(lua_State *L, int idx, void *mtkey, const char *tname);
void sl__lua_new_mt(lua_State *L, void *key, const luaL_Reg *fns, const luaL_Reg *methods,
                    const char *name);

/* sl__lua_hook_prepare: turn the JIT off for the Lua function at stack index idx and all
 * functions defined inside it, so the instruction-count hook sees every instruction. C
 * functions are left alone. The stack is unchanged. */
void sl__lua_hook_prepare(lua_State *L, int idx);

/* sl__lua_unref: luaL_unref on the registry of the VM that owns L, keeping the VM's hook
 * cache right (every ref a VM made is released through here or sl__lua_release). */
void sl__lua_unref(lua_State *L, int ref);

/* sl__lua_alive: is L the state of a VM that is still open (created by sl_lua_new and not
 * yet closed)? Lets a config's unref callback skip luaL_unref on a closed state. */
bool sl__lua_alive(lua_State *L);

/* sl__lua_set_limits: change a VM's per-call instruction budget (0 = unlimited) and its
 * memory limit in bytes (0 = unlimited). For tests and the CLI. */
void sl__lua_set_limits(sl_lua *vm, uint64_t instructions, size_t memory_bytes);

#endif
