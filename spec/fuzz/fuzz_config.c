/* fuzz_config.c - libFuzzer target for the config loader: hostile JSON and YAML text through
 * sl_config_load_string (parse into Lua tables, then the one C validator). The first input
 * byte picks the syntax; the rest is the document. Any crash, sanitizer report or leak is a
 * finding; a config error is the expected outcome for almost every input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fake_core.c"
#include "sl_config.h"
#include "sl_lua.h"

static sl_lua *vm;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (!vm) {
    sl_log_threshold = SL_LOG_ERROR;
    vm = sl_lua_new(NULL);
  }
  const char *fmt = (data[0] & 1) ? "yaml" : "json";
  sl_config *cfg = NULL;
  char err[512];
  if (sl_config_load_string(sl_lua_state(vm), (const char *)data + 1, size - 1, fmt, "<fuzz>",
                            &cfg, err, sizeof err) == 0)
    sl_config_free(cfg);
  return 0;
}
