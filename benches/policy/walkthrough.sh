#!/usr/bin/env bash
# "Writing a policy" in README.md, followed as a script, for a policy and for
# an HTTP policy (`new --http`): `new`, `dev`, a request through the edge, an
# edit that reloads and is seen by the next request; the wall time of each
# step and in total (the time to type and read is not counted). Uses the
# ports dev.yaml names (8443, 9180, 3000, 3001): run it where they are free.
#
#   benches/policy/walkthrough.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release -p hearth-wasm-edge
edge=$PWD/target/release/hearth-wasm-edge
work=$(mktemp -d)
dev_pid=
stop_dev() { if [ -n "$dev_pid" ]; then kill "$dev_pid" 2>/dev/null || true; wait "$dev_pid" 2>/dev/null || true; dev_pid=; fi; }
trap 'stop_dev; rm -rf "$work"' EXIT

now() { date +%s.%N; }
step() { local t; t=$(now); printf '  %-46s %5.1f s\n' "$1" "$(echo "$t - $lap" | bc)"; lap=$t; }
wait_for() { # FILE PATTERN: until it appears (at most 120 s)
    for _ in $(seq 1200); do grep -q "$2" "$1" && return 0; sleep 0.1; done
    cat "$1" >&2; exit 1
}
fetch() { # NAME PATH [curl options]
    local name=$1 path=$2; shift 2
    curl -s "$@" --cacert .dev-ca/ca.crt --resolve "$name:8443:127.0.0.1" "https://$name:8443$path"
}

walk() { # KIND (policy | http)
    local kind=$1 dir=$work/$1 start
    start=$(now); lap=$start
    echo "$kind:"
    mkdir -p "$dir" && cd "$dir"
    if [ "$kind" = http ]; then "$edge" new my-policy --http >/dev/null; else "$edge" new my-policy >/dev/null; fi
    step "hearth-wasm-edge new my-policy"
    cd my-policy
    "$edge" dev >"$dir/dev.out" 2>"$dir/dev.err" &
    dev_pid=$!
    wait_for "$dir/dev.err" "edge started"
    step "hearth-wasm-edge dev: built, tested, serving"
    fetch app.localhost /hello | grep -q "GET /hello"
    step "curl https://app.localhost:8443/hello (echo)"
    if [ "$kind" = http ]; then
        # The edit: /teapot is answered by the policy itself.
        sed -i 's|        if request.path.starts_with(&self.blocked) {|        if request.path.starts_with("/teapot") {\n            return HttpDecision::respond(418, "teapot\\n");\n        }\n&|' src/lib.rs
        wait_for "$dir/dev.out" "dev: reload ok"
        step "edit src/lib.rs, save: built, tested, reloaded"
        [ "$(fetch app.localhost /teapot -o /dev/null -w '%{http_code}')" = 418 ]
        step "curl /teapot: 418 from on-request"
    else
        # The edit: `turn.` names pass through to the sink.
        sed -i 's/        match hello.server_name() {/&\n            Some(sni) if sni.starts_with("turn.") => Decision::passthrough("sink"),/' src/lib.rs
        wait_for "$dir/dev.out" "dev: reload ok"
        step "edit src/lib.rs, save: built, tested, reloaded"
        fetch turn.app.localhost / --max-time 1 >/dev/null || true
        wait_for "$dir/dev.out" "dev: sink"
        step "curl turn.app.localhost: passed through to sink"
    fi
    printf '  %-46s %5.1f s\n' "total" "$(echo "$(now) - $start" | bc)"
    stop_dev
    sed 's/^/    /' "$dir/dev.out"
}
walk policy
walk http
