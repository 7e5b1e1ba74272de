/* gateway.h - the top of the core: a gateway built from a config data model (sl_config),
 * started, swapped to a new config on reload, stopped and freed.
 *
 * The core knows no config syntax and no script VM. Whoever loads configs (lua/embed.c: the
 * file-based sluice_new_from_file / sluice_reload) is the gateway's embedder: it builds the
 * gateway from a loaded config, owns every config generation and whatever executes its hooks,
 * and hands the core an sl_gateway_ops table for what the core must ask of it (reload on
 * SIGHUP / file change / POST /api/reload, script statistics for /metrics, stop, free). */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include <stddef.h>
#include <stdint.h>
#include "sl_core.h"

struct sl_config;

/* Statistics of the embedder's script engine (Lua), for /metrics. */
typedef struct sl_script_stats {
  uint64_t errors;     /* errors raised by scripts since the gateway was created */
  size_t memory_bytes; /* memory of the running script VM (0 when none) */
} sl_script_stats;

/* What the core asks of its embedder. Every member may be NULL. */
typedef struct sl_gateway_ops {
  /* reload: load the configuration again and put it in place with sl_gateway_swap. Return 0,
   * or a negative SL_E* code with a one-line message in err (nothing changed). The core
   * counts, times and logs the outcome (sl_gateway_reload). */
  int (*reload)(void *ud, char *err, size_t errlen);
  /* stats: fill *st (called per GET /metrics). */
  void (*stats)(void *ud, sl_script_stats *st);
  /* stop: sluice_stop closed every session; stop what runs on the loop (timers of a VM). The
   * script slots of the hooks are already cleared. */
  void (*stop)(void *ud);
  /* destroy: sluice_free released the gateway's own state; free the configs and ud. */
  void (*destroy)(void *ud);
} sl_gateway_ops;

/* sl_gateway_new: an empty gateway on loop (no servers until sl_gateway_build). Never NULL
 * (aborts on OOM). Release with sluice_free, built or not. */
sl_gateway *sl_gateway_new(uv_loop_t *loop);

/* sl_gateway_build: create the servers and namespaces of cfg (borrowed: the embedder owns it
 * and must keep it until it is swapped out or the gateway is freed), then resolve the hooks.
 * Call once, before sluice_start. */
void sl_gateway_build(sl_gateway *gw, struct sl_config *cfg);

/* sl_gateway_set_ops: install the embedder's table (copied) and its user data. */
void sl_gateway_set_ops(sl_gateway *gw, const sl_gateway_ops *ops, void *ud);

/* sl_gateway_config: the config in place (NULL before sl_gateway_build). */
struct sl_config *sl_gateway_config(sl_gateway *gw);

/* sl_gateway_hook_times: the gateway's hook timing histograms (SL_HOOK_TIMED_KINDS of them,
 * hooks.h); they outlive reloads, so each script VM records into these. */
sl_lathist *sl_gateway_hook_times(sl_gateway *gw);

/* sl_gateway_swap: put config nc in place of the running one without dropping a connection.
 * Adding or removing servers, or changing a server's host or port, is refused (SL_ECONFIG,
 * message in err, nothing changed). Otherwise namespaces and topics are reconciled by name
 * (kept ones keep their subscribers, queues and counters; removed topics unsubscribe their
 * subscribers; removed namespaces send their clients a DISCONNECT) while the old hooks still
 * run, the servers point at nc, and every script slot is cleared: the caller installs the new
 * generation's hooks (sl_hooks_set_script) and may then free the old config. C hooks stay.
 * Returns 0 or SL_ECONFIG. */
SL_WUR int sl_gateway_swap(sl_gateway *gw, struct sl_config *nc, char *err, size_t errlen);

/* sl_gateway_flush_dirty: the loop's safe point (its prepare and check handles): flush every
 * session that got packets during this iteration, then free the sessions and sockets
 * released during it, which nothing up the stack can hold any more. */
void sl_gateway_flush_dirty(sl_gateway *gw);

/* sl_gateway_reload: the reload the core triggers (SIGHUP, config file watch, POST
 * /api/reload, sluice_reload): calls ops.reload, counts the outcome (sluice_reloads_total),
 * times it and logs it. Returns 0, SL_ESTATE (stopping, or no reload callback: err says so)
 * or the callback's error. */
int sl_gateway_reload(sl_gateway *gw, char *err, size_t errlen);

#endif
