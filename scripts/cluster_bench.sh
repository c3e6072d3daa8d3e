#!/usr/bin/env bash
# Cluster figures for BENCHMARKS.md ("Clustering"): two wsedge nodes and
# Redis on this machine, against one node without Redis.
# Nodes on core 0 (one worker each), Redis and the load (examples/
# cluster_bench.rs) on core 1. Needs redis-server and redis-cli; builds the
# release binary and the example first. SECS, LAT_N size it; output on stdout.
set -eu
cd "$(dirname "$0")/.."
SECS=${SECS:-5}; LAT_N=${LAT_N:-20000}
cargo build --release --bins --examples >/dev/null 2>&1 || cargo build --release --bins --example cluster_bench
BIN=./target/release/wsedge; LOAD=./target/release/examples/cluster_bench
RP=16390; A=127.0.0.1:18091; B=127.0.0.1:18092; S=127.0.0.1:18093
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/${1%:*}/${1#*:}) 2>/dev/null && return; sleep 0.05; done; }
taskset -c 1 redis-server --port $RP --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >/dev/null & pids+=($!)
wait_port 127.0.0.1:$RP
for addr in $A $B; do
  RUST_LOG=warn taskset -c 0 $BIN --listen $addr --workers 1 --redis-url redis://127.0.0.1:$RP >/dev/null 2>>"$dir/nodes.log" & pids+=($!)
  wait_port $addr
done
RUST_LOG=warn taskset -c 0 $BIN --listen $S --workers 1 >/dev/null 2>"$dir/single.log" & pids+=($!)
wait_port $S
sleep 1
cpu() { redis-cli -p $RP info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{printf "%.3f", s}'; }
calls() { redis-cli -p $RP info commandstats | awk -F'[=,:]' '/cmdstat_evalsha/{print $3}'; }
echo "# latency, one message in flight (us)"
echo "single-node  $(taskset -c 1 $LOAD latency $S $S $LAT_N)"
echo "cluster A->A $(taskset -c 1 $LOAD latency $A $A $LAT_N)"
echo "cluster A->B $(taskset -c 1 $LOAD latency $A $B $LAT_N)"
echo "# rate: 1 publisher, 10 subscribers, window 1000"
echo "single-node  $(taskset -c 1 $LOAD rate $S $S $SECS 10 1000)"
c0=$(cpu); k0=$(calls)
line=$(taskset -c 1 $LOAD rate $A $B $SECS 10 1000)
c1=$(cpu); k1=$(calls)
echo "cluster A->B $line"
python3 -c "c=$c1-$c0; k=$k1-${k0:-0}; print(f'redis: {c*1e3/max(1,k)*1e3:.1f} ms CPU per 1,000 publishes ({k} publish scripts, {c:.2f} s CPU)')"
