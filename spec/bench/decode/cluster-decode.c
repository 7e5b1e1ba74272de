/* cluster-decode.c - instructions per decoded stream entry (sl_cl_decode + sl_cl_entry_free),
 * for callgrind: the receiving node's per-entry cost of a cross-node delivery, without the
 * network. Decodes N entries (default 100,000) alternating between the two common shapes:
 * a Sluice entry (sl_cl_encode, with opts.flags.sluice) and an entry of
 * @socket.io/redis-streams-adapter (JSON.stringify of {packet, opts}, flags {}).
 *
 *   bash spec/bench/callgrind-decode.sh      (builds it with the release flags, runs it
 *                                            under callgrind with 0 and N entries, prints the
 *                                            instructions per entry: the difference / N)
 * It lives in a folder of its own: the Makefile rule for the .c files of spec/bench does not link the
 * library.
 *
 * Arguments: N, then optionally the shape ("sluice", "adapter"; default both, alternating)
 * and "ref" to time the cJSON decoder the one-pass scan replaced (spec/unit/cluster_codec_ref.h).
 *
 * Exits non-zero if an entry does not decode (a broken build must not look fast). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_codec.h"
#include "cluster_codec_ref.h" /* the cJSON decoder the one-pass scan replaced */
#include "sl_util.h"

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  const char *shape = argc > 2 ? argv[2] : "both";
  bool ref = argc > 3 && !strcmp(argv[3], "ref");
  long only = !strcmp(shape, "sluice") ? 0 : !strcmp(shape, "adapter") ? 1 : -1;
  static const char payload[] = "{\"sym\":\"AAPL\",\"px\":187.23,\"qty\":1200,\"ts\":1765130000123}";
  sl_sbuf sl = {0};
  sl_cl_out o = {.nsp_json = "\"/feed\"",
                 .topic_json = "\"prices\"",
                 .payload = payload,
                 .len = sizeof payload - 1,
                 .seq = 123456,
                 .msgid = "msg-n1-123456"};
  sl_cl_encode(&sl, &o);
  static const char adapter[] =
      "{\"packet\":{\"type\":2,\"data\":[\"prices\",{\"sym\":\"AAPL\",\"px\":187.23,\"qty\":1200,"
      "\"ts\":1765130000123}],\"nsp\":\"/feed\"},\"opts\":{\"rooms\":[],\"except\":[],"
      "\"flags\":{}}}";
  const char *f[2][8] = {
      {"uid", "sluice-n1-4f2a", "nsp", "/feed", "type", "3", "data", sl.data},
      {"uid", "a1b2c3", "nsp", "/feed", "type", "3", "data", adapter}};
  size_t fl[2][8] = {{3, 14, 3, 5, 4, 1, 4, sl.len}, {3, 6, 3, 5, 4, 1, 4, sizeof adapter - 1}};
  size_t bytes = 0;
  for (long i = 0; i < n; i++) {
    sl_cl_entry e;
    long k = only >= 0 ? only : (i & 1);
    int rc = ref ? sl_cl_decode_ref(f[k], fl[k], 8, &e) : sl_cl_decode(f[k], fl[k], 8, &e);
    if (rc != SL_CL_OK) {
      fprintf(stderr, "cluster-decode: entry %ld: %s\n", i, sl_cl_reasons[rc]);
      return 1;
    }
    bytes += e.len;
    if (ref)
      sl_cl_entry_free_ref(&e);
    else
      sl_cl_entry_free(&e);
  }
  printf("%ld entries, %zu payload bytes\n", n, bytes);
  sl_sbuf_free(&sl);
  return 0;
}
