/* boxes.c - C objects handed to Lua as boxed pointers: clients (Socket.IO sockets),
 * raw Engine.IO connections and timers (sluice.every / sluice.after).
 *
 * A box is a userdata holding the C pointer, with one locked metatable per type; the core
 * tells the VM when it frees the object (sl_lua_socket_gone, sl_lua_eio_gone) and the box
 * is cleared, so a stale reference raises instead of touching freed memory. A client's or
 * connection's environment table is its .data (per-object state for scripts). */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "sl_lua_boxes.h"
#include "sl_lua_bytes.h"
#include "sl_lua_call.h"
#include "sl_lua_json.h"

static char k_client_mt, k_eio_mt, k_timer_mt;

struct sl_timer {
  uv_timer_t h;
  sl_lua *vm;
  int fn_ref;
  bool repeat;
  bool stopped;
  void **box; /* the Lua box's pointer slot, NULL once the box was collected */
  sl_timer *prev, *next;
};

/* ------------------------------------------------------------------------------------- */
/* Timers                                                                                 */

static void timer_close_cb(uv_handle_t *h) {
  sl_timer *t = sl_container_of((uv_timer_t *)h, sl_timer, h);
  sl_lua *vm = t->vm;
  free(t);
  vm->pending_closes--;
  if (vm->closing) sl__lua_leave(vm);
}

/* stop and release a timer: idempotent; the handle is freed in its close callback. */
static void timer_stop(sl_timer *t) {
  if (t->stopped) return;
  sl_lua *vm = t->vm;
  t->stopped = true;
  uv_timer_stop(&t->h);
  if (t->fn_ref != LUA_NOREF) sl__lua_release(vm, t->fn_ref);
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
  sl_lua_call(vm, L, 0, 0, 0, t->repeat ? "sluice.every callback" : "sluice.after callback", NULL,
              0);
  sl__lua_leave(vm);
}

/* stack: ms, fn -> timer box */
static int start_timer(lua_State *L, bool repeat) {
  sl_lua *vm = sl__lua_vm(L);
  double ms = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!(ms >= 0) || ms > 1e12 || (repeat && ms < 1))
    return luaL_argerror(L, 1, repeat ? "interval must be at least 1 ms" : "delay must be >= 0");
  sl_gateway *gw = sl__lua_gw(L);
  if (vm->closing) return luaL_error(L, "VM is closing");
  uv_loop_t *loop = sl_gateway_loop(gw);
  if (!loop) return luaL_error(L, "gateway not running");
  void **box = lua_newuserdata(L, sizeof(void *));
  *box = NULL;
  sl__lua_push_reg(L, &k_timer_mt);
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
  void **box = sl__lua_check_ud(L, 1, &k_timer_mt, "sluice.timer");
  if (*box) timer_stop(*box);
  return 0;
}

static int l_timer_active(lua_State *L) {
  void **box = sl__lua_check_ud(L, 1, &k_timer_mt, "sluice.timer");
  lua_pushboolean(L, *box != NULL);
  return 1;
}

static int l_timer_gc(lua_State *L) {
  void **box = sl__lua_test_ud(L, 1, &k_timer_mt);
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
    void **b = sl__lua_test_ud(L, -1, mtkey);
    if (b && *b == obj) return;
    lua_pop(L, 1); /* a stale ref (another VM generation): make a new box */
  }
  void **b = lua_newuserdata(L, sizeof(void *));
  *b = obj;
  sl__lua_push_reg(L, mtkey);
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_setfenv(L, -2);
  lua_pushvalue(L, -1);
  *slot = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void box_gone(lua_State *L, int *slot, void *obj, void *mtkey) {
  if (*slot <= 0) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, *slot);
  void **b = sl__lua_test_ud(L, -1, mtkey);
  bool ours = b && *b == obj;
  if (ours) *b = NULL;
  lua_pop(L, 1);
  if (ours) {
    sl__lua_unref(L, *slot);
    *slot = SL_NOREF;
  }
}

/* sl__box_client: see sl_lua_boxes.h. */
sl_socket *sl__box_client(lua_State *L, int idx) {
  void **b = sl__lua_check_ud(L, idx, &k_client_mt, "sluice client");
  if (!*b) luaL_error(L, "client is gone");
  return *b;
}

/* sl__box_client_id: see sl_lua_boxes.h. */
const char *sl__box_client_id(lua_State *L, int idx) {
  if (sl__lua_test_ud(L, idx, &k_client_mt)) return sl_socket_id(sl__box_client(L, idx));
  return luaL_checkstring(L, idx);
}

/* sl__box_args_json: see sl_lua_boxes.h. stack: unchanged */
void sl__box_args_json(lua_State *L, sl_lua *vm, int first, int last, const char *event) {
  sl__json_reset(vm);
  sl__json_put(L, vm, "[", 1);
  bool comma = false;
  if (event) {
    sl__json_string(L, vm, event, strlen(event));
    comma = true;
  }
  for (int i = first; i <= last; i++) {
    if (comma) sl__json_put(L, vm, ",", 1);
    sl__json_value(L, vm, i, 1, true);
    comma = true;
  }
  sl__json_put(L, vm, "]", 1);
  sl__json_reserve(L, vm, 1);
  vm->jb[vm->jlen] = 0;
}

/* client:emit(event, ...) -> true */
static int l_client_emit(lua_State *L) {
  sl_lua *vm = sl__lua_vm(L);
  sl_socket *s = sl__box_client(L, 1);
  const char *ev = luaL_checkstring(L, 2);
  sl__box_args_json(L, vm, 3, lua_gettop(L), ev);
  int rc = sl_socket_emit(s, vm->jb, vm->jlen, vm->bins, vm->nbins);
  if (rc < 0) return luaL_error(L, "emit %s: %s", ev, sl_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_client_disconnect(lua_State *L) {
  sl_socket_disconnect(sl__box_client(L, 1));
  return 0;
}

static int l_client_index(lua_State *L) {
  sl_socket *s = sl__box_client(L, 1);
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
  void **b = sl__lua_check_ud(L, 1, &k_client_mt, "sluice client");
  if (*b)
    lua_pushfstring(L, "client %s %s", sl_socket_ns(*b), sl_socket_id(*b));
  else
    lua_pushliteral(L, "client (gone)");
  return 1;
}

static sl_eio_conn *check_conn(lua_State *L, int idx) {
  void **b = sl__lua_check_ud(L, idx, &k_eio_mt, "sluice conn");
  if (!*b) luaL_error(L, "connection is gone");
  return *b;
}

static int l_conn_send(lua_State *L) {
  sl_eio_conn *c = check_conn(L, 1);
  sl_bytes *b = sl__bytes_test(L, 2);
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
  void **b = sl__lua_check_ud(L, 1, &k_eio_mt, "sluice conn");
  if (*b)
    lua_pushfstring(L, "conn %s", sl_eio_conn_id(*b));
  else
    lua_pushliteral(L, "conn (gone)");
  return 1;
}

/* sl__box_is_client: see sl_lua_boxes.h. */
bool sl__box_is_client(lua_State *L, int idx) {
  return sl__lua_test_ud(L, idx, &k_client_mt) != NULL;
}

/* sl__box_push_client: see sl_lua_boxes.h. stack: -> box */
void sl__box_push_client(lua_State *L, sl_socket *s) {
  push_box(L, s, sl_socket_lua_slot(s), &k_client_mt);
}

/* sl__box_push_conn: see sl_lua_boxes.h. stack: -> box */
void sl__box_push_conn(lua_State *L, sl_eio_conn *c) {
  push_box(L, c, sl_eio_conn_lua_slot(c), &k_eio_mt);
}

/* sl__box_client_gone: see sl_lua_boxes.h. */
void sl__box_client_gone(lua_State *L, sl_socket *s) {
  box_gone(L, sl_socket_lua_slot(s), s, &k_client_mt);
}

/* sl__box_conn_gone: see sl_lua_boxes.h. */
void sl__box_conn_gone(lua_State *L, sl_eio_conn *c) {
  box_gone(L, sl_eio_conn_lua_slot(c), c, &k_eio_mt);
}

/* sl__box_timers_stop: see sl_lua_boxes.h. */
void sl__box_timers_stop(sl_lua *vm) {
  while (vm->timers) timer_stop(vm->timers);
}

/* sl__lua_inject_boxes: see sl_lua_boxes.h. stack: sluice -> sluice */
void sl__lua_inject_boxes(lua_State *L) {
  static const luaL_Reg client_mt[] = {{"__index", l_client_index},
                                       {"__newindex", l_readonly_newindex},
                                       {"__tostring", l_client_tostring},
                                       {NULL, NULL}};
  sl__lua_new_mt(L, &k_client_mt, client_mt, NULL, "sluice.client");
  static const luaL_Reg eio_mt[] = {{"__index", l_conn_index},
                                    {"__newindex", l_readonly_newindex},
                                    {"__tostring", l_conn_tostring},
                                    {NULL, NULL}};
  sl__lua_new_mt(L, &k_eio_mt, eio_mt, NULL, "sluice.conn");
  static const luaL_Reg timer_mt[] = {{"__gc", l_timer_gc}, {NULL, NULL}};
  static const luaL_Reg timer_methods[] = {
      {"stop", l_timer_stop}, {"active", l_timer_active}, {NULL, NULL}};
  sl__lua_new_mt(L, &k_timer_mt, timer_mt, timer_methods, "sluice.timer");
  static const luaL_Reg fns[] = {{"every", l_every}, {"after", l_after}, {NULL, NULL}};
  luaL_register(L, NULL, fns);
}
