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
} sl_pubctx;

#endif
