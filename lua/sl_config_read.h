/* sl_config_read.h - the JSON and YAML config readers (lua/config_read.c). */
#ifndef SL_CONFIG_READ_H
#define SL_CONFIG_READ_H

#include <stddef.h>

struct lua_State;

/* sl__config_read_json / sl__config_read_yaml: parse config text into Lua values (objects
 * and mappings -> tables, arrays and sequences -> array-marked tables, null ->
 * sluice.json.null), under sl_lua_call. file names the text in messages.
 * stack: -> root on success. Returns 0, or SL_ECONFIG with a one-line message in err
 * ("Failed to parse config file \"<file>\": invalid JSON at line L column C", ...). */
int sl__config_read_json(struct lua_State *L, const char *text, size_t len, const char *file,
                         char *err, size_t errlen);
int sl__config_read_yaml(struct lua_State *L, const char *text, size_t len, const char *file,
                         char *err, size_t errlen);

#endif
