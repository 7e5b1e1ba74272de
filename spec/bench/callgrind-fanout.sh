#!/usr/bin/env bash
# spec/bench/callgrind-fanout.sh [BUILD_DIR] - instructions per delivered message of the fan-out
# path, counted by callgrind (repeatable whatever else the machine is doing, unlike CPU time).
#
# Runs BUILD_DIR/sluice (default build) under callgrind with spec/bench/sluice-bench.lua, joins
# CLIENTS WebSocket clients with BUILD_DIR/bench/loadgen, lets the Lua producer publish RATE
# msg/s x SIZE B for DURATION s, then counts the instructions spent in sl_publish and in the
# loop's flush (sl_gateway_flush_dirty: lanes -> session queues -> writev), i.e. encoding once
# and fanning out, per delivery (publishes x clients, from /metrics). The producer's own Lua
# work before sl_publish is not counted. Prints one line:
#   fanout_ir_per_delivery <n> (publishes <p>, clients <c>, Ir <total>)
# Used to compare two builds of the same tree history, e.g. before/after a refactor:
#   bash spec/bench/callgrind-fanout.sh /path/to/old/build; bash spec/bench/callgrind-fanout.sh
# TLS=1: the same over WSS (a P-256 certificate made here, loadgen --tls), so that the count
# includes the encryption of every connection's records (the line then starts tls_fanout_...).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
CLIENTS=${CLIENTS:-200}
RATE=${RATE:-500}
SIZE=${SIZE:-100}
DURATION=${DURATION:-10}
PORT=${PORT:-$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')}
out=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] && cp "$out/cg.out" "$KEEP"; rm -rf "$out"' EXIT
tls_env=() tls_arg=() tag=fanout
if [ "${TLS:-0}" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null || { echo "callgrind-fanout: openssl failed" >&2; exit 1; }
  tls_env=(TLS_CERT="$out/cert.pem" TLS_KEY="$out/key.pem") tls_arg=(--tls) tag=tls_fanout
fi
env "${tls_env[@]}" PORT="$PORT" RATE="$RATE" SIZE="$SIZE" TICK_MS=10 PRODUCER_DELAY_MS=4000 MAX_QUEUED=100000 \
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" --collect-atstart=no \
  --toggle-collect=sl_publish --toggle-collect=sl_gateway_flush_dirty \
  "$BUILD/sluice" --log-level warn spec/bench/sluice-bench.lua >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  curl -sfk "http$([ "$tag" = tls_fanout ] && echo s)://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
timeout $((DURATION + 60)) "$BUILD/bench/loadgen" --port "$PORT" --clients "$CLIENTS" --duration "$DURATION" \
  --warmup 1 --ramp-per-sec 200 --wait-traffic 30 --quiet "${tls_arg[@]}" >"$out/loadgen.json" 2>"$out/loadgen.err"
lg=$?
pub=$(curl -sfk "http$([ "$tag" = tls_fanout ] && echo s)://127.0.0.1:$PORT/metrics" | awk '/^streamfence_messages_published_total/ {s += $2} END {print s + 0}')
kill -INT $pid
wait $pid 2>/dev/null
ir=$(callgrind_annotate "$out/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
if [ -z "$ir" ] || [ "${pub:-0}" -eq 0 ] || [ "$lg" -ne 0 ]; then
  echo "callgrind-fanout: no measurement (Ir=$ir publishes=$pub loadgen exit $lg); logs:" >&2
  tail -5 "$out/server.log" "$out/loadgen.err" >&2
  exit 1
fi
awk -v tag="$tag" -v ir="$ir" -v p="$pub" -v c="$CLIENTS" \
  'BEGIN {printf tag "_ir_per_delivery %.1f (publishes %d, clients %d, Ir %d)\n", ir / (p * c), p, c, ir}'
