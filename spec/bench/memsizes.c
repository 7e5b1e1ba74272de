/* memsizes.c - what an idle subscribed WebSocket connection allocates, by structure: the size
 * of each per-connection object, the bytes Sluice asks for, what that takes from the
 * gateway's pool (core/pool.h: the size rounded up to 8, no header), and for comparison the
 * glibc malloc chunk the same request would take (usable size + the 8-byte header). Printed
 * as JSON lines for report.mjs (spec/bench/run.sh builds and runs it next to the idle
 * scenario). Header-only: nothing of the library runs. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include "sl_internal.h"
#include "net.h"
#include "eio.h"

static void row(const char *name, const char *what, size_t size, size_t asked) {
  void *p = malloc(asked);
  size_t chunk = malloc_usable_size(p) + sizeof(size_t);
  free(p);
  size_t pooled = (asked + 7) & ~(size_t)7; /* sl_pool_init's object size */
  printf("{\"name\":\"%s\",\"what\":\"%s\",\"sizeof\":%zu,\"alloc\":%zu,\"pooled\":%zu,"
         "\"chunk\":%zu}\n",
         name, what, size, asked, pooled, chunk);
}

int main(void) {
  row("sl_conn", "TCP connection: libuv's uv_tcp_t (248 B), HTTP parser / WebSocket frame tracker, "
                 "write queue, timeouts, admission",
      sizeof(sl_conn), SL_CONN_TCP_SIZE);
  row("sl_session", "Engine.IO session: sid, heartbeat deadline, transport (the polling state "
                    "only while polling), ready lanes",
      sizeof(sl_session), sizeof(sl_session));
  row("sl_socket", "Socket.IO socket (one namespace joined): id, principal, lanes (the recovery "
                   "part only with `recovery`)",
      sizeof(sl_socket), sizeof(sl_socket));
  row("sl_lane", "lane (one topic subscribed): the bounded queue's state (ring: none while empty)",
      sizeof(sl_lane), sizeof(sl_lane));
  printf("{\"name\":\"uv_tcp_t\",\"sizeof\":%zu}\n", sizeof(uv_tcp_t));
  return 0;
}
