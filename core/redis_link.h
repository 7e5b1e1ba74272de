/* redis_link.h - one Redis connection on the gateway's loop (hiredis 0.14 async API with its
 * libuv adapter): URL parsing, connect, AUTH, SELECT, reconnect with exponential backoff
 * forever, and a command API that fails fast while the link is down.
 *
 * The owner (cluster.c, the emitter ingest) hands down two callbacks: on_up when the link is
 * usable (connected, authenticated, database selected) and on_down when it stops being usable
 * (with a one-line reason). Between on_down and the next on_up every command fails at once
 * with SL_ESTATE; the link retries by itself (100 ms doubling up to 2 s, with jitter), logs
 * the first failure and then at most one line per 30 s while it keeps failing, and never
 * spins. A link may be used in pub/sub mode: after SUBSCRIBE only the pub/sub commands are
 * valid on it (Redis's rule), and the SUBSCRIBE callback is called once per message.
 *
 * Everything runs on the loop thread. Nothing here knows about streams or Socket.IO. */
#ifndef SL_REDIS_LINK_H
#define SL_REDIS_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <uv.h>
#include <hiredis/hiredis.h>

/* A parsed redis:// URL. Strings are malloc'd and owned by the struct. */
typedef struct sl_redis_url {
  char *host; /* "127.0.0.1", "localhost", "::1" (brackets removed) */
  int port;   /* 6379 when absent */
  int db;     /* 0 when absent */
  char *user; /* NULL: none (AUTH <password> alone) */
  char *pass; /* NULL: no AUTH */
} sl_redis_url;

/* sl_redis_url_parse: parse `redis://[user:pass@]host[:port][/db]` into *out (zeroed first).
 * user and pass are percent-decoded; `redis://:pass@host` sets only the password. When the
 * URL has no password (or no user name), SLUICE_REDIS_PASSWORD (SLUICE_REDIS_USERNAME) from
 * the environment fills it when set and not empty. Returns 0, or SL_EINVAL with a one-line
 * reason in err (nothing left to free in *out): another scheme (rediss:// says TLS is not
 * supported), an empty host, a port outside 1..65535, a db that is not an integer in
 * 0..1000000, a query string or fragment, a user name without a password. */
int sl_redis_url_parse(const char *url, sl_redis_url *out, char *err, size_t errlen);

/* sl_redis_url_free: free the strings of u (not u itself) and zero it. NULL is a no-op. */
void sl_redis_url_free(sl_redis_url *u);

/* sl_redis_url_copy: a deep copy of src into *dst. Never fails (aborts on OOM). */
void sl_redis_url_copy(sl_redis_url *dst, const sl_redis_url *src);

/* sl_redis_url_equal: same host, port, db, user and password. */
bool sl_redis_url_equal(const sl_redis_url *a, const sl_redis_url *b);

typedef struct sl_redis_link sl_redis_link;

/* What the link announces to its owner. Both members may be NULL. Neither may free the link
 * (sl_redis_link_free is allowed everywhere else, including inside a command callback). */
typedef struct sl_redis_link_ops {
  /* on_up: the link is usable (after AUTH and SELECT succeeded). Called on the first connect
   * and after every reconnect. */
  void (*on_up)(sl_redis_link *l, void *ud);
  /* on_down: a link that was up stopped being usable (reason: "connection closed", "no
   * reply for 8000 ms", ...); failed connect attempts while down are only logged. Every
   * command pending on it has had its callback called with a NULL reply before this is
   * called. Not called by sl_redis_link_free. */
  void (*on_down)(sl_redis_link *l, void *ud, const char *reason);
} sl_redis_link_ops;

/* Counters of one link (for /metrics). */
typedef struct sl_redis_link_stats {
  bool up;
  uint64_t connects; /* times it came up */
  uint64_t failures; /* connect attempts that failed */
  uint64_t drops;    /* times it went down after being up */
  uint64_t commands; /* commands sent */
  uint64_t pending;  /* commands sent and not yet answered */
} sl_redis_link_stats;

/* sl_redis_link_new: a link to url (copied) on loop; name ("cluster", "cluster-read") only
 * names it in logs. It starts connecting at once (the first attempt runs from a zero
 * timeout, never inside this call). ops is copied; ud is passed back. Never NULL (aborts
 * on OOM). Release with sl_redis_link_free. Host names are resolved with a blocking
 * getaddrinfo (use IP addresses or names in /etc/hosts for a loop that must never wait). */
sl_redis_link *sl_redis_link_new(uv_loop_t *loop, const sl_redis_url *url, const char *name,
                                 const sl_redis_link_ops *ops, void *ud);

/* sl_redis_link_set_timeout: a command that gets no reply within ms milliseconds (measured
 * from when the oldest pending command was sent, or from the last reply received) makes the
 * link drop and reconnect ("no reply for N ms"). 0 (the default) disables it. A link used
 * for XREAD BLOCK b must be given more than b. A pub/sub link must keep 0. */
void sl_redis_link_set_timeout(sl_redis_link *l, uint64_t ms);

/* sl_redis_link_free: close the link: the connection is closed at once, pending callbacks
 * are NOT called (the owner is going away), no further on_up/on_down. Safe inside a command
 * callback of this link (the teardown then finishes when that callback returns). The
 * memory is released once libuv has closed the link's handles. NULL is a no-op. */
void sl_redis_link_free(sl_redis_link *l);

/* sl_redis_link_up: true between on_up and on_down. */
bool sl_redis_link_up(const sl_redis_link *l);

/* sl_redis_link_stats_get: the link's counters. */
void sl_redis_link_stats_get(const sl_redis_link *l, sl_redis_link_stats *st);

/* A command's reply: r is hiredis's reply (borrowed: valid only during the call; an error
 * reply has r->type == REDIS_REPLY_ERROR), or NULL when the link dropped before the reply
 * came (the command may or may not have been executed). Called exactly once per command,
 * except for SUBSCRIBE/PSUBSCRIBE: once per reply on that subscription (the subscribe
 * confirmation, then each message), then once with NULL when the link drops. Never called
 * after sl_redis_link_free. */
typedef void (*sl_redis_cb)(sl_redis_link *l, redisReply *r, void *ud);

/* sl_redis_link_cmd: send a command built from a hiredis format (%s a C string, %b a
 * pointer and a size_t length, %d/%lld integers). Commands sent in one loop iteration are
 * written together (a pipeline). cb may be NULL (the reply is ignored). Returns 0, or
 * SL_ESTATE when the link is not up (nothing sent, cb not called), or SL_EINVAL when the
 * format is invalid. */
int sl_redis_link_cmd(sl_redis_link *l, sl_redis_cb cb, void *ud, const char *fmt, ...);

/* sl_redis_link_cmd_argv: the same with argc arguments (argv[i] of argvlen[i] bytes, binary
 * safe; argvlen NULL: strlen). Returns 0, SL_ESTATE (not up), SL_EINVAL (argc < 1). */
int sl_redis_link_cmd_argv(sl_redis_link *l, sl_redis_cb cb, void *ud, int argc, const char **argv,
                           const size_t *argvlen);

#endif
