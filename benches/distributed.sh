#!/usr/bin/env bash
# Distributed mode: produce → validate over Kafka (a nisshi broker on loopback, in-memory storage),
# beside the same pipeline on the embedded log; then CDC rows/s from the local PostgreSQL, snapshot
# and streaming. Release build; results go to docs/benchmarks.md by hand.
# Usage: benches/distributed.sh [events, default 1000000] [cdc rows, default 200000]
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"
rows="${2:-200000}"
cargo build --release -p cartflow -p cartflow-bench
bin=${CARGO_TARGET_DIR:-target}/release/cartflow
broker_bin="${NISSHI_BIN:-$HOME/.cache/cartflow/tools/bin/nisshi}"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$broker_bin" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://nisshi/ >"$work/broker.log" 2>&1 &
broker=$!
db="cartflow_bench_$$"
cleanup() {
  kill "$broker" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -d postgres -qc \
    "SELECT pg_drop_replication_slot('${db}_slot') FROM pg_replication_slots WHERE slot_name = '${db}_slot'" >/dev/null || true
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
sleep 1

echo "== produce → validate, embedded log"
"$bin-bench" --data-dir "$work/embedded" --quiet pipeline --events "$events"
echo "== produce → validate, Kafka (nisshi 0.7, memory storage, 8 partitions)"
CARTFLOW_LOG="kafka://127.0.0.1:$port" "$bin-bench" --data-dir "$work/kafka" --quiet pipeline --events "$events"

echo "== CDC from PostgreSQL ($rows rows)"
psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db"
url="postgres://postgres@127.0.0.1:5432/$db"
"$bin" --data-dir "$work/cdc" --quiet cdc seed --postgres "$url" --events "$rows"
"$bin" --data-dir "$work/cdc" --quiet cdc --postgres "$url" --slot "${db}_slot" --drain   # the snapshot
"$bin" --data-dir "$work/cdc" --quiet cdc seed --postgres "$url" --events "$rows" --seed 43
"$bin" --data-dir "$work/cdc" --quiet cdc --postgres "$url" --slot "${db}_slot" --drain   # the slot's changes
