/* fuzz_pview.c - libFuzzer target for payload views (lua/pview.c), the JSON scanner behind
 * msg.payload and coalesceKey's payload. The input is the payload text, handed to a
 * coalesceKey hook that walks the whole view (pairs, ipairs, #, every key and index) and
 * checks it against two oracles:
 *  - validity: sluice.json.encode(view) (which validates the text with the view scanner)
 *    succeeds exactly when sluice.json.decode(text) (the decoder) does;
 *  - values: for valid text, every member and element read through the view equals the
 *    decoded table's (objects with duplicate keys are compared by key count only: the
 *    view reads the first of a duplicate, the decoder keeps the last).
 * A disagreement calls fuzz_fail, which aborts. Invalid text must only ever raise.
 * The same input also goes through sl_js_member (field-path coalesce keys and the views'
 * first lookup), checked against cJSON for keys that take each of its compare paths: a
 * member it finds is the one cJSON finds first. cJSON is the looser oracle: it reads a
 * leading zero ("01") as a number, which RFC 8259 and the scanner refuse, so text the
 * scanner calls invalid is only checked to raise; text it calls valid must parse in cJSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "fake_core.c"
#include "sl_jscan.h"
#include "sl_lua.h"
#include "sl_lua_int.h"

#include <lauxlib.h>
#include <lua.h>

static const char hook_src[] =
    "local json = sluice.json\n"
    "local function same(a, b, depth)\n"
    "  if depth > 250 then return end\n"
    "  if type(a) ~= type(b) then fuzz_fail('type ' .. type(a) .. ' vs ' .. type(b)) end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a ~= b and not (a ~= a and b ~= b) then fuzz_fail('value ' .. tostring(a) .. ' vs ' .. tostring(b)) end\n"
    "    return\n"
    "  end\n"
    "  if #a ~= #b then fuzz_fail('length') end\n"
    "  if json.is_array(a) ~= json.is_array(b) then fuzz_fail('array-ness') end\n"
    "  local seen, dup, n = {}, false, 0\n"
    "  for k, v in pairs(a) do\n"
    "    n = n + 1\n"
    "    if seen[k] then dup = true end\n"
    "    seen[k] = true\n"
    "    if a[k] == nil then fuzz_fail('pairs key not indexable') end\n"
    "  end\n"
    "  local m = 0\n"
    "  for _ in pairs(b) do m = m + 1 end\n"
    "  if not dup then\n"
    "    if n ~= m then fuzz_fail('member count') end\n"
    "    for k, v in pairs(a) do same(v, b[k], depth + 1) end\n"
    "  end\n"
    "  local i = 0\n"
    "  for j, v in ipairs(a) do i = j; if type(v) ~= type(b[j]) then fuzz_fail('ipairs value') end end\n"
    "  if json.is_array(a) and i ~= #a then fuzz_fail('ipairs count') end\n"
    "  if next(a) == nil and n ~= 0 then fuzz_fail('next') end\n"
    "end\n"
    "local function check(p)\n"
    "  local okd, t = pcall(json.decode, JSON_TEXT)\n"
    "  local oke = pcall(json.encode, p)\n"
    "  if type(p) == 'table' and okd ~= oke then\n"
    "    fuzz_fail('validity: decode ' .. tostring(okd) .. ', view ' .. tostring(oke))\n"
    "  end\n"
    "  if okd then same(p, t, 0) end\n"
    "end\n"
    "-- reads of invalid text raise; caught here so the log stays quiet\n"
    "return function(_, p) pcall(check, p) return 'k' end\n";

static int l_fail(lua_State *L) {
  fprintf(stderr, "fuzz_pview: oracle failed: %s\n", luaL_optstring(L, 1, "?"));
  abort();
}

/* sl_js_member(text, key) must find what cJSON finds (cJSON compares decoded names; the
 * scanner says -2 when an escaped name could be the key, leaving it to its caller). */
static void check_member(const char *t, const char *e, const cJSON *root, const char *key,
                         size_t klen) {
  const char *vs = NULL, *ve = NULL;
  int r = sl_js_member(sl_js_ws(t, e), e, key, klen, &vs, &ve);
  if (r == 1 && !(vs >= t && ve <= e && vs < ve)) abort();
  if (!root || r < 0 || memchr(key, 0, klen)) return; /* cJSON names end at a NUL */
  const cJSON *item = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, key) : NULL;
  if ((r == 1) != (item != NULL)) {
    fprintf(stderr, "fuzz_pview: sl_js_member(\"%s\") says %d, cJSON %s\n", key, r,
            item ? "found" : "not found");
    abort();
  }
  if (item && (cJSON_IsString(item) || cJSON_IsNumber(item)) && !!cJSON_IsString(item) != (*vs == '"'))
    abort(); /* not the same member */
  if (item && cJSON_IsNumber(item)) {
    char num[512];
    size_t n = (size_t)(ve - vs);
    if (n < sizeof num) {
      memcpy(num, vs, n);
      num[n] = 0;
      double d = strtod(num, NULL);
      if (!(d == item->valuedouble || (d != d && item->valuedouble != item->valuedouble))) abort();
    }
  }
}

/* A fresh VM per input: a persistent one grows its string table and stacks as inputs come,
 * which libFuzzer's leak check would blame on whichever input grew them. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sl_log_threshold = SL_LOG_ERROR;
  sl_lua *vm = sl_lua_new(NULL);
  sl__lua_set_limits(vm, 0, 0);
  lua_State *L = sl_lua_state(vm);
  lua_pushcfunction(L, l_fail);
  lua_setglobal(L, "fuzz_fail");
  char err[256];
  if (luaL_loadstring(L, hook_src) || sl_lua_call(NULL, L, 0, 0, 1, "config", err, sizeof err)) abort();
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlstring(L, (const char *)data, size);
  lua_setglobal(L, "JSON_TEXT");
  char buf[8];
  char *k = sl_lua_coalesce_key_buf(vm, ref, "t", (const char *)data, size, buf, sizeof buf);
  if (k && k != buf) free(k);
  sl_lua_close(vm);

  /* sl_js_member against cJSON (which the core uses to validate untrusted text), for keys
   * that take each of its paths: one word, two overlapping reads, longer than a word, and
   * keys no unescaped name can equal (a quote, a backslash, a control character) */
  static const struct { const char *k; size_t n; } keys[] = {
      {"a", 1}, {"", 0}, {"ab", 2}, {"abc", 3}, {"abcd", 4}, {"abcdefg", 7}, {"abcdefgh", 8},
      {"abcdefghi", 9}, {"a\"b", 3}, {"a\\", 2}, {"\x01", 1}, {"a\0b", 3}};
  const char *t = (const char *)data, *e = t + size;
  cJSON *root = cJSON_ParseWithLength(t, size);
  /* What the scanner accepts, cJSON accepts too. cJSON accepts more (a leading zero as in
   * {"a":01}, "1.", trailing bytes), which is why the publish paths validate with the
   * scanner, and why sl_js_member refuses such text rather than reading another value. */
  if (sl_js_valid(t, size) && !root) {
    fprintf(stderr, "fuzz_pview: the scanner accepts what cJSON refuses\n");
    abort();
  }
  for (size_t ki = 0; ki < sizeof keys / sizeof keys[0]; ki++)
    check_member(t, e, root, keys[ki].k, keys[ki].n);
  cJSON_Delete(root);
  return 0;
}
