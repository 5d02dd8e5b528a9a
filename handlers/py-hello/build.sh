#!/usr/bin/env bash
# Builds handlers/py-hello (app.py) into a wasi:http/proxy component with
# componentize-py (PyPI), against the wasi:http WIT of the wasmtime-wasi-http
# crate the edge is built with (found through `cargo metadata`, so nothing is
# fetched beyond crates.io and PyPI). The component (~18 MB, CPython inside)
# is not committed: it is written next to the test guests, where the
# end-to-end tests look for it.
#
#   handlers/py-hello/build.sh [COMPONENTIZE_PY]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/../.." && pwd)"
componentize="${1:-componentize-py}"

metadata="$(cd "$workspace" && cargo metadata --format-version 1)"
manifest="$(printf '%s' "$metadata" | python3 -c '
import json, sys
meta = json.load(sys.stdin)
print(next(p["manifest_path"] for p in meta["packages"] if p["name"] == "wasmtime-wasi-http"))
')"
wit="$(dirname "$manifest")/wit"
world="$(sed -n 's/^package wasi:http@\([0-9.]*\);.*/\1/p' "$wit/deps/http.wit" | head -n 1)"
[[ -n "$world" ]] || { echo "build.sh: no wasi:http package in $wit" >&2; exit 1; }
target_dir="$(printf '%s' "$metadata" | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
out="$target_dir/wasm32-wasip2/policy"
mkdir -p "$out"
"$componentize" -q -d "$wit" -w "wasi:http/proxy@$world" componentize -p "$here" app -o "$out/py_hello.wasm"
echo "py-hello: $out/py_hello.wasm ($(wc -c <"$out/py_hello.wasm") bytes, wasi:http/proxy@$world)"
