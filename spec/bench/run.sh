#!/usr/bin/env bash
# spec/bench/run.sh - `make bench`: Sluice vs a plain socket.io 4 server, side by side.
#
# Starts each server on 127.0.0.1 in turn (fresh process per measurement), drives it with
# build/bench/loadgen, repeats every scenario BENCH_RUNS times (default 3), takes medians and
# writes spec/bench/RESULTS.md (via spec/bench/report.mjs). Raw JSON lines: spec/bench/out/.
#
# Environment:
#   BENCH_RUNS=3         repetitions per scenario and server
#   BENCH_QUICK=1        short smoke run with small numbers (1 run unless BENCH_RUNS is set)
#   BENCH_SERVERS="sluice socketio floor"   which servers to measure (floor: build/bench/floor,
#                        spec/bench/floor.c, a minimal server that makes only the writes a
#                        fan-out needs: the kernel's floor on this machine; it runs in the
#                        fanout, fanout1 and latency scenarios, at each of BENCH_WINDOWS)
#   BENCH_SCENARIOS="fanout fanout1 slow slow0 idle latency hooks reload tls_fanout tls_idle cluster"
#                        which scenarios (fanout1: the fan-out with one publish per millisecond,
#                        each in its own loop iteration, on both servers)
#                        (tls_*: fanout / idle over TLS: Sluice WSS vs socket.io on
#                        https.createServer, one EC P-256 certificate made here for both,
#                        loadgen --tls; TLSv1.3, each server with its defaults)
#                        (cluster: two Sluice nodes + one redis-server against two socket.io
#                        servers + @socket.io/redis-streams-adapter, the producer on node A,
#                        clients split over both nodes, then the bus's throughput; run alone,
#                        BENCH_SCENARIOS=cluster, it replaces only the Cluster section of
#                        RESULTS.md)
#   BENCH_CLUSTER_RATES="20000 50000 100000"   offered publish rates (100-byte payloads) of the
#                        cluster throughput runs
#   BENCH_WINDOWS="0 1 2 5"   Sluice's flushIntervalMs values run in fanout1 and latency
#   BENCH_PERF=1         perf stat (software events, syscall tracepoints) over the window of the
#                        fan-out scenarios, when perf works here (0: off); /proc figures always
#   BENCH_PORT=39100     first port to use (each server start takes the next free one)
#   BENCH_SNDBUF=65536   Sluice socketSendBufferBytes (SO_SNDBUF) in the slow-consumer scenarios
#                        (0 = kernel default, autotuned up to tcp_wmem max)
#   BENCH_RESULTS=spec/bench/RESULTS.md   where to write the report
#   BUILD=build          build directory (loadgen and sluice binaries)
#   SLUICE_ARGS="--log-level warn"   extra arguments for sluice
#   BENCH_FLUSH_MS=0     Sluice's flushIntervalMs (batching window) in every scenario (0 = off,
#                        the default; socket.io has no such option)
# Everything is bounded in time (timeout(1) around every client run); traffic only to 127.0.0.1.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then RUNS=${BENCH_RUNS:-1}; else RUNS=${BENCH_RUNS:-3}; fi
SERVERS=${BENCH_SERVERS:-"sluice socketio floor"}
SCENARIOS=${BENCH_SCENARIOS:-"fanout fanout1 slow slow0 idle latency hooks reload tls_fanout tls_idle cluster"}
# Sluice's batching windows (flushIntervalMs) measured in the fanout1 and latency scenarios
WINDOWS=${BENCH_WINDOWS:-"0 1 2 5"}
PORT_NEXT=${BENCH_PORT:-39100}
SNDBUF=${BENCH_SNDBUF:-65536}
RESULTS=${BENCH_RESULTS:-spec/bench/RESULTS.md}
OUT=spec/bench/out
LOADGEN=$BUILD/bench/loadgen
SLUICE=$BUILD/sluice
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
JSONL=$OUT/results-$STAMP.jsonl
CMDS=$OUT/commands-$STAMP.txt
NOTES=$OUT/notes-$STAMP.txt
: >"$JSONL"; : >"$CMDS"; : >"$NOTES"

log() { echo "bench: $*" >&2; }
note() { echo "$*" >>"$NOTES"; log "$*"; }
# shellcheck source=spec/bench/cluster.sh
. spec/bench/cluster.sh

# --- servers are ours: remember their pids and kill exactly those on exit ------------------
SERVER_PID=""
stop_server() {
  local pid=$SERVER_PID
  [ -n "$pid" ] || return 0
  SERVER_PID=""
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
cleanup() { stop_server; cluster_cleanup; rm -f "$OUT/sluice-$STAMP"; }
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- limits ----------------------------------------------------------------------------------
HARD=$(ulimit -Hn)
ulimit -n "$HARD" 2>/dev/null || true
log "ulimit -n $(ulimit -n)"

# --- prerequisites ---------------------------------------------------------------------------
if [ ! -x "$LOADGEN" ] || [ spec/bench/loadgen.c -nt "$LOADGEN" ]; then
  make -s "$LOADGEN" BUILD="$BUILD" || { log "cannot build $LOADGEN"; exit 1; }
fi
HAVE_SOCKETIO=0
if command -v node >/dev/null && [ -d node_modules/socket.io ]; then HAVE_SOCKETIO=1; fi

free_port() {
  local p=$PORT_NEXT
  while ss -Htan "( sport = :$p )" 2>/dev/null | grep -q .; do p=$((p + 1)); done
  PORT_NEXT=$((p + 1))
  echo "$p"
}

wait_listen() { # port pid timeout_s
  local _
  for _ in $(seq 1 $(($3 * 10))); do
    kill -0 "$2" 2>/dev/null || return 1
    ss -Hltn "( sport = :$1 )" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# start_server KIND PORT [VAR=VALUE ...]  -> sets SERVER_PID, SERVER_LOG
start_server() {
  local kind=$1 port=$2; shift 2
  SERVER_LOG=$OUT/server-$kind-$port.log
  local cmd
  case $kind in
    socketio) cmd=(env PORT="$port" "$@" node spec/bench/baseline-socketio.mjs) ;;
    floor) cmd=(env PORT="$port" "$@" "$BUILD/bench/floor") ;;
    sluice)
      local extra
      read -r -a extra <<<"${SLUICE_ARGS:---log-level warn}"
      cmd=(env PORT="$port" "$@" "$SLUICE" spec/bench/sluice-bench.lua "${extra[@]}") ;;
  esac
  echo "${cmd[*]}" >>"$CMDS"
  "${cmd[@]}" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  if ! wait_listen "$port" "$SERVER_PID" 15; then
    log "$kind did not listen on $port (log: $SERVER_LOG)"
    tail -5 "$SERVER_LOG" >&2
    stop_server
    return 1
  fi
  return 0
}

# Is Sluice usable? It must exist, start with the bench config and accept a WebSocket client.
# Other people rebuild build/sluice while we measure: run a private copy of the binary, and
# give a relink in progress a few seconds to finish.
HAVE_SLUICE=0
SLUICE_SRC=$SLUICE
SLUICE_STATUS="not built ($SLUICE_SRC missing)"
probe_sluice() {
  local _
  for _ in 1 2 3 4 5 6; do [ -x "$SLUICE_SRC" ] && break; sleep 5; done
  [ -x "$SLUICE_SRC" ] || return 1
  SLUICE=$OUT/sluice-$STAMP
  cp "$SLUICE_SRC" "$SLUICE" || { SLUICE_STATUS="cannot copy $SLUICE_SRC"; return 1; }
  SLUICE_VERSION="$(git describe --always --dirty 2>/dev/null), binary built $(date -u -r "$SLUICE_SRC" +%FT%TZ)"
  echo "$SLUICE_SRC copied to $SLUICE: $SLUICE_VERSION" >>"$CMDS"
  local port; port=$(free_port)
  if ! start_server sluice "$port" RATE=10 SIZE=100; then
    SLUICE_STATUS="$SLUICE does not start with spec/bench/sluice-bench.lua (see $SERVER_LOG)"
    return 1
  fi
  local out
  out=$(timeout 20 "$LOADGEN" --port "$port" --clients 2 --duration 1 --warmup 0.2 --wait-traffic 3 \
          --join-timeout 5 --quiet --quiet --label probe 2>/dev/null)
  stop_server
  if ! echo "$out" | jq -e '.joined == 2 and .deliveries > 0' >/dev/null 2>&1; then
    SLUICE_STATUS="$SLUICE starts but does not deliver to a Socket.IO client (probe: ${out:-no output})"
    return 1
  fi
  SLUICE_STATUS="ok"
  return 0
}
SLUICE_VERSION=""
case " $SERVERS " in *" sluice "*) probe_sluice && HAVE_SLUICE=1 ;; esac
[ "$HAVE_SLUICE" = 1 ] || note "Sluice: $SLUICE_STATUS - Sluice columns are empty in this run."
[ "$HAVE_SOCKETIO" = 1 ] || note "socket.io baseline unavailable (node or node_modules/socket.io missing)"
HAVE_FLOOR=0
[ -x "$BUILD/bench/floor" ] && HAVE_FLOOR=1

# --- TLS: one certificate for both servers ----------------------------------------------------
TLS_DIR=$OUT/tls-$STAMP
case " $SCENARIOS " in
  *" tls_"*)
    mkdir -p "$TLS_DIR"
    if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
         -subj /CN=localhost -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>>"$NOTES"; then
      note "openssl could not make the TLS scenarios' certificate: tls_* scenarios skipped"
      SCENARIOS=$(echo " $SCENARIOS " | sed -e 's/ tls_[a-z]*//g')
    fi ;;
esac

# --- perf stat: software events and syscall tracepoints, if this machine allows them ----------
# (hardware counters are not available in this VM). Degrades to software events only, then to
# nothing; loadgen's /proc figures (user/kernel time, syscr/syscw, context switches) remain.
PERF_EVENTS=""
if [ "${BENCH_PERF:-1}" = 1 ] && command -v perf >/dev/null; then
  sw=task-clock,context-switches,cpu-migrations,page-faults
  tp=raw_syscalls:sys_enter,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait
  if perf stat -x, -e "$sw,$tp" -- true >/dev/null 2>&1; then PERF_EVENTS="$sw,$tp"
  elif perf stat -x, -e "$sw" -- true >/dev/null 2>&1; then PERF_EVENTS="$sw"; note "perf: syscall tracepoints unavailable, software events only"
  else note "perf stat unavailable: no perf summary (the /proc figures remain)"; fi
fi
# perf_json FILE: perf stat -x, output -> {"task_clock_ms":..,"context_switches":..,...}
perf_json() {
  [ -s "$1" ] || { echo '{}'; return; }
  awk -F, 'BEGIN { printf "{"; n = 0 }
    /^#/ || NF < 3 { next }
    { v = $1; ev = $3; gsub(/[^A-Za-z0-9_]/, "_", ev); if (v ~ /not/) v = "null";
      printf "%s\"%s\":%s", (n++ ? "," : ""), ev, v }
    END { printf "}" }' "$1"
}

# --- scenarios -------------------------------------------------------------------------------
# scenario parameters: CLIENTS RATE SIZE DURATION WARMUP SLOW RAMP PING_TIMEOUT_MS
# (slow-consumer runs raise pingTimeout on both servers so that clients which stop reading stay
# connected for the whole window instead of being dropped by the heartbeat after ~45 s)
params() {
  # TLS: the plain scenario's numbers, connections opened at most 250/s: both ends of every
  # handshake run on these 2 cores (ECDHE and a signature each side), and a faster ramp left
  # handshakes waiting past Sluice's 10 s header timeout and socket.io's join timeout
  case $1 in tls_*) params "${1#tls_}" | awk '{ if ($7 > 250) $7 = 250; print }'; return ;; esac
  case $1 in fanout1) params fanout; return ;; esac
  if [ "$QUICK" = 1 ]; then
    case $1 in
      fanout)  echo "100 200 100 5 1 0 500 20000" ;;
      slow)    echo "50 100 1024 8 1 0.2 500 600000" ;;
      slow0)   echo "50 100 1024 8 1 0 500 600000" ;;
      idle)    echo "500 0 100 2 2 0 500 20000" ;;
      latency) echo "20 100 100 5 1 0 500 20000" ;;
      hooks)   echo "1 5000 100 5 1 0 100 20000" ;;
    esac
  else
    case $1 in
      fanout)  echo "1000 1000 100 20 3 0 1000 20000" ;;
      slow)    echo "200 200 1024 60 3 0.2 500 600000" ;;
      slow0)   echo "200 200 1024 60 3 0 500 600000" ;;
      idle)    echo "10000 0 100 5 5 0 1000 20000" ;;
      latency) echo "100 100 100 20 3 0 500 20000" ;;
      hooks)   echo "1 20000 100 20 3 0 100 20000" ;;
    esac
  fi
}

# run_one SCENARIO SERVER RUN [VARIANT]
run_one() {
  local sc=$1 kind=$2 run=$3 variant=${4:-}
  local clients rate size dur warm slow ramp pto
  read -r clients rate size dur warm slow ramp pto <<<"$(params "$sc")"
  local port; port=$(free_port)
  # The producer starts once the clients had time to connect, so that a saturated server does
  # not starve the handshakes; loadgen waits for the first delivery before its warmup.
  local delay=$(( (clients * 1000) / ramp + 2000 ))
  local env=(RATE="$rate" SIZE="$size" PRODUCER_DELAY_MS="$delay" PING_TIMEOUT_MS="$pto")
  # fanout1: one publish per millisecond (each its own loop iteration), both servers
  [ "$sc" = fanout1 ] && env+=(TICK_MS=1)
  case $variant in w[0-9]*) env+=(FLUSH_MS="${variant#w}") ;; esac
  if [ "$kind" = sluice ]; then
    # BENCH_FLUSH_MS: a window in every scenario (a w* variant's own value wins)
    case $variant in w[0-9]*) ;; *) [ "${BENCH_FLUSH_MS:-0}" -gt 0 ] && env+=(FLUSH_MS="$BENCH_FLUSH_MS") ;; esac
    case $sc in slow|slow0) [ "$SNDBUF" -gt 0 ] && env+=(SNDBUF="$SNDBUF") ;; esac
    if [ "$sc" = hooks ]; then
      env+=(OVERFLOW=COALESCE MAX_QUEUED=4096)  # one fast client: nothing may drop
      [ "$variant" != off ] && env+=(HOOKS="$variant")
    fi
  fi
  case $sc in tls_*) env+=(TLS_CERT="$TLS_DIR/cert.pem" TLS_KEY="$TLS_DIR/key.pem") ;; esac
  start_server "$kind" "$port" "${env[@]}" || { note "$sc/$kind/run$run$variant: server did not start"; return 1; }
  local bound
  bound=$(awk -v c="$clients" -v r="$ramp" -v d="$dur" -v w="$warm" -v dl="$delay" \
          'BEGIN{printf "%d", c/r + dl/1000 + d + w + 90}')
  local label="$sc/$kind${variant:+/$variant}/$run"
  local lg=("$LOADGEN" --port "$port" --clients "$clients" --ns /feed --topic prices --duration "$dur"
            --warmup "$warm" --slow-fraction "$slow" --ramp-per-sec "$ramp" --server-pid "$SERVER_PID"
            --label "$label" --quiet)
  [ "$rate" -gt 0 ] && lg+=(--wait-traffic $(( delay / 1000 + 30 )))
  case $sc in tls_*) lg+=(--tls) ;; esac
  # Where the time goes: perf stat over exactly the measurement window (fan-out scenarios)
  local perf_out=""
  case $sc in
    fanout|fanout1|tls_fanout)
      if [ -n "$PERF_EVENTS" ]; then
        perf_out=$OUT/perf-$STAMP-$sc-$kind${variant:+-$variant}-$run.csv
        rm -f "$perf_out"
        lg+=(--window-cmd "perf stat -x, -o $perf_out -e $PERF_EVENTS -p $SERVER_PID -- sleep $dur")
      fi ;;
  esac
  echo "timeout $bound ${lg[*]}" >>"$CMDS"
  log "$label: $clients clients, $rate msg/s x $size B, ${dur}s, slow=$slow (port $port)"
  local out
  out=$(timeout "$bound" "${lg[@]}")
  local rc=$?
  local hooks='{}'
  if [ "$sc" = hooks ] && [ "$kind" = sluice ]; then
    # The gateway's own sampled timing of each hook call (GET /api/stats, "luaHooks")
    local stats_cmd=(node -e 'fetch(process.argv[1]).then((r) => r.json()).then((j) => console.log(JSON.stringify(j.luaHooks || {})))' "http://127.0.0.1:$port/api/stats")
    echo "${stats_cmd[*]}" >>"$CMDS"
    hooks=$(timeout 10 "${stats_cmd[@]}" 2>/dev/null) || hooks='{}'
    [ -n "$hooks" ] || hooks='{}'
  fi
  local perf='{}'
  if [ -n "$perf_out" ]; then
    # perf stat ends `dur` s after the window started, about when loadgen did
    for _ in $(seq 1 30); do [ -s "$perf_out" ] && grep -q task-clock "$perf_out" && break; sleep 0.2; done
    perf=$(perf_json "$perf_out")
  fi
  stop_server
  if [ $rc -ne 0 ] || [ -z "$out" ]; then
    note "$label: loadgen failed (rc=$rc)"
    return 1
  fi
  echo "$out" | jq -c --arg sc "$sc" --arg srv "$kind" --arg var "$variant" --argjson run "$run" \
    --argjson rate "$rate" --argjson size "$size" --argjson hooks "$hooks" --argjson perf "$perf" \
    '. + {scenario:$sc, server_kind:$srv, variant:$var, run:$run, rate:$rate, size:$size, lua_hooks:$hooks, perf:$perf}' >>"$JSONL"
  echo "$out" | jq -r '"bench:   deliveries/s \(.deliveries_per_s|floor)  cpu \(.server.cpu_us_per_delivery) us/deliv  p50 \(.lat_us.p50) p99 \(.lat_us.p99) us  rss \(.server.rss_kb_start)->\(.server.rss_kb_end) (max \(.server.rss_kb_max_window)) KiB  sendq max \(.tcp.server_sendq_max)  joined \(.joined)/\(.clients)"' >&2
}

servers_for() {
  local s out=""
  for s in $SERVERS; do
    case $s in
      sluice) [ "$HAVE_SLUICE" = 1 ] && out="$out sluice" ;;
      socketio) [ "$HAVE_SOCKETIO" = 1 ] && out="$out socketio" ;;
      floor) [ "$HAVE_FLOOR" = 1 ] && out="$out floor" ;;
    esac
  done
  echo "$out"
}

# The per-connection structures (idle memory breakdown in the report): header-only, built here.
MEMSIZES=$OUT/memsizes-$STAMP.jsonl
case " $SCENARIOS " in
  *" idle "*)
    if cc -std=gnu11 -O2 -Icore -Ilua $(pkg-config --cflags luajit 2>/dev/null) spec/bench/memsizes.c \
         -o "$OUT/memsizes-$STAMP" 2>>"$NOTES"; then
      "$OUT/memsizes-$STAMP" >"$MEMSIZES" 2>>"$NOTES"; rm -f "$OUT/memsizes-$STAMP"
    else note "spec/bench/memsizes.c did not build: no memory breakdown"; fi ;;
esac

T0=$(date +%s)
for sc in $SCENARIOS; do
  for run in $(seq 1 "$RUNS"); do
    if [ "$sc" = reload ]; then
      # Hot reload pause under a 1 kHz feed to 100 socket.io clients (Sluice only): once.
      [ "$HAVE_SLUICE" = 1 ] && [ "$run" = 1 ] || continue
      echo "node spec/bench/reload-pause.mjs --clients 100 --reloads 10 --sluice $SLUICE" >>"$CMDS"
      timeout 120 node spec/bench/reload-pause.mjs --clients 100 --reloads 10 --sluice "$SLUICE" \
        >"$OUT/reload-$STAMP.json" 2>>"$NOTES" || note "reload-pause failed (exit $?)"
      continue
    fi
    if [ "$sc" = cluster ]; then
      # shellcheck disable=SC2046
      cluster_run "$run" $(servers_for | sed -e "s/ floor//")
      continue
    fi
    if [ "$sc" = hooks ] && [ "$run" = 1 ] && [ -x "$BUILD/bench/bench_hooks" ]; then
      # Per-call hook cost as the core calls the hooks (no producer, no network around it).
      echo "$BUILD/bench/bench_hooks 1000000" >>"$CMDS"
      timeout 300 "$BUILD/bench/bench_hooks" 1000000 >"$OUT/hooks-micro-$STAMP.txt" 2>>"$NOTES" ||
        note "bench_hooks failed (exit $?)"
    fi
    if [ "$sc" = hooks ]; then
      # Lua hook cost: Sluice only, no hooks vs a route hook that does nothing vs one reading a
      # payload field vs a field-path coalesceKey vs a Lua coalesceKey hook, interleaved
      [ "$HAVE_SLUICE" = 1 ] || continue
      for v in off route_noop route coalesce_path coalesce; do run_one hooks sluice "$run" "$v"; done
      continue
    fi
    for kind in $(servers_for); do
      case $sc/$kind in
        fanout/floor) run_one "$sc" "$kind" "$run" ;;
        */floor) case $sc in fanout1|latency) ;; *) continue ;; esac
          # the kernel floor at the same windows as Sluice
          for w in $WINDOWS; do
            if [ "$w" = 0 ]; then run_one "$sc" "$kind" "$run"; else run_one "$sc" "$kind" "$run" "w$w"; fi
          done ;;
        fanout1/sluice|latency/sluice)
          # the batching windows: 0 is the plain run (no variant), then w1, w2, w5 ...
          for w in $WINDOWS; do
            if [ "$w" = 0 ]; then run_one "$sc" "$kind" "$run"; else run_one "$sc" "$kind" "$run" "w$w"; fi
          done ;;
        *) run_one "$sc" "$kind" "$run" ;;
      esac
    done
  done
done
T1=$(date +%s)
cluster_cleanup
log "measurements took $((T1 - T0)) s"
# Only the cluster scenario: keep the rest of RESULTS.md, replace its Cluster section.
ONLY_CLUSTER=0
[ "$(echo $SCENARIOS)" = cluster ] && ONLY_CLUSTER=1

node spec/bench/report.mjs --results "$JSONL" --commands "$CMDS" --notes "$NOTES" \
  --out "$RESULTS" --quick "$QUICK" --runs "$RUNS" --sluice-status "$SLUICE_STATUS" \
  --elapsed "$((T1 - T0))" --sluice-version "$SLUICE_VERSION" --only-cluster "$ONLY_CLUSTER" \
  --hooks-micro "$OUT/hooks-micro-$STAMP.txt" --reload "$OUT/reload-$STAMP.json" \
  --memsizes "$MEMSIZES" ||
  { log "report failed"; exit 1; }
log "wrote $RESULTS (raw: $JSONL)"
