//! The plain HTTP listener (`http_listen`, the `:80` of a deployment): one
//! request per connection. `GET /.well-known/acme-challenge/<token>` gets the
//! pending HTTP-01 key authorization (`tls/acme.rs`), every other request a
//! `301` to `https://<host><uri>` (the port added when the TLS listener is
//! not on 443), and anything unparseable a `400`. One `http request` log
//! line per connection; responses counted by status.
//!
//! Spawned by `proxy/listener.rs`; the TLS side is `proxy/conn.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::info;

use super::Shared;
use crate::metrics::track_active;

/// Largest request head read: a redirect needs the request line and Host,
/// browsers send a few KiB of headers at most.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers parsed in one request.
const MAX_HEADERS: usize = 64;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 2048;
/// The path prefix of HTTP-01 validations (RFC 8555 §8.3).
const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// Port of https URLs that is left out of redirects.
const DEFAULT_HTTPS_PORT: u16 = 443;

/// What is sent back.
#[derive(Debug, PartialEq, Eq)]
enum Response {
    /// 200 with the key authorization.
    KeyAuthorization(String),
    /// 301 to this URL.
    Redirect(String),
    /// 404: no such challenge token.
    NotFound,
    /// 400, with the reason for the log.
    BadRequest(&'static str),
}

/// What was read of a request, for the log line.
#[derive(Default)]
struct Seen {
    host: Option<String>,
    path: Option<String>,
}

/// Answers one HTTP connection.
pub async fn handle(
    shared: Arc<Shared>,
    mut client: TcpStream,
    source: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit;
    let _active = track_active(&shared.metrics);
    let mut seen = Seen::default();
    // A request head, bounded like the HTTP mode's (slowloris).
    let timeout = shared.config.limits.http_header_timeout;
    let response = match tokio::time::timeout(timeout, read_head(&mut client)).await {
        Err(_) => Response::BadRequest("timeout"),
        Ok(Err(reason)) => Response::BadRequest(reason),
        Ok(Ok(head)) => respond(&shared, &head, &mut seen),
    };
    let (status, reason) = match &response {
        Response::KeyAuthorization(_) => (200, "-"),
        Response::Redirect(_) => (301, "-"),
        Response::NotFound => (404, "-"),
        Response::BadRequest(reason) => (400, *reason),
    };
    let _ = tokio::time::timeout(timeout, client.write_all(&encode(&response))).await;
    let _ = client.shutdown().await;
    shared.metrics.http_response(status);
    info!(
        source = %source,
        host = %seen.host.as_deref().unwrap_or("-"),
        path = %seen.path.as_deref().unwrap_or("-"),
        status,
        reason = %reason,
        "http request"
    );
}

/// Reads until the blank line that ends the head; `Err` with a reason when
/// the peer closes first or sends too much.
async fn read_head(client: &mut TcpStream) -> Result<Vec<u8>, &'static str> {
    let mut head = Vec::with_capacity(READ_CHUNK);
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let n = client.read(&mut chunk).await.map_err(|_| "io")?;
        if n == 0 {
            return Err("truncated");
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err("too_large");
        }
    }
}

/// Parses the head and decides the response.
fn respond(shared: &Shared, head: &[u8], seen: &mut Seen) -> Response {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Response::BadRequest("malformed"),
    }
    let (Some(method), Some(path)) = (request.method, request.path) else {
        return Response::BadRequest("malformed");
    };
    seen.path = Some(path.to_owned());
    let mut hosts = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => std::str::from_utf8(h.value).ok(),
        _ => None,
    };
    let Some(host) = host else {
        return Response::BadRequest("host");
    };
    seen.host = Some(host.to_owned());
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        if method != "GET" && method != "HEAD" {
            return Response::BadRequest("method");
        }
        return match shared
            .fixed
            .challenges
            .as_ref()
            .and_then(|c| c.http_01(token))
        {
            Some(key_authorization) => Response::KeyAuthorization(key_authorization),
            None => Response::NotFound,
        };
    }
    redirect(host, path, shared.fixed.https_port)
}

/// `https://<host without port>[:port]<path>`, or 400 when the host or the
/// path could not be put in a URL safely.
fn redirect(host: &str, path: &str, https_port: u16) -> Response {
    let Some(name) = host_without_port(host) else {
        return Response::BadRequest("host");
    };
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Response::BadRequest("target");
    }
    let port = if https_port == DEFAULT_HTTPS_PORT {
        String::new()
    } else {
        format!(":{https_port}")
    };
    Response::Redirect(format!("https://{name}{port}{path}"))
}

/// The host of a `Host` header value (`name`, `name:port`, `[v6]`,
/// `[v6]:port`), lowercased; `None` when it is not a plain host name or IP
/// literal.
fn host_without_port(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        return Some(format!("[{}]", inside.to_ascii_lowercase()));
    }
    let name = match value.split_once(':') {
        Some((name, port)) if valid_port(port) => name,
        Some(_) => return None,
        None => value,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then(|| name.to_ascii_lowercase())
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok()
}

/// The bytes of a response; every response closes the connection.
fn encode(response: &Response) -> Vec<u8> {
    let (status, extra, body) = match response {
        Response::KeyAuthorization(key) => (
            "200 OK",
            "Content-Type: application/octet-stream\r\n".to_owned(),
            key.clone(),
        ),
        Response::Redirect(location) => (
            "301 Moved Permanently",
            format!("Location: {location}\r\n"),
            String::new(),
        ),
        Response::NotFound => ("404 Not Found", String::new(), String::new()),
        Response::BadRequest(_) => ("400 Bad Request", String::new(), String::new()),
    };
    format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_and_bad_ones_are_refused() {
        assert_eq!(
            host_without_port("Hearth.Example:80").as_deref(),
            Some("hearth.example")
        );
        assert_eq!(
            host_without_port("hearth.example").as_deref(),
            Some("hearth.example")
        );
        assert_eq!(
            host_without_port("hearth.example.").as_deref(),
            Some("hearth.example")
        );
        assert_eq!(host_without_port("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(
            host_without_port("127.0.0.1:80").as_deref(),
            Some("127.0.0.1")
        );
        for bad in [
            "",
            ":80",
            "a b",
            "a/b",
            "evil.example@x",
            "[::1",
            "[zz]",
            "a:99999",
            "a..b",
            "a:",
        ] {
            assert_eq!(host_without_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn redirects_keep_the_uri_and_add_the_port_unless_443() {
        assert_eq!(
            redirect("hearth.example:80", "/a?b=c", 443),
            Response::Redirect("https://hearth.example/a?b=c".to_owned())
        );
        assert_eq!(
            redirect("hearth.example", "/", 8443),
            Response::Redirect("https://hearth.example:8443/".to_owned())
        );
        assert_eq!(
            redirect("hearth.example", "*", 443),
            Response::BadRequest("target")
        );
        assert_eq!(
            redirect("hearth.example", "http://other/", 443),
            Response::BadRequest("target")
        );
    }

    #[test]
    fn responses_are_complete_http_messages() {
        let text = String::from_utf8(encode(&Response::Redirect("https://a/".into()))).unwrap();
        assert!(text.starts_with("HTTP/1.1 301 Moved Permanently\r\nLocation: https://a/\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"));
        let text =
            String::from_utf8(encode(&Response::KeyAuthorization("tok.thumb".into()))).unwrap();
        assert!(text.ends_with("Content-Length: 9\r\nConnection: close\r\n\r\ntok.thumb"));
    }
}
