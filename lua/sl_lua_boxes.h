/* sl_lua_boxes.h - clients, Engine.IO connections and timers as Lua boxes (lua/boxes.c). */
#ifndef SL_LUA_BOXES_H
#define SL_LUA_BOXES_H

#include <stdbool.h>

#include "sl_lua.h"

struct lua_State;

/* sl__box_push_client / sl__box_push_conn: push the box of s / c, made on first use and
 * kept under the object's Lua slot (sl_socket_lua_slot, sl_eio_conn_lua_slot) so the same
 * box (and .data) comes back each time. stack: -> box */
void sl__box_push_client(struct lua_State *L, sl_socket *s);
void sl__box_push_conn(struct lua_State *L, sl_eio_conn *c);

/* sl__box_client_gone / sl__box_conn_gone: the core frees the object: clear its box (a kept
 * reference then raises "client is gone") and release the slot's ref. */
void sl__box_client_gone(struct lua_State *L, sl_socket *s);
void sl__box_conn_gone(struct lua_State *L, sl_eio_conn *c);

/* sl__box_is_client: is the value at idx a client box? (stack unchanged, no error) */
bool sl__box_is_client(struct lua_State *L, int idx);

/* sl__box_client: the socket of the client box at idx; raises on another value or a box
 * whose client is gone. */
sl_socket *sl__box_client(struct lua_State *L, int idx);

/* sl__box_client_id: a client id argument: a client box's id, or the string at idx
 * (raises otherwise). */
const char *sl__box_client_id(struct lua_State *L, int idx);

/* sl__box_args_json: encode [event?, values at first..last] as a JSON array into vm->jb
 * (NUL-terminated), binary values as placeholders into vm->bins (for emit and ack).
 * Raises on a value that cannot be encoded. stack: unchanged */
void sl__box_args_json(struct lua_State *L, sl_lua *vm, int first, int last, const char *event);

/* sl__box_timers_stop: stop every timer of vm (their handles close asynchronously; each
 * close drops vm->pending_closes). */
void sl__box_timers_stop(sl_lua *vm);

/* sl__lua_inject_boxes: register the client, conn and timer metatables and add
 * sluice.every(ms, fn) and sluice.after(ms, fn) (-> timer with :stop() and :active()).
 * stack: sluice -> sluice */
void sl__lua_inject_boxes(struct lua_State *L);

#endif
