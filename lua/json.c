/* json.c - JSON for the Lua binding: an encoder (Lua -> text, no tree, numbers printed as
 * JavaScript prints integers), a direct decoder (text -> Lua in one pass, strings without
 * escapes pushed straight from the text; cJSON only when binary attachments must be
 * resolved), and the sluice.json library. Decoded arrays carry a locked marker metatable
 * (sluice.json.is_array); JSON null is sluice.json.null (a NULL light userdata). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "sl_jscan.h"
#include "sl_lua_bytes.h"
#include "sl_lua_call.h"
#include "sl_lua_json.h"

#define SL_JSON_MAX_DEPTH 100

static char k_cjson_mt, k_array_mt;

/* ------------------------------------------------------------------------------------- */
/* JSON: Lua -> text (own encoder: no tree, numbers as JS prints integers)                */

/* sl__json_reserve: see sl_lua_json.h. */
void sl__json_reserve(lua_State *L, sl_lua *vm, size_t n) {
  if (vm->jlen + n <= vm->jcap) return;
  size_t cap = vm->jcap ? vm->jcap : 256;
  while (cap < vm->jlen + n) cap *= 2;
  char *p = realloc(vm->jb, cap);
  if (!p) luaL_error(L, "not enough memory to encode JSON");
  vm->jb = p;
  vm->jcap = cap;
}

/* sl__json_put: see sl_lua_json.h. */
void sl__json_put(lua_State *L, sl_lua *vm, const char *s, size_t n) {
  sl__json_reserve(L, vm, n);
  memcpy(vm->jb + vm->jlen, s, n);
  vm->jlen += n;
}

/* sl__json_string: see sl_lua_json.h. */
void sl__json_string(lua_State *L, sl_lua *vm, const char *s, size_t n) {
  static const char hx[] = "0123456789abcdef";
  /* room for the plain bytes and the quotes once; an escape (rare) makes room for itself
   * and the rest of the string, so the loop does no check per byte */
  sl__json_reserve(L, vm, n + 2);
  char *o = vm->jb + vm->jlen;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\') {
      *o++ = (char)ch;
      continue;
    }
    vm->jlen = (size_t)(o - vm->jb);
    sl__json_reserve(L, vm, 6 + (n - i) + 1);
    o = vm->jb + vm->jlen;
    *o++ = '\\';
    switch (ch) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    default:
      memcpy(o, "u00", 3);
      o[3] = hx[ch >> 4];
      o[4] = hx[ch & 15];
      o += 5;
    }
  }
  *o++ = '"';
  vm->jlen = (size_t)(o - vm->jb);
}

/* Numbers as sl_json_num writes them: integers up to 2^53 in full, others round-trip. */
static void jb_number(lua_State *L, sl_lua *vm, double d) {
  char buf[SL_JSON_NUM_MAX];
  size_t n = sl_json_num(buf, d);
  if (!n) luaL_error(L, "cannot encode NaN or infinity as JSON");
  sl__json_put(L, vm, buf, n);
}

static bool has_mt(lua_State *L, int idx, void *key) {
  if (!lua_getmetatable(L, idx)) return false;
  sl__lua_push_reg(L, key);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* sl__json_value: see sl_lua_json.h. Binary values become placeholders when allow_bin.
 * stack: unchanged. */
void sl__json_value(lua_State *L, sl_lua *vm, int idx, int depth, bool allow_bin) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (depth > SL_JSON_MAX_DEPTH) luaL_error(L, "cannot encode JSON: nested too deeply (cycle?)");
  luaL_checkstack(L, 4, "JSON nesting");
  switch (lua_type(L, idx)) {
  case LUA_TNIL: sl__json_put(L, vm, "null", 4); return;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      sl__json_put(L, vm, "true", 4);
    else
      sl__json_put(L, vm, "false", 5);
    return;
  case LUA_TNUMBER: jb_number(L, vm, lua_tonumber(L, idx)); return;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    sl__json_string(L, vm, s, n);
    return;
  }
  case LUA_TLIGHTUSERDATA:
    if (!lua_touserdata(L, idx)) {
      sl__json_put(L, vm, "null", 4);
      return;
    }
    break;
  case LUA_TUSERDATA: {
    const char *vs;
    size_t vn;
    if (vm->view_text && vm->view_text(L, idx, &vs, &vn)) { /* a payload view: verbatim */
      if (!sl__json_valid(vs, vn)) luaL_error(L, "payload is not valid JSON");
      sl__json_put(L, vm, vs, vn);
      return;
    }
    sl_bytes *b = sl__bytes_test(L, idx);
    if (!b) break;
    if (!allow_bin)
      luaL_error(L, "cannot encode binary data as JSON (binary is sent by client:emit and acks)");
    if (vm->nbins == vm->capbins) {
      size_t cap = vm->capbins ? vm->capbins * 2 : 4;
      sl_bin *nb = realloc(vm->bins, cap * sizeof *nb);
      if (!nb) luaL_error(L, "not enough memory");
      vm->bins = nb;
      vm->capbins = cap;
    }
    char ph[64];
    int n = snprintf(ph, sizeof ph, "{\"_placeholder\":true,\"num\":%zu}", vm->nbins);
    vm->bins[vm->nbins].data = b->data; /* anchored by the caller's stack */
    vm->bins[vm->nbins].len = b->len;
    vm->nbins++;
    sl__json_put(L, vm, ph, (size_t)n);
    return;
  }
  case LUA_TTABLE: {
    size_t n = lua_objlen(L, idx), count = 0;
    bool array = has_mt(L, idx, &k_array_mt);
    if (!array) {
      bool ints = true;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) != LUA_TNUMBER) ints = false;
      }
      array = ints && count > 0 && count == n;
    }
    if (array) {
      sl__json_put(L, vm, "[", 1);
      for (size_t i = 1; i <= n; i++) {
        if (i > 1) sl__json_put(L, vm, ",", 1);
        lua_rawgeti(L, idx, (int)i);
        sl__json_value(L, vm, -1, depth + 1, allow_bin);
        lua_pop(L, 1);
      }
      sl__json_put(L, vm, "]", 1);
      return;
    }
    sl__json_put(L, vm, "{", 1);
    bool first = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      /* stack: key, value */
      if (!first) sl__json_put(L, vm, ",", 1);
      first = false;
      int kt = lua_type(L, -2);
      if (kt == LUA_TSTRING) {
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        sl__json_string(L, vm, k, kl);
      } else if (kt == LUA_TNUMBER) {
        char kb[SL_JSON_NUM_MAX];
        size_t kn = sl_json_num(kb, lua_tonumber(L, -2)); /* a number key is never NaN */
        sl__json_string(L, vm, kb, kn);
      } else {
        luaL_error(L, "cannot encode JSON: object keys must be strings (got %s)",
                   lua_typename(L, kt));
      }
      sl__json_put(L, vm, ":", 1);
      sl__json_value(L, vm, -1, depth + 1, allow_bin);
      lua_pop(L, 1);
    }
    sl__json_put(L, vm, "}", 1);
    return;
  }
  default: break;
  }
  luaL_error(L, "cannot encode a %s value as JSON", luaL_typename(L, idx));
}

/* sl__json_reset: see sl_lua_json.h. */
void sl__json_reset(sl_lua *vm) {
  vm->jlen = 0;
  vm->nbins = 0;
}

/* ------------------------------------------------------------------------------------- */
/* JSON: text -> Lua                                                                      */

static bool is_placeholder(const cJSON *j, size_t natts, size_t *num) {
  if (!cJSON_IsObject(j)) return false;
  const cJSON *ph = cJSON_GetObjectItemCaseSensitive(j, "_placeholder");
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "num");
  if (!cJSON_IsTrue(ph) || !cJSON_IsNumber(n)) return false;
  double d = n->valuedouble;
  if (d < 0 || d != floor(d) || d >= (double)natts) return false;
  *num = (size_t)d;
  return true;
}

/* stack: -> value */
static void push_json(lua_State *L, const cJSON *j, const sl_bin *atts, size_t natts, int depth) {
  if (depth > 200) luaL_error(L, "JSON nested too deeply");
  luaL_checkstack(L, 4, "JSON nesting");
  size_t num;
  if (cJSON_IsNull(j) || cJSON_IsInvalid(j)) {
    sl__lua_pushnull(L);
  } else if (cJSON_IsBool(j)) {
    lua_pushboolean(L, cJSON_IsTrue(j));
  } else if (cJSON_IsNumber(j)) {
    lua_pushnumber(L, j->valuedouble);
  } else if (cJSON_IsString(j)) {
    lua_pushstring(L, j->valuestring);
  } else if (cJSON_IsArray(j)) {
    lua_createtable(L, cJSON_GetArraySize(j), 0);
    int i = 1;
    for (const cJSON *c = j->child; c; c = c->next) {
      push_json(L, c, atts, natts, depth + 1);
      lua_rawseti(L, -2, i++);
    }
    sl__lua_push_reg(L, &k_array_mt);
    lua_setmetatable(L, -2);
  } else if (natts && is_placeholder(j, natts, &num)) {
    sl__bytes_push(L, atts[num].data, atts[num].len);
  } else {
    lua_newtable(L);
    for (const cJSON *c = j->child; c; c = c->next) {
      lua_pushstring(L, c->string);
      push_json(L, c, atts, natts, depth + 1);
      lua_rawset(L, -3);
    }
  }
}

/* sl__json_push_cjson: see sl_lua_json.h. */
void sl__json_push_cjson(lua_State *L, const cJSON *j) { push_json(L, j, NULL, 0, 0); }

static int l_cjson_gc(lua_State *L) {
  cJSON **holder = lua_touserdata(L, 1);
  if (holder && *holder) cJSON_Delete(*holder);
  if (holder) *holder = NULL;
  return 0;
}

/* A direct JSON text -> Lua decoder (no intermediate tree): one pass, strings without
 * escapes pushed straight from the text. Used for every decode without binary attachments;
 * the per-publish hooks that read the payload pay this, so it matters (DESIGN.md 5). On a
 * syntax error it returns false with *at = the offset of the error and whatever it pushed
 * still on the stack (decode_json restores the top). Raises only on nesting or memory. */
typedef struct {
  const char *s, *end, *p;
} jd;

static void jd_ws(jd *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t')) d->p++;
}

static void jd_utf8(luaL_Buffer *b, uint32_t cp) {
  if (cp < 0x80) {
    luaL_addchar(b, (char)cp);
  } else if (cp < 0x800) {
    luaL_addchar(b, (char)(0xC0 | cp >> 6));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    luaL_addchar(b, (char)(0xE0 | cp >> 12));
    luaL_addchar(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  } else {
    luaL_addchar(b, (char)(0xF0 | cp >> 18));
    luaL_addchar(b, (char)(0x80 | (cp >> 12 & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  }
}

/* d->p at the opening quote. stack: -> string */
static bool jd_string(lua_State *L, jd *d) {
  const char *start = ++d->p;
  const char *q = start;
  while (q < d->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
  if (q < d->end && *q == '"') { /* the common case: no escapes */
    lua_pushlstring(L, start, (size_t)(q - start));
    d->p = q + 1;
    return true;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, start, (size_t)(q - start));
  d->p = q;
  while (d->p < d->end) {
    unsigned char c = (unsigned char)*d->p;
    if (c == '"') {
      d->p++;
      luaL_pushresult(&b);
      return true;
    }
    if (c < 0x20) break;
    if (c != '\\') {
      luaL_addchar(&b, (char)c);
      d->p++;
      continue;
    }
    if (d->end - d->p < 2) break;
    char e = d->p[1];
    d->p += 2;
    switch (e) {
    case '"': luaL_addchar(&b, '"'); break;
    case '\\': luaL_addchar(&b, '\\'); break;
    case '/': luaL_addchar(&b, '/'); break;
    case 'b': luaL_addchar(&b, '\b'); break;
    case 'f': luaL_addchar(&b, '\f'); break;
    case 'n': luaL_addchar(&b, '\n'); break;
    case 'r': luaL_addchar(&b, '\r'); break;
    case 't': luaL_addchar(&b, '\t'); break;
    case 'u': {
      if (d->end - d->p < 4) goto bad;
      int hi = sl_js_hex4(d->p);
      if (hi < 0) goto bad;
      d->p += 4;
      uint32_t cp = (uint32_t)hi;
      if (hi >= 0xD800 && hi <= 0xDBFF) {
        int lo =
            d->end - d->p >= 6 && d->p[0] == '\\' && d->p[1] == 'u' ? sl_js_hex4(d->p + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) goto bad;
        d->p += 6;
        cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
      } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
        goto bad;
      }
      jd_utf8(&b, cp);
      break;
    }
    default: goto bad;
    }
  }
bad:
  luaL_pushresult(&b); /* keep the stack balanced for the caller's settop */
  return false;
}

/* stack: -> number */
static bool jd_number(lua_State *L, jd *d) {
  const char *p = d->p, *start = p;
  bool neg = false, simple = true;
  if (p < d->end && *p == '-') neg = true, p++;
  if (p >= d->end) return false;
  if (*p == '0') {
    p++;
    if (p < d->end && *p >= '0' && *p <= '9') return false; /* "01": RFC 8259 forbids it */
  } else if (*p >= '1' && *p <= '9') {
    while (p < d->end && *p >= '0' && *p <= '9') p++;
  } else {
    return false;
  }
  if (p < d->end && *p == '.') {
    simple = false;
    p++;
    if (p >= d->end || *p < '0' || *p > '9') return false;
    while (p < d->end && *p >= '0' && *p <= '9') p++;
  }
  if (p < d->end && (*p == 'e' || *p == 'E')) {
    simple = false;
    p++;
    if (p < d->end && (*p == '+' || *p == '-')) p++;
    if (p >= d->end || *p < '0' || *p > '9') return false;
    while (p < d->end && *p >= '0' && *p <= '9') p++;
  }
  size_t n = (size_t)(p - start);
  if (simple && n - neg <= 15) { /* exact in a double */
    double v = 0;
    for (const char *q = start + neg; q < p; q++) v = v * 10 + (*q - '0');
    lua_pushnumber(L, neg ? -v : v);
  } else {
    char buf[512];
    if (n >= sizeof buf) return false;
    memcpy(buf, start, n);
    buf[n] = 0;
    lua_pushnumber(L, strtod(buf, NULL));
  }
  d->p = p;
  return true;
}

static bool jd_lit(jd *d, const char *lit, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, lit, n) != 0) return false;
  d->p += n;
  return true;
}

/* stack: -> value */
static bool jd_value(lua_State *L, jd *d, int depth) {
  jd_ws(d);
  if (d->p >= d->end) return false;
  switch (*d->p) {
  case '"': return jd_string(L, d);
  case 't':
    if (!jd_lit(d, "true", 4)) return false;
    lua_pushboolean(L, 1);
    return true;
  case 'f':
    if (!jd_lit(d, "false", 5)) return false;
    lua_pushboolean(L, 0);
    return true;
  case 'n':
    if (!jd_lit(d, "null", 4)) return false;
    sl__lua_pushnull(L);
    return true;
  case '[': {
    if (depth > 200) luaL_error(L, "JSON nested too deeply");
    luaL_checkstack(L, 4, "JSON nesting");
    d->p++;
    lua_newtable(L);
    sl__lua_push_reg(L, &k_array_mt);
    lua_setmetatable(L, -2);
    jd_ws(d);
    if (d->p < d->end && *d->p == ']') {
      d->p++;
      return true;
    }
    for (int i = 1;; i++) {
      if (!jd_value(L, d, depth + 1)) return false;
      lua_rawseti(L, -2, i);
      jd_ws(d);
      if (d->p >= d->end) return false;
      if (*d->p == ',') {
        d->p++;
        continue;
      }
      if (*d->p != ']') return false;
      d->p++;
      return true;
    }
  }
  case '{': {
    if (depth > 200) luaL_error(L, "JSON nested too deeply");
    luaL_checkstack(L, 4, "JSON nesting");
    d->p++;
    lua_createtable(L, 0, 4); /* small objects fill without a rehash */
    jd_ws(d);
    if (d->p < d->end && *d->p == '}') {
      d->p++;
      return true;
    }
    for (;;) {
      jd_ws(d);
      if (d->p >= d->end || *d->p != '"' || !jd_string(L, d)) return false;
      jd_ws(d);
      if (d->p >= d->end || *d->p != ':') return false;
      d->p++;
      if (!jd_value(L, d, depth + 1)) return false;
      lua_rawset(L, -3);
      jd_ws(d);
      if (d->p >= d->end) return false;
      if (*d->p == ',') {
        d->p++;
        continue;
      }
      if (*d->p != '}') return false;
      d->p++;
      return true;
    }
  }
  default: return jd_number(L, d);
  }
}

/* sl__json_decode: see sl_lua_json.h. With attachments the text goes through cJSON; the
 * parsed tree is held by a userdata with __gc, so an error while converting (memory,
 * nesting) cannot leak it. */
bool sl__json_decode(lua_State *L, const char *text, size_t len, const sl_bin *atts, size_t natts,
                     size_t *errpos) {
  if (!natts) {
    int top = lua_gettop(L);
    jd d = {text, text + len, text};
    bool ok = jd_value(L, &d, 0);
    if (ok) {
      jd_ws(&d);
      ok = d.p == d.end;
    }
    if (ok) return true;
    lua_settop(L, top);
    if (errpos) *errpos = (size_t)(d.p - text) + 1;
    return false;
  }
  cJSON **holder = lua_newuserdata(L, sizeof *holder);
  *holder = NULL;
  sl__lua_push_reg(L, &k_cjson_mt);
  lua_setmetatable(L, -2);
  *holder = cJSON_ParseWithLength(text, len);
  if (!*holder) {
    if (errpos) {
      const char *at = cJSON_GetErrorPtr();
      *errpos = at && at >= text && at <= text + len ? (size_t)(at - text) + 1 : len;
    }
    lua_pop(L, 1);
    return false;
  }
  push_json(L, *holder, atts, natts, 0);
  cJSON_Delete(*holder);
  *holder = NULL;
  lua_remove(L, -2);
  return true;
}

/* sl__json_decode_text: see sl_lua_json.h. */
bool sl__json_decode_text(lua_State *L, const char *text, size_t len) {
  return sl__json_decode(L, text, len, NULL, 0, NULL);
}

/* sl__json_valid: see sl_lua_json.h. */
bool sl__json_valid(const char *s, size_t n) { return sl_js_valid(s, n); }

/* sl__json_mark_array: see sl_lua_json.h. */
void sl__json_mark_array(lua_State *L, int idx) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  sl__lua_push_reg(L, &k_array_mt);
  lua_setmetatable(L, idx);
}

/* The JSON text of a payload view at idx (through the VM's view_text, see sl_lua_call.h). */
static bool view_text(lua_State *L, int idx, const char **s, size_t *n) {
  sl_lua *vm = sl__lua_vm(L);
  return vm && vm->view_text && vm->view_text(L, idx, s, n);
}

/* ------------------------------------------------------------------------------------- */
/* sluice.json                                                                            */

/* sl__json_encode_fn: see sl_lua_json.h. */
int sl__json_encode_fn(lua_State *L) {
  sl_lua *vm = sl__lua_vm(L);
  luaL_checkany(L, 1);
  sl__json_reset(vm);
  sl__json_value(L, vm, 1, 0, false);
  lua_pushlstring(L, vm->jb, vm->jlen);
  return 1;
}

/* sluice.json.decode(text | payload view) -> value (a view gives a writable copy) */
static int l_json_decode(lua_State *L) {
  size_t len, pos = 0;
  const char *s;
  if (!view_text(L, 1, &s, &len)) s = luaL_checklstring(L, 1, &len);
  if (!sl__json_decode(L, s, len, NULL, 0, &pos))
    return luaL_error(L, "invalid JSON at position %d", (int)pos);
  return 1;
}

/* sluice.json.is_array(v) -> true for tables marked as JSON arrays (decoded arrays and
 * sluice.json.array(t)) */
static int l_json_is_array(lua_State *L) {
  const char *s;
  size_t n;
  if (view_text(L, 1, &s, &n))
    lua_pushboolean(L, *s == '[');
  else
    lua_pushboolean(L, lua_istable(L, 1) && has_mt(L, 1, &k_array_mt));
  return 1;
}

static int l_json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  sl__lua_push_reg(L, &k_array_mt);
  lua_setmetatable(L, 1);
  return 1;
}

/* sl__lua_inject_json: see sl_lua_json.h. stack: sluice -> sluice */
void sl__lua_inject_json(lua_State *L) {
  static const luaL_Reg cjson_mt[] = {{"__gc", l_cjson_gc}, {NULL, NULL}};
  sl__lua_new_mt(L, &k_cjson_mt, cjson_mt, NULL, "sluice.jsontree");

  lua_pushlightuserdata(L, &k_array_mt);
  lua_newtable(L);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__jsontype");
  /* shared by every decoded array: locked so a script cannot change all arrays' behaviour
   * (sluice.json.is_array tells arrays apart) */
  lua_pushliteral(L, "sluice.json.array");
  lua_setfield(L, -2, "__metatable");
  lua_rawset(L, LUA_REGISTRYINDEX);

  static const luaL_Reg json[] = {{"encode", sl__json_encode_fn},
                                  {"decode", l_json_decode},
                                  {"array", l_json_array},
                                  {"is_array", l_json_is_array},
                                  {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, json);
  sl__lua_pushnull(L);
  lua_setfield(L, -2, "null");
  lua_setfield(L, -2, "json");
}
