//! Exact sums of amounts, however many and however large.
//!
//! The window-total rule (`123`) compares a sum of deposits with a
//! threshold. Summing the deposits one by one costs as many rows as the
//! window holds, so the store keeps a running total per user instead and
//! takes the window's sum as the difference of two running totals: two
//! rows, whatever the window holds. A running total grows without bound and
//! a difference must be exact, which a [`Decimal`] is not past 28 digits
//! (it rounds), so totals are kept here: whole numbers of the finest unit
//! an amount can have, in 256 bits.

use rust_decimal::Decimal;

/// The finest step of an amount: `10^-SCALE` (a [`Decimal`]'s largest scale).
const SCALE: u32 = 28;

/// An exact sum of amounts: a 256-bit two's-complement count of
/// `10^-28` units, kept as a signed high half and an unsigned low half, so
/// that the derived order (high first) is the numeric order.
///
/// No sum a store can hold overflows it: an amount is below `2^96` in its
/// own scale, so below `2^96 · 10^28 < 2^190` units, and a store holds fewer
/// than `2^63` events, so every sum of them lies within `±2^253`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Total {
    high: i128,
    low: u128,
}

impl Total {
    pub const ZERO: Total = Total { high: 0, low: 0 };

    /// The amount, exactly.
    pub fn of(amount: Decimal) -> Total {
        let factor = 10u128.pow(SCALE - amount.scale().min(SCALE));
        let (high, low) = widening_mul(amount.mantissa().unsigned_abs(), factor);
        // Below 2^190: the high half is far from its sign bit.
        let magnitude = Total {
            high: high as i128,
            low,
        };
        if amount.is_sign_negative() {
            magnitude.negated()
        } else {
            magnitude
        }
    }

    pub fn plus(self, other: Total) -> Total {
        let (low, carry) = self.low.overflowing_add(other.low);
        Total {
            high: self
                .high
                .wrapping_add(other.high)
                .wrapping_add(i128::from(carry)),
            low,
        }
    }

    pub fn minus(self, other: Total) -> Total {
        self.plus(other.negated())
    }

    /// Two's complement: every bit flipped, plus one.
    fn negated(self) -> Total {
        let flipped = Total {
            high: !self.high,
            low: !self.low,
        };
        flipped.plus(Total { high: 0, low: 1 })
    }

    /// The total as stored: 32 bytes, big-endian.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut bytes = [0; 32];
        bytes[..16].copy_from_slice(&self.high.to_be_bytes());
        bytes[16..].copy_from_slice(&self.low.to_be_bytes());
        bytes
    }

    /// A total [`Total::to_bytes`] wrote; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Total> {
        let (high, low) = bytes.split_at_checked(16)?;
        Some(Total {
            high: i128::from_be_bytes(high.try_into().ok()?),
            low: u128::from_be_bytes(low.try_into().ok()?),
        })
    }
}

/// The full 256-bit product of two 128-bit numbers, as (high, low) halves.
fn widening_mul(a: u128, b: u128) -> (u128, u128) {
    const LOW_64: u128 = u64::MAX as u128;
    let (a_high, a_low) = (a >> 64, a & LOW_64);
    let (b_high, b_low) = (b >> 64, b & LOW_64);
    let low_low = a_low * b_low;
    let high_low = a_high * b_low;
    let low_high = a_low * b_high;
    let high_high = a_high * b_high;
    // Each term is below 2^64, so their sum is below 2^66: no overflow.
    let middle = (low_low >> 64) + (high_low & LOW_64) + (low_high & LOW_64);
    let low = (low_low & LOW_64) | (middle << 64);
    let high = high_high + (high_low >> 64) + (low_high >> 64) + (middle >> 64);
    (high, low)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn total(text: &str) -> Total {
        Total::of(dec(text))
    }

    #[test]
    fn amounts_of_any_scale_line_up() {
        assert_eq!(total("1.5"), total("1.50000"));
        assert_eq!(total("0.1").plus(total("0.2")), total("0.3"));
        assert_eq!(total("100").minus(total("0.01")), total("99.99"));
        assert!(total("0.0000000000000000000000000001") > Total::ZERO);
        assert!(total("-0.0000000000000000000000000001") < Total::ZERO);
        assert_eq!(total("-7.25").plus(total("7.25")), Total::ZERO);
        assert_eq!(total("-0"), Total::ZERO);
    }

    #[test]
    fn sums_stay_exact_where_a_decimal_rounds_or_overflows() {
        let tiny = total("0.0000000000000000000000000001");
        let big = total("1000000000000000000000000000");
        // A Decimal rounds 10^27 + 10^-28 back to 10^27.
        assert!(big.plus(tiny) > big);
        assert_eq!(big.plus(tiny).minus(big), tiny);
        let max = Total::of(Decimal::MAX);
        let twice = max.plus(max);
        assert!(twice > max);
        assert_eq!(twice.minus(max), max);
        // Far past any Decimal: 2^63 of the largest amount.
        let mut huge = max;
        for _ in 0..63 {
            huge = huge.plus(huge);
        }
        assert!(huge > twice);
        assert!(Total::ZERO.minus(huge) < Total::ZERO);
        assert_eq!(huge.minus(huge), Total::ZERO);
    }

    #[test]
    fn products_match_the_halves() {
        assert_eq!(widening_mul(u128::MAX, u128::MAX), (u128::MAX - 1, 1));
        assert_eq!(widening_mul(1 << 100, 1 << 100), (1 << 72, 0));
        assert_eq!(widening_mul(3, 5), (0, 15));
    }

    #[test]
    fn bytes_round_trip_and_nothing_else_reads() {
        for value in ["0", "1", "-1", "123.456", "-79228162514264337593543950335"] {
            let t = total(value);
            assert_eq!(Total::from_bytes(&t.to_bytes()), Some(t), "{value}");
        }
        assert_eq!(Total::from_bytes(&[0; 31]), None);
        assert_eq!(Total::from_bytes(&[0; 33]), None);
        assert_eq!(Total::from_bytes(b""), None);
    }
}
