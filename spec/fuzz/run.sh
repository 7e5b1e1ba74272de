#!/usr/bin/env bash
# spec/fuzz/run.sh - build the libFuzzer targets for the parsers and run each for a while.
#
#   bash spec/fuzz/run.sh [target...]     (default: every spec/fuzz/fuzz_*.c)
#   FUZZ_SECONDS=300 bash spec/fuzz/run.sh fuzz_sio
#   FUZZ_SECONDS=1800 FUZZ_RUNS=10000000 bash spec/fuzz/run.sh fuzz_http   (a long run: stops
#       at 30 minutes or 10 million executions, whichever comes first)
#   bash spec/fuzz/run.sh --repro fuzz_sio build-fuzz/artifacts/fuzz_sio/crash-...
#
# Needs clang with the libFuzzer runtime (Debian: clang, libclang-rt-14-dev). Binaries, the
# growing corpus and crash artifacts go to build-fuzz/ (git-ignored); the committed seeds in
# spec/fuzz/corpus/<target>/ are only read. Exits non-zero if any target finds a crash.
set -euo pipefail

cd "$(dirname "$0")/../.."
OUT=${BUILD_FUZZ:-build-fuzz}
SECS=${FUZZ_SECONDS:-30}
CC_FUZZ=${CC_FUZZ:-clang}
CFLAGS_FUZZ="-std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
             -fno-sanitize-recover=undefined -Wall -Wextra -Icore"

if ! command -v "$CC_FUZZ" >/dev/null; then
  echo "fuzz: $CC_FUZZ not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi

# What the library links, as the Makefile says (it grows as modules are added); the list
# below is the fallback when make cannot tell.
LIBS_ALL=$(make -s --no-print-directory --eval='sl-print-ldlibs: ; @echo $(LDLIBS)' \
             sl-print-ldlibs 2>/dev/null || true)
[[ -n "$LIBS_ALL" ]] || LIBS_ALL="-luv -lluajit-5.1 -lwslay -lcjson -lyaml -lhttp_parser -lhiredis
  -lmsgpackc -lssl -lcrypto -lz -lm -lpthread -ldl"

# The whole library (core + Lua binding) instrumented for libFuzzer, ASan and UBSan, built
# once by the Makefile's own rules into $OUT/lib (make keeps it up to date).
lib() {
  make -s -j2 BUILD="$OUT/lib" CC="$CC_FUZZ" OPT=-O1 \
    EXTRA_CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
    "$OUT/lib/libsluice.a" >/dev/null
}

build() { # build <target>
  mkdir -p "$OUT"
  lib
  # Every target links the instrumented library and takes only what it names from it: the
  # codec targets the codec, fuzz_config/fuzz_pview the Lua binding over the recording fake
  # core (spec/unit/fake_core.c, #include'd: no network), the others a real gateway
  # (fuzz_gw.h) or the spill.
  # shellcheck disable=SC2086
  "$CC_FUZZ" $CFLAGS_FUZZ -Ilua -Ispec/unit $(pkg-config --cflags luajit) "spec/fuzz/$1.c" \
    "$OUT/lib/libsluice.a" $LIBS_ALL -o "$OUT/$1"
}

dict_for() { # dict_for <target>: the -dict option for a target (empty for none)
  case "$1" in
  fuzz_ws | fuzz_api) echo "-dict=spec/fuzz/fuzz_session.dict" ;;
  fuzz_spill | fuzz_orphans | fuzz_tls_record) ;;
  *) if [[ -f "spec/fuzz/$1.dict" ]]; then echo "-dict=spec/fuzz/$1.dict"; else echo "-dict=spec/fuzz/sio.dict"; fi ;;
  esac
}

if [[ "${1:-}" == "--repro" ]]; then
  t=$2; shift 2
  build "$t"
  exec "$OUT/$t" "$@"
fi

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  targets=()
  for f in spec/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=0
for t in "${targets[@]}"; do
  echo "fuzz: building $t"
  build "$t"
  mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t"
  echo "fuzz: running $t for ${SECS}s"
  # The first corpus dir receives new inputs; the committed seeds are read only.
  # shellcheck disable=SC2046
  if ! "$OUT/$t" -max_total_time="$SECS" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
      -print_final_stats=1 $(dict_for "$t") \
      -artifact_prefix="$OUT/artifacts/$t/" \
      "$OUT/corpus/$t" "spec/fuzz/corpus/$t" 2>"$OUT/$t.log"; then
    failed=1
    echo "fuzz: $t FAILED; see $OUT/$t.log and $OUT/artifacts/$t/" >&2
    tail -n 40 "$OUT/$t.log" >&2
  else
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$OUT/$t.log" | sed "s/^/fuzz: $t /"
  fi
done
exit $failed
