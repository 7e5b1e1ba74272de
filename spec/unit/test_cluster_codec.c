/* test_cluster_codec.c - core/cluster_codec.c: the data JSON Sluice appends (the shape
 * @socket.io/redis-streams-adapter 0.3.1 writes for a BROADCAST), the decoder of entries
 * read back (Sluice's, the adapter's JSON and base64-msgpack ones, other message types,
 * malformed input) and stream id comparison. */
#include <stdlib.h>
#include <string.h>
#include <msgpack.h>

#include "testlib.h"
#include "cluster_codec.h"
#include "sl_util.h"

static int decode4(const char *uid, const char *nsp, const char *type, const char *data,
                   size_t dlen, sl_cl_entry *e) {
  const char *f[8] = {"uid", uid, "nsp", nsp, "type", type, "data", data};
  size_t fl[8] = {3, strlen(uid), 3, strlen(nsp), 4, strlen(type), 4, dlen};
  return sl_cl_decode(f, fl, 8, e);
}

TEST(encode_is_the_adapter_shape) {
  sl_sbuf b = {0};
  const char *rooms[] = {"abc\"d"};
  sl_cl_out o = {.nsp_json = "\"/feed\"",
                 .topic_json = "\"prices\"",
                 .payload = "{\"p\":1}",
                 .len = 7,
                 .rooms = rooms,
                 .nrooms = 1,
                 .seq = 42,
                 .delivered = true,
                 .key = "k\n1",
                 .msgid = "msg-x-1",
                 .snapshot_set = true,
                 .snapshot = "{\"s\":2}"};
  sl_cl_encode(&b, &o);
  sl_sbuf_append(&b, "", 1);
  CHECK_EQ_STR(b.data,
               "{\"opts\":{\"rooms\":[\"abc\\\"d\"],\"except\":[],\"flags\":{\"sluice\":{"
               "\"s\":42,\"d\":1,\"k\":\"k\\u000a1\",\"id\":\"msg-x-1\",\"snap\":{\"s\":2}}}},"
               "\"packet\":{\"type\":2,\"data\":[\"prices\",{\"p\":1}],\"nsp\":\"/feed\"}}");
  sl_sbuf_free(&b);
  sl_cl_out plain = {.nsp_json = "\"/\"", .topic_json = "\"t\"", .payload = "1", .len = 1};
  sl_cl_encode(&b, &plain);
  sl_sbuf_append(&b, "", 1);
  CHECK_EQ_STR(b.data, "{\"opts\":{\"rooms\":[],\"except\":[],\"flags\":{\"sluice\":{\"s\":0}}},"
                       "\"packet\":{\"type\":2,\"data\":[\"t\",1],\"nsp\":\"/\"}}");
  sl_sbuf_free(&b);
}

TEST(round_trip) {
  sl_sbuf b = {0};
  const char *rooms[] = {"c1", "c2"};
  sl_cl_out o = {.nsp_json = "\"/feed\"",
                 .topic_json = "\"prices\"",
                 .payload = "[1,\"x\",{\"a\":null}]",
                 .len = 18,
                 .rooms = rooms,
                 .nrooms = 2,
                 .seq = 7,
                 .key = "K",
                 .msgid = "msg-a-9",
                 .snapshot_set = true};
  sl_cl_encode(&b, &o);
  sl_cl_entry e;
  CHECK_EQ_INT(decode4("sluice-x-0", "/feed", "3", b.data, b.len, &e), SL_CL_OK);
  CHECK_EQ_STR(e.uid, "sluice-x-0");
  CHECK_EQ_STR(e.nsp, "/feed");
  CHECK_EQ_STR(e.topic, "prices");
  CHECK_EQ_STR(e.payload, "[1,\"x\",{\"a\":null}]");
  CHECK_EQ_INT(e.nrooms, 2);
  if (e.nrooms == 2) CHECK_EQ_STR(e.rooms[1], "c2");
  CHECK_EQ_INT(e.nexcept, 0);
  CHECK(e.sluice);
  CHECK_EQ_INT(e.seq, 7);
  CHECK(!e.delivered);
  CHECK_EQ_STR(e.key, "K");
  CHECK_EQ_STR(e.msgid, "msg-a-9");
  CHECK(e.snapshot_set && e.snapshot == NULL);
  sl_cl_entry_free(&e);
  sl_sbuf_free(&b);
}

/* What the adapter writes for io.of("/feed").except("s1").emit("prices", {"x":1}, 2). */
TEST(adapter_json_entry) {
  const char *data =
      "{\"packet\":{\"type\":2,\"data\":[\"prices\",{\"x\":1},2]},\"opts\":{\"rooms\":"
      "[],\"except\":[\"s1\"],\"flags\":{\"volatile\":true}}}";
  sl_cl_entry e;
  CHECK_EQ_INT(decode4("a1b2c3", "/feed", "3", data, strlen(data), &e), SL_CL_OK);
  CHECK_EQ_STR(e.topic, "prices");
  CHECK_EQ_STR(e.payload, "{\"x\":1}"); /* the first argument */
  CHECK_EQ_INT(e.nexcept, 1);
  if (e.nexcept == 1) CHECK_EQ_STR(e.except[0], "s1");
  CHECK(e.is_volatile);
  CHECK(!e.sluice);
  sl_cl_entry_free(&e);
  /* no argument: null */
  const char *bare = "{\"packet\":{\"type\":2,\"data\":[\"ping\"]},\"opts\":{\"rooms\":[],"
                     "\"except\":[]}}";
  CHECK_EQ_INT(decode4("u", "/", "3", bare, strlen(bare), &e), SL_CL_OK);
  CHECK_EQ_STR(e.payload, "null");
  sl_cl_entry_free(&e);
}

static char *b64_of_msgpack(void (*pack)(msgpack_packer *)) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  pack(&pk);
  char *out = malloc(sl_b64_enclen(sb.size) + 1);
  out[sl_b64_encode((const uint8_t *)sb.data, sb.size, out)] = 0;
  msgpack_sbuffer_destroy(&sb);
  return out;
}

static void pstr(msgpack_packer *pk, const char *s) {
  msgpack_pack_str(pk, strlen(s));
  msgpack_pack_str_body(pk, s, strlen(s));
}

/* {packet:{type:2,data:["prices",<arg>]},opts:{rooms:["r"],except:[],flags:{}}} */
static void pack_with(msgpack_packer *pk, void (*arg)(msgpack_packer *)) {
  msgpack_pack_map(pk, 2);
  pstr(pk, "packet");
  msgpack_pack_map(pk, 2);
  pstr(pk, "type");
  msgpack_pack_int(pk, 2);
  pstr(pk, "data");
  msgpack_pack_array(pk, 2);
  pstr(pk, "prices");
  arg(pk);
  pstr(pk, "opts");
  msgpack_pack_map(pk, 3);
  pstr(pk, "rooms");
  msgpack_pack_array(pk, 1);
  pstr(pk, "r");
  pstr(pk, "except");
  msgpack_pack_array(pk, 0);
  pstr(pk, "flags");
  msgpack_pack_map(pk, 0);
}
static void arg_plain(msgpack_packer *pk) {
  msgpack_pack_map(pk, 3);
  pstr(pk, "n");
  msgpack_pack_int(pk, -5);
  pstr(pk, "f");
  msgpack_pack_double(pk, 1.5);
  pstr(pk, "ok");
  msgpack_pack_true(pk);
}
static void arg_bin(msgpack_packer *pk) {
  msgpack_pack_bin(pk, 3);
  msgpack_pack_bin_body(pk, "\x01\x02\x03", 3);
}
static void plain(msgpack_packer *pk) { pack_with(pk, arg_plain); }
static void binary(msgpack_packer *pk) { pack_with(pk, arg_bin); }

TEST(adapter_msgpack_entry) {
  sl_cl_entry e;
  char *d = b64_of_msgpack(plain);
  CHECK_EQ_INT(decode4("u", "/feed", "3", d, strlen(d), &e), SL_CL_OK);
  CHECK_EQ_STR(e.payload, "{\"n\":-5,\"f\":1.5,\"ok\":true}");
  CHECK_EQ_INT(e.nrooms, 1);
  sl_cl_entry_free(&e);
  free(d);
  d = b64_of_msgpack(binary);
  CHECK_EQ_INT(decode4("u", "/feed", "3", d, strlen(d), &e), SL_CL_BINARY);
  sl_cl_entry_free(&e);
  free(d);
  CHECK_EQ_INT(decode4("u", "/feed", "3", "!!!!", 4, &e), SL_CL_MALFORMED);
  sl_cl_entry_free(&e);
  CHECK_EQ_INT(decode4("u", "/feed", "3", "AAAA", 4, &e), SL_CL_MALFORMED); /* trailing bytes */
  sl_cl_entry_free(&e);
}

/* Found by fuzz_cluster: a container claiming 2^32 elements made msgpack-c ask for 100 GB
 * before reading them; an empty string key came back from msgpack-c with a NULL pointer. */
TEST(msgpack_fuzz_regressions) {
  sl_cl_entry e;
  const char *huge = "3f////8="; /* 0xdd ff ff ff ff: array32 of 4294967295 */
  CHECK_EQ_INT(decode4("u", "/feed", "3", huge, strlen(huge), &e), SL_CL_MALFORMED);
  sl_cl_entry_free(&e);
  const char *map = "gd//////"; /* fixmap 1 -> map32 of 2^32-1 pairs */
  CHECK_EQ_INT(decode4("u", "/feed", "3", map, strlen(map), &e), SL_CL_MALFORMED);
  sl_cl_entry_free(&e);
  const char *empty_key = "gaAA"; /* {"": 0}: valid msgpack, not a broadcast */
  CHECK_EQ_INT(decode4("u", "/feed", "3", empty_key, strlen(empty_key), &e), SL_CL_MALFORMED);
  sl_cl_entry_free(&e);
}

TEST(not_for_sluice) {
  sl_cl_entry e;
  const char *join = "{\"opts\":{\"rooms\":[],\"except\":[]},\"rooms\":[\"x\"]}";
  CHECK_EQ_INT(decode4("u", "/feed", "4", join, strlen(join), &e), SL_CL_OTHER_TYPE);
  CHECK_EQ_INT(e.type, 4);
  sl_cl_entry_free(&e);
  const char *ack = "{\"requestId\":\"r1\",\"packet\":{\"type\":2,\"data\":[\"t\",1]},\"opts\":{}}";
  CHECK_EQ_INT(decode4("u", "/feed", "3", ack, strlen(ack), &e), SL_CL_WITH_ACK);
  sl_cl_entry_free(&e);
  const char *bin = "{\"packet\":{\"type\":5,\"data\":[\"t\",1]},\"opts\":{}}";
  CHECK_EQ_INT(decode4("u", "/feed", "3", bin, strlen(bin), &e), SL_CL_BINARY);
  sl_cl_entry_free(&e);
  const char *disc = "{\"packet\":{\"type\":1},\"opts\":{}}";
  CHECK_EQ_INT(decode4("u", "/feed", "3", disc, strlen(disc), &e), SL_CL_OTHER_TYPE);
  sl_cl_entry_free(&e);
}

TEST(malformed) {
  static const char *const bad[] = {
      "{",
      "{}",
      "[]",
      "{\"packet\":{\"type\":2,\"data\":[]},\"opts\":{}}",
      "{\"packet\":{\"type\":2,\"data\":[1,2]},\"opts\":{}}",
      "{\"packet\":{\"type\":2,\"data\":\"x\"}}",
      "{\"packet\":{\"data\":[\"t\"]}}",
      "{\"packet\":{\"type\":2,\"data\":[\"t\"]},\"opts\":{\"rooms\":[1]}}",
      "{\"packet\":{\"type\":2,\"data\":[\"t\"]},\"opts\":{\"except\":{}}}",
      "{\"packet\":{\"type\":2,\"data\":[\"t\"]},\"opts\":7}",
  };
  sl_cl_entry e;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = decode4("u", "/feed", "3", bad[i], strlen(bad[i]), &e);
    if (rc != SL_CL_MALFORMED) TL_FAIL("%s: %d", bad[i], rc);
    sl_cl_entry_free(&e);
  }
  /* fields: missing, odd count, a bad type, NUL inside */
  const char *f1[4] = {"uid", "u", "type", "3"};
  size_t l1[4] = {3, 1, 4, 1};
  CHECK_EQ_INT(sl_cl_decode(f1, l1, 4, &e), SL_CL_MALFORMED); /* no nsp */
  sl_cl_entry_free(&e);
  CHECK_EQ_INT(sl_cl_decode(f1, l1, 3, &e), SL_CL_MALFORMED);
  sl_cl_entry_free(&e);
  CHECK_EQ_INT(decode4("u", "/feed", "3x", "{}", 2, &e), SL_CL_MALFORMED);
  sl_cl_entry_free(&e);
  CHECK_EQ_INT(decode4("u", "/feed", "3", "{\"a\":1}\0{", 9, &e), SL_CL_MALFORMED);
  sl_cl_entry_free(&e);
  CHECK_EQ_INT(decode4("u", "", "3", "{}", 2, &e), SL_CL_MALFORMED);
  sl_cl_entry_free(&e);
  /* not UTF-8: it would go out in WebSocket text frames */
  const char *latin1 = "{\"packet\":{\"type\":2,\"data\":[\"t\",\"caf\xe9\"]},\"opts\":{}}";
  CHECK_EQ_INT(decode4("u", "/feed", "3", latin1, strlen(latin1), &e), SL_CL_MALFORMED);
  sl_cl_entry_free(&e);
  /* sluice flags of the wrong types count as absent */
  const char *odd = "{\"packet\":{\"type\":2,\"data\":[\"t\",1]},\"opts\":{\"flags\":{\"sluice\":{"
                    "\"s\":\"x\",\"k\":5,\"id\":[]}}}}";
  CHECK_EQ_INT(decode4("u", "/feed", "3", odd, strlen(odd), &e), SL_CL_OK);
  CHECK(e.sluice && e.seq == 0 && !e.key && !e.msgid && !e.snapshot_set);
  sl_cl_entry_free(&e);
}

TEST(ids) {
  CHECK_EQ_INT(sl_cl_id_cmp("1-0", "1-0"), 0);
  CHECK_EQ_INT(sl_cl_id_cmp("1-1", "1-0"), 1);
  CHECK_EQ_INT(sl_cl_id_cmp("9-9", "10-0"), -1);
  CHECK_EQ_INT(sl_cl_id_cmp("1796626026638180-12", "1796626026638180-3"), 1);
  CHECK_EQ_INT(sl_cl_id_cmp("junk", "0-0"), 0);
}

int main(void) {
  RUN(encode_is_the_adapter_shape);
  RUN(round_trip);
  RUN(adapter_json_entry);
  RUN(adapter_msgpack_entry);
  RUN(msgpack_fuzz_regressions);
  RUN(not_for_sluice);
  RUN(malformed);
  RUN(ids);
  return tl_report();
}
