/* fuzz_eio.c - libFuzzer target for Engine.IO polling bodies: sl_eio_payload_next over the
 * body, sl_eio_parse_text on a writable copy of every record (base64 is decoded in place), and
 * a round trip of every binary record through sl_b64_encode, and the UTF-8 check
 * every text record gets before parsing. */
#include "sio_codec.h"
#include "sl_util.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INVARIANT(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *body = malloc(size ? size : 1);
  if (!body) return 0;
  if (size) memcpy(body, data, size);

  size_t pos = 0, reclen, total = 0, records = 0;
  const uint8_t *rec;
  while (sl_eio_payload_next(body, size, &pos, &rec, &reclen)) {
    INVARIANT(rec >= body && rec + reclen <= body + size);
    INVARIANT(memchr(rec, 0x1e, reclen) == NULL);
    total += reclen;
    records++;
    INVARIANT(records <= size + 1);

    /* exact-size copy: any read or write past reclen is an ASan report */
    uint8_t *copy = malloc(reclen ? reclen : 1);
    if (!copy) break;
    if (reclen) memcpy(copy, rec, reclen);
    (void)sl_utf8_valid(copy, reclen);
    eio_packet p;
    if (sl_eio_parse_text(copy, reclen, &p) == 0) {
      INVARIANT(p.type >= EIO_OPEN && p.type <= EIO_NOOP);
      INVARIANT(p.data >= copy && p.data + p.len <= copy + reclen);
      if (p.binary) {
        INVARIANT(p.type == EIO_MESSAGE && rec[0] == 'b');
        /* decoded bytes must re-encode to a string that decodes to the same bytes */
        size_t el = sl_b64_enclen(p.len);
        char *e = malloc(el ? el : 1);
        uint8_t *d = malloc(el ? el : 1);
        if (e && d) {
          INVARIANT(sl_b64_encode(p.data, p.len, e) == el);
          long dl = sl_b64_decode(e, el, d);
          INVARIANT(dl == (long)p.len && memcmp(d, p.data, p.len) == 0);
        }
        free(e);
        free(d);
      } else {
        INVARIANT(p.len == reclen - 1 && memcmp(p.data, rec + 1, p.len) == 0);
        if (p.type == EIO_MESSAGE) { /* a Socket.IO header parse on the message text */
          sio_packet sp;
          (void)sl_sio_parse((const char *)p.data, p.len, &sp);
        }
      }
    }
    free(copy);
  }
  INVARIANT(records >= 1);
  INVARIANT(total + records - 1 == size); /* records + separators cover the body */
  free(body);
  return 0;
}
