/* cluster_codec.c - stream entries in @socket.io/redis-streams-adapter's format
 * (cluster_codec.h): the data JSON of a publish, and the decoder of entries read back
 * (JSON, or base64 msgpack turned into JSON first; the JSON read in one pass by
 * cluster_scan.c, or with a cJSON tree where that pass cannot judge it as cJSON would). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <msgpack.h>

#include "cluster_codec.h"
#include "cluster_scan.h"
#include "sl_jscan.h"
#include "sio_codec.h"
#include "sl_util.h"

const char *const sl_cl_reasons[SL_CL_NREASONS] = {"", "other_type", "with_ack", "binary",
                                                   "malformed"};

#define MP_MAX_DEPTH 64

/* ---- encode ---------------------------------------------------------------------------- */

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

/* sl_cl_encode: see cluster_codec.h. */
void sl_cl_encode(sl_sbuf *b, const sl_cl_out *o) {
  char num[24];
  sl_sbuf_reserve(b, o->len + 160);
  sl_sbuf_puts(b, "{\"opts\":{\"rooms\":[");
  for (size_t i = 0; i < o->nrooms; i++) {
    if (i) sl_sbuf_append(b, ",", 1);
    json_str(b, o->rooms[i]);
  }
  sl_sbuf_puts(b, "],\"except\":[],\"flags\":{\"sluice\":{\"s\":");
  sl_sbuf_append(b, num, sl_u64_dec(num, o->seq));
  if (o->delivered) sl_sbuf_puts(b, ",\"d\":1");
  if (o->key) {
    sl_sbuf_puts(b, ",\"k\":");
    json_str(b, o->key);
  }
  if (o->msgid) {
    sl_sbuf_puts(b, ",\"id\":");
    json_str(b, o->msgid);
  }
  if (o->snapshot_set) {
    sl_sbuf_puts(b, ",\"snap\":");
    sl_sbuf_puts(b, o->snapshot ? o->snapshot : "null");
  }
  sl_sbuf_puts(b, "}}},\"packet\":{\"type\":2,\"data\":[");
  sl_sbuf_puts(b, o->topic_json);
  sl_sbuf_append(b, ",", 1);
  sl_sbuf_append(b, o->payload, o->len);
  sl_sbuf_puts(b, "],\"nsp\":");
  sl_sbuf_puts(b, o->nsp_json);
  sl_sbuf_puts(b, "}}");
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

/* ---- decode: the cJSON tree (for what the scanner cannot judge) ------------------------ */

/* A JSON array of strings into *v / *n (copies). Returns SL_CL_OK or SL_CL_MALFORMED. */
static int str_list(const cJSON *a, char ***v, size_t *n) {
  if (!a) return SL_CL_OK;
  if (!cJSON_IsArray(a)) return SL_CL_MALFORMED;
  int cnt = cJSON_GetArraySize(a);
  if (cnt > SL_CL_MAX_ROOMS) return SL_CL_MALFORMED;
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
static int tree_data(const cJSON *root, const char *json, size_t len, sl_cl_entry *e) {
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

/* The data JSON json[0..len) through the cJSON tree, as every entry was read before the
 * scanner: the path for text the scanner declines. */
static int tree_decode(const char *json, size_t len, sl_cl_entry *e) {
  if (memchr(json, 0, len)) return SL_CL_MALFORMED; /* cJSON would take a NUL in a string */
  char *copy = sl_xstrndup(json, len);              /* cJSON as before: NUL-terminated */
  cJSON *root = cJSON_ParseWithLength(copy, len);
  int r = root ? tree_data(root, copy, len, e) : SL_CL_MALFORMED;
  cJSON_Delete(root);
  free(copy);
  return r;
}

/* A field's value as read: p NULL when absent. */
typedef struct fspan {
  const char *p;
  size_t n;
} fspan;

/* Is s[0..n) UTF-8? Words of ASCII are skipped 8 bytes at a time. */
static bool utf8_ok(const char *s, size_t n) {
  size_t i = 0;
  for (uint64_t w; i + 8 <= n; i += 8) {
    memcpy(&w, s + i, 8);
    if (w & 0x8080808080808080ull) break;
  }
  return sl_utf8_valid((const uint8_t *)s + i, n - i);
}

/* The data field (BROADCAST) of an entry whose uid and nsp are read: into e, by the scan
 * or, when it declines, the tree (e->blk NULL then). */
static int data_decode(const char *data, size_t dlen, const fspan *nsp, const fspan *uid,
                       sl_cl_entry *e) {
  char *owned = NULL;
  const char *json = data;
  size_t jl = dlen;
  if (!nsp->n) return SL_CL_MALFORMED;
  if (!dlen || data[0] != '{') {
    if (memchr(data, 0, dlen)) return SL_CL_MALFORMED;
    int r = b64_msgpack_json(data, dlen, &owned);
    if (r) return r;
    json = owned;
    jl = strlen(owned);
  }
  /* delivered as WebSocket text: the fields must be UTF-8 (neither parser checks) */
  int r = SL_CL_MALFORMED;
  if (utf8_ok(json, jl) && utf8_ok(nsp->p, nsp->n)) {
    r = sl_cl_scan(json, jl, uid->p, uid->n, nsp->p, nsp->n, e);
    if (r == SL_CL_SCAN_DECLINED) r = tree_decode(json, jl, e);
  }
  free(owned);
  return r;
}

/* Which of the fields the decoder reads is the name k[0..kl): 0 uid, 1 nsp, 2 type, 3 data,
 * -1 none. */
static int name_of(const char *k, size_t kl) {
  if (kl == 3) return !memcmp(k, "uid", 3) ? 0 : !memcmp(k, "nsp", 3) ? 1 : -1;
  if (kl == 4) return !memcmp(k, "type", 4) ? 2 : !memcmp(k, "data", 4) ? 3 : -1;
  return -1;
}

/* Is there a NUL in s[0..n)? (The fields are short: a loop beats a call.) */
static bool has_nul(const char *s, size_t n) {
  if (n > 32) return memchr(s, 0, n) != NULL;
  for (size_t i = 0; i < n; i++)
    if (!s[i]) return true;
  return false;
}

/* sl_cl_decode: see cluster_codec.h. */
int sl_cl_decode(const char *const *f, const size_t *fl, size_t nf, sl_cl_entry *e) {
  memset(e, 0, sizeof *e);
  e->type = -1;
  fspan uid = {0}, nsp = {0}, data = {0};
  int r = SL_CL_MALFORMED;
  for (size_t i = 0; i + 1 < nf && !(nf % 2); i += 2) {
    const char *k = f[i], *v = f[i + 1];
    size_t kl = fl[i], vl = fl[i + 1];
    int which = name_of(k, kl); /* 0 uid, 1 nsp, 2 type, 3 data, -1 another */
    if ((which < 0 && has_nul(k, kl)) || (which != 3 && has_nul(v, vl)))
      goto out; /* NUL inside a name or a text field */
    if (which == 2) {
      int t = 0;
      if (!vl || vl > 6) goto out;
      for (size_t j = 0; j < vl; j++) {
        if (v[j] < '0' || v[j] > '9') goto out;
        t = t * 10 + (v[j] - '0');
      }
      e->type = t;
    } else if (which >= 0) {
      fspan *to = which == 0 ? &uid : which == 1 ? &nsp : &data;
      to->p = v;
      to->n = vl;
    }
  }
  if (nf % 2 || !uid.p || !nsp.p || e->type < 0) goto out;
  r = e->type == 3 && data.p ? data_decode(data.p, data.n, &nsp, &uid, e) : SL_CL_OTHER_TYPE;
  if (e->blk) return r; /* the scan's block: uid and nsp in it */
  if (r != SL_CL_OK) {  /* what the tree left before its error goes */
    int t = e->type;
    sl_cl_entry_free(e);
    e->type = t;
  }
out:
  if (uid.p) e->uid = sl_xstrndup(uid.p, uid.n);
  if (nsp.p) e->nsp = sl_xstrndup(nsp.p, nsp.n);
  return r;
}

static void free_list(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* sl_cl_entry_free: see cluster_codec.h. */
void sl_cl_entry_free(sl_cl_entry *e) {
  if (e->blk) {
    free(e->blk);
  } else {
    free(e->uid);
    free(e->nsp);
    free(e->topic);
    free(e->payload);
    free_list(e->rooms, e->nrooms);
    free_list(e->except, e->nexcept);
    free(e->key);
    free(e->msgid);
    free(e->snapshot);
  }
  memset(e, 0, sizeof *e);
}

static void id_parse(const char *s, uint64_t *ms, uint64_t *seq) {
  char *end;
  *ms = *seq = 0;
  if (!s) return;
  unsigned long long a = strtoull(s, &end, 10);
  if (end == s || *end != '-') return;
  const char *q = end + 1;
  unsigned long long b = strtoull(q, &end, 10);
  if (end == q || *end) return;
  *ms = a;
  *seq = b;
}

/* sl_cl_id_cmp: see cluster_codec.h. */
int sl_cl_id_cmp(const char *a, const char *b) {
  uint64_t am, as, bm, bs;
  id_parse(a, &am, &as);
  id_parse(b, &bm, &bs);
  if (am != bm) return am < bm ? -1 : 1;
  if (as != bs) return as < bs ? -1 : 1;
  return 0;
}
