/* testlib.h - a tiny in-tree unit test harness (one binary per module).
 *
 *   TEST(name) { CHECK(x); CHECK_EQ_INT(a, b); CHECK_EQ_STR(a, b); CHECK_EQ_MEM(a, al, b, bl); }
 *   int main(void) { RUN(name); ...; return tl_report(); }
 *
 * A failed check prints both sides and file:line, marks the current test failed and goes on.
 * tl_report() prints "N passed, N failed" as the last line and returns non-zero on failure. */
#ifndef TESTLIB_H
#define TESTLIB_H
#include <stdio.h>
#include <string.h>
#include <stdint.h>

static int tl_passed, tl_failed, tl_cur_failed;
static const char *tl_cur;

#define TEST(name) static void test_##name(void)
#define RUN(name)                                                         \
  do {                                                                    \
    tl_cur = #name; tl_cur_failed = 0;                                    \
    test_##name();                                                        \
    if (tl_cur_failed) { tl_failed++; printf("not ok - %s\n", #name); }  \
    else { tl_passed++; printf("ok - %s\n", #name); }                    \
    fflush(stdout);                                                       \
  } while (0)

#define TL_FAIL(...)                                                      \
  do {                                                                    \
    tl_cur_failed = 1;                                                    \
    fprintf(stderr, "  %s:%d: [%s] ", __FILE__, __LINE__, tl_cur);        \
    fprintf(stderr, __VA_ARGS__);                                         \
    fputc('\n', stderr);                                                  \
  } while (0)

#define CHECK(cond) do { if (!(cond)) TL_FAIL("expected: %s", #cond); } while (0)
#define CHECK_EQ_INT(a, b)                                                \
  do {                                                                    \
    long long tl_a = (long long)(a), tl_b = (long long)(b);               \
    if (tl_a != tl_b) TL_FAIL("%s == %s: got %lld, want %lld", #a, #b, tl_a, tl_b); \
  } while (0)
#define CHECK_EQ_STR(a, b)                                                \
  do {                                                                    \
    const char *tl_a = (a), *tl_b = (b);                                  \
    if (!tl_a || !tl_b || strcmp(tl_a, tl_b) != 0)                        \
      TL_FAIL("%s == %s: got \"%s\", want \"%s\"", #a, #b, tl_a ? tl_a : "(null)", tl_b ? tl_b : "(null)"); \
  } while (0)
#define CHECK_EQ_MEM(a, al, b, bl)                                        \
  do {                                                                    \
    size_t tl_al = (al), tl_bl = (bl);                                    \
    if (tl_al != tl_bl || memcmp((a), (b), tl_al) != 0)                   \
      TL_FAIL("%s == %s: got \"%.*s\" (%zu), want \"%.*s\" (%zu)", #a, #b, \
              (int)tl_al, (const char *)(a), tl_al, (int)tl_bl, (const char *)(b), tl_bl); \
  } while (0)

static inline int tl_report(void) {
  printf("%d passed, %d failed\n", tl_passed, tl_failed);
  return tl_failed ? 1 : 0;
}
#endif
