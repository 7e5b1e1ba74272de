/* emitter.c - the @socket.io/redis-emitter ingest (emitter.h): a bounded msgpack decoder for
 * [uid, packet, opts], the msgpack -> JSON conversion of the event's argument, the counters.
 *
 * msgpack-c's unpacker allocates an array's or map's element table from the count it reads,
 * before reading the elements: five bytes claiming 2^32 elements would ask for 96 GiB. So
 * every input is first walked by prescan(), which checks each claimed length against the
 * bytes that remain (every element takes at least one byte); only then does msgpack-c build
 * the object tree, whose size is then bounded by a small multiple of the input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <msgpack.h>
#include "emitter.h"

static const char *const reason_names[SL_EMIT_REASONS] = {
    "ok",   "malformed", "not_emitter", "not_event", "binary",
    "args", "too_large", "namespace",   "topic",
};

const char *sl_emitter_reason_name(int reason) {
  return reason >= 0 && reason < SL_EMIT_REASONS ? reason_names[reason] : "unknown";
}

/* ---- prescan: one value, lengths that fit ------------------------------------------- */

static uint64_t be(const uint8_t *p, unsigned w) {
  uint64_t v = 0;
  for (unsigned i = 0; i < w; i++) v = v << 8 | p[i];
  return v;
}

/* The size of the length field (1, 2 or 4 bytes) after a str/bin/ext/array/map header byte
 * c, and whether the value is a container (*items_mul: 1 array, 2 map) or data (*extra: the
 * ext type byte). 0 when c has no length field. */
static unsigned len_width(uint8_t c, unsigned *items_mul, unsigned *extra) {
  *items_mul = 0;
  *extra = 0;
  switch (c) {
  case 0xc4:
  case 0xd9: return 1;
  case 0xc5:
  case 0xda: return 2;
  case 0xc6:
  case 0xdb: return 4;
  case 0xc7: *extra = 1; return 1;
  case 0xc8: *extra = 1; return 2;
  case 0xc9: *extra = 1; return 4;
  case 0xdc: *items_mul = 1; return 2;
  case 0xdd: *items_mul = 1; return 4;
  case 0xde: *items_mul = 2; return 2;
  case 0xdf: *items_mul = 2; return 4;
  default: return 0;
  }
}

/* The fixed size after header byte c of a value with no length field (0 for one-byte
 * values), or -1 for the reserved byte 0xc1. */
static int fixed_size(uint8_t c) {
  if (c <= 0xbf || c >= 0xe0) return 0; /* fixint, fixmap, fixarray, fixstr: see prescan */
  switch (c) {
  case 0xc0:
  case 0xc2:
  case 0xc3: return 0;
  case 0xc1: return -1;
  case 0xca: return 4;
  case 0xcb: return 8;
  case 0xcc:
  case 0xd0: return 1;
  case 0xcd:
  case 0xd1: return 2;
  case 0xce:
  case 0xd2: return 4;
  case 0xcf:
  case 0xd3: return 8;
  case 0xd4: return 2;
  case 0xd5: return 3;
  case 0xd6: return 5;
  case 0xd7: return 9;
  case 0xd8: return 17;
  default: return 0;
  }
}

/* prescan: is p[0..n) exactly one msgpack value whose every claimed length fits in what
 * remains? NULL if so, else a static description. Linear, no recursion. */
static const char *prescan(const uint8_t *p, size_t n) {
  size_t i = 0;
  uint64_t need = 1; /* values still to read */
  while (need > 0) {
    if (i >= n) return "truncated";
    uint8_t c = p[i++];
    need--;
    uint64_t items = 0, skip = 0;
    unsigned mul, extra, w;
    if (c >= 0x80 && c <= 0x8f) {
      items = 2u * (c & 0x0f);
    } else if (c >= 0x90 && c <= 0x9f) {
      items = c & 0x0f;
    } else if (c >= 0xa0 && c <= 0xbf) {
      skip = c & 0x1f;
    } else if ((w = len_width(c, &mul, &extra)) > 0) {
      if (n - i < w) return "truncated length";
      uint64_t l = be(p + i, w);
      i += w;
      if (mul)
        items = l * mul;
      else
        skip = l + extra;
    } else {
      int f = fixed_size(c);
      if (f < 0) return "reserved byte 0xc1";
      skip = (uint64_t)f;
    }
    if (skip > n - i) return "a length runs past the end";
    i += skip;
    if (items > n - i || need + items > n - i) return "a container claims more elements than bytes";
    need += items;
  }
  return i == n ? NULL : "bytes after the message";
}

/* ---- msgpack -> JSON ----------------------------------------------------------------- */

/* Is o notepack.io's legacy encoding of undefined (fixext 1, type 0)? */
static bool is_undefined(const msgpack_object *o) {
  return o->type == MSGPACK_OBJECT_EXT && o->via.ext.type == 0 && o->via.ext.size == 1;
}

/* Append the JSON string literal of the UTF-8 bytes s[0..n), escaped as JSON.stringify
 * escapes (", \, control characters as \n or \u00xx). Invalid UTF-8: false. */
static bool put_string(sl_sbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (n == 0) { /* msgpack-c gives an empty string a NULL pointer */
    sl_sbuf_append(b, "\"\"", 2);
    return true;
  }
  sl_sbuf_reserve(b, n + 2);
  sl_sbuf_append(b, "\"", 1);
  size_t run = 0; /* start of the bytes copied as they are */
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[6];
    size_t step = 1, elen = 2;
    if (c == '"')
      esc = "\\\"";
    else if (c == '\\')
      esc = "\\\\";
    else if (c == '\n')
      esc = "\\n";
    else if (c == '\r')
      esc = "\\r";
    else if (c == '\t')
      esc = "\\t";
    else if (c == '\b')
      esc = "\\b";
    else if (c == '\f')
      esc = "\\f";
    else if (c < 0x20) {
      memcpy(u, "\\u00", 4);
      u[4] = hex[c >> 4];
      u[5] = hex[c & 15];
      esc = u;
      elen = 6;
    } else if (c >= 0x80) {
      /* invalid UTF-8 (a surrogate too: notepack.io never writes one alone, and a lone \udxxx
       * escape is refused by the publish path's JSON check) */
      if ((step = sl_utf8_seq_len((const unsigned char *)s + i, n - i)) == 0) return false;
    }
    if (esc) {
      sl_sbuf_append(b, s + run, i - run);
      sl_sbuf_append(b, esc, elen);
      run = i + step;
    }
    i += step;
  }
  sl_sbuf_append(b, s + run, n - run);
  sl_sbuf_append(b, "\"", 1);
  return true;
}

/* Days since 1970-01-01 -> proleptic Gregorian y/m/d (civil calendar arithmetic over
 * 400-year eras of 146097 days, March-based years so the leap day comes last). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;                                      /* [0, 146096] */
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
  int64_t mp = (5 * doy + 2) / 153;                                    /* March = 0 */
  *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
  *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

/* Append what Date.prototype.toJSON gives for the time value ms_d (milliseconds since the
 * epoch, as a JS Date computes it from a msgpack timestamp): the ISO 8601 string, with a
 * six-digit signed year outside 0..9999, or null past the Date range (+-8.64e15 ms). */
static void put_date(sl_sbuf *b, double ms_d) {
  double t = trunc(ms_d);
  if (!isfinite(t) || fabs(t) > 8.64e15) {
    sl_sbuf_puts(b, "null");
    return;
  }
  int64_t ms = (int64_t)t;
  int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
  int64_t rem = ms - days * 86400000; /* [0, 86399999] */
  int64_t y;
  unsigned mo, d;
  civil_from_days(days, &y, &mo, &d);
  char year[16];
  if (y >= 0 && y <= 9999)
    snprintf(year, sizeof year, "%04lld", (long long)y);
  else
    snprintf(year, sizeof year, "%c%06lld", y < 0 ? '-' : '+', (long long)(y < 0 ? -y : y));
  sl_sbuf_printf(b, "\"%s-%02u-%02uT%02u:%02u:%02u.%03uZ\"", year, mo, d, (unsigned)(rem / 3600000),
                 (unsigned)(rem / 60000 % 60), (unsigned)(rem / 1000 % 60), (unsigned)(rem % 1000));
}

/* The time value in ms of a msgpack timestamp extension (type -1, 4, 8 or 12 bytes) or of
 * notepack.io's legacy date (type 0, 8 bytes: int64 ms), as notepack.io computes it; false
 * for any other extension. */
static bool ext_date_ms(const msgpack_object_ext *e, double *ms) {
  const uint8_t *p = (const uint8_t *)e->ptr;
  if (e->type == -1 && e->size == 4) {
    *ms = (double)be(p, 4) * 1e3;
  } else if (e->type == -1 && e->size == 8) {
    uint64_t v = be(p, 8);
    *ms = (double)(v & 0x3ffffffffull) * 1e3 + (double)(v >> 34) / 1e6;
  } else if (e->type == -1 && e->size == 12) {
    int64_t s = (int64_t)be(p + 4, 8);
    *ms = (double)s * 1e3 + (double)be(p, 4) / 1e6;
  } else if (e->type == 0 && e->size == 8) {
    *ms = (double)(int64_t)be(p, 8);
  } else {
    return false;
  }
  return true;
}

/* Append d as JavaScript's Number.prototype.toString writes it (what JSON.stringify writes
 * for a number a JS receiver holds): the shortest digits that read back as d, in plain
 * notation for exponents -7 < e < 21, else d[.ddd]e+-x; NaN and the infinities as null. */
static void put_number(sl_sbuf *b, double d) {
  if (!isfinite(d)) {
    sl_sbuf_puts(b, "null");
    return;
  }
  if (d == 0) { /* -0 too */
    sl_sbuf_append(b, "0", 1);
    return;
  }
  char e[40], digits[20], out[48];
  int p;
  for (p = 0; p < 17; p++) { /* the shortest precision that round-trips */
    snprintf(e, sizeof e, "%.*e", p, d);
    if (strtod(e, NULL) == d) break;
  }
  /* e is [-]D[.DDD]e[+-]XX: collect the digits k and the decimal exponent n (value =
   * 0.DIGITS x 10^n) */
  const char *q = e;
  size_t o = 0;
  if (*q == '-') out[o++] = *q++;
  int k = 0;
  for (; *q && *q != 'e'; q++)
    if (*q != '.') digits[k++] = *q;
  while (k > 1 && digits[k - 1] == '0') k--;
  int n = atoi(q + 1) + 1;
  if (k <= n && n <= 21) {
    memcpy(out + o, digits, (size_t)k), o += (size_t)k;
    for (int i = k; i < n; i++) out[o++] = '0';
  } else if (0 < n && n <= 21) {
    memcpy(out + o, digits, (size_t)n), o += (size_t)n;
    out[o++] = '.';
    memcpy(out + o, digits + n, (size_t)(k - n)), o += (size_t)(k - n);
  } else if (-6 < n && n <= 0) {
    out[o++] = '0';
    out[o++] = '.';
    for (int i = n; i < 0; i++) out[o++] = '0';
    memcpy(out + o, digits, (size_t)k), o += (size_t)k;
  } else {
    out[o++] = digits[0];
    if (k > 1) {
      out[o++] = '.';
      memcpy(out + o, digits + 1, (size_t)(k - 1)), o += (size_t)(k - 1);
    }
    o += (size_t)snprintf(out + o, sizeof out - o, "e%c%d", n - 1 < 0 ? '-' : '+',
                          n - 1 < 0 ? 1 - n : n - 1);
  }
  sl_sbuf_append(b, out, o);
}

static sl_emit_reason put_value(sl_sbuf *b, const msgpack_object *o, size_t max);

/* A map key as the JS object key notepack.io makes of it (String(key)). */
static sl_emit_reason put_key(sl_sbuf *b, const msgpack_object *k) {
  char num[SL_JSON_NUM_MAX + 2];
  size_t n;
  switch (k->type) {
  case MSGPACK_OBJECT_STR:
    return put_string(b, k->via.str.ptr, k->via.str.size) ? SL_EMIT_OK : SL_EMIT_MALFORMED;
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
  case MSGPACK_OBJECT_NEGATIVE_INTEGER:
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64:
  case MSGPACK_OBJECT_BOOLEAN:
  case MSGPACK_OBJECT_NIL: {
    sl_sbuf t = {0};
    sl_emit_reason r = put_value(&t, k, 0);
    n = t.len < sizeof num ? t.len : 0;
    if (n) memcpy(num, t.data, n);
    sl_sbuf_free(&t);
    if (r != SL_EMIT_OK || n == 0) return SL_EMIT_MALFORMED;
    return put_string(b, num, n) ? SL_EMIT_OK : SL_EMIT_MALFORMED;
  }
  default: return SL_EMIT_MALFORMED; /* an array, map or binary as a key */
  }
}

static sl_emit_reason put_value(sl_sbuf *b, const msgpack_object *o, size_t max) {
  sl_emit_reason r;
  if (max && b->len > max) return SL_EMIT_TOO_LARGE;
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: sl_sbuf_puts(b, "null"); break;
  case MSGPACK_OBJECT_BOOLEAN: sl_sbuf_puts(b, o->via.boolean ? "true" : "false"); break;
  /* a JS receiver holds every number as a double: 64-bit integers round as they do there */
  case MSGPACK_OBJECT_POSITIVE_INTEGER: put_number(b, (double)o->via.u64); break;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: put_number(b, (double)o->via.i64); break;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: put_number(b, o->via.f64); break;
  case MSGPACK_OBJECT_STR:
    if (max && b->len + o->via.str.size > max) return SL_EMIT_TOO_LARGE;
    if (!put_string(b, o->via.str.ptr, o->via.str.size)) return SL_EMIT_MALFORMED;
    break;
  case MSGPACK_OBJECT_ARRAY:
    sl_sbuf_append(b, "[", 1);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
      if (i) sl_sbuf_append(b, ",", 1);
      const msgpack_object *e = &o->via.array.ptr[i];
      if (is_undefined(e))
        sl_sbuf_puts(b, "null"); /* as JSON.stringify([undefined]) */
      else if ((r = put_value(b, e, max)) != SL_EMIT_OK)
        return r;
    }
    sl_sbuf_append(b, "]", 1);
    break;
  case MSGPACK_OBJECT_MAP: {
    sl_sbuf_append(b, "{", 1);
    bool first = true;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      const msgpack_object_kv *kv = &o->via.map.ptr[i];
      if (is_undefined(&kv->val)) continue; /* JSON.stringify leaves such members out */
      if (!first) sl_sbuf_append(b, ",", 1);
      first = false;
      if ((r = put_key(b, &kv->key)) != SL_EMIT_OK) return r;
      sl_sbuf_append(b, ":", 1);
      if ((r = put_value(b, &kv->val, max)) != SL_EMIT_OK) return r;
    }
    sl_sbuf_append(b, "}", 1);
    break;
  }
  case MSGPACK_OBJECT_EXT: {
    double ms;
    if (!ext_date_ms(&o->via.ext, &ms)) return SL_EMIT_BINARY;
    put_date(b, ms);
    break;
  }
  case MSGPACK_OBJECT_BIN:
  default: return SL_EMIT_BINARY;
  }
  return max && b->len > max ? SL_EMIT_TOO_LARGE : SL_EMIT_OK;
}

/* Unpack exactly one value from buf[0..len) into u (prescan first). */
static sl_emit_reason unpack(msgpack_unpacked *u, const void *buf, size_t len, const char **why) {
  if ((*why = prescan(buf, len)) != NULL) return SL_EMIT_MALFORMED;
  size_t off = 0;
  msgpack_unpack_return rc = msgpack_unpack_next(u, buf, len, &off);
  if (rc == MSGPACK_UNPACK_SUCCESS && off == len) return SL_EMIT_OK;
  *why = rc == MSGPACK_UNPACK_NOMEM_ERROR ? "nested too deeply" : "not msgpack";
  return SL_EMIT_MALFORMED;
}

sl_emit_reason sl_emitter_to_json(const void *buf, size_t len, size_t max, sl_sbuf *b) {
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  const char *why;
  sl_emit_reason r = unpack(&u, buf, len, &why);
  if (r == SL_EMIT_OK) {
    if (is_undefined(&u.data))
      sl_sbuf_puts(b, "null");
    else
      r = put_value(b, &u.data, max);
  }
  msgpack_unpacked_destroy(&u);
  return r;
}

/* ---- [uid, packet, opts] --------------------------------------------------------------- */

/* The value of map member `key` (a string key), or NULL. */
static const msgpack_object *member(const msgpack_object *map, const char *key) {
  size_t kl = strlen(key);
  for (uint32_t i = 0; i < map->via.map.size; i++) {
    const msgpack_object *k = &map->via.map.ptr[i].key;
    if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
        memcmp(k->via.str.ptr, key, kl) == 0)
      return &map->via.map.ptr[i].val;
  }
  return NULL;
}

/* A copy of string object o, or NULL when o is not a string or holds a NUL byte. */
static char *dup_str(const msgpack_object *o) {
  if (!o || o->type != MSGPACK_OBJECT_STR) return NULL;
  if (o->via.str.size == 0) return sl_xstrdup(""); /* ptr may be NULL */
  if (memchr(o->via.str.ptr, 0, o->via.str.size)) return NULL;
  return sl_xstrndup(o->via.str.ptr, o->via.str.size);
}

static bool str_is(const msgpack_object *o, const char *s) {
  size_t n = strlen(s);
  return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

/* opts.rooms / opts.except: absent or nil = none; else an array of strings (a Set spread). */
static bool room_list(const msgpack_object *o, char ***out, size_t *n) {
  if (!o || o->type == MSGPACK_OBJECT_NIL) return true;
  if (o->type != MSGPACK_OBJECT_ARRAY) return false;
  if (o->via.array.size == 0) return true;
  *out = sl_xcalloc(o->via.array.size, sizeof **out);
  for (uint32_t i = 0; i < o->via.array.size; i++) {
    if (!((*out)[i] = dup_str(&o->via.array.ptr[i]))) return false;
    (*n)++;
  }
  return true;
}

static bool flag(const msgpack_object *flags, const char *name) {
  const msgpack_object *v = flags ? member(flags, name) : NULL;
  return v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
}

/* Fill m from the unpacked root; a reason and *why on refusal. */
static sl_emit_reason from_tree(const msgpack_object *root, size_t max, sl_emitter_msg *m,
                                const char **why) {
  if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 3) {
    *why = root->type == MSGPACK_OBJECT_MAP ? "a map (a streams adapter node's message)"
                                            : "not an array [uid, packet, opts]";
    return SL_EMIT_NOT_EMITTER;
  }
  const msgpack_object *uid = &root->via.array.ptr[0], *pkt = &root->via.array.ptr[1],
                       *opts = &root->via.array.ptr[2];
  if (!str_is(uid, "emitter")) {
    *why = "uid is not \"emitter\" (another server's broadcast)";
    return SL_EMIT_NOT_EMITTER;
  }
  if (pkt->type != MSGPACK_OBJECT_MAP || opts->type != MSGPACK_OBJECT_MAP) {
    *why = "packet or opts is not a map";
    return SL_EMIT_MALFORMED;
  }
  const msgpack_object *type = member(pkt, "type"), *data = member(pkt, "data"),
                       *nsp = member(pkt, "nsp");
  if (!type || type->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
    *why = "packet.type is not a number";
    return SL_EMIT_MALFORMED;
  }
  if (type->via.u64 != 2) {
    *why = "packet is not an EVENT";
    return SL_EMIT_NOT_EVENT;
  }
  if (!data || data->type != MSGPACK_OBJECT_ARRAY || data->via.array.size == 0 ||
      !(m->event = dup_str(&data->via.array.ptr[0])) || m->event[0] == 0) {
    *why = "packet.data is not [event name, ...]";
    return SL_EMIT_MALFORMED;
  }
  if (nsp && nsp->type != MSGPACK_OBJECT_NIL && !is_undefined(nsp)) {
    if (!(m->nsp = dup_str(nsp))) {
      *why = "packet.nsp is not a string";
      return SL_EMIT_MALFORMED;
    }
  } else {
    m->nsp = sl_xstrdup("/");
  }
  const msgpack_object *flags = member(opts, "flags");
  if (flags && flags->type != MSGPACK_OBJECT_MAP) flags = NULL;
  if (!room_list(member(opts, "rooms"), &m->rooms, &m->nrooms) ||
      !room_list(member(opts, "except"), &m->except, &m->nexcept)) {
    *why = "opts.rooms or opts.except is not a list of strings";
    return SL_EMIT_MALFORMED;
  }
  m->flag_volatile = flag(flags, "volatile");
  m->flag_compress = flag(flags, "compress");
  if (data->via.array.size > 2) {
    *why = "more than one argument after the event name (Sluice delivers one payload)";
    return SL_EMIT_ARGS;
  }
  sl_sbuf b = {0};
  sl_emit_reason r = SL_EMIT_OK;
  if (data->via.array.size == 1 || is_undefined(&data->via.array.ptr[1]))
    sl_sbuf_puts(&b, "null");
  else
    r = put_value(&b, &data->via.array.ptr[1], max);
  if (r == SL_EMIT_OK && max && b.len > max) r = SL_EMIT_TOO_LARGE; /* "null" too */
  if (r != SL_EMIT_OK) {
    *why = r == SL_EMIT_BINARY      ? "the payload holds binary data, which JSON cannot carry"
           : r == SL_EMIT_TOO_LARGE ? "the payload's JSON is larger than maxPayload"
                                    : "the payload holds a string that is not UTF-8";
    sl_sbuf_free(&b);
    return r;
  }
  sl_sbuf_append(&b, "", 1); /* NUL */
  m->payload = b.data;
  m->payload_len = b.len - 1;
  m->uid = sl_xstrdup("emitter");
  return SL_EMIT_OK;
}

sl_emit_reason sl_emitter_decode(const void *buf, size_t len, size_t max_payload,
                                 sl_emitter_msg *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  const char *why = NULL;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  sl_emit_reason r = unpack(&u, buf, len, &why);
  if (r == SL_EMIT_OK) r = from_tree(&u.data, max_payload, out, &why);
  msgpack_unpacked_destroy(&u);
  if (r != SL_EMIT_OK) {
    sl_emitter_msg_free(out);
    if (err && errlen) snprintf(err, errlen, "%s", why ? why : sl_emitter_reason_name(r));
  }
  return r;
}

static void free_list(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

void sl_emitter_msg_free(sl_emitter_msg *m) {
  free(m->uid);
  free(m->nsp);
  free(m->event);
  free(m->payload);
  free_list(m->rooms, m->nrooms);
  free_list(m->except, m->nexcept);
  memset(m, 0, sizeof *m);
}
