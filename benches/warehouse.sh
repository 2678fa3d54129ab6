#!/usr/bin/env bash
# The warehouse benchmark: N generated events (default 10M) landed in a lake,
# then `cartflow warehouse build` (time, peak memory), an incremental build
# after one more day, and DuckDB running the same SQL on the same Parquet.
#
#   benches/warehouse.sh [EVENTS] [WORK_DIR]
#
# Needs a release build (cargo build --release -p cartflow, or BENCH_BIN=path), GNU time and
# DuckDB (pip install duckdb==2.0.1). WORK_DIR is kept for inspection.
set -euo pipefail
events=${1:-10000000}
work=${2:-$(mktemp -d /tmp/cartflow-wh-bench.XXXXXX)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BENCH_BIN:-$root/target/release/cartflow}  # not CARTFLOW_*: those are configuration
[ -x "$bin" ] || { echo "build first: cargo build --release -p cartflow" >&2; exit 1; }
cf() { "$bin" --quiet --data-dir "$work/data" "$@"; }
peak() { grep -E 'Maximum resident' "$1" | awk '{printf "%.0f MB", $6/1024}'; }

echo "landing $events generated events in $work/data/lake …"
cf produce --generate "$events" >/dev/null
cf validate --drain >/dev/null
cf lake-sink --drain
echo
echo "== cartflow warehouse build (from scratch) =="
/usr/bin/time -v -o "$work/full.time" "$bin" --quiet --data-dir "$work/data" warehouse build
echo "peak memory: $(peak "$work/full.time")"
echo
echo "== DuckDB, the same SQL on the same bronze Parquet (from scratch) =="
/usr/bin/time -v -o "$work/duckdb.time" python3 "$root/benches/warehouse_duckdb.py" "$work/data/lake" --check
echo "peak memory: $(peak "$work/duckdb.time")"
echo
echo "== one more day of events, then an incremental build =="
# The generator makes 1.37M events a day from 2019-10-01: the next day is free.
next=$(date -u -d "2019-10-01 + $(( (events + 1369999) / 1370000 )) days" +%F)
cf produce --generate 1370000 --seed 99 --start "$next 00:00:00 UTC" >/dev/null
cf validate --drain >/dev/null
cf lake-sink --drain >/dev/null
/usr/bin/time -v -o "$work/incr.time" "$bin" --quiet --data-dir "$work/data" warehouse build
echo "peak memory: $(peak "$work/incr.time")"
echo
