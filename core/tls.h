/* tls.h - TLS with OpenSSL, as a protocol engine with no I/O (tls.c).
 *
 * Bottom layer: knows nothing of connections or servers. net.c drives it, the way it drives
 * http_parser: ciphertext that libuv read goes in (sl_tls_feed) and plaintext comes out
 * through a callback; plaintext to send goes in (sl_tls_encrypt) and ciphertext comes out
 * for net.c to write with its usual one-write-in-flight discipline.
 *
 * The record-layer handoff: OpenSSL runs the handshake; when it completes with TLS 1.3 and a
 * suite tls_record.c runs (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305), the SSL object is
 * freed and the connection's records are sealed and opened by tls_record.c from the two
 * application traffic secrets (taken from OpenSSL's key log callback): ~250 bytes per
 * connection instead of OpenSSL's ~13.5 KB. For the sequence numbers to be known, OpenSSL
 * must send nothing under those secrets: no TLS 1.3 session tickets (so no TLS 1.3
 * resumption), and the handoff happens as soon as the client's Finished is read, with the
 * records that followed it in the same read handed to the record layer. TLS 1.2, and any
 * handshake where one of those conditions does not hold, keeps OpenSSL (sl_tls_offloaded).
 *
 * Memory on the OpenSSL path: a connection owns only its SSL object (buffers released while
 * idle: SSL_MODE_RELEASE_BUFFERS). There is no BIO pair per connection: every SSL object shares
 * one BIO of a custom method (as uSockets does) whose read side is the ciphertext handed to
 * sl_tls_feed and whose write side appends to one process-wide output buffer; each call here
 * hands that output to its caller before it returns or calls back, so the buffer is empty
 * between calls and no connection's bytes can reach another. Single-threaded (one loop).
 *
 * Contexts (sl_tls_ctx: an SSL_CTX, the certificate's expiry) are refcounted: a server
 * holds one, every SSL object created from it holds the SSL_CTX, so a reload can put a new
 * context in place while established connections keep theirs. */
#ifndef SL_TLS_H
#define SL_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <uv.h>
#include "config.h"

typedef struct sl_tls_ctx sl_tls_ctx;
typedef struct sl_tls sl_tls; /* one connection: its SSL object, or its record layer */

/* sl_tls_ctx_new: build and validate a server context from cfg: the certificate chain and
 * private key files (decrypted with cfg->password when set; never prompts), the minimum
 * protocol version, the key matching the certificate, the certificate valid now. Returns a
 * context holding one reference, or NULL with a one-line message naming the key and file in
 * err ("certChainPemPath \"/x.pem\": No such file or directory", "... expired on ...",
 * "privateKeyPemPath \"...\" does not match the certificate ..."). */
sl_tls_ctx *sl_tls_ctx_new(const sl_tls_config *cfg, char *err, size_t errlen);

/* sl_tls_ctx_ref / sl_tls_ctx_unref: take / drop a reference (unref frees with the last;
 * NULL is a no-op for unref). */
sl_tls_ctx *sl_tls_ctx_ref(sl_tls_ctx *ctx);
void sl_tls_ctx_unref(sl_tls_ctx *ctx);

/* sl_tls_ctx_not_after: the leaf certificate's notAfter as Unix seconds. */
int64_t sl_tls_ctx_not_after(const sl_tls_ctx *ctx);

/* sl_tls_ctx_serial: the leaf certificate's serial number as uppercase hex (static buffer
 * of the context, valid while it lives). */
const char *sl_tls_ctx_serial(const sl_tls_ctx *ctx);

/* sl_tls_new: a server-side connection on ctx (which it references until sl_tls_free).
 * Returns NULL when OpenSSL cannot allocate it. */
sl_tls *sl_tls_new(sl_tls_ctx *ctx);

/* sl_tls_free: release a connection (NULL is a no-op). No close_notify is sent. */
void sl_tls_free(sl_tls *t);

/* What sl_tls_feed reports. Both run before sl_tls_feed returns, on the loop thread; they
 * may call sl_tls_encrypt (for this or any connection) but not sl_tls_feed. */
typedef struct sl_tls_sink {
  /* Decrypted application bytes (valid only during the call). Return nonzero to stop
   * feeding (the connection is closing); the rest of the input is then dropped. */
  int (*on_plain)(void *ud, const uint8_t *data, size_t len);
  /* Ciphertext the engine produced while reading (handshake messages, session tickets,
   * alerts): the caller must send it, in order, before anything encrypted later. */
  void (*on_cipher)(void *ud, const uint8_t *data, size_t len);
} sl_tls_sink;

#define SL_TLS_CLOSED 1 /* sl_tls_feed: the peer sent close_notify */

/* sl_tls_feed: give the engine len bytes of ciphertext read from the peer; runs the
 * handshake and delivers every complete record's plaintext to sink->on_plain. Returns 0
 * (more input wanted), SL_TLS_CLOSED, or SL_EIO on a handshake or protocol error (then
 * sl_tls_last_error says why; the caller closes the connection). */
int sl_tls_feed(sl_tls *t, const uint8_t *in, size_t len, const sl_tls_sink *sink, void *ud);

/* sl_tls_handshake_done: has the handshake completed on t? */
bool sl_tls_handshake_done(const sl_tls *t);

/* sl_tls_offloaded: after the handshake, does tls_record.c run t's records (true), or
 * OpenSSL (false; then sl_tls_fallback_reason says why)? False before the handshake. */
bool sl_tls_offloaded(const sl_tls *t);

/* sl_tls_fallback_reason: why a completed handshake kept OpenSSL's record layer ("TLSv1.2",
 * "cipher suite", ...; a static string), or NULL when it did not (or is not done). */
const char *sl_tls_fallback_reason(const sl_tls *t);

/* sl_tls_cipher_name: the negotiated suite's name ("TLS_AES_128_GCM_SHA256"), or "" before
 * the handshake. sl_tls_version_name: "TLSv1.3", "TLSv1.2", or "". Static strings. */
const char *sl_tls_cipher_name(const sl_tls *t);
const char *sl_tls_version_name(const sl_tls *t);

/* sl_tls_conn_bytes: the bytes t itself holds outside OpenSSL (this module's struct and the
 * record layer's state; OpenSSL's own allocations are counted by its allocator), for tests. */
size_t sl_tls_conn_bytes(const sl_tls *t);

/* sl_tls_last_error: a static description of the last sl_tls_feed / sl_tls_encrypt error. */
const char *sl_tls_last_error(void);

/* sl_tls_encrypt: encrypt up to max plaintext bytes gathered from iov[0..n) (records of at
 * most 16 KiB; small buffers are coalesced into one record). On success *consumed is the
 * number of plaintext bytes taken and *out / *outlen the ciphertext, valid until the next
 * call into this module. Returns 0 or SL_EIO (the connection is broken). Only after the
 * handshake (before it, returns 0 with *consumed = 0). */
int sl_tls_encrypt(sl_tls *t, const uv_buf_t *iov, unsigned n, size_t max, size_t *consumed,
                   const uint8_t **out, size_t *outlen);

#endif
