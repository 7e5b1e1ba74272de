/* sl_config.h - the config loaders (lua/config.c): file or text -> sl_config (core/config.h).
 *
 * Every syntax is turned into a Lua table in the gateway's lua_State and validated once, in
 * C, so the three syntaxes share defaults and error messages (StreamFenceJs's, see
 * shared/STREAMFENCE.md 1.3). Hooks are registry refs in that state; the loaded config's
 * unref callback releases them while the state is open. */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>
#include "../core/config.h"

struct lua_State;

/* sl_config_load: read and validate a config file (.lua/.json/.yaml/.yml, case-insensitive
 * extension) using the given lua_State (which must already have the `sluice` module
 * installed, see sl_lua.h). On success returns 0 and *out (free with sl_config_free).
 * On failure returns SL_ECONFIG and writes a one-line message into err (never NULL on
 * failure) naming the file and, where relevant, server, namespace and key, e.g.
 *   config.yaml: server "feed": namespace /alo: AT_LEAST_ONCE namespaces must allow at least one retry
 * The StreamFenceJs messages (STREAMFENCE.md 1.3) appear verbatim after the prefix. */
SL_WUR int sl_config_load(struct lua_State *L, const char *path, sl_config **out, char *err, size_t errlen);

/* sl_config_load_string: same, from text; fmt is "lua", "json" or "yaml". */
SL_WUR int sl_config_load_string(struct lua_State *L, const char *text, size_t len, const char *fmt,
                          const char *chunkname, sl_config **out, char *err, size_t errlen);

#endif
