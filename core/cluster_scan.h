/* cluster_scan.h - the data JSON of a BROADCAST stream entry (cluster_codec.h) read in one
 * pass of the strict scanner (sl_jscan.h), without building a cJSON tree: the receiving
 * node's per-entry cost of a cross-node delivery. Pure functions: no I/O. */
#ifndef SL_CLUSTER_SCAN_H
#define SL_CLUSTER_SCAN_H

#include <stddef.h>

#include "cluster_codec.h"

#define SL_CL_SCAN_DECLINED (-1)

/* sl_cl_scan: decode json[0..len), the data field of a BROADCAST (UTF-8 checked by the
 * caller), into e (zeroed by the caller) as sl_cl_decode's cJSON reading would: the first of
 * duplicate members wins, strings are unescaped and end at an escaped NUL, snap is the text
 * sl_json_print writes for it, rooms/except at most SL_CL_MAX_ROOMS strings. uid[0..ul) and
 * nsp[0..nl) are copied into e too. Returns SL_CL_OK with every string of e in one block
 * (e->blk: sl_cl_entry_free frees it), another SL_CL_* (e untouched) in the order
 * sl_cl_decode checks them, or SL_CL_SCAN_DECLINED (e untouched) when the scanner cannot
 * judge the text as cJSON would: invalid for the strict scanner (cJSON may accept it:
 * control characters in strings, leading zeros, whitespace such as \v), an escaped member
 * name where a member is looked for, a number of more than 63 characters, nesting past
 * SL_JS_MAX_DEPTH, text after the value. The caller parses it with cJSON then. */
int sl_cl_scan(const char *json, size_t len, const char *uid, size_t ul, const char *nsp, size_t nl,
               sl_cl_entry *e);

#endif
