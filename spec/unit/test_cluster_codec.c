/* test_cluster_codec.c - core/cluster_codec.c: the data JSON Sluice appends (the shape
 * @socket.io/redis-streams-adapter 0.3.1 writes for a BROADCAST), the decoder of entries
 * read back (Sluice's, the adapter's JSON and base64-msgpack ones, other message types,
 * malformed input) and stream id comparison. */
#include <stdlib.h>
#include <string.h>
#include <msgpack.h>

#include <dirent.h>
#include <stdio.h>

#include "testlib.h"
#include "cluster_codec.h"
#include "cluster_codec_ref.h" /* the decoder as it was: the differential tests' reference */
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


/* ---- the one-pass decoder against the cJSON one it replaced ----------------------------- */

/* Decode data (uid u, nsp /feed, type 3) with both decoders; report the first difference. */
static void same_data(const char *data, size_t len) {
  const char *f[8] = {"uid", "u", "nsp", "/feed", "type", "3", "data", data};
  size_t fl[8] = {3, 1, 3, 5, 4, 1, 4, len};
  int rc;
  const char *d = cl_diff_fields(f, fl, 8, &rc);
  if (d) TL_FAIL("%s differs (rc %d) for data \"%.*s\"", d, rc, (int)(len > 300 ? 300 : len), data);
}
#define SAME(lit) same_data(lit, sizeof(lit) - 1)

/* The common entries take the one pass: their strings are in one block. */
TEST(common_entries_take_the_scan) {
  sl_sbuf b = {0};
  const char *rooms[] = {"c1"};
  sl_cl_out o = {.nsp_json = "\"/feed\"", .topic_json = "\"prices\"", .payload = "{\"p\":1}",
                 .len = 7, .rooms = rooms, .nrooms = 1, .seq = 9, .key = "k", .msgid = "m-1",
                 .snapshot_set = true, .snapshot = "{\"a\":[1,\"x\"]}"};
  sl_cl_encode(&b, &o);
  sl_cl_entry e;
  CHECK_EQ_INT(decode4("sluice-a", "/feed", "3", b.data, b.len, &e), SL_CL_OK);
  CHECK(e.blk != NULL);
  CHECK_EQ_STR(e.snapshot, "{\"a\":[1,\"x\"]}");
  sl_cl_entry_free(&e);
  same_data(b.data, b.len);
  sl_sbuf_free(&b);
  const char *adapter = "{\"packet\":{\"type\":2,\"data\":[\"prices\",{\"x\":1}],\"nsp\":\"/feed\"},"
                        "\"opts\":{\"rooms\":[\"r1\"],\"except\":[],\"flags\":{}}}";
  CHECK_EQ_INT(decode4("a1", "/feed", "3", adapter, strlen(adapter), &e), SL_CL_OK);
  CHECK(e.blk != NULL);
  sl_cl_entry_free(&e);
  char *mp = b64_of_msgpack(plain); /* the adapter's msgpack entries, turned into JSON */
  CHECK_EQ_INT(decode4("a1", "/feed", "3", mp, strlen(mp), &e), SL_CL_OK);
  CHECK(e.blk != NULL);
  sl_cl_entry_free(&e);
  same_data(mp, strlen(mp));
  free(mp);
}

#define PK(rest) "{\"packet\":{\"type\":2,\"data\":[\"t\",1]}" rest "}"
#define SL(m) "{\"opts\":{\"flags\":{\"sluice\":{" m "}}},\"packet\":{\"type\":2,\"data\":[\"t\",1]}}"

TEST(differential_edge_cases) {
  /* duplicate members: the first wins, at every level */
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",1]},\"packet\":{\"type\":2,\"data\":[\"b\",2]}}");
  SAME("{\"packet\":{\"type\":2,\"type\":5,\"data\":[\"a\",1],\"data\":[\"b\",2]}}");
  SAME("{\"packet\":{\"type\":5,\"type\":2,\"data\":[\"a\",1]}}");
  SAME("{\"packet\":{\"type\":\"2\",\"type\":2,\"data\":[\"a\",1]}}");
  SAME("{\"packet\":1,\"packet\":{\"type\":2,\"data\":[\"a\"]}}");
  SAME("{\"opts\":5,\"opts\":{},\"packet\":{\"type\":2,\"data\":[\"a\"]}}");
  SAME("{\"opts\":null,\"packet\":{\"type\":2,\"data\":[\"a\"]}}");
  SAME(PK(",\"opts\":{\"rooms\":[\"a\"],\"rooms\":[\"b\",\"c\"],\"except\":[\"x\"],\"except\":5}"));
  SAME(PK(",\"opts\":{\"rooms\":5,\"rooms\":[\"b\"]}"));
  SAME(PK(",\"opts\":{\"rooms\":[\"a\",1]}"));
  SAME(PK(",\"opts\":{\"rooms\":null}"));
  SAME(PK(",\"opts\":{\"flags\":{\"volatile\":true,\"volatile\":false}}"));
  SAME(PK(",\"opts\":{\"flags\":{\"volatile\":1}}"));
  SAME(PK(",\"opts\":{\"flags\":[1],\"flags\":{\"volatile\":true}}"));
  SAME(PK(",\"opts\":{\"flags\":{\"sluice\":1,\"sluice\":{\"s\":3}}}"));
  SAME(PK(",\"opts\":{\"flags\":{\"sluice\":{}}}"));
  SAME(SL("\"s\":1,\"s\":2,\"d\":1,\"d\":0,\"k\":\"a\",\"k\":\"b\",\"id\":\"x\",\"id\":\"y\""));
  SAME(SL("\"s\":\"1\",\"d\":\"1\",\"k\":1,\"id\":null,\"snap\":null,\"snap\":1"));
  SAME(SL("\"k\":5,\"k\":\"later\""));
  SAME("{\"requestId\":1,\"packet\":5}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\"]},\"requestId\":null}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\"]},\"requestId\":[1,");
  /* escapes, surrogate pairs, NUL */
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\\b\\f\\r\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\\u0000b\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"\\u0000\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"\\ud800\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"\\udc00\\ud800\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"\\ud800\\u0041\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"\\uZZZZ\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"\\x\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"raw\001ctl\",1]}}");
  SAME("{\"pack\\u0065t\":{\"type\":2,\"data\":[\"escaped name\",1]}}");
  SAME("{\"packet\":{\"typ\\u0065\":2,\"data\":[\"a\",1]}}");
  SAME("{\"packet\":{\"type\\u0000x\":5,\"type\":2,\"data\":[\"a\",1]}}");
  SAME(PK(",\"opts\":{\"rooms\":[\"r\\u0000x\",\"\\u00e9\",\"\\ud83d\\ude00\"],\"except\":[\"\"]}"));
  SAME(SL("\"k\":\"a\\u0000b\",\"id\":\"\\u0041\\u0000\""));
  SAME(SL("\"id\":\"0123456789012345678901234567890123456789012345\""));
  SAME(SL("\"id\":\"01234567890123456789012345678901234567890123456\""));
  SAME(SL("\"id\":\"0123456789012345678901234567890123456789012345\\u0000xyz\""));
  SAME(SL("\"id\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
          "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\""));
  /* numbers */
  static const char *types[] = {"1e0", "2.0", "2e0", "20e-1", "-0", "0", "5", "5.0", "5e0",
                                "2.0000000000000001", "1e400", "-1e400", "2E+0", "02", "2.",
                                "-", "1.5", "3", "4294967298", "1e-400", "+2", ".2", "2e",
                                "0.2e1", "22222222222222222222222222222222222222222222222222222"
                                "2222222222222222222"};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
    char buf[256];
    snprintf(buf, sizeof buf, "{\"packet\":{\"type\":%s,\"data\":[\"a\",1]}}", types[i]);
    same_data(buf, strlen(buf));
    snprintf(buf, sizeof buf, SL("\"s\":%s,\"d\":%s"), types[i], types[i]);
    same_data(buf, strlen(buf));
  }
  SAME(SL("\"s\":9007199254740991,\"d\":true"));
  SAME(SL("\"s\":9007199254740992"));
  SAME(SL("\"s\":123456789012345,\"d\":false"));
  SAME(SL("\"s\":1234567890123456"));
  SAME(SL("\"s\":-1"));
  SAME(SL("\"s\":1.9,\"d\":1.0"));
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\","
       "1111111111111111111111111111111111111111111111111111111111111111111111]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\","
       "111111111111111111111111111111111111111111111111111111111111111]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",[01]]}}");
  /* snap: printed as sl_json_print prints it */
  static const char *snaps[] = {
      "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\"}", "{ \"a\" : 1 }", "[1.5,2e3,-0,0,-7,1E2]",
      "\"esc\\u0041\\n\\u0000x\"", "1e400", "{\"a\":{\"a\":{\"a\":[[[]]]}}}",
      "123456789012345", "1234567890123456", "-123456789012345", "true", "false", "{}",
      "[]", "\"\"", "{\"k\\u00e9\":1,\"k\":2,\"k\":3}", "\"\\/\"", "0.1", "[\"a\\\"b\"]",
      "9007199254740993", "{\"\":\"\"}", "[\"\\u001f\\u007f\"]"};
  for (size_t i = 0; i < sizeof snaps / sizeof *snaps; i++) {
    char buf[256];
    snprintf(buf, sizeof buf, SL("\"snap\":%s"), snaps[i]);
    same_data(buf, strlen(buf));
  }
  /* whitespace everywhere (and the whitespace only cJSON takes) */
  SAME(" \n{ \"packet\" :\t{ \"type\" : 2 , \"data\" : [ \"a\" , { \"x\" : [ 1 , 2 ] } , 3 ] } ,"
       " \"opts\" : { \"rooms\" : [ \"r\" , \"s\" ] , \"flags\" : { \"sluice\" : { \"s\" : 4 ,"
       " \"snap\" : { \"a\" : 1 } } } } }\r\n ");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",1]}}\v");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",\0011]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",1]}} trailing garbage");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",1]}}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",1]},}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",1,]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",1]}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",nul]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[1,\"a\"]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":{\"0\":\"a\"}}}");
  SAME("{\"packet\":{\"type\":2}}");
  SAME("{\"packet\":{\"data\":[\"a\"]}}");
  SAME("{}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",1,2,3]},\"opts\":{}}");
  /* NUL and invalid UTF-8 in the text */
  same_data("{\"packet\":{\"type\":2,\"data\":[\"a\",\"\0\"]}}", 38);
  same_data("{\"packet\":{\"type\":2,\"data\":[\"a\",1]}}\0", 37);
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",\"\xff\"]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"\xed\xa0\x80\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"\xc0\xaf\",1]}}");
  SAME("{\"packet\":{\"type\":2,\"data\":[\"a\",1]}}\xff");
  /* nesting: the scanner's limit (200) is below cJSON's (1000) */
  for (int depth = 190; depth <= 1010; depth += 205) {
    sl_sbuf b = {0};
    sl_sbuf_puts(&b, "{\"packet\":{\"type\":2,\"data\":[\"a\",");
    for (int i = 0; i < depth; i++) sl_sbuf_puts(&b, "[");
    for (int i = 0; i < depth; i++) sl_sbuf_puts(&b, "]");
    sl_sbuf_puts(&b, "]}}");
    same_data(b.data, b.len);
    sl_sbuf_free(&b);
  }
  /* huge room lists: at the limit, past it, escapes in many */
  for (int n = 4095; n <= 4097; n++) {
    sl_sbuf b = {0};
    sl_sbuf_puts(&b, "{\"opts\":{\"rooms\":[");
    for (int i = 0; i < n; i++) sl_sbuf_printf(&b, "%s\"r%d\\u00e9\"", i ? "," : "", i);
    sl_sbuf_puts(&b, "],\"except\":[");
    for (int i = 0; i < n; i++) sl_sbuf_printf(&b, "%s\"x%d\"", i ? "," : "", i);
    sl_sbuf_puts(&b, "]},\"packet\":{\"type\":2,\"data\":[\"a\",1]}}");
    same_data(b.data, b.len);
    sl_sbuf_free(&b);
  }
  /* the field list around the data */
  const char *f1[8] = {"uid", "u", "nsp", "", "type", "3", "data", "{}"};
  size_t fl1[8] = {3, 1, 3, 0, 4, 1, 4, 2};
  CHECK(cl_diff_fields(f1, fl1, 8, NULL) == NULL);
  const char *f2[8] = {"uid", "u", "nsp", "/\xff", "type", "3", "data", PK("")};
  size_t fl2[8] = {3, 1, 3, 2, 4, 1, 4, sizeof PK("") - 1};
  CHECK(cl_diff_fields(f2, fl2, 8, NULL) == NULL);
  const char *f3[10] = {"uid", "u", "type", "x", "nsp", "/", "type", "3", "data", PK("")};
  size_t fl3[10] = {3, 1, 4, 1, 3, 1, 4, 1, 4, sizeof PK("") - 1};
  CHECK(cl_diff_fields(f3, fl3, 10, NULL) == NULL);
  const char *f4[12] = {"uid", "u", "nsp", "/a", "uid", "v", "nsp", "/b",
                        "type", "3", "data", PK("")};
  size_t fl4[12] = {3, 1, 3, 2, 3, 1, 3, 2, 4, 1, 4, sizeof PK("") - 1};
  CHECK(cl_diff_fields(f4, fl4, 12, NULL) == NULL);
  const char *f5[8] = {"uid", "u", "nsp", "/", "type", "1", "data", PK("")};
  size_t fl5[8] = {3, 1, 3, 1, 4, 1, 4, sizeof PK("") - 1};
  CHECK(cl_diff_fields(f5, fl5, 8, NULL) == NULL);
  const char *f6[7] = {"uid", "u", "nsp", "/", "type", "3", "data"};
  size_t fl6[7] = {3, 1, 3, 1, 4, 1, 4};
  CHECK(cl_diff_fields(f6, fl6, 7, NULL) == NULL);
}

/* Every committed fuzz_cluster seed, read as the fuzz target reads it. */
TEST(differential_fuzz_corpus) {
  const char *dir = "spec/fuzz/corpus/fuzz_cluster";
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  if (!d) return;
  struct dirent *de;
  int n = 0;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    FILE *fp = fopen(path, "rb");
    if (!fp) continue;
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    if (!len) continue;
    n++;
    const char *rest = buf + 1;
    size_t rl = len - 1;
    if (!(buf[0] & 1)) {
      same_data(rest, rl);
      continue;
    }
    const char *f[64];
    size_t fl[64], nf = 0, start = 0;
    for (size_t i = 0; i <= rl && nf < 64; i++) {
      if (i == rl || rest[i] == 0x1f) {
        f[nf] = rest + start;
        fl[nf++] = i - start;
        start = i + 1;
      }
    }
    const char *diff = cl_diff_fields(f, fl, nf, NULL);
    if (diff) TL_FAIL("%s differs for seed %s", diff, de->d_name);
  }
  closedir(d);
  CHECK(n > 100);
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
  RUN(common_entries_take_the_scan);
  RUN(differential_edge_cases);
  RUN(differential_fuzz_corpus);
  RUN(ids);
  return tl_report();
}
