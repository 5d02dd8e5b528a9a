//! `Reader`: the TLS record layer in front of `parse.rs`. It buffers every byte pushed
//! (for replay to a passthrough backend or to rustls), walks complete records only, and
//! gathers a ClientHello that spans several records. Errors are in `error.rs`.

use crate::parse::{HANDSHAKE_CLIENT_HELLO, HANDSHAKE_HEADER_LEN, parse_client_hello};
use crate::{ClientHello, HelloError, NotTlsHint};

/// Incremental ClientHello reader: push bytes as they arrive from the socket.
///
/// Work is O(total bytes) however the input is chunked: a push that does not complete a
/// TLS record only checks the record header (and, in the first record, the handshake
/// header) again, and each record's payload is examined once.
///
/// Once a hello has been returned, further pushes append to [`buffered`](Self::buffered)
/// and return the same hello again; once an error has been returned, further pushes
/// return that error and buffer nothing more.
#[derive(Debug)]
pub struct Reader {
    /// Every byte pushed so far.
    buf: Vec<u8>,
    max_bytes: usize,
    /// Offset in `buf` of the first record header not yet consumed.
    next_record: usize,
    /// Handshake payload gathered from completed records, when the message spans records.
    handshake: Vec<u8>,
    state: State,
}

#[derive(Debug)]
enum State {
    Reading,
    /// The hello was returned; it is parsed again from here if asked for again, so the
    /// first (and, on the edge, only) answer moves it out without a copy.
    Done(Message),
    Failed(HelloError),
}

/// Where the complete ClientHello message lies.
#[derive(Debug, Clone)]
enum Message {
    /// In one record, in place: `buf[range]`.
    InRecord(std::ops::Range<usize>),
    /// Gathered from several records: `handshake[..len]`.
    Gathered(usize),
}

/// TLSPlaintext header: type (1), legacy_record_version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;
/// "The length MUST NOT exceed 2^14 bytes" (RFC 8446 section 5.1).
const MAX_RECORD_PAYLOAD: usize = 1 << 14;
/// ContentType handshake(22).
const CONTENT_HANDSHAKE: u8 = 22;
/// ContentTypes change_cipher_spec(20), alert(21), application_data(23), heartbeat(24):
/// TLS, but not what may open a connection.
const OTHER_CONTENT_TYPES: [u8; 4] = [20, 21, 23, 24];
/// Every TLS and SSL 3.0 record version starts with major version 3.
const RECORD_VERSION_MAJOR: u8 = 3;
/// SSL 3.0 (minor 0) is refused; TLS 1.0..1.2 record versions (minor 1..=3) are what
/// clients put on a ClientHello record (RFC 8446 section 5.1 allows 0x0301 and 0x0303).
const SSL3_MINOR: u8 = 0;
const RECORD_VERSION_MINORS: std::ops::RangeInclusive<u8> = 1..=3;

// === impl Reader ===

impl Reader {
    /// A reader that fails with [`HelloError::TooLarge`] once completing the ClientHello
    /// would take more than `max_bytes` bytes of records.
    pub fn new(max_bytes: usize) -> Reader {
        Reader {
            buf: Vec::new(),
            max_bytes,
            next_record: 0,
            handshake: Vec::new(),
            state: State::Reading,
        }
    }

    /// Appends bytes read from the socket. `Ok(None)`: need more bytes. `Ok(Some(hello))`:
    /// a complete ClientHello handshake message was parsed (bytes after it stay in
    /// [`buffered`](Self::buffered)). `Err`: the connection must be closed.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<ClientHello>, HelloError> {
        match &self.state {
            State::Reading => {}
            State::Done(message) => {
                let message = message.clone();
                self.buf.extend_from_slice(data);
                return self.parse(&message).map(Some);
            }
            State::Failed(e) => return Err(e.clone()),
        }
        self.buf.extend_from_slice(data);
        let parsed = match self.advance() {
            Ok(None) => return Ok(None),
            Ok(Some(message)) => {
                let parsed = self.parse(&message);
                if parsed.is_ok() {
                    self.state = State::Done(message);
                }
                parsed
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &parsed {
            self.state = State::Failed(e.clone());
        }
        parsed.map(Some)
    }

    fn parse(&self, message: &Message) -> Result<ClientHello, HelloError> {
        match message {
            Message::InRecord(range) => parse_client_hello(&self.buf[range.clone()]),
            Message::Gathered(len) => parse_client_hello(&self.handshake[..*len]),
        }
    }

    /// Everything pushed so far, byte for byte.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Everything pushed so far, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The error to report when the stream ends (EOF) before [`push`](Self::push)
    /// returned a hello: [`HelloError::Truncated`] with the byte count, or the error
    /// `push` already returned.
    pub fn finish(&self) -> HelloError {
        match &self.state {
            State::Failed(e) => e.clone(),
            State::Reading | State::Done(_) => HelloError::Truncated {
                received: self.buf.len(),
            },
        }
    }

    /// Consumes every complete record; returns where the hello's message lies once its
    /// last byte is in.
    fn advance(&mut self) -> Result<Option<Message>, HelloError> {
        loop {
            let start = self.next_record;
            let Some(header) = self.buf[start..].first_chunk::<RECORD_HEADER_LEN>() else {
                return self.need_more();
            };
            let len = record_header(header, start == 0)?;
            let end = start + RECORD_HEADER_LEN + len;
            if end > self.max_bytes {
                return Err(self.too_large());
            }
            if self.buf.len() < end {
                // Peek at the handshake header in a partial first record to fail early.
                // Once complete, this record brings `len` bytes of the message.
                if self.handshake.is_empty() {
                    let partial = &self.buf[start + RECORD_HEADER_LEN..];
                    if let Some(hs) = partial.first_chunk::<HANDSHAKE_HEADER_LEN>() {
                        self.check_handshake_header(hs, end, len)?;
                    }
                }
                return self.need_more();
            }
            self.next_record = end;
            let payload = &self.buf[start + RECORD_HEADER_LEN..end];

            // Common case: the whole message sits in this one record; parse it in place.
            if self.handshake.is_empty()
                && let Some(hs) = payload.first_chunk::<HANDSHAKE_HEADER_LEN>()
            {
                let msg_len = self.check_handshake_header(hs, end, payload.len())?;
                if payload.len() >= msg_len {
                    let from = start + RECORD_HEADER_LEN;
                    return Ok(Some(Message::InRecord(from..from + msg_len)));
                }
            }
            self.handshake.extend_from_slice(payload);
            match self.handshake.first_chunk::<HANDSHAKE_HEADER_LEN>() {
                Some(hs) => {
                    let hs = *hs;
                    let msg_len = self.check_handshake_header(&hs, end, self.handshake.len())?;
                    if self.handshake.len() >= msg_len {
                        return Ok(Some(Message::Gathered(msg_len)));
                    }
                }
                None => {
                    let missing = HANDSHAKE_HEADER_LEN - self.handshake.len();
                    if end + RECORD_HEADER_LEN + missing > self.max_bytes {
                        return Err(self.too_large());
                    }
                }
            }
        }
    }

    /// Checks a handshake header seen in records ending at `records_end` with `have`
    /// bytes of the message already known, and returns the message's total length.
    fn check_handshake_header(
        &self,
        hs: &[u8; HANDSHAKE_HEADER_LEN],
        records_end: usize,
        have: usize,
    ) -> Result<usize, HelloError> {
        if hs[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(HelloError::NotClientHello { msg_type: hs[0] });
        }
        let msg_len = HANDSHAKE_HEADER_LEN
            + (usize::from(hs[1]) << 16 | usize::from(hs[2]) << 8 | usize::from(hs[3]));
        // Bytes still needed: the rest of the message, in at least one more record.
        let needed = match msg_len.checked_sub(have) {
            Some(0) | None => records_end,
            Some(missing) => records_end + RECORD_HEADER_LEN + missing,
        };
        if needed > self.max_bytes {
            return Err(self.too_large());
        }
        Ok(msg_len)
    }

    /// Nothing complete yet: fine unless the bytes so far already reach the limit.
    fn need_more(&self) -> Result<Option<Message>, HelloError> {
        if self.buf.len() >= self.max_bytes {
            return Err(self.too_large());
        }
        Ok(None)
    }

    fn too_large(&self) -> HelloError {
        HelloError::TooLarge {
            limit: self.max_bytes,
        }
    }
}

/// Validates a record header and returns its payload length. On the connection's first
/// record, bytes that are not a TLS record at all are told apart from other TLS records.
fn record_header(h: &[u8; RECORD_HEADER_LEN], first: bool) -> Result<usize, HelloError> {
    let [content_type, major, minor, len_hi, len_lo] = *h;
    if major != RECORD_VERSION_MAJOR
        || !(content_type == CONTENT_HANDSHAKE || OTHER_CONTENT_TYPES.contains(&content_type))
    {
        return Err(if first {
            HelloError::NotTls(NotTlsHint::classify(h))
        } else {
            HelloError::Malformed("record header")
        });
    }
    if content_type != CONTENT_HANDSHAKE {
        return Err(HelloError::NotHandshake { content_type });
    }
    if minor == SSL3_MINOR {
        return Err(HelloError::ObsoleteVersion(u16::from_be_bytes([
            major, minor,
        ])));
    }
    if !RECORD_VERSION_MINORS.contains(&minor) {
        return Err(HelloError::Malformed("record version"));
    }
    let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if len == 0 || len > MAX_RECORD_PAYLOAD {
        return Err(HelloError::Malformed("record length"));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{HelloBuilder, records};

    const LIMIT: usize = 16 * 1024;

    fn push_all(r: &mut Reader, chunks: &[&[u8]]) -> Result<Option<ClientHello>, HelloError> {
        let mut last = Ok(None);
        for c in chunks {
            last = r.push(c);
        }
        last
    }

    #[test]
    fn one_record_one_push() {
        let msg = HelloBuilder::new().sni("one.example").build();
        let wire = records(&msg, &[msg.len()]);
        let mut r = Reader::new(LIMIT);
        let h = r.push(&wire).unwrap().unwrap();
        assert_eq!(h.server_name.as_deref(), Some("one.example"));
        assert_eq!(r.buffered(), &wire[..]);
    }

    #[test]
    fn byte_at_a_time_across_many_records_matches_one_shot() {
        let msg = HelloBuilder::new()
            .sni("split.example")
            .key_shares(&[(0x11ec, 1216)])
            .build();
        let want = parse_client_hello(&msg).unwrap();
        for sizes in [vec![1, 2, 3], vec![4], vec![100, 1], vec![msg.len() - 1]] {
            let wire = records(&msg, &sizes);
            let mut r = Reader::new(LIMIT);
            for (i, b) in wire.iter().enumerate() {
                let got = r.push(std::slice::from_ref(b)).unwrap();
                assert_eq!(got.is_some(), i == wire.len() - 1, "byte {i} of {sizes:?}");
                if let Some(h) = got {
                    assert_eq!(h, want);
                }
            }
            assert_eq!(r.into_bytes(), wire);
        }
    }

    #[test]
    fn trailing_bytes_stay_buffered() {
        let msg = HelloBuilder::new().build();
        let mut wire = records(&msg, &[msg.len()]);
        wire.extend_from_slice(&[23, 3, 3, 0, 2, 0xaa, 0xbb]);
        let mut r = Reader::new(LIMIT);
        assert!(r.push(&wire).unwrap().is_some());
        assert!(r.push(b"more").unwrap().is_some());
        assert_eq!(r.buffered().len(), wire.len() + 4);
    }

    #[test]
    fn non_tls_openers_get_hints() {
        let cases: [(&[u8], HelloError); 6] = [
            (b"GET / HTTP/1.1\r\n", HelloError::NotTls(NotTlsHint::Http)),
            (
                b"SSH-2.0-OpenSSH_9.2\r\n",
                HelloError::NotTls(NotTlsHint::Ssh),
            ),
            (
                &[0x80, 0x2e, 0x01, 0x03, 0x01],
                HelloError::NotTls(NotTlsHint::Sslv2),
            ),
            (
                &[0x16, 0x02, 0x00, 0x00, 0x10],
                HelloError::NotTls(NotTlsHint::Unknown),
            ),
            (
                &[21, 3, 3, 0, 2, 2, 40],
                HelloError::NotHandshake { content_type: 21 },
            ),
            (
                &[22, 3, 0, 0, 4, 1, 0, 0, 0],
                HelloError::ObsoleteVersion(0x0300),
            ),
        ];
        for (bytes, want) in cases {
            let mut r = Reader::new(LIMIT);
            assert_eq!(r.push(bytes), Err(want.clone()), "{bytes:?}");
            assert_eq!(r.push(b"x"), Err(want.clone()), "sticky");
            assert_eq!(r.finish(), want);
        }
    }

    #[test]
    fn waits_for_a_full_record_header_before_judging() {
        let mut r = Reader::new(LIMIT);
        assert_eq!(r.push(b"GET"), Ok(None));
        assert_eq!(r.finish(), HelloError::Truncated { received: 3 });
        assert_eq!(Reader::new(LIMIT).finish().kind(), "empty");
        assert_eq!(r.push(b" /"), Err(HelloError::NotTls(NotTlsHint::Http)));
    }

    #[test]
    fn record_layer_errors() {
        let msg = HelloBuilder::new().build();
        let mut zero = vec![22, 3, 1, 0, 0];
        zero.extend(records(&msg, &[msg.len()]));
        let mut wrong_later = records(&msg[..10], &[10]);
        wrong_later.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        let mut bad_version = records(&msg, &[msg.len()]);
        bad_version[2] = 5;
        let cases = [
            (zero, HelloError::Malformed("record length")),
            (
                vec![22, 3, 1, 0x40, 0x01],
                HelloError::Malformed("record length"),
            ),
            (wrong_later, HelloError::NotHandshake { content_type: 21 }),
            (bad_version, HelloError::Malformed("record version")),
            (
                vec![22, 3, 1, 0, 4, 2, 0, 0, 0],
                HelloError::NotClientHello { msg_type: 2 },
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(Reader::new(LIMIT).push(&wire), Err(want));
        }
    }

    #[test]
    fn announced_lengths_over_the_limit_fail_before_the_bytes_arrive() {
        // A record announcing 16 KiB against a 1 KiB limit: refused from its header alone.
        let mut r = Reader::new(1024);
        assert_eq!(
            r.push(&[22, 3, 1, 0x40, 0x00]),
            Err(HelloError::TooLarge { limit: 1024 })
        );
        // A small first record whose handshake header announces 64 KiB.
        let mut r = Reader::new(1024);
        assert_eq!(
            r.push(&[22, 3, 1, 0, 200, 1, 1, 0, 0]),
            Err(HelloError::TooLarge { limit: 1024 })
        );
        // Junk that never completes a record still stops at the limit.
        let mut r = Reader::new(8);
        assert_eq!(r.push(&[22, 3, 1]), Ok(None));
        assert_eq!(
            r.push(&[0, 1, 1, 0, 0]),
            Err(HelloError::TooLarge { limit: 8 })
        );
    }

    #[test]
    fn limit_just_above_the_hello_holds_when_fed_byte_by_byte() {
        // Found by the fuzz target: the partial-record peek counted only the bytes that
        // had arrived, as if the rest of the message needed another record.
        let msg = HelloBuilder::new().sni("peek.example").build();
        let wire = records(&msg, &[msg.len()]);
        for limit in [wire.len(), wire.len() + 4] {
            let mut r = Reader::new(limit);
            let outcomes: Vec<_> = wire
                .iter()
                .map(|b| r.push(std::slice::from_ref(b)))
                .collect();
            assert!(
                outcomes[..wire.len() - 1].iter().all(|o| *o == Ok(None)),
                "limit {limit}"
            );
            assert!(
                matches!(outcomes.last(), Some(Ok(Some(_)))),
                "limit {limit}"
            );
        }
    }

    #[test]
    fn limit_is_about_the_hello_not_what_follows_it() {
        let msg = HelloBuilder::new().build();
        let wire = records(&msg, &[40, 40, 40]);
        assert!(Reader::new(wire.len()).push(&wire).unwrap().is_some());
        assert_eq!(
            Reader::new(wire.len() - 1).push(&wire),
            Err(HelloError::TooLarge {
                limit: wire.len() - 1
            })
        );
        let mut with_tail = wire.clone();
        with_tail.extend_from_slice(&[0; 100]);
        assert!(Reader::new(wire.len()).push(&with_tail).unwrap().is_some());
    }

    #[test]
    fn one_byte_records_cost_linear_work() {
        let msg = HelloBuilder::new().ext(0xff00, &[0; 4000]).build();
        let wire = records(&msg, &[1]);
        let mut r = Reader::new(wire.len());
        assert!(
            push_all(&mut r, &wire.chunks(7).collect::<Vec<_>>())
                .unwrap()
                .is_some()
        );
    }
}
