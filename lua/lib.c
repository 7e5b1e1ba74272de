/* lib.c - the sluice functions that reach the gateway or the process: sluice.publish,
 * sluice.publish_to, sluice.stats, sluice.log.{debug,info,warn,error}, sluice.now_ms and
 * sluice.now_us. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_lua_boxes.h"
#include "sl_lua_call.h"
#include "sl_lua_json.h"
#include "sl_lua_lib.h"

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

static int l_stats(lua_State *L) {
  sl_gateway *gw = sl__lua_gw(L);
  char *s = sl_gateway_stats_json(gw);
  if (!s) return luaL_error(L, "stats unavailable");
  lua_pushstring(L, s); /* copy first: decoding may raise */
  free(s);
  size_t len;
  const char *t = lua_tolstring(L, -1, &len);
  if (!sl__json_decode(L, t, len, NULL, 0, NULL))
    return luaL_error(L, "stats: invalid JSON from core");
  return 1;
}

/* Encode the payload at idx (or take it as JSON text). stack: unchanged; result in vm->jb. */
static void payload_arg(lua_State *L, sl_lua *vm, int idx, bool raw_json) {
  sl__json_reset(vm);
  if (raw_json) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (lua_type(L, idx) != LUA_TSTRING)
      luaL_argerror(L, idx, "JSON text expected (opts.json = true)");
    sl__json_put(L, vm, s, n);
  } else {
    sl__json_value(L, vm, idx, 0, false);
  }
  sl__json_reserve(L, vm, 1);
  vm->jb[vm->jlen] = 0;
}

static int do_publish(lua_State *L, const char *ns, const char *topic, int payload_idx,
                      const char *to, const char *server, bool raw) {
  sl_lua *vm = sl__lua_vm(L);
  sl_gateway *gw = sl__lua_gw(L);
  if (vm->depth >= SL_LUA_MAX_NEST)
    return luaL_error(L,
                      "publish %s %s: publishes nested too deeply (%d hook calls; "
                      "a hook publishing to a topic whose hooks publish again?)",
                      ns, topic, vm->depth);
  payload_arg(L, vm, payload_idx, raw);
  /* our own encoder made the JSON: the core need not parse it again */
  sl_publish_opts o = {
      .server = server, .to = to, .source = SL_SRC_LUA, .from = NULL, .trusted_json = !raw};
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
  if (rc < 0)
    return luaL_error(L, "publish %s %s: %s", ns, topic,
                      rc == SL_EFULL ? "CLUSTER_UNAVAILABLE (Redis unreachable, buffer full)"
                                     : sl_strerror(rc));
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
    if (!lua_isnil(L, -1)) to = sl__box_client_id(L, lua_gettop(L));
    lua_getfield(L, 4, "server");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_argerror(L, 4, "opts.server must be a string");
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
  const char *to = sl__box_client_id(L, 2);
  const char *topic = luaL_checkstring(L, 3);
  luaL_checkany(L, 4);
  return do_publish(L, ns, topic, 4, to, NULL, false);
}

/* sl__lua_inject_lib: see sl_lua_lib.h. stack: sluice -> sluice */
void sl__lua_inject_lib(lua_State *L) {
  static const luaL_Reg fns[] = {{"publish", l_publish}, {"publish_to", l_publish_to},
                                 {"now_ms", l_now_ms},   {"now_us", l_now_us},
                                 {"stats", l_stats},     {NULL, NULL}};
  luaL_register(L, NULL, fns);
  static const luaL_Reg log[] = {{"debug", l_log_debug},
                                 {"info", l_log_info},
                                 {"warn", l_log_warn},
                                 {"error", l_log_error},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, log);
  lua_setfield(L, -2, "log");
}
