//! End-to-end tests of the `hearth-wasm-edge` binary against real peers on
//! loopback: coturn (TURN over TLS), nginx (HTTP backends), a WebSocket echo
//! server (`tests/peers/ws_echo.py`), curl and `openssl s_client` as clients.
//!
//! Each test starts its own edge process with a generated config and its own
//! peers on free ports, so tests run in parallel and leave nothing behind.
//! A missing peer binary fails the test with the apt package to install.
//!
//! # Layout
//! - `support`: starting and stopping the peers and the edge, TLS/TURN/WebSocket
//!   clients, ClientHello builders (`support/*.rs`).
//! - `peers`: each peer answers on its own (controls for the tests below).
//! - `passthrough`: TURN over TLS through the edge to coturn; fragmented and
//!   multi-record ClientHellos arrive intact.
//! - `terminate`: HTTP and WebSocket through the edge's own TLS to nginx.
//! - `reject`: no SNI / unknown SNI / IP literal get `unrecognized_name`, no dial.
//! - `limits`: oversized and silent ClientHellos, dead backends, fd leaks,
//!   the connection limit.
//! - `config`: `check --config` on good and bad configs.
//! - `browser`: headless Chromium (a post-quantum ClientHello) through the edge.
//! - `deploy`: the files under `deploy/` pass their real validators
//!   (systemd-analyze, hadolint, docker-compose, kubernetes-validate).
//! - `ops`: admin endpoints and metrics (checked by `promtool`), reload under
//!   load, refused reloads, the shadow policy, the shutdown drain.
//! - `http_mode`: `http_routes` over h1/h2, forwarding headers, WebSocket,
//!   SSE, pools with a dead member, health checks, forward auth.
//! - `certs`: ACME against Pebble (TLS-ALPN-01, HTTP-01, cache, renewal,
//!   export), the HTTP listener, hot reload of certificate files.
//! - `accept_proxy`: behind HAProxy (PROXY v2) and nginx stream (v1), the
//!   client's address everywhere; hostile headers, slow headers at volume.
//! - `handlers`: `wasi:http` components at the edge: lk-jwt against stand-in
//!   homeservers and LiveKit, misbehaving handlers, outbound default deny.
//! - `post_quantum`: X25519MLKEM768 where the edge terminates, classical
//!   groups, a HelloRetryRequest.
//! - `new_policy`: `new` crates (plain and HTTP) build, pass their cases
//!   and route requests in an edge.
//! - `stealth_turn`: TURN on the website's name (a route set's
//!   `stun_backend`): Allocate over TLS, PROXY v2 to coturn, probes answered
//!   as the website, Chromium's relay candidate in both TURN modes.
//! - `fast_open`: TCP Fast Open to a backend (nginx `fastopen`) in a
//!   network namespace of its own: the hello in the SYN only where
//!   configured, a refused first member leaves it whole for the next.
//! - `relay`: the bytes copied after the hello, through passthrough and
//!   terminate: large random streams both ways, half-close either way,
//!   1,000 relays at once, a backend killed mid-stream, the byte counters.
//! - `hostile`: slowloris, faulting policies and failing backends at volume,
//!   the security-relevant defaults (`hostile/*.rs`).
//!
//! Run: `cargo test --release -p hearth-wasm-edge --test e2e`.

mod support;

mod accept_proxy;
mod browser;
mod capture;
mod certs;
mod config;
mod deploy;
mod fast_open;
mod handlers;
mod hostile;
mod http_mode;
mod http_policy;
mod limits;
mod new_policy;
mod ops;
mod passthrough;
mod peers;
mod post_quantum;
mod reject;
mod relay;
mod stealth_turn;
mod terminate;
