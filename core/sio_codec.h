/* sio_codec.h - Engine.IO v4 / Socket.IO v5 packet codec. Pure functions, no I/O.
 *
 * Parsing treats every byte as hostile: bounds-checked, never reads past len, never
 * allocates on the failure path without freeing. See shared/PROTOCOL.md 2.3, 2.5, 3.1. */
#ifndef SIO_CODEC_H
#define SIO_CODEC_H

#include <stddef.h>
#include "sl_util.h"
#include <stdint.h>
#include <stdbool.h>

/* ---- Engine.IO ---------------------------------------------------------------------- */
enum {
  EIO_OPEN = 0,
  EIO_CLOSE = 1,
  EIO_PING = 2,
  EIO_PONG = 3,
  EIO_MESSAGE = 4,
  EIO_UPGRADE = 5,
  EIO_NOOP = 6
};

/* One Engine.IO packet as a view into the caller's buffer. */
typedef struct eio_packet {
  int type;            /* EIO_* */
  bool binary;         /* payload is binary (WS binary frame, or polling "b<base64>") */
  const uint8_t *data; /* payload after the type char (text) or raw bytes (binary) */
  size_t len;
} eio_packet;

/* sl_eio_parse_text: parse a text WS frame / polling record "<type><data>". A record starting
 * with 'b' is base64 binary: it is decoded IN PLACE into buf (buf must be writable; on
 * failure its contents are unspecified) and the packet is EIO_MESSAGE with binary=true and
 * data == buf ("b" alone is a valid empty binary message). out->data points into buf.
 * Returns 0 or -1 (empty, unknown type, bad base64); *out is untouched on -1. */
SL_WUR int sl_eio_parse_text(uint8_t *buf, size_t len, eio_packet *out);

/* sl_eio_payload_next: iterate the records of a polling POST body separated by 0x1e.
 * *pos starts at 0; each call returns the next record [*rec, *rec+*reclen) and advances
 * *pos. Returns 1 when a record was produced, 0 at the end. Empty records are produced as
 * empty (and then fail sl_eio_parse_text). Like String.split("\x1e"), n separators give n + 1
 * records, so an empty body gives one empty record. *rec points into body. */
SL_WUR int sl_eio_payload_next(const uint8_t *body, size_t len, size_t *pos, const uint8_t **rec,
                               size_t *reclen);

/* sl_utf8_valid: true when s[0..len) is well-formed UTF-8 (no overlongs, surrogates, or
 * code points above U+10FFFF; NUL bytes allowed). The reference never handles invalid UTF-8
 * as text (Node decodes polling bodies with U+FFFD replacement; `ws` fails such a text frame
 * with 1007), and the Node client's `ws` drops the connection when it receives a text frame
 * that is not UTF-8. A gateway that forwards or echoes client bytes (event payloads,
 * namespace names in CONNECT_ERROR) must therefore reject invalid text before parsing it.
 * wslay's event API already fails invalid text WS frames (1007); polling POST bodies are
 * checked by nobody else, so run them through this. */
bool sl_utf8_valid(const uint8_t *s, size_t len);

/* ---- Socket.IO ---------------------------------------------------------------------- */
enum {
  SIO_CONNECT = 0,
  SIO_DISCONNECT = 1,
  SIO_EVENT = 2,
  SIO_ACK = 3,
  SIO_CONNECT_ERROR = 4,
  SIO_BINARY_EVENT = 5,
  SIO_BINARY_ACK = 6
};

#define SIO_MAX_ATTACHMENTS 10
#define SIO_MAX_NSP 256

/* A parsed Socket.IO packet header; data points into the caller's text. */
typedef struct sio_packet {
  int type;        /* SIO_* */
  int attachments; /* for BINARY_*: n >= 1, else 0 */
  const char *nsp; /* namespace, "/" when absent (not NUL-terminated) */
  size_t nsplen;
  int64_t ack_id;   /* -1 when absent */
  const char *json; /* the JSON payload text (may be empty: jsonlen 0) */
  size_t jsonlen;
} sio_packet;

/* sl_sio_parse: parse the text of a Socket.IO packet (the Engine.IO message payload, without
 * the leading '4'). Checks the header grammar only (type, attachments "n-" with 1<=n<=10,
 * nsp, ack id digits with no overflow). Returns 0 or -1 (*out untouched on -1). Garbage
 * after the header ("2abc[...]") is NOT rejected here: it lands in json and fails in
 * sl_sio_parse_json. Payload validity per type is checked by sl_sio_validate_payload once the
 * JSON has been parsed with sl_sio_parse_json. */
SL_WUR int sl_sio_parse(const char *text, size_t len, sio_packet *out);

struct cJSON;
/* sl_sio_parse_json: parse a packet's JSON payload (json/jsonlen from sl_sio_parse) like the
 * reference's JSON.parse: the whole text must be one JSON value, optionally followed by
 * whitespace (plain cJSON_ParseWithLength would accept "[1]garbage"). jsonlen 0 gives
 * *out = NULL and returns 0 (no payload). Otherwise returns 0 with *out a tree the caller
 * frees with cJSON_Delete, or -1 (*out = NULL) on invalid JSON or allocation failure. */
SL_WUR int sl_sio_parse_json(const char *json, size_t len, struct cJSON **out);

/* sl_sio_validate_payload: the reference parser's per-type rules (PROTOCOL.md 3.1):
 * CONNECT: absent or object; DISCONNECT: absent; EVENT/BINARY_EVENT: non-empty array whose
 * first element is a string that is not reserved, or a number; ACK/BINARY_ACK: array;
 * CONNECT_ERROR: object or string. `payload` is NULL when jsonlen was 0.
 * Returns 0 when valid, -1 otherwise. */
SL_WUR int sl_sio_validate_payload(int type, const struct cJSON *payload);

/* sl_sio_is_reserved_event: "connect", "connect_error", "disconnect", "disconnecting",
 * "newListener", "removeListener". */
bool sl_sio_is_reserved_event(const char *name);

/* sl_sio_count_placeholders: walk a JSON tree depth-first and check every
 * {"_placeholder":true,"num":i} object: returns the number found, or -1 when a num is not an
 * integer in [0, natts) or a num repeats, or an object has "_placeholder":true but no numeric
 * "num". Only meaningful for BINARY_* packets (the reference leaves placeholders in plain
 * EVENT/ACK data alone). Returns 0 for a NULL node. Whether every attachment must be
 * referenced (count == natts) is the caller's policy; the reference does not require it. */
int sl_sio_count_placeholders(const struct cJSON *node, int natts);

/* sl_sio_encode_header: write "<type>[<n>-][<nsp>,][<ackid>]" into out (at least
 * SIO_MAX_NSP + 48 bytes). nsp "/" (or NULL, or nsplen 0) is omitted. ack_id < 0 omitted.
 * attachments written only when > 0. Returns the length written (no NUL), or 0 when the
 * header cannot be encoded faithfully: type outside 0..6, nsplen > SIO_MAX_NSP, nsp not
 * starting with '/', or nsp containing ','. */
size_t sl_sio_encode_header(char *out, int type, int attachments, const char *nsp, size_t nsplen,
                            int64_t ack_id);

/* ---- a fan-out delivery: one EVENT packet per publish ------------------------------- */
/* What a delivery packet carries. Every pointer is borrowed for the call. */
typedef struct sl_sio_delivery {
  const char *nsp; /* namespace path; "/" (or NULL, or nsplen 0) is omitted */
  size_t nsplen;
  const char *nsp_json;   /* the path as a JSON string literal, quotes included (msgid only) */
  const char *topic_json; /* the topic as a JSON string literal, quotes included */
  const char *payload;    /* JSON text of the payload, copied as it is (not validated) */
  size_t len;
  const char *msgid;  /* AT_LEAST_ONCE: the message id, adds the ack metadata; NULL:
                           * BEST_EFFORT */
  const char *offset; /* connection-state recovery: the message's offset, appended as the
                       * last argument (a JSON string; its bytes must need no escaping:
                       * [A-Za-z0-9_.:-]); NULL: none (recovery off, the packet unchanged) */
  size_t offlen;
} sl_sio_delivery;

/* sl_sio_delivery_len: the length of the packet sl_sio_encode_delivery writes for d. */
size_t sl_sio_delivery_len(const sl_sio_delivery *d);

/* sl_sio_encode_delivery: write the Socket.IO EVENT packet of a delivery,
 * 2<nsp>,[<topic>,<payload>] or, with a msgid,
 * 2<nsp>,[<topic>,<payload>,{"namespace":..,"topic":..,"messageId":"<id>","ackRequired":true}]
 * (the Engine.IO '4' in front included: "42/feed,[...]"), with ,"<offset>" before the closing
 * bracket when d->offset is set (socket.io's offset: the last argument), into out, which holds at least
 * sl_sio_delivery_len(d) bytes. No NUL is written. Returns the length written. The metadata
 * object is cut at 511 bytes (never reached by the ids and paths Sluice makes). The
 * WebSocket frame header in front is the caller's (sl_ws_frame_header). */
size_t sl_sio_encode_delivery(uint8_t *out, const sl_sio_delivery *d);

/* ---- WebSocket frame header for pre-built server frames ---------------------------- */
/* sl_ws_frame_header: write an unmasked FIN frame header for opcode (1 text, 2 binary) and
 * payload length n into out (at most 10 bytes). Returns the header length (2, 4 or 10), or
 * 0 for an opcode outside 0..15 or n >= 2^63. */
size_t sl_ws_frame_header(uint8_t *out, int opcode, uint64_t n);

#endif
