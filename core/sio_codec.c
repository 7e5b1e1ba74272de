/* sio_codec.c - Engine.IO v4 / Socket.IO v5 packet codec (see sio_codec.h).
 *
 * Everything here parses bytes a client controls: every index is checked against len
 * before it is read, nothing relies on NUL termination, and no function allocates except
 * sl_sio_parse_json (whose tree the caller owns) and sl_sio_count_placeholders for a very large
 * attachment count (freed before returning). */
#include "sio_codec.h"
#include "sl_jscan.h"
#include "sl_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Engine.IO ------------------------------------------------------------------------- */

/* sl_eio_parse_text: see sio_codec.h. The base64 body of a "b..." record is decoded over the
 * record itself: output (3 bytes per 4 chars) always trails input by at least one byte, so
 * decoding in place never clobbers unread input. */
int sl_eio_parse_text(uint8_t *buf, size_t len, eio_packet *out) {
  if (!buf || len == 0) return -1;
  if (buf[0] == 'b') {
    long n = sl_b64_decode((const char *)buf + 1, len - 1, buf);
    if (n < 0) return -1;
    out->type = EIO_MESSAGE;
    out->binary = true;
    out->data = buf;
    out->len = (size_t)n;
    return 0;
  }
  if (buf[0] < '0' || buf[0] > '6') return -1;
  out->type = buf[0] - '0';
  out->binary = false;
  out->data = buf + 1;
  out->len = len - 1;
  return 0;
}

/* sl_eio_payload_next: see sio_codec.h. Mirrors String.split("\x1e") in the reference: a body
 * of n separators yields n + 1 records, so "" yields one empty record and a trailing
 * separator yields a final empty one. *pos == len + 1 marks the end. */
int sl_eio_payload_next(const uint8_t *body, size_t len, size_t *pos, const uint8_t **rec,
                        size_t *reclen) {
  size_t start = *pos;
  if (start > len) return 0;
  if (!body) { /* only meaningful with len == 0; avoid arithmetic on NULL */
    *rec = body;
    *reclen = 0;
    *pos = len + 1;
    return 1;
  }
  const uint8_t *sep = start < len ? memchr(body + start, 0x1e, len - start) : NULL;
  size_t end = sep ? (size_t)(sep - body) : len;
  *rec = body + start;
  *reclen = end - start;
  *pos = sep ? end + 1 : len + 1;
  return 1;
}

/* sl_utf8_valid: see sio_codec.h. The ASCII run is the common case and is skipped a byte at
 * a time; anything else is one sl_utf8_seq_len (util.c). */
bool sl_utf8_valid(const uint8_t *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t n = sl_utf8_seq_len(s + i, len - i);
    if (!n) return false;
    i += n;
  }
  return true;
}

/* ---- Socket.IO: header ----------------------------------------------------------------- */

/* ASCII digits only: unlike the reference's Number(c) == c, a space is not a digit. */
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* sl_sio_parse: see sio_codec.h. Grammar, following socket.io-parser's decodeString:
 *   type      one char '0'..'6'
 *   "n-"      only for BINARY_EVENT / BINARY_ACK, and mandatory there: 1..10 attachments,
 *             decimal, leading zeros allowed (the reference compares Number(buf) == buf)
 *   nsp       only if the next char is '/': everything up to the first ',' (consumed) or the
 *             end of the text, at most SIO_MAX_NSP bytes
 *   ack id    the run of ASCII digits that follows; must fit in int64
 *   json      the rest, unchecked here (see sl_sio_parse_json)
 * The reference also treats a space as a digit (Number(" ") == 0); we do not. */
int sl_sio_parse(const char *text, size_t len, sio_packet *out) {
  size_t i = 0;
  sio_packet p;

  if (!text || len == 0) return -1;
  if (text[0] < '0' || text[0] > '6') return -1;
  p.type = text[0] - '0';
  p.attachments = 0;
  p.nsp = "/";
  p.nsplen = 1;
  p.ack_id = -1;
  i = 1;

  if (p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK) {
    size_t start = i;
    long n = 0;
    while (i < len && is_digit(text[i])) {
      n = n * 10 + (text[i] - '0');
      if (n > SIO_MAX_ATTACHMENTS) return -1; /* also stops overflow on long digit runs */
      i++;
    }
    if (i == start || i >= len || text[i] != '-') return -1;
    if (n < 1) return -1;
    p.attachments = (int)n;
    i++; /* '-' */
  }

  if (i < len && text[i] == '/') {
    size_t start = i;
    const char *comma = memchr(text + i, ',', len - i);
    size_t end = comma ? (size_t)(comma - text) : len;
    if (end - start > SIO_MAX_NSP) return -1;
    p.nsp = text + start;
    p.nsplen = end - start;
    i = comma ? end + 1 : len;
  }

  if (i < len && is_digit(text[i])) {
    int64_t id = 0;
    while (i < len && is_digit(text[i])) {
      int d = text[i] - '0';
      if (id > (INT64_MAX - d) / 10) return -1;
      id = id * 10 + d;
      i++;
    }
    p.ack_id = id;
  }

  p.json = text + i;
  p.jsonlen = len - i;
  *out = p;
  return 0;
}

/* ---- Socket.IO: payload ---------------------------------------------------------------- */

/* sl_sio_parse_json: see sio_codec.h. cJSON_ParseWithLength alone would accept trailing bytes
 * after the first value ("[1]x"), which JSON.parse in the reference rejects, so the parse
 * end is checked against len (only JSON whitespace may follow). */
int sl_sio_parse_json(const char *json, size_t len, struct cJSON **out) {
  const char *end = NULL;
  *out = NULL;
  if (len == 0) return 0;
  if (!json) return -1;
  cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
  if (!root) return -1;
  /* JSON.parse in the reference refuses a leading zero ("01"), and so does every scanner
   * of ours; cJSON reads it as 1. */
  if (sl_js_leading_zero(json, len)) {
    cJSON_Delete(root);
    return -1;
  }
  size_t used = end ? (size_t)(end - json) : len;
  if (used > len) used = len;
  for (; used < len; used++) {
    char c = json[used];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      cJSON_Delete(root);
      return -1;
    }
  }
  *out = root;
  return 0;
}

static const char *const reserved_events[] = {
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

/* sl_sio_is_reserved_event: see sio_codec.h. NULL is not reserved. Case-sensitive, as in the
 * reference (which uses Array.indexOf). */
bool sl_sio_is_reserved_event(const char *name) {
  if (!name) return false;
  for (size_t i = 0; i < sizeof reserved_events / sizeof reserved_events[0]; i++)
    if (strcmp(name, reserved_events[i]) == 0) return true;
  return false;
}

/* sl_sio_validate_payload: see sio_codec.h. Stricter than the reference in one place: the
 * reference only validates a payload that is present, so it lets "42" or "43" through with
 * no data; we require the array for EVENT/ACK (no real client sends them bare). */
int sl_sio_validate_payload(int type, const struct cJSON *payload) {
  const cJSON *first;
  switch (type) {
  case SIO_CONNECT: return (!payload || cJSON_IsObject(payload)) ? 0 : -1;
  case SIO_DISCONNECT: return payload ? -1 : 0;
  case SIO_EVENT:
  case SIO_BINARY_EVENT:
    if (!payload || !cJSON_IsArray(payload)) return -1;
    first = payload->child;
    if (!first) return -1;
    if (cJSON_IsNumber(first)) return 0;
    if (cJSON_IsString(first) && first->valuestring &&
        !sl_sio_is_reserved_event(first->valuestring))
      return 0;
    return -1;
  case SIO_ACK:
  case SIO_BINARY_ACK: return (payload && cJSON_IsArray(payload)) ? 0 : -1;
  case SIO_CONNECT_ERROR:
    return (payload && (cJSON_IsObject(payload) || cJSON_IsString(payload))) ? 0 : -1;
  default: return -1;
  }
}

/* The member `key` of object o, taking the LAST one when a key repeats: JSON.parse keeps
 * the last duplicate, cJSON's own lookup returns the first. A placeholder hidden behind a
 * duplicate key must be seen the way clients will see it. */
static const cJSON *obj_get_last(const cJSON *o, const char *key) {
  const cJSON *found = NULL;
  for (const cJSON *c = o->child; c; c = c->next)
    if (c->string && strcmp(c->string, key) == 0) found = c;
  return found;
}

/* cJSON's parser stops at CJSON_NESTING_LIMIT (1000); trees built in code could be deeper,
 * so the recursive walk has its own bound instead of trusting the stack. */
#define PLACEHOLDER_MAX_DEPTH 1100

typedef struct ph_walk {
  int natts;
  int count;
  uint8_t *seen; /* natts bytes: 1 when that num was already used */
} ph_walk;

/* Depth-first visit of node; -1 at the first bad placeholder or past the depth bound. */
static int ph_visit(ph_walk *w, const cJSON *node, int depth) {
  if (depth > PLACEHOLDER_MAX_DEPTH) return -1;
  if (cJSON_IsObject(node)) {
    const cJSON *flag = obj_get_last(node, "_placeholder");
    if (flag && cJSON_IsTrue(flag)) {
      /* As in the reference, an object flagged as a placeholder is replaced whole: its
       * other members are not walked, and an unusable num is an error, not plain data. */
      const cJSON *num = obj_get_last(node, "num");
      if (!num || !cJSON_IsNumber(num)) return -1;
      double v = num->valuedouble;
      if (!isfinite(v) || v < 0 || v >= (double)w->natts) return -1;
      int k = (int)v;                /* in range now, so the conversion is defined */
      if ((double)k != v) return -1; /* 0.5 is not an index */
      if (w->seen[k]) return -1;
      w->seen[k] = 1;
      w->count++;
      return 0;
    }
  }
  if (cJSON_IsObject(node) || cJSON_IsArray(node)) {
    for (const cJSON *c = node->child; c; c = c->next)
      if (ph_visit(w, c, depth + 1) < 0) return -1;
  }
  return 0;
}

/* sl_sio_count_placeholders: see sio_codec.h. natts < 0 is treated as 0 (every placeholder is
 * then out of range). Allocates only when natts exceeds the stack bitmap. */
int sl_sio_count_placeholders(const struct cJSON *node, int natts) {
  uint8_t small[SIO_MAX_ATTACHMENTS * 4];
  ph_walk w;
  int rc;

  if (!node) return 0;
  w.natts = natts < 0 ? 0 : natts;
  w.count = 0;
  if ((size_t)w.natts <= sizeof small) {
    w.seen = small;
    memset(small, 0, sizeof small);
  } else {
    w.seen = calloc((size_t)w.natts, 1);
    if (!w.seen) return -1;
  }
  rc = ph_visit(&w, node, 0);
  if (w.seen != small) free(w.seen);
  return rc < 0 ? -1 : w.count;
}

/* ---- Socket.IO: encoding --------------------------------------------------------------- */

/* sl_sio_encode_header: see sio_codec.h. Refuses (returns 0) what it cannot encode so that the
 * receiver parses back exactly the same fields: a type outside 0..6, a namespace longer
 * than SIO_MAX_NSP, one not starting with '/', or one containing ',' (it would end the
 * namespace early on the other side). A valid header is never empty, so 0 is unambiguous. */
size_t sl_sio_encode_header(char *out, int type, int attachments, const char *nsp, size_t nsplen,
                            int64_t ack_id) {
  size_t o = 0;
  if (type < SIO_CONNECT || type > SIO_BINARY_ACK) return 0;
  if (nsp && nsplen > 0 && !(nsplen == 1 && nsp[0] == '/')) {
    if (nsplen > SIO_MAX_NSP || nsp[0] != '/' || memchr(nsp, ',', nsplen)) return 0;
  } else {
    nsp = NULL;
  }
  out[o++] = (char)('0' + type);
  if (attachments > 0) {
    o += sl_u64_dec(out + o, (uint64_t)attachments);
    out[o++] = '-';
  }
  if (nsp) {
    memcpy(out + o, nsp, nsplen);
    o += nsplen;
    out[o++] = ',';
  }
  if (ack_id >= 0) o += sl_u64_dec(out + o, (uint64_t)ack_id);
  return o;
}

/* ---- WebSocket ------------------------------------------------------------------------- */

/* sl_ws_frame_header: see sio_codec.h. RFC 6455 5.2: 7-bit length up to 125, 126 + 16-bit
 * length up to 65535, else 127 + 64-bit length (network order, top bit zero). Returns 0 for
 * an opcode outside 0..15 or n >= 2^63, which no valid frame can carry. */
size_t sl_ws_frame_header(uint8_t *out, int opcode, uint64_t n) {
  if (opcode < 0 || opcode > 0x0f || n > (uint64_t)INT64_MAX) return 0;
  out[0] = (uint8_t)(0x80 | opcode);
  if (n <= 125) {
    out[1] = (uint8_t)n;
    return 2;
  }
  if (n <= 0xffff) {
    out[1] = 126;
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(n >> (56 - 8 * i));
  return 10;
}

/* ---- a fan-out delivery ------------------------------------------------------------------ */

#define DELIVERY_META_MAX 511 /* metadata longer than this is cut (as snprintf into 512 did) */

static bool delivery_root(const sl_sio_delivery *d) {
  return !d->nsp || d->nsplen == 0 || (d->nsplen == 1 && d->nsp[0] == '/');
}

/* ,{"namespace":<nsp_json>,"topic":<topic_json>,"messageId":"<msgid>","ackRequired":true} */
static size_t delivery_meta_len(const sl_sio_delivery *d) {
  if (!d->msgid) return 0;
  size_t n = sizeof ",{\"namespace\":" - 1 + strlen(d->nsp_json) + sizeof ",\"topic\":" - 1 +
             strlen(d->topic_json) + sizeof ",\"messageId\":\"" - 1 + strlen(d->msgid) +
             sizeof "\",\"ackRequired\":true}" - 1;
  return n > DELIVERY_META_MAX ? DELIVERY_META_MAX : n;
}

/* sl_sio_delivery_len: see sio_codec.h. */
size_t sl_sio_delivery_len(const sl_sio_delivery *d) {
  return 2 + (delivery_root(d) ? 0 : d->nsplen + 1) + 1 + strlen(d->topic_json) + 1 + d->len +
         delivery_meta_len(d) + (d->offset ? d->offlen + 3 : 0) + 1;
}

/* sl_sio_encode_delivery: see sio_codec.h. Once per publish, not per recipient. */
size_t sl_sio_encode_delivery(uint8_t *out, const sl_sio_delivery *d) {
  uint8_t *p = out;
  *p++ = '4';
  *p++ = '2';
  if (!delivery_root(d)) {
    memcpy(p, d->nsp, d->nsplen);
    p += d->nsplen;
    *p++ = ',';
  }
  *p++ = '[';
  size_t tl = strlen(d->topic_json);
  memcpy(p, d->topic_json, tl);
  p += tl;
  *p++ = ',';
  memcpy(p, d->payload, d->len);
  p += d->len;
  if (d->msgid) {
    char meta[DELIVERY_META_MAX + 1];
    int ml = snprintf(meta, sizeof meta,
                      ",{\"namespace\":%s,\"topic\":%s,\"messageId\":\"%s\",\"ackRequired\":true}",
                      d->nsp_json, d->topic_json, d->msgid);
    if (ml >= (int)sizeof meta) ml = (int)sizeof meta - 1;
    if (ml > 0) {
      memcpy(p, meta, (size_t)ml);
      p += ml;
    }
  }
  if (d->offset) {
    *p++ = ',';
    *p++ = '"';
    memcpy(p, d->offset, d->offlen);
    p += d->offlen;
    *p++ = '"';
  }
  *p++ = ']';
  return (size_t)(p - out);
}
