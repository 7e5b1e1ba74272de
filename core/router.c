/* router.c - routes HTTP requests to Engine.IO or the HTTP API (see router.h). Lives above
 * net, eio and api so that none of them has to name the others. */
#include <string.h>
#include "router.h"

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
