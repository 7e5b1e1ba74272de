# Sluice - a Lua-scriptable Socket.IO delivery gateway in C.
#
#   make deps    install missing Debian packages and the npm test clients (npm ci)
#   make         build build/sluice and build/libsluice.a
#   make run     deps + build + start Sluice on examples/ticker.lua
#   make test    deps + build + every test; ends with "N passed, N failed"
#   make asan    the same suite against an AddressSanitizer+UBSan build
#   make bench   the side-by-side benchmark (writes spec/bench/RESULTS.md)
#   make fuzz    run the libFuzzer targets for the parsers for a short while

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
CFLAGS  ?=
CFLAGS  += -std=gnu11 $(OPT) -g -pipe -fno-omit-frame-pointer \
           -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Icore -Ilua $(LUAJIT_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  += -luv -lluajit-5.1 -lwslay -lcjson -lyaml -lhttp_parser -lcrypto -lz -lm -lpthread -ldl
LDFLAGS += $(EXTRA_LDFLAGS)

LIB_SRC  := $(sort $(filter-out core/main.c,$(wildcard core/*.c)) $(wildcard lua/*.c))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
LUA_LIB  := $(sort $(wildcard lua/*.lua))
LUA_GEN  := $(BUILD)/gen/lua_embedded.c
UNIT_SRC := $(sort $(wildcard spec/unit/test_*.c))
UNIT_BIN := $(patsubst spec/unit/%.c,$(BUILD)/spec/%,$(UNIT_SRC))
BENCH_SRC := $(sort $(wildcard spec/bench/*.c))
BENCH_BIN := $(patsubst spec/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all deps run test check-unit asan valgrind bench fuzz clean format
all: $(BUILD)/sluice $(BUILD)/libsluice.a $(UNIT_BIN) $(BUILD)/examples/embed

deps:
	@bash .ci/deps.sh

$(BUILD)/obj/%.o: %.c $(wildcard core/*.h lua/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# lua/*.lua (the Lua-side standard library) is compiled into the binary.
$(LUA_GEN): $(LUA_LIB) .ci/embed-lua.sh
	@mkdir -p $(dir $@)
	bash .ci/embed-lua.sh $@ $(LUA_LIB)

$(BUILD)/obj/gen/lua_embedded.o: $(LUA_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# core/status.html (the status page at GET /) is compiled into the library as sl_status_html.
$(BUILD)/gen/status_html.c: core/status.html .ci/embed-file.sh
	@mkdir -p $(dir $@)
	bash .ci/embed-file.sh $@ sl_status_html core/status.html

$(BUILD)/obj/gen/status_html.o: $(BUILD)/gen/status_html.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libsluice.a: $(LIB_OBJ) $(BUILD)/obj/gen/lua_embedded.o $(BUILD)/obj/gen/status_html.o
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/sluice: $(BUILD)/obj/core/main.o $(BUILD)/libsluice.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LDLIBS)

# examples/embed.c: a C program embedding Sluice with C hooks (run by spec/e2e/embed.test.mjs).
$(BUILD)/examples/embed: examples/embed.c core/sluice.h $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -rdynamic -o $@ $< $(BUILD)/libsluice.a $(LDLIBS)

$(BUILD)/spec/%: spec/unit/%.c spec/unit/testlib.h $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ispec/unit $(LDFLAGS) -rdynamic -o $@ $< $(BUILD)/libsluice.a $(LDLIBS)

# Hook micro-benchmark: the Lua hooks called as the core calls them, ns per call.
$(BUILD)/bench/bench_hooks: spec/lua/bench_hooks.c spec/unit/fake_core.c $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O2 -Ispec/unit -o $@ $< $(BUILD)/libsluice.a $(LDLIBS)

$(BUILD)/bench/%: spec/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O2 -o $@ $< -luv -lm

SLUICE_PORT ?= 3000
export SLUICE_PORT
run: deps all
	@echo ""
	@echo "Sluice on http://127.0.0.1:$(SLUICE_PORT) (examples/ticker.lua): a Lua producer publishes"
	@echo "prices on namespace /feed, topic \"prices\", every 200 ms."
	@echo "  connect:   node examples/client.mjs      (or any socket.io-client: io(\"http://127.0.0.1:$(SLUICE_PORT)/feed\"),"
	@echo "             then emit(\"subscribe\", {topic: \"prices\"}) and listen on \"prices\")"
	@echo "  publish:   curl -d '{\"namespace\":\"/feed\",\"topic\":\"prices\",\"payload\":{\"symbol\":\"X\",\"price\":1}}' http://127.0.0.1:$(SLUICE_PORT)/api/publish"
	@echo "  status:    http://127.0.0.1:$(SLUICE_PORT)/   metrics: http://127.0.0.1:$(SLUICE_PORT)/metrics"
	@echo "  stop:      Ctrl-C"
	@echo ""
	exec $(BUILD)/sluice examples/ticker.lua

test: deps all
	@bash spec/run.sh $(BUILD)

asan:
	@bash .ci/deps.sh
	$(MAKE) BUILD=build-asan OPT=-O1 EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" EXTRA_LDFLAGS="-fsanitize=address,undefined" all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 SLUICE_ASAN=1 bash spec/run.sh build-asan

# The C unit tests (including the embedding test, which runs a real gateway) under memcheck.
valgrind: all
	@fail=0; pass=0; for t in $(UNIT_BIN); do \
	  if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	       $$t > $$t.valgrind.log 2>&1; then pass=$$((pass+1)); echo "valgrind $$t: clean"; \
	  else fail=$$((fail+1)); echo "valgrind $$t: FAILED"; tail -n 40 $$t.valgrind.log; fi; \
	done; echo "$$pass passed, $$fail failed"; [ $$fail -eq 0 ]

bench: deps all $(BENCH_BIN) $(BUILD)/bench/bench_hooks
	@bash spec/bench/run.sh

fuzz:
	@bash spec/fuzz/run.sh

format:
	clang-format -i core/*.c core/*.h lua/*.c lua/*.h

clean:
	rm -rf build build-asan build-fuzz
