/* bytes.c - sluice.bytes: binary values, distinct from strings (client:emit and acks carry
 * them as Socket.IO binary attachments; conn:send as binary Engine.IO messages). */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_lua_bytes.h"
#include "sl_lua_call.h"

static char k_bytes_mt;

/* sl__bytes_test: see sl_lua_bytes.h. */
sl_bytes *sl__bytes_test(lua_State *L, int idx) { return sl__lua_test_ud(L, idx, &k_bytes_mt); }

/* sl__bytes_push: see sl_lua_bytes.h. stack: -> bytes */
void sl__bytes_push(lua_State *L, const void *data, size_t len) {
  sl_bytes *b = lua_newuserdata(L, sizeof(sl_bytes) + len);
  b->len = len;
  if (len) memcpy(b->data, data, len);
  sl__lua_push_reg(L, &k_bytes_mt);
  lua_setmetatable(L, -2);
}

static int l_bytes_new(lua_State *L) {
  sl_bytes *src = sl__bytes_test(L, 1);
  if (src) {
    sl__bytes_push(L, src->data, src->len);
    return 1;
  }
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  sl__bytes_push(L, s, len);
  return 1;
}

static int l_bytes_len(lua_State *L) {
  sl_bytes *b = sl__lua_check_ud(L, 1, &k_bytes_mt, "sluice.bytes");
  lua_pushinteger(L, (lua_Integer)b->len);
  return 1;
}

static int l_bytes_tostring(lua_State *L) {
  sl_bytes *b = sl__lua_check_ud(L, 1, &k_bytes_mt, "sluice.bytes");
  lua_pushlstring(L, (const char *)b->data, b->len);
  return 1;
}

static int l_bytes_hex(lua_State *L) {
  sl_bytes *b = sl__lua_check_ud(L, 1, &k_bytes_mt, "sluice.bytes");
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
  sl_bytes *a = sl__bytes_test(L, 1), *b = sl__bytes_test(L, 2);
  lua_pushboolean(L, a && b && a->len == b->len && memcmp(a->data, b->data, a->len) == 0);
  return 1;
}

static int l_is_bytes(lua_State *L) {
  lua_pushboolean(L, sl__bytes_test(L, 1) != NULL);
  return 1;
}

/* sl__lua_inject_bytes: see sl_lua_bytes.h. stack: sluice -> sluice */
void sl__lua_inject_bytes(lua_State *L) {
  static const luaL_Reg bytes_mt[] = {
      {"__len", l_bytes_len}, {"__tostring", l_bytes_tostring}, {"__eq", l_bytes_eq}, {NULL, NULL}};
  static const luaL_Reg bytes_methods[] = {
      {"hex", l_bytes_hex}, {"len", l_bytes_len}, {"tostring", l_bytes_tostring}, {NULL, NULL}};
  sl__lua_new_mt(L, &k_bytes_mt, bytes_mt, bytes_methods, "sluice.bytes");
  static const luaL_Reg fns[] = {{"bytes", l_bytes_new}, {"is_bytes", l_is_bytes}, {NULL, NULL}};
  luaL_register(L, NULL, fns);
}
