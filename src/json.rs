//! JSON written by hand, byte for byte as `serde_json` writes it (compact), for the two
//! documents every order writes: its record's line and its receipt cookie. serde reads both
//! back; each writer has a test that holds its output equal to serde_json's.

use crate::record::Ref;

/// `s` as a JSON string.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    contents(out, s);
    out.push(b'"');
}

/// A reference as the JSON string `"{node}-{seq}"`, with no text of its own built first.
pub fn reference(out: &mut Vec<u8>, r: &Ref) {
    out.push(b'"');
    contents(out, &r.node);
    out.push(b'-');
    uint(out, r.seq);
    out.push(b'"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// `s` escaped as serde_json does: `"` and `\`, control characters as `\n`-style or
/// `\u00XX` escapes (lower-case hex); everything else (`/`, DEL, non-ASCII) as it is.
fn contents(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Almost every value needs no escape: checked 16 bytes at a time with no branch
    // inside a chunk (the compiler makes it one vector compare), then copied in one go.
    let chunks = bytes.chunks_exact(16);
    let tail = chunks.remainder().len();
    let dirty_chunk =
        chunks.map(|chunk| chunk.iter().fold(false, |any, &b| any | needs_escape(b))).position(|dirty| dirty);
    let mut plain = match dirty_chunk {
        Some(chunk) => chunk * 16,
        None if !bytes[bytes.len() - tail..].iter().any(|&b| needs_escape(b)) => {
            out.extend_from_slice(bytes);
            return;
        }
        None => bytes.len() - tail,
    };
    out.extend_from_slice(&bytes[..plain]);
    for (i, &b) in bytes.iter().enumerate().skip(plain) {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[plain..i]);
        plain = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let (high, low) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]);
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low]);
            }
        }
    }
    out.extend_from_slice(&bytes[plain..]);
}

/// An unsigned integer as JSON writes it.
pub fn uint(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `[a,b,…]`, each item written by `write`.
pub fn array<T>(out: &mut Vec<u8>, items: impl IntoIterator<Item = T>, mut write: impl FnMut(&mut Vec<u8>, T)) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}
