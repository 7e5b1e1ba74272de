/* vm.c - the embedded LuaJIT VM: the `sluice` module, boxed C objects, timers, the sandbox
 * for hook scripts, the policy hooks the core calls once per publish / subscribe / connect
 * (route, authorize, onClientPublish, snapshot, coalesceKey, server events), sluice.crypto,
 * sluice.script, and the single protected-call path (sl_lua_call, call_tb).
 *
 * Hook fallbacks (every Lua error is logged with file:line and a traceback, and counted in
 * sl_lua_error_count, i.e. the sluice_lua_errors metric): route -> deliver as published;
 * authorize -> refuse ("authorization failed"); onClientPublish -> refuse; coalesceKey -> no
 * key; snapshot -> state unchanged; event hooks -> nothing. A result of the wrong shape
 * (route returning a string, a route table with an unknown field) counts as an error too.
 *
 * Sandbox (hook scripts, sluice.script): each script has its own environment over copies of
 * an allow-list (base functions, string without dump, table, math, bit, coroutine, os.time/
 * clock/date/difftime, read-only sluice and embedded modules). Not reachable: io, os.execute,
 * os.getenv, load*, dofile, require of other modules (ffi, jit, debug...), debug, getfenv/
 * setfenv, collectgarbage, newproxy, the string metatable; string.dump is removed from the
 * whole VM because every string's methods reach the real string library; rawset refuses the
 * script's environment and the read-only proxies; the metatables shared between scripts
 * (JSON arrays, ratelimit's class, message views, clients) are locked. Globals are frozen
 * once the script's chunk has run. Config chunks are the operator's own code and run with
 * the full globals (os.getenv for secrets).
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
 *   budget therefore stops loops written in Lua, but it cannot interrupt one long call into
 *   C (string.rep of a huge string, a big table.concat, a pattern match with heavy
 *   backtracking); those are bounded by the memory limit and should be avoided in hooks.
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
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <uv.h>

#include "sl_config.h"
#include "sl_jscan.h"
#include "sl_lua.h"
#include "sl_lua_int.h"

#define SL_LUA_DEFAULT_INSTRUCTIONS 10000000ULL
#define SL_LUA_DEFAULT_MEMORY ((size_t)256 << 20)
#define SL_LUA_HOOK_STEP 1000
#define SL_HOOK_SLOTS 4 /* hook functions pinned on the stack (a power of two) */
#define SL_JSON_MAX_DEPTH 100

typedef struct {
  const char *name;
  const char *src;
  size_t len;
} sl_embedded_lua;
extern const sl_embedded_lua sl_embedded_lua_files[];

typedef struct sl_timer sl_timer;

struct sl_lua {
  lua_State *L;
  sl_gateway *gw;
  uint64_t errors;
  size_t mem;            /* bytes currently allocated (custom allocator) */
  size_t mem_limit;      /* 0 = unlimited */
  bool custom_alloc;
  uint64_t instr_limit;  /* per outermost call, 0 = unlimited */
  uint64_t instr_used;
  bool limit_hit;
  int depth;             /* nesting of sl_lua_call */
  bool closing;          /* sl_lua_close was called */
  int pending_closes;    /* timer handles still closing */
  sl_timer *timers;
  sl_lua *next_alive;
  char *err_out;         /* sl__lua_pcall: where to write the message instead of logging */
  size_t err_outlen;
  /* scratch for the JSON encoder (never reentrant: encoding calls no Lua) */
  char *jb;
  size_t jlen, jcap;
  sl_bin *bins;
  size_t nbins, capbins;
  /* preallocated for the per-publish hooks (no allocation per call, see "Policy hooks") */
  int tb_ref;            /* traceback_handler as a Lua function */
  int tramp_ref;         /* l_call_decoded */
  int encode_ref;        /* l_json_encode */
  int route_tbl_ref;     /* l_route_table */
  int view_ref;          /* the shared message view (userdata) */
  int pview_ref;         /* the shared payload view (pview.c), rebound per call */
  void *pview;           /* its memory */
  char topic_c[64];      /* the topic string pinned at SLOT_TOPIC (push_topic), NUL-ended */
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
  int ar_hold;           /* registry ref of a table {fn1..fn4} */
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

struct sl_timer {
  uv_timer_t h;
  sl_lua *vm;
  int fn_ref;
  bool repeat;
  bool stopped;
  void **box;            /* the Lua box's pointer slot, NULL once the box was collected */
  sl_timer *prev, *next;
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

#define SL_LUA_REF_BLOCK 256 /* registry array slots reserved for refs (sl_lua_new) */

/* Registry keys: addresses of static chars (STYLE.md 14). */
static char k_vm, k_sandbox, k_cjson_mt, k_array_mt, k_bytes_mt, k_client_mt, k_eio_mt, k_timer_mt;
static char k_msg_mt, k_arity, k_getinfo, k_script_dir, k_scripts;

static sl_lua *g_alive; /* open VMs, for sl__lua_alive (loop thread only) */

static void vm_finish_close(sl_lua *vm);
static void install_hooks(sl_lua *vm);
static void unref(sl_lua *vm, int ref);
static int l_script(lua_State *L);
typedef struct decode_args decode_args;
static bool push_lazy_payload(sl_lua *vm, int fn_idx, int pos, decode_args *a);

/* ------------------------------------------------------------------------------------- */
/* Allocator                                                                              */

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
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

static sl_lua *vm_of(lua_State *L) {
  lua_pushlightuserdata(L, &k_vm);
  lua_rawget(L, LUA_REGISTRYINDEX);
  sl_lua *vm = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return vm;
}

/* ------------------------------------------------------------------------------------- */
/* The one protected call                                                                 */

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  sl_lua *vm = vm_of(L);
  if (!vm || !vm->instr_limit || vm->depth == 0) return; /* never raise outside a pcall */
  vm->instr_used += SL_LUA_HOOK_STEP;
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

/* stack: msg -> msg .. "\n" .. traceback */
static int traceback_handler(lua_State *L) {
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

/* call_tb: the protected call of sl_lua_call, with the traceback handler already at stack
 * index tb (below fn). stack: fn, args... -> results (nresults) | nothing. */
static int call_tb(sl_lua *vm, lua_State *L, int nargs, int nresults, const char *what, int tb) {
  bool outer = !vm || vm->depth == 0;
  if (vm && outer) {
    /* The count hook stays installed (all Lua in this VM runs through here), so a call
     * only resets the budget; re-installing it per call cost ~200 ns. The first tick of a
     * call may come up to SL_LUA_HOOK_STEP instructions early, which the budget absorbs. */
    vm->instr_used = 0;
    vm->limit_hit = false;
  }
  if (vm) vm->depth++;
  int status = lua_pcall(L, nargs, nresults, tb);
  if (vm) vm->depth--;
  if (status == 0) return 0;

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
  if (vm) vm->errors++;
  if (vm && vm->err_out) {
    snprintf(vm->err_out, vm->err_outlen, "%.*s", (int)mlen, full);
  } else {
    sl_log_error("lua: %s: %.*s%s", what ? what : "call", (int)mlen, full, trace ? trace : "");
  }
  lua_pop(L, 1);
  return SL_ELUA;
}

/* Push the traceback handler: the VM's function made once (pushcfunction would allocate
 * per call), or a fresh one on a bare state. */
static void push_tb(sl_lua *vm, lua_State *L) {
  if (vm && vm->tb_ref > 0)
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->tb_ref);
  else
    lua_pushcfunction(L, traceback_handler);
}

/* sl_lua_call: the only caller of lua_pcall (through call_tb). Runs fn with nargs args under
 * the traceback handler and the instruction budget. On error: logs "what: file:line:
 * message" plus the traceback (or, while vm->err_out is set, writes just the message there),
 * counts it, and leaves nothing on the stack.
 * stack: fn, args... -> results (nresults) | nothing. Returns 0 or SL_ELUA. */
static int sl_lua_call(sl_lua *vm, lua_State *L, int nargs, int nresults, const char *what) {
  int base = lua_gettop(L) - nargs; /* index of fn */
  /* The VM's own stack keeps the handler at index 1 (sl_lua_new); elsewhere (a coroutine,
   * a bare state, a nested call) it is pushed below fn for the call. */
  if (vm && AT_BASE(vm, L) && base > SLOT_LAST) return call_tb(vm, L, nargs, nresults, what, SLOT_TB);
  push_tb(vm, L);
  lua_insert(L, base);
  int rc = call_tb(vm, L, nargs, nresults, what, base);
  lua_remove(L, base);
  return rc;
}

/* hook_tb: the traceback handler's stack index for a hook call from the core: the pinned
 * slot at the base level; in a nested call (a hook run by a Lua publish) it is pushed here,
 * before the caller pushes the function, so that the call needs no lua_insert/lua_remove
 * around it (the caller's lua_settop drops it). */
static int hook_tb(sl_lua *vm) {
  lua_State *L = vm->L;
  if (AT_BASE(vm, L)) return SLOT_TB;
  push_tb(vm, L);
  return lua_gettop(L);
}

/* sl__lua_pcall: see sl_lua_int.h. */
int sl__lua_pcall(lua_State *L, int nargs, int nresults, char *err, size_t errlen) {
  sl_lua *vm = vm_of(L);
  if (!vm) {
    /* A bare state (tests): same path, nothing to count. */
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback_handler);
    lua_insert(L, base);
    int st = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (!st) return 0;
    const char *m = lua_tostring(L, -1);
    const char *tb = m ? strstr(m, "\nstack traceback:") : NULL;
    snprintf(err, errlen, "%.*s", m ? (int)(tb ? tb - m : (int)strlen(m)) : 0, m ? m : "");
    lua_pop(L, 1);
    return SL_ELUA;
  }
  char *saved = vm->err_out;
  size_t savedlen = vm->err_outlen;
  vm->err_out = err;
  vm->err_outlen = errlen;
  int rc = sl_lua_call(vm, L, nargs, nresults, "config");
  vm->err_out = saved;
  vm->err_outlen = savedlen;
  return rc;
}

/* leave: called by every public entry point after its calls into Lua are done; finishes a
 * close that was requested from inside a call. */
static void leave(sl_lua *vm) {
  if (vm->closing && vm->depth == 0 && vm->pending_closes == 0) vm_finish_close(vm);
}

/* sl__lua_hook_prepare: see sl_lua_int.h. */
void sl__lua_hook_prepare(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION && !lua_iscfunction(L, idx))
    luaJIT_setmode(L, idx, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF);
}

/* sl__lua_alive: see sl_lua_int.h. */
bool sl__lua_alive(lua_State *L) {
  for (sl_lua *v = g_alive; v; v = v->next_alive)
    if (v->L == L) return true;
  return false;
}

/* sl__lua_set_limits: see sl_lua_int.h. */
void sl__lua_set_limits(sl_lua *vm, uint64_t instructions, size_t memory_bytes) {
  vm->instr_limit = instructions;
  vm->mem_limit = vm->custom_alloc ? memory_bytes : 0;
  if (instructions)
    lua_sethook(vm->L, count_hook, LUA_MASKCOUNT, SL_LUA_HOOK_STEP);
  else
    lua_sethook(vm->L, NULL, 0, 0);
}

/* ------------------------------------------------------------------------------------- */
/* Userdata helpers                                                                       */

/* stack: -> metatable registered under key */
static void push_reg(lua_State *L, void *key) {
  lua_pushlightuserdata(L, key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

static void *test_ud(lua_State *L, int idx, void *mtkey) {
  void *p = lua_touserdata(L, idx);
  if (!p || lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  push_reg(L, mtkey);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}

static void *check_ud(lua_State *L, int idx, void *mtkey, const char *tname) {
  void *p = test_ud(L, idx, mtkey);
  if (!p) luaL_typerror(L, idx, tname);
  return p;
}

/* ------------------------------------------------------------------------------------- */
/* sluice.bytes: binary values, distinct from strings                                     */

typedef struct {
  size_t len;
  unsigned char data[];
} sl_bytes;

/* stack: -> bytes */
static void push_bytes(lua_State *L, const void *data, size_t len) {
  sl_bytes *b = lua_newuserdata(L, sizeof(sl_bytes) + len);
  b->len = len;
  if (len) memcpy(b->data, data, len);
  push_reg(L, &k_bytes_mt);
  lua_setmetatable(L, -2);
}

static int l_bytes_new(lua_State *L) {
  sl_bytes *src = test_ud(L, 1, &k_bytes_mt);
  if (src) {
    push_bytes(L, src->data, src->len);
    return 1;
  }
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  push_bytes(L, s, len);
  return 1;
}

static int l_bytes_len(lua_State *L) {
  sl_bytes *b = check_ud(L, 1, &k_bytes_mt, "sluice.bytes");
  lua_pushinteger(L, (lua_Integer)b->len);
  return 1;
}

static int l_bytes_tostring(lua_State *L) {
  sl_bytes *b = check_ud(L, 1, &k_bytes_mt, "sluice.bytes");
  lua_pushlstring(L, (const char *)b->data, b->len);
  return 1;
}

static int l_bytes_hex(lua_State *L) {
  sl_bytes *b = check_ud(L, 1, &k_bytes_mt, "sluice.bytes");
  static const char hx[] = "0123456789abcdef";
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  for (size_t i = 0; i < b->len; i++) {
    luaL_addchar(&buf, hx[b->data[i] >> 4]);
    luaL_addchar(&buf, hx[b->data[i] & 15]);
  }
  luaL_pushresult(&buf);
  return 1;
}

static int l_bytes_eq(lua_State *L) {
  sl_bytes *a = test_ud(L, 1, &k_bytes_mt), *b = test_ud(L, 2, &k_bytes_mt);
  lua_pushboolean(L, a && b && a->len == b->len && memcmp(a->data, b->data, a->len) == 0);
  return 1;
}

static int l_is_bytes(lua_State *L) {
  lua_pushboolean(L, test_ud(L, 1, &k_bytes_mt) != NULL);
  return 1;
}

/* ------------------------------------------------------------------------------------- */
/* JSON: Lua -> text (own encoder: no tree, numbers as JS prints integers)                */

static void jb_reserve(lua_State *L, sl_lua *vm, size_t n) {
  if (vm->jlen + n <= vm->jcap) return;
  size_t cap = vm->jcap ? vm->jcap : 256;
  while (cap < vm->jlen + n) cap *= 2;
  char *p = realloc(vm->jb, cap);
  if (!p) luaL_error(L, "not enough memory to encode JSON");
  vm->jb = p;
  vm->jcap = cap;
}

static void jb_put(lua_State *L, sl_lua *vm, const char *s, size_t n) {
  jb_reserve(L, vm, n);
  memcpy(vm->jb + vm->jlen, s, n);
  vm->jlen += n;
}

static void jb_string(lua_State *L, sl_lua *vm, const char *s, size_t n) {
  static const char hx[] = "0123456789abcdef";
  /* room for the plain bytes and the quotes once; an escape (rare) makes room for itself
   * and the rest of the string, so the loop does no check per byte */
  jb_reserve(L, vm, n + 2);
  char *o = vm->jb + vm->jlen;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\') {
      *o++ = (char)ch;
      continue;
    }
    vm->jlen = (size_t)(o - vm->jb);
    jb_reserve(L, vm, 6 + (n - i) + 1);
    o = vm->jb + vm->jlen;
    *o++ = '\\';
    switch (ch) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    default:
      memcpy(o, "u00", 3);
      o[3] = hx[ch >> 4];
      o[4] = hx[ch & 15];
      o += 5;
    }
  }
  *o++ = '"';
  vm->jlen = (size_t)(o - vm->jb);
}

static void jb_number(lua_State *L, sl_lua *vm, double d) {
  char buf[40];
  int n;
  if (!isfinite(d)) luaL_error(L, "cannot encode NaN or infinity as JSON");
  if (d == floor(d) && fabs(d) < 1e15) { /* integers, the common case: no snprintf */
    long long v = (long long)d;
    n = 0;
    if (v < 0) buf[n++] = '-';
    n += (int)sl_u64_dec(buf + n, (uint64_t)(v < 0 ? -v : v));
  } else {
    n = snprintf(buf, sizeof buf, "%.15g", d);
    if (strtod(buf, NULL) != d) n = snprintf(buf, sizeof buf, "%.17g", d);
  }
  jb_put(L, vm, buf, (size_t)n);
}

static bool has_mt(lua_State *L, int idx, void *key) {
  if (!lua_getmetatable(L, idx)) return false;
  push_reg(L, key);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* encode the value at idx; binary values become placeholders when bins is allowed.
 * stack: unchanged. */
static void jb_value(lua_State *L, sl_lua *vm, int idx, int depth, bool allow_bin) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (depth > SL_JSON_MAX_DEPTH) luaL_error(L, "cannot encode JSON: nested too deeply (cycle?)");
  luaL_checkstack(L, 4, "JSON nesting");
  switch (lua_type(L, idx)) {
  case LUA_TNIL: jb_put(L, vm, "null", 4); return;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      jb_put(L, vm, "true", 4);
    else
      jb_put(L, vm, "false", 5);
    return;
  case LUA_TNUMBER: jb_number(L, vm, lua_tonumber(L, idx)); return;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    jb_string(L, vm, s, n);
    return;
  }
  case LUA_TLIGHTUSERDATA:
    if (!lua_touserdata(L, idx)) {
      jb_put(L, vm, "null", 4);
      return;
    }
    break;
  case LUA_TUSERDATA: {
    const char *vs;
    size_t vn;
    if (sl__pv_slice(L, idx, &vs, &vn)) { /* a payload view: its text, verbatim */
      if (!sl__pv_valid(vs, vn)) luaL_error(L, "payload is not valid JSON");
      jb_put(L, vm, vs, vn);
      return;
    }
    sl_bytes *b = test_ud(L, idx, &k_bytes_mt);
    if (!b) break;
    if (!allow_bin)
      luaL_error(L, "cannot encode binary data as JSON (binary is sent by client:emit and acks)");
    if (vm->nbins == vm->capbins) {
      size_t cap = vm->capbins ? vm->capbins * 2 : 4;
      sl_bin *nb = realloc(vm->bins, cap * sizeof *nb);
      if (!nb) luaL_error(L, "not enough memory");
      vm->bins = nb;
      vm->capbins = cap;
    }
    char ph[64];
    int n = snprintf(ph, sizeof ph, "{\"_placeholder\":true,\"num\":%zu}", vm->nbins);
    vm->bins[vm->nbins].data = b->data; /* anchored by the caller's stack */
    vm->bins[vm->nbins].len = b->len;
    vm->nbins++;
    jb_put(L, vm, ph, (size_t)n);
    return;
  }
  case LUA_TTABLE: {
    size_t n = lua_objlen(L, idx), count = 0;
    bool array = has_mt(L, idx, &k_array_mt);
    if (!array) {
      bool ints = true;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) != LUA_TNUMBER) ints = false;
      }
      array = ints && count > 0 && count == n;
    }
    if (array) {
      jb_put(L, vm, "[", 1);
      for (size_t i = 1; i <= n; i++) {
        if (i > 1) jb_put(L, vm, ",", 1);
        lua_rawgeti(L, idx, (int)i);
        jb_value(L, vm, -1, depth + 1, allow_bin);
        lua_pop(L, 1);
      }
      jb_put(L, vm, "]", 1);
      return;
    }
    jb_put(L, vm, "{", 1);
    bool first = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      /* stack: key, value */
      if (!first) jb_put(L, vm, ",", 1);
      first = false;
      int kt = lua_type(L, -2);
      if (kt == LUA_TSTRING) {
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        jb_string(L, vm, k, kl);
      } else if (kt == LUA_TNUMBER) {
        char kb[40];
        int kn = snprintf(kb, sizeof kb, "%.14g", lua_tonumber(L, -2));
        jb_string(L, vm, kb, (size_t)kn);
      } else {
        luaL_error(L, "cannot encode JSON: object keys must be strings (got %s)",
                   lua_typename(L, kt));
      }
      jb_put(L, vm, ":", 1);
      jb_value(L, vm, -1, depth + 1, allow_bin);
      lua_pop(L, 1);
    }
    jb_put(L, vm, "}", 1);
    return;
  }
  default: break;
  }
  luaL_error(L, "cannot encode a %s value as JSON", luaL_typename(L, idx));
}

static void jb_reset(sl_lua *vm) {
  vm->jlen = 0;
  vm->nbins = 0;
}

/* ------------------------------------------------------------------------------------- */
/* JSON: text -> Lua                                                                      */

static bool is_placeholder(const cJSON *j, size_t natts, size_t *num) {
  if (!cJSON_IsObject(j)) return false;
  const cJSON *ph = cJSON_GetObjectItemCaseSensitive(j, "_placeholder");
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "num");
  if (!cJSON_IsTrue(ph) || !cJSON_IsNumber(n)) return false;
  double d = n->valuedouble;
  if (d < 0 || d != floor(d) || d >= (double)natts) return false;
  *num = (size_t)d;
  return true;
}

/* stack: -> value */
static void push_json(lua_State *L, const cJSON *j, const sl_bin *atts, size_t natts,
                      int depth) {
  if (depth > 200) luaL_error(L, "JSON nested too deeply");
  luaL_checkstack(L, 4, "JSON nesting");
  size_t num;
  if (cJSON_IsNull(j) || cJSON_IsInvalid(j)) {
    sl__lua_pushnull(L);
  } else if (cJSON_IsBool(j)) {
    lua_pushboolean(L, cJSON_IsTrue(j));
  } else if (cJSON_IsNumber(j)) {
    lua_pushnumber(L, j->valuedouble);
  } else if (cJSON_IsString(j)) {
    lua_pushstring(L, j->valuestring);
  } else if (cJSON_IsArray(j)) {
    lua_createtable(L, cJSON_GetArraySize(j), 0);
    int i = 1;
    for (const cJSON *c = j->child; c; c = c->next) {
      push_json(L, c, atts, natts, depth + 1);
      lua_rawseti(L, -2, i++);
    }
    push_reg(L, &k_array_mt);
    lua_setmetatable(L, -2);
  } else if (natts && is_placeholder(j, natts, &num)) {
    push_bytes(L, atts[num].data, atts[num].len);
  } else {
    lua_newtable(L);
    for (const cJSON *c = j->child; c; c = c->next) {
      lua_pushstring(L, c->string);
      push_json(L, c, atts, natts, depth + 1);
      lua_rawset(L, -3);
    }
  }
}

/* sl__lua_push_json: see sl_lua_int.h. */
void sl__lua_push_json(lua_State *L, const cJSON *j) { push_json(L, j, NULL, 0, 0); }

static int l_cjson_gc(lua_State *L) {
  cJSON **holder = lua_touserdata(L, 1);
  if (holder && *holder) cJSON_Delete(*holder);
  if (holder) *holder = NULL;
  return 0;
}

/* A direct JSON text -> Lua decoder (no intermediate tree): one pass, strings without
 * escapes pushed straight from the text. Used for every decode without binary attachments;
 * the per-publish hooks that read the payload pay this, so it matters (DESIGN.md 5). On a
 * syntax error it returns false with *at = the offset of the error and whatever it pushed
 * still on the stack (decode_json restores the top). Raises only on nesting or memory. */
typedef struct {
  const char *s, *end, *p;
} jd;

static void jd_ws(jd *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
    d->p++;
}

static void jd_utf8(luaL_Buffer *b, uint32_t cp) {
  if (cp < 0x80) {
    luaL_addchar(b, (char)cp);
  } else if (cp < 0x800) {
    luaL_addchar(b, (char)(0xC0 | cp >> 6));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    luaL_addchar(b, (char)(0xE0 | cp >> 12));
    luaL_addchar(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  } else {
    luaL_addchar(b, (char)(0xF0 | cp >> 18));
    luaL_addchar(b, (char)(0x80 | (cp >> 12 & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  }
}

/* d->p at the opening quote. stack: -> string */
static bool jd_string(lua_State *L, jd *d) {
  const char *start = ++d->p;
  const char *q = start;
  while (q < d->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
  if (q < d->end && *q == '"') { /* the common case: no escapes */
    lua_pushlstring(L, start, (size_t)(q - start));
    d->p = q + 1;
    return true;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, start, (size_t)(q - start));
  d->p = q;
  while (d->p < d->end) {
    unsigned char c = (unsigned char)*d->p;
    if (c == '"') {
      d->p++;
      luaL_pushresult(&b);
      return true;
    }
    if (c < 0x20) break;
    if (c != '\\') {
      luaL_addchar(&b, (char)c);
      d->p++;
      continue;
    }
    if (d->end - d->p < 2) break;
    char e = d->p[1];
    d->p += 2;
    switch (e) {
    case '"': luaL_addchar(&b, '"'); break;
    case '\\': luaL_addchar(&b, '\\'); break;
    case '/': luaL_addchar(&b, '/'); break;
    case 'b': luaL_addchar(&b, '\b'); break;
    case 'f': luaL_addchar(&b, '\f'); break;
    case 'n': luaL_addchar(&b, '\n'); break;
    case 'r': luaL_addchar(&b, '\r'); break;
    case 't': luaL_addchar(&b, '\t'); break;
    case 'u': {
      if (d->end - d->p < 4) goto bad;
      int hi = sl_js_hex4(d->p);
      if (hi < 0) goto bad;
      d->p += 4;
      uint32_t cp = (uint32_t)hi;
      if (hi >= 0xD800 && hi <= 0xDBFF) {
        int lo = d->end - d->p >= 6 && d->p[0] == '\\' && d->p[1] == 'u' ? sl_js_hex4(d->p + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) goto bad;
        d->p += 6;
        cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
      } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
        goto bad;
      }
      jd_utf8(&b, cp);
      break;
    }
    default: goto bad;
    }
  }
bad:
  luaL_pushresult(&b); /* keep the stack balanced for the caller's settop */
  return false;
}

/* stack: -> number */
static bool jd_number(lua_State *L, jd *d) {
  const char *p = d->p, *start = p;
  bool neg = false, simple = true;
  if (p < d->end && *p == '-') neg = true, p++;
  if (p >= d->end) return false;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < d->end && *p >= '0' && *p <= '9') p++;
  } else {
    return false;
  }
  if (p < d->end && *p == '.') {
    simple = false;
    p++;
    if (p >= d->end || *p < '0' || *p > '9') return false;
    while (p < d->end && *p >= '0' && *p <= '9') p++;
  }
  if (p < d->end && (*p == 'e' || *p == 'E')) {
    simple = false;
    p++;
    if (p < d->end && (*p == '+' || *p == '-')) p++;
    if (p >= d->end || *p < '0' || *p > '9') return false;
    while (p < d->end && *p >= '0' && *p <= '9') p++;
  }
  size_t n = (size_t)(p - start);
  if (simple && n - neg <= 15) { /* exact in a double */
    double v = 0;
    for (const char *q = start + neg; q < p; q++) v = v * 10 + (*q - '0');
    lua_pushnumber(L, neg ? -v : v);
  } else {
    char buf[512];
    if (n >= sizeof buf) return false;
    memcpy(buf, start, n);
    buf[n] = 0;
    lua_pushnumber(L, strtod(buf, NULL));
  }
  d->p = p;
  return true;
}

static bool jd_lit(jd *d, const char *lit, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, lit, n) != 0) return false;
  d->p += n;
  return true;
}

/* stack: -> value */
static bool jd_value(lua_State *L, jd *d, int depth) {
  jd_ws(d);
  if (d->p >= d->end) return false;
  switch (*d->p) {
  case '"': return jd_string(L, d);
  case 't': if (!jd_lit(d, "true", 4)) return false; lua_pushboolean(L, 1); return true;
  case 'f': if (!jd_lit(d, "false", 5)) return false; lua_pushboolean(L, 0); return true;
  case 'n': if (!jd_lit(d, "null", 4)) return false; sl__lua_pushnull(L); return true;
  case '[': {
    if (depth > 200) luaL_error(L, "JSON nested too deeply");
    luaL_checkstack(L, 4, "JSON nesting");
    d->p++;
    lua_newtable(L);
    push_reg(L, &k_array_mt);
    lua_setmetatable(L, -2);
    jd_ws(d);
    if (d->p < d->end && *d->p == ']') {
      d->p++;
      return true;
    }
    for (int i = 1;; i++) {
      if (!jd_value(L, d, depth + 1)) return false;
      lua_rawseti(L, -2, i);
      jd_ws(d);
      if (d->p >= d->end) return false;
      if (*d->p == ',') {
        d->p++;
        continue;
      }
      if (*d->p != ']') return false;
      d->p++;
      return true;
    }
  }
  case '{': {
    if (depth > 200) luaL_error(L, "JSON nested too deeply");
    luaL_checkstack(L, 4, "JSON nesting");
    d->p++;
    lua_createtable(L, 0, 4); /* small objects fill without a rehash */
    jd_ws(d);
    if (d->p < d->end && *d->p == '}') {
      d->p++;
      return true;
    }
    for (;;) {
      jd_ws(d);
      if (d->p >= d->end || *d->p != '"' || !jd_string(L, d)) return false;
      jd_ws(d);
      if (d->p >= d->end || *d->p != ':') return false;
      d->p++;
      if (!jd_value(L, d, depth + 1)) return false;
      lua_rawset(L, -3);
      jd_ws(d);
      if (d->p >= d->end) return false;
      if (*d->p == ',') {
        d->p++;
        continue;
      }
      if (*d->p != '}') return false;
      d->p++;
      return true;
    }
  }
  default: return jd_number(L, d);
  }
}

/* Decode JSON text (binary placeholders refer to atts). The parsed tree is held by a
 * userdata with __gc, so an error while converting (memory, nesting) cannot leak it.
 * Must run inside a protected call. stack: -> value, or nothing when the text is invalid
 * (then *errpos, if not NULL, is the 1-based offset of the error). */
static bool decode_json(lua_State *L, const char *text, size_t len, const sl_bin *atts,
                        size_t natts, size_t *errpos) {
  if (!natts) {
    int top = lua_gettop(L);
    jd d = {text, text + len, text};
    bool ok = jd_value(L, &d, 0);
    if (ok) {
      jd_ws(&d);
      ok = d.p == d.end;
    }
    if (ok) return true;
    lua_settop(L, top);
    if (errpos) *errpos = (size_t)(d.p - text) + 1;
    return false;
  }
  cJSON **holder = lua_newuserdata(L, sizeof *holder);
  *holder = NULL;
  push_reg(L, &k_cjson_mt);
  lua_setmetatable(L, -2);
  *holder = cJSON_ParseWithLength(text, len);
  if (!*holder) {
    if (errpos) {
      const char *at = cJSON_GetErrorPtr();
      *errpos = at && at >= text && at <= text + len ? (size_t)(at - text) + 1 : len;
    }
    lua_pop(L, 1);
    return false;
  }
  push_json(L, *holder, atts, natts, 0);
  cJSON_Delete(*holder);
  *holder = NULL;
  lua_remove(L, -2);
  return true;
}

/* sl__lua_decode_text: see sl_lua_int.h. */
bool sl__lua_decode_text(lua_State *L, const char *text, size_t len) {
  return decode_json(L, text, len, NULL, 0, NULL);
}

/* Arguments for l_decode_arg, which decodes core-supplied JSON inside a protected call. */
struct decode_args {
  const char *text;
  size_t len;
  const sl_bin *atts;
  size_t natts;
};

/* ------------------------------------------------------------------------------------- */
/* sluice.json                                                                            */

static int l_json_encode(lua_State *L) {
  sl_lua *vm = vm_of(L);
  luaL_checkany(L, 1);
  jb_reset(vm);
  jb_value(L, vm, 1, 0, false);
  lua_pushlstring(L, vm->jb, vm->jlen);
  return 1;
}

/* sluice.json.decode(text | payload view) -> value (a view gives a writable copy) */
static int l_json_decode(lua_State *L) {
  size_t len, pos = 0;
  const char *s;
  if (!sl__pv_slice(L, 1, &s, &len)) s = luaL_checklstring(L, 1, &len);
  if (!decode_json(L, s, len, NULL, 0, &pos))
    return luaL_error(L, "invalid JSON at position %d", (int)pos);
  return 1;
}

/* sluice.json.is_array(v) -> true for tables marked as JSON arrays (decoded arrays and
 * sluice.json.array(t)) */
static int l_json_is_array(lua_State *L) {
  const char *s;
  size_t n;
  if (sl__pv_slice(L, 1, &s, &n))
    lua_pushboolean(L, *s == '[');
  else
    lua_pushboolean(L, lua_istable(L, 1) && has_mt(L, 1, &k_array_mt));
  return 1;
}

static int l_json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  push_reg(L, &k_array_mt);
  lua_setmetatable(L, 1);
  return 1;
}

/* ------------------------------------------------------------------------------------- */
/* sluice.log / now / stats / publish                                                     */

/* stack: args... -> (nothing): "file:line: a b c" logged at lvl */
static int log_at(lua_State *L, sl_log_level lvl) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_where(L, 1);
  const char *where = lua_tostring(L, -1);
  char wbuf[256];
  snprintf(wbuf, sizeof wbuf, "%s", where ? where : "");
  lua_pop(L, 1);
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    if (!lua_isstring(L, -1)) {
      lua_pop(L, 1);
      lua_pushliteral(L, "?");
    }
    if (i > 1) luaL_addchar(&b, ' ');
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  sl_log(lvl, "lua: %s%s", wbuf, lua_tostring(L, -1));
  return 0;
}
static int l_log_debug(lua_State *L) { return log_at(L, SL_LOG_DEBUG); }
static int l_log_info(lua_State *L) { return log_at(L, SL_LOG_INFO); }
static int l_log_warn(lua_State *L) { return log_at(L, SL_LOG_WARN); }
static int l_log_error(lua_State *L) { return log_at(L, SL_LOG_ERROR); }

static int l_now_ms(lua_State *L) {
  lua_pushnumber(L, (double)(sl_wall_us() / 1000));
  return 1;
}
static int l_now_us(lua_State *L) {
  lua_pushnumber(L, (double)sl_wall_us());
  return 1;
}

static sl_gateway *need_gw(lua_State *L) {
  sl_lua *vm = vm_of(L);
  if (!vm || !vm->gw) luaL_error(L, "gateway not running");
  return vm->gw;
}

static int l_stats(lua_State *L) {
  sl_gateway *gw = need_gw(L);
  char *s = sl_gateway_stats_json(gw);
  if (!s) return luaL_error(L, "stats unavailable");
  lua_pushstring(L, s); /* copy first: decoding may raise */
  free(s);
  size_t len;
  const char *t = lua_tolstring(L, -1, &len);
  if (!decode_json(L, t, len, NULL, 0, NULL)) return luaL_error(L, "stats: invalid JSON from core");
  return 1;
}

static const char *client_id_arg(lua_State *L, int idx);

/* Encode the payload at idx (or take it as JSON text). stack: unchanged; result in vm->jb. */
static void payload_arg(lua_State *L, sl_lua *vm, int idx, bool raw_json) {
  jb_reset(vm);
  if (raw_json) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (lua_type(L, idx) != LUA_TSTRING)
      luaL_argerror(L, idx, "JSON text expected (opts.json = true)");
    jb_put(L, vm, s, n);
  } else {
    jb_value(L, vm, idx, 0, false);
  }
  jb_reserve(L, vm, 1);
  vm->jb[vm->jlen] = 0;
}

static int do_publish(lua_State *L, const char *ns, const char *topic, int payload_idx,
                      const char *to, const char *server, bool raw) {
  sl_lua *vm = vm_of(L);
  sl_gateway *gw = need_gw(L);
  payload_arg(L, vm, payload_idx, raw);
  /* our own encoder made the JSON: the core need not parse it again */
  sl_publish_opts o = {.server = server, .to = to, .source = SL_SRC_LUA, .from = NULL,
                       .trusted_json = !raw};
  char msgid[SL_MSGID_MAX];
  msgid[0] = 0;
  /* The hooks this publish runs (route, coalesceKey, snapshot) may encode JSON themselves,
   * into vm->jb, while the core still reads the payload (and the payload views point into
   * it): the payload keeps the buffer, encodes during the publish get a new one. */
  char *buf = vm->jb;
  size_t cap = vm->jcap;
  vm->jb = NULL;
  vm->jcap = 0;
  int rc = sl_publish(gw, ns, topic, buf, vm->jlen, &o, msgid);
  free(vm->jb);
  vm->jb = buf;
  vm->jcap = cap;
  vm->jlen = 0;
  if (rc < 0) return luaL_error(L, "publish %s %s: %s", ns, topic, sl_strerror(rc));
  lua_pushstring(L, msgid);
  return 1;
}

/* sluice.publish(ns, topic, payload [, opts]) -> messageId */
static int l_publish(lua_State *L) {
  const char *ns = luaL_checkstring(L, 1);
  const char *topic = luaL_checkstring(L, 2);
  luaL_checkany(L, 3);
  const char *to = NULL, *server = NULL;
  bool raw = false;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "to");
    if (!lua_isnil(L, -1)) to = client_id_arg(L, lua_gettop(L));
    lua_getfield(L, 4, "server");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING) return luaL_argerror(L, 4, "opts.server must be a string");
      server = lua_tostring(L, -1);
    }
    lua_getfield(L, 4, "json");
    raw = lua_toboolean(L, -1);
    /* the strings stay anchored on the stack until we return */
  }
  return do_publish(L, ns, topic, 3, to, server, raw);
}

/* sluice.publish_to(ns, clientId|client, topic, payload) -> messageId */
static int l_publish_to(lua_State *L) {
  const char *ns = luaL_checkstring(L, 1);
  const char *to = client_id_arg(L, 2);
  const char *topic = luaL_checkstring(L, 3);
  luaL_checkany(L, 4);
  return do_publish(L, ns, topic, 4, to, NULL, false);
}

/* ------------------------------------------------------------------------------------- */
/* Timers                                                                                 */

static void timer_close_cb(uv_handle_t *h) {
  sl_timer *t = sl_container_of((uv_timer_t *)h, sl_timer, h);
  sl_lua *vm = t->vm;
  free(t);
  vm->pending_closes--;
  if (vm->closing) leave(vm);
}

/* stop and release a timer: idempotent; the handle is freed in its close callback. */
static void timer_stop(sl_timer *t) {
  if (t->stopped) return;
  sl_lua *vm = t->vm;
  t->stopped = true;
  uv_timer_stop(&t->h);
  if (t->fn_ref != LUA_NOREF) unref(vm, t->fn_ref);
  t->fn_ref = LUA_NOREF;
  if (t->box) *t->box = NULL;
  t->box = NULL;
  if (t->prev)
    t->prev->next = t->next;
  else
    vm->timers = t->next;
  if (t->next) t->next->prev = t->prev;
  vm->pending_closes++;
  uv_close((uv_handle_t *)&t->h, timer_close_cb);
}

static void timer_cb(uv_timer_t *h) {
  sl_timer *t = sl_container_of(h, sl_timer, h);
  sl_lua *vm = t->vm;
  if (t->stopped || vm->closing) return;
  lua_State *L = vm->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
  if (!t->repeat) timer_stop(t); /* one-shot: done before the call, so :stop() inside is a no-op */
  sl_lua_call(vm, L, 0, 0, t->repeat ? "sluice.every callback" : "sluice.after callback");
  leave(vm);
}

/* stack: ms, fn -> timer box */
static int start_timer(lua_State *L, bool repeat) {
  sl_lua *vm = vm_of(L);
  double ms = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!(ms >= 0) || ms > 1e12 || (repeat && ms < 1))
    return luaL_argerror(L, 1, repeat ? "interval must be at least 1 ms" : "delay must be >= 0");
  sl_gateway *gw = need_gw(L);
  if (vm->closing) return luaL_error(L, "VM is closing");
  uv_loop_t *loop = sl_gateway_loop(gw);
  if (!loop) return luaL_error(L, "gateway not running");
  void **box = lua_newuserdata(L, sizeof(void *));
  *box = NULL;
  push_reg(L, &k_timer_mt);
  lua_setmetatable(L, -2);
  sl_timer *t = sl_xcalloc(1, sizeof *t);
  if (uv_timer_init(loop, &t->h) != 0) {
    free(t);
    return luaL_error(L, "cannot create timer");
  }
  t->vm = vm;
  t->repeat = repeat;
  lua_pushvalue(L, 2);
  t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->box = box;
  *box = t;
  t->next = vm->timers;
  if (vm->timers) vm->timers->prev = t;
  vm->timers = t;
  uint64_t ims = (uint64_t)ms;
  uv_timer_start(&t->h, timer_cb, ims, repeat ? ims : 0);
  return 1;
}
static int l_every(lua_State *L) { return start_timer(L, true); }
static int l_after(lua_State *L) { return start_timer(L, false); }

static int l_timer_stop(lua_State *L) {
  void **box = check_ud(L, 1, &k_timer_mt, "sluice.timer");
  if (*box) timer_stop(*box);
  return 0;
}

static int l_timer_active(lua_State *L) {
  void **box = check_ud(L, 1, &k_timer_mt, "sluice.timer");
  lua_pushboolean(L, *box != NULL);
  return 1;
}

static int l_timer_gc(lua_State *L) {
  void **box = test_ud(L, 1, &k_timer_mt);
  if (box && *box) ((sl_timer *)*box)->box = NULL; /* the timer keeps running */
  return 0;
}

/* ------------------------------------------------------------------------------------- */
/* Client and Engine.IO connection boxes                                                  */

/* A box is a userdata holding the C pointer; NULL once the core freed the object. Its
 * environment table is client.data (per-client state for scripts). */

/* stack: -> box. Reuses the box whose registry ref is in *slot when it is ours. */
static void push_box(lua_State *L, void *obj, int *slot, void *mtkey) {
  if (*slot > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, *slot);
    void **b = test_ud(L, -1, mtkey);
    if (b && *b == obj) return;
    lua_pop(L, 1); /* a stale ref (another VM generation): make a new box */
  }
  void **b = lua_newuserdata(L, sizeof(void *));
  *b = obj;
  push_reg(L, mtkey);
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_setfenv(L, -2);
  lua_pushvalue(L, -1);
  *slot = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void box_gone(lua_State *L, int *slot, void *obj, void *mtkey) {
  if (*slot <= 0) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, *slot);
  void **b = test_ud(L, -1, mtkey);
  bool ours = b && *b == obj;
  if (ours) *b = NULL;
  lua_pop(L, 1);
  if (ours) {
    sl__lua_unref(L, *slot);
    *slot = SL_NOREF;
  }
}

static sl_socket *check_client(lua_State *L, int idx) {
  void **b = check_ud(L, idx, &k_client_mt, "sluice client");
  if (!*b) luaL_error(L, "client is gone");
  return *b;
}

static const char *client_id_arg(lua_State *L, int idx) {
  if (test_ud(L, idx, &k_client_mt)) return sl_socket_id(check_client(L, idx));
  return luaL_checkstring(L, idx);
}

/* Build [event?, args...] as JSON into vm->jb with binaries in vm->bins. stack: unchanged */
static void build_array(lua_State *L, sl_lua *vm, int first, int last, const char *event) {
  jb_reset(vm);
  jb_put(L, vm, "[", 1);
  bool comma = false;
  if (event) {
    jb_string(L, vm, event, strlen(event));
    comma = true;
  }
  for (int i = first; i <= last; i++) {
    if (comma) jb_put(L, vm, ",", 1);
    jb_value(L, vm, i, 1, true);
    comma = true;
  }
  jb_put(L, vm, "]", 1);
  jb_reserve(L, vm, 1);
  vm->jb[vm->jlen] = 0;
}

/* client:emit(event, ...) -> true */
static int l_client_emit(lua_State *L) {
  sl_lua *vm = vm_of(L);
  sl_socket *s = check_client(L, 1);
  const char *ev = luaL_checkstring(L, 2);
  build_array(L, vm, 3, lua_gettop(L), ev);
  int rc = sl_socket_emit(s, vm->jb, vm->jlen, vm->bins, vm->nbins);
  if (rc < 0) return luaL_error(L, "emit %s: %s", ev, sl_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_client_disconnect(lua_State *L) {
  sl_socket_disconnect(check_client(L, 1));
  return 0;
}

static int l_client_index(lua_State *L) {
  sl_socket *s = check_client(L, 1);
  const char *k = luaL_checkstring(L, 2);
  const char *v = NULL;
  if (!strcmp(k, "id"))
    v = sl_socket_id(s);
  else if (!strcmp(k, "namespace"))
    v = sl_socket_ns(s);
  else if (!strcmp(k, "principal"))
    v = sl_socket_principal(s);
  else if (!strcmp(k, "remote"))
    v = sl_socket_remote(s);
  else if (!strcmp(k, "transport"))
    v = sl_socket_transport(s);
  else if (!strcmp(k, "emit")) {
    lua_pushcfunction(L, l_client_emit);
    return 1;
  } else if (!strcmp(k, "disconnect")) {
    lua_pushcfunction(L, l_client_disconnect);
    return 1;
  } else if (!strcmp(k, "data")) {
    lua_getfenv(L, 1);
    return 1;
  } else {
    lua_pushnil(L);
    return 1;
  }
  if (v)
    lua_pushstring(L, v);
  else
    lua_pushnil(L);
  return 1;
}

static int l_readonly_newindex(lua_State *L) {
  return luaL_error(L, "cannot set field '%s': read-only object (use .data for your own state)",
                    luaL_optstring(L, 2, "?"));
}

static int l_client_tostring(lua_State *L) {
  void **b = check_ud(L, 1, &k_client_mt, "sluice client");
  if (*b)
    lua_pushfstring(L, "client %s %s", sl_socket_ns(*b), sl_socket_id(*b));
  else
    lua_pushliteral(L, "client (gone)");
  return 1;
}

static sl_eio_conn *check_conn(lua_State *L, int idx) {
  void **b = check_ud(L, idx, &k_eio_mt, "sluice conn");
  if (!*b) luaL_error(L, "connection is gone");
  return *b;
}

static int l_conn_send(lua_State *L) {
  sl_eio_conn *c = check_conn(L, 1);
  sl_bytes *b = test_ud(L, 2, &k_bytes_mt);
  int rc;
  if (b) {
    rc = sl_eio_conn_send(c, b->data, b->len, true);
  } else {
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    rc = sl_eio_conn_send(c, s, n, false);
  }
  if (rc < 0) return luaL_error(L, "send: %s", sl_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_conn_close(lua_State *L) {
  sl_eio_conn_close(check_conn(L, 1));
  return 0;
}

static int l_conn_index(lua_State *L) {
  sl_eio_conn *c = check_conn(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "id"))
    lua_pushstring(L, sl_eio_conn_id(c));
  else if (!strcmp(k, "send"))
    lua_pushcfunction(L, l_conn_send);
  else if (!strcmp(k, "close"))
    lua_pushcfunction(L, l_conn_close);
  else if (!strcmp(k, "data"))
    lua_getfenv(L, 1);
  else
    lua_pushnil(L);
  return 1;
}

static int l_conn_tostring(lua_State *L) {
  void **b = check_ud(L, 1, &k_eio_mt, "sluice conn");
  if (*b)
    lua_pushfstring(L, "conn %s", sl_eio_conn_id(*b));
  else
    lua_pushliteral(L, "conn (gone)");
  return 1;
}

/* ------------------------------------------------------------------------------------- */
/* Sandbox for hook scripts                                                               */

/* Runs once per VM with the pristine globals. Returns a factory: factory() -> env, seal.
 * Every script gets its own env with its own copies of the allowed libraries, so nothing a
 * script does to its environment is seen by another script or by the config. */
static const char sandbox_src[] =
    "local G, exceeded, embedded, sluice = ...\n"
    "local pairs, type, error, setmetatable, getmetatable, rawget, tostring, select, pcall, "
    "xpcall = G.pairs, G.type, G.error, G.setmetatable, G.getmetatable, G.rawget, G.tostring, "
    "G.select, G.pcall, G.xpcall\n"
    "local real_require, resume, concat = G.require, G.coroutine.resume, G.table.concat\n"
    "local function copy(t, skip) local c = {} for k, v in pairs(t) do if not (skip and "
    "skip[k]) then c[k] = v end end return c end\n"
    "local ro_cache = setmetatable({}, {__mode = 'k'})\n"
    "local raw_set, proxies = G.rawset, setmetatable({}, {__mode = 'k'})\n"
    "local function readonly(t, name)\n"
    "  if type(t) ~= 'table' then return t end\n"
    "  local p = ro_cache[t]; if p then return p end\n"
    "  p = setmetatable({}, {__index = function(_, k) return readonly(t[k], name .. '.' .. "
    "tostring(k)) end,\n"
    "    __newindex = function(_, k) error('cannot modify ' .. name .. '.' .. tostring(k) .. "
    "' (read-only in scripts)', 2) end,\n"
    "    __metatable = false})\n"
    "  ro_cache[t] = p; proxies[p] = true; return p\n"
    "end\n"
    "local function guard(...) if exceeded() then error('instruction limit exceeded', 0) end "
    "return ... end\n"
    "local base = {'assert','error','ipairs','next','pairs','rawequal','rawget','rawset',"
    "'select','tonumber','tostring','type','unpack','setmetatable','_VERSION'}\n"
    "local sluice_ro = readonly(sluice, 'sluice')\n"
    "G.string.dump = nil -- reachable through any string's methods ((''):dump), not only string.dump\n"
    "return function()\n"
    "  local env = {}\n"
    "  for _, k in G.ipairs(base) do env[k] = G[k] end\n"
    "  env.rawset = function(t, k, v)\n"
    "    if t == env then error('rawset on the script environment: globals are read-only (use local)', 2) end\n"
    "    if proxies[t] then error('rawset on a read-only table', 2) end\n"
    "    return raw_set(t, k, v)\n"
    "  end\n"
    "  env.getmetatable = function(v) if type(v) == 'string' then return nil end return "
    "getmetatable(v) end\n"
    "  env.pcall = function(...) return guard(pcall(...)) end\n"
    "  env.xpcall = function(...) return guard(xpcall(...)) end\n"
    "  env.string = copy(G.string, {dump = true})\n"
    "  env.table = copy(G.table)\n"
    "  env.math = copy(G.math)\n"
    "  env.bit = copy(G.bit)\n"
    "  env.coroutine = copy(G.coroutine)\n"
    "  env.coroutine.resume = function(...) return guard(resume(...)) end\n"
    "  env.os = {time = G.os.time, clock = G.os.clock, date = G.os.date, difftime = "
    "G.os.difftime}\n"
    "  env.sluice = sluice_ro\n"
    "  env.print = function(...) local n = select('#', ...) local t = {...} for i = 1, n do "
    "t[i] = tostring(t[i]) end sluice.log.info(concat(t, ' ', 1, n)) end\n"
    "  env.require = function(name)\n"
    "    if name == 'sluice' then return sluice_ro end\n"
    "    if type(name) == 'string' and embedded[name] then return readonly(real_require(name), "
    "name) end\n"
    "    error(\"module '\" .. tostring(name) .. \"' is not available in scripts\", 2)\n"
    "  end\n"
    "  env._G = env\n"
    "  local function seal()\n"
    "    setmetatable(env, {__newindex = function(_, k) error(\"assignment to undeclared "
    "global '\" .. tostring(k) .. \"' (use local)\", 2) end, __metatable = false})\n"
    "  end\n"
    "  return env, seal\n"
    "end\n";

static int l_exceeded(lua_State *L) {
  sl_lua *vm = vm_of(L);
  lua_pushboolean(L, vm && vm->limit_hit);
  return 1;
}

/* sl__lua_load_script: see sl_lua_int.h. */
int sl__lua_load_script(lua_State *L, const char *path, char *err, size_t errlen) {
  int top = lua_gettop(L);
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot read script %s: %s", path, strerror(errno));
    return SL_EIO;
  }
  fclose(f);
  if (luaL_loadfile(L, path)) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_settop(L, top);
    return SL_ELUA;
  }
  /* stack: chunk */
  push_reg(L, &k_sandbox);
  if (!lua_isfunction(L, -1)) {
    lua_settop(L, top);
    snprintf(err, errlen, "sandbox not initialised (state not created by sl_lua_new)");
    return SL_ELUA;
  }
  if (sl__lua_pcall(L, 0, 2, err, errlen)) {
    lua_settop(L, top);
    return SL_ELUA;
  }
  /* stack: chunk, env, seal */
  lua_pushvalue(L, -2);
  lua_setfenv(L, top + 1);
  sl__lua_hook_prepare(L, top + 1);
  lua_pushvalue(L, top + 1);
  if (sl__lua_pcall(L, 0, 1, err, errlen)) {
    lua_settop(L, top);
    return SL_ELUA;
  }
  /* stack: chunk, env, seal, result */
  lua_pushvalue(L, top + 3);
  if (sl__lua_pcall(L, 0, 0, err, errlen)) {
    lua_settop(L, top);
    return SL_ELUA;
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return 0;
}

/* ------------------------------------------------------------------------------------- */
/* sluice.crypto: HMAC-SHA256 and SHA-256 from OpenSSL's libcrypto, base64url, a           */
/* constant-time compare. Strings in, raw byte strings out (binary values are accepted too). */

/* A string or a sluice.bytes argument. */
static const unsigned char *bytes_arg(lua_State *L, int idx, size_t *len) {
  sl_bytes *b = test_ud(L, idx, &k_bytes_mt);
  if (b) {
    *len = b->len;
    return b->data;
  }
  return (const unsigned char *)luaL_checklstring(L, idx, len);
}

/* sluice.crypto.hmac_sha256(key, data) -> 32-byte raw string */
static int l_hmac_sha256(lua_State *L) {
  size_t klen, dlen;
  const unsigned char *key = bytes_arg(L, 1, &klen);
  const unsigned char *data = bytes_arg(L, 2, &dlen);
  if (klen > INT_MAX) return luaL_argerror(L, 1, "key too long");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  static const unsigned char empty[1];
  /* HMAC() treats a NULL key as "reuse the previous one"; an empty key must be non-NULL. */
  if (!HMAC(EVP_sha256(), klen ? key : empty, (int)klen, dlen ? data : empty, dlen, md, &mdlen))
    return luaL_error(L, "hmac_sha256: OpenSSL failure");
  lua_pushlstring(L, (const char *)md, mdlen);
  return 1;
}

/* sluice.crypto.sha256(data) -> 32-byte raw string */
static int l_sha256(lua_State *L) {
  size_t dlen;
  const unsigned char *data = bytes_arg(L, 1, &dlen);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  static const unsigned char empty[1];
  if (!EVP_Digest(dlen ? data : empty, dlen, md, &mdlen, EVP_sha256(), NULL))
    return luaL_error(L, "sha256: OpenSSL failure");
  lua_pushlstring(L, (const char *)md, mdlen);
  return 1;
}

/* sluice.crypto.equal(a, b) -> boolean. Constant time for equal lengths (the length of a
 * MAC or token is not secret). */
static int l_crypto_equal(lua_State *L) {
  size_t alen, blen;
  const unsigned char *a = bytes_arg(L, 1, &alen);
  const unsigned char *b = bytes_arg(L, 2, &blen);
  lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
  return 1;
}

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* sluice.crypto.base64url_encode(data) -> text without padding (RFC 4648 section 5) */
static int l_b64url_encode(lua_State *L) {
  size_t n;
  const unsigned char *s = bytes_arg(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    luaL_addchar(&b, b64url_chars[v >> 18 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 12 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 6 & 63]);
    luaL_addchar(&b, b64url_chars[v & 63]);
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)s[i] << 16;
    luaL_addchar(&b, b64url_chars[v >> 18 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 12 & 63]);
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
    luaL_addchar(&b, b64url_chars[v >> 18 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 12 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 6 & 63]);
  }
  luaL_pushresult(&b);
  return 1;
}

static int b64url_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-' || c == '+') return 62; /* '+' and '/' too: tolerate standard base64 */
  if (c == '_' || c == '/') return 63;
  return -1;
}

/* sluice.crypto.base64url_decode(text) -> bytes string, or nil, "invalid base64url".
 * Padding is optional; a length of 1 mod 4 or non-zero trailing bits are invalid. */
static int l_b64url_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  while (n > 0 && s[n - 1] == '=') n--;
  if (n % 4 == 1) goto bad;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64url_val((unsigned char)s[i]);
    if (v < 0) {
      luaL_pushresult(&b);
      lua_pop(L, 1);
      goto bad;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      luaL_addchar(&b, (char)(acc >> bits & 0xff));
    }
  }
  if (bits && (acc & ((1u << bits) - 1))) {
    luaL_pushresult(&b);
    lua_pop(L, 1);
    goto bad;
  }
  luaL_pushresult(&b);
  return 1;
bad:
  lua_pushnil(L);
  lua_pushliteral(L, "invalid base64url");
  return 2;
}

/* ------------------------------------------------------------------------------------- */
/* VM construction                                                                        */

/* package.preload loader for an embedded module. upvalue 1: index into the table.
 * stack: name -> module */
static int embedded_loader(lua_State *L) {
  int i = (int)lua_tointeger(L, lua_upvalueindex(1));
  const sl_embedded_lua *m = &sl_embedded_lua_files[i];
  char chunk[128];
  snprintf(chunk, sizeof chunk, "@lua/%s.lua", m->name);
  if (luaL_loadbuffer(L, m->src, m->len, chunk)) return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

static int l_sluice_preload(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "sluice");
  return 1;
}

/* stack: -> (nothing); creates the metatable under key with the given fields. */
static void new_mt(lua_State *L, void *key, const luaL_Reg *fns, const char *name) {
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pushlightuserdata(L, key);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

static void install_module(sl_lua *vm) {
  lua_State *L = vm->L;
  static const luaL_Reg bytes_mt[] = {{"__len", l_bytes_len},
                                      {"__tostring", l_bytes_tostring},
                                      {"__eq", l_bytes_eq},
                                      {NULL, NULL}};
  new_mt(L, &k_bytes_mt, bytes_mt, "sluice.bytes");
  push_reg(L, &k_bytes_mt);
  lua_newtable(L);
  lua_pushcfunction(L, l_bytes_hex);
  lua_setfield(L, -2, "hex");
  lua_pushcfunction(L, l_bytes_len);
  lua_setfield(L, -2, "len");
  lua_pushcfunction(L, l_bytes_tostring);
  lua_setfield(L, -2, "tostring");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg client_mt[] = {{"__index", l_client_index},
                                       {"__newindex", l_readonly_newindex},
                                       {"__tostring", l_client_tostring},
                                       {NULL, NULL}};
  new_mt(L, &k_client_mt, client_mt, "sluice.client");
  static const luaL_Reg eio_mt[] = {{"__index", l_conn_index},
                                    {"__newindex", l_readonly_newindex},
                                    {"__tostring", l_conn_tostring},
                                    {NULL, NULL}};
  new_mt(L, &k_eio_mt, eio_mt, "sluice.conn");
  static const luaL_Reg timer_mt[] = {{"__gc", l_timer_gc}, {NULL, NULL}};
  new_mt(L, &k_timer_mt, timer_mt, "sluice.timer");
  push_reg(L, &k_timer_mt);
  lua_newtable(L);
  lua_pushcfunction(L, l_timer_stop);
  lua_setfield(L, -2, "stop");
  lua_pushcfunction(L, l_timer_active);
  lua_setfield(L, -2, "active");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg cjson_mt[] = {{"__gc", l_cjson_gc}, {NULL, NULL}};
  new_mt(L, &k_cjson_mt, cjson_mt, "sluice.jsontree");

  lua_pushlightuserdata(L, &k_array_mt);
  lua_newtable(L);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__jsontype");
  /* shared by every decoded array: locked so a script cannot change all arrays' behaviour
   * (sluice.json.is_array tells arrays apart) */
  lua_pushliteral(L, "sluice.json.array");
  lua_setfield(L, -2, "__metatable");
  lua_rawset(L, LUA_REGISTRYINDEX);

  static const luaL_Reg fns[] = {{"publish", l_publish},
                                 {"publish_to", l_publish_to},
                                 {"every", l_every},
                                 {"after", l_after},
                                 {"now_ms", l_now_ms},
                                 {"now_us", l_now_us},
                                 {"stats", l_stats},
                                 {"bytes", l_bytes_new},
                                 {"is_bytes", l_is_bytes},
                                 {"script", l_script},
                                 {NULL, NULL}};
  lua_newtable(L); /* sluice */
  luaL_register(L, NULL, fns);
  static const luaL_Reg json[] = {
      {"encode", l_json_encode}, {"decode", l_json_decode}, {"array", l_json_array},
      {"is_array", l_json_is_array}, {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, json);
  sl__lua_pushnull(L);
  lua_setfield(L, -2, "null");
  lua_setfield(L, -2, "json");
  static const luaL_Reg log[] = {{"debug", l_log_debug},
                                 {"info", l_log_info},
                                 {"warn", l_log_warn},
                                 {"error", l_log_error},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, log);
  lua_setfield(L, -2, "log");
  static const luaL_Reg crypto[] = {{"hmac_sha256", l_hmac_sha256},
                                    {"sha256", l_sha256},
                                    {"equal", l_crypto_equal},
                                    {"base64url_encode", l_b64url_encode},
                                    {"base64url_decode", l_b64url_decode},
                                    {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, crypto);
  lua_setfield(L, -2, "crypto");
  lua_newtable(L);
  lua_pushnumber(L, (double)vm->instr_limit);
  lua_setfield(L, -2, "instructions");
  lua_pushnumber(L, (double)vm->mem_limit);
  lua_setfield(L, -2, "memory");
  lua_setfield(L, -2, "limits");
  lua_pushliteral(L, "sluice");
  lua_setfield(L, -2, "_NAME");

  /* stack: sluice */
  lua_pushvalue(L, -1);
  lua_setglobal(L, "sluice");
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "sluice");
  lua_pop(L, 1);
  lua_getfield(L, -1, "preload"); /* stack: sluice, package, preload */
  lua_pushcfunction(L, l_sluice_preload);
  lua_setfield(L, -2, "sluice");
  for (int i = 0; sl_embedded_lua_files[i].name; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, embedded_loader, 1);
    lua_setfield(L, -2, sl_embedded_lua_files[i].name);
  }
  lua_pop(L, 2); /* stack: sluice */

  /* Payload views pass for read-only tables: wrap the base library before the sandbox
   * copies it (pview.c). */
  sl__pv_open(L);

  /* The sandbox factory, built from the pristine globals. */
  if (luaL_loadbuffer(L, sandbox_src, sizeof sandbox_src - 1, "=sandbox")) {
    sl_log_error("lua: sandbox: %s", lua_tostring(L, -1));
    abort();
  }
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  lua_pushcfunction(L, l_exceeded);
  lua_newtable(L);
  for (int i = 0; sl_embedded_lua_files[i].name; i++) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, sl_embedded_lua_files[i].name);
  }
  lua_pushvalue(L, -5); /* sluice */
  if (sl_lua_call(vm, L, 4, 1, "sandbox")) abort();
  lua_pushlightuserdata(L, &k_sandbox);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1); /* sluice */
}

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

/* sl_lua_new: see sl_lua.h. Limits come from SLUICE_LUA_INSTRUCTION_LIMIT and
 * SLUICE_LUA_MEMORY_LIMIT when set. */
sl_lua *sl_lua_new(sl_gateway *gw) {
  sl_lua *vm = sl_xcalloc(1, sizeof *vm);
  vm->gw = gw;
  vm->ht = vm->own_ht;
  for (int k = 0; k < SL_HT_KINDS; k++) vm->ht_tick[k] = SL_HT_SAMPLE_EVERY;
  vm->instr_limit = env_u64("SLUICE_LUA_INSTRUCTION_LIMIT", SL_LUA_DEFAULT_INSTRUCTIONS);
  vm->L = lua_newstate(vm_alloc, vm);
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
  lua_pushlightuserdata(L, &k_vm);
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
  lua_pushcfunction(L, traceback_handler);
  lua_pushvalue(L, -1);
  vm->tb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  install_module(vm);
  install_hooks(vm);
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
  if (vm->instr_limit) lua_sethook(L, count_hook, LUA_MASKCOUNT, SL_LUA_HOOK_STEP);
  vm->next_alive = g_alive;
  g_alive = vm;
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

static void vm_finish_close(sl_lua *vm) {
  for (sl_lua **p = &g_alive; *p; p = &(*p)->next_alive)
    if (*p == vm) {
      *p = vm->next_alive;
      break;
    }
  lua_close(vm->L);
  free(vm->jb);
  free(vm->bins);
  free(vm);
}

/* sl_lua_close: see sl_lua.h. Safe to call from inside a hook of this VM (the close then
 * completes when the outermost call returns). vm may be NULL. */
void sl_lua_close(sl_lua *vm) {
  if (!vm || vm->closing) return;
  vm->closing = true;
  while (vm->timers) timer_stop(vm->timers);
  leave(vm);
}

/* ------------------------------------------------------------------------------------- */
/* Hooks called by the core                                                               */

/* stack: -> fn, or nothing and false when ref is unset or not a function. From the base
 * level a hook is pinned at a stack slot (see hk_ref), so the next call pushes it without
 * a registry lookup or a type check. */
static bool push_ref(sl_lua *vm, int ref) {
  if (ref == SL_NOREF || ref <= 0 || vm->closing) return false;
  lua_State *L = vm->L;
  bool base = AT_BASE(vm, L);
  int i = ref & (SL_HOOK_SLOTS - 1);
  if (vm->hk_ref[i] == ref) { /* known to hold a function */
    if (base && vm->hk_pinned[i]) {
      lua_pushvalue(L, SLOT_HOOK + i);
      return true;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    if (!lua_isfunction(L, -1)) {
      lua_pop(L, 1);
      return false;
    }
    vm->hk_ref[i] = ref;
    vm->hk_arity[i] = -1;
    vm->hk_pinned[i] = false;
  }
  if (base) {
    lua_pushvalue(L, -1);
    lua_replace(L, SLOT_HOOK + i);
    vm->hk_pinned[i] = true;
  }
  return true;
}

/* unref: release a registry ref, dropping it from push_ref's cache first. */
static void unref(sl_lua *vm, int ref) {
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

/* sl__lua_unref: see sl_lua_int.h. */
void sl__lua_unref(lua_State *L, int ref) {
  sl_lua *vm = vm_of(L);
  if (vm)
    unref(vm, ref);
  else if (ref > 0)
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

/* sl_lua_on_start: see sl_lua.h. The hook gets a table {name, port}. */
int sl_lua_on_start(sl_lua *vm, int ref, sl_server *srv) {
  lua_State *L = vm->L;
  if (!push_ref(vm, ref)) return 0;
  lua_createtable(L, 0, 2);
  if (srv) {
    lua_pushstring(L, sl_server_name(srv));
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, sl_server_port(srv));
    lua_setfield(L, -2, "port");
  }
  int rc = sl_lua_call(vm, L, 1, 0, "onStart");
  leave(vm);
  return rc;
}

/* Decodes core-supplied JSON inside a protected call (nesting and memory errors are caught).
 * upvalue 1: decode_args. stack: -> value | nil */
static int l_decode_arg(lua_State *L) {
  decode_args *a = lua_touserdata(L, lua_upvalueindex(1));
  if (!a->text || !a->len || !decode_json(L, a->text, a->len, a->atts, a->natts, NULL))
    lua_pushnil(L);
  return 1;
}

/* stack: -> decoded value, or nil when absent, invalid or failing (logged). */
static void push_decoded(sl_lua *vm, const char *json, size_t len, const sl_bin *atts,
                         size_t natts, const char *what) {
  lua_State *L = vm->L;
  decode_args a = {json, len, atts, natts};
  lua_pushlightuserdata(L, &a);
  lua_pushcclosure(L, l_decode_arg, 1);
  if (sl_lua_call(vm, L, 0, 1, what)) lua_pushnil(L);
}

/* sl_lua_on_connect: see sl_lua.h. */
int sl_lua_on_connect(sl_lua *vm, int ref, sl_socket *s, const char *auth_json, size_t len,
                      char *reason, size_t reasonlen) {
  lua_State *L = vm->L;
  int top = lua_gettop(L);
  if (reason && reasonlen) snprintf(reason, reasonlen, "Not authorized");
  if (!push_ref(vm, ref)) return 1;
  push_box(L, s, sl_socket_lua_slot(s), &k_client_mt);
  push_decoded(vm, auth_json, len, NULL, 0, "onConnect auth");
  int ok = 0;
  if (sl_lua_call(vm, L, 2, 2, "onConnect") == 0) {
    ok = !(lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2));
    if (!ok && lua_type(L, -1) == LUA_TSTRING && reason && reasonlen)
      snprintf(reason, reasonlen, "%s", lua_tostring(L, -1));
  }
  lua_settop(L, top);
  leave(vm);
  return ok;
}

/* ack(...) for onEvent. upvalues: client box, ack id, used flag. */
static int l_ack(lua_State *L) {
  sl_lua *vm = vm_of(L);
  if (lua_toboolean(L, lua_upvalueindex(3))) {
    lua_pushboolean(L, 0); /* answered already: each ack id is answered at most once */
    return 1;
  }
  int n = lua_gettop(L);
  sl_socket *s = check_client(L, lua_upvalueindex(1));
  uint64_t id = (uint64_t)lua_tonumber(L, lua_upvalueindex(2));
  build_array(L, vm, 1, n, NULL);
  lua_pushboolean(L, 1);
  lua_replace(L, lua_upvalueindex(3));
  int rc = sl_socket_ack(s, id, vm->jb, vm->jlen, vm->bins, vm->nbins);
  if (rc < 0) return luaL_error(L, "ack: %s", sl_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

/* sl_lua_on_event: see sl_lua.h. */
void sl_lua_on_event(sl_lua *vm, int ref, sl_socket *s, const char *event, const char *args_json,
                     size_t len, const sl_bin *atts, size_t natts, int64_t ack_id) {
  lua_State *L = vm->L;
  int top = lua_gettop(L);
  if (!push_ref(vm, ref)) return;
  push_box(L, s, sl_socket_lua_slot(s), &k_client_mt);
  lua_pushstring(L, event ? event : "");
  push_decoded(vm, args_json, len, atts, natts, "onEvent arguments");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    push_reg(L, &k_array_mt);
    lua_setmetatable(L, -2);
  }
  if (ack_id >= 0) {
    lua_pushvalue(L, top + 2); /* client box */
    lua_pushnumber(L, (double)ack_id);
    lua_pushboolean(L, 0);
    lua_pushcclosure(L, l_ack, 3);
  } else {
    lua_pushnil(L);
  }
  sl_lua_call(vm, L, 4, 0, "onEvent");
  lua_settop(L, top);
  leave(vm);
}

/* sl_lua_socket_gone: see sl_lua.h. */
void sl_lua_socket_gone(sl_lua *vm, sl_socket *s) {
  if (!vm || !s) return;
  box_gone(vm->L, sl_socket_lua_slot(s), s, &k_client_mt);
}

/* sl_lua_eio_message: see sl_lua.h. */
void sl_lua_eio_message(sl_lua *vm, int ref, sl_eio_conn *c, const uint8_t *data, size_t len,
                        bool binary) {
  lua_State *L = vm->L;
  int top = lua_gettop(L);
  if (!push_ref(vm, ref)) return;
  push_box(L, c, sl_eio_conn_lua_slot(c), &k_eio_mt);
  if (binary)
    push_bytes(L, data, len);
  else
    lua_pushlstring(L, (const char *)data, len);
  sl_lua_call(vm, L, 2, 0, "engineIo.onMessage");
  lua_settop(L, top);
  leave(vm);
}

/* sl_lua_eio_event: see sl_lua.h (onOpen(conn) when reason is NULL, onClose(conn, reason)). */
void sl_lua_eio_event(sl_lua *vm, int ref, sl_eio_conn *c, const char *reason) {
  lua_State *L = vm->L;
  int top = lua_gettop(L);
  if (!push_ref(vm, ref)) return;
  push_box(L, c, sl_eio_conn_lua_slot(c), &k_eio_mt);
  if (reason)
    lua_pushstring(L, reason);
  else
    lua_pushnil(L);
  sl_lua_call(vm, L, 2, 0, reason ? "engineIo.onClose" : "engineIo.onOpen");
  lua_settop(L, top);
  leave(vm);
}

/* sl_lua_eio_gone: see sl_lua.h. */
void sl_lua_eio_gone(sl_lua *vm, sl_eio_conn *c) {
  if (!vm || !c) return;
  box_gone(vm->L, sl_eio_conn_lua_slot(c), c, &k_eio_mt);
}

/* stack: -> topic. Publishes repeat a handful of topic names: the last one is kept (in the
 * registry, and pinned at SLOT_TOPIC once pushed from the base level) so pushing it again
 * costs no interning. */
static void push_topic(sl_lua *vm, lua_State *L, const char *topic) {
  bool base = AT_BASE(vm, L);
  size_t n = 0; /* strlen and the comparison with the last topic in one pass */
  while (topic[n] && topic[n] == vm->topic_c[n]) n++;
  bool same = !topic[n] && n == vm->topic_n;
  if (!same) n += strlen(topic + n);
  if (same) {
    if (base && vm->topic_pinned) {
      lua_pushvalue(L, SLOT_TOPIC);
      return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->topic_ref);
  } else {
    lua_pushlstring(L, topic, n);
    if (n >= sizeof vm->topic_c) return;
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, vm->topic_ref);
    memcpy(vm->topic_c, topic, n + 1); /* with its NUL, which bounds the loop above */
    vm->topic_n = n;
    vm->topic_pinned = false;
  }
  if (base) { /* pin it for the next call from the core */
    lua_pushvalue(L, -1);
    lua_replace(L, SLOT_TOPIC);
    vm->topic_pinned = true;
  }
}

/* stack: -> the payload as a view for scope: the VM's reusable one when free. */
static void push_payload(sl_lua *vm, lua_State *L, const sl__pv_scope *scope, const char *text,
                         size_t len) {
  if (!sl__pv_bind(vm->pview, scope, text, len))
    sl__pv_push(L, scope, text, len);
  else if (AT_BASE(vm, L))
    lua_pushvalue(L, SLOT_PVIEW);
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->pview_ref);
}

/* ------------------------------------------------------------------------------------- */
/* Sampled hook timing (sl_lua.h)                                                         */

_Static_assert(SL_HT_SAMPLE_EVERY == 16, "SL_HT_SAMPLE_EVERY_STR must match");
const char *const sl_ht_names[SL_HT_KINDS] = {"route", "coalesceKey", "snapshot",
                                              "onClientPublish", "authorize"};

/* sl_lua_set_hook_times: see sl_lua.h. */
void sl_lua_set_hook_times(sl_lua *vm, sl_lathist *h) {
  if (vm) vm->ht = h ? h : vm->own_ht;
}

/* The start time when this call of the kind is the sampled one, else 0. */
static inline uint64_t ht_begin(sl_lua *vm, int kind) {
  if (--vm->ht_tick[kind]) return 0;
  vm->ht_tick[kind] = SL_HT_SAMPLE_EVERY;
  return sl_now_ns();
}

/* Record a sampled call (t0 from ht_begin). Before leave(): that may free the VM. */
static inline void ht_end(sl_lua *vm, int kind, uint64_t t0) {
  if (t0) sl_lathist_add(&vm->ht[kind], sl_now_ns() - t0);
}

/* sl_lua_coalesce_key: see sl_lua.h. The payload is a payload view (pview.c): reading
 * payload.symbol scans the JSON text for that member, nothing is decoded. */
char *sl_lua_coalesce_key_buf(sl_lua *vm, int ref, const char *topic, const char *payload_json,
                              size_t len, char *buf, size_t cap) {
  if (!vm || ref == SL_NOREF) return NULL;
  uint64_t t0 = ht_begin(vm, SL_HT_COALESCE_KEY);
  lua_State *L = vm->L;
  int top = lua_gettop(L);
  int tb = hook_tb(vm);
  if (!push_ref(vm, ref)) {
    lua_settop(L, top);
    return NULL;
  }
  sl__pv_scope scope;
  sl__pv_enter(&scope);
  vm->uncapped++;
  push_topic(vm, L, topic ? topic : "");
  push_payload(vm, L, &scope, payload_json, len);
  vm->uncapped--;
  char *key = NULL;
  if (call_tb(vm, L, 2, 1, "coalesceKey", tb) == 0) {
    /* a string, or a number as tostring() writes it ("%.14g"); other values give NULL */
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (s && n < cap) {
      memcpy(buf, s, n);
      buf[n] = 0;
      key = buf;
    } else if (s) {
      key = sl_xstrndup(s, n);
    }
  }
  lua_settop(L, top);
  sl__pv_leave(&scope);
  ht_end(vm, SL_HT_COALESCE_KEY, t0);
  leave(vm);
  return key;
}

/* sl_lua_coalesce_key: see sl_lua.h. */
char *sl_lua_coalesce_key(sl_lua *vm, int ref, const char *topic, const char *payload_json,
                          size_t len) {
  char buf[128];
  char *k = sl_lua_coalesce_key_buf(vm, ref, topic, payload_json, len, buf, sizeof buf);
  return k == buf ? sl_xstrdup(buf) : k;
}

/* ------------------------------------------------------------------------------------- */
/* Policy hooks (issue 4): route, authorize, onClientPublish, snapshot, server events      */
/*
 * Cost model. These run once per publish, so nothing is allocated per call when the hook
 * does not ask for it:
 *  - the traceback handler, the decode trampoline and the encoder are Lua functions made
 *    once per VM (registry refs), not pushed as fresh C closures per call;
 *  - route(msg) gets ONE preallocated read-only userdata, the message view, whose context
 *    pointer is set for the call and cleared after it. Its __index answers namespace,
 *    topic, json, source, clientId, principal and client from C;
 *  - msg.payload and coalesceKey's payload are payload views (pview.c): field reads scan
 *    the JSON text, nothing is decoded; the top-level view is preallocated and rebound;
 *  - onClientPublish(client, topic, payload) receives a real decoded payload (it may change
 *    and return it) only when the function declares that parameter (or is vararg): the
 *    arity is read once per function (debug.getinfo "u", cached in a weak table). A field
 *    path coalesceKey ("symbol", "quote.symbol") is resolved by the core in C, no Lua.
 * A nested call (a route hook publishing, which runs route again) gets fresh views, so the
 * outer call's views are never rebound under it.
 */

typedef struct msg_ctx {
  const char *ns, *topic, *json;
  size_t len;
  int source;        /* SL_SRC_* */
  sl_socket *from;   /* publishing client (SL_SRC_CLIENT) or NULL */
  sl__pv_scope scope; /* the views of msg.payload live as long as the call */
  sl_lua *vm;
} msg_ctx;

struct msg_view {
  msg_ctx *ctx;      /* NULL outside the hook call: a kept reference then raises */
};

static const char *source_name(int src) {
  switch (src) {
  case SL_SRC_API: return "api";
  case SL_SRC_LUA: return "lua";
  case SL_SRC_CLIENT: return "client";
  default: return "unknown";
  }
}

/* __index of the message view. stack: view, key -> value */
static int l_msg_index(lua_State *L) {
  /* The metatable is locked (__metatable), so only the view itself reaches here. */
  struct msg_view *v = lua_touserdata(L, 1);
  msg_ctx *c = v ? v->ctx : NULL;
  if (!c) return luaL_error(L, "message view used after its hook returned (copy what you need)");
  size_t kl;
  const char *k = lua_tolstring(L, 2, &kl);
  if (!k) {
    lua_pushnil(L);
    return 1;
  }
  switch (kl) {
  case 4:
    if (!memcmp(k, "json", 4)) {
      lua_pushlstring(L, c->json ? c->json : "null", c->json ? c->len : 4);
      return 1;
    }
    break;
  case 5:
    if (!memcmp(k, "topic", 5)) {
      push_topic(c->vm, L, c->topic);
      return 1;
    }
    break;
  case 6:
    if (!memcmp(k, "source", 6)) {
      lua_pushstring(L, source_name(c->source));
      return 1;
    }
    if (!memcmp(k, "client", 6)) {
      if (c->from)
        push_box(L, c->from, sl_socket_lua_slot(c->from), &k_client_mt);
      else
        lua_pushnil(L);
      return 1;
    }
    break;
  case 7:
    if (!memcmp(k, "payload", 7)) {
      push_payload(c->vm, L, &c->scope, c->json, c->len);
      return 1;
    }
    break;
  case 8:
    if (!memcmp(k, "clientId", 8)) {
      if (c->from)
        lua_pushstring(L, sl_socket_id(c->from));
      else
        lua_pushnil(L);
      return 1;
    }
    break;
  case 9:
    if (!memcmp(k, "namespace", 9)) {
      lua_pushstring(L, c->ns);
      return 1;
    }
    if (!memcmp(k, "principal", 9)) {
      const char *p = c->from ? sl_socket_principal(c->from) : NULL;
      if (p)
        lua_pushstring(L, p);
      else
        lua_pushnil(L);
      return 1;
    }
    break;
  }
  lua_pushnil(L);
  return 1;
}

static int l_msg_tostring(lua_State *L) {
  struct msg_view *v = lua_touserdata(L, 1);
  if (v && v->ctx)
    lua_pushfstring(L, "message %s %s", v->ctx->ns, v->ctx->topic);
  else
    lua_pushliteral(L, "message (expired)");
  return 1;
}

/* stack: -> view (a new one) */
static struct msg_view *new_view(lua_State *L) {
  struct msg_view *v = lua_newuserdata(L, sizeof *v);
  v->ctx = NULL;
  push_reg(L, &k_msg_mt);
  lua_setmetatable(L, -2);
  return v;
}

/* stack: -> view, bound to ctx until view_release. */
static struct msg_view *push_view(sl_lua *vm, msg_ctx *ctx) {
  lua_State *L = vm->L;
  struct msg_view *v;
  if (vm->view && !vm->view->ctx) {
    if (AT_BASE(vm, L))
      lua_pushvalue(L, SLOT_MSG);
    else
      lua_rawgeti(L, LUA_REGISTRYINDEX, vm->view_ref);
    v = vm->view;
  } else {
    vm->uncapped++;
    v = new_view(L); /* nested call: the shared view is in use */
    vm->uncapped--;
  }
  v->ctx = ctx;
  return v;
}

/* Unbind a view after its call. */
static void view_release(struct msg_view *v) { v->ctx = NULL; }

/* The decode trampoline: decodes core-supplied JSON inside the hook's own protected call,
 * so a lazily-needed payload costs no second pcall.
 * stack: fn, args..., decode_args* -> results of fn(args..., decoded | nil) */
static int l_call_decoded(lua_State *L) {
  int n = lua_gettop(L);
  decode_args *a = lua_touserdata(L, n);
  lua_pop(L, 1);
  if (!a || !a->text || !a->len || !decode_json(L, a->text, a->len, a->atts, a->natts, NULL))
    lua_pushnil(L);
  lua_call(L, n - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* hook_arity: the number of declared parameters of the Lua function at idx, or INT_MAX
 * when it is vararg, a C function or unknown. Cached per function in a weak-keyed table.
 * stack: unchanged */
static int hook_arity(sl_lua *vm, int idx) {
  lua_State *L = vm->L;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (lua_iscfunction(L, idx)) return INT_MAX;
  const void *fp = lua_topointer(L, idx);
  for (int i = 0; i < 4; i++)
    if (vm->ar_fn[i] == fp) return vm->ar_n[i];
  push_reg(L, &k_arity);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2); /* stack: arity table, n | nil */
  if (lua_type(L, -1) == LUA_TNUMBER) {
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    return n;
  }
  lua_pop(L, 1); /* stack: arity table */
  int n = INT_MAX;
  push_reg(L, &k_getinfo); /* the pristine debug.getinfo (scripts never see it) */
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, idx);
    lua_pushliteral(L, "u");
    if (sl_lua_call(vm, L, 2, 1, "debug.getinfo") == 0) {
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "isvararg");
        lua_getfield(L, -2, "nparams");
        if (!lua_toboolean(L, -2) && lua_type(L, -1) == LUA_TNUMBER)
          n = (int)lua_tointeger(L, -1);
        lua_pop(L, 2);
      }
      lua_pop(L, 1);
    }
  } else {
    lua_pop(L, 1);
  }
  /* stack: arity table */
  lua_pushvalue(L, idx);
  lua_pushnumber(L, (double)n);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  /* remember it in the front cache; the holder table keeps the function alive */
  unsigned slot = vm->ar_next++ % 4;
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ar_hold);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, (int)slot + 1);
  lua_pop(L, 1);
  vm->ar_fn[slot] = fp;
  vm->ar_n[slot] = n;
  return n;
}

/* Push the payload argument of a hook that takes it at position `pos` (1-based). When the
 * function at fn_idx declares fewer parameters, pushes nil (no decode, no call). Otherwise
 * arranges for the trampoline: the function is moved above the trampoline and a
 * decode_args pointer is pushed last. Returns true when the trampoline is in place.
 * stack: fn, args... -> (fn, args..., nil) | (tramp, fn, args..., decode_args*) */
static bool push_lazy_payload(sl_lua *vm, int fn_idx, int pos, decode_args *a) {
  lua_State *L = vm->L;
  if (hook_arity(vm, fn_idx) < pos || !a->text) {
    lua_pushnil(L);
    return false;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->tramp_ref);
  lua_insert(L, fn_idx);
  lua_pushlightuserdata(L, a);
  return true;
}

/* Encode the value on top as JSON into a malloc'd string, under the protected call.
 * stack: value -> (nothing). Returns NULL on error (logged and counted as `what`). */
static char *encode_top(sl_lua *vm, const char *what, size_t *outlen) {
  lua_State *L = vm->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->encode_ref);
  lua_insert(L, -2);
  if (sl_lua_call(vm, L, 1, 1, what)) return NULL;
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  char *out = s ? sl_xstrndup(s, n) : NULL;
  if (outlen) *outlen = out ? n : 0;
  lua_pop(L, 1);
  return out;
}

/* Count and log a hook result of the wrong shape (same counter as Lua errors). */
static void bad_result(sl_lua *vm, const char *what, const char *fmt, const char *detail) {
  vm->errors++;
  char msg[256];
  snprintf(msg, sizeof msg, fmt, detail);
  sl_log_error("lua: %s: %s", what, msg);
}

/* sl_route_result_free: see sl_lua.h. Leaves *r as "deliver". r may be NULL. */
void sl_route_result_free(sl_route_result *r) {
  if (!r) return;
  free(r->payload_json);
  for (size_t i = 0; i < r->ntopics; i++) free(r->topics[i]);
  free(r->topics);
  for (size_t i = 0; i < r->nto; i++) free(r->to[i]);
  free(r->to);
  memset(r, 0, sizeof *r);
  r->action = SL_ROUTE_DELIVER;
}

/* A list of strings (topics) or of client ids / client boxes (to) from field `key` of the
 * table at 1 into *out, which the caller frees (even on error: each string is stored as
 * soon as it is made). A single string is a list of one. stack: unchanged */
static void route_list(lua_State *L, const char *key, char ***out, size_t *n, bool clients) {
  lua_getfield(L, 1, key);
  int li = lua_gettop(L);
  if (lua_isnil(L, li)) {
    lua_pop(L, 1);
    return;
  }
  if (lua_type(L, li) == LUA_TSTRING || (clients && test_ud(L, li, &k_client_mt))) {
    *out = sl_xcalloc(1, sizeof(char *));
    (*out)[0] = sl_xstrdup(clients ? client_id_arg(L, li) : lua_tostring(L, li));
    *n = 1;
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, li)) luaL_error(L, "route result: %s must be a string or a list", key);
  size_t len = lua_objlen(L, li);
  if (len == 0)
    luaL_error(L, "route result: %s is empty (return false to drop the message)", key);
  if (len > 4096) luaL_error(L, "route result: %s has more than 4096 entries", key);
  *out = sl_xcalloc(len, sizeof(char *));
  for (size_t i = 0; i < len; i++) {
    lua_rawgeti(L, li, (int)i + 1);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && !(clients && test_ud(L, -1, &k_client_mt)))
      luaL_error(L, "route result: %s[%d] must be a %s", key, (int)i + 1,
                 clients ? "client id or client" : "topic name");
    const char *s = clients ? client_id_arg(L, lua_gettop(L)) : lua_tostring(L, -1);
    if (!*s) luaL_error(L, "route result: %s[%d] is empty", key, (int)i + 1);
    (*out)[(*n)++] = sl_xstrdup(s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Convert a route hook's table result into *out.
 * stack: table, out (light userdata) -> (nothing); raises on a malformed table (the caller
 * frees *out). */
static int l_route_table(lua_State *L) {
  sl_lua *vm = vm_of(L);
  sl_route_result *out = lua_touserdata(L, 2);
  lua_settop(L, 1);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!k || (strcmp(k, "payload") && strcmp(k, "topic") && strcmp(k, "topics") &&
               strcmp(k, "to")))
      return luaL_error(L, "route result: unknown field '%s' (expected payload, topic, "
                           "topics or to)", k ? k : luaL_typename(L, -1));
  }
  lua_getfield(L, 1, "topic");
  lua_getfield(L, 1, "topics");
  bool both = !lua_isnil(L, -1) && !lua_isnil(L, -2);
  lua_pop(L, 2);
  if (both) return luaL_error(L, "route result: give topic or topics, not both");
  route_list(L, "topic", &out->topics, &out->ntopics, false);
  if (!out->topics) route_list(L, "topics", &out->topics, &out->ntopics, false);
  route_list(L, "to", &out->to, &out->nto, true);
  lua_getfield(L, 1, "payload"); /* sluice.json.null is a payload (null); nil is "unchanged" */
  if (!lua_isnil(L, -1)) {
    jb_reset(vm);
    jb_value(L, vm, -1, 0, false);
    out->payload_json = malloc(vm->jlen + 1);
    if (!out->payload_json) return luaL_error(L, "not enough memory");
    memcpy(out->payload_json, vm->jb, vm->jlen);
    out->payload_json[vm->jlen] = 0;
  }
  lua_pop(L, 1);
  if (out->payload_json || out->ntopics || out->nto) out->action = SL_ROUTE_REWRITE;
  return 0;
}

/* hook_arity of the function at idx, pushed for ref: remembered with push_ref's cache. */
static int ref_arity(sl_lua *vm, int ref, int idx) {
  int i = ref & (SL_HOOK_SLOTS - 1);
  if (vm->hk_ref[i] == ref && vm->hk_arity[i] >= 0) return vm->hk_arity[i];
  int n = hook_arity(vm, idx);
  if (vm->hk_ref[i] == ref) vm->hk_arity[i] = n;
  return n;
}

/* sl_lua_route: see sl_lua.h. Always returns 0: every failure delivers the message as
 * published (logged and counted). */
int sl_lua_route(sl_lua *vm, int ref, const char *ns, const char *topic, const char *payload_json,
                 size_t len, int source, sl_socket *from, sl_route_result *out) {
  memset(out, 0, sizeof *out);
  out->action = SL_ROUTE_DELIVER;
  if (!vm || ref == SL_NOREF) return 0;
  uint64_t t0 = ht_begin(vm, SL_HT_ROUTE);
  lua_State *L = vm->L;
  int top = lua_gettop(L);
  int tb = hook_tb(vm);
  if (!push_ref(vm, ref)) {
    lua_settop(L, top);
    return 0;
  }
  int fn = lua_gettop(L);
  msg_ctx ctx = {ns ? ns : "", topic ? topic : "", payload_json, len, source, from,
                 {0, NULL}, vm};
  sl__pv_enter(&ctx.scope); /* open until the result is converted: it may hold the payload */
  struct msg_view *v = push_view(vm, &ctx); /* stack: fn, view */
  int nargs = 1;
  if (ref_arity(vm, ref, fn) >= 2) { /* route(msg, payload): the payload without a lookup */
    vm->uncapped++;
    push_payload(vm, L, &ctx.scope, payload_json, len);
    vm->uncapped--;
    nargs = 2;
  }
  int rc = call_tb(vm, L, nargs, 1, "route", tb);
  view_release(v);
  if (rc == 0) {
    /* stack: result */
    int t = lua_type(L, -1);
    if (t == LUA_TBOOLEAN) {
      if (!lua_toboolean(L, -1)) out->action = SL_ROUTE_DROP;
    } else if (t == LUA_TTABLE) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, vm->route_tbl_ref);
      lua_insert(L, -2);
      lua_pushlightuserdata(L, out);
      if (sl_lua_call(vm, L, 2, 0, "route result")) sl_route_result_free(out);
    } else if (t != LUA_TNIL) {
      bad_result(vm, "route", "must return nil, true, false or a table (got a %s); delivering",
                 lua_typename(L, t));
    }
  }
  lua_settop(L, top);
  sl__pv_leave(&ctx.scope);
  ht_end(vm, SL_HT_ROUTE, t0);
  leave(vm);
  return 0;
}

/* sl_lua_authorize: see sl_lua.h. A nil/false result without a reason refuses with
 * "not authorized"; a result that is not a string, number or true refuses (counted). */
int sl_lua_authorize(sl_lua *vm, int ref, const char *token, const char *ns, const char *topic,
                     sl_socket *s, char **principal, char *reason, size_t reasonlen) {
  *principal = NULL;
  if (reason && reasonlen) snprintf(reason, reasonlen, "authorization failed");
  /* no hook: the caller decides; never "accepted" */
  if (!vm || ref == SL_NOREF) return 0;
  uint64_t t0 = ht_begin(vm, SL_HT_AUTHORIZE);
  if (!push_ref(vm, ref)) return 0;
  lua_State *L = vm->L;
  int top = lua_gettop(L) - 1;
  if (token)
    lua_pushstring(L, token);
  else
    lua_pushnil(L);
  lua_pushstring(L, ns ? ns : "");
  if (topic)
    lua_pushstring(L, topic);
  else
    lua_pushnil(L);
  if (s)
    push_box(L, s, sl_socket_lua_slot(s), &k_client_mt);
  else
    lua_pushnil(L);
  int ok = 0;
  if (sl_lua_call(vm, L, 4, 2, "authorize") == 0) {
    /* stack: principal | nil | false | true, reason */
    int t = lua_type(L, -2);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
      size_t n;
      const char *p = lua_tolstring(L, -2, &n);
      *principal = sl_xstrndup(p, n);
      ok = 1;
    } else if (t == LUA_TBOOLEAN && lua_toboolean(L, -2)) {
      *principal = sl_xstrdup(token ? token : "anonymous");
      ok = 1;
    } else if (t == LUA_TNIL || t == LUA_TBOOLEAN) {
      if (reason && reasonlen)
        snprintf(reason, reasonlen, "%s",
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "not authorized");
    } else {
      bad_result(vm, "authorize",
                 "must return a principal (string), true, or nil and a reason (got a %s); "
                 "refusing", lua_typename(L, t));
    }
  }
  lua_settop(L, top);
  ht_end(vm, SL_HT_AUTHORIZE, t0);
  leave(vm);
  return ok;
}

/* sl_lua_client_publish: see sl_lua.h. The payload is decoded only when the hook declares
 * a third parameter (or is vararg). */
int sl_lua_client_publish(sl_lua *vm, int ref, sl_socket *s, const char *topic,
                          const char *payload_json, size_t len, char **new_payload) {
  *new_payload = NULL;
  if (!vm || ref == SL_NOREF) return 1;
  uint64_t t0 = ht_begin(vm, SL_HT_CLIENT_PUBLISH);
  if (!push_ref(vm, ref)) return 1;
  lua_State *L = vm->L;
  int top = lua_gettop(L) - 1;
  push_box(L, s, sl_socket_lua_slot(s), &k_client_mt);
  lua_pushstring(L, topic ? topic : "");
  decode_args a = {payload_json, len, NULL, 0};
  push_lazy_payload(vm, top + 1, 3, &a);
  int ok = 0;
  int base = top + 1;
  if (sl_lua_call(vm, L, lua_gettop(L) - base, LUA_MULTRET, "onClientPublish") == 0) {
    int nres = lua_gettop(L) - top;
    if (nres >= 1 && lua_toboolean(L, top + 1)) {
      ok = 1;
      if (nres >= 2 && !lua_isnil(L, top + 2)) {
        lua_pushvalue(L, top + 2);
        *new_payload = encode_top(vm, "onClientPublish payload", NULL);
        if (!*new_payload) ok = 0; /* an unencodable replacement refuses */
      }
    }
  }
  lua_settop(L, top);
  ht_end(vm, SL_HT_CLIENT_PUBLISH, t0);
  leave(vm);
  return ok;
}

/* sl_lua_snapshot: see sl_lua.h. A hook that returns nil clears the state: 0 with
 * *state_json = NULL and *state_ref unref'd (a new subscriber then gets no snapshot). A hook
 * that modifies the state table in place and then raises keeps those modifications; the
 * reference is not replaced. */
int sl_lua_snapshot(sl_lua *vm, int ref, int *state_ref, const char *prev_json, size_t prev_len,
                    const char *topic, const char *payload_json, size_t len, char **state_json) {
  *state_json = NULL;
  if (!vm || ref == SL_NOREF) return SL_ELUA;
  uint64_t t0 = ht_begin(vm, SL_HT_SNAPSHOT);
  if (!push_ref(vm, ref)) return SL_ELUA;
  lua_State *L = vm->L;
  int top = lua_gettop(L) - 1;
  if (*state_ref != SL_NOREF && *state_ref > 0)
    lua_rawgeti(L, LUA_REGISTRYINDEX, *state_ref);
  else if (prev_json && prev_len)
    push_decoded(vm, prev_json, prev_len, NULL, 0, "snapshot previous state");
  else
    lua_pushnil(L);
  lua_pushstring(L, topic ? topic : "");
  decode_args a = {payload_json, len, NULL, 0};
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->tramp_ref);
  lua_insert(L, top + 1);
  lua_pushlightuserdata(L, &a);
  /* stack: tramp, fn, state, topic, decode_args* */
  int rc = SL_ELUA;
  if (sl_lua_call(vm, L, 4, 1, "snapshot") == 0) {
    if (lua_isnil(L, -1)) {
      sl_lua_unref(vm, *state_ref);
      *state_ref = SL_NOREF;
      rc = 0;
    } else {
      lua_pushvalue(L, -1);
      char *json = encode_top(vm, "snapshot state", NULL);
      if (json) {
        /* stack: state */
        if (*state_ref != SL_NOREF && *state_ref > 0)
          lua_rawseti(L, LUA_REGISTRYINDEX, *state_ref);
        else
          *state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        *state_json = json;
        rc = 0;
      }
    }
  }
  lua_settop(L, top);
  ht_end(vm, SL_HT_SNAPSHOT, t0);
  leave(vm);
  return rc;
}

/* sl_lua_unref: release a registry ref made by this VM (a snapshot state). SL_NOREF and
 * refs of a closing VM are ignored. */
void sl_lua_unref(sl_lua *vm, int ref) {
  if (!vm || ref <= 0 || vm->closing) return;
  unref(vm, ref);
}

/* sl_lua_server_event: see sl_lua.h. Invalid or missing event JSON gives an empty table. */
void sl_lua_server_event(sl_lua *vm, int ref, const char *event_json, size_t len) {
  if (!vm || !push_ref(vm, ref)) return;
  lua_State *L = vm->L;
  int top = lua_gettop(L) - 1;
  push_decoded(vm, event_json, len, NULL, 0, "server event");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  sl_lua_call(vm, L, 1, 0, "server event");
  lua_settop(L, top);
  leave(vm);
}

static int l_msg_newindex(lua_State *L) {
  return luaL_error(L, "cannot set field '%s': the message is read-only (return a table from "
                       "route to rewrite it)", luaL_optstring(L, 2, "?"));
}

/* install_hooks: what the per-publish hooks preallocate (see "Policy hooks"): the message
 * view metatable and the shared view, the trampoline and encoder refs, the arity cache and
 * a private copy of debug.getinfo. stack: unchanged */
static void install_hooks(sl_lua *vm) {
  lua_State *L = vm->L;
  static const luaL_Reg msg_mt[] = {{"__index", l_msg_index},
                                    {"__newindex", l_msg_newindex},
                                    {"__tostring", l_msg_tostring},
                                    {NULL, NULL}};
  new_mt(L, &k_msg_mt, msg_mt, "sluice.message");
  vm->view = new_view(L);
  vm->view_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_call_decoded);
  vm->tramp_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_json_encode);
  vm->encode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_route_table);
  vm->route_tbl_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 4, 0);
  vm->ar_hold = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, &k_arity);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, &k_scripts);
  lua_newtable(L);
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, &k_getinfo);
  lua_getglobal(L, "debug");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "getinfo");
    lua_remove(L, -2);
  }
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* ------------------------------------------------------------------------------------- */
/* sluice.script: the policy scripts shipped in scripts/ (and the operator's own)          */
/*
 * sluice.script(name [, options]) -> hook
 *
 * Loads a script in its own sandbox (sl__lua_load_script: JIT off, frozen allow-list) and,
 * since every shipped script returns a constructor, calls it with options (an empty table
 * when nil) and returns what it builds: the hook function. A script that returns a table
 * is returned as is (options must then be nil). Each script file is loaded once per VM
 * (cached by resolved path); every call builds a new hook with its own state. A reload
 * makes a new VM, so edited scripts are read again.
 *
 * Where `name` is looked up:
 *   - a name with a '/' or ending in ".lua" is a path: absolute, or relative to the config
 *     file's directory, then to the working directory;
 *   - a bare name ("jwt_hs256", [A-Za-z0-9_.-], no "..") is NAME.lua in, in order:
 *       <config dir>/scripts/, $SLUICE_SCRIPTS_DIR/, <executable dir>/../scripts/,
 *       <executable dir>/../share/sluice/scripts/, ./scripts/
 *     so a config can override a shipped script by putting its own next to it.
 * JSON and YAML configs use the same mechanism with {"script": NAME, "options": {...}}
 * where a hook is expected (see opt_hook in config.c).
 */


/* sl__lua_set_script_dir: see sl_lua_int.h. */
void sl__lua_set_script_dir(lua_State *L, const char *dir) {
  lua_pushlightuserdata(L, &k_script_dir);
  if (dir)
    lua_pushstring(L, dir);
  else
    lua_pushnil(L);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

static bool readable(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  fclose(f);
  return true;
}

static bool bare_name(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 128 || strstr(s, "..") || (n > 4 && !strcmp(s + n - 4, ".lua"))) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-' || c == '.'))
      return false;
  }
  return true;
}

/* Resolve a script name into buf (see above). Returns false when no candidate exists;
 * buf then holds the list of places tried (for the message). */
static bool resolve_script(const char *name, const char *cfgdir, char *buf, size_t len) {
  const char *base = cfgdir && *cfgdir ? cfgdir : ".";
  if (!bare_name(name)) {
    if (name[0] == '/') {
      snprintf(buf, len, "%s", name);
      return readable(buf);
    }
    snprintf(buf, len, "%s/%s", base, name);
    if (readable(buf)) return true;
    snprintf(buf, len, "%s", name);
    return readable(buf);
  }
  char exedir[1024] = "";
  ssize_t n = readlink("/proc/self/exe", exedir, sizeof exedir - 1);
  if (n > 0) {
    exedir[n] = 0;
    char *slash = strrchr(exedir, '/');
    if (slash) *slash = 0;
  } else {
    exedir[0] = 0;
  }
  const char *env = getenv("SLUICE_SCRIPTS_DIR");
  char dirs[5][1100];
  int nd = 0;
  snprintf(dirs[nd++], sizeof dirs[0], "%s/scripts", base);
  if (env && *env) snprintf(dirs[nd++], sizeof dirs[0], "%s", env);
  if (exedir[0]) {
    snprintf(dirs[nd++], sizeof dirs[0], "%s/../scripts", exedir);
    snprintf(dirs[nd++], sizeof dirs[0], "%s/../share/sluice/scripts", exedir);
  }
  snprintf(dirs[nd++], sizeof dirs[0], "scripts");
  for (int i = 0; i < nd; i++) {
    int w = snprintf(buf, len, "%s/%s.lua", dirs[i], name);
    if (w > 0 && (size_t)w < len && readable(buf)) return true;
  }
  snprintf(buf, len, "%s/scripts", base);
  if (env && *env) snprintf(buf + strlen(buf), len - strlen(buf), ", %s", env);
  snprintf(buf + strlen(buf), len - strlen(buf), ", <sluice>/../scripts, ./scripts");
  return false;
}

/* sluice.script(name [, options]) -> hook. stack: name, options -> hook */
static int l_script(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  size_t nlen = strlen(name);
  if (!bare_name(name) && !(nlen > 4 && !strcmp(name + nlen - 4, ".lua")))
    return luaL_argerror(L, 1, "a script name ([A-Za-z0-9_.-]) or a path ending in .lua");
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushlightuserdata(L, &k_script_dir);
  lua_rawget(L, LUA_REGISTRYINDEX);
  char path[1200];
  if (!resolve_script(name, lua_tostring(L, -1), path, sizeof path))
    return luaL_error(L, "sluice.script: no script \"%s\" (looked in %s)", name, path);
  lua_pop(L, 1);
  push_reg(L, &k_scripts); /* stack: name, options, cache */
  lua_getfield(L, 3, path);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    char err[512];
    if (sl__lua_load_script(L, path, err, sizeof err))
      return luaL_error(L, "sluice.script(\"%s\"): %s", name, err);
    lua_pushvalue(L, -1);
    lua_setfield(L, 3, path);
  }
  /* stack: name, options, cache, module */
  if (lua_isfunction(L, 4)) {
    if (lua_isnil(L, 2)) {
      lua_newtable(L);
      lua_replace(L, 2);
    }
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1))
      return luaL_error(L, "sluice.script(\"%s\"): the constructor returned nothing", name);
    return 1;
  }
  if (!lua_isnil(L, 2))
    return luaL_error(L, "sluice.script(\"%s\"): the script returns a %s, not a constructor "
                         "taking options", name, luaL_typename(L, 4));
  return 1;
}

/* sl__lua_script: see sl_lua_int.h. */
int sl__lua_script(lua_State *L, const char *name, int opts_idx, char *err, size_t errlen) {
  if (opts_idx < 0) opts_idx = lua_gettop(L) + opts_idx + 1;
  lua_pushcfunction(L, l_script);
  lua_pushstring(L, name);
  if (opts_idx)
    lua_pushvalue(L, opts_idx);
  else
    lua_pushnil(L);
  return sl__lua_pcall(L, 2, 1, err, errlen);
}
