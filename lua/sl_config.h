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
 * failure) naming the file (and for a JSON/YAML file the line: of the key the message is
 * about, else of the server or namespace block) and, where relevant, server, namespace and
 * key, e.g.
 *   config.yaml:12: server "feed": namespace /alo: AT_LEAST_ONCE namespaces must allow at least one retry
 * The StreamFenceJs messages (STREAMFENCE.md 1.3) appear verbatim after the prefix.
 * Warnings (unknown keys, ...) are logged with the same prefix and counted in
 * (*out)->warnings. */
SL_WUR int sl_config_load(struct lua_State *L, const char *path, sl_config **out, char *err,
                          size_t errlen);

/* sl_config_load_string: same, from text; fmt is "lua", "json" or "yaml". */
SL_WUR int sl_config_load_string(struct lua_State *L, const char *text, size_t len, const char *fmt,
                                 const char *chunkname, sl_config **out, char *err, size_t errlen);

/* Loader options of the process (the `sluice` command's --strict, --host, --port), applied
 * by every later sl_config_load / sl_config_load_string, reloads included:
 *   strict  unknown keys are errors, as with a top-level `strict = true` in the config;
 *   host    when set, replaces the listen host of the config's only server, or of the
 *           server named `server` when the config has several;
 *   port    the same for the port (-1: no override; 0 = OS-assigned);
 *   server  see host/port (NULL: the config must have exactly one server for an override).
 * A host or port override that cannot apply is a config error naming the option. */
typedef struct sl_config_options {
  bool strict;
  const char *host;
  int port;
  const char *server;
} sl_config_options;

/* sl_config_set_options: copy opts (NULL: back to the defaults: not strict, no overrides)
 * into the process-wide loader options. Not thread-safe; call before loading. */
void sl_config_set_options(const sl_config_options *opts);

#endif
