#!/usr/bin/env bash
# `make bench`: criterion micro-benchmarks, the million-connection simulation,
# then wsedge side by side with its peers over loopback (BENCHMARKS.md).
#
# Side-by-side rules: every server runs alone on core 0 (`taskset -c 0`), the
# load tester (wsedge-bench, one thread) on core 1; servers take turns inside
# each repetition, in a rotating order, and each (server, scenario, rep) gets a
# fresh server process. Figures are medians over the repetitions. A last round
# runs unpinned: wsedge --workers 2 against tokio-tungstenite with 2 threads
# (fan-out scenarios: wsedge --workers 2 alone, load tester with 2 threads).
#
# Knobs (environment):
#   BENCH_SECS=5        measured seconds per echo scenario (after 1 s warm-up)
#   BENCH_REPS=3        repetitions of the pinned side-by-side round
#   BENCH_QUICK=1       a quick pass: 2 s scenarios, 1 repetition, smaller
#                       connect/idle counts, short micro-benchmarks
#   BENCH_MICRO=0       skip the criterion benches and the scale simulation
#   BENCH_SERVERS="wsedge tt fws tcp"   pinned-round servers to run (echo scenarios)
#   BENCH_FAN_SERVERS="wsedge wsbin tt fan"   pinned-round servers of the fan-out
#                       scenarios (wsbin = wsedge driven with binary publishes and
#                       deliveries, the load tester's work per delivery then equal
#                       to the ceiling's; tt = peers' tt-pubsub; fan =
#                       serve-tcp-fanout, the ceiling)
#   BENCH_TLS_SERVERS="wsedge tt tts"   pinned-round servers of the wss:// scenarios
#                       (tt = peers' tt-tls-echo: tokio-tungstenite + tokio-rustls;
#                       tts = the same with wsedge's cipher suite order)
#   BENCH_SCENARIOS="echo1 echo16 echo16k connect idle wss16 wss16k wssconnect wssidle fan1k fan10k fan100"
#                       wss*: over TLS 1.3 (ECDSA P-256, X25519, no resumption;
#                       PKI from scripts/tls-certs.sh in $BENCH_OUT/pki): echo
#                       100x16x32 B and 10x4x16 KiB, connect + TLS + upgrade +
#                       close cycles, idle connections. Echo and connect runs
#                       have no warm-up, so the server's on-CPU time (all
#                       threads, /proc/PID/task/*/schedstat) divided by what
#                       the load tester counted is server CPU per operation,
#                       the figure to compare on a busy machine.
#                       fan1k: 1 room x 1,000 subscribers, 1 publisher; fan10k: 1 x
#                       10,000, 1 publisher; fan100: 100 rooms x 100, 4 publishers.
#                       Each fan-out scenario runs twice per server: as fast as
#                       possible, then at 50% of the publishes/s just measured
#                       (its p99 is the latency figure); 64-byte JSON publishes.
#   BENCH_EXTRA=0       skip wsedge-only idle at 19k / after 1 MiB echoes
#   BENCH_UNPINNED=0    skip the unpinned two-worker round
#   BENCH_OUT=DIR       where results go [target/bench]
#   BENCH_CHARTS=DIR    where the SVG charts go [docs/bench]; 0 = none
#   BENCH_PORT=19300    first port used (each server start takes the next one)
#   BENCH_NICE=-10      niceness of servers and load tester (when run as root), so
#                       that other work on a shared machine disturbs less; 0 = off
# Output: $BENCH_OUT/results.jsonl (one line per run), $BENCH_OUT/report.md
# (the tables, also printed), logs of every process under $BENCH_OUT/logs.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    SECS=${BENCH_SECS:-2}
    REPS=${BENCH_REPS:-1}
    CONNECT_N=${BENCH_CONNECT_N:-5000}
    IDLE_N=${BENCH_IDLE_N:-2000}
    BIG_IDLE_N=${BENCH_BIG_IDLE_N:-5000}
    ECHO_FIRST_N=${BENCH_ECHO_FIRST_N:-500}
    TLS_CONNECT_N=${BENCH_TLS_CONNECT_N:-1000}
    TLS_IDLE_N=${BENCH_TLS_IDLE_N:-2000}
    MICRO_ARGS="--warm-up-time 0.5 --measurement-time 1"
else
    SECS=${BENCH_SECS:-5}
    REPS=${BENCH_REPS:-3}
    CONNECT_N=${BENCH_CONNECT_N:-20000}
    IDLE_N=${BENCH_IDLE_N:-10000}
    BIG_IDLE_N=${BENCH_BIG_IDLE_N:-19000}
    ECHO_FIRST_N=${BENCH_ECHO_FIRST_N:-19000}
    TLS_CONNECT_N=${BENCH_TLS_CONNECT_N:-3000}
    TLS_IDLE_N=${BENCH_TLS_IDLE_N:-10000}
    MICRO_ARGS="--warm-up-time 1 --measurement-time 3"
fi
WARMUP=1
HOLD=3
MICRO=${BENCH_MICRO:-1}
SERVERS=${BENCH_SERVERS:-"wsedge tt fws tcp"}
FAN_SERVERS=${BENCH_FAN_SERVERS:-"wsedge wsbin tt fan"}
TLS_SERVERS=${BENCH_TLS_SERVERS:-"wsedge tt tts"}
SCENARIOS=${BENCH_SCENARIOS:-"echo1 echo16 echo16k connect idle wss16 wss16k wssconnect wssidle fan1k fan10k fan100"}
EXTRA=${BENCH_EXTRA:-1}
UNPINNED=${BENCH_UNPINNED:-1}
OUT=${BENCH_OUT:-$ROOT/target/bench}
PORT=${BENCH_PORT:-19300}
CARGO=${CARGO:-cargo}
NICE=${BENCH_NICE:--10}
if [ "$(id -u)" != 0 ] && [ "$NICE" -lt 0 ]; then NICE=0; fi
PRIO=()
if [ "$NICE" != 0 ]; then PRIO=(nice -n "$NICE"); fi

mkdir -p "$OUT/logs"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"

WSEDGE=$ROOT/target/release/wsedge
LOAD=$ROOT/target/release/wsedge-bench
TT=$ROOT/peers/target/release/tt-echo
FWS=$ROOT/peers/target/release/fws-echo
TTPS=$ROOT/peers/target/release/tt-pubsub
TTTLS=$ROOT/peers/target/release/tt-tls-echo
PKI=$OUT/pki
if [[ " $SCENARIOS " == *" wss"* ]]; then
    "$ROOT/scripts/tls-certs.sh" "$PKI" >"$OUT/logs/pki.log" 2>&1
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Descriptors: raise the soft limit to the hard one (20,000 here) for the
# servers; wsedge-bench raises its own.
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

# --- 1. micro-benchmarks and the scale simulation --------------------------
if [ "$MICRO" = 1 ]; then
    log "criterion micro-benchmarks ($MICRO_ARGS)"
    # shellcheck disable=SC2086
    $CARGO bench --bench micro -- $MICRO_ARGS 2>&1 | tee "$OUT/logs/micro.log" |
        grep -E '^[a-z].*/|time:' || true
    log "scale simulation (1,000,000 sans-IO connections)"
    $CARGO bench --bench scale 2>&1 | tee "$OUT/logs/scale.log" | sed -n '/^## Scale/,$p'
fi

# --- 2. builds -------------------------------------------------------------
log "building release wsedge + wsedge-bench and the peers"
$CARGO build --release --bins 2>&1 | tail -1
$CARGO build --release --manifest-path peers/Cargo.toml 2>&1 | tail -1

# --- 3. process helpers ----------------------------------------------------
SERVER_PID=
LOAD_PID=
cleanup() {
    if [ -n "$LOAD_PID" ]; then kill "$LOAD_PID" 2>/dev/null || true; fi
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME PIN WORKERS [pubsub]: starts NAME on a fresh port; sets
# SERVER_PID and URL. PIN is a taskset cpu list or "" for unpinned. With
# "pubsub", URL is the server's pub/sub endpoint (tt is then tt-pubsub); with
# "tls", a wss:// echo URL (tt is then tt-tls-echo) and TLS_ARGS the load
# tester's options for it.
start_server() {
    local name=$1 pin=$2 workers=$3 kind=${4:-echo} cmd
    PORT=$((PORT + 1))
    local addr=127.0.0.1:$PORT
    TLS_ARGS=()
    case $name/$kind in
        wsedge/tls)
            PORT=$((PORT + 1))
            printf '[tls]\nlisten = "127.0.0.1:%s"\ncert = "%s/ec.pem"\nkey = "%s/ec-key.pem"\n' \
                "$PORT" "$PKI" "$PKI" >"$OUT/tls-$PORT.toml"
            cmd=("$WSEDGE" --listen "$addr" --workers "$workers" --config "$OUT/tls-$PORT.toml")
            URL=wss://localhost:$PORT/echo ;;
        tt/tls) cmd=("$TTTLS" --listen "$addr" --threads "$workers" --cert "$PKI/ec.pem" \
            --key "$PKI/ec-key.pem"); URL=wss://localhost:$PORT/ ;;
        tts/tls) cmd=(env TT_SERVER_CIPHER_ORDER=1 "$TTTLS" --listen "$addr" --threads "$workers" \
            --cert "$PKI/ec.pem" --key "$PKI/ec-key.pem"); URL=wss://localhost:$PORT/ ;;
        wsedge/echo) cmd=("$WSEDGE" --listen "$addr" --workers "$workers"); URL=ws://$addr/echo ;;
        wsedge/pubsub | wsbin/pubsub) cmd=("$WSEDGE" --listen "$addr" --workers "$workers"); URL=ws://$addr/ws ;;
        tt/echo) cmd=("$TT" --listen "$addr" --threads "$workers"); URL=ws://$addr/ ;;
        tt/pubsub) cmd=("$TTPS" --listen "$addr" --threads "$workers"); URL=ws://$addr/ws ;;
        fws/echo) cmd=("$FWS" --listen "$addr"); URL=ws://$addr/ ;;
        tcp/echo) cmd=("$LOAD" serve-tcp-echo --listen "$addr" --secs 600); URL=tcp://$addr ;;
        fan/pubsub) cmd=("$LOAD" serve-tcp-fanout --listen "$addr" --secs 600); URL=tcp://$addr ;;
        *) echo "unknown server $name for $kind" >&2; exit 2 ;;
    esac
    if [ "$kind" = tls ]; then TLS_ARGS=(--ca "$PKI/ca.pem" --tls 1.3); fi
    if [ -n "$pin" ]; then cmd=(taskset -c "$pin" "${cmd[@]}"); fi
    "${PRIO[@]}" "${cmd[@]}" >"$OUT/logs/server-$name-$PORT.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            sleep 0.2
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "server $name did not start; log:" >&2
    cat "$OUT/logs/server-$name-$PORT.log" >&2
    exit 1
}

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }
# utime + stime of the server, clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
# On-CPU time of the server, all threads, ns (finer than the ticks, and not
# counting time spent waiting for a busy core).
oncpu_ns() {
    local sum=0 t ns
    for t in /proc/"$SERVER_PID"/task/*/schedstat; do
        read -r ns _ <"$t" 2>/dev/null && sum=$((sum + ns))
    done
    echo "$sum"
}

# record ROUND SERVER SCENARIO REP EXTRA_JSON BENCH_JSON
record() {
    local load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    printf '{"round":"%s","server":"%s","scenario":"%s","rep":%s,"loadavg":%s%s,"bench":%s}\n' \
        "$1" "$2" "$3" "$4" "$load1" "$5" "$6" >>"$RESULTS"
}

# Runs the load tester (pinned to $LOAD_PIN when set) with a time bound; prints
# its JSON summary line (empty if it failed).
run_load() {
    local bound=$1 logf=$2
    shift 2
    local cmd=(timeout "$bound" "$LOAD" "$@")
    if [ -n "$LOAD_PIN" ]; then cmd=(taskset -c "$LOAD_PIN" "${cmd[@]}"); fi
    "${PRIO[@]}" "${cmd[@]}" >"$logf" 2>&1 || true
    grep '^{"mode"' "$logf" | tail -1 || true
}

# scenario ROUND SERVER SCEN REP: one measurement against the running server.
scenario() {
    local round=$1 server=$2 scen=$3 rep=$4 json t0 t1 c0 c1 n0 n1 extra
    local logf=$OUT/logs/load-$round-$server-$scen-$rep.log
    local mode=echo
    [ "$server" = tcp ] && mode=tcp-echo
    c0=$(cpu_ticks)
    n0=$(oncpu_ns)
    t0=$(date +%s.%N)
    case $scen in
        echo1) json=$(run_load $((SECS + 40)) "$logf" $mode --url "$URL" --conns 100 --inflight 1 \
            --size 32 --secs "$SECS" --warmup $WARMUP --threads "$LOAD_THREADS") ;;
        echo16) json=$(run_load $((SECS + 40)) "$logf" $mode --url "$URL" --conns 100 --inflight 16 \
            --size 32 --secs "$SECS" --warmup $WARMUP --threads "$LOAD_THREADS") ;;
        echo16k)
            local bin=--binary
            [ "$server" = tcp ] && bin=
            # shellcheck disable=SC2086
            json=$(run_load $((SECS + 40)) "$logf" $mode --url "$URL" --conns 10 --inflight 4 \
                --size 16384 $bin --secs "$SECS" --warmup $WARMUP --threads "$LOAD_THREADS") ;;
        connect) json=$(run_load 90 "$logf" connect --url "$URL" --total "$CONNECT_N" \
            --concurrency 50 --secs 60 --threads "$LOAD_THREADS") ;;
        wss16) json=$(run_load $((SECS + 40)) "$logf" echo --url "$URL" "${TLS_ARGS[@]}" --conns 100 \
            --inflight 16 --size 32 --secs "$SECS" --warmup 0 --threads "$LOAD_THREADS") ;;
        wss16k) json=$(run_load $((SECS + 40)) "$logf" echo --url "$URL" "${TLS_ARGS[@]}" --conns 10 \
            --inflight 4 --size 16384 --binary --secs "$SECS" --warmup 0 --threads "$LOAD_THREADS") ;;
        wssconnect) json=$(run_load 120 "$logf" connect --url "$URL" "${TLS_ARGS[@]}" \
            --total "$TLS_CONNECT_N" --concurrency 32 --sources 4 --secs 90 --threads "$LOAD_THREADS") ;;
        *) echo "unknown scenario $scen" >&2; exit 2 ;;
    esac
    t1=$(date +%s.%N)
    c1=$(cpu_ticks)
    n1=$(oncpu_ns)
    extra=$(awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
        -v n0="$n0" -v n1="$n1" \
        'BEGIN { printf ",\"server_cpu_pct\":%.1f,\"server_oncpu_ns\":%d", 100 * (c1 - c0) / hz / (t1 - t0), n1 - n0 }')
    if [ -z "$json" ]; then
        log "  $server $scen: no result (see $logf)"
        json=null
    fi
    record "$round" "$server" "$scen" "$rep" "$extra" "$json"
}

# fan_args SCEN: the pubsub options of a fan-out scenario.
fan_args() {
    case $1 in
        fan1k) echo "--subs 1000 --rooms 1 --pubs 1" ;;
        fan10k) echo "--subs 10000 --rooms 1 --pubs 1" ;;
        fan100) echo "--subs 10000 --rooms 100 --pubs 4" ;;
        *) echo "unknown scenario $1" >&2; exit 2 ;;
    esac
}

# fan_run ROUND SERVER SCEN REP PIN WORKERS: one fan-out scenario on two
# fresh servers: as fast as possible (recorded as SCEN), then at 50% of the
# publishes/s that run measured (recorded as SCEN@50).
fan_run() {
    local round=$1 server=$2 scen=$3 rep=$4 pin=$5 workers=$6 json rate t0 t1 c0 c1 n0 n1 extra
    local args
    read -r -a args <<<"$(fan_args "$scen")"
    if [ "$server" = wsbin ]; then args+=(--binary); fi
    rate=0
    for tag in "$scen" "$scen@50"; do
        start_server "$server" "$pin" "$workers" pubsub
        log "rep $rep  $tag  $server (workers $workers)"
        local logf=$OUT/logs/load-$round-$server-$tag-$rep.log
        c0=$(cpu_ticks)
        n0=$(oncpu_ns)
        t0=$(date +%s.%N)
        json=$(run_load $((SECS + 90)) "$logf" pubsub --url "$URL" "${args[@]}" --rate "$rate" \
            --secs "$SECS" --warmup $WARMUP --threads "$LOAD_THREADS")
        t1=$(date +%s.%N)
        c1=$(cpu_ticks)
        n1=$(oncpu_ns)
        stop_server
        extra=$(awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
            -v n0="$n0" -v n1="$n1" \
            'BEGIN { printf ",\"server_cpu_pct\":%.1f,\"server_oncpu_ns\":%d", 100 * (c1 - c0) / hz / (t1 - t0), n1 - n0 }')
        if [ -z "$json" ]; then
            log "  $server $tag: no result (see $logf)"
            record "$round" "$server" "$tag" "$rep" "$extra" null
            return 0
        fi
        record "$round" "$server" "$tag" "$rep" "$extra" "$json"
        grep '^SUMMARY' "$logf" | sed 's/^/[bench]   /' >&2 || true
        rate=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["publishes_per_sec"] * 0.5, 1))' "$json")
        if [ "$rate" = 0.0 ]; then return 0; fi
    done
}

# idle_run ROUND SERVER SCEN REP N [ECHO_FIRST]: server RSS before and after
# N connections are up (and, with ECHO_FIRST, have echoed one message).
idle_run() {
    local round=$1 server=$2 scen=$3 rep=$4 n=$5 echo_first=${6:-0} json rss0 rss1 est
    local logf=$OUT/logs/load-$round-$server-$scen-$rep.log
    local ready=$OUT/ready-$PORT
    rm -f "$ready"
    sleep 0.3
    rss0=$(rss_kib)
    local args=(idle --url "$URL" "${TLS_ARGS[@]}" --conns "$n" --hold "$HOLD" --ready-file "$ready")
    [ "$echo_first" != 0 ] && args+=(--echo-first "$echo_first")
    local cmd=(timeout 400 "$LOAD" "${args[@]}")
    if [ -n "$LOAD_PIN" ]; then cmd=(taskset -c "$LOAD_PIN" "${cmd[@]}"); fi
    "${PRIO[@]}" "${cmd[@]}" >"$logf" 2>&1 &
    LOAD_PID=$!
    local i
    for i in $(seq 3600); do
        [ -s "$ready" ] && break
        kill -0 "$LOAD_PID" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    rss1=$(rss_kib)
    est=$(cat "$ready" 2>/dev/null || echo 0)
    wait "$LOAD_PID" || true
    LOAD_PID=
    json=$(grep '^{"mode"' "$logf" | tail -1 || true)
    [ -z "$json" ] && json=null
    record "$round" "$server" "$scen" "$rep" \
        ",\"rss0_kib\":$rss0,\"rss1_kib\":$rss1,\"idle_conns\":$est,\"echo_first\":$echo_first" "$json"
    awk -v a="$rss0" -v b="$rss1" -v n="$est" -v s="$server" -v sc="$scen" \
        'BEGIN { if (n > 0) printf "[bench]   %s %s: %d conns, RSS %d -> %d KiB, %.3f KiB/conn\n", s, sc, n, a, b, (b - a) / n }' >&2
    rm -f "$ready"
}

# --- 4. pinned side-by-side round ------------------------------------------
LOAD_PIN=1
LOAD_THREADS=1
read -r -a echo_servers <<<"$SERVERS"
read -r -a fan_servers <<<"$FAN_SERVERS"
read -r -a tls_servers <<<"$TLS_SERVERS"
for rep in $(seq "$REPS"); do
    for scen in $SCENARIOS; do
        if [[ $scen == fan* ]]; then
            server_list=("${fan_servers[@]}")
        elif [[ $scen == wss* ]]; then
            server_list=("${tls_servers[@]}")
        else
            server_list=("${echo_servers[@]}")
        fi
        nservers=${#server_list[@]}
        for k in $(seq 0 $((nservers - 1))); do
            server=${server_list[$(((k + rep - 1) % nservers))]}
            if [ "$server" = tcp ] && [[ $scen != echo* ]]; then continue; fi
            if [[ $scen == fan* ]]; then
                fan_run pinned "$server" "$scen" "$rep" 0 1
                continue
            fi
            kind=echo
            [[ $scen == wss* ]] && kind=tls
            start_server "$server" 0 1 $kind
            log "rep $rep/$REPS  $scen  $server"
            if [ "$scen" = idle ]; then
                idle_run pinned "$server" idle "$rep" "$IDLE_N"
            elif [ "$scen" = wssidle ]; then
                idle_run pinned "$server" wssidle "$rep" "$TLS_IDLE_N"
            else
                scenario pinned "$server" "$scen" "$rep"
            fi
            stop_server
        done
    done
done

# --- 5. wsedge alone: idle at 19k, and after a 1 MiB echo each -------------
if [ "$EXTRA" = 1 ]; then
    start_server wsedge 0 1
    log "wsedge idle at $BIG_IDLE_N connections"
    idle_run pinned wsedge idle19k 1 "$BIG_IDLE_N"
    stop_server
    start_server wsedge 0 1
    log "wsedge: $ECHO_FIRST_N connections each echo 1 MiB, then idle"
    idle_run pinned wsedge idle1m 1 "$ECHO_FIRST_N" 1048576
    stop_server
fi

# --- 6. unpinned round: two workers / threads ------------------------------
if [ "$UNPINNED" = 1 ]; then
    LOAD_PIN=
    LOAD_THREADS=2
    for scen in $SCENARIOS; do
        if [[ $scen == fan* ]]; then
            log "unpinned  $scen  wsedge (2 workers)"
            fan_run unpinned wsedge "$scen" 1 "" 2
            continue
        fi
        [[ $scen == idle || $scen == wss* ]] && continue
        for server in wsedge tt; do
            start_server "$server" "" 2
            log "unpinned  $scen  $server (2 workers)"
            scenario unpinned "$server" "$scen" 1
            stop_server
        done
    done
fi

# --- 7. report -------------------------------------------------------------
python3 "$ROOT/scripts/bench_report.py" "$OUT" | tee "$OUT/report.md"
log "results: $RESULTS; report: $OUT/report.md"

# --- 8. charts ---------------------------------------------------------------
# SVGs from the same results.jsonl (matplotlib in .venv-bench), written into
# BENCH_CHARTS (docs/bench, linked from BENCHMARKS.md and the README) unless
# BENCH_CHARTS=0.
CHARTS=${BENCH_CHARTS:-$ROOT/docs/bench}
if [ "$CHARTS" != 0 ]; then
    if [ ! -x "$ROOT/.venv-bench/bin/python" ] || ! "$ROOT/.venv-bench/bin/python" -c 'import matplotlib' 2>/dev/null; then
        python3 -m venv "$ROOT/.venv-bench" && "$ROOT/.venv-bench/bin/pip" install -q 'matplotlib>=3.8,<4'
    fi
    "$ROOT/.venv-bench/bin/python" "$ROOT/scripts/bench_charts.py" "$OUT" "$CHARTS"
fi
