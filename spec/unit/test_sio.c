/* test_sio.c - the Socket.IO layer alone: a gateway built from a config string (never
 * started), a fake polling session, and a recording sl_sio_handler in place of the
 * StreamFenceJs client layer. Packets go in through sl_sio_message and come out of the
 * session's packet queue; what sio told the layer above is in the recorder. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "sl_internal.h"
#include "sio.h"
#include "sio_codec.h"
#include "testlib.h"

typedef struct {
  int connects, joins, events, closes;
  char auth[128];           /* the CONNECT payload as text ("" when none) */
  char event[64];
  char args[256];
  size_t natts;
  char att0[64];
  int64_t ack_id;
  char close_reason[64];    /* "(refused)" for on_close(sock, NULL) */
  bool refuse;              /* on_connect refuses with "no" / code "NOPE" */
  bool emit_in_connect;     /* on_connect emits ["hi"] while sock->connecting is set */
  bool no_ns;               /* find_ns answers NULL */
} recorder;

static recorder rec;
static sl_server *cur_srv;

static sl_ns *fake_find_ns(sl_server *srv, const char *path, size_t len) {
  if (rec.no_ns) return NULL;
  return len == srv->ns[0].pathlen && memcmp(path, srv->ns[0].path, len) == 0 ? &srv->ns[0] : NULL;
}

static bool fake_connect(sl_socket *sock, const cJSON *auth, char *why, size_t why_len,
                         const char **code) {
  rec.connects++;
  char *t = auth ? cJSON_PrintUnformatted(auth) : NULL;
  snprintf(rec.auth, sizeof rec.auth, "%s", t ? t : "");
  free(t);
  if (rec.emit_in_connect) {
    sock->connecting = 1;
    sl_socket_emit(sock, "[\"hi\"]", 6, NULL, 0);
    sock->connecting = 0;
  }
  if (rec.refuse) {
    snprintf(why, why_len, "no");
    *code = "NOPE";
    return false;
  }
  sock->principal = sl_xstrdup("p1"); /* sio frees it with the socket */
  return true;
}

static void fake_joined(sl_socket *sock) { rec.joins++; }

static void fake_event(sl_socket *sock, const char *ev, cJSON *args, const sl_bin *atts,
                       size_t natts, int64_t ack_id) {
  rec.events++;
  snprintf(rec.event, sizeof rec.event, "%s", ev);
  char *t = cJSON_PrintUnformatted(args);
  snprintf(rec.args, sizeof rec.args, "%s", t ? t : "");
  free(t);
  rec.natts = natts;
  rec.att0[0] = 0;
  if (natts) snprintf(rec.att0, sizeof rec.att0, "%.*s", (int)atts[0].len, atts[0].data);
  rec.ack_id = ack_id;
}

static void fake_close(sl_socket *sock, const char *reason) {
  rec.closes++;
  snprintf(rec.close_reason, sizeof rec.close_reason, "%s", reason ? reason : "(refused)");
}

static const sl_sio_handler fake = {
    .find_ns = fake_find_ns,
    .on_connect = fake_connect,
    .on_joined = fake_joined,
    .on_event = fake_event,
    .on_close = fake_close,
};

typedef struct {
  uv_loop_t loop;
  sluice_t *gw;
  sl_session *sess;
} fixture;

static int fx_open(fixture *f) {
  static const char cfg[] =
      "return { servers = { main = { host = '127.0.0.1', port = 0,\n"
      "  namespaces = { { path = '/feed', topics = { 't' } } } } } }\n";
  memset(&rec, 0, sizeof rec);
  uv_loop_init(&f->loop);
  char err[512];
  f->gw = sluice_new_from_string(&f->loop, cfg, strlen(cfg), "lua", err, sizeof err);
  if (!f->gw) {
    fprintf(stderr, "config: %s\n", err);
    return -1;
  }
  cur_srv = &f->gw->servers[0];
  cur_srv->sio_handler = &fake;
  f->sess = sl_xcalloc(1, sizeof *f->sess);
  f->sess->srv = cur_srv;
  f->sess->transport = SL_TR_POLLING;
  f->sess->poll = sl_xcalloc(1, sizeof *f->sess->poll);
  f->sess->state = SL_ST_OPEN;
  sl_list_init(&f->sess->ready);
  return 0;
}

static void fx_close(fixture *f) {
  sl_sio_session_closed(f->sess, "transport close");
  sl_sio_free_dead(f->gw);
  sl_mq_clear(&f->sess->poll->pq);
    free(f->sess->poll);
  if (f->sess->dirty) sl_list_del(&f->sess->dlink);
  free(f->sess);
  sluice_stop(f->gw, NULL, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  sluice_free(f->gw);
  uv_loop_close(&f->loop);
}

static void feed(fixture *f, const char *packet) {
  sl_sio_message(f->sess, (const uint8_t *)packet, strlen(packet), false);
}

/* The next packet sio queued on the session, as text ("" when none). */
static const char *next_out(fixture *f) {
  static char out[512];
  out[0] = 0;
  if (!f->sess->poll->pq.n) return out;
  sl_msg *m = sl_mq_pop(&f->sess->poll->pq);
  snprintf(out, sizeof out, "%.*s", (int)m->len, (const char *)sl_msg_packet(m));
  sl_msg_unref(m);
  return out;
}

TEST(connect_accepted_replies_with_the_sid_then_what_on_connect_emitted) {
  fixture f;
  if (fx_open(&f)) { TL_FAIL("fixture"); return; }
  rec.emit_in_connect = true;
  feed(&f, "0/feed,{\"token\":\"abc\"}");
  CHECK_EQ_INT(rec.connects, 1);
  CHECK_EQ_STR(rec.auth, "{\"token\":\"abc\"}");
  CHECK_EQ_INT(rec.joins, 1);
  sl_socket *sock = f.sess->sockets;
  CHECK(sock != NULL);
  if (sock) {
    char want[64];
    snprintf(want, sizeof want, "40/feed,{\"sid\":\"%s\"}", sl_socket_id(sock));
    CHECK_EQ_STR(next_out(&f), want);
    CHECK_EQ_STR(sl_socket_principal(sock), "p1");
    CHECK_EQ_INT(f.gw->servers[0].ns[0].connections, 1);
  }
  CHECK_EQ_STR(next_out(&f), "42/feed,[\"hi\"]");
  CHECK_EQ_STR(next_out(&f), "");
  fx_close(&f);
  CHECK_EQ_INT(rec.closes, 1);
  CHECK_EQ_STR(rec.close_reason, "transport close");
}

TEST(connect_refused_sends_connect_error_and_never_joins) {
  fixture f;
  if (fx_open(&f)) { TL_FAIL("fixture"); return; }
  rec.refuse = true;
  rec.emit_in_connect = true; /* held, then dropped with the socket */
  feed(&f, "0/feed,");
  CHECK_EQ_STR(rec.auth, "");
  CHECK_EQ_STR(next_out(&f), "44/feed,{\"message\":\"no\",\"data\":{\"code\":\"NOPE\"}}");
  CHECK_EQ_STR(next_out(&f), "");
  CHECK_EQ_INT(rec.joins, 0);
  CHECK_EQ_INT(rec.closes, 1);
  CHECK_EQ_STR(rec.close_reason, "(refused)");
  CHECK(f.sess->sockets == NULL);
  fx_close(&f);
  CHECK_EQ_INT(rec.closes, 1);
}

TEST(unknown_namespace_is_a_connect_error) {
  fixture f;
  if (fx_open(&f)) { TL_FAIL("fixture"); return; }
  rec.no_ns = true;
  feed(&f, "0/nope,");
  CHECK_EQ_INT(rec.connects, 0);
  CHECK_EQ_STR(next_out(&f), "44/nope,{\"message\":\"Invalid namespace\"}");
  fx_close(&f);
}

TEST(event_reaches_on_event_with_the_whole_array_and_ack_id) {
  fixture f;
  if (fx_open(&f)) { TL_FAIL("fixture"); return; }
  feed(&f, "0/feed,");
  next_out(&f);
  feed(&f, "2/feed,7[\"hello\",{\"a\":1}]");
  CHECK_EQ_INT(rec.events, 1);
  CHECK_EQ_STR(rec.event, "hello");
  CHECK_EQ_STR(rec.args, "[\"hello\",{\"a\":1}]");
  CHECK_EQ_INT(rec.ack_id, 7);
  CHECK_EQ_INT(rec.natts, 0);
  feed(&f, "2/feed,[42]"); /* a numeric event name reaches the handler as text */
  CHECK_EQ_STR(rec.event, "42");
  CHECK_EQ_INT(rec.ack_id, -1);
  fx_close(&f);
}

TEST(binary_event_is_reassembled_before_on_event) {
  fixture f;
  if (fx_open(&f)) { TL_FAIL("fixture"); return; }
  feed(&f, "0/feed,");
  next_out(&f);
  feed(&f, "51-/feed,[\"up\",{\"_placeholder\":true,\"num\":0}]");
  CHECK_EQ_INT(rec.events, 0);
  sl_sio_message(f.sess, (const uint8_t *)"\x01\x02", 2, true);
  CHECK_EQ_INT(rec.events, 1);
  CHECK_EQ_STR(rec.event, "up");
  CHECK_EQ_INT(rec.natts, 1);
  CHECK_EQ_STR(rec.att0, "\x01\x02");
  fx_close(&f);
}

/* Found by fuzz_session (spec/fuzz/corpus/fuzz_session/crash-binary-nul-in-json): the header
 * of a binary event was kept with a string copy that stopped at a NUL inside the JSON text
 * but was parsed with the full length, reading past the copy. */
TEST(binary_event_header_with_a_nul_is_kept_whole) {
  fixture f;
  if (fx_open(&f)) { TL_FAIL("fixture"); return; }
  feed(&f, "0/feed,");
  next_out(&f);
  static const char pk[] = "51-/feed,[\"up\",{\"k\":\"a\0b\"},{\"_placeholder\":true,\"num\":0}]";
  sl_sio_message(f.sess, (const uint8_t *)pk, sizeof pk - 1, false);
  CHECK_EQ_INT(rec.events, 0);
  sl_sio_message(f.sess, (const uint8_t *)"\x01\x02", 2, true);
  CHECK_EQ_INT(rec.events, 1);
  CHECK_EQ_STR(rec.event, "up");
  CHECK_EQ_INT(rec.natts, 1);
  CHECK_EQ_INT(rec.closes, 0);
  fx_close(&f);
}

TEST(disconnect_and_server_kick_close_the_socket_once) {
  fixture f;
  if (fx_open(&f)) { TL_FAIL("fixture"); return; }
  feed(&f, "0/feed,");
  next_out(&f);
  feed(&f, "1/feed,");
  CHECK_EQ_INT(rec.closes, 1);
  CHECK_EQ_STR(rec.close_reason, "client namespace disconnect");
  CHECK(f.sess->sockets == NULL);
  CHECK_EQ_INT(f.gw->servers[0].ns[0].disconnections, 1);
  CHECK(f.gw->dead != NULL); /* freed at the safe point, not in the callback */
  sl_sio_free_dead(f.gw);
  CHECK(f.gw->dead == NULL);

  feed(&f, "0/feed,");
  next_out(&f);
  sl_socket *sock = f.sess->sockets;
  sl_socket_disconnect(sock);
  sl_socket_disconnect(sock); /* idempotent until freed */
  CHECK_EQ_STR(next_out(&f), "41/feed,");
  CHECK_EQ_INT(rec.closes, 2);
  CHECK_EQ_STR(rec.close_reason, "io server disconnect");
  CHECK_EQ_INT(sl_socket_emit(sock, "[\"x\"]", 5, NULL, 0), SL_ESTATE);
  fx_close(&f);
  CHECK_EQ_INT(rec.closes, 2);
}

int main(void) {
  sl_log_threshold = SL_LOG_ERROR;
  RUN(connect_accepted_replies_with_the_sid_then_what_on_connect_emitted);
  RUN(connect_refused_sends_connect_error_and_never_joins);
  RUN(unknown_namespace_is_a_connect_error);
  RUN(event_reaches_on_event_with_the_whole_array_and_ack_id);
  RUN(binary_event_is_reassembled_before_on_event);
  RUN(binary_event_header_with_a_nul_is_kept_whole);
  RUN(disconnect_and_server_kick_close_the_socket_once);
  return tl_report();
}
