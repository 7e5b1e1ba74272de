/* sl_config_int.h - private to lua/config.c and lua/config_server.c: the validation
 * context and the shared helpers of the config validator. Not installed, not public. */
#ifndef SL_CONFIG_INT_H
#define SL_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "sl_config.h"
#include "sl_util.h"

/* The validation context: one per load, threaded through every validator. */
typedef struct vctx {
  lua_State *L;
  const char *file;   /* shown in messages */
  char *dir;          /* directory of the config file, for relative script paths */
  const char *server; /* current server name or NULL */
  const char *ns;     /* current namespace path or NULL */
  const char *block;  /* current server sub-block ("api", "cors") or NULL */
  int ns_index;       /* 1-based, used when the path itself is unusable */
  bool is_lua;
  sl_config *cfg;
  int64_t server_wd; /* the smallest luaWatchdogMs a server set, -1: none */
  int rc;
  char *err;
  size_t errlen;
  bool strict;               /* unknown keys are errors (strict = true, or --strict) */
  unsigned warnings;         /* vwarn calls, reported as cfg->warnings */
  const char *listen_target; /* server whose host/port the options override, or NULL */
  bool lines;                /* a JSON/YAML file: messages name the line (config_read.c) */
  const void *at_table;      /* the table whose key was read last (lua_topointer) */
  const char *at_key;        /* that key (static or owned by the table) */
  bool at_exact;             /* the next message is about at_key, whatever its wording */
} vctx;

/* The process-wide loader options (sl_config_set_options, config.c); strings owned there. */
extern sl_config_options sl__config_opts;

/* sl__config_verr: record a validation error (the first one wins) and return SL_ECONFIG. */
SL_PRINTF(2, 3) int sl__config_verr(vctx *c, const char *fmt, ...);
/* sl__config_vwarn: log a validation warning (with the message prefix) and count it. */
SL_PRINTF(2, 3) void sl__config_vwarn(vctx *c, const char *fmt, ...);

/* sl__config_warn_unknown_keys: warns about every string key of table t not in known
 * (NULL-ended). stack: unchanged. */
void sl__config_warn_unknown_keys(vctx *c, int t, const char *what, const char *const *known);
/* sl__config_reject_unknown_keys: like warn_unknown_keys, but an unknown key is an error
 * (security blocks: api, cors, tls). Returns c->rc. stack: unchanged. */
int sl__config_reject_unknown_keys(vctx *c, int t, const char *what, const char *const *known);

/* sl__config_get_field: stack: -> t[key] (nil for null). Returns its type. */
int sl__config_get_field(lua_State *L, int t, const char *key);
/* sl__config_opt_string, _opt_int, _opt_bool: t[key] into *out, def when it is absent.
 * Return 0 or SL_ECONFIG (recorded; *out then unset). stack: unchanged. */
int sl__config_opt_string(vctx *c, int t, const char *key, char **out, const char *def);
int sl__config_opt_int(vctx *c, int t, const char *key, int64_t *out, int64_t def);
int sl__config_opt_bool(vctx *c, int t, const char *key, bool *out, bool def);
/* sl__config_script_path: a script path resolved against the config file's directory when
 * such a file exists there, else as given (absolute paths as is). Caller frees. */
char *sl__config_script_path(vctx *c, const char *p);
/* sl__config_opt_hook: a function (Lua configs) or a path to a .lua script returning a
 * function, into *ref; path_out, when not NULL, accepts any other string as a plain value.
 * stack: unchanged. */
int sl__config_opt_hook(vctx *c, int t, const char *key, int *ref, char **path_out);
/* sl__config_is_list: an empty table, or one whose keys are exactly 1..n. */
bool sl__config_is_list(lua_State *L, int t);
/* sl__config_opt_string_list: a list of strings into *out / *n. stack: unchanged. */
int sl__config_opt_string_list(vctx *c, int t, const char *key, char ***out, size_t *n);
/* sl__config_opt_enum: a string among names[] (index into *out, def when absent); the error
 * message is built from the caller's badfmt. stack: unchanged. */
int sl__config_opt_enum(vctx *c, int t, const char *key, const char *const *names, int def,
                        int *out, const char *badfmt, const char *nspath);
/* sl__config_blank: true when s[0..len) is only whitespace (or empty). */
bool sl__config_blank(const char *s, size_t len);

/* sl__config_ns_init: *ns zeroed, every hook reference SL_NOREF. */
void sl__config_ns_init(sl_ns_config *ns);
/* sl__config_validate_ns: table at index t -> *ns. Returns c->rc. stack: unchanged. */
int sl__config_validate_ns(vctx *c, int t, sl_ns_config *ns);
/* sl__config_ns_flush_interval: resolve a validated namespace's flushIntervalMs: the server's
 * (server_ms) when the namespace does not set it; 0 for AT_LEAST_ONCE (its deliveries never
 * wait; a value the namespace itself sets is then warned about). Cannot fail. */
void sl__config_ns_flush_interval(vctx *c, sl_ns_config *ns, int64_t server_ms);

/* sl__config_server_init (config_server.c): *s zeroed, every hook reference SL_NOREF. */
void sl__config_server_init(sl_server_config *s);
/* sl__config_validate_server (config_server.c): server table at index t -> *s (keys, tls,
 * tokens, limits, engineIo, api, cors, hooks, then the namespaces). Returns c->rc.
 * stack: unchanged. */
int sl__config_validate_server(vctx *c, int t, sl_server_config *s);

/* sl__config_typed_field: push t[key] when it has Lua type `want`. Returns 1 (value pushed),
 * 0 (absent: nothing pushed) or SL_ECONFIG ("<key> must be <what>" recorded; nothing
 * pushed). */
int sl__config_typed_field(vctx *c, int t, const char *key, int want, const char *what);

#endif
