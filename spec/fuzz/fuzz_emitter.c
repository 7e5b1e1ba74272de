/* fuzz_emitter.c - libFuzzer target for the @socket.io/redis-emitter ingest (core/emitter.c):
 * whatever a publisher sends on an emitter channel goes through sl_emitter_decode (the
 * prescan, msgpack-c, the [uid, packet, opts] checks, the msgpack -> JSON conversion) and
 * sl_emitter_to_json, and the invariants the delivery path relies on are checked:
 *  - a reason is one of the enum, and a refused message leaves nothing allocated;
 *  - an accepted message has uid "emitter", a namespace, a non-empty event name, rooms and
 *    except lists of NUL-free strings, and a payload that is RFC 8259 JSON (sl_js_valid, the
 *    check sl_publish makes) of payload_len bytes, within the bound it was given;
 *  - decoding is deterministic, and a tighter bound only ever turns OK into TOO_LARGE;
 *  - whatever sl_emitter_to_json accepts is valid JSON.
 * An input that decodes is also ingested (sl_emitter_ingest) into a fresh gateway of the
 * shared network harness (fuzz_gw.h: /feed, an AT_LEAST_ONCE /ack, a coalescing /co) with a
 * WebSocket subscriber on each, on the channel its namespace names and on a room channel,
 * through sl_publish_remote and the lanes to the socket; the counters must add up (every
 * message received is delivered or ignored for one reason) and the gateway must stop clean.
 * The system msgpack-c is not instrumented, so inputs are placed to end exactly at a
 * PROT_NONE page (as fuzz_sio.c does for cJSON): an over-read by it is a SEGV. */
#include "fuzz_gw.h"
#include "emitter.h"
#include "emitter_ingest.h"
#include "sl_jscan.h"
#include "sl_util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define INVARIANT(c)                                                                               \
  do {                                                                                             \
    if (!(c)) abort();                                                                             \
  } while (0)

#define GUARD_CAP (64 * 1024)
static uint8_t *guard_end;

static const uint8_t *place_input(const uint8_t *data, size_t size, uint8_t **heap) {
  if (!guard_end) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (GUARD_CAP + pg - 1) / pg * pg;
    uint8_t *m = mmap(NULL, span + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) abort();
    if (mprotect(m + span, pg, PROT_NONE) != 0) abort();
    guard_end = m + span;
  }
  *heap = NULL;
  if (size > GUARD_CAP) {
    *heap = malloc(size);
    if (!*heap) abort();
    memcpy(*heap, data, size);
    return *heap;
  }
  uint8_t *p = guard_end - size;
  if (size) memcpy(p, data, size);
  return p;
}

static void check_names(char **v, size_t n) {
  INVARIANT(n == 0 || v != NULL);
  for (size_t i = 0; i < n; i++) INVARIANT(v[i] != NULL);
}

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

/* The decoded message through a real gateway: the public channel of its namespace, then a
 * room channel (the emitter's for one room), then a channel of another namespace. */
static void ingest(const uint8_t *in, size_t size, const sl_emitter_msg *m) {
  fz_start();
  subscriber();
  sl_server *srv = &fz_gw->servers[0];
  sl_emitter_stats st = {0};
  char ch[512];
  int n = snprintf(ch, sizeof ch, "socket.io#%s#", m->nsp);
  if (n > 0 && (size_t)n < sizeof ch) {
    (void)sl_emitter_ingest(srv, "socket.io", ch, (size_t)n, in, size, &st);
    fz_pump();
    n = snprintf(ch, sizeof ch, "socket.io#%s#%s#", m->nsp, m->nrooms ? m->rooms[0] : "r");
    if (n > 0 && (size_t)n < sizeof ch) {
      (void)sl_emitter_ingest(srv, "socket.io", ch, (size_t)n, in, size, &st);
      fz_pump();
    }
  }
  sl_emit_reason r = sl_emitter_ingest(srv, "socket.io", "socket.io#/nope#", 16, in, size, &st);
  /* decoded first (the server's maxPayload may refuse it), then the channel is checked */
  INVARIANT(r == SL_EMIT_NAMESPACE || r == SL_EMIT_TOO_LARGE || strcmp(m->nsp, "/nope") == 0);
  uint64_t ignored = 0;
  for (int i = 0; i < SL_EMIT_REASONS; i++) ignored += st.ignored[i];
  INVARIANT(st.ignored[SL_EMIT_OK] == 0);
  INVARIANT(st.received == st.delivered + ignored);
  fz_pump();
  fz_finish();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *heap;
  const uint8_t *in = place_input(data, size, &heap);

  sl_emitter_msg m, m2;
  char err[128];
  sl_emit_reason r = sl_emitter_decode(in, size, 0, &m, err, sizeof err);
  INVARIANT(r >= SL_EMIT_OK && r < SL_EMIT_REASONS);
  INVARIANT(r != SL_EMIT_NAMESPACE && r != SL_EMIT_TOPIC); /* the ingest's, not the decoder's */
  if (r != SL_EMIT_OK) {
    INVARIANT(m.uid == NULL && m.payload == NULL && m.rooms == NULL && m.except == NULL);
    INVARIANT(err[0] != 0 && memchr(err, 0, sizeof err) != NULL);
  } else {
    INVARIANT(strcmp(m.uid, "emitter") == 0);
    INVARIANT(m.nsp != NULL && m.event != NULL && m.event[0] != 0);
    INVARIANT(strlen(m.payload) == m.payload_len);
    INVARIANT(sl_js_valid(m.payload, m.payload_len));
    check_names(m.rooms, m.nrooms);
    check_names(m.except, m.nexcept);
    /* deterministic */
    INVARIANT(sl_emitter_decode(in, size, 0, &m2, NULL, 0) == SL_EMIT_OK);
    INVARIANT(m2.payload_len == m.payload_len && memcmp(m2.payload, m.payload, m.payload_len) == 0);
    INVARIANT(m2.nrooms == m.nrooms && m2.nexcept == m.nexcept);
    sl_emitter_msg_free(&m2);
    /* the bound: exactly the payload fits; one byte less does not */
    INVARIANT(sl_emitter_decode(in, size, m.payload_len, &m2, NULL, 0) == SL_EMIT_OK);
    sl_emitter_msg_free(&m2);
    if (m.payload_len > 1) {
      r = sl_emitter_decode(in, size, m.payload_len - 1, &m2, NULL, 0);
      INVARIANT(r == SL_EMIT_TOO_LARGE);
      sl_emitter_msg_free(&m2);
    }
    ingest(in, size, &m);
  }
  sl_emitter_msg_free(&m);
  INVARIANT(m.uid == NULL && m.payload == NULL);

  sl_sbuf b = {0};
  r = sl_emitter_to_json(in, size, 1 << 20, &b);
  INVARIANT(r == SL_EMIT_OK || r == SL_EMIT_MALFORMED || r == SL_EMIT_BINARY ||
            r == SL_EMIT_TOO_LARGE);
  if (r == SL_EMIT_OK) INVARIANT(b.len > 0 && sl_js_valid(b.data, b.len));
  sl_sbuf_free(&b);
  free(heap);
  return 0;
}
