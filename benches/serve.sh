#!/usr/bin/env bash
# POST /predict under load: cartflow on the embedded store and on Redis, and the reference design's
# serving path (FastAPI + redis-py + XGBoost) on the same features. Release build; results go to
# docs/benchmarks.md by hand. Usage: benches/serve.sh [events, default 1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"
python3 -m pip install --quiet --disable-pip-version-check fastapi uvicorn redis xgboost numpy
cargo build --release -p cartflow
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
bin=target/release/cartflow
[ -n "${CARGO_TARGET_DIR:-}" ] && bin="$CARGO_TARGET_DIR/release/cartflow"
"$bin" --data-dir "$data" --quiet run --once --events "$events"
"$bin" --data-dir "$data" --quiet bench serve --redis redis://127.0.0.1:6379/0 --python
