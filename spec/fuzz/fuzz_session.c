/* fuzz_session.c - libFuzzer target for the Engine.IO and Socket.IO session state machines
 * (eio.c, sio.c, client.c and the delivery below them: lanes, acks, coalescing) on a real
 * session of a real gateway (fuzz_gw.h): a handshake, then several packets per input.
 *
 * Byte 0: bit 0 polling (each packet one POST, a GET pipelined behind it on a second
 * connection) or WebSocket; bit 1 first CONNECT /feed, /ack and /co with the valid token.
 * The rest is split at 0xff bytes (never part of valid UTF-8 text) into packets. A packet is
 * the Engine.IO packet text ("42/feed,1[...]"; several joined by 0x1e in one POST), unless
 * its first byte is one of:
 *   0x01  the gateway publishes (byte 1 picks the namespace/topic, byte 2 the coalesce key)
 *   0x02  ack the last messageId the client received (AT_LEAST_ONCE, namespace /ack)
 *   0x03  the rest is a binary packet (a Socket.IO attachment)
 *   0x04  polling only: upgrade to WebSocket (probe "2probe", then "5")
 *   0x05  wait 2 ms and run the loop (the 1 ms ack deadlines of /retry pass). The wait is
 *         real time, so it is skipped when no timer of the loop is due within it: then
 *         letting the time pass would change nothing the gateway does (fz_wait). */
#include "fuzz_gw.h"

/* Let ms milliseconds pass for the loop's timers, then run what came due. The time is real
 * (the loop reads the monotonic clock), so the wait is skipped when no timer is due within
 * it: the timers are the only thing the gateway does on the passing of time (its
 * timestamps and per-second windows do not change what it answers within a few ms). A
 * shorter sleep, only up to the next timer, was tried and lost coverage: the whole window
 * (and the sleep's overshoot) lets several retries come due together. */
static void fz_wait(int ms) {
  uv_update_time(&fz_loop);
  int next = uv_backend_timeout(&fz_loop);
  if (next >= 0 && next <= ms) usleep((useconds_t)ms * 1000);
  fz_pump();
}

typedef struct {
  int a, b, ws;        /* POST connection, GET connection, WebSocket (-1: none) */
  char sid[32];
  unsigned published;
} sess;

static void post(sess *s, const uint8_t *p, size_t n) {
  char head[256];
  int hl = snprintf(head, sizeof head,
                    "POST /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\n"
                    "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: %zu\r\n\r\n",
                    s->sid, n);
  uint8_t *req = malloc((size_t)hl + n);
  memcpy(req, head, (size_t)hl);
  memcpy(req + hl, p, n);
  fz_send(s->a, req, (size_t)hl + n);
  free(req);
  char get[160];
  snprintf(get, sizeof get, "GET /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\n\r\n",
           s->sid);
  fz_send_str(s->b, get);
}

static void packet(sess *s, const uint8_t *p, size_t n, bool binary) {
  if (s->ws >= 0) {
    fz_ws_send(s->ws, true, binary ? 2 : 1, p, n);
  } else if (binary) {
    char *t = malloc(2 + sl_b64_enclen(n));
    t[0] = 'b';
    size_t el = sl_b64_encode(p, n, t + 1);
    post(s, (const uint8_t *)t, el + 1);
    free(t);
  } else {
    post(s, p, n);
  }
}

static void text(sess *s, const char *t) { packet(s, (const uint8_t *)t, strlen(t), false); }

static void publish(sess *s, const uint8_t *p, size_t n) {
  static const char *const where[][2] = {
      {"/feed", "prices"}, {"/feed", "news"}, {"/ack", "q"}, {"/co", "s"}, {"/auth", "x"},
      {"/retry", "r"}};
  size_t w = n > 0 ? p[0] % 6 : 0;
  char json[96];
  snprintf(json, sizeof json, "{\"symbol\":\"%c\",\"n\":%u,\"pad\":\"%.*s\"}",
           'A' + (n > 1 ? p[1] % 3 : 0), s->published++, (int)(n > 2 ? (n - 2) % 40 : 0),
           "0123456789012345678901234567890123456789");
  fz_publish(where[w][0], where[w][1], json);
}

static void ack_last(sess *s) {
  int from = s->ws >= 0 ? s->ws : s->b;
  char id[64], t[160];
  if (from < 0 || !fz_find_string(from, "messageId", id, sizeof id)) return;
  snprintf(t, sizeof t, "42/ack,[\"ack\",{\"topic\":\"q\",\"messageId\":\"%s\"}]", id);
  text(s, t);
}

static void upgrade(sess *s) {
  if (s->ws >= 0 || !s->sid[0]) return;
  s->ws = fz_connect();
  if (s->ws < 0) return;
  char req[400];
  snprintf(req, sizeof req,
           "GET /socket.io/?EIO=4&transport=websocket&sid=%s HTTP/1.1\r\nHost: x\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
           s->sid);
  fz_send_str(s->ws, req);
  fz_ws_send(s->ws, true, 1, "2probe", 6);
  fz_ws_send(s->ws, true, 1, "5", 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t flags = data[0];
  sess s = {.a = -1, .b = -1, .ws = -1};
  fz_start();
  if (flags & 1) {
    s.a = fz_connect();
    s.b = fz_connect();
    if (s.a < 0 || s.b < 0) goto done;
    fz_send_str(s.a, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
    if (!fz_find_string(s.a, "sid", s.sid, sizeof s.sid)) goto done;
  } else {
    s.ws = fz_connect();
    if (s.ws < 0) goto done;
    fz_send_str(s.ws, fz_ws_upgrade);
  }
  if (flags & 2) {
    text(&s, "40/feed,{\"token\":\"good\"}");
    text(&s, "40/ack,{\"token\":\"good\"}");
    text(&s, "40/co,{\"token\":\"good\"}");
    text(&s, "40/retry,{\"token\":\"good\"}");
  }
  size_t pos = 1;
  while (pos < size) {
    const uint8_t *p = data + pos, *end = memchr(p, 0xff, size - pos);
    size_t n = end ? (size_t)(end - p) : size - pos;
    pos += n + 1;
    if (n == 0) continue;
    switch (p[0]) {
    case 1: publish(&s, p + 1, n - 1); break;
    case 2: ack_last(&s); break;
    case 3: packet(&s, p + 1, n - 1, true); break;
    case 4: upgrade(&s); break;
    case 5: fz_wait(2); break;
    default: packet(&s, p, n, false); break;
    }
    fz_pump();
  }
done:
  fz_finish();
  return 0;
}
