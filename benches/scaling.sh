#!/usr/bin/env bash
# Scale-out: each streaming stage with 1, 2 and 4 processes in one consumer group on one nisshi broker
# (memory storage, 8 partitions), as events/s by wall time from the first process starting to the last
# one exiting (group joins and rebalances included); then POST /predict through nginx to 1 and to 2
# `cartflow serve` replicas sharing one Redis. Release build; results go to docs/benchmarks.md by hand.
# Installs Debian's nginx if it is missing (for the load balancer only).
# Usage: benches/scaling.sh [events, default 2000000] [seconds of load per /predict figure, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
events="${1:-2000000}"
seconds="${2:-10}"
cargo build --release -p cartflow -p cartflow-bench
bin=${CARGO_TARGET_DIR:-target}/release/cartflow
redis="redis://127.0.0.1:6379/0"
work=$(mktemp -d)
pids=()
drop_prefix() { redis-cli --scan --pattern "$1:*" | xargs -r -n 5000 redis-cli del >/dev/null; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  drop_prefix "bench-scale-$$-*"
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
stat() { redis-cli info "$1" | tr -d '\r' | sed -n "s/^$2://p"; }   # stat SECTION FIELD

# Runs `n` processes of one stage with --drain on the broker; prints events/s over the wall time.
stage() {
  local name=$1 n=$2 records=$3
  shift 3
  local started group=()
  started=$(now)
  for i in $(seq "$n"); do
    CARTFLOW_LOG="kafka://127.0.0.1:$port" CARTFLOW_KAFKA__PARTITIONS=8 CARTFLOW_KAFKA__SESSION_TIMEOUT_MS=6000 \
      "$bin" --data-dir "$work/d$n" --quiet "$@" --drain >"$work/$name-$n-$i.log" 2>&1 &
    group+=($!)
  done
  for p in "${group[@]}"; do wait "$p"; done
  python3 -c "import sys; s = float(sys.argv[2]) - float(sys.argv[1]); print(f'{sys.argv[3]:<11} {sys.argv[4]} processes: {int(sys.argv[5]) / s:>10,.0f} events/s ({s:.1f} s)')" \
    "$started" "$(now)" "$name" "$n" "$records"
}

echo "== each stage with 1, 2 and 4 processes in one group ($events events, 8 partitions, $(nproc) cores)"
for n in 1 2 4; do
  start_broker "$work/broker-$n.log"
  pids+=("$broker")
  CARTFLOW_LOG="kafka://127.0.0.1:$port" CARTFLOW_KAFKA__PARTITIONS=8 \
    "$bin" --data-dir "$work/d$n" --quiet produce --generate "$events" --inject-invalid 0.01 >/dev/null
  stage validate "$n" "$events" validate
  stage lake-sink "$n" "$events" lake-sink --lake "$work/lake-$n"
  valid=$(CARTFLOW_LOG="kafka://127.0.0.1:$port" "$bin" --data-dir "$work/d$n" --quiet topics --json |
    python3 -c 'import json,sys; t=[t for t in json.load(sys.stdin)["topics"] if t["name"]=="tracking.user_behavior.validated"][0]; print(sum(p["end"] for p in t["partitions"]))')
  commands=$(stat stats total_commands_processed)
  memory=$(stat memory used_memory)
  CARTFLOW_FEATURES__REDIS_PREFIX="bench-scale-$$-$n" stage features "$n" "$valid" features stream --online "$redis"
  if [ "$n" = 1 ]; then
    python3 - "$valid" "$(du -sb "$work/lake-1" | cut -f1)" \
      "$(( $(stat stats total_commands_processed) - commands ))" "$(( $(stat memory used_memory) - memory ))" \
      "$(redis-cli --scan --pattern "bench-scale-$$-1:*" | wc -l)" <<'PY'
import sys
valid, lake, commands, memory, keys = map(int, sys.argv[1:])
print(f"  sizes: lake {lake / valid:.1f} B/event (Parquet, zstd); Redis {commands / valid:.3f} commands/event, "
      f"{memory / valid:.0f} B/event of memory, {keys:,} keys ({keys / valid:.3f}/event)")
PY
  fi
  kill "$broker"
  wait "$broker" 2>/dev/null || true
done

echo "== POST /predict through nginx: 1 and 2 serve replicas, one Redis"
command -v nginx >/dev/null || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx >/dev/null; }
serve_dir="$work/serve"
"$bin" --data-dir "$serve_dir" --quiet run --once >/dev/null
CARTFLOW_FEATURES__REDIS_PREFIX="bench-scale-$$-serve" "$bin" --data-dir "$serve_dir" --quiet features stream --online "$redis" --drain >/dev/null
replica_ports=()
for r in 1 2; do
  p=$(free_port)
  CARTFLOW_FEATURES__REDIS_PREFIX="bench-scale-$$-serve" \
    "$bin" --data-dir "$serve_dir" --quiet serve --online "$redis" --addr "127.0.0.1:$p" >"$work/serve-$r.log" 2>&1 &
  pids+=($!)
  replica_ports+=("$p")
  wait_port "$p"
done
lb=$(free_port)
for replicas in 1 2; do
  upstream=""
  for p in "${replica_ports[@]:0:$replicas}"; do upstream+="server 127.0.0.1:$p;"; done
  cat >"$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  upstream serve { $upstream keepalive 64; }
  # nginx closes a client connection after 1,000 requests by default; the load
  # generator does not reconnect in the middle of its run.
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$lb;
    location / { proxy_pass http://serve; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
  [ -f "$work/nginx.pid" ] && { kill "$(cat "$work/nginx.pid")"; sleep 0.5; }
  nginx -c "$work/nginx.conf" -p "$work"
  wait_port "$lb"
  echo -n "$replicas replica(s) behind nginx: "
  "$bin-bench" --data-dir "$serve_dir" --quiet load --url "http://127.0.0.1:$lb" --seconds "$seconds"
done
echo -n "1 replica, direct: "
"$bin-bench" --data-dir "$serve_dir" --quiet load --url "http://127.0.0.1:${replica_ports[0]}" --seconds "$seconds"
