/* config.c - load and validate a Sluice / StreamFenceJs config (.lua, .json, .yaml, .yml).
 *
 * Every syntax is first turned into a Lua table in the VM's lua_State; one validator then
 * walks that table and fills sl_config. So the three syntaxes share defaults, type checks
 * and messages, and a Lua config can put functions where a hook is expected.
 *
 * Parsing and validation run inside a protected call (sl_lua_call), because building
 * tables can raise "not enough memory" once the VM's memory limit is reached; the C structs
 * built so far hang off the sl_config, which the caller frees on failure.
 *
 * Messages: STREAMFENCE.md 1.3 verbatim and in the same check order, behind a prefix
 * `<file>: server "<name>": namespace <path>: `. Sluice adds type checks StreamFenceJs
 * lacks ("maxRetries must be a number"), so a YAML `coalesce: no` (a string in YAML 1.2)
 * is an error rather than silently true. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_config.h"
#include "sl_config_int.h"
#include "sl_config_read.h"
#include "sl_lua_call.h"
#include "sl_lua_json.h"
#include "sl_lua_sandbox.h"
#include "sl_util.h"

static const char *const k_top_keys[] = {"servers", "strict", "luaWatchdogMs", NULL};

/* ------------------------------------------------------------------------------------- */
/* Validation context and messages                                                        */

/* The process-wide loader options (sl_config_set_options); strings owned here. */
/* ------------------------------------------------------------------------------------- */
/* Listen addresses: --host/--port overrides, and no two servers on one address           */

/* sl_config_set_options: see sl_config.h. */
void sl_config_set_options(const sl_config_options *opts) {
  free((char *)sl__config_opts.host);
  free((char *)sl__config_opts.server);
  memset(&sl__config_opts, 0, sizeof sl__config_opts);
  sl__config_opts.port = -1;
  if (!opts) return;
  sl__config_opts.strict = opts->strict;
  sl__config_opts.port = opts->port;
  sl__config_opts.host = opts->host ? sl_xstrdup(opts->host) : NULL;
  sl__config_opts.server = opts->server ? sl_xstrdup(opts->server) : NULL;
}

/* stack: unchanged. Which server the host/port options apply to (c->listen_target): the
 * only one, or the one the options name. names are the servers, n of them. Returns 0, or
 * SL_ECONFIG when an override is set but names no server of this config. */
static int pick_listen_target(vctx *c, char *const *names, size_t n) {
  c->listen_target = NULL;
  if (!sl__config_opts.host && sl__config_opts.port < 0) return 0;
  c->at_table = NULL; /* about the command line, not a line of the file */
  const char *opt = sl__config_opts.host && sl__config_opts.port >= 0 ? "--host/--port"
                    : sl__config_opts.host                            ? "--host"
                                                                      : "--port";
  if (sl__config_opts.server) {
    for (size_t i = 0; i < n; i++)
      if (strcmp(names[i], sl__config_opts.server) == 0) c->listen_target = names[i];
    if (!c->listen_target)
      return sl__config_verr(c, "%s: no server named \"%s\"", opt, sl__config_opts.server);
    return 0;
  }
  if (n != 1)
    return sl__config_verr(c,
                           "%s applies to one server and this config has %zu: choose one with "
                           "--server NAME",
                           opt, n);
  c->listen_target = names[0];
  return 0;
}

/* Apply the host/port options to the target server. */
static void apply_listen_options(vctx *c) {
  sl_config *cfg = c->cfg;
  for (size_t i = 0; c->listen_target && i < cfg->nservers; i++) {
    sl_server_config *s = &cfg->servers[i];
    if (strcmp(s->name, c->listen_target) != 0) continue;
    if (sl__config_opts.host) {
      free(s->host);
      s->host = sl_xstrdup(sl__config_opts.host);
    }
    if (sl__config_opts.port >= 0) s->port = sl__config_opts.port;
  }
}

static bool is_wildcard(const char *h) {
  return !h[0] || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 || strcmp(h, "[::]") == 0;
}

/* Whether binding both a and b to one port fails with EADDRINUSE: the same host, or a
 * wildcard of the other's family ("::" is dual-stack, so it takes every IPv4 address too). */
static bool hosts_clash(const char *a, const char *b) {
  if (strcmp(a, b) == 0) return true;
  bool a6 = strchr(a, ':') != NULL, b6 = strchr(b, ':') != NULL;
  if (strcmp(a, "::") == 0 || strcmp(a, "[::]") == 0 || strcmp(b, "::") == 0 ||
      strcmp(b, "[::]") == 0)
    return true;
  return (is_wildcard(a) || is_wildcard(b)) && a6 == b6;
}

/* Two servers listening on one address would pass validation and fail at start with
 * "address already in use": make it a config error instead (port 0 never clashes).
 * servers: the stack index of the servers table. */
static int check_listen_conflicts(vctx *c, int servers) {
  sl_config *cfg = c->cfg;
  for (size_t i = 0; i < cfg->nservers; i++)
    for (size_t j = i + 1; j < cfg->nservers; j++) {
      sl_server_config *a = &cfg->servers[i], *b = &cfg->servers[j];
      if (a->port == 0 || a->port != b->port || !hosts_clash(a->host, b->host)) continue;
      c->at_table = lua_topointer(c->L, servers); /* the line of the second server */
      c->at_key = b->name;
      c->at_exact = true;
      if (strcmp(a->host, b->host) == 0)
        return sl__config_verr(
            c, "servers \"%s\" and \"%s\" both listen on %s:%d (one port per server)", a->name,
            b->name, a->host, a->port);
      return sl__config_verr(c,
                             "servers \"%s\" and \"%s\" both listen on %s:%d and %s:%d (one port "
                             "per server)",
                             a->name, b->name, a->host, a->port, b->host, b->port);
    }
  return 0;
}

/* ------------------------------------------------------------------------------------- */
/* Root                                                                                   */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* validate_cf: lua_CFunction run under sl_lua_call. stack: ctx, root -> (nothing) */
static int validate_cf(lua_State *L) {
  vctx *c = lua_touserdata(L, 1);
  sl_config *cfg = c->cfg;
  if (!lua_istable(L, 2)) {
    sl__config_verr(c,
                    "config must be a table with \"servers\" (a map of server name to settings)");
    return 0;
  }
  c->strict = sl__config_opts.strict;
  if (sl__config_typed_field(c, 2, "strict", LUA_TBOOLEAN, "a boolean") == 1) {
    c->strict = c->strict || lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (c->rc) return 0;
  sl__config_warn_unknown_keys(c, 2, "top-level", k_top_keys);
  int ty = sl__config_get_field(L, 2, "servers"); /* index 3 */
  if (ty == LUA_TNIL) {
    sl__config_verr(c, "config must define \"servers\" (a map of server name to settings)");
    return 0;
  }
  if (ty != LUA_TTABLE) {
    sl__config_verr(c, "servers must be a map of server name to settings");
    return 0;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      sl__config_verr(c, "servers must be a map of server name to settings (got a non-string key)");
      return 0;
    }
    n++;
  }
  if (n == 0) {
    sl__config_verr(c, "servers is empty: define at least one server");
    return 0;
  }
  char **names = sl_xcalloc(n, sizeof(char *));
  size_t k = 0;
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    lua_pop(L, 1);
    names[k++] = sl_xstrdup(lua_tostring(L, -1));
  }
  qsort(names, n, sizeof(char *), cmp_str); /* stable order: sorted by name */
  if (pick_listen_target(c, names, n)) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return 0;
  }
  cfg->servers = sl_xcalloc(n, sizeof(sl_server_config));
  for (size_t i = 0; i < n; i++) {
    sl_server_config *s = &cfg->servers[i];
    sl__config_server_init(s);
    s->name = names[i];
    names[i] = NULL;
    cfg->nservers++;
    c->server = s->name;
    c->at_table = lua_topointer(L, 3); /* "server settings must be a table": its key's line */
    c->at_key = s->name;
    c->at_exact = true;
    lua_getfield(L, 3, s->name);
    if (!lua_istable(L, -1)) {
      sl__config_verr(c, "server settings must be a table");
      break;
    }
    int rc = sl__config_validate_server(c, lua_gettop(L), s);
    lua_pop(L, 1);
    if (rc) break;
  }
  c->server = NULL;
  if (!c->rc) {
    apply_listen_options(c);
    check_listen_conflicts(c, 3);
  }
  c->listen_target = NULL; /* it points at a name */
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  if (c->rc) return 0;
  if (sl__config_opt_int(c, 2, "luaWatchdogMs", &cfg->lua_watchdog_ms, 1000)) return 0;
  if (cfg->lua_watchdog_ms < 0 || cfg->lua_watchdog_ms > 3600000) {
    sl__config_verr(c, "luaWatchdogMs must be between 0 (off) and 3600000");
    return 0;
  }
  if (c->server_wd >= 0 && (c->server_wd < cfg->lua_watchdog_ms || !cfg->lua_watchdog_ms))
    cfg->lua_watchdog_ms = c->server_wd;
  return 0;
}

/* ------------------------------------------------------------------------------------- */
/* Lua                                                                                    */

/* stack: -> value returned by the config chunk. Config chunks run with the VM's globals
 * (standard libraries, os.getenv, the sluice module): they are the operator's own code.
 * Their functions get the JIT turned off so the instruction limit holds in hooks. */
static int parse_lua(vctx *c, const char *text, size_t len, const char *chunkname) {
  lua_State *L = c->L;
  char name[512];
  snprintf(name, sizeof name, "@%s", chunkname);
  if (luaL_loadbuffer(L, text, len, name)) {
    snprintf(c->err, c->errlen, "Failed to parse config file \"%s\": %s", c->file,
             lua_tostring(L, -1));
    lua_pop(L, 1);
    return c->rc = SL_ECONFIG;
  }
  sl__lua_hook_prepare(L, lua_gettop(L));
  char e[512];
  if (sl_lua_call(NULL, L, 0, 0, 1, "config", e, sizeof e)) {
    snprintf(c->err, c->errlen, "%s: error while running the config: %s", c->file, e);
    return c->rc = SL_ECONFIG;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------- */
/* Entry points                                                                           */

/* The config's unref callback (core/config.h): hook refs are released only while cfg->L is
 * an open VM (sl__lua_alive); after sl_lua_close they went away with the state. */
static void config_unref(const sl_config *cfg, int ref) {
  if (cfg->L && ref != SL_NOREF && ref > 0 && sl__lua_alive(cfg->L)) sl__lua_unref(cfg->L, ref);
}

static int load_text(lua_State *L, const char *text, size_t len, const char *fmt, const char *file,
                     const char *dir, bool from_file, sl_config **out, char *err, size_t errlen) {
  *out = NULL;
  if (err && errlen) err[0] = 0;
  char dummy[8];
  if (!err || !errlen) err = dummy, errlen = sizeof dummy;
  int top = lua_gettop(L);
  vctx c;
  memset(&c, 0, sizeof c);
  c.L = L;
  c.file = file;
  c.dir = dir ? sl_xstrdup(dir) : NULL;
  c.err = err;
  c.errlen = errlen;
  c.is_lua = strcmp(fmt, "lua") == 0;
  c.lines = from_file && !c.is_lua;
  c.server_wd = -1;
  sl__lua_set_script_dir(L, dir); /* sluice.script resolves names next to the config first */
  sl_config *cfg = sl_xcalloc(1, sizeof *cfg);
  cfg->path = sl_xstrdup(file);
  cfg->L = L;
  cfg->unref = config_unref;
  c.cfg = cfg;

  int rc;
  if (c.is_lua)
    rc = parse_lua(&c, text, len, file);
  else if (strcmp(fmt, "json") == 0)
    rc = c.rc = sl__config_read_json(L, text, len, file, err, errlen);
  else if (strcmp(fmt, "yaml") == 0 || strcmp(fmt, "yml") == 0)
    rc = c.rc = sl__config_read_yaml(L, text, len, file, err, errlen);
  else {
    snprintf(err, errlen, "%s: unknown config format \"%s\" (expected lua, json or yaml)", file,
             fmt);
    rc = SL_ECONFIG;
  }
  if (rc == 0) {
    /* stack: root */
    int root = lua_gettop(L);
    lua_pushcfunction(L, validate_cf);
    lua_pushlightuserdata(L, &c);
    lua_pushvalue(L, root);
    char e[512];
    if (sl_lua_call(NULL, L, 0, 2, 0, "config", e, sizeof e) && !c.rc) sl__config_verr(&c, "%s", e);
    rc = c.rc;
  }
  lua_settop(L, top);
  sl__config_lines_clear(L);
  free(c.dir);
  if (rc) {
    sl_config_free(cfg);
    return SL_ECONFIG;
  }
  cfg->warnings = c.warnings;
  *out = cfg;
  return 0;
}

/* sl_config_load_string: see sl_config.h. chunkname (may be NULL: "<string>") names the text
 * in messages; relative hook script paths resolve against the working directory. */
int sl_config_load_string(lua_State *L, const char *text, size_t len, const char *fmt,
                          const char *chunkname, sl_config **out, char *err, size_t errlen) {
  return load_text(L, text, len, fmt ? fmt : "lua", chunkname ? chunkname : "<string>", NULL, false,
                   out, err, errlen);
}

/* sl_config_load: see sl_config.h. The format follows the extension (case-insensitive);
 * hook script paths in the file resolve against the file's directory first. */
int sl_config_load(lua_State *L, const char *path, sl_config **out, char *err, size_t errlen) {
  *out = NULL;
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (dot && slash && dot < slash) dot = NULL;
  const char *fmt = NULL;
  if (dot && !strcasecmp(dot, ".json"))
    fmt = "json";
  else if (dot && (!strcasecmp(dot, ".yaml") || !strcasecmp(dot, ".yml")))
    fmt = "yaml";
  else if (dot && !strcasecmp(dot, ".lua"))
    fmt = "lua";
  if (!fmt) {
    snprintf(err, errlen,
             "Unsupported config file extension \"%s\" (expected .yaml, .yml, .json, or .lua): "
             "%s",
             dot ? dot : "", path);
    return SL_ECONFIG;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "Failed to read config file \"%s\": %s", path, strerror(errno));
    return SL_ECONFIG;
  }
  size_t cap = 4096, len = 0;
  char *buf = sl_xmalloc(cap);
  for (;;) {
    if (len == cap) {
      if (cap > ((size_t)64 << 20)) {
        fclose(f);
        free(buf);
        snprintf(err, errlen, "Failed to read config file \"%s\": file too large", path);
        return SL_ECONFIG;
      }
      cap *= 2;
      buf = sl_xrealloc(buf, cap);
    }
    size_t r = fread(buf + len, 1, cap - len, f);
    len += r;
    if (r == 0) break;
  }
  int ioerr = ferror(f);
  fclose(f);
  if (ioerr) {
    free(buf);
    snprintf(err, errlen, "Failed to read config file \"%s\": %s", path, strerror(EIO));
    return SL_ECONFIG;
  }
  char *dir = NULL;
  if (slash) dir = sl_xstrndup(path, (size_t)(slash - path) ? (size_t)(slash - path) : 1);
  int rc = load_text(L, buf, len, fmt, path, dir, true, out, err, errlen);
  free(dir);
  free(buf);
  return rc;
}
