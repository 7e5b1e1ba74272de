/* crypto.c - sluice.crypto: HMAC-SHA256 and SHA-256 from OpenSSL's libcrypto, base64url, a
 * constant-time compare. Strings in, raw byte strings out (binary values are accepted too). */
#include <limits.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sl_lua_bytes.h"
#include "sl_lua_crypto.h"

/* A string or a sluice.bytes argument. */
static const unsigned char *bytes_arg(lua_State *L, int idx, size_t *len) {
  sl_bytes *b = sl__bytes_test(L, idx);
  if (b) {
    *len = b->len;
    return b->data;
  }
  return (const unsigned char *)luaL_checklstring(L, idx, len);
}

/* sluice.crypto.hmac_sha256(key, data) -> 32-byte raw string */
static int l_hmac_sha256(lua_State *L) {
  size_t klen, dlen;
  const unsigned char *key = bytes_arg(L, 1, &klen);
  const unsigned char *data = bytes_arg(L, 2, &dlen);
  if (klen > INT_MAX) return luaL_argerror(L, 1, "key too long");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  static const unsigned char empty[1];
  /* HMAC() treats a NULL key as "reuse the previous one"; an empty key must be non-NULL. */
  if (!HMAC(EVP_sha256(), klen ? key : empty, (int)klen, dlen ? data : empty, dlen, md, &mdlen))
    return luaL_error(L, "hmac_sha256: OpenSSL failure");
  lua_pushlstring(L, (const char *)md, mdlen);
  return 1;
}

/* sluice.crypto.sha256(data) -> 32-byte raw string */
static int l_sha256(lua_State *L) {
  size_t dlen;
  const unsigned char *data = bytes_arg(L, 1, &dlen);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  static const unsigned char empty[1];
  if (!EVP_Digest(dlen ? data : empty, dlen, md, &mdlen, EVP_sha256(), NULL))
    return luaL_error(L, "sha256: OpenSSL failure");
  lua_pushlstring(L, (const char *)md, mdlen);
  return 1;
}

/* sluice.crypto.equal(a, b) -> boolean. Constant time for equal lengths (the length of a
 * MAC or token is not secret). */
static int l_crypto_equal(lua_State *L) {
  size_t alen, blen;
  const unsigned char *a = bytes_arg(L, 1, &alen);
  const unsigned char *b = bytes_arg(L, 2, &blen);
  lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
  return 1;
}

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* sluice.crypto.base64url_encode(data) -> text without padding (RFC 4648 section 5) */
static int l_b64url_encode(lua_State *L) {
  size_t n;
  const unsigned char *s = bytes_arg(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    luaL_addchar(&b, b64url_chars[v >> 18 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 12 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 6 & 63]);
    luaL_addchar(&b, b64url_chars[v & 63]);
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)s[i] << 16;
    luaL_addchar(&b, b64url_chars[v >> 18 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 12 & 63]);
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
    luaL_addchar(&b, b64url_chars[v >> 18 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 12 & 63]);
    luaL_addchar(&b, b64url_chars[v >> 6 & 63]);
  }
  luaL_pushresult(&b);
  return 1;
}

static int b64url_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-' || c == '+') return 62; /* '+' and '/' too: tolerate standard base64 */
  if (c == '_' || c == '/') return 63;
  return -1;
}

/* sluice.crypto.base64url_decode(text) -> bytes string, or nil, "invalid base64url".
 * Padding is optional; a length of 1 mod 4 or non-zero trailing bits are invalid. */
static int l_b64url_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  while (n > 0 && s[n - 1] == '=') n--;
  if (n % 4 == 1) goto bad;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64url_val((unsigned char)s[i]);
    if (v < 0) {
      luaL_pushresult(&b);
      lua_pop(L, 1);
      goto bad;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      luaL_addchar(&b, (char)(acc >> bits & 0xff));
    }
  }
  if (bits && (acc & ((1u << bits) - 1))) {
    luaL_pushresult(&b);
    lua_pop(L, 1);
    goto bad;
  }
  luaL_pushresult(&b);
  return 1;
bad:
  lua_pushnil(L);
  lua_pushliteral(L, "invalid base64url");
  return 2;
}

/* sl__lua_inject_crypto: see sl_lua_crypto.h. stack: sluice -> sluice */
void sl__lua_inject_crypto(lua_State *L) {
  static const luaL_Reg crypto[] = {{"hmac_sha256", l_hmac_sha256},
                                    {"sha256", l_sha256},
                                    {"equal", l_crypto_equal},
                                    {"base64url_encode", l_b64url_encode},
                                    {"base64url_decode", l_b64url_decode},
                                    {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, crypto);
  lua_setfield(L, -2, "crypto");
}
