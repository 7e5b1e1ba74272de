/* hooks.h - the seam between the core and its policy: the hooks table (sluice_hooks, public
 * in sluice.h) as the core stores and fires it.
 *
 * Every namespace and every server holds one sl_hookset: the effective function and user data
 * per hook kind, resolved from two sources:
 *
 *   C registrations   sluice_set_hooks(gw, server|NULL, ns|NULL, table, ud); kept by the
 *                     gateway by name, so they survive reloads;
 *   the script slot   one table + ud per namespace/server installed by the config loader
 *                     (lua/policy.c, the Lua implementation); replaced on every reload.
 *
 * Per kind: the C registration for the named server, else the one for every server (NULL),
 * else the script's, else NULL. The core tests the pointer and does no work for an unset kind.
 * The release kinds (client_free, eio_free) are the exception: the effective C hook and the
 * script's both run (sl_hooks_client_free, sl_hooks_eio_free), because the script side must
 * always invalidate the boxes it handed out.
 *
 * This module is in the bottom layer: it reads the core's structs and calls nothing above it.
 * The core calls the sl_hooks_* dispatchers; lua/ calls sl_hooks_set_script. */
#ifndef SL_HOOKS_H
#define SL_HOOKS_H

#include <stdbool.h>
#include "sluice.h"
#include "sl_core.h"

struct sl_ns;

/* One index per member of sluice_hooks, in order: namespace kinds, then server kinds (the
 * lifecycle events in sluice_event_type order, on_start, client_free, the raw endpoint's,
 * allow_request). */
enum {
  SL_HK_ROUTE,
  SL_HK_COALESCE_KEY,
  SL_HK_SNAPSHOT,
  SL_HK_AUTHORIZE,
  SL_HK_CLIENT_PUBLISH,
  SL_HK_CONNECT,
  SL_HK_EVENT,
  SL_HK_ON_CONNECT,
  SL_HK_ON_DISCONNECT,
  SL_HK_ON_SUBSCRIBE,
  SL_HK_ON_UNSUBSCRIBE,
  SL_HK_ON_OVERFLOW,
  SL_HK_ON_RETRY_EXHAUSTED,
  SL_HK_ON_START,
  SL_HK_CLIENT_FREE,
  SL_HK_EIO_OPEN,
  SL_HK_EIO_MESSAGE,
  SL_HK_EIO_CLOSE,
  SL_HK_EIO_FREE,
  SL_HK_ALLOW_REQUEST,
  SL_HK_KINDS,
  SL_HK_FIRST_SERVER = SL_HK_ON_CONNECT
};

/* Server lifecycle events (sl_hooks_event), in sluice_event_type order (checked in hooks.c). */
enum {
  SL_EV_CONNECT,
  SL_EV_DISCONNECT,
  SL_EV_SUBSCRIBE,
  SL_EV_UNSUBSCRIBE,
  SL_EV_OVERFLOW,
  SL_EV_RETRY_EXHAUSTED
};

/* The hooks of one namespace or server. Embedded in sl_ns and sl_server; all zero = none. */
typedef struct sl_hookset {
  sluice_hooks fn;       /* effective hook per kind (read by the core's call sites) */
  void *ud[SL_HK_KINDS]; /* user data of each effective hook */
  sluice_hooks script;   /* the config generation's table (script slot) */
  void *script_ud;
} sl_hookset;

/* One C registration (sluice_set_hooks), owned by the gateway. */
typedef struct sl_hookreg {
  char *server; /* NULL = every server */
  char *ns;     /* NULL = server-level hooks */
  sluice_hooks h;
  void *ud;
} sl_hookreg;

/* Hook calls the gateway times (sampled, one in SL_HOOK_SAMPLE_EVERY of each kind) into
 * gw->hook_times; exported as sluice_lua_hook_duration_seconds. The order and the rate are
 * those of lua/sl_lua.h's SL_HT_* (checked there by lua/embed.c). */
#define SL_HOOK_TIMED_KINDS 5
#define SL_HOOK_SAMPLE_EVERY 16
#define SL_HOOK_SAMPLE_EVERY_STR "16"                             /* the same, for help texts */
extern const char *const sl_hook_time_names[SL_HOOK_TIMED_KINDS]; /* "route", ... */

/* sl_hooks_set_script: install the script slot of namespace ns (or, ns NULL, of the server)
 * of the server named server (NULL: every server), then re-resolve. The table is copied; h
 * NULL clears the slot. ud must stay valid until the slot is replaced or cleared (a reload
 * clears every slot, see sl_gateway_swap; sluice_stop clears them before it calls the
 * embedder's stop). Returns 0 or SL_ENOENT (no such server / namespace). */
int sl_hooks_set_script(sl_gateway *gw, const char *server, const char *ns, const sluice_hooks *h,
                        void *ud);

/* sl_hooks_clear_script: clear every script slot of the gateway and re-resolve. */
void sl_hooks_clear_script(sl_gateway *gw);

/* sl_hooks_resolve: recompute every namespace's and server's effective hooks from the C
 * registrations and the script slots. Called after the topology or a source changed. */
void sl_hooks_resolve(sl_gateway *gw);

/* sl_hooks_free: release the gateway's C registrations. */
void sl_hooks_free(sl_gateway *gw);

/* sl_hooks_event: fire a server lifecycle event (type SLUICE_EV_*) with the fields the core
 * knows (sock, topic, reason, msgid may be NULL; retries is for RETRY_EXHAUSTED). Does no
 * work when the server has no hook for that type. */
void sl_hooks_event(sl_server *srv, int type, sl_socket *sock, const char *topic,
                    const char *reason, const char *msgid, long retries);

/* sl_hooks_on_start: call the on_start hook of every server of the gateway. script_only:
 * only where the effective on_start is the script's (after a reload the new generation's
 * onStart runs; a C on_start runs once). */
void sl_hooks_on_start(sl_gateway *gw, bool script_only);

/* sl_hooks_client_free: the core is about to free sock (a socket of srv): call the server's
 * client_free hooks, the effective one and, when different, the script's. */
void sl_hooks_client_free(sl_server *srv, sl_socket *sock);

/* sl_hooks_eio_free: the same for a raw endpoint session's conn (eio_free). */
void sl_hooks_eio_free(sl_server *srv, sl_eio_conn *conn);

/* sl_ns_hook_route: does the namespace have a route hook? (no call, no cost) */
#define sl_ns_hook_route(ns) ((ns)->hooks.fn.route != NULL)

/* sl_hooks_route: call the namespace's route hook (check sl_ns_hook_route first) for one
 * publish; *out must be zeroed; release it with sl_hooks_route_free. */
void sl_hooks_route(struct sl_ns *ns, const char *topic, const char *payload, size_t len,
                    const sl_publish_opts *opts, sluice_route_result *out);

/* sl_hooks_route_free: free what a route hook stored in *r and reset it to "deliver". */
void sl_hooks_route_free(sluice_route_result *r);

#endif
