/* sl_lua_lib.h - sluice.publish/publish_to/stats/log/now_ms/now_us (lua/lib.c). */
#ifndef SL_LUA_LIB_H
#define SL_LUA_LIB_H

struct lua_State;

/* sl__lua_inject_lib: add publish(ns, topic, payload [, opts]) -> messageId,
 * publish_to(ns, client|id, topic, payload), stats(), log.{debug,info,warn,error}(...),
 * now_ms() and now_us() to the sluice table. stack: sluice -> sluice */
void sl__lua_inject_lib(struct lua_State *L);

#endif
