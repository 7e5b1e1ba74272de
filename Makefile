# Sluice - a Lua-scriptable Socket.IO delivery gateway in C.
#
#   make deps    install missing Debian packages and the npm test clients (npm ci)
#   make         build build/sluice and build/libsluice.a
#   make run     deps + build + start Sluice on examples/ticker.lua
#   make cluster-demo  three nodes and a redis-server on this machine (examples/cluster/)
#   make test    deps + build + every test; ends with "N passed, N failed"
#   make asan    the same suite against an AddressSanitizer+UBSan build
#   make bench   the side-by-side benchmark (writes spec/bench/RESULTS.md)
#   make fuzz    run the libFuzzer targets for the parsers for a short while
#   make install PREFIX=/usr/local [DESTDIR=]   the binary, libsluice.a/.so, headers,
#                sluice.pc, the shipped scripts and the systemd unit

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
CFLAGS  ?=
CFLAGS  += -std=gnu11 $(OPT) -g -pipe -fno-omit-frame-pointer \
           -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Icore -Ilua $(LUAJIT_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  += -luv -lluajit-5.1 -lwslay -lcjson -lyaml -lhttp_parser -lhiredis -lmsgpackc -lssl -lcrypto -lz -lm -lpthread -ldl
LDFLAGS += $(EXTRA_LDFLAGS)
# sd_notify(READY=1) for a Type=notify systemd unit, when libsystemd is there at build time.
SYSTEMD_LIBS := $(shell pkg-config --libs libsystemd 2>/dev/null)
ifneq ($(SYSTEMD_LIBS),)
SYSTEMD_CFLAGS := -DSLUICE_HAVE_SYSTEMD $(shell pkg-config --cflags libsystemd)
endif
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION := $(shell sed -n 's/^\#define SLUICE_VERSION "\(.*\)"/\1/p' core/sluice.h)
SO_MAJOR := 0

LIB_SRC  := $(sort $(filter-out core/main.c,$(wildcard core/*.c)) $(wildcard lua/*.c))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
LUA_LIB  := $(sort $(wildcard lua/*.lua))
LUA_GEN  := $(BUILD)/gen/lua_embedded.c
UNIT_SRC := $(sort $(wildcard spec/unit/test_*.c))
UNIT_BIN := $(patsubst spec/unit/%.c,$(BUILD)/spec/%,$(UNIT_SRC))
BENCH_SRC := $(sort $(wildcard spec/bench/*.c))
BENCH_BIN := $(patsubst spec/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all deps run test check-unit asan valgrind bench fuzz clean format install cluster-demo
all: $(BUILD)/sluice $(BUILD)/libsluice.a $(BUILD)/libsluice.so $(UNIT_BIN) $(BUILD)/examples/embed

deps:
	@bash .ci/deps.sh

# -fPIC: the same objects make libsluice.a and libsluice.so (the Makefile is a prerequisite
# so that a change of flags rebuilds them); -fno-semantic-interposition keeps the compiler
# free to inline a module's exported functions into their callers in that module, as
# without -fPIC (nobody interposes Sluice's symbols).
PIC := -fPIC -fno-semantic-interposition
$(BUILD)/obj/%.o: %.c $(wildcard core/*.h lua/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PIC) -c $< -o $@

$(BUILD)/obj/core/main.o: CFLAGS += $(SYSTEMD_CFLAGS)

# lua/*.lua (the Lua-side standard library) is compiled into the binary.
$(LUA_GEN): $(LUA_LIB) .ci/embed-lua.sh
	@mkdir -p $(dir $@)
	bash .ci/embed-lua.sh $@ $(LUA_LIB)

$(BUILD)/obj/gen/lua_embedded.o: $(LUA_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PIC) -c $< -o $@

# core/status.html (the status page at GET /) is compiled into the library as sl_status_html.
$(BUILD)/gen/status_html.c: core/status.html .ci/embed-file.sh
	@mkdir -p $(dir $@)
	bash .ci/embed-file.sh $@ sl_status_html core/status.html

$(BUILD)/obj/gen/status_html.o: $(BUILD)/gen/status_html.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PIC) -c $< -o $@

$(BUILD)/libsluice.a: $(LIB_OBJ) $(BUILD)/obj/gen/lua_embedded.o $(BUILD)/obj/gen/status_html.o
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libsluice.so: $(LIB_OBJ) $(BUILD)/obj/gen/lua_embedded.o $(BUILD)/obj/gen/status_html.o
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libsluice.so.$(SO_MAJOR) -o $@ $^ $(LDLIBS)

$(BUILD)/sluice: $(BUILD)/obj/core/main.o $(BUILD)/libsluice.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LDLIBS) $(SYSTEMD_LIBS)

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
	$(CC) $(CFLAGS) -O2 -o $@ $< -luv -lssl -lcrypto -lm

SLUICE_PORT ?= 3000
export SLUICE_PORT
run: deps all
	@echo ""
	@echo "Sluice on http://127.0.0.1:$(SLUICE_PORT) (examples/ticker.lua): a Lua producer publishes"
	@echo "prices on namespace /feed, topic \"prices\", every 200 ms."
	@echo "  connect:   SLUICE_PORT=$(SLUICE_PORT) node examples/client.mjs"
	@echo "             (or any socket.io-client: io(\"http://127.0.0.1:$(SLUICE_PORT)/feed\"),"
	@echo "             then emit(\"subscribe\", {topic: \"prices\"}) and listen on \"prices\")"
	@echo "  publish:   curl -H 'Content-Type: application/json' -d '{\"namespace\":\"/feed\",\"topic\":\"prices\",\"payload\":{\"symbol\":\"X\",\"price\":1,\"ts\":'\"\$$(date +%s%3N)\"'}}' \\"
	@echo "               http://127.0.0.1:$(SLUICE_PORT)/api/publish"
	@echo "  status:    http://127.0.0.1:$(SLUICE_PORT)/   metrics: http://127.0.0.1:$(SLUICE_PORT)/metrics"
	@echo "  stop:      Ctrl-C"
	@echo ""
	exec $(BUILD)/sluice examples/ticker.lua

# Three Sluice nodes sharing a redis-server (README "Cluster"): a client on one node receives
# what is published on another. KEEP=1 leaves them running.
cluster-demo: deps all
	bash examples/cluster/run.sh

test: deps all
	@bash spec/run.sh $(BUILD)

# SLUICE_MAKE_ARGS: how the suite's own `make install` (spec/e2e/install.test.mjs) builds.
ASAN_MAKE_ARGS := BUILD=build-asan OPT=-O1 EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" EXTRA_LDFLAGS="-fsanitize=address,undefined"
asan:
	@bash .ci/deps.sh
	$(MAKE) $(ASAN_MAKE_ARGS) all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 SLUICE_ASAN=1 \
	  SLUICE_MAKE_ARGS='$(ASAN_MAKE_ARGS)' bash spec/run.sh build-asan

# The C unit tests (including the embedding test, which runs a real gateway) under memcheck.
valgrind: all
	@fail=0; pass=0; for t in $(UNIT_BIN); do \
	  if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	       $$t > $$t.valgrind.log 2>&1; then pass=$$((pass+1)); echo "valgrind $$t: clean"; \
	  else fail=$$((fail+1)); echo "valgrind $$t: FAILED"; tail -n 40 $$t.valgrind.log; fi; \
	done; echo "$$pass passed, $$fail failed"; [ $$fail -eq 0 ]

bench: deps all $(BENCH_BIN) $(BUILD)/bench/bench_hooks
	@bash spec/bench/run.sh

# install: PREFIX/bin/sluice; PREFIX/lib/libsluice.a, libsluice.so.VERSION (+ .so.MAJOR, .so
# links) and pkgconfig/sluice.pc; PREFIX/include/sluice/ sluice.h and every header it
# includes; PREFIX/share/sluice/scripts (where the binary looks: ../share/sluice/scripts
# next to it); the systemd unit in PREFIX/lib/systemd/system with PREFIX's paths.
# `pkg-config --cflags --libs sluice` then builds an embedding program (--static for .a).
install: all
	@set -e; d='$(DESTDIR)$(PREFIX)'; \
	install -d "$$d/bin" "$$d/lib/pkgconfig" "$$d/include/sluice" "$$d/share/sluice/scripts" \
	  "$$d/lib/systemd/system" "$$d/share/doc/sluice"; \
	install -m 755 $(BUILD)/sluice "$$d/bin/sluice"; \
	install -m 644 $(BUILD)/libsluice.a "$$d/lib/libsluice.a"; \
	install -m 755 $(BUILD)/libsluice.so "$$d/lib/libsluice.so.$(VERSION)"; \
	ln -sf libsluice.so.$(VERSION) "$$d/lib/libsluice.so.$(SO_MAJOR)"; \
	ln -sf libsluice.so.$(SO_MAJOR) "$$d/lib/libsluice.so"; \
	hdrs=core/sluice.h; todo=$$hdrs; \
	while [ -n "$$todo" ]; do next=; for h in $$todo; do \
	  for i in $$(sed -n 's/^ *\# *include *"\([^"]*\)".*/\1/p' $$h); do \
	    f=$$(dirname $$h)/$$i; [ -f "$$f" ] || f=core/$$i; [ -f "$$f" ] || f=lua/$$i; \
	    case " $$hdrs " in *" $$f "*) ;; *) hdrs="$$hdrs $$f"; next="$$next $$f";; esac; \
	  done; done; todo=$$next; done; \
	install -m 644 $$hdrs "$$d/include/sluice/"; \
	install -m 644 scripts/*.lua "$$d/share/sluice/scripts/"; \
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(LDLIBS)|g' sluice.pc.in > "$$d/lib/pkgconfig/sluice.pc"; \
	sed -e 's|/usr/local|$(PREFIX)|g' examples/systemd/sluice.service \
	  > "$$d/lib/systemd/system/sluice.service"; \
	install -m 644 README.md LICENSE "$$d/share/doc/sluice/"; \
	echo "installed sluice $(VERSION) into $$d"

fuzz:
	@bash spec/fuzz/run.sh

format:
	clang-format -i core/*.c core/*.h lua/*.c lua/*.h

clean:
	rm -rf build build-asan build-fuzz
