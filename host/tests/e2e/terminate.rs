//! Termination: `<domain>` and `lk.<domain>` are answered with the edge's
//! own certificate and forwarded as plaintext to real nginx backends; a
//! WebSocket upgrade through `lk.` reaches the echo server and echoes.

use crate::support::edge::EdgeBuilder;
use crate::support::nginx::{LIVEKIT_BODY, Nginx, POCKETBASE_BODY, WsEcho};
use crate::support::process::log_field;
use crate::support::tls::{cert_der, connect, curl, http_get, peer_leaf};
use crate::support::websocket::{self, OP_BINARY, OP_TEXT};
use crate::support::{APEX_NAME, LK_NAME, STEP_TIMEOUT};

/// The subject curl prints for the edge's test certificate.
const EDGE_SUBJECT: &str = "CN=hearth-edge test leaf";

#[test]
fn apex_and_lk_reach_their_http_backends_with_the_edges_certificate() {
    let ws = WsEcho::start();
    let nginx = Nginx::start(ws.addr);
    let edge = EdgeBuilder::hearth()
        .backend("pocketbase", nginx.pocketbase)
        .backend("livekit", nginx.livekit)
        .start();

    let apex = curl(edge.addr, APEX_NAME, "/api/health");
    assert!(apex.status.success(), "curl apex failed:\n{}", apex.stderr);
    assert_eq!(apex.stdout, POCKETBASE_BODY);
    assert!(
        apex.stderr.contains(EDGE_SUBJECT),
        "curl must verify the edge's certificate:\n{}",
        apex.stderr
    );

    let lk = curl(edge.addr, LK_NAME, "/");
    assert!(lk.status.success(), "curl lk failed:\n{}", lk.stderr);
    assert_eq!(lk.stdout, LIVEKIT_BODY);
    assert!(lk.stderr.contains(EDGE_SUBJECT), "{}", lk.stderr);

    // Each backend saw exactly its own request, with the Host the client sent.
    let pb_log = nginx.requests("pocketbase");
    assert_eq!(pb_log.len(), 1, "{pb_log:?}");
    assert!(pb_log[0].contains("GET /api/health"), "{pb_log:?}");
    assert_eq!(nginx.requests("livekit").len(), 1);

    // rustls agrees: the leaf is the edge's, not a backend's.
    let mut stream = connect(edge.addr, APEX_NAME, &["http/1.1"]).expect("TLS to the edge");
    assert_eq!(peer_leaf(&stream), cert_der("edge.crt"));
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body) = http_get(&mut stream, APEX_NAME, "/");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, POCKETBASE_BODY);
    drop(stream);

    let line = edge.expect_log(&["connection closed", "terminate"], STEP_TIMEOUT);
    assert!(
        ["pocketbase", "livekit"].contains(&log_field(&line, "backend").unwrap_or_default()),
        "{line}"
    );
}

#[test]
fn websocket_upgrade_and_echo_through_lk() {
    const BIG_MESSAGE: usize = 200 * 1024;
    let ws = WsEcho::start();
    let nginx = Nginx::start(ws.addr);
    let edge = EdgeBuilder::hearth()
        .backend("livekit", nginx.livekit)
        .start();

    let mut stream = connect(edge.addr, LK_NAME, &["http/1.1"]).expect("TLS to the edge");
    websocket::handshake(&mut stream, LK_NAME, "/rtc").expect("WebSocket upgrade through the edge");

    websocket::send(&mut stream, OP_TEXT, b"hello hearth").unwrap();
    assert_eq!(
        websocket::receive(&mut stream).unwrap(),
        (OP_TEXT, b"hello hearth".to_vec())
    );

    let big: Vec<u8> = (0..BIG_MESSAGE).map(|i| (i * 7 % 251) as u8).collect();
    websocket::send(&mut stream, OP_BINARY, &big).unwrap();
    let (opcode, echoed) = websocket::receive(&mut stream).unwrap();
    assert_eq!(opcode, OP_BINARY);
    assert!(
        echoed == big,
        "the 200 KiB message came back altered ({} bytes)",
        echoed.len()
    );
    drop(stream);

    let line = edge.expect_log(&["connection closed", LK_NAME], STEP_TIMEOUT);
    let up: u64 = log_field(&line, "bytes_up")
        .and_then(|v| v.parse().ok())
        .expect("bytes_up");
    assert!(
        up as usize > BIG_MESSAGE,
        "bytes_up counts the relayed message: {line}"
    );
}
