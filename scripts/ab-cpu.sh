#!/usr/bin/env bash
# A/B of two wsedge builds by server CPU time per message, for a machine
# whose neighbours are busy (throughput A/B, scripts/ab.sh, then swings by
# 2-4x): /tmp/wsedge-base and /tmp/wsedge-new, server pinned to core 0, load
# to core 1, builds alternating, a fresh server per run. The figure is the
# server's on-CPU time (all its threads, /proc/PID/task/*/schedstat, ns)
# divided by wsedge_messages_in_total from its /metrics, both read once the
# load has finished; on-CPU time does not count the time the server waited
# for a busy core, so it moves much less with the neighbours than msgs/s.
# REPS and SECS size it; results in /tmp/ab-cpu-results.txt.
# TLS=DIR runs the echo over wss:// with the PKI scripts/tls-certs.sh made
# in DIR (the load tester must speak wss://: LOAD=target/release/wsedge-bench).
set -u
TLS=${TLS:-}
LOAD=${LOAD:-/tmp/wsedge-bench-base}
REPS=${REPS:-3}; SECS=${SECS:-4}
port=19300
out=/tmp/ab-cpu-results.txt; : > $out
oncpu_ns() {
  local sum=0 t
  for t in /proc/$1/task/*/schedstat; do
    read -r ns _ < "$t" && sum=$((sum + ns))
  done
  echo $sum
}
for rep in $(seq $REPS); do
  for srv in base new; do
    for scen in echo16 echo1 echo16k; do
      port=$((port+1))
      url=ws://127.0.0.1:$port/echo; tls_args=(); cfg=()
      if [ -n "$TLS" ]; then
        printf '[tls]\nlisten = "127.0.0.1:%s"\ncert = "%s/ec.pem"\nkey = "%s/ec-key.pem"\n' \
          $((port+1000)) "$TLS" "$TLS" > /tmp/ab-tls.toml
        url=wss://localhost:$((port+1000))/echo; tls_args=(--ca "$TLS/ca.pem"); cfg=(--config /tmp/ab-tls.toml)
      fi
      taskset -c 0 /tmp/wsedge-$srv --listen 127.0.0.1:$port --workers 1 "${cfg[@]}" >/tmp/ab-srv.log 2>&1 &
      pid=$!
      for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
      case $scen in
        echo16) args=(--conns 100 --inflight 16 --size 32);;
        echo1) args=(--conns 100 --inflight 1 --size 32);;
        echo16k) args=(--conns 10 --inflight 4 --size 16384 --binary);;
      esac
      line=$(timeout 60 taskset -c 1 $LOAD echo --url $url "${tls_args[@]}" "${args[@]}" --secs $SECS --warmup 1 --threads 1 2>&1 | grep '^{"mode"' | tail -1)
      cpu=$(oncpu_ns $pid)
      msgs=$(curl -s http://127.0.0.1:$port/metrics | sed -n 's/^wsedge_messages_in_total //p')
      kill $pid; wait $pid 2>/dev/null
      rate=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['msgs_per_sec'])" "$line" 2>/dev/null)
      nsmsg=$(python3 -c "import sys; print('%.1f' % (int(sys.argv[1]) / max(1, int(sys.argv[2]))))" "$cpu" "${msgs:-0}")
      echo "$rep $srv $scen $nsmsg ns/msg ($msgs msgs, $rate msgs/s)" | tee -a $out
    done
  done
done
