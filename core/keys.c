/* keys.c - coalesce keys from a field path of the payload text (keys.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "keys.h"
#include "sl_jscan.h"
#include "sl_util.h"

/* The key of a parsed value: in buf (cap bytes) when it fits, else malloc'd; NULL when the
 * value is not a string, number or boolean. */
static char *key_of_item(const cJSON *cur, char *buf, size_t cap) {
  int n;
  if (cJSON_IsString(cur))
    n = snprintf(buf, cap, "%s", cur->valuestring);
  else if (cJSON_IsNumber(cur))
    n = snprintf(buf, cap, "%.17g", cur->valuedouble);
  else if (cJSON_IsBool(cur))
    n = snprintf(buf, cap, "%s", cJSON_IsTrue(cur) ? "true" : "false");
  else
    return NULL;
  if (n >= 0 && (size_t)n < cap) return buf;
  return cJSON_IsString(cur) ? sl_xstrdup(cur->valuestring) : NULL; /* numbers always fit */
}

/* The rare shapes (escaped member names or string values): a cJSON tree, as before. */
static char *key_from_tree(const char *text, size_t len, const char *path, char *buf, size_t cap) {
  cJSON *root = cJSON_ParseWithLength(text, len);
  const cJSON *cur = root;
  const char *p = path;
  while (*p && cur) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    char seg[128];
    if (n >= sizeof seg) {
      cur = NULL;
      break;
    }
    memcpy(seg, p, n);
    seg[n] = 0;
    cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, seg) : NULL;
    p = dot ? dot + 1 : p + n;
  }
  char *key = cur ? key_of_item(cur, buf, cap) : NULL;
  cJSON_Delete(root);
  return key;
}

/* sl_key_from_path: see keys.h. The text is scanned in place, not parsed into a tree: once
 * per publish. Keys are the same as cJSON gives (first of duplicate names, numbers %.17g). */
char *sl_key_from_path(const char *text, size_t len, const char *path, char *buf, size_t cap) {
  const char *e = text + len, *p = sl_js_ws(text, e), *seg = path, *vs = NULL, *ve = NULL;
  for (;;) {
    const char *dot = strchr(seg, '.');
    size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
    if (n >= 128) return NULL;
    int r = sl_js_member(p, e, seg, n, &vs, &ve);
    /* escaped names, or text the strict scanner refuses but cJSON (which validated it)
     * accepts, such as a leading zero: ask cJSON, as before */
    if (r < 0) return key_from_tree(text, len, path, buf, cap);
    if (r == 0) return NULL;
    if (!dot) break;
    p = vs;
    seg = dot + 1;
  }
  size_t vn = (size_t)(ve - vs);
  switch (*vs) {
  case '"':
    if (memchr(vs + 1, '\\', vn - 2)) return key_from_tree(text, len, path, buf, cap);
    if (vn - 2 >= cap) return sl_xstrndup(vs + 1, vn - 2);
    memcpy(buf, vs + 1, vn - 2);
    buf[vn - 2] = 0;
    return buf;
  case 't': return cap > 4 ? strcpy(buf, "true") : NULL;
  case 'f': return cap > 5 ? strcpy(buf, "false") : NULL;
  case '{':
  case '[':
  case 'n': return NULL;
  default: {
    char num[64];
    if (vn >= sizeof num) return key_from_tree(text, len, path, buf, cap);
    memcpy(num, vs, vn);
    num[vn] = 0;
    int n = snprintf(buf, cap, "%.17g", strtod(num, NULL));
    return n >= 0 && (size_t)n < cap ? buf : NULL;
  }
  }
}
