/* pview.c - payload views: the payload a route or coalesceKey hook reads, served straight
 * from the message's JSON text instead of being decoded into Lua tables.
 *
 * Why: those two hooks run once per publish and usually read one or two fields
 * (msg.payload.symbol). Decoding a five-field object into a table cost ~450 ns, four times
 * the whole budget (DESIGN.md 5: a hook costs at most 100 ns per publish). A view costs one
 * C __index call that scans the object's members up to the key it wants.
 *
 * What a script sees: a read-only table. p.key and p[i] read fields and elements (objects
 * and arrays come back as views of their own; strings, numbers, booleans and
 * sluice.json.null as plain values), #p is the array length (0 for an object), pairs, ipairs
 * and next iterate, type(p) is "table", tostring(p) is the JSON text, sluice.json.encode(p)
 * copies the text verbatim and sluice.json.decode(p) gives a real, writable table. Writes
 * raise "payload is read-only". A view lives as long as its hook call: using one kept from
 * an earlier call raises. (The top-level view is one reusable object per VM, rebound each
 * call, so a kept reference read during a later hook call sees that call's payload; nested
 * views and iterators still raise. Scripts keep sluice.json.decode(p), never the view.)
 *
 * Lifetime. Every hook call that hands out views opens a scope (sl__pv_enter / leave, LIFO
 * on the loop thread, so nested hook calls nest); a view carries its scope's id and is live
 * while that scope is open. The text belongs to the core and is valid exactly that long.
 *
 * The scanner validates what it walks (strings, escapes, numbers, literals, nesting), so a
 * malformed payload raises "payload is not valid JSON" instead of reading past its end. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_jscan.h"
#include "sl_lua_json.h"
#include "sl_lua_pview.h"

#define PV_INLINE static inline __attribute__((always_inline))

typedef struct pview {
  const char *s; /* the value's text, starting at '{' or '[' */
  size_t n;      /* its length, through the closing bracket */
  uint64_t scope;
  /* sequential array access: element `ai` (1-based) starts at s + aoff */
  size_t ai, aoff;
} pview;

static char k_pview_mt;   /* registry key of the metatable */
static char k_pview_mark; /* registry key of the marker (the metatable's __metatable) */

static _Thread_local sl__pv_scope *pv_top;
static _Thread_local uint64_t pv_last_id;

/* sl__pv_enter: see sl_lua_pview.h. */
void sl__pv_enter(sl__pv_scope *s) {
  s->id = ++pv_last_id;
  s->prev = pv_top;
  pv_top = s;
}

/* sl__pv_leave: see sl_lua_pview.h. */
void sl__pv_leave(sl__pv_scope *s) {
  if (pv_top == s) pv_top = s->prev;
}

PV_INLINE bool live(uint64_t id) {
  if (pv_top && pv_top->id == id) return true; /* the innermost call: nearly always */
  for (const sl__pv_scope *s = pv_top; s; s = s->prev)
    if (s->id == id) return true;
  return false;
}

/* ------------------------------------------------------------------------------------- */
/* Views */

static int not_json(lua_State *L) { return luaL_error(L, "payload is not valid JSON"); }

/* The live view at idx (raises when it expired). Only views reach the metamethods: the
 * metatable is locked, so nobody can call them on anything else. */
static pview *live_view(lua_State *L, int idx) {
  pview *v = lua_touserdata(L, idx);
  if (!v || !live(v->scope))
    luaL_error(L, "payload view used after its hook returned (copy it with "
                  "sluice.json.decode(payload) to keep it)");
  return v;
}

static const char *view_end(pview *v) { return v->s + v->n; }

/* stack: -> view of [s, s+n) */
static void new_view(lua_State *L, const char *s, size_t n, uint64_t scope) {
  pview *v = lua_newuserdata(L, sizeof *v);
  v->s = s;
  v->n = n;
  v->scope = scope;
  v->ai = 0;
  v->aoff = 0;
  lua_pushlightuserdata(L, &k_pview_mt);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setmetatable(L, -2);
}

/* Push the value [p, q) (p at its first character, q its end) as Lua. */
static void push_value(lua_State *L, const char *p, const char *q, uint64_t scope) {
  switch (*p) {
  case '{':
  case '[': new_view(L, p, (size_t)(q - p), scope); return;
  case 't': lua_pushboolean(L, 1); return;
  case 'f': lua_pushboolean(L, 0); return;
  case 'n': sl__lua_pushnull(L); return;
  case '"': {
    size_t n = (size_t)(q - p - 2), i = 0;
    if (n < 16) /* most are short: no call */
      while (i < n && p[1 + i] != '\\') i++;
    if (n < 16 ? i == n : !memchr(p + 1, '\\', n)) {
      lua_pushlstring(L, p + 1, n);
      return;
    }
    break; /* escapes are decoded by the one JSON decoder */
  }
  default: break;
  }
  if (!sl__json_decode_text(L, p, (size_t)(q - p))) not_json(L);
}

/* Does the key string token [ks, ke) (without quotes) equal k? */
PV_INLINE bool key_eq(lua_State *L, const char *ks, const char *ke, bool esc, const char *k,
                      size_t kl) {
  if (!esc) return (size_t)(ke - ks) == kl && (!kl || (*ks == *k && !memcmp(ks, k, kl)));
  if (!sl__json_decode_text(L, ks - 1, (size_t)(ke - ks) + 2)) not_json(L);
  size_t dl;
  const char *d = lua_tolstring(L, -1, &dl);
  bool same = d && dl == kl && !memcmp(d, k, kl);
  lua_pop(L, 1);
  return same;
}

/* A value at q (sets [*vs, *ve)) and what follows it inside its container: a comma (the
 * result is the next item, after whitespace) or close (the result is at it); raises on
 * anything else. */
PV_INLINE const char *value_then_comma(lua_State *L, const char *q, const char *e, char close,
                                       const char **vs, const char **ve) {
  *vs = q;
  if (!(q = sl_js_value(q, e, 1))) not_json(L);
  *ve = q;
  q = sl_js_ws(q, e);
  if (q >= e) not_json(L);
  if (*q == ',') return sl_js_ws(q + 1, e);
  if (*q != close) not_json(L);
  return q;
}

/* Object member walk. *p at the first member (after '{' and whitespace) or at '}'.
 * On a member: sets key [*ks, *ke), its escape flag and value [*vs, *ve), advances *p past
 * the member and its comma, returns 1. At the end returns 0; on bad text raises. */
PV_INLINE int next_member(lua_State *L, const char **p, const char *e, const char **ks,
                          const char **ke, bool *esc, const char **vs, const char **ve) {
  const char *q = *p;
  if (q < e && *q == '}') return 0;
  if (q >= e || *q != '"') not_json(L);
  *ks = q + 1;
  if (!(q = sl_js_string(q, e, esc))) not_json(L);
  *ke = q - 1;
  q = sl_js_ws(q, e);
  if (q >= e || *q != ':') not_json(L);
  *p = value_then_comma(L, sl_js_ws(q + 1, e), e, '}', vs, ve);
  return 1;
}

/* Array element walk, same contract; *p at the first element or at ']'. */
PV_INLINE int next_element(lua_State *L, const char **p, const char *e, const char **vs,
                           const char **ve) {
  const char *q = *p;
  if (q < e && *q == ']') return 0;
  *p = value_then_comma(L, q, e, ']', vs, ve);
  return 1;
}

/* Element i (1-based) of an array view: [*vs, *ve). Sequential reads (a[1], a[2], ...)
 * resume where the last one stopped. Returns false when there is no such element. */
static bool array_at(lua_State *L, pview *v, size_t i, const char **vs, const char **ve) {
  const char *e = view_end(v), *p;
  size_t at;
  if (v->ai && v->ai <= i) {
    at = v->ai;
    p = v->s + v->aoff;
  } else {
    at = 1;
    p = sl_js_ws(v->s + 1, e);
  }
  for (;; at++) {
    const char *start = p;
    if (!next_element(L, &p, e, vs, ve)) return false;
    if (at == i) {
      v->ai = i;
      v->aoff = (size_t)(start - v->s);
      return true;
    }
  }
}

/* __index: stack: view, key -> value | nil */
static int l_pv_index(lua_State *L) {
  pview *v = live_view(L, 1);
  const char *e = view_end(v), *vs, *ve;
  if (*v->s == '{') {
    size_t kl;
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    const char *k = lua_tolstring(L, 2, &kl), *p, *ks, *ke;
    bool esc;
    /* names as written first (the scanner's fast path); when a name with escapes comes
     * before the answer, the walk below decodes names to compare them */
    switch (sl_js_member(v->s, e, k, kl, &vs, &ve)) {
    case 1: push_value(L, vs, ve, v->scope); return 1;
    case 0: return 0;
    case -1: return not_json(L);
    default: break;
    }
    p = sl_js_ws(v->s + 1, e);
    while (next_member(L, &p, e, &ks, &ke, &esc, &vs, &ve))
      if (key_eq(L, ks, ke, esc, k, kl)) {
        push_value(L, vs, ve, v->scope);
        return 1;
      }
    return 0;
  }
  if (lua_type(L, 2) != LUA_TNUMBER) return 0;
  lua_Number d = lua_tonumber(L, 2);
  if (d < 1 || d != floor(d) || d > 1e15) return 0;
  if (!array_at(L, v, (size_t)d, &vs, &ve)) return 0;
  push_value(L, vs, ve, v->scope);
  return 1;
}

static int l_pv_newindex(lua_State *L) {
  return luaL_error(L, "payload is read-only (sluice.json.decode(payload) gives a copy you "
                       "can change)");
}

/* __len: the number of elements of an array, 0 for an object (like a decoded table). */
static int l_pv_len(lua_State *L) {
  pview *v = live_view(L, 1);
  size_t n = 0;
  if (*v->s == '[') {
    const char *e = view_end(v), *p = sl_js_ws(v->s + 1, e), *vs, *ve;
    while (next_element(L, &p, e, &vs, &ve)) n++;
  }
  lua_pushnumber(L, (lua_Number)n);
  return 1;
}

static int l_pv_tostring(lua_State *L) {
  pview *v = lua_touserdata(L, 1);
  if (v && live(v->scope))
    lua_pushlstring(L, v->s, v->n);
  else
    lua_pushliteral(L, "payload (expired)");
  return 1;
}

/* __eq: two views of the same text are equal (p.a == p.a). */
static int l_pv_eq(lua_State *L) {
  pview *a = lua_touserdata(L, 1), *b = lua_touserdata(L, 2);
  lua_pushboolean(L, a && b && a->s == b->s && a->n == b->n);
  return 1;
}

/* The iterator made by pairs/ipairs on a view: upvalue 1 is the offset of the next member
 * (-1 at the end: ipairs on an object yields nothing, as on a decoded object), upvalue 2
 * the next array index, upvalue 3 the scope the view had when the loop started (the shared
 * view is rebound by later calls; a stale iterator must not apply old offsets to new text).
 * stack: view, ctrl -> key, value | nil */
static int l_pv_iter(lua_State *L) {
  pview *v = live_view(L, 1);
  lua_Number off = lua_tonumber(L, lua_upvalueindex(1));
  if ((lua_Number)v->scope != lua_tonumber(L, lua_upvalueindex(3)))
    return luaL_error(L, "payload view used after its hook returned");
  if (off < 0 || off > (lua_Number)v->n) return 0;
  const char *e = view_end(v), *p = v->s + (size_t)off, *ks, *ke, *vs, *ve;
  bool esc, more;
  if (*v->s == '{') {
    more = next_member(L, &p, e, &ks, &ke, &esc, &vs, &ve);
    if (more) {
      if (esc) {
        if (!sl__json_decode_text(L, ks - 1, (size_t)(ke - ks) + 2)) not_json(L);
      } else {
        lua_pushlstring(L, ks, (size_t)(ke - ks));
      }
    }
  } else {
    more = next_element(L, &p, e, &vs, &ve);
    if (more) {
      lua_Number i = lua_tonumber(L, lua_upvalueindex(2));
      lua_pushnumber(L, i);
      lua_pushnumber(L, i + 1);
      lua_replace(L, lua_upvalueindex(2));
    }
  }
  if (!more) {
    lua_pushnumber(L, -1);
    lua_replace(L, lua_upvalueindex(1));
    return 0;
  }
  lua_pushnumber(L, (lua_Number)(p - v->s));
  lua_replace(L, lua_upvalueindex(1));
  push_value(L, vs, ve, v->scope);
  return 2;
}

/* stack: view -> iter, view, nil */
static int iterate(lua_State *L, bool ipairs) {
  pview *v = live_view(L, 1);
  bool none = ipairs && *v->s == '{';
  lua_pushnumber(L, none ? -1 : (lua_Number)(sl_js_ws(v->s + 1, view_end(v)) - v->s));
  lua_pushnumber(L, 1);
  lua_pushnumber(L, (lua_Number)v->scope);
  lua_pushcclosure(L, l_pv_iter, 3);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

static int l_pv_pairs(lua_State *L) { return iterate(L, false); }
static int l_pv_ipairs(lua_State *L) { return iterate(L, true); }

/* next(view, key): stateless, so it finds key first (fine for the `next(p) == nil` idiom;
 * loops should use pairs). stack: view, key -> key', value | nil */
static int l_pv_next(lua_State *L) {
  pview *v = live_view(L, 1);
  const char *e = view_end(v), *p = sl_js_ws(v->s + 1, e), *ks, *ke, *vs, *ve;
  bool esc, found = lua_isnoneornil(L, 2);
  if (*v->s == '{') {
    size_t kl = 0;
    const char *k = found ? NULL : lua_tolstring(L, 2, &kl);
    if (!found && lua_type(L, 2) != LUA_TSTRING) return luaL_error(L, "invalid key to 'next'");
    while (next_member(L, &p, e, &ks, &ke, &esc, &vs, &ve)) {
      if (found) {
        if (esc) {
          if (!sl__json_decode_text(L, ks - 1, (size_t)(ke - ks) + 2)) not_json(L);
        } else {
          lua_pushlstring(L, ks, (size_t)(ke - ks));
        }
        push_value(L, vs, ve, v->scope);
        return 2;
      }
      found = key_eq(L, ks, ke, esc, k, kl);
    }
  } else {
    lua_Number want = found ? 0 : lua_tonumber(L, 2);
    if (!found && (lua_type(L, 2) != LUA_TNUMBER || want < 1 || want != floor(want)))
      return luaL_error(L, "invalid key to 'next'");
    if (array_at(L, v, (size_t)want + 1, &vs, &ve)) {
      lua_pushnumber(L, want + 1);
      push_value(L, vs, ve, v->scope);
      return 2;
    }
    found = true;
  }
  if (!found) return luaL_error(L, "invalid key to 'next'");
  lua_pushnil(L);
  return 1;
}

/* sl__pv_slice: see sl_lua_pview.h. */
bool sl__pv_slice(lua_State *L, int idx, const char **s, size_t *n) {
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return false;
  lua_pushlightuserdata(L, &k_pview_mt);
  lua_rawget(L, LUA_REGISTRYINDEX);
  bool is = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!is) return false;
  pview *v = live_view(L, idx);
  *s = v->s;
  *n = v->n;
  return true;
}

/* decode(view) -> a real table (for unpack and table.concat). */
static int l_pv_decode(lua_State *L) {
  const char *s;
  size_t n;
  if (!sl__pv_slice(L, 1, &s, &n)) return luaL_error(L, "not a payload view");
  if (!sl__json_decode_text(L, s, n)) return not_json(L);
  return 1;
}

/* The container [*p, *e) of payload text, trimmed; false for a scalar or empty payload. */
static bool container(const char *text, size_t len, const char **p, const char **e) {
  if (!text || !len) return false;
  if ((text[0] == '{' && text[len - 1] == '}') || (text[0] == '[' && text[len - 1] == ']')) {
    *p = text; /* the usual case: no whitespace around */
    *e = text + len;
    return true;
  }
  const char *b = sl_js_ws(text, text + len), *q = text + len;
  while (q > b && (q[-1] == ' ' || q[-1] == '\n' || q[-1] == '\r' || q[-1] == '\t')) q--;
  if (b == q || (*b != '{' && *b != '[')) return false;
  *p = b;
  *e = q;
  return true;
}

/* sl__pv_new: see sl_lua_pview.h. */
void *sl__pv_new(lua_State *L) {
  new_view(L, "{}", 2, 0); /* scope 0 is never live */
  return lua_touserdata(L, -1);
}

/* sl__pv_bind: see sl_lua_pview.h. */
bool sl__pv_bind(void *shared, const sl__pv_scope *scope, const char *text, size_t len) {
  pview *v = shared;
  const char *p, *e;
  if (!v || !container(text, len, &p, &e)) return false;
  if (v->scope == scope->id && v->s == p) return true; /* msg.payload read again */
  if (live(v->scope)) return false;                    /* an outer call still uses it */
  v->s = p;
  v->n = (size_t)(e - p);
  v->scope = scope->id;
  v->ai = v->aoff = 0;
  return true;
}

/* sl__pv_push: see sl_lua_pview.h. */
void sl__pv_push(lua_State *L, const sl__pv_scope *scope, const char *text, size_t len) {
  const char *p, *e;
  if (container(text, len, &p, &e)) {
    new_view(L, p, (size_t)(e - p), scope->id);
    return;
  }
  /* a scalar payload: decode it; bad or empty text gives nil (the core validated it) */
  if (!text || !sl__json_decode_text(L, text, len)) lua_pushnil(L);
}

/* Installed over the base library: views answer type/pairs/ipairs/next/rawget/unpack/
 * table.concat like the read-only tables they stand for. Lua wrappers (not C) so the JIT
 * still compiles them into non-hook code; argument errors are raised at the caller's level
 * with the base library's wording. */
static const char wrap_src[] =
    "local MARK, vpairs, vipairs, vnext, decode = ...\n"
    "local type, getmetatable, pairs, ipairs, next, rawget, unpack, concat, error =\n"
    "  type, getmetatable, pairs, ipairs, next, rawget, unpack, table.concat, error\n"
    "local function isview(v) return type(v) == 'userdata' and getmetatable(v) == MARK end\n"
    "local function want_table(v, fn)\n"
    "  local t = type(v)\n"
    "  if t ~= 'table' then error(\"bad argument #1 to '\" .. fn .. \"' (table expected, got \" "
    "..\n"
    "    (t == 'userdata' and getmetatable(v) == MARK and 'table' or t) .. ')', 3) end\n"
    "end\n"
    "_G.type = function(v)\n"
    "  local t = type(v)\n"
    "  if t == 'userdata' and getmetatable(v) == MARK then return 'table' end\n"
    "  return t\n"
    "end\n"
    "_G.getmetatable = function(v)\n"
    "  local m = getmetatable(v)\n"
    "  if m == MARK then return nil end\n"
    "  return m\n"
    "end\n"
    "_G.pairs = function(t)\n"
    "  if isview(t) then return vpairs(t) end\n"
    "  want_table(t, 'pairs')\n"
    "  return next, t, nil\n"
    "end\n"
    "_G.ipairs = function(t)\n"
    "  if isview(t) then return vipairs(t) end\n"
    "  want_table(t, 'ipairs')\n"
    "  return ipairs(t)\n"
    "end\n"
    "_G.next = function(t, k)\n"
    "  if isview(t) then return vnext(t, k) end\n"
    "  want_table(t, 'next')\n"
    "  return next(t, k)\n"
    "end\n"
    "_G.rawget = function(t, k)\n"
    "  if isview(t) then return t[k] end\n"
    "  want_table(t, 'rawget')\n"
    "  return rawget(t, k)\n"
    "end\n"
    "_G.unpack = function(t, ...)\n"
    "  if isview(t) then t = decode(t) end\n"
    "  want_table(t, 'unpack')\n"
    "  return unpack(t, ...)\n"
    "end\n"
    "table.concat = function(t, ...)\n"
    "  if isview(t) then t = decode(t) end\n"
    "  want_table(t, 'concat')\n"
    "  return concat(t, ...)\n"
    "end\n";

/* sl__pv_open: see sl_lua_pview.h. */
void sl__pv_open(lua_State *L) {
  static const luaL_Reg mt[] = {{"__index", l_pv_index}, {"__newindex", l_pv_newindex},
                                {"__len", l_pv_len},     {"__tostring", l_pv_tostring},
                                {"__eq", l_pv_eq},       {NULL, NULL}};
  lua_pushlightuserdata(L, &k_pview_mark);
  lua_newtable(L);
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, &k_pview_mt);
  lua_newtable(L);
  luaL_register(L, NULL, mt);
  lua_pushlightuserdata(L, &k_pview_mark);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "__metatable");
  lua_rawset(L, LUA_REGISTRYINDEX);

  if (luaL_loadbuffer(L, wrap_src, sizeof wrap_src - 1, "=payload views")) {
    lua_pop(L, 1);
    return;
  }
  lua_pushlightuserdata(L, &k_pview_mark);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_pv_pairs);
  lua_pushcfunction(L, l_pv_ipairs);
  lua_pushcfunction(L, l_pv_next);
  lua_pushcfunction(L, l_pv_decode);
  lua_call(L, 5, 0);
}
