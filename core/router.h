/* router.h - the top of the transport stack: which layer answers an HTTP request, and the
 * handlers that connect Engine.IO sessions to the layers above them (router.c). Installed
 * by gateway.c when it builds and starts servers. */
#ifndef SL_ROUTER_H
#define SL_ROUTER_H

#include "sl_internal.h"

/* sl_router_request: the request callback (net.h sl_request_cb) of every server's client
 * port. /socket.io/ and the configured engineIo path go to Engine.IO (sl_eio_http), any
 * other upgrade request is answered 404 and closed. The rest goes to the HTTP API
 * (sl_api_http) when the server has no `api` listener; with one, only /healthz and /readyz
 * are answered here and anything else is a JSON 404. */
void sl_router_request(sl_conn *c);

/* sl_router_api_request: the request callback of a server's `api` listener: everything
 * goes to the HTTP API (sl_api_http, which applies its rules to every path); an upgrade
 * request is answered 404 and closed. */
void sl_router_api_request(sl_conn *c);

/* sl_router_install: give srv's Engine.IO layer its handlers: Socket.IO (sl_sio_message,
 * sl_sio_session_closed, sl_session_pull) for /socket.io/ sessions, sl_eio_raw_handler for
 * the engineIo path. Call when the server is built, before it listens. */
void sl_router_install(sl_server *srv);

#endif
