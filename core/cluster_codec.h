/* cluster_codec.h - the stream entry format of @socket.io/redis-streams-adapter 0.3.1, as
 * Sluice writes and reads it. Pure functions: no I/O, no gateway.
 *
 * An entry is the field list `uid <node uid> nsp <namespace> type <n> data <text>`. A
 * BROADCAST (type 3) carries in data, as JSON text (or base64 msgpack when the message has
 * binary parts: the adapter's encoding):
 *   {"opts":{"rooms":[...],"except":[...],"flags":{...}},
 *    "packet":{"type":2,"data":[<event>,<arg>,...],"nsp":"<namespace>"}}
 * Sluice's own metadata rides in opts.flags.sluice (socket.io reads only the flags it knows:
 * volatile, compress, local, timeout):
 *   {"s":<seq per node>,"d":1 (already delivered on the origin),"k":"<coalesce key>",
 *    "id":"<AT_LEAST_ONCE message id>","snap":<snapshot state JSON, null: cleared>} */
#ifndef SL_CLUSTER_CODEC_H
#define SL_CLUSTER_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "sl_util.h"

/* What one publish puts in an entry's data. Every pointer is borrowed. */
typedef struct sl_cl_out {
  const char *nsp_json;   /* the namespace as a JSON string literal, quotes included */
  const char *topic_json; /* the topic (event name) as a JSON string literal */
  const char *payload;    /* JSON text, written as is */
  size_t len;
  const char *const *rooms; /* client ids, nrooms 0: rooms [] (every subscriber) */
  size_t nrooms;
  uint64_t seq;         /* the origin's sequence number (dedupe of re-appended entries) */
  bool delivered;       /* the origin delivered it already (appended after Redis came back) */
  const char *key;      /* coalesce key or NULL */
  const char *msgid;    /* message id or NULL */
  bool snapshot_set;    /* snapshot below (NULL: cleared) */
  const char *snapshot; /* JSON text */
} sl_cl_out;

/* sl_cl_encode: append the data JSON text of o to b. Strings are JSON-escaped; payload and
 * snapshot are copied verbatim (valid JSON text is the caller's promise). Never fails. */
void sl_cl_encode(sl_sbuf *b, const sl_cl_out *o);

#define SL_CL_MAX_ROOMS 4096 /* rooms / except entries of one entry at most */

/* Why an entry is not delivered (the reason label of sluice_cluster_skipped_total). */
enum {
  SL_CL_OK = 0,
  SL_CL_OTHER_TYPE, /* not a BROADCAST (socket.io's other cluster messages), no data */
  SL_CL_WITH_ACK,   /* a broadcast expecting acks (requestId): not for Sluice */
  SL_CL_BINARY,     /* binary arguments (msgpack bin/ext, or BINARY_EVENT): JSON only */
  SL_CL_MALFORMED,  /* fields, JSON, msgpack or packet shape not as the adapter writes */
  SL_CL_NREASONS
};
extern const char *const sl_cl_reasons[SL_CL_NREASONS]; /* "", "other_type", ... */

/* A decoded entry. Strings are NUL-terminated and owned by the entry (sl_cl_entry_free). */
typedef struct sl_cl_entry {
  char *uid, *nsp; /* the entry's fields (nsp: the namespace the adapter keys on) */
  int type;        /* the entry's type field */
  char *topic;     /* packet.data[0] */
  size_t topiclen;
  char *payload; /* packet.data[1] as JSON text ("null" when absent) */
  size_t len;
  char **rooms, **except;
  size_t nrooms, nexcept;
  bool is_volatile; /* flags.volatile */
  bool sluice;      /* flags.sluice present: an entry of a Sluice node */
  uint64_t seq;
  bool delivered;
  char *key, *msgid;
  bool snapshot_set;
  char *snapshot; /* NULL with snapshot_set: cleared */
  size_t snapshot_len;
  void *blk; /* private: one block holding every string above, or NULL (each its own) */
} sl_cl_entry;

/* sl_cl_decode: decode an entry from its field list (nf values: f[i] of fl[i] bytes, names
 * and values alternating, as XREAD returns them; unknown fields are ignored, a repeated one
 * keeps the last) into *e (zeroed first). Returns SL_CL_OK with *e filled, or another
 * SL_CL_* with *e holding only uid, nsp and type (those read before the error); in every
 * case release it with sl_cl_entry_free. The data JSON is read as cJSON reads it (the first
 * of duplicate members wins, strings end at an escaped NUL, snap is printed by
 * sl_json_print), in one pass of the strict scanner (sl_jscan.h) without building a tree;
 * text the scanner cannot judge as cJSON would (escaped member names, whitespace or
 * numbers only cJSON accepts, ...) is parsed with cJSON instead. Bounded: at most 4096
 * rooms/except entries, nesting as cJSON's limit; never reads past the given lengths. */
int sl_cl_decode(const char *const *f, const size_t *fl, size_t nf, sl_cl_entry *e);

/* sl_cl_entry_free: free what e owns and zero it. */
void sl_cl_entry_free(sl_cl_entry *e);

/* sl_cl_id_cmp: compare two stream ids "<ms>-<seq>" numerically (-1, 0, 1); an id that
 * does not parse compares as 0-0. */
int sl_cl_id_cmp(const char *a, const char *b);

#endif
