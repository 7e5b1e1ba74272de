/* emitter.h - the classic @socket.io/redis-emitter as an ingest path (cluster.acceptEmitter).
 *
 * The emitter (npm @socket.io/redis-emitter 5.x) PUBLISHes one msgpack message
 * [uid, packet, opts] per emit, where uid is "emitter", packet is a Socket.IO packet object
 * {type: 2 (EVENT), data: [event, ...args], nsp} and opts is {rooms: [...], except: [...],
 * flags: {volatile?, compress?}}, on the channel <key>#<nsp># or, when it targets exactly
 * one room, <key>#<nsp>#<room>#. The streams adapter's nodes publish their own msgpack
 * messages (maps {uid, nsp, type, data}) on the same <key>#<nsp># channel: those, and any
 * [uid, packet, opts] from another kind of publisher, are not the emitter's and are ignored
 * (counted).
 *
 This module is the pure part: sl_emitter_decode (bytes in, a decoded message or a reason
 * out). emitter_ingest.h subscribes and hands decoded messages to the local lanes. Sluice
 * delivers JSON: args are converted from msgpack (nil, booleans,
 * integers, floats, strings, arrays, maps, and msgpack timestamps, which notepack.io writes
 * for a Date, as the ISO string Date.toJSON gives); binary data and other extension types
 * cannot be represented and the message is ignored (reason "binary"). */
#ifndef SL_EMITTER_H
#define SL_EMITTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl_util.h"

/* Why a message on an emitter channel was not delivered (sluice_emitter_ignored_total's
 * reason label, in this order: sl_emitter_reason_name). */
typedef enum {
  SL_EMIT_OK = 0,
  SL_EMIT_MALFORMED,   /* not msgpack, lying lengths, trailing bytes, wrong field types */
  SL_EMIT_NOT_EMITTER, /* well-formed, but not [ "emitter", packet, opts ] (another node's) */
  SL_EMIT_NOT_EVENT,   /* the emitter's, but its packet is not an EVENT */
  SL_EMIT_BINARY,      /* an argument holds binary data (or an extension type) */
  SL_EMIT_ARGS,        /* more than one argument after the event name */
  SL_EMIT_TOO_LARGE,   /* the payload's JSON is longer than the limit */
  SL_EMIT_NAMESPACE,   /* no such namespace here, or not the subscription's namespace */
  SL_EMIT_TOPIC,       /* the event name is not a topic of the namespace */
  SL_EMIT_REASONS
} sl_emit_reason;

/* sl_emitter_reason_name: the metric label of a reason ("malformed", "not_emitter", ...);
 * "ok" for SL_EMIT_OK, "unknown" outside the enum. A static string. */
const char *sl_emitter_reason_name(int reason);

/* One decoded emitter message. Every string is NUL-terminated and owned by the struct
 * (sl_emitter_msg_free); none holds a NUL byte. */
typedef struct sl_emitter_msg {
  char *uid;          /* "emitter" */
  char *nsp;          /* packet.nsp; "/" when the packet has none (as the adapters read it) */
  char *event;        /* data[0]: the event name, Sluice's topic */
  char *payload;      /* JSON text of data[1]; "null" when the event has no argument */
  size_t payload_len; /* strlen(payload) */
  char **rooms;       /* opts.rooms (nrooms of them); [] = every subscriber */
  size_t nrooms;
  char **except; /* opts.except: sockets in any of these rooms are skipped */
  size_t nexcept;
  bool flag_volatile; /* opts.flags.volatile / .compress: read, not acted upon */
  bool flag_compress;
} sl_emitter_msg;

/* sl_emitter_decode: decode one emitter message, the len bytes at buf (any bytes: a
 * hostile publisher may send anything on the channel). max_payload bounds the payload's JSON
 * text (0 = no bound). On SL_EMIT_OK fills *out (free it with sl_emitter_msg_free); on any
 * other reason *out is left empty (all NULL/0, safe to free) and err (errlen bytes, may be
 * NULL) says what was wrong in one line. Memory is bounded by the input: every container's
 * claimed length is checked against the bytes that remain before anything is allocated. */
sl_emit_reason sl_emitter_decode(const void *buf, size_t len, size_t max_payload,
                                 sl_emitter_msg *out, char *err, size_t errlen);

/* sl_emitter_msg_free: free what sl_emitter_decode put in m and zero it; m may be empty. */
void sl_emitter_msg_free(sl_emitter_msg *m);

/* sl_emitter_to_json: append the JSON text of the msgpack value at buf[0..len) (exactly one
 * value, nothing after it) to b, as JSON.stringify would write what notepack.io decodes
 * (see above). Returns SL_EMIT_OK, SL_EMIT_MALFORMED, SL_EMIT_BINARY or SL_EMIT_TOO_LARGE
 * (past max bytes appended, 0 = no bound); b may hold a partial text on error. Exposed for
 * the tests and the fuzz target. */
sl_emit_reason sl_emitter_to_json(const void *buf, size_t len, size_t max, sl_sbuf *b);

#endif
