/* test_emitter.c - unit tests for core/emitter.c: the @socket.io/redis-emitter decoder
 * against bytes the real emitter produced (emitter_fixtures.h, from
 * spec/fixtures/emitter/gen.mjs), the msgpack -> JSON conversion, hostile inputs, metrics. */
#include "testlib.h"
#include "emitter.h"
#include "emitter_ingest.h"
#include "sl_util.h"
#include "emitter_fixtures.h"

#include <stdlib.h>
#include <string.h>

#define NFIX (sizeof emitter_fixtures / sizeof emitter_fixtures[0])

/* Every fixture decodes to its expected reason; the accepted ones to the expected fields and
 * to exactly the JSON text JSON.stringify gave for the argument in Node. */
TEST(fixtures) {
  for (size_t i = 0; i < NFIX; i++) {
    const emitter_fixture *f = &emitter_fixtures[i];
    sl_emitter_msg m;
    char err[160] = "";
    sl_emit_reason r = sl_emitter_decode(f->msg, f->len, 0, &m, err, sizeof err);
    if (strcmp(sl_emitter_reason_name(r), f->reason) != 0) {
      TL_FAIL("%s: got %s (%s), want %s", f->name, sl_emitter_reason_name(r), err, f->reason);
      continue;
    }
    if (r != SL_EMIT_OK) {
      CHECK(err[0] != 0);
      CHECK(m.payload == NULL && m.nsp == NULL && m.rooms == NULL);
      continue;
    }
    CHECK_EQ_STR(m.uid, "emitter");
    CHECK_EQ_STR(m.nsp, f->nsp);
    CHECK_EQ_STR(m.event, f->event);
    if (m.payload_len != f->payload_len || memcmp(m.payload, f->payload, f->payload_len) != 0) {
      size_t at = 0;
      while (at < m.payload_len && at < f->payload_len && m.payload[at] == f->payload[at]) at++;
      size_t from = at > 40 ? at - 40 : 0;
      TL_FAIL("%s: payload differs at byte %zu: got \"%.80s\", want \"%.80s\"", f->name, at,
              m.payload + from, f->payload + from);
    }
    CHECK_EQ_INT(strlen(m.payload), m.payload_len);
    CHECK_EQ_INT(m.nrooms, f->nrooms);
    CHECK_EQ_INT(m.nexcept, f->nexcept);
    for (int k = 0; k < f->nrooms && k < (int)m.nrooms; k++) CHECK_EQ_STR(m.rooms[k], f->rooms[k]);
    for (int k = 0; k < f->nexcept && k < (int)m.nexcept; k++)
      CHECK_EQ_STR(m.except[k], f->except[k]);
    CHECK_EQ_INT(m.flag_volatile, f->volatile_);
    sl_emitter_msg_free(&m);
  }
}

static const emitter_fixture *fixture(const char *name) {
  for (size_t i = 0; i < NFIX; i++)
    if (strcmp(emitter_fixtures[i].name, name) == 0) return &emitter_fixtures[i];
  return NULL;
}

/* Every proper prefix of a real message is malformed (never a crash, never accepted). */
TEST(every_prefix_is_refused) {
  const emitter_fixture *f = fixture("plain");
  for (size_t n = 0; n < f->len; n++) {
    sl_emitter_msg m;
    sl_emit_reason r = sl_emitter_decode(f->msg, n, 0, &m, NULL, 0);
    if (r != SL_EMIT_MALFORMED) TL_FAIL("prefix %zu: %s", n, sl_emitter_reason_name(r));
    sl_emitter_msg_free(&m);
  }
}

/* maxPayload bounds the payload's JSON (not the message). */
TEST(max_payload) {
  const emitter_fixture *f = fixture("plain");
  sl_emitter_msg m;
  CHECK_EQ_INT(sl_emitter_decode(f->msg, f->len, f->payload_len, &m, NULL, 0), SL_EMIT_OK);
  sl_emitter_msg_free(&m);
  char err[160];
  CHECK_EQ_INT(sl_emitter_decode(f->msg, f->len, f->payload_len - 1, &m, err, sizeof err),
               SL_EMIT_TOO_LARGE);
  CHECK(strstr(err, "maxPayload") != NULL);
  f = fixture("strings"); /* a 70000-byte string: refused before it is copied */
  CHECK_EQ_INT(sl_emitter_decode(f->msg, f->len, 1000, &m, NULL, 0), SL_EMIT_TOO_LARGE);
}

static const char *json_of(const char *bytes, size_t n, sl_emit_reason *r) {
  static sl_sbuf b;
  sl_sbuf_free(&b);
  *r = sl_emitter_to_json(bytes, n, 0, &b);
  sl_sbuf_append(&b, "", 1);
  return b.data;
}
#define J(lit, want)                                                                               \
  do {                                                                                             \
    sl_emit_reason r_;                                                                             \
    const char *got_ = json_of(lit, sizeof lit - 1, &r_);                                          \
    CHECK_EQ_INT(r_, SL_EMIT_OK);                                                                  \
    CHECK_EQ_STR(got_, want);                                                                      \
  } while (0)
#define JR(lit, reason)                                                                            \
  do {                                                                                             \
    sl_emit_reason r_;                                                                             \
    json_of(lit, sizeof lit - 1, &r_);                                                             \
    CHECK_EQ_INT(r_, reason);                                                                      \
  } while (0)

/* Hand-made msgpack the emitter does not write, but another encoder may. */
TEST(to_json_types) {
  J("\xc0", "null");
  J("\xc2", "false");
  /* 64-bit integers as a JS receiver holds them (doubles) */
  J("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", "18446744073709552000");
  J("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "-9223372036854776000");
  J("\xcb\x80\x00\x00\x00\x00\x00\x00\x00", "0"); /* -0 */
  J("\xca\x3f\xc0\x00\x00", "1.5");                     /* float 32 */
  J("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", "null");    /* NaN */
  J("\x82\x01\xa1x\xc3\xa1y", "{\"1\":\"x\",\"true\":\"y\"}"); /* keys as String(key) */
  J("\xd4\x00\x00", "null");                            /* notepack's legacy undefined */
  J("\x92\xd4\x00\x00\x01", "[null,1]");
  J("\x82\xa1" "a\xd4\x00\x00\xa1" "b\x01", "{\"b\":1}");
  J("\xd7\x00\x00\x00\x00\x00\x00\x00\x03\xe8", "\"1970-01-01T00:00:01.000Z\""); /* legacy date */
  J("\xd6\xff\x00\x00\x00\x3c", "\"1970-01-01T00:01:00.000Z\""); /* timestamp 32 */
  /* timestamp 96: -1 s and 500 ms */
  J("\xc7\x0c\xff\x1d\xcd\x65\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    "\"1969-12-31T23:59:59.500Z\"");
  /* timestamp 96 past the Date range: toJSON is null */
  J("\xc7\x0c\xff\x00\x00\x00\x00\x7f\x00\x00\x00\x00\x00\x00\x00", "null");
  JR("\xc4\x01\x00", SL_EMIT_BINARY);          /* bin */
  JR("\xd4\x05\x00", SL_EMIT_BINARY);          /* another extension */
  JR("\xa2\xc3\x28", SL_EMIT_MALFORMED);       /* invalid UTF-8 */
  JR("\xa4\xed\xa0\x80T", SL_EMIT_MALFORMED);   /* a lone surrogate (CESU-8) */
  J("\xa0", "\"\"");                             /* the empty string */
  JR("\x81\x90\x01", SL_EMIT_MALFORMED);       /* an array as a key */
  JR("\xc1", SL_EMIT_MALFORMED);               /* reserved byte */
  JR("", SL_EMIT_MALFORMED);
  JR("\xdf\xff\xff\xff\xff", SL_EMIT_MALFORMED); /* 4 billion map entries in 5 bytes */
  JR("\xc6\xff\xff\xff\xf0\x00", SL_EMIT_MALFORMED);
}

/* Deep nesting: refused (msgpack-c's own stack), never a crash. */
TEST(deep_nesting) {
  char buf[4096];
  memset(buf, 0x91, sizeof buf - 1);
  buf[sizeof buf - 1] = (char)0xc0;
  sl_sbuf b = {0};
  CHECK_EQ_INT(sl_emitter_to_json(buf, sizeof buf, 0, &b), SL_EMIT_MALFORMED);
  sl_sbuf_free(&b);
  sl_emitter_msg m;
  char err[160];
  CHECK_EQ_INT(sl_emitter_decode(buf, sizeof buf, 0, &m, err, sizeof err), SL_EMIT_MALFORMED);
}

/* Strings with a NUL byte cannot be a topic, a namespace or a room. */
TEST(nul_in_names) {
  static const char msg[] = "\x93\xa7" "emitter\x82\xa4type\x02\xa4" "data\x92\xa3p\x00q\x01\x80";
  sl_emitter_msg m;
  CHECK_EQ_INT(sl_emitter_decode(msg, sizeof msg - 1, 0, &m, NULL, 0), SL_EMIT_MALFORMED);
}

TEST(reason_names) {
  CHECK_EQ_STR(sl_emitter_reason_name(SL_EMIT_NOT_EMITTER), "not_emitter");
  CHECK_EQ_STR(sl_emitter_reason_name(SL_EMIT_TOPIC), "topic");
  CHECK_EQ_STR(sl_emitter_reason_name(99), "unknown");
}

TEST(metrics_text) {
  sl_emitter_stats st = {0};
  st.received = 7;
  st.ignored[SL_EMIT_NOT_EMITTER] = 3;
  sl_sbuf b = {0};
  sl_emitter_stats_text(&st, &b);
  sl_sbuf_append(&b, "", 1);
  CHECK(strstr(b.data, "# TYPE sluice_emitter_received_total counter\n") != NULL);
  CHECK(strstr(b.data, "sluice_emitter_received_total 7\n") != NULL);
  CHECK(strstr(b.data, "sluice_emitter_ignored_total{reason=\"not_emitter\"} 3\n") != NULL);
  CHECK(strstr(b.data, "sluice_emitter_ignored_total{reason=\"binary\"} 0\n") != NULL);
  CHECK(strstr(b.data, "reason=\"ok\"") == NULL);
  sl_sbuf_free(&b);
}

int main(void) {
  RUN(fixtures);
  RUN(every_prefix_is_refused);
  RUN(max_payload);
  RUN(to_json_types);
  RUN(deep_nesting);
  RUN(nul_in_names);
  RUN(reason_names);
  RUN(metrics_text);
  return tl_report();
}
