/* fuzz_config.c - libFuzzer target for the config loaders: hostile JSON, YAML and Lua text
 * through sl_config_load_string (parse into Lua tables, or run the Lua chunk under the VM's
 * instruction and memory limits, then the one C validator). The first input byte picks the
 * syntax (bit 7: Lua, else bit 0: YAML, else JSON); the rest is the document. Any crash, sanitizer report or leak is a
 * finding; a config error is the expected outcome for almost every input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fake_core.c"
#include "sl_config.h"
#include "sl_lua.h"
#include "sl_lua_call.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  sl_log_threshold = SL_LOG_ERROR;
  /* A fresh VM per input, closed after it: a Lua config is code, and what one input leaves
   * behind in a shared VM (globals, a grown string table, a replaced library function, a
   * metatable on strings) would change what the next input does, so a finding could not be
   * reproduced from its input alone (a shared VM once gave a spurious 13 s timeout), and
   * libFuzzer's leak check would blame whichever input grew it. */
  sl_lua *vm = sl_lua_new(NULL);
  /* A Lua config is code: a loop that builds ever longer strings stays under the VM's
   * memory cap but, each concatenation copying the whole string, churns through
   * gigabytes and minutes within the default 10M-instruction budget (the budget counts
   * instructions, not the bytes they copy). ASan's allocator keeps freed chunks per size
   * class, so that churn would also read as an out-of-memory here. A smaller budget keeps
   * the search on the loaders. */
  sl__lua_set_limits(vm, 200000, 64u << 20);
  const char *fmt = (data[0] & 0x80) ? "lua" : (data[0] & 1) ? "yaml" : "json";
  sl_config *cfg = NULL;
  char err[512];
  if (sl_config_load_string(sl_lua_state(vm), (const char *)data + 1, size - 1, fmt, "<fuzz>",
                            &cfg, err, sizeof err) == 0)
    sl_config_free(cfg);
  sl_lua_close(vm);
  return 0;
}
