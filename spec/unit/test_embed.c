/* test_embed.c - embeds Sluice the way a C program would (core/sluice.h only): create from a
 * config string, run on our own uv loop, connect a WebSocket client over real TCP, publish
 * from C, receive the delivery, stop cleanly. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <uv.h>
#include "sluice.h"
#include "testlib.h"

static const char *lua_cfg =
  "return { servers = { main = { host = '127.0.0.1', port = 0,\n"
  "  namespaces = { { path = '/feed', topics = { 'prices' } } } } } }\n";

/* ---- a tiny WebSocket client on the same loop ---- */
typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  char in[65536];
  size_t inlen;
  int stage; /* 0 handshake sent, 1 open seen, 2 joined, 3 subscribed */
  char delivery[1100];
  sluice_t *gw;
  int published;
} wsclient;

static void on_write(uv_write_t *w, int status) {
  (void)status;
  free(w->data);
  free(w);
}

static void send_raw(wsclient *c, const void *p, size_t n) {
  uv_write_t *w = malloc(sizeof *w);
  char *copy = malloc(n);
  memcpy(copy, p, n);
  w->data = copy;
  uv_buf_t b = uv_buf_init(copy, (unsigned)n);
  uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
}

static void send_text(wsclient *c, const char *text) {
  size_t n = strlen(text);
  uint8_t f[256];
  f[0] = 0x81;
  f[1] = (uint8_t)(0x80 | n);
  uint8_t mask[4] = {1, 2, 3, 4};
  memcpy(f + 2, mask, 4);
  for (size_t i = 0; i < n; i++) f[6 + i] = (uint8_t)text[i] ^ mask[i % 4];
  send_raw(c, f, 6 + n);
}

static void alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *b) {
  (void)s;
  wsclient *c = h->data;
  b->base = c->in + c->inlen;
  b->len = sizeof c->in - c->inlen - 1;
}

/* Parse whole unmasked server frames from c->in; returns the text of each in turn. */
static int next_frame(wsclient *c, char *out, size_t outlen) {
  size_t off = 0;
  if (c->stage == 0) {
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end) return 0;
    off = (size_t)(end + 4 - c->in);
  }
  if (c->inlen < off + 2) return 0;
  uint8_t *p = (uint8_t *)c->in + off;
  size_t len = p[1] & 0x7f, hl = 2;
  if (len == 126) {
    if (c->inlen < off + 4) return 0;
    len = ((size_t)p[2] << 8) | p[3];
    hl = 4;
  }
  if (c->inlen < off + hl + len) return 0;
  size_t n = len < outlen - 1 ? len : outlen - 1;
  memcpy(out, p + hl, n);
  out[n] = 0;
  memmove(c->in, c->in + off + hl + len, c->inlen - off - hl - len);
  c->inlen -= off + hl + len;
  c->in[c->inlen] = 0;
  return 1;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  (void)b;
  wsclient *c = s->data;
  if (nread < 0) {
    uv_close((uv_handle_t *)&c->tcp, NULL);
    return;
  }
  c->inlen += (size_t)nread;
  c->in[c->inlen] = 0;
  char f[1024];
  while (next_frame(c, f, sizeof f)) {
    if (c->stage == 0 && f[0] == '0') {
      c->stage = 1;
      send_text(c, "40/feed,");
    } else if (c->stage == 1 && strncmp(f, "40/feed,", 8) == 0) {
      c->stage = 2;
      send_text(c, "42/feed,1[\"subscribe\",{\"topic\":\"prices\"}]");
    } else if (c->stage == 2 && strncmp(f, "43/feed,1", 9) == 0) {
      c->stage = 3;
      char id[64];
      c->published = sluice_publish(c->gw, "/feed", "prices", "{\"p\":42}", 8, NULL, id) == 0;
    } else if (c->stage == 3 && strncmp(f, "42/feed,", 8) == 0) {
      snprintf(c->delivery, sizeof c->delivery, "%s", f);
      sluice_stop(c->gw, NULL, NULL);
      uv_close((uv_handle_t *)&c->tcp, NULL);
    }
  }
}

static void on_connect(uv_connect_t *r, int status) {
  wsclient *c = r->data;
  if (status < 0) return;
  const char *hs = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  send_raw(c, hs, strlen(hs));
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void on_stopped(sluice_t *gw, void *arg) {
  (void)gw;
  *(int *)arg = 1;
}

TEST(bad_config_string_gives_an_error_and_no_gateway) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512] = "";
  sluice_t *gw = sluice_new_from_string(&loop, "{\"servers\":{\"a\":{\"namespaces\":[{\"path\":\"x\",\"topics\":[\"t\"]}]}}}",
                                        62, "json", err, sizeof err);
  CHECK(gw == NULL);
  CHECK(strstr(err, "namespace path must start with '/'") != NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(publish_errors_without_subscribers) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_string(&loop, lua_cfg, strlen(lua_cfg), "lua", err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  CHECK_EQ_INT(sluice_start(gw, err, sizeof err), 0);
  CHECK(sluice_port(gw, 0) > 0);
  CHECK_EQ_INT(sluice_port(gw, 1), -1);
  char id[64];
  CHECK_EQ_INT(sluice_publish(gw, "/feed", "prices", "{\"a\":1}", 7, NULL, id), 0);
  CHECK(strncmp(id, "msg-", 4) == 0);
  CHECK(sluice_publish(gw, "/feed", "nope", "1", 1, NULL, NULL) < 0);
  CHECK(sluice_publish(gw, "/nope", "prices", "1", 1, NULL, NULL) < 0);
  CHECK(sluice_publish(gw, "/feed", "prices", "{bad", 4, NULL, NULL) < 0);
  int stopped = 0;
  sluice_stop(gw, on_stopped, &stopped);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(stopped, 1);
  sluice_free(gw);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* sluice_drain with nothing queued: the gateway is draining at once, stops by itself on the
 * next loop iteration, and the loop runs out of handles (uv_loop_close succeeds). */
TEST(a_drain_with_empty_lanes_stops_the_gateway_by_itself) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_string(&loop, lua_cfg, strlen(lua_cfg), "lua", err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  CHECK_EQ_INT(sluice_start(gw, err, sizeof err), 0);
  CHECK_EQ_INT(sluice_draining(gw), 0);
  sluice_drain(gw);
  CHECK_EQ_INT(sluice_draining(gw), 1);
  sluice_drain(gw); /* idempotent */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(sluice_draining(gw), 1);
  sluice_free(gw);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(a_websocket_client_receives_a_c_publish) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  sluice_t *gw = sluice_new_from_string(&loop, lua_cfg, strlen(lua_cfg), "lua", err, sizeof err);
  CHECK(gw != NULL);
  if (!gw) return;
  CHECK_EQ_INT(sluice_start(gw, err, sizeof err), 0);
  wsclient *c = calloc(1, sizeof *c);
  c->gw = gw;
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c;
  c->creq.data = c;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", sluice_port(gw, 0), &a);
  uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&a, on_connect);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once the gateway stopped and the client closed */
  CHECK_EQ_INT(c->published, 1);
  CHECK_EQ_STR(c->delivery, "42/feed,[\"prices\",{\"p\":42}]");
  sluice_free(gw);
  free(c);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  RUN(bad_config_string_gives_an_error_and_no_gateway);
  RUN(publish_errors_without_subscribers);
  RUN(a_drain_with_empty_lanes_stops_the_gateway_by_itself);
  RUN(a_websocket_client_receives_a_c_publish);
  return tl_report();
}
