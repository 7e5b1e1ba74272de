/* router.c - routes HTTP requests to Engine.IO or the HTTP API, and plugs Socket.IO and the
 * raw endpoint into Engine.IO (see router.h). Lives above net, eio, sio and api so that none
 * of them has to name the others. */
#include <string.h>
#include "router.h"
#include "eio_raw.h"
#include "api.h"
#include "sio.h"
#include "eio.h"
#include "lanes.h"
#include "net.h"

/* Socket.IO sessions: packets go to sio, deliveries come from the lanes. */
static void sio_closed(sl_session *s, const char *reason) { sl_sio_session_closed(s, reason); }

static const sl_eio_handler sio_handler = {
    .on_open = NULL,
    .on_message = sl_sio_message,
    .on_close = sio_closed,
    .on_pull = sl_session_pull,
};

/* sl_router_install: see router.h. */
void sl_router_install(sl_server *srv) {
  srv->eio_handlers[0] = &sio_handler;
  srv->eio_handlers[1] = &sl_eio_raw_handler;
}

static bool is_eio_path(const sl_server *srv, const char *url) {
  size_t plen = strcspn(url, "?");
  if ((plen >= 11 && strncmp(url, "/socket.io/", 11) == 0) ||
      (plen == 10 && strncmp(url, "/socket.io", 10) == 0))
    return true;
  const char *eio = srv->cfg->eio_path;
  if (!eio) return false;
  size_t el = strlen(eio) - (eio[strlen(eio) - 1] == '/');
  return plen >= el && strncmp(url, eio, el) == 0;
}

static void not_found_close(sl_conn *c) {
  sl_http_respond(c, 404, "application/json",
                  "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"not found\"}}", 51, NULL);
  c->close_after_write = 1;
  sl_conn_flush(c);
}

/* sl_router_request: see router.h. */
void sl_router_request(sl_conn *c) {
  const char *url = c->req->url.data ? c->req->url.data : "/";
  if (is_eio_path(c->srv, url)) {
    sl_eio_http(c, c->parser.upgrade);
    return;
  }
  if (c->parser.upgrade) {
    not_found_close(c);
    return;
  }
  if (!c->srv->cfg->api.listen) {
    sl_api_http(c); /* the API shares the client port */
    return;
  }
  if (!sl_api_probe(c))
    sl_http_json_error(c, 404, "NOT_FOUND", "no such endpoint (the API has a listener of its own)");
}

/* sl_router_api_request: see router.h. */
void sl_router_api_request(sl_conn *c) {
  if (c->parser.upgrade) {
    not_found_close(c);
    return;
  }
  sl_api_http(c);
}
