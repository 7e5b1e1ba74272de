/* config_fields.c - reading and checking the fields of a config table: messages with the
 * file, line, server and namespace prefix, unknown-key checks, typed optional fields, hooks,
 * and the namespace validation (sl_config_int.h). The bottom of the config loader: the server
 * validation (config_server.c) and the loader (config.c) call it, it calls neither. */
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

sl_config_options sl__config_opts = {.port = -1};

/* The line a message about the last read (c->at_table, c->at_key) points at: the key's own
 * line when the message is about that key (it starts with the key's name, as "port must be
 * a number" or an unknown-key message does), else the line where the table (the server or
 * namespace block being checked) starts; 0 when unknown. */
static int message_line(vctx *c, const char *msg) {
  if (!c->lines || !c->at_table) return 0;
  const char *k = c->at_key;
  size_t kl = k ? strlen(k) : 0;
  bool about_key = k && (c->at_exact || (strncmp(msg, k, kl) == 0 && msg[kl] == ' ') ||
                         (strncmp(msg, "unknown ", 8) == 0 && strstr(msg, k)));
  int line = about_key ? sl__config_line(c->L, c->at_table, k) : 0;
  if (!line) line = sl__config_line(c->L, c->at_table, NULL);
  return line;
}

static void prefix(vctx *c, char *buf, size_t len, int line) {
  int n =
      line > 0 ? snprintf(buf, len, "%s:%d: ", c->file, line) : snprintf(buf, len, "%s: ", c->file);
  if (n < 0 || (size_t)n >= len) return;
  if (c->server) n += snprintf(buf + n, len - (size_t)n, "server \"%s\": ", c->server);
  if ((size_t)n >= len) return;
  if (c->ns)
    n += snprintf(buf + n, len - (size_t)n, "namespace %s: ", c->ns);
  else if (c->ns_index > 0)
    n += snprintf(buf + n, len - (size_t)n, "namespace #%d: ", c->ns_index);
  if (c->block && (size_t)n < len) snprintf(buf + n, len - (size_t)n, "%s: ", c->block);
}

/* vmessage: "<prefix><fmt ...>" into out (cut to outlen); the prefix is
 * "<file>[:<line>]: [server \"<name>\": ][namespace <path>: ]". */
SL_PRINTF(4, 0)
static void vmessage(vctx *c, char *out, size_t outlen, const char *fmt, va_list ap) {
  char msg[768];
  vsnprintf(msg, sizeof msg, fmt, ap);
  char pre[512];
  pre[0] = 0;
  prefix(c, pre, sizeof pre, message_line(c, msg));
  snprintf(out, outlen, "%s%s", pre, msg);
}

/* verr: record a validation error (the first one wins) and return SL_ECONFIG. */
SL_PRINTF(2, 3) int sl__config_verr(vctx *c, const char *fmt, ...) {
  if (c->rc) return c->rc;
  va_list ap;
  va_start(ap, fmt);
  vmessage(c, c->err, c->errlen, fmt, ap);
  va_end(ap);
  c->rc = SL_ECONFIG;
  return c->rc;
}

/* sl__config_vwarn: log a validation warning (with the message prefix) and count it. */
SL_PRINTF(2, 3) void sl__config_vwarn(vctx *c, const char *fmt, ...) {
  char line[1280];
  va_list ap;
  va_start(ap, fmt);
  vmessage(c, line, sizeof line, fmt, ap);
  va_end(ap);
  c->warnings++;
  sl_log_warn("%s", line);
}

/* ------------------------------------------------------------------------------------- */
/* Unknown keys: ignored like StreamFenceJs, but logged with a suggestion.                */

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 99;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
      size_t best = diag + cost;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      if (up + 1 < best) best = up + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* closest_key: is k one of known (NULL-ended)? Returns NULL when it is (*found set), else the
 * closest known key when it is close enough to be a likely typo, else NULL. */
static const char *closest_key(const char *k, const char *const *known, bool *found) {
  const char *best = NULL;
  size_t bestd = 99;
  *found = false;
  for (const char *const *p = known; *p; p++) {
    if (strcmp(*p, k) == 0) {
      *found = true;
      return NULL;
    }
    size_t d = edit_distance(k, *p);
    if (d < bestd) bestd = d, best = *p;
  }
  size_t klen = strlen(k);
  return best && (bestd <= 2 || (klen > 6 && bestd <= 3)) ? best : NULL;
}

/* stack: unchanged. Warns about every string key of table t not in known (NULL-ended). */
void sl__config_warn_unknown_keys(vctx *c, int t, const char *what, const char *const *known) {
  lua_State *L = c->L;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1); /* stack: key */
    if (lua_type(L, -1) != LUA_TSTRING) {
      sl__config_vwarn(c, "%s: ignoring a non-string key", what);
      continue;
    }
    const char *k = lua_tostring(L, -1);
    c->at_table = lua_topointer(L, t);
    c->at_key = k; /* lives while the key is on the stack, i.e. while it is reported */
    c->at_exact = false;
    bool found;
    const char *best = closest_key(k, known, &found);
    if (found) continue;
    if (c->strict && best)
      sl__config_verr(c, "unknown %s key \"%s\" (did you mean \"%s\"?; strict mode)", what, k,
                      best);
    else if (c->strict)
      sl__config_verr(c, "unknown %s key \"%s\" (strict mode)", what, k);
    else if (best)
      sl__config_vwarn(c, "unknown %s key \"%s\" ignored (did you mean \"%s\"?)", what, k, best);
    else
      sl__config_vwarn(c, "unknown %s key \"%s\" ignored", what, k);
  }
  c->at_key = NULL;
}

/* reject_unknown_keys: like warn_unknown_keys, but an unknown key is an error: for blocks
 * where a misspelt key would silently weaken security (api, cors, tls; later cluster,
 * recovery). Returns c->rc. stack: unchanged. */
int sl__config_reject_unknown_keys(vctx *c, int t, const char *what, const char *const *known) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1); /* stack: key */
    if (lua_type(L, -1) != LUA_TSTRING) {
      sl__config_verr(c, "%s: keys must be strings", what);
      break;
    }
    const char *k = lua_tostring(L, -1);
    bool found;
    const char *best = closest_key(k, known, &found);
    if (found) continue;
    c->at_table = lua_topointer(L, t); /* the message names the key's line */
    c->at_key = k;
    c->at_exact = true;
    if (best)
      sl__config_verr(c, "unknown %s key \"%s\" (did you mean \"%s\"?)", what, k, best);
    else
      sl__config_verr(c, "unknown %s key \"%s\"", what, k);
    break;
  }
  lua_settop(L, top);
  return c->rc;
}

static const char *const k_ns_keys[] = {"path",
                                        "topics",
                                        "deliveryMode",
                                        "overflowAction",
                                        "maxQueuedMessagesPerClient",
                                        "maxQueuedBytesPerClient",
                                        "ackTimeoutMs",
                                        "maxRetries",
                                        "coalesce",
                                        "allowPolling",
                                        "maxInFlight",
                                        "authRequired",
                                        "coalesceKey",
                                        "snapshot",
                                        "route",
                                        "authorize",
                                        "clientPublish",
                                        "retryBackoff",
                                        "retryMaxDelayMs",
                                        "onConnect",
                                        "onEvent",
                                        "onClientPublish",
                                        "recovery",
                                        "flushIntervalMs",
                                        NULL};
static const char *const k_recovery_keys[] = {"maxDisconnectionMs", "historySize", "historyBytes",
                                              "reauthorize", NULL};

/* ------------------------------------------------------------------------------------- */
/* Typed field readers. Each pushes nothing net; a JSON/YAML null counts as "not set".     */

/* stack: -> value (nil for null). Returns its type. */
int sl__config_get_field(lua_State *L, int t, const char *key) {
  lua_pushstring(L, key);
  lua_rawget(L, t);
  if (sl__lua_isnull(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  return lua_type(L, -1);
}

/* sl__config_typed_field: see sl_config_int.h. */
int sl__config_typed_field(vctx *c, int t, const char *key, int want, const char *what) {
  lua_State *L = c->L;
  c->at_table = lua_topointer(L, t);
  c->at_key = key;
  c->at_exact = false;
  int ty = sl__config_get_field(L, t, key);
  if (ty == want) return 1;
  lua_pop(L, 1);
  if (ty == LUA_TNIL) return 0;
  if (want == LUA_TBOOLEAN && ty == LUA_TSTRING)
    return sl__config_verr(
        c, "%s must be a boolean (true or false; in YAML, yes/no/on/off are strings)", key);
  return sl__config_verr(c, "%s must be %s", key, what);
}

/* opt_string, opt_number, opt_int, opt_bool: t[key] into *out, def when it is absent.
 * Return 0 or SL_ECONFIG (recorded; *out then unset). stack: unchanged. */
int sl__config_opt_string(vctx *c, int t, const char *key, char **out, const char *def) {
  int r = sl__config_typed_field(c, t, key, LUA_TSTRING, "a string");
  if (r == 0) *out = def ? sl_xstrdup(def) : NULL;
  if (r <= 0) return r;
  size_t len;
  const char *s = lua_tolstring(c->L, -1, &len);
  *out = sl_xstrndup(s, len);
  lua_pop(c->L, 1);
  return 0;
}

static int opt_number(vctx *c, int t, const char *key, double *out, double def) {
  int r = sl__config_typed_field(c, t, key, LUA_TNUMBER, "a number");
  if (r == 0) *out = def;
  if (r <= 0) return r;
  *out = lua_tonumber(c->L, -1);
  lua_pop(c->L, 1);
  if (!isfinite(*out)) return sl__config_verr(c, "%s must be a finite number", key);
  return 0;
}

/* sl__config_opt_int: see sl__config_opt_string. */
int sl__config_opt_int(vctx *c, int t, const char *key, int64_t *out, int64_t def) {
  double d;
  int r = opt_number(c, t, key, &d, (double)def);
  if (r) return r;
  if (d != floor(d) || fabs(d) > 9007199254740992.0)
    return sl__config_verr(c, "%s must be an integer", key);
  *out = (int64_t)d;
  return 0;
}

/* opt_positive: opt_int, then "<key> must be positive" unless the value is above 0. */
static int opt_positive(vctx *c, int t, const char *key, int64_t *out, int64_t def) {
  int r = sl__config_opt_int(c, t, key, out, def);
  if (r) return r;
  if (*out <= 0) return sl__config_verr(c, "%s must be positive", key);
  return 0;
}

/* sl__config_opt_bool: see sl__config_opt_string. */
int sl__config_opt_bool(vctx *c, int t, const char *key, bool *out, bool def) {
  int r = sl__config_typed_field(c, t, key, LUA_TBOOLEAN, "a boolean");
  if (r == 0) *out = def;
  if (r <= 0) return r;
  *out = lua_toboolean(c->L, -1);
  lua_pop(c->L, 1);
  return 0;
}

static bool ends_with_lua(const char *s) {
  size_t n = strlen(s);
  return n > 4 && strcasecmp(s + n - 4, ".lua") == 0;
}

/* Resolve a script path: absolute as is, otherwise relative to the config file's
 * directory when such a file exists there, else relative to the working directory. */
char *sl__config_script_path(vctx *c, const char *p) {
  if (p[0] == '/' || !c->dir) return sl_xstrdup(p);
  size_t n = strlen(c->dir) + strlen(p) + 2;
  char *full = sl_xmalloc(n);
  snprintf(full, n, "%s/%s", c->dir, p);
  FILE *f = fopen(full, "rb");
  if (f) {
    fclose(f);
    return full;
  }
  free(full);
  return sl_xstrdup(p);
}

/* opt_hook: a function (Lua configs) or a path to a .lua script returning a function.
 * path_out, when not NULL, accepts any other string as a plain value (coalesceKey's field
 * path). stack: unchanged. */
int sl__config_opt_hook(vctx *c, int t, const char *key, int *ref, char **path_out) {
  lua_State *L = c->L;
  *ref = SL_NOREF;
  if (path_out) *path_out = NULL;
  int ty = sl__config_get_field(L, t, key);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (ty == LUA_TSTRING && ends_with_lua(lua_tostring(L, -1))) {
    char *p = sl__config_script_path(c, lua_tostring(L, -1));
    lua_pop(L, 1);
    char e[512];
    int rc = sl__lua_load_script(L, p, e, sizeof e);
    free(p);
    if (rc) return sl__config_verr(c, "%s: %s", key, e);
    /* A script returns the hook itself, or a table holding it under the key's name. */
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, key);
      lua_remove(L, -2);
    }
    if (!lua_isfunction(L, -1)) {
      lua_pop(L, 1);
      return sl__config_verr(
          c, "%s: script must return a function (or a table with a \"%s\" function)", key, key);
    }
    ty = LUA_TFUNCTION;
  } else if (ty == LUA_TTABLE && true) {
    /* {script = NAME, options = {...}}: sluice.script(NAME, options), for JSON and YAML
     * configs (a Lua config can call sluice.script itself). */
    int ht = lua_gettop(L);
    static const char *const known[] = {"script", "options", NULL};
    char what[64];
    snprintf(what, sizeof what, "%s", key);
    sl__config_warn_unknown_keys(c, ht, what, known);
    if (sl__config_get_field(L, ht, "script") != LUA_TSTRING) {
      lua_settop(L, ht - 1);
      return sl__config_verr(
          c,
          "%s: a table hook needs \"script\" (a script name such as \"jwt_hs256\" "
          "or a path to a .lua file)",
          key);
    }
    char *name = sl_xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    int oty = sl__config_get_field(L, ht, "options");
    if (oty != LUA_TNIL && oty != LUA_TTABLE) {
      free(name);
      lua_settop(L, ht - 1);
      return sl__config_verr(c, "%s: options must be a table", key);
    }
    char e[512];
    int rc = sl__lua_script(L, name, oty == LUA_TTABLE ? lua_gettop(L) : 0, e, sizeof e);
    free(name);
    if (rc) {
      lua_settop(L, ht - 1);
      return sl__config_verr(c, "%s: %s", key, e);
    }
    lua_replace(L, ht); /* stack: hook (options popped below) */
    lua_settop(L, ht);
    if (!lua_isfunction(L, -1)) {
      lua_pop(L, 1);
      return sl__config_verr(c, "%s: script must build a function", key);
    }
    ty = LUA_TFUNCTION;
  } else if (ty == LUA_TSTRING && path_out) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (len == 0) {
      lua_pop(L, 1);
      return sl__config_verr(c, "%s must not be blank", key);
    }
    *path_out = sl_xstrndup(s, len);
    lua_pop(L, 1);
    return 0;
  }
  if (ty != LUA_TFUNCTION) {
    lua_pop(L, 1);
    if (path_out)
      return sl__config_verr(c,
                             "%s must be a field path, a function, a path to a .lua script or "
                             "{script = NAME, options = {...}}",
                             key);
    return sl__config_verr(c,
                           "%s must be a function, a path to a .lua script or "
                           "{script = NAME, options = {...}}",
                           key);
  }
  sl__lua_hook_prepare(L, lua_gettop(L));
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* is_list: an empty table, or one whose keys are exactly 1..n. */
bool sl__config_is_list(lua_State *L, int t) {
  size_t n = lua_objlen(L, t), count = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    count++;
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      return false;
    }
  }
  return count == n;
}

/* opt_string_list: a list of strings (tokens). stack: unchanged. */
int sl__config_opt_string_list(vctx *c, int t, const char *key, char ***out, size_t *n) {
  lua_State *L = c->L;
  *out = NULL;
  *n = 0;
  int ty = sl__config_get_field(L, t, key);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  int idx = lua_gettop(L);
  if (ty != LUA_TTABLE || !sl__config_is_list(L, idx)) {
    lua_pop(L, 1);
    return sl__config_verr(c, "%s must be a list of strings", key);
  }
  size_t len = lua_objlen(L, idx);
  *out = sl_xcalloc(len ? len : 1, sizeof(char *));
  for (size_t i = 0; i < len; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 2);
      return sl__config_verr(c, "%s must be a list of strings", key);
    }
    size_t sl;
    const char *s = lua_tolstring(L, -1, &sl);
    (*out)[(*n)++] = sl_xstrndup(s, sl);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* opt_enum: a string among names[]; error message built by the caller's format. */
int sl__config_opt_enum(vctx *c, int t, const char *key, const char *const *names, int def,
                        int *out, const char *badfmt, const char *nspath) {
  lua_State *L = c->L;
  int ty = sl__config_get_field(L, t, key);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    *out = def;
    return 0;
  }
  char shown[128];
  if (ty == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    for (int i = 0; names[i]; i++)
      if (strcmp(s, names[i]) == 0) {
        *out = i;
        lua_pop(L, 1);
        return 0;
      }
    snprintf(shown, sizeof shown, "%s", s);
  } else if (ty == LUA_TNUMBER) {
    snprintf(shown, sizeof shown, "%.14g", lua_tonumber(L, -1));
  } else if (ty == LUA_TBOOLEAN) {
    snprintf(shown, sizeof shown, "%s", lua_toboolean(L, -1) ? "true" : "false");
  } else {
    snprintf(shown, sizeof shown, "[%s]", lua_typename(L, ty));
  }
  lua_pop(L, 1);
  if (nspath) return sl__config_verr(c, badfmt, shown, nspath);
  return sl__config_verr(c, badfmt, shown);
}

/* ------------------------------------------------------------------------------------- */
/* Namespace                                                                              */

/* sl__config_ns_init: see sl_config_int.h. */
void sl__config_ns_init(sl_ns_config *ns) {
  memset(ns, 0, sizeof *ns);
  ns->coalesce_key_ref = ns->snapshot_ref = ns->route_ref = ns->authorize_ref = SL_NOREF;
  ns->on_connect_ref = ns->on_event_ref = ns->on_client_publish_ref = SL_NOREF;
}

/* sl__config_blank: see sl_config_int.h. */
bool sl__config_blank(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!isspace((unsigned char)s[i])) return false;
  return true;
}

/* validate_topics: the namespace's `topics` list -> ns->topics. stack: may leave values on
 * error (validate_ns restores its top). */
static int validate_topics(vctx *c, int t, sl_ns_config *ns, const char *path) {
  lua_State *L = c->L;
  int ty = sl__config_get_field(L, t, "topics");
  int tt = lua_gettop(L);
  if (ty != LUA_TNIL && (ty != LUA_TTABLE || !sl__config_is_list(L, tt))) {
    sl__config_verr(c, "topics must be a list of strings");
    return c->rc;
  }
  size_t nt = ty == LUA_TNIL ? 0 : lua_objlen(L, tt);
  if (nt == 0) {
    sl__config_verr(c, "namespace must define at least one topic");
    return c->rc;
  }
  ns->topics = sl_xcalloc(nt, sizeof(char *));
  for (size_t i = 0; i < nt; i++) {
    lua_rawgeti(L, tt, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      sl__config_verr(c, "topic names must be strings in namespace %s", path);
      return c->rc;
    }
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (sl__config_blank(s, len)) {
      sl__config_verr(c, "topic names must not be blank in namespace %s", path);
      return c->rc;
    }
    ns->topics[ns->ntopics++] = sl_xstrndup(s, len);
    lua_pop(L, 1);
  }
  lua_pop(L, 1); /* topics */
  for (size_t i = 0; i < ns->ntopics; i++)
    for (size_t j = 0; j < i; j++)
      if (strcmp(ns->topics[i], ns->topics[j]) == 0) {
        sl__config_verr(c, "duplicate topic in namespace %s: %s", path, ns->topics[i]);
        return c->rc;
      }

  return c->rc;
}

/* validate_limits: queue bounds, acks and retries, and the AT_LEAST_ONCE rules. stack:
 * unchanged. */
static int validate_limits(vctx *c, int t, sl_ns_config *ns) {
  if (opt_positive(c, t, "maxQueuedMessagesPerClient", &ns->max_queued_msgs, 64)) return c->rc;
  if (opt_positive(c, t, "maxQueuedBytesPerClient", &ns->max_queued_bytes, 524288)) return c->rc;
  if (opt_positive(c, t, "ackTimeoutMs", &ns->ack_timeout_ms, 1000)) return c->rc;
  if (sl__config_opt_int(c, t, "maxRetries", &ns->max_retries, 0)) return c->rc;
  if (ns->max_retries < 0) {
    sl__config_verr(c, "maxRetries must be zero or positive");
    return c->rc;
  }
  if (sl__config_opt_bool(c, t, "coalesce", &ns->coalesce, false)) return c->rc;
  if (sl__config_opt_int(c, t, "maxInFlight", &ns->max_in_flight, 1)) return c->rc;
  if (ns->max_in_flight <= 0) ns->max_in_flight = 1; /* StreamFenceJs normalizes silently */

  if (ns->delivery == SL_AT_LEAST_ONCE) {
    if (ns->overflow != SL_REJECT_NEW && ns->overflow != SL_SPILL_TO_DISK) {
      sl__config_verr(
          c, "AT_LEAST_ONCE namespaces must use REJECT_NEW or SPILL_TO_DISK overflowAction");
      return c->rc;
    }
    if (ns->coalesce) {
      sl__config_verr(c, "AT_LEAST_ONCE namespaces cannot enable coalescing");
      return c->rc;
    }
    if (ns->max_retries < 1) {
      sl__config_verr(c, "AT_LEAST_ONCE namespaces must allow at least one retry");
      return c->rc;
    }
    if (ns->max_in_flight > ns->max_queued_msgs) {
      sl__config_verr(c, "maxInFlight must not exceed maxQueuedMessagesPerClient");
      return c->rc;
    }
  }

  return c->rc;
}

/* recovery = { maxDisconnectionMs, historySize, historyBytes, reauthorize } of the namespace
 * table at t (true: every default). Unknown keys are errors. Returns c->rc. stack: unchanged. */
static int validate_recovery(vctx *c, int t, sl_ns_config *ns) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  sl_recovery_config *r = &ns->recovery;
  int ty = sl__config_get_field(L, t, "recovery");
  int rt = lua_gettop(L);
  if (ty == LUA_TNIL || (ty == LUA_TBOOLEAN && !lua_toboolean(L, rt))) goto out;
  if (ty != LUA_TTABLE && ty != LUA_TBOOLEAN) {
    sl__config_verr(c, "recovery must be a table ({ maxDisconnectionMs = 120000, historySize = "
                       "1000, historyBytes = 1048576, reauthorize = true }) or true");
    goto out;
  }
  r->enabled = true;
  r->max_disconnection_ms = 120000;
  r->history_size = 1000;
  r->history_bytes = 1048576;
  r->reauthorize = true;
  if (ty == LUA_TBOOLEAN) goto out;
  c->block = "recovery";
  if (sl__config_reject_unknown_keys(c, rt, "recovery", k_recovery_keys)) goto out;
  if (opt_positive(c, rt, "maxDisconnectionMs", &r->max_disconnection_ms, 120000)) goto out;
  if (opt_positive(c, rt, "historySize", &r->history_size, 1000)) goto out;
  if (opt_positive(c, rt, "historyBytes", &r->history_bytes, 1048576)) goto out;
  if (sl__config_opt_bool(c, rt, "reauthorize", &r->reauthorize, true)) goto out;
  if (r->max_disconnection_ms > 86400000) {
    sl__config_verr(c, "maxDisconnectionMs must be at most 86400000 (one day)");
    goto out;
  }
  if (r->history_size > 10000000) {
    sl__config_verr(c, "historySize must be at most 10000000");
    goto out;
  }
out:
  c->block = NULL;
  lua_settop(L, top);
  return c->rc;
}

/* validate_ns: table at index t -> *ns. stack: unchanged (on success and on error). */
int sl__config_validate_ns(vctx *c, int t, sl_ns_config *ns) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  int d, o;
  const char *path = c->ns;

  sl__config_warn_unknown_keys(c, t, "namespace", k_ns_keys);

  /* Mapper level (checked before NamespaceSpec.build). */
  if (sl__config_opt_enum(c, t, "deliveryMode", sl_delivery_names, SL_BEST_EFFORT, &d,
                          "Invalid deliveryMode \"%s\" for namespace %s (expected: BEST_EFFORT, "
                          "AT_LEAST_ONCE)",
                          path ? path : "(no path)"))
    goto out;
  if (sl__config_opt_enum(c, t, "overflowAction", sl_overflow_names, SL_REJECT_NEW, &o,
                          "Invalid overflowAction \"%s\" for namespace %s (expected: DROP_OLDEST, "
                          "REJECT_NEW, COALESCE, SNAPSHOT_ONLY, SPILL_TO_DISK)",
                          path ? path : "(no path)"))
    goto out;
  ns->delivery = (sl_delivery_mode)d;
  ns->overflow = (sl_overflow_action)o;

  /* NamespaceSpec.build order. */
  if (!path || path[0] != '/') {
    sl__config_verr(c, "namespace path must start with '/'");
    goto out;
  }
  ns->path = sl_xstrdup(path);

  if (validate_topics(c, t, ns, path)) goto out;
  if (validate_limits(c, t, ns)) goto out;

  /* The rest of StreamFenceJs's keys, then Sluice's own. */
  if (sl__config_opt_bool(c, t, "allowPolling", &ns->allow_polling, true)) goto out;
  if (sl__config_opt_bool(c, t, "authRequired", &ns->auth_required, false)) goto out;
  if (sl__config_opt_bool(c, t, "clientPublish", &ns->client_publish, !c->is_lua)) goto out;
  if (opt_number(c, t, "retryBackoff", &ns->retry_backoff, 1.0)) goto out;
  if (ns->retry_backoff < 1.0) {
    sl__config_verr(c, "retryBackoff must be 1 (fixed delay) or greater");
    goto out;
  }
  if (opt_positive(c, t, "retryMaxDelayMs", &ns->retry_max_delay_ms, 30000)) goto out;
  if (sl__config_opt_int(c, t, "flushIntervalMs", &ns->flush_interval_ms, -1)) goto out;
  if (ns->flush_interval_ms != -1 &&
      (ns->flush_interval_ms < 0 || ns->flush_interval_ms > SL_FLUSH_INTERVAL_MAX_MS)) {
    sl__config_verr(c, "flushIntervalMs must be between 0 (off) and %d", SL_FLUSH_INTERVAL_MAX_MS);
    goto out;
  }
  if (sl__config_opt_hook(c, t, "coalesceKey", &ns->coalesce_key_ref, &ns->coalesce_key_path))
    goto out;
  if (sl__config_opt_hook(c, t, "snapshot", &ns->snapshot_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "route", &ns->route_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "authorize", &ns->authorize_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "onConnect", &ns->on_connect_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "onEvent", &ns->on_event_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "onClientPublish", &ns->on_client_publish_ref, NULL)) goto out;
  if (validate_recovery(c, t, ns)) goto out;
  if ((ns->coalesce_key_path || ns->coalesce_key_ref != SL_NOREF) && !ns->coalesce &&
      ns->overflow != SL_COALESCE)
    sl__config_vwarn(
        c, "coalesceKey has no effect without coalesce: true or overflowAction: COALESCE");

out:
  lua_settop(L, top);
  return c->rc;
}

/* sl__config_ns_flush_interval: see sl_config_int.h. */
void sl__config_ns_flush_interval(vctx *c, sl_ns_config *ns, int64_t server_ms) {
  if (ns->delivery == SL_AT_LEAST_ONCE) {
    if (ns->flush_interval_ms > 0)
      sl__config_vwarn(c, "flushIntervalMs has no effect in an AT_LEAST_ONCE namespace (its "
                          "deliveries are written at once)");
    ns->flush_interval_ms = 0;
  } else if (ns->flush_interval_ms < 0) {
    ns->flush_interval_ms = server_ms;
  }
}
