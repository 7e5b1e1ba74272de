#!/usr/bin/env bash
# examples/cluster/run.sh (make cluster-demo) - three Sluice nodes and a redis-server on this
# machine: Redis on $REDIS_PORT (6390), nodes on $BASE_PORT, +1, +2 (3100..3102). Shows a
# client on the third node receiving what is published on the first, then stops everything.
# KEEP=1 leaves the cluster running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SLUICE_BIN:-build/sluice}
REDIS_PORT=${REDIS_PORT:-6390}
BASE_PORT=${BASE_PORT:-3100}
dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-cluster.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  --logfile "$dir/redis.log" &
pids+=($!)
deadline=$((SECONDS + 10))
while [ "$SECONDS" -lt "$deadline" ]; do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
echo "redis-server on 127.0.0.1:$REDIS_PORT"

for i in 0 1 2; do
  port=$((BASE_PORT + i))
  SLUICE_PORT=$port REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "$BIN" examples/cluster/node.lua \
    >"$dir/node$i.log" 2>&1 &
  pids+=($!)
done
# the nodes have 60 s (by the clock: on a loaded machine each curl is slow too) to start and
# join the cluster; they start together, so one deadline for the three
deadline=$((SECONDS + 60))
for i in 0 1 2; do
  up=0
  while [ "$SECONDS" -lt "$deadline" ]; do
    # a node that exited (its port taken, a bad config) will not join: say so at once
    if ! kill -0 "${pids[i + 1]}" 2>/dev/null; then break; fi
    if curl -s --max-time 5 "http://127.0.0.1:$((BASE_PORT + i))/metrics" 2>/dev/null | grep -q '^sluice_cluster_up 1'; then
      up=1
      break
    fi
    sleep 0.05
  done
  if [ "$up" != 1 ]; then
    if kill -0 "${pids[i + 1]}" 2>/dev/null; then
      echo "node $i on port $((BASE_PORT + i)) did not join the cluster within 60 s; its log:" >&2
    else
      echo "node $i on port $((BASE_PORT + i)) exited; its log:" >&2
    fi
    tail -n 20 "$dir/node$i.log" >&2
    exit 1
  fi
  echo "node $i on http://127.0.0.1:$((BASE_PORT + i)) (cluster up)"
done

node examples/cluster/demo.mjs $((BASE_PORT + 2)) "$BASE_PORT"
# nodes are counted every 2 s (PUBSUB NUMSUB): wait, up to 15 s, until node 2 counts all three
deadline=$((SECONDS + 15))
while [ "$SECONDS" -lt "$deadline" ]; do
  curl -s --max-time 5 "http://127.0.0.1:$((BASE_PORT + 2))/metrics" | grep -q '^sluice_cluster_nodes{namespace="/feed"} 3' && break
  sleep 0.1
done
curl -s "http://127.0.0.1:$((BASE_PORT + 2))/metrics" | grep -E '^sluice_cluster_(up|nodes|received_total)'
if [ "${KEEP:-0}" = 1 ]; then
  echo "running; logs in $dir; Ctrl-C stops"
  wait
fi
