/* pattern.c - string.find, string.match, string.gmatch and string.gsub with a step count.
 *
 * Lua patterns backtrack: (("a"):rep(3000)):find(".-.-.-b") tries every way of splitting
 * the subject among the three ".-", some 10^12 steps inside one C call, which the
 * instruction-count hook never sees. These versions replace the four functions in the VM's
 * string table (which is also every string's method table, so s:find(...) is covered, in
 * sandboxed scripts and configs alike). They behave as LuaJIT's own (the same Lua 5.1
 * pattern language, results, error messages and limits: 32 captures, nesting 200), and
 * count their work: every step of the matcher (an attempt at a pattern item, a character
 * taken by a repetition or by %b, a byte compared by a back-reference) counts as one VM
 * instruction against the running call's budget (vm->instr_used, see call.c). A match
 * that exhausts the budget raises "instruction limit exceeded", as a Lua loop would; so
 * does a match the watchdog asks to stop. A plain find (no special characters, or
 * plain = true) is a linear search and is not counted.
 *
 * The matcher is written after Lua 5.1's lstrlib.c (MIT; the same algorithm LuaJIT ships)
 * with the count added. spec/unit/test_lua.c compares it with LuaJIT's on generated
 * patterns and subjects.
 */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_lua_call.h"
#include "sl_lua_pattern.h"

#define MAXCAPTURES 32 /* LUA_MAXCAPTURES */
#define MAXLEVEL 200   /* LJ_MAX_XLEVEL: match() nesting, "pattern too complex" */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define ESC '%'
#define CHARGE_EVERY 4096 /* steps between two looks at the budget */

typedef struct {
  const char *src_init, *src_end;
  lua_State *L;
  sl_lua *vm;
  int level; /* captures, finished or not */
  int depth;
  uint32_t steps; /* since the last charge */
  struct {
    const char *init;
    ptrdiff_t len;
  } capture[MAXCAPTURES];
} mstate;

/* ------------------------------------------------------------------------------------- */
/* Character classes: ASCII only and independent of the locale, as LuaJIT's lj_char.      */

enum {
  C_CNTRL = 1,
  C_SPACE = 2,
  C_PUNCT = 4,
  C_DIGIT = 8,
  C_XDIGIT = 16,
  C_UPPER = 32,
  C_LOWER = 64
};
#define C_ALPHA (C_LOWER | C_UPPER)
#define C_ALNUM (C_ALPHA | C_DIGIT)
#define C_GRAPH (C_ALNUM | C_PUNCT)

static uint8_t cbits[256];

static void init_cbits(void) {
  if (cbits['a']) return;
  for (int c = 0; c < 256; c++) {
    uint8_t b = 0;
    if (c < 32 || c == 127) b |= C_CNTRL;
    if ((c >= 9 && c <= 13) || c == ' ') b |= C_SPACE;
    if (c >= '0' && c <= '9') b |= C_DIGIT | C_XDIGIT;
    if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) b |= C_XDIGIT;
    if (c >= 'A' && c <= 'Z') b |= C_UPPER;
    if (c >= 'a' && c <= 'z') b |= C_LOWER;
    if (c > 32 && c < 127 && !(b & C_ALNUM)) b |= C_PUNCT;
    cbits[c] = b;
  }
}

/* class letter (cl & 0x1f for letters) -> bits; the upper-case letter negates */
static const uint8_t class_map[32] = {
    ['a' & 0x1f] = C_ALPHA, ['c' & 0x1f] = C_CNTRL, ['d' & 0x1f] = C_DIGIT, ['g' & 0x1f] = C_GRAPH,
    ['l' & 0x1f] = C_LOWER, ['p' & 0x1f] = C_PUNCT, ['s' & 0x1f] = C_SPACE, ['u' & 0x1f] = C_UPPER,
    ['w' & 0x1f] = C_ALNUM, ['x' & 0x1f] = C_XDIGIT};

#define U(c) ((unsigned char)(c))

/* ------------------------------------------------------------------------------------- */
/* The budget                                                                             */

/* Add the steps taken since the last look to the call's count; raise when the budget is
 * spent or the watchdog asked the call to stop. Only inside a protected call (depth > 0),
 * as the count hook. */
static void charge(mstate *ms) {
  sl_lua *vm = ms->vm;
  uint32_t n = ms->steps;
  ms->steps = 0;
  if (!vm || vm->depth == 0) return;
  vm->instr_used += n;
  if (sl__lua_wd_tripped(vm)) luaL_error(ms->L, "%s", sl__lua_wd_message(vm));
  if (vm->instr_limit && vm->instr_used >= vm->instr_limit) {
    vm->limit_hit = true;
    char lim[24]; /* luaL_error formats no %llu */
    snprintf(lim, sizeof lim, "%llu", (unsigned long long)vm->instr_limit);
    luaL_error(ms->L, "instruction limit exceeded (%s instructions, in a pattern match)", lim);
  }
}

#define STEP(ms, n)                                                                                \
  do {                                                                                             \
    if (((ms)->steps += (uint32_t)(n)) >= CHARGE_EVERY) charge(ms);                                \
  } while (0)

/* ------------------------------------------------------------------------------------- */
/* The matcher                                                                            */

static int check_capture(mstate *ms, int l) {
  l -= '1';
  if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
    luaL_error(ms->L, "invalid capture index");
  return l;
}

static int capture_to_close(mstate *ms) {
  for (int level = ms->level - 1; level >= 0; level--)
    if (ms->capture[level].len == CAP_UNFINISHED) return level;
  return luaL_error(ms->L, "invalid pattern capture");
}

/* the end of the single-character class at p */
static const char *classend(mstate *ms, const char *p) {
  switch (*p++) {
  case ESC:
    if (*p == '\0') luaL_error(ms->L, "malformed pattern (ends with '%%')");
    return p + 1;
  case '[':
    if (*p == '^') p++;
    do { /* up to the ']' */
      if (*p == '\0') luaL_error(ms->L, "malformed pattern (missing ']')");
      if (*(p++) == ESC && *p != '\0') p++; /* an escape such as %] */
    } while (*p != ']');
    return p + 1;
  default: return p;
  }
}

static int match_class(int c, int cl) {
  if ((cl & 0xc0) == 0x40) {
    int t = class_map[cl & 0x1f];
    if (t) {
      t = cbits[c] & t;
      return (cl & 0x20) ? t : !t;
    }
    if (cl == 'z') return c == 0;
    if (cl == 'Z') return c != 0;
  }
  return cl == c;
}

/* p at '[', ec at its ']' */
static int match_bracket(int c, const char *p, const char *ec) {
  int sig = 1;
  if (*(p + 1) == '^') {
    sig = 0;
    p++;
  }
  while (++p < ec) {
    if (*p == ESC) {
      p++;
      if (match_class(c, U(*p))) return sig;
    } else if (*(p + 1) == '-' && p + 2 < ec) {
      p += 2;
      if (U(*(p - 2)) <= c && c <= U(*p)) return sig;
    } else if (U(*p) == c) {
      return sig;
    }
  }
  return !sig;
}

static int single_match(int c, const char *p, const char *ep) {
  switch (*p) {
  case '.': return 1;
  case ESC: return match_class(c, U(*(p + 1)));
  case '[': return match_bracket(c, p, ep - 1);
  default: return U(*p) == c;
  }
}

static const char *match(mstate *ms, const char *s, const char *p);

static const char *match_balance(mstate *ms, const char *s, const char *p) {
  if (*p == 0 || *(p + 1) == 0) luaL_error(ms->L, "unbalanced pattern");
  if (s >= ms->src_end || *s != *p) return NULL;
  int b = *p, e = *(p + 1), cont = 1;
  while (++s < ms->src_end) {
    STEP(ms, 1);
    if (*s == e) {
      if (--cont == 0) return s + 1;
    } else if (*s == b) {
      cont++;
    }
  }
  return NULL;
}

static const char *max_expand(mstate *ms, const char *s, const char *p, const char *ep) {
  ptrdiff_t i = 0;
  while (s + i < ms->src_end && single_match(U(*(s + i)), p, ep)) {
    STEP(ms, 1);
    i++;
  }
  for (; i >= 0; i--) { /* the longest first, then one fewer */
    STEP(ms, 1);
    const char *res = match(ms, s + i, ep + 1);
    if (res) return res;
  }
  return NULL;
}

static const char *min_expand(mstate *ms, const char *s, const char *p, const char *ep) {
  for (;;) {
    STEP(ms, 1);
    const char *res = match(ms, s, ep + 1);
    if (res) return res;
    if (s < ms->src_end && single_match(U(*s), p, ep))
      s++;
    else
      return NULL;
  }
}

static const char *start_capture(mstate *ms, const char *s, const char *p, int what) {
  int level = ms->level;
  if (level >= MAXCAPTURES) luaL_error(ms->L, "too many captures");
  ms->capture[level].init = s;
  ms->capture[level].len = what;
  ms->level = level + 1;
  const char *res = match(ms, s, p);
  if (!res) ms->level--;
  return res;
}

static const char *end_capture(mstate *ms, const char *s, const char *p) {
  int l = capture_to_close(ms);
  ms->capture[l].len = s - ms->capture[l].init;
  const char *res = match(ms, s, p);
  if (!res) ms->capture[l].len = CAP_UNFINISHED;
  return res;
}

static const char *match_capture(mstate *ms, const char *s, int l) {
  l = check_capture(ms, l);
  size_t len = (size_t)ms->capture[l].len;
  STEP(ms, len / 16 + 1);
  if ((size_t)(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0) return s + len;
  return NULL;
}

/* Match the pattern p at s: the end of the match, or NULL. */
static const char *match(mstate *ms, const char *s, const char *p) {
  if (++ms->depth > MAXLEVEL) luaL_error(ms->L, "pattern too complex");
again: /* tail calls as jumps */
  STEP(ms, 1);
  switch (*p) {
  case '(':
    if (*(p + 1) == ')')
      s = start_capture(ms, s, p + 2, CAP_POSITION);
    else
      s = start_capture(ms, s, p + 1, CAP_UNFINISHED);
    break;
  case ')': s = end_capture(ms, s, p + 1); break;
  case ESC:
    switch (*(p + 1)) {
    case 'b':
      s = match_balance(ms, s, p + 2);
      if (!s) break;
      p += 4;
      goto again;
    case 'f': {
      p += 2;
      if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
      const char *ep = classend(ms, p);
      char previous = (s == ms->src_init) ? '\0' : *(s - 1);
      /* at the end, *s is the string's terminating NUL, as in LuaJIT */
      if (match_bracket(U(previous), p, ep - 1) || !match_bracket(U(*s), p, ep - 1)) {
        s = NULL;
        break;
      }
      p = ep;
      goto again;
    }
    default:
      if (cbits[U(*(p + 1))] & C_DIGIT) { /* a back-reference %1-%9 (and %0) */
        s = match_capture(ms, s, U(*(p + 1)));
        if (!s) break;
        p += 2;
        goto again;
      }
      goto item;
    }
    break;
  case '\0': break; /* the end of the pattern: a match */
  case '$':
    if (*(p + 1) != '\0') goto item;
    if (s != ms->src_end) s = NULL;
    break;
  default:
  item : {
    const char *ep = classend(ms, p);
    int m = s < ms->src_end && single_match(U(*s), p, ep);
    switch (*ep) {
    case '?': {
      const char *res;
      if (m && (res = match(ms, s + 1, ep + 1)) != NULL) {
        s = res;
        break;
      }
      p = ep + 1;
      goto again;
    }
    case '*': s = max_expand(ms, s, p, ep); break;
    case '+': s = m ? max_expand(ms, s + 1, p, ep) : NULL; break;
    case '-': s = min_expand(ms, s, p, ep); break;
    default:
      if (m) {
        s++;
        p = ep;
        goto again;
      }
      s = NULL;
      break;
    }
    break;
  }
  }
  ms->depth--;
  return s;
}

/* ------------------------------------------------------------------------------------- */
/* Captures and the four functions                                                        */

static void push_onecapture(mstate *ms, int i, const char *s, const char *e) {
  if (i >= ms->level) {
    if (i == 0)
      lua_pushlstring(ms->L, s, (size_t)(e - s)); /* the whole match */
    else
      luaL_error(ms->L, "invalid capture index");
    return;
  }
  ptrdiff_t l = ms->capture[i].len;
  if (l == CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
  if (l == CAP_POSITION)
    lua_pushinteger(ms->L, ms->capture[i].init - ms->src_init + 1);
  else
    lua_pushlstring(ms->L, ms->capture[i].init, (size_t)l);
}

static int push_captures(mstate *ms, const char *s, const char *e) {
  int n = (ms->level == 0 && s) ? 1 : ms->level;
  luaL_checkstack(ms->L, n, "too many captures");
  for (int i = 0; i < n; i++) push_onecapture(ms, i, s, e);
  return n;
}

static void ms_init(mstate *ms, lua_State *L, const char *s, size_t len) {
  ms->L = L;
  ms->vm = lua_touserdata(L, lua_upvalueindex(1));
  ms->src_init = s;
  ms->src_end = s + len;
  ms->steps = 0;
}

/* any of the characters that make a pattern (LuaJIT's lj_str_haspattern) */
static int has_specials(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strchr("^$*+?.([%-", p[i]) && p[i]) return 1;
  return 0;
}

static int find_aux(lua_State *L, int find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  int32_t start = (int32_t)luaL_optinteger(L, 3, 1);
  if (start < 0)
    start += (int32_t)ls;
  else
    start--;
  if (start < 0) start = 0;
  size_t st = (size_t)start;
  if (st > ls) st = ls;
  if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) { /* a plain search */
    const char *q = memmem(s + st, ls - st, p, lp);
    if (q) {
      lua_pushinteger(L, (lua_Integer)(q - s) + 1);
      lua_pushinteger(L, (lua_Integer)(q - s) + (lua_Integer)lp);
      return 2;
    }
  } else {
    mstate ms;
    const char *sp = s + st;
    int anchor = 0;
    if (*p == '^') {
      p++;
      anchor = 1;
    }
    ms_init(&ms, L, s, ls);
    do {
      ms.level = ms.depth = 0;
      const char *e = match(&ms, sp, p);
      if (e) {
        if (find) {
          lua_pushinteger(L, (lua_Integer)(sp - s) + 1);
          lua_pushinteger(L, (lua_Integer)(e - s));
          return push_captures(&ms, NULL, NULL) + 2;
        }
        return push_captures(&ms, sp, e);
      }
    } while (sp++ < ms.src_end && !anchor);
  }
  lua_pushnil(L);
  return 1;
}

static int l_find(lua_State *L) { return find_aux(L, 1); }
static int l_match(lua_State *L) { return find_aux(L, 0); }

/* upvalues: vm, subject, pattern, position (bytes from the start) */
static int gmatch_aux(lua_State *L) {
  size_t ls;
  const char *s = lua_tolstring(L, lua_upvalueindex(2), &ls);
  const char *p = lua_tostring(L, lua_upvalueindex(3));
  size_t pos = (size_t)lua_tointeger(L, lua_upvalueindex(4));
  mstate ms;
  ms_init(&ms, L, s, ls);
  for (const char *src = s + pos; src <= ms.src_end; src++) {
    ms.level = ms.depth = 0;
    const char *e = match(&ms, src, p);
    if (e) {
      size_t next = (size_t)(e - s);
      if (e == src) next++; /* an empty match: move on */
      lua_pushinteger(L, (lua_Integer)next);
      lua_replace(L, lua_upvalueindex(4));
      return push_captures(&ms, src, e);
    }
  }
  return 0;
}

static int l_gmatch(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, gmatch_aux, 4);
  return 1;
}

static void add_s(mstate *ms, luaL_Buffer *b, const char *s, const char *e) {
  size_t l;
  const char *news = lua_tolstring(ms->L, 3, &l);
  for (size_t i = 0; i < l; i++) {
    if (news[i] != ESC) {
      luaL_addchar(b, news[i]);
      continue;
    }
    i++; /* past the escape; at the end this reads the string's NUL, as LuaJIT does */
    if (!(cbits[U(news[i])] & C_DIGIT)) {
      luaL_addchar(b, news[i]);
    } else if (news[i] == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else {
      push_onecapture(ms, news[i] - '1', s, e);
      luaL_addvalue(b);
    }
  }
}

static void add_value(mstate *ms, luaL_Buffer *b, const char *s, const char *e) {
  lua_State *L = ms->L;
  switch (lua_type(L, 3)) {
  case LUA_TNUMBER:
  case LUA_TSTRING: add_s(ms, b, s, e); return;
  case LUA_TFUNCTION: {
    lua_pushvalue(L, 3);
    int n = push_captures(ms, s, e);
    lua_call(L, n, 1);
    break;
  }
  case LUA_TTABLE:
    push_onecapture(ms, 0, s, e);
    lua_gettable(L, 3);
    break;
  }
  if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
    lua_pop(L, 1);
    lua_pushlstring(L, s, (size_t)(e - s));
  } else if (!lua_isstring(L, -1)) {
    luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  }
  luaL_addvalue(b);
}

static int l_gsub(lua_State *L) {
  size_t srcl;
  const char *src = luaL_checklstring(L, 1, &srcl);
  const char *p = luaL_checkstring(L, 2);
  int tr = lua_type(L, 3);
  int max_s = luaL_optint(L, 4, (int)(srcl + 1));
  int anchor = (*p == '^') ? (p++, 1) : 0;
  int n = 0;
  if (!(tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE))
    luaL_argerror(L, 3, "string/function/table expected");
  mstate ms;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  ms_init(&ms, L, src, srcl);
  while (n < max_s) {
    ms.level = ms.depth = 0;
    const char *e = match(&ms, src, p);
    if (e) {
      n++;
      add_value(&ms, &b, src, e);
    }
    if (e && e > src)
      src = e;
    else if (src < ms.src_end)
      luaL_addchar(&b, *src++);
    else
      break;
    if (anchor) break;
  }
  luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
  luaL_pushresult(&b);
  lua_pushinteger(L, n);
  return 2;
}

/* sl__lua_inject_patterns: see sl_lua_pattern.h. stack: unchanged */
void sl__lua_inject_patterns(sl_lua *vm, lua_State *L) {
  static const luaL_Reg fns[] = {
      {"find", l_find}, {"match", l_match}, {"gmatch", l_gmatch}, {"gsub", l_gsub}, {NULL, NULL}};
  init_cbits();
  lua_getglobal(L, "string");
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushlightuserdata(L, vm);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -2, f->name);
  }
  lua_pop(L, 1);
}
