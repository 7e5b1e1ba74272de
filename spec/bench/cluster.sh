# spec/bench/cluster.sh - the `cluster` scenario of spec/bench/run.sh (sourced by it; uses its
# log, note, free_port, start_server, stop_server, params and $LOADGEN, $OUT, $CMDS, $JSONL).
#
# Two nodes of each kind share one redis-server (started here on 127.0.0.1, persistence off,
# flushed between measurements): two Sluice nodes with `cluster = {redis = ...}`
# (sluice-bench.lua, CLUSTER_REDIS) against two socket.io servers with
# @socket.io/redis-streams-adapter (baseline-socketio.mjs, CLUSTER_REDIS).
#  - latency and CPU (variant "same" / "cross"): node A runs the producer (RATE publishes/s of
#    SIZE bytes); half the clients are on A (same-node deliveries), half on B (every delivery
#    crossed Redis: XADD on A, XREAD on B). Two loadgens run at once, each sampling its own
#    node's CPU, so "cross" gives the receiving node's CPU per delivery and the cross-node
#    publish -> deliver latency (the payload's ts is taken on A when it publishes).
#    The same again with 100 clients (variants "same-light" / "cross-light"), where the load
#    generators keep up and the latency is the bus's rather than the machine's.
#  - throughput (variant "max-<rate>"): the producer on A offers each rate of
#    BENCH_CLUSTER_RATES with 100-byte payloads, one client on B counts what arrives: the
#    publishes/s the bus carried end to end (A's publish + XADD, Redis, B's XREAD + delivery).

CL_REDIS_PID=""
CL_REDIS_DIR=""
CL_REDIS_PORT=""
CL_NODE_A=""

cluster_stop_pid() { # pid: TERM, then KILL after 5 s
  local pid=$1 _
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

cluster_cleanup() {
  cluster_stop_pid "$CL_NODE_A"; CL_NODE_A=""
  cluster_stop_pid "$CL_REDIS_PID"; CL_REDIS_PID=""
  [ -n "$CL_REDIS_DIR" ] && rm -rf "$CL_REDIS_DIR"
  CL_REDIS_DIR=""
}

cluster_start_redis() {
  command -v redis-server >/dev/null || { note "cluster: redis-server not installed (make deps)"; return 1; }
  CL_REDIS_PORT=$(free_port)
  CL_REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-redis.XXXXXX")
  local cmd=(redis-server --port "$CL_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
             --dir "$CL_REDIS_DIR" --logfile "$CL_REDIS_DIR/redis.log" --daemonize no)
  echo "${cmd[*]}" >>"$CMDS"
  "${cmd[@]}" &
  CL_REDIS_PID=$!
  local _
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$CL_REDIS_PORT" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  note "cluster: redis-server did not answer on port $CL_REDIS_PORT"
  return 1
}

cluster_params() { # [light] -> CLIENTS RATE SIZE DURATION WARMUP RAMP
  # light: the same publish rate to 100 clients, where the load generators keep up on a
  # loaded machine and the bus's own latency is not buried under theirs
  if [ "${1:-}" = light ]; then
    if [ "$QUICK" = 1 ]; then echo "20 200 100 5 1 200"; else echo "100 1000 100 20 3 500"; fi
  elif [ "$QUICK" = 1 ]; then echo "100 200 100 5 1 500"; else echo "1000 1000 100 20 3 1000"; fi
}

# cluster_nodes KIND RATE SIZE DELAY [VAR=VALUE ...]: start node A (the producer) and node B on a
# flushed Redis; sets CL_NODE_A (pid) CL_PORT_A, and SERVER_PID (B) CL_PORT_B.
cluster_nodes() {
  local kind=$1 rate=$2 size=$3 delay=$4; shift 4
  redis-cli -p "$CL_REDIS_PORT" FLUSHALL >/dev/null
  local url="redis://127.0.0.1:$CL_REDIS_PORT"
  CL_PORT_A=$(free_port)
  start_server "$kind" "$CL_PORT_A" RATE="$rate" SIZE="$size" PRODUCER_DELAY_MS="$delay" \
    CLUSTER_REDIS="$url" "$@" || return 1
  CL_NODE_A=$SERVER_PID
  SERVER_PID=""
  CL_PORT_B=$(free_port)
  if ! start_server "$kind" "$CL_PORT_B" RATE=0 SIZE="$size" CLUSTER_REDIS="$url" "$@"; then
    cluster_stop_pid "$CL_NODE_A"; CL_NODE_A=""
    return 1
  fi
  # both nodes read the stream before the producer starts (a reader that starts from "$"
  # would miss what came before it)
  local _
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$CL_REDIS_PORT" CLIENT LIST | grep -c 'cmd=xread')" -ge 2 ] && return 0
    sleep 0.1
  done
  note "cluster/$kind: the nodes did not start reading the stream"
  return 0
}

cluster_stop_nodes() {
  stop_server
  cluster_stop_pid "$CL_NODE_A"; CL_NODE_A=""
}

# cluster_record OUTPUT KIND VARIANT RUN RATE SIZE: one loadgen line into the results
cluster_record() {
  echo "$1" | jq -c --arg srv "$2" --arg var "$3" --argjson run "$4" --argjson rate "$5" \
    --argjson size "$6" '. + {scenario:"cluster", server_kind:$srv, variant:$var, run:$run, rate:$rate, size:$size}' >>"$JSONL"
  echo "$1" | jq -r --arg v "$3" '"bench:   \($v): deliveries/s \(.deliveries_per_s|floor)  cpu \(.server.cpu_us_per_delivery) us/deliv  p50 \(.lat_us.p50) p99 \(.lat_us.p99) us  gaps \(.gaps)  joined \(.joined)/\(.clients)"' >&2
}

# cluster_latency KIND RUN [light]: same-node and cross-node deliveries at once
cluster_latency() {
  local kind=$1 run=$2 light=${3:-} clients rate size dur warm ramp
  local sfx=${light:+-$light}
  read -r clients rate size dur warm ramp <<<"$(cluster_params "$light")"
  local half=$((clients / 2))
  local delay=$(( (clients * 1000) / ramp + 3000 ))
  cluster_nodes "$kind" "$rate" "$size" "$delay" || { note "cluster/$kind/run$run: nodes did not start"; return 1; }
  local bound
  bound=$(awk -v c="$clients" -v r="$ramp" -v d="$dur" -v w="$warm" -v dl="$delay" 'BEGIN{printf "%d", c/r + dl/1000 + d + w + 90}')
  local common=(--clients "$half" --ns /feed --topic prices --duration "$dur" --warmup "$warm"
                --ramp-per-sec "$((ramp / 2))" --wait-traffic $((delay / 1000 + 30)) --quiet)
  local lga=("$LOADGEN" --port "$CL_PORT_A" --server-pid "$CL_NODE_A" --label "cluster/$kind/same$sfx/$run" "${common[@]}")
  local lgb=("$LOADGEN" --port "$CL_PORT_B" --server-pid "$SERVER_PID" --label "cluster/$kind/cross$sfx/$run" "${common[@]}")
  echo "timeout $bound ${lga[*]} &" >>"$CMDS"
  echo "timeout $bound ${lgb[*]}" >>"$CMDS"
  log "cluster/$kind/$run: $clients clients ($half on each node), $rate msg/s x $size B on node A, ${dur}s"
  local fa fb
  fa=$(mktemp); fb=$(mktemp)
  timeout "$bound" "${lga[@]}" >"$fa" &
  local pa=$!
  timeout "$bound" "${lgb[@]}" >"$fb"
  local rcb=$?
  wait "$pa"
  local rca=$?
  cluster_stop_nodes
  if [ $rca -eq 0 ] && [ -s "$fa" ]; then cluster_record "$(cat "$fa")" "$kind" "same$sfx" "$run" "$rate" "$size"
  else note "cluster/$kind/same$sfx/$run: loadgen failed (rc=$rca)"; fi
  if [ $rcb -eq 0 ] && [ -s "$fb" ]; then cluster_record "$(cat "$fb")" "$kind" "cross$sfx" "$run" "$rate" "$size"
  else note "cluster/$kind/cross$sfx/$run: loadgen failed (rc=$rcb)"; fi
  rm -f "$fa" "$fb"
}

# cpu_ticks PID: user+system CPU time of a process so far, in clock ticks (0 when gone)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# cluster_throughput KIND RUN: the publishes/s the bus carries, one client on node B
cluster_throughput() {
  local kind=$1 run=$2 rate
  local rates=${BENCH_CLUSTER_RATES:-"20000 50000 100000"}
  [ "$QUICK" = 1 ] && rates=${BENCH_CLUSTER_RATES:-"5000 20000"}
  local dur=10 warm=2
  [ "$QUICK" = 1 ] && dur=4 && warm=1
  for rate in $rates; do
    # a deep queue on B and a long stream: what is measured is the bus, not the lane's
    # overflow policy or a reader that fell 10,000 entries (0.1 s) behind and lost the rest
    cluster_nodes "$kind" "$rate" 100 2000 MAX_QUEUED=1000000 MAX_QUEUED_BYTES=268435456 \
      CLUSTER_MAXLEN=1000000 || { note "cluster/$kind/max-$rate/run$run: nodes did not start"; continue; }
    local lg=("$LOADGEN" --port "$CL_PORT_B" --server-pid "$SERVER_PID" --clients 1 --ns /feed --topic prices
              --duration "$dur" --warmup "$warm" --wait-traffic 30 --label "cluster/$kind/max-$rate/$run" --quiet)
    echo "timeout 90 ${lg[*]}" >>"$CMDS"
    log "cluster/$kind/$run: offered $rate publishes/s x 100 B on node A, 1 client on node B"
    local out ta0 tb0 tr0 ta1 tb1 tr1
    ta0=$(cpu_ticks "$CL_NODE_A"); tb0=$(cpu_ticks "$SERVER_PID"); tr0=$(cpu_ticks "$CL_REDIS_PID")
    out=$(timeout 90 "${lg[@]}")
    local rc=$?
    ta1=$(cpu_ticks "$CL_NODE_A"); tb1=$(cpu_ticks "$SERVER_PID"); tr1=$(cpu_ticks "$CL_REDIS_PID")
    cluster_stop_nodes
    if [ $rc -eq 0 ] && [ -n "$out" ]; then
      # CPU of each process per message carried, over the whole loadgen run (every message B
      # delivered to the client: deliveries_total), at the kernel's clock-tick resolution
      local hz; hz=$(getconf CLK_TCK)
      out=$(echo "$out" | jq -c --argjson a "$((ta1 - ta0))" --argjson b "$((tb1 - tb0))" \
        --argjson r "$((tr1 - tr0))" --argjson hz "$hz" \
        '. + {bus_cpu_us_per_publish: (if .deliveries_total > 0 then {a: ($a / $hz * 1e6 / .deliveries_total), b: ($b / $hz * 1e6 / .deliveries_total), redis: ($r / $hz * 1e6 / .deliveries_total)} else null end)}')
      cluster_record "$out" "$kind" "max-$rate" "$run" "$rate" 100
    else note "cluster/$kind/max-$rate/$run: loadgen failed (rc=$rc)"; fi
  done
}

# cluster_run RUN KINDS...: the whole scenario for one repetition
cluster_run() {
  local run=$1 kind; shift
  [ -n "$CL_REDIS_PID" ] || cluster_start_redis || return 1
  for kind in "$@"; do cluster_latency "$kind" "$run"; cluster_latency "$kind" "$run" light; done
  for kind in "$@"; do cluster_throughput "$kind" "$run"; done
}
