/* emitter_ingest.h - @socket.io/redis-emitter messages delivered to this node's clients
 * (cluster.acceptEmitter; the decoder is emitter.h).
 *
 * A server whose cluster block has acceptEmitter = true receives, on its cluster node's
 * pub/sub link (cluster.h: SUBSCRIBE <emitterKey>#<nsp># for the streams adapter's node count,
 * PSUBSCRIBE <emitterKey>#<nsp>#* for the emitter's room channels, each message handed over
 * once), every emit of the emitter on its namespaces. Each node delivers an emitted message
 * to its own subscribers through sl_publish_remote and never appends it to the stream: every
 * node gets the PUBLISH, so the message is delivered exactly once cluster-wide.
 *
 * Messages that are not the emitter's (the streams adapter's own requests on the same
 * channel, responses on socket.io#<nsp>#<uid>#, anything malformed) and those that cannot be
 * delivered are counted by reason (sluice_emitter_ignored_total) and logged, at most 5 lines
 * per 10 s and then one summary line (the adapter's own messages only at debug level: they
 * are expected on that channel). */
#ifndef SL_EMITTER_INGEST_H
#define SL_EMITTER_INGEST_H

#include <stddef.h>
#include <stdint.h>
#include "emitter.h"
#include "sl_internal.h"

/* Counters of one server's ingest (sl_emitter_metrics). */
typedef struct sl_emitter_stats {
  uint64_t received;                  /* messages that came in on an emitter channel */
  uint64_t delivered;                 /* of those, handed to the lanes */
  uint64_t ignored[SL_EMIT_REASONS];  /* by reason (ignored[SL_EMIT_OK] unused) */
  uint64_t log_window_ms;             /* rate limit of the log lines: window start, */
  uint64_t log_lines, log_suppressed; /* lines written in it, lines left out */
} sl_emitter_stats;

/* sl_emitter_ingest: one message from the emitter subscription of srv: channel[0..chlen)
 * is where it was published (<key>#<nsp>#[<room>#]), msg[0..len) its bytes. Decodes it
 * (bounded by the server's maxPayload), checks that the channel is the packet's namespace's
 * (<key>#<packet.nsp>#...), finds that namespace on srv and delivers the event to the local
 * subscribers of the topic named by the event, with the message's rooms and except, through
 * sl_publish_remote (no hook runs; an AT_LEAST_ONCE namespace gets a message id made here).
 * Counts into st (received, delivered or ignored[reason]) and logs refusals (rate-limited).
 * Returns SL_EMIT_OK when delivered (also to nobody), else the reason it was ignored. */
sl_emit_reason sl_emitter_ingest(sl_server *srv, const char *key, const char *channel, size_t chlen,
                                 const void *msg, size_t len, sl_emitter_stats *st);

/* sl_emitter_server_sync: make srv's ingest match its cluster node: when the node's config
 * has acceptEmitter on, the ingest becomes the node's pub/sub handler
 * (sl_cluster_set_pubsub_handler); otherwise it is not (and the node counts what it ignores).
 * Call after sl_cluster_start and after every sl_cluster_reconfigure (a reload may replace
 * the node). Never fails. Counters survive while the server lives. */
void sl_emitter_server_sync(sl_server *srv);

/* sl_emitter_server_stop: detach srv's ingest from its node (if any) and free it; a pending
 * rate-limit summary is logged. Idempotent; call before or after sl_cluster_stop. */
void sl_emitter_server_stop(sl_server *srv);

/* sl_emitter_metrics: append sluice_emitter_received_total and
 * sluice_emitter_ignored_total{reason} (every reason, zeros included) of srv, in the
 * Prometheus text format, when srv accepts (or accepted) the emitter; nothing otherwise. */
void sl_emitter_metrics(const sl_server *srv, sl_sbuf *b);

/* sl_emitter_stats_text: the same counters from st (tests). */
void sl_emitter_stats_text(const sl_emitter_stats *st, sl_sbuf *b);

#endif
