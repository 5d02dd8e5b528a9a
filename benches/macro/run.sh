#!/usr/bin/env bash
# Macro benchmark of the data path: hearth-wasm-edge at its DEFAULT config
# (no `workers` set) vs HAProxy as TLS *passthrough* proxies in front of the
# same TLS nginx, HAProxy at `nbthread 1` and at its default (one thread per
# core), driven by the same clients, in one run, on loopback; plus the
# terminate mode's handshake cost vs nginx terminating with the same ECDSA
# certificate. Prints markdown tables (also written to target/bench-macro.md)
# with edge ÷ peer ratios. Bounded: about 8 minutes with the defaults.
#
#   benches/macro/run.sh   # env: DURATION=8 ROUNDS=2 SETUPS="1:32 2:50" IDLE=1000
#                          #      BULK_GIB=1 BULK_REPEAT=3 SYSCALL_SECONDS=3 EDGE_YAML=
#                          #      IDLE_WAKE_SECONDS=5
#
# Needs (Debian): nginx haproxy wrk curl python3 openssl strace; the edge
# binary (target/release/hearth-wasm-edge, built if missing).
#
# Measured, for each proxy (SNI turn.hearth.test → nginx, passthrough), in
# each client setup of SETUPS (`wrk threads:connections`):
#   - new connections/s: wrk with `Connection: close` (one TLS handshake per
#     request), and its p99 latency (wrk --latency);
#   - keep-alive requests/s: wrk on persistent connections;
#   - proxy CPU per connection / request: utime+stime of the proxy process
#     (/proc/<pid>/stat) across the run, divided by requests;
# and once:
#   - syscalls per new connection: `strace -c -f` attached for
#     SYSCALL_SECONDS of `wrk -t1 -c4` with `Connection: close`;
#   - bulk: a 1 GiB download with curl (MB/s); CPU per GiB both as the proxy
#     process's and as the WHOLE MACHINE's busy time (/proc/stat: user, nice,
#     system, irq, softirq, steal) minus the same download done directly, so
#     kernel work done on a proxy's behalf counts;
#   - idle RSS after start, and RSS per idle passthrough connection;
#   - wake-ups of the idle proxy: context switches of all its threads
#     (/proc/<pid>/task/*/status) per second over IDLE_WAKE_SECONDS;
#   - terminate: CPU per new TLS connection of the edge terminating
#     `hearth.test` (→ plain nginx) vs nginx terminating with the same
#     certificate (edge.crt, ECDSA P-256).
# Neither proxy logs per connection (edge `log.level: warn`, HAProxy
# without `log`): this compares data paths. EDGE_YAML adds lines to the
# edge's config (e.g. `workers: 1`) to measure a non-default setting.
#
# A/B of two edge binaries: EDGE_B=<other binary> starts it beside the
# first (same config, its own port) and first alternates `wrk -t1 -c32`
# `Connection: close` runs of AB_SECONDS over edge, edge B and HAProxy
# nbthread 1 for AB_ROUNDS rounds, then prints the medians of each one's
# CPU per new connection, total (utime+stime) and user time alone, and of
# the per-round ratios. A change of a few percent is below one run's noise
# on a shared machine; alternating rounds and taking medians is what makes
# it visible. Then AB_BULK_ROUNDS rounds of one bulk download each through
# nginx directly, edge, edge B and HAProxy nbthread 1, and the medians of
# each one's whole-machine CPU per GiB beyond that round's direct download
# (per-GiB figures move by a tenth between whole runs). AB_ONLY=1 stops
# after that. POLICY_B=<other .wasm> gives edge B that policy instead of
# policies/hearth.wasm (EDGE_B may then be the same binary): an A/B of two
# builds of a policy.
#
# FLOOR=1 adds two floor relays to the same alternation (with or without
# EDGE_B): `floor_relay epoll` and `floor_relay uring`
# (benches/src/bin/floor_relay.rs), passthrough relays to the same nginx
# that do nothing a relay could leave out (no parsing, policy, time-outs,
# metrics), one waiting with epoll and one with io_uring: the least CPU a
# user-space relay spends per connection and per GiB on this machine.
#
# TFO=1 measures TCP Fast Open towards the backend (root: it sets
# net.ipv4.tcp_fastopen=3 for the run and restores it): nginx's TLS listener
# gets `fastopen=256`, and the alternation gains the same edge binary with
# `fast_open: true` on the backend ("edge, fast_open") and HAProxy nbthread
# 1 with `tfo` on its server line ("HAProxy nbthread 1, tfo"). The report
# adds the machine's Fast Open counters over the A/B.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

DURATION=${DURATION:-8}        # seconds per wrk run
ROUNDS=${ROUNDS:-2}            # wrk rounds per target (averaged)
NPROC=$(nproc)
SETUPS=${SETUPS:-"1:32 $NPROC:50"}
IDLE=${IDLE:-1000}             # idle connections for the RSS measurement
BULK_GIB=${BULK_GIB:-1}        # size of the bulk file
BULK_REPEAT=${BULK_REPEAT:-3}  # bulk downloads per target (averaged)
SYSCALL_SECONDS=${SYSCALL_SECONDS:-3}
EDGE_LOG=${EDGE_LOG:-warn}     # `info` adds the edge's per-connection log line
EDGE_YAML=${EDGE_YAML:-}       # extra edge config lines (default config when empty)
NAME=turn.hearth.test          # passed through by the Hearth policy
APEX=hearth.test               # terminated by the Hearth policy
EDGE_BIN=${EDGE_BIN:-$ROOT/target/release/hearth-wasm-edge}
EDGE_B=${EDGE_B:-}             # a second edge binary to compare per connection
AB_ROUNDS=${AB_ROUNDS:-12}     # alternated rounds of the A/B
AB_SECONDS=${AB_SECONDS:-3}    # seconds per wrk run in the A/B
AB_ONLY=${AB_ONLY:-}           # 1: stop after the A/B
AB_BULK_ROUNDS=${AB_BULK_ROUNDS:-8}  # alternated 1 GiB downloads in the A/B (0: none)
FLOOR=${FLOOR:-}               # 1: the floor relays join the A/B
FLOOR_BIN=$ROOT/target/release/floor_relay
TFO=${TFO:-}                   # 1: Fast Open to the backend joins the A/B
IDLE_WAKE_SECONDS=${IDLE_WAKE_SECONDS:-5}  # how long each idle proxy's wake-ups are counted
PYTHON=/usr/bin/python3        # Debian's, stdlib only
CERTS=$ROOT/tests/peers/certs

# need, free_port, wait_port
. "$ROOT/benches/macro/common.sh"
need nginx nginx; need haproxy haproxy; need wrk wrk; need curl curl; need strace strace
[ -x "$PYTHON" ] || { echo "missing $PYTHON: apt-get install python3" >&2; exit 1; }
[ -x "$EDGE_BIN" ] || cargo build --release -p hearth-wasm-edge
[ -z "$FLOOR" ] || cargo build --release -p hearth-edge-benches --bin floor_relay
ulimit -n "$(ulimit -Hn)"   # room for the idle connections (2 fds each per proxy)

WORK=$(mktemp -d /tmp/hearth-bench.XXXXXX)
REPORT=$WORK/report.md          # the tables, printed at the end
PIDS=()
TFO_SYSCTL=/proc/sys/net/ipv4/tcp_fastopen
TFO_BEFORE=$(cat "$TFO_SYSCTL")
cleanup() {
    stop_all
    [ -z "$TFO" ] || echo "$TFO_BEFORE" > "$TFO_SYSCTL"
}
trap cleanup EXIT
# Fast Open: client and server side (bits 1 and 2) for this run.
[ -z "$TFO" ] || echo 3 > "$TFO_SYSCTL"
fast_open_counters() { # SYNs with data sent and accepted, machine-wide
    awk '/^TcpExt:/ { if (!n) { for (i = 1; i <= NF; i++) k[i] = $i; n = 1 } else for (i = 1; i <= NF; i++) v[k[i]] = $i }
        END { print v["TCPFastOpenActive"] + 0, v["TCPFastOpenPassive"] + 0 }' /proc/net/netstat
}

ticks() { # summed utime+stime of the given pids
    local sum=0 p
    for p in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$sum"
}
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
machine_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches:/ {s += $2} END {print s + 0}'; }
CLK_TCK=$(getconf CLK_TCK)
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a + b }'; }
# One bulk download through $1 (a key of PORT); prints its speed (bytes/s)
# and the whole machine's busy ticks during it; fails on a short body (call
# it as `out=$(bulk_download p)` so the failure stops the script).
bulk_download() {
    local m0 m1 speed size
    m0=$(machine_busy)
    read -r speed size < <(curl -sS --max-time 120 --cacert "$CERTS/ca.crt" --resolve "$NAME:${PORT[$1]}:127.0.0.1" \
        -o /dev/null -w '%{speed_download} %{size_download}\n' "https://$NAME:${PORT[$1]}/big")
    m1=$(machine_busy)
    [ "$size" -eq $((BULK_GIB << 30)) ] || { echo "bulk through $1: got $size bytes" >&2; exit 1; }
    echo "$speed $((m1 - m0))"
}
# One discarded direct download, so no measured run pays for first touches
# of the file's pages.
warm_bulk() { curl -sS --max-time 120 -k --resolve "$NAME:$NGINX_PORT:127.0.0.1" -o /dev/null "https://$NAME:$NGINX_PORT/big"; }

# --- the backends: nginx with TLS (passthrough target, and the terminating
# peer, both with a small body and a sparse 1 GiB file) and plain HTTP (the
# edge's terminate backend) ---
NGINX_PORT=$(free_port); NGINX_TERM_PORT=$(free_port); NGINX_PLAIN_PORT=$(free_port)
mkdir -p "$WORK/nginx/www" "$WORK/nginx/tmp"
printf 'hello from nginx\n' > "$WORK/nginx/www/small"
truncate -s "${BULK_GIB}G" "$WORK/nginx/www/big"
chmod -R a+rX "$WORK"          # nginx workers run as an unprivileged user
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes $NPROC;
pid $WORK/nginx/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
    keepalive_requests 1000000;
    root $WORK/nginx/www;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl${TFO:+ fastopen=256};
        ssl_certificate $CERTS/turn.crt;
        ssl_certificate_key $CERTS/turn.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { }
    }
    server {
        listen 127.0.0.1:$NGINX_PLAIN_PORT;
        location / { }
    }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e stderr -g 'daemon off;' &
PIDS+=($!)
# The terminating peer: its own nginx (its CPU counted alone), one worker
# per core like the edge's default, the edge's certificate.
mkdir -p "$WORK/nginx-term"
cat > "$WORK/nginx-term/nginx.conf" <<CONF
worker_processes $NPROC;
pid $WORK/nginx-term/nginx.pid;
error_log stderr warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
    root $WORK/nginx/www;
    server {
        listen 127.0.0.1:$NGINX_TERM_PORT ssl;
        ssl_certificate $CERTS/edge.crt;
        ssl_certificate_key $CERTS/edge.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { }
    }
}
CONF
nginx -p "$WORK/nginx-term" -c "$WORK/nginx-term/nginx.conf" -e stderr -g 'daemon off;' &
NGINX_TERM_PID=$!
PIDS+=($NGINX_TERM_PID)
wait_port "$NGINX_PORT"; wait_port "$NGINX_PLAIN_PORT"; wait_port "$NGINX_TERM_PORT"

# --- the edge at its default config: Hearth policy, turn.<domain> passed
# through to nginx, <domain> terminated to the plain nginx ---
EDGE_PORT=$(free_port)
cat > "$WORK/edge.yaml" <<CONF
listen: "127.0.0.1:$EDGE_PORT"
policy:
  path: "$ROOT/policies/hearth.wasm"
  config: { domain: $APEX }
limits: { max_concurrent_conns: 8000 }
backends:
  turn:       { addr: "127.0.0.1:$NGINX_PORT" }
  livekit:    { addr: "127.0.0.1:1" }
  pocketbase: { addr: "127.0.0.1:$NGINX_PLAIN_PORT" }
tls:
  certificates:
    - { cert: "$CERTS/edge.crt", key: "$CERTS/edge.key" }
log: { level: $EDGE_LOG, format: text }
$EDGE_YAML
CONF
"$EDGE_BIN" --config "$WORK/edge.yaml" 2> "$WORK/edge.log" &
EDGE_PID=$!
PIDS+=($EDGE_PID)

# --- HAProxy: TCP mode, SNI from the buffered hello, same backend; one at
# nbthread 1, one at its default thread count (one per core) ---
declare -A PID PORT
start_haproxy() { # name, nbthread line[, server options]
    local name=$1 threads=$2 server=${3:-} port
    port=$(free_port)
    haproxy_config "$port" "$threads" "$NGINX_PORT" "$server" > "$WORK/$name.cfg"
    haproxy -f "$WORK/$name.cfg" -db 2> "$WORK/$name.log" &
    PID[$name]=$!
    PIDS+=($!)
    PORT[$name]=$port
}
start_haproxy haproxy1 "nbthread 1"
start_haproxy haproxyN "# nbthread: HAProxy's default"
PID[edge]=$EDGE_PID
PORT[edge]=$EDGE_PORT
if [ -n "$EDGE_B" ]; then
    PORT[edgeB]=$(free_port)
    sed -e "s/^listen: .*/listen: \"127.0.0.1:${PORT[edgeB]}\"/" \
        -e "s|^  path: .*|  path: \"${POLICY_B:-$ROOT/policies/hearth.wasm}\"|" \
        "$WORK/edge.yaml" > "$WORK/edgeB.yaml"
    "$EDGE_B" --config "$WORK/edgeB.yaml" 2> "$WORK/edgeB.log" &
    PID[edgeB]=$!
    PIDS+=($!)
    wait_port "${PORT[edgeB]}"
fi
AB_TARGETS="edge${EDGE_B:+ edgeB}"
if [ -n "$FLOOR" ]; then
    for way in epoll uring; do
        PORT[floor-$way]=$(free_port)
        "$FLOOR_BIN" "$way" "127.0.0.1:${PORT[floor-$way]}" "127.0.0.1:$NGINX_PORT" 2> "$WORK/floor-$way.log" &
        PID[floor-$way]=$!
        PIDS+=($!)
        wait_port "${PORT[floor-$way]}"
        AB_TARGETS="$AB_TARGETS floor-$way"
    done
fi
if [ -n "$TFO" ]; then
    PORT[edge-tfo]=$(free_port)
    sed -e "s/^listen: .*/listen: \"127.0.0.1:${PORT[edge-tfo]}\"/" \
        -e "s/^  turn: .*/  turn: { addr: \"127.0.0.1:$NGINX_PORT\", fast_open: true }/" \
        "$WORK/edge.yaml" > "$WORK/edge-tfo.yaml"
    "$EDGE_BIN" --config "$WORK/edge-tfo.yaml" 2> "$WORK/edge-tfo.log" &
    PID[edge-tfo]=$!
    PIDS+=($!)
    wait_port "${PORT[edge-tfo]}"
    start_haproxy haproxy1-tfo "nbthread 1" tfo
    wait_port "${PORT[haproxy1-tfo]}"
    AB_TARGETS="$AB_TARGETS edge-tfo haproxy1-tfo"
fi
AB_TARGETS="$AB_TARGETS haproxy1"
PORT[direct]=$NGINX_PORT
PROXIES="edge haproxy1 haproxyN"
declare -A LABEL=([edge]="edge (default config)" [haproxy1]="HAProxy nbthread 1" [haproxyN]="HAProxy default threads" [direct]="nginx direct")

for p in $PROXIES; do
    wait_port "${PORT[$p]}"
done
sleep 0.5
declare -A RSS_IDLE
for p in $PROXIES; do RSS_IDLE[$p]=$(rss_kib "${PID[$p]}"); done
# Wake-ups of each idle proxy: context switches of all its threads over
# IDLE_WAKE_SECONDS, after the edge's policy ticker has had its quiet second.
declare -A WAKES_IDLE W0
if [ -z "$AB_ONLY" ]; then
    sleep 1.5
    for p in $PROXIES; do W0[$p]=$(switches "${PID[$p]}"); done
    sleep "$IDLE_WAKE_SECONDS"
    for p in $PROXIES; do
        WAKES_IDLE[$p]=$(awk -v a="${W0[$p]}" -v b="$(switches "${PID[$p]}")" -v s="$IDLE_WAKE_SECONDS" 'BEGIN { printf "%.1f", (b - a) / s }')
    done
fi
HAPROXY_THREADS=$(awk '/^Threads:/ {print $2}' "/proc/${PID[haproxyN]}/status")

# Sanity: every proxy passes the name through to nginx (nginx's cert, its body).
for p in $PROXIES; do
    body=$(curl -sS --max-time 5 --cacert "$CERTS/ca.crt" --resolve "$NAME:${PORT[$p]}:127.0.0.1" "https://$NAME:${PORT[$p]}/small")
    [ "$body" = "hello from nginx" ] || { echo "$p does not pass $NAME through: '$body'" >&2; tail -20 "$WORK/$p.log" >&2; exit 1; }
done
for p in $AB_TARGETS; do
    [[ " $PROXIES " == *" $p "* ]] && continue
    body=$(curl -sS --max-time 5 --cacert "$CERTS/ca.crt" --resolve "$NAME:${PORT[$p]}:127.0.0.1" "https://$NAME:${PORT[$p]}/small")
    [ "$body" = "hello from nginx" ] || { echo "$p does not relay to nginx: '$body'" >&2; exit 1; }
done
body=$(curl -sS --max-time 5 --cacert "$CERTS/ca.crt" --resolve "$APEX:$EDGE_PORT:127.0.0.1" "https://$APEX:$EDGE_PORT/small")
[ "$body" = "hello from nginx" ] || { echo "the edge does not terminate $APEX: '$body'" >&2; exit 1; }

# --- A/B: CPU per new connection of two edge binaries (and the floor
# relays), alternated ---

# The targets in the order round $1 runs them: as given in odd rounds,
# reversed in even ones, so no target always runs right after the same
# other one (a fixed order favoured whichever edge ran second by 1-5 %).
ab_order() {
    local round=$1; shift
    if ((round % 2)); then
        echo "$@"
    else
        local out=() i
        for ((i = $#; i >= 1; i--)); do out+=("${!i}"); done
        echo "${out[@]}"
    fi
}
if [ -n "$EDGE_B$FLOOR$TFO" ]; then
    declare -A AB_LABEL=([edge]="edge" [edgeB]="edge B" [floor-epoll]="floor relay, epoll"
        [floor-uring]="floor relay, io_uring" [edge-tfo]="edge, fast_open"
        [haproxy1-tfo]="HAProxy nbthread 1, tfo" [haproxy1]="HAProxy nbthread 1")
    AB_ROWS=$WORK/ab.txt
    read -r TFO_ACTIVE0 TFO_PASSIVE0 < <(fast_open_counters)
    declare -A AB_CELL
    for round in $(seq 1 "$AB_ROUNDS"); do
        for p in $(ab_order "$round" $AB_TARGETS); do
            t0=$(ticks "${PID[$p]}"); u0=$(user_ticks "${PID[$p]}")
            out=$(wrk -t1 -c32 -d "${AB_SECONDS}s" -s "$ROOT/benches/macro/resolve.lua" -H 'Connection: close' \
                "https://$NAME:${PORT[$p]}/small")
            t1=$(ticks "${PID[$p]}"); u1=$(user_ticks "${PID[$p]}")
            n=$(awk '/ requests in / {print $1}' <<<"$out")
            if grep -q 'Socket errors' <<<"$out"; then echo "A/B: through $p, $(grep 'Socket errors' <<<"$out")" >&2; fi
            AB_CELL[$p]=$(awk -v t=$((t1 - t0)) -v u=$((u1 - u0)) -v n="$n" -v h="$CLK_TCK" -v s="$AB_SECONDS" \
                'BEGIN { printf "%.2f %.2f %.0f", t / h / n * 1e6, u / h / n * 1e6, n / s }')
        done
        row=""
        for p in $AB_TARGETS; do row="$row ${AB_CELL[$p]}"; done
        echo "$row" >> "$AB_ROWS"
        echo "A/B round $round (µs per connection total, user, conn/s for $AB_TARGETS):$row" >&2
    done
    ab_labels() { local p; for p in $AB_TARGETS; do printf '%s\t' "${AB_LABEL[$p]}"; done; }
    {
    echo "A/B, $(date -u +%Y-%m-%dT%H:%MZ): edge = $EDGE_BIN${EDGE_B:+, edge B = $EDGE_B}; $AB_ROUNDS rounds of \`wrk -t1 -c32 -d${AB_SECONDS}s\` \`Connection: close\` each, alternated; medians (ratios: medians of the per-round ratios of the total):"
    echo
    "$PYTHON" - "$AB_ROWS" "$(ab_labels)" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
labels = sys.argv[2].rstrip("\t").split("\t")
med = statistics.median
col = lambda k, i: [r[3 * k + i] for r in rows]
ratio = lambda x, y: med([p / q for p, q in zip(x, y) if q > 0])
last = len(labels) - 1
edge, haproxy, haproxy_rate = col(0, 0), col(last, 0), col(last, 2)
print("| CPU per new connection | total (µs) | user (µs) | ÷ edge | ÷ HAProxy nbthread 1 | new conn/s | ÷ HAProxy nbthread 1 |")
print("|---|---:|---:|---:|---:|---:|---:|")
for k, name in enumerate(labels):
    total, user, rate = col(k, 0), col(k, 1), col(k, 2)
    print(f"| {name} | {med(total):.1f} | {med(user):.1f} | {ratio(total, edge):.3f}× | {ratio(total, haproxy):.2f}× "
          f"| {med(rate):.0f} | {ratio(rate, haproxy_rate):.2f}× |")
PY
    echo
    if [ -n "$TFO" ]; then
        read -r a1 p1 < <(fast_open_counters)
        echo "Fast Open over the A/B (whole machine, \`/proc/net/netstat\`): $((a1 - TFO_ACTIVE0)) SYNs with data accepted by the backend (TCPFastOpenActive), $((p1 - TFO_PASSIVE0)) accepted by nginx (TCPFastOpenPassive)."
        echo
    fi
    } >> "$REPORT"
    # Then the same alternation for a relayed GiB: whole-machine CPU of one
    # download through each, minus the direct download of the same round.
    if [ "$AB_BULK_ROUNDS" -gt 0 ]; then
        AB_BULK=$WORK/ab-bulk.txt
        warm_bulk
        for round in $(seq 1 "$AB_BULK_ROUNDS"); do
            for p in $(ab_order "$round" direct $AB_TARGETS); do
                out=$(bulk_download "$p")
                read -r _ busy <<<"$out"
                AB_CELL[$p]=$(awk -v d="$busy" -v h="$CLK_TCK" -v g="$BULK_GIB" 'BEGIN { printf "%.2f", d / h / g }')
            done
            row=""
            for p in direct $AB_TARGETS; do row="$row ${AB_CELL[$p]}"; done
            echo "$row" >> "$AB_BULK"
            echo "A/B bulk round $round (machine s per GiB, direct $AB_TARGETS):$row" >&2
        done
        {
        echo "A/B bulk: $AB_BULK_ROUNDS rounds of one ${BULK_GIB} GiB download each (nginx directly, then each of the above); whole-machine CPU per GiB beyond the same round's direct download, medians:"
        echo
        "$PYTHON" - "$AB_BULK" "$(ab_labels)" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
labels = sys.argv[2].rstrip("\t").split("\t")
med = statistics.median
extra = [[r[k + 1] - r[0] for r in rows] for k in range(len(labels))]
ratio = lambda x, y: med([p / q for p, q in zip(x, y) if q > 0])
print(f"| whole-machine CPU per GiB beyond direct (direct: {med([r[0] for r in rows]):.2f} s) | seconds | ÷ edge | ÷ HAProxy nbthread 1 |")
print("|---|---:|---:|---:|")
for k, name in enumerate(labels):
    print(f"| {name} | {med(extra[k]):.2f} | {ratio(extra[k], extra[0]):.3f}× | {ratio(extra[k], extra[-1]):.2f}× |")
PY
        echo
        } >> "$REPORT"
    fi
    if [ -n "$AB_ONLY" ]; then
        mkdir -p "$ROOT/target"
        tee "$ROOT/target/bench-macro.md" < "$REPORT"
        exit 0
    fi
fi

# --- RSS per idle passthrough connection ---
declare -A RSS_PER_CONN
for p in edge haproxy1; do
    before=$(rss_kib "${PID[$p]}")
    coproc IDLER { "$PYTHON" "$ROOT/benches/macro/idle_conns.py" 127.0.0.1 "${PORT[$p]}" "$NAME" "$IDLE"; }
    read -r -t 60 line <&"${IDLER[0]}" || { echo "idle connections did not open through $p" >&2; exit 1; }
    after=$(rss_kib "${PID[$p]}")
    eval "exec ${IDLER[1]}>&-"
    wait "$IDLER_PID" 2>/dev/null || true
    RSS_PER_CONN[$p]=$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.2f", (a - b) / n }')
    echo "idle: $p $line, RSS $before → $after KiB" >&2
done

# --- wrk runs ---
# Prints "<requests/s> <requests> <cpu seconds of the pids> <p99 ms> <socket errors>".
wrk_run() { # threads, connections, url host, port, pids ("" for none), extra wrk args...
    local threads=$1 conns=$2 host=$3 port=$4 pids=$5; shift 5
    local t0=0 t1=0 out
    [ -z "$pids" ] || t0=$(ticks $pids)
    out=$(wrk --latency -t "$threads" -c "$conns" -d "${DURATION}s" -s "$ROOT/benches/macro/resolve.lua" "$@" \
        "https://$host:$port/small")
    [ -z "$pids" ] || t1=$(ticks $pids)
    local rps reqs errs p99
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    reqs=$(awk '/ requests in / {print $1}' <<<"$out")
    errs=$(awk '/Socket errors:/ {sub(/.*Socket errors: /, ""); gsub(/ /, ""); print}' <<<"$out")
    p99=$(awk '$1 == "99%" { v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u);
                             f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : 60000;
                             printf "%.2f", v * f }' <<<"$out")
    echo "$rps $reqs $(awk -v d=$((t1 - t0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", d / h }') ${p99:-0} ${errs:-none}"
}
# The targets' order in round $1: rotated every other round so none always
# runs first, and reversed in even rounds so none always runs right after
# the same other one (see ab_order).
order() {
    local list=(direct $PROXIES) n i
    n=${#list[@]}
    ab_order "$1" $(for i in $(seq 0 $((n - 1))); do printf '%s ' "${list[$(((i + ($1 - 1) / 2) % n))]}"; done)
}
declare -A CPS CPS_CPU CPS_N CPS_P99 KA KA_CPU KA_N ERRS
for setup in $SETUPS; do
    wt=${setup%%:*}; wc=${setup##*:}
    for p in direct $PROXIES; do CPS[$p]=0 CPS_CPU[$p]=0 CPS_N[$p]=0 CPS_P99[$p]=0 KA[$p]=0 KA_CPU[$p]=0 KA_N[$p]=0 ERRS[$p]=""; done
    for round in $(seq 1 "$ROUNDS"); do
        for p in $(order "$round"); do
            pids=""; [ "$p" = direct ] || pids=${PID[$p]}
            read -r rps n cpu p99 e1 < <(wrk_run "$wt" "$wc" "$NAME" "${PORT[$p]}" "$pids" -H 'Connection: close')
            CPS[$p]=$(add "${CPS[$p]}" "$rps"); CPS_N[$p]=$((CPS_N[$p] + n)); CPS_CPU[$p]=$(add "${CPS_CPU[$p]}" "$cpu")
            CPS_P99[$p]=$(add "${CPS_P99[$p]}" "$p99")
            read -r rps2 n cpu _ e2 < <(wrk_run "$wt" "$wc" "$NAME" "${PORT[$p]}" "$pids")
            KA[$p]=$(add "${KA[$p]}" "$rps2"); KA_N[$p]=$((KA_N[$p] + n)); KA_CPU[$p]=$(add "${KA_CPU[$p]}" "$cpu")
            ERRS[$p]+="[close: $e1; keep-alive: $e2] "
            echo "wrk -t$wt -c$wc round $round: $p conn/s=$rps p99=${p99}ms keep-alive req/s=$rps2" >&2
        done
    done
    avg() { awk -v s="$1" -v r="$ROUNDS" 'BEGIN { printf "%.'"${2:-0}"'f", s / r }'; }
    us() { awk -v c="$1" -v n="$2" 'BEGIN { if (n == 0) print "n/a"; else printf "%.1f", c * 1e6 / n }'; }
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "n/a" || b == "n/a") print "n/a"; else printf "%.2f×", a / b }'; }
    for p in direct $PROXIES; do
        CPS[$p]=$(avg "${CPS[$p]}"); KA[$p]=$(avg "${KA[$p]}"); CPS_P99[$p]=$(avg "${CPS_P99[$p]}" 2)
    done
    E_CPC=$(us "${CPS_CPU[edge]}" "${CPS_N[edge]}")
    {
    echo
    echo "Clients \`wrk -t$wt -c$wc\`; HAProxy default = nbthread $HAPROXY_THREADS:"
    echo
    echo "| metric | edge | HAProxy nbthread 1 | edge ÷ it | HAProxy default | edge ÷ it | nginx direct | target |"
    echo "|---|---|---|---|---|---|---|---|"
    row() { # label, edge, h1, hN, direct, target
        echo "| $1 | $2 | $3 | $(ratio "$2" "$3") | $4 | $(ratio "$2" "$4") | $5 | $6 |"
    }
    row "new connections/s (\`Connection: close\`)" "${CPS[edge]}" "${CPS[haproxy1]}" "${CPS[haproxyN]}" "${CPS[direct]}" "≥ 1.0×"
    row "new-connection latency p99 (ms)" "${CPS_P99[edge]}" "${CPS_P99[haproxy1]}" "${CPS_P99[haproxyN]}" "${CPS_P99[direct]}" "≤ 1.0×"
    row "proxy CPU per new connection (µs)" "$E_CPC" "$(us "${CPS_CPU[haproxy1]}" "${CPS_N[haproxy1]}")" "$(us "${CPS_CPU[haproxyN]}" "${CPS_N[haproxyN]}")" "" "≤ 0.7× nbthread 1"
    row "keep-alive requests/s" "${KA[edge]}" "${KA[haproxy1]}" "${KA[haproxyN]}" "${KA[direct]}" "≥ 1.0×"
    row "proxy CPU per keep-alive request (µs)" "$(us "${KA_CPU[edge]}" "${KA_N[edge]}")" "$(us "${KA_CPU[haproxy1]}" "${KA_N[haproxy1]}")" "$(us "${KA_CPU[haproxyN]}" "${KA_N[haproxyN]}")" "" ""
    echo
    echo "wrk socket errors — edge: ${ERRS[edge]}; nbthread 1: ${ERRS[haproxy1]}; default: ${ERRS[haproxyN]}; direct: ${ERRS[direct]}"
    } >> "$REPORT"
done

# --- syscalls per new connection (strace -c), edge vs HAProxy nbthread 1 ---
declare -A SYSCALLS
for p in edge haproxy1; do
    strace -c -f -q -p "${PID[$p]}" -o "$WORK/strace-$p.txt" &
    STRACE_PID=$!
    sleep 1   # attached to every thread before the load starts
    out=$(wrk -t1 -c4 -d "${SYSCALL_SECONDS}s" -s "$ROOT/benches/macro/resolve.lua" -H 'Connection: close' "https://$NAME:${PORT[$p]}/small")
    sleep 0.5
    kill -INT "$STRACE_PID"; wait "$STRACE_PID" 2>/dev/null || true
    n=$(awk '/ requests in / {print $1}' <<<"$out")
    calls=$(awk '$NF == "total" {print $(NF-2)}' "$WORK/strace-$p.txt")
    SYSCALLS[$p]=$(awk -v c="${calls:-0}" -v n="$n" 'BEGIN { if (n == 0) print "n/a"; else printf "%.1f", c / n }')
    echo "syscalls: $p $calls calls for $n connections" >&2
    cp "$WORK/strace-$p.txt" "$ROOT/target/bench-strace-$p.txt" 2>/dev/null || true
done

# --- bulk download: proxy CPU and whole-machine CPU per GiB ---
warm_bulk
declare -A BULK_MBS BULK_CPU BULK_MACHINE
for p in direct $PROXIES; do BULK_MBS[$p]=0 BULK_CPU[$p]=0 BULK_MACHINE[$p]=0; done
for round in $(seq 1 "$BULK_REPEAT"); do
    for p in $(order "$round"); do
        t0=0; [ "$p" = direct ] || t0=$(ticks "${PID[$p]}")
        out=$(bulk_download "$p")
        read -r speed busy <<<"$out"
        t1=$t0; [ "$p" = direct ] || t1=$(ticks "${PID[$p]}")
        BULK_MBS[$p]=$(add "${BULK_MBS[$p]}" "$(awk -v s="$speed" 'BEGIN { print s / 1e6 }')")
        BULK_CPU[$p]=$(add "${BULK_CPU[$p]}" "$(awk -v d=$((t1 - t0)) -v h="$CLK_TCK" 'BEGIN { print d / h }')")
        BULK_MACHINE[$p]=$(add "${BULK_MACHINE[$p]}" "$(awk -v d="$busy" -v h="$CLK_TCK" 'BEGIN { print d / h }')")
        echo "bulk round $round: $p $(awk -v s="$speed" 'BEGIN { printf "%.0f", s / 1e6 }') MB/s" >&2
    done
done
for p in direct $PROXIES; do
    BULK_MBS[$p]=$(awk -v s="${BULK_MBS[$p]}" -v r="$BULK_REPEAT" 'BEGIN { printf "%.0f", s / r }')
    BULK_CPU[$p]=$(awk -v s="${BULK_CPU[$p]}" -v r="$BULK_REPEAT" -v g="$BULK_GIB" 'BEGIN { printf "%.2f", s / (r * g) }')
    BULK_MACHINE[$p]=$(awk -v s="${BULK_MACHINE[$p]}" -v r="$BULK_REPEAT" -v g="$BULK_GIB" 'BEGIN { printf "%.2f", s / (r * g) }')
done
declare -A BULK_EXTRA
for p in $PROXIES; do
    BULK_EXTRA[$p]=$(awk -v a="${BULK_MACHINE[$p]}" -v d="${BULK_MACHINE[direct]}" 'BEGIN { printf "%.2f", a - d }')
done

# --- terminate: CPU per new TLS connection, edge vs nginx, same certificate ---
declare -A TERM_CPS TERM_CPU TERM_N
for p in edge nginx; do TERM_CPS[$p]=0 TERM_CPU[$p]=0 TERM_N[$p]=0; done
for round in $(seq 1 "$ROUNDS"); do
    for p in $(ab_order "$round" edge nginx); do
        if [ "$p" = edge ]; then port=$EDGE_PORT pids=$EDGE_PID
        else port=$NGINX_TERM_PORT pids="$(pgrep -P "$NGINX_TERM_PID" | tr '\n' ' ')$NGINX_TERM_PID"; fi
        read -r rps n cpu _ _ < <(wrk_run 1 32 "$APEX" "$port" "$pids" -H 'Connection: close')
        TERM_CPS[$p]=$(add "${TERM_CPS[$p]}" "$rps"); TERM_N[$p]=$((TERM_N[$p] + n)); TERM_CPU[$p]=$(add "${TERM_CPU[$p]}" "$cpu")
        echo "terminate round $round: $p conn/s=$rps" >&2
    done
done

# --- report ---
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "n/a" || b == "n/a") print "n/a"; else printf "%.2f×", a / b }'; }
us() { awk -v c="$1" -v n="$2" 'BEGIN { if (n == 0) print "n/a"; else printf "%.1f", c * 1e6 / n }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mkdir -p "$ROOT/target"
{
echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $NPROC cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), loopback;"
echo "edge $( [ -n "$EDGE_YAML" ] && echo "with \`$EDGE_YAML\`" || echo "at its default config" ), log level $EDGE_LOG; wrk ${DURATION}s × $ROUNDS rounds per setup, $IDLE idle connections, ${BULK_GIB} GiB bulk × $BULK_REPEAT; HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), nginx $(nginx -v 2>&1 | cut -d/ -f2)."
cat "$REPORT"
echo
echo "Once per run:"
echo
echo "| metric | edge | HAProxy nbthread 1 | edge ÷ it | HAProxy default | edge ÷ it | nginx direct | target |"
echo "|---|---|---|---|---|---|---|---|"
echo "| syscalls per new connection (strace -c) | ${SYSCALLS[edge]} | ${SYSCALLS[haproxy1]} | $(ratio "${SYSCALLS[edge]}" "${SYSCALLS[haproxy1]}") | | | | |"
echo "| bulk download (MB/s) | ${BULK_MBS[edge]} | ${BULK_MBS[haproxy1]} | $(ratio "${BULK_MBS[edge]}" "${BULK_MBS[haproxy1]}") | ${BULK_MBS[haproxyN]} | $(ratio "${BULK_MBS[edge]}" "${BULK_MBS[haproxyN]}") | ${BULK_MBS[direct]} | |"
echo "| proxy CPU per GiB relayed (s) | ${BULK_CPU[edge]} | ${BULK_CPU[haproxy1]} | $(ratio "${BULK_CPU[edge]}" "${BULK_CPU[haproxy1]}") | ${BULK_CPU[haproxyN]} | $(ratio "${BULK_CPU[edge]}" "${BULK_CPU[haproxyN]}") | | |"
echo "| whole-machine CPU per GiB beyond direct (s) | ${BULK_EXTRA[edge]} | ${BULK_EXTRA[haproxy1]} | $(ratio "${BULK_EXTRA[edge]}" "${BULK_EXTRA[haproxy1]}") | ${BULK_EXTRA[haproxyN]} | $(ratio "${BULK_EXTRA[edge]}" "${BULK_EXTRA[haproxyN]}") | ${BULK_MACHINE[direct]} (direct, total) | ≤ 0.5× |"
echo "| idle RSS (MiB) | $(mib "${RSS_IDLE[edge]}") | $(mib "${RSS_IDLE[haproxy1]}") | $(ratio "${RSS_IDLE[edge]}" "${RSS_IDLE[haproxy1]}") | $(mib "${RSS_IDLE[haproxyN]}") | $(ratio "${RSS_IDLE[edge]}" "${RSS_IDLE[haproxyN]}") | | edge ≤ 20 MB |"
echo "| wake-ups per second, idle (context switches, all threads) | ${WAKES_IDLE[edge]} | ${WAKES_IDLE[haproxy1]} | | ${WAKES_IDLE[haproxyN]} | | | |"
echo "| RSS per idle passthrough connection (KiB) | ${RSS_PER_CONN[edge]} | ${RSS_PER_CONN[haproxy1]} | $(ratio "${RSS_PER_CONN[edge]}" "${RSS_PER_CONN[haproxy1]}") | | | | ≤ 10 KiB |"
echo
echo "Terminate (\`wrk -t1 -c32\`, \`Connection: close\`, ECDSA P-256 edge.crt; the edge forwards to a plain nginx, nginx answers itself):"
echo
echo "| metric | edge | nginx terminating | edge ÷ nginx | target |"
echo "|---|---|---|---|---|"
echo "| new TLS connections/s | $(awk -v s="${TERM_CPS[edge]}" -v r="$ROUNDS" 'BEGIN { printf "%.0f", s / r }') | $(awk -v s="${TERM_CPS[nginx]}" -v r="$ROUNDS" 'BEGIN { printf "%.0f", s / r }') | $(ratio "${TERM_CPS[edge]}" "${TERM_CPS[nginx]}") | |"
echo "| CPU per TLS handshake (µs) | $(us "${TERM_CPU[edge]}" "${TERM_N[edge]}") | $(us "${TERM_CPU[nginx]}" "${TERM_N[nginx]}") | $(ratio "$(us "${TERM_CPU[edge]}" "${TERM_N[edge]}")" "$(us "${TERM_CPU[nginx]}" "${TERM_N[nginx]}")") | ≤ 1.0× |"
} | tee "$ROOT/target/bench-macro.md"
