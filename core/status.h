/* status.h - what the status page (GET /) shows, as JSON for GET /api/status and GET
 * /api/clients: per server, namespace and topic the counters an operator turns into rates
 * (published, delivered, dropped, overflowed, ...), queue depth, in-flight and spill bytes,
 * the gateway's reloads, Lua errors and hook timings, the process's CPU and memory; and the
 * connected clients, the slowest first. The page (core/status.html, embedded at build time
 * as sl_status_html) computes the rates from two polls. */
#ifndef SL_STATUS_H
#define SL_STATUS_H

#include <stddef.h>
#include "sl_internal.h"

/* The status page's HTML (generated from core/status.html by the Makefile). */
extern const char sl_status_html[];
extern const unsigned long sl_status_html_len;

/* sl_status_json: the counters and gauges of every server of gw as one JSON object
 * (malloc'd, NUL-terminated; the caller frees it), or NULL when out of memory. */
char *sl_status_json(sl_gateway *gw);

/* sl_status_clients_json: the connected Socket.IO clients of every server of gw, the slowest
 * first (most messages queued and in flight, then most unsent bytes), at most limit of them,
 * as {"total":N,"clients":[...]} (malloc'd; the caller frees it), or NULL when out of memory.
 * Costs one pass over every socket and lane: on demand only. */
char *sl_status_clients_json(sl_gateway *gw, size_t limit);

#endif
