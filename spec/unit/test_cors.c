/* test_cors.c - unit tests for core/cors.c: the origin check and the CORS headers of the
 * server key `cors` (socket.io's cors option semantics). */
#include "testlib.h"
#include "cors.h"

#include <string.h>

static char *origins_list[] = {"https://app.example.com", "https://*.example.org",
                               "http://localhost:3000"};

static sl_cors_config listed(bool credentials, char *headers) {
  sl_cors_config k = {.set = true, .origins = origins_list, .norigins = 3,
                      .credentials = credentials, .methods = "GET,POST", .headers = headers};
  return k;
}

/* headers: the CORS block for origin (a static buffer, "" when nothing was added). */
static const char *headers_for(const sl_cors_config *k, const char *origin, bool preflight,
                               const char *acrh) {
  static char out[1024];
  sl_sbuf b = {0};
  if (preflight) sl_cors_preflight(k, origin, acrh, &b);
  else sl_cors_headers(k, origin, &b);
  snprintf(out, sizeof out, "%.*s", (int)b.len, b.data ? b.data : "");
  sl_sbuf_free(&b);
  return out;
}

TEST(unset_checks_nothing_and_sends_nothing) {
  sl_cors_config k = {0};
  CHECK(sl_cors_origin_ok(&k, "https://evil.example"));
  CHECK(sl_cors_origin_ok(&k, NULL));
  CHECK_EQ_STR(headers_for(&k, "https://evil.example", false, NULL), "");
  CHECK_EQ_STR(headers_for(&k, "https://evil.example", true, "x-a"), "");
}

TEST(exact_origins) {
  sl_cors_config k = listed(false, NULL);
  CHECK(sl_cors_origin_ok(&k, "https://app.example.com"));
  CHECK(sl_cors_origin_ok(&k, "http://localhost:3000"));
  CHECK(!sl_cors_origin_ok(&k, "http://localhost:3001"));
  CHECK(!sl_cors_origin_ok(&k, "http://app.example.com"));
  CHECK(!sl_cors_origin_ok(&k, "https://app.example.com.evil"));
  CHECK(!sl_cors_origin_ok(&k, "null"));
  CHECK(sl_cors_origin_ok(&k, NULL)); /* no Origin: Node and mobile clients */
}

TEST(patterns_match_subdomains_of_the_same_scheme) {
  sl_cors_config k = listed(false, NULL);
  CHECK(sl_cors_origin_ok(&k, "https://a.example.org"));
  CHECK(sl_cors_origin_ok(&k, "https://a.b.example.org"));
  CHECK(sl_cors_origin_ok(&k, "HTTPS://A.EXAMPLE.ORG"));
  CHECK(!sl_cors_origin_ok(&k, "https://example.org"));
  CHECK(!sl_cors_origin_ok(&k, "https://.example.org"));
  CHECK(!sl_cors_origin_ok(&k, "http://a.example.org"));
  CHECK(!sl_cors_origin_ok(&k, "https://evilexample.org"));
  CHECK(!sl_cors_origin_ok(&k, "https://a.example.org:8443"));
  CHECK(!sl_cors_origin_ok(&k, "https://a.example.org.evil.com"));
  CHECK(!sl_cors_origin_ok(&k, "https://x@a.example.org"));
  CHECK(!sl_cors_origin_ok(&k, "https://evil.com/.example.org"));
}

TEST(headers_echo_an_allowed_origin_with_vary) {
  sl_cors_config k = listed(false, NULL);
  CHECK_EQ_STR(headers_for(&k, "https://app.example.com", false, NULL),
               "Vary: Origin\r\nAccess-Control-Allow-Origin: https://app.example.com\r\n");
  CHECK_EQ_STR(headers_for(&k, "https://evil.example", false, NULL), "Vary: Origin\r\n");
  CHECK_EQ_STR(headers_for(&k, NULL, false, NULL), "Vary: Origin\r\n");
  k.credentials = true;
  CHECK_EQ_STR(headers_for(&k, "https://a.example.org", false, NULL),
               "Vary: Origin\r\nAccess-Control-Allow-Origin: https://a.example.org\r\n"
               "Access-Control-Allow-Credentials: true\r\n");
}

TEST(star_alone_answers_star) {
  char *star[] = {"*"};
  sl_cors_config k = {.set = true, .origins = star, .norigins = 1, .methods = "GET"};
  CHECK(sl_cors_origin_ok(&k, "https://anything.example"));
  CHECK_EQ_STR(headers_for(&k, "https://anything.example", false, NULL),
               "Access-Control-Allow-Origin: *\r\n");
}

TEST(preflight_methods_and_headers) {
  sl_cors_config k = listed(true, NULL);
  CHECK_EQ_STR(headers_for(&k, "https://app.example.com", true, "content-type, x-token"),
               "Vary: Origin\r\nAccess-Control-Allow-Origin: https://app.example.com\r\n"
               "Access-Control-Allow-Credentials: true\r\nAccess-Control-Allow-Methods: GET,POST\r\n"
               "Access-Control-Allow-Headers: content-type, x-token\r\n"
               "Vary: Access-Control-Request-Headers\r\n");
  /* reflected headers keep only header-name characters */
  const char *h = headers_for(&k, "https://app.example.com", true, "a;b\"c");
  CHECK(strstr(h, "Access-Control-Allow-Headers: abc\r\n") != NULL);
  k = listed(false, "authorization");
  CHECK(strstr(headers_for(&k, "https://app.example.com", true, "x-other"),
               "Access-Control-Allow-Headers: authorization\r\n") != NULL);
  CHECK_EQ_STR(headers_for(&k, "https://evil.example", true, "x"), "Vary: Origin\r\n");
}

int main(void) {
  RUN(unset_checks_nothing_and_sends_nothing);
  RUN(exact_origins);
  RUN(patterns_match_subdomains_of_the_same_scheme);
  RUN(headers_echo_an_allowed_origin_with_vary);
  RUN(star_alone_answers_star);
  RUN(preflight_methods_and_headers);
  return tl_report();
}
