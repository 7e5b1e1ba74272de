/* api.h - the HTTP API (api.c): POST /api/publish and /api/reload, GET /metrics (Prometheus
 * text), /api/stats, the status page, and the probes /healthz and /readyz. Sits above
 * delivery and beside the router, which hands it every request that is not Engine.IO (from
 * the client port, or from the API's own listener). */
#ifndef SL_API_H
#define SL_API_H

#include "net.h"

/* sl_api_http: answer the complete request on c (c->req) with a response queued on c: the
 * API paths above, a JSON 404 for anything else. The API's rules (api.c) are applied first:
 * on the API listener (c->api) to every path, on the client port to /api/..., /metrics and /;
 * a refusal is a JSON error (401, 403 or 415) naming its rule, counted by rule. Never calls
 * back into the caller; the connection stays owned by net. */
void sl_api_http(sl_conn *c);

/* sl_api_probe: answer GET /healthz (200 while the process runs) or /readyz (200 while the
 * server listens and is not stopping, else 503 NOT_READY) with no rules (the client port
 * serves them to load balancers). Returns false, nothing sent, for any other path. */
bool sl_api_probe(sl_conn *c);

#endif
