/* cors.h - the server key `cors`: which browser origins may use the Engine.IO endpoints, and
 * the CORS response headers, with the semantics of socket.io's `cors` option (the npm `cors`
 * package) (cors.c). Pure functions over the config: no I/O, no state.
 *
 * Without `cors` nothing is checked and no CORS header is ever sent (socket.io 3+).
 * With it, origins are "*" (any), exact origins ("https://app.example.com", compared byte
 * for byte as browsers serialize them), or patterns whose host starts with "*."
 * ("https://" + "*.example.com" matches "https://a.example.com" and
 * "https://a.b.example.com", not "https://example.com" nor "http://a.example.com"). */
#ifndef SL_CORS_H
#define SL_CORS_H

#include <stdbool.h>
#include "config.h"
#include "sl_util.h"

/* sl_cors_origin_ok: may a request with this Origin header be served? true when cors is
 * not configured (k->set false), when there is no Origin header (origin NULL: Node and
 * mobile clients send none), or when origin matches an entry of k->origins. */
bool sl_cors_origin_ok(const sl_cors_config *k, const char *origin);

/* sl_cors_headers: append to b the CORS headers of an actual (not preflight) response to a
 * request with this Origin (may be NULL): Access-Control-Allow-Origin ("*" when origins is
 * just "*", else the request's origin when it matches), Access-Control-Allow-Credentials
 * when configured and the origin is allowed, Vary: Origin. Nothing when cors is not set. */
void sl_cors_headers(const sl_cors_config *k, const char *origin, sl_sbuf *b);

/* sl_cors_preflight: sl_cors_headers plus the preflight's Access-Control-Allow-Methods
 * (cors.methods) and Access-Control-Allow-Headers (cors.headers, or else the request's
 * Access-Control-Request-Headers reflected, with Vary). Nothing when cors is not set or the
 * origin is not allowed (the browser then refuses the request). */
void sl_cors_preflight(const sl_cors_config *k, const char *origin, const char *req_headers,
                       sl_sbuf *b);

#endif
