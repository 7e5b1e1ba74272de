/* test_publish_remote.c - sl_publish_remote (publish.h): delivery of messages the cluster bus
 * already routed (rooms = client ids, except, the origin's coalesce key, message id and
 * snapshot state), and the bus hook a cluster sets on a server (deliver here, taken, full).
 * A gateway from a config string (never started), two fake polling sessions. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "sl_internal.h"
#include "delivery.h"
#include "gateway.h"
#include "publish.h"
#include "testlib.h"

typedef struct {
  uv_loop_t loop;
  sluice_t *gw;
  sl_server *srv;
  sl_ns *ns;
  sl_session *sess[2];
  sl_socket *sock[2];
  sl_topic *topic;
} fixture;

static int fx_open(fixture *f, const char *ns_opts) {
  char cfg[2048];
  snprintf(cfg, sizeof cfg,
           "return { servers = { main = { host = '127.0.0.1', port = 0, socketHighWaterBytes = "
           "1000000,\n  namespaces = { { path = '/feed', topics = { 't', 'u' }, %s } } } } }\n",
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
  f->ns = &f->srv->ns[0];
  f->topic = sl_topic_find(f->ns, "t", 1);
  for (int i = 0; i < 2; i++) {
    sl_session *s = f->sess[i] = sl_xcalloc(1, sizeof *s);
    s->srv = f->srv;
    s->transport = SL_TR_POLLING;
    s->poll = sl_xcalloc(1, sizeof *s->poll);
    s->state = SL_ST_OPEN;
    sl_list_init(&s->ready);
    sl_socket *k = f->sock[i] = sl_xcalloc(1, sizeof *k);
    k->sess = s;
    k->ns = f->ns;
    k->slot = SLUICE_NOSLOT;
    snprintf(k->id, sizeof k->id, "client-%d", i + 1);
    sl_hash_put(&f->ns->sockets, &k->hent, k->id);
    s->sockets = k;
    if (sl_subscribe(k, f->topic) != 0) return -1;
  }
  return 0;
}

static void fx_close(fixture *f) {
  for (int i = 0; i < 2; i++) {
    sl_socket_drop_lanes(f->sock[i]);
    sl_hash_del(&f->ns->sockets, &f->sock[i]->hent);
    free(f->sock[i]);
    sl_mq_clear(&f->sess[i]->poll->pq);
    free(f->sess[i]->poll);
    if (f->sess[i]->dirty) sl_list_del(&f->sess[i]->dlink);
    free(f->sess[i]);
  }
  f->srv->bus = NULL;
  sluice_stop(f->gw, NULL, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  sluice_free(f->gw);
  uv_loop_close(&f->loop);
}

/* The packets session i got, joined by '|'. */
static const char *drain(fixture *f, int i) {
  static char out[8192];
  out[0] = 0;
  sl_session_pull(f->sess[i], SIZE_MAX);
  while (f->sess[i]->poll->pq.n) {
    sl_msg *m = sl_mq_pop(&f->sess[i]->poll->pq);
    size_t l = strlen(out);
    snprintf(out + l, sizeof out - l, "%s%.*s", l ? "|" : "", (int)m->len,
             (const char *)sl_msg_packet(m));
    sl_msg_unref(m);
  }
  f->sess[i]->poll->pq_bytes = 0;
  return out;
}

static int remote(fixture *f, const char *topic, const char *json, const sl_remote_opts *o) {
  return sl_publish_remote(f->gw, f->ns, topic, strlen(topic), json, strlen(json), o);
}

TEST(every_subscriber_rooms_and_except) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'DROP_OLDEST'") != 0) return;
  CHECK_EQ_INT(remote(&f, "t", "{\"n\":1}", NULL), 0);
  CHECK_EQ_STR(drain(&f, 0), "42/feed,[\"t\",{\"n\":1}]");
  CHECK_EQ_STR(drain(&f, 1), "42/feed,[\"t\",{\"n\":1}]");
  const char *rooms[] = {"client-2", "some-room"};
  sl_remote_opts o = {.rooms = rooms, .nrooms = 2};
  CHECK_EQ_INT(remote(&f, "t", "{\"n\":2}", &o), 0);
  CHECK_EQ_STR(drain(&f, 0), "");
  CHECK_EQ_STR(drain(&f, 1), "42/feed,[\"t\",{\"n\":2}]");
  const char *ex[] = {"client-1"};
  sl_remote_opts e = {.except = ex, .nexcept = 1};
  CHECK_EQ_INT(remote(&f, "t", "{\"n\":3}", &e), 0);
  CHECK_EQ_STR(drain(&f, 0), "");
  CHECK_EQ_STR(drain(&f, 1), "42/feed,[\"t\",{\"n\":3}]");
  sl_remote_opts both = {.rooms = rooms, .nrooms = 1, .except = rooms, .nexcept = 1};
  CHECK_EQ_INT(remote(&f, "t", "{\"n\":4}", &both), 0);
  CHECK_EQ_STR(drain(&f, 1), "");
  fx_close(&f);
}

TEST(errors) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'DROP_OLDEST'") != 0) return;
  CHECK_EQ_INT(remote(&f, "nope", "1", NULL), SL_ENOENT);
  CHECK_EQ_INT(remote(&f, "t", "{\"a\":01}", NULL), SL_EINVAL);
  CHECK_EQ_INT(remote(&f, "t", "{", NULL), SL_EINVAL);
  CHECK_EQ_INT(sl_publish_remote(f.gw, f.ns, NULL, 0, "1", 1, NULL), SL_EINVAL);
  CHECK_EQ_STR(drain(&f, 0), "");
  fx_close(&f);
}

TEST(origin_key_coalesces) {
  fixture f;
  /* keyed by "sym" here, but the payloads have none: the origin's key is used as is */
  if (fx_open(&f, "coalesce = true, coalesceKey = 'sym', maxQueuedMessagesPerClient = 8") != 0)
    return;
  sl_remote_opts a = {.key = "A"}, b = {.key = "B"};
  remote(&f, "t", "{\"n\":1}", &a);
  remote(&f, "t", "{\"n\":2}", &b);
  remote(&f, "t", "{\"n\":3}", &a);
  CHECK_EQ_STR(drain(&f, 0), "42/feed,[\"t\",{\"n\":3}]|42/feed,[\"t\",{\"n\":2}]");
  fx_close(&f);
}

TEST(origin_message_id) {
  fixture f;
  if (fx_open(&f,
              "deliveryMode = 'AT_LEAST_ONCE', maxRetries = 1, overflowAction = 'REJECT_NEW'") != 0)
    return;
  sl_remote_opts o = {.msgid = "msg-origin-7"};
  CHECK_EQ_INT(remote(&f, "t", "1", &o), 0);
  CHECK(strstr(drain(&f, 0), "\"messageId\":\"msg-origin-7\"") != NULL);
  CHECK_EQ_INT(remote(&f, "t", "2", NULL), 0); /* from a socket.io node: one is made here */
  CHECK(strstr(drain(&f, 1), "\"messageId\":\"msg-") != NULL);
  fx_close(&f);
}

TEST(snapshot_state_from_the_origin) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'DROP_OLDEST'") != 0) return;
  sl_remote_opts o = {.snapshot_set = true, .snapshot = "{\"s\":1}", .snapshot_len = 7};
  CHECK_EQ_INT(remote(&f, "t", "{\"d\":1}", &o), 0);
  CHECK_EQ_STR(f.topic->snap_json, "{\"s\":1}");
  drain(&f, 0);
  sl_unsubscribe(f.sock[0], f.topic);
  CHECK_EQ_INT(sl_subscribe(f.sock[0], f.topic), 0);
  CHECK_EQ_STR(drain(&f, 0), "42/feed,[\"t\",{\"s\":1}]");
  sl_remote_opts clear = {.snapshot_set = true};
  CHECK_EQ_INT(remote(&f, "t", "{\"d\":2}", &clear), 0);
  CHECK(f.topic->snap_json == NULL);
  CHECK(f.topic->last == NULL);
  fx_close(&f);
}

/* ---- the bus hook ---------------------------------------------------------------------- */

static int bus_answer, bus_calls;
static char bus_seen[512];
static int fake_bus(void *ud, const sl_bus_pub *p) {
  bus_calls++;
  snprintf(bus_seen, sizeof bus_seen, "%s %.*s key=%s to=%zu%s%s", p->topic->name, (int)p->len,
           p->payload, p->key ? p->key : "-", p->nto, p->nto ? ":" : "", p->nto ? p->to[0] : "");
  return bus_answer;
}

TEST(bus_hook) {
  fixture f;
  if (fx_open(&f, "overflowAction = 'DROP_OLDEST', coalesceKey = 'k'") != 0) return;
  f.srv->bus = fake_bus;
  sl_publish_opts po = {.source = SL_SRC_API};
  bus_answer = SL_BUS_TAKEN;
  CHECK_EQ_INT(sl_publish(f.gw, "/feed", "t", "{\"k\":\"x\"}", 9, &po, NULL), 0);
  CHECK_EQ_INT(bus_calls, 1);
  CHECK_EQ_STR(bus_seen, "t {\"k\":\"x\"} key=x to=0");
  CHECK_EQ_STR(drain(&f, 0), ""); /* taken: delivered when the bus brings it back */
  bus_answer = SL_BUS_LOCAL;
  po.to = "client-2";
  CHECK_EQ_INT(sl_publish(f.gw, "/feed", "t", "{\"k\":\"y\"}", 9, &po, NULL), 0);
  CHECK_EQ_STR(bus_seen, "t {\"k\":\"y\"} key=y to=1:client-2");
  CHECK_EQ_STR(drain(&f, 1), "42/feed,[\"t\",{\"k\":\"y\"}]");
  bus_answer = SL_EFULL;
  po.to = NULL;
  CHECK_EQ_INT(sl_publish(f.gw, "/feed", "t", "{\"k\":\"z\"}", 9, &po, NULL), SL_EFULL);
  CHECK_EQ_STR(drain(&f, 0), "");
  /* what the bus delivers does not go back to the bus */
  int calls = bus_calls;
  CHECK_EQ_INT(remote(&f, "t", "{\"k\":\"w\"}", NULL), 0);
  CHECK_EQ_INT(bus_calls, calls);
  CHECK_EQ_STR(drain(&f, 0), "42/feed,[\"t\",{\"k\":\"w\"}]");
  fx_close(&f);
}

int main(void) {
  sl_log_threshold = getenv("SLUICE_TEST_VERBOSE") ? SL_LOG_DEBUG : SL_LOG_ERROR;
  RUN(every_subscriber_rooms_and_except);
  RUN(errors);
  RUN(origin_key_coalesces);
  RUN(origin_message_id);
  RUN(snapshot_state_from_the_origin);
  RUN(bus_hook);
  return tl_report();
}
