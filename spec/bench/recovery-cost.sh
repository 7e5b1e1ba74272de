#!/usr/bin/env bash
# spec/bench/recovery-cost.sh [BUILD_DIR] - the cost of connection-state recovery per delivery:
# instructions counted by callgrind with the bench namespace's recovery off, then on, in the
# same run, and their ratio. On: every delivery carries its offset as the last argument
# (encoded once per publish) and each publish goes into the namespace's history (which also
# frees the evicted message there, where off it is freed after the write).
#
# Two scopes, each printed as "<scope>_ir_per_delivery off <a> on <b> ratio <b/a>":
#   fanout - sl_publish + the loop's flush (what spec/bench/callgrind-fanout.sh counts);
#   loop   - everything uv_run does (the Lua producer, timers, acks of the write callbacks,
#            frees): the server's whole CPU per delivery once started.
# Instruction counts, not CPU time: the machine is shared, and callgrind's counts do not
# depend on what else runs. Deliveries = publishes x clients (from /metrics).
#   CLIENTS (200), RATE (500), SIZE (100), DURATION (8).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
CLIENTS=${CLIENTS:-200}
RATE=${RATE:-500}
SIZE=${SIZE:-100}
DURATION=${DURATION:-8}

# run <recovery 0|1> <toggle args...>: prints "<Ir> <publishes>"
run() {
  local rec=$1
  shift
  local port out pid ir pub
  port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  out=$(mktemp -d)
  env PORT="$port" RATE="$RATE" SIZE="$SIZE" TICK_MS=10 PRODUCER_DELAY_MS=4000 MAX_QUEUED=100000 \
    RECOVERY="$rec" valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
    --collect-atstart=no "$@" "$BUILD/sluice" --log-level warn spec/bench/sluice-bench.lua \
    >"$out/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  timeout $((DURATION + 60)) "$BUILD/bench/loadgen" --port "$port" --clients "$CLIENTS" \
    --duration "$DURATION" --warmup 1 --ramp-per-sec 200 --wait-traffic 30 --quiet \
    >"$out/loadgen.json" 2>/dev/null
  pub=$(curl -sf "http://127.0.0.1:$port/metrics" |
    awk '/^streamfence_messages_published_total/ {s += $2} END {print s + 0}')
  kill -INT $pid
  wait $pid 2>/dev/null
  ir=$(callgrind_annotate "$out/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  rm -rf "$out"
  echo "${ir:-0} ${pub:-0}"
}

for scope in fanout loop; do
  if [ $scope = fanout ]; then
    toggles=(--toggle-collect=sl_publish --toggle-collect=sl_gateway_flush_dirty)
  else
    toggles=(--toggle-collect=uv_run)
  fi
  read -r ir0 p0 < <(run 0 "${toggles[@]}")
  read -r ir1 p1 < <(run 1 "${toggles[@]}")
  if [ "$ir0" = 0 ] || [ "$p0" = 0 ] || [ "$ir1" = 0 ] || [ "$p1" = 0 ]; then
    echo "recovery-cost: no measurement for $scope (off: $ir0 Ir / $p0 publishes, on: $ir1 / $p1)" >&2
    exit 1
  fi
  awk -v s=$scope -v a="$ir0" -v pa="$p0" -v b="$ir1" -v pb="$p1" -v c="$CLIENTS" 'BEGIN {
    x = a / (pa * c); y = b / (pb * c)
    printf "%s_ir_per_delivery off %.1f on %.1f ratio %.4f (%+.2f%%; publishes %d / %d, clients %d)\n",
      s, x, y, y / x, (y / x - 1) * 100, pa, pb, c }'
done
