/* sl_lua_crypto.h - sluice.crypto (lua/crypto.c). */
#ifndef SL_LUA_CRYPTO_H
#define SL_LUA_CRYPTO_H

struct lua_State;

/* sl__lua_inject_crypto: add sluice.crypto {hmac_sha256, sha256, equal, base64url_encode,
 * base64url_decode}. stack: sluice -> sluice */
void sl__lua_inject_crypto(struct lua_State *L);

#endif
