/* publish.h - the publish pipeline: resolve, route (once per publish), coalesce key and
 * snapshot (once per topic), encode once, fan out to the lanes (once per recipient: a
 * queue node, nothing else). The entry point is sl_publish (sl_core.h). */
#ifndef SL_PUBLISH_H
#define SL_PUBLISH_H

#include "sl_internal.h"

/* One publish as it travels down the pipeline, on the publisher's stack. Every pointer is
 * borrowed for the duration of sl_publish. */
typedef struct sl_pubctx {
  sl_gateway *gw;
  sl_ns *ns;
  sl_topic *topic;     /* the topic being delivered to (the route hook may redirect) */
  const char *payload; /* JSON text: the publisher's, or the route hook's rewrite */
  size_t len;
  int source;            /* SL_SRC_* */
  sl_socket *from;       /* the publishing client for SL_SRC_CLIENT, else NULL */
  const char *msgid;     /* this publish's message id (NUL-terminated) */
  const char *to;        /* publishTo: the one recipient's socket id, or NULL */
  char *const *route_to; /* recipients chosen by the route hook (nroute_to of them) */
  size_t nroute_to;
  const char *key;    /* coalesce key of payload on topic, or NULL: set per topic while
                             * its message is encoded, NULL otherwise */
  const char *offset; /* recovery: the offset text of the delivery being encoded, or NULL */
  size_t offlen;
  uint64_t off_n; /* its number (recovery.h) */
  /* from the bus (sl_publish_remote); all NULL/0/false for a local publish */
  const sl_remote_opts *remote;
  int rc; /* the first error of the bus on this publish (SL_EFULL), else 0 */
} sl_pubctx;

/* sl_publish_remote: deliver to this node's subscribers a message that another part of the
 * cluster already routed (the bus: cluster.c reading the stream, the emitter ingest), on
 * namespace ns (of this gateway) and topic[0..topiclen) (the event name), payload the JSON
 * text payload[0..len) (validated here unless o->trusted_json). No route hook, coalesce-key
 * hook or snapshot hook runs: the origin ran them and o carries their results. The bus hook
 * of the server is not called (this is what the bus delivers).
 *   o->rooms / o->nrooms: socket.io rooms; none: every subscriber of the topic; else only
 *     the subscribers whose client id is one of them (a client's own room is its id, as in
 *     socket.io; Sluice has no other rooms, so other names match nobody).
 *   o->except / o->nexcept: client ids that must not receive it (socket.io's `except`).
 *   o->key: the coalesce key the origin computed (NULL: none); used as is, not recomputed.
 *   o->msgid: the AT_LEAST_ONCE message id the origin chose; NULL: one is made here (an
 *     adapter or emitter origin); ignored in BEST_EFFORT namespaces.
 *   o->offset: the stream entry id (NULL: none), kept on the message for connection-state
 *     recovery (not yet written to the packet).
 *   o->snapshot_set: the origin's snapshot hook produced a new state: o->snapshot (JSON
 *     text, o->snapshot_len bytes; NULL clears it) becomes the topic's state and the
 *     delivery new subscribers get first; the local snapshot hook's cached state is marked
 *     stale (SLUICE_SLOT_STALE) so that it starts again from this state.
 * The namespace's delivery mode, overflow policy and queue limits apply as for a local
 * publish; counters (published, received) count it. Borrowed pointers are not kept.
 * Returns 0 (also when nobody matched), SL_ENOENT (topic not configured in ns), SL_EINVAL
 * (payload is not valid JSON, or ns/topic/payload is NULL), SL_ETOOBIG (payload larger
 * than the server's maxPayload). */
int sl_publish_remote(sl_gateway *gw, sl_ns *ns, const char *topic, size_t topiclen,
                      const char *payload, size_t len, const sl_remote_opts *o);

/* What the publish pipeline hands the cluster bus: one publish on one topic, after the route
 * hook, the coalesce key and the snapshot hook ran. Every pointer is borrowed for the call. */
struct sl_bus_pub {
  sl_ns *ns;
  sl_topic *topic;
  const char *payload; /* JSON text */
  size_t len;
  const char *key;       /* coalesce key, or NULL */
  const char *msgid;     /* this publish's message id */
  const char *const *to; /* recipients (client ids) chosen by publishTo or the route hook */
  size_t nto;            /* 0: every subscriber */
  bool snapshot_set;     /* the snapshot hook produced a new state (below; NULL: cleared) */
  const char *snapshot;
};
typedef struct sl_bus_pub sl_bus_pub;

/* What the bus answers (sl_server.bus). */
enum {
  SL_BUS_LOCAL = 0, /* deliver here now (the bus also appends it, marked delivered) */
  SL_BUS_TAKEN = 1, /* appended: every node, this one included, delivers it from the bus */
};
/* The bus hook (set on a server by cluster.c; NULL: no cluster, nothing is asked). Returns
 * SL_BUS_LOCAL, SL_BUS_TAKEN, or SL_EFULL (the bus can neither append nor keep it: not
 * delivered; sl_publish returns SL_EFULL and the API answers 503 CLUSTER_UNAVAILABLE). */
typedef int (*sl_bus_fn)(void *ud, const sl_bus_pub *p);

/* sl_publish_encode_replay: one delivery of topic t of ns, encoded as the publish pipeline
 * encodes it (payload JSON text as is, key the coalesce key or NULL, msgid the AT_LEAST_ONCE
 * message id or NULL: a new one, offset its recovery offset text or NULL), for a replay of
 * what another node delivered (a recovery from the cluster's stream). Returns a new message
 * (one reference, the caller's). Aborts when memory runs out. */
sl_msg *sl_publish_encode_replay(sl_ns *ns, sl_topic *t, const char *payload, size_t len,
                                 const char *key, const char *msgid, const char *offset);

#endif
