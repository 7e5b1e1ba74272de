/* embed.c - Sluice embedded in a C program, with its policy written in C.
 *
 *   build/examples/embed [CONFIG] [--seconds N]
 *
 * Creates a gateway from CONFIG (a .lua/.json/.yaml file) or, without one, from a built-in
 * config (namespace /feed, topic "prices", an OS-assigned port on 127.0.0.1), then installs
 * C hooks next to whatever Lua hooks the config has:
 *
 *   route on /feed      drops a message whose payload has "drop":true and wraps every other
 *                       one as {"routed":"c","original":<payload>}
 *   on_connect (server) prints "connect <client id> <namespace>" on stdout
 *
 * and publishes {"n":i,"drop":<i odd>} on /feed "prices" from C every 100 ms. Stops on SIGINT
 * or SIGTERM (sluice_handle_signals), or after N seconds. A subscriber therefore receives
 * only the even ticks, wrapped. spec/e2e/embed.test.mjs runs it with socket.io-client. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "sluice.h"

static const char builtin[] =
    "return { servers = { main = { host = '127.0.0.1', port = 0,\n"
    "  namespaces = { { path = '/feed', topics = { 'prices' } } } } } }\n";

/* route: one call per publish, before anything is encoded. out arrives zeroed (deliver). */
static void route(void *ud, const sluice_message *m, sluice_route_result *out) {
  unsigned long *dropped = ud;
  if (memmem(m->payload, m->len, "\"drop\":true", 11)) {
    out->action = SLUICE_ROUTE_DROP;
    ++*dropped;
    return;
  }
  static const char pre[] = "{\"routed\":\"c\",\"original\":";
  char *p = malloc(sizeof pre + m->len + 1); /* the core frees it */
  if (!p) return;                            /* deliver unchanged */
  memcpy(p, pre, sizeof pre - 1);
  memcpy(p + sizeof pre - 1, m->payload, m->len);
  memcpy(p + sizeof pre - 1 + m->len, "}", 2);
  out->action = SLUICE_ROUTE_REWRITE;
  out->payload_json = p;
}

static void on_connect(void *ud, const sluice_event *ev) {
  (void)ud;
  printf("connect %s %s\n", ev->client_id, ev->ns);
  fflush(stdout);
}

typedef struct app {
  sluice_t *gw;
  uv_timer_t tick, deadline;
  unsigned long n, dropped;
} app;

static void on_tick(uv_timer_t *t) {
  app *a = t->data;
  char json[64];
  int len =
      snprintf(json, sizeof json, "{\"n\":%lu,\"drop\":%s}", a->n, a->n % 2 ? "true" : "false");
  a->n++;
  sluice_publish(a->gw, "/feed", "prices", json, (size_t)len, NULL, NULL);
}

static void on_deadline(uv_timer_t *t) {
  app *a = t->data;
  sluice_stop(a->gw, NULL, NULL);
}

int main(int argc, char **argv) {
  const char *config = NULL;
  double seconds = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
      seconds = atof(argv[++i]);
    else
      config = argv[i];
  }
  uv_loop_t *loop = uv_default_loop();
  char err[1024];
  app a = {0};
  a.gw = config ? sluice_new_from_file(loop, config, err, sizeof err)
                : sluice_new_from_string(loop, builtin, sizeof builtin - 1, "lua", err, sizeof err);
  if (!a.gw) {
    fprintf(stderr, "embed: %s\n", err);
    return 1;
  }
  sluice_hooks ns_hooks = {.route = route};
  sluice_hooks server_hooks = {.on_connect = on_connect};
  int r = sluice_set_hooks(a.gw, NULL, "/feed", &ns_hooks, &a.dropped);
  if (r == 0) r = sluice_set_hooks(a.gw, NULL, NULL, &server_hooks, NULL);
  if (r != 0) {
    fprintf(stderr, "embed: sluice_set_hooks: %s\n", sluice_strerror(r));
    sluice_free(a.gw);
    return 1;
  }
  sluice_handle_signals(a.gw);
  if (sluice_start(a.gw, err, sizeof err) != 0) {
    fprintf(stderr, "embed: %s\n", err);
    sluice_stop(a.gw, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    sluice_free(a.gw);
    return 1;
  }
  printf("embed: listening on port %d\n", sluice_port(a.gw, 0));
  fflush(stdout);
  /* Our timers do not keep the loop alive: it runs until the gateway's handles are closed. */
  uv_timer_init(loop, &a.tick);
  a.tick.data = &a;
  uv_timer_start(&a.tick, on_tick, 100, 100);
  uv_unref((uv_handle_t *)&a.tick);
  uv_timer_init(loop, &a.deadline);
  a.deadline.data = &a;
  if (seconds > 0) uv_timer_start(&a.deadline, on_deadline, (uint64_t)(seconds * 1000), 0);
  uv_unref((uv_handle_t *)&a.deadline);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&a.tick, NULL);
  uv_close((uv_handle_t *)&a.deadline, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  sluice_free(a.gw);
  printf("embed: stopped after %lu publishes (%lu dropped by the C route hook)\n", a.n, a.dropped);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}
