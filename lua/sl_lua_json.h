/* sl_lua_json.h - JSON <-> Lua for the binding and sluice.json (lua/json.c). */
#ifndef SL_LUA_JSON_H
#define SL_LUA_JSON_H

#include <stddef.h>
#include <stdbool.h>

#include "sl_lua.h"

struct lua_State;
struct cJSON;

/* The JSON null sentinel in Lua: a light userdata holding NULL (sluice.json.null). */
#define sl__lua_pushnull(L) lua_pushlightuserdata((L), NULL)
#define sl__lua_isnull(L, i) (lua_type((L), (i)) == LUA_TLIGHTUSERDATA && !lua_touserdata((L), (i)))

/* ---- encoder: into the VM's scratch buffer vm->jb (vm->jlen bytes), binary values into
 * vm->bins. Never reentrant (encoding calls no Lua). Each raises a Lua error on a value
 * that cannot be encoded or on memory, so they run inside a protected call. ---- */

/* sl__json_reset: empty vm->jb and vm->bins. */
void sl__json_reset(sl_lua *vm);
/* sl__json_reserve: room for n more bytes in vm->jb. */
void sl__json_reserve(struct lua_State *L, sl_lua *vm, size_t n);
/* sl__json_put: append n raw bytes. */
void sl__json_put(struct lua_State *L, sl_lua *vm, const char *s, size_t n);
/* sl__json_string: append s as a quoted, escaped JSON string. */
void sl__json_string(struct lua_State *L, sl_lua *vm, const char *s, size_t n);
/* sl__json_value: append the value at idx (depth: current nesting; a payload view is
 * copied verbatim; binary values become {"_placeholder":true,"num":i} entries of
 * vm->bins when allow_bin, else raise). stack: unchanged */
void sl__json_value(struct lua_State *L, sl_lua *vm, int idx, int depth, bool allow_bin);

/* sl__json_encode_fn: sluice.json.encode as a lua_CFunction. stack: value -> text */
int sl__json_encode_fn(struct lua_State *L);

/* ---- decoder ---- */

/* sl__json_decode: decode JSON text (binary placeholders {"_placeholder":true,"num":i}
 * refer to atts[i] and become binary values). Must run inside a protected call (raises on
 * nesting or memory). stack: -> value, or nothing and false when the text is invalid (then
 * *errpos, if not NULL, is the 1-based offset of the error). */
bool sl__json_decode(struct lua_State *L, const char *text, size_t len, const sl_bin *atts,
                     size_t natts, size_t *errpos);

/* sl__json_decode_text: the same without attachments or error position.
 * stack: -> value, or nothing and false when the text is not valid JSON. */
bool sl__json_decode_text(struct lua_State *L, const char *text, size_t len);

/* sl__json_push_cjson: push a parsed cJSON value as Lua (objects -> tables, arrays ->
 * marked tables, null -> sluice.json.null). Raises when nested too deeply; must run inside
 * a protected call. stack: -> value */
void sl__json_push_cjson(struct lua_State *L, const struct cJSON *j);

/* sl__json_valid: is [s, s+n) exactly one valid JSON value (surrounding whitespace
 * allowed)? No Lua involved. */
bool sl__json_valid(const char *s, size_t n);

/* sl__json_mark_array: give the table at idx the JSON array marker metatable.
 * stack: unchanged */
void sl__json_mark_array(struct lua_State *L, int idx);

/* sl__lua_inject_json: register the array marker and the cJSON holder metatables and add
 * sluice.json {encode, decode, array, is_array, null}. stack: sluice -> sluice */
void sl__lua_inject_json(struct lua_State *L);

#endif
