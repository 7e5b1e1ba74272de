/* hooks.c - the policy hooks the core calls (sl_lua.h): route, coalesceKey, snapshot,
 * authorize, onClientPublish, the server events, a namespace's onConnect/onEvent, a raw
 * Engine.IO endpoint's onMessage/onOpen/onClose, a server's onStart and allowRequest; and the
 * sampled hook timing.
 *
 * Hook fallbacks (every Lua error is logged with file:line and a traceback, and counted in
 * sl_lua_error_count, i.e. the sluice_lua_errors metric): route -> deliver as published;
 * authorize -> refuse ("authorization failed"); onClientPublish -> refuse; coalesceKey -> no
 * key; snapshot -> state unchanged; allowRequest -> refuse (fails closed); event hooks ->
 * nothing. A result of the wrong shape (route returning a string, a route table with an
 * unknown field) counts as an error too.
 *
 * Every call goes through sl_lua_call (call.c). Every entry point finds the traceback
 * handler with sl__lua_tb before pushing the hook (push_hook): the pinned slot from the base
 * level, pushed in place in a nested call (a hook publishing), never moved around. The
 * helper calls made inside an entry point (decoding an argument, encoding a result) pass
 * tb = 0, since a handler pushed there would sit between the values they return. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_lua_boxes.h"
#include "sl_lua_bytes.h"
#include "sl_lua_call.h"
#include "sl_lua_hooks.h"
#include "../core/hooks.h"
#include "sl_lua_json.h"
#include "sl_lua_pview.h"

static char k_msg_mt, k_arity, k_getinfo;

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

/* push_hook: the traceback handler (sl__lua_tb), then the hook of ref, for an entry point's
 * sl_lua_call(vm, L, *tb, ...); the entry point's lua_settop(L, top) drops the handler.
 * top: lua_gettop(vm->L), which the caller has anyway (lua_gettop is a call into LuaJIT).
 * stack: -> [handler], fn; or unchanged and false when ref is unset or not a function. */
static inline bool push_hook(sl_lua *vm, int ref, int top, int *tb) {
  lua_State *L = vm->L;
  *tb = sl__lua_tb(vm, L);
  if (push_ref(vm, ref)) return true;
  lua_settop(L, top);
  return false;
}

/* sl_lua_on_start: see sl_lua.h. The hook gets a table {name, port}. */
int sl_lua_on_start(sl_lua *vm, int ref, sl_server *srv) {
  lua_State *L = vm->L;
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return 0;
  lua_createtable(L, 0, 2);
  if (srv) {
    lua_pushstring(L, sl_server_name(srv));
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, sl_server_port(srv));
    lua_setfield(L, -2, "port");
  }
  int rc = sl_lua_call(vm, L, tb, 1, 0, "onStart", NULL, 0);
  lua_settop(L, top);
  sl__lua_leave(vm);
  return rc;
}

/* sl_lua_allow_request: see sl_lua.h. */
int sl_lua_allow_request(sl_lua *vm, int ref, const char *method, const char *path,
                         const char *query, const char *remote, const char *const *headers,
                         size_t nheaders, int *status, char *message, size_t msglen) {
  lua_State *L = vm->L;
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return 1;
  /* stack: handler, fn, req */
  lua_createtable(L, 0, 5);
  lua_pushstring(L, method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, remote);
  lua_setfield(L, -2, "remoteAddress");
  lua_createtable(L, 0, (int)nheaders); /* stack: fn, req, headers */
  for (size_t i = 0; i < nheaders; i++) {
    lua_getfield(L, -1, headers[2 * i]);
    if (lua_isstring(L, -1)) { /* repeated: joined as Node does */
      lua_pushstring(L, ", ");
      lua_pushstring(L, headers[2 * i + 1]);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushstring(L, headers[2 * i + 1]);
    }
    lua_setfield(L, -2, headers[2 * i]);
  }
  lua_setfield(L, -2, "headers");
  lua_newtable(L); /* stack: fn, req, query */
  for (const char *q = query; *q;) {
    size_t n = strcspn(q, "&");
    size_t k = strcspn(q, "=");
    if (k > n) k = n;
    if (k > 0) {
      lua_pushlstring(L, q, k);
      if (k < n)
        lua_pushlstring(L, q + k + 1, n - k - 1);
      else
        lua_pushliteral(L, "");
      lua_rawset(L, -3);
    }
    q += n;
    if (*q == '&') q++;
  }
  lua_setfield(L, -2, "query");
  int ok = 0;
  if (sl_lua_call(vm, L, tb, 1, 3, "allowRequest", NULL, 0) == 0) {
    /* stack: ok, message, status */
    ok = lua_type(L, -3) == LUA_TBOOLEAN && lua_toboolean(L, -3);
    if (!ok && lua_type(L, -2) == LUA_TSTRING && message && msglen)
      snprintf(message, msglen, "%s", lua_tostring(L, -2));
    if (!ok && lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number s = lua_tonumber(L, -1);
      if (s >= 400 && s <= 599 && s == (int)s) *status = (int)s;
    }
  }
  lua_settop(L, top);
  sl__lua_leave(vm);
  return ok;
}

/* Arguments for l_decode_arg and l_call_decoded, which decode core-supplied JSON inside a
 * protected call. */
typedef struct decode_args {
  const char *text;
  size_t len;
  const sl_bin *atts;
  size_t natts;
} decode_args;

/* Decodes core-supplied JSON inside a protected call (nesting and memory errors are caught).
 * upvalue 1: decode_args. stack: -> value | nil */
static int l_decode_arg(lua_State *L) {
  decode_args *a = lua_touserdata(L, lua_upvalueindex(1));
  if (!a->text || !a->len || !sl__json_decode(L, a->text, a->len, a->atts, a->natts, NULL))
    lua_pushnil(L);
  return 1;
}

/* stack: -> decoded value, or nil when absent, invalid or failing (logged). */
static void push_decoded(sl_lua *vm, const char *json, size_t len, const sl_bin *atts, size_t natts,
                         const char *what) {
  lua_State *L = vm->L;
  decode_args a = {json, len, atts, natts};
  lua_pushlightuserdata(L, &a);
  lua_pushcclosure(L, l_decode_arg, 1);
  if (sl_lua_call(vm, L, 0, 0, 1, what, NULL, 0)) lua_pushnil(L);
}

/* sl_lua_on_connect: see sl_lua.h. */
int sl_lua_on_connect(sl_lua *vm, int ref, sl_socket *s, const char *auth_json, size_t len,
                      char *reason, size_t reasonlen) {
  lua_State *L = vm->L;
  int top = lua_gettop(L), tb;
  if (reason && reasonlen) snprintf(reason, reasonlen, "Not authorized");
  if (!push_hook(vm, ref, top, &tb)) return 1;
  sl__box_push_client(L, s);
  push_decoded(vm, auth_json, len, NULL, 0, "onConnect auth");
  int ok = 0;
  if (sl_lua_call(vm, L, tb, 2, 2, "onConnect", NULL, 0) == 0) {
    ok = !(lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2));
    if (!ok && lua_type(L, -1) == LUA_TSTRING && reason && reasonlen)
      snprintf(reason, reasonlen, "%s", lua_tostring(L, -1));
  }
  lua_settop(L, top);
  sl__lua_leave(vm);
  return ok;
}

/* ack(...) for onEvent. upvalues: client box, ack id, used flag. */
static int l_ack(lua_State *L) {
  sl_lua *vm = sl__lua_vm(L);
  if (lua_toboolean(L, lua_upvalueindex(3))) {
    lua_pushboolean(L, 0); /* answered already: each ack id is answered at most once */
    return 1;
  }
  int n = lua_gettop(L);
  sl_socket *s = sl__box_client(L, lua_upvalueindex(1));
  uint64_t id = (uint64_t)lua_tonumber(L, lua_upvalueindex(2));
  sl__box_args_json(L, vm, 1, n, NULL);
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
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return;
  int fn = lua_gettop(L);
  sl__box_push_client(L, s);
  lua_pushstring(L, event ? event : "");
  push_decoded(vm, args_json, len, atts, natts, "onEvent arguments");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    sl__json_mark_array(L, -1);
  }
  if (ack_id >= 0) {
    lua_pushvalue(L, fn + 1); /* client box */
    lua_pushnumber(L, (double)ack_id);
    lua_pushboolean(L, 0);
    lua_pushcclosure(L, l_ack, 3);
  } else {
    lua_pushnil(L);
  }
  sl_lua_call(vm, L, tb, 4, 0, "onEvent", NULL, 0);
  lua_settop(L, top);
  sl__lua_leave(vm);
}

/* sl_lua_socket_gone: see sl_lua.h. */
void sl_lua_socket_gone(sl_lua *vm, sl_socket *s) {
  if (!vm || !s) return;
  sl__box_client_gone(vm->L, s);
}

/* sl_lua_eio_message: see sl_lua.h. */
void sl_lua_eio_message(sl_lua *vm, int ref, sl_eio_conn *c, const uint8_t *data, size_t len,
                        bool binary) {
  lua_State *L = vm->L;
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return;
  sl__box_push_conn(L, c);
  if (binary)
    sl__bytes_push(L, data, len);
  else
    lua_pushlstring(L, (const char *)data, len);
  sl_lua_call(vm, L, tb, 2, 0, "engineIo.onMessage", NULL, 0);
  lua_settop(L, top);
  sl__lua_leave(vm);
}

/* sl_lua_eio_event: see sl_lua.h (onOpen(conn) when reason is NULL, onClose(conn, reason)). */
void sl_lua_eio_event(sl_lua *vm, int ref, sl_eio_conn *c, const char *reason) {
  lua_State *L = vm->L;
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return;
  sl__box_push_conn(L, c);
  if (reason)
    lua_pushstring(L, reason);
  else
    lua_pushnil(L);
  sl_lua_call(vm, L, tb, 2, 0, reason ? "engineIo.onClose" : "engineIo.onOpen", NULL, 0);
  lua_settop(L, top);
  sl__lua_leave(vm);
}

/* sl_lua_eio_gone: see sl_lua.h. */
void sl_lua_eio_gone(sl_lua *vm, sl_eio_conn *c) {
  if (!vm || !c) return;
  sl__box_conn_gone(vm->L, c);
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
const char *const sl_ht_names[SL_HT_KINDS] = {"route", "coalesceKey", "snapshot", "onClientPublish",
                                              "authorize"};

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
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return NULL;
  sl__pv_scope scope;
  sl__pv_enter(&scope);
  vm->uncapped++;
  push_topic(vm, L, topic ? topic : "");
  push_payload(vm, L, &scope, payload_json, len);
  vm->uncapped--;
  char *key = NULL;
  if (sl_lua_call(vm, L, tb, 2, 1, "coalesceKey", NULL, 0) == 0) {
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
  sl__lua_leave(vm);
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
  int source;         /* SL_SRC_* */
  sl_socket *from;    /* publishing client (SL_SRC_CLIENT) or NULL */
  sl__pv_scope scope; /* the views of msg.payload live as long as the call */
  sl_lua *vm;
} msg_ctx;

struct msg_view {
  msg_ctx *ctx; /* NULL outside the hook call: a kept reference then raises */
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
        sl__box_push_client(L, c->from);
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
  sl__lua_push_reg(L, &k_msg_mt);
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
  if (!a || !a->text || !a->len || !sl__json_decode(L, a->text, a->len, a->atts, a->natts, NULL))
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
  sl__lua_push_reg(L, &k_arity);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2); /* stack: arity table, n | nil */
  if (lua_type(L, -1) == LUA_TNUMBER) {
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    return n;
  }
  lua_pop(L, 1); /* stack: arity table */
  int n = INT_MAX;
  sl__lua_push_reg(L, &k_getinfo); /* the pristine debug.getinfo (scripts never see it) */
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, idx);
    lua_pushliteral(L, "u");
    if (sl_lua_call(vm, L, 0, 2, 1, "debug.getinfo", NULL, 0) == 0) {
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "isvararg");
        lua_getfield(L, -2, "nparams");
        if (!lua_toboolean(L, -2) && lua_type(L, -1) == LUA_TNUMBER) n = (int)lua_tointeger(L, -1);
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
  if (sl_lua_call(vm, L, 0, 1, 1, what, NULL, 0)) return NULL;
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
  sl__lua_log_error(vm, what, msg, strlen(msg), NULL);
}

/* sl_route_result_free: see sl_lua.h. Leaves *r as "deliver". r may be NULL. */
void sl_route_result_free(sl_route_result *r) {
  if (r) sl_hooks_route_free(r);
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
  if (lua_type(L, li) == LUA_TSTRING || (clients && sl__box_is_client(L, li))) {
    *out = sl_xcalloc(1, sizeof(char *));
    (*out)[0] = sl_xstrdup(clients ? sl__box_client_id(L, li) : lua_tostring(L, li));
    *n = 1;
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, li)) luaL_error(L, "route result: %s must be a string or a list", key);
  size_t len = lua_objlen(L, li);
  if (len == 0) luaL_error(L, "route result: %s is empty (return false to drop the message)", key);
  if (len > 4096) luaL_error(L, "route result: %s has more than 4096 entries", key);
  *out = sl_xcalloc(len, sizeof(char *));
  for (size_t i = 0; i < len; i++) {
    lua_rawgeti(L, li, (int)i + 1);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && !(clients && sl__box_is_client(L, -1)))
      luaL_error(L, "route result: %s[%d] must be a %s", key, (int)i + 1,
                 clients ? "client id or client" : "topic name");
    const char *s = clients ? sl__box_client_id(L, lua_gettop(L)) : lua_tostring(L, -1);
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
  sl_lua *vm = sl__lua_vm(L);
  sl_route_result *out = lua_touserdata(L, 2);
  lua_settop(L, 1);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!k ||
        (strcmp(k, "payload") && strcmp(k, "topic") && strcmp(k, "topics") && strcmp(k, "to")))
      return luaL_error(L,
                        "route result: unknown field '%s' (expected payload, topic, "
                        "topics or to)",
                        k ? k : luaL_typename(L, -1));
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
    sl__json_reset(vm);
    sl__json_value(L, vm, -1, 0, false);
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
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return 0;
  int fn = lua_gettop(L);
  msg_ctx ctx = {ns ? ns : "", topic ? topic : "", payload_json, len, source, from, {0, NULL}, vm};
  sl__pv_enter(&ctx.scope); /* open until the result is converted: it may hold the payload */
  struct msg_view *v = push_view(vm, &ctx); /* stack: fn, view */
  int nargs = 1;
  if (ref_arity(vm, ref, fn) >= 2) { /* route(msg, payload): the payload without a lookup */
    vm->uncapped++;
    push_payload(vm, L, &ctx.scope, payload_json, len);
    vm->uncapped--;
    nargs = 2;
  }
  int rc = sl_lua_call(vm, L, tb, nargs, 1, "route", NULL, 0);
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
      if (sl_lua_call(vm, L, 0, 2, 0, "route result", NULL, 0)) sl_route_result_free(out);
    } else if (t != LUA_TNIL) {
      bad_result(vm, "route", "must return nil, true, false or a table (got a %s); delivering",
                 lua_typename(L, t));
    }
  }
  lua_settop(L, top);
  sl__pv_leave(&ctx.scope);
  ht_end(vm, SL_HT_ROUTE, t0);
  sl__lua_leave(vm);
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
  lua_State *L = vm->L;
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return 0;
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
    sl__box_push_client(L, s);
  else
    lua_pushnil(L);
  int ok = 0;
  if (sl_lua_call(vm, L, tb, 4, 2, "authorize", NULL, 0) == 0) {
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
                 "refusing",
                 lua_typename(L, t));
    }
  }
  lua_settop(L, top);
  ht_end(vm, SL_HT_AUTHORIZE, t0);
  sl__lua_leave(vm);
  return ok;
}

/* sl_lua_client_publish: see sl_lua.h. The payload is decoded only when the hook declares
 * a third parameter (or is vararg). */
int sl_lua_client_publish(sl_lua *vm, int ref, sl_socket *s, const char *topic,
                          const char *payload_json, size_t len, char **new_payload) {
  *new_payload = NULL;
  if (!vm || ref == SL_NOREF) return 1;
  uint64_t t0 = ht_begin(vm, SL_HT_CLIENT_PUBLISH);
  lua_State *L = vm->L;
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return 1;
  int base = lua_gettop(L); /* fn; the results start here too */
  sl__box_push_client(L, s);
  lua_pushstring(L, topic ? topic : "");
  decode_args a = {payload_json, len, NULL, 0};
  push_lazy_payload(vm, base, 3, &a); /* may put the trampoline at base */
  int ok = 0;
  if (sl_lua_call(vm, L, tb, lua_gettop(L) - base, LUA_MULTRET, "onClientPublish", NULL, 0) == 0) {
    int nres = lua_gettop(L) - base + 1;
    if (nres >= 1 && lua_toboolean(L, base)) {
      ok = 1;
      if (nres >= 2 && !lua_isnil(L, base + 1)) {
        lua_pushvalue(L, base + 1);
        *new_payload = encode_top(vm, "onClientPublish payload", NULL);
        if (!*new_payload) ok = 0; /* an unencodable replacement refuses */
      }
    }
  }
  lua_settop(L, top);
  ht_end(vm, SL_HT_CLIENT_PUBLISH, t0);
  sl__lua_leave(vm);
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
  lua_State *L = vm->L;
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return SL_ELUA;
  int fn = lua_gettop(L);
  bool stale = *state_ref < SL_NOREF; /* SLUICE_SLOT_STALE: another node's state is newer */
  if (stale) *state_ref = SLUICE_SLOT_UNSTALE(*state_ref);
  if (!stale && *state_ref > 0)
    lua_rawgeti(L, LUA_REGISTRYINDEX, *state_ref);
  else if (prev_json && prev_len)
    push_decoded(vm, prev_json, prev_len, NULL, 0, "snapshot previous state");
  else
    lua_pushnil(L);
  lua_pushstring(L, topic ? topic : "");
  decode_args a = {payload_json, len, NULL, 0};
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->tramp_ref);
  lua_insert(L, fn);
  lua_pushlightuserdata(L, &a);
  /* stack: [handler], tramp, fn, state, topic, decode_args* */
  int rc = SL_ELUA;
  if (sl_lua_call(vm, L, tb, 4, 1, "snapshot", NULL, 0) == 0) {
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
  sl__lua_leave(vm);
  return rc;
}

/* sl_lua_unref: release a registry ref made by this VM (a snapshot state). SL_NOREF and
 * refs of a closing VM are ignored. */
void sl_lua_unref(sl_lua *vm, int ref) {
  if (!vm || ref <= 0 || vm->closing) return;
  sl__lua_release(vm, ref);
}

/* sl_lua_server_event: see sl_lua.h. Invalid or missing event JSON gives an empty table. */
void sl_lua_server_event(sl_lua *vm, int ref, const char *event_json, size_t len) {
  if (!vm) return;
  lua_State *L = vm->L;
  int top = lua_gettop(L), tb;
  if (!push_hook(vm, ref, top, &tb)) return;
  push_decoded(vm, event_json, len, NULL, 0, "server event");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  sl_lua_call(vm, L, tb, 1, 0, "server event", NULL, 0);
  lua_settop(L, top);
  sl__lua_leave(vm);
}

static int l_msg_newindex(lua_State *L) {
  return luaL_error(L,
                    "cannot set field '%s': the message is read-only (return a table from "
                    "route to rewrite it)",
                    luaL_optstring(L, 2, "?"));
}

/* sl__lua_inject_hooks: see sl_lua_hooks.h. stack: unchanged */
void sl__lua_inject_hooks(sl_lua *vm) {
  lua_State *L = vm->L;
  static const luaL_Reg msg_mt[] = {{"__index", l_msg_index},
                                    {"__newindex", l_msg_newindex},
                                    {"__tostring", l_msg_tostring},
                                    {NULL, NULL}};
  sl__lua_new_mt(L, &k_msg_mt, msg_mt, NULL, "sluice.message");
  vm->view = new_view(L);
  vm->view_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_call_decoded);
  vm->tramp_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, sl__json_encode_fn);
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
  lua_pushlightuserdata(L, &k_getinfo);
  lua_getglobal(L, "debug");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "getinfo");
    lua_remove(L, -2);
  }
  lua_rawset(L, LUA_REGISTRYINDEX);
}
