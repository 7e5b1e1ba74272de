/* tls_record.h - the TLS 1.3 record layer after the handshake, with libcrypto (tls_record.c).
 *
 * A userspace "kTLS": OpenSSL runs the handshake (tls.c), hands over the two application
 * traffic secrets, and is freed; from then on a connection is a few hundred bytes here (the
 * two traffic secrets, keys and IVs, the sequence numbers) instead of OpenSSL's ~13.5 KB
 * SSL object. RFC 8446 §5.2 record protection, §7.1/§7.3 key derivation, §4.6.3 KeyUpdate.
 *
 * Bottom layer, no I/O, single-threaded (one loop): the cipher contexts are shared by every
 * connection (one to seal, one to open) and keyed per record. Secrets never leave this
 * module once handed in and are wiped (OPENSSL_cleanse) when replaced or freed. */
#ifndef SL_TLS_RECORD_H
#define SL_TLS_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "sl_util.h"

typedef struct sl_tls_rec sl_tls_rec;

#define SL_TLS_REC_MAX_PLAIN 16384          /* 2^14: the most plaintext one record carries */
#define SL_TLS_REC_MAX_CIPHER (16384 + 256) /* 2^14 + 256: the longest record body accepted */
#define SL_TLS_REC_OVERHEAD (5 + 1 + 16)    /* header, inner content type, AEAD tag */
#define SL_TLS_REC_CLOSED 1                 /* sl_tls_rec_feed: the peer sent close_notify */

/* sl_tls_rec_suite: the record layer's id for a TLS 1.3 cipher suite given as OpenSSL's
 * SSL_CIPHER_get_id (0x03001301 AES-128-GCM-SHA256, 0x03001302 AES-256-GCM-SHA384,
 * 0x03001303 CHACHA20-POLY1305-SHA256), or 0 when the suite is not one it runs. */
int sl_tls_rec_suite(uint32_t openssl_cipher_id);

/* sl_tls_rec_new: a record layer for a server connection whose handshake just completed,
 * from the application traffic secrets (client_application_traffic_secret_0 and
 * server_application_traffic_secret_0, each the suite's hash length: 32 or 48 bytes).
 * Both sequence numbers start at 0: the caller guarantees no record was sent or read under
 * these secrets. The secrets are copied (the caller wipes its own). Returns NULL with
 * *why set (a static string) when the suite or a length is wrong or libcrypto fails. */
sl_tls_rec *sl_tls_rec_new(int suite, const uint8_t *client_secret, const uint8_t *server_secret,
                           size_t secret_len, const char **why);

/* sl_tls_rec_free: wipe and free (NULL is a no-op). */
void sl_tls_rec_free(sl_tls_rec *r);

/* sl_tls_rec_size: bytes this connection's record layer holds (its struct, plus a partial
 * record kept between reads), for tests and accounting. */
size_t sl_tls_rec_size(const sl_tls_rec *r);

/* sl_tls_rec_seal: append to out one application-data record carrying len plaintext bytes
 * (1..SL_TLS_REC_MAX_PLAIN) gathered from iov[*i] at offset *off onward; advances *i / *off
 * past them (the caller guarantees iov holds len bytes from there). Returns 0, or SL_EIO
 * with *why set when the write sequence number is exhausted or libcrypto fails (the
 * connection must then be closed). */
int sl_tls_rec_seal(sl_tls_rec *r, const uv_buf_t *iov, unsigned n, unsigned *i, size_t *off,
                    size_t len, sl_sbuf *out, const char **why);

/* What sl_tls_rec_feed reports, before it returns, on the loop thread. */
typedef struct sl_tls_rec_sink {
  /* Decrypted application data (valid only during the call). Nonzero stops reading: the
   * rest of the input is dropped. May seal for any connection, not feed. */
  int (*on_plain)(void *ud, const uint8_t *data, size_t len);
  /* A record the layer must send itself (the answer to a KeyUpdate that asked for one),
   * to be sent in order before anything sealed later. */
  void (*on_cipher)(void *ud, const uint8_t *data, size_t len);
} sl_tls_rec_sink;

/* sl_tls_rec_feed: len bytes of ciphertext read from the peer. Opens every complete record
 * and delivers its data; a trailing partial record is kept (allocated to its announced
 * length, at most SL_TLS_REC_MAX_CIPHER + 5) until the next feed completes it. Handles
 * KeyUpdate (updating the read keys; and the write keys after sending its own KeyUpdate
 * when the peer asks). Returns 0 (more input wanted), SL_TLS_REC_CLOSED (close_notify), or
 * SL_EIO with *why set: a tag that does not verify ("bad record MAC"), an outer type other
 * than application data, a record too long, another alert, a handshake message other than
 * KeyUpdate, an empty inner plaintext, a sequence number exhausted. After an error the
 * connection must be closed (nothing is sent: a bad_record_mac alert is not worth it). */
int sl_tls_rec_feed(sl_tls_rec *r, const uint8_t *in, size_t len, const sl_tls_rec_sink *sink,
                    void *ud, const char **why);

#endif
