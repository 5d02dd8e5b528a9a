#!/usr/bin/env bash
# How long a new policy author waits for the first build: `hearth-wasm-edge
# new` into an empty directory, then the first `cargo build --release
# --target wasm32-wasip2` and the first `cargo test`, each with an empty
# target directory (the registry already downloaded, as after any first
# `cargo fetch`). Run for the SDK of BASE (a git revision) and of the working
# tree, in the same run.
#
#   benches/policy/first_build.sh [BASE]      (default BASE: HEAD)
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:-HEAD}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build -q --release -p hearth-wasm-edge
edge=$PWD/target/release/hearth-wasm-edge
mkdir -p "$work/base"
git archive "$base" guest-sdk wit Cargo.toml | tar -x -C "$work/base"

seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }

measure() { # LABEL SDK_DIR
    local dir=$work/$1
    "$edge" new "$dir/policy" --sdk "$2" >/dev/null
    # Fetch first, so both runs time compiling, not downloading.
    (cd "$dir/policy" && cargo fetch -q)
    export CARGO_TARGET_DIR=$dir/target
    local wasm test
    wasm=$(cd "$dir/policy" && seconds cargo build --release --target wasm32-wasip2)
    test=$(cd "$dir/policy" && seconds cargo test)
    printf '%-28s wasm first build %6.1f s   first cargo test %6.1f s\n' "$1 ($(basename "$2"))" "$wasm" "$test"
}
measure "base-$base" "$work/base/guest-sdk"
measure "working-tree" "$PWD/guest-sdk"
