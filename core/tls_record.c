/* tls_record.c - the TLS 1.3 record layer with libcrypto (see tls_record.h).
 *
 * Record protection, RFC 8446 §5.2: the header (0x17 0x03 0x03 length) is the AAD; the inner
 * plaintext is content || content type (no padding sent; zero padding accepted); the nonce
 * is the IV XOR the 64-bit sequence number (big-endian, in the last 8 bytes); the AEAD tag
 * is the last 16 bytes. Keys and IVs: HKDF-Expand-Label(secret, "key" / "iv", "", length)
 * (§7.3); a KeyUpdate moves a secret to HKDF-Expand-Label(secret, "traffic upd", "",
 * Hash.length) (§7.2) and its sequence number back to 0.
 *
 * One EVP_CIPHER_CTX seals and one opens for every connection: keying a context is a
 * per-record cost (an AES key schedule and the GHASH key, a few hundred nanoseconds) and
 * saves ~1.1 KB per direction per connection. A context stays keyed for the last
 * connection that used it (the `*_owner` pointers), so several records for one connection
 * in a row only set the nonce; a connection's key change or free forgets the owner. */
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include "tls_record.h"

#define TAG 16
#define IVLEN 12

enum { CT_ALERT = 0x15, CT_HANDSHAKE = 0x16, CT_APPDATA = 0x17, HS_KEY_UPDATE = 24 };

typedef struct suite_info {
  uint32_t id;
  const char *cipher, *md;
  uint8_t klen, hlen;
} suite_info;

static const suite_info suites[] = {
    {0, NULL, NULL, 0, 0},
    {0x03001301, "AES-128-GCM", "SHA256", 16, 32},
    {0x03001302, "AES-256-GCM", "SHA384", 32, 48},
    {0x03001303, "ChaCha20-Poly1305", "SHA256", 32, 32},
};
#define NSUITES ((int)(sizeof suites / sizeof suites[0]))

struct sl_tls_rec {
  uint8_t suite, hdr_have; /* hdr_have: bytes of a partial record's header in hdr */
  uint8_t hdr[5];
  uint16_t pend_have; /* body bytes of the partial record in pend */
  uint8_t *pend;      /* the partial record's body, allocated to its announced length */
  uint64_t rseq, wseq;
  uint8_t rsec[48], wsec[48]; /* the client's (read) and our (write) traffic secrets */
  uint8_t rkey[32], wkey[32];
  uint8_t riv[IVLEN], wiv[IVLEN];
};

static EVP_CIPHER *ciphers[NSUITES];
static EVP_KDF *hkdf;
static EVP_CIPHER_CTX *seal_ctx, *open_ctx;
static int seal_suite, open_suite;                /* the cipher each context is set up for */
static const sl_tls_rec *seal_owner, *open_owner; /* whose key each context holds */
static uint8_t plain[SL_TLS_REC_MAX_CIPHER];

/* sl_tls_rec_suite: see tls_record.h. */
int sl_tls_rec_suite(uint32_t id) {
  for (int s = 1; s < NSUITES; s++)
    if (suites[s].id == id) return s;
  return 0;
}

static bool init_globals(int suite) {
  if (!hkdf && !(hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL))) return false;
  if (!seal_ctx && !(seal_ctx = EVP_CIPHER_CTX_new())) return false;
  if (!open_ctx && !(open_ctx = EVP_CIPHER_CTX_new())) return false;
  if (!ciphers[suite] && !(ciphers[suite] = EVP_CIPHER_fetch(NULL, suites[suite].cipher, NULL)))
    return false;
  return true;
}

/* HKDF-Expand-Label(secret, label, "", olen) (RFC 8446 §7.1). */
static bool expand_label(int suite, const uint8_t *secret, const char *label, uint8_t *o,
                         size_t olen) {
  uint8_t info[2 + 1 + 6 + 32 + 1];
  size_t ll = strlen(label);
  info[0] = (uint8_t)(olen >> 8);
  info[1] = (uint8_t)olen;
  info[2] = (uint8_t)(6 + ll);
  memcpy(info + 3, "tls13 ", 6);
  memcpy(info + 9, label, ll);
  info[9 + ll] = 0; /* empty context */
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM p[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)suites[suite].md, 0),
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, suites[suite].hlen),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 10 + ll),
      OSSL_PARAM_construct_end(),
  };
  EVP_KDF_CTX *k = EVP_KDF_CTX_new(hkdf);
  bool ok = k && EVP_KDF_derive(k, o, olen, p) == 1;
  EVP_KDF_CTX_free(k);
  return ok;
}

static bool derive(int suite, const uint8_t *secret, uint8_t *key, uint8_t *iv) {
  return expand_label(suite, secret, "key", key, suites[suite].klen) &&
         expand_label(suite, secret, "iv", iv, IVLEN);
}

/* The next traffic secret and its key and IV, in place (§7.2). */
static bool update_secret(int suite, uint8_t *secret, uint8_t *key, uint8_t *iv) {
  uint8_t next[48];
  size_t h = suites[suite].hlen;
  if (!expand_label(suite, secret, "traffic upd", next, h)) return false;
  memcpy(secret, next, h);
  OPENSSL_cleanse(next, sizeof next);
  return derive(suite, secret, key, iv);
}

/* sl_tls_rec_new: see tls_record.h. */
sl_tls_rec *sl_tls_rec_new(int suite, const uint8_t *client_secret, const uint8_t *server_secret,
                           size_t secret_len, const char **why) {
  if (suite <= 0 || suite >= NSUITES || secret_len != suites[suite].hlen) {
    *why = "unsupported suite or secret length";
    return NULL;
  }
  if (!init_globals(suite)) {
    *why = "libcrypto cannot provide the suite's cipher or HKDF";
    return NULL;
  }
  sl_tls_rec *r = sl_xcalloc(1, sizeof *r);
  r->suite = (uint8_t)suite;
  memcpy(r->rsec, client_secret, secret_len);
  memcpy(r->wsec, server_secret, secret_len);
  if (!derive(suite, r->rsec, r->rkey, r->riv) || !derive(suite, r->wsec, r->wkey, r->wiv)) {
    *why = "key derivation failed";
    sl_tls_rec_free(r);
    return NULL;
  }
  return r;
}

/* sl_tls_rec_free: see tls_record.h. */
void sl_tls_rec_free(sl_tls_rec *r) {
  if (!r) return;
  if (seal_owner == r) seal_owner = NULL;
  if (open_owner == r) open_owner = NULL;
  if (r->pend) {
    OPENSSL_cleanse(r->pend, r->pend_have);
    free(r->pend);
  }
  OPENSSL_cleanse(r, sizeof *r);
  free(r);
}

/* sl_tls_rec_size: see tls_record.h. */
size_t sl_tls_rec_size(const sl_tls_rec *r) {
  size_t n = sizeof *r;
  if (r->pend) n += ((size_t)r->hdr[3] << 8 | r->hdr[4]);
  return n;
}

static void make_nonce(const uint8_t *iv, uint64_t seq, uint8_t *nonce) {
  memcpy(nonce, iv, IVLEN);
  for (int k = 0; k < 8; k++) nonce[IVLEN - 1 - k] ^= (uint8_t)(seq >> (8 * k));
}

/* Key the shared context ctx (last keyed for *owner, set up for *cur suite) for r. */
static bool key_ctx(EVP_CIPHER_CTX *ctx, int enc, int *cur, const sl_tls_rec **owner,
                    const sl_tls_rec *r, const uint8_t *key, const uint8_t *nonce) {
  if (*owner == r) return EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, enc) == 1;
  *owner = NULL;
  if (*cur != r->suite) {
    if (EVP_CipherInit_ex(ctx, ciphers[r->suite], NULL, NULL, NULL, enc) != 1) return false;
    *cur = r->suite;
  }
  if (EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1) return false;
  *owner = r;
  return true;
}

/* Seal one record of content type `type` (see sl_tls_rec_seal). */
static int seal(sl_tls_rec *r, uint8_t type, const uv_buf_t *iov, unsigned n, unsigned *i,
                size_t *off, size_t len, sl_sbuf *out, const char **why) {
  if (r->wseq == UINT64_MAX) {
    *why = "the write sequence number is exhausted";
    return SL_EIO;
  }
  size_t clen = len + 1 + TAG;
  sl_sbuf_reserve(out, 5 + clen);
  uint8_t *h = (uint8_t *)out->data + out->len, *p = h + 5;
  h[0] = CT_APPDATA;
  h[1] = 3;
  h[2] = 3;
  h[3] = (uint8_t)(clen >> 8);
  h[4] = (uint8_t)clen;
  uint8_t nonce[IVLEN];
  make_nonce(r->wiv, r->wseq, nonce);
  /* the inner plaintext is gathered into place first and encrypted in place in one call:
   * each EVP_EncryptUpdate costs ~300 instructions of dispatch in OpenSSL 3.0 */
  for (size_t left = len; left;) {
    if (*i >= n) goto fail;
    size_t take = iov[*i].len - *off;
    if (take > left) take = left;
    memcpy(p, (const uint8_t *)iov[*i].base + *off, take);
    p += take;
    left -= take;
    *off += take;
    if (*off == iov[*i].len) ++*i, *off = 0;
  }
  *p++ = type;
  int m = 0, f = 0;
  if (!key_ctx(seal_ctx, 1, &seal_suite, &seal_owner, r, r->wkey, nonce) ||
      EVP_EncryptUpdate(seal_ctx, NULL, &m, h, 5) != 1 ||
      EVP_EncryptUpdate(seal_ctx, h + 5, &m, h + 5, (int)(len + 1)) != 1 ||
      EVP_EncryptFinal_ex(seal_ctx, h + 5 + m, &f) != 1 || (size_t)(m + f) != len + 1)
    goto fail;
  OSSL_PARAM tp[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, p, TAG),
                     OSSL_PARAM_construct_end()};
  if (EVP_CIPHER_CTX_get_params(seal_ctx, tp) != 1) goto fail;
  p += TAG;
  if ((size_t)(p - h) != 5 + clen) goto fail;
  out->len += 5 + clen;
  r->wseq++;
  return 0;
fail:
  seal_owner = NULL;
  *why = "record encryption failed";
  return SL_EIO;
}

/* sl_tls_rec_seal: see tls_record.h. */
int sl_tls_rec_seal(sl_tls_rec *r, const uv_buf_t *iov, unsigned n, unsigned *i, size_t *off,
                    size_t len, sl_sbuf *out, const char **why) {
  if (len == 0 || len > SL_TLS_REC_MAX_PLAIN) {
    *why = "record length out of range";
    return SL_EIO;
  }
  return seal(r, CT_APPDATA, iov, n, i, off, len, out, why);
}

/* A KeyUpdate from the peer (the whole inner plaintext, type stripped): new read keys; when
 * it asks, our own KeyUpdate under the current write keys, then new write keys. */
static int key_update(sl_tls_rec *r, const uint8_t *m, size_t n, const sl_tls_rec_sink *k, void *ud,
                      const char **why) {
  /* One message, alone in its record (it must end the record: §5.1), of exactly 1 byte. */
  if (n != 5 || m[0] != HS_KEY_UPDATE || m[1] || m[2] || m[3] != 1 || m[4] > 1) {
    *why = "unexpected handshake message after the handshake";
    return SL_EIO;
  }
  if (open_owner == r) open_owner = NULL;
  if (!update_secret(r->suite, r->rsec, r->rkey, r->riv)) goto fail;
  r->rseq = 0;
  if (m[4] == 1) {
    static const uint8_t ku[5] = {HS_KEY_UPDATE, 0, 0, 1, 0}; /* update_not_requested */
    uv_buf_t b = uv_buf_init((char *)ku, sizeof ku);
    unsigned i = 0;
    size_t off = 0;
    sl_sbuf o = {0};
    int rc = seal(r, CT_HANDSHAKE, &b, 1, &i, &off, sizeof ku, &o, why);
    if (rc == 0) k->on_cipher(ud, (const uint8_t *)o.data, o.len);
    sl_sbuf_free(&o);
    if (rc) return rc;
    if (seal_owner == r) seal_owner = NULL;
    if (!update_secret(r->suite, r->wsec, r->wkey, r->wiv)) goto fail;
    r->wseq = 0;
  }
  return 0;
fail:
  *why = "key update failed";
  return SL_EIO;
}

/* Open one record (hdr: its 5-byte header; body: blen bytes, already length-checked) and
 * act on its content. Returns 0, 2 (the sink asked to stop), SL_TLS_REC_CLOSED or SL_EIO. */
static int open_record(sl_tls_rec *r, const uint8_t *hdr, const uint8_t *body, size_t blen,
                       const sl_tls_rec_sink *k, void *ud, const char **why) {
  if (r->rseq == UINT64_MAX) {
    *why = "the read sequence number is exhausted";
    return SL_EIO;
  }
  uint8_t nonce[IVLEN], tag[TAG];
  size_t n = blen - TAG;
  int m = 0;
  make_nonce(r->riv, r->rseq, nonce);
  memcpy(tag, body + n, TAG);
  OSSL_PARAM tp[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, TAG),
                     OSSL_PARAM_construct_end()};
  if (!key_ctx(open_ctx, 0, &open_suite, &open_owner, r, r->rkey, nonce) ||
      EVP_DecryptUpdate(open_ctx, NULL, &m, hdr, 5) != 1 ||
      EVP_DecryptUpdate(open_ctx, plain, &m, body, (int)n) != 1 ||
      EVP_CIPHER_CTX_set_params(open_ctx, tp) != 1) {
    open_owner = NULL;
    *why = "record decryption failed";
    return SL_EIO;
  }
  if (EVP_DecryptFinal_ex(open_ctx, plain + m, &m) != 1) {
    *why = "bad record MAC";
    return SL_EIO;
  }
  r->rseq++;
  while (n > 0 && plain[n - 1] == 0) n--; /* padding */
  if (n == 0) {
    *why = "a record with no content type";
    return SL_EIO;
  }
  uint8_t type = plain[--n];
  switch (type) {
  case CT_APPDATA:
    if (n > SL_TLS_REC_MAX_PLAIN) {
      *why = "record overflow";
      return SL_EIO;
    }
    return n && k->on_plain(ud, plain, n) ? 2 : 0;
  case CT_ALERT:
    if (n == 2 && plain[1] == 0) return SL_TLS_REC_CLOSED;
    *why = n == 2 ? "the peer sent an alert" : "a malformed alert";
    return SL_EIO;
  case CT_HANDSHAKE: return key_update(r, plain, n, k, ud, why);
  default: *why = "unexpected inner content type"; return SL_EIO;
  }
}

/* The body length a header announces, or SL_EIO (*why set) if the header is not one of an
 * encrypted record that fits. */
static int check_header(const uint8_t *h, const char **why) {
  size_t blen = (size_t)h[3] << 8 | h[4];
  if (h[0] != CT_APPDATA) {
    *why = "a record that is not encrypted application data after the handshake";
    return SL_EIO;
  }
  if (blen > SL_TLS_REC_MAX_CIPHER || blen < 1 + TAG) {
    *why = "record length out of range";
    return SL_EIO;
  }
  return (int)blen;
}

static void drop_pending(sl_tls_rec *r) {
  if (r->pend) {
    OPENSSL_cleanse(r->pend, r->pend_have);
    free(r->pend);
  }
  r->pend = NULL;
  r->pend_have = 0;
  r->hdr_have = 0;
}

/* sl_tls_rec_feed: see tls_record.h. */
int sl_tls_rec_feed(sl_tls_rec *r, const uint8_t *in, size_t len, const sl_tls_rec_sink *k,
                    void *ud, const char **why) {
  int rc = 0;
  while (len > 0 && rc == 0) {
    if (r->hdr_have == 0 && len >= 5) {
      int blen = check_header(in, why);
      if (blen < 0) return SL_EIO;
      if (len >= 5 + (size_t)blen) { /* a whole record in the input: opened in place */
        rc = open_record(r, in, in + 5, (size_t)blen, k, ud, why);
        in += 5 + (size_t)blen;
        len -= 5 + (size_t)blen;
        continue;
      }
    }
    /* a partial record: keep it */
    while (r->hdr_have < 5 && len > 0) r->hdr[r->hdr_have++] = *in++, len--;
    if (r->hdr_have < 5) break;
    int blen = check_header(r->hdr, why);
    if (blen < 0) return SL_EIO;
    if (!r->pend) r->pend = sl_xmalloc((size_t)blen);
    size_t take = (size_t)blen - r->pend_have;
    if (take > len) take = len;
    memcpy(r->pend + r->pend_have, in, take);
    r->pend_have = (uint16_t)(r->pend_have + take);
    in += take;
    len -= take;
    if (r->pend_have < (size_t)blen) break;
    uint8_t h[5];
    memcpy(h, r->hdr, 5);
    uint8_t *body = r->pend;
    r->pend = NULL;
    r->pend_have = 0;
    r->hdr_have = 0;
    rc = open_record(r, h, body, (size_t)blen, k, ud, why);
    OPENSSL_cleanse(body, (size_t)blen);
    free(body);
  }
  if (rc == 2) { /* the sink stopped reading: the rest is dropped */
    drop_pending(r);
    return 0;
  }
  return rc;
}
