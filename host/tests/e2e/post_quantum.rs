//! Post-quantum key exchange where the edge terminates TLS: X25519MLKEM768
//! when the client offers it (Chromium's case is in `browser.rs`), classical
//! groups for clients without it, a client offering only the hybrid group,
//! and a HelloRetryRequest when the client's key share is for a group the
//! edge does not support. Proven from the edge's log (`tls_group`,
//! `tls_handshake`) and `tls_handshakes_total`, and from the client's side.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{self, kx_group};

use crate::support::edge::EdgeBuilder;
use crate::support::http_echo::HttpEcho;
use crate::support::tls::{cert_der, openssl_s_client};
use crate::support::{APEX_NAME, STEP_TIMEOUT};

/// A rustls client offering exactly `groups`, trusting the test CA.
fn client(groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>) -> Arc<rustls::ClientConfig> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = groups;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der("ca.crt")).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One HTTP/1.1 request over TLS with `config`: the status line and what
/// the client negotiated.
fn get(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> (
    String,
    Option<rustls::NamedGroup>,
    Option<rustls::HandshakeKind>,
) {
    let name = rustls::pki_types::ServerName::try_from(APEX_NAME).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET / HTTP/1.1\r\nhost: {APEX_NAME}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    let group = tls.conn.negotiated_key_exchange_group().map(|g| g.name());
    let kind = tls.conn.handshake_kind();
    (answer.lines().next().unwrap_or("").to_owned(), group, kind)
}

#[test]
fn terminated_tls_prefers_x25519mlkem768_and_keeps_classical_groups() {
    let web = HttpEcho::start("web");
    let edge = EdgeBuilder::hearth()
        .without_backend("pocketbase")
        .backend_yaml("web", &format!("{{ addr: \"{}\" }}", web.addr))
        .yaml("http_routes:\n  pocketbase:\n    routes:\n      - { backend: web }\n")
        .admin()
        .start();

    // Only the hybrid group: it connects with it.
    let (status, group, _) = get(edge.addr, client(vec![kx_group::X25519MLKEM768]));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(group, Some(rustls::NamedGroup::X25519MLKEM768));
    // Hybrid offered first (as browsers do): chosen.
    let (_, group, kind) = get(
        edge.addr,
        client(vec![kx_group::X25519MLKEM768, kx_group::X25519]),
    );
    assert_eq!(group, Some(rustls::NamedGroup::X25519MLKEM768));
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    // Classical only: X25519, P-256, P-384 each still connect.
    for (offered, name) in [
        (kx_group::X25519, rustls::NamedGroup::X25519),
        (kx_group::SECP256R1, rustls::NamedGroup::secp256r1),
        (kx_group::SECP384R1, rustls::NamedGroup::secp384r1),
    ] {
        let (status, group, _) = get(edge.addr, client(vec![offered]));
        assert!(status.starts_with("HTTP/1.1 200"), "{name:?}: {status}");
        assert_eq!(group, Some(name));
    }
    // OpenSSL 3.0 (no ML-KEM): classical.
    let out = openssl_s_client(edge.addr, Some(APEX_NAME), &["-groups", "X25519:P-256"]);
    assert!(
        out.stdout.contains("Server Temp Key: X25519"),
        "{}",
        out.stdout
    );
    // A key share for a group the edge does not support (P-521) with X25519
    // also offered: a HelloRetryRequest, then X25519.
    let out = openssl_s_client(edge.addr, Some(APEX_NAME), &["-groups", "P-521:X25519"]);
    assert!(
        out.stdout.contains("Server Temp Key: X25519"),
        "{}",
        out.stdout
    );
    edge.expect_log(
        &["connection closed", "tls_group=X25519", "tls_handshake=hrr"],
        STEP_TIMEOUT,
    );

    let lines = edge.logs().lines();
    let hybrid = lines
        .iter()
        .filter(|l| l.contains("connection closed") && l.contains("tls_group=X25519MLKEM768"))
        .count();
    assert!(
        hybrid >= 2,
        "the log names the hybrid group:\n{}",
        lines.join("\n")
    );
    let counted = edge
        .metric("hearth_edge_tls_handshakes_total{group=\"X25519MLKEM768\",kind=\"full\"}")
        .unwrap_or(0.0);
    assert!(counted >= 2.0, "counted by group: {counted}");
    assert_eq!(
        edge.metric("hearth_edge_tls_handshakes_total{group=\"X25519\",kind=\"hrr\"}"),
        Some(1.0)
    );
}
