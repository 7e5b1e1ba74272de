/* test_redis_link.c - core/redis_link.c: redis:// URL parsing, and one link against a real
 * redis-server (started here on a free port, persistence off; skipped when the binary is not
 * installed): connect, commands, pipelining, fail-fast while down, reconnect after a kill and
 * restart, AUTH with a password, pub/sub mode. */
#include "testlib.h"
#include "redis_link.h"
#include "sl_util.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

static int parse(const char *url, sl_redis_url *u, char *err) {
  return sl_redis_url_parse(url, u, err, 256);
}

TEST(url_plain) {
  sl_redis_url u;
  char err[256];
  unsetenv("SLUICE_REDIS_PASSWORD");
  unsetenv("SLUICE_REDIS_USERNAME");
  CHECK_EQ_INT(parse("redis://127.0.0.1:6380", &u, err), 0);
  CHECK_EQ_STR(u.host, "127.0.0.1");
  CHECK_EQ_INT(u.port, 6380);
  CHECK_EQ_INT(u.db, 0);
  CHECK(!u.user && !u.pass);
  sl_redis_url_free(&u);
  CHECK_EQ_INT(parse("redis://localhost", &u, err), 0);
  CHECK_EQ_INT(u.port, 6379);
  sl_redis_url_free(&u);
  CHECK_EQ_INT(parse("redis://h:1/7", &u, err), 0);
  CHECK_EQ_INT(u.db, 7);
  sl_redis_url_free(&u);
  CHECK_EQ_INT(parse("redis://h:1/", &u, err), 0);
  CHECK_EQ_INT(u.db, 0);
  sl_redis_url_free(&u);
  CHECK_EQ_INT(parse("redis://[::1]:7000/2", &u, err), 0);
  CHECK_EQ_STR(u.host, "::1");
  CHECK_EQ_INT(u.port, 7000);
  CHECK_EQ_INT(u.db, 2);
  sl_redis_url_free(&u);
}

TEST(url_credentials) {
  sl_redis_url u;
  char err[256];
  unsetenv("SLUICE_REDIS_PASSWORD");
  unsetenv("SLUICE_REDIS_USERNAME");
  CHECK_EQ_INT(parse("redis://:s3cr%40t@h:1", &u, err), 0);
  CHECK(!u.user);
  CHECK_EQ_STR(u.pass, "s3cr@t");
  sl_redis_url_free(&u);
  CHECK_EQ_INT(parse("redis://alice:p%3Aw@h:1/3", &u, err), 0);
  CHECK_EQ_STR(u.user, "alice");
  CHECK_EQ_STR(u.pass, "p:w");
  CHECK_EQ_INT(u.db, 3);
  sl_redis_url_free(&u);
  /* from the environment when the URL has none */
  setenv("SLUICE_REDIS_PASSWORD", "envpw", 1);
  setenv("SLUICE_REDIS_USERNAME", "bob", 1);
  CHECK_EQ_INT(parse("redis://h:1", &u, err), 0);
  CHECK_EQ_STR(u.user, "bob");
  CHECK_EQ_STR(u.pass, "envpw");
  sl_redis_url_free(&u);
  CHECK_EQ_INT(parse("redis://:urlpw@h:1", &u, err), 0); /* the URL wins */
  CHECK_EQ_STR(u.pass, "urlpw");
  CHECK_EQ_STR(u.user, "bob");
  sl_redis_url_free(&u);
  unsetenv("SLUICE_REDIS_PASSWORD");
  unsetenv("SLUICE_REDIS_USERNAME");
}

TEST(url_errors) {
  sl_redis_url u;
  char err[256];
  unsetenv("SLUICE_REDIS_PASSWORD");
  static const struct {
    const char *url, *msg;
  } bad[] = {
      {"http://h:1", "must start with redis://"},
      {"rediss://h:1", "TLS"},
      {"redis://", "host is empty"},
      {"redis://:1", "host is empty"},
      {"redis://h:0", "port"},
      {"redis://h:65536", "port"},
      {"redis://h:99999999999999999999", "port"},
      {"redis://h:", "port is empty"},
      {"redis://h:x", "port"},
      {"redis://h:1/x", "database"},
      {"redis://h:1/-1", "database"},
      {"redis://h:1/99999999999", "database"},
      {"redis://h:1?db=2", "query"},
      {"redis://a b:1", "invalid character"},
      {"redis://[::1:1", "IPv6"},
      {"redis://:%zz@h", "escape"},
      {"redis://:%00@h", "escape"},
      {"redis://alice@h:1", "needs a password"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = 0;
    int rc = parse(bad[i].url, &u, err);
    if (rc != SL_EINVAL || !strstr(err, bad[i].msg))
      TL_FAIL("%s: rc %d, err \"%s\", want \"%s\"", bad[i].url, rc, err, bad[i].msg);
    CHECK(!u.host && !u.user && !u.pass);
  }
  CHECK_EQ_INT(sl_redis_url_parse(NULL, &u, err, sizeof err), SL_EINVAL);
}

TEST(url_copy_equal) {
  sl_redis_url a, b, c;
  char err[256];
  unsetenv("SLUICE_REDIS_PASSWORD");
  CHECK_EQ_INT(parse("redis://u:p@h:1/2", &a, err), 0);
  sl_redis_url_copy(&b, &a);
  CHECK(sl_redis_url_equal(&a, &b));
  CHECK_EQ_INT(parse("redis://u:q@h:1/2", &c, err), 0);
  CHECK(!sl_redis_url_equal(&a, &c));
  sl_redis_url_free(&a);
  sl_redis_url_free(&b);
  sl_redis_url_free(&c);
}

/* ---- a live link ----------------------------------------------------------------------- */

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t n = sizeof a;
  bind(fd, (struct sockaddr *)&a, sizeof a);
  getsockname(fd, (struct sockaddr *)&a, &n);
  close(fd);
  return ntohs(a.sin_port);
}

static pid_t start_redis(int port, const char *pass) {
  pid_t pid = fork();
  if (pid == 0) {
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    int devnull = open("/dev/null", 1);
    dup2(devnull, 1);
    const char *argv[] = {"redis-server", "--port", p,      "--bind",
                          "127.0.0.1",    "--save", "",     "--appendonly",
                          "no",           "--dir",  "/tmp", pass ? "--requirepass" : NULL,
                          pass,           NULL};
    execvp("redis-server", (char **)argv);
    _exit(127);
  }
  return pid;
}

static void stop_redis(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

typedef struct {
  uv_loop_t *loop;
  int ups, downs, replies, nulls, msgs;
  int order_ok;
  long long last;
  char down_reason[256];
} live;

static void on_up(sl_redis_link *l, void *ud) {
  live *v = ud;
  v->ups++;
  uv_stop(v->loop);
}
static void on_down(sl_redis_link *l, void *ud, const char *reason) {
  live *v = ud;
  v->downs++;
  snprintf(v->down_reason, sizeof v->down_reason, "%s", reason);
  uv_stop(v->loop);
}
static void incr_cb(sl_redis_link *l, redisReply *r, void *ud) {
  live *v = ud;
  if (!r) {
    v->nulls++;
    return;
  }
  if (r->type == REDIS_REPLY_INTEGER && r->integer == v->last + 1) v->order_ok++;
  if (r->type == REDIS_REPLY_INTEGER) v->last = r->integer;
  if (++v->replies == 1000) uv_stop(v->loop);
}

static void deadline_cb(uv_timer_t *t) { uv_stop(t->loop); }

/* Run the loop until a callback stops it, or ms pass (a bound, not a timing check). */
static void run_until_stop(uv_loop_t *loop, uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, deadline_cb, ms, 0);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

static void wait_port_open(int port) {
  for (int i = 0; i < 200; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    if (ok) return;
    usleep(20000);
  }
}

static void sub_cb(sl_redis_link *l, redisReply *r, void *ud) {
  live *v = ud;
  if (!r) {
    v->nulls++;
    return;
  }
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
      strcmp(r->element[0]->str, "message") == 0 && strcmp(r->element[2]->str, "hello") == 0) {
    v->msgs++;
    uv_stop(v->loop);
  } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
             strcmp(r->element[0]->str, "subscribe") == 0) {
    uv_stop(v->loop);
  }
}

static int has_redis(void) {
  if (system("command -v redis-server >/dev/null 2>&1") != 0) {
    printf("# redis-server not installed: skipped\n");
    return 0;
  }
  return 1;
}

TEST(live_link) {
  if (!has_redis()) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  live v = {.loop = &loop};
  int port = free_port();
  sl_redis_url u = {.host = "127.0.0.1", .port = port};
  sl_redis_link_ops ops = {on_up, on_down};
  /* unreachable at first: commands fail fast, no on_down (it never was up) */
  sl_redis_link *l = sl_redis_link_new(&loop, &u, "test", &ops, &v);
  run_until_stop(&loop, 300);
  CHECK(!sl_redis_link_up(l));
  CHECK_EQ_INT(sl_redis_link_cmd(l, incr_cb, &v, "INCR k"), SL_ESTATE);
  CHECK_EQ_INT(v.downs, 0);
  sl_redis_link_stats st;
  sl_redis_link_stats_get(l, &st);
  CHECK(st.failures >= 1);
  pid_t pid = start_redis(port, NULL);
  wait_port_open(port);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(v.ups, 1);
  CHECK(sl_redis_link_up(l));
  /* 1000 commands in one go: one pipeline, replies in order */
  for (int i = 0; i < 1000; i++) CHECK_EQ_INT(sl_redis_link_cmd(l, incr_cb, &v, "INCR k"), 0);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(v.replies, 1000);
  CHECK_EQ_INT(v.order_ok, 1000);
  /* kill: pending commands get NULL, then on_down; restart: on_up again */
  CHECK_EQ_INT(sl_redis_link_cmd(l, incr_cb, &v, "BLPOP nothing 0"), 0);
  stop_redis(pid);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(v.downs, 1);
  CHECK_EQ_INT(v.nulls, 1);
  CHECK(!sl_redis_link_up(l));
  CHECK_EQ_INT(sl_redis_link_cmd(l, incr_cb, &v, "INCR k"), SL_ESTATE);
  pid = start_redis(port, NULL);
  wait_port_open(port);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(v.ups, 2);
  /* the reply deadline: a blocked command past it drops the link */
  sl_redis_link_set_timeout(l, 500);
  CHECK_EQ_INT(sl_redis_link_cmd(l, incr_cb, &v, "BLPOP nothing 0"), 0);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(v.downs, 2);
  CHECK(strstr(v.down_reason, "no reply for 500 ms") != NULL);
  sl_redis_link_set_timeout(l, 0);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(v.ups, 3);
  /* pub/sub on a second link; published on the first */
  live w = {.loop = &loop};
  sl_redis_link *s = sl_redis_link_new(&loop, &u, "sub", &ops, &w);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(sl_redis_link_cmd(s, sub_cb, &w, "SUBSCRIBE %s", "chan#"), 0);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(sl_redis_link_cmd(l, NULL, NULL, "PUBLISH %s %b", "chan#", "hello", (size_t)5), 0);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(w.msgs, 1);
  /* freed with a subscription and a command pending: no callback afterwards */
  CHECK_EQ_INT(sl_redis_link_cmd(l, incr_cb, &v, "BLPOP nothing 0"), 0);
  int nulls = v.nulls;
  sl_redis_link_free(s);
  sl_redis_link_free(l);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(v.nulls, nulls);
  CHECK_EQ_INT(w.nulls, 0);
  stop_redis(pid);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* AUTH: a wrong password never comes up (logged, retried); the right one does. */
TEST(live_auth) {
  if (!has_redis()) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  live v = {.loop = &loop};
  int port = free_port();
  pid_t pid = start_redis(port, "pw1");
  wait_port_open(port);
  sl_redis_url bad = {.host = "127.0.0.1", .port = port, .pass = "nope"};
  sl_redis_url good = {.host = "127.0.0.1", .port = port, .pass = "pw1", .db = 3};
  sl_redis_link_ops ops = {on_up, on_down};
  sl_redis_link *b = sl_redis_link_new(&loop, &bad, "bad", &ops, &v);
  run_until_stop(&loop, 500);
  CHECK_EQ_INT(v.ups, 0);
  sl_redis_link_stats st;
  sl_redis_link_stats_get(b, &st);
  CHECK(st.failures >= 1);
  sl_redis_link_free(b);
  sl_redis_link *g = sl_redis_link_new(&loop, &good, "good", &ops, &v);
  run_until_stop(&loop, 10000);
  CHECK_EQ_INT(v.ups, 1);
  sl_redis_link_free(g);
  uv_run(&loop, UV_RUN_DEFAULT);
  stop_redis(pid);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(url_plain);
  RUN(url_credentials);
  RUN(url_errors);
  RUN(url_copy_equal);
  RUN(live_link);
  RUN(live_auth);
  return tl_report();
}
