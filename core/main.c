/* main.c - the `sluice` command: a thin program on top of sluice.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include "sluice.h"
#include "sl_util.h"
#include "config.h"
#include "tls.h"
#include "../lua/sl_config.h"
#include "../lua/sl_lua.h"
#ifdef SLUICE_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static const char usage[] =
    "Usage: sluice [OPTIONS] CONFIG [--server NAME]...\n"
    "       sluice check [--strict] CONFIG\n"
    "\n"
    "Sluice is a Socket.IO delivery gateway with bounded per-client queues, overflow\n"
    "policies, at-least-once delivery and policy hooks written in Lua. It is a drop-in\n"
    "for StreamFenceJs: the same client protocol, config files and metric names.\n"
    "\n"
    "CONFIG is a .lua, .json, .yaml or .yml file (StreamFenceJs schema plus Sluice's keys).\n"
    "Every server in it runs in this one process, or only those named with --server.\n"
    "\n"
    "Commands:\n"
    "  check CONFIG          validate CONFIG and print a summary: exit 0 if valid, 3 if valid\n"
    "                        with warnings (e.g. an unknown key), 1 if not\n"
    "\n"
    "Options:\n"
    "  --server NAME         run only server NAME (repeatable)\n"
    "  --host HOST           listen on HOST instead of the config's host (one server: the\n"
    "                        config's only one, or the one named with --server)\n"
    "  --port PORT           listen on PORT likewise (0 = OS-assigned)\n"
    "  --strict              unknown config keys are errors (as `strict = true` in the config)\n"
    "  --log-level LEVEL     error, warn, info (default) or debug\n"
    "  --log-format FORMAT   text (default) or json (one object per line)\n"
    "  --version             print the version and exit\n"
    "  -h, --help            print this help and exit\n"
    "\n"
    "HTTP on each server's port:\n"
    "  /socket.io/           Engine.IO v4 / Socket.IO v5 (WebSocket, long-polling + upgrade)\n"
    "  POST /api/publish     {\"namespace\",\"topic\",\"payload\",\"to\"?} or an array of them\n"
    "  GET /metrics          Prometheus text format (streamfence_* and sluice_* metrics)\n"
    "  GET /healthz          liveness; GET /readyz readiness (503 while draining)\n"
    "  POST /api/drain       drain as on SIGTERM; GET /api/stats JSON; GET / live status page\n"
    "\n"
    "Environment:\n"
    "  ${VAR}, ${VAR:-default}  in JSON/YAML config values (a bare ${PORT} is a number)\n"
    "  SLUICE_PORT           the port of the example configs (default 3000)\n"
    "  SLUICE_SCRIPTS_DIR    where sluice.script() looks after the config's scripts/\n"
    "\n"
    "Signals:\n"
    "  SIGTERM               drain: refuse new connections, /readyz 503, wait up to "
    "drainTimeoutMs\n"
    "                        for in-flight acks and lanes to empty, close transports, exit 0\n"
    "                        (a second SIGTERM stops at once)\n"
    "  SIGINT                stop now (close sessions, clean spill files)\n"
    "  SIGHUP                reload the configuration\n"
    "\n"
    "Exit status: 0 on a clean stop, 1 on a configuration or startup error, 2 on a usage error,\n"
    "3 from `sluice check` for a valid config that logged warnings.\n";

static int cmd_check(const char *path) {
  char err[1024];
  sl_lua *vm = sl_lua_new(NULL);
  sl_config *cfg = NULL;
  if (sl_config_load(sl_lua_state(vm), path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "sluice: %s\n", err);
    sl_lua_close(vm);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    return 1;
  }
  /* TLS: load what each WSS server would serve (files, permissions, PEM, key match,
   * expiry), as start and reload will. */
  for (size_t i = 0; i < cfg->nservers; i++) {
    if (!cfg->servers[i].tls) continue;
    sl_tls_ctx *ctx = sl_tls_ctx_new(cfg->servers[i].tls, err, sizeof err);
    if (!ctx) {
      fprintf(stderr, "sluice: %s: server \"%s\": %s\n", path, cfg->servers[i].name, err);
      sl_config_free(cfg);
      sl_lua_close(vm);
      uv_run(uv_default_loop(), UV_RUN_DEFAULT);
      return 1;
    }
    sl_tls_ctx_unref(ctx);
  }
  char *sum = sl_config_summary(cfg);
  unsigned warnings = cfg->warnings;
  if (warnings)
    printf("%s: valid with %u warning%s (see above; --strict makes unknown keys errors)\n%s", path,
           warnings, warnings == 1 ? "" : "s", sum ? sum : "");
  else
    printf("%s: OK\n%s", path, sum ? sum : "");
  free(sum);
  sl_config_free(cfg);
  sl_lua_close(vm);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  return warnings ? 3 : 0;
}

/* Tell a Type=notify systemd unit that every server listens (a no-op outside systemd, or
 * in a build without libsystemd: use Type=simple there). */
static void notify_ready(void) {
#ifdef SLUICE_HAVE_SYSTEMD
  int r = sd_notifyf(0, "READY=1\nSTATUS=serving\nMAINPID=%lu", (unsigned long)getpid());
  if (r < 0) sl_log_warn("sd_notify(READY=1) failed: %s", strerror(-r));
#endif
}

/* --port's value: a whole number 0..65535, or -1. */
static int parse_port(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < 0 || v > 65535) return -1;
  return (int)v;
}

/* Large buffers (partial bodies and WebSocket messages, big publishes) are mmap'd and go
 * back to the kernel when freed. glibc's default raises the mmap threshold to the size of the
 * largest block freed so far (up to 32 MiB), after which such buffers come from the heap and
 * their pages stay resident once freed: 1,000 clients each refused after sending a few
 * hundred KiB then cost that much RSS for good, whatever maxInboundBufferBytes says. Setting
 * the threshold fixes it (and turns the adjustment off). */
static void malloc_setup(void) {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}

int main(int argc, char **argv) {
  const char *config = NULL;
  malloc_setup();
  const char *servers[64];
  int nservers = 0;
  bool check = false;
  sl_config_options opts = {.port = -1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (strcmp(a, "--version") == 0) {
#ifdef SLUICE_HAVE_SYSTEMD
      printf("sluice %s (systemd notify)\n", SLUICE_VERSION);
#else
      printf("sluice %s\n", SLUICE_VERSION);
#endif
      return 0;
    } else if (strcmp(a, "--log-level") == 0 && i + 1 < argc) {
      int l = sl_log_level_parse(argv[++i]);
      if (l < 0) {
        fprintf(stderr, "sluice: unknown log level \"%s\" (expected error, warn, info, debug)\n",
                argv[i]);
        return 2;
      }
      sl_log_threshold = (sl_log_level)l;
    } else if (strcmp(a, "--log-format") == 0 && i + 1 < argc) {
      const char *f = argv[++i];
      if (strcmp(f, "json") == 0)
        sl_log_json = 1;
      else if (strcmp(f, "text") == 0)
        sl_log_json = 0;
      else {
        fprintf(stderr, "sluice: unknown log format \"%s\" (expected text or json)\n", f);
        return 2;
      }
    } else if (strcmp(a, "--server") == 0 && i + 1 < argc) {
      if (nservers < 64) servers[nservers++] = argv[++i];
    } else if (strcmp(a, "--host") == 0 && i + 1 < argc) {
      opts.host = argv[++i];
      if (!opts.host[0]) {
        fprintf(stderr, "sluice: --host needs a non-empty address\n");
        return 2;
      }
    } else if (strcmp(a, "--port") == 0 && i + 1 < argc) {
      opts.port = parse_port(argv[++i]);
      if (opts.port < 0) {
        fprintf(stderr, "sluice: --port \"%s\" is not a port number (0 to 65535)\n", argv[i]);
        return 2;
      }
    } else if (strcmp(a, "--strict") == 0) {
      opts.strict = true;
    } else if (strcmp(a, "check") == 0 && !config && !check) {
      check = true;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "sluice: unknown option %s\nTry 'sluice --help'.\n", a);
      return 2;
    } else if (!config) {
      config = a;
    } else {
      fprintf(stderr, "sluice: unexpected argument %s\nTry 'sluice --help'.\n", a);
      return 2;
    }
  }
  if (!config) {
    fputs(usage, stderr);
    return 2;
  }
  if (nservers == 1) opts.server = servers[0];
  sl_config_set_options(&opts); /* kept for reloads */
  if (check) return cmd_check(config);

  uv_loop_t *loop = uv_default_loop();
  char err[1024];
  sluice_t *gw = sluice_new_from_file(loop, config, err, sizeof err);
  if (!gw) {
    fprintf(stderr, "sluice: %s\n", err);
    return 1;
  }
  for (int i = 0; i < nservers; i++) {
    if (sluice_select_server(gw, servers[i]) != 0) {
      /* StreamFenceJs's words, and the list helps. */
      fprintf(stderr, "sluice: %s: No server named \"%s\" found in config (available: ", config,
              servers[i]);
      const char *name;
      for (size_t k = 0; (name = sluice_server_name_at(gw, k)) != NULL; k++)
        fprintf(stderr, "%s%s", k ? ", " : "", name);
      fputs(")\n", stderr);
      sluice_stop(gw, NULL, NULL);
      uv_run(loop, UV_RUN_DEFAULT);
      sluice_free(gw);
      return 1;
    }
  }
  /* Signals first: a SIGTERM right after "listening" must stop gracefully. */
  sluice_handle_signals(gw);
  if (sluice_start(gw, err, sizeof err) != 0) {
    fprintf(stderr, "sluice: %s\n", err);
    sluice_stop(gw, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    sluice_free(gw);
    return 1;
  }
  sluice_watch_config(gw);
  notify_ready();
  uv_run(loop, UV_RUN_DEFAULT);
  sluice_free(gw);
  uv_loop_close(loop);
  return 0;
}
