//! A bare rustls client for `testdata/capture.sh`: sends its ClientHello (SNI from the
//! second argument, ALPN h2 + http/1.1) to `127.0.0.1:PORT` and waits for the capture
//! listener to hang up. It never completes a handshake; only the hello matters.
//!
//! Usage: `cargo run -p hearth-edge-hello --example rustls_client -- PORT NAME`

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// How long to wait for the listener to close after the hello went out.
const HANG_UP_TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: rustls_client PORT NAME")?
        .parse()?;
    let name = args.next().ok_or("usage: rustls_client PORT NAME")?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut conn = ClientConnection::new(Arc::new(config), ServerName::try_from(name)?)?;

    let mut sock = TcpStream::connect(("127.0.0.1", port))?;
    while conn.wants_write() {
        conn.write_tls(&mut sock)?;
    }
    sock.set_read_timeout(Some(HANG_UP_TIMEOUT))?;
    let _ = sock.read(&mut [0u8; 1]);
    Ok(())
}
