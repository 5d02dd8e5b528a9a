//! Test-only builders: a ClientHello message writer and a record framer, so unit tests
//! in `parse.rs`, `reader.rs` and `ja4.rs` can state their input field by field.

/// Writes a ClientHello handshake message (header included) field by field.
pub(crate) struct HelloBuilder {
    ciphers: Vec<u16>,
    extensions: Option<Vec<u8>>,
    trailing: Vec<u8>,
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn with_len16(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

impl HelloBuilder {
    pub(crate) fn new() -> Self {
        HelloBuilder {
            ciphers: vec![0x1301, 0xc02f],
            extensions: Some(Vec::new()),
            trailing: Vec::new(),
        }
    }

    pub(crate) fn no_extensions(mut self) -> Self {
        self.extensions = None;
        self
    }

    pub(crate) fn ciphers(mut self, c: &[u16]) -> Self {
        self.ciphers = c.to_vec();
        self
    }

    pub(crate) fn trailing(mut self, t: &[u8]) -> Self {
        self.trailing = t.to_vec();
        self
    }

    pub(crate) fn ext(mut self, typ: u16, data: &[u8]) -> Self {
        let e = self.extensions.get_or_insert_with(Vec::new);
        e.extend_from_slice(&typ.to_be_bytes());
        e.extend_from_slice(&with_len16(data));
        self
    }

    pub(crate) fn sni(self, name: &str) -> Self {
        let mut entry = vec![0];
        entry.extend(with_len16(name.as_bytes()));
        self.ext(0x0000, &with_len16(&entry))
    }

    pub(crate) fn alpn(self, protocols: &[&[u8]]) -> Self {
        let mut list = Vec::new();
        for p in protocols {
            list.push(p.len() as u8);
            list.extend_from_slice(p);
        }
        self.ext(0x0010, &with_len16(&list))
    }

    pub(crate) fn versions(self, v: &[u16]) -> Self {
        let mut data = vec![(v.len() * 2) as u8];
        data.extend(u16s(v));
        self.ext(0x002b, &data)
    }

    pub(crate) fn groups(self, g: &[u16]) -> Self {
        self.ext(0x000a, &with_len16(&u16s(g)))
    }

    pub(crate) fn sigalgs(self, s: &[u16]) -> Self {
        self.ext(0x000d, &with_len16(&u16s(s)))
    }

    pub(crate) fn key_shares(self, shares: &[(u16, usize)]) -> Self {
        let mut list = Vec::new();
        for (group, len) in shares {
            list.extend_from_slice(&group.to_be_bytes());
            list.extend(with_len16(&vec![0x42; *len]));
        }
        self.ext(0x0033, &with_len16(&list))
    }

    pub(crate) fn build(self) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(32);
        body.extend_from_slice(&[9; 32]);
        body.extend(with_len16(&u16s(&self.ciphers)));
        body.extend_from_slice(&[1, 0]);
        if let Some(e) = &self.extensions {
            body.extend(with_len16(e));
        }
        body.extend_from_slice(&self.trailing);
        let len = body.len() as u32;
        let mut msg = vec![1, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        msg.extend(body);
        msg
    }
}

/// Frames `msg` into handshake records of the given payload sizes, the last size
/// repeating until the message is used up.
pub(crate) fn records(msg: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = msg;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes[i.min(sizes.len() - 1)].min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        out.extend_from_slice(&[22, 3, 1]);
        out.extend(with_len16(chunk));
        rest = tail;
        i += 1;
    }
    out
}
