/* util.c - error strings, aborting allocators, the logger, byte buffers, base64,
 * randomness and clocks (see sl_util.h).
 *
 * Nothing here keeps state except the two logger globals and the fallback PRNG. */
#include "sl_util.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

sl_log_level sl_log_threshold = SL_LOG_INFO;
int sl_log_json = 0;

/* ---- errors ------------------------------------------------------------------------- */

/* sl_strerror: map an SL_E* code (or SL_OK) to a static string. Unknown codes get a
 * generic string rather than NULL so callers can always print the result. */
const char *sl_strerror(int err) {
  switch (err) {
  case SL_OK: return "success";
  case SL_ENOMEM: return "out of memory";
  case SL_EINVAL: return "invalid input";
  case SL_ENOENT: return "not found";
  case SL_ETOOBIG: return "too big";
  case SL_EFULL: return "queue full";
  case SL_EIO: return "I/O error";
  case SL_ECONFIG: return "invalid configuration";
  case SL_ELUA: return "Lua error";
  case SL_EFORBIDDEN: return "forbidden";
  case SL_ESTATE: return "invalid state";
  default: return "unknown error";
  }
}

/* sl_addr_is_loopback: see sl_util.h. Textual prefixes: the whole 127/8 network, the IPv6
 * loopback and IPv4-mapped 127/8. */
bool sl_addr_is_loopback(const char *a) {
  return strncmp(a, "127.", 4) == 0 || strcmp(a, "::1") == 0 || strncmp(a, "::ffff:127.", 11) == 0;
}

/* ---- allocation ------------------------------------------------------------------------ */

/* Out of memory for a control structure leaves no sane way to continue; say so on the
 * raw fd (the logger itself allocates) and abort so a core dump shows where. */
static void sl_oom(size_t n) __attribute__((noreturn));
static void sl_oom(size_t n) {
  char msg[96];
  int k = snprintf(msg, sizeof msg, "sluice: out of memory allocating %zu bytes\n", n);
  if (k > 0) {
    ssize_t w = write(STDERR_FILENO, msg, (size_t)k < sizeof msg ? (size_t)k : sizeof msg - 1);
    SL_UNUSED(w);
  }
  abort();
}

/* sl_xmalloc: malloc that never returns NULL (aborts on failure). A zero-byte request
 * returns a unique, freeable pointer. Caller owns the memory (free()). */
void *sl_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) sl_oom(n);
  return p;
}

/* sl_xcalloc: zeroed array of n elements of size bytes; aborts on failure or when
 * n * size overflows (calloc checks the product). Caller owns the memory. */
void *sl_xcalloc(size_t n, size_t size) {
  if (n == 0 || size == 0) n = size = 1;
  void *p = calloc(n, size);
  if (!p) sl_oom(n * size);
  return p;
}

/* sl_xrealloc: realloc that never returns NULL. n == 0 keeps a 1-byte block instead of
 * freeing, so the result is always a live pointer the caller must free(). */
void *sl_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) sl_oom(n);
  return q;
}

/* sl_xstrdup: copy of the NUL-terminated string s (s must not be NULL). Caller frees. */
char *sl_xstrdup(const char *s) { return sl_xstrndup(s, strlen(s)); }

/* sl_xstrndup: copy of at most n bytes of s, stopping early at a NUL, always
 * NUL-terminated. Caller frees. */
char *sl_xstrndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  if (len == SIZE_MAX) sl_oom(len);
  char *d = sl_xmalloc(len + 1);
  memcpy(d, s, len);
  d[len] = '\0';
  return d;
}

/* ---- byte buffers ---------------------------------------------------------------------- */

/* sl_sbuf_reserve: make room for at least `extra` more bytes plus a terminating NUL, so
 * b->data can always be used as a C string after any append. Aborts on overflow or OOM:
 * sbufs are for small generated outputs, never for client-sized payloads. A zeroed sl_sbuf
 * is a valid empty buffer. */
void sl_sbuf_reserve(sl_sbuf *b, size_t extra) {
  if (extra > SIZE_MAX - 1 - b->len) sl_oom(SIZE_MAX);
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  b->data = sl_xrealloc(b->data, cap);
  b->cap = cap;
}

/* sl_sbuf_append: append n bytes from p (may contain NULs); keeps data NUL-terminated. */
void sl_sbuf_append(sl_sbuf *b, const void *p, size_t n) {
  sl_sbuf_reserve(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

/* sl_sbuf_puts: append the NUL-terminated string s (without its NUL). */
void sl_sbuf_puts(sl_sbuf *b, const char *s) { sl_sbuf_append(b, s, strlen(s)); }

/* sl_sbuf_vprintf_: the body of sl_sbuf_printf. Formats straight into the spare capacity
 * first and only grows and re-formats when that was too small. */
static void sl_sbuf_vprintf_(sl_sbuf *b, const char *fmt, va_list ap) {
  va_list ap2;
  sl_sbuf_reserve(b, 0);
  va_copy(ap2, ap);
  int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
  va_end(ap2);
  if (n < 0) { /* encoding error: append nothing, keep the old terminator */
    b->data[b->len] = '\0';
    return;
  }
  if ((size_t)n >= b->cap - b->len) {
    sl_sbuf_reserve(b, (size_t)n);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    if (n < 0) {
      b->data[b->len] = '\0';
      return;
    }
  }
  b->len += (size_t)n;
}

/* sl_sbuf_printf: append printf-formatted text. */
void sl_sbuf_printf(sl_sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sl_sbuf_vprintf_(b, fmt, ap);
  va_end(ap);
}

/* sl_sbuf_free: release the storage and reset *b to the empty state (reusable). */
void sl_sbuf_free(sl_sbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- logging --------------------------------------------------------------------------- */

static const char *const sl_level_upper[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const sl_level_lower[] = {"error", "warn", "info", "debug"};

/* sl_log_level_parse: "error", "warn"/"warning", "info", "debug" (any case) -> the
 * SL_LOG_* level; anything else (or NULL) -> -1. */
int sl_log_level_parse(const char *s) {
  if (!s) return -1;
  for (int i = 0; i <= SL_LOG_DEBUG; i++)
    if (strcasecmp(s, sl_level_lower[i]) == 0) return i;
  if (strcasecmp(s, "warning") == 0) return SL_LOG_WARN;
  return -1;
}

/* sl_utf8_seq_len: see sl_util.h. (JSON logs must be valid UTF-8 or collectors drop the
 * whole line, and messages routinely quote client-supplied bytes.) */
size_t sl_utf8_seq_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned min;
  unsigned cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
    min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
    min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
    min = 0x10000;
  } else
    return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

/* Append msg as the body of a JSON string: quotes, backslashes and control characters
 * escaped, invalid UTF-8 replaced by U+FFFD. */
static void log_json_escape(sl_sbuf *b, const char *msg, size_t n) {
  const unsigned char *s = (const unsigned char *)msg;
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      sl_sbuf_append(b, e, 2);
      i++;
    } else if (c < 0x20 || c == 0x7f) {
      switch (c) {
      case '\n': sl_sbuf_puts(b, "\\n"); break;
      case '\r': sl_sbuf_puts(b, "\\r"); break;
      case '\t': sl_sbuf_puts(b, "\\t"); break;
      case '\b': sl_sbuf_puts(b, "\\b"); break;
      case '\f': sl_sbuf_puts(b, "\\f"); break;
      default: sl_sbuf_printf(b, "\\u%04x", c); break;
      }
      i++;
    } else {
      size_t k = sl_utf8_seq_len(s + i, n - i);
      if (k == 0) {
        sl_sbuf_puts(b, "\\ufffd");
        i++;
      } else {
        sl_sbuf_append(b, s + i, k);
        i += k;
      }
    }
  }
}

/* Append msg for the text format. One message must stay one line (a client-supplied
 * newline must not forge a second log record), so control characters are escaped. */
static void log_text_escape(sl_sbuf *b, const char *msg, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)msg[i];
    if (c == '\n')
      sl_sbuf_puts(b, "\\n");
    else if (c == '\r')
      sl_sbuf_puts(b, "\\r");
    else if (c == '\t')
      sl_sbuf_append(b, "\t", 1);
    else if (c < 0x20 || c == 0x7f)
      sl_sbuf_printf(b, "\\x%02x", c);
    else
      sl_sbuf_append(b, &msg[i], 1);
  }
}

/* ISO-8601 UTC with milliseconds: 2026-11-27T20:00:00.123Z (24 chars + NUL). */
static void log_timestamp(char out[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  time_t secs = ts.tv_sec;
  gmtime_r(&secs, &tm);
  size_t k = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  unsigned ms = (unsigned)(ts.tv_nsec / 1000000) % 1000u;
  snprintf(out + k, 32 - k, ".%03uZ", ms);
}

/* Write the whole line with as few write(2) calls as the kernel allows, so lines from
 * concurrent threads or processes sharing stderr do not interleave mid-line. */
static void log_write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return; /* nowhere left to report a logging failure */
    }
    p += w;
    n -= (size_t)w;
  }
}

/* Where "\nstack traceback:" starts in m[0..n), or NULL. */
static const char *find_traceback(const char *m, size_t n) {
  static const char tag[] = "\nstack traceback:";
  for (const char *p = m; p && n >= sizeof tag - 1 && p <= m + n - (sizeof tag - 1); p++) {
    p = memchr(p, '\n', (size_t)(m + n - p));
    if (!p || (size_t)(m + n - p) < sizeof tag - 1) return NULL;
    if (memcmp(p, tag, sizeof tag - 1) == 0) return p;
  }
  return NULL;
}

/* A Lua traceback (luaL_traceback's "\nstack traceback:" and the frames after it) in text:
 * each of its lines indented under the record, so it reads as the record's continuation
 * and can never pass for a record of its own (those start with a timestamp). */
static void log_text_traceback(sl_sbuf *b, const char *t, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && t[i] != '\n') continue;
    if (i > start) {
      sl_sbuf_puts(b, "\n    ");
      const char *l = t + start;
      size_t ln = i - start;
      for (; ln && *l == '\t'; l++, ln--) sl_sbuf_puts(b, "    "); /* frames under the header */
      log_text_escape(b, l, ln);
    }
    start = i + 1;
  }
}

/* sl_vlog: format and emit one log record to stderr when lvl passes sl_log_threshold.
 * Text: "<ts> LEVEL message"; JSON (sl_log_json=1): {"ts":"..","level":"..","msg":".."}.
 * Trailing newlines in the message are dropped (the logger adds its own). A message that
 * carries a Lua traceback ("...\nstack traceback:\n\t...") keeps it in the same record:
 * JSON gets a "traceback" field ("stack traceback:\n\t..." as one string), text gets the
 * traceback's lines indented by four spaces below the message line. Never fails visibly;
 * aborts only on OOM like every sl_x* allocation. errno is preserved so callers can log
 * and then still inspect it. */
void sl_vlog(sl_log_level lvl, const char *fmt, va_list ap) {
  if ((int)lvl < 0 || lvl > SL_LOG_DEBUG) lvl = SL_LOG_ERROR;
  if (lvl > sl_log_threshold) return;
  int saved_errno = errno;
  sl_sbuf msg = {0}, line = {0};
  char ts[32];

  sl_sbuf_vprintf_(&msg, fmt, ap);
  while (msg.len > 0 && (msg.data[msg.len - 1] == '\n' || msg.data[msg.len - 1] == '\r')) msg.len--;
  log_timestamp(ts);
  size_t mlen = msg.len, tlen = 0;
  const char *trace = find_traceback(msg.data, msg.len);
  if (trace) {
    mlen = (size_t)(trace - msg.data);
    trace++; /* "stack traceback:..." */
    tlen = msg.len - mlen - 1;
  }
  if (sl_log_json) {
    sl_sbuf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, sl_level_lower[lvl]);
    log_json_escape(&line, msg.data, mlen);
    if (trace) {
      sl_sbuf_puts(&line, "\",\"traceback\":\"");
      log_json_escape(&line, trace, tlen);
    }
    sl_sbuf_puts(&line, "\"}\n");
  } else {
    sl_sbuf_printf(&line, "%s %s ", ts, sl_level_upper[lvl]);
    log_text_escape(&line, msg.data, mlen);
    if (trace) log_text_traceback(&line, trace, tlen);
    sl_sbuf_append(&line, "\n", 1);
  }
  log_write_all(line.data, line.len);
  sl_sbuf_free(&msg);
  sl_sbuf_free(&line);
  errno = saved_errno;
}

/* sl_log: printf-style front end of sl_vlog. */
void sl_log(sl_log_level lvl, const char *fmt, ...) {
  va_list ap;
  if (lvl > sl_log_threshold) return;
  va_start(ap, fmt);
  sl_vlog(lvl, fmt, ap);
  va_end(ap);
}

/* ---- base64 ---------------------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* sl_b64_enclen: the padded encoded length of n bytes (no NUL). Written so that it cannot
 * overflow on its own for n near SIZE_MAX/4*3. */
size_t sl_b64_enclen(size_t n) { return n / 3 * 4 + (n % 3 ? 4 : 0); }

/* sl_b64_encode: standard alphabet, '=' padded. out must hold sl_b64_enclen(n) bytes; no
 * NUL is written. Returns the number of chars written. */
size_t sl_b64_encode(const uint8_t *in, size_t n, char *out) {
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64_alphabet[v >> 18];
    out[o++] = b64_alphabet[(v >> 12) & 63];
    out[o++] = b64_alphabet[(v >> 6) & 63];
    out[o++] = b64_alphabet[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = b64_alphabet[v >> 18];
    out[o++] = b64_alphabet[(v >> 12) & 63];
    out[o++] = '=';
    out[o++] = '=';
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = b64_alphabet[v >> 18];
    out[o++] = b64_alphabet[(v >> 12) & 63];
    out[o++] = b64_alphabet[(v >> 6) & 63];
    out[o++] = '=';
  }
  return o;
}

/* 6-bit value of a standard-alphabet char, or -1. */
static int b64_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* sl_b64_decode: decode n chars of standard base64 into out. Accepts padded input and, for
 * interop with lenient encoders, unpadded input whose length mod 4 is 2 or 3. Rejects
 * (-1) any char outside the alphabet (including whitespace), '=' anywhere but the final
 * one or two positions of a 4-char group, and a lone trailing char. Non-zero bits left over
 * in the last char are ignored, as Node's decoder does.
 * out must hold 3 * ceil(n / 4) bytes. Decoding in place (out == in) is safe: each group is
 * read completely before its (shorter) output is written. Returns the byte count. */
long sl_b64_decode(const char *in, size_t n, uint8_t *out) {
  const unsigned char *s = (const unsigned char *)in;
  size_t o = 0;
  size_t full = n / 4 * 4; /* chars in complete 4-char groups */
  size_t rest = n - full;

  if (rest == 1) return -1;
  for (size_t i = 0; i < full; i += 4) {
    int a = b64_val(s[i]), b = b64_val(s[i + 1]);
    int c = s[i + 2] == '=' ? -2 : b64_val(s[i + 2]);
    int d = s[i + 3] == '=' ? -2 : b64_val(s[i + 3]);
    bool last = (i + 4 == full) && rest == 0;
    if (a < 0 || b < 0 || c == -1 || d == -1) return -1;
    if ((c == -2 || d == -2) && !last) return -1; /* padding mid-stream */
    if (c == -2 && d != -2) return -1;            /* "ab=c" */
    uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12;
    if (c >= 0) v |= (uint32_t)c << 6;
    if (d >= 0) v |= (uint32_t)d;
    out[o++] = (uint8_t)(v >> 16);
    if (c >= 0) out[o++] = (uint8_t)(v >> 8);
    if (d >= 0) out[o++] = (uint8_t)v;
  }
  if (rest) { /* unpadded tail of 2 or 3 chars */
    int a = b64_val(s[full]), b = b64_val(s[full + 1]);
    int c = rest == 3 ? b64_val(s[full + 2]) : 0;
    if (a < 0 || b < 0 || c < 0) return -1;
    uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
    out[o++] = (uint8_t)(v >> 16);
    if (rest == 3) out[o++] = (uint8_t)(v >> 8);
  }
  return (long)o;
}

/* ---- randomness ------------------------------------------------------------------------ */

/* xorshift64* state for the fallback path only (getrandom unavailable, e.g. seccomp or a
 * pre-3.17 kernel). Not cryptographic; ids stay unique but become guessable, so warn. */
static uint64_t prng_state;

static uint64_t prng_next(void) {
  if (prng_state == 0) {
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    prng_state = (uint64_t)a.tv_sec * 1000000007u ^ (uint64_t)a.tv_nsec ^
                 ((uint64_t)b.tv_nsec << 20) ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&a;
    if (prng_state == 0) prng_state = 0x9e3779b97f4a7c15ull;
  }
  prng_state ^= prng_state >> 12;
  prng_state ^= prng_state << 25;
  prng_state ^= prng_state >> 27;
  return prng_state * 0x2545f4914f6cdd1dull;
}

/* sl_random_bytes: fill buf with n random bytes from getrandom(2), retrying on EINTR and
 * short reads. If the syscall fails outright, fills the rest from a seeded PRNG and logs a
 * warning once. Never fails. */
void sl_random_bytes(void *buf, size_t n) {
  static int warned;
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    break;
  }
  if (n == 0) return;
  if (!warned) {
    warned = 1;
    sl_log_warn("getrandom failed (%s); falling back to a non-cryptographic PRNG", strerror(errno));
  }
  while (n > 0) {
    uint64_t v = prng_next();
    size_t k = n < sizeof v ? n : sizeof v;
    memcpy(p, &v, k);
    p += k;
    n -= k;
  }
}

/* sl_random_id: len random chars from the base64url alphabet [A-Za-z0-9_-], then a NUL
 * (out must hold len + 1). Each char uses 6 bits of one random byte; 256 is a multiple
 * of 64, so every char is uniform. */
void sl_random_id(char *out, size_t len) {
  static const char url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  uint8_t raw[64];
  size_t done = 0;
  while (done < len) {
    size_t k = len - done < sizeof raw ? len - done : sizeof raw;
    sl_random_bytes(raw, k);
    for (size_t i = 0; i < k; i++) out[done + i] = url[raw[i] & 63];
    done += k;
  }
  out[len] = '\0';
}

/* ---- clocks ---------------------------------------------------------------------------- */

/* sl_now_ms: CLOCK_MONOTONIC in milliseconds (arbitrary epoch; for timers and durations). */
uint64_t sl_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* sl_now_ns: CLOCK_MONOTONIC in nanoseconds (for timing short intervals). */
uint64_t sl_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* sl_clock_overhead_ns: see sl_util.h. */
uint64_t sl_clock_overhead_ns(void) {
  static uint64_t best = UINT64_MAX;
  if (best == UINT64_MAX) {
    for (int i = 0; i < 256; i++) {
      uint64_t a = sl_now_ns(), b = sl_now_ns();
      if (b - a < best) best = b - a;
    }
  }
  return best;
}

/* The decade edges of sl_lathist's coarse bins, in ns. */
static const uint64_t lh_coarse_edge[SL_LH_COARSE - 1] = {10000,    100000,    1000000,
                                                          10000000, 100000000, 1000000000};

/* sl_lathist_add: see sl_util.h. */
void sl_lathist_add(sl_lathist *h, uint64_t ns) {
  h->n++;
  h->sum_ns += ns;
  if (ns <= (uint64_t)SL_LH_FINE * 10) {
    h->fine[(ns + 9) / 10]++;
    return;
  }
  size_t c = 0;
  while (c < SL_LH_COARSE - 1 && ns > lh_coarse_edge[c]) c++;
  h->coarse[c]++;
}

/* sl_lathist_quantile: see sl_util.h. */
uint64_t sl_lathist_quantile(const sl_lathist *h, double q) {
  if (!h->n) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  uint64_t want = (uint64_t)(q * (double)h->n + 0.5), seen = 0;
  if (want < 1) want = 1;
  for (size_t k = 0; k <= SL_LH_FINE; k++) {
    seen += h->fine[k];
    if (seen >= want) return (uint64_t)k * 10;
  }
  for (size_t c = 0; c < SL_LH_COARSE - 1; c++) {
    seen += h->coarse[c];
    if (seen >= want) return lh_coarse_edge[c];
  }
  return UINT64_MAX;
}

/* sl_lathist_le: see sl_util.h. */
uint64_t sl_lathist_le(const sl_lathist *h, uint64_t le_ns) {
  uint64_t n = 0;
  size_t top = le_ns >= (uint64_t)SL_LH_FINE * 10 ? SL_LH_FINE : (size_t)(le_ns / 10);
  for (size_t k = 0; k <= top; k++) n += h->fine[k];
  for (size_t c = 0; c < SL_LH_COARSE - 1 && le_ns >= lh_coarse_edge[c]; c++) n += h->coarse[c];
  return n;
}

/* sl_wall_us: CLOCK_REALTIME in microseconds since the Unix epoch (for timestamps). */
uint64_t sl_wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* sl_json_num: see sl_util.h. */
size_t sl_json_num(char *out, double d) {
  if (!isfinite(d)) return 0;
  if (d == floor(d) && fabs(d) <= 9007199254740992.0) { /* 2^53: every such integer is exact */
    size_t n = 0;
    if (d < 0) out[n++] = '-';
    return n + sl_u64_dec(out + n, (uint64_t)fabs(d));
  }
  char buf[SL_JSON_NUM_MAX];
  int n = snprintf(buf, sizeof buf, "%.15g", d);
  if (strtod(buf, NULL) != d) n = snprintf(buf, sizeof buf, "%.17g", d);
  memcpy(out, buf, (size_t)n);
  return (size_t)n;
}

static bool json_print_item(sl_sbuf *b, const cJSON *it);

/* a JSON string literal, escaped as cJSON escapes it */
static void json_print_string(sl_sbuf *b, const char *s) {
  static const char hx[] = "0123456789abcdef";
  sl_sbuf_append(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    char e[6] = {'\\', 0};
    size_t n = 2;
    switch (*p) {
    case '"': e[1] = '"'; break;
    case '\\': e[1] = '\\'; break;
    case '\b': e[1] = 'b'; break;
    case '\f': e[1] = 'f'; break;
    case '\n': e[1] = 'n'; break;
    case '\r': e[1] = 'r'; break;
    case '\t': e[1] = 't'; break;
    default:
      if (*p >= 0x20) {
        sl_sbuf_append(b, p, 1);
        continue;
      }
      memcpy(e + 1, "u00", 3);
      e[4] = hx[*p >> 4];
      e[5] = hx[*p & 15];
      n = 6;
    }
    sl_sbuf_append(b, e, n);
  }
  sl_sbuf_append(b, "\"", 1);
}

static bool json_print_item(sl_sbuf *b, const cJSON *it) {
  char num[SL_JSON_NUM_MAX];
  size_t n;
  switch (it->type & 0xff) {
  case cJSON_NULL: sl_sbuf_puts(b, "null"); return true;
  case cJSON_False: sl_sbuf_puts(b, "false"); return true;
  case cJSON_True: sl_sbuf_puts(b, "true"); return true;
  case cJSON_Number:
    if (!(n = sl_json_num(num, it->valuedouble))) /* 1e999 parses as inf: null, as cJSON */
      sl_sbuf_puts(b, "null");
    else
      sl_sbuf_append(b, num, n);
    return true;
  case cJSON_String: json_print_string(b, it->valuestring); return true;
  case cJSON_Raw:
    if (!it->valuestring) return false;
    sl_sbuf_puts(b, it->valuestring);
    return true;
  case cJSON_Array:
  case cJSON_Object: {
    bool obj = (it->type & 0xff) == cJSON_Object;
    sl_sbuf_append(b, obj ? "{" : "[", 1);
    for (const cJSON *c = it->child; c; c = c->next) {
      if (c != it->child) sl_sbuf_append(b, ",", 1);
      if (obj) {
        json_print_string(b, c->string);
        sl_sbuf_append(b, ":", 1);
      }
      if (!json_print_item(b, c)) return false;
    }
    sl_sbuf_append(b, obj ? "}" : "]", 1);
    return true;
  }
  default: return false;
  }
}

/* sl_json_print: see sl_util.h. */
char *sl_json_print(const cJSON *item) {
  sl_sbuf b = {0};
  if (!item || !json_print_item(&b, item)) {
    sl_sbuf_free(&b);
    return NULL;
  }
  return b.data; /* sl_sbuf keeps its text NUL-terminated */
}

/* sl_u64_dec: see sl_util.h. */
size_t sl_u64_dec(char *out, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}
