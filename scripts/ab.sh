#!/usr/bin/env bash
# A/B of two wsedge builds on the echo path (BENCHMARKS.md, issue 11):
# /tmp/wsedge-base and /tmp/wsedge-new (copy the two release binaries there),
# server pinned to core 0, load to core 1, builds alternating, a fresh server
# per run. REPS and SECS size it; results in /tmp/ab-results.txt.
set -u
LOAD=/tmp/wsedge-bench-base
REPS=${REPS:-3}; SECS=${SECS:-5}
port=19100
out=/tmp/ab-results.txt; : > $out
for rep in $(seq $REPS); do
  for srv in base new; do
    for scen in echo16 echo1 echo16k; do
      port=$((port+1))
      taskset -c 0 /tmp/wsedge-$srv --listen 127.0.0.1:$port --workers 1 >/tmp/ab-srv.log 2>&1 &
      pid=$!
      for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
      case $scen in
        echo16) args=(--conns 100 --inflight 16 --size 32);;
        echo1) args=(--conns 100 --inflight 1 --size 32);;
        echo16k) args=(--conns 10 --inflight 4 --size 16384 --binary);;
      esac
      line=$(timeout 60 taskset -c 1 $LOAD echo --url ws://127.0.0.1:$port/echo "${args[@]}" --secs $SECS --warmup 1 --threads 1 2>&1 | grep '^{"mode"' | tail -1)
      kill $pid; wait $pid 2>/dev/null
      v=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d.get('msgs_per_sec') or d.get('msg_per_s') or d)" "$line" 2>/dev/null)
      echo "$rep $srv $scen $v" | tee -a $out
    done
  done
done
