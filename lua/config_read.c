/* config_read.c - the JSON and YAML config readers: text -> one Lua table (the root), which
 * config.c validates like a Lua config's. JSON goes through cJSON; YAML through libyaml's
 * event API with the YAML 1.2 core schema for plain scalars. Both build their tables inside
 * sl_lua_call, since the VM's memory limit can raise while they do. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <yaml.h>

#include "sl_config_read.h"
#include "sl_lua_call.h"
#include "sl_lua_json.h"
#include "sl_util.h"

#define YAML_MAX_DEPTH 128

/* ------------------------------------------------------------------------------------- */
/* ${VAR} and ${VAR:-default}: values from the environment                                */

/* One reference found at s: ${NAME} or ${NAME:-DEFAULT} (DEFAULT used when NAME is unset
 * or empty, as in the shell). Sets *val (not owned) and returns the reference's length, or
 * 0 with a message in err when it is malformed (no closing brace on the line, a bad name)
 * or names an unset variable without a default. */
static size_t env_ref(const char *s, size_t n, const char **val, size_t *vlen, char *err,
                      size_t errlen) {
  size_t i = 2, name0 = 2;
  while (i < n && (s[i] == '_' || isalnum((unsigned char)s[i]))) i++;
  size_t namelen = i - name0;
  if (namelen == 0 || isdigit((unsigned char)s[name0])) {
    snprintf(err, errlen, "\"${\" must be followed by a variable name (letters, digits, _)");
    return 0;
  }
  const char *def = NULL;
  size_t deflen = 0;
  if (i + 1 < n && s[i] == ':' && s[i + 1] == '-') {
    def = s + i + 2;
    i += 2;
    while (i < n && s[i] != '}' && s[i] != '\n') i++;
    deflen = (size_t)(s + i - def);
  }
  if (i >= n || s[i] != '}') {
    snprintf(err, errlen, "unterminated \"${%.*s\" (expected ${NAME} or ${NAME:-default})",
             (int)(namelen > 64 ? 64 : namelen), s + name0);
    return 0;
  }
  char name[256];
  if (namelen >= sizeof name) {
    snprintf(err, errlen, "environment variable name too long");
    return 0;
  }
  memcpy(name, s + name0, namelen);
  name[namelen] = 0;
  const char *v = getenv(name);
  if ((!v || !*v) && def) {
    *val = def;
    *vlen = deflen;
  } else if (!v) {
    snprintf(err, errlen,
             "environment variable %.64s is not set (use ${%.64s:-default} for a default)", name,
             name);
    return 0;
  } else {
    *val = v;
    *vlen = strlen(v);
  }
  return i + 1;
}

/* Expand every ${...} of s[0..n) into out ("$${" stands for a literal "${"). Returns 1
 * (expanded: out holds the text), 0 (no reference: out untouched) or -1 (err set). */
static int env_expand(const char *s, size_t n, sl_sbuf *out, char *err, size_t errlen) {
  if (!memchr(s, '$', n)) return 0;
  bool any = false;
  size_t done = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] != '$') continue;
    if (s[i + 1] == '$' && i + 2 < n && s[i + 2] == '{') {
      sl_sbuf_append(out, s + done, i - done + 1); /* keep one '$' */
      done = i + 2;
      i += 1;
      any = true;
      continue;
    }
    if (s[i + 1] != '{') continue;
    const char *v;
    size_t vlen;
    size_t k = env_ref(s + i, n - i, &v, &vlen, err, errlen);
    if (!k) return -1;
    sl_sbuf_append(out, s + done, i - done);
    sl_sbuf_append(out, v, vlen);
    done = i + k;
    i += k - 1;
    any = true;
  }
  if (!any) return 0;
  sl_sbuf_append(out, s + done, n - done);
  return 1;
}

/* Whether s[0..n) is a JSON number, true, false or null (inserted unquoted). */
static bool json_literal(const char *s, size_t n) {
  if ((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5)) ||
      (n == 4 && !memcmp(s, "null", 4)))
    return true;
  size_t i = 0;
  if (i < n && s[i] == '-') i++;
  if (i >= n || !isdigit((unsigned char)s[i])) return false;
  if (s[i] == '0')
    i++;
  else
    while (i < n && isdigit((unsigned char)s[i])) i++;
  if (i < n && s[i] == '.') {
    if (++i >= n || !isdigit((unsigned char)s[i])) return false;
    while (i < n && isdigit((unsigned char)s[i])) i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= n || !isdigit((unsigned char)s[i])) return false;
    while (i < n && isdigit((unsigned char)s[i])) i++;
  }
  return i == n;
}

/* Append v as JSON string content (no quotes): escapes quotes, backslashes and controls, so
 * a value can neither end the string nor add a line. */
static void json_escape_into(sl_sbuf *b, const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)v[i];
    if (ch == '"' || ch == '\\') {
      char e[2] = {'\\', (char)ch};
      sl_sbuf_append(b, e, 2);
    } else if (ch < 0x20) {
      sl_sbuf_printf(b, "\\u%04x", ch);
    } else {
      sl_sbuf_append(b, v + i, 1);
    }
  }
}

/* The JSON text with its ${...} references replaced, before cJSON sees it: inside a string
 * by the escaped value; as a bare value (`"port": ${PORT}`) by the value itself when it is a
 * JSON number/true/false/null, else by the value as a string. Replacements never add a
 * newline, so parse errors keep their line. Returns 1 (out holds the text), 0 (no
 * reference) or -1 (err: "... at line L"). */
static int json_env_expand(const char *text, size_t len, sl_sbuf *out, char *err, size_t errlen) {
  if (!memchr(text, '$', len)) return 0;
  bool in_str = false, any = false;
  size_t done = 0;
  int line = 1;
  for (size_t i = 0; i < len; i++) {
    char ch = text[i];
    if (ch == '\n') line++;
    if (in_str && ch == '\\') {
      i++;
      continue;
    }
    if (ch == '"') {
      in_str = !in_str;
      continue;
    }
    if (ch != '$' || i + 1 >= len) continue;
    if (text[i + 1] == '$' && i + 2 < len && text[i + 2] == '{') {
      sl_sbuf_append(out, text + done, i - done);
      sl_sbuf_puts(out, in_str ? "${" : "\"${");
      size_t j = i + 3; /* a bare $${...} becomes the string "${...}" */
      if (!in_str) {
        while (j < len && text[j] != '}' && text[j] != '\n') j++;
        json_escape_into(out, text + i + 3, j - (i + 3));
        if (j < len && text[j] == '}') j++, sl_sbuf_puts(out, "}");
        sl_sbuf_puts(out, "\"");
      }
      done = j;
      i = j - 1;
      any = true;
      continue;
    }
    if (text[i + 1] != '{') continue;
    const char *v;
    size_t vlen;
    char e[200];
    size_t k = env_ref(text + i, len - i, &v, &vlen, e, sizeof e);
    if (!k) {
      snprintf(err, errlen, "%s at line %d", e, line);
      return -1;
    }
    sl_sbuf_append(out, text + done, i - done);
    if (in_str) {
      json_escape_into(out, v, vlen);
    } else if (json_literal(v, vlen)) {
      sl_sbuf_append(out, v, vlen);
    } else {
      sl_sbuf_puts(out, "\"");
      json_escape_into(out, v, vlen);
      sl_sbuf_puts(out, "\"");
    }
    done = i + k;
    i += k - 1;
    any = true;
  }
  if (!any) return 0;
  sl_sbuf_append(out, text + done, len - done);
  return 1;
}

/* ------------------------------------------------------------------------------------- */
/* Where each table and key came from, for validation messages                            */

/* registry[&k_lines] = { [lightuserdata(table)] = { [true] = start line, [key] = line } }
 * while a config is being loaded. Keyed by the table's address (lua_topointer): the
 * validator knows the tables it reads by address, and the root keeps them all alive. */
static const char k_lines;

/* stack: -> lines (created on first use) */
static void push_lines(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&k_lines);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushlightuserdata(L, (void *)&k_lines);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* Record a line for the table at index t: its start (key nil on top... see below) or one
 * of its keys. stack: key (or nothing when !has_key) -> (nothing). May raise (memory). */
static void note_line(lua_State *L, int t, bool has_key, int line) {
  if (t < 0) t = lua_gettop(L) + t + 1;
  push_lines(L); /* key?, lines */
  lua_pushlightuserdata(L, (void *)lua_topointer(L, t));
  lua_rawget(L, -2); /* key?, lines, entry */
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushlightuserdata(L, (void *)lua_topointer(L, t));
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  if (has_key) {
    lua_pushvalue(L, -3); /* key, lines, entry, key */
    lua_pushinteger(L, line);
    lua_rawset(L, -3);
    lua_pop(L, 3);
  } else {
    lua_pushboolean(L, 1);
    lua_pushinteger(L, line);
    lua_rawset(L, -3);
    lua_pop(L, 2);
  }
}

/* sl__config_line: see sl_config_read.h. */
int sl__config_line(lua_State *L, const void *table, const char *key) {
  if (!table) return 0;
  int top = lua_gettop(L);
  int line = 0;
  lua_pushlightuserdata(L, (void *)&k_lines);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_istable(L, -1)) {
    lua_pushlightuserdata(L, (void *)table);
    lua_rawget(L, -2);
    if (lua_istable(L, -1)) {
      if (key)
        lua_pushstring(L, key);
      else
        lua_pushboolean(L, 1);
      lua_rawget(L, -2);
      line = (int)lua_tointeger(L, -1);
    }
  }
  lua_settop(L, top);
  return line;
}

/* sl__config_lines_clear: see sl_config_read.h. */
void sl__config_lines_clear(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&k_lines);
  lua_pushnil(L);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* ------------------------------------------------------------------------------------- */
/* JSON                                                                                   */

/* stack: root(lightuserdata cJSON) -> value */
typedef struct jpos {
  const char *p, *end;
  int line;
} jpos;

static void jp_ws(jpos *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) {
    if (*j->p == '\n') j->line++;
    j->p++;
  }
}

/* Skip one scalar token (string, number, literal); the text is valid JSON (cJSON said so). */
static void jp_scalar(jpos *j) {
  if (j->p < j->end && *j->p == '"') {
    for (j->p++; j->p < j->end && *j->p != '"'; j->p++)
      if (*j->p == '\\') j->p++;
    j->p++;
    return;
  }
  while (j->p < j->end && !strchr(",]} \t\r\n", *j->p)) j->p++;
}

/* Walk the value at j->p (node is its cJSON node, in document order) and note the lines
 * of the Lua table at index t (0: none, as for a scalar) and of its keys; containers
 * recurse into their Lua values. stack: unchanged. May raise (memory). */
static void jp_value(lua_State *L, jpos *j, const cJSON *node, int t) {
  jp_ws(j);
  if (j->p >= j->end || !node) return;
  char open = *j->p;
  if (open != '{' && open != '[') {
    jp_scalar(j);
    return;
  }
  luaL_checkstack(L, 6, "JSON nesting");
  if (t) note_line(L, t, false, j->line);
  j->p++;
  int i = 0;
  for (const cJSON *c = node->child; c; c = c->next) {
    jp_ws(j);
    int sub = 0;
    if (open == '{') {
      int kline = j->line;
      jp_scalar(j); /* the key */
      jp_ws(j);
      j->p++; /* ':' */
      if (t && c->string) {
        lua_pushstring(L, c->string);
        lua_pushvalue(L, -1);
        note_line(L, t, true, kline); /* key */
        lua_rawget(L, t);             /* value */
      } else {
        lua_pushnil(L);
      }
    } else if (t) {
      lua_rawgeti(L, t, ++i);
    } else {
      lua_pushnil(L);
    }
    if (lua_istable(L, -1)) sub = lua_gettop(L);
    jp_value(L, j, c, sub);
    lua_pop(L, 1);
    jp_ws(j);
    if (j->p < j->end && *j->p == ',') j->p++;
  }
  jp_ws(j);
  j->p++; /* '}' or ']' */
}

typedef struct jread {
  const cJSON *root;
  const char *text;
  size_t len;
} jread;

/* stack: jread -> value (and the lines of its tables noted) */
static int json_cf(lua_State *L) {
  jread *r = lua_touserdata(L, 1);
  sl__json_push_cjson(L, r->root);
  jpos j = {r->text, r->text + r->len, 1};
  jp_value(L, &j, r->root, lua_istable(L, -1) ? lua_gettop(L) : 0);
  return 1;
}

static void line_col(const char *text, const char *at, int *line, int *col) {
  *line = 1;
  *col = 1;
  for (const char *p = text; p < at; p++) {
    if (*p == '\n')
      (*line)++, *col = 1;
    else
      (*col)++;
  }
}

static int read_json(lua_State *L, const char *text, size_t len, const char *file, char *err,
                     size_t errlen);

/* sl__config_read_json: see sl_config_read.h. ${...} references are expanded first
 * (json_env_expand). */
int sl__config_read_json(lua_State *L, const char *text, size_t len, const char *file, char *err,
                         size_t errlen) {
  sl_sbuf ex = {0};
  char e0[300];
  int x = json_env_expand(text, len, &ex, e0, sizeof e0);
  if (x < 0) {
    sl_sbuf_free(&ex);
    snprintf(err, errlen, "Failed to parse config file \"%s\": %s", file, e0);
    return SL_ECONFIG;
  }
  if (x > 0) text = ex.data ? ex.data : "", len = ex.len;
  int rc = read_json(L, text, len, file, err, errlen);
  sl_sbuf_free(&ex);
  return rc;
}

static int read_json(lua_State *L, const char *text, size_t len, const char *file, char *err,
                     size_t errlen) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (root && end) {
    while (end < text + len && isspace((unsigned char)*end)) end++;
    if (end < text + len) {
      cJSON_Delete(root);
      root = NULL;
    }
  }
  if (!root) {
    const char *at = end ? end : cJSON_GetErrorPtr();
    if (!at || at < text || at > text + len) at = text + len;
    int line, col;
    line_col(text, at, &line, &col);
    snprintf(err, errlen, "Failed to parse config file \"%s\": invalid JSON at line %d column %d",
             file, line, col);
    return SL_ECONFIG;
  }
  jread jr = {root, text, len};
  lua_pushcfunction(L, json_cf);
  lua_pushlightuserdata(L, &jr);
  char e[256];
  int rc = sl_lua_call(NULL, L, 0, 1, 1, "config", e, sizeof e);
  cJSON_Delete(root);
  if (rc) {
    snprintf(err, errlen, "Failed to parse config file \"%s\": %s", file, e);
    return SL_ECONFIG;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------- */
/* YAML (libyaml event API, YAML 1.2 core schema for plain scalars)                       */

typedef struct yctx {
  yaml_parser_t parser;
  yaml_event_t ev;
  bool ev_live;
  char msg[256]; /* our own structural errors */
  sl_sbuf ex;    /* a scalar with its ${...} expanded */
} yctx;

static bool all_in(const char *s, size_t n, const char *set) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++)
    if (!strchr(set, s[i])) return false;
  return true;
}

static bool is_core_float(const char *s, size_t n) {
  size_t i = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) i++;
  size_t d1 = 0, d2 = 0;
  while (i < n && isdigit((unsigned char)s[i])) i++, d1++;
  if (i < n && s[i] == '.') {
    i++;
    while (i < n && isdigit((unsigned char)s[i])) i++, d2++;
  }
  if (d1 == 0 && d2 == 0) return false;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    size_t d3 = 0;
    while (i < n && isdigit((unsigned char)s[i])) i++, d3++;
    if (d3 == 0) return false;
  }
  return i == n;
}

/* Push a plain scalar resolved with the YAML 1.2 core schema. stack: -> value */
static void push_plain_scalar(lua_State *L, const char *s, size_t n) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  static const char *const trues[] = {"true", "True", "TRUE"};
  static const char *const falses[] = {"false", "False", "FALSE"};
  char buf[64];
  for (size_t i = 0; i < 5; i++)
    if (strlen(nulls[i]) == n && memcmp(nulls[i], s, n) == 0) {
      sl__lua_pushnull(L);
      return;
    }
  for (size_t i = 0; i < 3; i++) {
    if (strlen(trues[i]) == n && memcmp(trues[i], s, n) == 0) {
      lua_pushboolean(L, 1);
      return;
    }
    if (strlen(falses[i]) == n && memcmp(falses[i], s, n) == 0) {
      lua_pushboolean(L, 0);
      return;
    }
  }
  if (n < sizeof buf) {
    memcpy(buf, s, n);
    buf[n] = 0;
    size_t off = (buf[0] == '+' || buf[0] == '-') ? 1 : 0;
    if (all_in(buf + off, n - off, "0123456789") || is_core_float(buf, n)) {
      lua_pushnumber(L, strtod(buf, NULL));
      return;
    }
    if (n > 2 && buf[0] == '0' && buf[1] == 'o' && all_in(buf + 2, n - 2, "01234567")) {
      lua_pushnumber(L, (double)strtoull(buf + 2, NULL, 8));
      return;
    }
    if (n > 2 && buf[0] == '0' && buf[1] == 'x' &&
        all_in(buf + 2, n - 2, "0123456789abcdefABCDEF")) {
      lua_pushnumber(L, (double)strtoull(buf + 2, NULL, 16));
      return;
    }
    const char *inf = buf + off;
    if (!strcmp(inf, ".inf") || !strcmp(inf, ".Inf") || !strcmp(inf, ".INF")) {
      lua_pushnumber(L, buf[0] == '-' ? -HUGE_VAL : HUGE_VAL);
      return;
    }
    if (!off && (!strcmp(buf, ".nan") || !strcmp(buf, ".NaN") || !strcmp(buf, ".NAN"))) {
      lua_pushnumber(L, NAN);
      return;
    }
  }
  lua_pushlstring(L, s, n);
}

/* Frames of open collections live on the Lua stack: for each, the table, and for a mapping
 * whose key was read, the key above it. kind[] tracks which. */
typedef struct yframe {
  int table; /* stack index */
  bool is_map;
  bool have_key;
} yframe;

static void yaml_fail(lua_State *L, yctx *y, const char *fmt, ...) SL_PRINTF(3, 4);
static void yaml_fail(lua_State *L, yctx *y, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(y->msg, sizeof y->msg, fmt, ap);
  va_end(ap);
  luaL_error(L, "%s", y->msg);
}

/* add the value on top of the stack to the innermost open collection (or leave it as the
 * document root when there is none). */
static void yaml_add(lua_State *L, yctx *y, yframe *fr, int depth, size_t line) {
  if (depth == 0) return;
  yframe *f = &fr[depth - 1];
  if (!f->is_map) {
    lua_rawseti(L, f->table, (int)lua_objlen(L, f->table) + 1);
    return;
  }
  if (!f->have_key) {
    if (lua_isnil(L, -1) || sl__lua_isnull(L, -1)) {
      lua_pop(L, 1);
      lua_pushliteral(L, "null");
    } else if (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1))) {
      yaml_fail(L, y, "a mapping key cannot be NaN (line %zu)", line);
    }
    lua_pushvalue(L, -1);
    lua_rawget(L, f->table);
    if (!lua_isnil(L, -1)) {
      lua_pop(L, 1);
      const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
      yaml_fail(L, y, "duplicate key \"%s\" (line %zu)", k, line);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    note_line(L, f->table, true, (int)line); /* where the key is, for messages */
    f->have_key = true;
    return;
  }
  lua_rawset(L, f->table); /* stack: ..., table, key, value -> ..., table */
  f->have_key = false;
}

/* yaml_cf: stack: yctx -> root value. */
static int yaml_cf(lua_State *L) {
  yctx *y = lua_touserdata(L, 1);
  lua_newtable(L); /* 2: anchors */
  int anchors = 2;
  yframe fr[YAML_MAX_DEPTH];
  int depth = 0;
  int docs = 0;
  bool have_root = false;
  for (;;) {
    if (!yaml_parser_parse(&y->parser, &y->ev)) {
      const char *what = y->parser.problem ? y->parser.problem : "syntax error";
      if (y->parser.context)
        yaml_fail(L, y, "%s %s at line %zu column %zu", y->parser.context, what,
                  y->parser.problem_mark.line + 1, y->parser.problem_mark.column + 1);
      yaml_fail(L, y, "%s at line %zu column %zu", what, y->parser.problem_mark.line + 1,
                y->parser.problem_mark.column + 1);
    }
    y->ev_live = true;
    yaml_event_t *ev = &y->ev;
    size_t line = ev->start_mark.line + 1;
    luaL_checkstack(L, 8, "YAML nesting");
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
      yaml_event_delete(ev);
      y->ev_live = false;
      if (!have_root) sl__lua_pushnull(L);
      return 1;
    case YAML_DOCUMENT_START_EVENT:
      if (++docs > 1) yaml_fail(L, y, "multiple YAML documents (line %zu); expected one", line);
      break;
    case YAML_SCALAR_EVENT: {
      const char *v = (const char *)ev->data.scalar.value;
      size_t n = ev->data.scalar.length;
      /* ${VAR} before the schema: `port: ${PORT}` is a number, `"${PORT}"` a string */
      int x = env_expand(v, n, &y->ex, y->msg, sizeof y->msg);
      if (x < 0) {
        char m[sizeof y->msg];
        snprintf(m, sizeof m, "%s", y->msg);
        yaml_fail(L, y, "%s (line %zu)", m, line);
      }
      if (x > 0) v = y->ex.data ? y->ex.data : "", n = y->ex.len;
      if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.plain_implicit)
        push_plain_scalar(L, v, n);
      else
        lua_pushlstring(L, v, n);
      y->ex.len = 0;
      if (ev->data.scalar.anchor) {
        lua_pushstring(L, (const char *)ev->data.scalar.anchor);
        lua_pushvalue(L, -2);
        lua_rawset(L, anchors);
      }
      yaml_add(L, y, fr, depth, line);
      if (depth == 0) have_root = true;
      break;
    }
    case YAML_ALIAS_EVENT:
      lua_pushstring(L, (const char *)ev->data.alias.anchor);
      lua_rawget(L, anchors);
      if (lua_isnil(L, -1))
        yaml_fail(L, y, "unknown alias *%s (line %zu)", ev->data.alias.anchor, line);
      yaml_add(L, y, fr, depth, line);
      if (depth == 0) have_root = true;
      break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
      if (depth >= YAML_MAX_DEPTH) yaml_fail(L, y, "nested too deeply (line %zu)", line);
      bool map = ev->type == YAML_MAPPING_START_EVENT;
      lua_newtable(L);
      const yaml_char_t *anchor =
          map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
      if (anchor) {
        lua_pushstring(L, (const char *)anchor);
        lua_pushvalue(L, -2);
        lua_rawset(L, anchors);
      }
      fr[depth].table = lua_gettop(L);
      note_line(L, -1, false, (int)line);
      fr[depth].is_map = map;
      fr[depth].have_key = false;
      depth++;
      break;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      depth--;
      yaml_add(L, y, fr, depth, line);
      if (depth == 0) have_root = true;
      break;
    default: break;
    }
    yaml_event_delete(ev);
    y->ev_live = false;
  }
}

/* sl__config_read_yaml: see sl_config_read.h. */
int sl__config_read_yaml(lua_State *L, const char *text, size_t len, const char *file, char *err,
                         size_t errlen) {
  yctx *y = sl_xcalloc(1, sizeof *y);
  if (!yaml_parser_initialize(&y->parser)) {
    free(y);
    snprintf(err, errlen, "Failed to parse config file \"%s\": out of memory", file);
    return SL_ECONFIG;
  }
  yaml_parser_set_input_string(&y->parser, (const unsigned char *)text, len);
  lua_pushcfunction(L, yaml_cf);
  lua_pushlightuserdata(L, y);
  char e[300];
  int rc = sl_lua_call(NULL, L, 0, 1, 1, "config", e, sizeof e);
  if (y->ev_live) yaml_event_delete(&y->ev);
  yaml_parser_delete(&y->parser);
  sl_sbuf_free(&y->ex);
  if (rc) {
    snprintf(err, errlen, "Failed to parse config file \"%s\": %s", file, y->msg[0] ? y->msg : e);
    free(y);
    return SL_ECONFIG;
  }
  free(y);
  return 0;
}
