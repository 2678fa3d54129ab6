#!/usr/bin/env bash
# What traces cost: `validate --drain` over 1,000,000 produced events, with traces off (no collector
# named: the default), then on at the defaults (sample_ratio 0.01 of batches), exporting to a real
# otelite; then over events produced with one in 100 traced (each followed: a span per traced record, its
# header rewritten) with every batch traced. Each run reads a fresh copy of the produced log; three runs
# each, the median's events/s printed. Release build;
# results go to docs/benchmarks.md by hand.
# Usage: benches/traces.sh [events, default 1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
events="${1:-1000000}"
cargo build --release -p cartflow
bin=${CARGO_TARGET_DIR:-target}/release/cartflow
otelite=${OTELITE_BIN:-$HOME/.cache/cartflow/tools/bin/otelite}
work=$(mktemp -d)
receiver=
cleanup() {
  [ -n "$receiver" ] && kill "$receiver" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

api=$(free_port)
otlp=$(free_port)
OTELITE_DATA_DIR="$work/otelite" OTELITE_OTLP_HTTP_PORT=$otlp OTELITE_OTLP_GRPC_PORT=$(free_port) \
  "$otelite" serve --addr "127.0.0.1:$api" --storage-path "$work/otelite" >"$work/otelite.log" 2>&1 &
receiver=$!
wait_port "$api"
"$bin" --data-dir "$work/plain" --quiet produce --generate "$events" >/dev/null
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$otlp" CARTFLOW_TELEMETRY__RECORD_RATIO=0.01 \
  "$bin" --data-dir "$work/traced" --quiet produce --generate "$events" >/dev/null

# events/s of one validate --drain on a fresh copy of the log $1, with the environment after it.
once() {
  rm -rf "$work/run"
  cp -a "$work/$1" "$work/run"
  shift
  local started ended
  started=$(date +%s.%N)
  env "$@" "$bin" --data-dir "$work/run" --quiet validate --drain >/dev/null
  ended=$(date +%s.%N)
  python3 -c "print(int($events / ($ended - $started)))"
}

measure() {
  local name=$1 log=$2
  shift 2
  local runs=()
  for _ in 1 2 3; do runs+=("$(once "$log" "$@")"); done
  local median
  median=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)
  printf '  %-34s %9s events/s  (runs: %s)\n' "$name" "$median" "${runs[*]}"
}

echo "== validate --drain, $events events"
measure "traces off (default)" plain
measure "traces on, defaults" plain "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$otlp"
measure "on, 1 event in 100 followed" traced "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$otlp" \
  OTEL_TRACES_SAMPLER_ARG=1.0
curl -s "http://127.0.0.1:$api/api/stats" | head -c 300
echo
