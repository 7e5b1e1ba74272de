/* sluice.h - embedding API of Sluice, a Lua-scriptable Socket.IO delivery gateway.
 *
 * A program creates a gateway from a config file or string, runs it on its own uv_loop_t,
 * publishes from C, and stops it:
 *
 *   uv_loop_t *loop = uv_default_loop();
 *   char err[512];
 *   sluice_t *gw = sluice_new_from_file(loop, "gateway.lua", err, sizeof err);
 *   if (!gw) { fprintf(stderr, "%s\n", err); return 1; }
 *   if (sluice_start(gw, err, sizeof err) != 0) { ... }
 *   sluice_publish(gw, "/feed", "prices", "{\"p\":1}", 7, NULL, NULL);
 *   uv_run(loop, UV_RUN_DEFAULT);     // until sluice_stop() and its handles are closed
 *   sluice_free(gw);
 *
 * Every function must be called on the loop's thread. Errors are negative SL_E* codes
 * (see sl_util.h; sluice_strerror turns them into text). */
#ifndef SLUICE_H
#define SLUICE_H

#include <stddef.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_VERSION "0.1.0"

typedef struct sl_gateway sluice_t;

/* sluice_new_from_file: load and validate a config (.lua, .json, .yaml, .yml). Returns NULL
 * on error with a one-line message in err (file, server, namespace, key). The gateway does
 * not listen until sluice_start. loop must outlive the gateway. */
sluice_t *sluice_new_from_file(uv_loop_t *loop, const char *path, char *err, size_t errlen);

/* sluice_new_from_string: the same from text; fmt is "lua", "json" or "yaml". */
sluice_t *sluice_new_from_string(uv_loop_t *loop, const char *text, size_t len, const char *fmt,
                                 char *err, size_t errlen);

/* sluice_select_server: keep only the named server (call before start, repeatable: the
 * union of the named ones is kept). Returns 0 or -3 (no such server). */
int sluice_select_server(sluice_t *gw, const char *name);

/* sluice_start: bind every server, then run onStart hooks. Returns 0 or a negative code
 * with a message in err (e.g. the port is in use). */
int sluice_start(sluice_t *gw, char *err, size_t errlen);

/* sluice_port: the bound port of the server at index i (0-based), or -1. */
int sluice_port(const sluice_t *gw, size_t i);

/* sluice_publish: publish JSON text on (namespace, topic); to = client id or NULL.
 * msgid (may be NULL) receives the message id (at least 48 bytes). Returns 0 or SL_E*. */
int sluice_publish(sluice_t *gw, const char *ns, const char *topic, const char *json, size_t len,
                   const char *to, char *msgid);

/* sluice_handle_signals: stop gracefully on SIGINT/SIGTERM (and reload on SIGHUP when
 * supported). Optional: an embedder may handle signals itself. */
void sluice_handle_signals(sluice_t *gw);

/* sluice_reload: load the config file again into a fresh Lua VM and, if it is valid, swap
 * it in without dropping a connection (see README "Hot reload"). On failure the running
 * config stays and err says why. Returns 0 or a negative code. */
int sluice_reload(sluice_t *gw, char *err, size_t errlen);

/* sluice_watch_config: reload automatically when a file in the config's directory (or its
 * scripts/ subdirectory) changes. Returns 0 or a negative libuv error. */
int sluice_watch_config(sluice_t *gw);

/* sluice_stop: stop accepting, close every connection and timer. The loop then runs out of
 * the gateway's handles; cb (may be NULL) is called once they are all closed. Idempotent. */
void sluice_stop(sluice_t *gw, void (*cb)(sluice_t *, void *), void *arg);

/* sluice_free: release a stopped gateway (after uv_run returned or cb was called). */
void sluice_free(sluice_t *gw);

const char *sluice_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
