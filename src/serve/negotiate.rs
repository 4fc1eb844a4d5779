//! `Accept-Encoding` negotiation over the precompressed twins: br > gzip > identity, with q-values.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Br,
    Gzip,
    Identity,
}

/// The best encoding the client accepts among those available (`has`). Preference follows the
/// client's q-values; on a tie, br beats gzip beats identity. Identity is acceptable unless the
/// client excludes it (`identity;q=0` or `*;q=0`).
pub fn choose(accept: Option<&[u8]>, has: impl Fn(Encoding) -> bool) -> Encoding {
    let Some(accept) = accept else { return Encoding::Identity };
    let (mut br, mut gzip, mut identity, mut star) = (None, None, None, None);
    // Split as bytes: the header is ASCII, and `str`'s char searchers cost a static GET more
    // than the rest of its choice.
    for item in accept.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let name = parts.next().unwrap_or(b"").trim_ascii();
        let mut q = 1.0f32;
        for p in parts {
            let p = p.trim_ascii();
            if let Some(v) = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q=")) {
                q = std::str::from_utf8(v.trim_ascii()).ok().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            }
        }
        let slot = if name.eq_ignore_ascii_case(b"br") {
            &mut br
        } else if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
            &mut gzip
        } else if name.eq_ignore_ascii_case(b"identity") {
            &mut identity
        } else if name == b"*" {
            &mut star
        } else {
            continue;
        };
        *slot = Some(q);
    }
    let q_of = |explicit: Option<f32>, is_identity: bool| match explicit.or(star) {
        Some(q) => q,
        None if is_identity => 0.001,
        None => 0.0,
    };
    let candidates = [
        (Encoding::Br, q_of(br, false)),
        (Encoding::Gzip, q_of(gzip, false)),
        (Encoding::Identity, q_of(identity, true)),
    ];
    let mut best = Encoding::Identity;
    let mut best_q = 0.0f32;
    for (enc, q) in candidates {
        if q > best_q && has(enc) {
            best = enc;
            best_q = q;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: Encoding) -> bool {
        true
    }

    #[test]
    fn prefers_br_then_gzip_and_honours_q() {
        assert_eq!(choose(Some(b"gzip, br"), all), Encoding::Br);
        assert_eq!(choose(Some(b"gzip, deflate"), all), Encoding::Gzip);
        assert_eq!(choose(Some(b"br;q=0.5, gzip"), all), Encoding::Gzip);
        assert_eq!(choose(Some(b"br;q=0, gzip;q=0"), all), Encoding::Identity);
        assert_eq!(choose(Some(b"*"), all), Encoding::Br);
        assert_eq!(choose(None, all), Encoding::Identity);
        assert_eq!(choose(Some(b"br"), |e| e != Encoding::Br), Encoding::Identity);
        assert_eq!(choose(Some(b" BR ; Q=0.2 ,GZip;q= 0.9"), all), Encoding::Gzip);
        assert_eq!(choose(Some(b"gzip;q=x, identity"), all), Encoding::Identity, "a bad q is 0");
        assert_eq!(choose(Some(b"\xff, gzip"), all), Encoding::Gzip, "a non-ASCII item is skipped");
    }
}
