//! Where each field of a YAML config is written: a second, lightweight pass
//! over the text that maps field paths (`limits.idle_timeout`,
//! `tls.certificates[0].cert`, `listen[1]`) to their line and column, so
//! errors found after parsing (validation, file checks) can still name a
//! line. It understands the block style used in configs plus one-line flow
//! collections (`{ a: 1, b: [x, y] }`); anything fancier just maps to the
//! nearest enclosing field it did understand.
//!
//! Paths are spelled like `serde_path_to_error` spells them. Used by
//! `config.rs` (error construction).

use std::collections::HashMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// Field path → where its key (or sequence item) starts.
#[derive(Debug, Default)]
pub struct Locations {
    fields: HashMap<String, Position>,
}

/// One open block collection while scanning.
struct Frame {
    /// Column of the key or `-` that opened it.
    column: usize,
    /// Its path.
    path: String,
    /// Next sequence index for `-` items under it.
    next_index: usize,
    /// True for a `-` item frame.
    item: bool,
}

impl Locations {
    /// Scans `text`.
    pub fn scan(text: &str) -> Locations {
        let mut locations = Locations::default();
        let mut stack: Vec<Frame> = Vec::new();
        for (line_index, raw_line) in text.lines().enumerate() {
            let line_no = line_index + 1;
            let line = strip_comment(raw_line);
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with("---") || trimmed.starts_with("...") {
                continue;
            }
            let mut column = line.len() - trimmed.len();
            let mut rest = trimmed.trim_end();
            loop {
                if rest == "-" || rest.starts_with("- ") {
                    // A sequence item: its parent is the nearest key at a
                    // smaller column, or at the same column (compact style).
                    while stack
                        .last()
                        .is_some_and(|f| f.column > column || (f.item && f.column == column))
                    {
                        stack.pop();
                    }
                    let path = match stack.last_mut() {
                        Some(parent) => {
                            let p = format!("{}[{}]", parent.path, parent.next_index);
                            parent.next_index += 1;
                            p
                        }
                        None => String::new(),
                    };
                    let after = &rest[1..];
                    let skipped = after.len() - after.trim_start().len();
                    let item_column = column + 1 + skipped;
                    locations.insert(&path, line_no, item_column + 1);
                    stack.push(Frame {
                        column,
                        path,
                        next_index: 0,
                        item: true,
                    });
                    rest = after.trim_start();
                    column = item_column;
                    if rest.is_empty() {
                        break;
                    }
                    continue;
                }
                if rest.starts_with('{') || rest.starts_with('[') {
                    let base = stack.last().map(|f| f.path.clone()).unwrap_or_default();
                    let mut flow = FlowScanner {
                        locations: &mut locations,
                        line: line_no,
                    };
                    flow.scan(rest, column, &base);
                    break;
                }
                if let Some((key, value, value_offset)) = split_key(rest) {
                    while stack.last().is_some_and(|f| f.column >= column) {
                        stack.pop();
                    }
                    let path = join(stack.last().map(|f| f.path.as_str()).unwrap_or(""), &key);
                    locations.insert(&path, line_no, column + 1);
                    if value.starts_with('{') || value.starts_with('[') {
                        let mut flow = FlowScanner {
                            locations: &mut locations,
                            line: line_no,
                        };
                        flow.scan(value, column + value_offset, &path);
                    }
                    stack.push(Frame {
                        column,
                        path,
                        next_index: 0,
                        item: false,
                    });
                }
                break;
            }
        }
        locations
    }

    /// Where `path` is written, or else its nearest written ancestor.
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(position) = self.fields.get(path) {
                return Some(*position);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    fn insert(&mut self, path: &str, line: usize, column: usize) {
        if !path.is_empty() {
            self.fields
                .entry(path.to_owned())
                .or_insert(Position { line, column });
        }
    }
}

/// Scans one-line flow collections, recording keys and items.
struct FlowScanner<'a> {
    locations: &'a mut Locations,
    line: usize,
}

impl FlowScanner<'_> {
    /// `text` starts with `{` or `[` at 0-based `column`; records the paths
    /// under `base`.
    fn scan(&mut self, text: &str, column: usize, base: &str) {
        self.value(text.as_bytes(), 0, column, base);
    }

    /// Reads one value at `i`; returns the index after it.
    fn value(&mut self, bytes: &[u8], i: usize, column: usize, path: &str) -> usize {
        let mut i = skip_spaces(bytes, i);
        match bytes.get(i) {
            Some(b'{') => {
                i += 1;
                loop {
                    i = skip_spaces(bytes, i);
                    match bytes.get(i) {
                        None => return i,
                        Some(b'}') => return i + 1,
                        Some(b',') => {
                            i += 1;
                            continue;
                        }
                        Some(_) => {}
                    }
                    let end = scalar_end(bytes, i).max(i + 1);
                    let key = unquote(&String::from_utf8_lossy(&bytes[i..end]));
                    let key_path = join(path, &key);
                    self.locations.insert(&key_path, self.line, column + i + 1);
                    i = skip_spaces(bytes, end);
                    if bytes.get(i) == Some(&b':') {
                        i = self.value(bytes, i + 1, column, &key_path);
                    }
                }
            }
            Some(b'[') => {
                i += 1;
                let mut index = 0;
                loop {
                    i = skip_spaces(bytes, i);
                    match bytes.get(i) {
                        None => return i,
                        Some(b']') => return i + 1,
                        Some(b',') => {
                            i += 1;
                            continue;
                        }
                        Some(_) => {}
                    }
                    let item_path = format!("{path}[{index}]");
                    self.locations.insert(&item_path, self.line, column + i + 1);
                    index += 1;
                    i = self.value(bytes, i, column, &item_path).max(i + 1);
                }
            }
            Some(_) => scalar_end(bytes, i),
            None => i,
        }
    }
}

fn skip_spaces(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
        i += 1;
    }
    i
}

/// `a: b` → (key, value, byte offset of the value). Quoted keys allowed.
fn split_key(text: &str) -> Option<(String, &str, usize)> {
    let end = scalar_end(text.as_bytes(), 0);
    let key = text[..end].trim_end();
    let after = &text[end..];
    let after_colon = after.strip_prefix(':')?;
    if !(after_colon.is_empty() || after_colon.starts_with(' ')) {
        return None;
    }
    let value = after_colon.trim_start();
    let value_offset = text.len() - value.len();
    Some((unquote(key), value, value_offset))
}

/// End of a scalar token starting at `start`: a quoted string, or plain text
/// up to `: `, `,`, `}`, `]` or end of line.
fn scalar_end(bytes: &[u8], start: usize) -> usize {
    if let Some(&quote @ (b'"' | b'\'')) = bytes.get(start) {
        let mut i = start + 1;
        while i < bytes.len() {
            if bytes[i] == b'\\' && quote == b'"' {
                i += 2;
                continue;
            }
            if bytes[i] == quote {
                return i + 1;
            }
            i += 1;
        }
        return bytes.len();
    }
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b',' | b'}' | b']' => return i,
            b':' if bytes
                .get(i + 1)
                .is_none_or(|b| *b == b' ' || matches!(b, b',' | b'}' | b']')) =>
            {
                return i;
            }
            _ => i += 1,
        }
    }
    i
}

fn unquote(token: &str) -> String {
    let t = token.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        t[1..t.len() - 1].to_owned()
    } else {
        t.to_owned()
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Drops a `#` comment that is outside quotes and preceded by a space.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut quote: Option<u8> = None;
    for (i, &b) in bytes.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') => {
                return &line[..i];
            }
            None => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
listen: [\"0.0.0.0:443\", \"[::]:443\"]   # both
policy:
  path: policies/hearth.wasm
  config: { domain: hearth.example, turn_aliases: cdn.hearth.example }
limits:
    client_hello_timeout: 5s
backends:
  turn:       { addr: \"127.0.0.1:5349\", proxy_protocol: v2 }
  livekit:    { addr: \"127.0.0.1:7880\", alpn: [http/1.1, h2] }
tls:
  certificates:
    - { cert: certs/hearth.crt, key: certs/hearth.key }
    - cert: certs/lk.crt
      key: certs/lk.key
      names: [lk.hearth.example]
  local_ca:
    names:
    - a.localhost
    - b.localhost
";

    fn at(locations: &Locations, path: &str) -> (usize, usize) {
        let p = locations
            .find(path)
            .unwrap_or_else(|| panic!("{path} not found"));
        (p.line, p.column)
    }

    #[test]
    fn block_keys_point_at_the_key() {
        let l = Locations::scan(SAMPLE);
        assert_eq!(at(&l, "policy"), (2, 1));
        assert_eq!(at(&l, "policy.path"), (3, 3));
        assert_eq!(at(&l, "limits.client_hello_timeout"), (6, 5));
        assert_eq!(at(&l, "tls.certificates[1].key"), (14, 7));
        assert_eq!(at(&l, "tls.certificates[1].names"), (15, 7));
        assert_eq!(at(&l, "tls.local_ca.names[1]"), (19, 7));
    }

    #[test]
    fn flow_collections_are_indexed() {
        let l = Locations::scan(SAMPLE);
        assert_eq!(at(&l, "listen[1]"), (1, 25));
        assert_eq!(at(&l, "policy.config.turn_aliases"), (4, 37));
        assert_eq!(at(&l, "backends.turn.proxy_protocol"), (8, 41));
        assert_eq!(at(&l, "backends.livekit.alpn[1]"), (9, 58));
        assert_eq!(at(&l, "tls.certificates[0].key"), (12, 33));
        assert_eq!(at(&l, "tls.certificates[1].names[0]"), (15, 15));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let l = Locations::scan(SAMPLE);
        assert_eq!(at(&l, "limits.idle_timeout"), (5, 1));
        assert_eq!(at(&l, "backends.turn.alpn[3]"), (8, 3));
        assert!(l.find("nothing").is_none());
    }

    #[test]
    fn comments_and_quoted_hashes() {
        let l = Locations::scan("# top\na: \"x # not a comment\"  # comment\nb: 1\n");
        assert_eq!(at(&l, "a"), (2, 1));
        assert_eq!(at(&l, "b"), (3, 1));
    }
}
