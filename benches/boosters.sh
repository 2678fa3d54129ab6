#!/usr/bin/env bash
# Boosters side by side on one generated training set: cartflow's forust
# (train time, validation AUC, inference rows/s) and, from PyPI, LightGBM and
# XGBoost on the very same encoded rows and the same fixed work.
# Usage: benches/boosters.sh [EVENTS] [ROUNDS]   (BENCH_BIN to use another cartflow-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-10000000}
rounds=${2:-200}
bin=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/cartflow-bench}
[ -x "$bin" ] || cargo build --release -q -p cartflow-bench
python3 -c 'import lightgbm, xgboost, sklearn, pandas' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check lightgbm xgboost scikit-learn pandas
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== $(nproc) cores, $(date -u +%F)"
"$bin" boosters --events "$events" --rounds "$rounds" --out "$out"
python3 benches/boosters.py "$out" "$rounds"
# LightGBM from Rust (lightgbm3 vendors LightGBM's C++: needs CMake 3.28+ — Debian 12 has
# 3.25, `pip install cmake` has a newer one — and libclang-dev for bindgen).
if command -v cmake >/dev/null; then
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/bench-lightgbm3 \
    cargo run -q --release --manifest-path benches/lightgbm3/Cargo.toml -- "$out" "$rounds"
else
  echo "lightgbm3: skipped (pip install cmake; apt-get install libclang-dev)"
fi
