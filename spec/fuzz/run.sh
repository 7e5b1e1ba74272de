#!/usr/bin/env bash
# spec/fuzz/run.sh - build the libFuzzer targets for the parsers and run each for a while.
#
#   bash spec/fuzz/run.sh [target...]     (default: every spec/fuzz/fuzz_*.c)
#   FUZZ_SECONDS=300 bash spec/fuzz/run.sh fuzz_sio
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
SRCS="core/sio_codec.c core/util.c"
CFLAGS_FUZZ="-std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
             -fno-sanitize-recover=undefined -Wall -Wextra -Icore"

if ! command -v "$CC_FUZZ" >/dev/null; then
  echo "fuzz: $CC_FUZZ not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi

build() { # build <target>
  mkdir -p "$OUT"
  if [[ "$1" == fuzz_config || "$1" == fuzz_pview ]]; then
    # The config loader and the payload views run inside the Lua binding: link the VM, the
    # embedded Lua library and the recording fake core (no network).
    bash .ci/embed-lua.sh "$OUT/lua_embedded.c" lua/*.lua
    # shellcheck disable=SC2086
    "$CC_FUZZ" $CFLAGS_FUZZ -Ilua -Ispec/unit $(pkg-config --cflags luajit) "spec/fuzz/$1.c" \
      $(ls lua/*.c | grep -v -e lua/embed.c -e lua/policy.c) core/config.c core/hooks.c core/util.c \
      "$OUT/lua_embedded.c" \
      -lluajit-5.1 -lyaml -lcjson -luv -lcrypto -lm -ldl -o "$OUT/$1"
    return
  fi
  if [[ "$1" == fuzz_spill ]]; then
    # The readers of what a crashed process left: orphan spill segments and the crash ledger.
    # shellcheck disable=SC2086
    "$CC_FUZZ" $CFLAGS_FUZZ "spec/fuzz/$1.c" core/spill.c core/ledger.c core/util.c \
      -luv -lz -lm -o "$OUT/$1"
    return
  fi
  # shellcheck disable=SC2086
  "$CC_FUZZ" $CFLAGS_FUZZ "spec/fuzz/$1.c" $SRCS -lcjson -o "$OUT/$1"
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
  if ! "$OUT/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
      -print_final_stats=1 -dict=spec/fuzz/sio.dict \
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
