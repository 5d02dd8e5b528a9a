//! ClientHellos for raw-socket tests: the first flight of a real rustls
//! client, and hand-built hellos of an exact size (padding extension, RFC
//! 7685) split into TLS records of a chosen size.

use rustls::ClientConnection;
use rustls::pki_types::ServerName;

use super::tls::client_config;

/// TLS record content type: handshake.
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type: client_hello.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// The largest TLS plaintext fragment (RFC 8446 §5.1).
pub const MAX_FRAGMENT: usize = 16 * 1024;

/// The bytes a rustls client sends first (its ClientHello records) when
/// connecting to `name`; an IP address sends no SNI.
pub fn rustls_hello(name: &str) -> Vec<u8> {
    let server_name = ServerName::try_from(name.to_owned()).expect("server name");
    let mut conn =
        ClientConnection::new(client_config(&["http/1.1"]), server_name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls to a Vec");
    }
    out
}

/// A ClientHello handshake message (header included) of exactly `len`
/// bytes, offering TLS 1.3 with an X25519 key share, with `sni` as the
/// server_name (any text, even an IP literal) or none.
pub fn hello_message(sni: Option<&str>, len: usize) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0]; // host_name
        push_u16(&mut list, name.len());
        list.extend_from_slice(name.as_bytes());
        let mut data = Vec::new();
        push_u16(&mut data, list.len());
        data.extend_from_slice(&list);
        push_ext(&mut ext, 0, &data);
    }
    push_ext(&mut ext, 43, &[2, 0x03, 0x04]); // supported_versions: TLS 1.3
    push_ext(&mut ext, 10, &[0, 2, 0x00, 0x1d]); // supported_groups: x25519
    push_ext(&mut ext, 13, &[0, 4, 0x04, 0x03, 0x08, 0x04]); // signature_algorithms
    let mut share = vec![0x00, 0x1d, 0, 32];
    share.extend_from_slice(&[0x42; 32]);
    let mut key_share = Vec::new();
    push_u16(&mut key_share, share.len());
    key_share.extend_from_slice(&share);
    push_ext(&mut ext, 51, &key_share);

    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(32);
    body.extend_from_slice(&[0x17; 32]); // legacy_session_id
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
    body.extend_from_slice(&[1, 0]); // compression: null
    const HEADERS: usize = 4 + 2 + 4; // handshake header, extensions length, padding ext header
    let fixed = HEADERS + body.len() + ext.len();
    assert!(
        len >= fixed,
        "a hello of {len} bytes cannot hold its {fixed} fixed bytes"
    );
    push_ext(&mut ext, 21, &vec![0; len - fixed]); // padding
    push_u16(&mut body, ext.len());
    body.extend_from_slice(&ext);

    let mut message = vec![HANDSHAKE_CLIENT_HELLO];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    assert_eq!(message.len(), len);
    message
}

/// Wraps a handshake message in handshake records of at most `fragment` bytes.
pub fn into_records(message: &[u8], fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in message.chunks(fragment) {
        out.extend_from_slice(&[CONTENT_HANDSHAKE, 0x03, 0x01]);
        push_u16(&mut out, chunk.len());
        out.extend_from_slice(chunk);
    }
    out
}

fn push_u16(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&u16::try_from(value).expect("fits u16").to_be_bytes());
}

fn push_ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    push_u16(out, data.len());
    out.extend_from_slice(data);
}
