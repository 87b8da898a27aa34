//! Text helpers every layer shares.

/// The first `max` characters of client input, for echoing it in a message
/// without echoing a megabyte.
pub fn excerpt(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_cut_at_characters_not_bytes() {
        assert_eq!(excerpt("héllo", 2), "hé");
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("", 0), "");
    }
}
