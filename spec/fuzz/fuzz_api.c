/* fuzz_api.c - libFuzzer target for the HTTP API's body handling (api.c: POST /api/publish,
 * one message or an array, its field checks, the publish pipeline behind it) through the
 * real HTTP path of a real gateway (fuzz_gw.h): a fixed, authorized request head and the
 * fuzz bytes as the body.
 *
 * Byte 0: bit 0 send the body chunked (Transfer-Encoding, cut where the split byte says)
 * instead of with Content-Length; bit 1 first subscribe a WebSocket client to /feed prices,
 * /ack q and /co s, so accepted messages are routed, encoded and delivered; bits 2-3 pick
 * the path (/api/publish three times out of four, else /api/reload). Byte 1 is the split. */
#include "fuzz_gw.h"

static void subscriber(void) {
  int w = fz_connect();
  if (w < 0) return;
  fz_send_str(w, fz_ws_upgrade);
  static const char *const pk[] = {
      "40/feed,{\"token\":\"good\"}", "40/ack,{\"token\":\"good\"}", "40/co,{\"token\":\"good\"}",
      "42/feed,1[\"subscribe\",{\"topic\":\"prices\"}]", "42/ack,2[\"subscribe\",{\"topic\":\"q\"}]",
      "42/co,3[\"subscribe\",{\"topic\":\"s\"}]"};
  for (size_t i = 0; i < sizeof pk / sizeof pk[0]; i++) fz_ws_send(w, true, 1, pk[i], strlen(pk[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  uint8_t flags = data[0], split = data[1];
  const uint8_t *body = data + 2;
  size_t n = size - 2;
  fz_start();
  if (flags & 2) subscriber();
  int a = fz_connect();
  if (a < 0) goto done;
  const char *path = ((flags >> 2) & 3) == 3 ? "/api/reload" : "/api/publish";
  char head[256];
  if (flags & 1) {
    snprintf(head, sizeof head,
             "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
             "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", path);
    fz_send_str(a, head);
    size_t step = (size_t)(split & 0x7f) + 1;
    while (n) {
      size_t k = step < n ? step : n;
      char ch[24];
      snprintf(ch, sizeof ch, "%zx\r\n", k);
      fz_send_str(a, ch);
      fz_send(a, body, k);
      fz_send_str(a, "\r\n");
      body += k;
      n -= k;
    }
    fz_send_str(a, "0\r\n\r\n");
  } else {
    snprintf(head, sizeof head,
             "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", path, n);
    fz_send_str(a, head);
    fz_send_split(a, split, body, n);
  }
  fz_shutdown(a);
done:
  fz_finish();
  return 0;
}
