#!/usr/bin/env bash
# The features benchmark: the streamer (embedded and Redis) and the feature
# API (requests/s, p50/p99 for one entity; embedded and Redis), load from wrk
# on this machine.
#
#   benches/features.sh [EVENTS] [WORK_DIR]
#
# Needs a release build (cargo build --release -p cartflow -p cartflow-bench; BENCH_BIN=dir holding both),
# the local Redis, and wrk (apt-get install wrk; installed here if missing).
set -euo pipefail
events=${1:-1000000}
work=${2:-$(mktemp -d /tmp/cartflow-features-bench.XXXXXX)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BENCH_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}/cartflow  # not CARTFLOW_*: those are configuration
[ -x "$bin" ] && [ -x "$bin-bench" ] || { echo "build first: cargo build --release -p cartflow -p cartflow-bench" >&2; exit 1; }
command -v wrk >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
redis=redis://127.0.0.1:6379/0
cf() { "$bin" --quiet --data-dir "$work/data" "$@"; }

echo "== streamer: $events validated events from the embedded log =="
"$bin-bench" --quiet --data-dir "$work/data" features --events "$events" --redis "$redis"
echo

echo "== feature API: landing $events events, training set, materialize =="
cf run --events "$events" >/dev/null
cf features materialize
CARTFLOW_FEATURES__REDIS_PREFIX=cartflow-bench-api cf features materialize --online "$redis"
# One entity: the last cart of the data, asked as of its own time.
body=$(cf sql "SELECT user_id, product_id, user_session, event_time FROM features.cart_features ORDER BY event_time DESC LIMIT 1" --format json |
  python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); r["event_time"]=r["event_time"].replace(" ","T"); print(json.dumps(r))')
echo "entity: $body"
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
LUA

api() {  # $1 = label, rest = serve args
  local label=$1; shift
  # The binary itself in the background (not a function's subshell), so SIGINT reaches it.
  "$bin" --quiet --data-dir "$work/data" features serve --addr 127.0.0.1:6570 "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:6570/health >/dev/null && break; sleep 0.1; done
  curl -sf -X POST -H 'content-type: application/json' -d "$body" http://127.0.0.1:6570/features >/dev/null
  echo "-- $label: wrk, 2 threads, 32 connections, 15 s"
  wrk -t2 -c32 -d15s --latency -s "$work/post.lua" http://127.0.0.1:6570/features | grep -E 'Requests/sec|  50%|  99%|Non-2xx'
  kill -INT $pid; wait $pid || true
}
api "embedded store"
CARTFLOW_FEATURES__REDIS_PREFIX=cartflow-bench-api api "redis store" --online "$redis"
redis-cli --scan --pattern 'cartflow-bench-api:*' | xargs -r -n 1000 redis-cli del >/dev/null
echo "work dir kept: $work"
