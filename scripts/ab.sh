#!/usr/bin/env bash
# A/B of two wsedge builds (BENCHMARKS.md, issues 11 and 12): $BASE and $NEW
# (default /tmp/wsedge-base and /tmp/wsedge-new; copy the two release
# binaries there), server pinned to core 0, load to core 1, builds
# alternating, a fresh server per run. REPS and SECS size it; SCENARIOS picks
# the runs: echo16 echo1 echo16k (echo, msgs/s) and fan1k fan10k fan100
# (pub/sub fan-out as fast as possible, deliveries/s; see scripts/bench.sh).
# Results in $OUT (default /tmp/ab-results.txt): "rep build scenario value".
set -u
BASE=${BASE:-/tmp/wsedge-base}
NEW=${NEW:-/tmp/wsedge-new}
LOAD=${LOAD:-/tmp/wsedge-bench-base}
REPS=${REPS:-3}; SECS=${SECS:-5}
SCENARIOS=${SCENARIOS:-"echo16 echo1 echo16k"}
port=${PORT:-19100}
out=${OUT:-/tmp/ab-results.txt}; : > "$out"
PRIO=()
if [ "$(id -u)" = 0 ]; then PRIO=(nice -n -10); fi
for rep in $(seq "$REPS"); do
  for srv in base new; do
    bin=$BASE; [ $srv = new ] && bin=$NEW
    for scen in $SCENARIOS; do
      port=$((port+1))
      "${PRIO[@]}" taskset -c 0 "$bin" --listen 127.0.0.1:$port --workers 1 >/tmp/ab-srv-$port.log 2>&1 &
      pid=$!
      for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
      url=ws://127.0.0.1:$port/echo
      case $scen in
        echo16) args=(echo --conns 100 --inflight 16 --size 32);;
        echo1) args=(echo --conns 100 --inflight 1 --size 32);;
        echo16k) args=(echo --conns 10 --inflight 4 --size 16384 --binary);;
        fan1k) args=(pubsub --subs 1000 --rooms 1 --pubs 1); url=ws://127.0.0.1:$port/ws;;
        fan10k) args=(pubsub --subs 10000 --rooms 1 --pubs 1); url=ws://127.0.0.1:$port/ws;;
        fan100) args=(pubsub --subs 10000 --rooms 100 --pubs 4); url=ws://127.0.0.1:$port/ws;;
        *) echo "unknown scenario $scen" >&2; exit 2;;
      esac
      line=$(timeout 120 "${PRIO[@]}" taskset -c 1 "$LOAD" "${args[@]}" --url "$url" --secs "$SECS" --warmup 1 --threads 1 2>&1 | grep '^{"mode"' | tail -1)
      kill $pid; wait $pid 2>/dev/null
      v=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d.get('msgs_per_sec') or d.get('deliveries_per_sec') or d)" "$line" 2>/dev/null)
      echo "$rep $srv $scen $v" | tee -a "$out"
    done
  done
done
