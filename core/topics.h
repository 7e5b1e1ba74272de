/* topics.h - a server's namespaces and their topics: built from the config, looked up by
 * name, torn down. A topic owns its subscriber array, its last delivery (what a new
 * subscriber gets first), its snapshot state and its counters. */
#ifndef SL_TOPICS_H
#define SL_TOPICS_H

#include "sl_internal.h"

/* sl_ns_init: build namespace ns of server srv from its config, with one topic per
 * configured topic name; cfg NULL builds the implicit "/" namespace, which accepts
 * connections and handles nothing (like socket.io's main namespace). ns is overwritten;
 * cfg must outlive it. Allocation failure aborts. */
void sl_ns_init(sl_ns *ns, sl_server *srv, sl_ns_config *cfg);

/* sl_ns_free: tear down every topic of ns (sl_topic_teardown) and free what ns owns: the
 * sessions parked for recovery are discarded first (sl_sio_ns_discard_parked), then the
 * history. Its live sockets must already be gone (disconnected); ns itself is the caller's
 * memory. */
void sl_ns_free(sl_ns *ns);

/* sl_topic_teardown: unsubscribe every subscriber of t (their queued, in-flight and spilled
 * messages go, spill files are deleted; no events fire) and free what t owns. Leaves *t
 * zeroed (name NULL): t's own memory (a slot of ns->topics) is the caller's. The one way a
 * topic ends: namespace teardown and a reload that removes the topic both use it. */
void sl_topic_teardown(sl_topic *t);

/* sl_topic_find: the topic named name[0..len) in ns, or NULL. */
sl_topic *sl_topic_find(sl_ns *ns, const char *name, size_t len);

/* sl_server_find_ns: the namespace of srv with path path[0..len), or NULL; "/" always
 * resolves (to the implicit root when it is not configured). */
sl_ns *sl_server_find_ns(sl_server *srv, const char *path, size_t len);

#endif
