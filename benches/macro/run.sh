#!/usr/bin/env bash
# Macro benchmark: hearth-wasm-edge vs HAProxy as TLS *passthrough* proxies
# in front of the same TLS nginx, driven by the same clients, in one run, on
# loopback. Prints a markdown table (also written to target/bench-macro.md)
# with edge ÷ HAProxy ratios. Bounded: about 2.5 minutes with the defaults.
#
#   benches/macro/run.sh   # env: DURATION=8 CONNS=50 ROUNDS=2 IDLE=1000 BULK_GIB=1 BULK_REPEAT=3
#
# Needs (Debian): nginx haproxy wrk curl python3 openssl; the edge binary
# (target/release/hearth-wasm-edge, built if missing).
#
# Measured, for each proxy (SNI turn.hearth.test → nginx, passthrough):
#   - new connections/s: wrk with `Connection: close` (one TLS handshake per request)
#   - keep-alive requests/s: wrk on persistent connections
#   - bulk: a 1 GiB download with curl (MB/s)
#   - CPU per connection and per GiB relayed: utime+stime of the proxy from
#     /proc/<pid>/stat across the run, divided by connections / GiB
#   - idle RSS after start, and RSS per idle passthrough connection (IDLE
#     TLS connections held open through the proxy)
# The edge runs the Hearth policy with default tokio worker threads (one per
# core); HAProxy gets `nbthread` equal to that. Neither logs per connection
# (edge `log.level: warn`, HAProxy without `log`): this compares data paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

DURATION=${DURATION:-8}        # seconds per wrk run
CONNS=${CONNS:-50}             # wrk connections
IDLE=${IDLE:-1000}             # idle connections for the RSS measurement
BULK_GIB=${BULK_GIB:-1}        # size of the bulk file
ROUNDS=${ROUNDS:-2}            # wrk rounds per target (averaged)
BULK_REPEAT=${BULK_REPEAT:-3}  # bulk downloads per target (averaged)
EDGE_LOG=${EDGE_LOG:-warn}     # `info` adds the edge's per-connection log line
NAME=turn.hearth.test          # passed through by the Hearth policy
THREADS=$(nproc)               # the edge's tokio default: one worker per core
EDGE_BIN=${EDGE_BIN:-$ROOT/target/release/hearth-wasm-edge}
PYTHON=/usr/bin/python3        # Debian's, stdlib only
CERTS=$ROOT/tests/peers/certs

need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || { echo "missing '$1': apt-get install $2" >&2; exit 1; }; }
need nginx nginx; need haproxy haproxy; need wrk wrk; need curl curl
[ -x "$PYTHON" ] || { echo "missing $PYTHON: apt-get install python3" >&2; exit 1; }
[ -x "$EDGE_BIN" ] || cargo build --release -p hearth-wasm-edge
ulimit -n "$(ulimit -Hn)"   # room for the idle connections (2 fds each per proxy)

WORK=$(mktemp -d /tmp/hearth-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits (bounded: 15 s) until something accepts on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listening on $1" >&2; exit 1
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)

# --- the TLS backend: nginx serving a small body and a sparse 1 GiB file ---
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/www" "$WORK/nginx/tmp"
printf 'hello from nginx\n' > "$WORK/nginx/www/small"
truncate -s "${BULK_GIB}G" "$WORK/nginx/www/big"
chmod -R a+rX "$WORK"          # nginx workers run as an unprivileged user
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes $THREADS;
pid $WORK/nginx/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $CERTS/turn.crt;
        ssl_certificate_key $CERTS/turn.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $WORK/nginx/www;
        location / { }
    }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e stderr -g 'daemon off;' &
PIDS+=($!)
wait_port "$NGINX_PORT"

# --- the edge: Hearth policy, turn.<domain> passed through to nginx ---
EDGE_PORT=$(free_port)
cat > "$WORK/edge.yaml" <<CONF
listen: "127.0.0.1:$EDGE_PORT"
policy:
  path: "$ROOT/policies/hearth.wasm"
  config: { domain: hearth.test }
limits: { max_concurrent_conns: 8000 }
backends:
  turn:       { addr: "127.0.0.1:$NGINX_PORT" }
  livekit:    { addr: "127.0.0.1:1" }
  pocketbase: { addr: "127.0.0.1:1" }
tls:
  certificates:
    - { cert: "$CERTS/edge.crt", key: "$CERTS/edge.key" }
log: { level: $EDGE_LOG, format: text }
CONF
"$EDGE_BIN" --config "$WORK/edge.yaml" 2> "$WORK/edge.log" &
EDGE_PID=$!
PIDS+=($EDGE_PID)

# --- HAProxy: TCP mode, SNI from the buffered hello, same backend ---
HAPROXY_PORT=$(free_port)
cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread $THREADS
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tls_in
    bind 127.0.0.1:$HAPROXY_PORT
    tcp-request inspect-delay 5s
    tcp-request content accept if { req.ssl_hello_type 1 }
    use_backend turn if { req.ssl_sni -i $NAME }
backend turn
    server nginx 127.0.0.1:$NGINX_PORT
CONF
haproxy -f "$WORK/haproxy.cfg" -db 2> "$WORK/haproxy.log" &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)

# Idle RSS: after start, before any connection.
for _ in $(seq 1 300); do grep -q . <(ss -ltnH "sport = :$EDGE_PORT") && break; sleep 0.05; done
for _ in $(seq 1 300); do grep -q . <(ss -ltnH "sport = :$HAPROXY_PORT") && break; sleep 0.05; done
declare -A RSS_IDLE
RSS_IDLE[edge]=$(rss_kib "$EDGE_PID")
RSS_IDLE[haproxy]=$(rss_kib "$HAPROXY_PID")
declare -A PID=([edge]=$EDGE_PID [haproxy]=$HAPROXY_PID)
declare -A PORT=([edge]=$EDGE_PORT [haproxy]=$HAPROXY_PORT [direct]=$NGINX_PORT)

# Sanity: both proxies pass the name through to nginx (nginx's cert, its body).
for p in edge haproxy; do
    body=$(curl -sS --max-time 5 --cacert "$CERTS/ca.crt" --resolve "$NAME:${PORT[$p]}:127.0.0.1" "https://$NAME:${PORT[$p]}/small")
    [ "$body" = "hello from nginx" ] || { echo "$p does not pass $NAME through: '$body'" >&2; tail -20 "$WORK/$p.log" >&2; exit 1; }
done

# --- RSS per idle passthrough connection ---
declare -A RSS_PER_CONN
for p in edge haproxy; do
    before=$(rss_kib "${PID[$p]}")
    coproc IDLER { "$PYTHON" "$ROOT/benches/macro/idle_conns.py" 127.0.0.1 "${PORT[$p]}" "$NAME" "$IDLE"; }
    read -r -t 60 line <&"${IDLER[0]}" || { echo "idle connections did not open through $p" >&2; exit 1; }
    after=$(rss_kib "${PID[$p]}")
    eval "exec ${IDLER[1]}>&-"
    wait "$IDLER_PID" 2>/dev/null || true
    RSS_PER_CONN[$p]=$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.2f", (a - b) / n }')
    echo "idle: $p $line, RSS $before → $after KiB" >&2
done

# --- wrk runs: new connections/s and keep-alive requests/s ---
# Prints "<requests/s> <requests> <cpu seconds of the proxy> <socket errors>".
wrk_run() { # target, extra wrk args...
    local target=$1; shift
    local t0=0 out
    [ "$target" = direct ] || t0=$(ticks "${PID[$target]}")
    out=$(wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" -s "$ROOT/benches/macro/resolve.lua" "$@" \
        "https://$NAME:${PORT[$target]}/small")
    local t1=$t0
    [ "$target" = direct ] || t1=$(ticks "${PID[$target]}")
    local rps reqs errs
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    reqs=$(awk '/ requests in / {print $1}' <<<"$out")
    errs=$(awk '/Socket errors:/ {sub(/.*Socket errors: /, ""); gsub(/ /, ""); print}' <<<"$out")
    echo "$rps $reqs $(awk -v d=$((t1 - t0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", d / h }') ${errs:-none}"
}
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'; }
# Alternate the proxies' order between rounds so neither always runs first.
order() { if [ $(($1 % 2)) -eq 0 ]; then echo direct edge haproxy; else echo direct haproxy edge; fi; }
declare -A CPS CPS_CPU CPS_N KA KA_CPU KA_N ERRS
for p in direct edge haproxy; do CPS[$p]=0 CPS_CPU[$p]=0 CPS_N[$p]=0 KA[$p]=0 KA_CPU[$p]=0 KA_N[$p]=0 ERRS[$p]=""; done
for round in $(seq 1 "$ROUNDS"); do
    for p in $(order "$round"); do
        read -r rps n cpu e1 < <(wrk_run "$p" -H 'Connection: close')
        CPS[$p]=$(add "${CPS[$p]}" "$rps"); CPS_N[$p]=$((CPS_N[$p] + n)); CPS_CPU[$p]=$(add "${CPS_CPU[$p]}" "$cpu")
        read -r rps2 n cpu e2 < <(wrk_run "$p")
        KA[$p]=$(add "${KA[$p]}" "$rps2"); KA_N[$p]=$((KA_N[$p] + n)); KA_CPU[$p]=$(add "${KA_CPU[$p]}" "$cpu")
        ERRS[$p]+="[close: $e1; keep-alive: $e2] "
        echo "wrk round $round: $p conn/s=$rps keep-alive req/s=$rps2" >&2
    done
done
for p in direct edge haproxy; do
    CPS[$p]=$(awk -v s="${CPS[$p]}" -v r="$ROUNDS" 'BEGIN { printf "%.0f", s / r }')
    KA[$p]=$(awk -v s="${KA[$p]}" -v r="$ROUNDS" 'BEGIN { printf "%.0f", s / r }')
done

# --- bulk download ---
# One discarded direct download first, so no measured run pays for first
# touches of the file's pages.
curl -sS --max-time 120 -k --resolve "$NAME:$NGINX_PORT:127.0.0.1" -o /dev/null "https://$NAME:$NGINX_PORT/big"
declare -A BULK_MBS BULK_CPU
for p in direct edge haproxy; do BULK_MBS[$p]=0 BULK_CPU[$p]=0; done
for round in $(seq 1 "$BULK_REPEAT"); do
    for p in $(order "$round"); do
        t0=0; [ "$p" = direct ] || t0=$(ticks "${PID[$p]}")
        read -r speed size < <(curl -sS --max-time 120 --cacert "$CERTS/ca.crt" --resolve "$NAME:${PORT[$p]}:127.0.0.1" \
            -o /dev/null -w '%{speed_download} %{size_download}\n' "https://$NAME:${PORT[$p]}/big")
        t1=$t0; [ "$p" = direct ] || t1=$(ticks "${PID[$p]}")
        [ "$size" -eq $((BULK_GIB << 30)) ] || { echo "bulk through $p: got $size bytes" >&2; exit 1; }
        BULK_MBS[$p]=$(add "${BULK_MBS[$p]}" "$(awk -v s="$speed" 'BEGIN { print s / 1e6 }')")
        BULK_CPU[$p]=$(add "${BULK_CPU[$p]}" "$(awk -v d=$((t1 - t0)) -v h="$CLK_TCK" 'BEGIN { print d / h }')")
        echo "bulk round $round: $p $(awk -v s="$speed" 'BEGIN { printf "%.0f", s / 1e6 }') MB/s" >&2
    done
done
for p in direct edge haproxy; do
    BULK_MBS[$p]=$(awk -v s="${BULK_MBS[$p]}" -v r="$BULK_REPEAT" 'BEGIN { printf "%.0f", s / r }')
    BULK_CPU[$p]=$(awk -v s="${BULK_CPU[$p]}" -v r="$BULK_REPEAT" -v g="$BULK_GIB" 'BEGIN { printf "%.2f", s / (r * g) }')
done

# --- report ---
per_conn_us() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.1f", c * 1e6 / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f×", a / b }'; }
E_CPC=$(per_conn_us "${CPS_CPU[edge]}" "${CPS_N[edge]}")
H_CPC=$(per_conn_us "${CPS_CPU[haproxy]}" "${CPS_N[haproxy]}")
E_KAC=$(per_conn_us "${KA_CPU[edge]}" "${KA_N[edge]}")
H_KAC=$(per_conn_us "${KA_CPU[haproxy]}" "${KA_N[haproxy]}")
E_RSS=$(awk -v k="${RSS_IDLE[edge]}" 'BEGIN { printf "%.1f", k / 1024 }')
H_RSS=$(awk -v k="${RSS_IDLE[haproxy]}" 'BEGIN { printf "%.1f", k / 1024 }')
mkdir -p "$ROOT/target"
{
echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), loopback;"
echo "edge log level $EDGE_LOG; wrk -t$THREADS -c$CONNS -d${DURATION}s × $ROUNDS rounds, $IDLE idle connections, ${BULK_GIB} GiB bulk × $BULK_REPEAT; HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), nginx $(nginx -v 2>&1 | cut -d/ -f2)."
echo
echo "| metric | edge | HAProxy | edge ÷ HAProxy | nginx direct | target |"
echo "|---|---|---|---|---|---|"
echo "| new connections/s (\`Connection: close\`) | ${CPS[edge]} | ${CPS[haproxy]} | $(ratio "${CPS[edge]}" "${CPS[haproxy]}") | ${CPS[direct]} | ≥ 1.0× |"
echo "| CPU per connection (µs) | $E_CPC | $H_CPC | $(ratio "$E_CPC" "$H_CPC") | | ≤ 0.7× |"
echo "| keep-alive requests/s | ${KA[edge]} | ${KA[haproxy]} | $(ratio "${KA[edge]}" "${KA[haproxy]}") | ${KA[direct]} | |"
echo "| CPU per keep-alive request (µs) | $E_KAC | $H_KAC | $(ratio "$E_KAC" "$H_KAC") | | |"
echo "| bulk download (MB/s) | ${BULK_MBS[edge]} | ${BULK_MBS[haproxy]} | $(ratio "${BULK_MBS[edge]}" "${BULK_MBS[haproxy]}") | ${BULK_MBS[direct]} | |"
echo "| CPU per GiB relayed (s) | ${BULK_CPU[edge]} | ${BULK_CPU[haproxy]} | $(ratio "${BULK_CPU[edge]}" "${BULK_CPU[haproxy]}") | | ≤ 0.5× |"
echo "| idle RSS (MiB) | $E_RSS | $H_RSS | $(ratio "$E_RSS" "$H_RSS") | | edge ≤ 20 MB |"
echo "| RSS per idle passthrough connection (KiB) | ${RSS_PER_CONN[edge]} | ${RSS_PER_CONN[haproxy]} | $(ratio "${RSS_PER_CONN[edge]}" "${RSS_PER_CONN[haproxy]}") | | ≤ 10 KiB |"
echo
echo "wrk socket errors — edge: ${ERRS[edge]}; HAProxy: ${ERRS[haproxy]}; direct: ${ERRS[direct]}"
} | tee "$ROOT/target/bench-macro.md"
