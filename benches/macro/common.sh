# Shell helpers of the macro benches (run.sh, http.sh, instructions.sh),
# sourced after PYTHON is set.

# Exits naming the Debian package when command $1 is missing.
need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || { echo "missing '$1': apt-get install $2" >&2; exit 1; }; }

# A free TCP port on 127.0.0.1.
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until something accepts on 127.0.0.1:$1, for at most
# WAIT_PORT_SECONDS (15 unless set).
wait_port() {
    local _
    for _ in $(seq 1 $((${WAIT_PORT_SECONDS:-15} * 20))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listening on $1" >&2; exit 1
}

# Kills every process in PIDS and removes WORK (the scripts' exit trap).
stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

# HAProxy as the benches' TLS passthrough: TCP mode, routing
# turn.hearth.test by `req.ssl_sni` to 127.0.0.1:$3.
# haproxy_config <port> <threads line> <backend port> [server options]
haproxy_config() {
    cat <<CONF
global
    $2
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tls_in
    bind 127.0.0.1:$1
    tcp-request inspect-delay 5s
    tcp-request content accept if { req.ssl_hello_type 1 }
    use_backend turn if { req.ssl_sni -i turn.hearth.test }
backend turn
    server nginx 127.0.0.1:$3 ${4:-}
CONF
}
