//! Tracking codes: the unique code the system gives every accepted notice,
//! returned to the agency and shown to the recipient (e-services by-law
//! art. 6).
//!
//! A code is a 64-bit value — 42 bits of milliseconds since 2025-01-01 UTC,
//! 10 bits of engine node, 12 bits of sequence — written as 13 Crockford
//! base-32 characters plus one Luhn mod 32 check character, grouped
//! `XXXX-XXXX-XXXX-XX` for reading aloud. Time-ordered codes make the store's
//! largest table an append-mostly log, which is what keeps the LSM tree's
//! write amplification low (see docs/storage.md). They are identifiers,
//! not secrets: the read path must authorise access by mailbox.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// 2025-01-01T00:00:00Z in Unix milliseconds.
pub const TRACKING_EPOCH_MS: i64 = 1_735_689_600_000;

pub const NODE_BITS: u32 = 10;
pub const SEQ_BITS: u32 = 12;
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;
pub const MAX_SEQ: u16 = (1 << SEQ_BITS) - 1;

/// A notice's tracking code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackingCode(u64);

/// Why a string is not a tracking code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackingCodeError {
    #[error("a tracking code has 14 characters (hyphens optional), this has {0}")]
    WrongLength(usize),
    #[error("{0:?} is not a tracking-code character")]
    BadCharacter(char),
    #[error("the check character does not match (a typing error?)")]
    BadCheck,
}

fn decode_char(c: char) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    let c = match c {
        'O' => '0',
        'I' | 'L' => '1',
        c => c,
    };
    ALPHABET
        .iter()
        .position(|&a| a as char == c)
        .map(|p| p as u8)
}

/// Luhn mod N over base-32 digit values: catches every single-character
/// error and most adjacent transpositions.
fn luhn32(values: &[u8]) -> u8 {
    let mut factor = 2u32;
    let mut sum = 0u32;
    for &v in values.iter().rev() {
        let mut addend = factor * v as u32;
        factor = if factor == 2 { 1 } else { 2 };
        addend = addend / 32 + addend % 32;
        sum += addend;
    }
    ((32 - (sum % 32)) % 32) as u8
}

impl TrackingCode {
    /// Builds a code from its parts. `ms` is Unix milliseconds.
    pub fn from_parts(unix_ms: i64, node: u16, seq: u16) -> Self {
        let t = (unix_ms - TRACKING_EPOCH_MS).max(0) as u64 & ((1 << 42) - 1);
        TrackingCode(
            t << (NODE_BITS + SEQ_BITS)
                | ((node & MAX_NODE) as u64) << SEQ_BITS
                | (seq & MAX_SEQ) as u64,
        )
    }

    pub fn from_u64(v: u64) -> Self {
        TrackingCode(v)
    }

    pub fn as_u64(&self) -> u64 {
        self.0
    }

    /// Unix milliseconds at which the code was issued.
    pub fn unix_ms(&self) -> i64 {
        (self.0 >> (NODE_BITS + SEQ_BITS)) as i64 + TRACKING_EPOCH_MS
    }

    pub fn node(&self) -> u16 {
        ((self.0 >> SEQ_BITS) as u16) & MAX_NODE
    }

    fn values(&self) -> [u8; 14] {
        let mut v = [0u8; 14];
        // 13 characters hold 65 bits; the top one carries the highest 4.
        let x = self.0 as u128;
        for (i, slot) in v.iter_mut().take(13).enumerate() {
            *slot = ((x >> (5 * (12 - i))) & 31) as u8;
        }
        v[13] = luhn32(&v[..13]);
        v
    }

    pub fn parse(s: &str) -> Result<Self, TrackingCodeError> {
        let mut vals = [0u8; 14];
        let mut n = 0usize;
        for c in s.chars().filter(|&c| c != '-') {
            let v = decode_char(c).ok_or(TrackingCodeError::BadCharacter(c))?;
            if n < 14 {
                vals[n] = v;
            }
            n += 1;
        }
        if n != 14 {
            return Err(TrackingCodeError::WrongLength(n));
        }
        if luhn32(&vals[..13]) != vals[13] {
            return Err(TrackingCodeError::BadCheck);
        }
        let mut x: u128 = 0;
        for &v in &vals[..13] {
            x = (x << 5) | v as u128;
        }
        if x > u64::MAX as u128 {
            return Err(TrackingCodeError::BadCheck);
        }
        Ok(TrackingCode(x as u64))
    }
}

impl fmt::Display for TrackingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.values();
        let mut out = [0u8; 17];
        let mut j = 0;
        for (i, &x) in v.iter().enumerate() {
            if i == 4 || i == 8 || i == 12 {
                out[j] = b'-';
                j += 1;
            }
            out[j] = ALPHABET[x as usize];
            j += 1;
        }
        f.write_str(std::str::from_utf8(&out).expect("ascii"))
    }
}

impl FromStr for TrackingCode {
    type Err = TrackingCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrackingCode::parse(s)
    }
}

impl Serialize for TrackingCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TrackingCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        TrackingCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for TrackingCode {
    fn schema_name() -> Cow<'static, str> {
        "TrackingCode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "The system's tracking code: 14 Crockford base-32 characters, the last a check character, written XXXX-XXXX-XXXX-XX.",
            "pattern": "^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{2}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parts_round_trip() {
        let ms = TRACKING_EPOCH_MS + 123_456_789;
        let t = TrackingCode::from_parts(ms, 7, 42);
        assert_eq!(t.unix_ms(), ms);
        assert_eq!(t.node(), 7);
        let s = t.to_string();
        assert_eq!(s.len(), 17);
        assert_eq!(TrackingCode::parse(&s), Ok(t));
        assert_eq!(
            TrackingCode::parse(&s.to_lowercase().replace('-', "")),
            Ok(t)
        );
    }

    #[test]
    fn time_ordered() {
        let a = TrackingCode::from_parts(TRACKING_EPOCH_MS + 1000, 1, 5);
        let b = TrackingCode::from_parts(TRACKING_EPOCH_MS + 1001, 0, 0);
        assert!(a < b);
    }

    proptest! {
        #[test]
        fn any_code_round_trips(v in any::<u64>()) {
            let t = TrackingCode::from_u64(v);
            prop_assert_eq!(TrackingCode::parse(&t.to_string()), Ok(t));
        }

        #[test]
        fn single_substitution_caught(v in any::<u64>(), pos in 0usize..14, d in 1u8..32) {
            let t = TrackingCode::from_u64(v);
            let mut chars: Vec<u8> = t.to_string().bytes().filter(|&b| b != b'-').collect();
            let old = decode_char(chars[pos] as char).unwrap();
            chars[pos] = ALPHABET[((old + d) % 32) as usize];
            let s = String::from_utf8(chars).unwrap();
            prop_assert!(TrackingCode::parse(&s).is_err());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = TrackingCode::parse(&s);
        }
    }
}
