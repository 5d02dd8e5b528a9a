//! Fuzz target for the HTTP/1.1 codec toward backends
//! (`host/src/http/h1/codec.rs`, compiled here as it is): arbitrary bytes
//! as a backend's answer — head, framing, body, chunked encoding,
//! trailers — fed whole, one byte at a time, and in pieces of arbitrary
//! sizes, the way the connection reads them. Checks: no panic, no step
//! that neither progresses nor asks for more, every decoded body within
//! what was sent, and the same outcome however the bytes were cut (except
//! where a size limit is, by design, applied to what is buffered).
//! Seeds: `seeds/h1_answer/`.

#![no_main]

use bytes::{Buf, BytesMut};
use http::Method;
use libfuzzer_sys::fuzz_target;

#[path = "../../src/http/h1/codec.rs"]
#[allow(dead_code)]
mod codec;

use codec::{Framing, MAX_HEAD, Malformed, Step};

/// What the codec made of one answer, comparable across cuttings.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    trailers: Option<Vec<(String, Vec<u8>)>>,
    /// The body ended by its framing (not by running out of input).
    complete: bool,
}

type Outcome = Result<Option<Answer>, Malformed>;

/// Decodes `data` as an answer to `method`, handed over in pieces whose
/// sizes `next_size` gives, as `Conn` and `Reader` do.
fn run(data: &[u8], method: &Method, mut next_size: impl FnMut() -> usize) -> Outcome {
    let mut rest = data;
    let mut buf = BytesMut::new();
    let mut feed = |buf: &mut BytesMut| -> bool {
        if rest.is_empty() {
            return false;
        }
        let (piece, tail) = rest.split_at(next_size().clamp(1, rest.len()));
        buf.extend_from_slice(piece);
        rest = tail;
        true
    };
    // The final head, interim (1xx other than 101) answers skipped.
    let head = loop {
        match codec::parse_head(&mut buf)? {
            Some(head) if head.status.is_informational() && head.status.as_u16() != 101 => {}
            Some(head) => break head,
            None => {
                if buf.len() >= MAX_HEAD {
                    return Err(Malformed("head too large"));
                }
                if !feed(&mut buf) {
                    return Ok(None);
                }
            }
        }
    };
    let mut answer = Answer {
        status: head.status.as_u16(),
        headers: pairs(&head.headers),
        body: Vec::new(),
        trailers: None,
        complete: false,
    };
    let _ = codec::keeps_alive(head.version, &head.headers);
    if head.status.as_u16() == 101 {
        answer.complete = true;
        return Ok(Some(answer));
    }
    let mut framing = codec::answer_framing(method, head.status, &head.headers)?;
    loop {
        match framing {
            Framing::Done => {
                answer.complete = true;
                break;
            }
            Framing::Length(left) => {
                if buf.is_empty() && !feed(&mut buf) {
                    break;
                }
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                answer.body.extend_from_slice(&buf[..n]);
                buf.advance(n);
                let left = left - n as u64;
                framing = if left == 0 {
                    Framing::Done
                } else {
                    Framing::Length(left)
                };
            }
            Framing::Close => {
                answer.body.extend_from_slice(&buf);
                buf.clear();
                if !feed(&mut buf) {
                    break;
                }
            }
            Framing::Chunked(state) => {
                let before = (buf.len(), state);
                match codec::chunk_step(&mut buf, state)? {
                    Step::Next(next) => {
                        assert!(
                            next != Framing::Chunked(state) || buf.len() < before.0,
                            "a chunked step made no progress in {state:?}"
                        );
                        framing = next;
                    }
                    Step::Data(data, next) => {
                        assert!(!data.is_empty(), "empty data step in {state:?}");
                        answer.body.extend_from_slice(&data);
                        framing = next;
                    }
                    Step::Trailers(trailers) => {
                        answer.trailers = Some(pairs(&trailers));
                        framing = Framing::Done;
                    }
                    Step::More => {
                        if !feed(&mut buf) {
                            break;
                        }
                    }
                }
            }
        }
    }
    assert!(answer.body.len() <= data.len());
    Ok(Some(answer))
}

fn pairs(headers: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// Errors from a limit on what is buffered: whether they happen depends
/// on how much arrived at once, by design.
fn is_buffer_limit(outcome: &Outcome) -> bool {
    matches!(outcome, Err(Malformed(m)) if m.contains("too large") || m.contains("too long"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let method = if control & 1 == 1 {
        Method::HEAD
    } else {
        Method::GET
    };
    // Piece sizes from a small generator seeded by the control byte.
    let mut state = u32::from(control) | 0x100;
    let arbitrary = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 23) as usize + 1
    };
    let whole = run(bytes, &method, || usize::MAX);
    let ones = run(bytes, &method, || 1);
    let pieces = run(bytes, &method, arbitrary);
    if [&whole, &ones, &pieces].iter().any(|o| is_buffer_limit(o)) {
        return;
    }
    assert_eq!(whole, ones, "whole vs one byte at a time");
    assert_eq!(whole, pieces, "whole vs arbitrary pieces");
});
