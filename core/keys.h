/* keys.h - coalesce keys taken from a field path of a JSON payload ("symbol", "quote.symbol").
 * Once per publish, never per recipient. */
#ifndef SL_KEYS_H
#define SL_KEYS_H

#include <stddef.h>
#include "sl_util.h"

/* sl_key_from_path: the coalesce key at the dotted field path `path` of the JSON text
 * text[0..len) (which the caller has validated as JSON). A string value is the key as it
 * is (unescaped); a number is formatted "%.17g"; a boolean is "true" or "false". The key is
 * written NUL-terminated into buf (cap bytes) when it fits, else returned in a malloc'd
 * string the caller frees (a result != buf is the caller's). Returns NULL when a segment
 * is missing, a value on the way is not an object, the value is null, an object or an
 * array, a segment is 128 bytes or longer, or a number does not fit in cap. The text is
 * scanned in place (sl_jscan.h); escaped names or values and numbers the strict scanner
 * refuses fall back to a cJSON tree, with the same result (first of duplicate names). */
SL_WUR char *sl_key_from_path(const char *text, size_t len, const char *path, char *buf,
                              size_t cap);

#endif
