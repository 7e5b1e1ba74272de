/* test_tls.c - core/tls.c without sockets: OpenSSL clients on memory BIOs talk to server
 * connections driven through sl_tls_feed / sl_tls_encrypt, with certificates made by the
 * `openssl` command in a temporary directory. Covers the context checks, the shared BIO
 * (two connections interleaved, an encryption for one inside the other's feed), coalesced
 * records, the batch limit, a garbage handshake and close_notify. */
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
static char cert[128], key[128], other_key[128];

static int sh(const char *cmd) {
  char full[1024];
  snprintf(full, sizeof full, "cd %s && %s >/dev/null 2>&1", dir, cmd);
  return system(full);
}

static bool make_certs(void) {
  snprintf(dir, sizeof dir, "/tmp/sluice-test-tls-XXXXXX");
  if (!mkdtemp(dir)) return false;
  snprintf(cert, sizeof cert, "%s/cert.pem", dir);
  snprintf(key, sizeof key, "%s/key.pem", dir);
  snprintf(other_key, sizeof other_key, "%s/other.pem", dir);
  return sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
            "-subj /CN=localhost -set_serial 0x5A17 -keyout key.pem -out cert.pem") == 0 &&
         sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.pem") == 0;
}

/* A peer: an OpenSSL client on a memory BIO pair, and the server connection it talks to. */
typedef struct peer {
  SSL *cli;
  BIO *in, *out; /* client side: ciphertext to the client / from the client */
  sl_tls *srv;
  sl_sbuf plain; /* what the server connection decrypted */
  struct peer *other;
  int encrypt_other_on_plain;
} peer;

static int on_plain(void *ud, const uint8_t *d, size_t n) {
  peer *p = ud;
  sl_sbuf_append(&p->plain, d, n);
  if (p->encrypt_other_on_plain) {
    /* reentrancy: encrypt for another connection from inside this one's feed */
    peer *o = p->other;
    uv_buf_t iov = uv_buf_init((char *)"from inside", 11);
    size_t used = 0, ol = 0;
    const uint8_t *out = NULL;
    CHECK_EQ_INT(sl_tls_encrypt(o->srv, &iov, 1, 1 << 20, &used, &out, &ol), 0);
    CHECK_EQ_INT(used, 11);
    BIO_write(o->in, out, (int)ol);
  }
  return 0;
}

static void on_cipher(void *ud, const uint8_t *d, size_t n) {
  peer *p = ud;
  BIO_write(p->in, d, (int)n);
}

static const sl_tls_sink sink = {on_plain, on_cipher};

static SSL_CTX *cctx;

static void peer_init(peer *p, sl_tls_ctx *ctx) {
  memset(p, 0, sizeof *p);
  p->cli = SSL_new(cctx);
  p->in = BIO_new(BIO_s_mem());
  p->out = BIO_new(BIO_s_mem());
  SSL_set_bio(p->cli, p->in, p->out);
  SSL_set_connect_state(p->cli);
  p->srv = sl_tls_new(ctx);
}

static void peer_free(peer *p) {
  SSL_free(p->cli);
  sl_tls_free(p->srv);
  sl_sbuf_free(&p->plain);
}

static size_t chunk = 32768; /* bytes per sl_tls_feed: TCP may split records anywhere */

/* Move the client's pending ciphertext to the server connection. */
static int pump(peer *p) {
  char buf[32768];
  int n, rc = 0;
  while ((n = BIO_read(p->out, buf, (int)chunk)) > 0 && rc == 0)
    rc = sl_tls_feed(p->srv, (const uint8_t *)buf, (size_t)n, &sink, p);
  return rc;
}

/* One handshake step on the client side, then its bytes to the server. */
static int step(peer *p) {
  SSL_do_handshake(p->cli);
  return pump(p);
}

static int client_read(peer *p, char *buf, int len) {
  int n = SSL_read(p->cli, buf, len);
  return n > 0 ? n : 0;
}

TEST(context_checks) {
  char err[512];
  sl_tls_config c = {cert, key, NULL, 0x0304};
  sl_tls_ctx *ctx = sl_tls_ctx_new(&c, err, sizeof err);
  CHECK(ctx != NULL);
  if (!ctx) return;
  CHECK_EQ_STR(sl_tls_ctx_serial(ctx), "5A17");
  CHECK(sl_tls_ctx_not_after(ctx) > (int64_t)time(NULL));
  sl_tls_ctx_unref(ctx);
  sl_tls_config bad = {cert, other_key, NULL, 0x0304};
  CHECK(sl_tls_ctx_new(&bad, err, sizeof err) == NULL);
  CHECK(strstr(err, "does not match the certificate") != NULL);
  sl_tls_config none = {"/nonexistent.pem", key, NULL, 0x0304};
  CHECK(sl_tls_ctx_new(&none, err, sizeof err) == NULL);
  CHECK_EQ_STR(err, "tls certChainPemPath \"/nonexistent.pem\": No such file or directory");
  /* the key as the certificate: not a certificate chain */
  sl_tls_config swapped = {key, key, NULL, 0x0304};
  CHECK(sl_tls_ctx_new(&swapped, err, sizeof err) == NULL);
  CHECK(strstr(err, "not a PEM certificate chain") != NULL);
}

TEST(two_connections_interleaved) {
  char err[512];
  sl_tls_config c = {cert, key, NULL, 0x0304};
  sl_tls_ctx *ctx = sl_tls_ctx_new(&c, err, sizeof err);
  CHECK(ctx != NULL);
  if (!ctx) return;
  peer a, b;
  peer_init(&a, ctx);
  peer_init(&b, ctx);
  sl_tls_ctx_unref(ctx); /* the connections keep the SSL_CTX alive */
  a.other = &b;
  b.other = &a;
  for (int i = 0; i < 4; i++) {
    CHECK_EQ_INT(step(&a), 0);
    CHECK_EQ_INT(step(&b), 0);
  }
  CHECK(sl_tls_handshake_done(a.srv));
  CHECK(sl_tls_handshake_done(b.srv));
  CHECK(SSL_is_init_finished(a.cli));
  CHECK(SSL_is_init_finished(b.cli));

  /* client -> server, each connection sees only its own bytes */
  SSL_write(a.cli, "hello A", 7);
  SSL_write(b.cli, "hello B", 7);
  a.encrypt_other_on_plain = 1; /* while A's feed runs, encrypt for B */
  CHECK_EQ_INT(pump(&b), 0);
  CHECK_EQ_INT(pump(&a), 0);
  CHECK_EQ_MEM(a.plain.data, a.plain.len, "hello A", 7);
  CHECK_EQ_MEM(b.plain.data, b.plain.len, "hello B", 7);
  char buf[4096];
  int n = client_read(&b, buf, sizeof buf);
  CHECK_EQ_MEM(buf, (size_t)n, "from inside", 11);

  /* server -> client: small buffers coalesced into one record, all of them consumed */
  uv_buf_t iov[3] = {uv_buf_init((char *)"one,", 4), uv_buf_init((char *)"two,", 4),
                     uv_buf_init((char *)"three", 5)};
  size_t used, ol;
  const uint8_t *out;
  CHECK_EQ_INT(sl_tls_encrypt(a.srv, iov, 3, 1 << 20, &used, &out, &ol), 0);
  CHECK_EQ_INT(used, 13);
  CHECK_EQ_INT(ol, 13 + 22); /* one TLSv1.3 record: 5 header + 1 type + 16 tag */
  BIO_write(a.in, out, (int)ol);
  n = client_read(&a, buf, sizeof buf);
  CHECK_EQ_MEM(buf, (size_t)n, "one,two,three", 13);

  /* the batch limit: at most max bytes are taken, the rest stays for the next call */
  static char big[100000];
  memset(big, 'x', sizeof big);
  big[sizeof big - 1] = 'y';
  uv_buf_t one = uv_buf_init(big, sizeof big);
  CHECK_EQ_INT(sl_tls_encrypt(a.srv, &one, 1, 65536, &used, &out, &ol), 0);
  CHECK_EQ_INT(used, 65536);
  BIO_write(a.in, out, (int)ol);
  size_t got = 0;
  while ((n = client_read(&a, buf, sizeof buf)) > 0) got += (size_t)n;
  CHECK_EQ_INT(got, 65536);
  one = uv_buf_init(big + used, (unsigned)(sizeof big - used));
  CHECK_EQ_INT(sl_tls_encrypt(a.srv, &one, 1, 65536, &used, &out, &ol), 0);
  CHECK_EQ_INT(used, sizeof big - 65536);
  BIO_write(a.in, out, (int)ol);
  char last = 0;
  while ((n = client_read(&a, buf, sizeof buf)) > 0) got += (size_t)n, last = buf[n - 1];
  CHECK_EQ_INT(got, sizeof big);
  CHECK_EQ_INT(last, 'y');

  /* close_notify from the client */
  SSL_shutdown(a.cli);
  CHECK_EQ_INT(pump(&a), SL_TLS_CLOSED);
  peer_free(&a);
  peer_free(&b);
}

TEST(garbage_handshake) {
  char err[512];
  sl_tls_config c = {cert, key, NULL, 0x0304};
  sl_tls_ctx *ctx = sl_tls_ctx_new(&c, err, sizeof err);
  CHECK(ctx != NULL);
  if (!ctx) return;
  peer p;
  peer_init(&p, ctx);
  sl_tls_ctx_unref(ctx);
  const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK_EQ_INT(sl_tls_feed(p.srv, (const uint8_t *)http, strlen(http), &sink, &p), SL_EIO);
  CHECK(!sl_tls_handshake_done(p.srv));
  CHECK(sl_tls_last_error()[0] != 0);
  CHECK_EQ_INT(p.plain.len, 0);
  /* before the handshake nothing is encrypted */
  uv_buf_t iov = uv_buf_init((char *)"x", 1);
  size_t used = 1, ol = 1;
  const uint8_t *out;
  peer q;
  sl_tls_config c2 = {cert, key, NULL, 0x0304};
  ctx = sl_tls_ctx_new(&c2, err, sizeof err);
  peer_init(&q, ctx);
  sl_tls_ctx_unref(ctx);
  CHECK_EQ_INT(sl_tls_encrypt(q.srv, &iov, 1, 100, &used, &out, &ol), 0);
  CHECK_EQ_INT(used, 0);
  peer_free(&p);
  peer_free(&q);
}

int main(void) {
  if (!make_certs()) {
    printf("not ok - openssl could not make the test certificates\n0 passed, 1 failed\n");
    return 1;
  }
  cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
  RUN(context_checks);
  RUN(two_connections_interleaved);
  RUN(garbage_handshake);
  chunk = 1; /* the same conversation, one byte per read */
  RUN(two_connections_interleaved);
  chunk = 7;
  RUN(two_connections_interleaved);
  SSL_CTX_free(cctx);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return tl_report();
}
