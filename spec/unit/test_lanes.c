/* test_lanes.c - lanes and overflow policies without sockets: a gateway built from a config
 * string (never started), a fake polling session with one Socket.IO socket, sl_publish to
 * fill the lane, sl_session_pull to drain it into the session's packet queue. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "sl_internal.h"
#include "delivery.h"
#include "gateway.h"
#include "testlib.h"

typedef struct {
  uv_loop_t loop;
  sluice_t *gw;
  sl_server *srv;
  sl_session *sess;
  sl_socket *sock;
  sl_topic *topic;
} fixture;

static int fx_open(fixture *f, const char *ns_opts) {
  char cfg[2048];
  snprintf(cfg, sizeof cfg,
           "return { servers = { main = { host = '127.0.0.1', port = 0, socketHighWaterBytes = 1000000,\n"
           "  namespaces = { { path = '/feed', topics = { 't', 'u' }, %s } } } } }\n",
           ns_opts);
  uv_loop_init(&f->loop);
  char err[512];
  f->gw = sluice_new_from_string(&f->loop, cfg, strlen(cfg), "lua", err, sizeof err);
  if (!f->gw) {
    fprintf(stderr, "config: %s\n", err);
    return -1;
  }
  sl_delivery_start(f->gw);
  f->srv = &f->gw->servers[0];
  f->sess = sl_xcalloc(1, sizeof *f->sess);
  f->sess->srv = f->srv;
  f->sess->transport = SL_TR_POLLING;
  f->sess->poll = sl_xcalloc(1, sizeof *f->sess->poll);
  f->sess->state = SL_ST_OPEN;
  sl_list_init(&f->sess->ready);
  f->sock = sl_xcalloc(1, sizeof *f->sock);
  f->sock->sess = f->sess;
  f->sock->ns = &f->srv->ns[0];
  f->sock->slot = SLUICE_NOSLOT;
  strcpy(f->sock->id, "client-1");
  sl_hash_put(&f->sock->ns->sockets, &f->sock->hent, f->sock->id);
  f->sess->sockets = f->sock;
  f->topic = sl_topic_find(f->sock->ns, "t", 1);
  return sl_subscribe(f->sock, f->topic);
}

static void fx_close(fixture *f) {
  sl_socket_drop_lanes(f->sock);
  sl_hash_del(&f->sock->ns->sockets, &f->sock->hent);
  free(f->sock);
  sl_mq_clear(&f->sess->poll->pq);
    free(f->sess->poll);
  if (f->sess->dirty) sl_list_del(&f->sess->dlink);
  free(f->sess);
  sluice_stop(f->gw, NULL, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  sluice_free(f->gw);
  uv_loop_close(&f->loop);
}

static void pub(fixture *f, const char *topic, const char *json, char *id) {
  sl_publish_opts o = {.source = SL_SRC_API};
  int r = sl_publish(f->gw, "/feed", topic, json, strlen(json), &o, id);
  if (r != 0) TL_FAIL("publish %s: %s", json, sl_strerror(r));
}

/* Drain the lanes and return the delivered payloads joined by ' ' (e.g. "1 4 5"). */
static const char *drain(fixture *f) {
  static char out[4096];
  out[0] = 0;
  sl_session_pull(f->sess, SIZE_MAX);
  while (f->sess->poll->pq.n) {
    sl_msg *m = sl_mq_pop(&f->sess->poll->pq);
    const char *p = (const char *)sl_msg_packet(m);
    /* 42/feed,["t",{"n":X}...] -> X */
    const char *n = strstr(p, "\"n\":");
    if (n) {
      size_t l = strlen(out);
      snprintf(out + l, sizeof out - l, "%s%d", l ? " " : "", atoi(n + 4));
    }
    sl_msg_unref(m);
  }
  f->sess->poll->pq_bytes = 0;
  return out;
}

static void burst(fixture *f, int n) {
  char j[64];
  for (int i = 1; i <= n; i++) {
    snprintf(j, sizeof j, "{\"n\":%d}", i);
    pub(f, "t", j, NULL);
  }
}

TEST(drop_oldest_keeps_the_newest_and_counts_each_drop) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'DROP_OLDEST', maxQueuedMessagesPerClient = 2") != 0) return;
  burst(&f, 5);
  CHECK_EQ_STR(drain(&f), "4 5");
  CHECK_EQ_INT(f.topic->m[SL_M_DROPPED], 3);
  CHECK_EQ_INT(f.topic->m[SL_M_PUBLISHED], 5);
  fx_close(&f);
}

TEST(reject_new_keeps_the_oldest) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'REJECT_NEW', maxQueuedMessagesPerClient = 2") != 0) return;
  burst(&f, 5);
  CHECK_EQ_STR(drain(&f), "1 2");
  CHECK_EQ_INT(f.topic->overflow[SL_OV_REJECT_NEW], 3);
  fx_close(&f);
}

TEST(coalesce_true_is_latest_value_wins) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'REJECT_NEW', coalesce = true, maxQueuedMessagesPerClient = 2") != 0) return;
  burst(&f, 5);
  CHECK_EQ_STR(drain(&f), "5");
  CHECK_EQ_INT(f.topic->m[SL_M_COALESCED], 4);
  fx_close(&f);
}

TEST(coalesce_action_alone_applies_when_full) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'COALESCE', maxQueuedMessagesPerClient = 2") != 0) return;
  burst(&f, 5);
  /* 1, 2 fit; 3, 4, 5 each replace the newest queued entry (no key: the topic is the key) */
  CHECK_EQ_STR(drain(&f), "1 5");
  CHECK_EQ_INT(f.topic->m[SL_M_COALESCED], 3);
  fx_close(&f);
}

TEST(coalesce_key_path_replaces_in_place_by_key) {
  fixture f;
  if (fx_open(&f, "coalesce = true, coalesceKey = 'sym', maxQueuedMessagesPerClient = 8") != 0) return;
  pub(&f, "t", "{\"sym\":\"A\",\"n\":1}", NULL);
  pub(&f, "t", "{\"sym\":\"B\",\"n\":2}", NULL);
  pub(&f, "t", "{\"sym\":\"A\",\"n\":3}", NULL);
  pub(&f, "t", "{\"n\":4}", NULL); /* no key: never coalesced */
  pub(&f, "t", "{\"n\":5}", NULL);
  CHECK_EQ_STR(drain(&f), "3 2 4 5");
  fx_close(&f);
}

TEST(nested_coalesce_key_path) {
  fixture f;
  if (fx_open(&f, "coalesce = true, coalesceKey = 'data.id'") != 0) return;
  pub(&f, "t", "{\"data\":{\"id\":7},\"n\":1}", NULL);
  pub(&f, "t", "{\"data\":{\"id\":8},\"n\":2}", NULL);
  pub(&f, "t", "{\"data\":{\"id\":7},\"n\":3}", NULL);
  CHECK_EQ_STR(drain(&f), "3 2");
  fx_close(&f);
}

/* Field-path keys are read from the text in place (sl_jscan.h); the rare shapes (escaped
 * names or values) go through cJSON. Either way a key is the same: 1 and 1.0 and 1e0 are
 * one key, "A" and "\u0041" are one key, a name written with an escape matches. */
TEST(coalesce_key_path_equal_values_written_differently) {
  fixture f;
  if (fx_open(&f, "coalesce = true, coalesceKey = 'k.id', maxQueuedMessagesPerClient = 16") != 0) return;
  pub(&f, "t", "{\"k\":{\"id\":1},\"n\":1}", NULL);
  pub(&f, "t", "{\"k\" : { \"id\" : 1.0 },\"n\":2}", NULL);
  pub(&f, "t", "{\"k\":{\"id\":1e0},\"n\":3}", NULL);
  pub(&f, "t", "{\"k\":{\"id\":\"A\"},\"n\":4}", NULL);
  pub(&f, "t", "{\"k\":{\"id\":\"\\u0041\"},\"n\":5}", NULL);
  pub(&f, "t", "{\"k\":{\"\\u0069d\":\"A\"},\"n\":6}", NULL);
  pub(&f, "t", "{\"k\":{\"id\":true},\"n\":7}", NULL);
  pub(&f, "t", "{\"k\":{\"id\":true},\"n\":8}", NULL);
  pub(&f, "t", "{\"k\":{\"id\":null},\"n\":9}", NULL);  /* no key */
  pub(&f, "t", "{\"k\":{\"id\":[1]},\"n\":10}", NULL); /* no key */
  pub(&f, "t", "{\"k\":7,\"n\":11}", NULL);             /* not an object: no key */
  /* of two names for "id", the first (escaped) one counts, as in cJSON: key "A" */
  pub(&f, "t", "{\"k\":{\"\\u0069d\":\"A\",\"id\":\"B\"},\"n\":12}", NULL);
  CHECK_EQ_STR(drain(&f), "3 12 8 9 10 11");
  fx_close(&f);
}

TEST(snapshot_only_keeps_the_newest_and_replays_it_to_new_subscribers) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'SNAPSHOT_ONLY', maxQueuedMessagesPerClient = 8") != 0) return;
  burst(&f, 5);
  CHECK_EQ_STR(drain(&f), "5");
  sl_unsubscribe(f.sock, f.topic);
  CHECK_EQ_INT(f.topic->nsubs, 0);
  CHECK_EQ_INT(sl_subscribe(f.sock, f.topic), 0);
  CHECK_EQ_STR(drain(&f), "5");
  fx_close(&f);
}

TEST(byte_cap_rejects_a_message_larger_than_the_lane) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'DROP_OLDEST', maxQueuedBytesPerClient = 10") != 0) return;
  pub(&f, "t", "{\"n\":1,\"pad\":\"xxxxxxxxxx\"}", NULL);
  pub(&f, "t", "{\"n\":2}", NULL);
  CHECK_EQ_STR(drain(&f), "2");
  CHECK_EQ_INT(f.topic->overflow[SL_OV_TOO_BIG], 1);
  fx_close(&f);
}

TEST(byte_cap_drops_oldest_until_it_fits) {
  fixture f;
  /* each payload {"n":X} is 7 bytes: 3 fit in 21 */
  if (fx_open(&f, "overflowAction = 'DROP_OLDEST', maxQueuedBytesPerClient = 21") != 0) return;
  burst(&f, 5);
  CHECK_EQ_STR(drain(&f), "3 4 5");
  fx_close(&f);
}

TEST(publish_to_reaches_only_the_named_subscriber) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'DROP_OLDEST'") != 0) return;
  sl_publish_opts o = {.to = "client-1"};
  CHECK_EQ_INT(sl_publish(f.gw, "/feed", "t", "{\"n\":1}", 7, &o, NULL), 0);
  o.to = "nobody";
  CHECK_EQ_INT(sl_publish(f.gw, "/feed", "t", "{\"n\":2}", 7, &o, NULL), 0);
  CHECK_EQ_STR(drain(&f), "1");
  fx_close(&f);
}

TEST(unknown_topic_and_bad_json_are_errors) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'DROP_OLDEST'") != 0) return;
  CHECK_EQ_INT(sl_publish(f.gw, "/feed", "nope", "1", 1, NULL, NULL), SL_ENOENT);
  CHECK_EQ_INT(sl_publish(f.gw, "/nope", "t", "1", 1, NULL, NULL), SL_ENOENT);
  CHECK_EQ_INT(sl_publish(f.gw, "/feed", "t", "{\"n\":", 5, NULL, NULL), SL_EINVAL);
  CHECK_EQ_STR(drain(&f), "");
  fx_close(&f);
}

TEST(at_least_once_window_ack_and_unknown_ids) {
  fixture f;
  if (fx_open(&f, "deliveryMode = 'AT_LEAST_ONCE', overflowAction = 'REJECT_NEW', maxRetries = 2,"
                  " maxInFlight = 1, maxQueuedMessagesPerClient = 4") != 0)
    return;
  char id1[SL_MSGID_MAX], id2[SL_MSGID_MAX], id3[SL_MSGID_MAX];
  pub(&f, "t", "{\"n\":1}", id1);
  pub(&f, "t", "{\"n\":2}", id2);
  pub(&f, "t", "{\"n\":3}", id3);
  CHECK(strncmp(id1, "msg-", 4) == 0);
  CHECK(strcmp(id1, id2) != 0);
  CHECK_EQ_STR(drain(&f), "1");       /* window of one */
  CHECK_EQ_STR(drain(&f), "");
  CHECK_EQ_INT(f.gw->acks.n, 1);
  /* an ack for a message that was never sent does not remove it (B8) */
  CHECK(!sl_delivery_ack(f.sock, f.topic, id3));
  CHECK(!sl_delivery_ack(f.sock, f.topic, "msg-unknown"));
  CHECK(sl_delivery_ack(f.sock, f.topic, id1));
  CHECK(!sl_delivery_ack(f.sock, f.topic, id1)); /* settles once */
  CHECK_EQ_STR(drain(&f), "2");
  CHECK(sl_delivery_ack(f.sock, f.topic, id2));
  CHECK_EQ_STR(drain(&f), "3");
  fx_close(&f);
}

TEST(at_least_once_counts_in_flight_against_the_cap) {
  fixture f;
  if (fx_open(&f, "deliveryMode = 'AT_LEAST_ONCE', overflowAction = 'REJECT_NEW', maxRetries = 1,"
                  " maxInFlight = 2, maxQueuedMessagesPerClient = 3") != 0)
    return;
  burst(&f, 2);
  CHECK_EQ_STR(drain(&f), "1 2");     /* both in flight */
  burst(&f, 3);                        /* room for one more: 1 of 3 accepted */
  CHECK_EQ_INT(f.topic->overflow[SL_OV_REJECT_NEW], 2);
  fx_close(&f);
}

TEST(unsubscribe_with_a_message_in_flight_never_wedges_the_lane) {
  fixture f;
  if (fx_open(&f, "deliveryMode = 'AT_LEAST_ONCE', overflowAction = 'REJECT_NEW', maxRetries = 1,"
                  " maxInFlight = 1") != 0)
    return;
  burst(&f, 1);
  CHECK_EQ_STR(drain(&f), "1");
  CHECK_EQ_INT(f.gw->acks.n, 1);
  sl_unsubscribe(f.sock, f.topic);
  CHECK_EQ_INT(f.gw->acks.n, 0);       /* its deadline left the heap */
  CHECK_EQ_INT(sl_subscribe(f.sock, f.topic), 0);
  burst(&f, 2);
  CHECK_EQ_STR(drain(&f), "1");       /* the new lane sends at once */
  fx_close(&f);
}

TEST(lanes_of_other_topics_are_independent) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'REJECT_NEW', maxQueuedMessagesPerClient = 1") != 0) return;
  sl_topic *u = sl_topic_find(f.sock->ns, "u", 1);
  CHECK_EQ_INT(sl_subscribe(f.sock, u), 0);
  pub(&f, "t", "{\"n\":1}", NULL);
  pub(&f, "u", "{\"n\":2}", NULL);
  pub(&f, "t", "{\"n\":3}", NULL); /* t is full: rejected; u unaffected */
  const char *d = drain(&f);
  CHECK(strcmp(d, "1 2") == 0 || strcmp(d, "2 1") == 0);
  fx_close(&f);
}

static void hold_cb(uv_timer_t *t) { *(int *)t->data = 1; }

/* Mark the session written, as the loop's flush does, and return what it pulls. */
static const char *flush_now(fixture *f) {
  if (f->sess->dirty) sl_list_del(&f->sess->dlink);
  f->sess->dirty = 0;
  return drain(f);
}

TEST(flush_interval_defers_to_one_window_closed_early_by_a_mark_or_a_half_full_lane) {
  fixture f;
  if (fx_open(&f, "flushIntervalMs = 20, maxQueuedMessagesPerClient = 8") != 0) return;
  sl_gateway *gw = f.gw;
  pub(&f, "t", "{\"n\":1}", NULL);
  CHECK_EQ_INT(f.sess->dirty, 2); /* waiting on the 20 ms window, not on the dirty list */
  CHECK(sl_list_empty(&gw->dirty));
  CHECK_EQ_INT(gw->nwindows, 1);
  pub(&f, "t", "{\"n\":2}", NULL); /* joins the same window */
  CHECK_EQ_INT(f.sess->dirty, 2);
  /* the window closes into the dirty list (a referenced timer keeps the loop waiting) */
  int held = 0;
  uv_timer_t hold;
  uv_timer_init(&f.loop, &hold);
  hold.data = &held;
  uv_timer_start(&hold, hold_cb, 2000, 0);
  while (sl_list_empty(&gw->dirty) && !held) uv_run(&f.loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&hold, NULL);
  CHECK(gw->dirty.next == &f.sess->dlink);
  CHECK_EQ_INT(gw->windows_closed, 1);
  CHECK_EQ_STR(flush_now(&f), "1 2");
  /* a control packet's mark closes the window early: the session moves to the dirty list */
  pub(&f, "t", "{\"n\":3}", NULL);
  CHECK_EQ_INT(f.sess->dirty, 2);
  sl_session_mark_dirty(f.sess);
  CHECK_EQ_INT(f.sess->dirty, 1);
  CHECK(gw->dirty.next == &f.sess->dlink && gw->dirty.prev == &f.sess->dlink);
  CHECK_EQ_STR(flush_now(&f), "3");
  /* a lane half full (4 of 8) does not wait: no window makes a lane overflow */
  burst(&f, 3);
  CHECK_EQ_INT(f.sess->dirty, 2);
  pub(&f, "t", "{\"n\":4}", NULL);
  CHECK_EQ_INT(f.sess->dirty, 1);
  CHECK_EQ_STR(flush_now(&f), "1 2 3 4");
  uv_run(&f.loop, UV_RUN_NOWAIT);
  fx_close(&f);
}

int main(void) {
  sl_log_threshold = SL_LOG_ERROR;
  RUN(drop_oldest_keeps_the_newest_and_counts_each_drop);
  RUN(reject_new_keeps_the_oldest);
  RUN(coalesce_true_is_latest_value_wins);
  RUN(coalesce_action_alone_applies_when_full);
  RUN(coalesce_key_path_replaces_in_place_by_key);
  RUN(coalesce_key_path_equal_values_written_differently);
  RUN(nested_coalesce_key_path);
  RUN(snapshot_only_keeps_the_newest_and_replays_it_to_new_subscribers);
  RUN(byte_cap_rejects_a_message_larger_than_the_lane);
  RUN(byte_cap_drops_oldest_until_it_fits);
  RUN(publish_to_reaches_only_the_named_subscriber);
  RUN(unknown_topic_and_bad_json_are_errors);
  RUN(at_least_once_window_ack_and_unknown_ids);
  RUN(at_least_once_counts_in_flight_against_the_cap);
  RUN(unsubscribe_with_a_message_in_flight_never_wedges_the_lane);
  RUN(lanes_of_other_topics_are_independent);
  RUN(flush_interval_defers_to_one_window_closed_early_by_a_mark_or_a_half_full_lane);
  return tl_report();
}
