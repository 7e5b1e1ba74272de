#!/usr/bin/env bash
# spec/run.sh BUILD_DIR - the aggregator `make test` (and `make asan`) runs.
#
# 1. every $BUILD_DIR/spec/test_* binary (C unit tests and the Lua spec runner); each prints
#    "N passed, N failed" as its last line. A binary that exits non-zero without such a line
#    (a crash, an abort) counts as 1 failed.
# 2. the end-to-end suite: node --test --test-reporter=tap spec/e2e/ (counts from "# pass N" /
#    "# fail N" + "# cancelled N"), against SLUICE_BIN (default $BUILD_DIR/sluice).
# Prints one result line per suite and ends with exactly one line "N passed, N failed";
# exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
export SLUICE_BIN=${SLUICE_BIN:-$BUILD_DIR/sluice}
case $SLUICE_BIN in /*) ;; *) SLUICE_BIN="$PWD/$SLUICE_BIN" ;; esac

total_pass=0
total_fail=0
bad=0
logdir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-spec.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

# record NAME PASS FAIL STATUS
record() {
  total_pass=$((total_pass + $2))
  total_fail=$((total_fail + $3))
  printf '%-28s %s passed, %s failed%s\n' "$1:" "$2" "$3" "${4:+ ($4)}"
}

shopt -s nullglob
for bin in "$BUILD_DIR"/spec/test_*; do
  [ -f "$bin" ] && [ -x "$bin" ] || continue
  name=$(basename "$bin")
  out="$logdir/$name.out"
  # a hung binary must not hang `make test`: 10 minutes each at most (exit 124 = timed out)
  timeout -k 10 600 "$bin" >"$out" 2>&1
  rc=$?
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
  if [ -n "$summary" ]; then
    p=${summary%% passed*}
    f=${summary#*passed, }; f=${f%% failed*}
    note=""
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; note="exit status $rc"; fi
  else
    p=0; f=1; note="no summary line, exit status $rc"
  fi
  if [ "$f" -ne 0 ]; then
    bad=1
    echo "---- $name output (tail) ----"
    tail -n 40 "$out"
    echo "----"
  fi
  record "$name" "$p" "$f" "$note"
done

if [ -d spec/e2e ] && compgen -G "spec/e2e/*.test.mjs" >/dev/null; then
  out="$logdir/e2e.tap"
  # every test is bounded (--test-timeout), and so is the whole run
  timeout -k 10 900 node --test --test-timeout=180000 --test-reporter=tap spec/e2e/ >"$out" 2>&1
  rc=$?
  p=$(grep -E '^# pass [0-9]+' "$out" | tail -n 1 | awk '{print $3}')
  f=$(grep -E '^# fail [0-9]+' "$out" | tail -n 1 | awk '{print $3}')
  c=$(grep -E '^# cancelled [0-9]+' "$out" | tail -n 1 | awk '{print $3}')
  # a cancelled test (timeout, or a file that died before finishing) is a failure
  [ -n "$f" ] && f=$((f + ${c:-0}))
  note=""
  if [ -z "$p" ] || [ -z "$f" ]; then
    p=${p:-0}; f=1; note="no summary, exit status $rc"
  elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1; note="exit status $rc"
  fi
  if [ "$f" -ne 0 ]; then
    bad=1
    echo "---- e2e failures ----"
    # the failing tests with their diagnostics (TAP "not ok" blocks)
    awk '/^ *not ok /{show=1} /^ *ok /{show=0} show' "$out" | head -n 400
    echo "----"
  fi
  record "e2e (node --test)" "$p" "$f" "$note"
fi

[ "$total_fail" -ne 0 ] && bad=1
echo "$total_pass passed, $total_fail failed"
exit $bad
