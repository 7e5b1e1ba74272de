/* hooks.c - the hooks table as the core stores and fires it (see hooks.h). */
#include <stdlib.h>
#include <string.h>
#include "sl_internal.h"
#include "hooks.h"
#include "eio.h"
#include "sl_util.h"

_Static_assert((int)SLUICE_SRC_API == SL_SRC_API && (int)SLUICE_SRC_LUA == SL_SRC_LUA &&
                   (int)SLUICE_SRC_CLIENT == SL_SRC_CLIENT,
               "publish sources");
_Static_assert((int)SLUICE_EV_CONNECT == SL_EV_CONNECT &&
                   (int)SLUICE_EV_DISCONNECT == SL_EV_DISCONNECT &&
                   (int)SLUICE_EV_SUBSCRIBE == SL_EV_SUBSCRIBE &&
                   (int)SLUICE_EV_UNSUBSCRIBE == SL_EV_UNSUBSCRIBE &&
                   (int)SLUICE_EV_OVERFLOW == SL_EV_OVERFLOW &&
                   (int)SLUICE_EV_RETRY_EXHAUSTED == SL_EV_RETRY_EXHAUSTED,
               "event types");

_Static_assert(sizeof(sluice_hooks) == SL_HK_KINDS * sizeof(void (*)(void)),
               "one SL_HK_* kind per member of sluice_hooks");

const char *const sl_hook_time_names[SL_HOOK_TIMED_KINDS] = {"route", "coalesceKey", "snapshot",
                                                             "onClientPublish", "authorize"};

/* Every member of sluice_hooks with its kind: one line per kind, used by the resolver. */
#define SL_HOOK_MEMBERS(X)                                                                         \
  X(route, SL_HK_ROUTE)                                                                            \
  X(coalesce_key, SL_HK_COALESCE_KEY) X(snapshot, SL_HK_SNAPSHOT) X(authorize, SL_HK_AUTHORIZE)    \
      X(client_publish, SL_HK_CLIENT_PUBLISH) X(connect, SL_HK_CONNECT) X(event, SL_HK_EVENT)      \
          X(on_connect, SL_HK_ON_CONNECT) X(on_disconnect, SL_HK_ON_DISCONNECT)                    \
              X(on_subscribe, SL_HK_ON_SUBSCRIBE) X(on_unsubscribe, SL_HK_ON_UNSUBSCRIBE)          \
                  X(on_overflow, SL_HK_ON_OVERFLOW)                                                \
                      X(on_retry_exhausted, SL_HK_ON_RETRY_EXHAUSTED) X(on_start, SL_HK_ON_START)  \
                          X(client_free, SL_HK_CLIENT_FREE) X(eio_open, SL_HK_EIO_OPEN)            \
                              X(eio_message, SL_HK_EIO_MESSAGE) X(eio_close, SL_HK_EIO_CLOSE)      \
                                  X(eio_free, SL_HK_EIO_FREE)                                      \
                                      X(allow_request, SL_HK_ALLOW_REQUEST)

static bool name_eq(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

static const sl_hookreg *find_reg(const sl_gateway *gw, const char *server, const char *ns) {
  for (size_t i = 0; i < gw->nhookregs; i++)
    if (name_eq(gw->hookregs[i].server, server) && name_eq(gw->hookregs[i].ns, ns))
      return &gw->hookregs[i];
  return NULL;
}

/* Per kind: the named server's C hook, else every server's, else the script's. */
static void resolve_set(sl_hookset *hs, const sl_hookreg *exact, const sl_hookreg *any) {
#define SL_RESOLVE(m, k)                                                                           \
  if (exact && exact->h.m) {                                                                       \
    hs->fn.m = exact->h.m;                                                                         \
    hs->ud[k] = exact->ud;                                                                         \
  } else if (any && any->h.m) {                                                                    \
    hs->fn.m = any->h.m;                                                                           \
    hs->ud[k] = any->ud;                                                                           \
  } else {                                                                                         \
    hs->fn.m = hs->script.m;                                                                       \
    hs->ud[k] = hs->script_ud;                                                                     \
  }
  SL_HOOK_MEMBERS(SL_RESOLVE)
#undef SL_RESOLVE
}

/* sl_hooks_resolve: see hooks.h. */
void sl_hooks_resolve(sl_gateway *gw) {
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    const char *name = srv->cfg->name;
    resolve_set(&srv->hooks, find_reg(gw, name, NULL), find_reg(gw, NULL, NULL));
    /* net keeps every request header only for a server whose handshakes a hook judges */
    srv->keep_headers = srv->hooks.fn.allow_request != NULL;
    for (size_t j = 0; j < srv->nns; j++) {
      sl_ns *ns = &srv->ns[j];
      resolve_set(&ns->hooks, find_reg(gw, name, ns->path), find_reg(gw, NULL, ns->path));
    }
  }
}

/* Does any server (the named one, or any with server NULL) have namespace ns (NULL: the
 * server itself)? */
static bool target_exists(const sl_gateway *gw, const char *server, const char *ns) {
  for (size_t i = 0; i < gw->nservers; i++) {
    const sl_server *srv = &gw->servers[i];
    if (server && strcmp(srv->cfg->name, server) != 0) continue;
    if (!ns) return true;
    for (size_t j = 0; j < srv->nns; j++)
      if (strcmp(srv->ns[j].path, ns) == 0) return true;
  }
  return false;
}

static bool has_server_hooks(const sluice_hooks *h) {
  return h->on_connect || h->on_disconnect || h->on_subscribe || h->on_unsubscribe ||
         h->on_overflow || h->on_retry_exhausted || h->on_start || h->client_free || h->eio_open ||
         h->eio_message || h->eio_close || h->eio_free || h->allow_request;
}

static bool has_ns_hooks(const sluice_hooks *h) {
  return h->route || h->coalesce_key || h->snapshot || h->authorize || h->client_publish ||
         h->connect || h->event;
}

/* sluice_set_hooks: see sluice.h. */
int sluice_set_hooks(sluice_t *gw, const char *server, const char *ns, const sluice_hooks *h,
                     void *ud) {
  if (h && (ns ? has_server_hooks(h) : has_ns_hooks(h))) return SL_EINVAL;
  sl_hookreg *r = (sl_hookreg *)find_reg(gw, server, ns);
  if (!h) {
    if (r) {
      free(r->server);
      free(r->ns);
      *r = gw->hookregs[--gw->nhookregs];
    }
    sl_hooks_resolve(gw);
    return 0;
  }
  if (!target_exists(gw, server, ns)) return SL_ENOENT;
  if (!r) {
    gw->hookregs = sl_xrealloc(gw->hookregs, (gw->nhookregs + 1) * sizeof *gw->hookregs);
    r = &gw->hookregs[gw->nhookregs++];
    r->server = server ? sl_xstrdup(server) : NULL;
    r->ns = ns ? sl_xstrdup(ns) : NULL;
  }
  r->h = *h;
  r->ud = ud;
  sl_hooks_resolve(gw);
  return 0;
}

static void set_script(sl_hookset *hs, const sluice_hooks *h, void *ud) {
  if (h)
    hs->script = *h;
  else
    memset(&hs->script, 0, sizeof hs->script);
  hs->script_ud = h ? ud : NULL;
}

/* sl_hooks_set_script: see hooks.h. */
int sl_hooks_set_script(sl_gateway *gw, const char *server, const char *ns, const sluice_hooks *h,
                        void *ud) {
  bool found = false;
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    if (server && strcmp(srv->cfg->name, server) != 0) continue;
    if (!ns) {
      set_script(&srv->hooks, h, ud);
      found = true;
      continue;
    }
    for (size_t j = 0; j < srv->nns; j++) {
      if (strcmp(srv->ns[j].path, ns) != 0) continue;
      set_script(&srv->ns[j].hooks, h, ud);
      found = true;
    }
  }
  sl_hooks_resolve(gw);
  return found ? 0 : SL_ENOENT;
}

/* sl_hooks_clear_script: see hooks.h. */
void sl_hooks_clear_script(sl_gateway *gw) {
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    set_script(&srv->hooks, NULL, NULL);
    for (size_t j = 0; j < srv->nns; j++) set_script(&srv->ns[j].hooks, NULL, NULL);
  }
  sl_hooks_resolve(gw);
}

/* sl_hooks_free: see hooks.h. */
void sl_hooks_free(sl_gateway *gw) {
  for (size_t i = 0; i < gw->nhookregs; i++) {
    free(gw->hookregs[i].server);
    free(gw->hookregs[i].ns);
  }
  free(gw->hookregs);
  gw->hookregs = NULL;
  gw->nhookregs = 0;
}

typedef void (*event_fn)(void *, const sluice_event *);

static event_fn event_hook(const sluice_hooks *h, int type) {
  switch (type) {
  case SLUICE_EV_CONNECT: return h->on_connect;
  case SLUICE_EV_DISCONNECT: return h->on_disconnect;
  case SLUICE_EV_SUBSCRIBE: return h->on_subscribe;
  case SLUICE_EV_UNSUBSCRIBE: return h->on_unsubscribe;
  case SLUICE_EV_OVERFLOW: return h->on_overflow;
  case SLUICE_EV_RETRY_EXHAUSTED: return h->on_retry_exhausted;
  default: return NULL;
  }
}

/* sl_hooks_event: see hooks.h. */
void sl_hooks_event(sl_server *srv, int type, sl_socket *sock, const char *topic,
                    const char *reason, const char *msgid, long retries) {
  static const char *const names[] = {"connect",     "disconnect", "subscribe",
                                      "unsubscribe", "overflow",   "retryExhausted"};
  event_fn fn = event_hook(&srv->hooks.fn, type);
  if (!fn) return;
  sluice_event ev = {.type = (sluice_event_type)type,
                     .type_name = names[type],
                     .server = srv->cfg->name,
                     .topic = topic,
                     .reason = reason,
                     .message_id = msgid,
                     .retry_count = retries,
                     .recovered = -1};
  if (sock) {
    ev.client = sock;
    ev.ns = sock->ns->path;
    ev.client_id = sock->id;
    ev.principal = sock->principal;
    ev.remote_address = sock->sess ? sock->sess->remote : "";
    ev.transport = !sock->sess                         ? "none" /* kept for recovery */
                   : sock->sess->transport == SL_TR_WS ? "websocket"
                                                       : "polling";
    if (sock->ns->cfg && sock->ns->cfg->recovery.enabled &&
        (type == SL_EV_CONNECT || type == SL_EV_DISCONNECT))
      ev.recovered = type == SL_EV_CONNECT ? sock->recovered : sock->parked == SL_PARK_KEPT;
  }
  fn(srv->hooks.ud[SL_HK_FIRST_SERVER + type], &ev);
}

/* sl_hooks_on_start: see hooks.h. */
void sl_hooks_on_start(sl_gateway *gw, bool script_only) {
  for (size_t i = 0; i < gw->nservers; i++) {
    sl_server *srv = &gw->servers[i];
    const sl_hookset *hs = &srv->hooks;
    if (!hs->fn.on_start) continue;
    if (script_only &&
        (hs->fn.on_start != hs->script.on_start || hs->ud[SL_HK_ON_START] != hs->script_ud))
      continue;
    hs->fn.on_start(hs->ud[SL_HK_ON_START], srv);
  }
}

/* Call the release hook m of kind k of srv: the effective one, then the script's unless it
 * is the same (a release is never skipped on the script side, see hooks.h). */
#define SL_CALL_RELEASE(srv, m, k, obj)                                                            \
  do {                                                                                             \
    const sl_hookset *hs_ = &(srv)->hooks;                                                         \
    if (hs_->fn.m) hs_->fn.m(hs_->ud[k], obj);                                                     \
    if (hs_->script.m && (hs_->script.m != hs_->fn.m || hs_->script_ud != hs_->ud[k]))             \
      hs_->script.m(hs_->script_ud, obj);                                                          \
  } while (0)

/* sl_hooks_client_free: see hooks.h. */
void sl_hooks_client_free(sl_server *srv, sl_socket *sock) {
  SL_CALL_RELEASE(srv, client_free, SL_HK_CLIENT_FREE, sock);
}

/* sl_hooks_eio_free: see hooks.h. */
void sl_hooks_eio_free(sl_server *srv, sl_eio_conn *conn) {
  SL_CALL_RELEASE(srv, eio_free, SL_HK_EIO_FREE, conn);
}

/* sl_hooks_route: see hooks.h. */
void sl_hooks_route(sl_ns *ns, const char *topic, const char *payload, size_t len,
                    const sl_publish_opts *opts, sluice_route_result *out) {
  sluice_message m = {.ns = ns->path,
                      .topic = topic,
                      .payload = payload,
                      .len = len,
                      .source = opts->source,
                      .from = opts->from};
  ns->hooks.fn.route(ns->hooks.ud[SL_HK_ROUTE], &m, out);
}

/* sl_hooks_route_free: see hooks.h. */
void sl_hooks_route_free(sluice_route_result *r) {
  free(r->payload_json);
  for (size_t i = 0; i < r->ntopics; i++) free(r->topics[i]);
  free(r->topics);
  for (size_t i = 0; i < r->nto; i++) free(r->to[i]);
  free(r->to);
  memset(r, 0, sizeof *r);
}
