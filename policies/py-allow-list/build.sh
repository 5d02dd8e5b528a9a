#!/usr/bin/env bash
# Builds policies/py-allow-list (app.py) into a component for the `policy`
# world of wit/edge.wit with componentize-py (PyPI). The component (~18 MB,
# CPython inside) is not committed: it is written next to the test guests,
# where the end-to-end tests and the decision bench look for it.
#
#   policies/py-allow-list/build.sh [COMPONENTIZE_PY]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/../.." && pwd)"
componentize="${1:-componentize-py}"

target_dir="$(cd "$workspace" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
out="$target_dir/wasm32-wasip2/policy"
mkdir -p "$out"
"$componentize" -q -d "$workspace/wit" -w policy componentize -p "$here" app -o "$out/py_allow_list.wasm"
echo "py-allow-list: $out/py_allow_list.wasm ($(wc -c <"$out/py_allow_list.wasm") bytes, hearth:edge policy)"
