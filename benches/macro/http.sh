#!/usr/bin/env bash
# HTTP-mode benchmark: hearth-wasm-edge's HTTP mode (`http_routes`) vs nginx
# `proxy_pass`, both terminating TLS and proxying to the same plain-HTTP
# nginx backend over reused keep-alive connections, driven by the same wrk,
# in one run, on loopback. Prints a markdown table (also written to
# target/bench-http.md) with edge ÷ nginx ratios. Bounded: under a minute
# with the defaults.
#
#   benches/macro/http.sh   # env: DURATION=8 CONNS=50 ROUNDS=2 EDGE_LOG=warn
#
# Needs (Debian): nginx wrk curl python3; the edge binary
# (target/release/hearth-wasm-edge, built if missing).
#
# Both proxies: TLS 1.3 to the client (HTTP/1.1, keep-alive), one route
# `/` → backend, X-Forwarded-For/-Proto/Host set on every request, HTTP/1.1
# keep-alive to the backend, no access log (edge `log.level: warn`, so no
# per-request line). The proxy nginx gets `worker_processes` = cores, like
# the edge's tokio workers; the backend nginx serves a 17-byte body.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

DURATION=${DURATION:-8}        # seconds per wrk run
CONNS=${CONNS:-50}             # wrk connections
ROUNDS=${ROUNDS:-2}            # wrk rounds per target (averaged)
EDGE_LOG=${EDGE_LOG:-warn}     # `info` adds the edge's per-request log line
NAME=hearth.test               # terminated by the Hearth policy (`pocketbase`)
THREADS=$(nproc)
EDGE_BIN=${EDGE_BIN:-$ROOT/target/release/hearth-wasm-edge}
PYTHON=/usr/bin/python3
CERTS=$ROOT/tests/peers/certs

# need, free_port, wait_port
. "$ROOT/benches/macro/common.sh"
need nginx nginx; need wrk wrk; need curl curl
[ -x "$PYTHON" ] || { echo "missing $PYTHON: apt-get install python3" >&2; exit 1; }
[ -x "$EDGE_BIN" ] || cargo build --release -p hearth-wasm-edge

WORK=$(mktemp -d /tmp/hearth-bench-http.XXXXXX)
PIDS=()
trap stop_all EXIT

# "<user ticks> <system ticks>" of a process.
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
# "<user> <system>" CPU ticks of a process and its children (nginx's workers).
tree_ticks() {
    local u=0 s=0 p a b
    for p in "$1" $(pgrep -P "$1" || true); do
        read -r a b < <(ticks "$p")
        u=$((u + a)); s=$((s + b))
    done
    echo "$u $s"
}
CLK_TCK=$(getconf CLK_TCK)

nginx_common() { # prefix
    cat <<CONF
pid $1/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
CONF
}

# --- the backend: plain-HTTP nginx, one worker, a small body ---
BACKEND_PORT=$(free_port)
mkdir -p "$WORK/backend/www" "$WORK/backend/tmp"
printf 'hello from nginx\n' > "$WORK/backend/www/small"
chmod -R a+rX "$WORK"
{ echo "worker_processes 1;"; nginx_common "$WORK/backend"; cat <<CONF
http {
    access_log off;
    client_body_temp_path $WORK/backend/tmp; proxy_temp_path $WORK/backend/tmp;
    fastcgi_temp_path $WORK/backend/tmp; uwsgi_temp_path $WORK/backend/tmp; scgi_temp_path $WORK/backend/tmp;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$BACKEND_PORT; root $WORK/backend/www; location / { } }
}
CONF
} > "$WORK/backend.conf"
nginx -p "$WORK/backend" -c "$WORK/backend.conf" -e stderr -g 'daemon off;' &
PIDS+=($!)
wait_port "$BACKEND_PORT"

# --- nginx proxy_pass: TLS in, keep-alive upstream ---
NGINX_PORT=$(free_port)
mkdir -p "$WORK/proxy/tmp"
{ echo "worker_processes $THREADS;"; nginx_common "$WORK/proxy"; cat <<CONF
http {
    access_log off;
    client_body_temp_path $WORK/proxy/tmp; proxy_temp_path $WORK/proxy/tmp;
    fastcgi_temp_path $WORK/proxy/tmp; uwsgi_temp_path $WORK/proxy/tmp; scgi_temp_path $WORK/proxy/tmp;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $CERTS/edge.crt;
        ssl_certificate_key $CERTS/edge.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
}
CONF
} > "$WORK/proxy.conf"
nginx -p "$WORK/proxy" -c "$WORK/proxy.conf" -e stderr -g 'daemon off;' 2> "$WORK/nginx.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

# --- the edge: Hearth policy; its `pocketbase` decision is a route set ---
EDGE_PORT=$(free_port)
cat > "$WORK/edge.yaml" <<CONF
listen: "127.0.0.1:$EDGE_PORT"
policy:
  path: "$ROOT/policies/hearth.wasm"
  config: { domain: hearth.test }
limits: { max_concurrent_conns: 8000 }
backends:
  turn:    { addr: "127.0.0.1:1" }
  livekit: { addr: "127.0.0.1:1" }
  app:     { addr: "127.0.0.1:$BACKEND_PORT" }
http_routes:
  pocketbase:
    alpn: [http/1.1]
    routes:
      - { backend: app }
tls:
  certificates:
    - { cert: "$CERTS/edge.crt", key: "$CERTS/edge.key" }
log: { level: $EDGE_LOG, format: text }
CONF
"$EDGE_BIN" --config "$WORK/edge.yaml" 2> "$WORK/edge.log" &
EDGE_PID=$!
PIDS+=($EDGE_PID)
wait_port "$NGINX_PORT"
wait_port "$EDGE_PORT"

declare -A PID=([edge]=$EDGE_PID [nginx]=$NGINX_PID)
declare -A PORT=([edge]=$EDGE_PORT [nginx]=$NGINX_PORT)

# Sanity: both answer with the backend's body.
for p in edge nginx; do
    body=$(curl -sS --max-time 5 --cacert "$CERTS/ca.crt" --resolve "$NAME:${PORT[$p]}:127.0.0.1" "https://$NAME:${PORT[$p]}/small")
    [ "$body" = "hello from nginx" ] || { echo "$p does not proxy to the backend: '$body'" >&2; tail -20 "$WORK/$p.log" >&2; exit 1; }
done

# Prints "<requests/s> <requests> <user cpu s> <system cpu s> <socket errors> <non-2xx>"
# (CPU of the proxy).
wrk_run() { # target
    local target=$1 u0 s0 u1 s1 out
    read -r u0 s0 < <(tree_ticks "${PID[$target]}")
    out=$(wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" -s "$ROOT/benches/macro/resolve.lua" \
        "https://$NAME:${PORT[$target]}/small")
    read -r u1 s1 < <(tree_ticks "${PID[$target]}")
    local rps reqs errs non2xx
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    reqs=$(awk '/ requests in / {print $1}' <<<"$out")
    errs=$(awk '/Socket errors:/ {sub(/.*Socket errors: /, ""); gsub(/ /, ""); print}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
    echo "$rps $reqs $(awk -v d=$((u1 - u0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", d / h }') $(awk -v d=$((s1 - s0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", d / h }') ${errs:-none} ${non2xx:-0}"
}
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'; }
order() { if [ $(($1 % 2)) -eq 0 ]; then echo edge nginx; else echo nginx edge; fi; }
declare -A KA KA_CPU KA_USR KA_SYS KA_N ERRS
for p in edge nginx; do KA[$p]=0 KA_CPU[$p]=0 KA_USR[$p]=0 KA_SYS[$p]=0 KA_N[$p]=0 ERRS[$p]=""; done
for round in $(seq 1 "$ROUNDS"); do
    for p in $(order "$round"); do
        read -r rps n usr sys e bad < <(wrk_run "$p")
        cpu=$(add "$usr" "$sys")
        KA_USR[$p]=$(add "${KA_USR[$p]}" "$usr"); KA_SYS[$p]=$(add "${KA_SYS[$p]}" "$sys")
        [ "$bad" = 0 ] || { echo "$p answered $bad non-2xx responses" >&2; exit 1; }
        KA[$p]=$(add "${KA[$p]}" "$rps"); KA_N[$p]=$((KA_N[$p] + n)); KA_CPU[$p]=$(add "${KA_CPU[$p]}" "$cpu")
        ERRS[$p]+="$e "
        echo "wrk round $round: $p keep-alive req/s=$rps" >&2
    done
done
for p in edge nginx; do
    KA[$p]=$(awk -v s="${KA[$p]}" -v r="$ROUNDS" 'BEGIN { printf "%.0f", s / r }')
done
per_req_us() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.1f", c * 1e6 / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f×", a / b }'; }
E_C=$(per_req_us "${KA_CPU[edge]}" "${KA_N[edge]}")
N_C=$(per_req_us "${KA_CPU[nginx]}" "${KA_N[nginx]}")
E_U=$(per_req_us "${KA_USR[edge]}" "${KA_N[edge]}"); N_U=$(per_req_us "${KA_USR[nginx]}" "${KA_N[nginx]}")
E_S=$(per_req_us "${KA_SYS[edge]}" "${KA_N[edge]}"); N_S=$(per_req_us "${KA_SYS[nginx]}" "${KA_N[nginx]}")
mkdir -p "$ROOT/target"
{
echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), loopback;"
echo "edge log level $EDGE_LOG; wrk -t$THREADS -c$CONNS -d${DURATION}s × $ROUNDS rounds, HTTP/1.1 keep-alive over TLS; nginx $(nginx -v 2>&1 | cut -d/ -f2)."
echo
echo "| metric | edge HTTP mode | nginx proxy_pass | edge ÷ nginx | target |"
echo "|---|---|---|---|---|"
echo "| keep-alive requests/s | ${KA[edge]} | ${KA[nginx]} | $(ratio "${KA[edge]}" "${KA[nginx]}") | ≥ 1.0× |"
echo "| proxy CPU per request (µs) | $E_C | $N_C | $(ratio "$E_C" "$N_C") | |"
echo "| — of which user space (µs) | $E_U | $N_U | $(ratio "$E_U" "$N_U") | |"
echo "| — of which kernel (µs) | $E_S | $N_S | $(ratio "$E_S" "$N_S") | |"
echo
echo "wrk socket errors — edge: ${ERRS[edge]}; nginx: ${ERRS[nginx]}"
} | tee "$ROOT/target/bench-http.md"
