/* sl_util.h - small shared helpers: errors, allocation, logging, byte buffers.
 *
 * Every module includes this. Nothing here does I/O except the logger. */
#ifndef SL_UTIL_H
#define SL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdarg.h>

#define SL_UNUSED(x) ((void)(x))
#define SL_WUR __attribute__((warn_unused_result))
#define SL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define sl_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Error codes: always negative when returned. */
enum {
  SL_OK = 0,
  SL_ENOMEM = -1,     /* allocation failed */
  SL_EINVAL = -2,     /* malformed input */
  SL_ENOENT = -3,     /* unknown namespace / topic / client */
  SL_ETOOBIG = -4,    /* exceeds a size limit */
  SL_EFULL = -5,      /* queue full, message rejected */
  SL_EIO = -6,        /* file or socket I/O failed */
  SL_ECONFIG = -7,    /* configuration is invalid */
  SL_ELUA = -8,       /* a Lua error (already logged) */
  SL_EFORBIDDEN = -9, /* not allowed by policy */
  SL_ESTATE = -10,    /* wrong state for the operation */
};

/* sl_strerror: a static human-readable string for an SL_E* code. */
/* sl_utf8_seq_len: length of the valid UTF-8 sequence (RFC 3629) at s[0..n), n > 0, or 0 when
 * it is invalid (overlong, surrogate, above U+10FFFF, truncated). */
size_t sl_utf8_seq_len(const unsigned char *s, size_t n);

const char *sl_strerror(int err);

/* sl_addr_is_loopback: is addr, a textual peer address as sl_conn_remote writes it
 * ("127.0.0.1", "::1", "::ffff:127.0.0.1"), on the loopback network? addr must not be NULL;
 * anything else, including "" and unparsable text, is not loopback. */
bool sl_addr_is_loopback(const char *addr);

/* Aborting allocators for small control structures (never return NULL). */
void *sl_xmalloc(size_t n);
void *sl_xcalloc(size_t n, size_t size);
void *sl_xrealloc(void *p, size_t n);
char *sl_xstrdup(const char *s);
char *sl_xstrndup(const char *s, size_t n);

/* sl_u64_dec: write v in decimal at out (room for 20 digits), no NUL; returns the length.
 * For per-publish paths where snprintf("%llu") costs ~700 instructions. */
size_t sl_u64_dec(char *out, uint64_t v);

/* sl_json_num: write the finite number d as JSON at out (room for SL_JSON_NUM_MAX bytes),
 * no NUL; returns the length, or 0 for NaN and infinities (JSON has no such value). Every
 * integral d with |d| <= 2^53 is written as an integer ("1796626026638180", not
 * "1.79662602663818e+15": Go's encoding/json refuses the exponent form for an int64); -0 is
 * "0". Other values get the shortest of %.15g / %.17g that reads back as d. */
#define SL_JSON_NUM_MAX 32
size_t sl_json_num(char *out, double d);

/* sl_json_print: the tree as compact JSON text, as cJSON_PrintUnformatted writes it except
 * for numbers, which are written by sl_json_num (cJSON writes integers past 2^31 that need
 * 16 digits in exponent form); a non-finite number (text such as 1e999 parses as one) is
 * null, as cJSON writes it. Returns a malloc'd NUL-terminated string (free()), or NULL
 * when item is NULL or the tree holds an invalid item. */
struct cJSON;
char *sl_json_print(const struct cJSON *item);

/* Logging. Levels follow syslog order; the level filter and format are global. */
typedef enum { SL_LOG_ERROR = 0, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG } sl_log_level;
extern sl_log_level sl_log_threshold;
extern int sl_log_json; /* 1: one JSON object per line */
void sl_log(sl_log_level lvl, const char *fmt, ...) SL_PRINTF(2, 3);
void sl_vlog(sl_log_level lvl, const char *fmt, va_list ap);
int sl_log_level_parse(const char *s); /* -> level, or -1 */
#define sl_log_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)
#define sl_log_warn(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_log_info(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_log_debug(...)                                                                          \
  do {                                                                                             \
    if (sl_log_threshold >= SL_LOG_DEBUG) sl_log(SL_LOG_DEBUG, __VA_ARGS__);                       \
  } while (0)

/* Growable byte buffer (for building small outputs: HTTP responses, JSON, metrics). */
typedef struct sl_sbuf {
  char *data;
  size_t len;
  size_t cap;
} sl_sbuf;
void sl_sbuf_reserve(sl_sbuf *b, size_t extra);
void sl_sbuf_append(sl_sbuf *b, const void *p, size_t n);
void sl_sbuf_puts(sl_sbuf *b, const char *s);
void sl_sbuf_printf(sl_sbuf *b, const char *fmt, ...) SL_PRINTF(2, 3);
void sl_sbuf_free(sl_sbuf *b);

/* Base64 (standard alphabet, padded). encode returns bytes written (out must hold
 * sl_b64_enclen(n)). decode returns bytes written or -1 on invalid input. */
size_t sl_b64_enclen(size_t n);
size_t sl_b64_encode(const uint8_t *in, size_t n, char *out);
SL_WUR long sl_b64_decode(const char *in, size_t n, uint8_t *out);

/* Random bytes from the OS (getrandom); falls back to a seeded PRNG. */
void sl_random_bytes(void *buf, size_t n);
/* A random URL-safe id of `len` chars (base64url alphabet) NUL-terminated into out[len+1]. */
void sl_random_id(char *out, size_t len);

/* Monotonic milliseconds and nanoseconds, wall-clock microseconds. */
uint64_t sl_now_ms(void);
uint64_t sl_now_ns(void);
uint64_t sl_wall_us(void);
/* sl_clock_overhead_ns: what two back-to-back sl_now_ns calls read (the least of 256 pairs,
 * measured once per process): the part of a timed interval that is the clock itself. */
uint64_t sl_clock_overhead_ns(void);

/* sl_lathist: a latency histogram of short intervals. Bin k of fine (1 <= k <= SL_LH_FINE)
 * counts ((k-1)*10, k*10] ns, bin 0 exactly 0 ns; longer ones go to the decade bins of
 * coarse: (2.56 us, 10 us], (10 us, 100 us], ..., (100 ms, 1 s], above 1 s.
 * Quantiles come at 10 ns resolution up to 2.56 us, and every Prometheus bucket edge that
 * is a multiple of 10 ns up to 2.56 us, or a coarse edge, is exact (sl_lathist_le). */
#define SL_LH_FINE 256
#define SL_LH_COARSE 7
typedef struct sl_lathist {
  uint64_t n, sum_ns;
  uint64_t fine[SL_LH_FINE + 1];
  uint64_t coarse[SL_LH_COARSE];
} sl_lathist;
void sl_lathist_add(sl_lathist *h, uint64_t ns);
/* The least bin edge (ns) at or below which a fraction q of the samples lie; 0 when empty.
 * Past 2.56 us the answer is the coarse bin's upper edge (UINT64_MAX above 1 s). */
uint64_t sl_lathist_quantile(const sl_lathist *h, double q);
/* The number of samples <= le_ns, for le_ns a bin edge (see above); others round down to
 * the edge below. */
uint64_t sl_lathist_le(const sl_lathist *h, uint64_t le_ns);

#endif
