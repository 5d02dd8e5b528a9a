#!/usr/bin/env bash
# Regenerates the captured ClientHello fixtures in this directory: raw bytes exactly as
# received on a loopback socket (TLS records), one file per client, plus a tshark
# dissection of each (`*.tshark.txt`) and JA4 recomputed from it by ja4_from_tshark.py
# (`ja4-from-tshark.txt`), to check the unit tests' hand-written expected values against.
# Re-capturing changes the bytes (random, key shares, Chromium's extension order), so the
# expected values in tests/fixtures/expected.rs must be re-read from those files after.
#
# Needs: openssl, curl, chromium, tshark (text2pcap), a Rust toolchain.
#   apt-get install -y openssl curl chromium tshark
# Usage (from anywhere; only loopback is used):
#   host/hello/testdata/capture.sh [OUT_DIR]   capture into OUT_DIR (default: this directory)
#   host/hello/testdata/capture.sh --dissect   only redo the dissections of the .bin files here
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
cd "$ROOT"
OUT="$HERE"
DISSECT_ONLY=0
case "${1:-}" in
    --dissect) DISSECT_ONLY=1 ;;
    "") ;;
    *) mkdir -p "$1"; OUT="$(cd "$1" && pwd)" ;;
esac

# Seconds a client gets before it is stopped; the listener itself gives up after 2 s of reading.
CLIENT_TIMEOUT=15
# Tries at reading the listener's port (0.1 s apart).
PORT_TRIES=100

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples"

# capture NAME CLIENT-COMMAND... : starts the listener, runs the client with $PORT set
# (the literal word PORT in the command is replaced), waits for the capture file.
capture() {
    local name="$1"; shift
    local out="$OUT/$name.bin" portfile
    portfile="$(mktemp)"
    "$BIN/capture" "$out" >"$portfile" &
    local pid=$!
    local port=""
    for _ in $(seq "$PORT_TRIES"); do
        port="$(head -n1 "$portfile" 2>/dev/null || true)"
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "capture listener did not start" >&2; kill "$pid"; exit 1; }
    local cmd=()
    for arg in "$@"; do cmd+=("${arg//PORT/$port}"); done
    timeout "$CLIENT_TIMEOUT" "${cmd[@]}" </dev/null >/dev/null 2>&1 || true
    wait "$pid"
    rm -f "$portfile"
}

# dissect FILE.bin: wraps the bytes in one fake TCP segment to port 443 and lets tshark
# decode them as TLS, for an independent view of every field.
dissect() {
    local bin="$1" pcap
    pcap="$(mktemp --suffix=.pcap)"
    od -Ax -tx1 -v "$bin" | text2pcap -q -T 40000,443 - "$pcap"
    tshark -r "$pcap" -d tcp.port==443,tls -V -O tls >"${bin%.bin}.tshark.txt" 2>/dev/null
    # JA4 recomputed from tshark's fields, to compare with the unit tests' values.
    echo "$(basename "$bin" .bin) $(python3 "$HERE/ja4_from_tshark.py" "$pcap")" >>"$OUT/ja4-from-tshark.txt"
    rm -f "$pcap"
}

if [ "$DISSECT_ONLY" = 0 ]; then
    cargo build -q -p hearth-edge-hello --example capture --example rustls_client
    capture openssl-tls13 openssl s_client -connect 127.0.0.1:PORT \
        -servername openssl.hearth.localhost -alpn h2,http/1.1
    capture openssl-tls12-nosni openssl s_client -connect 127.0.0.1:PORT -tls1_2 -noservername
    capture curl curl -sk --http2 --max-time 5 \
        --resolve curl.hearth.localhost:PORT:127.0.0.1 https://curl.hearth.localhost:PORT/
    capture rustls "$BIN/rustls_client" PORT rustls.hearth.localhost
    capture chromium-pq chromium --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update --disable-sync \
        --host-resolver-rules="MAP * 127.0.0.1" --user-data-dir="$(mktemp -d)" \
        https://pq.hearth.localhost:PORT/
    capture http-get curl -s --max-time 5 http://127.0.0.1:PORT/
fi

if [ "$OUT" = "$HERE" ] && [ "$DISSECT_ONLY" = 0 ]; then
    # The fuzz target's seeds are these captures (plus a hand-made multi-record one there).
    cp "$HERE"/*.bin "$HERE/../fuzz/seeds/client_hello/"
fi

rm -f "$OUT/ja4-from-tshark.txt"
for bin in "$OUT"/*.bin; do dissect "$bin"; done
ls -l "$OUT"/*.bin
cat "$OUT/ja4-from-tshark.txt"
