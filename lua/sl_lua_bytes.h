/* sl_lua_bytes.h - sluice.bytes, binary values distinct from strings (lua/bytes.c). */
#ifndef SL_LUA_BYTES_H
#define SL_LUA_BYTES_H

#include <stddef.h>

struct lua_State;

/* A binary value: a full userdata with the bytes.c metatable. */
typedef struct sl_bytes {
  size_t len;
  unsigned char data[];
} sl_bytes;

/* sl__bytes_push: push a new binary value holding a copy of data. stack: -> bytes */
void sl__bytes_push(struct lua_State *L, const void *data, size_t len);

/* sl__bytes_test: the binary value at idx, or NULL when it is anything else (no error).
 * The stack is unchanged. */
sl_bytes *sl__bytes_test(struct lua_State *L, int idx);

/* sl__lua_inject_bytes: register the binary value metatable (#b, tostring(b), b == c,
 * b:hex()) and add sluice.bytes(s | b) and sluice.is_bytes(v). stack: sluice -> sluice */
void sl__lua_inject_bytes(struct lua_State *L);

#endif
