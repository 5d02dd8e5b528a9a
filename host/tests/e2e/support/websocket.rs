//! A minimal WebSocket client (RFC 6455): the upgrade request, masked
//! client frames, and unmasked server frames, over any stream (the tests use
//! a TLS stream through the edge).

use std::io::{Read, Write};

/// The sample nonce from RFC 6455 §1.3 and the accept value the server must
/// derive from it: a fixed pair, so the check needs no SHA-1 here.
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Opcodes used by the tests.
pub const OP_TEXT: u8 = 0x1;
/// Binary data frame.
pub const OP_BINARY: u8 = 0x2;

/// Largest upgrade response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Sends the upgrade for `path` on `host` and checks the 101 response.
pub fn handshake(stream: &mut (impl Read + Write), host: &str, path: &str) -> Result<(), String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err("upgrade response head too long".into());
        }
        stream
            .read_exact(&mut byte)
            .map_err(|e| format!("read upgrade response: {e}"))?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("upgrade refused: {head}"));
    }
    let accept = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .starts_with("sec-websocket-accept:")
            .then(|| l[21..].trim().to_owned())
    });
    if accept.as_deref() != Some(SAMPLE_ACCEPT) {
        return Err(format!("wrong Sec-WebSocket-Accept: {head}"));
    }
    Ok(())
}

/// Sends one masked, final frame.
pub fn send(stream: &mut impl Write, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
    let mask: [u8; 4] = [0x1f, 0x2e, 0x3d, 0x4c];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame)?;
    stream.flush()
}

/// Reads one unfragmented server frame: (opcode, payload).
pub fn receive(stream: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext)?;
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext)?;
            u64::from_be_bytes(ext)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; usize::try_from(len).expect("frame fits memory")];
    stream.read_exact(&mut payload)?;
    Ok((head[0] & 0x0f, payload))
}
