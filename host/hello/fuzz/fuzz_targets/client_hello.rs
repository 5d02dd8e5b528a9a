//! Fuzz target for `hearth-edge-hello`: arbitrary bytes, as the wire would deliver them,
//! fed to `Reader` in several chunkings and limits, and to `parse_client_hello` directly.
//! Checks: no panic, `buffered()` is exactly what was pushed, and the outcome does not
//! depend on how the bytes were cut (only a byte-limit error may replace another error).
//! Seeds: `seeds/client_hello/` (copies of the captured fixtures, refreshed by
//! `testdata/capture.sh`).

#![no_main]

use hearth_edge_hello::{ClientHello, HelloError, Reader, parse_client_hello};
use libfuzzer_sys::fuzz_target;

/// The edge's order of magnitude for its ClientHello limit.
const LIMIT: usize = 16 * 1024;
/// JA4 strings are always `t` + 9 characters + `_` + 12 + `_` + 12.
const JA4_LEN: usize = 36;

type Outcome = Result<Option<ClientHello>, HelloError>;

/// Pushes `data` cut at the given sizes (cycling); stops at the first hello or error.
fn run(data: &[u8], limit: usize, mut next_size: impl FnMut() -> usize) -> Outcome {
    let mut reader = Reader::new(limit);
    let mut rest = data;
    let mut pushed = 0;
    let mut outcome = Ok(None);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(next_size().clamp(1, rest.len()));
        rest = tail;
        pushed += chunk.len();
        outcome = reader.push(chunk);
        if !matches!(outcome, Ok(None)) {
            break;
        }
    }
    if outcome.is_ok() {
        assert_eq!(reader.buffered(), &data[..pushed]);
    }
    if let Ok(Some(hello)) = &outcome {
        assert_eq!(hello.ja4.len(), JA4_LEN, "{}", hello.ja4);
        assert!(hello.hello_bytes as usize <= reader.buffered().len());
    }
    outcome
}

/// Same outcome class; same hello; same error unless one side hit the byte limit first.
fn agree(a: &Outcome, b: &Outcome) {
    match (a, b) {
        (Ok(x), Ok(y)) => assert_eq!(x, y),
        (Err(HelloError::TooLarge { .. }), Err(_)) | (Err(_), Err(HelloError::TooLarge { .. })) => {
        }
        (Err(x), Err(y)) => assert_eq!(x, y),
        _ => panic!("chunking changed the outcome: {a:?} vs {b:?}"),
    }
}

/// FNV-1a over the input: a chunking seed that follows the bytes.
fn seed(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_client_hello(data);

    let whole = run(data, LIMIT, || usize::MAX);
    agree(&whole, &run(data, LIMIT, || 1));
    let mut state = seed(data) | 1;
    agree(
        &whole,
        &run(data, LIMIT, || {
            // xorshift64: pseudo-random chunk sizes of 1..=64 bytes.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 64) as usize + 1
        }),
    );

    // A limit somewhere inside the input exercises the early TooLarge paths.
    let small = (seed(data) % (data.len() as u64 + 8)) as usize;
    agree(&run(data, small, || usize::MAX), &run(data, small, || 1));
});
