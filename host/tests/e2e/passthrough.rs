//! Passthrough: `turn.<domain>` reaches coturn with coturn's own certificate
//! and a real TURN Allocate succeeds over that TLS stream; ClientHellos that
//! arrive one byte per TCP segment, or split over many TLS records, still
//! route and reach the backend byte for byte.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::coturn::{Coturn, TURN_PASSWORD, TURN_USER};
use crate::support::edge::EdgeBuilder;
use crate::support::hello::{hello_message, into_records, rustls_hello};
use crate::support::process::log_field;
use crate::support::recorder::{Mode, Recorder};
use crate::support::tls::{cert_der, connect, first_pem_cert, openssl_s_client, peer_leaf};
use crate::support::{STEP_TIMEOUT, TURN_NAME, turn};

#[test]
fn turn_name_presents_coturns_certificate_not_the_edges() {
    let coturn = Coturn::start();
    let edge = EdgeBuilder::hearth().backend("turn", coturn.addr).start();

    let out = openssl_s_client(edge.addr, Some(TURN_NAME), &["-showcerts"]);
    let leaf = first_pem_cert(&out.stdout).unwrap_or_else(|| {
        panic!(
            "no certificate in s_client output:\n{}\n{}",
            out.stdout, out.stderr
        )
    });
    assert_eq!(
        leaf,
        cert_der("turn.crt"),
        "s_client through the edge must see coturn's certificate"
    );
    assert_ne!(leaf, cert_der("edge.crt"));
    assert!(
        out.stdout.contains("CN = coturn test leaf"),
        "subject:\n{}",
        out.stdout
    );

    // The same through rustls, which also verifies the chain for the name.
    let stream = connect(edge.addr, TURN_NAME, &[]).expect("TLS to coturn through the edge");
    assert_eq!(peer_leaf(&stream), cert_der("turn.crt"));
}

#[test]
fn turn_allocate_over_tls_through_the_edge_succeeds() {
    let coturn = Coturn::start();
    let edge = EdgeBuilder::hearth().backend("turn", coturn.addr).start();

    let mut stream = connect(edge.addr, TURN_NAME, &[]).expect("TLS to coturn through the edge");
    let allocation = turn::allocate(&mut stream, TURN_USER, TURN_PASSWORD)
        .unwrap_or_else(|e| panic!("{e}\ncoturn log:\n{}", coturn.peer.logs.dump()));
    assert!(
        allocation.relayed.ip().is_loopback(),
        "relayed address {allocation:?}"
    );
    assert_ne!(allocation.relayed.port(), 0);
    // coturn saw the edge's connection, from loopback.
    assert!(
        allocation.mapped.is_some_and(|m| m.ip().is_loopback()),
        "{allocation:?}"
    );

    // A wrong password is refused by coturn (the 401 path above was real).
    let mut other = connect(edge.addr, TURN_NAME, &[]).expect("second TLS connection");
    assert!(turn::allocate(&mut other, TURN_USER, "wrong").is_err());

    drop(stream);
    let line = edge.expect_log(&["connection closed", TURN_NAME], STEP_TIMEOUT);
    assert_eq!(log_field(&line, "decision"), Some("passthrough"), "{line}");
    assert_eq!(log_field(&line, "backend"), Some("turn"), "{line}");
    let up: u64 = log_field(&line, "bytes_up")
        .and_then(|v| v.parse().ok())
        .expect("bytes_up");
    let down: u64 = log_field(&line, "bytes_down")
        .and_then(|v| v.parse().ok())
        .expect("bytes_down");
    assert!(up > 0 && down > 0, "{line}");
}

#[test]
fn hello_written_one_byte_per_segment_arrives_intact() {
    let backend = Recorder::start(Mode::Echo);
    let edge = EdgeBuilder::hearth().backend("turn", backend.addr).start();
    let hello = rustls_hello(TURN_NAME);

    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    for byte in &hello {
        sock.write_all(std::slice::from_ref(byte)).unwrap();
        sock.flush().unwrap();
    }
    let received = backend
        .wait_received(0, hello.len(), STEP_TIMEOUT)
        .expect("hello reached the backend");
    assert_eq!(
        received, hello,
        "the backend must get the hello byte for byte"
    );

    // And the backend's bytes come back: the relay works both ways.
    let mut echoed = vec![0; hello.len()];
    sock.read_exact(&mut echoed).expect("echo through the edge");
    assert_eq!(echoed, hello);
    assert_eq!(backend.accepts(), 1);

    // The close line accounts for exactly the relayed bytes, both ways.
    drop(sock);
    let line = edge.expect_log(&["connection closed", TURN_NAME], STEP_TIMEOUT);
    let expected = hello.len().to_string();
    assert_eq!(
        log_field(&line, "bytes_up"),
        Some(expected.as_str()),
        "{line}"
    );
    assert_eq!(
        log_field(&line, "bytes_down"),
        Some(expected.as_str()),
        "{line}"
    );
}

#[test]
fn hello_split_over_many_records_routes_and_arrives_intact() {
    const HELLO_LEN: usize = 8 * 1024;
    const RECORD_FRAGMENT: usize = 1000;
    let backend = Recorder::start(Mode::Record);
    let edge = EdgeBuilder::hearth().backend("turn", backend.addr).start();
    let wire = into_records(&hello_message(Some(TURN_NAME), HELLO_LEN), RECORD_FRAGMENT);

    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.write_all(&wire).unwrap();
    let received = backend
        .wait_received(0, wire.len(), STEP_TIMEOUT)
        .expect("hello reached the backend");
    assert_eq!(received, wire);
}

#[test]
fn turn_alias_is_passed_through() {
    let backend = Recorder::start(Mode::Record);
    let edge = EdgeBuilder::hearth()
        .policy_config("turn_aliases", "cdn.hearth.test, media.hearth.test")
        .backend("turn", backend.addr)
        .start();
    let hello = rustls_hello("media.hearth.test");
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.write_all(&hello).unwrap();
    assert_eq!(
        backend.wait_received(0, hello.len(), STEP_TIMEOUT),
        Some(hello)
    );
}

#[test]
fn proxy_protocol_v2_header_carries_the_client_address_before_the_hello() {
    /// The PROXY protocol v2 signature (haproxy's proxy-protocol.txt §2.2).
    const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
    const VERSION_2_PROXY: u8 = 0x21;
    const TCP_OVER_IPV4: u8 = 0x11;
    const FIXED_HEADER: usize = 16;
    let backend = Recorder::start(Mode::Record);
    let edge = EdgeBuilder::hearth()
        .backend_yaml(
            "turn",
            &format!("{{ addr: \"{}\", proxy_protocol: v2 }}", backend.addr),
        )
        .start();
    let hello = rustls_hello(TURN_NAME);
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    let client = sock.local_addr().unwrap();
    sock.write_all(&hello).unwrap();

    let got = backend
        .wait_received(0, FIXED_HEADER + hello.len(), STEP_TIMEOUT)
        .expect("header and hello");
    assert_eq!(&got[..12], SIGNATURE, "{got:02x?}");
    assert_eq!(got[12], VERSION_2_PROXY);
    assert_eq!(got[13], TCP_OVER_IPV4);
    let len = usize::from(u16::from_be_bytes([got[14], got[15]]));
    let addresses = &got[FIXED_HEADER..FIXED_HEADER + 12];
    assert_eq!(&addresses[..4], &[127, 0, 0, 1], "source address");
    assert_eq!(&addresses[4..8], &[127, 0, 0, 1], "destination address");
    assert_eq!(
        u16::from_be_bytes([addresses[8], addresses[9]]),
        client.port(),
        "source port"
    );
    assert_eq!(
        u16::from_be_bytes([addresses[10], addresses[11]]),
        edge.addr.port(),
        "destination port"
    );
    let rest = backend
        .wait_received(0, FIXED_HEADER + len + hello.len(), STEP_TIMEOUT)
        .unwrap();
    assert_eq!(
        &rest[FIXED_HEADER + len..],
        &hello[..],
        "the hello follows the header unchanged"
    );
}
