/* cluster.h - a server's node in a cluster: the bus is a Redis stream in the format of
 * @socket.io/redis-streams-adapter 0.3.1 (cluster_codec.h), shared with the other Sluice
 * nodes and with socket.io servers using that adapter.
 *
 * It sits beside delivery: it calls the publish pipeline downward (sl_publish_remote for
 * what it reads), and the pipeline reaches it only through the bus hook it sets on its
 * server (sl_server.bus, publish.h). Three Redis links (redis_link.h): one for XADD and
 * PUBSUB NUMSUB, one blocked in XREAD, one in pub/sub mode (SUBSCRIBE <emitterKey>#<nsp>#
 * per namespace, so that socket.io nodes count this one; messages there go to the handler
 * a module sets with sl_cluster_set_pubsub_handler).
 *
 * Delivery (README "Cluster"): while the links are up, a publish is appended and every
 * node, this one included, delivers it when it reads it back, so all nodes deliver in
 * stream order and the stream id is the offset. While Redis is unreachable a publish is
 * delivered here at once and kept (at most bufferMax) to be appended, marked delivered, when
 * it returns; past the bound the publish is refused (SL_EFULL: 503 CLUSTER_UNAVAILABLE) and
 * counted. The reader resumes from the last id it read; entries trimmed before it read them
 * are counted (sluice_cluster_entries_lost_total) from XINFO STREAM's entries-added. */
#ifndef SL_CLUSTER_H
#define SL_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "sl_internal.h"
#include "cluster_codec.h"

typedef struct sl_cluster sl_cluster;

/* sl_cluster_start: make srv a cluster node when its config has a cluster block (nothing
 * otherwise): copies the block, sets srv->cluster and the bus hook, and starts connecting
 * (never blocks; an unreachable Redis is retried with backoff, logged, and publishes are
 * served locally meanwhile). Returns 0, or SL_ECONFIG with a message in err when the URL
 * does not parse (the loader checked it already, so only a config built by hand can). */
int sl_cluster_start(sl_server *srv, char *err, size_t errlen);

/* sl_cluster_stop: end srv's node (when it has one): the bus hook is removed, the links
 * close, publishes still buffered or unconfirmed are dropped and logged with their count.
 * Safe when srv has no cluster. */
void sl_cluster_stop(sl_server *srv);

/* sl_cluster_reconfigure: after a reload swapped srv's config: an unchanged cluster block
 * keeps the node and its links; a changed one stops it and starts a new one; a removed one
 * stops it; a new one starts one. Returns as sl_cluster_start. */
int sl_cluster_reconfigure(sl_server *srv, char *err, size_t errlen);

/* sl_cluster_flush: end of a loop iteration (the gateway's flush): the XADDs queued since the
 * last call go to Redis as one MULTI/EXEC transaction, so that every reading node gets them
 * in one XREAD reply. NULL or nothing queued: no-op. */
void sl_cluster_flush(sl_cluster *cl);

/* sl_cluster_metrics: append the Prometheus series of srv's node to b (nothing when srv has
 * no cluster): sluice_cluster_up, _nodes{namespace}, _published_total, _received_total,
 * _reads_total, _buffered, _dropped_total{reason}, _entries_lost_total,
 * _skipped_total{reason}, _reconnects_total. */
void sl_cluster_metrics(const sl_server *srv, sl_sbuf *b);

/* sl_cluster_stats_json: add "cluster": {uid, up, nodes, published, received, reads,
 * buffered, dropped, entriesLost, reconnects, lastId} to so, srv's object in /api/stats; nothing when
 * srv has no cluster. */
struct cJSON;
void sl_cluster_stats_json(const sl_server *srv, struct cJSON *so);

/* A message on the pub/sub link: channel[0..chlen) (for a pattern subscription, the channel
 * it matched), data[0..len) (binary; msgpack for the emitter and the adapter). The handler
 * must not stop the cluster. Pointers are borrowed for the call. */
typedef void (*sl_cluster_msg_fn)(void *ud, sl_cluster *cl, const char *channel, size_t chlen,
                                  const char *data, size_t len);

/* sl_cluster_set_pubsub_handler: who gets the pub/sub messages (NULL: ignored and counted at
 * debug). With cluster.acceptEmitter the node also subscribes to the pattern
 * <emitterKey>#<nsp>#* (the emitter's room channels); a message on the exact public channel
 * is handed over once, not once per subscription. */
void sl_cluster_set_pubsub_handler(sl_cluster *cl, sl_cluster_msg_fn fn, void *ud);

/* Connection-state recovery across nodes (README "Connection-state recovery"): a session kept
 * for recovery lives in Redis under sio:session:<pid> (the key of
 * @socket.io/redis-streams-adapter) with an expiry, so another node can take it. */

/* sl_cluster_session_put: SET sio:session:<pid> to blob[0..len) with PX ttl_ms, on the write
 * link; the reply is not waited for. Returns 0, or SL_ESTATE when the link is down (nothing
 * kept: a recovery on another node will not find it). */
int sl_cluster_session_put(sl_cluster *cl, const char *pid, const char *blob, size_t len,
                           uint64_t ttl_ms);

/* What sl_cluster_session_take found: status 0 with the blob (borrowed for the call), or
 * status 0 with NULL (no such key: taken already, expired, never kept), or status SL_ESTATE
 * with NULL (an error reply, the link dropped before the reply, or the cluster stopped: the
 * outcome is unknown). */
typedef void (*sl_cluster_session_cb)(void *ud, int status, const char *blob, size_t len);

/* sl_cluster_session_take: GETDEL sio:session:<pid> (one node takes a session, once); cb runs
 * once with the result, later, on the loop (with NULL when the cluster stops first).
 * Returns 0, or SL_ESTATE when the link is down (cb is not called). */
int sl_cluster_session_take(sl_cluster *cl, const char *pid, sl_cluster_session_cb cb, void *ud);

/* One stream entry of an XRANGE: its id and what sl_cl_decode made of it (rc SL_CL_OK: e is
 * filled; else skip it). Owned by the cluster, borrowed for the callback. */
typedef struct sl_cluster_entry {
  char id[48];
  int rc;
  sl_cl_entry e;
} sl_cluster_entry;

/* What sl_cluster_range found: status 0 with v[0] the entry `after` itself and v[1..n) the
 * entries after it (at most count), or SL_ENOENT (the entry `after` is no longer in the
 * stream, or more than count entries follow it: a replay from there would be partial), or
 * SL_ESTATE (an error reply, the link dropped or timed out, or the cluster stopped). v is
 * borrowed for the call. */
typedef void (*sl_cluster_range_cb)(void *ud, int status, const sl_cluster_entry *v, size_t n);

/* sl_cluster_range: for a recovery on this node of a session another node kept: the stream's
 * entry `after` and, count > 0, the entries after it: XRANGE <streamKey> <after> + COUNT
 * count+2 (count 0: XRANGE <after> <after>, that entry alone) on the write link, checking that
 * the reply starts with `after` itself (the adapter's restoreSession check). cb runs once,
 * later, on the loop (replies in the order the commands were sent; on a stop, in any order).
 * Returns 0, or SL_ESTATE when the
 * link is down (cb is not called). */
int sl_cluster_range(sl_cluster *cl, const char *after, size_t count, sl_cluster_range_cb cb,
                     void *ud);

/* Accessors: the server, the node's uid in the stream ("sluice-<boot id>-<n>"), its copy of
 * the cluster block. */
sl_server *sl_cluster_server(const sl_cluster *cl);
const char *sl_cluster_uid(const sl_cluster *cl);
const sl_cluster_config *sl_cluster_config_of(const sl_cluster *cl);

#endif
