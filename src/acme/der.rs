//! The little DER (ITU-T X.690) this module writes and reads: enough to
//! build a certificate signing request and a TLS-ALPN challenge
//! certificate, and to read a certificate's validity, names and key.
//!
//! Written by hand rather than taken from an X.509 crate: the pieces are a
//! few dozen lines, while `rcgen` added about 300 KB to a release binary
//! (measured on a probe built like wren's release), and wren's static
//! binary has a size budget.
//!
//! Only what those structures use is supported: one-byte tags and
//! definite lengths. The reader returns `None` for anything else, which
//! its callers report as a malformed certificate.

/// Universal tags (X.690 §8.1.2), as the identifier octet.
pub(super) const BOOLEAN: u8 = 0x01;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const OBJECT_IDENTIFIER: u8 = 0x06;
pub(super) const UTF8_STRING: u8 = 0x0c;
pub(super) const UTC_TIME: u8 = 0x17;
pub(super) const GENERALIZED_TIME: u8 = 0x18;
pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const SET: u8 = 0x31;

/// A constructed context-specific tag `[n]`, as in `[0] EXPLICIT`.
pub(super) const fn context(n: u8) -> u8 {
    0xa0 | n
}

/// A primitive context-specific tag `[n] IMPLICIT`, as a `dNSName` `[2]`.
pub(super) const fn context_primitive(n: u8) -> u8 {
    0x80 | n
}

/// One element: tag, length, content.
pub(super) fn element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|&&byte| byte == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed element holding `parts` one after the other.
pub(super) fn constructed(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    element(tag, &parts.concat())
}

pub(super) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    constructed(SEQUENCE, parts)
}

/// A non-negative INTEGER from big-endian magnitude bytes: the shortest
/// form, with a zero byte in front when the top bit would read as a sign.
pub(super) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let first = magnitude.iter().position(|&byte| byte != 0);
    let significant = first.map_or(&[0u8][..], |at| &magnitude[at..]);
    if significant[0] & 0x80 != 0 {
        element(INTEGER, &[&[0u8][..], significant].concat())
    } else {
        element(INTEGER, significant)
    }
}

/// A BIT STRING of whole bytes (no unused bits).
pub(super) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    element(BIT_STRING, &[&[0u8][..], bytes].concat())
}

/// Reads elements one after the other from a DER buffer.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(der: &'a [u8]) -> Reader<'a> {
        Reader { rest: der }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element's tag and content, or `None` when the buffer ends
    /// or the element does not fit it.
    pub(super) fn element(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            // Four length bytes cover any certificate; more (or the
            // indefinite form, 0x80) is not DER we need to read.
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |length, &byte| length << 8 | usize::from(byte))
        };
        if rest.len() < length {
            return None;
        }
        let (content, after) = rest.split_at(length);
        self.rest = after;
        Some((tag, content))
    }

    /// The next element's content if it has `tag`; `None` otherwise.
    pub(super) fn required(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.element()? {
            (found, content) if found == tag => Some(content),
            _ => None,
        }
    }

    /// The next element's content if it has `tag`, leaving the reader where
    /// it was when it does not (an OPTIONAL field that is absent).
    pub(super) fn optional(&mut self, tag: u8) -> Option<&'a [u8]> {
        let mut ahead = *self;
        match ahead.element() {
            Some((found, content)) if found == tag => {
                *self = ahead;
                Some(content)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_short_form_below_128_and_the_long_form_above() {
        assert_eq!(element(OCTET_STRING, &[7; 3]), [4, 3, 7, 7, 7]);
        let long = element(OCTET_STRING, &[0; 200]);
        assert_eq!(&long[..3], [4, 0x81, 200]);
        let longer = element(OCTET_STRING, &[0; 300]);
        assert_eq!(&longer[..4], [4, 0x82, 1, 44]);
        assert_eq!(longer.len(), 304);
    }

    #[test]
    fn integers_are_minimal_and_never_negative() {
        assert_eq!(unsigned_integer(&[0, 0, 5]), [2, 1, 5]);
        assert_eq!(unsigned_integer(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), [2, 1, 0]);
    }

    #[test]
    fn what_is_written_reads_back() {
        let inner = element(UTF8_STRING, b"wren");
        let optional = element(context(3), &[]);
        let outer = sequence(&[&unsigned_integer(&[1; 130]), &inner, &optional]);
        let mut reader = Reader::new(&outer);
        let content = reader.required(SEQUENCE).unwrap();
        assert!(reader.is_empty());
        let mut fields = Reader::new(content);
        assert_eq!(fields.required(INTEGER).unwrap(), [1; 130]);
        assert_eq!(fields.optional(context(0)), None);
        assert_eq!(fields.required(UTF8_STRING).unwrap(), b"wren");
        assert_eq!(fields.optional(context(3)), Some(&[][..]));
        assert!(fields.is_empty());
    }

    #[test]
    fn truncated_or_indefinite_elements_are_refused() {
        assert_eq!(Reader::new(&[4, 5, 1, 2]).element(), None);
        assert_eq!(Reader::new(&[0x30, 0x80, 0, 0]).element(), None);
        assert_eq!(Reader::new(&[4, 0x85, 1, 1, 1, 1, 1]).element(), None);
        assert_eq!(Reader::new(&[4]).element(), None);
    }
}
