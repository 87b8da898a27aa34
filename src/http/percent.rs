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
    }
}
