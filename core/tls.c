/* tls.c - TLS with OpenSSL over one shared memory BIO (see tls.h).
 *
 * The shared BIO: a custom source/sink method. Reading returns bytes from `in` (the
 * ciphertext of the sl_tls_feed in progress; empty otherwise, so an SSL object used from a
 * callback can never read another connection's bytes); writing appends to `out`. Every SSL
 * object holds a reference to the one BIO (BIO_up_ref before SSL_set_bio), so a connection
 * costs its SSL object and nothing else. OpenSSL pushes a per-SSL buffering BIO in front of
 * it during the handshake and pops it afterwards; the shared BIO itself keeps no state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "sl_util.h"
#include "tls.h"
#include "tls_record.h"

#define SL_TLS_RECORD (16 * 1024)
#define SL_TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* The application traffic secrets as OpenSSL's key log callback gives them, kept during the
 * handshake only (wiped at the handoff or the free). */
typedef struct sl_tls_secrets {
  uint8_t client[48], server[48];
  uint8_t client_len, server_len;
} sl_tls_secrets;

struct sl_tls {
  SSL *ssl;        /* the handshake, and the whole connection when not offloaded */
  sl_tls_rec *rec; /* after the handoff (ssl is then NULL) */
  sl_tls_secrets *secrets;
  const char *cipher, *version; /* static names, kept after the SSL object is freed */
  const char *fallback;         /* why OpenSSL kept the records, or NULL */
};

struct sl_tls_ctx {
  SSL_CTX *ssl;
  int refs;
  int64_t not_after;
  char serial[80];
};

static BIO_METHOD *bio_method;
static BIO *shared_bio;
static const uint8_t *in_p; /* ciphertext of the feed in progress */
static size_t in_len;
static sl_sbuf out; /* ciphertext produced by the call in progress */
static uint8_t plain_buf[SL_TLS_RECORD];
static uint8_t stage[SL_TLS_RECORD];
static char last_err[256];

/* ---- the shared BIO -------------------------------------------------------------------- */

static int bio_write(BIO *b, const char *data, int len) {
  BIO_clear_retry_flags(b);
  sl_sbuf_append(&out, data, (size_t)len);
  return len;
}

static int bio_read(BIO *b, char *dst, int len) {
  BIO_clear_retry_flags(b);
  if (in_len == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = (size_t)len < in_len ? (size_t)len : in_len;
  memcpy(dst, in_p, n);
  in_p += n;
  in_len -= n;
  return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b, (void)num, (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO *bio_get(void) {
  if (!shared_bio) {
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice shared");
    if (!bio_method) return NULL;
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
    shared_bio = BIO_new(bio_method);
  }
  return shared_bio;
}

/* ---- contexts ------------------------------------------------------------------------ */

/* The private key's password callback: the configured password, or none (never a prompt on
 * the terminal, which OpenSSL's default callback would do for an encrypted key). */
static int pass_cb(char *buf, int size, int rwflag, void *ud) {
  (void)rwflag;
  const char *pw = ud;
  if (!pw) return 0;
  int n = (int)strlen(pw);
  if (n > size) n = size;
  memcpy(buf, pw, (size_t)n);
  return n;
}

static const char *ossl_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "unknown error";
}

/* A readable file? Else err says why, with the key and the path (reading one byte also
 * catches a directory, which fopen accepts). */
static bool file_ok(const char *key, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f) {
    errno = 0;
    if (fgetc(f) == EOF && ferror(f)) {
      int e = errno;
      fclose(f);
      errno = e;
      f = NULL;
    } else {
      fclose(f);
      return true;
    }
  }
  snprintf(err, errlen, "tls %s \"%s\": %s", key, path, strerror(errno));
  return false;
}

static int64_t asn1_unix(const ASN1_TIME *t) {
  struct tm tm;
  if (!t || !ASN1_TIME_to_tm(t, &tm)) return 0;
  return (int64_t)timegm(&tm);
}

static int unhex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Keep a "LABEL <client_random> <secret>" line's secret (hex) for the handoff: only the two
 * application traffic secrets of a TLS 1.3 handshake, never logged anywhere. */
static void keylog_cb(const SSL *ssl, const char *line) {
  sl_tls *t = SSL_get_app_data(ssl);
  if (!t) return;
  static const char cl[] = "CLIENT_TRAFFIC_SECRET_0 ", sv[] = "SERVER_TRAFFIC_SECRET_0 ";
  bool client = strncmp(line, cl, sizeof cl - 1) == 0;
  if (!client && strncmp(line, sv, sizeof sv - 1) != 0) return;
  const char *hex = strchr(line + sizeof cl - 1, ' ');
  if (!hex) return;
  hex++;
  size_t n = strlen(hex) / 2;
  if (n > 48) return;
  if (!t->secrets) t->secrets = sl_xcalloc(1, sizeof *t->secrets);
  uint8_t *dst = client ? t->secrets->client : t->secrets->server;
  for (size_t i = 0; i < n; i++) {
    int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      n = 0;
      break;
    }
    dst[i] = (uint8_t)(hi << 4 | lo);
  }
  *(client ? &t->secrets->client_len : &t->secrets->server_len) = (uint8_t)n;
}

/* sl_tls_ctx_new: see tls.h. */
sl_tls_ctx *sl_tls_ctx_new(const sl_tls_config *cfg, char *err, size_t errlen) {
  sl_tls_ctx *c = NULL;
  SSL_CTX *ctx = NULL;
  ERR_clear_error();
  if (!file_ok("certChainPemPath", cfg->cert_chain, err, errlen) ||
      !file_ok("privateKeyPemPath", cfg->private_key, err, errlen))
    return NULL;
  ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    snprintf(err, errlen, "tls: cannot create an OpenSSL context: %s", ossl_reason());
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, cfg->min_version ? cfg->min_version : TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  /* No server-side session cache (it would keep a session per client); resumption still
   * works through stateless tickets (OpenSSL's two per handshake: they cost the handshake
   * two small records and no memory once sent). */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  /* The record-layer handoff (tls.h): no TLS 1.3 session tickets (OpenSSL would send them
   * under the application secrets after the handshake, and the sequence numbers would no
   * longer be known), no read-ahead (the records after the client's Finished must stay
   * unread), and the application secrets from the key log callback. TLS 1.2 tickets are
   * unaffected. */
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_read_ahead(ctx, 0);
  SSL_CTX_set_keylog_callback(ctx, keylog_cb);
  /* TLSv1.3 suites in Mozilla's recommended order, AES-128-GCM first (OpenSSL's own order
   * starts with AES-256-GCM-SHA384): fewer AES rounds per record, and its cipher and
   * handshake-hash contexts are ~200 bytes smaller per connection (spec/unit/test_tls_mem.c). */
  SSL_CTX_set_ciphersuites(ctx, SL_TLS13_SUITES);
  if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_chain) != 1) {
    snprintf(err, errlen, "tls certChainPemPath \"%s\": not a PEM certificate chain (%s)",
             cfg->cert_chain, ossl_reason());
    goto fail;
  }
  X509 *leaf = SSL_CTX_get0_certificate(ctx);
  if (!leaf) {
    snprintf(err, errlen, "tls certChainPemPath \"%s\": no certificate found", cfg->cert_chain);
    goto fail;
  }
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
    char when[64] = "?";
    time_t na = (time_t)asn1_unix(X509_get0_notAfter(leaf));
    struct tm tm;
    if (gmtime_r(&na, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(err, errlen, "tls certChainPemPath \"%s\": the certificate expired on %s",
             cfg->cert_chain, when);
    goto fail;
  }
  if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
    snprintf(err, errlen, "tls certChainPemPath \"%s\": the certificate is not valid yet",
             cfg->cert_chain);
    goto fail;
  }
  /* The key is read here rather than by SSL_CTX_use_PrivateKey_file, which refuses a key
   * that does not match with the same words as a key it cannot read. */
  BIO *kb = BIO_new_file(cfg->private_key, "rb");
  EVP_PKEY *pkey = kb ? PEM_read_bio_PrivateKey(kb, NULL, pass_cb, cfg->password) : NULL;
  BIO_free(kb);
  if (!pkey) {
    snprintf(err, errlen, "tls privateKeyPemPath \"%s\": not a PEM private key%s (%s)",
             cfg->private_key,
             cfg->password ? " or a wrong privateKeyPassword"
                           : " (an encrypted key needs privateKeyPassword)",
             ossl_reason());
    goto fail;
  }
  if (X509_check_private_key(leaf, pkey) != 1) {
    EVP_PKEY_free(pkey);
    snprintf(
        err, errlen,
        "tls privateKeyPemPath \"%s\" does not match the certificate in certChainPemPath \"%s\"",
        cfg->private_key, cfg->cert_chain);
    goto fail;
  }
  int used = SSL_CTX_use_PrivateKey(ctx, pkey);
  EVP_PKEY_free(pkey);
  if (used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    snprintf(err, errlen, "tls privateKeyPemPath \"%s\": cannot use the key (%s)", cfg->private_key,
             ossl_reason());
    goto fail;
  }
  c = sl_xcalloc(1, sizeof *c);
  c->ssl = ctx;
  c->refs = 1;
  c->not_after = asn1_unix(X509_get0_notAfter(leaf));
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  snprintf(c->serial, sizeof c->serial, "%s", hex ? hex : "");
  OPENSSL_free(hex);
  BN_free(bn);
  ERR_clear_error();
  return c;
fail:
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return NULL;
}

/* sl_tls_ctx_ref: see tls.h. */
sl_tls_ctx *sl_tls_ctx_ref(sl_tls_ctx *ctx) {
  ctx->refs++;
  return ctx;
}

/* sl_tls_ctx_unref: see tls.h. The SSL_CTX itself lives on while SSL objects hold it. */
void sl_tls_ctx_unref(sl_tls_ctx *ctx) {
  if (!ctx || --ctx->refs > 0) return;
  SSL_CTX_free(ctx->ssl);
  free(ctx);
}

/* sl_tls_ctx_not_after: see tls.h. */
int64_t sl_tls_ctx_not_after(const sl_tls_ctx *ctx) { return ctx->not_after; }

/* sl_tls_ctx_serial: see tls.h. */
const char *sl_tls_ctx_serial(const sl_tls_ctx *ctx) { return ctx->serial; }

/* ---- connections ----------------------------------------------------------------------- */

/* sl_tls_new: see tls.h. */
sl_tls *sl_tls_new(sl_tls_ctx *ctx) {
  BIO *b = bio_get();
  if (!b) return NULL;
  SSL *s = SSL_new(ctx->ssl);
  if (!s) return NULL;
  BIO_up_ref(b);
  SSL_set_bio(s, b, b); /* rbio == wbio: takes over the one reference */
  SSL_set_accept_state(s);
  sl_tls *t = sl_xcalloc(1, sizeof *t);
  t->ssl = s;
  t->cipher = t->version = "";
  SSL_set_app_data(s, t);
  return t;
}

static void free_secrets(sl_tls *t) {
  if (!t->secrets) return;
  OPENSSL_cleanse(t->secrets, sizeof *t->secrets);
  free(t->secrets);
  t->secrets = NULL;
}

/* sl_tls_free: see tls.h. */
void sl_tls_free(sl_tls *t) {
  if (!t) return;
  SSL_free(t->ssl);
  sl_tls_rec_free(t->rec);
  free_secrets(t);
  free(t);
}

/* sl_tls_handshake_done: see tls.h. */
bool sl_tls_handshake_done(const sl_tls *t) { return t->rec || SSL_is_init_finished(t->ssl); }

/* sl_tls_offloaded: see tls.h. */
bool sl_tls_offloaded(const sl_tls *t) { return t->rec != NULL; }

/* sl_tls_fallback_reason: see tls.h. */
const char *sl_tls_fallback_reason(const sl_tls *t) { return t->fallback; }

/* sl_tls_cipher_name: see tls.h. */
const char *sl_tls_cipher_name(const sl_tls *t) { return t->cipher; }

/* sl_tls_version_name: see tls.h. */
const char *sl_tls_version_name(const sl_tls *t) { return t->version; }

/* sl_tls_conn_bytes: see tls.h. */
size_t sl_tls_conn_bytes(const sl_tls *t) {
  return sizeof *t + (t->rec ? sl_tls_rec_size(t->rec) : 0) + (t->secrets ? sizeof *t->secrets : 0);
}

/* sl_tls_last_error: see tls.h. */
const char *sl_tls_last_error(void) { return last_err; }

static void set_error(SSL *s, int r) {
  int e = SSL_get_error(s, r);
  unsigned long q = ERR_peek_last_error();
  const char *why = q ? ERR_reason_error_string(q) : NULL;
  if (e == SSL_ERROR_SYSCALL && !q) why = "unexpected end of the TLS stream";
  snprintf(last_err, sizeof last_err, "%s", why ? why : "TLS error");
  ERR_clear_error();
}

/* SSL_get_error needs an empty error queue; errors here are always cleared once read, so
 * the queue is normally empty and a peek is all it costs on the hot path (ERR_clear_error
 * walks all its slots every time). */
static inline void clear_errors(void) {
  if (ERR_peek_error()) ERR_clear_error();
}

/* Hand the produced ciphertext to the sink, with the input put aside: the sink may encrypt
 * for another connection, which must not see this connection's input. The buffer is moved
 * out first, since an encryption inside the callback writes into `out` again. */
static void emit(const sl_tls_sink *k, void *ud) {
  if (!out.len) return;
  const uint8_t *ip = in_p;
  size_t il = in_len;
  in_p = NULL;
  in_len = 0;
  sl_sbuf mine = out;
  memset(&out, 0, sizeof out);
  k->on_cipher(ud, (const uint8_t *)mine.data, mine.len);
  if (!out.data) {
    out = mine;
    out.len = 0;
  } else {
    sl_sbuf_free(&mine);
  }
  in_p = ip;
  in_len = il;
}

/* The handoff (tls.h), right after OpenSSL completed the handshake: true when tls_record.c
 * took the connection over (the SSL object is freed), false with t->fallback set when
 * OpenSSL keeps it. wrote: OpenSSL produced ciphertext in the call that completed it. */
static bool handoff(sl_tls *t, bool wrote) {
  SSL *s = t->ssl;
  const SSL_CIPHER *c = SSL_get_current_cipher(s);
  t->cipher = c ? SSL_CIPHER_get_name(c) : "";
  t->version = SSL_get_version(s);
  int suite = c ? sl_tls_rec_suite((uint32_t)SSL_CIPHER_get_id(c)) : 0;
  const sl_tls_secrets *k = t->secrets;
  const char *why = NULL;
  sl_tls_rec *rec = NULL;
  if (SSL_version(s) != TLS1_3_VERSION)
    why = t->version;
  else if (!suite)
    why = "cipher suite";
  else if (wrote)
    why = "OpenSSL wrote after its Finished";
  else if (SSL_has_pending(s))
    why = "OpenSSL buffered input";
  else if (!k || !k->client_len || k->client_len != k->server_len)
    why = "no traffic secrets";
  else
    rec = sl_tls_rec_new(suite, k->client, k->server, k->client_len, &why);
  free_secrets(t);
  if (!rec) {
    t->fallback = why;
    return false;
  }
  t->rec = rec;
  SSL_free(s);
  t->ssl = NULL;
  return true;
}

/* Records after the handoff: through tls_record.c, with sl_tls_feed's results. */
static int rec_feed(sl_tls *t, const uint8_t *in, size_t len, const sl_tls_sink *k, void *ud) {
  const sl_tls_rec_sink rk = {k->on_plain, k->on_cipher};
  const char *why = NULL;
  int r = sl_tls_rec_feed(t->rec, in, len, &rk, ud, &why);
  if (r == SL_TLS_REC_CLOSED) return SL_TLS_CLOSED;
  if (r) snprintf(last_err, sizeof last_err, "%s", why ? why : "TLS record error");
  return r ? SL_EIO : 0;
}

/* sl_tls_feed: see tls.h. OpenSSL runs the handshake (SSL_do_handshake, so that it stops
 * reading right after the client's Finished); then either the record layer takes the rest
 * of the input, or SSL_read does as before. */
int sl_tls_feed(sl_tls *t, const uint8_t *in, size_t len, const sl_tls_sink *k, void *ud) {
  if (t->rec) return rec_feed(t, in, len, k, ud);
  SSL *s = t->ssl;
  clear_errors();
  in_p = in;
  in_len = len;
  out.len = 0;
  int rc = 0;
  while (!SSL_is_init_finished(s)) {
    size_t before = in_len, wrote = out.len;
    int r = SSL_do_handshake(s);
    if (r == 1) {
      if (!handoff(t, out.len > wrote)) break;
      emit(k, ud);
      const uint8_t *rest = in_p;
      size_t rl = in_len;
      in_p = NULL;
      in_len = 0;
      return rl ? rec_feed(t, rest, rl, k, ud) : 0;
    }
    int e = SSL_get_error(s, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (in_len == 0 || in_len == before) goto done;
      continue;
    }
    set_error(s, r);
    rc = SL_EIO;
    goto done;
  }
  for (;;) {
    size_t before = in_len;
    int r = SSL_read(s, plain_buf, sizeof plain_buf);
    if (r > 0) {
      emit(k, ud);
      const uint8_t *ip = in_p;
      size_t il = in_len;
      in_p = NULL;
      in_len = 0;
      int stop = k->on_plain(ud, plain_buf, (size_t)r);
      in_p = ip;
      in_len = il;
      if (stop) break;
      continue;
    }
    int e = SSL_get_error(s, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (in_len == 0 || in_len == before) break; /* before: no progress, wait for more */
      continue;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      rc = SL_TLS_CLOSED;
      break;
    }
    set_error(s, r);
    rc = SL_EIO;
    break;
  }
done:
  /* An alert describing a failure is worth sending too. */
  emit(k, ud);
  in_p = NULL;
  in_len = 0;
  return rc;
}

/* sl_tls_encrypt after the handoff: records of up to 16 KiB sealed straight from the iovecs
 * (no staging copy) into `out`. */
static int rec_encrypt(sl_tls *t, const uv_buf_t *iov, unsigned n, size_t max, size_t *consumed,
                       const uint8_t **outp, size_t *outlen) {
  size_t total = 0;
  for (unsigned k = 0; k < n && total < max; k++) total += iov[k].len;
  if (total > max) total = max;
  out.len = 0;
  unsigned i = 0;
  size_t off = 0, done = 0;
  while (done < total) {
    size_t l = total - done < SL_TLS_REC_MAX_PLAIN ? total - done : SL_TLS_REC_MAX_PLAIN;
    const char *why = NULL;
    if (sl_tls_rec_seal(t->rec, iov, n, &i, &off, l, &out, &why) != 0) {
      snprintf(last_err, sizeof last_err, "%s", why ? why : "TLS record error");
      out.len = 0;
      return SL_EIO;
    }
    done += l;
  }
  *consumed = done;
  *outp = (const uint8_t *)out.data;
  *outlen = out.len;
  out.len = 0; /* the data stays valid until the next call appends */
  return 0;
}

/* sl_tls_encrypt: see tls.h. Plaintext is staged into whole records: SSL_write on each small
 * frame would cost a record header, a MAC and a cipher call per frame. */
int sl_tls_encrypt(sl_tls *t, const uv_buf_t *iov, unsigned n, size_t max, size_t *consumed,
                   const uint8_t **outp, size_t *outlen) {
  *consumed = 0;
  *outp = NULL;
  *outlen = 0;
  if (t->rec) return rec_encrypt(t, iov, n, max, consumed, outp, outlen);
  out.len = 0;
  SSL *ssl = t->ssl;
  if (!SSL_is_init_finished(ssl)) return 0;
  clear_errors();
  const uint8_t *ip = in_p;
  size_t il = in_len;
  in_p = NULL;
  in_len = 0;
  size_t done = 0;
  unsigned i = 0;
  size_t off = 0; /* into iov[i] */
  int rc = 0;
  while (done < max && i < n) {
    const uint8_t *src;
    size_t len;
    size_t room = max - done < SL_TLS_RECORD ? max - done : SL_TLS_RECORD;
    if (iov[i].len - off >= room || (off == 0 && iov[i].len >= 4096)) {
      /* big enough to go without copying */
      src = (const uint8_t *)iov[i].base + off;
      len = iov[i].len - off < room ? iov[i].len - off : room;
      off += len;
      if (off == iov[i].len) i++, off = 0;
    } else {
      size_t s = 0;
      while (i < n && s < room) {
        size_t take = iov[i].len - off;
        if (take > room - s) take = room - s;
        memcpy(stage + s, iov[i].base + off, take);
        s += take;
        off += take;
        if (off == iov[i].len) i++, off = 0;
      }
      src = stage;
      len = s;
    }
    if (len == 0) continue;
    int r = SSL_write(ssl, src, (int)len);
    if (r <= 0) {
      set_error(ssl, r);
      rc = SL_EIO;
      break;
    }
    done += len;
  }
  in_p = ip;
  in_len = il;
  if (rc == 0) {
    *consumed = done;
    *outp = (const uint8_t *)out.data;
    *outlen = out.len;
  }
  out.len = 0; /* the data stays valid until the next call appends */
  return rc;
}
