/* sandbox.c - the sandbox for hook scripts and script loading: sluice.script, the
 * package.preload loaders of the embedded lua/ modules (require "keys", ...) and of
 * require "sluice".
 *
 * Sandbox (hook scripts, sluice.script): each script has its own environment over copies of
 * an allow-list (base functions, string without dump, table, math, bit, coroutine, os.time/
 * clock/date/difftime, read-only sluice and embedded modules). Not reachable: io, os.execute,
 * os.getenv, load*, dofile, require of other modules (ffi, jit, debug...), debug, getfenv/
 * setfenv, collectgarbage, newproxy, the string metatable; string.dump is removed from the
 * whole VM because every string's methods reach the real string library; rawset refuses the
 * script's environment and the read-only proxies; the metatables shared between scripts
 * (JSON arrays, ratelimit's class, message views, clients) are locked. Globals are frozen
 * once the script's chunk has run. Config chunks are the operator's own code and run with
 * the full globals (os.getenv for secrets).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_lua_call.h"
#include "sl_lua_sandbox.h"

typedef struct {
  const char *name;
  const char *src;
  size_t len;
} sl_embedded_lua;
extern const sl_embedded_lua sl_embedded_lua_files[]; /* build/gen/lua_embedded.c */

static char k_sandbox, k_script_dir, k_scripts;

/* ------------------------------------------------------------------------------------- */
/* Sandbox for hook scripts                                                               */

/* Runs once per VM with the pristine globals. Returns a factory: factory() -> env, seal.
 * Every script gets its own env with its own copies of the allowed libraries, so nothing a
 * script does to its environment is seen by another script or by the config. */
static const char sandbox_src[] =
    "local G, exceeded, embedded, sluice = ...\n"
    "local pairs, type, error, setmetatable, getmetatable, rawget, tostring, select, pcall, "
    "xpcall = G.pairs, G.type, G.error, G.setmetatable, G.getmetatable, G.rawget, G.tostring, "
    "G.select, G.pcall, G.xpcall\n"
    "local real_require, resume, concat = G.require, G.coroutine.resume, G.table.concat\n"
    "local function copy(t, skip) local c = {} for k, v in pairs(t) do if not (skip and "
    "skip[k]) then c[k] = v end end return c end\n"
    "local ro_cache = setmetatable({}, {__mode = 'k'})\n"
    "local raw_set, proxies = G.rawset, setmetatable({}, {__mode = 'k'})\n"
    "local function readonly(t, name)\n"
    "  if type(t) ~= 'table' then return t end\n"
    "  local p = ro_cache[t]; if p then return p end\n"
    "  p = setmetatable({}, {__index = function(_, k) return readonly(t[k], name .. '.' .. "
    "tostring(k)) end,\n"
    "    __newindex = function(_, k) error('cannot modify ' .. name .. '.' .. tostring(k) .. "
    "' (read-only in scripts)', 2) end,\n"
    "    __metatable = false})\n"
    "  ro_cache[t] = p; proxies[p] = true; return p\n"
    "end\n"
    "local function guard(...) if exceeded() then error('instruction limit exceeded', 0) end "
    "return ... end\n"
    "local base = {'assert','error','ipairs','next','pairs','rawequal','rawget','rawset',"
    "'select','tonumber','tostring','type','unpack','setmetatable','_VERSION'}\n"
    "local sluice_ro = readonly(sluice, 'sluice')\n"
    "G.string.dump = nil -- reachable through any string's methods ((''):dump), not only "
    "string.dump\n"
    "return function()\n"
    "  local env = {}\n"
    "  for _, k in G.ipairs(base) do env[k] = G[k] end\n"
    "  env.rawset = function(t, k, v)\n"
    "    if t == env then error('rawset on the script environment: globals are read-only (use "
    "local)', 2) end\n"
    "    if proxies[t] then error('rawset on a read-only table', 2) end\n"
    "    return raw_set(t, k, v)\n"
    "  end\n"
    "  env.getmetatable = function(v) if type(v) == 'string' then return nil end return "
    "getmetatable(v) end\n"
    "  env.pcall = function(...) return guard(pcall(...)) end\n"
    "  env.xpcall = function(...) return guard(xpcall(...)) end\n"
    "  env.string = copy(G.string, {dump = true})\n"
    "  env.table = copy(G.table)\n"
    "  env.math = copy(G.math)\n"
    "  env.bit = copy(G.bit)\n"
    "  env.coroutine = copy(G.coroutine)\n"
    "  env.coroutine.resume = function(...) return guard(resume(...)) end\n"
    "  env.os = {time = G.os.time, clock = G.os.clock, date = G.os.date, difftime = "
    "G.os.difftime}\n"
    "  env.sluice = sluice_ro\n"
    "  env.print = function(...) local n = select('#', ...) local t = {...} for i = 1, n do "
    "t[i] = tostring(t[i]) end sluice.log.info(concat(t, ' ', 1, n)) end\n"
    "  env.require = function(name)\n"
    "    if name == 'sluice' then return sluice_ro end\n"
    "    if type(name) == 'string' and embedded[name] then return readonly(real_require(name), "
    "name) end\n"
    "    error(\"module '\" .. tostring(name) .. \"' is not available in scripts\", 2)\n"
    "  end\n"
    "  env._G = env\n"
    "  local function seal()\n"
    "    setmetatable(env, {__newindex = function(_, k) error(\"assignment to undeclared "
    "global '\" .. tostring(k) .. \"' (use local)\", 2) end, __metatable = false})\n"
    "  end\n"
    "  return env, seal\n"
    "end\n";

static int l_exceeded(lua_State *L) {
  sl_lua *vm = sl__lua_vm(L);
  lua_pushboolean(L, vm && vm->limit_hit);
  return 1;
}

/* sl__lua_load_script: see sl_lua_sandbox.h. */
int sl__lua_load_script(lua_State *L, const char *path, char *err, size_t errlen) {
  int top = lua_gettop(L);
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot read script %s: %s", path, strerror(errno));
    return SL_EIO;
  }
  fclose(f);
  if (luaL_loadfile(L, path)) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_settop(L, top);
    return SL_ELUA;
  }
  /* stack: chunk */
  sl__lua_push_reg(L, &k_sandbox);
  if (!lua_isfunction(L, -1)) {
    lua_settop(L, top);
    snprintf(err, errlen, "sandbox not initialised (state not created by sl_lua_new)");
    return SL_ELUA;
  }
  if (sl_lua_call(NULL, L, 0, 0, 2, "config", err, errlen)) {
    lua_settop(L, top);
    return SL_ELUA;
  }
  /* stack: chunk, env, seal */
  lua_pushvalue(L, -2);
  lua_setfenv(L, top + 1);
  sl__lua_hook_prepare(L, top + 1);
  lua_pushvalue(L, top + 1);
  if (sl_lua_call(NULL, L, 0, 0, 1, "config", err, errlen)) {
    lua_settop(L, top);
    return SL_ELUA;
  }
  /* stack: chunk, env, seal, result */
  lua_pushvalue(L, top + 3);
  if (sl_lua_call(NULL, L, 0, 0, 0, "config", err, errlen)) {
    lua_settop(L, top);
    return SL_ELUA;
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return 0;
}

/* ------------------------------------------------------------------------------------- */
/* VM construction                                                                        */

/* package.preload loader for an embedded module. upvalue 1: index into the table.
 * stack: name -> module */
static int embedded_loader(lua_State *L) {
  int i = (int)lua_tointeger(L, lua_upvalueindex(1));
  const sl_embedded_lua *m = &sl_embedded_lua_files[i];
  char chunk[128];
  snprintf(chunk, sizeof chunk, "@lua/%s.lua", m->name);
  if (luaL_loadbuffer(L, m->src, m->len, chunk)) return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

static int l_sluice_preload(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "sluice");
  return 1;
}

/* ------------------------------------------------------------------------------------- */
/* sluice.script: the policy scripts shipped in scripts/ (and the operator's own)          */
/*
 * sluice.script(name [, options]) -> hook
 *
 * Loads a script in its own sandbox (sl__lua_load_script: JIT off, frozen allow-list) and,
 * since every shipped script returns a constructor, calls it with options (an empty table
 * when nil) and returns what it builds: the hook function. A script that returns a table
 * is returned as is (options must then be nil). Each script file is loaded once per VM
 * (cached by resolved path); every call builds a new hook with its own state. A reload
 * makes a new VM, so edited scripts are read again.
 *
 * Where `name` is looked up:
 *   - a name with a '/' or ending in ".lua" is a path: absolute, or relative to the config
 *     file's directory, then to the working directory;
 *   - a bare name ("jwt_hs256", [A-Za-z0-9_.-], no "..") is NAME.lua in, in order:
 *       <config dir>/scripts/, $SLUICE_SCRIPTS_DIR/, <executable dir>/../scripts/,
 *       <executable dir>/../share/sluice/scripts/, ./scripts/
 *     so a config can override a shipped script by putting its own next to it.
 * JSON and YAML configs use the same mechanism with {"script": NAME, "options": {...}}
 * where a hook is expected (see opt_hook in config.c).
 */

/* sl__lua_set_script_dir: see sl_lua_sandbox.h. */
void sl__lua_set_script_dir(lua_State *L, const char *dir) {
  lua_pushlightuserdata(L, &k_script_dir);
  if (dir)
    lua_pushstring(L, dir);
  else
    lua_pushnil(L);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

static bool readable(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  fclose(f);
  return true;
}

static bool bare_name(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 128 || strstr(s, "..") || (n > 4 && !strcmp(s + n - 4, ".lua"))) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-' || c == '.'))
      return false;
  }
  return true;
}

/* Resolve a script name into buf (see above). Returns false when no candidate exists;
 * buf then holds the list of places tried (for the message). */
static bool resolve_script(const char *name, const char *cfgdir, char *buf, size_t len) {
  const char *base = cfgdir && *cfgdir ? cfgdir : ".";
  if (!bare_name(name)) {
    if (name[0] == '/') {
      snprintf(buf, len, "%s", name);
      return readable(buf);
    }
    snprintf(buf, len, "%s/%s", base, name);
    if (readable(buf)) return true;
    snprintf(buf, len, "%s", name);
    return readable(buf);
  }
  char exedir[1024] = "";
  ssize_t n = readlink("/proc/self/exe", exedir, sizeof exedir - 1);
  if (n > 0) {
    exedir[n] = 0;
    char *slash = strrchr(exedir, '/');
    if (slash) *slash = 0;
  } else {
    exedir[0] = 0;
  }
  const char *env = getenv("SLUICE_SCRIPTS_DIR");
  char dirs[5][1100];
  int nd = 0;
  snprintf(dirs[nd++], sizeof dirs[0], "%s/scripts", base);
  if (env && *env) snprintf(dirs[nd++], sizeof dirs[0], "%s", env);
  if (exedir[0]) {
    snprintf(dirs[nd++], sizeof dirs[0], "%s/../scripts", exedir);
    snprintf(dirs[nd++], sizeof dirs[0], "%s/../share/sluice/scripts", exedir);
  }
  snprintf(dirs[nd++], sizeof dirs[0], "scripts");
  for (int i = 0; i < nd; i++) {
    int w = snprintf(buf, len, "%s/%s.lua", dirs[i], name);
    if (w > 0 && (size_t)w < len && readable(buf)) return true;
  }
  snprintf(buf, len, "%s/scripts", base);
  if (env && *env) snprintf(buf + strlen(buf), len - strlen(buf), ", %s", env);
  snprintf(buf + strlen(buf), len - strlen(buf), ", <sluice>/../scripts, ./scripts");
  return false;
}

/* sluice.script(name [, options]) -> hook. stack: name, options -> hook */
static int l_script(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  size_t nlen = strlen(name);
  if (!bare_name(name) && !(nlen > 4 && !strcmp(name + nlen - 4, ".lua")))
    return luaL_argerror(L, 1, "a script name ([A-Za-z0-9_.-]) or a path ending in .lua");
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushlightuserdata(L, &k_script_dir);
  lua_rawget(L, LUA_REGISTRYINDEX);
  char path[1200];
  if (!resolve_script(name, lua_tostring(L, -1), path, sizeof path))
    return luaL_error(L, "sluice.script: no script \"%s\" (looked in %s)", name, path);
  lua_pop(L, 1);
  sl__lua_push_reg(L, &k_scripts); /* stack: name, options, cache */
  lua_getfield(L, 3, path);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    char err[512];
    if (sl__lua_load_script(L, path, err, sizeof err))
      return luaL_error(L, "sluice.script(\"%s\"): %s", name, err);
    lua_pushvalue(L, -1);
    lua_setfield(L, 3, path);
  }
  /* stack: name, options, cache, module */
  if (lua_isfunction(L, 4)) {
    if (lua_isnil(L, 2)) {
      lua_newtable(L);
      lua_replace(L, 2);
    }
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1))
      return luaL_error(L, "sluice.script(\"%s\"): the constructor returned nothing", name);
    return 1;
  }
  if (!lua_isnil(L, 2))
    return luaL_error(L,
                      "sluice.script(\"%s\"): the script returns a %s, not a constructor "
                      "taking options",
                      name, luaL_typename(L, 4));
  return 1;
}

/* sl__lua_script: see sl_lua_sandbox.h. */
int sl__lua_script(lua_State *L, const char *name, int opts_idx, char *err, size_t errlen) {
  if (opts_idx < 0) opts_idx = lua_gettop(L) + opts_idx + 1;
  lua_pushcfunction(L, l_script);
  lua_pushstring(L, name);
  if (opts_idx)
    lua_pushvalue(L, opts_idx);
  else
    lua_pushnil(L);
  return sl_lua_call(NULL, L, 0, 2, 1, "config", err, errlen);
}

/* sl__lua_inject_sandbox: see sl_lua_sandbox.h. stack: sluice -> sluice */
void sl__lua_inject_sandbox(sl_lua *vm, lua_State *L) {
  lua_pushcfunction(L, l_script);
  lua_setfield(L, -2, "script");
  lua_pushlightuserdata(L, &k_scripts); /* sluice.script's cache: resolved path -> module */
  lua_newtable(L);
  lua_rawset(L, LUA_REGISTRYINDEX);

  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload"); /* stack: sluice, package, preload */
  lua_pushcfunction(L, l_sluice_preload);
  lua_setfield(L, -2, "sluice");
  for (int i = 0; sl_embedded_lua_files[i].name; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, embedded_loader, 1);
    lua_setfield(L, -2, sl_embedded_lua_files[i].name);
  }
  lua_pop(L, 2); /* stack: sluice */

  /* The sandbox factory, built from the pristine globals. */
  if (luaL_loadbuffer(L, sandbox_src, sizeof sandbox_src - 1, "=sandbox")) {
    sl_log_error("lua: sandbox: %s", lua_tostring(L, -1));
    abort();
  }
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  lua_pushcfunction(L, l_exceeded);
  lua_newtable(L);
  for (int i = 0; sl_embedded_lua_files[i].name; i++) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, sl_embedded_lua_files[i].name);
  }
  lua_pushvalue(L, -5); /* sluice */
  if (sl_lua_call(vm, L, 0, 4, 1, "sandbox", NULL, 0)) abort();
  lua_pushlightuserdata(L, &k_sandbox);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}
