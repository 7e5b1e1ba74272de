/* bench_hooks.c - per-publish cost of the Lua policy hooks (DESIGN.md 5: a route or
 * coalesceKey hook costs at most 100 ns per publish), with and without reading the payload.
 *
 * Runs each hook the way the core calls it (sl_lua_route / sl_lua_coalesce_key_buf / ...) on a
 * VM with the default limits (instruction budget on, JIT off for hook functions) against the
 * recording fake core, and prints ns/call. A benchmark, not a test: it asserts nothing.
 *
 *   cc -O2 -Icore -Ilua -Ispec/unit $(pkg-config --cflags luajit) spec/lua/bench_hooks.c \
 *      build/libsluice.a -luv -lluajit-5.1 -lwslay -lcjson -lyaml -lhttp_parser -lcrypto \
 *      -lz -lm -lpthread -ldl -o build/bench/bench_hooks && build/bench/bench_hooks [iters [name]]
 *
 * With a name, only the cases whose name contains it run (for perf record). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "fake_core.c"
#include "sl_config.h"
#include "sl_lua.h"
#include "sl_lua_int.h"

static const char payload[] =
    "{\"symbol\":\"AAPL\",\"venue\":\"XNAS\",\"price\":187.23,\"size\":100,\"ts\":1732740000000}";

/* The bench producer's payload as the encoder writes it (spec/bench/sluice-bench.lua): the
 * field the hooks read is the third member, after a 40-byte string. */
static const char payload_bench[] =
    "{\"data\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"seq\":5,\"sym\":\"S5\","
    "\"ts\":\"1732740000000000\"}";

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: robust on a busy machine */
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A ref to the function returned by src, prepared like a config hook (JIT off). */
static int fn_ref(sl_lua *vm, const char *src) {
  lua_State *L = sl_lua_state(vm);
  char err[512];
  if (luaL_loadstring(L, src)) {
    fprintf(stderr, "bench_hooks: %s\n", lua_tostring(L, -1));
    exit(2);
  }
  sl__lua_hook_prepare(L, -1);
  if (sl_lua_call(NULL, L, 0, 0, 1, "config", err, sizeof err)) {
    fprintf(stderr, "bench_hooks: %s\n", err);
    exit(2);
  }
  sl__lua_hook_prepare(L, -1);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

typedef enum { ROUTE, COALESCE, CLIENT_PUBLISH } kind;

static double bench(sl_lua *vm, kind k, int ref, long iters, const char *pl, size_t len) {
  sl_route_result r;
  sl_socket s;
  fake_socket_init(&s, "c-1", "/feed");
  double best = 1e30;
  for (int round = 0; round < 5; round++) {
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
      if (k == ROUTE) {
        sl_lua_route(vm, ref, "/feed", "prices", pl, len, SL_SRC_API, NULL, &r);
        if (r.action != SL_ROUTE_DELIVER) sl_route_result_free(&r);
      } else if (k == COALESCE) {
        char kb[256];
        char *key = sl_lua_coalesce_key_buf(vm, ref, "prices", pl, len, kb, sizeof kb);
        if (key != kb) free(key);
      } else {
        char *np = NULL;
        sl_lua_client_publish(vm, ref, &s, "prices", pl, len, &np);
        free(np);
      }
    }
    double per = (now_ns() - t0) / (double)iters;
    if (per < best) best = per;
  }
  sl_lua_socket_gone(vm, &s);
  return best;
}

int main(int argc, char **argv) {
  long iters = argc > 1 ? atol(argv[1]) : 200000;
  const char *only = argc > 2 ? argv[2] : NULL; /* run only the cases whose name has this */
  sl_log_threshold = SL_LOG_ERROR;
  sl_gateway gw;
  fake_gateway_init(&gw);
  sl_lua *vm = sl_lua_new(&gw);
  struct {
    const char *name;
    kind k;
    const char *src;
    bool bench_payload; /* the bench payload instead of the ticker one */
  } cases[] = {
      {"no hook (SL_NOREF)", ROUTE, NULL, false},
      {"route: return true", ROUTE, "return function(msg) return true end", false},
      {"route: reads msg.topic", ROUTE,
       "return function(msg) if msg.topic == 'x' then return false end end", false},
      {"route: reads msg.payload.symbol", ROUTE,
       "return function(msg) if msg.payload.symbol == 'x' then return false end end", false},
      {"route(msg, payload): reads payload.symbol", ROUTE,
       "return function(msg, p) if p.symbol == 'x' then return false end end", false},
      {"route: rewrite topic", ROUTE, "return function(msg) return {topic = 'prices.eu'} end", false},
      {"coalesceKey(topic)", COALESCE, "return function(topic) return topic end", false},
      {"coalesceKey(topic, payload) payload.symbol", COALESCE,
       "return function(topic, p) return p.symbol end", false},
      {"coalesceKey(topic, payload) payload.sym, 3rd member (bench payload)", COALESCE,
       "return function(topic, p) return p.sym end", true},
      {"coalesceKey keys.fields('symbol','venue')", COALESCE,
       "return require('keys').fields('symbol', 'venue')", false},
      {"onClientPublish(client, topic)", CLIENT_PUBLISH,
       "return function(client, topic) return true end", false},
  };
  printf("%-48s %10s\n", "hook", "ns/call");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (only && !strstr(cases[i].name, only)) continue;
    int ref = cases[i].src ? fn_ref(vm, cases[i].src) : SL_NOREF;
    const char *pl = cases[i].bench_payload ? payload_bench : payload;
    size_t len = cases[i].bench_payload ? sizeof payload_bench - 1 : sizeof payload - 1;
    bench(vm, cases[i].k, ref, iters / 10, pl, len); /* warm up */
    printf("%-48s %10.1f\n", cases[i].name, bench(vm, cases[i].k, ref, iters, pl, len));
  }
  printf("lua errors: %llu\n", (unsigned long long)sl_lua_error_count(vm));
  sl_lua_close(vm);
  uv_run(&gw.loop, UV_RUN_NOWAIT);
  uv_loop_close(&gw.loop);
  return 0;
}
