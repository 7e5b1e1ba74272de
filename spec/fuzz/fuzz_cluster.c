/* fuzz_cluster.c - libFuzzer target for the cluster's stream entry decoder (cluster_codec.c):
 * entries come from Redis, written by any node or program, so every byte is untrusted.
 *
 * Input: byte 0 chooses the shape. Even: the rest is the data field of an entry
 * `uid u nsp /feed type 3 data <rest>` (JSON, or base64 msgpack when it does not start with
 * '{'), the adapter's own shape. Odd: the rest is split at 0x1f bytes into a field list as
 * XREAD returns it (names and values alternating, any count). Invariants of a decoded
 * entry: a topic, a payload that is valid JSON text, rooms/except within bounds; and it
 * encodes again (sl_cl_encode) into data that decodes to the same topic, payload, rooms.
 * Differential: every input is also decoded by the decoder as it was before the one-pass
 * scanner (spec/unit/cluster_codec_ref.h, the cJSON tree), and any difference in the return
 * code or a field (cl_diff) aborts. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cluster_codec.h"
#include "cluster_codec_ref.h"
#include "sl_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INVARIANT(c)                                                                               \
  do {                                                                                             \
    if (!(c)) abort();                                                                             \
  } while (0)

static void check_entry(const sl_cl_entry *e) {
  INVARIANT(e->topic && e->payload && e->uid && e->nsp);
  INVARIANT(strlen(e->payload) == e->len && e->len > 0);
  cJSON *p = cJSON_ParseWithLength(e->payload, e->len);
  INVARIANT(p != NULL);
  cJSON_Delete(p);
  INVARIANT(e->nrooms <= 4096 && e->nexcept <= 4096);
  if (e->snapshot) {
    cJSON *s = cJSON_Parse(e->snapshot);
    INVARIANT(s != NULL);
    cJSON_Delete(s);
  }
  /* round trip through the encoder (topic and namespace as JSON literals) */
  cJSON *t = cJSON_CreateString(e->topic), *n = cJSON_CreateString(e->nsp);
  char *tj = sl_json_print(t), *nj = sl_json_print(n);
  cJSON_Delete(t);
  cJSON_Delete(n);
  {
    sl_sbuf b = {0};
    sl_cl_out o = {.nsp_json = nj,
                   .topic_json = tj,
                   .payload = e->payload,
                   .len = e->len,
                   .rooms = (const char *const *)e->rooms,
                   .nrooms = e->nrooms,
                   .seq = e->seq,
                   .delivered = e->delivered,
                   .key = e->key,
                   .msgid = e->msgid,
                   .snapshot_set = e->snapshot_set,
                   .snapshot = e->snapshot};
    if (tj && nj) {
      sl_cl_encode(&b, &o);
      const char *f[8] = {"uid", e->uid, "nsp", e->nsp, "type", "3", "data", b.data};
      size_t fl[8] = {3, strlen(e->uid), 3, strlen(e->nsp), 4, 1, 4, b.len};
      sl_cl_entry d;
      int rc = sl_cl_decode(f, fl, 8, &d);
      INVARIANT(rc == SL_CL_OK);
      INVARIANT(strcmp(d.topic, e->topic) == 0);
      INVARIANT(d.nrooms == e->nrooms);
      INVARIANT(d.seq == e->seq && d.delivered == e->delivered);
      INVARIANT((d.key == NULL) == (e->key == NULL));
      sl_cl_entry_free(&d);
      sl_sbuf_free(&b);
    }
  }
  free(tj);
  free(nj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *rest = (const char *)data + 1;
  size_t rl = size - 1;
  sl_cl_entry e;
  int rc;
  if (!(data[0] & 1)) {
    char *copy = malloc(rl ? rl : 1); /* exact size: ASan sees an over-read */
    memcpy(copy, rest, rl);
    const char *f[8] = {"uid", "u", "nsp", "/feed", "type", "3", "data", copy};
    size_t fl[8] = {3, 1, 3, 5, 4, 1, 4, rl};
    rc = sl_cl_decode(f, fl, 8, &e);
    if (rc == SL_CL_OK) check_entry(&e);
    sl_cl_entry_free(&e);
    INVARIANT(cl_diff_fields(f, fl, 8, NULL) == NULL);
    free(copy);
    return 0;
  }
  /* a field list */
  const char *f[64];
  size_t fl[64], nf = 0;
  char *copies[64];
  size_t start = 0;
  for (size_t i = 0; i <= rl && nf < 64; i++) {
    if (i == rl || rest[i] == 0x1f) {
      size_t n = i - start;
      copies[nf] = malloc(n ? n : 1);
      memcpy(copies[nf], rest + start, n);
      f[nf] = copies[nf];
      fl[nf] = n;
      nf++;
      start = i + 1;
    }
  }
  rc = sl_cl_decode(f, fl, nf, &e);
  INVARIANT(rc >= SL_CL_OK && rc < SL_CL_NREASONS);
  if (rc == SL_CL_OK) check_entry(&e);
  sl_cl_entry_free(&e);
  INVARIANT(cl_diff_fields(f, fl, nf, NULL) == NULL);
  for (size_t i = 0; i < nf; i++) free(copies[i]);
  return 0;
}
