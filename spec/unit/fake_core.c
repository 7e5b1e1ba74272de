/* fake_core.c - a recording stand-in for the core's API (core/sl_core.h), #include'd by the
 * Lua binding's tests so they exercise lua/vm.c without the network.
 *
 * It defines every sl_core.h function the binding uses, so the linker never pulls the real
 * core objects out of libsluice.a (only core/util.o, which has no such symbols). Calls are
 * recorded in fake_calls[]; tests read them and reset with fake_reset(). */
#ifndef FAKE_CORE_C
#define FAKE_CORE_C

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "sl_core.h"

struct sl_gateway {
  uv_loop_t loop;
  int publish_rc;  /* forced result for sl_publish (0 = normal) */
  int next_id;
  const char *stats;
};

struct sl_server {
  const char *name;
  int port;
};

struct sl_socket {
  char id[32];
  const char *ns;
  const char *principal;
  int lua_slot;
  bool gone;
  bool disconnected;
};

struct sl_eio_conn {
  char id[32];
  int lua_slot;
  bool closed;
};

#define FAKE_MAX_CALLS 64
typedef struct fake_call {
  char what[16];   /* "publish", "emit", "ack", "send" */
  char ns[64], topic[64], to[64], server[64];
  char json[1024]; /* payload or array text */
  size_t natts;
  char att0[64];   /* first attachment's bytes (NUL-terminated copy) */
  size_t att0_len;
  uint64_t ack_id;
  bool binary;
  int source;
} fake_call;

static fake_call fake_calls[FAKE_MAX_CALLS];
static int fake_ncalls;

__attribute__((unused)) static void fake_reset(void) {
  memset(fake_calls, 0, sizeof fake_calls);
  fake_ncalls = 0;
}

static fake_call *fake_record(const char *what) {
  if (fake_ncalls >= FAKE_MAX_CALLS) return &fake_calls[FAKE_MAX_CALLS - 1];
  fake_call *c = &fake_calls[fake_ncalls++];
  memset(c, 0, sizeof *c);
  snprintf(c->what, sizeof c->what, "%s", what);
  return c;
}

__attribute__((unused)) static void fake_gateway_init(sl_gateway *gw) {
  memset(gw, 0, sizeof *gw);
  uv_loop_init(&gw->loop);
}

__attribute__((unused)) static void fake_socket_init(sl_socket *s, const char *id, const char *ns) {
  memset(s, 0, sizeof *s);
  snprintf(s->id, sizeof s->id, "%s", id);
  s->ns = ns;
  s->lua_slot = -2; /* SL_NOREF */
}

int sl_publish(sl_gateway *gw, const char *ns, const char *topic, const char *payload_json,
               size_t len, const sl_publish_opts *opts, char *msgid) {
  if (gw->publish_rc) return gw->publish_rc;
  cJSON *j = cJSON_ParseWithLength(payload_json, len);
  if (!j) return SL_EINVAL;
  cJSON_Delete(j);
  fake_call *c = fake_record("publish");
  snprintf(c->ns, sizeof c->ns, "%s", ns);
  snprintf(c->topic, sizeof c->topic, "%s", topic);
  snprintf(c->json, sizeof c->json, "%.*s", (int)len, payload_json);
  if (opts && opts->to) snprintf(c->to, sizeof c->to, "%s", opts->to);
  if (opts && opts->server) snprintf(c->server, sizeof c->server, "%s", opts->server);
  c->source = opts ? opts->source : -1;
  if (msgid) snprintf(msgid, SL_MSGID_MAX, "msg-%d", ++gw->next_id);
  return 0;
}

uv_loop_t *sl_gateway_loop(sl_gateway *gw) { return &gw->loop; }

char *sl_gateway_stats_json(sl_gateway *gw) {
  return strdup(gw->stats ? gw->stats : "{\"clients\":2,\"namespaces\":[\"/feed\"]}");
}

const char *sl_server_name(const sl_server *srv) { return srv->name; }
int sl_server_port(const sl_server *srv) { return srv->port; }

const char *sl_socket_id(const sl_socket *s) { return s->id; }
const char *sl_socket_ns(const sl_socket *s) { return s->ns; }
const char *sl_socket_principal(const sl_socket *s) { return s->principal; }
const char *sl_socket_remote(const sl_socket *s) { (void)s; return "127.0.0.1"; }
const char *sl_socket_transport(const sl_socket *s) { (void)s; return "websocket"; }
int *sl_socket_lua_slot(sl_socket *s) { return &s->lua_slot; }

static void fake_atts(fake_call *c, const sl_bin *atts, size_t natts) {
  c->natts = natts;
  if (natts) {
    c->att0_len = atts[0].len;
    snprintf(c->att0, sizeof c->att0, "%.*s", (int)atts[0].len, (const char *)atts[0].data);
  }
}

int sl_socket_emit(sl_socket *s, const char *json_array, size_t len, const sl_bin *atts,
                   size_t natts) {
  if (s->gone) return SL_ESTATE;
  cJSON *j = cJSON_ParseWithLength(json_array, len);
  bool ok = j && cJSON_IsArray(j) && cJSON_GetArraySize(j) >= 1;
  cJSON_Delete(j);
  if (!ok) return SL_EINVAL;
  fake_call *c = fake_record("emit");
  snprintf(c->to, sizeof c->to, "%s", s->id);
  snprintf(c->json, sizeof c->json, "%.*s", (int)len, json_array);
  fake_atts(c, atts, natts);
  return 0;
}

int sl_socket_ack(sl_socket *s, uint64_t ack_id, const char *json_array, size_t len,
                  const sl_bin *atts, size_t natts) {
  if (s->gone) return SL_ESTATE;
  fake_call *c = fake_record("ack");
  snprintf(c->to, sizeof c->to, "%s", s->id);
  snprintf(c->json, sizeof c->json, "%.*s", (int)len, json_array);
  c->ack_id = ack_id;
  fake_atts(c, atts, natts);
  return 0;
}

void sl_socket_disconnect(sl_socket *s) {
  s->disconnected = true;
  fake_record("disconnect");
}

const char *sl_eio_conn_id(const sl_eio_conn *c) { return c->id; }
int *sl_eio_conn_lua_slot(sl_eio_conn *c) { return &c->lua_slot; }
int sl_eio_conn_send(sl_eio_conn *conn, const void *data, size_t len, bool binary) {
  if (conn->closed) return SL_ESTATE;
  fake_call *c = fake_record("send");
  snprintf(c->json, sizeof c->json, "%.*s", (int)len, (const char *)data);
  c->binary = binary;
  return 0;
}
void sl_eio_conn_close(sl_eio_conn *conn) {
  conn->closed = true;
  fake_record("close");
}

#endif
