#!/usr/bin/env bash
# Handlers: the same wasi:http/proxy component served by hearth-wasm-edge (at
# its default config, a `plain_listen` route naming the handler) and by
# `wasmtime serve` (wasmtime-cli from crates.io at the edge's wasmtime
# version), driven by the same wrk, in one run, on loopback; plus the
# in-process cost of a fresh instance (`src/bin/handler_serve.rs`) and lk-jwt
# `/sfu/get` requests/s against the stand-in homeserver and LiveKit. Prints a
# markdown table (also target/bench-handlers.md) with edge ÷ wasmtime ratios.
#
#   benches/handlers/run.sh     # env: DURATION=8 ROUNDS=3 SETUPS="1:16 2:64"
#                               #      WASMTIME=/opt/wasmtime-48/bin/wasmtime
#
# Needs: wrk, python3, curl; wasmtime 48.0.8 (`cargo install wasmtime-cli
# --version 48.0.8 --locked`); the test guests (policies/build.sh).
#
# Measured per server and client setup (`wrk threads:connections`, plain
# HTTP/1.1 keep-alive, GET /hello on tests/guests/http-probe):
#   - requests/s (wrk), p99 latency;
#   - server CPU per request: utime+stime of the server process
#     (/proc/<pid>/stat) across the run, divided by requests.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
NPROC=$(nproc)
SETUPS=${SETUPS:-"1:16 $NPROC:64"}
WASMTIME=${WASMTIME:-$(command -v wasmtime || echo /opt/wasmtime-48/bin/wasmtime)}
EDGE=${EDGE_BIN:-$ROOT/target/release/hearth-wasm-edge}
COMPONENT=$ROOT/target/wasm32-wasip2/policy/guest_http_probe.wasm
WORK=$(mktemp -d /tmp/bench-handlers.XXXXXX)
OUT=$ROOT/target/bench-handlers.md
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

die() { echo "run.sh: $*" >&2; exit 1; }
[ -x "$WASMTIME" ] || die "no wasmtime (cargo install wasmtime-cli --version 48.0.8 --locked)"
"$WASMTIME" --version | grep -q '48\.0\.8' || die "wasmtime is not 48.0.8: $("$WASMTIME" --version)"
command -v wrk >/dev/null || die "no wrk (apt-get install wrk)"
[ -f "$COMPONENT" ] || policies/build.sh >/dev/null
[ -x "$EDGE" ] || cargo build --release -q -p hearth-wasm-edge

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; die "$1 did not answer"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# One wrk run against $1 (URL) with setup $2 (threads:conns); prints
# "requests rps p99_ms cpu_us_per_request" for server pid $3.
measure() {
    local url=$1 threads=${2%%:*} conns=${2##*:} pid=$3 before after out
    before=$(cpu_ticks "$pid")
    out=$(wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency "$url")
    after=$(cpu_ticks "$pid")
    local requests rps p99
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; print v}' <<<"$out")
    local cpu_us
    cpu_us=$(awk -v a="$after" -v b="$before" -v t="$TICK" -v n="$requests" 'BEGIN {printf "%.2f", (a - b) / t * 1e6 / n}')
    echo "$requests $rps $p99 $cpu_us"
}

# --- servers ---
WT_PORT=$(free_port)
"$WASMTIME" serve --addr "127.0.0.1:$WT_PORT" -Scli "$COMPONENT" >"$WORK/wasmtime.log" 2>&1 &
WT_PID=$!; PIDS+=("$WT_PID")
EDGE_PORT=$(free_port); TLS_PORT=$(free_port)
cat >"$WORK/edge.yaml" <<EOF
listen: "127.0.0.1:$TLS_PORT"
policy: { path: "$ROOT/policies/hearth.wasm", config: { domain: hearth.test } }
backends: {}
plain_listen:
  - { addr: "127.0.0.1:$EDGE_PORT", routes: web }
handlers:
  probe: { component: "$COMPONENT" }
http_routes:
  web:
    routes:
      - { handler: probe }
log: { level: warn }
EOF
"$EDGE" --config "$WORK/edge.yaml" >"$WORK/edge.log" 2>&1 &
EDGE_PID=$!; PIDS+=("$EDGE_PID")
wait_http "http://127.0.0.1:$WT_PORT/hello"
wait_http "http://127.0.0.1:$EDGE_PORT/hello"
curl -s "http://127.0.0.1:$EDGE_PORT/hello" | grep -q "path=/hello" || die "edge: wrong answer"
curl -s "http://127.0.0.1:$WT_PORT/hello" | grep -q "path=/hello" || die "wasmtime serve: wrong answer"

{
echo "### Handlers: the edge vs \`wasmtime serve\` ($(date -u +%Y-%m-%d), $NPROC cores, ${ROUNDS}×${DURATION}s per cell)"
echo
echo "GET /hello on tests/guests/http-probe, plain HTTP/1.1 keep-alive, wrk; CPU is the server process's."
echo
echo "| setup | server | req/s | p99 ms | CPU µs/req | edge ÷ wasmtime req/s | edge ÷ wasmtime CPU/req |"
echo "|---|---|---|---|---|---|---|"
} | tee "$OUT"
for setup in $SETUPS; do
    declare -A sum=()
    for round in $(seq 1 "$ROUNDS"); do
        # Alternate the order so neither server always runs first.
        order=("edge" "wasmtime"); ((round % 2 == 0)) && order=("wasmtime" "edge")
        for who in "${order[@]}"; do
            if [ "$who" = edge ]; then r=$(measure "http://127.0.0.1:$EDGE_PORT/hello" "$setup" "$EDGE_PID")
            else r=$(measure "http://127.0.0.1:$WT_PORT/hello" "$setup" "$WT_PID"); fi
            read -r _ rps p99 cpu <<<"$r"
            sum[$who.rps]=$(awk -v a="${sum[$who.rps]:-0}" -v b="$rps" 'BEGIN{print a+b}')
            sum[$who.p99]=$(awk -v a="${sum[$who.p99]:-0}" -v b="$p99" 'BEGIN{print a+b}')
            sum[$who.cpu]=$(awk -v a="${sum[$who.cpu]:-0}" -v b="$cpu" 'BEGIN{print a+b}')
        done
    done
    avg() { awk -v s="${sum[$1]}" -v n="$ROUNDS" 'BEGIN{printf "%.1f", s/n}'; }
    ratio() { awk -v a="${sum[$1]}" -v b="${sum[$2]}" 'BEGIN{printf "%.2f", a/b}'; }
    echo "| $setup | edge | $(avg edge.rps) | $(avg edge.p99) | $(avg edge.cpu) | $(ratio edge.rps wasmtime.rps) | $(ratio edge.cpu wasmtime.cpu) |" | tee -a "$OUT"
    echo "| $setup | wasmtime serve | $(avg wasmtime.rps) | $(avg wasmtime.p99) | $(avg wasmtime.cpu) | | |" | tee -a "$OUT"
    unset sum
done
kill "$EDGE_PID" "$WT_PID" 2>/dev/null || true

echo | tee -a "$OUT"
echo '```' | tee -a "$OUT"
cargo run --release -q -p hearth-edge-benches --bin handler_serve -- 20000 | tee -a "$OUT"
echo '```' | tee -a "$OUT"

# --- lk-jwt /sfu/get with the stand-ins (Python: they bound the rate) ---
python3 "$ROOT/benches/handlers/lk_jwt.py" "$EDGE" "$WORK" "$DURATION" | tee -a "$OUT"
