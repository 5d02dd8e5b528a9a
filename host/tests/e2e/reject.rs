//! Rejection: a hello without SNI, with an unknown name, or with an IP
//! literal as SNI gets a fatal `unrecognized_name` alert (description 112)
//! and the backend is never dialed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::support::STEP_TIMEOUT;
use crate::support::edge::{Edge, EdgeBuilder};
use crate::support::hello::{MAX_FRAGMENT, hello_message, into_records, rustls_hello};
use crate::support::recorder::{Mode, Recorder};
use crate::support::tls::openssl_s_client;

/// TLS record type `alert`, level `fatal`, description `unrecognized_name`.
const CONTENT_ALERT: u8 = 21;
const ALERT_FATAL: u8 = 2;
const UNRECOGNIZED_NAME: u8 = 112;

/// An edge whose three backends all point at one recorder.
fn edge_with_recorder() -> (Edge, Recorder) {
    let backend = Recorder::start(Mode::Record);
    let edge = EdgeBuilder::hearth()
        .backend("turn", backend.addr)
        .backend("livekit", backend.addr)
        .backend("pocketbase", backend.addr)
        .start();
    (edge, backend)
}

/// Sends `hello` and returns everything the edge answers until it closes.
fn answer_to(addr: SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    sock.write_all(hello).unwrap();
    let mut answer = Vec::new();
    match sock.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the edge did not close after rejecting ({e}); got {answer:02x?}"),
    }
    answer
}

fn assert_unrecognized_name(answer: &[u8]) {
    assert!(
        answer.len() >= 7,
        "expected an alert record, got {answer:02x?}"
    );
    assert_eq!(answer[0], CONTENT_ALERT, "record type: {answer:02x?}");
    assert_eq!(&answer[3..5], &[0, 2], "alert length: {answer:02x?}");
    assert_eq!(answer[5], ALERT_FATAL, "{answer:02x?}");
    assert_eq!(answer[6], UNRECOGNIZED_NAME, "{answer:02x?}");
}

#[test]
fn no_sni_gets_unrecognized_name_and_no_dial() {
    let (edge, backend) = edge_with_recorder();
    // rustls sends no SNI when connecting to an IP address.
    assert_unrecognized_name(&answer_to(edge.addr, &rustls_hello("127.0.0.1")));

    let out = openssl_s_client(edge.addr, None, &[]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("unrecognized name"),
        "s_client:\n{}",
        out.stderr
    );

    edge.expect_log(&["connection closed", "reject"], STEP_TIMEOUT);
    assert_eq!(
        backend.accepts(),
        0,
        "a rejected connection must not dial a backend"
    );
}

#[test]
fn unknown_sni_gets_unrecognized_name_and_no_dial() {
    let (edge, backend) = edge_with_recorder();
    assert_unrecognized_name(&answer_to(edge.addr, &rustls_hello("unknown.test")));
    // A suffix match is not a match.
    assert_unrecognized_name(&answer_to(edge.addr, &rustls_hello("evilhearth.test")));

    let out = openssl_s_client(edge.addr, Some("www.hearth.test"), &[]);
    assert!(
        out.stderr.contains("unrecognized name"),
        "s_client:\n{}",
        out.stderr
    );

    edge.expect_log(&["connection closed", "unknown.test"], STEP_TIMEOUT);
    assert_eq!(backend.accepts(), 0);
}

#[test]
fn ip_literal_sni_gets_unrecognized_name_and_no_dial() {
    let (edge, backend) = edge_with_recorder();
    let hello = into_records(&hello_message(Some("127.0.0.1"), 512), MAX_FRAGMENT);
    assert_unrecognized_name(&answer_to(edge.addr, &hello));
    assert_eq!(backend.accepts(), 0);
}

#[test]
fn plaintext_http_is_closed_without_dialing() {
    let (edge, backend) = edge_with_recorder();
    let answer = answer_to(edge.addr, b"GET / HTTP/1.1\r\nHost: hearth.test\r\n\r\n");
    // Either a bare close or a TLS alert record; never anything else.
    assert!(
        answer.is_empty() || answer[0] == CONTENT_ALERT,
        "{answer:02x?}"
    );
    edge.expect_log(&["ClientHello read failed"], STEP_TIMEOUT);
    assert_eq!(backend.accepts(), 0);
}
