/* test_cluster_config.c - the server key `cluster` (lua/config_server.c, core/config.c): the
 * same block in Lua, JSON and YAML gives the same sl_cluster_config; defaults; unknown keys
 * and bad URLs are errors; equality for reload; absent means NULL. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "fake_core.c"
#include "sl_config.h"
#include "sl_lua.h"

static sl_lua *vm;
static char err[1024];

static sl_config *load_str(const char *text, const char *fmt) {
  sl_config *cfg = NULL;
  err[0] = 0;
  if (sl_config_load_string(sl_lua_state(vm), text, strlen(text), fmt, "test", &cfg, err,
                            sizeof err))
    return NULL;
  return cfg;
}

static const char *load_err(const char *text, const char *fmt) {
  sl_config *cfg = load_str(text, fmt);
  if (cfg) {
    sl_config_free(cfg);
    return "(loaded without error)";
  }
  return err;
}

/* A JSON config whose one server has the cluster block `block`. */
static const char *with_cluster(const char *block) {
  static char buf[2048];
  snprintf(buf, sizeof buf,
           "{\"servers\":{\"s\":{\"port\":1,\"cluster\":%s,"
           "\"namespaces\":[{\"path\":\"/a\",\"topics\":[\"t\"]}]}}}",
           block);
  return buf;
}

TEST(absent_is_null) {
  sl_config *cfg = load_str("{\"servers\":{\"s\":{\"port\":1,\"namespaces\":[{\"path\":\"/a\","
                            "\"topics\":[\"t\"]}]}}}",
                            "json");
  CHECK(cfg && cfg->servers[0].cluster == NULL);
  sl_config_free(cfg);
}

TEST(defaults) {
  sl_config *cfg = load_str(with_cluster("{\"redis\":\"redis://127.0.0.1:6379\"}"), "json");
  CHECK(cfg != NULL);
  if (!cfg) return;
  const sl_cluster_config *k = cfg->servers[0].cluster;
  CHECK(k != NULL);
  if (!k) return;
  CHECK_EQ_STR(k->redis, "redis://127.0.0.1:6379");
  CHECK_EQ_STR(k->stream_key, "socket.io");
  CHECK_EQ_STR(k->emitter_key, "socket.io");
  CHECK_EQ_INT(k->max_len, 10000);
  CHECK_EQ_INT(k->read_count, 100);
  CHECK_EQ_INT(k->block_ms, 5000);
  CHECK_EQ_INT(k->buffer_max, 10000);
  CHECK(!k->accept_emitter);
  sl_config_free(cfg);
}

TEST(three_syntaxes_agree) {
  const char *lua =
      "return { servers = { s = { port = 1, cluster = { redis = 'redis://:pw@h:7000/3', "
      "streamKey = 'bus', maxLen = 50, readCount = 10, blockMs = 200, bufferMax = 5, "
      "acceptEmitter = true, emitterKey = 'em' }, namespaces = { { path = '/a', topics = { 't' "
      "} } } } } }";
  const char *json = "{\"servers\":{\"s\":{\"port\":1,\"cluster\":{\"redis\":\"redis://:pw@h:7000/"
                     "3\",\"streamKey\":\"bus\",\"maxLen\":50,\"readCount\":10,\"blockMs\":200,"
                     "\"bufferMax\":5,\"acceptEmitter\":true,\"emitterKey\":\"em\"},"
                     "\"namespaces\":[{\"path\":\"/a\",\"topics\":[\"t\"]}]}}}";
  const char *yaml = "servers:\n  s:\n    port: 1\n    cluster:\n      redis: "
                     "redis://:pw@h:7000/3\n      streamKey: bus\n      maxLen: 50\n      "
                     "readCount: 10\n      blockMs: 200\n      bufferMax: 5\n      acceptEmitter: "
                     "true\n      emitterKey: em\n    namespaces:\n      - path: /a\n        "
                     "topics: [t]\n";
  sl_config *a = load_str(lua, "lua"), *b = load_str(json, "json"), *c = load_str(yaml, "yaml");
  CHECK(a && b && c);
  if (!a || !b || !c) {
    printf("# %s\n", err);
    return;
  }
  const sl_cluster_config *k = a->servers[0].cluster;
  CHECK_EQ_STR(k->stream_key, "bus");
  CHECK_EQ_STR(k->emitter_key, "em");
  CHECK_EQ_INT(k->max_len, 50);
  CHECK_EQ_INT(k->read_count, 10);
  CHECK_EQ_INT(k->block_ms, 200);
  CHECK_EQ_INT(k->buffer_max, 5);
  CHECK(k->accept_emitter);
  CHECK(sl_cluster_config_equal(k, b->servers[0].cluster));
  CHECK(sl_cluster_config_equal(k, c->servers[0].cluster));
  sl_config_free(a);
  sl_config_free(b);
  sl_config_free(c);
}

TEST(equality) {
  sl_config *a = load_str(with_cluster("{\"redis\":\"redis://h:1\"}"), "json");
  sl_config *b = load_str(with_cluster("{\"redis\":\"redis://h:1\",\"maxLen\":10000}"), "json");
  sl_config *c = load_str(with_cluster("{\"redis\":\"redis://h:1\",\"maxLen\":9}"), "json");
  CHECK(a && b && c);
  if (!a || !b || !c) return;
  CHECK(sl_cluster_config_equal(a->servers[0].cluster, b->servers[0].cluster));
  CHECK(!sl_cluster_config_equal(a->servers[0].cluster, c->servers[0].cluster));
  CHECK(!sl_cluster_config_equal(a->servers[0].cluster, NULL));
  CHECK(sl_cluster_config_equal(NULL, NULL));
  sl_config_free(a);
  sl_config_free(b);
  sl_config_free(c);
}

TEST(errors) {
  CHECK_EQ_STR(load_err(with_cluster("{\"redis\":\"redis://h:1\",\"streamkey\":\"x\"}"), "json"),
               "test: server \"s\": cluster: unknown cluster key \"streamkey\" (did you mean "
               "\"streamKey\"?)");
  CHECK_EQ_STR(load_err(with_cluster("{}"), "json"),
               "test: server \"s\": cluster: redis is required (\"redis://host:port[/db]\")");
  CHECK_EQ_STR(load_err(with_cluster("\"redis://h\""), "json"),
               "test: server \"s\": cluster must be a table ({ redis = "
               "\"redis://127.0.0.1:6379\" })");
  CHECK_EQ_STR(load_err(with_cluster("{\"redis\":\"http://h:1\"}"), "json"),
               "test: server \"s\": cluster: redis: invalid Redis URL \"http://h:1\": must start "
               "with redis://");
  CHECK_EQ_STR(load_err(with_cluster("{\"redis\":\"redis://h:1\",\"maxLen\":0}"), "json"),
               "test: server \"s\": cluster: maxLen must be between 1 and 1099511627776");
  CHECK_EQ_STR(load_err(with_cluster("{\"redis\":\"redis://h:1\",\"blockMs\":0}"), "json"),
               "test: server \"s\": cluster: blockMs must be between 1 and 600000");
  CHECK_EQ_STR(load_err(with_cluster("{\"redis\":\"redis://h:1\",\"streamKey\":\"\"}"), "json"),
               "test: server \"s\": cluster: streamKey must be a non-empty name without spaces");
  CHECK_EQ_STR(load_err(with_cluster("{\"redis\":\"redis://h:1\",\"acceptEmitter\":1}"), "json"),
               "test: server \"s\": cluster: acceptEmitter must be a boolean");
}

/* Emitter ingest subscribes to <key>#<nsp>#* per namespace: "/a" and "/a#b" would overlap
 * (a room message of "/a#b" taken twice), so "#" in a path is refused with acceptEmitter. */
TEST(hash_in_namespace_with_emitter) {
  const char *ns2 = "{\"servers\":{\"s\":{\"port\":1,\"cluster\":{\"redis\":\"redis://h\","
                    "\"acceptEmitter\":%s},\"namespaces\":[{\"path\":\"/a\",\"topics\":[\"t\"]},"
                    "{\"path\":\"/a#b\",\"topics\":[\"t\"]}]}}}";
  char buf[512];
  snprintf(buf, sizeof buf, ns2, "true");
  const char *e = load_err(buf, "json");
  CHECK(strstr(e, "namespace \"/a#b\": a path with \"#\" cannot be used with "
                  "cluster.acceptEmitter") != NULL);
  snprintf(buf, sizeof buf, ns2, "false"); /* without the patterns the channels are exact */
  sl_config *cfg = load_str(buf, "json");
  CHECK(cfg != NULL);
  sl_config_free(cfg);
}

int main(void) {
  sl_log_threshold = getenv("SLUICE_TEST_VERBOSE") ? SL_LOG_DEBUG : SL_LOG_ERROR;
  unsetenv("SLUICE_REDIS_PASSWORD");
  vm = sl_lua_new(NULL);
  RUN(absent_is_null);
  RUN(defaults);
  RUN(three_syntaxes_agree);
  RUN(equality);
  RUN(errors);
  RUN(hash_in_namespace_with_emitter);
  sl_lua_close(vm);
  return tl_report();
}
