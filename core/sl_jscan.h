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
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define SL_JS_MAX_DEPTH 200
#define SL_JS_INLINE static inline __attribute__((always_inline, unused))

static const bool sl_js_isws[256] = {[' '] = 1, ['\n'] = 1, ['\r'] = 1, ['\t'] = 1};

SL_JS_INLINE const char *sl_js_ws(const char *p, const char *e) {
  while (p < e && sl_js_isws[(unsigned char)*p]) p++;
  return p;
}

/* The value of 4 hex digits, or -1. */
static inline int sl_js_hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else
      return -1;
  }
  return v;
}

/* Does any of the 8 bytes in v stop a string run ('"', '\\' or < 0x20)? The lowest set
 * flag marks exactly the first such byte (a higher flag may be a borrow); zero when
 * there is none. */
SL_JS_INLINE uint64_t sl_js_word_stops(uint64_t v) {
  const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
  uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
  return (((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v)) & high;
}

/* The first byte in [p, e) that ends the plain run of a string: '"', '\\' or a control
 * character (invalid unescaped); e when there is none. 16 bytes at a time with SSE2
 * (every x86-64 has it), 8 elsewhere: payloads carry long strings between the fields a
 * hook reads. */
SL_JS_INLINE const char *sl_js_run_end(const char *p, const char *e) {
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1f);
  while (e - p >= 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v)); /* v <= 0x1f */
    unsigned m = (unsigned)_mm_movemask_epi8(stop);
    if (m) return p + __builtin_ctz(m);
    p += 16;
  }
#endif
  while (e - p >= 8) {
    uint64_t w, m;
    memcpy(&w, p, 8);
    if ((m = sl_js_word_stops(w))) return p + (__builtin_ctzll(m) >> 3);
    p += 8;
  }
  while (p < e && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
  return p;
}

/* p at the opening quote; *esc set when the string has escapes. */
SL_JS_INLINE const char *sl_js_string(const char *p, const char *e, bool *esc) {
  *esc = false;
  for (p++; p < e; p++) {
    p = sl_js_run_end(p, e);
    if (p >= e) return NULL;
    unsigned char c = (unsigned char)*p;
    if (c == '"') return p + 1;
    if (c < 0x20) return NULL;
    *esc = true;
    if (e - p < 2) return NULL;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't': p++; break;
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

/* A number as RFC 8259 writes it. A leading zero followed by a digit ("01", "-007") is
 * refused here, not left for the caller to trip over: a caller that reads just the value
 * (sl_js_member) would otherwise take "0" from "01", while cJSON reads 1. */
SL_JS_INLINE const char *sl_js_number(const char *p, const char *e) {
  if (p < e && *p == '-') p++;
  if (p < e && *p == '0') {
    p++;
    if (p < e && *p >= '0' && *p <= '9') return NULL;
  } else if (!(p = sl_js_digits(p, e))) {
    return NULL;
  }
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

/* p at the first character of a value (no leading whitespace); numbers longer than max_num
 * characters are refused (0: any length; a caller whose other parser has a limit sets it). */
static inline __attribute__((unused)) const char *sl_js_value_n(const char *p, const char *e,
                                                                int depth, size_t max_num) {
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
      if (!(p = sl_js_value_n(p, e, depth + 1, max_num))) return NULL;
      p = sl_js_ws(p, e);
      if (p >= e) return NULL;
      if (*p == close) return p + 1;
      if (*p != ',') return NULL;
      p = sl_js_ws(p + 1, e);
    }
  }
  default: {
    const char *q = sl_js_number(p, e);
    return q && max_num && (size_t)(q - p) > max_num ? NULL : q;
  }
  }
}

/* p at the first character of a value (no leading whitespace). */
static inline __attribute__((unused)) const char *sl_js_value(const char *p, const char *e,
                                                              int depth) {
  return sl_js_value_n(p, e, depth, 0);
}

/* sl_js_valid: is [s, s+n) exactly one JSON value (RFC 8259, nesting at most
 * SL_JS_MAX_DEPTH), with only whitespace around it? The publish paths validate text from
 * outside with this rather than with cJSON, which accepts a leading zero ("01"). */
static inline __attribute__((unused)) bool sl_js_valid(const char *s, size_t n) {
  if (!s) return false;
  const char *e = s + n, *p = sl_js_value(sl_js_ws(s, e), e, 0);
  return p && sl_js_ws(p, e) == e;
}

/* sl_js_leading_zero: does text that cJSON accepted hold a number with a leading zero
 * ("01", "-007"), which RFC 8259 forbids and cJSON reads anyway? One pass without
 * recursion (so without sl_js_valid's nesting limit): outside strings, a number starts at
 * a '-' or digit that follows no number character, and only its first digits matter (an
 * exponent may be "e05"). For paths that keep cJSON's grammar otherwise (Socket.IO
 * packets, whose nesting cJSON allows deeper). */
static inline __attribute__((unused)) bool sl_js_leading_zero(const char *s, size_t n) {
  const char *p = s, *e = s + n;
  bool in_num = false;
  while (p < e) {
    char c = *p;
    if (c == '"') {
      for (p++; p < e && *p != '"'; p++)
        if (*p == '\\') p++;
      p++;
      in_num = false;
      continue;
    }
    bool numch = (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
    if (numch && !in_num) {
      const char *q = c == '-' ? p + 1 : p;
      if (e - q >= 2 && q[0] == '0' && q[1] >= '0' && q[1] <= '9') return true;
    }
    in_num = numch;
    p++;
  }
  return false;
}

/* The n (<= 8) bytes at p as a little-endian word, without reading past them. */
SL_JS_INLINE uint64_t sl_js_load_le(const char *p, size_t n) {
  const unsigned char *u = (const unsigned char *)p;
  uint32_t a, b;
  if (n >= 4) { /* two overlapping 4-byte reads */
    memcpy(&a, u, 4);
    memcpy(&b, u + n - 4, 4);
    return (uint64_t)a | ((uint64_t)b << (8 * (n - 4)));
  }
  if (!n) return 0;
  return (uint64_t)u[0] | ((uint64_t)u[n / 2] << (8 * (n / 2))) |
         ((uint64_t)u[n - 1] << (8 * (n - 1)));
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
  /* A name without escapes can only equal a key that has no '"', '\\' or control
   * character in it (a plain key). Such a name is the key exactly when the key's bytes
   * follow its quote and a quote follows them (that quote ends it: nothing before it
   * escapes it). Keys up to 8 bytes, nearly all, compare as one word. */
  int plain = -1; /* not known yet: only a name that looks like the key asks */
  uint64_t kw = sl_js_load_le(key, klen < 8 ? klen : 8),
           kmask = klen >= 8 ? ~0ull : (1ull << (8 * klen)) - 1;
  if (p >= e || *p != '{') return -1;
  p = sl_js_ws(p + 1, e);
  if (p < e && *p == '}') return 0;
  for (;;) {
    if (p >= e || *p != '"') return -1;
    bool match = false;
    if (plain && (size_t)(e - p) > klen + 1 && p[klen + 1] == '"') {
      if (klen <= 8 && e - p >= 9) {
        uint64_t w;
        memcpy(&w, p + 1, 8);
        match = !((w ^ kw) & kmask);
      } else {
        match = !memcmp(p + 1, key, klen);
      }
      if (match && plain < 0) {
        plain = sl_js_run_end(key, key + klen) == key + klen;
        match = plain;
      }
    }
    const char *q;
    if (match) {
      q = p + klen + 2;
    } else {
      if (!(q = sl_js_string(p, e, &esc))) return -1;
      escaped |= esc;
    }
    q = sl_js_ws(q, e);
    if (q >= e || *q != ':') return -1;
    const char *v = sl_js_ws(q + 1, e), *w;
    if (v < e && *v == '"') /* the common values without a call */
      w = sl_js_string(v, e, &esc);
    else if (v < e && (*v == '-' || (*v >= '0' && *v <= '9')))
      w = sl_js_number(v, e);
    else
      w = sl_js_value(v, e, 1);
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
