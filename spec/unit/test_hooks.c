/* test_hooks.c - the hooks table (core/hooks.c, sluice_set_hooks): how C hooks and a config's
 * Lua hooks combine and what a reload keeps. A gateway from a config file whose Lua route
 * drops every message (counted in the namespace's route_dropped); a C route hook counts its
 * calls and delivers. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include "sl_internal.h"
#include "testlib.h"

static const char *cfg_text =
  "return { servers = { main = { host = '127.0.0.1', port = 0,\n"
  "  onConnect = function(ev) end,\n"
  "  namespaces = { { path = '/feed', topics = { 'prices' },\n"
  "                   route = function(msg) return false end } } } } }\n";

static int c_routes;
static void c_route(void *ud, const sluice_message *m, sluice_route_result *out) {
  (void)out;
  c_routes++;
  CHECK(ud == &c_routes);
  CHECK_EQ_STR(m->ns, "/feed");
  CHECK_EQ_STR(m->topic, "prices");
  CHECK_EQ_INT(m->source, SLUICE_SRC_API);
}
static void c_event(void *ud, const sluice_event *ev) { (void)ud; (void)ev; }

static char *write_cfg(void) {
  static char path[] = "/tmp/sluice-test-hooks-XXXXXX.lua";
  int fd = mkstemps(path, 4);
  if (fd < 0) return NULL;
  if (write(fd, cfg_text, strlen(cfg_text)) != (ssize_t)strlen(cfg_text)) path[0] = 0;
  close(fd);
  return path;
}

static uint64_t dropped(sluice_t *gw) { return gw->servers[0].ns[0].route_dropped; }

TEST(set_hooks_validates_its_target_and_table) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_string(&loop, cfg_text, strlen(cfg_text), "lua", err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  sluice_hooks ns = {.route = c_route}, srv = {.on_subscribe = c_event};
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, NULL, &ns, NULL), SL_EINVAL);   /* policy, no ns */
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/feed", &srv, NULL), SL_EINVAL); /* event, ns */
  CHECK_EQ_INT(sluice_set_hooks(gw, "nope", "/feed", &ns, NULL), SL_ENOENT);
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/nope", &ns, NULL), SL_ENOENT);
  CHECK_EQ_INT(gw->nhookregs, 0);
  CHECK_EQ_INT(sluice_set_hooks(gw, "main", NULL, &srv, NULL), 0);
  CHECK(gw->servers[0].hooks.fn.on_subscribe == c_event);
  /* the Lua onConnect is the script's, untouched by a C table without on_connect */
  CHECK(gw->servers[0].hooks.fn.on_connect != NULL);
  CHECK(gw->servers[0].hooks.fn.on_connect == gw->servers[0].hooks.script.on_connect);
  CHECK(gw->servers[0].hooks.fn.on_disconnect == NULL); /* set by nobody: no cost */
  CHECK_EQ_INT(sluice_set_hooks(gw, "main", NULL, NULL, NULL), 0);
  CHECK(gw->servers[0].hooks.fn.on_subscribe == NULL);
  CHECK_EQ_INT(gw->nhookregs, 0);
  sluice_stop(gw, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  sluice_free(gw);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(c_route_takes_precedence_over_lua_and_survives_a_reload) {
  char *path = write_cfg();
  CHECK(path && path[0]);
  if (!path || !path[0]) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_file(&loop, path, err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  CHECK_EQ_INT(sluice_start(gw, err, sizeof err), 0);
  /* Lua alone: its route drops */
  CHECK_EQ_INT(sluice_publish(gw, "/feed", "prices", "{\"a\":1}", 7, NULL, NULL), 0);
  CHECK_EQ_INT(dropped(gw), 1);
  /* a C route for every server's /feed replaces the Lua one */
  sluice_hooks h = {.route = c_route};
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/feed", &h, &c_routes), 0);
  CHECK_EQ_INT(sluice_publish(gw, "/feed", "prices", "{\"a\":2}", 7, NULL, NULL), 0);
  CHECK_EQ_INT(c_routes, 1);
  CHECK_EQ_INT(dropped(gw), 1);
  /* a reload replaces the Lua generation; the C registration stays in front of it */
  CHECK_EQ_INT(sluice_reload(gw, err, sizeof err), 0);
  CHECK_EQ_INT(gw->reloads_ok, 1);
  CHECK_EQ_INT(sluice_publish(gw, "/feed", "prices", "{\"a\":3}", 7, NULL, NULL), 0);
  CHECK_EQ_INT(c_routes, 2);
  CHECK_EQ_INT(dropped(gw), 1);
  /* removing it brings back the new generation's Lua route */
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/feed", NULL, NULL), 0);
  CHECK_EQ_INT(sluice_publish(gw, "/feed", "prices", "{\"a\":4}", 7, NULL, NULL), 0);
  CHECK_EQ_INT(c_routes, 2);
  CHECK_EQ_INT(dropped(gw), 2);
  /* after stop no script hook is left to call into the closed VM */
  sluice_stop(gw, NULL, NULL);
  CHECK(gw->servers[0].ns[0].hooks.fn.route == NULL);
  CHECK(gw->servers[0].hooks.fn.on_connect == NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  sluice_free(gw);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  unlink(path);
}

int main(void) {
  RUN(set_hooks_validates_its_target_and_table);
  RUN(c_route_takes_precedence_over_lua_and_survives_a_reload);
  return tl_report();
}
