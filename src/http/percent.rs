//! Percent-decoding (RFC 3986 §2.1), shared by the router's path segments
//! and, with `+` as space, form and query parsing.

/// Decodes `%XX` escapes; with `plus_as_space`, `+` becomes a space as in
/// `application/x-www-form-urlencoded`. Returns `None` for a `%` that is not
/// followed by two hex digits.
pub fn percent_decode(input: &str, plus_as_space: bool) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let high = (hex[0] as char).to_digit(16)?;
                let low = (hex[1] as char).to_digit(16)?;
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Whether every `%` in `input` starts a `%XX` escape: a target with a
/// broken one is not a URI at all (RFC 3986 §2.1), whatever route it names.
pub fn escapes_are_well_formed(input: &str) -> bool {
    let bytes = input.as_bytes();
    memchr::memchr_iter(b'%', bytes).all(|at| {
        bytes
            .get(at + 1..at + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("a%2Fb%20c", false).unwrap(), b"a/b c");
        assert_eq!(percent_decode("%e2%9c%93", false).unwrap(), "✓".as_bytes());
        assert_eq!(percent_decode("a+b", false).unwrap(), b"a+b");
        assert_eq!(percent_decode("a+b", true).unwrap(), b"a b");
    }

    #[test]
    fn rejects_broken_escapes() {
        assert_eq!(percent_decode("%", false), None);
        assert_eq!(percent_decode("%2", false), None);
        assert_eq!(percent_decode("%zz", false), None);
        for broken in ["%", "/a%2", "/%zz/b", "/ok%2Fthen%g1"] {
            assert!(!escapes_are_well_formed(broken), "{broken}");
        }
        for fine in ["", "/a/b", "/a%2Fb%20c", "/%e2%9c%93"] {
            assert!(escapes_are_well_formed(fine), "{fine}");
        }
    }
}
