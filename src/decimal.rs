//! An exact decimal number for money: `units / 10^scale`, with the scale it is shown at.
//!
//! Shops keep money as `DECIMAL(20,6)` or `numeric(12,3)`; collected records keep integer cents.
//! Going from one to the other must be exact (`17800` cents → `178.00`, never `177.99999`), so
//! arithmetic is done on a scaled integer, and rounding (half away from zero, as shops and tax
//! offices round) happens only where asked for.

use std::cmp::Ordering;
use std::fmt;

/// The most digits after the point a value keeps (a quotient is cut here).
pub const MAX_SCALE: u32 = 18;

#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    units: i128,
    scale: u32,
}

impl Decimal {
    pub fn new(units: i128, scale: u32) -> Decimal {
        Decimal { units, scale }
    }

    pub fn from_int(n: i64) -> Decimal {
        Decimal { units: n as i128, scale: 0 }
    }

    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// `-12.340`, `7`, `.5`: a plain decimal number (no exponent, no thousands separator).
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() || frac.len() as u32 > MAX_SCALE {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut units: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            units = units.checked_mul(10)?.checked_add((b - b'0') as i128)?;
        }
        Some(Decimal { units: if neg { -units } else { units }, scale: frac.len() as u32 })
    }

    /// The same value at `scale` digits, rounded half away from zero when digits are dropped;
    /// `None` on overflow.
    pub fn rescale(&self, scale: u32) -> Option<Decimal> {
        match scale.cmp(&self.scale) {
            Ordering::Equal => Some(*self),
            Ordering::Greater => Some(Decimal { units: self.units.checked_mul(pow10(scale - self.scale)?)?, scale }),
            Ordering::Less => {
                let div = pow10(self.scale - scale)?;
                let (q, r) = (self.units / div, self.units % div);
                let up = r.abs() * 2 >= div;
                let units = if up { q + self.units.signum() } else { q };
                Some(Decimal { units, scale })
            }
        }
    }

    /// Drops trailing zeros after the point, but keeps at least `min` digits.
    fn trimmed(mut self, min: u32) -> Decimal {
        while self.scale > min && self.units % 10 == 0 {
            self.units /= 10;
            self.scale -= 1;
        }
        self
    }

    fn aligned(a: Decimal, b: Decimal) -> Option<(i128, i128, u32)> {
        let s = a.scale.max(b.scale);
        Some((a.rescale(s)?.units, b.rescale(s)?.units, s))
    }

    pub fn checked_add(self, b: Decimal) -> Option<Decimal> {
        let (x, y, scale) = Self::aligned(self, b)?;
        Some(Decimal { units: x.checked_add(y)?, scale })
    }

    pub fn checked_sub(self, b: Decimal) -> Option<Decimal> {
        let (x, y, scale) = Self::aligned(self, b)?;
        Some(Decimal { units: x.checked_sub(y)?, scale })
    }

    /// Exact product, shown at the larger of the two scales unless that would drop digits.
    pub fn checked_mul(self, b: Decimal) -> Option<Decimal> {
        let exact = Decimal { units: self.units.checked_mul(b.units)?, scale: self.scale + b.scale };
        let exact = if exact.scale > MAX_SCALE { exact.rescale(MAX_SCALE)? } else { exact };
        Some(exact.trimmed(self.scale.max(b.scale)))
    }

    /// The quotient to 12 digits after the point (rounded), without trailing zeros below the
    /// larger of the two scales. `None` when dividing by zero.
    pub fn checked_div(self, b: Decimal) -> Option<Decimal> {
        if b.units == 0 {
            return None;
        }
        const DIGITS: u32 = 12;
        // a/b = (a.units * 10^(DIGITS + 1 + b.scale - a.scale)) / b.units, at DIGITS + 1, then rounded.
        let shift = (DIGITS + 1 + b.scale) as i64 - self.scale as i64;
        let (num, den) = if shift >= 0 {
            (self.units.checked_mul(pow10(shift as u32)?)?, b.units)
        } else {
            (self.units, b.units.checked_mul(pow10((-shift) as u32)?)?)
        };
        let q = Decimal { units: num / den, scale: DIGITS + 1 };
        Some(q.rescale(DIGITS)?.trimmed(self.scale.max(b.scale)))
    }

    pub fn is_zero(&self) -> bool {
        self.units == 0
    }

    /// The value as a whole number, when it is one.
    pub fn to_i64(&self) -> Option<i64> {
        let d = pow10(self.scale)?;
        (self.units % d == 0).then(|| i64::try_from(self.units / d).ok()).flatten()
    }

    /// Digits before the point (0 for `0.5`), for `DECIMAL(p, s)`'s `p - s`.
    pub fn integer_digits(&self) -> u32 {
        let mut int = (self.units / pow10(self.scale).unwrap_or(1)).unsigned_abs();
        let mut n = 0;
        while int > 0 {
            int /= 10;
            n += 1;
        }
        n
    }
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl std::ops::Neg for Decimal {
    type Output = Decimal;
    fn neg(self) -> Decimal {
        Decimal { units: -self.units, scale: self.scale }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match Self::aligned(*self, *other) {
            Some((a, b, _)) => a.cmp(&b),
            // Only values near i128's limits fail to align: compare through floating point.
            None => (self.units as f64 / 10f64.powi(self.scale as i32))
                .total_cmp(&(other.units as f64 / 10f64.powi(other.scale as i32))),
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.units < 0 { "-" } else { "" };
        let abs = self.units.unsigned_abs();
        if self.scale == 0 {
            return write!(f, "{sign}{abs}");
        }
        let d = 10u128.pow(self.scale);
        write!(f, "{sign}{}.{:0width$}", abs / d, abs % d, width = self.scale as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn parses_and_shows_at_its_scale() {
        assert_eq!(d("178.00").to_string(), "178.00");
        assert_eq!(d("-0.5").to_string(), "-0.5");
        assert_eq!(d(".25").to_string(), "0.25");
        assert_eq!(Decimal::new(17800, 2).to_string(), "178.00");
        assert_eq!(Decimal::new(-5, 3).to_string(), "-0.005");
        for bad in ["", ".", "1e5", "1,5", "--1", "abc", "1.2.3"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn rescales_with_half_away_from_zero_rounding() {
        assert_eq!(d("178").rescale(6).unwrap().to_string(), "178.000000");
        assert_eq!(d("1.005").rescale(2).unwrap().to_string(), "1.01");
        assert_eq!(d("1.0049").rescale(2).unwrap().to_string(), "1.00");
        assert_eq!(d("-1.005").rescale(2).unwrap().to_string(), "-1.01");
        assert_eq!(d("2.5").rescale(0).unwrap().to_string(), "3");
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(d("0.1").checked_add(d("0.2")).unwrap().to_string(), "0.3");
        assert_eq!(d("178.00").checked_sub(d("0.01")).unwrap().to_string(), "177.99");
        assert_eq!(d("89.00").checked_mul(Decimal::from_int(2)).unwrap().to_string(), "178.00");
        assert_eq!(d("1.19").checked_mul(d("2.00")).unwrap().to_string(), "2.38");
        assert_eq!(d("0.05").checked_mul(d("0.05")).unwrap().to_string(), "0.0025");
        // A price without tax from a 19% rate: divide, then round where the shop rounds.
        let net = d("178.00").checked_div(d("1.19")).unwrap();
        assert_eq!(net.to_string(), "149.579831932773");
        assert_eq!(net.rescale(2).unwrap().to_string(), "149.58");
        assert_eq!(d("1").checked_div(d("4")).unwrap().to_string(), "0.25");
        assert_eq!(d("10.00").checked_div(d("4")).unwrap().to_string(), "2.50");
        assert!(d("1").checked_div(d("0.00")).is_none());
    }

    #[test]
    fn compares_by_value_and_counts_integer_digits() {
        assert_eq!(d("1.50"), d("1.5"));
        assert!(d("-2") < d("1.5"));
        assert_eq!(d("12345.678").integer_digits(), 5);
        assert_eq!(d("0.5").integer_digits(), 0);
        assert_eq!(d("42.00").to_i64(), Some(42));
        assert_eq!(d("42.10").to_i64(), None);
    }
}
