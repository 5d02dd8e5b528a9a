//! The development backends of `dev`: `echo` answers every HTTP request
//! with the request it received, `sink` accepts any bytes and reports what
//! they were. Both print one line per request or connection, so a policy's
//! decisions can be seen without running the real services.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};

/// A sink connection that sends nothing for this long is closed.
const SINK_IDLE: Duration = Duration::from_secs(10);
/// Bytes a sink keeps to describe a connection (a ClientHello fits).
const SINK_SNIFF: usize = 16 * 1024;

/// Binds `echo` and `sink` (each optional) and serves them on a thread of
/// their own; returns once both listen.
pub(super) fn start(echo: Option<SocketAddr>, sink: Option<SocketAddr>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the development backends")?;
    let bind = |addr: SocketAddr, what: &str| {
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!("the {what} backend cannot listen on {addr} (--{what} ADDR or --{what} off)")
        })?;
        listener.set_nonblocking(true)?;
        anyhow::Ok(listener)
    };
    let echo = echo.map(|a| bind(a, "echo")).transpose()?;
    let sink = sink.map(|a| bind(a, "sink")).transpose()?;
    std::thread::Builder::new()
        .name("dev-backends".into())
        .spawn(move || {
            runtime.block_on(async move {
                let echo = echo.map(|l| tokio::spawn(serve_echo(TcpListener::from_std(l))));
                let sink = sink.map(|l| tokio::spawn(serve_sink(TcpListener::from_std(l))));
                for task in [echo, sink].into_iter().flatten() {
                    let _ = task.await;
                }
            });
        })?;
    Ok(())
}

/// Prints one development line: `dev: <step> <text>`.
pub(super) fn say(step: &str, text: &str) {
    println!("dev: {step:<6} {text}");
}

async fn serve_echo(listener: std::io::Result<TcpListener>) {
    let Ok(listener) = listener else { return };
    let local = listener
        .local_addr()
        .map_or_else(|_| "-".into(), |a| a.to_string());
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let local = local.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let local = local.clone();
                async move { Ok::<_, Infallible>(echo(request, &local, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The echo's answer: the request as it arrived, after the edge.
async fn echo(request: Request<Incoming>, local: &str, peer: SocketAddr) -> Response<Full<Bytes>> {
    let (head, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let host = head
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("-");
    say(
        "echo",
        &format!("{} {} (host {host}, from {peer})", head.method, head.uri),
    );
    let mut text = format!(
        "echo backend of hearth-wasm-edge dev on {local}: the edge forwarded this request from {peer}\n\n{} {} {:?}\n",
        head.method, head.uri, head.version
    );
    for (name, value) in &head.headers {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push_str(&format!("\n{} body bytes\n", body.len()));
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn serve_sink(listener: std::io::Result<TcpListener>) {
    let Ok(listener) = listener else { return };
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(sink(stream, peer));
    }
}

/// Reads until the peer closes or idles, then prints what came.
async fn sink(mut stream: TcpStream, peer: SocketAddr) {
    let start = Instant::now();
    let mut first = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0; 16 * 1024];
    loop {
        match tokio::time::timeout(SINK_IDLE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                total += n as u64;
                let keep = n.min(SINK_SNIFF.saturating_sub(first.len()));
                first.extend_from_slice(&buf[..keep]);
            }
            Err(_) => break,
        }
    }
    say(
        "sink",
        &format!(
            "{total} bytes from {peer} ({}), closed after {:.1} s",
            describe(&first),
            start.elapsed().as_secs_f64()
        ),
    );
}

/// What the first bytes of a sink connection look like.
fn describe(first: &[u8]) -> String {
    if first.first() == Some(&0x16) && first.len() > 5 {
        return match hearth_edge_hello::parse_client_hello(&first[5..]) {
            Ok(hello) => format!(
                "TLS ClientHello, sni={}, alpn={}",
                hello.server_name.as_deref().unwrap_or("-"),
                if hello.alpn.is_empty() {
                    "-".into()
                } else {
                    hello.alpn.join(",")
                }
            ),
            Err(_) => "TLS records".into(),
        };
    }
    let line = first.split(|&b| b == b'\n').next().unwrap_or_default();
    if !line.is_empty()
        && line
            .iter()
            .all(|&b| b == b'\r' || (0x20..0x7f).contains(&b))
    {
        return format!("text: {:?}", String::from_utf8_lossy(line).trim_end());
    }
    let head: Vec<String> = first.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!(
        "binary: {}",
        if head.is_empty() {
            "nothing".into()
        } else {
            head.join(" ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn sink_descriptions() {
        assert_eq!(describe(b""), "binary: nothing");
        assert_eq!(
            describe(b"GET / HTTP/1.1\r\nhost: x\r\n"),
            r#"text: "GET / HTTP/1.1""#
        );
        assert_eq!(describe(&[0, 1, 0xff]), "binary: 00 01 ff");
        assert_eq!(describe(&[0x16, 3, 1, 0, 4, 9, 9, 9, 9]), "TLS records");
    }
}
