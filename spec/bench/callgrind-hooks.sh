#!/usr/bin/env bash
# spec/bench/callgrind-hooks.sh - instructions per publish of the hook-cost variants, counted by
# callgrind: deterministic where the CPU-time figures of `make bench` are noisy.
#
#   bash spec/bench/callgrind-hooks.sh [off route_noop route coalesce_path coalesce]
#
# Runs build/sluice under valgrind with spec/bench/sluice-bench.lua (RATE msg/s, default 2000:
# callgrind is ~50x slower) and one loadgen client for 10 s, then prints the instructions spent
# in sl_publish per publish (hooks included). A hook's cost is the difference between variants:
# route - off, coalesce - coalesce_path, route_noop - off (the call alone). Needs valgrind and
# `make all build/bench/loadgen`.
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${RATE:-2000}
OUT=${OUT:-build/bench/callgrind}
mkdir -p "$OUT"
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(off route_noop route coalesce_path coalesce)
for v in "${variants[@]}"; do
  port=$((41000 + RANDOM % 1000))
  envs=(PORT=$port RATE="$RATE" SIZE=100 PRODUCER_DELAY_MS=1500 OVERFLOW=COALESCE MAX_QUEUED=4096)
  [ "$v" != off ] && envs+=(HOOKS="$v")
  env "${envs[@]}" valgrind --tool=callgrind --callgrind-out-file="$OUT/$v.out" \
    build/sluice spec/bench/sluice-bench.lua --log-level warn >"$OUT/$v.log" 2>&1 &
  pid=$!
  sleep 4
  timeout 60 build/bench/loadgen --port "$port" --clients 1 --ns /feed --topic prices \
    --duration 10 --warmup 1 --quiet --wait-traffic 20 --label "$v" >/dev/null || true
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  ann=$(callgrind_annotate --inclusive=yes "$OUT/$v.out" 2>/dev/null)
  n=$(grep -m1 "=> .*delivery.c:sl_publish (" <<<"$ann" | sed 's/.*(\([0-9,]*\)x).*/\1/' | tr -d ,)
  ir=$(grep -m1 "delivery.c:sl_publish \[" <<<"$ann" | awk '{gsub(",", "", $1); print $1}')
  if [ -z "$n" ] || [ -z "$ir" ]; then echo "$v: no publishes counted (see $OUT/$v.log)"; continue; fi
  echo "$v: $n publishes, $((ir / n)) instructions per publish in sl_publish"
done
