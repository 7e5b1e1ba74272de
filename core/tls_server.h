/* tls_server.h - a WSS server's TLS context over its life (tls_server.c): built at start
 * (refusing to start when it cannot be), rebuilt on reload and when the certificate or key
 * file changes, reported in /metrics.
 *
 * Sits with reload.c above net: it owns srv->tls, which net.c reads at each accept. A new
 * context serves new handshakes; established connections keep the SSL_CTX they were made
 * from (OpenSSL refcounts it); a context that fails to build leaves the running one in
 * place, logged and counted (sluice_tls_reloads_total{result="error"}). */
#ifndef SL_TLS_SERVER_H
#define SL_TLS_SERVER_H

#include "sl_internal.h"
#include "tls.h"

/* sl_tls_server_start: for a server whose config asks for TLS, build its context and watch
 * its certificate and key files. Returns 0 (also for a plain server) or SL_ECONFIG with a
 * message naming the server, the key and the file in err: the server must not start. */
int sl_tls_server_start(sl_server *srv, char *err, size_t errlen);

/* sl_tls_server_prepare: build the context that config nc (the server's config in a reload
 * being prepared) asks for, into *out (NULL for a plain server). Returns 0, or SL_ECONFIG
 * with err set; a failure is counted as a TLS reload error and nothing changes. */
int sl_tls_server_prepare(sl_server *srv, const sl_server_config *nc, sl_tls_ctx **out, char *err,
                          size_t errlen);

/* sl_tls_server_commit: put a context from sl_tls_server_prepare in place (taking its
 * reference) once srv->cfg is the new config, count the reload and watch the (possibly new)
 * files. No-op for NULL. */
void sl_tls_server_commit(sl_server *srv, sl_tls_ctx *ctx);

/* sl_tls_server_reload: rebuild srv's context from its current config's files (what a file
 * change triggers). Returns 0 or SL_ECONFIG (the running context stays; logged, counted). */
int sl_tls_server_reload(sl_server *srv);

/* sl_tls_server_stop: close the file watches (the handles close through close_handle so
 * the gateway's stop waits for them). */
void sl_tls_server_stop(sl_server *srv, void (*close_handle)(sl_gateway *, uv_handle_t *));

/* sl_tls_server_free: drop the context and free the watch state (after the loop closed the
 * handles). */
void sl_tls_server_free(sl_server *srv);

/* sl_tls_server_metrics: append the TLS metrics of every WSS server (reloads by result,
 * certificate expiry, handshake errors) to b; nothing when no server uses TLS. */
void sl_tls_server_metrics(sl_gateway *gw, sl_sbuf *b);

#endif
