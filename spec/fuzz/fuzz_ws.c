/* fuzz_ws.c - libFuzzer target for WebSocket frames after a successful upgrade: ws.c's frame
 * boundary tracker and wslay (masking, fragmentation, control frames, close codes, oversize
 * and lying lengths, invalid UTF-8), and what Engine.IO/Socket.IO make of the messages, on a
 * real connection of a real gateway (fuzz_gw.h).
 *
 * Byte 0 picks the mode. Odd: the rest is the raw byte stream after the 101, torn into reads
 * by byte 1 (fz_send_split). Even: the rest is a list of frames, each [ctl][len][len bytes]:
 * ctl bit 7 FIN, bits 0-3 the opcode, bit 6 "send the bytes as they are" (no header, no
 * mask: garbage and unmasked frames), bit 5 "tear this frame in two reads", bit 4 "first
 * open the Socket.IO namespace /feed" (so event packets reach the client layer). */
#include "fuzz_gw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  fz_start();
  int a = fz_connect();
  if (a < 0) goto done;
  fz_send_str(a, fz_ws_upgrade);
  if (data[0] & 1) {
    fz_send_split(a, data[1], data + 2, size - 2);
  } else {
    size_t pos = 1;
    while (pos + 2 <= size) {
      uint8_t ctl = data[pos], len = data[pos + 1];
      pos += 2;
      size_t n = len < size - pos ? len : size - pos;
      const uint8_t *p = data + pos;
      pos += n;
      if (ctl & 0x10) fz_ws_send(a, true, 1, "40/feed,{\"token\":\"good\"}", 24);
      if (ctl & 0x40) {
        fz_send(a, p, n);
        continue;
      }
      static const uint8_t mask[4] = {0xa1, 0x02, 0x7c, 0x00};
      uint8_t f[300];
      size_t fl = fz_ws_frame(f, ctl & 0x80, ctl & 0x0f, p, n, mask);
      if (ctl & 0x20) {
        fz_send(a, f, fl / 2);
        fz_send(a, f + fl / 2, fl - fl / 2);
      } else {
        fz_send(a, f, fl);
      }
    }
  }
  fz_publish("/feed", "prices", "{\"symbol\":\"A\",\"p\":1}");
  fz_pump();
  fz_shutdown(a);
done:
  fz_finish();
  return 0;
}
