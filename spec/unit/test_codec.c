/* test_codec.c - unit tests for core/sio_codec.c: Engine.IO records and payloads,
 * Socket.IO headers and payload rules (PROTOCOL.md 2.3, 2.5, 3.1, 3.4), header encoding,
 * WebSocket frame headers. */
#include "testlib.h"
#include "sio_codec.h"
#include "sl_jscan.h"
#include "sl_util.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------------------- */

/* The whole inbound pipeline for one Engine.IO text record, as the session code runs it:
 * sl_eio_parse_text -> must be a text message -> sl_sio_parse -> sl_sio_parse_json ->
 * sl_sio_validate_payload -> (binary) sl_sio_count_placeholders against the attachment count.
 * Returns 0 if the reference would accept the packet, -1 if it would close. */
static int pipeline(const char *wire, sio_packet *pkt) {
  size_t len = strlen(wire);
  uint8_t *copy = malloc(len + 1);
  eio_packet ep;
  sio_packet p;
  cJSON *json = NULL;
  int rc = -1;

  memcpy(copy, wire, len + 1);
  if (sl_eio_parse_text(copy, len, &ep) < 0 || ep.type != EIO_MESSAGE || ep.binary) goto out;
  if (sl_sio_parse((const char *)ep.data, ep.len, &p) < 0) goto out;
  if (sl_sio_parse_json(p.json, p.jsonlen, &json) < 0) goto out;
  if (sl_sio_validate_payload(p.type, json) < 0) goto out;
  if (p.attachments > 0 && sl_sio_count_placeholders(json, p.attachments) < 0) goto out;
  rc = 0;
  if (pkt) { /* keep the views valid: point them at the caller's string instead */
    *pkt = p;
    if (p.nsp != NULL && p.nsp >= (const char *)copy && p.nsp < (const char *)copy + len)
      pkt->nsp = wire + (p.nsp - (const char *)copy);
    pkt->json = wire + (p.json - (const char *)copy);
  }
out:
  cJSON_Delete(json);
  free(copy);
  return rc;
}

static int parse_str(const char *s, sio_packet *p) {
  return sl_sio_parse(s, strlen(s), p);
}

static cJSON *js(const char *s) {
  cJSON *j = NULL;
  if (sl_sio_parse_json(s, strlen(s), &j) < 0) return NULL;
  return j;
}

static int validate_str(int type, const char *json) {
  cJSON *j = NULL;
  if (sl_sio_parse_json(json, strlen(json), &j) < 0) return -2;
  int rc = sl_sio_validate_payload(type, j);
  cJSON_Delete(j);
  return rc;
}

static int count_str(const char *json, int natts) {
  cJSON *j = js(json);
  if (!j) return -2;
  int rc = sl_sio_count_placeholders(j, natts);
  cJSON_Delete(j);
  return rc;
}

/* ---- Engine.IO ------------------------------------------------------------------------ */

TEST(eio_text_types) {
  const char *recs[] = {"0{\"sid\":\"x\"}", "1", "2", "2probe", "3probe", "4hello", "5", "6"};
  int types[] = {0, 1, 2, 2, 3, 4, 5, 6};
  for (int i = 0; i < 8; i++) {
    char buf[32];
    eio_packet p;
    size_t n = strlen(recs[i]);
    memcpy(buf, recs[i], n);
    CHECK_EQ_INT(sl_eio_parse_text((uint8_t *)buf, n, &p), 0);
    CHECK_EQ_INT(p.type, types[i]);
    CHECK(!p.binary);
    CHECK_EQ_MEM(p.data, p.len, recs[i] + 1, n - 1);
  }
}

TEST(eio_text_invalid) {
  eio_packet p = {.type = 99};
  uint8_t buf[8];
  CHECK_EQ_INT(sl_eio_parse_text(buf, 0, &p), -1);
  CHECK_EQ_INT(sl_eio_parse_text(NULL, 0, &p), -1);
  memcpy(buf, "abc", 3);
  CHECK_EQ_INT(sl_eio_parse_text(buf, 3, &p), -1); /* PROTOCOL 2.3: WS `abc` closes */
  memcpy(buf, "7", 1);
  CHECK_EQ_INT(sl_eio_parse_text(buf, 1, &p), -1);
  memcpy(buf, "/", 1);
  CHECK_EQ_INT(sl_eio_parse_text(buf, 1, &p), -1);
  memcpy(buf, "B", 1);
  CHECK_EQ_INT(sl_eio_parse_text(buf, 1, &p), -1);
  memcpy(buf, "b!!!", 4);
  CHECK_EQ_INT(sl_eio_parse_text(buf, 4, &p), -1); /* bad base64 */
  memcpy(buf, "bA", 2);
  CHECK_EQ_INT(sl_eio_parse_text(buf, 2, &p), -1); /* lone base64 char */
  CHECK_EQ_INT(p.type, 99);                      /* untouched on failure */
}

TEST(eio_binary_base64) {
  uint8_t buf[16];
  eio_packet p;
  memcpy(buf, "bAQIDBA==", 9);
  CHECK_EQ_INT(sl_eio_parse_text(buf, 9, &p), 0);
  CHECK_EQ_INT(p.type, EIO_MESSAGE);
  CHECK(p.binary);
  CHECK(p.data == buf);
  CHECK_EQ_MEM(p.data, p.len, "\x01\x02\x03\x04", 4);
  memcpy(buf, "b", 1);
  CHECK_EQ_INT(sl_eio_parse_text(buf, 1, &p), 0); /* empty Buffer */
  CHECK(p.binary);
  CHECK_EQ_INT(p.len, 0);
}

/* Iterate a POST body into a list of "record|record|..." for easy comparison. */
static void split_body(const char *body, size_t len, char *out) {
  size_t pos = 0, o = 0;
  const uint8_t *rec;
  size_t reclen;
  int first = 1;
  while (sl_eio_payload_next((const uint8_t *)body, len, &pos, &rec, &reclen)) {
    if (!first) out[o++] = '|';
    first = 0;
    memcpy(out + o, rec, reclen);
    o += reclen;
  }
  out[o] = '\0';
}

TEST(eio_payload_records) {
  char out[128];
  split_body("4hello\x1e" "bAQIDBA==", 16, out);
  CHECK_EQ_STR(out, "4hello|bAQIDBA==");
  split_body("4a", 2, out);
  CHECK_EQ_STR(out, "4a");
  split_body("", 0, out); /* "" splits into one empty record (then fails sl_eio_parse_text) */
  CHECK_EQ_STR(out, "");
  split_body("1\x1e", 2, out);
  CHECK_EQ_STR(out, "1|");
  split_body("\x1e\x1e", 2, out);
  CHECK_EQ_STR(out, "||");
  split_body("\x1e" "2", 2, out);
  CHECK_EQ_STR(out, "|2");
  split_body("40\x1e" "42[\"a\"]\x1e" "41", 13, out);
  CHECK_EQ_STR(out, "40|42[\"a\"]|41");
}

TEST(eio_payload_counts_and_end) {
  const uint8_t *rec = NULL;
  size_t reclen = 99, pos = 0;
  int n = 0;
  while (sl_eio_payload_next((const uint8_t *)"", 0, &pos, &rec, &reclen)) n++;
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(reclen, 0);
  /* stays at the end */
  CHECK_EQ_INT(sl_eio_payload_next((const uint8_t *)"", 0, &pos, &rec, &reclen), 0);
  pos = 0;
  n = 0;
  while (sl_eio_payload_next(NULL, 0, &pos, &rec, &reclen)) n++;
  CHECK_EQ_INT(n, 1);
  /* a garbage position past the end produces nothing */
  pos = 100;
  CHECK_EQ_INT(sl_eio_payload_next((const uint8_t *)"abc", 3, &pos, &rec, &reclen), 0);
}

TEST(eio_payload_text_and_binary_example) {
  /* PROTOCOL 2.5: 4hello\x1ebAQIDBA== = text "hello" + binary 01 02 03 04 */
  uint8_t body[] = "4hello\x1e" "bAQIDBA==";
  size_t len = sizeof body - 1, pos = 0, reclen;
  const uint8_t *rec;
  eio_packet p;
  CHECK_EQ_INT(sl_eio_payload_next(body, len, &pos, &rec, &reclen), 1);
  CHECK_EQ_INT(sl_eio_parse_text((uint8_t *)rec, reclen, &p), 0);
  CHECK_EQ_INT(p.type, EIO_MESSAGE);
  CHECK(!p.binary);
  CHECK_EQ_MEM(p.data, p.len, "hello", 5);
  CHECK_EQ_INT(sl_eio_payload_next(body, len, &pos, &rec, &reclen), 1);
  CHECK_EQ_INT(sl_eio_parse_text((uint8_t *)rec, reclen, &p), 0);
  CHECK(p.binary);
  CHECK_EQ_MEM(p.data, p.len, "\x01\x02\x03\x04", 4);
  CHECK_EQ_INT(sl_eio_payload_next(body, len, &pos, &rec, &reclen), 0);
  /* the first record is intact after the second was decoded in place */
  CHECK_EQ_MEM(body, 6, "4hello", 6);
}

TEST(eio_payload_empty_record_fails_parse) {
  uint8_t body[] = "4a\x1e\x1e" "4b";
  size_t pos = 0, reclen;
  const uint8_t *rec;
  eio_packet p;
  int ok = 0, bad = 0;
  while (sl_eio_payload_next(body, sizeof body - 1, &pos, &rec, &reclen)) {
    if (sl_eio_parse_text((uint8_t *)rec, reclen, &p) == 0) ok++;
    else bad++;
  }
  CHECK_EQ_INT(ok, 2);
  CHECK_EQ_INT(bad, 1);
}

TEST(utf8_valid) {
  CHECK(sl_utf8_valid((const uint8_t *)"", 0));
  CHECK(sl_utf8_valid(NULL, 0));
  CHECK(sl_utf8_valid((const uint8_t *)"42[\"hey\"]", 9));
  CHECK(sl_utf8_valid((const uint8_t *)"a\0b", 3)); /* NUL is a valid code point */
  CHECK(sl_utf8_valid((const uint8_t *)"\xc2\x80", 2));             /* U+0080 */
  CHECK(sl_utf8_valid((const uint8_t *)"\xdf\xbf", 2));             /* U+07FF */
  CHECK(sl_utf8_valid((const uint8_t *)"\xe0\xa0\x80", 3));         /* U+0800 */
  CHECK(sl_utf8_valid((const uint8_t *)"\xed\x9f\xbf", 3));         /* U+D7FF */
  CHECK(sl_utf8_valid((const uint8_t *)"\xee\x80\x80", 3));         /* U+E000 */
  CHECK(sl_utf8_valid((const uint8_t *)"\xef\xbf\xbf", 3));         /* U+FFFF */
  CHECK(sl_utf8_valid((const uint8_t *)"\xf0\x90\x80\x80", 4));     /* U+10000 */
  CHECK(sl_utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4));     /* U+10FFFF */
  CHECK(!sl_utf8_valid((const uint8_t *)"\x80", 1));                 /* lone continuation */
  CHECK(!sl_utf8_valid((const uint8_t *)"\xc0\xaf", 2));             /* overlong '/' */
  CHECK(!sl_utf8_valid((const uint8_t *)"\xc1\xbf", 2));
  CHECK(!sl_utf8_valid((const uint8_t *)"\xe0\x9f\xbf", 3));         /* overlong */
  CHECK(!sl_utf8_valid((const uint8_t *)"\xf0\x8f\xbf\xbf", 4));     /* overlong */
  CHECK(!sl_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));         /* surrogate */
  CHECK(!sl_utf8_valid((const uint8_t *)"\xed\xbf\xbf", 3));
  CHECK(!sl_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4));     /* > U+10FFFF */
  CHECK(!sl_utf8_valid((const uint8_t *)"\xf5\x80\x80\x80", 4));
  CHECK(!sl_utf8_valid((const uint8_t *)"\xff", 1));
  CHECK(!sl_utf8_valid((const uint8_t *)"\xe2\x82", 2));             /* truncated */
  CHECK(!sl_utf8_valid((const uint8_t *)"\xe2\x82\xac", 2));         /* len is honoured */
  CHECK(sl_utf8_valid((const uint8_t *)"\xe2\x82\xac", 3));          /* U+20AC */
  CHECK(!sl_utf8_valid((const uint8_t *)"\xe2\x28\xa1", 3));         /* bad continuation */
}

/* ---- Socket.IO header ----------------------------------------------------------------- */

TEST(sio_connect_default_nsp) {
  sio_packet p;
  CHECK_EQ_INT(parse_str("0", &p), 0);
  CHECK_EQ_INT(p.type, SIO_CONNECT);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/", 1);
  CHECK_EQ_INT(p.ack_id, -1);
  CHECK_EQ_INT(p.attachments, 0);
  CHECK_EQ_INT(p.jsonlen, 0);
  CHECK_EQ_INT(pipeline("40", NULL), 0);
}

TEST(sio_connect_namespaces) {
  sio_packet p;
  CHECK_EQ_INT(pipeline("40/admin,", &p), 0);
  CHECK_EQ_INT(p.type, SIO_CONNECT);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/admin", 6);
  CHECK_EQ_INT(p.jsonlen, 0);
  /* nsp ends at end of string too (suite sends 40/random and 41/custom) */
  CHECK_EQ_INT(pipeline("40/random", &p), 0);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/random", 7);
  CHECK_EQ_INT(p.jsonlen, 0);
  CHECK_EQ_INT(pipeline("41/custom", &p), 0);
  CHECK_EQ_INT(p.type, SIO_DISCONNECT);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/custom", 7);
  CHECK_EQ_INT(pipeline("41/custom,", &p), 0);
  CHECK_EQ_INT(pipeline("41", &p), 0);
  CHECK_EQ_INT(pipeline("40{\"token\":\"123\"}", &p), 0);
  CHECK_EQ_MEM(p.json, p.jsonlen, "{\"token\":\"123\"}", 15);
  CHECK_EQ_INT(pipeline("40/admin,{\"token\":\"1\"}", &p), 0);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/admin", 6);
  CHECK_EQ_MEM(p.json, p.jsonlen, "{\"token\":\"1\"}", 13);
  CHECK_EQ_INT(pipeline("40/,", &p), 0); /* explicit "/" */
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/", 1);
}

TEST(sio_connect_payload_rules) {
  CHECK_EQ_INT(pipeline("40[]", NULL), -1);
  CHECK_EQ_INT(pipeline("40\"x\"", NULL), -1);
  CHECK_EQ_INT(pipeline("401", NULL), 0); /* "1" is an ack id on CONNECT, no payload */
  CHECK_EQ_INT(pipeline("40null", NULL), -1);
  CHECK_EQ_INT(pipeline("41{}", NULL), -1); /* DISCONNECT takes no payload */
  CHECK_EQ_INT(pipeline("41/admin,[]", NULL), -1);
  CHECK_EQ_INT(pipeline("44{\"message\":\"Not authorized\"}", NULL), 0);
  CHECK_EQ_INT(pipeline("44/random,{\"message\":\"Invalid namespace\"}", NULL), 0);
  CHECK_EQ_INT(pipeline("44\"nope\"", NULL), 0);
  CHECK_EQ_INT(pipeline("44[]", NULL), -1);
  CHECK_EQ_INT(pipeline("44", NULL), -1);
  CHECK_EQ_INT(pipeline("4412", NULL), -1);
}

TEST(sio_event_examples) {
  sio_packet p;
  CHECK_EQ_INT(pipeline("42[\"hey\",\"Jude\"]", &p), 0);
  CHECK_EQ_INT(p.type, SIO_EVENT);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/", 1);
  CHECK_EQ_INT(p.ack_id, -1);
  CHECK_EQ_MEM(p.json, p.jsonlen, "[\"hey\",\"Jude\"]", 14);

  CHECK_EQ_INT(pipeline("42/admin,17[\"x\"]", &p), 0);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/admin", 6);
  CHECK_EQ_INT(p.ack_id, 17);
  CHECK_EQ_MEM(p.json, p.jsonlen, "[\"x\"]", 5);

  CHECK_EQ_INT(pipeline("43/admin,17[]", &p), 0);
  CHECK_EQ_INT(p.type, SIO_ACK);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/admin", 6);
  CHECK_EQ_INT(p.ack_id, 17);
  CHECK_EQ_MEM(p.json, p.jsonlen, "[]", 2);

  CHECK_EQ_INT(pipeline("42/admin,12[\"tellme\"]", &p), 0);
  CHECK_EQ_INT(p.ack_id, 12);
  CHECK_EQ_INT(pipeline("4212[\"tellme\"]", &p), 0);
  CHECK_EQ_INT(p.ack_id, 12);
  CHECK_EQ_INT(pipeline("420[\"a\"]", &p), 0); /* ack id 0 is valid (client counts from 0) */
  CHECK_EQ_INT(p.ack_id, 0);
  CHECK_EQ_INT(pipeline("43789[1,{\"a\":null}]", &p), 0);
  CHECK_EQ_INT(p.ack_id, 789);
  CHECK_EQ_INT(pipeline("42[1,2]", &p), 0); /* numeric event name */
  CHECK_EQ_INT(pipeline("42[\"a\"] \n", &p), 0); /* trailing JSON whitespace */
}

TEST(sio_suite_must_close) {
  CHECK_EQ_INT(pipeline("4abc", NULL), -1);     /* unknown SIO type */
  CHECK_EQ_INT(pipeline("42{}", NULL), -1);     /* payload not an array */
  CHECK_EQ_INT(pipeline("42abc[\"a\"]", NULL), -1); /* garbage where id/JSON should be */
  CHECK_EQ_INT(pipeline("42abc[...]", NULL), -1);
  CHECK_EQ_INT(pipeline("47[\"a\"]", NULL), -1);
  CHECK_EQ_INT(pipeline("4", NULL), -1);        /* empty Socket.IO packet */
  CHECK_EQ_INT(pipeline("42", NULL), -1);       /* EVENT without data (stricter than ref) */
  CHECK_EQ_INT(pipeline("42[]", NULL), -1);     /* empty array */
  CHECK_EQ_INT(pipeline("42[{}]", NULL), -1);   /* first element not string/number */
  CHECK_EQ_INT(pipeline("42[null]", NULL), -1);
  CHECK_EQ_INT(pipeline("42[[\"a\"]]", NULL), -1);
  CHECK_EQ_INT(pipeline("42[true]", NULL), -1);
  CHECK_EQ_INT(pipeline("42[\"a\"]x", NULL), -1); /* trailing garbage (JSON.parse fails) */
  CHECK_EQ_INT(pipeline("42[\"a\"][]", NULL), -1);
  CHECK_EQ_INT(pipeline("42[\"a\"", NULL), -1);   /* truncated */
  CHECK_EQ_INT(pipeline("43{}", NULL), -1);
  CHECK_EQ_INT(pipeline("43", NULL), -1);
  CHECK_EQ_INT(pipeline("43\"x\"", NULL), -1);
  CHECK_EQ_INT(pipeline("42/admin[\"a\"]", NULL), -1); /* nsp swallows to end, no payload */
}

TEST(sio_nsp_grammar) {
  sio_packet p;
  /* without ',' the namespace runs to the end of the text, whatever it contains */
  CHECK_EQ_INT(parse_str("2/admin[\"a\"]", &p), 0);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/admin[\"a\"]", 11);
  CHECK_EQ_INT(p.jsonlen, 0);
  /* only the first ',' ends it */
  CHECK_EQ_INT(parse_str("2/a,b,[\"x\"]", &p), 0);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/a", 2);
  CHECK_EQ_MEM(p.json, p.jsonlen, "b,[\"x\"]", 7);
  /* a namespace must start with '/': anything else is payload */
  CHECK_EQ_INT(parse_str("2admin,[\"x\"]", &p), 0);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/", 1);
  CHECK_EQ_MEM(p.json, p.jsonlen, "admin,[\"x\"]", 11);
  CHECK_EQ_INT(pipeline("42admin,[\"x\"]", NULL), -1);
  /* SIO_MAX_NSP bytes is the limit */
  char buf[SIO_MAX_NSP + 16];
  buf[0] = '0';
  buf[1] = '/';
  memset(buf + 2, 'n', SIO_MAX_NSP - 1);
  buf[SIO_MAX_NSP + 1] = ',';
  CHECK_EQ_INT(sl_sio_parse(buf, SIO_MAX_NSP + 2, &p), 0);
  CHECK_EQ_INT(p.nsplen, SIO_MAX_NSP);
  CHECK_EQ_INT(sl_sio_parse(buf, SIO_MAX_NSP + 1, &p), 0); /* no comma, same length */
  CHECK_EQ_INT(p.nsplen, SIO_MAX_NSP);
  memset(buf + 2, 'n', SIO_MAX_NSP);
  buf[SIO_MAX_NSP + 2] = ',';
  CHECK_EQ_INT(sl_sio_parse(buf, SIO_MAX_NSP + 3, &p), -1);
  CHECK_EQ_INT(sl_sio_parse(buf, SIO_MAX_NSP + 2, &p), -1);
}

TEST(sio_parse_respects_len) {
  /* nothing past len is read: the ',' and ack id beyond len must not be seen */
  sio_packet p;
  const char *s = "2/admin,17[\"x\"]";
  CHECK_EQ_INT(sl_sio_parse(s, 7, &p), 0);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/admin", 6);
  CHECK_EQ_INT(p.ack_id, -1);
  CHECK_EQ_INT(p.jsonlen, 0);
  CHECK_EQ_INT(sl_sio_parse(s, 9, &p), 0);
  CHECK_EQ_INT(p.ack_id, 1);
  CHECK_EQ_INT(p.jsonlen, 0);
  CHECK_EQ_INT(sl_sio_parse("51-[", 2, &p), -1); /* "51" then end: no '-' */
  CHECK_EQ_INT(sl_sio_parse("", 0, &p), -1);
  CHECK_EQ_INT(sl_sio_parse(NULL, 0, &p), -1);
  /* embedded NUL is just a byte */
  CHECK_EQ_INT(sl_sio_parse("2\0[]", 4, &p), 0);
  CHECK_EQ_INT(p.jsonlen, 3);
}

TEST(sio_type_chars) {
  sio_packet p = {.type = 77};
  for (int c = 0; c < 256; c++) {
    char s[2] = {(char)c, '-'};
    int rc = sl_sio_parse(s, 1, &p);
    if (c >= '0' && c <= '4') CHECK_EQ_INT(rc, 0);
    else CHECK_EQ_INT(rc, -1); /* 5 and 6 need "n-" */
  }
  CHECK_EQ_INT(parse_str("abc", &p), -1);
  CHECK_EQ_INT(parse_str("7", &p), -1);
  CHECK_EQ_INT(parse_str("-1", &p), -1);
}

TEST(sio_ack_id_overflow) {
  sio_packet p;
  CHECK_EQ_INT(parse_str("39223372036854775807[]", &p), 0); /* INT64_MAX */
  CHECK(p.ack_id == INT64_MAX);
  CHECK_EQ_INT(parse_str("39223372036854775808[]", &p), -1);
  CHECK_EQ_INT(parse_str("399999999999999999999[]", &p), -1);
  CHECK_EQ_INT(parse_str("3/a,99999999999999999999999999999999[]", &p), -1);
  CHECK_EQ_INT(parse_str("3000000000000000000000000000000000017[]", &p), 0); /* zeros */
  CHECK_EQ_INT(p.ack_id, 17);
}

TEST(sio_binary_examples) {
  sio_packet p;
  CHECK_EQ_INT(pipeline("451-[\"baz\",{\"_placeholder\":true,\"num\":0}]", &p), 0);
  CHECK_EQ_INT(p.type, SIO_BINARY_EVENT);
  CHECK_EQ_INT(p.attachments, 1);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/", 1);
  CHECK_EQ_INT(p.ack_id, -1);
  CHECK_EQ_INT(pipeline("452-/admin,7[\"x\",{\"_placeholder\":true,\"num\":0},"
                        "{\"_placeholder\":true,\"num\":1}]",
                        &p),
               0);
  CHECK_EQ_INT(p.attachments, 2);
  CHECK_EQ_MEM(p.nsp, p.nsplen, "/admin", 6);
  CHECK_EQ_INT(p.ack_id, 7);
  CHECK_EQ_INT(pipeline("462-789[{\"_placeholder\":true,\"num\":1},"
                        "{\"_placeholder\":true,\"num\":0}]",
                        &p),
               0);
  CHECK_EQ_INT(p.type, SIO_BINARY_ACK);
  CHECK_EQ_INT(p.ack_id, 789);
  CHECK_EQ_INT(pipeline("461-[]", &p), 0); /* BINARY_ACK: any array */
  CHECK_EQ_INT(pipeline("4610-[\"a\"]", &p), 0);
  CHECK_EQ_INT(p.attachments, 10);
}

TEST(sio_binary_attachment_grammar) {
  sio_packet p;
  CHECK_EQ_INT(parse_str("5[\"a\"]", &p), -1);     /* missing n- */
  CHECK_EQ_INT(parse_str("5-[\"a\"]", &p), -1);    /* no digits */
  CHECK_EQ_INT(parse_str("50-[\"a\"]", &p), -1);   /* n >= 1 */
  CHECK_EQ_INT(parse_str("511-[\"a\"]", &p), -1);  /* n <= 10 */
  CHECK_EQ_INT(parse_str("6999999999999999999999-[]", &p), -1);
  CHECK_EQ_INT(parse_str("51", &p), -1);
  CHECK_EQ_INT(parse_str("51x[]", &p), -1);
  CHECK_EQ_INT(parse_str("5a-[]", &p), -1);
  CHECK_EQ_INT(parse_str("501-[\"a\"]", &p), 0);   /* leading zero: Number("01") == 1 */
  CHECK_EQ_INT(p.attachments, 1);
  CHECK_EQ_INT(parse_str("5000000000010-[\"a\"]", &p), 0);
  CHECK_EQ_INT(p.attachments, 10);
  CHECK_EQ_INT(parse_str("51-", &p), 0);           /* header ok; payload rules fail later */
  CHECK_EQ_INT(pipeline("451-", NULL), -1);
  /* non-binary types never take attachments: "1-" is an ack id then garbage */
  CHECK_EQ_INT(parse_str("21-[\"a\"]", &p), 0);
  CHECK_EQ_INT(p.attachments, 0);
  CHECK_EQ_INT(p.ack_id, 1);
  CHECK_EQ_INT(pipeline("421-[\"a\"]", NULL), -1);
}

TEST(sio_binary_placeholder_rules_in_pipeline) {
  CHECK_EQ_INT(pipeline("451-[\"a\",{\"_placeholder\":true,\"num\":1}]", NULL), -1);
  CHECK_EQ_INT(pipeline("452-[\"a\",{\"_placeholder\":true,\"num\":1},"
                        "{\"_placeholder\":true,\"num\":1}]",
                        NULL),
               -1);
  CHECK_EQ_INT(pipeline("451-[\"a\",{\"_placeholder\":true}]", NULL), -1);
  CHECK_EQ_INT(pipeline("451-[\"connect\",{\"_placeholder\":true,\"num\":0}]", NULL), -1);
  CHECK_EQ_INT(pipeline("451-{\"_placeholder\":true,\"num\":0}", NULL), -1);
}

/* ---- payload rules -------------------------------------------------------------------- */

TEST(validate_payload_matrix) {
  CHECK_EQ_INT(sl_sio_validate_payload(SIO_CONNECT, NULL), 0);
  CHECK_EQ_INT(validate_str(SIO_CONNECT, "{}"), 0);
  CHECK_EQ_INT(validate_str(SIO_CONNECT, "[]"), -1);
  CHECK_EQ_INT(validate_str(SIO_CONNECT, "1"), -1);
  CHECK_EQ_INT(sl_sio_validate_payload(SIO_DISCONNECT, NULL), 0);
  CHECK_EQ_INT(validate_str(SIO_DISCONNECT, "{}"), -1);
  CHECK_EQ_INT(validate_str(SIO_DISCONNECT, "null"), -1);
  CHECK_EQ_INT(sl_sio_validate_payload(SIO_EVENT, NULL), -1);
  CHECK_EQ_INT(validate_str(SIO_EVENT, "[\"e\"]"), 0);
  CHECK_EQ_INT(validate_str(SIO_EVENT, "[\"\"]"), 0); /* empty string is a string */
  CHECK_EQ_INT(validate_str(SIO_EVENT, "[-1.5,{}]"), 0);
  CHECK_EQ_INT(validate_str(SIO_EVENT, "[]"), -1);
  CHECK_EQ_INT(validate_str(SIO_EVENT, "\"e\""), -1);
  CHECK_EQ_INT(validate_str(SIO_BINARY_EVENT, "[\"e\"]"), 0);
  CHECK_EQ_INT(validate_str(SIO_BINARY_EVENT, "[false]"), -1);
  CHECK_EQ_INT(sl_sio_validate_payload(SIO_ACK, NULL), -1);
  CHECK_EQ_INT(validate_str(SIO_ACK, "[]"), 0);
  CHECK_EQ_INT(validate_str(SIO_ACK, "[null]"), 0);
  CHECK_EQ_INT(validate_str(SIO_ACK, "{}"), -1);
  CHECK_EQ_INT(validate_str(SIO_BINARY_ACK, "[]"), 0);
  CHECK_EQ_INT(validate_str(SIO_BINARY_ACK, "0"), -1);
  CHECK_EQ_INT(validate_str(SIO_CONNECT_ERROR, "{}"), 0);
  CHECK_EQ_INT(validate_str(SIO_CONNECT_ERROR, "\"s\""), 0);
  CHECK_EQ_INT(validate_str(SIO_CONNECT_ERROR, "[]"), -1);
  CHECK_EQ_INT(sl_sio_validate_payload(SIO_CONNECT_ERROR, NULL), -1);
  CHECK_EQ_INT(validate_str(7, "[\"e\"]"), -1);
  CHECK_EQ_INT(validate_str(-1, "{}"), -1);
}

TEST(reserved_event_names) {
  const char *reserved[] = {"connect", "connect_error", "disconnect", "disconnecting",
                            "newListener", "removeListener"};
  for (int i = 0; i < 6; i++) {
    CHECK(sl_sio_is_reserved_event(reserved[i]));
    char buf[64];
    snprintf(buf, sizeof buf, "[\"%s\",1]", reserved[i]);
    CHECK_EQ_INT(validate_str(SIO_EVENT, buf), -1);
    CHECK_EQ_INT(validate_str(SIO_BINARY_EVENT, buf), -1);
    CHECK_EQ_INT(validate_str(SIO_ACK, buf), 0); /* ACK args may be anything */
  }
  CHECK(!sl_sio_is_reserved_event("Connect"));
  CHECK(!sl_sio_is_reserved_event("connect "));
  CHECK(!sl_sio_is_reserved_event("connec"));
  CHECK(!sl_sio_is_reserved_event("connected"));
  CHECK(!sl_sio_is_reserved_event("message"));
  CHECK(!sl_sio_is_reserved_event(""));
  CHECK(!sl_sio_is_reserved_event(NULL));
  CHECK_EQ_INT(validate_str(SIO_EVENT, "[\"Connect\"]"), 0);
  CHECK_EQ_INT(pipeline("42[\"disconnect\"]", NULL), -1);
  CHECK_EQ_INT(pipeline("42/admin,3[\"newListener\",\"x\"]", NULL), -1);
}

TEST(parse_json_strictness) {
  cJSON *j = (cJSON *)1;
  CHECK_EQ_INT(sl_sio_parse_json("", 0, &j), 0);
  CHECK(j == NULL);
  CHECK_EQ_INT(sl_sio_parse_json(NULL, 0, &j), 0);
  CHECK(j == NULL);
  CHECK_EQ_INT(sl_sio_parse_json("[1]", 3, &j), 0);
  CHECK(j != NULL && cJSON_IsArray(j));
  cJSON_Delete(j);
  CHECK_EQ_INT(sl_sio_parse_json("[1] \t\r\n", 7, &j), 0);
  cJSON_Delete(j);
  CHECK_EQ_INT(sl_sio_parse_json("  {}", 4, &j), 0);
  cJSON_Delete(j);
  CHECK_EQ_INT(sl_sio_parse_json("[1]x", 4, &j), -1);
  CHECK(j == NULL);
  CHECK_EQ_INT(sl_sio_parse_json("[1]]", 4, &j), -1);
  CHECK_EQ_INT(sl_sio_parse_json("{} {}", 5, &j), -1);
  CHECK_EQ_INT(sl_sio_parse_json("[1", 2, &j), -1);
  CHECK_EQ_INT(sl_sio_parse_json("abc", 3, &j), -1);
  CHECK_EQ_INT(sl_sio_parse_json(" ", 1, &j), -1);
  CHECK_EQ_INT(sl_sio_parse_json("[1]\0", 4, &j), -1); /* NUL is not whitespace */
  /* len is honoured: bytes after it are never parsed */
  CHECK_EQ_INT(sl_sio_parse_json("[1]xyz", 3, &j), 0);
  cJSON_Delete(j);
  CHECK_EQ_INT(sl_sio_parse_json("[1,2]", 3, &j), -1);
  /* a leading zero is not JSON (RFC 8259; JSON.parse refuses it), though cJSON reads it */
  CHECK_EQ_INT(sl_sio_parse_json("[\"publish\",{\"a\":01}]", 23, &j), -1);
  CHECK(j == NULL);
  CHECK_EQ_INT(sl_sio_parse_json("[-007]", 6, &j), -1);
  CHECK_EQ_INT(sl_sio_parse_json("[0, -0, 0.05, 1e05, 10, \"01\", \"\\\"01\"]", 37, &j), 0);
  CHECK(j != NULL);
  cJSON_Delete(j);
}

/* The scanner's validator and leading-zero check agree with RFC 8259 on numbers. */
TEST(jscan_leading_zero) {
  static const char *bad[] = {"01", "-01", "{\"a\":01}", "[1,00]", "[0.5,-00.5]", "{\"a\":[007]}"};
  static const char *good[] = {"0", "-0", "0.5", "-0.5e05", "10", "[0,1,0e1]", "{\"a\":\"01\"}",
                               "[\"x\\\"\",0]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(!sl_js_valid(bad[i], strlen(bad[i])));
    CHECK(sl_js_leading_zero(bad[i], strlen(bad[i])));
  }
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    CHECK(sl_js_valid(good[i], strlen(good[i])));
    CHECK(!sl_js_leading_zero(good[i], strlen(good[i])));
  }
  const char *vs, *ve;
  CHECK_EQ_INT(sl_js_member("{\"a\":01}", "{\"a\":01}" + 8, "a", 1, &vs, &ve), -1);
}

/* ---- placeholders --------------------------------------------------------------------- */

TEST(placeholders_basic) {
  CHECK_EQ_INT(count_str("[\"a\"]", 0), 0);
  CHECK_EQ_INT(count_str("[\"a\",{\"_placeholder\":true,\"num\":0}]", 1), 1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":0}]", 2), 2);
  /* not every attachment has to be referenced */
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":2}]", 3), 1);
  CHECK_EQ_INT(sl_sio_count_placeholders(NULL, 1), 0);
  /* top-level placeholder */
  CHECK_EQ_INT(count_str("{\"_placeholder\":true,\"num\":0}", 1), 1);
}

TEST(placeholders_nested) {
  CHECK_EQ_INT(count_str("[\"e\",{\"a\":[1,{\"b\":{\"_placeholder\":true,\"num\":0}}],"
                         "\"c\":{\"_placeholder\":true,\"num\":2}},"
                         "[[[{\"_placeholder\":true,\"num\":1}]]]]",
                         3),
               3);
  /* members of a placeholder object are not walked (the object is replaced whole) */
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":0,"
                         "\"x\":{\"_placeholder\":true,\"num\":0}}]",
                         1),
               1);
  /* deep nesting within cJSON's limit */
  char buf[2100];
  size_t o = 0;
  for (int i = 0; i < 900; i++) buf[o++] = '[';
  o += (size_t)sprintf(buf + o, "{\"_placeholder\":true,\"num\":0}");
  for (int i = 0; i < 900; i++) buf[o++] = ']';
  buf[o] = '\0';
  CHECK_EQ_INT(count_str(buf, 1), 1);
}

TEST(placeholders_out_of_range) {
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":1}]", 1), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":-1}]", 1), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":0.5}]", 1), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":1e300}]", 1), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":-1e300}]", 1), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":\"0\"}]", 1), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":null}]", 1), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true}]", 1), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":0}]", 0), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":0}]", -5), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":1.0}]", 2), 1); /* integral */
}

TEST(placeholders_duplicate) {
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":0}]", 2), -1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":0},{\"x\":{\"_placeholder\":true,\"num\":0}}]", 5), -1);
}

TEST(placeholders_not_flagged) {
  /* only "_placeholder": true marks a placeholder */
  CHECK_EQ_INT(count_str("[{\"_placeholder\":false,\"num\":9}]", 1), 0);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":\"true\",\"num\":9}]", 1), 0);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":1,\"num\":9}]", 1), 0);
  CHECK_EQ_INT(count_str("[{\"_Placeholder\":true,\"num\":9}]", 1), 0);
  CHECK_EQ_INT(count_str("[\"_placeholder\",true]", 1), 0);
  /* duplicate keys: the last one wins, as with JSON.parse */
  CHECK_EQ_INT(count_str("[{\"_placeholder\":false,\"_placeholder\":true,\"num\":0}]", 1), 1);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"_placeholder\":false,\"num\":7}]", 1), 0);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":0,\"num\":3}]", 1), -1);
}

TEST(placeholders_large_natts) {
  /* more attachments than the stack bitmap: heap path */
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":999},{\"_placeholder\":true,\"num\":3}]", 1000), 2);
  CHECK_EQ_INT(count_str("[{\"_placeholder\":true,\"num\":999},{\"_placeholder\":true,\"num\":999}]", 1000), -1);
}

TEST(placeholders_depth_limit) {
  /* a tree built in code deeper than any parsed one is refused, not recursed into */
  cJSON *root = cJSON_CreateArray();
  cJSON *cur = root;
  for (int i = 0; i < 5000; i++) {
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(cur, a);
    cur = a;
  }
  CHECK_EQ_INT(sl_sio_count_placeholders(root, 1), -1);
  cJSON_Delete(root);
}

/* ---- encoding ------------------------------------------------------------------------- */

static size_t enc(char *out, int type, int att, const char *nsp, int64_t id) {
  size_t n = sl_sio_encode_header(out, type, att, nsp, nsp ? strlen(nsp) : 0, id);
  out[n] = '\0';
  return n;
}

TEST(encode_header) {
  char out[SIO_MAX_NSP + 48];
  enc(out, SIO_CONNECT, 0, NULL, -1);
  CHECK_EQ_STR(out, "0");
  enc(out, SIO_CONNECT, 0, "/", -1);
  CHECK_EQ_STR(out, "0");
  enc(out, SIO_CONNECT, 0, "", -1);
  CHECK_EQ_STR(out, "0");
  enc(out, SIO_CONNECT, 0, "/admin", -1);
  CHECK_EQ_STR(out, "0/admin,");
  enc(out, SIO_EVENT, 0, "/admin", 17);
  CHECK_EQ_STR(out, "2/admin,17");
  enc(out, SIO_ACK, 0, "/admin", 17);
  CHECK_EQ_STR(out, "3/admin,17");
  enc(out, SIO_EVENT, 0, NULL, 0);
  CHECK_EQ_STR(out, "20");
  enc(out, SIO_BINARY_EVENT, 1, NULL, -1);
  CHECK_EQ_STR(out, "51-");
  enc(out, SIO_BINARY_EVENT, 2, "/admin", 7);
  CHECK_EQ_STR(out, "52-/admin,7");
  enc(out, SIO_BINARY_ACK, 2, NULL, 789);
  CHECK_EQ_STR(out, "62-789");
  enc(out, SIO_BINARY_ACK, 10, "/x", INT64_MAX);
  CHECK_EQ_STR(out, "610-/x,9223372036854775807");
  enc(out, SIO_DISCONNECT, 0, "/admin", -1);
  CHECK_EQ_STR(out, "1/admin,");
  enc(out, SIO_CONNECT_ERROR, 0, "/random", -1);
  CHECK_EQ_STR(out, "4/random,");
}

TEST(encode_header_refusals) {
  char out[SIO_MAX_NSP + 48];
  CHECK_EQ_INT(sl_sio_encode_header(out, 7, 0, NULL, 0, -1), 0);
  CHECK_EQ_INT(sl_sio_encode_header(out, -1, 0, NULL, 0, -1), 0);
  CHECK_EQ_INT(sl_sio_encode_header(out, 2, 0, "admin", 5, -1), 0);
  CHECK_EQ_INT(sl_sio_encode_header(out, 2, 0, "/a,b", 4, -1), 0);
  char big[SIO_MAX_NSP + 2];
  big[0] = '/';
  memset(big + 1, 'x', sizeof big - 1);
  CHECK_EQ_INT(sl_sio_encode_header(out, 2, 0, big, SIO_MAX_NSP + 1, -1), 0);
  /* the largest header fits in the documented buffer */
  size_t n = sl_sio_encode_header(out, 6, 10, big, SIO_MAX_NSP, INT64_MAX);
  CHECK_EQ_INT(n, 1 + 3 + SIO_MAX_NSP + 1 + 19);
  CHECK(n <= sizeof out);
}

TEST(encode_parse_round_trip) {
  const char *nsps[] = {"/", "/admin", "/a/b.c-d_e", "/\xc3\xa9"};
  int64_t ids[] = {-1, 0, 1, 42, 1234567890123LL, INT64_MAX};
  char out[SIO_MAX_NSP + 48];
  for (int type = 0; type <= 6; type++)
    for (int a = 0; a <= 10; a++)
      for (size_t ni = 0; ni < 4; ni++)
        for (size_t ii = 0; ii < 6; ii++) {
          int att = (type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK) ? (a ? a : 1) : 0;
          size_t n = sl_sio_encode_header(out, type, att, nsps[ni], strlen(nsps[ni]), ids[ii]);
          memcpy(out + n, "[\"e\"]", 5);
          sio_packet p;
          CHECK_EQ_INT(sl_sio_parse(out, n + 5, &p), 0);
          CHECK_EQ_INT(p.type, type);
          CHECK_EQ_INT(p.attachments, att);
          CHECK_EQ_MEM(p.nsp, p.nsplen, nsps[ni], strlen(nsps[ni]));
          CHECK(p.ack_id == ids[ii]);
          CHECK_EQ_MEM(p.json, p.jsonlen, "[\"e\"]", 5);
        }
}

/* ---- WebSocket frame header ----------------------------------------------------------- */

TEST(ws_frame_header_lengths) {
  uint8_t h[10];
  CHECK_EQ_INT(sl_ws_frame_header(h, 1, 0), 2);
  CHECK_EQ_MEM(h, 2, "\x81\x00", 2);
  CHECK_EQ_INT(sl_ws_frame_header(h, 1, 125), 2);
  CHECK_EQ_MEM(h, 2, "\x81\x7d", 2);
  CHECK_EQ_INT(sl_ws_frame_header(h, 2, 126), 4);
  CHECK_EQ_MEM(h, 4, "\x82\x7e\x00\x7e", 4);
  CHECK_EQ_INT(sl_ws_frame_header(h, 1, 65535), 4);
  CHECK_EQ_MEM(h, 4, "\x81\x7e\xff\xff", 4);
  CHECK_EQ_INT(sl_ws_frame_header(h, 2, 65536), 10);
  CHECK_EQ_MEM(h, 10, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  CHECK_EQ_INT(sl_ws_frame_header(h, 1, 1ull << 32), 10);
  CHECK_EQ_MEM(h, 10, "\x81\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 10);
  CHECK_EQ_INT(sl_ws_frame_header(h, 2, 0x0102030405060708ull), 10);
  CHECK_EQ_MEM(h, 10, "\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10);
  CHECK_EQ_INT(sl_ws_frame_header(h, 8, 2), 2); /* close frame */
  CHECK_EQ_MEM(h, 2, "\x88\x02", 2);
}

TEST(ws_frame_header_refusals) {
  uint8_t h[10];
  CHECK_EQ_INT(sl_ws_frame_header(h, 1, 1ull << 63), 0);
  CHECK_EQ_INT(sl_ws_frame_header(h, 1, UINT64_MAX), 0);
  CHECK_EQ_INT(sl_ws_frame_header(h, 1, (1ull << 63) - 1), 10);
  CHECK_EQ_INT(h[2], 0x7f);
  CHECK_EQ_INT(sl_ws_frame_header(h, 16, 1), 0);
  CHECK_EQ_INT(sl_ws_frame_header(h, -1, 1), 0);
}

TEST(encode_delivery) {
  char out[1024];
  /* best effort on a namespace: no metadata */
  sl_sio_delivery d = {.nsp = "/feed", .nsplen = 5, .nsp_json = "\"/feed\"",
                       .topic_json = "\"prices\"", .payload = "{\"p\":1}", .len = 7};
  size_t n = sl_sio_delivery_len(&d);
  CHECK_EQ_INT(sl_sio_encode_delivery((uint8_t *)out, &d), n);
  CHECK_EQ_MEM(out, n, "42/feed,[\"prices\",{\"p\":1}]", strlen("42/feed,[\"prices\",{\"p\":1}]"));
  /* root namespace: omitted */
  d.nsp = "/";
  d.nsplen = 1;
  n = sl_sio_delivery_len(&d);
  CHECK_EQ_INT(sl_sio_encode_delivery((uint8_t *)out, &d), n);
  CHECK_EQ_MEM(out, n, "42[\"prices\",{\"p\":1}]", strlen("42[\"prices\",{\"p\":1}]"));
  /* at least once: the ack metadata after the payload */
  d.nsp = "/feed";
  d.nsplen = 5;
  d.msgid = "msg-x-1";
  const char *want = "42/feed,[\"prices\",{\"p\":1},{\"namespace\":\"/feed\",\"topic\":\"prices\","
                     "\"messageId\":\"msg-x-1\",\"ackRequired\":true}]";
  n = sl_sio_delivery_len(&d);
  CHECK_EQ_INT(sl_sio_encode_delivery((uint8_t *)out, &d), n);
  CHECK_EQ_MEM(out, n, want, strlen(want));
}

/* connection-state recovery: the offset is the last argument, after the ALO metadata too */
TEST(encode_delivery_offset) {
  char out[1024];
  sl_sio_delivery d = {.nsp = "/feed", .nsplen = 5, .nsp_json = "\"/feed\"",
                       .topic_json = "\"prices\"", .payload = "{\"p\":1}", .len = 7,
                       .offset = "k3j9x0ab-17", .offlen = 11};
  size_t n = sl_sio_delivery_len(&d);
  const char *be = "42/feed,[\"prices\",{\"p\":1},\"k3j9x0ab-17\"]";
  CHECK_EQ_INT(sl_sio_encode_delivery((uint8_t *)out, &d), n);
  CHECK_EQ_MEM(out, n, be, strlen(be));
  d.msgid = "msg-x-1";
  const char *alo = "42/feed,[\"prices\",{\"p\":1},{\"namespace\":\"/feed\",\"topic\":\"prices\","
                    "\"messageId\":\"msg-x-1\",\"ackRequired\":true},\"k3j9x0ab-17\"]";
  n = sl_sio_delivery_len(&d);
  CHECK_EQ_INT(sl_sio_encode_delivery((uint8_t *)out, &d), n);
  CHECK_EQ_MEM(out, n, alo, strlen(alo));
}

int main(void) {
  RUN(eio_text_types);
  RUN(eio_text_invalid);
  RUN(eio_binary_base64);
  RUN(eio_payload_records);
  RUN(eio_payload_counts_and_end);
  RUN(eio_payload_text_and_binary_example);
  RUN(eio_payload_empty_record_fails_parse);
  RUN(utf8_valid);
  RUN(sio_connect_default_nsp);
  RUN(sio_connect_namespaces);
  RUN(sio_connect_payload_rules);
  RUN(sio_event_examples);
  RUN(sio_suite_must_close);
  RUN(sio_nsp_grammar);
  RUN(sio_parse_respects_len);
  RUN(sio_type_chars);
  RUN(sio_ack_id_overflow);
  RUN(sio_binary_examples);
  RUN(sio_binary_attachment_grammar);
  RUN(sio_binary_placeholder_rules_in_pipeline);
  RUN(validate_payload_matrix);
  RUN(reserved_event_names);
  RUN(parse_json_strictness);
  RUN(jscan_leading_zero);
  RUN(placeholders_basic);
  RUN(placeholders_nested);
  RUN(placeholders_out_of_range);
  RUN(placeholders_duplicate);
  RUN(placeholders_not_flagged);
  RUN(placeholders_large_natts);
  RUN(placeholders_depth_limit);
  RUN(encode_header);
  RUN(encode_header_refusals);
  RUN(encode_parse_round_trip);
  RUN(encode_delivery);
  RUN(encode_delivery_offset);
  RUN(ws_frame_header_lengths);
  RUN(ws_frame_header_refusals);
  return tl_report();
}
