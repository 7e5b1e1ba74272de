/* sl_lua_pview.h - payload views (lua/pview.c): route's msg.payload and coalesceKey's
 * payload, read from the JSON text in place. */
#ifndef SL_LUA_PVIEW_H
#define SL_LUA_PVIEW_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

struct lua_State;

/* The payload of route (msg.payload) and coalesceKey, read from
 * the JSON text in place. A scope is one hook call that hands out views; views made in it
 * are live until sl__pv_leave. Scopes nest (a hook publishing runs hooks again) and live
 * on the C stack of the hook function. */
typedef struct sl__pv_scope {
  uint64_t id;
  struct sl__pv_scope *prev;
} sl__pv_scope;
void sl__pv_enter(sl__pv_scope *s);
void sl__pv_leave(sl__pv_scope *s);

/* sl__pv_open: register the view metatable and install the base-library wrappers (type,
 * getmetatable, pairs, ipairs, next, rawget, unpack, table.concat) that let views pass for
 * read-only tables. Called once per VM, before the sandbox copies the base library. */
void sl__pv_open(struct lua_State *L);

/* sl__pv_new: push a new, unbound view meant to be reused (pinned by the VM).
 * stack: -> view. Returns its memory for sl__pv_bind. */
void *sl__pv_new(struct lua_State *L);

/* sl__pv_bind: rebind the reusable view to the payload text for scope. False when the
 * payload is not an object or array, or when an open outer scope still uses the view (a
 * nested call): then push a fresh one with sl__pv_push. */
bool sl__pv_bind(void *shared, const sl__pv_scope *scope, const char *text, size_t len);

/* sl__pv_push: push the payload text as a new view bound to scope (objects and arrays; a
 * scalar payload is pushed decoded, an empty or invalid one as nil). stack: -> value */
void sl__pv_push(struct lua_State *L, const sl__pv_scope *scope, const char *text, size_t len);

/* sl__pv_slice: when the value at idx is a payload view, set its JSON text and return true
 * (raises if the view outlived its hook call); false for anything else. */
bool sl__pv_slice(struct lua_State *L, int idx, const char **s, size_t *n);

#endif
