/* api.h - the HTTP API (api.c): POST /api/publish and /api/reload, GET /metrics (Prometheus
 * text), /api/stats, /healthz and the status page. Sits above delivery and beside the
 * router, which hands it every request that is not Engine.IO. */
#ifndef SL_API_H
#define SL_API_H

#include "net.h"

/* sl_api_http: answer the complete request on c (c->req) with a response queued on c: the
 * API paths above, a JSON 404 for anything else, 401 when the API token or the loopback rule
 * refuses. Never calls back into the caller; the connection stays owned by net. */
void sl_api_http(sl_conn *c);

#endif
