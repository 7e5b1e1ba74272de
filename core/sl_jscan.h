/* sl_jscan.h - a JSON scanner that walks text without building anything (header-only, so
 * the hot loops inline where they are used: payload views in lua/pview.c, field-path
 * coalesce keys in core/delivery.c).
 *
 * Each sl_js_* skip returns the end of what it read, or NULL when the text is not valid
 * JSON there; none reads outside [p, e). Validity is judged as the Lua decoder and cJSON
 * judge it: strict grammar, escapes checked, surrogates paired, nesting at most
 * SL_JS_MAX_DEPTH. Whitespace is skipped only by sl_js_ws. */
#ifndef SL_JSCAN_H
#define SL_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SL_JS_MAX_DEPTH 200
#define SL_JS_INLINE static inline __attribute__((always_inline, unused))


SL_JS_INLINE const char *sl_js_ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

/* The value of 4 hex digits, or -1. */
static inline int sl_js_hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  return v;
}

/* Characters that end the plain run of a JSON string: the quote, the backslash, and the
 * control characters (invalid unescaped). */
static const uint8_t sl_js_stop[256] = {
    [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1,
};

/* Does any of the 8 bytes in v stop a string run ('"', '\\' or < 0x20)? May say yes for a
 * word that has none (borrows between bytes); never no for one that has. */
SL_JS_INLINE bool sl_js_word_stops(uint64_t v) {
  const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
  uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
  return (((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v)) & high;
}

/* p at the opening quote; *esc set when the string has escapes. Plain runs go 8 bytes at a
 * time: payloads carry long strings between the fields a hook reads. */
SL_JS_INLINE const char *sl_js_string(const char *p, const char *e, bool *esc) {
  *esc = false;
  for (p++; p < e; p++) {
    uint64_t w;
    while (e - p >= 8 && (memcpy(&w, p, 8), !sl_js_word_stops(w))) p += 8;
    while (p < e && !sl_js_stop[(unsigned char)*p]) p++;
    if (p >= e) return NULL;
    unsigned char c = (unsigned char)*p;
    if (c == '"') return p + 1;
    if (c < 0x20) return NULL;
    *esc = true;
    if (e - p < 2) return NULL;
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': p++; break;
    case 'u': {
      /* as the decoder (and cJSON): a surrogate must come as a high + low pair */
      int u = e - p >= 6 ? sl_js_hex4(p + 2) : -1;
      if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return NULL;
      if (u >= 0xD800 && u <= 0xDBFF) {
        int lo = e - p >= 12 && p[6] == '\\' && p[7] == 'u' ? sl_js_hex4(p + 8) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) return NULL;
        p += 6;
      }
      p += 5;
      break;
    }
    default: return NULL;
    }
  }
  return NULL;
}

SL_JS_INLINE const char *sl_js_digits(const char *p, const char *e) {
  if (p >= e || *p < '0' || *p > '9') return NULL;
  while (p < e && *p >= '0' && *p <= '9') p++;
  return p;
}

SL_JS_INLINE const char *sl_js_number(const char *p, const char *e) {
  if (p < e && *p == '-') p++;
  if (p < e && *p == '0')
    p++;
  else if (!(p = sl_js_digits(p, e)))
    return NULL;
  if (p < e && *p == '.' && !(p = sl_js_digits(p + 1, e))) return NULL;
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-')) p++;
    if (!(p = sl_js_digits(p, e))) return NULL;
  }
  return p;
}

SL_JS_INLINE const char *sl_js_lit(const char *p, const char *e, const char *lit, size_t n) {
  return (size_t)(e - p) >= n && !memcmp(p, lit, n) ? p + n : NULL;
}

/* p at the first character of a value (no leading whitespace). */
static inline __attribute__((unused)) const char *sl_js_value(const char *p, const char *e,
                                                            int depth) {
  if (p >= e) return NULL;
  bool esc;
  switch (*p) {
  case '"': return sl_js_string(p, e, &esc);
  case 't': return sl_js_lit(p, e, "true", 4);
  case 'f': return sl_js_lit(p, e, "false", 5);
  case 'n': return sl_js_lit(p, e, "null", 4);
  case '{':
  case '[': {
    char close = *p == '{' ? '}' : ']';
    if (depth > SL_JS_MAX_DEPTH) return NULL; /* the decoder's limit, so both agree on validity */
    p = sl_js_ws(p + 1, e);
    if (p < e && *p == close) return p + 1;
    for (;;) {
      if (close == '}') {
        if (p >= e || *p != '"' || !(p = sl_js_string(p, e, &esc))) return NULL;
        p = sl_js_ws(p, e);
        if (p >= e || *p != ':') return NULL;
        p = sl_js_ws(p + 1, e);
      }
      if (!(p = sl_js_value(p, e, depth + 1))) return NULL;
      p = sl_js_ws(p, e);
      if (p >= e) return NULL;
      if (*p == close) return p + 1;
      if (*p != ',') return NULL;
      p = sl_js_ws(p + 1, e);
    }
  }
  default: return sl_js_number(p, e);
  }
}

/* sl_js_member: find key (klen bytes, compared byte for byte with the member names as
 * written, without unescaping) in the object starting at p ('{'). The first of duplicate
 * keys wins. Returns 1 with [*vs, *ve) its value, 0 when absent, -1 when the text is not
 * valid JSON on the way, -2 when a member name with escapes came before the answer (it
 * may be the key written differently: the caller decides). */
static inline __attribute__((unused)) int sl_js_member(const char *p, const char *e,
                                                         const char *key, size_t klen,
                                                         const char **vs, const char **ve) {
  bool esc, escaped = false;
  if (p >= e || *p != '{') return -1;
  p = sl_js_ws(p + 1, e);
  if (p < e && *p == '}') return 0;
  for (;;) {
    if (p >= e || *p != '"') return -1;
    const char *ks = p + 1, *q = sl_js_string(p, e, &esc);
    if (!q) return -1;
    bool match = !esc && (size_t)(q - 1 - ks) == klen && !memcmp(ks, key, klen);
    escaped |= esc;
    q = sl_js_ws(q, e);
    if (q >= e || *q != ':') return -1;
    const char *v = sl_js_ws(q + 1, e), *w = sl_js_value(v, e, 1);
    if (!w) return -1;
    if (match) {
      if (escaped) return -2; /* an earlier escaped name may be this key, and come first */
      *vs = v;
      *ve = w;
      return 1;
    }
    q = sl_js_ws(w, e);
    if (q >= e) return -1;
    if (*q == '}') return escaped ? -2 : 0;
    if (*q != ',') return -1;
    p = sl_js_ws(q + 1, e);
  }
}

#endif
