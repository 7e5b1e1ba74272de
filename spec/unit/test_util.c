/* test_util.c - unit tests for core/util.c (errors, allocators, logger, sbuf, base64,
 * randomness, clocks). */
#include "testlib.h"
#include "sl_util.h"
#include "msg.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Run the logger with stderr redirected to a temp file; return what it wrote
 * (malloc'ed, NUL-terminated). */
static char *capture_log(sl_log_level lvl, const char *fmt, const char *arg) {
  FILE *tmp = tmpfile();
  int saved = dup(STDERR_FILENO);
  fflush(stderr);
  dup2(fileno(tmp), STDERR_FILENO);
  sl_log(lvl, fmt, arg);
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  fseek(tmp, 0, SEEK_END);
  long n = ftell(tmp);
  if (n < 0) n = 0;
  rewind(tmp);
  char *buf = calloc(1, (size_t)n + 1);
  size_t r = fread(buf, 1, (size_t)n, tmp);
  buf[r] = '\0';
  fclose(tmp);
  return buf;
}

/* True when s looks like 2026-11-27T20:00:00.123Z. */
static int is_timestamp(const char *s) {
  const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ";
  for (size_t i = 0; pat[i]; i++) {
    if (pat[i] == 'd') {
      if (s[i] < '0' || s[i] > '9') return 0;
    } else if (s[i] != pat[i]) {
      return 0;
    }
  }
  return 1;
}

TEST(strerror_all_codes) {
  CHECK_EQ_STR(sl_strerror(SL_OK), "success");
  CHECK_EQ_STR(sl_strerror(SL_ENOMEM), "out of memory");
  CHECK_EQ_STR(sl_strerror(SL_EINVAL), "invalid input");
  for (int e = SL_ESTATE; e <= SL_OK; e++) {
    const char *s = sl_strerror(e);
    CHECK(s != NULL && *s != '\0');
    CHECK(strcmp(s, "unknown error") != 0);
  }
  CHECK_EQ_STR(sl_strerror(-999), "unknown error");
  CHECK_EQ_STR(sl_strerror(42), "unknown error");
}

TEST(allocators) {
  char *p = sl_xmalloc(0);
  CHECK(p != NULL);
  free(p);
  int *z = sl_xcalloc(16, sizeof(int));
  for (int i = 0; i < 16; i++) CHECK_EQ_INT(z[i], 0);
  z = sl_xrealloc(z, 1024 * sizeof(int));
  z[1023] = 7;
  CHECK_EQ_INT(z[0], 0);
  free(z);
  void *r = sl_xrealloc(NULL, 0);
  CHECK(r != NULL);
  free(r);
  char *d = sl_xstrdup("hello");
  CHECK_EQ_STR(d, "hello");
  free(d);
  d = sl_xstrndup("hello", 3);
  CHECK_EQ_STR(d, "hel");
  free(d);
  d = sl_xstrndup("hi", 10); /* stops at the NUL, never reads past it */
  CHECK_EQ_STR(d, "hi");
  free(d);
  d = sl_xstrndup("abc", 0);
  CHECK_EQ_STR(d, "");
  free(d);
}

TEST(sbuf_append_printf) {
  sl_sbuf b = {0};
  sl_sbuf_puts(&b, "abc");
  CHECK_EQ_MEM(b.data, b.len, "abc", 3);
  CHECK_EQ_INT(b.data[b.len], '\0');
  sl_sbuf_append(&b, "\0x", 2);
  CHECK_EQ_INT(b.len, 5);
  CHECK(memcmp(b.data, "abc\0x", 5) == 0);
  sl_sbuf_append(&b, NULL, 0);
  CHECK_EQ_INT(b.len, 5);
  b.len = 0;
  sl_sbuf_printf(&b, "%d-%s", 42, "x");
  CHECK_EQ_STR(b.data, "42-x");
  /* force growth through the retry path of printf */
  char big[1000];
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  sl_sbuf_printf(&b, "[%s]", big);
  CHECK_EQ_INT(b.len, 4 + 2 + 999);
  CHECK_EQ_INT(b.data[4], '[');
  CHECK_EQ_INT(b.data[b.len - 1], ']');
  CHECK_EQ_INT(b.data[b.len], '\0');
  CHECK(b.cap > b.len);
  sl_sbuf_free(&b);
  CHECK(b.data == NULL);
  CHECK_EQ_INT(b.len, 0);
  CHECK_EQ_INT(b.cap, 0);
  sl_sbuf_free(&b); /* idempotent */
  sl_sbuf_reserve(&b, 10);
  CHECK(b.cap >= 11);
  CHECK_EQ_INT(b.len, 0);
  sl_sbuf_free(&b);
}

TEST(sbuf_many_appends) {
  sl_sbuf b = {0};
  for (int i = 0; i < 10000; i++) sl_sbuf_printf(&b, "%d,", i % 10);
  CHECK_EQ_INT(b.len, 20000);
  CHECK_EQ_MEM(b.data + 19996, 4, "8,9,", 4);
  sl_sbuf_free(&b);
}

TEST(log_level_parse) {
  CHECK_EQ_INT(sl_log_level_parse("error"), SL_LOG_ERROR);
  CHECK_EQ_INT(sl_log_level_parse("WARN"), SL_LOG_WARN);
  CHECK_EQ_INT(sl_log_level_parse("warning"), SL_LOG_WARN);
  CHECK_EQ_INT(sl_log_level_parse("Info"), SL_LOG_INFO);
  CHECK_EQ_INT(sl_log_level_parse("debug"), SL_LOG_DEBUG);
  CHECK_EQ_INT(sl_log_level_parse("trace"), -1);
  CHECK_EQ_INT(sl_log_level_parse(""), -1);
  CHECK_EQ_INT(sl_log_level_parse("info "), -1);
  CHECK_EQ_INT(sl_log_level_parse(NULL), -1);
}

TEST(log_text_format) {
  sl_log_json = 0;
  sl_log_threshold = SL_LOG_INFO;
  char *out = capture_log(SL_LOG_ERROR, "boom %s", "now");
  CHECK_EQ_INT(strlen(out), 24 + strlen(" ERROR boom now\n"));
  CHECK(is_timestamp(out));
  CHECK_EQ_STR(out + 24, " ERROR boom now\n");
  free(out);
  out = capture_log(SL_LOG_WARN, "%s", "w");
  CHECK_EQ_STR(out + 24, " WARN w\n");
  free(out);
  out = capture_log(SL_LOG_INFO, "%s", "i");
  CHECK_EQ_STR(out + 24, " INFO i\n");
  free(out);
}

TEST(log_threshold_filters) {
  sl_log_json = 0;
  sl_log_threshold = SL_LOG_WARN;
  char *out = capture_log(SL_LOG_INFO, "%s", "hidden");
  CHECK_EQ_STR(out, "");
  free(out);
  out = capture_log(SL_LOG_DEBUG, "%s", "hidden");
  CHECK_EQ_STR(out, "");
  free(out);
  sl_log_threshold = SL_LOG_DEBUG;
  out = capture_log(SL_LOG_DEBUG, "%s", "shown");
  CHECK_EQ_STR(out + 24, " DEBUG shown\n");
  free(out);
  sl_log_threshold = SL_LOG_INFO;
}

TEST(log_text_one_line) {
  /* A client-supplied newline must not forge a second record. */
  sl_log_json = 0;
  char *out = capture_log(SL_LOG_ERROR, "bad %s", "a\nb\x01\tc\n");
  CHECK_EQ_STR(out + 24, " ERROR bad a\\nb\\x01\tc\n");
  free(out);
}

TEST(log_json_format) {
  sl_log_json = 1;
  char *out = capture_log(SL_LOG_ERROR, "msg %s", "q\"b\\s\n\x01 \xc3\xa9");
  size_t n = strlen(out);
  CHECK(n > 0 && out[n - 1] == '\n');
  CHECK(strchr(out, '\n') == out + n - 1); /* one line */
  cJSON *j = cJSON_Parse(out);
  CHECK(j != NULL);
  if (j) {
    CHECK_EQ_INT(cJSON_GetArraySize(j), 3);
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "level")->valuestring, "error");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "msg")->valuestring, "msg q\"b\\s\n\x01 \xc3\xa9");
    CHECK(is_timestamp(cJSON_GetObjectItem(j, "ts")->valuestring));
    CHECK_EQ_INT(strlen(cJSON_GetObjectItem(j, "ts")->valuestring), 24);
    cJSON_Delete(j);
  }
  CHECK(strncmp(out, "{\"ts\":\"", 7) == 0);
  CHECK(strstr(out, "\"level\":\"error\",\"msg\":\"msg q\\\"b\\\\s\\n\\u0001 \xc3\xa9\"}\n") != NULL);
  free(out);
  out = capture_log(SL_LOG_WARN, "%s", "x");
  CHECK(strstr(out, "\"level\":\"warn\"") != NULL);
  free(out);
  sl_log_json = 0;
}

/* A Lua traceback stays in its record: indented lines in text, one "traceback" field in
 * JSON; the message part keeps its escaping. */
TEST(log_traceback) {
  const char *m = "x.lua:2: boom\nhere\nstack traceback:\n\t[C]: in function 'error'\n\tx.lua:2: in "
                  "function <x.lua:1>";
  sl_log_json = 0;
  char *out = capture_log(SL_LOG_ERROR, "lua: %s", m);
  CHECK_EQ_STR(out + 24, " ERROR lua: x.lua:2: boom\\nhere\n    stack traceback:\n        [C]: in "
                         "function 'error'\n        x.lua:2: in function <x.lua:1>\n");
  free(out);
  sl_log_json = 1;
  out = capture_log(SL_LOG_ERROR, "lua: %s", m);
  size_t n = strlen(out);
  CHECK(strchr(out, '\n') == out + n - 1); /* one line */
  cJSON *j = cJSON_Parse(out);
  CHECK(j != NULL);
  if (j) {
    CHECK_EQ_INT(cJSON_GetArraySize(j), 4);
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "msg")->valuestring, "lua: x.lua:2: boom\nhere");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "traceback")->valuestring,
                 "stack traceback:\n\t[C]: in function 'error'\n\tx.lua:2: in function <x.lua:1>");
    cJSON_Delete(j);
  }
  free(out);
  /* "stack traceback:" not after a newline is just text */
  out = capture_log(SL_LOG_ERROR, "%s", "stack traceback: no");
  CHECK(strstr(out, "\"msg\":\"stack traceback: no\"}") != NULL);
  free(out);
  sl_log_json = 0;
}

TEST(log_json_invalid_utf8) {
  sl_log_json = 1;
  /* lone continuation, overlong '/', truncated 3-byte, surrogate, > U+10FFFF */
  char *out = capture_log(SL_LOG_ERROR, "%s", "\x80|\xc0\xaf|\xe2\x82|\xed\xa0\x80|\xf4\x90\x80\x80");
  CHECK(strstr(out, "\"msg\":\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd|"
                    "\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd\"}") != NULL);
  cJSON *j = cJSON_Parse(out);
  CHECK(j != NULL);
  cJSON_Delete(j);
  free(out);
  /* valid 4-byte sequence passes through */
  out = capture_log(SL_LOG_ERROR, "%s", "\xf0\x9f\x98\x80");
  CHECK(strstr(out, "\"msg\":\"\xf0\x9f\x98\x80\"}") != NULL);
  free(out);
  sl_log_json = 0;
}

TEST(log_trailing_newline_and_errno) {
  sl_log_json = 0;
  errno = EAGAIN;
  char *out = capture_log(SL_LOG_ERROR, "%s", "x\n");
  CHECK_EQ_INT(errno, EAGAIN);
  CHECK_EQ_STR(out + 24, " ERROR x\n");
  free(out);
}

TEST(log_long_message) {
  sl_log_json = 0;
  char *big = malloc(20001);
  memset(big, 'z', 20000);
  big[20000] = '\0';
  char *out = capture_log(SL_LOG_ERROR, "%s", big);
  CHECK_EQ_INT(strlen(out), 24 + 7 + 20000 + 1);
  free(out);
  free(big);
}

TEST(b64_enclen) {
  CHECK_EQ_INT(sl_b64_enclen(0), 0);
  CHECK_EQ_INT(sl_b64_enclen(1), 4);
  CHECK_EQ_INT(sl_b64_enclen(2), 4);
  CHECK_EQ_INT(sl_b64_enclen(3), 4);
  CHECK_EQ_INT(sl_b64_enclen(4), 8);
  CHECK_EQ_INT(sl_b64_enclen(1000000), 1333336);
}

TEST(b64_rfc4648_vectors) {
  static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    char out[16];
    uint8_t dec[16];
    size_t n = sl_b64_encode((const uint8_t *)plain[i], strlen(plain[i]), out);
    CHECK_EQ_MEM(out, n, enc[i], strlen(enc[i]));
    long m = sl_b64_decode(enc[i], strlen(enc[i]), dec);
    CHECK_EQ_MEM(dec, (size_t)m, plain[i], strlen(plain[i]));
  }
}

TEST(b64_protocol_example) {
  uint8_t out[8];
  long n = sl_b64_decode("AQIDBA==", 8, out);
  CHECK_EQ_MEM(out, (size_t)n, "\x01\x02\x03\x04", 4);
  char e[8];
  CHECK_EQ_MEM(e, sl_b64_encode(out, 4, e), "AQIDBA==", 8);
}

TEST(b64_round_trip_all_lengths) {
  uint8_t in[300], dec[300];
  char enc[404];
  for (int i = 0; i < 300; i++) in[i] = (uint8_t)(i * 37 + 11);
  in[0] = 0xff;
  in[1] = 0;
  for (size_t n = 0; n <= 300; n++) {
    size_t e = sl_b64_encode(in, n, enc);
    CHECK_EQ_INT(e, sl_b64_enclen(n));
    long d = sl_b64_decode(enc, e, dec);
    CHECK_EQ_INT(d, (long)n);
    if (d == (long)n) CHECK(memcmp(in, dec, n) == 0);
  }
  /* every byte value, including the '+' and '/' digits */
  uint8_t all[256];
  for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
  char ae[400];
  uint8_t ad[400];
  size_t e = sl_b64_encode(all, 256, ae);
  CHECK(memchr(ae, '+', e) != NULL && memchr(ae, '/', e) != NULL);
  CHECK_EQ_MEM(ad, (size_t)sl_b64_decode(ae, e, ad), all, 256);
}

TEST(b64_decode_in_place) {
  char buf[64];
  const char *src = "aGVsbG8gd29ybGQsIGluIHBsYWNlIQ==";
  memcpy(buf, src, strlen(src));
  long n = sl_b64_decode(buf, strlen(src), (uint8_t *)buf);
  CHECK_EQ_MEM(buf, (size_t)n, "hello world, in place!", 22);
}

TEST(b64_unpadded_accepted) {
  uint8_t out[8];
  CHECK_EQ_MEM(out, (size_t)sl_b64_decode("Zg", 2, out), "f", 1);
  CHECK_EQ_MEM(out, (size_t)sl_b64_decode("Zm8", 3, out), "fo", 2);
  CHECK_EQ_MEM(out, (size_t)sl_b64_decode("Zm9vYg", 6, out), "foob", 4);
}

TEST(b64_invalid) {
  uint8_t out[32];
  CHECK_EQ_INT(sl_b64_decode("Z", 1, out), -1);          /* lone char */
  CHECK_EQ_INT(sl_b64_decode("Zm9vY", 5, out), -1);      /* lone char after a group */
  CHECK_EQ_INT(sl_b64_decode("Zm9v!", 5, out), -1);
  CHECK_EQ_INT(sl_b64_decode("Zm 9v", 5, out), -1);      /* whitespace */
  CHECK_EQ_INT(sl_b64_decode("Zm9v\n", 5, out), -1);
  CHECK_EQ_INT(sl_b64_decode("Zm-_", 4, out), -1);       /* base64url digits */
  CHECK_EQ_INT(sl_b64_decode("Zg==Zg==", 8, out), -1);   /* padding mid-stream */
  CHECK_EQ_INT(sl_b64_decode("Z===", 4, out), -1);
  CHECK_EQ_INT(sl_b64_decode("====", 4, out), -1);
  CHECK_EQ_INT(sl_b64_decode("Zg=a", 4, out), -1);
  CHECK_EQ_INT(sl_b64_decode("Zg=", 3, out), -1);
  CHECK_EQ_INT(sl_b64_decode("Zm8\0", 4, out), -1);      /* embedded NUL */
  CHECK_EQ_INT(sl_b64_decode("Zm9v\xff\xff\xff\xff", 8, out), -1);
  CHECK_EQ_INT(sl_b64_decode("", 0, out), 0);
  CHECK_EQ_INT(sl_b64_decode(NULL, 0, out), 0);
}

TEST(random_bytes_and_ids) {
  uint8_t a[32] = {0}, b[32] = {0};
  sl_random_bytes(a, sizeof a);
  sl_random_bytes(b, sizeof b);
  CHECK(memcmp(a, b, sizeof a) != 0);
  sl_random_bytes(a, 0);

  char id[21];
  memset(id, '#', sizeof id);
  sl_random_id(id, 20);
  CHECK_EQ_INT(strlen(id), 20);
  for (int i = 0; i < 20; i++)
    CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", id[i]) &&
          id[i] != '\0');
  char id2[21];
  sl_random_id(id2, 20);
  CHECK(strcmp(id, id2) != 0);

  char empty[1] = {'#'};
  sl_random_id(empty, 0);
  CHECK_EQ_INT(empty[0], '\0');

  /* long ids (more than one internal batch) and rough coverage of the alphabet */
  char *big = malloc(5001);
  sl_random_id(big, 5000);
  CHECK_EQ_INT(strlen(big), 5000);
  int seen[256] = {0};
  for (int i = 0; i < 5000; i++) seen[(unsigned char)big[i]]++;
  int distinct = 0;
  for (int i = 0; i < 256; i++) distinct += seen[i] > 0;
  CHECK_EQ_INT(distinct, 64);
  CHECK(seen['-'] > 0 && seen['_'] > 0);
  free(big);
}

TEST(clocks) {
  uint64_t m1 = sl_now_ms();
  struct timespec d = {0, 20 * 1000 * 1000};
  nanosleep(&d, NULL);
  uint64_t m2 = sl_now_ms();
  CHECK(m2 >= m1 + 15);
  CHECK(m2 < m1 + 5000);
  uint64_t w = sl_wall_us();
  uint64_t t = (uint64_t)time(NULL);
  CHECK(w / 1000000u >= t - 2 && w / 1000000u <= t + 2);
  CHECK(w > 1600000000ull * 1000000ull); /* after 2020: microseconds, not ms */
  uint64_t n1 = sl_now_ns();
  nanosleep(&d, NULL);
  uint64_t n2 = sl_now_ns();
  CHECK(n2 - n1 >= 15ull * 1000 * 1000 && n2 - n1 < 5000ull * 1000 * 1000);
  CHECK(sl_clock_overhead_ns() < 100000); /* two clock reads: nanoseconds, not a sleep */
}

TEST(lathist_bins_and_quantiles) {
  sl_lathist h;
  memset(&h, 0, sizeof h);
  CHECK_EQ_INT(sl_lathist_quantile(&h, 0.5), 0); /* empty */
  /* bin edges: (k-1)*10 < ns <= k*10 */
  sl_lathist_add(&h, 0);
  sl_lathist_add(&h, 10);   /* bin 1 */
  sl_lathist_add(&h, 11);   /* bin 2 */
  sl_lathist_add(&h, 100);  /* bin 10 */
  sl_lathist_add(&h, 2560); /* the last fine bin */
  sl_lathist_add(&h, 2561); /* (2.56 us, 10 us] */
  sl_lathist_add(&h, 10000000);   /* (1 ms, 10 ms] */
  sl_lathist_add(&h, 5000000000ull); /* above 1 s */
  CHECK_EQ_INT(h.n, 8);
  CHECK(h.sum_ns == 0 + 10 + 11 + 100 + 2560 + 2561 + 10000000 + 5000000000ull);
  CHECK_EQ_INT(h.fine[0], 1);
  CHECK_EQ_INT(h.fine[1], 1);
  CHECK_EQ_INT(h.fine[2], 1);
  CHECK_EQ_INT(h.fine[10], 1);
  CHECK_EQ_INT(h.fine[SL_LH_FINE], 1);
  CHECK_EQ_INT(h.coarse[0], 1);
  CHECK_EQ_INT(h.coarse[3], 1);
  CHECK_EQ_INT(h.coarse[SL_LH_COARSE - 1], 1);
  /* le counts at edges (Prometheus buckets are cumulative, "<=") */
  CHECK_EQ_INT(sl_lathist_le(&h, 0), 1);
  CHECK_EQ_INT(sl_lathist_le(&h, 10), 2);
  CHECK_EQ_INT(sl_lathist_le(&h, 100), 4);
  CHECK_EQ_INT(sl_lathist_le(&h, 2500), 4);
  CHECK_EQ_INT(sl_lathist_le(&h, 2560), 5);
  CHECK_EQ_INT(sl_lathist_le(&h, 10000), 6);
  CHECK_EQ_INT(sl_lathist_le(&h, 1000000), 6);
  CHECK_EQ_INT(sl_lathist_le(&h, 10000000), 7);
  CHECK_EQ_INT(sl_lathist_le(&h, 1000000000), 7);
  /* quantiles: the upper edge of the bin holding the q-th sample */
  CHECK_EQ_INT(sl_lathist_quantile(&h, 0), 0);
  CHECK_EQ_INT(sl_lathist_quantile(&h, 0.25), 10);
  CHECK_EQ_INT(sl_lathist_quantile(&h, 0.5), 100);
  CHECK_EQ_INT(sl_lathist_quantile(&h, 0.75), 10000);
  CHECK_EQ_INT(sl_lathist_quantile(&h, 0.875), 10000000);
  CHECK(sl_lathist_quantile(&h, 1) == UINT64_MAX); /* above the last edge */
  /* 1,000 samples of 95 ns and 10 of 1 ms: the median stays at 100 */
  memset(&h, 0, sizeof h);
  for (int i = 0; i < 1000; i++) sl_lathist_add(&h, 95);
  for (int i = 0; i < 10; i++) sl_lathist_add(&h, 1000000);
  CHECK_EQ_INT(sl_lathist_quantile(&h, 0.5), 100);
  CHECK_EQ_INT(sl_lathist_quantile(&h, 0.99), 100);
  CHECK_EQ_INT(sl_lathist_quantile(&h, 0.999), 1000000);
}

TEST(u64_dec) {
  const uint64_t vs[] = {0, 7, 10, 99, 1234567890123ull, UINT64_MAX};
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
    char got[24], want[24];
    size_t n = sl_u64_dec(got, vs[i]);
    got[n] = 0;
    snprintf(want, sizeof want, "%llu", (unsigned long long)vs[i]);
    CHECK_EQ_STR(got, want);
    CHECK_EQ_INT(n, strlen(want));
  }
}

/* Integral numbers up to 2^53 are written in full; others keep a round-trip-exact form. */
TEST(json_num) {
  static const struct { double d; const char *want; } cases[] = {
      {9007199254740992.0, "9007199254740992"},   {-9007199254740992.0, "-9007199254740992"},
      {1796626026638180.0, "1796626026638180"},   {1e15, "1000000000000000"},
      {123456789012345678.0, "1.2345678901234568e+17"}, {-0.0, "0"},
      {0, "0"}, {42, "42"}, {-7, "-7"}, {0.1, "0.1"}, {10.25, "10.25"}, {1.5e-7, "1.5e-07"},
      {1.0 / 3, "0.33333333333333331"}, {1e300, "1e+300"}, {2.5e20, "2.5e+20"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char got[SL_JSON_NUM_MAX + 1];
    size_t n = sl_json_num(got, cases[i].d);
    got[n] = 0;
    CHECK_EQ_STR(got, cases[i].want);
    CHECK(strtod(got, NULL) == cases[i].d);
  }
  char buf[SL_JSON_NUM_MAX];
  CHECK_EQ_INT(sl_json_num(buf, NAN), 0);
  CHECK_EQ_INT(sl_json_num(buf, INFINITY), 0);
}

/* sl_json_print writes a cJSON tree as cJSON does, numbers as sl_json_num. */
TEST(json_print) {
  const char *in = "{\"ts\":1796626026638180,\"big\":9007199254740992,\"neg\":-9007199254740992,"
                   "\"x\":123456789012345678,\"f\":0.5,\"s\":\"a\\\"b\\n\\u0001\u20ac\","
                   "\"a\":[true,false,null,{}],\"inf\":1e999}";
  cJSON *root = cJSON_Parse(in);
  CHECK(root != NULL);
  char *t = sl_json_print(root);
  CHECK_EQ_STR(t, "{\"ts\":1796626026638180,\"big\":9007199254740992,\"neg\":-9007199254740992,"
                  "\"x\":1.2345678901234568e+17,\"f\":0.5,\"s\":\"a\\\"b\\n\\u0001\u20ac\","
                  "\"a\":[true,false,null,{}],\"inf\":null}");
  /* everything but the numbers reads as cJSON writes it */
  cJSON *small = cJSON_Parse("{\"s\":\"q\\\"\\t\",\"n\":[1,2.5,-3],\"o\":{\"k\":\"\"}}");
  char *a = sl_json_print(small), *b = cJSON_PrintUnformatted(small);
  CHECK_EQ_STR(a, b);
  free(a);
  free(b);
  free(t);
  cJSON_Delete(small);
  cJSON_Delete(root);
  CHECK(sl_json_print(NULL) == NULL);
}

TEST(strpool_shares_equal_strings_and_frees_with_the_last_count) {
  sl_hash pool = {0};
  char a[] = "127.0.0.1", b[] = "127.0.0.1";
  const char *x = sl_strpool_get(&pool, a);
  const char *y = sl_strpool_get(&pool, b);
  const char *z = sl_strpool_get(&pool, "::1");
  CHECK(x == y);
  CHECK(x != a && x != z);
  CHECK_EQ_STR(x, "127.0.0.1");
  CHECK_EQ_INT(pool.n, 2);
  sl_strpool_put(&pool, x);
  CHECK_EQ_INT(pool.n, 2);
  sl_strpool_put(&pool, y);
  CHECK_EQ_INT(pool.n, 1);
  sl_strpool_put(&pool, NULL);
  sl_strpool_free(&pool); /* "::1" still counted: freed with the pool */
}

TEST(mq_release_frees_only_an_empty_ring) {
  sl_mq q = {0};
  sl_msg *m = sl_msg_raw_new("x", 1);
  sl_mq_push(&q, m, true);
  sl_mq_release(&q); /* holds one: kept */
  CHECK(q.v != NULL);
  sl_msg_unref(sl_mq_pop(&q));
  CHECK(q.v != NULL); /* a small ring survives the pop (no malloc per write) */
  sl_mq_release(&q);
  CHECK(q.v == NULL && q.cap == 0);
  sl_mq_release(&q); /* idempotent */
}

int main(void) {
  RUN(strpool_shares_equal_strings_and_frees_with_the_last_count);
  RUN(mq_release_frees_only_an_empty_ring);
  RUN(strerror_all_codes);
  RUN(allocators);
  RUN(sbuf_append_printf);
  RUN(sbuf_many_appends);
  RUN(log_level_parse);
  RUN(log_text_format);
  RUN(log_threshold_filters);
  RUN(log_text_one_line);
  RUN(log_json_format);
  RUN(log_json_invalid_utf8);
  RUN(log_traceback);
  RUN(log_trailing_newline_and_errno);
  RUN(log_long_message);
  RUN(b64_enclen);
  RUN(b64_rfc4648_vectors);
  RUN(b64_protocol_example);
  RUN(b64_round_trip_all_lengths);
  RUN(b64_decode_in_place);
  RUN(b64_unpadded_accepted);
  RUN(b64_invalid);
  RUN(random_bytes_and_ids);
  RUN(clocks);
  RUN(u64_dec);
  RUN(json_num);
  RUN(json_print);
  RUN(lathist_bins_and_quantiles);
  return tl_report();
}
