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
}
