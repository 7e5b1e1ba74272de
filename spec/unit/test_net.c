/* test_net.c - net.c's HTTP read path on a real connection without the network: a gateway
 * from a config string, started on 127.0.0.1:0, and one end of a socketpair adopted as an
 * accepted connection (sl__server_adopt); the test writes requests to the other end, runs
 * the loop and reads what net answered. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>
#include "sl_internal.h"
#include "net.h"
#include "sluice.h"
#include "testlib.h"

static const char *cfg =
    "return { servers = { main = { host = '127.0.0.1', port = 0,\n"
    "  namespaces = { { path = '/feed', topics = { 'prices' } } } } } }\n";

typedef struct {
  uv_loop_t loop;
  sluice_t *gw;
  int fd; /* the client's end */
  char out[8192];
  size_t outlen;
  bool eof;
} rig;

static void rig_pump(rig *r) {
  for (int i = 0; i < 20; i++) {
    uv_run(&r->loop, UV_RUN_NOWAIT);
    for (;;) {
      ssize_t k = read(r->fd, r->out + r->outlen, sizeof r->out - 1 - r->outlen);
      if (k == 0) r->eof = true;
      if (k <= 0) break;
      r->outlen += (size_t)k;
    }
    r->out[r->outlen] = 0;
  }
}

static bool rig_open(rig *r) {
  memset(r, 0, sizeof *r);
  char err[256];
  uv_loop_init(&r->loop);
  r->gw = sluice_new_from_string(&r->loop, cfg, strlen(cfg), "lua", err, sizeof err);
  if (!r->gw || sluice_start(r->gw, err, sizeof err) != 0) return false;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return false;
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  r->fd = sv[0];
  return sl__server_adopt(&r->gw->servers[0], sv[1]) != NULL;
}

static void rig_close(rig *r) {
  close(r->fd);
  sluice_stop(r->gw, NULL, NULL);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  sluice_free(r->gw);
  CHECK_EQ_INT(uv_loop_close(&r->loop), 0);
}

/* Found by fuzz_http (spec/fuzz/corpus/fuzz_http/crash-pipelined-after-close): an HTTP/1.0
 * request is answered and the connection closed inside http_parser's callback; the parser
 * went on with the pipelined request behind it and re-armed the header timeout of the
 * closing connection, leaving its link in the gateway's timeout list after it was freed
 * (the sweeper would then walk freed memory). */
TEST(pipelined_request_after_close) {
  rig r;
  CHECK(rig_open(&r));
  /* the pipelined request is incomplete in this read: nothing would disarm its deadline */
  const char *req = "GET /healthz HTTP/1.0\r\n\r\nGET /healthz HTTP/1.1\r\nHo";
  CHECK(write(r.fd, req, strlen(req)) == (ssize_t)strlen(req));
  rig_pump(&r);
  CHECK(r.eof);
  CHECK(strstr(r.out, "HTTP/1.1 200 OK") == r.out);
  CHECK(strstr(r.out + 1, "HTTP/1.1") == NULL); /* the pipelined one was not answered */
  CHECK(sl_list_empty(&r.gw->timeouts));
  rig_close(&r);
}

/* Keep-alive pipelining still answers every request, in order. */
TEST(pipelined_keepalive_answers_all) {
  rig r;
  CHECK(rig_open(&r));
  const char *req = "GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n";
  CHECK(write(r.fd, req, strlen(req)) == (ssize_t)strlen(req));
  rig_pump(&r);
  CHECK(!r.eof);
  const char *a = strstr(r.out, "HTTP/1.1 200 OK");
  const char *b = strstr(r.out, "HTTP/1.1 404");
  CHECK(a && b && a < b);
  rig_close(&r);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  sl_log_threshold = SL_LOG_ERROR;
  RUN(pipelined_request_after_close);
  RUN(pipelined_keepalive_answers_all);
  return tl_report();
}
