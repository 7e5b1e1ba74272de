/* fuzz_sio.c - libFuzzer target for the Socket.IO inbound path: sl_sio_parse, then
 * sl_sio_parse_json (cJSON), sl_sio_validate_payload and sl_sio_count_placeholders, plus checks of
 * the invariants the rest of the gateway relies on. */
#include "sio_codec.h"
#include "sl_util.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a crash libFuzzer reports) when an invariant does not hold. */
#define INVARIANT(c) do { if (!(c)) abort(); } while (0)

/* The system cJSON is not instrumented, so ASan cannot see it read past the buffer it was
 * given. Inputs up to GUARD_CAP bytes are therefore placed so that they end exactly at a
 * PROT_NONE page: any over-read, by our code or by cJSON, is a SEGV. Larger inputs fall back
 * to an exact-size heap copy (ASan still covers our own code there). */
#define GUARD_CAP (64 * 1024)
static uint8_t *guard_end; /* first byte of the PROT_NONE page */

static char *place_input(const uint8_t *data, size_t size, bool *heap) {
  if (!guard_end) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (GUARD_CAP + pg - 1) / pg * pg;
    uint8_t *m = mmap(NULL, span + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) abort();
    if (mprotect(m + span, pg, PROT_NONE) != 0) abort();
    guard_end = m + span;
  }
  char *text;
  if (size <= GUARD_CAP) {
    *heap = false;
    text = (char *)guard_end - size;
  } else {
    *heap = true;
    text = malloc(size);
    if (!text) abort();
  }
  if (size) memcpy(text, data, size);
  return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bool heap;
  char *text = place_input(data, size, &heap);

  sio_packet p;
  if (sl_sio_parse(text, size, &p) == 0) {
    INVARIANT(p.type >= SIO_CONNECT && p.type <= SIO_BINARY_ACK);
    INVARIANT(p.nsplen >= 1 && p.nsplen <= SIO_MAX_NSP && p.nsp[0] == '/');
    INVARIANT(p.ack_id >= -1);
    INVARIANT(p.json >= text && p.json + p.jsonlen == text + size);
    if (p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK)
      INVARIANT(p.attachments >= 1 && p.attachments <= SIO_MAX_ATTACHMENTS);
    else
      INVARIANT(p.attachments == 0);

    /* Re-encoding the header must parse back to the same fields (nsp with ',' cannot
     * come out of the parser, so the encoder must accept everything the parser gives). */
    char hdr[SIO_MAX_NSP + 48];
    size_t hl = sl_sio_encode_header(hdr, p.type, p.attachments, p.nsp, p.nsplen, p.ack_id);
    INVARIANT(hl > 0 && hl <= sizeof hdr);
    sio_packet q;
    INVARIANT(sl_sio_parse(hdr, hl, &q) == 0);
    INVARIANT(q.type == p.type && q.attachments == p.attachments && q.ack_id == p.ack_id);
    INVARIANT(q.nsplen == p.nsplen && memcmp(q.nsp, p.nsp, p.nsplen) == 0);
    INVARIANT(q.jsonlen == 0);

    cJSON *json = NULL;
    if (sl_sio_parse_json(p.json, p.jsonlen, &json) == 0) {
      INVARIANT(p.jsonlen == 0 ? json == NULL : json != NULL);
      (void)sl_sio_validate_payload(p.type, json);
      int n = sl_sio_count_placeholders(json, p.attachments);
      INVARIANT(n >= -1 && n <= p.attachments);
      /* and against a large attachment count (heap bitmap path) */
      n = sl_sio_count_placeholders(json, 1000);
      INVARIANT(n >= -1 && n <= 1000);
      if (json && cJSON_IsArray(json) && json->child && cJSON_IsString(json->child))
        (void)sl_sio_is_reserved_event(json->child->valuestring);
      cJSON_Delete(json);
    } else {
      INVARIANT(json == NULL);
    }
  }

  /* The whole input as a JSON payload too, so the JSON rules get fuzzed without having to
   * discover a valid header first. */
  cJSON *j = NULL;
  if (sl_sio_parse_json(text, size, &j) == 0 && j) {
    for (int t = 0; t <= 6; t++) (void)sl_sio_validate_payload(t, j);
    int n = sl_sio_count_placeholders(j, SIO_MAX_ATTACHMENTS);
    INVARIANT(n >= -1 && n <= SIO_MAX_ATTACHMENTS);
    cJSON_Delete(j);
  }
  if (heap) free(text);
  return 0;
}
