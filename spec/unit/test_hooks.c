/* test_hooks.c - the hooks table (core/hooks.c, sluice_set_hooks): how C hooks and a config's
 * Lua hooks combine and what a reload keeps. A gateway from a config file whose Lua route
 * drops every message (counted in the namespace's route_dropped); a C route hook counts its
 * calls and delivers. The other kinds: C hooks with a fake polling session driven through
 * sl_sio_message (the real client layer above it) and the raw endpoint's handler. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include "sl_internal.h"
#include "sio.h"
#include "eio_raw.h"
#include "delivery.h"
#include "testlib.h"

static const char *cfg_text =
  "return { servers = { main = { host = '127.0.0.1', port = 0,\n"
  "  onConnect = function(ev) end,\n"
  "  namespaces = { { path = '/feed', topics = { 'prices' },\n"
  "                   route = function(msg) return false end } } } } }\n";

static int c_routes;
static void c_route(void *ud, const sluice_message *m, sluice_route_result *out) {
  (void)out;
  c_routes++;
  CHECK(ud == &c_routes);
  CHECK_EQ_STR(m->ns, "/feed");
  CHECK_EQ_STR(m->topic, "prices");
  CHECK_EQ_INT(m->source, SLUICE_SRC_API);
}
static void c_event(void *ud, const sluice_event *ev) { (void)ud; (void)ev; }

static char *write_cfg(void) {
  static char path[] = "/tmp/sluice-test-hooks-XXXXXX.lua";
  int fd = mkstemps(path, 4);
  if (fd < 0) return NULL;
  if (write(fd, cfg_text, strlen(cfg_text)) != (ssize_t)strlen(cfg_text)) path[0] = 0;
  close(fd);
  return path;
}

static uint64_t dropped(sluice_t *gw) { return gw->servers[0].ns[0].route_dropped; }

TEST(set_hooks_validates_its_target_and_table) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_string(&loop, cfg_text, strlen(cfg_text), "lua", err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  sluice_hooks ns = {.route = c_route}, srv = {.on_subscribe = c_event};
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, NULL, &ns, NULL), SL_EINVAL);   /* policy, no ns */
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/feed", &srv, NULL), SL_EINVAL); /* event, ns */
  CHECK_EQ_INT(sluice_set_hooks(gw, "nope", "/feed", &ns, NULL), SL_ENOENT);
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/nope", &ns, NULL), SL_ENOENT);
  CHECK_EQ_INT(gw->nhookregs, 0);
  CHECK_EQ_INT(sluice_set_hooks(gw, "main", NULL, &srv, NULL), 0);
  CHECK(gw->servers[0].hooks.fn.on_subscribe == c_event);
  /* the Lua onConnect is the script's, untouched by a C table without on_connect */
  CHECK(gw->servers[0].hooks.fn.on_connect != NULL);
  CHECK(gw->servers[0].hooks.fn.on_connect == gw->servers[0].hooks.script.on_connect);
  CHECK(gw->servers[0].hooks.fn.on_disconnect == NULL); /* set by nobody: no cost */
  CHECK_EQ_INT(sluice_set_hooks(gw, "main", NULL, NULL, NULL), 0);
  CHECK(gw->servers[0].hooks.fn.on_subscribe == NULL);
  CHECK_EQ_INT(gw->nhookregs, 0);
  sluice_stop(gw, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  sluice_free(gw);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(c_route_takes_precedence_over_lua_and_survives_a_reload) {
  char *path = write_cfg();
  CHECK(path && path[0]);
  if (!path || !path[0]) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_file(&loop, path, err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  CHECK_EQ_INT(sluice_start(gw, err, sizeof err), 0);
  /* Lua alone: its route drops */
  CHECK_EQ_INT(sluice_publish(gw, "/feed", "prices", "{\"a\":1}", 7, NULL, NULL), 0);
  CHECK_EQ_INT(dropped(gw), 1);
  /* a C route for every server's /feed replaces the Lua one */
  sluice_hooks h = {.route = c_route};
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/feed", &h, &c_routes), 0);
  CHECK_EQ_INT(sluice_publish(gw, "/feed", "prices", "{\"a\":2}", 7, NULL, NULL), 0);
  CHECK_EQ_INT(c_routes, 1);
  CHECK_EQ_INT(dropped(gw), 1);
  /* a reload replaces the Lua generation; the C registration stays in front of it */
  CHECK_EQ_INT(sluice_reload(gw, err, sizeof err), 0);
  CHECK_EQ_INT(gw->reloads_ok, 1);
  CHECK_EQ_INT(sluice_publish(gw, "/feed", "prices", "{\"a\":3}", 7, NULL, NULL), 0);
  CHECK_EQ_INT(c_routes, 2);
  CHECK_EQ_INT(dropped(gw), 1);
  /* removing it brings back the new generation's Lua route */
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/feed", NULL, NULL), 0);
  CHECK_EQ_INT(sluice_publish(gw, "/feed", "prices", "{\"a\":4}", 7, NULL, NULL), 0);
  CHECK_EQ_INT(c_routes, 2);
  CHECK_EQ_INT(dropped(gw), 2);
  /* after stop no script hook is left to call into the closed VM */
  sluice_stop(gw, NULL, NULL);
  CHECK(gw->servers[0].ns[0].hooks.fn.route == NULL);
  CHECK(gw->servers[0].hooks.fn.on_connect == NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  sluice_free(gw);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  unlink(path);
}

/* ---- every other kind, called by the core ---- */

typedef struct {
  int authorize, connect, coalesce_key, snapshot, client_publish, event, client_free;
  int eio_open, eio_message, eio_close, eio_free;
  char event_name[32], event_args[64], eio_data[32], eio_reason[32];
  sluice_eio_conn *conn;
} calls;
static calls cc;

/* token "good" is accepted as principal "p-good"; anything else is refused */
static int c_authorize(void *ud, const char *token, const char *ns, const char *topic,
                       sluice_client *c, char **principal, char *reason, size_t reasonlen) {
  cc.authorize++;
  CHECK_EQ_STR(ns, "/feed");
  CHECK(c != NULL);
  if (token && strcmp(token, "good") == 0) {
    *principal = sl_xstrdup("p-good");
    return 1;
  }
  snprintf(reason, reasonlen, "bad token for %s", topic ? topic : "CONNECT");
  return 0;
}
static int c_connect(void *ud, sluice_client *c, const char *auth_json, size_t len,
                     char *reason, size_t reasonlen) {
  cc.connect++;
  CHECK_EQ_STR(sluice_client_principal(c), "p-good"); /* after authorize */
  CHECK(auth_json != NULL);
  if (auth_json) CHECK_EQ_MEM(auth_json, len, "{\"token\":\"good\"}", 16);
  return 1;
}
/* the key is the payload's first character after {"k":" */
static char *c_coalesce_key(void *ud, const char *topic, const char *payload, size_t len,
                            char *buf, size_t cap) {
  cc.coalesce_key++;
  CHECK_EQ_STR(topic, "t");
  if (len < 7 || cap < 2) return NULL;
  buf[0] = payload[6];
  buf[1] = 0;
  return buf;
}
/* the state is the last payload; the slot counts the calls since the last reload */
static int c_snapshot(void *ud, int *slot, const char *state_json, size_t state_len,
                      const char *topic, const char *payload, size_t len, char **new_state) {
  cc.snapshot++;
  if (*slot == SLUICE_NOSLOT) {
    CHECK(state_json == NULL);
    *slot = 0;
  }
  ++*slot;
  *new_state = sl_xstrndup(payload, len);
  return 0;
}
static int c_client_publish(void *ud, sluice_client *c, const char *topic, const char *payload,
                            size_t len, char **new_payload) {
  cc.client_publish++;
  CHECK_EQ_MEM(payload, len, "1", 1);
  return 0; /* refused */
}
static void c_event_hook(void *ud, sluice_client *c, const char *name, const char *args_json,
                         size_t len, const sluice_bin *atts, size_t natts, int64_t ack_id) {
  cc.event++;
  snprintf(cc.event_name, sizeof cc.event_name, "%s", name);
  snprintf(cc.event_args, sizeof cc.event_args, "%.*s", (int)len, args_json);
  CHECK_EQ_INT(ack_id, -1);
}
static void c_client_free(void *ud, sluice_client *c) {
  cc.client_free++;
  CHECK(c != NULL);
}
static void c_eio_open(void *ud, sluice_eio_conn *c) {
  cc.eio_open++;
  cc.conn = c;
  CHECK_EQ_INT(sluice_eio_send(c, "hi", 2, 0), 0);
}
static void c_eio_message(void *ud, sluice_eio_conn *c, const uint8_t *data, size_t len,
                          int binary) {
  cc.eio_message++;
  CHECK(c == cc.conn);
  CHECK_EQ_INT(binary, 0);
  snprintf(cc.eio_data, sizeof cc.eio_data, "%.*s", (int)len, (const char *)data);
}
static void c_eio_close(void *ud, sluice_eio_conn *c, const char *reason) {
  cc.eio_close++;
  CHECK(c == cc.conn);
  snprintf(cc.eio_reason, sizeof cc.eio_reason, "%s", reason);
}
static void c_eio_free(void *ud, sluice_eio_conn *c) {
  cc.eio_free++;
  CHECK(c == cc.conn);
  CHECK_EQ_INT(cc.eio_close, 1); /* after eio_close */
}

/* The next packet queued on the fake session, as text ("" when none). */
static const char *next_out(sl_session *s) {
  static char out[512];
  out[0] = 0;
  if (!s->poll->pq.n) return out;
  sl_msg *m = sl_mq_pop(&s->poll->pq);
  snprintf(out, sizeof out, "%.*s", (int)m->len, (const char *)sl_msg_packet(m));
  sl_msg_unref(m);
  return out;
}

static void feed(sl_session *s, const char *packet) {
  sl_sio_message(s, (const uint8_t *)packet, strlen(packet), false);
}

static sl_session *fake_session(sl_server *srv) {
  sl_session *s = sl_xcalloc(1, sizeof *s);
  s->srv = srv;
  s->transport = SL_TR_POLLING;
  s->poll = sl_xcalloc(1, sizeof *s->poll);
  s->state = SL_ST_OPEN;
  s->remote = "127.0.0.1";
  sl_list_init(&s->ready);
  return s;
}

static void free_session(sl_session *s) {
  sl_mq_clear(&s->poll->pq);
  free(s->poll);
  if (s->dirty) sl_list_del(&s->dlink);
  free(s);
}

TEST(c_policy_hooks_and_client_free_are_called_by_the_core) {
  static const char cfg[] =
      "return { servers = { main = { host = '127.0.0.1', port = 0,\n"
      "  namespaces = { { path = '/feed', topics = { 't' }, authRequired = true,\n"
      "                   coalesce = true, clientPublish = true } } } } }\n";
  memset(&cc, 0, sizeof cc);
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_string(&loop, cfg, strlen(cfg), "lua", err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  sluice_hooks ns = {.authorize = c_authorize, .connect = c_connect,
                     .coalesce_key = c_coalesce_key, .snapshot = c_snapshot,
                     .client_publish = c_client_publish, .event = c_event_hook};
  sluice_hooks srvh = {.client_free = c_client_free};
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/feed", &ns, NULL), 0);
  CHECK_EQ_INT(sluice_set_hooks(gw, "main", NULL, &srvh, NULL), 0);
  /* the config's client_free (the Lua boxes) stays beside the C one */
  CHECK(gw->servers[0].hooks.script.client_free != NULL);
  sl_session *s = fake_session(&gw->servers[0]);

  /* a refused CONNECT: authorize says no, connect is not asked, the socket is released */
  feed(s, "0/feed,{\"token\":\"bad\"}");
  CHECK_EQ_INT(cc.authorize, 1);
  CHECK_EQ_INT(cc.connect, 0);
  CHECK_EQ_INT(cc.client_free, 1);
  CHECK(strstr(next_out(s), "44/feed,{\"message\":\"bad token for CONNECT\"") != NULL);

  feed(s, "0/feed,{\"token\":\"good\"}");
  CHECK_EQ_INT(cc.authorize, 2);
  CHECK_EQ_INT(cc.connect, 1);
  CHECK(strncmp(next_out(s), "40/feed,{\"sid\":", 15) == 0);
  CHECK(s->sockets != NULL);
  if (!s->sockets) return;

  /* subscribe asks authorize for the topic (the CONNECT token) */
  feed(s, "2/feed,[\"subscribe\",{\"topic\":\"t\"}]");
  CHECK_EQ_INT(cc.authorize, 3);
  CHECK(s->sockets->lanes != NULL);
  if (!s->sockets->lanes) return;

  /* keyed coalescing: a, b, a -> the second a replaces the first, b stays */
  const char *msgs[] = {"{\"k\":\"a\",\"n\":1}", "{\"k\":\"b\",\"n\":2}", "{\"k\":\"a\",\"n\":3}"};
  for (int i = 0; i < 3; i++)
    CHECK_EQ_INT(sluice_publish(gw, "/feed", "t", msgs[i], strlen(msgs[i]), NULL, NULL), 0);
  CHECK_EQ_INT(cc.coalesce_key, 3);
  CHECK_EQ_INT(s->sockets->lanes->qn, 2);
  sl_topic *t = sl_topic_find(&gw->servers[0].ns[0], "t", 1);
  CHECK_EQ_INT(cc.snapshot, 3);
  CHECK_EQ_INT(t->snap_slot, 3);
  CHECK_EQ_STR(t->snap_json, msgs[2]);

  /* client publish refused by the hook; an application event reaches the event hook */
  feed(s, "2/feed,[\"publish\",{\"topic\":\"t\",\"payload\":1}]");
  CHECK_EQ_INT(cc.client_publish, 1);
  CHECK_EQ_INT(cc.coalesce_key, 3); /* nothing was published */
  feed(s, "2/feed,[\"hello\",1,\"x\"]");
  CHECK_EQ_INT(cc.event, 1);
  CHECK_EQ_STR(cc.event_name, "hello");
  CHECK_EQ_STR(cc.event_args, "[1,\"x\"]");

  /* the session goes: its socket is released */
  CHECK_EQ_INT(cc.client_free, 1);
  sl_sio_session_closed(s, "transport close");
  CHECK_EQ_INT(cc.client_free, 2);
  sl_sio_free_dead(gw);
  free_session(s);
  sluice_stop(gw, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  sluice_free(gw);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(c_raw_engine_io_hooks_are_called_by_the_core) {
  static const char cfg[] =
      "return { servers = { main = { host = '127.0.0.1', port = 0,\n"
      "  namespaces = { { path = '/feed', topics = { 't' } } } } } }\n";
  memset(&cc, 0, sizeof cc);
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_string(&loop, cfg, strlen(cfg), "lua", err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  sluice_hooks h = {.eio_open = c_eio_open, .eio_message = c_eio_message,
                    .eio_close = c_eio_close, .eio_free = c_eio_free};
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/feed", &h, NULL), SL_EINVAL); /* server kinds */
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, NULL, &h, NULL), 0);
  sl_session *s = fake_session(&gw->servers[0]);
  snprintf(s->sid, sizeof s->sid, "sid-1");
  sl_eio_raw_handler.on_open(s);
  CHECK_EQ_INT(cc.eio_open, 1);
  CHECK_EQ_STR(sluice_eio_id(cc.conn), "sid-1");
  CHECK_EQ_STR(next_out(s), "4hi");
  sl_eio_raw_handler.on_message(s, (const uint8_t *)"ping!", 5, false);
  CHECK_EQ_INT(cc.eio_message, 1);
  CHECK_EQ_STR(cc.eio_data, "ping!");
  sl_eio_raw_handler.on_close(s, "transport close");
  CHECK_EQ_INT(cc.eio_close, 1);
  CHECK_EQ_STR(cc.eio_reason, "transport close");
  CHECK_EQ_INT(cc.eio_free, 1);
  CHECK(s->eio == NULL);
  free_session(s);
  sluice_stop(gw, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  sluice_free(gw);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* ---- allow_request: a real handshake over TCP on the gateway's own loop ---- */

static struct {
  int calls;
  char method[8], path[32], query[64], remote[64], ua[32];
  size_t nheaders;
} ar;

static int c_allow_request(void *ud, const sluice_request *req, int *status, char *message,
                           size_t msglen) {
  ar.calls++;
  CHECK(ud == &ar);
  snprintf(ar.method, sizeof ar.method, "%s", req->method);
  snprintf(ar.path, sizeof ar.path, "%s", req->path);
  snprintf(ar.query, sizeof ar.query, "%s", req->query);
  snprintf(ar.remote, sizeof ar.remote, "%s", req->remote_address);
  ar.nheaders = req->nheaders;
  for (size_t i = 0; i < req->nheaders; i++)
    if (strcmp(req->headers[2 * i], "x-agent") == 0)
      snprintf(ar.ua, sizeof ar.ua, "%s", req->headers[2 * i + 1]);
  CHECK_EQ_INT(*status, 403);
  CHECK_EQ_STR(message, "Forbidden");
  if (strstr(req->query, "deny")) {
    *status = 429;
    snprintf(message, msglen, "slow \"down\"");
    return 0;
  }
  return 1;
}

typedef struct http_probe {
  uv_tcp_t tcp;
  uv_connect_t conn;
  uv_write_t wr;
  const char *request;
  char resp[2048];
  size_t len;
  bool done;
} http_probe;

static void probe_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  http_probe *p = h->data;
  (void)sz;
  b->base = p->resp + p->len;
  b->len = sizeof p->resp - 1 - p->len;
}
static void probe_closed(uv_handle_t *h) { ((http_probe *)h->data)->done = true; }
static void probe_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  http_probe *p = st->data;
  (void)b;
  if (n > 0) p->len += (size_t)n;
  p->resp[p->len] = 0;
  /* one response is enough: its body is the last JSON object */
  if (n < 0 || (p->len && strstr(p->resp, "\r\n\r\n") && p->resp[p->len - 1] == '}'))
    if (!uv_is_closing((uv_handle_t *)st)) uv_close((uv_handle_t *)st, probe_closed);
}
static void probe_connected(uv_connect_t *c, int status) {
  http_probe *p = c->data;
  CHECK_EQ_INT(status, 0);
  uv_buf_t b = uv_buf_init((char *)p->request, (unsigned)strlen(p->request));
  uv_write(&p->wr, (uv_stream_t *)&p->tcp, &b, 1, NULL);
  uv_read_start((uv_stream_t *)&p->tcp, probe_alloc, probe_read);
}

/* One request to 127.0.0.1:port on loop; returns the raw response text. */
static const char *http_once(uv_loop_t *loop, int port, const char *request, http_probe *p) {
  memset(p, 0, sizeof *p);
  p->request = request;
  uv_tcp_init(loop, &p->tcp);
  p->tcp.data = p;
  p->conn.data = p;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_connect(&p->conn, &p->tcp, (const struct sockaddr *)&a, probe_connected);
  for (int i = 0; i < 2000 && !p->done; i++) uv_run(loop, UV_RUN_ONCE);
  return p->resp;
}

TEST(c_allow_request_judges_handshakes_with_every_header) {
  static const char cfg[] =
      "return { servers = { main = { host = '127.0.0.1', port = 0,\n"
      "  allowRequest = function(req) return false end,\n"
      "  namespaces = { { path = '/feed', topics = { 't' } } } } } }\n";
  memset(&ar, 0, sizeof ar);
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_string(&loop, cfg, strlen(cfg), "lua", err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  /* the config's allowRequest refuses everything; the C hook takes precedence */
  CHECK(gw->servers[0].keep_headers);
  sluice_hooks h = {.allow_request = c_allow_request};
  CHECK_EQ_INT(sluice_set_hooks(gw, NULL, "/feed", &h, &ar), SL_EINVAL); /* a server kind */
  CHECK_EQ_INT(sluice_set_hooks(gw, "main", NULL, &h, &ar), 0);
  CHECK_EQ_INT(sluice_start(gw, err, sizeof err), 0);
  int port = sluice_port(gw, 0);
  http_probe p;
  const char *r = http_once(&loop, port,
                            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
                            "X-Agent: unit\r\nConnection: close\r\n\r\n", &p);
  CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
  CHECK(strstr(r, "0{\"sid\"") != NULL);
  CHECK_EQ_INT(ar.calls, 1);
  CHECK_EQ_STR(ar.method, "GET");
  CHECK_EQ_STR(ar.path, "/socket.io/");
  CHECK_EQ_STR(ar.query, "EIO=4&transport=polling");
  CHECK_EQ_STR(ar.remote, "127.0.0.1");
  CHECK_EQ_STR(ar.ua, "unit");
  CHECK_EQ_INT(ar.nheaders, 3);
  r = http_once(&loop, port,
                "GET /socket.io/?EIO=4&transport=polling&deny=1 HTTP/1.1\r\nHost: x\r\n"
                "Connection: close\r\n\r\n", &p);
  CHECK(strncmp(r, "HTTP/1.1 429", 12) == 0);
  CHECK(strstr(r, "{\"code\":4,\"message\":\"slow \\\"down\\\"\"}") != NULL);
  CHECK_EQ_INT(ar.calls, 2);
  /* without any allow_request hook, net keeps no header list */
  CHECK_EQ_INT(sluice_set_hooks(gw, "main", NULL, NULL, NULL), 0);
  CHECK(gw->servers[0].keep_headers); /* the config's hook is back */
  sluice_stop(gw, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  sluice_free(gw);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  RUN(set_hooks_validates_its_target_and_table);
  RUN(c_route_takes_precedence_over_lua_and_survives_a_reload);
  RUN(c_policy_hooks_and_client_free_are_called_by_the_core);
  RUN(c_raw_engine_io_hooks_are_called_by_the_core);
  RUN(c_allow_request_judges_handshakes_with_every_header);
  return tl_report();
}
