#!/usr/bin/env bash
# The soak: the embedded system under steady load for a long time. First `cartflow run` at full speed
# (3,000,000 events, server and feature streamer on) measures the whole system's maximum — events in,
# until every stage has drained — and trains the champion. Then `cartflow run --rate` at half that
# maximum, with `/predict` at half its maximum beside it (`cartflow-bench load --rate`: requests on
# schedule whatever the answers take), for $minutes. Every 5 s it samples the `cartflow run` process
# (RSS, open descriptors, threads), the data directory's disk (log, lake, all) and /metrics (events
# through each stage, consumer lag); the load prints its latency per 5 s. At the end the pipeline
# drains, and benches/soak_report.py judges the samples (no error, no lost event, RSS growth after the
# warm-up, p99 steady, the log's disk bounded by retention) and plots them (SVG).
# Usage: benches/soak.sh [minutes, default 30] [events/s] [requests/s]   (rates: measured when not given)
# SOAK_DIR keeps the data directory and samples there (default: a temporary directory, removed).
# SOAK_SVG is where the plot goes (default docs/soak.svg). Results go to docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
minutes="${1:-30}"
rate="${2:-}"
requests="${3:-}"
svg="${SOAK_SVG:-docs/soak.svg}"
cargo build --release -p cartflow -p cartflow-bench
bin=${CARGO_TARGET_DIR:-target}/release
work="${SOAK_DIR:-$(mktemp -d)}"
mkdir -p "$work"
data="$work/data"
pid=""
cleanup() {
  # SIGINT stops serving; a run still building its warehouse goes on, hence the KILL after 10 s.
  if [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  [ -n "${SOAK_DIR:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
# Retention bounds the log: at most 512 MB a partition (raw, validated, invalid and the prediction
# log, 4 partitions each), over a minute of events at these rates: a stage further behind would lose
# records to retention, as a Kafka consumer would.
export CARTFLOW_EMBEDDED_LOG__RETENTION_MB=512
# Plain log lines, for the report's count of errors and warnings.
export NO_COLOR=1

# `cartflow run` in the background on a free port, its output in $work/$1.out and .err: sets $pid, $url, $token.
start_run() {
  local name=$1 port
  shift
  port=$(free_port)
  "$bin/cartflow" --data-dir "$data" --quiet run "$@" --addr "127.0.0.1:$port" >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  wait_port "$port"
  url="http://127.0.0.1:$port"
  token=$(cat "$data/auth/token")
}
# A counter or gauge of the last scrape, summed over the series whose labels contain $2.
metric() {
  awk -v m="$1" -v l="$2" '(index($0, m "{") == 1 || index($0, m " ") == 1) && index($0, l) { s += $NF }
    END { printf "%d", s }' "$work/metrics"
}
scrape() { curl -s -H "authorization: Bearer $token" "$url/metrics" >"$work/metrics" || : >"$work/metrics"; }
# Whether every stage has drained $1 produced events: each once validated, in the lake and read by
# the feature streamer, and no lag anywhere.
drained() {
  scrape
  local produced valid invalid
  produced=$(metric cartflow_events_out_total 'stage="produce"')
  valid=$(metric cartflow_events_out_total 'topic="tracking.user_behavior.validated"')
  invalid=$(metric cartflow_events_out_total 'topic="tracking.user_behavior.invalid"')
  [ "$produced" = "$1" ] && [ $((valid + invalid)) = "$1" ] &&
    [ "$(metric cartflow_events_out_total 'stage="lake-sink"')" = $((valid + invalid)) ] &&
    [ "$(metric cartflow_events_in_total 'stage="features"')" = "$valid" ] &&
    [ "$(metric cartflow_consumer_lag_records '')" = 0 ]
}

if [ -z "$rate" ]; then
  events=3000000
  echo "== the system's maximum: cartflow run at full speed, $events events, until every stage drained"
  start_run warm-up --events "$events" --seed 9
  t0=$(date +%s.%N)
  until drained "$events"; do sleep 0.2; done
  max=$(python3 -c "import sys; print(int($events / ($(date +%s.%N) - $t0)))")
  rate=$((max / 2))
  echo "   $max events/s through validator, lake and online store; the soak runs at $rate/s"
  # Then it builds the warehouse and trains: the champion the soak serves.
  until grep -q "champion\|no model" "$work/warm-up.out"; do sleep 1; done
else
  echo "== a champion (cartflow run, 2,000,000 events)"
  start_run warm-up --events 2000000 --seed 9
  until grep -q "champion\|no model" "$work/warm-up.out"; do sleep 1; done
fi
grep -q champion "$work/warm-up.out" || { cat "$work/warm-up.out" >&2; exit 1; }
kill -INT "$pid"
wait "$pid" || true

seconds=$((minutes * 60))
# The soak's events at the rate: the producer ends with the load.
total=$((rate * seconds))
start_run soak --events "$total" --rate "$rate" --seed 7
start=$(date +%s)
until curl -sf -H "authorization: Bearer $token" "$url/ready" >/dev/null; do sleep 0.5; done
if [ -z "$requests" ]; then
  echo "== /predict's maximum beside the paced pipeline (after 20 s, 10 s of 16 connections)"
  sleep 20
  "$bin/cartflow-bench" --data-dir "$data" --quiet load --url "$url" --seconds 10 --json >"$work/predict-max.json"
  max=$(python3 -c 'import json, sys; print(int(json.load(sys.stdin)["requests_per_sec"]))' <"$work/predict-max.json")
  requests=$((max / 2))
  echo "   $max requests/s; the soak sends $requests/s"
fi
echo "== soak: $minutes min, events at $rate/s (cartflow run --rate), /predict at $requests/s"
"$bin/cartflow-bench" --data-dir "$data" --quiet load --url "$url" --rate "$requests" \
  --seconds $((seconds - ($(date +%s) - start))) --connections 32 --report-every 5 \
  >"$work/load.csv" 2>"$work/load.err" &
load_pid=$!

# One line of samples: the process, the disk, the counters.
sample() {
  scrape
  local rss fds threads
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  threads=$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")
  fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  echo "$(date +%s),$rss,$fds,$threads,$(du -sb "$data/log" | cut -f1),$(du -sb "$data/lake" | cut -f1),$(du -sb "$data" | cut -f1),$(
    metric cartflow_events_out_total 'stage="produce"'
  ),$(metric cartflow_events_out_total 'topic="tracking.user_behavior.validated"'),$(
    metric cartflow_events_out_total 'topic="tracking.user_behavior.invalid"'
  ),$(metric cartflow_events_out_total 'stage="lake-sink"'),$(metric cartflow_events_in_total 'stage="features"'),$(
    metric cartflow_consumer_lag_records 'stage="validate"'
  ),$(metric cartflow_consumer_lag_records 'stage="lake-sink"'),$(metric cartflow_consumer_lag_records 'stage="features"'),$(
    metric cartflow_stage_restarts_total ''
  ),$(metric cartflow_prediction_log_records_total ''),$(metric cartflow_prediction_log_dropped_total '')"
}
echo "unix_secs,rss_kb,fds,threads,log_bytes,lake_bytes,data_bytes,produced,valid,invalid,lake,features,lag_validate,lag_lake,lag_features,restarts,predictions_logged,predictions_dropped" >"$work/samples.csv"
while kill -0 "$load_pid" 2>/dev/null; do
  sample >>"$work/samples.csv"
  printf '\r  %4d s of %d' $(($(date +%s) - start)) "$seconds"
  sleep 5
done
echo
wait "$load_pid" || { echo "the load failed: $(cat "$work/load.err")" >&2; exit 1; }
end=$(date +%s)
echo "== drain"
for _ in $(seq 600); do
  sample >>"$work/samples.csv"
  drained "$total" && break
  sleep 1
done
sample >>"$work/samples.csv"
python3 benches/soak_report.py "$work/samples.csv" "$work/load.csv" "$work/soak.err" --produced "$total" \
  --start "$start" --end "$end" --svg "$svg"
