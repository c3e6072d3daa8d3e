#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECS seconds, one after another (never in
# parallel), on the stable toolchain (RUSTC_BOOTSTRAP=1), with
# AddressSanitizer. Used by `make fuzz` (FUZZ_SECS, default 60) and
# `make fuzz-smoke` (10 s each, CI). See FUZZING.md.
#
#   fuzz/run.sh SECS            # every target
#   FUZZ_TARGETS="frames" fuzz/run.sh 300
#
# The committed seeds in fuzz/corpus/<target>/ are read, never written: what
# the fuzzer learns goes to fuzz/target/corpus/<target>/ (ignored by git, kept
# between runs). Each run appends a line to fuzz/target/fuzz-stats.tsv. A
# crash stops the script with the fuzzer's exit status; the input is in
# fuzz/artifacts/<target>/ and the log says how to reproduce and minimise it.
set -euo pipefail

secs=${1:?usage: fuzz/run.sh SECONDS_PER_TARGET}
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (about a minute)"
  cargo install cargo-fuzz --locked
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
mkdir -p target
# Build once up front, so the time limit is all fuzzing.
if ! cargo fuzz build >target/fuzz-build.log 2>&1; then
  tail -40 target/fuzz-build.log >&2
  exit 1
fi

for t in $targets; do
  mkdir -p "target/corpus/$t" "corpus/$t"
  log="target/fuzz-$t.log"
  echo "fuzz: $t for ${secs}s (log: fuzz/$log)"
  status=0
  cargo fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  printf '%s\t%s\t%ss\t%s runs\t%s exec/s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$secs" \
    "${runs:-?}" "${rate:-?}" "${cov:-}" | tee -a target/fuzz-stats.tsv
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $status); last lines of fuzz/$log:" >&2
    grep -v '^#[0-9]' "$log" | tail -40 >&2
    exit "$status"
  fi
done
