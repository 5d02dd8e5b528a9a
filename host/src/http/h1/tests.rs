//! The backend codec against a scripted peer on a real loopback socket:
//! each test server reads whole request heads (and `Content-Length`
//! bodies) and writes the answer bytes it was given, so the framing cases
//! a real backend may send are exact.

use std::future::poll_fn;

use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

/// A peer that, per accepted connection, answers each request in turn with
/// the next of `answers` (closing after the last when `close` is set), and
/// reports every request it read as text. An answer of `None` closes the
/// connection without answering.
async fn peer(
    answers: Vec<Option<&'static [u8]>>,
    close: bool,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        for answer in answers {
            let request = read_request(&mut socket, &mut buf).await;
            let Some(request) = request else { return };
            let _ = tx.send(request);
            match answer {
                Some(bytes) => socket.write_all(bytes).await.unwrap(),
                None => return,
            }
        }
        if close {
            return;
        }
        // Keep the connection open until the client goes.
        let _ = socket.read(&mut [0u8; 1]).await;
    });
    (addr, rx)
}

/// Reads one request head and its `Content-Length` body, if any.
async fn read_request(socket: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end + 4].to_vec()).unwrap();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "request body cut short");
                buf.extend_from_slice(&chunk[..n]);
            }
            let request = String::from_utf8(buf[..end + 4 + length].to_vec()).unwrap();
            buf.drain(..end + 4 + length);
            return Some(request);
        }
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn connect(addr: std::net::SocketAddr) -> Conn {
    Conn::new(TcpStream::connect(addr).await.unwrap())
}

fn get(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header("host", "app.test")
        .body(Body::Empty)
        .unwrap()
}

/// The body's bytes and trailers.
async fn collect(reader: &mut Reader) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = poll_fn(|cx| reader.poll_frame(cx)).await {
        match frame?.into_data() {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    Ok((data, trailers))
}

async fn send(conn: Conn, request: Request<Body>, reused: bool) -> (Response<()>, Reader) {
    match conn.send(request, reused).await {
        Ok((head, Next::Body(reader))) => (head, reader),
        Ok((_, Next::Switched(_))) => panic!("unexpected switch"),
        Err(SendError::Unsent(_, e) | SendError::Failed(e)) => panic!("send failed: {e}"),
    }
}

#[tokio::test]
async fn content_length_answer_is_read_and_the_connection_carries_the_next_request() {
    let (addr, mut requests) = peer(
        vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"),
            Some(b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nnop"),
        ],
        false,
    )
    .await;
    let (head, mut reader) = send(connect(addr).await, get("/one?q=1"), false).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["x-a"], "1");
    assert_eq!(reader.size_hint().exact(), Some(5));
    assert_eq!(collect(&mut reader).await.unwrap().0, b"hello");
    let first = requests.recv().await.unwrap();
    assert!(first.starts_with("GET /one?q=1 HTTP/1.1\r\n"), "{first}");
    assert!(first.contains("host: app.test\r\n"), "{first}");
    // A GET without a body carries no framing header.
    assert!(!first.contains("content-length") && !first.contains("transfer-encoding"));

    let conn = reader
        .take_reusable()
        .expect("reusable after a whole answer");
    let (head, mut reader) = send(conn, get("/two"), true).await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    assert_eq!(collect(&mut reader).await.unwrap().0, b"nop");
    assert!(requests.recv().await.unwrap().starts_with("GET /two "));
}

#[tokio::test]
async fn chunked_answer_with_extensions_and_trailers() {
    let (addr, _requests) = peer(
        vec![Some(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Checksum: abc\r\n\r\n",
        )],
        false,
    )
    .await;
    let (_, mut reader) = send(connect(addr).await, get("/"), false).await;
    assert_eq!(reader.size_hint().exact(), None);
    let (data, trailers) = collect(&mut reader).await.unwrap();
    assert_eq!(data, b"hello world!");
    assert_eq!(trailers.unwrap()["x-checksum"], "abc");
    assert!(reader.take_reusable().is_some());
}

#[tokio::test]
async fn answer_without_length_is_read_until_close_and_not_reused() {
    let (addr, _requests) = peer(
        vec![Some(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it",
        )],
        true,
    )
    .await;
    let (head, mut reader) = send(connect(addr).await, get("/"), false).await;
    assert_eq!(head.version(), Version::HTTP_10);
    assert_eq!(collect(&mut reader).await.unwrap().0, b"all of it");
    assert!(reader.is_end());
    assert!(reader.take_reusable().is_none());
}

#[tokio::test]
async fn connection_close_and_http10_answers_are_not_reused() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"[..],
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let (addr, _requests) = peer(vec![Some(answer)], false).await;
        let (_, mut reader) = send(connect(addr).await, get("/"), false).await;
        assert_eq!(collect(&mut reader).await.unwrap().0, b"ok");
        assert!(reader.take_reusable().is_none(), "{answer:?}");
    }
    let (addr, _requests) = peer(
        vec![Some(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        )],
        false,
    )
    .await;
    let (_, mut reader) = send(connect(addr).await, get("/"), false).await;
    collect(&mut reader).await.unwrap();
    assert!(reader.take_reusable().is_some());
}

#[tokio::test]
async fn head_and_bodiless_statuses_read_no_body() {
    let (addr, _requests) = peer(
        vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
            Some(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n"),
            Some(b"HTTP/1.1 204 No Content\r\n\r\n"),
        ],
        false,
    )
    .await;
    let mut head_request = get("/");
    *head_request.method_mut() = Method::HEAD;
    let (head, mut reader) = send(connect(addr).await, head_request, false).await;
    assert_eq!(head.headers()["content-length"], "1234");
    assert!(reader.is_end());
    let (head, mut reader) = send(reader.take_reusable().unwrap(), get("/"), true).await;
    assert_eq!(head.status(), StatusCode::NOT_MODIFIED);
    assert!(reader.is_end());
    let (head, reader) = send(reader.take_reusable().unwrap(), get("/"), true).await;
    assert_eq!(head.status(), StatusCode::NO_CONTENT);
    assert!(reader.is_end());
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let (addr, _requests) = peer(
        vec![Some(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        )],
        false,
    )
    .await;
    let (head, reader) = send(connect(addr).await, get("/"), false).await;
    assert_eq!(head.status(), StatusCode::CREATED);
    assert!(!head.headers().contains_key("link"));
    assert!(reader.is_end());
}

#[tokio::test]
async fn switching_protocols_hands_over_the_socket_with_what_followed() {
    let (addr, _requests) = peer(
        vec![Some(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi",
        )],
        false,
    )
    .await;
    match connect(addr).await.send(get("/ws"), false).await {
        Ok((head, Next::Switched(upgraded))) => {
            assert_eq!(head.status(), StatusCode::SWITCHING_PROTOCOLS);
            assert_eq!(&upgraded.leftover[..], b"\x81\x02hi");
        }
        other => panic!("expected a switch, got {other:?}"),
    }
}

#[tokio::test]
async fn request_bodies_are_sent_with_the_codec_s_own_length() {
    let (addr, mut requests) = peer(
        vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        false,
    )
    .await;
    // The client's framing headers are replaced by the body's real size.
    let post = Request::post("/upload")
        .header("host", "app.test")
        .header("content-length", "999")
        .header("transfer-encoding", "gzip")
        .body(Body::full("twelve bytes"))
        .unwrap();
    let (_, mut reader) = send(connect(addr).await, post, false).await;
    let seen = requests.recv().await.unwrap();
    assert!(seen.starts_with("POST /upload HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains("content-length: 12\r\n"), "{seen}");
    assert!(
        !seen.contains("999") && !seen.contains("transfer-encoding"),
        "{seen}"
    );
    assert!(seen.ends_with("\r\n\r\ntwelve bytes"), "{seen}");
    // An empty POST still says its length.
    let empty = Request::post("/")
        .header("host", "app.test")
        .body(Body::Empty)
        .unwrap();
    send(reader.take_reusable().unwrap(), empty, true).await;
    assert!(
        requests
            .recv()
            .await
            .unwrap()
            .contains("content-length: 0\r\n")
    );
}

#[tokio::test]
async fn malformed_answers_fail_the_request() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            "conflicting",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "invalid content-length",
        ),
        (b"HTTP/1.1 2000 Nope\r\n\r\n", "invalid"),
        (b"SMTP ready\r\n\r\n", "invalid head"),
    ];
    for (answer, expected) in cases {
        let (addr, _requests) = peer(vec![Some(answer)], false).await;
        match connect(addr).await.send(get("/"), false).await {
            Err(SendError::Failed(error)) => {
                assert!(
                    error.to_string().contains(expected),
                    "{error} for {answer:?}"
                );
            }
            other => panic!("expected a failure for {answer:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn broken_bodies_end_in_an_error_not_in_a_short_success() {
    let cases: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ];
    for answer in cases {
        let (addr, _requests) = peer(vec![Some(answer)], true).await;
        let (_, mut reader) = send(connect(addr).await, get("/"), false).await;
        assert!(collect(&mut reader).await.is_err(), "{answer:?}");
        assert!(reader.take_reusable().is_none());
    }
}

#[tokio::test]
async fn a_reused_connection_the_backend_closed_gives_the_request_back() {
    let (addr, _requests) = peer(
        vec![Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")],
        true,
    )
    .await;
    let (_, mut reader) = send(connect(addr).await, get("/"), false).await;
    collect(&mut reader).await.unwrap();
    let mut conn = reader.take_reusable().unwrap();
    // The peer closes after its one answer; the idle check sees it once
    // the close has arrived.
    let closed = async {
        loop {
            let usable = poll_fn(|cx| Poll::Ready(conn.is_usable(cx))).await;
            if !usable {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), closed)
        .await
        .expect("the close is noticed");
    match conn.send(get("/again"), true).await {
        Err(SendError::Unsent(request, _)) => assert_eq!(request.uri(), "/again"),
        other => panic!("expected the request back, got {other:?}"),
    }
}

#[tokio::test]
async fn an_answer_before_the_whole_upload_wins_and_closes_the_connection() {
    // The peer answers as soon as it has the head.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = socket.read(&mut buf).await.unwrap();
        socket
            .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let _ = socket.read(&mut buf).await;
    });
    // More than the socket buffers hold: the upload stalls, unread.
    let upload = Request::post("/big")
        .header("host", "app.test")
        .body(Body::full(vec![0u8; 32 << 20]))
        .unwrap();
    let (head, mut reader) = send(connect(addr).await, upload, false).await;
    assert_eq!(head.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reader.is_end());
    assert!(reader.take_reusable().is_none());
}

#[test]
fn chunk_size_lines() {
    assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
    assert_eq!(parse_chunk_size(b"FF;ext=1").unwrap(), 255);
    assert_eq!(parse_chunk_size(b"0").unwrap(), 0);
    for bad in [&b""[..], b"g", b"-1", b"1 2", b"1234567890abcdef0"] {
        assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
    }
}
