#!/usr/bin/env bash
# POST /predict under load: cartflow on the embedded store and on Redis, and the reference design's
# serving path (FastAPI + redis-py + XGBoost) on the same features. Release build; results go to
# docs/benchmarks.md by hand. Usage: benches/serve.sh [events, default 1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"
python3 -m pip install --quiet --disable-pip-version-check fastapi uvicorn redis xgboost numpy
cargo build --release -p cartflow -p cartflow-bench
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
bin=${CARGO_TARGET_DIR:-target}/release/cartflow
"$bin" --data-dir "$data" --quiet run --once --events "$events"
"$bin-bench" --data-dir "$data" --quiet serve --redis redis://127.0.0.1:6379/0 --python
