/* cluster_scan.c - the data JSON of a BROADCAST stream entry in one pass of the strict
 * scanner (sl_jscan.h), without a tree (cluster_scan.h). cJSON's reading is the contract: the
 * differential tests (spec/unit/test_cluster_codec.c, spec/fuzz/fuzz_cluster.c) hold this
 * pass to the cJSON decoder it replaced, field for field. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cluster_scan.h"
#include "sl_jscan.h"
#include "sl_util.h"

/* cJSON 1.7.15 reads at most 63 characters of a number and then fails on the rest: a longer
 * number is one more text the scanner leaves to it. */
#define CJ_NUM_MAX 63
#define KEY(k, kl, lit) ((kl) == sizeof(lit) - 1 && !memcmp((k), (lit), sizeof(lit) - 1))

typedef struct js_span {
  const char *p; /* NULL: absent */
  size_t n;
  bool esc; /* a string with escapes */
} js_span;

/* The members of opts.flags.sluice. */
enum { M_S, M_D, M_K, M_ID, M_SNAP, M_N };

/* What one pass over the data JSON found; of duplicate members the first counts, as
 * cJSON_GetObjectItemCaseSensitive finds it (a seen flag per member, whatever its type). */
typedef struct scan {
  bool request_id, packet_seen, opts_seen, type_seen, data_seen;
  bool packet_obj, opts_obj, data_ok; /* data_ok: an array starting with a string */
  js_span type;                       /* a number's text (p NULL: another value) */
  js_span topic, payload;             /* topic: the string's body; payload: a value's text */
  bool rooms_seen, except_seen, rooms_bad, except_bad;
  const char *rooms, *except; /* the arrays, at '[' */
  size_t nrooms, nexcept, rooms_bytes, except_bytes;
  bool flags_seen, volatile_seen, is_volatile, sluice_seen, sluice;
  bool meta_seen[M_N];
  js_span meta[M_N]; /* M_S, M_D: a number's text (M_D "true" too); M_K, M_ID: string
                      * bodies; M_SNAP: any value's text */
} scan;

/* A value whose every part cJSON reads as the scanner does (numbers: see CJ_NUM_MAX). */
static const char *skip(const char *p, const char *e, int depth) {
  return sl_js_value_n(p, e, depth, CJ_NUM_MAX);
}

/* A string value at p: its body into *s; returns its end. */
static const char *str_skip(const char *p, const char *e, js_span *s) {
  const char *q = sl_js_string(p, e, &s->esc);
  if (q) {
    s->p = p + 1;
    s->n = (size_t)(q - p - 2);
  }
  return q;
}

/* The members of an object, one at a time. */
typedef struct js_obj {
  const char *p, *e; /* after '{', or after the last value read */
  bool more;         /* a member was read: a ',' or '}' comes next */
} js_obj;

/* The next member: 1 with its name in [*k, *k + *kl) and it->p at its value, 0 after the
 * closing brace (it->p past it), -1 for text the scanner refuses or a name with escapes (it
 * may be a member the decoder looks for, written differently: cJSON's turn). */
static int obj_next(js_obj *it, const char **k, size_t *kl) {
  const char *p = sl_js_ws(it->p, it->e), *e = it->e, *q;
  bool esc;
  if (p >= e) return -1;
  if (*p == '}') {
    it->p = p + 1;
    return 0;
  }
  if (it->more) {
    if (*p != ',') return -1;
    p = sl_js_ws(p + 1, e);
  }
  it->more = true;
  if (p >= e || *p != '"' || !(q = sl_js_string(p, e, &esc)) || esc) return -1;
  *k = p + 1;
  *kl = (size_t)(q - p - 2);
  q = sl_js_ws(q, e);
  if (q >= e || *q != ':') return -1;
  it->p = sl_js_ws(q + 1, e);
  return 1;
}

/* opts.rooms / opts.except at p: is it an array of at most SL_CL_MAX_ROOMS strings (*bad when
 * not), their count and the bytes their copies take. */
static const char *list_scan(const char *p, const char *e, bool *bad, size_t *n, size_t *bytes) {
  if (p >= e || *p != '[') {
    *bad = true;
    return skip(p, e, 2);
  }
  p = sl_js_ws(p + 1, e);
  if (p < e && *p == ']') return p + 1;
  for (;;) {
    js_span s;
    const char *q = p < e && *p == '"' ? str_skip(p, e, &s) : NULL;
    if (q) {
      *bytes += s.n + 1;
    } else {
      *bad = true;
      if (!(q = skip(p, e, 3))) return NULL;
    }
    if (++*n > SL_CL_MAX_ROOMS) *bad = true;
    p = sl_js_ws(q, e);
    if (p >= e) return NULL;
    if (*p == ']') return p + 1;
    if (*p != ',') return NULL;
    p = sl_js_ws(p + 1, e);
  }
}

static bool num_start(char c) { return c == '-' || (c >= '0' && c <= '9'); }

/* opts.flags.sluice at p (an object). */
static const char *sluice_scan(const char *p, const char *e, scan *s) {
  js_obj it = {p + 1, e, false};
  const char *k, *q;
  size_t kl;
  int r;
  while ((r = obj_next(&it, &k, &kl)) == 1) {
    p = it.p;
    int m = KEY(k, kl, "s")      ? M_S
            : KEY(k, kl, "d")    ? M_D
            : KEY(k, kl, "k")    ? M_K
            : KEY(k, kl, "id")   ? M_ID
            : KEY(k, kl, "snap") ? M_SNAP
                                 : -1;
    if (m < 0 || s->meta_seen[m]) {
      q = skip(p, e, 4);
    } else if ((m == M_K || m == M_ID) && p < e && *p == '"') {
      s->meta_seen[m] = true;
      q = str_skip(p, e, &s->meta[m]);
    } else {
      s->meta_seen[m] = true;
      if ((q = skip(p, e, 4)) &&
          (m == M_SNAP || ((m == M_S || m == M_D) && num_start(*p)) || (m == M_D && *p == 't'))) {
        s->meta[m].p = p;
        s->meta[m].n = (size_t)(q - p);
      }
    }
    if (!q) return NULL;
    it.p = q;
  }
  return r ? NULL : it.p;
}

/* opts.flags at p. */
static const char *flags_scan(const char *p, const char *e, scan *s) {
  if (p >= e || *p != '{') return skip(p, e, 2);
  js_obj it = {p + 1, e, false};
  const char *k, *q;
  size_t kl;
  int r;
  while ((r = obj_next(&it, &k, &kl)) == 1) {
    p = it.p;
    if (KEY(k, kl, "volatile") && !s->volatile_seen) {
      s->volatile_seen = true;
      s->is_volatile = p < e && *p == 't';
      q = skip(p, e, 3);
    } else if (KEY(k, kl, "sluice") && !s->sluice_seen) {
      s->sluice_seen = true;
      s->sluice = p < e && *p == '{';
      q = s->sluice ? sluice_scan(p, e, s) : skip(p, e, 3);
    } else {
      q = skip(p, e, 3);
    }
    if (!q) return NULL;
    it.p = q;
  }
  return r ? NULL : it.p;
}

/* opts at p (an object). */
static const char *opts_scan(const char *p, const char *e, scan *s) {
  js_obj it = {p + 1, e, false};
  const char *k, *q;
  size_t kl;
  int r;
  while ((r = obj_next(&it, &k, &kl)) == 1) {
    p = it.p;
    if (KEY(k, kl, "rooms") && !s->rooms_seen) {
      s->rooms_seen = true;
      s->rooms = p;
      q = list_scan(p, e, &s->rooms_bad, &s->nrooms, &s->rooms_bytes);
    } else if (KEY(k, kl, "except") && !s->except_seen) {
      s->except_seen = true;
      s->except = p;
      q = list_scan(p, e, &s->except_bad, &s->nexcept, &s->except_bytes);
    } else if (KEY(k, kl, "flags") && !s->flags_seen) {
      s->flags_seen = true;
      q = flags_scan(p, e, s);
    } else {
      q = skip(p, e, 2);
    }
    if (!q) return NULL;
    it.p = q;
  }
  return r ? NULL : it.p;
}

/* packet.data at p: the topic (the first element when a string) and the payload (the
 * second's text). */
static const char *data_scan(const char *p, const char *e, scan *s) {
  if (p >= e || *p != '[') return skip(p, e, 2);
  p = sl_js_ws(p + 1, e);
  if (p < e && *p == ']') return p + 1;
  for (int i = 0;; i++) {
    const char *q;
    if (i == 0 && p < e && *p == '"') {
      q = str_skip(p, e, &s->topic);
      s->data_ok = true;
    } else {
      q = skip(p, e, 3);
    }
    if (!q) return NULL;
    if (i == 1) {
      s->payload.p = p;
      s->payload.n = (size_t)(q - p);
    }
    p = sl_js_ws(q, e);
    if (p >= e) return NULL;
    if (*p == ']') return p + 1;
    if (*p != ',') return NULL;
    p = sl_js_ws(p + 1, e);
  }
}

/* packet at p (an object). */
static const char *packet_scan(const char *p, const char *e, scan *s) {
  js_obj it = {p + 1, e, false};
  const char *k, *q;
  size_t kl;
  int r;
  while ((r = obj_next(&it, &k, &kl)) == 1) {
    p = it.p;
    if (KEY(k, kl, "type") && !s->type_seen) {
      s->type_seen = true;
      q = skip(p, e, 2);
      if (q && num_start(*p)) {
        s->type.p = p;
        s->type.n = (size_t)(q - p);
      }
    } else if (KEY(k, kl, "data") && !s->data_seen) {
      s->data_seen = true;
      q = data_scan(p, e, s);
    } else {
      q = skip(p, e, 2);
    }
    if (!q) return NULL;
    it.p = q;
  }
  return r ? NULL : it.p;
}

/* The whole data JSON json[0..len): false when the scanner cannot judge it as cJSON would
 * (invalid for the scanner, an escaped member name where the decoder looks, text after the
 * value, which cJSON ignores). */
static bool root_scan(const char *json, size_t len, scan *s) {
  const char *e = json + len, *p = sl_js_ws(json, e), *k, *q;
  size_t kl;
  int r;
  if (p >= e || *p != '{') return false;
  js_obj it = {p + 1, e, false};
  while ((r = obj_next(&it, &k, &kl)) == 1) {
    p = it.p;
    bool obj = p < e && *p == '{';
    if (KEY(k, kl, "packet") && !s->packet_seen) {
      s->packet_seen = true;
      s->packet_obj = obj;
      q = obj ? packet_scan(p, e, s) : skip(p, e, 1);
    } else if (KEY(k, kl, "opts") && !s->opts_seen) {
      s->opts_seen = true;
      s->opts_obj = obj;
      q = obj ? opts_scan(p, e, s) : skip(p, e, 1);
    } else {
      if (KEY(k, kl, "requestId")) s->request_id = true;
      q = skip(p, e, 1);
    }
    if (!q) return false;
    it.p = q;
  }
  return r == 0 && sl_js_ws(it.p, e) == e;
}

/* The value of a number's text (as cJSON's strtod reads it). */
static double num_value(const js_span *s) {
  char buf[CJ_NUM_MAX + 1];
  if (s->n <= 15) { /* plain digits: exact (below 2^53) */
    uint64_t v = 0;
    size_t i = 0;
    while (i < s->n && s->p[i] >= '0' && s->p[i] <= '9') v = v * 10 + (uint64_t)(s->p[i++] - '0');
    if (i == s->n) return (double)v;
  }
  memcpy(buf, s->p, s->n);
  buf[s->n] = 0;
  return strtod(buf, NULL);
}

/* Write the code point c as UTF-8 at o (as cJSON does); returns the bytes written. */
static size_t utf8_put(char *o, unsigned c) {
  if (c < 0x80) {
    o[0] = (char)c;
    return 1;
  }
  if (c < 0x800) {
    o[0] = (char)(0xC0 | c >> 6);
    o[1] = (char)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    o[0] = (char)(0xE0 | c >> 12);
    o[1] = (char)(0x80 | (c >> 6 & 0x3F));
    o[2] = (char)(0x80 | (c & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | c >> 18);
  o[1] = (char)(0x80 | (c >> 12 & 0x3F));
  o[2] = (char)(0x80 | (c >> 6 & 0x3F));
  o[3] = (char)(0x80 | (c & 0x3F));
  return 4;
}

/* Copy the body of a string the scanner accepted to o (room for s->n + 1 bytes), unescaped
 * and NUL-terminated; returns its length up to the first NUL (where cJSON's copy ends). */
static size_t unescape(char *o, const js_span *s) {
  if (!s->esc) {
    memcpy(o, s->p, s->n);
    o[s->n] = 0;
    return s->n;
  }
  char *start = o;
  for (const char *p = s->p, *e = s->p + s->n; p < e;) {
    const char *r = sl_js_run_end(p, e);
    memcpy(o, p, (size_t)(r - p));
    o += r - p;
    if ((p = r) >= e) break;
    char c = p[1]; /* p at '\\' */
    p += 2;
    switch (c) {
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      unsigned u = (unsigned)sl_js_hex4(p);
      p += 4;
      if (u >= 0xD800 && u <= 0xDBFF) { /* the scanner saw its low half */
        u = 0x10000 + (((u & 0x3FF) << 10) | ((unsigned)sl_js_hex4(p + 2) & 0x3FF));
        p += 6;
      }
      o += utf8_put(o, u);
      break;
    }
    default: *o++ = c; /* '"', '\\', '/' */
    }
  }
  *o = 0;
  return strlen(start);
}

/* Is the value text [p, e) (valid JSON) exactly what sl_json_print writes for it: no
 * whitespace, no escapes, only integers of at most 15 digits and no "-0"? */
static bool printed_form(const char *p, const char *e) {
  while (p < e) {
    char c = *p;
    if (c == '"') {
      p = sl_js_run_end(p + 1, e);
      if (p >= e || *p != '"') return false;
      p++;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      const char *d = p + (c == '-'), *q = d;
      while (q < e && *q >= '0' && *q <= '9') q++;
      if (q - d > 15 || (*d == '0' && c == '-') || (q < e && (*q == '.' || *q == 'e' || *q == 'E')))
        return false;
      p = q;
    } else if (sl_js_isws[(unsigned char)c]) {
      return false;
    } else {
      p++;
    }
  }
  return true;
}

/* A list's strings from the array at p (scanned already) into v, their bytes from *o on. */
static void list_copy(const char *p, const char *e, char **v, size_t n, char **o) {
  for (size_t i = 0; i < n; i++) {
    js_span s;
    p = str_skip(sl_js_ws(p + 1, e), e, &s); /* p at '[' or ',' */
    v[i] = *o;
    unescape(*o, &s);
    *o += s.n + 1;
    p = sl_js_ws(p, e);
  }
}

/* The verdict on a scan, in tree_data's order: SL_CL_OK or why the entry is skipped. */
static int scan_verdict(const scan *s) {
  if (s->request_id) return SL_CL_WITH_ACK;
  if (!s->packet_obj || (s->opts_seen && !s->opts_obj) || !s->type.p) return SL_CL_MALFORMED;
  double t = num_value(&s->type);
  if (t == 5) return SL_CL_BINARY;
  if (t != 2) return SL_CL_OTHER_TYPE;
  if (!s->data_ok || s->rooms_bad || s->except_bad) return SL_CL_MALFORMED;
  return SL_CL_OK;
}

/* The snapshot (opts.flags.sluice.snap, not null) as sl_json_print writes it: the text as
 * written when that is its printed form (*tmp NULL), else printed from a cJSON tree of it
 * (*tmp that text, malloc'd). */
static const char *snap_text(const js_span *v, size_t *n, char **tmp) {
  *tmp = NULL;
  if (printed_form(v->p, v->p + v->n)) {
    *n = v->n;
    return v->p;
  }
  char *copy = sl_xstrndup(v->p, v->n);
  cJSON *t = cJSON_ParseWithLength(copy, v->n);
  *tmp = sl_json_print(t);
  cJSON_Delete(t);
  free(copy);
  *n = *tmp ? strlen(*tmp) : 0;
  return *tmp;
}

/* An entry the scan s of json (ending at end) accepted into e: every string in one block. */
static void scan_build(sl_cl_entry *e, const scan *s, const char *end, const js_span *uid,
                       const js_span *nsp) {
  const js_span *k = &s->meta[M_K], *id = &s->meta[M_ID], *snap = &s->meta[M_SNAP];
  bool has_k = s->sluice && k->p, has_id = s->sluice && id->p;
  bool snap_set = s->sluice && s->meta_seen[M_SNAP];
  char *tmp = NULL;
  size_t sn = 0, pn = s->payload.p ? s->payload.n : 4;
  const char *st = snap_set && !(snap->n == 4 && !memcmp(snap->p, "null", 4))
                       ? snap_text(snap, &sn, &tmp)
                       : NULL;
  size_t nr = s->nrooms, nx = s->nexcept;
  size_t size = (nr + nx) * sizeof(char *) + uid->n + nsp->n + s->topic.n + pn + 4 +
                s->rooms_bytes + s->except_bytes + (has_k ? k->n + 1 : 0) +
                (has_id ? id->n + 1 : 0) + (st ? sn + 1 : 0);
  char **v = sl_xmalloc(size), *o = (char *)(v + nr + nx);
  e->blk = v;
  if (nr) list_copy(s->rooms, end, e->rooms = v, e->nrooms = nr, &o);
  if (nx) list_copy(s->except, end, e->except = v + nr, e->nexcept = nx, &o);
  e->uid = memcpy(o, uid->p, uid->n);
  o += uid->n;
  *o++ = 0;
  e->nsp = memcpy(o, nsp->p, nsp->n);
  o += nsp->n;
  *o++ = 0;
  e->topiclen = unescape(e->topic = o, &s->topic);
  o += s->topic.n + 1;
  e->payload = memcpy(o, s->payload.p ? s->payload.p : "null", pn);
  o[e->len = pn] = 0;
  o += pn + 1;
  e->is_volatile = s->is_volatile;
  if ((e->sluice = s->sluice)) {
    const js_span *sq = &s->meta[M_S], *d = &s->meta[M_D];
    double x = sq->p ? num_value(sq) : -1;
    if (x >= 0 && x < 9007199254740992.0) e->seq = (uint64_t)x;
    e->delivered = d->p && (*d->p == 't' || num_value(d) == 1);
    if (has_k) {
      unescape(e->key = o, k);
      o += k->n + 1;
    }
    if (has_id && unescape(o, id) < 48) e->msgid = o;
    o += has_id ? id->n + 1 : 0;
    if ((e->snapshot_set = snap_set) && st) {
      e->snapshot = memcpy(o, st, sn);
      o[e->snapshot_len = sn] = 0;
    }
  }
  free(tmp);
}

/* sl_cl_scan: see cluster_scan.h. */
int sl_cl_scan(const char *json, size_t len, const char *uid, size_t ul, const char *nsp, size_t nl,
               sl_cl_entry *e) {
  scan s;
  memset(&s, 0, sizeof s);
  if (!root_scan(json, len, &s)) return SL_CL_SCAN_DECLINED;
  int r = scan_verdict(&s);
  if (r == SL_CL_OK) {
    js_span u = {uid, ul, false}, n = {nsp, nl, false};
    scan_build(e, &s, json + len, &u, &n);
  }
  return r;
}
