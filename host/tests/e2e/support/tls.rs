//! TLS clients for the e2e tests: a rustls client that trusts the test CA
//! (`tests/peers/certs/ca.crt`) and connects through the edge with a chosen
//! SNI, helpers to read certificates, a minimal HTTP/1.1 exchange, and the
//! command-line clients (`curl`, `openssl s_client`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::process::{ToolOutput, require_binary, run_tool};
use super::{STEP_TIMEOUT, cert_path};

/// A blocking TLS stream to the edge.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A rustls client config trusting only the test CA, offering `alpn`.
pub fn client_config(alpn: &[&str]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert_der("ca.crt")).expect("add test CA");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// The first certificate in `tests/peers/certs/<name>`.
pub fn cert_der(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(cert_path(name)).expect("read test certificate")
}

/// Connects to `addr`, sends SNI `sni`, and completes the handshake
/// (verifying the server's certificate against the test CA for `sni`).
pub fn connect(addr: SocketAddr, sni: &str, alpn: &[&str]) -> Result<TlsStream, std::io::Error> {
    let sock = TcpStream::connect_timeout(&addr, STEP_TIMEOUT)?;
    handshake(sock, sni, alpn)
}

/// A TCP connection to `to` from `from` (a loopback address of its own).
pub fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind a loopback address");
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream
}

/// Completes a TLS handshake over `sock` as [`connect`] does.
pub fn handshake(sock: TcpStream, sni: &str, alpn: &[&str]) -> Result<TlsStream, std::io::Error> {
    sock.set_read_timeout(Some(STEP_TIMEOUT))?;
    sock.set_write_timeout(Some(STEP_TIMEOUT))?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let conn = ClientConnection::new(client_config(alpn), name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The certificate the server presented (the leaf).
pub fn peer_leaf(stream: &TlsStream) -> CertificateDer<'static> {
    stream.conn.peer_certificates().expect("peer certificates")[0]
        .clone()
        .into_owned()
}

/// Sends `GET path` with `Host: host` and returns (status line, body),
/// reading exactly Content-Length bytes of body.
pub fn http_get(stream: &mut impl ReadWrite, host: &str, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hearth-e2e\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    stream.flush().expect("flush");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < MAX_HEAD, "response head too long");
        stream.read_exact(&mut byte).expect("read response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .expect("Content-Length")
        .parse()
        .expect("numeric Content-Length");
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("read body");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Largest HTTP response head the tests accept.
const MAX_HEAD: usize = 16 * 1024;

/// Anything that reads and writes (a TLS stream, a TCP stream).
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// `openssl s_client` to `addr` with `-servername sni` (or `-noservername`),
/// with stdin closed after the handshake. Returns its output.
pub fn openssl_s_client(addr: SocketAddr, sni: Option<&str>, extra: &[&str]) -> ToolOutput {
    let openssl = require_binary("openssl", "openssl");
    let mut command = Command::new(openssl);
    command.args(["s_client", "-connect", &addr.to_string()]);
    match sni {
        Some(name) => command.args(["-servername", name]),
        None => command.arg("-noservername"),
    };
    command.args(extra);
    run_tool(command, b"", STEP_TIMEOUT)
}

/// The leaf certificate (PEM, as printed by `-showcerts`) in s_client output.
pub fn first_pem_cert(output: &str) -> Option<CertificateDer<'static>> {
    let start = output.find("-----BEGIN CERTIFICATE-----")?;
    let end = output[start..].find("-----END CERTIFICATE-----")?
        + start
        + "-----END CERTIFICATE-----".len();
    CertificateDer::from_pem_slice(&output.as_bytes()[start..end]).ok()
}

/// `curl https://<name>:<port><path>` resolved to the edge, trusting the test CA.
/// Verbose, so the output names the certificate subject the client verified.
pub fn curl(edge: SocketAddr, name: &str, path: &str) -> ToolOutput {
    curl_edge(edge, name, path, &[])
}

/// [`curl`] with extra options (`--http2`, `-H ...`); stderr shows the
/// protocol and the response head.
pub fn curl_edge(edge: SocketAddr, name: &str, path: &str, extra: &[&str]) -> ToolOutput {
    let mut command = curl_command(edge, name);
    command
        .arg("--cacert")
        .arg(cert_path("ca.crt"))
        .args(extra)
        .arg(format!("https://{name}:{}{path}", edge.port()));
    run_tool(command, b"", STEP_TIMEOUT * 2)
}

/// curl over plain HTTP to a `plain_listen` listener at `addr`, for `name`.
pub fn curl_plain(addr: SocketAddr, name: &str, path: &str) -> ToolOutput {
    let mut command = curl_command(addr, name);
    command.arg(format!("http://{name}:{}{path}", addr.port()));
    run_tool(command, b"", STEP_TIMEOUT * 2)
}

/// Verbose, bounded curl with `name` resolved to `addr`'s loopback port.
fn curl_command(addr: SocketAddr, name: &str) -> Command {
    let mut command = Command::new(require_binary("curl", "curl"));
    command
        .args([
            "-sS",
            "-v",
            "--max-time",
            &STEP_TIMEOUT.as_secs().to_string(),
        ])
        .args(["--resolve", &format!("{name}:{}:127.0.0.1", addr.port())]);
    command
}

/// The status line curl printed last (`< HTTP/1.1 308`, `< HTTP/2 403`).
pub fn status(out: &ToolOutput) -> Option<u16> {
    out.stderr
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("< HTTP/"))
        .find_map(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// A response header curl printed (`< location: …`), case-insensitively.
pub fn response_header<'a>(out: &'a ToolOutput, name: &str) -> Option<&'a str> {
    out.stderr.lines().find_map(|l| {
        let (n, v) = l.strip_prefix("< ")?.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
