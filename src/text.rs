//! Text helpers every phase uses.

/// `s` cut after its first `n` characters (at a character's boundary); all of `s` if it has
/// no more than `n`.
pub fn first_chars(s: &str, n: usize) -> &str {
    // No more bytes than `n`, so no more characters: nothing to count.
    if s.len() <= n {
        return s;
    }
    s.char_indices().nth(n).map_or(s, |(at, _)| &s[..at])
}

/// `s` for a message: as it is if it has at most `max` characters, else its first `keep` and an
/// ellipsis.
pub fn clipped(s: &str, max: usize, keep: usize) -> String {
    if first_chars(s, max).len() == s.len() {
        s.to_string()
    } else {
        format!("{}…", first_chars(s, keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_after_n_characters_at_a_boundary() {
        let long = "a".repeat(300);
        assert_eq!(first_chars(&long, 256).len(), 256);
        assert_eq!(first_chars("Mozilla/5.0", 256), "Mozilla/5.0");
        assert_eq!(first_chars("ëëë", 2), "ëë", "at a character's boundary");
        assert_eq!(first_chars("ëë", 2), "ëë");
        assert_eq!(first_chars("abc", 0), "");
    }

    #[test]
    fn clipped_keeps_a_short_text_and_cuts_a_long_one() {
        assert_eq!(clipped("ëëë", 3, 2), "ëëë");
        assert_eq!(clipped("ëëëë", 3, 2), "ëë…");
        assert_eq!(clipped("abcd", 3, 3), "abc…");
    }
}
