/* test_tls_mem.c - what an idle TLS connection keeps, counted allocation by allocation
 * (CRYPTO_set_mem_functions) in OpenSSL, plus the bytes core/tls.c and core/tls_record.c
 * hold themselves (sl_tls_conn_bytes), for server connections talking to default OpenSSL
 * clients over memory BIOs: TLS 1.3 connections (handed off to tls_record.c after the
 * handshake: the SSL object is freed) and TLS 1.2 ones (kept on OpenSSL).
 *
 * Only allocations made inside the server side's calls (sl_tls_new, sl_tls_feed,
 * sl_tls_encrypt) are counted, by OpenSSL source file and line; a first connection warms
 * OpenSSL's lazily built global caches up and is not counted. After the handshake, an HTTP
 * request and its answer each way, what is still allocated per connection is what an idle
 * WSS client costs. The checks are regression guards, not timings: TLS 1.3 connections keep
 * nothing in OpenSSL and a few hundred bytes of their own; TLS 1.2 ones keep their SSL
 * object with the record buffers released (SSL_MODE_RELEASE_BUFFERS: a read or write buffer
 * is 16 KiB or more) and resume from stateless tickets; no TLS 1.3 tickets (the handoff
 * needs OpenSSL silent after its Finished); the AES-128-GCM preference; nothing left once
 * the connections are freed. `test_tls_mem -v` prints the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "testlib.h"
#include "tls.h"
#include "sl_util.h"

/* ---- counting allocator ------------------------------------------------------------------ */

#define HDR 16 /* keeps the 16-byte alignment malloc gives */
#define MAX_SITES 512

typedef struct site {
  const char *file;
  int line;
  long n, bytes;
} site;

static int counting;
static long live_n, live_bytes; /* counted allocations still live */
static site sites[MAX_SITES];
static int nsites;

static int site_of(const char *file, int line) {
  for (int i = 0; i < nsites; i++)
    if (sites[i].line == line && sites[i].file == file) return i;
  if (nsites == MAX_SITES) return -1;
  sites[nsites].file = file;
  sites[nsites].line = line;
  return nsites++;
}

/* The header: the size, and the site + 1 for a counted allocation (0: not counted). */
static void *mem_alloc(size_t n, const char *file, int line) {
  unsigned char *p = malloc(n + HDR);
  if (!p) return NULL;
  size_t *h = (size_t *)p;
  h[0] = n;
  h[1] = 0;
  if (counting) {
    int s = site_of(file, line);
    h[1] = (size_t)s + 1;
    if (s >= 0) sites[s].n++, sites[s].bytes += (long)n;
    live_n++;
    live_bytes += (long)n;
  }
  return p + HDR;
}

static void mem_free(void *q, const char *file, int line) {
  (void)file, (void)line;
  if (!q) return;
  unsigned char *p = (unsigned char *)q - HDR;
  size_t *h = (size_t *)p;
  if (h[1]) {
    int s = (int)h[1] - 1;
    if (s >= 0) sites[s].n--, sites[s].bytes -= (long)h[0];
    live_n--;
    live_bytes -= (long)h[0];
  }
  free(p);
}

static void *mem_realloc(void *q, size_t n, const char *file, int line) {
  if (!q) return mem_alloc(n, file, line);
  size_t old = ((size_t *)((unsigned char *)q - HDR))[0];
  void *r = mem_alloc(n, file, line);
  if (!r) return NULL;
  memcpy(r, q, old < n ? old : n);
  mem_free(q, file, line);
  return r;
}

/* ---- certificates and peers -------------------------------------------------------------- */

static char dir[64];
static char cert[128], key[128];

static bool make_certs(void) {
  snprintf(dir, sizeof dir, "/tmp/sluice-test-tlsmem-XXXXXX");
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
  BIO *in, *out;
  sl_tls *srv;
  size_t got; /* plaintext the server connection decrypted */
} peer;

static int on_plain(void *ud, const uint8_t *d, size_t n) {
  (void)d;
  ((peer *)ud)->got += n;
  return 0;
}

/* The client's buffers are the client's: not counted even inside a server call. */
static void on_cipher(void *ud, const uint8_t *d, size_t n) {
  peer *p = ud;
  int c = counting;
  counting = 0;
  BIO_write(p->in, d, (int)n);
  counting = c;
}

static const sl_tls_sink sink = {on_plain, on_cipher};
static SSL_CTX *cctx, *cctx12; /* default clients; TLS 1.2-only clients */
static sl_tls_ctx *sctx, *sctx12; /* protocol TLSv1.3 (the default); protocol TLSv1.2 */

static int pump(peer *p) {
  char buf[16384];
  int n, rc = 0;
  while (rc == 0 && (n = BIO_read(p->out, buf, (int)sizeof buf)) > 0) {
    counting = 1;
    rc = sl_tls_feed(p->srv, (const uint8_t *)buf, (size_t)n, &sink, p);
    counting = 0;
  }
  return rc;
}

static void client_drain(peer *p) {
  char buf[4096];
  while (SSL_read(p->cli, buf, sizeof buf) > 0) {}
}

/* A connection as a WSS client leaves it: handshake (and the tickets the server sends
 * after it), an upgrade request in, its answer out. Returns false when something failed. */
static bool connect_peer(peer *p, SSL_SESSION *resume, bool tls12) {
  memset(p, 0, sizeof *p);
  p->cli = SSL_new(tls12 ? cctx12 : cctx);
  p->in = BIO_new(BIO_s_mem());
  p->out = BIO_new(BIO_s_mem());
  SSL_set_bio(p->cli, p->in, p->out);
  SSL_set_connect_state(p->cli);
  if (resume) SSL_set_session(p->cli, resume);
  counting = 1;
  p->srv = sl_tls_new(tls12 ? sctx12 : sctx);
  counting = 0;
  if (!p->srv) return false;
  for (int i = 0; i < 4 && !SSL_is_init_finished(p->cli); i++) {
    SSL_do_handshake(p->cli);
    if (pump(p) != 0) return false;
  }
  static char req[400], ans[180];
  memset(req, 'q', sizeof req);
  memset(ans, 'a', sizeof ans);
  if (SSL_write(p->cli, req, sizeof req) != (int)sizeof req || pump(p) != 0) return false;
  uv_buf_t iov = uv_buf_init(ans, sizeof ans);
  size_t used = 0, ol = 0;
  const uint8_t *o = NULL;
  counting = 1;
  int r = sl_tls_encrypt(p->srv, &iov, 1, 1 << 20, &used, &o, &ol);
  counting = 0;
  if (r != 0 || used != sizeof ans) return false;
  BIO_write(p->in, o, (int)ol);
  client_drain(p); /* also reads the session tickets */
  return p->got == sizeof req && sl_tls_handshake_done(p->srv);
}

static void free_peer(peer *p) {
  SSL_free(p->cli);
  counting = 1;
  sl_tls_free(p->srv);
  counting = 0;
}

static int verbose;

static void print_sites(int n) {
  for (int i = 0; i < nsites; i++)
    if (sites[i].n > 0)
      printf("#   %5.2f x %7.1f B  %s:%d\n", (double)sites[i].n / n, (double)sites[i].bytes / n,
             sites[i].file, sites[i].line);
}

#define NCONN 64
static peer conns[NCONN], conns12[NCONN];

/* Connect NCONN peers (after a warm-up one, not counted: OpenSSL's global caches are built
 * once) and return the OpenSSL bytes per connection still allocated; *own: the bytes of
 * tls.c/tls_record.c per connection. */
static double measure(peer *ps, bool tls12, double *own, double *allocs) {
  peer warm;
  if (!connect_peer(&warm, NULL, tls12)) return -1;
  memset(sites, 0, sizeof sites);
  nsites = 0;
  live_n = live_bytes = 0;
  bool ok = true;
  size_t mine = 0;
  for (int i = 0; i < NCONN; i++) {
    ok &= connect_peer(&ps[i], NULL, tls12);
    mine += ps[i].srv ? sl_tls_conn_bytes(ps[i].srv) : 0;
  }
  free_peer(&warm);
  if (!ok) return -1;
  *own = (double)mine / NCONN;
  *allocs = (double)live_n / NCONN;
  return (double)live_bytes / NCONN;
}

TEST(idle_connection_bytes_tls13) {
  double own = 0, allocs = 0;
  double per = measure(conns, false, &own, &allocs);
  CHECK(per >= 0);
  printf("# TLS 1.3, records run by tls_record.c: OpenSSL keeps %.0f bytes in %.1f allocations "
         "per idle connection, tls.c + tls_record.c %.0f bytes (%s)\n",
         per, allocs, own, sl_tls_cipher_name(conns[0].srv));
  if (verbose) print_sites(NCONN);
  CHECK(sl_tls_offloaded(conns[0].srv));
  CHECK_EQ_STR(sl_tls_cipher_name(conns[0].srv), "TLS_AES_128_GCM_SHA256");
  CHECK_EQ_STR(sl_tls_version_name(conns[0].srv), "TLSv1.3");
  /* the SSL object and everything it held is gone: nothing of OpenSSL's per connection (was
   * 13,474 B in 32 allocations with the SSL object kept); our own state is the struct of
   * tls.c and tls_record.c's keys, IVs, secrets and sequence numbers */
  CHECK(per < 1.0);
  CHECK(own > 0 && own < 320);
}

TEST(idle_connection_bytes_tls12) {
  double own = 0, allocs = 0;
  double per = measure(conns12, true, &own, &allocs);
  CHECK(per >= 0);
  printf("# TLS 1.2, records run by OpenSSL: OpenSSL keeps %.0f bytes in %.1f allocations per "
         "idle connection, tls.c %.0f bytes (%s)\n",
         per, allocs, own, sl_tls_cipher_name(conns12[0].srv));
  if (verbose) print_sites(NCONN);
  CHECK(!sl_tls_offloaded(conns12[0].srv));
  CHECK_EQ_STR(sl_tls_fallback_reason(conns12[0].srv), "TLSv1.2");
  CHECK_EQ_STR(sl_tls_version_name(conns12[0].srv), "TLSv1.2");
  /* OpenSSL 3.0.x: ~12-14 KB (the SSL object alone is 7.6 KB); a record buffer left
   * allocated would add 16 KiB or more, a server-side session cache about a kilobyte */
  CHECK(per < 15000);
  for (int i = 0; i < nsites; i++) {
    if (sites[i].n > 0 && sites[i].bytes / sites[i].n >= 16384) {
      TL_FAIL("a record buffer stays allocated while idle: %ld bytes at %s:%d",
              sites[i].bytes / sites[i].n, sites[i].file, sites[i].line);
    }
  }
}

TEST(no_tls13_tickets_tls12_resumes) {
  /* TLS 1.3: no ticket was sent, so the client holds no resumable session */
  SSL_SESSION *s = SSL_get1_session(conns[0].cli);
  CHECK(s == NULL || !SSL_SESSION_is_resumable(s));
  SSL_SESSION_free(s);
  /* TLS 1.2: the stateless ticket resumes (no server-side session cache) */
  s = SSL_get1_session(conns12[0].cli);
  CHECK(s && SSL_SESSION_is_resumable(s));
  peer p;
  CHECK(connect_peer(&p, s, true));
  CHECK(SSL_session_reused(p.cli));
  free_peer(&p);
  SSL_SESSION_free(s);
}

TEST(nothing_left_after_free) {
  for (int i = 0; i < NCONN; i++) free_peer(&conns[i]), free_peer(&conns12[i]);
  /* what is left was allocated by a counted call and belongs to OpenSSL's global state
   * (a cache grown on first use), never a connection's: at most a few small allocations */
  if (verbose) print_sites(1);
  CHECK(live_bytes < 4096);
}

int main(int argc, char **argv) {
  verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
  if (!CRYPTO_set_mem_functions(mem_alloc, mem_realloc, mem_free)) {
    printf("not ok - CRYPTO_set_mem_functions refused (OpenSSL allocated before main?)\n"
           "0 passed, 1 failed\n");
    return 1;
  }
  if (!make_certs()) {
    printf("not ok - openssl could not make the test certificates\n0 passed, 1 failed\n");
    return 1;
  }
  char err[512];
  sl_tls_config c = {cert, key, NULL, 0x0304};
  sctx = sl_tls_ctx_new(&c, err, sizeof err);
  sl_tls_config c12 = {cert, key, NULL, 0x0303};
  sctx12 = sctx ? sl_tls_ctx_new(&c12, err, sizeof err) : NULL;
  cctx = SSL_CTX_new(TLS_client_method());
  cctx12 = SSL_CTX_new(TLS_client_method());
  if (!sctx || !sctx12 || !cctx || !cctx12) {
    printf("not ok - contexts: %s\n0 passed, 1 failed\n", sctx ? "client" : err);
    return 1;
  }
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_verify(cctx12, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_max_proto_version(cctx12, TLS1_2_VERSION);
  RUN(idle_connection_bytes_tls13);
  RUN(idle_connection_bytes_tls12);
  RUN(no_tls13_tickets_tls12_resumes);
  RUN(nothing_left_after_free);
  sl_tls_ctx_unref(sctx);
  sl_tls_ctx_unref(sctx12);
  SSL_CTX_free(cctx);
  SSL_CTX_free(cctx12);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return tl_report();
}
