//! `Range` and `If-Range` (RFC 9110 14.2, 13.1.5): one byte range of one representation.
//!
//! Only a single range is honoured. A multi-range or malformed header is ignored and the whole
//! representation is served, which RFC 9110 allows and which spares us multipart bodies.

use http::HeaderValue;

/// What to send for a GET with these `Range`/`If-Range` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slice {
    /// 200 with the whole representation.
    Full,
    /// 206 with bytes `start..=end` (inclusive, as in `Content-Range`).
    Partial { start: u64, end: u64 },
    /// 416: the one range asked for starts past the end.
    Unsatisfiable,
}

impl Slice {
    /// The slice of a representation of `total` bytes that `range` asks for, if `if_range` (when
    /// present) still matches our `etag`.
    pub fn of(range: Option<&HeaderValue>, if_range: Option<&HeaderValue>, etag: &HeaderValue, total: u64) -> Slice {
        let Some(range) = range else {
            return Slice::Full;
        };
        if let Some(v) = if_range {
            // Strong comparison; a date never matches since we send no Last-Modified.
            if v.as_bytes().starts_with(b"W/") || v != etag {
                return Slice::Full;
            }
        }
        parse(range.as_bytes(), total)
    }
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a representation of `total` bytes.
pub fn parse(header: &[u8], total: u64) -> Slice {
    let Ok(header) = std::str::from_utf8(header) else {
        return Slice::Full;
    };
    let Some((unit, set)) = header.trim().split_once('=') else {
        return Slice::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Slice::Full;
    }
    // A list may carry empty elements (RFC 9110 5.6.1): `bytes=0-9,` is one range.
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return Slice::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Slice::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last `n` bytes, all of them if the file is shorter.
        let Some(n) = digits(last) else {
            return Slice::Full;
        };
        if n == 0 || total == 0 {
            return Slice::Unsatisfiable;
        }
        return Slice::Partial { start: total.saturating_sub(n), end: total - 1 };
    }
    let Some(start) = digits(first) else {
        return Slice::Full;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match digits(last) {
            Some(end) if end >= start => end,
            _ => return Slice::Full,
        }
    };
    if start >= total {
        return Slice::Unsatisfiable;
    }
    Slice::Partial { start, end: end.min(total - 1) }
}

/// Only ASCII digits (`u64::from_str` would take a `+`), and no overflow.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `Content-Range` of a 206.
pub fn content_range(start: u64, end: u64, total: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")).expect("digits")
}

/// `Content-Range` of a 416.
pub fn unsatisfied_range(total: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes */{total}")).expect("digits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use Slice::*;

    fn p(s: &str, total: u64) -> Slice {
        parse(s.as_bytes(), total)
    }

    #[test]
    fn single_ranges_of_each_form() {
        assert_eq!(p("bytes=0-99", 1000), Partial { start: 0, end: 99 });
        assert_eq!(p("bytes=100-", 1000), Partial { start: 100, end: 999 });
        assert_eq!(p("bytes=-300", 1000), Partial { start: 700, end: 999 });
        assert_eq!(p("bytes=999-999", 1000), Partial { start: 999, end: 999 });
        assert_eq!(p("BYTES = 5 - 9 ", 1000), Partial { start: 5, end: 9 });
        assert_eq!(p("bytes=0-9,", 1000), Partial { start: 0, end: 9 }, "empty list elements are skipped");
    }

    #[test]
    fn ranges_past_the_end_are_clamped_or_unsatisfiable() {
        assert_eq!(p("bytes=900-5000", 1000), Partial { start: 900, end: 999 });
        assert_eq!(p("bytes=-5000", 1000), Partial { start: 0, end: 999 });
        assert_eq!(p("bytes=0-18446744073709551615", 1000), Partial { start: 0, end: 999 });
        assert_eq!(p("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(p("bytes=99999999-", 1000), Unsatisfiable);
        assert_eq!(p("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(p("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(p("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn multi_and_malformed_ranges_are_ignored() {
        for header in [
            "bytes=0-1,5-6",
            "bytes=0-1, -5",
            "bytes=9-5",
            "bytes=abc",
            "bytes=-",
            "bytes=",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=--5",
            "bytes=1-2-3",
            "bytes=99999999999999999999-",
            "items=0-5",
            "0-5",
            "",
        ] {
            assert_eq!(p(header, 1000), Full, "{header:?}");
        }
        assert_eq!(parse(b"bytes=\xff-1", 1000), Full);
    }

    #[test]
    fn if_range_honours_the_range_only_for_our_strong_etag() {
        let etag = HeaderValue::from_static("\"abc\"");
        let range = HeaderValue::from_static("bytes=0-9");
        let of = |if_range: Option<&'static str>| {
            Slice::of(Some(&range), if_range.map(HeaderValue::from_static).as_ref(), &etag, 100)
        };
        assert_eq!(of(None), Partial { start: 0, end: 9 });
        assert_eq!(of(Some("\"abc\"")), Partial { start: 0, end: 9 });
        assert_eq!(of(Some("\"old\"")), Full);
        assert_eq!(of(Some("W/\"abc\"")), Full, "a weak tag never matches");
        assert_eq!(of(Some("Sat, 29 Oct 1994 19:43:31 GMT")), Full, "no Last-Modified to compare with");
        assert_eq!(Slice::of(None, Some(&etag), &etag, 100), Full, "If-Range alone asks for nothing");
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(0, 99, 3000), "bytes 0-99/3000");
        assert_eq!(unsatisfied_range(3000), "bytes */3000");
    }
}
