/* embed.c - the file-based embedding entry points of sluice.h: sluice_new_from_file,
 * sluice_new_from_string and sluice_reload.
 *
 * This is the gateway's embedder (core/gateway.h): it loads a config into a fresh Lua VM,
 * builds the gateway from it (sl_gateway_build) and registers the config's Lua hooks as the
 * script slot of the hooks table (policy.c). A reload (SIGHUP, file watch, POST /api/reload,
 * sluice_reload, all through sl_gateway_reload) loads the file again into another fresh VM,
 * has the core swap it in (sl_gateway_swap), registers the new generation's hooks, and only
 * then frees the old config and closes the old VM. The configs and VMs belong to this file;
 * the core borrows the config in place. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "sluice.h"
#include "hooks.h"
#include "gateway.h"
#include "sl_config.h"
#include "sl_lua.h"
#include "sl_policy.h"

_Static_assert(SL_HT_KINDS == SL_HOOK_TIMED_KINDS, "hook timing kinds");
_Static_assert(SL_HT_SAMPLE_EVERY == SL_HOOK_SAMPLE_EVERY, "hook timing rate");

/* One gateway's Lua side: the config generation in place. */
typedef struct embed {
  sl_gateway *gw;
  sl_lua *vm; /* NULL after sluice_stop */
  sl_config *cfg;
  sl_lua_policy *pol; /* the Lua hooks of cfg, registered in the gateway */
  uint64_t errors;    /* Lua errors of closed VMs (keeps the counter monotonic) */
} embed;

static sl_lua *new_vm(sl_gateway *gw) {
  sl_lua *vm = sl_lua_new(gw);
  sl_lua_set_hook_times(vm, sl_gateway_hook_times(gw));
  return vm;
}

/* Put vm + cfg in place as the running generation and register its hooks. */
static void take(embed *e, sl_lua *vm, sl_config *cfg) {
  e->vm = vm;
  e->cfg = cfg;
  e->pol = sl_lua_policy_install(e->gw, vm, cfg);
  sl_lua_set_watchdog(vm, (uint32_t)cfg->lua_watchdog_ms);
}

static void close_vm(embed *e, sl_lua *vm) {
  e->errors += sl_lua_error_count(vm);
  sl_lua_close(vm);
}

static int embed_reload(void *ud, char *err, size_t errlen) {
  embed *e = ud;
  sl_lua *vm = new_vm(e->gw);
  sl_config *nc = NULL;
  int r = sl_config_load(sl_lua_state(vm), e->cfg->path, &nc, err, errlen);
  if (r == 0) r = sl_gateway_swap(e->gw, nc, err, errlen);
  if (r != 0) {
    if (nc) sl_config_free(nc);
    sl_lua_close(vm);
    return r;
  }
  sl_config *oc = e->cfg;
  sl_lua *ovm = e->vm;
  sl_lua_policy *opol = e->pol;
  take(e, vm, nc);
  sl_config_free(oc); /* unrefs hooks in the old VM, still open */
  if (ovm) close_vm(e, ovm);
  sl_lua_policy_free(opol);
  sl_hooks_on_start(e->gw, true); /* the new VM's onStart (a C on_start ran once) */
  return 0;
}

static void embed_stats(void *ud, sl_script_stats *st) {
  embed *e = ud;
  st->errors = e->errors + (e->vm ? sl_lua_error_count(e->vm) : 0);
  st->memory_bytes = e->vm ? sl_lua_memory_bytes(e->vm) : 0;
}

/* sluice_stop: the script slots are cleared already; close the VM (its timers stop). */
static void embed_stop(void *ud) {
  embed *e = ud;
  if (!e->vm) return;
  if (e->cfg) e->cfg->L = NULL;
  close_vm(e, e->vm);
  e->vm = NULL;
  sl_lua_policy_free(e->pol);
  e->pol = NULL;
}

static void embed_destroy(void *ud) {
  embed *e = ud;
  if (e->cfg) sl_config_free(e->cfg);
  if (e->vm) sl_lua_close(e->vm);
  sl_lua_policy_free(e->pol);
  free(e);
}

static const sl_gateway_ops embed_ops = {
    .reload = embed_reload, .stats = embed_stats, .stop = embed_stop, .destroy = embed_destroy};

/* A gateway with its embedder and a fresh VM, no config yet. */
static embed *embed_new(uv_loop_t *loop) {
  embed *e = sl_xcalloc(1, sizeof *e);
  e->gw = sl_gateway_new(loop);
  sl_gateway_set_ops(e->gw, &embed_ops, e);
  e->vm = new_vm(e->gw);
  return e;
}

/* Build the gateway from the loaded config, or release everything when loading failed. */
static sluice_t *embed_finish(embed *e, int rc, sl_config *cfg) {
  if (rc != 0) {
    sluice_free(e->gw); /* embed_destroy closes the VM and frees e */
    return NULL;
  }
  sl_gateway_build(e->gw, cfg);
  take(e, e->vm, cfg);
  return e->gw;
}

/* sluice_new_from_file: see sluice.h. */
sluice_t *sluice_new_from_file(uv_loop_t *loop, const char *path, char *err, size_t errlen) {
  embed *e = embed_new(loop);
  sl_config *cfg = NULL;
  int rc = sl_config_load(sl_lua_state(e->vm), path, &cfg, err, errlen);
  return embed_finish(e, rc, cfg);
}

/* sluice_new_from_string: see sluice.h. */
sluice_t *sluice_new_from_string(uv_loop_t *loop, const char *text, size_t len, const char *fmt,
                                 char *err, size_t errlen) {
  embed *e = embed_new(loop);
  sl_config *cfg = NULL;
  int rc =
      sl_config_load_string(sl_lua_state(e->vm), text, len, fmt, "<string>", &cfg, err, errlen);
  return embed_finish(e, rc, cfg);
}

/* sluice_reload: see sluice.h. The work is embed_reload, reached through the core so that
 * every trigger is counted and logged alike. */
int sluice_reload(sluice_t *gw, char *err, size_t errlen) {
  return sl_gateway_reload(gw, err, errlen);
}
