#!/usr/bin/env bash
# Server CPU per full TLS cycle (connect + TLS handshake + WebSocket upgrade
# + close), robust to a busy machine: the server's on-CPU time (all threads,
# /proc/PID/task/*/schedstat) divided by the cycles the load tester
# completed. Server pinned to core 0, load to core 1, one fresh server per
# run, builds alternating.
#   scripts/tls-handshake-cpu.sh SERVER... (wsedge binaries)
# Env: PKI (dir from scripts/tls-certs.sh, default /tmp/wsedge-tls), LOAD
# (a wsedge-bench that speaks wss://), N (cycles per run, 3000), REPS (3),
# CASES (default "ec-1.3 ec-1.3-resume ec-1.2 ec-1.2-resume rsa-1.3").
set -u
PKI=${PKI:-/tmp/wsedge-tls}; LOAD=${LOAD:-target/release/wsedge-bench}
N=${N:-3000}; REPS=${REPS:-3}
CASES=${CASES:-"ec-1.3 ec-1.3-resume ec-1.2 ec-1.2-resume rsa-1.3"}
"$(dirname "$0")/tls-certs.sh" "$PKI"
oncpu_ns() {
  local sum=0 t
  for t in /proc/$1/task/*/schedstat; do read -r ns _ < "$t" && sum=$((sum + ns)); done
  echo $sum
}
port=19700
for rep in $(seq "$REPS"); do
  for case in $CASES; do
    for srv in "$@"; do
      port=$((port + 2))
      IFS=- read -r cert ver resume <<< "$case"
      printf '[tls]\nlisten = "127.0.0.1:%s"\ncert = "%s/%s.pem"\nkey = "%s/%s-key.pem"\n' \
        $((port + 1)) "$PKI" "$cert" "$PKI" "$cert" > /tmp/hs-cpu.toml
      taskset -c 0 "$srv" --listen 127.0.0.1:$port --workers 1 --config /tmp/hs-cpu.toml > /tmp/hs-cpu-srv.log 2>&1 &
      pid=$!
      for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$((port + 1))) 2>/dev/null && break; sleep 0.05; done
      c0=$(oncpu_ns $pid)
      extra=(); [ "$resume" = resume ] && extra=(--resume)
      line=$(timeout 120 taskset -c 1 "$LOAD" connect --url wss://localhost:$((port + 1))/echo \
        --ca "$PKI/ca.pem" --tls "$ver" "${extra[@]}" --total "$N" --concurrency 32 --sources 4 2>&1 \
        | grep '^{"mode"' | tail -1)
      c1=$(oncpu_ns $pid)
      kill $pid; wait $pid 2>/dev/null
      python3 - "$rep" "$srv" "$case" "$c0" "$c1" "$line" <<'PY'
import json, sys
rep, srv, case, c0, c1, line = sys.argv[1:]
j = json.loads(line) if line else {}
hs = j.get("handshakes", 0)
us = (int(c1) - int(c0)) / 1000 / max(hs, 1)
print(f"{rep} {srv} {case}: {hs} cycles ({j.get('resumed', 0)} resumed, {j.get('errors', '?')} errors), "
      f"{us:.1f} us server CPU per cycle = {1e6 / max(us, 1e-9):.0f} cycles per server CPU-second")
PY
    done
  done
done
