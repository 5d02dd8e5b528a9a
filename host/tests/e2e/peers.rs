//! The peers on their own, without the edge: controls that tell a broken
//! peer setup (or test client) apart from a broken edge.

use std::io::Write;
use std::net::TcpStream;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::support::coturn::{Coturn, TURN_PASSWORD, TURN_USER};
use crate::support::nginx::{Nginx, POCKETBASE_BODY, WsEcho};
use crate::support::tls::{cert_der, client_config, http_get, peer_leaf};
use crate::support::websocket::{self, OP_TEXT};
use crate::support::{STEP_TIMEOUT, TURN_NAME, turn};

#[test]
fn coturn_allocates_directly_over_tls() {
    let coturn = Coturn::start();
    let sock = TcpStream::connect(coturn.addr).unwrap();
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let name = ServerName::try_from(TURN_NAME).unwrap();
    let conn = ClientConnection::new(client_config(&[]), name).unwrap();
    let mut stream = StreamOwned::new(conn, sock);
    stream.flush().unwrap();
    let allocation = turn::allocate(&mut stream, TURN_USER, TURN_PASSWORD)
        .unwrap_or_else(|e| panic!("{e}\ncoturn log:\n{}", coturn.peer.logs.dump()));
    assert!(allocation.relayed.ip().is_loopback());
    assert_eq!(peer_leaf(&stream), cert_der("turn.crt"));
    assert!(turn::allocate(&mut stream, TURN_USER, "wrong password").is_err());
}

#[test]
fn nginx_and_ws_echo_answer_directly() {
    let ws = WsEcho::start();
    let nginx = Nginx::start(ws.addr);
    let mut sock = TcpStream::connect(nginx.pocketbase).unwrap();
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let (status, body) = http_get(&mut sock, "hearth.test", "/");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, POCKETBASE_BODY);

    let mut sock = TcpStream::connect(nginx.livekit).unwrap();
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    websocket::handshake(&mut sock, "lk.hearth.test", "/rtc").expect("upgrade via nginx");
    websocket::send(&mut sock, OP_TEXT, b"ping").unwrap();
    assert_eq!(
        websocket::receive(&mut sock).unwrap(),
        (OP_TEXT, b"ping".to_vec())
    );
}
