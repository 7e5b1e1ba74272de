/* cluster_codec_ref.h - TEST ONLY: the stream entry decoder as it was before the one-pass
 * scanner (core/cluster_codec.c at main fc6609b), kept verbatim but for its names
 * (sl_cl_decode_ref, sl_cl_entry_free_ref) as the reference of the differential tests
 * (spec/unit/test_cluster_codec.c, spec/fuzz/fuzz_cluster.c): whatever the new decoder
 * returns must equal what this one returns. Not part of the library. Include it once. */
#ifndef CLUSTER_CODEC_REF_H
#define CLUSTER_CODEC_REF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <msgpack.h>

#include "cluster_codec.h"
#include "sl_jscan.h"
#include "sio_codec.h"
#include "sl_util.h"

#define MAX_ROOMS 4096
#define MP_MAX_DEPTH 64

int sl_cl_decode_ref(const char *const *f, const size_t *fl, size_t nf, sl_cl_entry *e);
void sl_cl_entry_free_ref(sl_cl_entry *e);

static void json_str(sl_sbuf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  sl_sbuf_reserve(b, strlen(s) + 2);
  sl_sbuf_append(b, "\"", 1);
  const char *run = s;
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    sl_sbuf_append(b, run, (size_t)(p - run));
    char esc[6] = {'\\', (char)c, 0};
    size_t n = 2;
    if (c < 0x20) {
      memcpy(esc, "\\u00", 4);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      n = 6;
    }
    sl_sbuf_append(b, esc, n);
    run = p + 1;
  }
  sl_sbuf_puts(b, run);
  sl_sbuf_append(b, "\"", 1);
}

/* ---- msgpack -> JSON ------------------------------------------------------------------- */

/* Write o as JSON text to b. Returns SL_CL_OK, SL_CL_BINARY (bin/ext) or SL_CL_MALFORMED
 * (a map key that is not a string, a non-finite float, too deep). */
static int mp_json(sl_sbuf *b, const msgpack_object *o, int depth) {
  char num[SL_JSON_NUM_MAX + 1];
  if (depth > MP_MAX_DEPTH) return SL_CL_MALFORMED;
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: sl_sbuf_puts(b, "null"); return SL_CL_OK;
  case MSGPACK_OBJECT_BOOLEAN: sl_sbuf_puts(b, o->via.boolean ? "true" : "false"); return SL_CL_OK;
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
    sl_sbuf_append(b, num, sl_u64_dec(num, o->via.u64));
    return SL_CL_OK;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER:
    sl_sbuf_append(b, "-", 1);
    sl_sbuf_append(b, num, sl_u64_dec(num, (uint64_t)0 - (uint64_t)o->via.i64));
    return SL_CL_OK;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: {
    size_t n = sl_json_num(num, o->via.f64);
    if (!n) return SL_CL_MALFORMED;
    sl_sbuf_append(b, num, n);
    return SL_CL_OK;
  }
  case MSGPACK_OBJECT_STR: {
    /* JSON-escape a string that may hold NULs */
    if (!o->via.str.size) { /* msgpack-c leaves ptr NULL for "" */
      sl_sbuf_puts(b, "\"\"");
      return SL_CL_OK;
    }
    char *s = sl_xstrndup(o->via.str.ptr, o->via.str.size);
    if (strlen(s) != o->via.str.size) {
      free(s);
      return SL_CL_MALFORMED;
    }
    json_str(b, s);
    free(s);
    return SL_CL_OK;
  }
  case MSGPACK_OBJECT_ARRAY:
    sl_sbuf_append(b, "[", 1);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
      if (i) sl_sbuf_append(b, ",", 1);
      int r = mp_json(b, &o->via.array.ptr[i], depth + 1);
      if (r) return r;
    }
    sl_sbuf_append(b, "]", 1);
    return SL_CL_OK;
  case MSGPACK_OBJECT_MAP:
    sl_sbuf_append(b, "{", 1);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      const msgpack_object_kv *kv = &o->via.map.ptr[i];
      if (kv->key.type != MSGPACK_OBJECT_STR) return SL_CL_MALFORMED;
      if (i) sl_sbuf_append(b, ",", 1);
      int r = mp_json(b, &kv->key, depth + 1);
      if (r) return r;
      sl_sbuf_append(b, ":", 1);
      if ((r = mp_json(b, &kv->val, depth + 1))) return r;
    }
    sl_sbuf_append(b, "}", 1);
    return SL_CL_OK;
  case MSGPACK_OBJECT_BIN:
  case MSGPACK_OBJECT_EXT: return SL_CL_BINARY;
  default: return SL_CL_MALFORMED;
  }
}

static uint64_t be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* Is p[0..n) exactly one msgpack object, every container declaring no more elements than
 * bytes left and nesting at most MP_MAX_DEPTH? msgpack-c allocates a container's elements
 * from its declared count before reading them: without this walk, a 5-byte input claiming
 * 2^32 elements asks for 100 GB. */
static bool mp_sane(const uint8_t *p, size_t n) {
  uint64_t need[MP_MAX_DEPTH + 1];
  int d = 0;
  size_t i = 0;
  need[0] = 1;
  while (d >= 0) {
    if (!need[d]) {
      d--;
      continue;
    }
    need[d]--;
    if (i >= n) return false;
    uint8_t b = p[i++];
    uint64_t skip = 0, count = 0;
    int lenw = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      /* no payload */
    } else if (b >= 0x80 && b <= 0x8f) {
      count = (uint64_t)(b & 15) * 2;
    } else if (b >= 0x90 && b <= 0x9f) {
      count = b & 15;
    } else if (b >= 0xa0 && b <= 0xbf) {
      skip = b & 31;
    } else {
      switch (b) {
      case 0xc4:
      case 0xd9: lenw = 1; break;
      case 0xc5:
      case 0xda: lenw = 2; break;
      case 0xc6:
      case 0xdb: lenw = 4; break;
      case 0xc7:
        lenw = 1;
        skip = 1;
        break;
      case 0xc8:
        lenw = 2;
        skip = 1;
        break;
      case 0xc9:
        lenw = 4;
        skip = 1;
        break;
      case 0xca:
      case 0xce:
      case 0xd2: skip = 4; break;
      case 0xcb:
      case 0xcf:
      case 0xd3: skip = 8; break;
      case 0xcc:
      case 0xd0: skip = 1; break;
      case 0xcd:
      case 0xd1: skip = 2; break;
      case 0xd4: skip = 2; break;
      case 0xd5: skip = 3; break;
      case 0xd6: skip = 5; break;
      case 0xd7: skip = 9; break;
      case 0xd8: skip = 17; break;
      case 0xdc:
      case 0xde:
        if (n - i < 2) return false;
        count = be(p + i, 2) * (b == 0xde ? 2 : 1);
        i += 2;
        break;
      case 0xdd:
      case 0xdf:
        if (n - i < 4) return false;
        count = be(p + i, 4) * (b == 0xdf ? 2 : 1);
        i += 4;
        break;
      default: return false; /* 0xc1 */
      }
    }
    if (lenw) {
      if (n - i < (size_t)lenw) return false;
      skip += be(p + i, lenw);
      i += (size_t)lenw;
    }
    if (skip > n - i) return false;
    i += skip;
    if (count) {
      if (count > n - i || d == MP_MAX_DEPTH) return false;
      need[++d] = count;
    }
  }
  return i == n;
}

/* data (base64 msgpack) as JSON text into *out (malloc'd, NUL-terminated). */
static int b64_msgpack_json(const char *data, size_t len, char **out) {
  *out = NULL;
  uint8_t *raw = sl_xmalloc(len / 4 * 3 + 4);
  long n = sl_b64_decode(data, len, raw);
  if (n <= 0 || !mp_sane(raw, (size_t)n)) {
    free(raw);
    return SL_CL_MALFORMED;
  }
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  int rc = SL_CL_MALFORMED;
  if (msgpack_unpack_next(&u, (const char *)raw, (size_t)n, &off) == MSGPACK_UNPACK_SUCCESS &&
      off == (size_t)n) {
    sl_sbuf b = {0};
    rc = mp_json(&b, &u.data, 0);
    if (rc == SL_CL_OK) {
      sl_sbuf_append(&b, "", 1); /* NUL */
      *out = b.data;
    } else {
      sl_sbuf_free(&b);
    }
  }
  msgpack_unpacked_destroy(&u);
  free(raw);
  return rc;
}

/* ---- decode ---------------------------------------------------------------------------- */

static bool field_is(const char *f, size_t fl, const char *name) {
  size_t n = strlen(name);
  return fl == n && memcmp(f, name, n) == 0;
}

/* A JSON array of strings into *v / *n (copies). Returns SL_CL_OK or SL_CL_MALFORMED. */
static int str_list(const cJSON *a, char ***v, size_t *n) {
  if (!a) return SL_CL_OK;
  if (!cJSON_IsArray(a)) return SL_CL_MALFORMED;
  int cnt = cJSON_GetArraySize(a);
  if (cnt > MAX_ROOMS) return SL_CL_MALFORMED;
  if (!cnt) return SL_CL_OK;
  *v = sl_xcalloc((size_t)cnt, sizeof(char *));
  const cJSON *it;
  cJSON_ArrayForEach(it, a) {
    if (!cJSON_IsString(it)) return SL_CL_MALFORMED;
    (*v)[(*n)++] = sl_xstrdup(it->valuestring);
  }
  return SL_CL_OK;
}

/* opts.flags.sluice: Sluice's metadata; a member of the wrong type counts as absent. */
static void sluice_flags(const cJSON *s, sl_cl_entry *e) {
  e->sluice = true;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, "s");
  if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9007199254740992.0)
    e->seq = (uint64_t)v->valuedouble;
  v = cJSON_GetObjectItemCaseSensitive(s, "d");
  e->delivered = (cJSON_IsNumber(v) && v->valuedouble == 1) || cJSON_IsTrue(v);
  v = cJSON_GetObjectItemCaseSensitive(s, "k");
  if (cJSON_IsString(v)) e->key = sl_xstrdup(v->valuestring);
  v = cJSON_GetObjectItemCaseSensitive(s, "id");
  if (cJSON_IsString(v) && strlen(v->valuestring) < 48) e->msgid = sl_xstrdup(v->valuestring);
  v = cJSON_GetObjectItemCaseSensitive(s, "snap");
  if (v) {
    e->snapshot_set = true;
    if (!cJSON_IsNull(v)) {
      e->snapshot = sl_json_print(v);
      e->snapshot_len = e->snapshot ? strlen(e->snapshot) : 0;
    }
  }
}

/* The text of packet.data[1] in json[0..len) as written, found by the strict scanner (the
 * first "packet" member, its first "data", as cJSON picks them), or NULL when it cannot
 * tell (escaped member names, text only cJSON accepts): then the tree is printed instead.
 * Saves printing every payload again. */
static const char *payload_span(const char *json, size_t len, size_t *n) {
  const char *e = json + len, *vs, *ve, *p = sl_js_ws(json, e);
  if (sl_js_member(p, e, "packet", 6, &vs, &ve) != 1 || *vs != '{') return NULL;
  if (sl_js_member(vs, ve, "data", 4, &p, &ve) != 1 || *p != '[') return NULL;
  if (!(p = sl_js_value(sl_js_ws(p + 1, ve), ve, 1))) return NULL;
  p = sl_js_ws(p, ve);
  if (p >= ve || *p != ',') return NULL;
  p = sl_js_ws(p + 1, ve);
  const char *q = sl_js_value(p, ve, 1);
  if (!q) return NULL;
  *n = (size_t)(q - p);
  return p;
}

/* The data JSON (json[0..len), parsed as root) of a BROADCAST into e. */
static int decode_data(const cJSON *root, const char *json, size_t len, sl_cl_entry *e) {
  if (!cJSON_IsObject(root)) return SL_CL_MALFORMED;
  if (cJSON_GetObjectItemCaseSensitive(root, "requestId")) return SL_CL_WITH_ACK;
  const cJSON *packet = cJSON_GetObjectItemCaseSensitive(root, "packet");
  const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "opts");
  if (!cJSON_IsObject(packet) || (opts && !cJSON_IsObject(opts))) return SL_CL_MALFORMED;
  const cJSON *pt = cJSON_GetObjectItemCaseSensitive(packet, "type");
  if (!cJSON_IsNumber(pt)) return SL_CL_MALFORMED;
  if (pt->valuedouble == 5) return SL_CL_BINARY;
  if (pt->valuedouble != 2) return SL_CL_OTHER_TYPE;
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(packet, "data");
  if (!cJSON_IsArray(d) || !cJSON_IsString(d->child)) return SL_CL_MALFORMED;
  e->topic = sl_xstrdup(d->child->valuestring);
  e->topiclen = strlen(e->topic);
  size_t pl;
  const char *raw = d->child->next ? payload_span(json, len, &pl) : NULL;
  if (raw) {
    e->payload = sl_xstrndup(raw, pl);
  } else if (d->child->next) {
    e->payload = sl_json_print(d->child->next);
    if (!e->payload) return SL_CL_MALFORMED;
  } else {
    e->payload = sl_xstrdup("null");
  }
  e->len = strlen(e->payload);
  if (!opts) return SL_CL_OK;
  int r = str_list(cJSON_GetObjectItemCaseSensitive(opts, "rooms"), &e->rooms, &e->nrooms);
  if (r) return r;
  if ((r = str_list(cJSON_GetObjectItemCaseSensitive(opts, "except"), &e->except, &e->nexcept)))
    return r;
  const cJSON *flags = cJSON_GetObjectItemCaseSensitive(opts, "flags");
  if (cJSON_IsObject(flags)) {
    e->is_volatile = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(flags, "volatile"));
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(flags, "sluice");
    if (cJSON_IsObject(s)) sluice_flags(s, e);
  }
  return SL_CL_OK;
}

/* sl_cl_decode_ref: sl_cl_decode as it was. */
int sl_cl_decode_ref(const char *const *f, const size_t *fl, size_t nf, sl_cl_entry *e) {
  memset(e, 0, sizeof *e);
  e->type = -1;
  if (nf % 2) return SL_CL_MALFORMED;
  const char *data = NULL;
  size_t dlen = 0;
  for (size_t i = 0; i + 1 < nf; i += 2) {
    const char *v = f[i + 1];
    size_t vl = fl[i + 1];
    if (memchr(f[i], 0, fl[i]) || (!field_is(f[i], fl[i], "data") && memchr(v, 0, vl)))
      return SL_CL_MALFORMED; /* NUL inside a name or a text field */
    if (field_is(f[i], fl[i], "uid")) {
      free(e->uid);
      e->uid = sl_xstrndup(v, vl);
    } else if (field_is(f[i], fl[i], "nsp")) {
      free(e->nsp);
      e->nsp = sl_xstrndup(v, vl);
    } else if (field_is(f[i], fl[i], "type")) {
      int t = 0;
      if (!vl || vl > 6) return SL_CL_MALFORMED;
      for (size_t k = 0; k < vl; k++) {
        if (v[k] < '0' || v[k] > '9') return SL_CL_MALFORMED;
        t = t * 10 + (v[k] - '0');
      }
      e->type = t;
    } else if (field_is(f[i], fl[i], "data")) {
      data = v;
      dlen = vl;
    }
  }
  if (!e->uid || !e->nsp || e->type < 0) return SL_CL_MALFORMED;
  if (e->type != 3 || !data) return SL_CL_OTHER_TYPE;
  if (!e->nsp[0] || memchr(data, 0, dlen)) return SL_CL_MALFORMED;
  char *json = NULL;
  if (dlen && data[0] == '{') {
    json = sl_xstrndup(data, dlen);
  } else {
    int r = b64_msgpack_json(data, dlen, &json);
    if (r) return r;
  }
  size_t jl = strlen(json);
  /* delivered as WebSocket text: the fields must be UTF-8 (cJSON does not check) */
  if (!sl_utf8_valid((const uint8_t *)json, jl) ||
      !sl_utf8_valid((const uint8_t *)e->nsp, strlen(e->nsp))) {
    free(json);
    return SL_CL_MALFORMED;
  }
  cJSON *root = cJSON_ParseWithLength(json, jl);
  int r = root ? decode_data(root, json, jl, e) : SL_CL_MALFORMED;
  cJSON_Delete(root);
  free(json);
  return r;
}

static void free_list(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* sl_cl_entry_free_ref: sl_cl_entry_free as it was. */
void sl_cl_entry_free_ref(sl_cl_entry *e) {
  free(e->uid);
  free(e->nsp);
  free(e->topic);
  free(e->payload);
  free_list(e->rooms, e->nrooms);
  free_list(e->except, e->nexcept);
  free(e->key);
  free(e->msgid);
  free(e->snapshot);
  memset(e, 0, sizeof *e);
}

/* ---- the comparison ---------------------------------------------------------------------- */

static bool ref_str_eq(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

/* cl_diff: does the new decoder's result (rn, n) equal the reference's (rr, r)? NULL when it
 * does, else the name of the first field that differs. On SL_CL_OK every field counts (the
 * payload and snapshot byte for byte, with their lengths); on another code, uid, nsp and type
 * (what sl_cl_decode keeps on error), and the new entry must hold nothing else (the old one
 * left a partial topic/payload/rooms behind, which nobody read). */
static inline const char *cl_diff(int rn, const sl_cl_entry *n, int rr, const sl_cl_entry *r) {
  if (rn != rr) return "return code";
  if (!ref_str_eq(n->uid, r->uid)) return "uid";
  if (!ref_str_eq(n->nsp, r->nsp)) return "nsp";
  if (n->type != r->type) return "type";
  if (rn != SL_CL_OK) {
    if (n->topic || n->payload || n->rooms || n->except || n->nrooms || n->nexcept || n->key ||
        n->msgid || n->snapshot || n->snapshot_set || n->sluice || n->seq || n->delivered ||
        n->is_volatile)
      return "fields left on error";
    return NULL;
  }
  if (!ref_str_eq(n->topic, r->topic) || n->topiclen != r->topiclen) return "topic";
  if (n->len != r->len || !n->payload || !r->payload || memcmp(n->payload, r->payload, n->len) ||
      n->payload[n->len])
    return "payload";
  if (n->nrooms != r->nrooms) return "nrooms";
  for (size_t i = 0; i < n->nrooms; i++)
    if (!ref_str_eq(n->rooms[i], r->rooms[i])) return "rooms";
  if (n->nexcept != r->nexcept) return "nexcept";
  for (size_t i = 0; i < n->nexcept; i++)
    if (!ref_str_eq(n->except[i], r->except[i])) return "except";
  if (n->is_volatile != r->is_volatile) return "is_volatile";
  if (n->sluice != r->sluice) return "sluice";
  if (n->seq != r->seq) return "seq";
  if (n->delivered != r->delivered) return "delivered";
  if (!ref_str_eq(n->key, r->key)) return "key";
  if (!ref_str_eq(n->msgid, r->msgid)) return "msgid";
  if (n->snapshot_set != r->snapshot_set) return "snapshot_set";
  if (!ref_str_eq(n->snapshot, r->snapshot) || n->snapshot_len != r->snapshot_len)
    return "snapshot";
  return NULL;
}

/* cl_diff_fields: decode the field list with both decoders and compare (cl_diff); *rc gets
 * the new decoder's code. */
static inline const char *cl_diff_fields(const char *const *f, const size_t *fl, size_t nf,
                                         int *rc) {
  sl_cl_entry n, r;
  int rn = sl_cl_decode(f, fl, nf, &n), rr = sl_cl_decode_ref(f, fl, nf, &r);
  const char *d = cl_diff(rn, &n, rr, &r);
  if (rc) *rc = rn;
  sl_cl_entry_free(&n);
  sl_cl_entry_free_ref(&r);
  return d;
}

#endif
