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
static void sio_closed(sl_session *s, const char *reason) {
  (void)reason;
  sl_sio_session_closed(s);
}

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

/* sl_router_request: see router.h. */
void sl_router_request(sl_conn *c) {
  sl_req *r = c->req;
  const char *url = r->url.data ? r->url.data : "/";
  size_t plen = strcspn(url, "?");
  const char *eio = c->srv->cfg->eio_path;
  if ((plen >= 11 && strncmp(url, "/socket.io/", 11) == 0) || (plen == 10 && strncmp(url, "/socket.io", 10) == 0) ||
      (eio && plen >= strlen(eio) - (eio[strlen(eio) - 1] == '/') &&
       strncmp(url, eio, strlen(eio) - (eio[strlen(eio) - 1] == '/')) == 0)) {
    sl_eio_http(c, c->parser.upgrade);
    return;
  }
  if (c->parser.upgrade) {
    sl_http_respond(c, 404, "application/json",
                    "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"not found\"}}", 51, NULL);
    c->close_after_write = 1;
    sl_conn_flush(c);
    return;
  }
  sl_api_http(c);
}
