#!/usr/bin/env bash
# User-space instructions per new passthrough connection, counted by
# callgrind: the edge at its default config and HAProxy at `nbthread 1`, the
# same passthrough (SNI turn.hearth.test → a TLS nginx) as benches/macro/run.sh,
# in one run. CPU time per connection moves by several percent between runs
# on a shared machine; instruction counts move by well under one, so this is
# how a change of a few percent in user space is seen. It says nothing about
# the kernel's share (two thirds of a connection's CPU) or cache misses.
#
#   benches/macro/instructions.sh   # env: CONNS=300 WARM=30 EDGE_B=<binary> POLICY_B=<.wasm>
#
# Each proxy runs under `valgrind --tool=callgrind --instr-atstart=no`
# (every thread counted); WARM `curl` connections through it warm it up,
# counting is switched on (`callgrind_control -i on`) for CONNS sequential
# `curl` connections and off again. EDGE_B (another edge binary) and
# POLICY_B (another build of policies/hearth.wasm for it) add a second edge.
# Under valgrind the edge cannot reserve its instance pool's address space
# and allocates policy instances on demand (one warning line), which
# bounds-checks memory accesses in the policy's code; and valgrind hides the
# CPU's SHA extensions, so JA4's two SHA-256s run in software (≈21 k
# instructions per connection that are a few hundred on the real CPU). Both
# are the same for every edge measured and absent from HAProxy's count.
#
# Needs (Debian): valgrind nginx haproxy curl python3; the edge binary
# (target/release/hearth-wasm-edge, built if missing). About 3 minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONNS=${CONNS:-300}
WARM=${WARM:-30}
EDGE_BIN=${EDGE_BIN:-$ROOT/target/release/hearth-wasm-edge}
EDGE_B=${EDGE_B:-}
POLICY_B=${POLICY_B:-$ROOT/policies/hearth.wasm}
NAME=turn.hearth.test
PYTHON=/usr/bin/python3
CERTS=$ROOT/tests/peers/certs

# need, free_port, wait_port (valgrind starts slowly)
. "$ROOT/benches/macro/common.sh"
WAIT_PORT_SECONDS=120
need valgrind valgrind; need callgrind_control valgrind; need nginx nginx; need haproxy haproxy; need curl curl
[ -x "$PYTHON" ] || { echo "missing $PYTHON: apt-get install python3" >&2; exit 1; }
[ -x "$EDGE_BIN" ] || cargo build --release -p hearth-wasm-edge

WORK=$(mktemp -d /tmp/hearth-instructions.XXXXXX)
PIDS=()
trap stop_all EXIT


# --- the backend: TLS nginx answering /small ---
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/www" "$WORK/nginx/tmp"
printf 'hello from nginx\n' > "$WORK/nginx/www/small"
chmod -R a+rX "$WORK"    # nginx's workers run as another user
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
  root $WORK/nginx/www;
  server { listen 127.0.0.1:$NGINX_PORT ssl; ssl_certificate $CERTS/turn.crt;
    ssl_certificate_key $CERTS/turn.key; location / { } } }
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" -g 'daemon off;' &
PIDS+=($!)
wait_port "$NGINX_PORT"

edge_config() { # port policy
    cat <<CONF
listen: "127.0.0.1:$1"
policy:
  path: "$2"
  config: { domain: hearth.test }
backends:
  turn:       { addr: "127.0.0.1:$NGINX_PORT" }
  livekit:    { addr: "127.0.0.1:1" }
  pocketbase: { addr: "127.0.0.1:1" }
log: { level: warn, format: text }
CONF
}

# Counts one proxy: prints its instructions per connection.
# count <label> <port> <command...>
count() {
    local label=$1 port=$2; shift 2
    local out=$WORK/$label.callgrind
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" \
        > "$WORK/$label.log" 2>&1 &
    local pid=$!
    PIDS+=($pid)
    wait_port "$port"
    local url="https://$NAME:$port/small" resolve="$NAME:$port:127.0.0.1" i ok=0
    for i in $(seq 1 "$WARM"); do
        curl -sS --max-time 30 --cacert "$CERTS/ca.crt" --resolve "$resolve" "$url" > /dev/null
    done
    callgrind_control -i on "$pid" > /dev/null 2>&1
    for i in $(seq 1 "$CONNS"); do
        [ "$(curl -sS --max-time 30 --cacert "$CERTS/ca.crt" --resolve "$resolve" "$url")" = "hello from nginx" ] &&
            ok=$((ok + 1))
    done
    callgrind_control -i off "$pid" > /dev/null 2>&1
    callgrind_control -d "$pid" > /dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    [ "$ok" = "$CONNS" ] || { echo "$label: $ok of $CONNS connections answered" >&2; cat "$WORK/$label.log" >&2; exit 1; }
    # The dump on request is the part file with the highest number (the
    # counting window); the final dump at exit holds only the tail.
    local total=0 f n
    for f in "$out".*; do
        n=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
        [ -z "$n" ] || total=$((total + n))
    done
    echo "$label: $total instructions in $CONNS connections" >&2
    awk -v t="$total" -v n="$CONNS" 'BEGIN { printf "%.0f", t / n }'
}

declare -A IR
port=$(free_port); edge_config "$port" "$ROOT/policies/hearth.wasm" > "$WORK/edge.yaml"
IR[edge]=$(count edge "$port" "$EDGE_BIN" --config "$WORK/edge.yaml")
if [ -n "$EDGE_B" ]; then
    port=$(free_port); edge_config "$port" "$POLICY_B" > "$WORK/edgeB.yaml"
    IR[edgeB]=$(count edgeB "$port" "$EDGE_B" --config "$WORK/edgeB.yaml")
fi
port=$(free_port); haproxy_config "$port" "nbthread 1" "$NGINX_PORT" > "$WORK/haproxy.cfg"
IR[haproxy]=$(count haproxy "$port" haproxy -f "$WORK/haproxy.cfg" -db)

echo
echo "Instructions per new passthrough connection, $(date -u +%Y-%m-%dT%H:%MZ), callgrind, $CONNS sequential \`curl\` connections after $WARM ($(valgrind --version)):"
echo
echo "| proxy | instructions per connection | ÷ HAProxy nbthread 1 |"
echo "|---|---:|---:|"
row() { awk -v l="$1" -v a="$2" -v h="${IR[haproxy]}" 'BEGIN { printf "| %s | %.1f k | %.2f× |\n", l, a / 1000, a / h }'; }
row "edge ($EDGE_BIN)" "${IR[edge]}"
[ -z "$EDGE_B" ] || row "edge B ($EDGE_B, policy $POLICY_B)" "${IR[edgeB]}"
row "HAProxy nbthread 1" "${IR[haproxy]}"
