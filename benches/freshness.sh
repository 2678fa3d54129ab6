#!/usr/bin/env bash
# Freshness at a steady rate: `produce --rate` feeding a running validator, lake sink and feature
# streamer, each its own process with --metrics-addr; at the end each stage's
# cartflow_freshness_seconds histogram (produce time → its output durable; for the streamer, produce →
# visible in the online store) as p50/p99, interpolated within buckets as Prometheus's
# histogram_quantile does. Embedded (log and store), then Kafka (nisshi) + Redis. Then, with live
# events (`produce --start now`: each sent when the clock reaches its event time; the rate given is the
# daily average, which the hour of day shapes), the validator's cartflow_event_age_seconds: event time →
# validated. Release build; results go to docs/benchmarks.md by hand.
# Usage: benches/freshness.sh [embedded rate, default 50000] [kafka+redis rate, default 25000] [seconds, default 30]
# PHASES picks phases (default "embedded embedded-live kafka+redis kafka+redis-live").
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
embedded_rate="${1:-50000}"
kafka_rate="${2:-25000}"
seconds="${3:-30}"
phases="${PHASES:-embedded embedded-live kafka+redis kafka+redis-live}"
cargo build --release -p cartflow
bin=${CARGO_TARGET_DIR:-target}/release/cartflow
work=$(mktemp -d)
pids=()
prefix="bench-freshness-$$"
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  redis-cli --scan --pattern "$prefix:*" | xargs -r -n 5000 redis-cli del >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# p50 and p99 of one stage's freshness between two /metrics pages (files: warm-up, end), interpolated
# within buckets as histogram_quantile does: the records of the steady part of the run.
quantiles() {
  python3 -c '
import re, sys
stage = sys.argv[1]
metric, labels = ("cartflow_event_age_seconds", "") if stage == "event-age" else ("cartflow_freshness_seconds", "stage=\"" + stage + "\",")
def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(metric + r"_bucket\{" + labels + r"le=\"([^\"]+)\"\} (\S+)", line)
        if m:
            out[float("inf") if m[1] == "+Inf" else float(m[1])] = float(m[2])
    return out
start, end = buckets(sys.argv[2]), buckets(sys.argv[3])
steady = sorted((le, n - start.get(le, 0.0)) for le, n in end.items())
total = steady[-1][1] if steady else 0
def q(p):
    rank, lo, below = p * total, 0.0, 0.0
    for le, n in steady:
        if n >= rank:
            return le if le == float("inf") else lo + (le - lo) * (rank - below) / max(n - below, 1e-9)
        lo, below = le, n
if not total:
    print(f"  {stage:<10} no output of it became durable after the warm-up")
    sys.exit()
out = " ".join(f"p{int(p * 100)} {q(p) * 1000:8.1f} ms" for p in (0.5, 0.99))
print(f"  {stage:<10} {out}  ({int(total):,} records timed after the warm-up)")
' "$1" "$2" "$3"
}

run() {
  local name=$1 rate=$2 dir="$work/$1" live=()
  shift 2
  [[ " $phases " == *" $name "* ]] || return 0
  if [ "$1" = live ]; then
    live=(--start now)
    shift
  fi
  local env=("$@")
  local token ports=()
  echo "== $name, produce --rate $rate for $seconds s"
  for stage in validate lake-sink "features stream"; do
    local p
    p=$(free_port)
    ports+=("$p")
    # shellcheck disable=SC2086
    env "${env[@]}" "$bin" --data-dir "$dir" --quiet $stage --metrics-addr "127.0.0.1:$p" >"$work/$name-${stage// /-}.log" 2>&1 &
    pids+=($!)
    wait_port "$p"
  done
  env "${env[@]}" "$bin" --data-dir "$dir" --quiet produce --generate $((rate * seconds)) --rate "$rate" "${live[@]}" >"$work/$name-produce.out" &
  local producer=$!
  token=$(cat "$dir/auth/token")
  local names=(validate lake-sink features)
  scrape() { for i in 0 1 2; do curl -s -H "authorization: Bearer $token" "http://127.0.0.1:${ports[$i]}/metrics" >"$work/$name-${names[$i]}-$1.prom"; done; }
  sleep 10 # the warm-up: connections, group joins, the first metadata
  scrape warm
  wait "$producer"
  sleep 3 # the last batches land
  scrape end
  if [ ${#live[@]} -gt 0 ]; then
    sed 's/^/  /' "$work/$name-produce.out"
    quantiles event-age "$work/$name-validate-warm.prom" "$work/$name-validate-end.prom"
  fi
  for i in 0 1 2; do
    quantiles "${names[$i]}" "$work/$name-${names[$i]}-warm.prom" "$work/$name-${names[$i]}-end.prom"
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pids=()
}

run embedded "$embedded_rate" "CARTFLOW_FEATURES__ONLINE=embedded"

run embedded-live "$embedded_rate" live "CARTFLOW_FEATURES__ONLINE=embedded"

[[ "$phases" == *kafka* ]] || exit 0
start_broker "$work/broker.log"
kafka=("CARTFLOW_LOG=kafka://127.0.0.1:$port" "CARTFLOW_KAFKA__PARTITIONS=4"
  "CARTFLOW_FEATURES__ONLINE=redis://127.0.0.1:6379/0" "CARTFLOW_FEATURES__REDIS_PREFIX=$prefix")
run kafka+redis "$kafka_rate" "${kafka[@]}"
run kafka+redis-live "$kafka_rate" live "${kafka[@]}"
kill "$broker"
