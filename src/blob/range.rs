//! Single byte ranges (`Range: bytes=…`, RFC 9110 §14.1.2).
//!
//! wren serves one range per request. A header it does not understand (a
//! list of ranges, another unit, bad syntax) is ignored and the whole object
//! is sent, as the RFC allows; only a well-formed range outside the object
//! is an error (`416`).

/// A range as asked for, before the object's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last` (`last` inclusive) or `bytes=first-`.
    From { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a `Range` header value; `None` when wren ignores it.
    pub fn parse(value: &str) -> Option<ByteRange> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let number = |text: &str| -> Option<u64> {
            let text = text.trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            text.parse().ok()
        };
        if first.trim().is_empty() {
            return number(last).map(ByteRange::Suffix);
        }
        let first = number(first)?;
        let last = if last.trim().is_empty() {
            None
        } else {
            Some(number(last)?)
        };
        if last.is_some_and(|last| last < first) {
            return None;
        }
        Some(ByteRange::From { first, last })
    }

    /// The inclusive byte positions within an object of `size` bytes, or
    /// `None` when none of the range lies inside it (`416`).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From { first, .. } if first >= size => None,
            ByteRange::From { first, last } => {
                Some((first, last.map_or(size - 1, |last| last.min(size - 1))))
            }
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(_) if size == 0 => None,
            ByteRange::Suffix(n) => Some((size.saturating_sub(n), size - 1)),
        }
    }

    /// The header value, for passing the range on to an object store.
    pub fn header_value(self) -> String {
        match self {
            ByteRange::From { first, last: None } => format!("bytes={first}-"),
            ByteRange::From {
                first,
                last: Some(last),
            } => format!("bytes={first}-{last}"),
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_ranges_and_ignores_the_rest() {
        assert_eq!(
            ByteRange::parse("bytes=0-99"),
            Some(ByteRange::From {
                first: 0,
                last: Some(99)
            })
        );
        assert_eq!(
            ByteRange::parse("bytes=10-"),
            Some(ByteRange::From {
                first: 10,
                last: None
            })
        );
        assert_eq!(ByteRange::parse("bytes=-5"), Some(ByteRange::Suffix(5)));
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "",
        ] {
            assert_eq!(ByteRange::parse(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn resolves_against_the_size() {
        let from = |first, last| ByteRange::From { first, last };
        assert_eq!(from(0, Some(99)).resolve(10), Some((0, 9)));
        assert_eq!(from(3, Some(5)).resolve(10), Some((3, 5)));
        assert_eq!(from(9, None).resolve(10), Some((9, 9)));
        assert_eq!(from(10, None).resolve(10), None);
        assert_eq!(from(0, None).resolve(0), None);
        assert_eq!(ByteRange::Suffix(3).resolve(10), Some((7, 9)));
        assert_eq!(ByteRange::Suffix(30).resolve(10), Some((0, 9)));
        assert_eq!(ByteRange::Suffix(0).resolve(10), None);
        assert_eq!(ByteRange::Suffix(3).resolve(0), None);
    }

    #[test]
    fn header_values_round_trip() {
        for value in ["bytes=0-99", "bytes=10-", "bytes=-5"] {
            assert_eq!(ByteRange::parse(value).unwrap().header_value(), value);
        }
    }
}
