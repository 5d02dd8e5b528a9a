//! The backend codec against a scripted peer on a real loopback socket:
//! each test server reads whole request heads (and `Content-Length`
//! bodies) and writes the answer bytes it was given, so the framing cases
//! a real backend may send are exact.

use std::future::poll_fn;

use http::{Request, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::codec::{Chunk, parse_chunk_size};
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

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs the chunked decoder over `input` arriving in pieces cut at `cuts`,
/// as the reader does: step while it can, add the next piece when it asks
/// for more; running out of input is a close.
fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
    let end = input.len();
    let mut pieces = cuts
        .iter()
        .chain(std::iter::once(&end))
        .scan(0, |start, &end| {
            let piece = &input[*start..end];
            *start = end;
            Some(piece)
        });
    let mut buf = BytesMut::new();
    let mut state = Framing::Chunked(Chunk::Size);
    let mut data = Vec::new();
    let mut trailers = None;
    loop {
        let Framing::Chunked(chunk) = state else {
            return Ok((data, trailers));
        };
        match chunk_step(&mut buf, chunk)? {
            Step::Next(next) => state = next,
            Step::Data(bytes, next) => {
                data.extend_from_slice(&bytes);
                state = next;
            }
            Step::Trailers(map) => {
                trailers = Some(map);
                state = Framing::Done;
            }
            Step::More => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => return Err(Error::Closed),
            },
        }
    }
}

#[test]
fn chunked_bodies_decode_exactly_however_they_are_cut() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..500 {
        let data: Vec<u8> = (0..rng.below(3000)).map(|_| rng.next() as u8).collect();
        let mut wire = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(700)).min(rest.len());
            let extension = if rng.below(4) == 0 { ";a=b" } else { "" };
            let size = if rng.below(2) == 0 {
                format!("{n:x}")
            } else {
                format!("{n:X}")
            };
            wire.extend_from_slice(format!("{size}{extension}\r\n").as_bytes());
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        let with_trailers = rng.below(3) == 0;
        wire.extend_from_slice(if with_trailers {
            b"0\r\nx-sum: 1\r\nx-n: 2\r\n\r\n"
        } else {
            b"0\r\n\r\n"
        });
        let mut cuts: Vec<usize> = (0..rng.below(20)).map(|_| rng.below(wire.len())).collect();
        cuts.sort_unstable();
        let (decoded, trailers) = decode_in_pieces(&wire, &cuts)
            .unwrap_or_else(|e| panic!("case {case}: {e} (cuts {cuts:?})"));
        assert_eq!(decoded, data, "case {case} (cuts {cuts:?})");
        assert_eq!(trailers.is_some(), with_trailers, "case {case}");
        if let Some(trailers) = trailers {
            assert_eq!(trailers["x-n"], "2");
        }
    }
}

#[test]
fn damaged_chunked_bodies_end_without_a_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let valid = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-a: b\r\n\r\n";
    let mut errors = 0;
    for _ in 0..5000 {
        let mut wire = valid.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(wire.len());
            match rng.below(3) {
                0 => wire[at] = rng.next() as u8,
                1 => {
                    wire.remove(at);
                }
                _ => wire.insert(at, rng.next() as u8),
            }
        }
        let cuts: Vec<usize> = {
            let mut c: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(wire.len())).collect();
            c.sort_unstable();
            c
        };
        // Any outcome but a panic or a hang; a success never yields more
        // than the input held.
        match decode_in_pieces(&wire, &cuts) {
            Ok((data, _)) => assert!(data.len() <= wire.len()),
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 0, "damage must be noticed some of the time");
}
