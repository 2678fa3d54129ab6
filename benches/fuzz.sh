#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets: cargo-fuzz on libFuzzer) for a time or a number of
# executions and prints, per target, executions, executions/s, coverage, corpus and findings.
# cargo-fuzz wants nightly only for its sanitizers: with `-s none` it builds on stable (rustc 1.95
# here), since libFuzzer's coverage (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*)
# and `--cfg fuzzing` are stable flags. Findings: a panic (debug assertions and overflow checks
# are on), a hang (-timeout), memory past -rss_limit_mb; each input is kept under
# ~/.cache/cartflow/fuzz/artifacts/<target>/ and the run fails. The corpus grows in
# ~/.cache/cartflow/fuzz/corpus/<target>, seeded by fuzz/examples/seeds.rs.
# Usage: benches/fuzz.sh [seconds per target, default 60] [target…]
#        FUZZ_RUNS=10000000 benches/fuzz.sh 0 record    (executions instead of a time)
#        FUZZ_JOBS=2 benches/fuzz.sh 600                  (two targets at a time)
# .ci/run runs each target for a few seconds, so that all keep building and running.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
cache="$HOME/.cache/cartflow/fuzz"
export PATH="$HOME/.cache/cartflow/tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz is missing: .ci/run installs it (cargo install cargo-fuzz@0.13.2 --locked)" >&2
  exit 1
fi
build=(-s none --codegen-units 16 --target-dir "$cache/target")
cargo fuzz build "${build[@]}"
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

# Seeds: the shared real rows when they are there, generated events always.
real=()
for f in ../shared/data/real/*.csv; do [ -f "$f" ] && real+=("$(realpath "$f")"); done
rm -rf "$cache/seeds"
cargo run -q -p cartflow-fuzz --example seeds -- "$cache/seeds" "${real[@]}"

limit=(-max_total_time="$seconds")
[ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
printf '%-14s %14s %10s %8s %8s %8s  %s\n' target executions "execs/s" cov features corpus finding
# One target: its table line; a finding fails it.
run_target() {
  local t=$1 log="$cache/$1.log" status=0
  mkdir -p "$cache/corpus/$t" "$cache/artifacts/$t"
  # TMPDIR on tmpfs: the log_segment target writes a segment per execution.
  TMPDIR=/dev/shm cargo fuzz run "${build[@]}" "$t" "$cache/corpus/$t" "$cache/seeds/$t" -- \
    "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$cache/artifacts/$t/" >"$log" 2>&1 || status=$?
  local execs rate last cov ft corp finding=none
  execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ { print $2 }' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")
  if [ "$status" -ne 0 ]; then
    finding="$(grep -m1 -E "panicked at|ERROR: libFuzzer|ALARM: working on the last Unit|out-of-memory" "$log" || echo "exit $status") (see $log)"
  fi
  printf '%-14s %14s %10s %8s %8s %8s  %s\n' "$t" "${execs:-0}" "${rate:-0}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$finding"
  return "$status"
}
# FUZZ_JOBS targets at once (default 1: the figures per second then compare across runs).
jobs="${FUZZ_JOBS:-1}"
failed=()
pids=()
names=()
for t in "${targets[@]}"; do
  run_target "$t" &
  pids+=($!)
  names+=("$t")
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz findings in: ${failed[*]}" >&2
  exit 1
fi
