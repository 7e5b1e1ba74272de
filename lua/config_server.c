/* config_server.c - validation of one server block of a config (split from config.c):
 * listen address, transport, tls, tokens, limits, engineIo, api, cors, server hooks, then
 * the namespaces (each validated by config.c's sl__config_validate_ns). Messages and check
 * order are STREAMFENCE.md 1.3's, exactly as before the split. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_config.h"
#include "sl_config_int.h"
#include "sl_config_read.h"
#include "sl_util.h"
#include "redis_link.h"

static const char *const k_server_keys[] = {"host",
                                            "port",
                                            "transport",
                                            "engineIoTransport",
                                            "auth",
                                            "spillRootPath",
                                            "tls",
                                            "namespaces",
                                            "pingIntervalMs",
                                            "pingTimeoutMs",
                                            "connectTimeoutMs",
                                            "drainTimeoutMs",
                                            "maxPayload",
                                            "socketHighWaterBytes",
                                            "socketSendBufferBytes",
                                            "apiToken",
                                            "engineIo",
                                            "tokens",
                                            "onStart",
                                            "onConnect",
                                            "onDisconnect",
                                            "onSubscribe",
                                            "onUnsubscribe",
                                            "onOverflow",
                                            "onRetryExhausted",
                                            "tokensFile",
                                            "api",
                                            "cors",
                                            "allowRequest",
                                            "luaWatchdogMs",
                                            "maxConnections",
                                            "maxConnectionsPerAddress",
                                            "maxSessions",
                                            "maxHandshakesPerSecondPerAddress",
                                            "maxInboundBufferBytes",
                                            "partialMessageTimeoutMs",
                                            "limitLoopback",
                                            "flushIntervalMs",
                                            "cluster",
                                            NULL};
static const char *const k_tls_keys[] = {"certChainPemPath", "privateKeyPemPath", "protocol",
                                         "privateKeyPassword", NULL};
static const char *const k_eio_keys[] = {"path", "onMessage", "onOpen", "onClose", NULL};
static const char *const k_api_keys[] = {"host", "port", "path", "hosts", NULL};
static const char *const k_cluster_keys[] = {"redis",         "streamKey",  "maxLen",
                                             "readCount",     "blockMs",    "bufferMax",
                                             "acceptEmitter", "emitterKey", NULL};
static const char *const k_cors_keys[] = {"origins", "credentials", "methods", "headers", NULL};

/* ------------------------------------------------------------------------------------- */
/* Server                                                                                 */

/* sl__config_server_init: see sl_config_int.h. */
void sl__config_server_init(sl_server_config *s) {
  memset(s, 0, sizeof *s);
  s->eio_on_message_ref = s->eio_on_open_ref = s->eio_on_close_ref = SL_NOREF;
  s->on_start_ref = s->on_connect_ref = s->on_disconnect_ref = SL_NOREF;
  s->on_subscribe_ref = s->on_unsubscribe_ref = s->on_overflow_ref = SL_NOREF;
  s->on_retry_exhausted_ref = SL_NOREF;
  s->allow_request_ref = SL_NOREF;
}

static const char *const k_transport[] = {"WS", "WSS", NULL};
static const char *const k_eio_transport[] = {"WEBSOCKET_ONLY", "WEBSOCKET_OR_POLLING", NULL};
static const char *const k_auth[] = {"NONE", "TOKEN", NULL};

/* stack: unchanged. Validates the tls block (StreamFenceJs's TlsConfig checks, and every
 * key known): transport WSS needs one, WS must not have one. The files themselves are
 * loaded by the core (tls.h) at `sluice check`, start and reload. */
static int validate_tls(vctx *c, int t, bool wss, sl_server_config *s) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  int ty = sl__config_get_field(L, t, "tls");
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    if (wss)
      return sl__config_verr(
          c, "transport WSS needs a tls block (certChainPemPath, privateKeyPemPath)");
    return 0;
  }
  if (ty != LUA_TTABLE) {
    lua_pop(L, 1);
    return sl__config_verr(c, "tls must be a table");
  }
  int tt = lua_gettop(L);
  if (sl__config_reject_unknown_keys(c, tt, "tls", k_tls_keys)) goto out;
  static const char *const req[] = {"certChainPemPath", "privateKeyPemPath"};
  char *paths[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++) {
    int vt = sl__config_get_field(L, tt, req[i]);
    size_t len = 0;
    const char *v = vt == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!v || sl__config_blank(v, len)) {
      free(paths[0]);
      sl__config_verr(c, "%s is required", req[i]);
      goto out;
    }
    paths[i] = sl__config_script_path(c, v);
    lua_pop(L, 1);
  }
  sl_tls_config *tc = sl_xcalloc(1, sizeof *tc);
  tc->cert_chain = paths[0];
  tc->private_key = paths[1];
  tc->min_version = 0x0304;
  s->tls = tc;
  char *proto = NULL;
  if (sl__config_opt_string(c, tt, "protocol", &proto, "TLSv1.3")) goto out;
  if (strcmp(proto, "TLSv1.3") == 0)
    tc->min_version = 0x0304;
  else if (strcmp(proto, "TLSv1.2") == 0)
    tc->min_version = 0x0303;
  else
    sl__config_verr(c, "Invalid tls protocol \"%s\" (expected: TLSv1.3, TLSv1.2)", proto);
  free(proto);
  if (c->rc) goto out;
  if (sl__config_opt_string(c, tt, "privateKeyPassword", &tc->password, NULL)) goto out;
  if (!wss)
    sl__config_verr(
        c, "a tls block needs transport WSS (transport is WS: nothing would be encrypted)");
out:
  lua_settop(L, top);
  return c->rc;
}

/* read_tokens_file: key "tokensFile", a file with one token per line (surrounding blanks
 * trimmed; empty lines and lines starting with '#' skipped), appended to s->tokens. A
 * relative path resolves against the config file's directory. stack: unchanged. */
static int read_tokens_file(vctx *c, int t, sl_server_config *s) {
  char *file = NULL;
  if (sl__config_opt_string(c, t, "tokensFile", &file, NULL)) return c->rc;
  if (!file) return 0;
  if (!file[0]) {
    free(file);
    return sl__config_verr(c, "tokensFile must not be empty");
  }
  char *path = file;
  if (file[0] != '/' && c->dir) {
    size_t n = strlen(c->dir) + strlen(file) + 2;
    path = sl_xmalloc(n);
    snprintf(path, n, "%s/%s", c->dir, file);
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    sl__config_verr(c, "tokensFile \"%s\": %s", path, strerror(errno));
    goto done;
  }
  char line[4096];
  size_t lineno = 0, cap = s->ntokens;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
      sl__config_verr(c, "tokensFile \"%s\": line %zu is longer than %zu bytes", path, lineno,
                      sizeof line - 2);
      break;
    }
    char *p = line, *e = line + len;
    while (p < e && isspace((unsigned char)*p)) p++;
    while (e > p && isspace((unsigned char)e[-1])) e--;
    if (p == e || *p == '#') continue;
    if (s->ntokens == cap) {
      cap = cap ? cap * 2 : 16;
      s->tokens = sl_xrealloc(s->tokens, cap * sizeof(char *));
    }
    s->tokens[s->ntokens++] = sl_xstrndup(p, (size_t)(e - p));
  }
  fclose(f);
  if (!c->rc && s->auth_token && lineno && !s->ntokens)
    sl__config_vwarn(c, "tokensFile \"%s\" holds no tokens", path);
done:
  if (path != file) free(path);
  free(file);
  return c->rc;
}

/* stack: unchanged. */
/* engineIo = { path, onMessage, onOpen, onClose } of the server table at t.
 * Returns c->rc. stack: unchanged */
static int validate_eio(vctx *c, int t, sl_server_config *s) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  int ty = sl__config_get_field(L, t, "engineIo");
  if (ty != LUA_TNIL) {
    int et = lua_gettop(L);
    if (ty != LUA_TTABLE) {
      sl__config_verr(c, "engineIo must be a table");
      goto out;
    }
    sl__config_warn_unknown_keys(c, et, "engineIo", k_eio_keys);
    if (sl__config_opt_string(c, et, "path", &s->eio_path, NULL)) goto out;
    if (!s->eio_path || s->eio_path[0] != '/') {
      sl__config_verr(c, "engineIo.path must start with '/'");
      goto out;
    }
    if (strncmp(s->eio_path, "/socket.io", 10) == 0 &&
        (s->eio_path[10] == 0 || s->eio_path[10] == '/')) {
      sl__config_verr(c, "engineIo.path must not be /socket.io/ (that is the Socket.IO endpoint)");
      goto out;
    }
    if (sl__config_opt_hook(c, et, "onMessage", &s->eio_on_message_ref, NULL)) goto out;
    if (s->eio_on_message_ref == SL_NOREF) {
      sl__config_verr(c, "engineIo.onMessage is required");
      goto out;
    }
    if (sl__config_opt_hook(c, et, "onOpen", &s->eio_on_open_ref, NULL)) goto out;
    if (sl__config_opt_hook(c, et, "onClose", &s->eio_on_close_ref, NULL)) goto out;
  }
out:
  lua_settop(L, top);
  return c->rc;
}

/* api = { host, port, path, hosts } of the server table at t: a listener of its own for the
 * HTTP API (TCP host:port, or a Unix socket path), and the Host names it accepts.
 * Returns c->rc. stack: unchanged */
static int validate_api(vctx *c, int t, sl_server_config *s) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  int ty = sl__config_get_field(L, t, "api");
  int at = lua_gettop(L);
  if (ty == LUA_TNIL) goto out;
  if (ty != LUA_TTABLE) {
    sl__config_verr(c, "api must be a table ({ host = \"127.0.0.1\", port = 9090 } or { path = "
                       "\"/run/sluice.sock\" })");
    goto out;
  }
  c->block = "api";
  if (sl__config_reject_unknown_keys(c, at, "api", k_api_keys)) goto out;
  sl_api_config *a = &s->api;
  if (sl__config_opt_string(c, at, "path", &a->path, NULL)) goto out;
  bool has_port = sl__config_get_field(L, at, "port") != LUA_TNIL;
  bool has_host = sl__config_get_field(L, at, "host") != LUA_TNIL;
  lua_pop(L, 2);
  if (a->path) {
    if (!a->path[0]) {
      sl__config_verr(c, "path must not be empty");
      goto out;
    }
    if (has_port || has_host) {
      sl__config_verr(c, "path (a Unix socket) and host/port exclude each other");
      goto out;
    }
    if (strlen(a->path) >= 100) {
      sl__config_verr(c, "path \"%s\" is too long for a Unix socket (at most 99 bytes)", a->path);
      goto out;
    }
    a->listen = true;
  }
  if (sl__config_opt_string(c, at, "host", &a->host, "127.0.0.1")) goto out;
  int64_t port = 0;
  if (sl__config_opt_int(c, at, "port", &port, 0)) goto out;
  if (port < 0 || port > 65535) {
    sl__config_verr(c, "port must be between 0 and 65535");
    goto out;
  }
  if (has_host && !has_port) {
    sl__config_verr(c, "port is required with host (0 lets the OS pick one)");
    goto out;
  }
  a->port = (int)port;
  if (has_port) a->listen = true;
  if (sl__config_opt_string_list(c, at, "hosts", &a->hosts, &a->nhosts)) goto out;
  for (size_t i = 0; i < a->nhosts; i++)
    if (!a->hosts[i][0] || strpbrk(a->hosts[i], " /\t")) {
      sl__config_verr(c, "hosts[%zu] \"%s\" must be a host name (optionally with :port)", i + 1,
                      a->hosts[i]);
      goto out;
    }
out:
  c->block = NULL;
  lua_settop(L, top);
  return c->rc;
}

/* A non-empty string option of the cluster block (def when absent). Returns c->rc. */
static int cluster_string(vctx *c, int t, const char *key, char **out, const char *def) {
  if (sl__config_opt_string(c, t, key, out, def)) return c->rc;
  if (!(*out)[0] || strchr(*out, ' '))
    return sl__config_verr(c, "%s must be a non-empty name without spaces", key);
  return 0;
}

/* cluster = { redis, streamKey, maxLen, readCount, blockMs, bufferMax, acceptEmitter,
 * emitterKey } of the server table at t (cluster.h). Unknown keys are errors; a bad URL is
 * an error naming what is wrong with it. Returns c->rc. stack: unchanged */
static int validate_cluster(vctx *c, int t, sl_server_config *s) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  int ty = sl__config_get_field(L, t, "cluster");
  int at = lua_gettop(L);
  if (ty == LUA_TNIL) goto out;
  if (ty != LUA_TTABLE) {
    sl__config_verr(c, "cluster must be a table ({ redis = \"redis://127.0.0.1:6379\" })");
    goto out;
  }
  c->block = "cluster";
  if (sl__config_reject_unknown_keys(c, at, "cluster", k_cluster_keys)) goto out;
  sl_cluster_config *k = sl_xcalloc(1, sizeof *k);
  s->cluster = k;
  if (sl__config_opt_string(c, at, "redis", &k->redis, NULL)) goto out;
  if (!k->redis) {
    sl__config_verr(c, "redis is required (\"redis://host:port[/db]\")");
    goto out;
  }
  sl_redis_url u;
  char err[512];
  if (sl_redis_url_parse(k->redis, &u, err, sizeof err) != 0) {
    sl__config_verr(c, "redis: %s", err);
    goto out;
  }
  sl_redis_url_free(&u);
  if (cluster_string(c, at, "streamKey", &k->stream_key, "socket.io")) goto out;
  if (cluster_string(c, at, "emitterKey", &k->emitter_key, "socket.io")) goto out;
  const struct {
    const char *key;
    int64_t *dst, def, min, max;
  } nums[] = {
      {"maxLen", &k->max_len, 10000, 1, INT64_C(1) << 40},
      {"readCount", &k->read_count, 100, 1, 100000},
      {"blockMs", &k->block_ms, 5000, 1, 600000},
      {"bufferMax", &k->buffer_max, 10000, 0, 10000000},
  };
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    if (sl__config_opt_int(c, at, nums[i].key, nums[i].dst, nums[i].def)) goto out;
    if (*nums[i].dst < nums[i].min || *nums[i].dst > nums[i].max) {
      sl__config_verr(c, "%s must be between %lld and %lld", nums[i].key, (long long)nums[i].min,
                      (long long)nums[i].max);
      goto out;
    }
  }
  if (sl__config_opt_bool(c, at, "acceptEmitter", &k->accept_emitter, false)) goto out;
out:
  c->block = NULL;
  lua_settop(L, top);
  return c->rc;
}

/* A cors origin entry: "*", or scheme://host[:port] with no path, where host may start with
 * "*." (any subdomain). */
static bool origin_entry_ok(const char *o) {
  if (strcmp(o, "*") == 0) return true;
  const char *p = strstr(o, "://");
  if (!p || p == o) return false;
  for (const char *q = o; q < p; q++)
    if (!isalnum((unsigned char)*q) && *q != '+' && *q != '-' && *q != '.') return false;
  p += 3;
  if (strncmp(p, "*.", 2) == 0) p += 2;
  if (!*p) return false;
  for (; *p; p++)
    if (*p == '/' || *p == '*' || *p == '?' || *p == '#' || isspace((unsigned char)*p))
      return false;
  return true;
}

/* A string, or a list of strings joined with ",", into *out (NULL when absent).
 * stack: unchanged. */
static int opt_string_or_list(vctx *c, int t, const char *key, char **out) {
  lua_State *L = c->L;
  *out = NULL;
  int ty = sl__config_get_field(L, t, key);
  lua_pop(L, 1);
  if (ty == LUA_TNIL) return 0;
  if (ty == LUA_TSTRING) return sl__config_opt_string(c, t, key, out, NULL);
  char **v = NULL;
  size_t n = 0;
  if (ty != LUA_TTABLE) return sl__config_verr(c, "%s must be a string or a list of strings", key);
  if (sl__config_opt_string_list(c, t, key, &v, &n)) return c->rc;
  size_t len = 1;
  for (size_t i = 0; i < n; i++) len += strlen(v[i]) + 1;
  *out = sl_xcalloc(1, len);
  for (size_t i = 0; i < n; i++) {
    if (i) strcat(*out, ",");
    strcat(*out, v[i]);
    free(v[i]);
  }
  free(v);
  return 0;
}

/* cors = { origins, credentials, methods, headers } of the server table at t (socket.io's
 * cors option). Returns c->rc. stack: unchanged */
static int validate_cors(vctx *c, int t, sl_server_config *s) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  int ty = sl__config_get_field(L, t, "cors");
  int ct = lua_gettop(L);
  if (ty == LUA_TNIL) goto out;
  if (ty != LUA_TTABLE) {
    sl__config_verr(c, "cors must be a table ({ origins = { \"https://app.example.com\" } })");
    goto out;
  }
  c->block = "cors";
  if (sl__config_reject_unknown_keys(c, ct, "cors", k_cors_keys)) goto out;
  sl_cors_config *k = &s->cors;
  k->set = true;
  int oty = sl__config_get_field(L, ct, "origins");
  lua_pop(L, 1);
  if (oty == LUA_TNIL) {
    sl__config_verr(c, "origins is required (a list of origins, or \"*\" for any)");
    goto out;
  }
  if (oty == LUA_TSTRING) {
    k->origins = sl_xcalloc(1, sizeof(char *));
    if (sl__config_opt_string(c, ct, "origins", &k->origins[0], NULL)) goto out;
    k->norigins = 1;
  } else if (sl__config_opt_string_list(c, ct, "origins", &k->origins, &k->norigins)) {
    goto out;
  }
  for (size_t i = 0; i < k->norigins; i++)
    if (!origin_entry_ok(k->origins[i])) {
      sl__config_verr(
          c,
          "origins[%zu] \"%s\" is not an origin (\"*\", or scheme://host[:port] without a "
          "path; the host may start with \"*.\")",
          i + 1, k->origins[i]);
      goto out;
    }
  if (sl__config_opt_bool(c, ct, "credentials", &k->credentials, false)) goto out;
  if (opt_string_or_list(c, ct, "methods", &k->methods)) goto out;
  if (!k->methods) k->methods = sl_xstrdup("GET,HEAD,PUT,PATCH,POST,DELETE");
  if (opt_string_or_list(c, ct, "headers", &k->headers)) goto out;
  for (const char *p = k->methods; *p; p++)
    if (*p == '\r' || *p == '\n') {
      sl__config_verr(c, "methods must not contain line breaks");
      goto out;
    }
  for (const char *p = k->headers ? k->headers : ""; *p; p++)
    if (*p == '\r' || *p == '\n') {
      sl__config_verr(c, "headers must not contain line breaks");
      goto out;
    }
out:
  c->block = NULL;
  lua_settop(L, top);
  return c->rc;
}

/* The namespaces list of the server table at t (paths checked for duplicates first, then
 * each namespace validated), and auth TOKEN's need for tokens or authorize hooks.
 * Returns c->rc. stack: unchanged */
static int validate_namespaces(vctx *c, int t, sl_server_config *s) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  /* namespaces: a list; StreamFenceJs crashes with a TypeError when it is missing. */
  int ty = sl__config_get_field(L, t, "namespaces");
  int nt = lua_gettop(L);
  if (ty == LUA_TNIL) {
    sl__config_verr(c,
                    "server must define \"namespaces\" (a list of namespaces, each with a path and "
                    "topics)");
    goto out;
  }
  if (ty != LUA_TTABLE || !sl__config_is_list(L, nt)) {
    sl__config_verr(c, "namespaces must be a list of namespaces, each with a path and topics");
    goto out;
  }
  size_t nns = lua_objlen(L, nt);
  if (nns == 0) {
    sl__config_verr(c, "StreamFenceServer requires at least one namespace");
    goto out;
  }
  /* Paths first: duplicates are reported before any namespace is validated. */
  for (size_t i = 0; i < nns; i++) {
    lua_rawgeti(L, nt, (int)i + 1);
    c->ns_index = (int)i + 1;
    c->at_table = lua_topointer(L, lua_istable(L, -1) ? -1 : nt); /* for the line */
    c->at_key = "path";
    c->at_exact = false;
    if (!lua_istable(L, -1)) {
      sl__config_verr(c, "namespace must be a table with a path and topics");
      goto out;
    }
    int pty = sl__config_get_field(L, lua_gettop(L), "path");
    if (pty != LUA_TNIL && pty != LUA_TSTRING) {
      sl__config_verr(c, "path must be a string");
      goto out;
    }
    const char *p = lua_tostring(L, -1);
    for (size_t j = 0; p && j < i; j++) {
      lua_rawgeti(L, nt, (int)j + 1);
      sl__config_get_field(L, lua_gettop(L), "path");
      const char *q = lua_tostring(L, -1);
      bool dup = q && strcmp(p, q) == 0;
      lua_pop(L, 2);
      if (dup) {
        c->ns_index = 0;
        sl__config_verr(c, "Duplicate namespace path \"%s\" in server \"%s\"", p, s->name);
        goto out;
      }
    }
    lua_pop(L, 2);
  }
  s->ns = sl_xcalloc(nns, sizeof(sl_ns_config));
  for (size_t i = 0; i < nns; i++) {
    lua_rawgeti(L, nt, (int)i + 1);
    int it = lua_gettop(L);
    sl__config_get_field(L, it, "path");
    c->ns = lua_tostring(L, -1); /* anchored by the config table */
    c->ns_index = (int)i + 1;
    lua_pop(L, 1);
    sl__config_ns_init(&s->ns[i]);
    s->nns++;
    int rc = sl__config_validate_ns(c, it, &s->ns[i]);
    if (!rc) sl__config_ns_flush_interval(c, &s->ns[i], s->flush_interval_ms);
    c->ns = NULL;
    c->ns_index = 0;
    lua_pop(L, 1);
    if (rc) goto out;
  }
  /* auth TOKEN needs something to check tokens with: the static list, or authorize hooks */
  if (s->auth_token && s->ntokens == 0) {
    size_t hooked = 0;
    for (size_t i = 0; i < s->nns; i++) hooked += s->ns[i].authorize_ref != SL_NOREF;
    if (hooked == 0) {
      sl__config_verr(
          c, "auth TOKEN needs a \"tokens\" list, a \"tokensFile\" or an \"authorize\" hook "
             "in a namespace (nothing could accept a token)");
      goto out;
    }
    for (size_t i = 0; i < s->nns; i++)
      if (s->ns[i].authorize_ref == SL_NOREF)
        sl__config_vwarn(
            c,
            "namespace %s: auth TOKEN without tokens and without an authorize hook: every "
            "token is refused there",
            s->ns[i].path);
  }
out:
  lua_settop(L, top);
  return c->rc;
}

/* sl__config_validate_server: see sl_config_int.h. */
int sl__config_validate_server(vctx *c, int t, sl_server_config *s) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  int e;
  int64_t v;

  sl__config_warn_unknown_keys(c, t, "server", k_server_keys);
  if (sl__config_opt_string(c, t, "host", &s->host, "0.0.0.0")) goto out;
  bool port_overridden =
      c->listen_target && sl__config_opts.port >= 0 && strcmp(c->listen_target, s->name) == 0;
  if (sl__config_get_field(L, t, "port") == LUA_TNIL && !port_overridden) {
    sl__config_vwarn(c,
                     "no port configured: the OS will pick a random one (StreamFenceJs behaviour)");
  }
  lua_pop(L, 1);
  if (sl__config_opt_int(c, t, "port", &v, 0)) goto out;
  if (v < 0 || v > 65535) {
    sl__config_verr(c, "port must be between 0 and 65535");
    goto out;
  }
  s->port = (int)v;
  if (sl__config_opt_enum(c, t, "transport", k_transport, 0, &e,
                          "Invalid transport \"%s\" (expected: WS, WSS)", NULL))
    goto out;
  bool wss = e == 1;
  if (sl__config_opt_enum(c, t, "engineIoTransport", k_eio_transport, 1, &e,
                          "Invalid engineIoTransport \"%s\" (expected: WEBSOCKET_ONLY, "
                          "WEBSOCKET_OR_POLLING)",
                          NULL))
    goto out;
  s->websocket_only = e == 0;
  if (sl__config_opt_enum(c, t, "auth", k_auth, 0, &e,
                          "Invalid auth \"%s\" (expected: NONE, TOKEN)", NULL))
    goto out;
  s->auth_token = e == 1;
  if (validate_tls(c, t, wss, s)) goto out;
  if (sl__config_opt_string(c, t, "spillRootPath", &s->spill_root, ".streamfence-spill")) goto out;
  if (sl__config_opt_string_list(c, t, "tokens", &s->tokens, &s->ntokens)) goto out;
  for (size_t i = 0; i < s->ntokens; i++)
    if (!s->tokens[i][0]) {
      sl__config_verr(c, "tokens[%zu] must not be empty", i + 1);
      goto out;
    }
  if (read_tokens_file(c, t, s)) goto out;

  struct {
    const char *key;
    int64_t *dst;
    int64_t def;
    bool zero_ok;
  } nums[] = {
      {"pingIntervalMs", &s->ping_interval_ms, 25000, false},
      {"pingTimeoutMs", &s->ping_timeout_ms, 20000, false},
      {"connectTimeoutMs", &s->connect_timeout_ms, 45000, false},
      {"drainTimeoutMs", &s->drain_timeout_ms, 10000, true},
      {"maxPayload", &s->max_payload, 1000000, false},
      {"socketHighWaterBytes", &s->socket_high_water, 65536, false},
      {"socketSendBufferBytes", &s->socket_sndbuf, 0, true},
      {"maxConnections", &s->max_connections, 20000, false},
      {"maxConnectionsPerAddress", &s->max_conns_per_addr, 500, false},
      {"maxSessions", &s->max_sessions, 20000, false},
      {"maxHandshakesPerSecondPerAddress", &s->max_handshake_rate, 50, false},
      {"maxInboundBufferBytes", &s->max_inbound_bytes, 64 << 20, false},
      {"partialMessageTimeoutMs", &s->partial_timeout_ms, 30000, false},
      {"flushIntervalMs", &s->flush_interval_ms, 0, true},
  };
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    if (sl__config_opt_int(c, t, nums[i].key, nums[i].dst, nums[i].def)) goto out;
    if (*nums[i].dst < 0 || (*nums[i].dst == 0 && !nums[i].zero_ok)) {
      sl__config_verr(c, "%s must be positive", nums[i].key);
      goto out;
    }
  }
  if (s->flush_interval_ms > SL_FLUSH_INTERVAL_MAX_MS) {
    sl__config_verr(c, "flushIntervalMs must be between 0 (off) and %d", SL_FLUSH_INTERVAL_MAX_MS);
    goto out;
  }
  /* luaWatchdogMs: the VM is shared by every server, so the smallest one set wins */
  int64_t wd = -1;
  if (sl__config_opt_int(c, t, "luaWatchdogMs", &wd, -1)) goto out;
  if (wd != -1 && (wd < 0 || wd > 3600000)) {
    sl__config_verr(c, "luaWatchdogMs must be between 0 (off) and 3600000");
    goto out;
  }
  if (wd >= 0 && (c->server_wd < 0 || wd < c->server_wd)) c->server_wd = wd;
  if (sl__config_opt_bool(c, t, "limitLoopback", &s->limit_loopback, false)) goto out;
  if (s->max_inbound_bytes < s->max_payload)
    sl__config_vwarn(
        c,
        "maxInboundBufferBytes (%lld) is below maxPayload (%lld): a message of maxPayload "
        "bytes will always be refused",
        (long long)s->max_inbound_bytes, (long long)s->max_payload);
  if (sl__config_opt_string(c, t, "apiToken", &s->api_token, NULL)) goto out;
  if (s->api_token && !s->api_token[0]) {
    sl__config_verr(c, "apiToken must not be empty (leave it out to allow loopback peers only)");
    goto out;
  }
  if (!s->auth_token && s->ntokens)
    sl__config_vwarn(c, "tokens are only checked with auth TOKEN (auth is NONE)");

  if (validate_eio(c, t, s)) goto out;
  if (validate_api(c, t, s)) goto out;
  if (validate_cors(c, t, s)) goto out;
  if (validate_cluster(c, t, s)) goto out;
  lua_settop(L, top);

  if (sl__config_opt_hook(c, t, "onStart", &s->on_start_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "allowRequest", &s->allow_request_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "onConnect", &s->on_connect_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "onDisconnect", &s->on_disconnect_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "onSubscribe", &s->on_subscribe_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "onUnsubscribe", &s->on_unsubscribe_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "onOverflow", &s->on_overflow_ref, NULL)) goto out;
  if (sl__config_opt_hook(c, t, "onRetryExhausted", &s->on_retry_exhausted_ref, NULL)) goto out;

  if (validate_namespaces(c, t, s)) goto out;
  /* emitter ingest subscribes to <key>#<nsp>#* per namespace: with "#" in a path, one
   * namespace's pattern would also match the other's room channels (/a and /a#b), and a room
   * message would be taken (and delivered) twice */
  for (size_t j = 0; s->cluster && s->cluster->accept_emitter && j < s->nns; j++)
    if (strchr(s->ns[j].path, '#')) {
      sl__config_verr(c,
                      "namespace \"%s\": a path with \"#\" cannot be used with "
                      "cluster.acceptEmitter (the emitter's channels are <key>#<nsp>#<room>#: "
                      "its rooms would be mistaken for another namespace's)",
                      s->ns[j].path);
      goto out;
    }
out:
  lua_settop(L, top);
  return c->rc;
}
