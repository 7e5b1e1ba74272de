/* test_luaspec.c - runs every spec/lua/NAME_spec.lua on the gateway's own LuaJIT (an sl_lua VM
 * with a fake core), one fresh VM per spec file, one protected call per test. Prints TAP-like
 * "ok"/"not ok" lines and, last, "N passed, N failed".
 *
 * Spec files get the runner's helpers (describe, it, eq, ok, raises) and these globals backed
 * by C: run_loop(ms), fake_calls(), fake_reset(), load_script(path), fake_event(fn, event,
 * args_json [, ack_id [, binary_string]]), fake_gone(), and the policy hooks as the core
 * calls them: call_route, call_authorize, call_client_publish, call_coalesce, call_snapshot
 * (+ snapshot_reset), call_server_event (each also reports how many Lua errors it counted),
 * set_client(principal), set_instruction_limit(n). SPEC_DIR overrides "spec/lua". */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "testlib.h"
#include "fake_core.c"
#include "sl_config.h"
#include "sl_lua.h"
#include "sl_lua_int.h"

static sl_gateway gw;
static sl_socket spec_client;
static sl_lua *cur_vm;

static void stop_cb(uv_timer_t *t) { uv_stop(t->loop); }

/* run_loop(ms): run the fake gateway's loop for ms milliseconds (timers fire). */
static int l_run_loop(lua_State *L) {
  uv_timer_t t;
  uv_timer_init(&gw.loop, &t);
  uv_timer_start(&t, stop_cb, (uint64_t)luaL_checknumber(L, 1), 0);
  uv_run(&gw.loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&gw.loop, UV_RUN_NOWAIT);
  return 0;
}

/* fake_calls() -> { {what=, ns=, topic=, json=, to=, server=, natts=, att0=, ack_id=}, ... } */
static int l_fake_calls(lua_State *L) {
  lua_createtable(L, fake_ncalls, 0);
  for (int i = 0; i < fake_ncalls; i++) {
    fake_call *c = &fake_calls[i];
    lua_newtable(L);
    lua_pushstring(L, c->what), lua_setfield(L, -2, "what");
    lua_pushstring(L, c->ns), lua_setfield(L, -2, "ns");
    lua_pushstring(L, c->topic), lua_setfield(L, -2, "topic");
    lua_pushstring(L, c->json), lua_setfield(L, -2, "json");
    lua_pushstring(L, c->to), lua_setfield(L, -2, "to");
    lua_pushstring(L, c->server), lua_setfield(L, -2, "server");
    lua_pushinteger(L, (lua_Integer)c->natts), lua_setfield(L, -2, "natts");
    lua_pushlstring(L, c->att0, c->att0_len), lua_setfield(L, -2, "att0");
    lua_pushnumber(L, (double)c->ack_id), lua_setfield(L, -2, "ack_id");
    lua_pushboolean(L, c->binary), lua_setfield(L, -2, "binary");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_fake_reset(lua_State *L) {
  (void)L;
  fake_reset();
  return 0;
}

/* load_script(path) -> hook | nil, message */
static int l_load_script(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char err[512];
  if (sl__lua_load_script(L, path, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* fake_event(fn, event, args_json [, ack_id [, binary]]): deliver an event from the spec
 * client (id "spec-client", namespace "/spec") to fn as the core would. */
static int l_fake_event(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  const char *ev = luaL_checkstring(L, 2);
  size_t len, blen = 0;
  const char *args = luaL_checklstring(L, 3, &len);
  int64_t ack = (int64_t)luaL_optnumber(L, 4, -1);
  const char *bin = luaL_optlstring(L, 5, NULL, &blen);
  sl_bin b = {(const uint8_t *)bin, blen};
  lua_pushvalue(L, 1);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uint64_t before = sl_lua_error_count(cur_vm);
  sl_lua_on_event(cur_vm, ref, &spec_client, ev, args, len, bin ? &b : NULL, bin ? 1 : 0, ack);
  sl__lua_unref(L, ref); /* keeps the VM's hook cache right */
  lua_pushboolean(L, sl_lua_error_count(cur_vm) == before); /* false: the hook raised */
  return 1;
}

static int l_fake_gone(lua_State *L) {
  (void)L;
  sl_lua_socket_gone(cur_vm, &spec_client);
  return 0;
}


/* ---- the policy hooks, called the way the core calls them ---- */

/* stack: fn -> ref (the caller unrefs) */
static int ref_of(lua_State *L, int idx) {
  luaL_checktype(L, idx, LUA_TFUNCTION);
  lua_pushvalue(L, idx);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void push_strv(lua_State *L, char **v, size_t n) {
  if (!n) {
    lua_pushnil(L);
    return;
  }
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, v[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
}

/* call_route(fn, topic, json [, source ("api"|"lua"|"client")]) -> {action=, payload=,
 * topics=, to=, errors=} ; a client source publishes as the spec client. */
static int l_call_route(lua_State *L) {
  int ref = ref_of(L, 1);
  const char *topic = luaL_checkstring(L, 2);
  size_t len;
  const char *json = luaL_checklstring(L, 3, &len);
  const char *src = luaL_optstring(L, 4, "api");
  int source = !strcmp(src, "client") ? SL_SRC_CLIENT : !strcmp(src, "lua") ? SL_SRC_LUA : SL_SRC_API;
  uint64_t before = sl_lua_error_count(cur_vm);
  sl_route_result r;
  sl_lua_route(cur_vm, ref, "/spec", topic, json, len, source,
               source == SL_SRC_CLIENT ? &spec_client : NULL, &r);
  sl__lua_unref(L, ref); /* keeps the VM's hook cache right */
  lua_newtable(L);
  static const char *const names[] = {"deliver", "drop", "rewrite"};
  lua_pushstring(L, names[r.action]);
  lua_setfield(L, -2, "action");
  if (r.payload_json) lua_pushstring(L, r.payload_json), lua_setfield(L, -2, "payload");
  push_strv(L, r.topics, r.ntopics);
  lua_setfield(L, -2, "topics");
  push_strv(L, r.to, r.nto);
  lua_setfield(L, -2, "to");
  lua_pushnumber(L, (double)(sl_lua_error_count(cur_vm) - before));
  lua_setfield(L, -2, "errors");
  sl_route_result_free(&r);
  return 1;
}

/* call_authorize(fn, token|nil, topic|nil) -> accepted, principal|reason, errors */
static int l_call_authorize(lua_State *L) {
  int ref = ref_of(L, 1);
  const char *token = luaL_optstring(L, 2, NULL);
  const char *topic = luaL_optstring(L, 3, NULL);
  uint64_t before = sl_lua_error_count(cur_vm);
  char *principal = NULL, reason[256];
  int ok = sl_lua_authorize(cur_vm, ref, token, "/spec", topic, &spec_client, &principal, reason,
                            sizeof reason);
  sl__lua_unref(L, ref); /* keeps the VM's hook cache right */
  lua_pushboolean(L, ok);
  lua_pushstring(L, ok ? principal : reason);
  lua_pushnumber(L, (double)(sl_lua_error_count(cur_vm) - before));
  free(principal);
  return 3;
}

/* call_client_publish(fn, topic, json) -> allowed, new_payload|nil, errors */
static int l_call_client_publish(lua_State *L) {
  int ref = ref_of(L, 1);
  const char *topic = luaL_checkstring(L, 2);
  size_t len;
  const char *json = luaL_checklstring(L, 3, &len);
  uint64_t before = sl_lua_error_count(cur_vm);
  char *np = NULL;
  int ok = sl_lua_client_publish(cur_vm, ref, &spec_client, topic, json, len, &np);
  sl__lua_unref(L, ref); /* keeps the VM's hook cache right */
  lua_pushboolean(L, ok);
  if (np)
    lua_pushstring(L, np);
  else
    lua_pushnil(L);
  lua_pushnumber(L, (double)(sl_lua_error_count(cur_vm) - before));
  free(np);
  return 3;
}

/* call_coalesce(fn, topic, json) -> key|nil, errors */
static int l_call_coalesce(lua_State *L) {
  int ref = ref_of(L, 1);
  const char *topic = luaL_checkstring(L, 2);
  size_t len;
  const char *json = luaL_checklstring(L, 3, &len);
  uint64_t before = sl_lua_error_count(cur_vm);
  char *k = sl_lua_coalesce_key(cur_vm, ref, topic, json, len);
  sl__lua_unref(L, ref); /* keeps the VM's hook cache right */
  if (k)
    lua_pushstring(L, k);
  else
    lua_pushnil(L);
  lua_pushnumber(L, (double)(sl_lua_error_count(cur_vm) - before));
  free(k);
  return 2;
}

static int snap_state = SL_NOREF;

/* call_snapshot(fn, topic, json [, prev_json]) -> state_json|nil, rc, errors. One state per
 * spec file (snapshot_reset() drops it); prev_json seeds it as after a reload. */
static int l_call_snapshot(lua_State *L) {
  int ref = ref_of(L, 1);
  const char *topic = luaL_checkstring(L, 2);
  size_t len, plen = 0;
  const char *json = luaL_checklstring(L, 3, &len);
  const char *prev = luaL_optlstring(L, 4, NULL, &plen);
  uint64_t before = sl_lua_error_count(cur_vm);
  char *state = NULL;
  int rc = sl_lua_snapshot(cur_vm, ref, &snap_state, prev, plen, topic, json, len, &state);
  sl__lua_unref(L, ref); /* keeps the VM's hook cache right */
  if (state)
    lua_pushstring(L, state);
  else
    lua_pushnil(L);
  lua_pushinteger(L, rc);
  lua_pushnumber(L, (double)(sl_lua_error_count(cur_vm) - before));
  free(state);
  return 3;
}

static int l_snapshot_reset(lua_State *L) {
  (void)L;
  sl_lua_unref(cur_vm, snap_state);
  snap_state = SL_NOREF;
  return 0;
}

/* call_server_event(fn, json) -> errors */
static int l_call_server_event(lua_State *L) {
  int ref = ref_of(L, 1);
  size_t len;
  const char *json = luaL_checklstring(L, 2, &len);
  uint64_t before = sl_lua_error_count(cur_vm);
  sl_lua_server_event(cur_vm, ref, json, len);
  sl__lua_unref(L, ref); /* keeps the VM's hook cache right */
  lua_pushnumber(L, (double)(sl_lua_error_count(cur_vm) - before));
  return 1;
}

/* set_client(principal|nil): the spec client's principal */
static int l_set_client(lua_State *L) {
  static char principal[128];
  const char *p = luaL_optstring(L, 1, NULL);
  if (p) snprintf(principal, sizeof principal, "%s", p);
  spec_client.principal = p ? principal : NULL;
  return 0;
}

/* set_instruction_limit(n): this spec file's VM budget per call (0 = unlimited) */
static int l_set_instruction_limit(lua_State *L) {
  sl__lua_set_limits(cur_vm, (uint64_t)luaL_checknumber(L, 1), (size_t)256 << 20);
  return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void run_file(const char *dir, const char *file) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  sl_lua *vm = sl_lua_new(&gw);
  cur_vm = vm;
  fake_reset();
  fake_socket_init(&spec_client, "spec-client", "/spec");
  lua_State *L = sl_lua_state(vm);
  static const luaL_Reg fns[] = {{"run_loop", l_run_loop},       {"fake_calls", l_fake_calls},
                                 {"fake_reset", l_fake_reset},   {"load_script", l_load_script},
                                 {"fake_event", l_fake_event},   {"fake_gone", l_fake_gone},
                                 {"call_route", l_call_route},
                                 {"call_authorize", l_call_authorize},
                                 {"call_client_publish", l_call_client_publish},
                                 {"call_coalesce", l_call_coalesce},
                                 {"call_snapshot", l_call_snapshot},
                                 {"snapshot_reset", l_snapshot_reset},
                                 {"call_server_event", l_call_server_event},
                                 {"set_client", l_set_client},
                                 {"set_instruction_limit", l_set_instruction_limit},
                                 {NULL, NULL}};
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setglobal(L, r->name);
  }
  lua_pushstring(L, dir);
  lua_setglobal(L, "SPEC_DIR");
  char err[2048];
  char runner[1024];
  snprintf(runner, sizeof runner, "%s/runner.lua", dir);
  if (luaL_loadfile(L, runner) || sl_lua_call(NULL, L, 0, 0, 1, "config", err, sizeof err)) {
    if (lua_isstring(L, -1)) snprintf(err, sizeof err, "%s", lua_tostring(L, -1));
    printf("not ok - %s: cannot load the runner: %s\n", file, err);
    tl_failed++;
    sl_lua_close(vm);
    return;
  }
  lua_getfield(L, -1, "collect");
  lua_pushstring(L, path);
  if (sl_lua_call(NULL, L, 0, 1, 1, "config", err, sizeof err)) {
    printf("not ok - %s: %s\n", file, err);
    tl_failed++;
  } else {
    int tests = lua_gettop(L);
    int n = (int)lua_objlen(L, tests);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, tests, i);
      lua_getfield(L, -1, "name");
      char name[512];
      snprintf(name, sizeof name, "%s", lua_tostring(L, -1));
      lua_pop(L, 1);
      lua_getfield(L, -1, "fn");
      uv_update_time(&gw.loop); /* timers a test starts count from now */
      tl_cur = name;
      tl_cur_failed = 0;
      if (sl_lua_call(NULL, L, 0, 0, 0, "config", err, sizeof err)) {
        tl_cur_failed = 1;
        printf("not ok - %s: %s\n  # %s\n", file, name, err);
        tl_failed++;
      } else {
        printf("ok - %s: %s\n", file, name);
        tl_passed++;
      }
      lua_pop(L, 1);
    }
  }
  sl_lua_socket_gone(vm, &spec_client);
  snap_state = SL_NOREF; /* belongs to the VM being closed */
  sl_lua_close(vm);
  uv_run(&gw.loop, UV_RUN_NOWAIT); /* let closing timer handles finish */
  fflush(stdout);
}

int main(void) {
  sl_log_threshold = getenv("SLUICE_TEST_VERBOSE") ? SL_LOG_DEBUG : SL_LOG_ERROR;
  const char *dir = getenv("SPEC_DIR") ? getenv("SPEC_DIR") : "spec/lua";
  fake_gateway_init(&gw);
  DIR *d = opendir(dir);
  if (!d) {
    printf("not ok - cannot open %s\n", dir);
    tl_failed++;
    return tl_report();
  }
  char *names[256];
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 256) {
    size_t len = strlen(e->d_name);
    if (len > 9 && strcmp(e->d_name + len - 9, "_spec.lua") == 0) names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof names[0], cmp);
  for (size_t i = 0; i < n; i++) {
    run_file(dir, names[i]);
    free(names[i]);
  }
  uv_run(&gw.loop, UV_RUN_NOWAIT);
  uv_loop_close(&gw.loop);
  return tl_report();
}
