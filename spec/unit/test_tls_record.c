/* test_tls_record.c - the TLS 1.3 record layer (core/tls_record.c) against OpenSSL itself:
 * OpenSSL clients on memory BIOs talk to server connections of core/tls.c, which hand the
 * connection over to tls_record.c once the handshake completes. Data both ways, application
 * records arriving in the same read as the client's Finished, messages spanning records,
 * many records (sequence numbers), the three suites, two connections interleaved (the
 * shared cipher contexts re-keyed), KeyUpdate from the client with and without
 * update_requested, close_notify, a corrupted tag, a truncated record fed byte by byte, a
 * record of another outer type, an oversized length, and a TLS 1.2 client (kept on OpenSSL). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "testlib.h"
#include "tls.h"
#include "sl_util.h"

static char dir[64];
static char cert[128], key[128];

static bool make_certs(void) {
  snprintf(dir, sizeof dir, "/tmp/sluice-test-tlsrec-XXXXXX");
  if (!mkdtemp(dir)) return false;
  snprintf(cert, sizeof cert, "%s/cert.pem", dir);
  snprintf(key, sizeof key, "%s/key.pem", dir);
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-days 2 -subj /CN=localhost -keyout key.pem -out cert.pem >/dev/null 2>&1",
           dir);
  return system(cmd) == 0;
}

typedef struct peer {
  SSL *cli;
  BIO *in, *out; /* ciphertext to the client / from the client */
  sl_tls *srv;
  sl_sbuf plain; /* what the server decrypted */
  int ciphers;   /* on_cipher calls after the handshake (KeyUpdate answers) */
  bool done;
} peer;

static int on_plain(void *ud, const uint8_t *d, size_t n) {
  sl_sbuf_append(&((peer *)ud)->plain, d, n);
  return 0;
}

static void on_cipher(void *ud, const uint8_t *d, size_t n) {
  peer *p = ud;
  if (p->done) p->ciphers++;
  BIO_write(p->in, d, (int)n);
}

static const sl_tls_sink sink = {on_plain, on_cipher};
static SSL_CTX *cctx;
static sl_tls_ctx *sctx, *sctx12;

/* Everything the client wrote, to the server, in reads of `chunk` bytes. */
static int pump_chunks(peer *p, size_t chunk) {
  static char buf[1 << 18];
  int n, rc = 0;
  while (rc == 0 && (n = BIO_read(p->out, buf, (int)(chunk < sizeof buf ? chunk : sizeof buf))) > 0)
    rc = sl_tls_feed(p->srv, (const uint8_t *)buf, (size_t)n, &sink, p);
  return rc;
}

static int pump(peer *p) { return pump_chunks(p, 1 << 18); }

/* Connect; with early_data, the client writes early_data bytes right after its Finished,
 * so that they reach the server in the same read as the Finished. */
static bool connect_peer(peer *p, sl_tls_ctx *sc, const char *suites, int max_version,
                         const char *early_data) {
  memset(p, 0, sizeof *p);
  p->cli = SSL_new(cctx);
  p->in = BIO_new(BIO_s_mem());
  p->out = BIO_new(BIO_s_mem());
  SSL_set_bio(p->cli, p->in, p->out);
  SSL_set_connect_state(p->cli);
  if (suites) SSL_set_ciphersuites(p->cli, suites);
  if (max_version) SSL_set_max_proto_version(p->cli, max_version);
  p->srv = sl_tls_new(sc);
  if (!p->srv) return false;
  for (int i = 0; i < 6 && !SSL_is_init_finished(p->cli); i++) {
    SSL_do_handshake(p->cli);
    if (SSL_is_init_finished(p->cli) && early_data)
      SSL_write(p->cli, early_data, (int)strlen(early_data));
    if (pump(p) != 0) return false;
  }
  p->done = true;
  return SSL_is_init_finished(p->cli) && sl_tls_handshake_done(p->srv);
}

static void free_peer(peer *p) {
  SSL_free(p->cli);
  sl_tls_free(p->srv);
  sl_sbuf_free(&p->plain);
}

/* Server -> client: len bytes of pattern given to sl_tls_encrypt in pieces of `piece`
 * bytes; returns whether the client read exactly them back. */
static bool send_to_client(peer *p, size_t len, size_t piece, unsigned seed) {
  uint8_t *data = malloc(len);
  for (size_t i = 0; i < len; i++) data[i] = (uint8_t)(i * 7 + seed);
  uv_buf_t iov[64];
  size_t sent = 0;
  bool ok = true;
  while (sent < len && ok) {
    unsigned n = 0;
    for (size_t o = sent; o < len && n < 64; o += piece)
      iov[n++] = uv_buf_init((char *)data + o, (unsigned)(len - o < piece ? len - o : piece));
    size_t used = 0, ol = 0;
    const uint8_t *out = NULL;
    ok = sl_tls_encrypt(p->srv, iov, n, 1 << 20, &used, &out, &ol) == 0 && used > 0;
    if (ok) BIO_write(p->in, out, (int)ol);
    sent += used;
  }
  uint8_t *back = malloc(len + 1);
  size_t got = 0;
  int r;
  while (got < len && (r = SSL_read(p->cli, back + got, (int)(len - got))) > 0) got += (size_t)r;
  ok = ok && got == len && memcmp(back, data, len) == 0;
  free(data);
  free(back);
  return ok;
}

/* Client -> server: len bytes; the server decrypted exactly them? */
static bool send_to_server(peer *p, size_t len, unsigned seed, size_t chunk) {
  uint8_t *data = malloc(len);
  for (size_t i = 0; i < len; i++) data[i] = (uint8_t)(i * 13 + seed);
  p->plain.len = 0;
  bool ok = SSL_write(p->cli, data, (int)len) == (int)len && pump_chunks(p, chunk) == 0 &&
            p->plain.len == len && memcmp(p->plain.data, data, len) == 0;
  free(data);
  return ok;
}

TEST(data_both_ways_and_records_after_finished) {
  peer p;
  CHECK(connect_peer(&p, sctx, NULL, 0, "GET / HTTP/1.1\r\n\r\n"));
  CHECK(sl_tls_offloaded(p.srv));
  CHECK_EQ_STR(sl_tls_cipher_name(p.srv), "TLS_AES_128_GCM_SHA256");
  /* the request came in the same read as the Finished: taken over, seq 0 */
  CHECK_EQ_MEM(p.plain.data, p.plain.len, "GET / HTTP/1.1\r\n\r\n", 18);
  CHECK(send_to_client(&p, 100, 100, 1));
  CHECK(send_to_server(&p, 200, 2, 1 << 18));
  /* big messages spanning records, both ways, iovecs of odd sizes */
  CHECK(send_to_client(&p, 100000, 333, 3));
  CHECK(send_to_client(&p, 40000, 40000, 4));
  CHECK(send_to_server(&p, 100000, 5, 1 << 18));
  CHECK(send_to_server(&p, 50000, 6, 1000)); /* split anywhere */
  /* many records: the sequence numbers advance in step with OpenSSL's */
  bool ok = true;
  for (int i = 0; i < 300 && ok; i++) ok = send_to_client(&p, 10, 10, (unsigned)i);
  for (int i = 0; i < 300 && ok; i++) ok = send_to_server(&p, 10, (unsigned)i, 1 << 18);
  CHECK(ok);
  CHECK_EQ_INT(p.ciphers, 0);
  free_peer(&p);
}

TEST(each_suite) {
  static const char *const suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                       "TLS_CHACHA20_POLY1305_SHA256"};
  for (int i = 0; i < 3; i++) {
    peer p;
    CHECK(connect_peer(&p, sctx, suites[i], 0, NULL));
    CHECK(sl_tls_offloaded(p.srv));
    CHECK_EQ_STR(sl_tls_cipher_name(p.srv), suites[i]);
    CHECK(send_to_client(&p, 20000, 20000, (unsigned)i));
    CHECK(send_to_server(&p, 20000, (unsigned)i, 777));
    free_peer(&p);
  }
}

TEST(two_connections_interleaved) {
  peer a, b;
  CHECK(connect_peer(&a, sctx, NULL, 0, NULL));
  CHECK(connect_peer(&b, sctx, "TLS_AES_256_GCM_SHA384", 0, NULL));
  bool ok = true;
  for (int i = 0; i < 50 && ok; i++) {
    ok = send_to_client(&a, 50, 50, (unsigned)i) && send_to_client(&b, 60, 60, (unsigned)i) &&
         send_to_server(&b, 70, (unsigned)i, 1 << 18) && send_to_server(&a, 80, (unsigned)i, 9);
  }
  CHECK(ok);
  free_peer(&a);
  free_peer(&b);
}

TEST(key_update_not_requested) {
  peer p;
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  CHECK(send_to_server(&p, 100, 1, 1 << 18));
  CHECK(SSL_key_update(p.cli, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
  CHECK(send_to_server(&p, 100, 2, 1 << 18)); /* KeyUpdate, then data under the new key */
  CHECK_EQ_INT(p.ciphers, 0);                 /* nothing to answer */
  CHECK(send_to_server(&p, 30000, 3, 1 << 18));
  CHECK(send_to_client(&p, 1000, 1000, 4)); /* our write key is unchanged */
  free_peer(&p);
}

TEST(key_update_requested) {
  peer p;
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  CHECK(send_to_client(&p, 100, 100, 1));
  CHECK(SSL_key_update(p.cli, SSL_KEY_UPDATE_REQUESTED) == 1);
  CHECK(send_to_server(&p, 100, 2, 1 << 18));
  CHECK_EQ_INT(p.ciphers, 1); /* our KeyUpdate(update_not_requested), under the old key */
  /* the client reads our KeyUpdate, then data under our new key */
  CHECK(send_to_client(&p, 5000, 5000, 3));
  CHECK(send_to_server(&p, 100, 4, 1 << 18));
  /* twice more: the chain of secrets goes on */
  CHECK(SSL_key_update(p.cli, SSL_KEY_UPDATE_REQUESTED) == 1);
  CHECK(send_to_server(&p, 10, 5, 3));
  CHECK(send_to_client(&p, 10, 10, 6));
  CHECK(SSL_key_update(p.cli, SSL_KEY_UPDATE_REQUESTED) == 1);
  CHECK(send_to_server(&p, 10, 7, 1 << 18));
  CHECK(send_to_client(&p, 10, 10, 8));
  CHECK_EQ_INT(p.ciphers, 3);
  free_peer(&p);
}

TEST(close_notify) {
  peer p;
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  CHECK(send_to_server(&p, 10, 1, 1 << 18));
  SSL_shutdown(p.cli);
  CHECK_EQ_INT(pump(&p), SL_TLS_CLOSED);
  free_peer(&p);
}

/* The client's next record, as bytes. */
static size_t client_record(peer *p, const char *data, uint8_t *rec, size_t cap) {
  SSL_write(p->cli, data, (int)strlen(data));
  int n = BIO_read(p->out, rec, (int)cap);
  return n > 0 ? (size_t)n : 0;
}

TEST(corrupted_tag_closes) {
  peer p;
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  uint8_t rec[256];
  size_t n = client_record(&p, "hello", rec, sizeof rec);
  CHECK(n == 5 + 5 + 1 + 16);
  rec[n - 1] ^= 1;
  CHECK_EQ_INT(sl_tls_feed(p.srv, rec, n, &sink, &p), SL_EIO);
  CHECK_EQ_STR(sl_tls_last_error(), "bad record MAC");
  CHECK_EQ_INT(p.plain.len, 0);
  CHECK_EQ_INT(p.ciphers, 0); /* nothing sent */
  free_peer(&p);
  /* a changed header (the AAD) fails the same way */
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  n = client_record(&p, "hello", rec, sizeof rec);
  rec[2] ^= 1;
  CHECK_EQ_INT(sl_tls_feed(p.srv, rec, n, &sink, &p), SL_EIO);
  CHECK_EQ_STR(sl_tls_last_error(), "bad record MAC");
  free_peer(&p);
}

TEST(truncated_record_waits) {
  peer p;
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  uint8_t rec[512];
  size_t n = client_record(&p, "one record, fed a byte at a time", rec, sizeof rec);
  CHECK(n > 5);
  for (size_t i = 0; i + 1 < n; i++) CHECK_EQ_INT(sl_tls_feed(p.srv, rec + i, 1, &sink, &p), 0);
  CHECK_EQ_INT(p.plain.len, 0);
  CHECK(sl_tls_conn_bytes(p.srv) > 300); /* the partial record is kept */
  CHECK_EQ_INT(sl_tls_feed(p.srv, rec + n - 1, 1, &sink, &p), 0);
  CHECK_EQ_MEM(p.plain.data, p.plain.len, "one record, fed a byte at a time", 32);
  /* two records split mid-header and mid-body in one feed, then the rest */
  uint8_t two[1024];
  size_t a = client_record(&p, "first", two, sizeof two);
  size_t b = client_record(&p, "second", two + a, sizeof two - a);
  p.plain.len = 0;
  CHECK_EQ_INT(sl_tls_feed(p.srv, two, a + 3, &sink, &p), 0);
  CHECK_EQ_MEM(p.plain.data, p.plain.len, "first", 5);
  CHECK_EQ_INT(sl_tls_feed(p.srv, two + a + 3, b - 3, &sink, &p), 0);
  CHECK_EQ_MEM(p.plain.data, p.plain.len, "firstsecond", 11);
  free_peer(&p);
}

TEST(bad_records_close) {
  peer p;
  /* an unencrypted alert after the handshake */
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  static const uint8_t alert[] = {0x15, 3, 3, 0, 2, 2, 40};
  CHECK_EQ_INT(sl_tls_feed(p.srv, alert, sizeof alert, &sink, &p), SL_EIO);
  free_peer(&p);
  /* a change_cipher_spec after the handshake */
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  static const uint8_t ccs[] = {0x14, 3, 3, 0, 1, 1};
  CHECK_EQ_INT(sl_tls_feed(p.srv, ccs, sizeof ccs, &sink, &p), SL_EIO);
  free_peer(&p);
  /* a length over 2^14 + 256, refused from the header alone */
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  static const uint8_t big[] = {0x17, 3, 3, 0x41, 0x01};
  CHECK_EQ_INT(sl_tls_feed(p.srv, big, sizeof big, &sink, &p), SL_EIO);
  CHECK_EQ_STR(sl_tls_last_error(), "record length out of range");
  free_peer(&p);
  /* shorter than a tag */
  CHECK(connect_peer(&p, sctx, NULL, 0, NULL));
  static const uint8_t tiny[] = {0x17, 3, 3, 0, 3, 1, 2, 3};
  CHECK_EQ_INT(sl_tls_feed(p.srv, tiny, sizeof tiny, &sink, &p), SL_EIO);
  free_peer(&p);
}

TEST(tls12_stays_on_openssl) {
  peer p;
  CHECK(connect_peer(&p, sctx12, NULL, TLS1_2_VERSION, NULL));
  CHECK(!sl_tls_offloaded(p.srv));
  CHECK_EQ_STR(sl_tls_fallback_reason(p.srv), "TLSv1.2");
  CHECK(send_to_client(&p, 40000, 999, 1));
  CHECK(send_to_server(&p, 40000, 2, 1000));
  free_peer(&p);
  /* the same server context, a TLS 1.3 client: handed off */
  CHECK(connect_peer(&p, sctx12, NULL, 0, NULL));
  CHECK(sl_tls_offloaded(p.srv));
  free_peer(&p);
}

int main(void) {
  if (!make_certs()) {
    printf("not ok - openssl could not make the test certificates\n0 passed, 1 failed\n");
    return 1;
  }
  char err[512];
  sl_tls_config c = {cert, key, NULL, 0x0304}, c12 = {cert, key, NULL, 0x0303};
  sctx = sl_tls_ctx_new(&c, err, sizeof err);
  sctx12 = sctx ? sl_tls_ctx_new(&c12, err, sizeof err) : NULL;
  cctx = SSL_CTX_new(TLS_client_method());
  if (!sctx || !sctx12 || !cctx) {
    printf("not ok - contexts: %s\n0 passed, 1 failed\n", err);
    return 1;
  }
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
  RUN(data_both_ways_and_records_after_finished);
  RUN(each_suite);
  RUN(two_connections_interleaved);
  RUN(key_update_not_requested);
  RUN(key_update_requested);
  RUN(close_notify);
  RUN(corrupted_tag_closes);
  RUN(truncated_record_waits);
  RUN(bad_records_close);
  RUN(tls12_stays_on_openssl);
  sl_tls_ctx_unref(sctx);
  sl_tls_ctx_unref(sctx12);
  SSL_CTX_free(cctx);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return tl_report();
}
