/* sl_policy.h - the Lua implementation of the hooks table (sluice_hooks, core/sluice.h).
 *
 * A config's Lua hooks are registry refs in sl_ns_config / sl_server_config. For every
 * namespace and server of a config generation this module registers, in the gateway's
 * script slot (sl_hooks_set_script), a table whose members are set exactly for the refs that
 * are set: a hook the config does not define stays NULL and costs the core nothing. Each
 * member forwards to the sl_lua_* call of lua/sl_lua.h with the generation's VM and ref.
 * client_free and eio_free are set on every server: the VM may hold a box of any client or
 * raw endpoint connection, cleared when the core frees it. */
#ifndef SL_POLICY_H
#define SL_POLICY_H

#include "sl_core.h"

struct sl_lua;
struct sl_config;
typedef struct sl_lua_policy sl_lua_policy;

/* sl_lua_policy_install: register the Lua hooks of cfg (loaded into vm) for every server and
 * namespace of gw, whose script slots must be empty (a fresh build, or just after
 * sl_gateway_swap). Returns the generation's bindings (never NULL; aborts on OOM); they must
 * outlive the registration: free them with sl_lua_policy_free only after the slots were
 * cleared (by the next swap or by sluice_stop) or the gateway was freed. */
sl_lua_policy *sl_lua_policy_install(sl_gateway *gw, struct sl_lua *vm, struct sl_config *cfg);

/* sl_lua_policy_free: release the bindings (NULL is a no-op). */
void sl_lua_policy_free(sl_lua_policy *p);

#endif
