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

/* While a JSON or YAML config is being loaded, the readers note where each of its tables
 * (objects, mappings, arrays, sequences) starts and where each key of a table is.
 * sl__config_line: the 1-based line of key in the table whose address (lua_topointer) is
 * table, or of the table's start when key is NULL; 0 when unknown (a Lua config, or a
 * table the reader did not build). stack: unchanged. Raises only when out of memory.
 * sl__config_lines_clear: forget them (the loader calls it when a load ends). */
int sl__config_line(struct lua_State *L, const void *table, const char *key);
void sl__config_lines_clear(struct lua_State *L);

#endif
