/* test_config.c - the config loader (lua/config.c): three syntaxes, one validator,
 * StreamFenceJs defaults and messages (STREAMFENCE.md 1.2-1.4), Sluice's own keys. */
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "testlib.h"
#include "fake_core.c"
#include "sl_config.h"
#include "sl_lua.h"

#define FIX "spec/fixtures/config/"

static sl_lua *vm;
static char err[1024];

static sl_config *load_str(const char *text, const char *fmt) {
  sl_config *cfg = NULL;
  err[0] = 0;
  int rc = sl_config_load_string(sl_lua_state(vm), text, strlen(text), fmt, "test", &cfg, err,
                                 sizeof err);
  if (rc) return NULL;
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

static sl_config *load_file(const char *path) {
  sl_config *cfg = NULL;
  err[0] = 0;
  if (sl_config_load(sl_lua_state(vm), path, &cfg, err, sizeof err)) return NULL;
  return cfg;
}

static const char *file_err(const char *path) {
  sl_config *cfg = load_file(path);
  if (cfg) {
    sl_config_free(cfg);
    return "(loaded without error)";
  }
  return err;
}

/* A one-namespace JSON config with extra namespace fields spliced in. */
static const char *ns_json(const char *fields) {
  static char buf[2048];
  snprintf(buf, sizeof buf,
           "{\"servers\":{\"s\":{\"port\":1,\"namespaces\":[{\"path\":\"/a\",\"topics\":[\"t\"]%s%s}]}}}",
           fields[0] ? "," : "", fields);
  return buf;
}

TEST(streamfence_yaml_example) {
  sl_config *cfg = load_file("examples/streamfence.yaml");
  CHECK(cfg != NULL);
  if (!cfg) {
    fprintf(stderr, "  %s\n", err);
    return;
  }
  CHECK_EQ_INT(cfg->nservers, 2);
  /* sorted by name */
  CHECK_EQ_STR(cfg->servers[0].name, "control");
  CHECK_EQ_STR(cfg->servers[1].name, "feed");
  sl_server_config *feed = &cfg->servers[1];
  CHECK_EQ_STR(feed->host, "127.0.0.1");
  CHECK_EQ_INT(feed->port, 3000);
  CHECK(!feed->websocket_only);
  CHECK(!feed->auth_token);
  CHECK_EQ_INT(feed->nns, 1);
  CHECK_EQ_STR(feed->ns[0].path, "/feed");
  CHECK_EQ_INT(feed->ns[0].ntopics, 2);
  CHECK_EQ_STR(feed->ns[0].topics[0], "snapshot");
  CHECK_EQ_STR(feed->ns[0].topics[1], "delta");
  CHECK_EQ_INT(feed->ns[0].overflow, SL_DROP_OLDEST);
  CHECK(feed->ns[0].client_publish); /* StreamFenceJs files keep client publish */
  sl_server_config *ctl = &cfg->servers[0];
  CHECK_EQ_INT(ctl->port, 3001);
  CHECK_EQ_STR(ctl->ns[0].path, "/commands");
  CHECK_EQ_INT(ctl->ns[0].delivery, SL_AT_LEAST_ONCE);
  CHECK_EQ_INT(ctl->ns[0].max_retries, 3);
  CHECK_EQ_STR(cfg->path, "examples/streamfence.yaml");
  sl_config_free(cfg);
}

TEST(streamfence_json_example_matches_yaml) {
  sl_config *a = load_file("examples/streamfence.json");
  sl_config *b = load_file("examples/streamfence.yaml");
  CHECK(a && b);
  if (a && b) {
    char *sa = sl_config_summary(a), *sb = sl_config_summary(b);
    /* same summary apart from the first line (the file name) */
    CHECK_EQ_STR(strchr(sa, '\n'), strchr(sb, '\n'));
    free(sa);
    free(sb);
  }
  sl_config_free(a);
  sl_config_free(b);
}

TEST(defaults) {
  sl_config *cfg = load_str(ns_json(""), "json");
  CHECK(cfg != NULL);
  if (!cfg) return;
  sl_server_config *s = &cfg->servers[0];
  CHECK_EQ_STR(s->host, "0.0.0.0");
  CHECK_EQ_STR(s->spill_root, ".streamfence-spill");
  CHECK(!s->websocket_only);
  CHECK_EQ_INT(s->ping_interval_ms, 25000);
  CHECK_EQ_INT(s->ping_timeout_ms, 20000);
  CHECK_EQ_INT(s->connect_timeout_ms, 45000);
  CHECK_EQ_INT(s->max_payload, 1000000);
  CHECK_EQ_INT(s->socket_high_water, 65536);
  CHECK_EQ_INT(s->socket_sndbuf, 0);
  CHECK(s->api_token == NULL);
  CHECK(s->eio_path == NULL);
  CHECK_EQ_INT(s->on_start_ref, SL_NOREF);
  sl_ns_config *ns = &s->ns[0];
  CHECK_EQ_INT(ns->delivery, SL_BEST_EFFORT);
  CHECK_EQ_INT(ns->overflow, SL_REJECT_NEW);
  CHECK_EQ_INT(ns->max_queued_msgs, 64);
  CHECK_EQ_INT(ns->max_queued_bytes, 524288);
  CHECK_EQ_INT(ns->ack_timeout_ms, 1000);
  CHECK_EQ_INT(ns->max_retries, 0);
  CHECK_EQ_INT(ns->max_in_flight, 1);
  CHECK(!ns->coalesce);
  CHECK(ns->allow_polling);
  CHECK(!ns->auth_required);
  CHECK(ns->client_publish);
  CHECK(ns->retry_backoff == 1.0);
  CHECK_EQ_INT(ns->retry_max_delay_ms, 30000);
  CHECK(ns->coalesce_key_path == NULL);
  CHECK_EQ_INT(ns->coalesce_key_ref, SL_NOREF);
  CHECK_EQ_INT(ns->route_ref, SL_NOREF);
  sl_config_free(cfg);
}

TEST(missing_port_is_zero) {
  sl_config *cfg =
      load_str("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"/a\",\"topics\":[\"t\"]}]}}}",
               "json");
  CHECK(cfg != NULL);
  if (cfg) CHECK_EQ_INT(cfg->servers[0].port, 0);
  sl_config_free(cfg);
}

/* STREAMFENCE.md 1.3, verbatim, behind the file/server/namespace prefix. */
TEST(namespace_messages) {
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"a\",\"topics\":[\"t\"]}]}}}", "json"),
               "test: server \"s\": namespace a: namespace path must start with '/'");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"topics\":[\"t\"]}]}}}", "json"),
               "test: server \"s\": namespace #1: namespace path must start with '/'");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"/a\",\"topics\":[]}]}}}", "json"),
               "test: server \"s\": namespace /a: namespace must define at least one topic");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"/a\"}]}}}", "json"),
               "test: server \"s\": namespace /a: namespace must define at least one topic");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"/a\",\"topics\":[\"t\",\"  \"]}]}}}", "json"),
               "test: server \"s\": namespace /a: topic names must not be blank in namespace /a");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"/a\",\"topics\":[\"t\",\"u\",\"t\"]}]}}}", "json"),
               "test: server \"s\": namespace /a: duplicate topic in namespace /a: t");
  CHECK_EQ_STR(load_err(ns_json("\"maxQueuedMessagesPerClient\":0"), "json"),
               "test: server \"s\": namespace /a: maxQueuedMessagesPerClient must be positive");
  CHECK_EQ_STR(load_err(ns_json("\"maxQueuedBytesPerClient\":-1"), "json"),
               "test: server \"s\": namespace /a: maxQueuedBytesPerClient must be positive");
  CHECK_EQ_STR(load_err(ns_json("\"ackTimeoutMs\":0"), "json"),
               "test: server \"s\": namespace /a: ackTimeoutMs must be positive");
  CHECK_EQ_STR(load_err(ns_json("\"maxRetries\":-1"), "json"),
               "test: server \"s\": namespace /a: maxRetries must be zero or positive");
  CHECK_EQ_STR(load_err(ns_json("\"deliveryMode\":\"AT_LEAST_ONCE\",\"overflowAction\":\"DROP_OLDEST\",\"maxRetries\":1"), "json"),
               "test: server \"s\": namespace /a: AT_LEAST_ONCE namespaces must use REJECT_NEW or SPILL_TO_DISK overflowAction");
  CHECK_EQ_STR(load_err(ns_json("\"deliveryMode\":\"AT_LEAST_ONCE\",\"coalesce\":true,\"maxRetries\":1"), "json"),
               "test: server \"s\": namespace /a: AT_LEAST_ONCE namespaces cannot enable coalescing");
  CHECK_EQ_STR(load_err(ns_json("\"deliveryMode\":\"AT_LEAST_ONCE\""), "json"),
               "test: server \"s\": namespace /a: AT_LEAST_ONCE namespaces must allow at least one retry");
  CHECK_EQ_STR(load_err(ns_json("\"deliveryMode\":\"AT_LEAST_ONCE\",\"maxRetries\":1,\"maxInFlight\":8,\"maxQueuedMessagesPerClient\":4"), "json"),
               "test: server \"s\": namespace /a: maxInFlight must not exceed maxQueuedMessagesPerClient");
  CHECK_EQ_STR(load_err(ns_json("\"deliveryMode\":\"SOMETIMES\""), "json"),
               "test: server \"s\": namespace /a: Invalid deliveryMode \"SOMETIMES\" for namespace /a (expected: BEST_EFFORT, AT_LEAST_ONCE)");
  CHECK_EQ_STR(load_err(ns_json("\"overflowAction\":\"EXPLODE\""), "json"),
               "test: server \"s\": namespace /a: Invalid overflowAction \"EXPLODE\" for namespace /a (expected: DROP_OLDEST, REJECT_NEW, COALESCE, SNAPSHOT_ONLY, SPILL_TO_DISK)");
}

TEST(check_order) {
  /* Enum errors (mapper) come before build errors; build errors in their order. */
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"x\",\"topics\":[],\"overflowAction\":\"NOPE\"}]}}}", "json"),
               "test: server \"s\": namespace x: Invalid overflowAction \"NOPE\" for namespace x (expected: DROP_OLDEST, REJECT_NEW, COALESCE, SNAPSHOT_ONLY, SPILL_TO_DISK)");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"x\",\"topics\":[],\"maxRetries\":-1}]}}}", "json"),
               "test: server \"s\": namespace x: namespace path must start with '/'");
  CHECK_EQ_STR(load_err(ns_json("\"maxQueuedMessagesPerClient\":0,\"ackTimeoutMs\":0"), "json"),
               "test: server \"s\": namespace /a: maxQueuedMessagesPerClient must be positive");
  /* AT_LEAST_ONCE: overflow before coalesce before retries. */
  CHECK_EQ_STR(load_err(ns_json("\"deliveryMode\":\"AT_LEAST_ONCE\",\"overflowAction\":\"COALESCE\",\"coalesce\":true"), "json"),
               "test: server \"s\": namespace /a: AT_LEAST_ONCE namespaces must use REJECT_NEW or SPILL_TO_DISK overflowAction");
  /* Duplicate paths are reported before any namespace is validated. */
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"/a\",\"topics\":[]},{\"path\":\"/a\",\"topics\":[\"t\"]}]}}}", "json"),
               "test: server \"s\": Duplicate namespace path \"/a\" in server \"s\"");
  /* Server enums: transport, engineIoTransport, auth. */
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"transport\":\"TCP\",\"auth\":\"X\"}}}", "json"),
               "test: server \"s\": Invalid transport \"TCP\" (expected: WS, WSS)");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"engineIoTransport\":\"POLLING\"}}}", "json"),
               "test: server \"s\": Invalid engineIoTransport \"POLLING\" (expected: WEBSOCKET_ONLY, WEBSOCKET_OR_POLLING)");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"auth\":\"BASIC\"}}}", "json"),
               "test: server \"s\": Invalid auth \"BASIC\" (expected: NONE, TOKEN)");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[]}}}", "json"),
               "test: server \"s\": StreamFenceServer requires at least one namespace");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"tls\":{\"certChainPemPath\":\" \"},\"namespaces\":[]}}}", "json"),
               "test: server \"s\": certChainPemPath is required");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"tls\":{\"certChainPemPath\":\"c.pem\"}}}}", "json"),
               "test: server \"s\": privateKeyPemPath is required");
}

TEST(type_checks) {
  CHECK_EQ_STR(load_err(ns_json("\"maxRetries\":\"abc\""), "json"),
               "test: server \"s\": namespace /a: maxRetries must be a number");
  CHECK_EQ_STR(load_err(ns_json("\"maxInFlight\":1.5"), "json"),
               "test: server \"s\": namespace /a: maxInFlight must be an integer");
  CHECK_EQ_STR(load_err(ns_json("\"coalesce\":\"no\""), "json"),
               "test: server \"s\": namespace /a: coalesce must be a boolean (true or false; in YAML, yes/no/on/off are strings)");
  CHECK_EQ_STR(load_err(ns_json("\"allowPolling\":1"), "json"),
               "test: server \"s\": namespace /a: allowPolling must be a boolean");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"/a\",\"topics\":\"t\"}]}}}", "json"),
               "test: server \"s\": namespace /a: topics must be a list of strings");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":\"/a\",\"topics\":[1]}]}}}", "json"),
               "test: server \"s\": namespace /a: topic names must be strings in namespace /a");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"port\":\"3000\"}}}", "json"),
               "test: server \"s\": port must be a number");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"port\":70000}}}", "json"),
               "test: server \"s\": port must be between 0 and 65535");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"host\":5}}}", "json"),
               "test: server \"s\": host must be a string");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"pingIntervalMs\":0}}}", "json"),
               "test: server \"s\": pingIntervalMs must be positive");
  CHECK_EQ_STR(load_err(ns_json("\"route\":42"), "json"),
               "test: server \"s\": namespace /a: route must be a function, a path to a .lua script or {script = NAME, options = {...}}");
  CHECK_EQ_STR(load_err(ns_json("\"coalesceKey\":false"), "json"),
               "test: server \"s\": namespace /a: coalesceKey must be a field path, a function, a path to a .lua script or {script = NAME, options = {...}}");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":[{\"path\":5,\"topics\":[\"t\"]}]}}}", "json"),
               "test: server \"s\": namespace #1: path must be a string");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"namespaces\":{\"path\":\"/a\"}}}}", "json"),
               "test: server \"s\": namespaces must be a list of namespaces, each with a path and topics");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"engineIo\":{\"path\":\"/raw\"}}}}", "json"),
               "test: server \"s\": engineIo.onMessage is required");
}

TEST(missing_sections) {
  CHECK_EQ_STR(load_err("{}", "json"),
               "test: config must define \"servers\" (a map of server name to settings)");
  CHECK_EQ_STR(load_err("[1,2]", "json"),
               "test: config must define \"servers\" (a map of server name to settings)");
  CHECK_EQ_STR(load_err("42", "json"),
               "test: config must be a table with \"servers\" (a map of server name to settings)");
  CHECK_EQ_STR(load_err("{\"servers\":{}}", "json"), "test: servers is empty: define at least one server");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"port\":1}}}", "json"),
               "test: server \"s\": server must define \"namespaces\" (a list of namespaces, each with a path and topics)");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":3}}", "json"), "test: server \"s\": server settings must be a table");
  CHECK_EQ_STR(load_err("", "yaml"),
               "test: config must be a table with \"servers\" (a map of server name to settings)");
  CHECK_EQ_STR(load_err("return 42", "lua"),
               "test: config must be a table with \"servers\" (a map of server name to settings)");
  CHECK_EQ_STR(load_err("return { servers = { a = { namespaces = { {path='/x', topics={'t'}} } } }, bogus = 1 }", "lua"),
               "(loaded without error)"); /* unknown keys only warn */
}

TEST(yaml_core_schema) {
  sl_config *cfg = load_file(FIX "good/anchors.yml");
  CHECK(cfg != NULL);
  if (!cfg) {
    fprintf(stderr, "  %s\n", err);
    return;
  }
  sl_server_config *s = &cfg->servers[0];
  CHECK_EQ_INT(s->port, 3000);
  CHECK_EQ_STR(s->host, "127.0.0.1");
  CHECK_EQ_STR(s->spill_root, "yes");
  CHECK_EQ_INT(s->ns[0].ntopics, 2);
  CHECK_EQ_STR(s->ns[0].topics[1], "b");
  CHECK_EQ_INT(s->ns[0].max_queued_bytes, 1000);
  CHECK(!s->ns[0].allow_polling);
  CHECK(!s->ns[0].auth_required);
  sl_config_free(cfg);

  /* yes/no are strings, so a boolean key refuses them. */
  CHECK_EQ_STR(file_err(FIX "bad/coalesce_no.yaml"),
               FIX "bad/coalesce_no.yaml:7: server \"feed\": namespace /feed: coalesce must be a boolean (true or false; in YAML, yes/no/on/off are strings)");
  /* quoted scalars are always strings */
  CHECK_EQ_STR(load_err("servers:\n  s:\n    port: \"3000\"\n", "yaml"), "test: server \"s\": port must be a number");
  /* TRUE and ~ follow the core schema */
  cfg = load_str("servers:\n  s:\n    port: +12\n    namespaces:\n      - path: /a\n        topics: [t]\n        coalesce: TRUE\n        maxRetries: ~\n", "yaml");
  CHECK(cfg != NULL);
  if (cfg) {
    CHECK_EQ_INT(cfg->servers[0].port, 12);
    CHECK(cfg->servers[0].ns[0].coalesce);
    CHECK_EQ_INT(cfg->servers[0].ns[0].max_retries, 0);
  }
  sl_config_free(cfg);
  CHECK_EQ_STR(load_err("servers:\n  s: {}\n  s: {}\n", "yaml"),
               "Failed to parse config file \"test\": duplicate key \"s\" (line 3)");
  CHECK_EQ_STR(load_err("a: 1\n---\nb: 2\n", "yaml"),
               "Failed to parse config file \"test\": multiple YAML documents (line 2); expected one");
  /* a self-referencing alias does not hang or blow up */
  CHECK(strstr(load_err("x: &a [*a]\nservers: {}\n", "yaml"), "servers is empty") != NULL);
}

TEST(lua_config) {
  sl_config *cfg = load_file(FIX "good/full.lua");
  CHECK(cfg != NULL);
  if (!cfg) {
    fprintf(stderr, "  %s\n", err);
    return;
  }
  CHECK_EQ_INT(cfg->nservers, 2);
  sl_server_config *a = &cfg->servers[0];
  CHECK_EQ_STR(a->name, "alpha");
  CHECK_EQ_STR(cfg->servers[1].name, "zeta");
  CHECK_EQ_INT(a->port, 3200);
  CHECK_EQ_INT(cfg->servers[1].port, 3201);
  CHECK_EQ_INT(a->ping_interval_ms, 1000);
  CHECK_EQ_STR(a->api_token, "s3cret");
  CHECK(a->auth_token);
  CHECK_EQ_INT(a->ntokens, 2);
  CHECK_EQ_STR(a->tokens[1], "b");
  CHECK_EQ_STR(a->eio_path, "/raw");
  CHECK(a->eio_on_message_ref > 0);
  CHECK_EQ_INT(a->eio_on_open_ref, SL_NOREF);
  CHECK(a->on_start_ref > 0);
  CHECK_EQ_INT(a->nns, 2);
  sl_ns_config *feed = &a->ns[0];
  CHECK(!feed->client_publish); /* default false in Lua configs */
  CHECK(feed->coalesce_key_ref > 0);
  CHECK(feed->coalesce_key_path == NULL);
  CHECK(feed->on_event_ref > 0);
  CHECK_EQ_INT(feed->overflow, SL_COALESCE);
  sl_ns_config *alo = &a->ns[1];
  CHECK_EQ_INT(alo->max_in_flight, 1); /* <= 0 normalized to 1 */
  CHECK_EQ_INT(alo->overflow, SL_SPILL_TO_DISK);
  CHECK(alo->retry_backoff == 2.0);
  /* the refs are functions in the VM's registry */
  lua_State *L = sl_lua_state(vm);
  lua_rawgeti(L, LUA_REGISTRYINDEX, feed->coalesce_key_ref);
  CHECK(lua_isfunction(L, -1));
  lua_pop(L, 1);
  char *sum = sl_config_summary(cfg);
  CHECK(strstr(sum, "server \"alpha\" on 127.0.0.1:3200") != NULL);
  CHECK(strstr(sum, "namespace /alo: AT_LEAST_ONCE, SPILL_TO_DISK") != NULL);
  CHECK(strstr(sum, "topics: prices news") != NULL);
  free(sum);
  int before = lua_gettop(L);
  sl_config_free(cfg);
  CHECK_EQ_INT(lua_gettop(L), before);
}

TEST(lua_config_errors) {
  CHECK(strstr(file_err(FIX "bad/syntax.lua"), "Failed to parse config file \"" FIX "bad/syntax.lua\": ") == err);
  CHECK_EQ_STR(file_err(FIX "bad/raises.lua"),
               FIX "bad/raises.lua: error while running the config: " FIX "bad/raises.lua:1: boom");
  CHECK(strstr(file_err(FIX "bad/loop.lua"), "instruction limit exceeded") != NULL);
  CHECK_EQ_STR(load_err("return { servers = { s = { onStart = 5, namespaces = {} } } }", "lua"),
               "test: server \"s\": onStart must be a function, a path to a .lua script or {script = NAME, options = {...}}");
  /* config chunks may read the environment */
  setenv("SLUICE_TEST_PORT", "4100", 1);
  sl_config *cfg = load_file(FIX "good/full.lua");
  CHECK(cfg && cfg->servers[0].port == 4100);
  sl_config_free(cfg);
  unsetenv("SLUICE_TEST_PORT");
}

TEST(file_errors) {
  CHECK_EQ_STR(file_err(FIX "bad/ext.toml"),
               "Unsupported config file extension \".toml\" (expected .yaml, .yml, .json, or .lua): " FIX "bad/ext.toml");
  CHECK_EQ_STR(file_err(FIX "nope.yaml"),
               "Failed to read config file \"" FIX "nope.yaml\": No such file or directory");
  CHECK_EQ_STR(file_err(FIX "bad/syntax.json"),
               "Failed to parse config file \"" FIX "bad/syntax.json\": invalid JSON at line 1 column 31");
  CHECK(strstr(file_err(FIX "bad/syntax.yaml"), "Failed to parse config file \"" FIX "bad/syntax.yaml\": ") == err);
  CHECK(strstr(err, "line") != NULL);
  CHECK_EQ_STR(file_err(FIX "bad/alo_drop.yaml"),
               FIX "bad/alo_drop.yaml:5: server \"feed\": namespace /alo: AT_LEAST_ONCE namespaces must use REJECT_NEW or SPILL_TO_DISK overflowAction");
  /* extension match is case-insensitive */
  CHECK(strstr(file_err(FIX "NOPE.JSON"), "Failed to read config file") == err);
}

TEST(hook_scripts) {
  sl_config *cfg = load_file(FIX "good/hooks.yaml");
  CHECK(cfg != NULL);
  if (!cfg) {
    fprintf(stderr, "  %s\n", err);
    return;
  }
  sl_ns_config *ns = &cfg->servers[0].ns[0];
  CHECK_EQ_STR(ns->coalesce_key_path, "symbol");
  CHECK(ns->route_ref > 0);
  CHECK(ns->snapshot_ref > 0);
  CHECK(ns->authorize_ref > 0);
  CHECK(ns->snapshot_ref != ns->authorize_ref);
  /* the authorize hook came out of the table the script returned */
  lua_State *L = sl_lua_state(vm);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ns->authorize_ref);
  lua_pushstring(L, "good");
  lua_call(L, 1, 1);
  CHECK_EQ_STR(lua_tostring(L, -1), "alice");
  lua_pop(L, 1);
  sl_config_free(cfg);

  CHECK(strstr(file_err(FIX "bad/hook_io.json"), "route: ") != NULL);
  CHECK(strstr(err, "uses_io.lua:2: attempt to index global 'io' (a nil value)") != NULL);
  CHECK_EQ_STR(load_err(ns_json("\"route\":\"" FIX "scripts/not_a_function.lua\""), "json"),
               "test: server \"s\": namespace /a: route: script must return a function (or a table with a \"route\" function)");
  CHECK(strstr(load_err(ns_json("\"route\":\"missing.lua\""), "json"),
               "route: cannot read script missing.lua: No such file or directory") != NULL);
}

TEST(stack_balanced_and_free_after_close) {
  lua_State *L = sl_lua_state(vm);
  int top = lua_gettop(L);
  for (int i = 0; i < 3; i++) {
    load_err(ns_json("\"maxRetries\":\"x\""), "json");
    load_err("servers: [", "yaml");
  }
  CHECK_EQ_INT(lua_gettop(L), top);
  /* a config may outlive its VM: free skips the refs then */
  sl_lua *v2 = sl_lua_new(NULL);
  sl_config *cfg = NULL;
  const char *src = "return { servers = { s = { onStart = function() end, namespaces = { {path='/a', topics={'t'}} } } } }";
  CHECK_EQ_INT(sl_config_load_string(sl_lua_state(v2), src, strlen(src), "lua", NULL, &cfg, err, sizeof err), 0);
  sl_lua_close(v2);
  sl_config_free(cfg);
  sl_config_free(NULL);
}

TEST(token_auth) {
  sl_config *cfg = load_file(FIX "good/token_auth.json");
  CHECK(cfg != NULL);
  if (!cfg) {
    fprintf(stderr, "  %s\n", err);
    return;
  }
  sl_server_config *s = &cfg->servers[0];
  CHECK(s->auth_token);
  CHECK_EQ_INT(s->ntokens, 3);
  if (s->ntokens == 3) {
    CHECK_EQ_STR(s->tokens[0], "inline-1");
    CHECK_EQ_STR(s->tokens[1], "alpha");
    CHECK_EQ_STR(s->tokens[2], "beta");
  }
  sl_config_free(cfg);
  /* TOKEN with nothing to check tokens with */
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"port\":1,\"auth\":\"TOKEN\",\"namespaces\":"
                        "[{\"path\":\"/a\",\"topics\":[\"t\"]}]}}}", "json"),
               "test: server \"s\": auth TOKEN needs a \"tokens\" list, a \"tokensFile\" or an "
               "\"authorize\" hook in a namespace (nothing could accept a token)");
  CHECK_EQ_STR(load_err("servers:\n  s:\n    port: 1\n    auth: TOKEN\n    tokens: []\n"
                        "    namespaces:\n      - path: /a\n        topics: [t]\n", "yaml"),
               "test: server \"s\": auth TOKEN needs a \"tokens\" list, a \"tokensFile\" or an "
               "\"authorize\" hook in a namespace (nothing could accept a token)");
  /* ... an authorize hook in one namespace is enough */
  cfg = load_str("return { servers = { s = { port = 1, auth = 'TOKEN', namespaces = {"
                 "{ path = '/a', topics = {'t'}, authorize = function(t) return t end } } } } }",
                 "lua");
  CHECK(cfg != NULL);
  sl_config_free(cfg);
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"port\":1,\"tokens\":\"abc\",\"namespaces\":"
                        "[{\"path\":\"/a\",\"topics\":[\"t\"]}]}}}", "json"),
               "test: server \"s\": tokens must be a list of strings");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"port\":1,\"tokens\":[\"a\",\"\"],\"namespaces\":"
                        "[{\"path\":\"/a\",\"topics\":[\"t\"]}]}}}", "json"),
               "test: server \"s\": tokens[2] must not be empty");
  CHECK_EQ_STR(load_err("{\"servers\":{\"s\":{\"port\":1,\"tokens\":[\"a\",1],\"namespaces\":"
                        "[{\"path\":\"/a\",\"topics\":[\"t\"]}]}}}", "json"),
               "test: server \"s\": tokens must be a list of strings");
  CHECK(strstr(load_err("{\"servers\":{\"s\":{\"port\":1,\"auth\":\"TOKEN\",\"tokensFile\":"
                        "\"/nonexistent/t.txt\",\"namespaces\":[{\"path\":\"/a\",\"topics\":[\"t\"]}]}}}",
                        "json"),
               "test: server \"s\": tokensFile \"/nonexistent/t.txt\": No such file") != NULL);
}

TEST(script_hooks) {
  sl_config *cfg = load_file(FIX "good/script_hooks.yaml");
  CHECK(cfg != NULL);
  if (!cfg) {
    fprintf(stderr, "  %s\n", err);
    return;
  }
  sl_ns_config *ns = &cfg->servers[0].ns[0];
  CHECK(ns->authorize_ref != SL_NOREF);
  CHECK(ns->coalesce_key_ref != SL_NOREF);
  CHECK(ns->coalesce_key_path == NULL);
  char *p = NULL, reason[64];
  CHECK_EQ_INT(sl_lua_authorize(vm, ns->authorize_ref, "s3cret", "/feed", "prices", NULL, &p,
                                reason, sizeof reason), 1);
  CHECK_EQ_STR(p, "alice");
  free(p);
  const char *pl = "{\"symbol\":\"AAPL\",\"venue\":\"XNAS\"}";
  char *k = sl_lua_coalesce_key(vm, ns->coalesce_key_ref, "prices", pl, strlen(pl));
  CHECK_EQ_STR(k, "AAPL|XNAS");
  free(k);
  sl_config_free(cfg);
  CHECK(strstr(load_err(ns_json("\"route\":{\"script\":\"no_such_script\"}"), "json"),
               "test: server \"s\": namespace /a: route: sluice.script: no script \"no_such_script\"") != NULL);
  CHECK_EQ_STR(load_err(ns_json("\"route\":{\"options\":{}}"), "json"),
               "test: server \"s\": namespace /a: route: a table hook needs \"script\" (a script "
               "name such as \"jwt_hs256\" or a path to a .lua file)");
  CHECK(strstr(load_err(ns_json("\"authorize\":{\"script\":\"jwt_hs256\",\"options\":{}}"), "json"),
               "jwt_hs256: secret") != NULL);
  /* a Lua config calls sluice.script itself */
  cfg = load_str("return { servers = { s = { port = 1, namespaces = { { path = '/a', topics = "
                 "{'t'}, route = sluice.script('route_by_field', {field = 'region'}) } } } } }",
                 "lua");
  CHECK(cfg != NULL);
  sl_config_free(cfg);
}

/* ${VAR} and ${VAR:-default} in YAML and JSON values: a bare reference to a number is a
 * number, a quoted one a string; unset without a default is an error naming the line. */
/* a minimal namespaces value for JSON and YAML flow mappings */
#define NSJ "\"namespaces\": [{\"path\": \"/a\", \"topics\": [\"t\"]}]"
#define NSF ", namespaces: [{path: /a, topics: [t]}]"

TEST(env_references) {
  setenv("SLT_PORT", "4321", 1);
  setenv("SLT_TOKEN", "12\"34", 1);
  unsetenv("SLT_UNSET");
  sl_config *cfg = load_str("servers:\n  s:\n    host: ${SLT_UNSET:-127.0.0.2}\n"
                            "    port: ${SLT_PORT}\n    apiToken: \"${SLT_TOKEN}\"\n"
                            "    spillRootPath: a-${SLT_PORT}-$${HOME}\n    namespaces: [{path: /a, topics: [t]}]\n", "yaml");
  CHECK(cfg != NULL);
  if (cfg) {
    CHECK_EQ_STR(cfg->servers[0].host, "127.0.0.2");
    CHECK_EQ_INT(cfg->servers[0].port, 4321);
    CHECK_EQ_STR(cfg->servers[0].api_token, "12\"34");
    CHECK_EQ_STR(cfg->servers[0].spill_root, "a-4321-${HOME}");
  }
  sl_config_free(cfg);
  cfg = load_str("{\"servers\": {\"s\": {\"host\": \"${SLT_UNSET:-127.0.0.3}\",\n"
                 "  \"port\": ${SLT_PORT}, \"apiToken\": \"<${SLT_TOKEN}>\",\n"
                 "  \"spillRootPath\": ${SLT_UNSET:-/var/sp}, " NSJ "}}}", "json");
  CHECK(cfg != NULL);
  if (cfg) {
    CHECK_EQ_STR(cfg->servers[0].host, "127.0.0.3");
    CHECK_EQ_INT(cfg->servers[0].port, 4321);
    CHECK_EQ_STR(cfg->servers[0].api_token, "<12\"34>");
    CHECK_EQ_STR(cfg->servers[0].spill_root, "/var/sp");
  }
  sl_config_free(cfg);
  /* quoted: a string, so not a port */
  CHECK_EQ_STR(load_err("servers:\n  s:\n    port: \"${SLT_PORT}\"\n", "yaml"),
               "test: server \"s\": port must be a number");
  CHECK_EQ_STR(load_err("servers:\n  s:\n\n    port: ${SLT_UNSET}\n", "yaml"),
               "Failed to parse config file \"test\": environment variable SLT_UNSET is not set "
               "(use ${SLT_UNSET:-default} for a default) (line 4)");
  CHECK_EQ_STR(load_err("{\"servers\":\n {\"s\":\n {\"port\": ${SLT_UNSET}}}}", "json"),
               "Failed to parse config file \"test\": environment variable SLT_UNSET is not set "
               "(use ${SLT_UNSET:-default} for a default) at line 3");
  CHECK_EQ_STR(load_err("servers:\n  s:\n    port: ${SLT_PORT\n", "yaml"),
               "Failed to parse config file \"test\": unterminated \"${SLT_PORT\" (expected "
               "${NAME} or ${NAME:-default}) (line 3)");
  /* a value cannot break out of its JSON string */
  setenv("SLT_TOKEN", "x\", \"port\": 99, \"y\": \"", 1);
  cfg = load_str("{\"servers\": {\"s\": {\"apiToken\": \"${SLT_TOKEN}\", \"port\": 1, " NSJ "}}}", "json");
  CHECK(cfg != NULL);
  if (cfg) CHECK_EQ_INT(cfg->servers[0].port, 1);
  sl_config_free(cfg);
  /* parse errors after an expansion keep their line */
  CHECK_EQ_STR(load_err("{\"servers\":\n {\"s\": {\"port\": ${SLT_PORT},\n ]}}", "json"),
               "Failed to parse config file \"test\": invalid JSON at line 3 column 3");
}

/* Unknown keys warn (counted in cfg->warnings); strict = true or the strict option makes
 * them errors. */
TEST(strict_and_warnings) {
  const char *typo = "servers:\n  s:\n    port: 1\n    namespaces:\n      - path: /a\n"
                     "        topics: [t]\n        maxQueuedMesagesPerClient: 3\n";
  sl_config *cfg = load_str(typo, "yaml");
  CHECK(cfg != NULL);
  if (cfg) CHECK_EQ_INT(cfg->warnings, 1);
  sl_config_free(cfg);
  cfg = load_str("servers:\n  s:\n    port: 1\n    namespaces: [{path: /a, topics: [t]}]\n", "yaml");
  CHECK(cfg != NULL);
  if (cfg) CHECK_EQ_INT(cfg->warnings, 0);
  sl_config_free(cfg);
  char strict[512];
  snprintf(strict, sizeof strict, "strict: true\n%s", typo);
  CHECK_EQ_STR(load_err(strict, "yaml"),
               "test: server \"s\": namespace /a: unknown namespace key "
               "\"maxQueuedMesagesPerClient\" (did you mean \"maxQueuedMessagesPerClient\"?; "
               "strict mode)");
  CHECK_EQ_STR(load_err("return { strict = true, servers = { s = { prot = 1 } } }", "lua"),
               "test: server \"s\": unknown server key \"prot\" (did you mean \"port\"?; strict "
               "mode)");
  CHECK_EQ_STR(load_err("{\"strict\": \"yes\", \"servers\": {\"s\": {}}}", "json"),
               "test: strict must be a boolean (true or false; in YAML, yes/no/on/off are strings)");
  sl_config_set_options(&(sl_config_options){.strict = true, .port = -1});
  CHECK_EQ_STR(load_err("servers:\n  s:\n    port: 1\n    prot: 2\n", "yaml"),
               "test: server \"s\": unknown server key \"prot\" (did you mean \"port\"?; strict "
               "mode)");
  sl_config_set_options(NULL);
  cfg = load_str("servers:\n  s:\n    port: 1\n    prot: 2\n    namespaces: [{path: /a, topics: [t]}]\n", "yaml");
  CHECK(cfg != NULL);
  sl_config_free(cfg);
}

/* Two servers on one address are an error; --host/--port overrides apply to one server. */
TEST(listen_addresses) {
  CHECK_EQ_STR(load_err("servers:\n  a: {host: 127.0.0.1, port: 3000" NSF "}\n"
                        "  b: {host: 127.0.0.1, port: 3000" NSF "}\n", "yaml"),
               "test: servers \"a\" and \"b\" both listen on 127.0.0.1:3000 (one port per server)");
  CHECK_EQ_STR(load_err("servers:\n  a: {host: 127.0.0.1, port: 3000" NSF "}\n"
                        "  b: {port: 3000" NSF "}\n", "yaml"),
               "test: servers \"a\" and \"b\" both listen on 127.0.0.1:3000 and 0.0.0.0:3000 "
               "(one port per server)");
  sl_config *cfg = load_str("servers:\n  a: {host: 127.0.0.1, port: 3000" NSF "}\n"
                            "  b: {host: 127.0.0.2, port: 3000" NSF "}\n  c: {port: 0" NSF "}\n"
                            "  d: {port: 0" NSF "}\n", "yaml");
  CHECK(cfg != NULL);
  sl_config_free(cfg);

  sl_config_set_options(&(sl_config_options){.host = "127.0.0.9", .port = 4001});
  cfg = load_str("servers:\n  a: {host: 127.0.0.1, port: 3000" NSF "}\n", "yaml");
  CHECK(cfg != NULL);
  if (cfg) {
    CHECK_EQ_STR(cfg->servers[0].host, "127.0.0.9");
    CHECK_EQ_INT(cfg->servers[0].port, 4001);
  }
  sl_config_free(cfg);
  /* no "no port configured" warning when --port gives one */
  cfg = load_str("servers:\n  a: {namespaces: [{path: /a, topics: [t]}]}\n", "yaml");
  CHECK(cfg != NULL);
  if (cfg) CHECK_EQ_INT(cfg->warnings, 0);
  sl_config_free(cfg);
  CHECK_EQ_STR(load_err("servers:\n  a: {port: 1" NSF "}\n  b: {port: 2" NSF "}\n", "yaml"),
               "test: --host/--port applies to one server and this config has 2: choose one "
               "with --server NAME");
  sl_config_set_options(&(sl_config_options){.port = 2, .server = "a"});
  CHECK_EQ_STR(load_err("servers:\n  a: {port: 1" NSF "}\n  b: {port: 2" NSF "}\n", "yaml"),
               "test: servers \"a\" and \"b\" both listen on 0.0.0.0:2 (one port per server)");
  cfg = load_str("servers:\n  a: {port: 1" NSF "}\n  b: {port: 3" NSF "}\n", "yaml");
  CHECK(cfg != NULL);
  if (cfg) {
    CHECK_EQ_INT(cfg->servers[0].port, 2);
    CHECK_EQ_INT(cfg->servers[1].port, 3);
  }
  sl_config_free(cfg);
  CHECK_EQ_STR(load_err("servers:\n  b: {port: 1" NSF "}\n", "yaml"),
               "test: --port: no server named \"a\"");
  sl_config_set_options(NULL);
}

/* Validation messages about a JSON or YAML file name the line: of the key when the message
 * is about it, else of the block (server, namespace) being checked. */
TEST(validation_lines) {
  CHECK_EQ_STR(file_err(FIX "bad/lines.yaml"),
               FIX "bad/lines.yaml:11: server \"feed\": namespace /b: maxQueuedMessagesPerClient must be positive");
  CHECK_EQ_STR(file_err(FIX "bad/lines.json"),
               FIX "bad/lines.json:9: server \"feed\": namespace /b: AT_LEAST_ONCE namespaces must allow at least one retry");
  CHECK_EQ_STR(file_err(FIX "bad/lines_type.json"),
               FIX "bad/lines_type.json:5: server \"feed\": port must be a number");
  sl_config_set_options(&(sl_config_options){.strict = true, .port = -1});
  CHECK_EQ_STR(file_err(FIX "bad/lines.yaml"),
               FIX "bad/lines.yaml:4: server \"feed\": unknown server key \"prot\" (did you mean \"port\"?; strict mode)");
  sl_config_set_options(NULL);
  /* strings have no file lines */
  CHECK_EQ_STR(load_err("servers:\n  s:\n    port: x\n", "yaml"), "test: server \"s\": port must be a number");
}

int main(void) {
  sl_log_threshold = getenv("SLUICE_TEST_VERBOSE") ? SL_LOG_DEBUG : SL_LOG_ERROR;
  vm = sl_lua_new(NULL);
  unsetenv("SLUICE_PORT"); /* the examples' own default ports */
  unsetenv("SLUICE_CONTROL_PORT");
  RUN(streamfence_yaml_example);
  RUN(streamfence_json_example_matches_yaml);
  RUN(defaults);
  RUN(missing_port_is_zero);
  RUN(namespace_messages);
  RUN(check_order);
  RUN(type_checks);
  RUN(missing_sections);
  RUN(yaml_core_schema);
  RUN(lua_config);
  RUN(lua_config_errors);
  RUN(file_errors);
  RUN(hook_scripts);
  RUN(stack_balanced_and_free_after_close);
  RUN(token_auth);
  RUN(script_hooks);
  RUN(env_references);
  RUN(strict_and_warnings);
  RUN(listen_addresses);
  RUN(validation_lines);
  sl_lua_close(vm);
  return tl_report();
}
