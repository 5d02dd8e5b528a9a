//! A minimal TURN client (RFC 5389 STUN framing, RFC 5766 Allocate) for
//! talking to coturn through the edge: Allocate → 401 with REALM and NONCE →
//! Allocate with the long-term credential and MESSAGE-INTEGRITY → success with
//! XOR-RELAYED-ADDRESS. Over TCP/TLS, messages are framed by their length.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

/// The STUN magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of a STUN message header.
const HEADER_LEN: usize = 20;
/// Largest STUN message body the client accepts.
const MAX_BODY: usize = 4096;

const ALLOCATE_REQUEST: u16 = 0x0003;
const ALLOCATE_SUCCESS: u16 = 0x0103;
const ALLOCATE_ERROR: u16 = 0x0113;

const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// IANA protocol number for UDP, the only REQUESTED-TRANSPORT TURN allows.
const TRANSPORT_UDP: u8 = 17;

/// A decoded STUN message: type, transaction id, attributes in order.
#[derive(Debug)]
pub struct Message {
    /// Message type (method + class).
    pub kind: u16,
    /// Transaction id.
    pub transaction: [u8; 12],
    /// (type, value) pairs.
    pub attributes: Vec<(u16, Vec<u8>)>,
}

impl Message {
    /// The first attribute of type `kind`.
    pub fn attribute(&self, kind: u16) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }

    /// ERROR-CODE as a number (e.g. 401).
    pub fn error_code(&self) -> Option<u16> {
        let value = self.attribute(ATTR_ERROR_CODE)?;
        Some(u16::from(value[2] & 0x07) * 100 + u16::from(value[3]))
    }
}

/// What a successful Allocate returned.
#[derive(Debug)]
pub struct Allocation {
    /// The relayed transport address coturn allocated.
    pub relayed: SocketAddr,
    /// Our address as coturn saw it.
    pub mapped: Option<SocketAddr>,
}

/// Runs the two-step long-term-credential Allocate over `stream`.
pub fn allocate(
    stream: &mut (impl Read + Write),
    username: &str,
    password: &str,
) -> Result<Allocation, String> {
    let transport = (ATTR_REQUESTED_TRANSPORT, vec![TRANSPORT_UDP, 0, 0, 0]);
    let first = request(
        stream,
        ALLOCATE_REQUEST,
        std::slice::from_ref(&transport),
        None,
    )?;
    if first.kind != ALLOCATE_ERROR || first.error_code() != Some(401) {
        return Err(format!("expected a 401 challenge, got {first:?}"));
    }
    let realm = first
        .attribute(ATTR_REALM)
        .ok_or("401 without REALM")?
        .to_vec();
    let nonce = first
        .attribute(ATTR_NONCE)
        .ok_or("401 without NONCE")?
        .to_vec();
    let mut key_input = format!("{username}:").into_bytes();
    key_input.extend_from_slice(&realm);
    key_input.extend_from_slice(format!(":{password}").as_bytes());
    let key = Md5::digest(&key_input);
    let attributes = [
        (ATTR_USERNAME, username.as_bytes().to_vec()),
        (ATTR_REALM, realm),
        (ATTR_NONCE, nonce),
        transport,
    ];
    let second = request(stream, ALLOCATE_REQUEST, &attributes, Some(&key))?;
    if second.kind != ALLOCATE_SUCCESS {
        return Err(format!(
            "Allocate failed: {second:?} (error {:?})",
            second.error_code()
        ));
    }
    let relayed = second
        .attribute(ATTR_XOR_RELAYED_ADDRESS)
        .ok_or("no XOR-RELAYED-ADDRESS")?;
    Ok(Allocation {
        relayed: xor_address(relayed, &second.transaction)?,
        mapped: second
            .attribute(ATTR_XOR_MAPPED_ADDRESS)
            .and_then(|v| xor_address(v, &second.transaction).ok()),
    })
}

/// Sends one request and reads the response with the same transaction id.
fn request(
    stream: &mut (impl Read + Write),
    kind: u16,
    attributes: &[(u16, Vec<u8>)],
    integrity_key: Option<&[u8]>,
) -> Result<Message, String> {
    let transaction: [u8; 12] =
        std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ kind as u8 ^ attributes.len() as u8);
    let bytes = encode(kind, &transaction, attributes, integrity_key);
    stream.write_all(&bytes).map_err(|e| format!("send: {e}"))?;
    stream.flush().map_err(|e| format!("flush: {e}"))?;
    let response = read_message(stream)?;
    if response.transaction != transaction {
        return Err(format!("transaction id mismatch: {response:?}"));
    }
    Ok(response)
}

/// Encodes a message; with a key, appends MESSAGE-INTEGRITY (HMAC-SHA1 over
/// the message with its length already covering the integrity attribute).
pub fn encode(
    kind: u16,
    transaction: &[u8; 12],
    attributes: &[(u16, Vec<u8>)],
    integrity_key: Option<&[u8]>,
) -> Vec<u8> {
    let mut body = Vec::new();
    for (attr, value) in attributes {
        body.extend_from_slice(&attr.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    const INTEGRITY_ATTR_LEN: usize = 4 + 20;
    let length = body.len()
        + if integrity_key.is_some() {
            INTEGRITY_ATTR_LEN
        } else {
            0
        };
    let mut message = Vec::with_capacity(HEADER_LEN + length);
    message.extend_from_slice(&kind.to_be_bytes());
    message.extend_from_slice(&(length as u16).to_be_bytes());
    message.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    message.extend_from_slice(transaction);
    message.extend_from_slice(&body);
    if let Some(key) = integrity_key {
        let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
        mac.update(&message);
        let tag = mac.finalize().into_bytes();
        message.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
        message.extend_from_slice(&20u16.to_be_bytes());
        message.extend_from_slice(&tag);
    }
    message
}

/// Reads one length-framed STUN message.
pub fn read_message(stream: &mut impl Read) -> Result<Message, String> {
    let mut header = [0u8; HEADER_LEN];
    stream
        .read_exact(&mut header)
        .map_err(|e| format!("read STUN header: {e}"))?;
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if u32::from_be_bytes(header[4..8].try_into().unwrap()) != MAGIC_COOKIE || length > MAX_BODY {
        return Err(format!("not a STUN message: {header:02x?}"));
    }
    let mut body = vec![0; length];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("read STUN body: {e}"))?;
    let mut attributes = Vec::new();
    let mut at = 0;
    while at + 4 <= body.len() {
        let attr = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body
            .get(at + 4..at + 4 + len)
            .ok_or("truncated attribute")?
            .to_vec();
        attributes.push((attr, value));
        at = (at + 4 + len).next_multiple_of(4);
    }
    Ok(Message {
        kind,
        transaction: header[8..20].try_into().unwrap(),
        attributes,
    })
}

/// Decodes an XOR-*-ADDRESS value (RFC 5389 §15.2).
fn xor_address(value: &[u8], transaction: &[u8; 12]) -> Result<SocketAddr, String> {
    let bad = || format!("bad XOR address: {value:02x?}");
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let mut key = MAGIC_COOKIE.to_be_bytes().to_vec();
    key.extend_from_slice(transaction);
    let ip = match value[1] {
        0x01 => {
            let raw: [u8; 4] =
                std::array::from_fn(|i| value.get(4 + i).copied().unwrap_or(0) ^ key[i]);
            IpAddr::V4(Ipv4Addr::from(raw))
        }
        0x02 => {
            let raw: [u8; 16] =
                std::array::from_fn(|i| value.get(4 + i).copied().unwrap_or(0) ^ key[i]);
            IpAddr::V6(Ipv6Addr::from(raw))
        }
        _ => return Err(bad()),
    };
    Ok(SocketAddr::new(ip, port))
}
