#!/usr/bin/env bash
# Decision latency of the same allow-list policy written in Python
# (policies/py-allow-list, componentize-py) and in Rust (the crate
# `hearth-wasm-edge new` writes), in the same run of the decision bench.
#
#   benches/policy/languages.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build -q --release -p hearth-wasm-edge
policies/py-allow-list/build.sh >/dev/null
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
./target/release/hearth-wasm-edge new "$work/allow-list" >/dev/null
(cd "$work/allow-list" && CARGO_TARGET_DIR="$work/target" cargo build -q --release --target wasm32-wasip2)

export HEARTH_BENCH_PY_POLICY=$target/wasm32-wasip2/policy/py_allow_list.wasm
export HEARTH_BENCH_RUST_ALLOW_LIST=$work/target/wasm32-wasip2/release/allow_list.wasm
ls -l "$HEARTH_BENCH_PY_POLICY" "$HEARTH_BENCH_RUST_ALLOW_LIST" | awk '{print $5, $9}'
cargo bench -q -p hearth-edge-benches --bench decision
