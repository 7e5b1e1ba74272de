/* fuzz_tls_record.c - libFuzzer target for the TLS 1.3 record decoder (core/tls_record.c):
 * what a client can send after the handshake. The harness plays the client with its own
 * small sealer (AES-128-GCM, the keys derived from a fixed client traffic secret by its own
 * HKDF-Expand-Label), so that records pass the tag and reach the inner content: data,
 * padding, alerts, handshake messages, KeyUpdate (after which the harness moves to the next
 * key as the server must), empty and oversized inner plaintexts; and garbage, corrupted
 * records and raw headers, torn into reads anywhere.
 *
 * The input is a list of [ctl][len][len bytes] (len x 64 when ctl bit 7 is set): ctl bits
 * 0-1: 0 the bytes as application data, 1 the bytes as the whole inner plaintext (its last
 * nonzero byte is the content type), 2 a KeyUpdate (request_update = bit 0 of the first
 * byte), 3 the bytes sent as they are; bit 2 flip one bit of the record; bits 3-5 tear the
 * record into reads of that many bytes (0: whole); bit 6 also seal the bytes server-side
 * (sl_tls_rec_seal). Stops at the first error, as the connection would close. */
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include "tls_record.h"

static uint8_t c_secret[32], s_secret[32];
static uint8_t sec[32], key[16], iv[12];
static uint64_t seq;
static EVP_CIPHER_CTX *cctx;
static EVP_CIPHER *gcm;
static EVP_KDF *kdf;

static void expand(const uint8_t *secret, const char *label, uint8_t *o, size_t olen) {
  uint8_t info[64];
  size_t ll = strlen(label);
  info[0] = 0;
  info[1] = (uint8_t)olen;
  info[2] = (uint8_t)(6 + ll);
  memcpy(info + 3, "tls13 ", 6);
  memcpy(info + 9, label, ll);
  info[9 + ll] = 0;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM p[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, 32),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 10 + ll),
      OSSL_PARAM_construct_end(),
  };
  EVP_KDF_CTX *k = EVP_KDF_CTX_new(kdf);
  if (!k || EVP_KDF_derive(k, o, olen, p) != 1) abort();
  EVP_KDF_CTX_free(k);
}

static void client_keys(void) {
  expand(sec, "key", key, sizeof key);
  expand(sec, "iv", iv, sizeof iv);
  seq = 0;
}

/* The client's record of inner plaintext `inner` (n bytes) into rec; returns its length. */
static size_t seal(const uint8_t *inner, size_t n, uint8_t *rec) {
  size_t clen = n + 16;
  rec[0] = 0x17, rec[1] = 3, rec[2] = 3, rec[3] = (uint8_t)(clen >> 8), rec[4] = (uint8_t)clen;
  uint8_t nonce[12];
  memcpy(nonce, iv, 12);
  for (int k = 0; k < 8; k++) nonce[11 - k] ^= (uint8_t)(seq >> (8 * k));
  seq++;
  int m;
  if (EVP_EncryptInit_ex(cctx, gcm, NULL, key, nonce) != 1 ||
      EVP_EncryptUpdate(cctx, NULL, &m, rec, 5) != 1 ||
      EVP_EncryptUpdate(cctx, rec + 5, &m, inner, (int)n) != 1 ||
      EVP_EncryptFinal_ex(cctx, rec + 5 + n, &m) != 1 ||
      EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_AEAD_GET_TAG, 16, rec + 5 + n) != 1)
    abort();
  return 5 + clen;
}

static size_t delivered;
static int on_plain(void *ud, const uint8_t *d, size_t n) {
  (void)ud;
  for (size_t i = 0; i < n; i++) delivered += d[i];
  return 0;
}
static void on_cipher(void *ud, const uint8_t *d, size_t n) { (void)ud, (void)d, (void)n; }
static const sl_tls_rec_sink sink = {on_plain, on_cipher};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!cctx) {
    for (int i = 0; i < 32; i++) c_secret[i] = (uint8_t)(i + 1), s_secret[i] = (uint8_t)(0x80 + i);
    cctx = EVP_CIPHER_CTX_new();
    gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (!cctx || !gcm || !kdf) abort();
  }
  const char *why = NULL;
  sl_tls_rec *r = sl_tls_rec_new(1, c_secret, s_secret, 32, &why);
  if (!r) abort();
  memcpy(sec, c_secret, 32);
  client_keys();
  static uint8_t inner[SL_TLS_REC_MAX_CIPHER + 64], rec[SL_TLS_REC_MAX_CIPHER + 128];
  size_t pos = 0;
  int rc = 0;
  while (rc == 0 && pos + 2 <= size) {
    uint8_t ctl = data[pos];
    size_t len = (size_t)data[pos + 1] * (ctl & 0x80 ? 64 : 1);
    pos += 2;
    size_t n = len < size - pos ? len : size - pos;
    const uint8_t *p = data + pos;
    pos += n;
    size_t rl = 0;
    bool update = false;
    switch (ctl & 3) {
    case 0:
      memcpy(inner, p, n);
      inner[n] = 0x17;
      rl = seal(inner, n + 1, rec);
      break;
    case 1:
      rl = seal(p, n, rec);
      break;
    case 2: {
      uint8_t ku[6] = {24, 0, 0, 1, (uint8_t)(n ? p[0] & 1 : 0), 0x16};
      rl = seal(ku, sizeof ku, rec);
      update = true;
      break;
    }
    default:
      memcpy(rec, p, n);
      rl = n;
    }
    if ((ctl & 4) && rl) rec[(n ? p[0] : 0) % rl] ^= (uint8_t)(1u << (ctl >> 5 & 7));
    size_t piece = (ctl >> 3) & 7;
    if (!piece) piece = rl;
    for (size_t o = 0; rc == 0 && o < rl; o += piece)
      rc = sl_tls_rec_feed(r, rec + o, rl - o < piece ? rl - o : piece, &sink, NULL, &why);
    if (update) { /* the server now reads under the next secret: follow it */
      uint8_t next[32];
      expand(sec, "traffic upd", next, 32);
      memcpy(sec, next, 32);
      client_keys();
    }
    if (rc == 0 && (ctl & 0x40) && n) {
      uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
      unsigned i = 0;
      size_t off = 0;
      sl_sbuf out = {0};
      size_t l = n < SL_TLS_REC_MAX_PLAIN ? n : SL_TLS_REC_MAX_PLAIN;
      if (sl_tls_rec_seal(r, &b, 1, &i, &off, l, &out, &why) != 0) abort();
      sl_sbuf_free(&out);
    }
  }
  sl_tls_rec_free(r);
  return 0;
}
