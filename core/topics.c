/* topics.c - namespaces and topics: build, find, tear down (topics.h). */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "topics.h"
#include "lanes.h"
#include "recovery.h"
#include "sio.h"
#include "msg.h"
#include "sl_util.h"

/* s as a JSON string literal, quotes included (malloc'd; aborts on OOM). */
static char *json_string_literal(const char *s) {
  cJSON *j = cJSON_CreateString(s);
  char *t = sl_json_print(j);
  cJSON_Delete(j);
  if (!t) abort();
  return t;
}

/* sl_ns_init: see topics.h. */
void sl_ns_init(sl_ns *ns, sl_server *srv, sl_ns_config *cfg) {
  memset(ns, 0, sizeof *ns);
  ns->srv = srv;
  ns->cfg = cfg;
  ns->path = sl_xstrdup(cfg ? cfg->path : "/");
  ns->pathlen = strlen(ns->path);
  ns->json_path = json_string_literal(ns->path);
  ns->implicit_root = cfg == NULL;
  if (cfg && cfg->ntopics) {
    ns->ntopics = cfg->ntopics;
    ns->topics = sl_xcalloc(cfg->ntopics, sizeof(sl_topic));
    for (size_t i = 0; i < cfg->ntopics; i++) {
      ns->topics[i].name = sl_xstrdup(cfg->topics[i]);
      ns->topics[i].json_name = json_string_literal(cfg->topics[i]);
      ns->topics[i].ns = ns;
      ns->topics[i].snap_slot = SLUICE_NOSLOT;
      ns->topics[i].tid = ++srv->gw->topic_ids;
    }
  }
  sl_recovery_ns_sync(ns);
}

/* sl_topic_teardown: see topics.h. Unsubscribing from the end of the array moves no other
 * subscriber. */
void sl_topic_teardown(sl_topic *t) {
  while (t->nsubs) {
    sl_lane *l = t->subs[t->nsubs - 1];
    sl_unsubscribe(l->sock, t);
  }
  free(t->name);
  free(t->json_name);
  free(t->subs);
  sl_msg_unref(t->last);
  free(t->snap_json);
  memset(t, 0, sizeof *t);
}

/* sl_ns_free: see topics.h. */
void sl_ns_free(sl_ns *ns) {
  sl_sio_ns_discard_parked(ns); /* their lanes point at the topics */
  sl_recovery_ns_free(ns);
  for (size_t i = 0; i < ns->ntopics; i++) sl_topic_teardown(&ns->topics[i]);
  free(ns->topics);
  free(ns->path);
  free(ns->json_path);
  sl_hash_free(&ns->sockets);
  sl_hash_free(&ns->parked);
}

/* sl_topic_find: see topics.h. */
sl_topic *sl_topic_find(sl_ns *ns, const char *name, size_t len) {
  for (size_t i = 0; i < ns->ntopics; i++)
    if (strlen(ns->topics[i].name) == len && memcmp(ns->topics[i].name, name, len) == 0)
      return &ns->topics[i];
  return NULL;
}

/* sl_server_find_ns: see topics.h. */
sl_ns *sl_server_find_ns(sl_server *srv, const char *path, size_t len) {
  for (size_t i = 0; i < srv->nns; i++)
    if (srv->ns[i].pathlen == len && memcmp(srv->ns[i].path, path, len) == 0) return &srv->ns[i];
  if (len == 1 && path[0] == '/') return &srv->root;
  return NULL;
}
