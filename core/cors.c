/* cors.c - origin checks and CORS headers for the Engine.IO endpoints (see cors.h). */
#include <string.h>
#include <strings.h>
#include "cors.h"

/* A pattern is "scheme://" + "*" + ".domain[:port]": it matches an origin of the same
 * scheme whose host has at least one more label in front of ".domain[:port]". */
static bool pattern_match(const char *pat, const char *origin) {
  const char *star = strstr(pat, "://*.");
  if (!star) return false;
  size_t pre = (size_t)(star - pat) + 3; /* "https://" */
  const char *suffix = star + 4;         /* ".example.com[:port]" */
  size_t sl = strlen(suffix), ol = strlen(origin);
  if (ol <= pre + sl || strncasecmp(origin, pat, pre) != 0) return false;
  if (strcasecmp(origin + ol - sl, suffix) != 0) return false;
  for (const char *p = origin + pre; p < origin + ol - sl; p++)
    if (*p == '/' || *p == ':' || *p == '@' || *p == '?' || *p == '#') return false;
  return true;
}

/* sl_cors_origin_ok: see cors.h. */
bool sl_cors_origin_ok(const sl_cors_config *k, const char *origin) {
  if (!k->set || !origin) return true;
  for (size_t i = 0; i < k->norigins; i++) {
    const char *o = k->origins[i];
    if (strcmp(o, "*") == 0 || strcmp(o, origin) == 0) return true;
    if (strstr(o, "://*.") && pattern_match(o, origin)) return true;
  }
  return false;
}

/* sl_cors_headers: see cors.h. */
void sl_cors_headers(const sl_cors_config *k, const char *origin, sl_sbuf *b) {
  if (!k->set) return;
  if (k->norigins == 1 && strcmp(k->origins[0], "*") == 0) {
    /* the cors package's "*": no Vary; browsers refuse it together with credentials */
    sl_sbuf_puts(b, "Access-Control-Allow-Origin: *\r\n");
    if (k->credentials) sl_sbuf_puts(b, "Access-Control-Allow-Credentials: true\r\n");
    return;
  }
  sl_sbuf_puts(b, "Vary: Origin\r\n");
  if (!origin || !sl_cors_origin_ok(k, origin)) return;
  sl_sbuf_printf(b, "Access-Control-Allow-Origin: %s\r\n", origin);
  if (k->credentials) sl_sbuf_puts(b, "Access-Control-Allow-Credentials: true\r\n");
}

/* sl_cors_preflight: see cors.h. */
void sl_cors_preflight(const sl_cors_config *k, const char *origin, const char *req_headers,
                       sl_sbuf *b) {
  if (!k->set || !sl_cors_origin_ok(k, origin)) {
    if (k->set) sl_sbuf_puts(b, "Vary: Origin\r\n");
    return;
  }
  sl_cors_headers(k, origin, b);
  sl_sbuf_printf(b, "Access-Control-Allow-Methods: %s\r\n", k->methods ? k->methods : "GET,POST");
  if (k->headers) {
    sl_sbuf_printf(b, "Access-Control-Allow-Headers: %s\r\n", k->headers);
  } else if (req_headers) {
    /* reflected: only header-name characters, so nothing can be smuggled into the response */
    sl_sbuf_puts(b, "Access-Control-Allow-Headers: ");
    for (const char *p = req_headers; *p; p++)
      if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '-' || *p == '_' || *p == ',' || *p == ' ')
        sl_sbuf_append(b, p, 1);
    sl_sbuf_puts(b, "\r\nVary: Access-Control-Request-Headers\r\n");
  }
}
