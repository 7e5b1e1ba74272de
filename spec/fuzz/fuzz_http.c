/* fuzz_http.c - libFuzzer target for the HTTP request path: net.c's http_parser callbacks
 * (URL, header storage and limits, bodies, maxPayload, pipelining and pausing behind a held
 * response), and the router's dispatch to Engine.IO (handshakes, polling, bad sids, WebSocket
 * handshakes), the raw endpoint and the HTTP API, on a real connection of a real gateway
 * (fuzz_gw.h).
 *
 * Input: byte 0 picks how the rest is torn into reads (fz_send_split); byte 1 bit 0 asks for
 * a second connection that gets the same bytes after the first is done (so a sid made by
 * the first can be hit by the second's requests). The rest is what the client sends. */
#include "fuzz_gw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  uint8_t split = data[0], flags = data[1];
  data += 2;
  size -= 2;
  fz_start();
  int a = fz_connect();
  if (a >= 0) {
    fz_send_split(a, split, data, size);
    if (flags & 1) {
      int b = fz_connect();
      if (b >= 0) fz_send_split(b, (uint8_t)(split ^ 0x55), data, size);
    }
    if (flags & 2) fz_publish("/feed", "prices", "{\"symbol\":\"A\",\"p\":1}");
    fz_shutdown(a);
  }
  fz_finish();
  return 0;
}
