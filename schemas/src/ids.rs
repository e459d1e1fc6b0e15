//! Identifiers: national codes, legal national IDs, mailbox addresses and
//! agency IDs. Parsing accepts ASCII, Persian (U+06F0..) and Arabic-Indic
//! (U+0660..) digits and rejects anything else with a precise [`IdError`].

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::reason::Reason;

/// Why a string is not a valid national code or legal national ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("the ID is empty")]
    Empty,
    #[error("character {ch:?} at position {position} is not a digit (ASCII, Persian and Arabic-Indic digits are accepted)")]
    InvalidCharacter { position: usize, ch: char },
    #[error("the ID has {len} digits; a national code has 10 and a legal national ID 11")]
    WrongLength { len: usize },
    #[error("the check digit does not match the other digits (a typing error?)")]
    BadCheckDigit,
    #[error("an ID made of one repeated digit is not issued")]
    RepeatedDigits,
    #[error("digits 4 to 9 are all zero, which is never issued")]
    ZeroSerial,
    #[error("a mailbox address has the form <id>@iran")]
    BadAddress,
}

impl IdError {
    /// The stable reason code for this error.
    pub fn reason(self) -> Reason {
        match self {
            IdError::Empty => Reason::MissingField,
            IdError::InvalidCharacter { .. } => Reason::InvalidCharacter,
            IdError::WrongLength { .. } => Reason::WrongLength,
            IdError::BadCheckDigit => Reason::BadCheckDigit,
            IdError::RepeatedDigits => Reason::RepeatedDigits,
            IdError::ZeroSerial => Reason::ZeroSerial,
            IdError::BadAddress => Reason::InvalidAddress,
        }
    }
}

/// Maps one character to its digit value, for ASCII, Persian and
/// Arabic-Indic digits.
#[inline]
pub fn digit_value(ch: char) -> Option<u8> {
    match ch {
        '0'..='9' => Some(ch as u8 - b'0'),
        '\u{06F0}'..='\u{06F9}' => Some((ch as u32 - 0x06F0) as u8),
        '\u{0660}'..='\u{0669}' => Some((ch as u32 - 0x0660) as u8),
        _ => None,
    }
}

/// Reads up to 11 digits; the returned array holds digit values (0..=9).
fn read_digits(s: &str) -> Result<([u8; 11], usize), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    let mut out = [0u8; 11];
    let mut len = 0usize;
    for (position, ch) in s.chars().enumerate() {
        let d = digit_value(ch).ok_or(IdError::InvalidCharacter { position, ch })?;
        if len < 11 {
            out[len] = d;
        }
        len += 1;
    }
    if len != 10 && len != 11 {
        return Err(IdError::WrongLength { len });
    }
    Ok((out, len))
}

fn common_checks(d: &[u8]) -> Result<(), IdError> {
    if d.iter().all(|&x| x == d[0]) {
        return Err(IdError::RepeatedDigits);
    }
    if d[3..=8].iter().all(|&x| x == 0) {
        return Err(IdError::ZeroSerial);
    }
    Ok(())
}

/// The check digit of a national code from its first nine digits.
pub fn national_code_check_digit(d: &[u8; 9]) -> u8 {
    let s: u32 = d
        .iter()
        .enumerate()
        .map(|(i, &x)| x as u32 * (10 - i as u32))
        .sum::<u32>()
        % 11;
    if s < 2 {
        s as u8
    } else {
        (11 - s) as u8
    }
}

/// The check digit of a legal national ID from its first ten digits.
pub fn legal_id_check_digit(d: &[u8; 10]) -> u8 {
    const W: [u32; 5] = [29, 27, 23, 19, 17];
    let k = d[9] as u32 + 2;
    let s = d
        .iter()
        .enumerate()
        .map(|(i, &x)| (x as u32 + k) * W[i % 5])
        .sum::<u32>()
        % 11;
    if s == 10 {
        0
    } else {
        s as u8
    }
}

/// The ID of a mailbox: a natural person's 10-digit national code (code
/// melli) or a legal entity's 11-digit national ID (shenase melli).
///
/// Stored as the numeric value plus the kind, so it is `Copy`, 16 bytes, and
/// maps to a fixed 9-byte store key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId {
    kind: MailboxKind,
    value: u64,
}

/// Whether a mailbox belongs to a natural person or a legal entity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MailboxKind {
    /// A natural person, by 10-digit national code.
    Person,
    /// A legal entity, by 11-digit national ID.
    Legal,
}

impl MailboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxKind::Person => "person",
            MailboxKind::Legal => "legal",
        }
    }
}

impl MailboxId {
    /// Parses and validates a national code or legal national ID.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let (d, len) = read_digits(s)?;
        let digits = &d[..len];
        common_checks(digits)?;
        let kind = if len == 10 {
            let body: [u8; 9] = d[..9].try_into().expect("9 digits");
            if national_code_check_digit(&body) != d[9] {
                return Err(IdError::BadCheckDigit);
            }
            MailboxKind::Person
        } else {
            let body: [u8; 10] = d[..10].try_into().expect("10 digits");
            if legal_id_check_digit(&body) != d[10] {
                return Err(IdError::BadCheckDigit);
            }
            MailboxKind::Legal
        };
        let value = digits.iter().fold(0u64, |acc, &x| acc * 10 + x as u64);
        Ok(MailboxId { kind, value })
    }

    /// Builds a valid national code from any nine-digit body (0..1e9),
    /// adding the check digit. `None` when the result is a code that is
    /// never issued (repeated digits, zero serial).
    pub fn person_from_body(body: u32) -> Option<Self> {
        let mut d = [0u8; 9];
        let mut b = body % 1_000_000_000;
        for i in (0..9).rev() {
            d[i] = (b % 10) as u8;
            b /= 10;
        }
        let c = national_code_check_digit(&d);
        let mut all = [0u8; 10];
        all[..9].copy_from_slice(&d);
        all[9] = c;
        common_checks(&all).ok()?;
        let value = all.iter().fold(0u64, |acc, &x| acc * 10 + x as u64);
        Some(MailboxId {
            kind: MailboxKind::Person,
            value,
        })
    }

    /// Builds a valid legal national ID from any ten-digit body.
    pub fn legal_from_body(body: u64) -> Option<Self> {
        let mut d = [0u8; 10];
        let mut b = body % 10_000_000_000;
        for i in (0..10).rev() {
            d[i] = (b % 10) as u8;
            b /= 10;
        }
        let c = legal_id_check_digit(&d);
        let mut all = [0u8; 11];
        all[..10].copy_from_slice(&d);
        all[10] = c;
        common_checks(&all).ok()?;
        let value = all.iter().fold(0u64, |acc, &x| acc * 10 + x as u64);
        Some(MailboxId {
            kind: MailboxKind::Legal,
            value,
        })
    }

    pub fn kind(&self) -> MailboxKind {
        self.kind
    }

    /// The fixed 9-byte key: kind byte, then the value big-endian, so one
    /// mailbox's rows are contiguous and IDs sort numerically within a kind.
    pub fn to_key(&self) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = match self.kind {
            MailboxKind::Person => b'p',
            MailboxKind::Legal => b'l',
        };
        k[1..].copy_from_slice(&self.value.to_be_bytes());
        k
    }

    /// Inverse of [`MailboxId::to_key`]; `None` for bytes that no valid ID
    /// produces.
    pub fn from_key(k: &[u8]) -> Option<Self> {
        if k.len() != 9 {
            return None;
        }
        let kind = match k[0] {
            b'p' => MailboxKind::Person,
            b'l' => MailboxKind::Legal,
            _ => return None,
        };
        let value = u64::from_be_bytes(k[1..9].try_into().ok()?);
        Some(MailboxId { kind, value })
    }

    /// A stable 64-bit hash used for sharding (never the ID itself in
    /// logs or metrics).
    pub fn shard_hash(&self) -> u64 {
        // splitmix64 finaliser: cheap and well mixed.
        let mut z = self.value ^ ((self.kind as u64) << 63);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    /// The mailbox address, `<id>@iran`.
    pub fn address(&self) -> MailboxAddress {
        MailboxAddress(*self)
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            MailboxKind::Person => write!(f, "{:010}", self.value),
            MailboxKind::Legal => write!(f, "{:011}", self.value),
        }
    }
}

impl FromStr for MailboxId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MailboxId::parse(s)
    }
}

impl Serialize for MailboxId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MailboxId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        MailboxId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for MailboxId {
    fn schema_name() -> Cow<'static, str> {
        "MailboxId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A 10-digit national code (natural person) or an 11-digit legal national ID, check digit included. ASCII, Persian (۰-۹) and Arabic-Indic (٠-٩) digits are accepted; receipts always use ASCII.",
            "pattern": "^[0-9۰-۹٠-٩]{10,11}$"
        })
    }
}

/// A mailbox address, `<id>@iran` (art. 3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MailboxAddress(pub MailboxId);

impl MailboxAddress {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let id = s.strip_suffix("@iran").ok_or(IdError::BadAddress)?;
        Ok(MailboxAddress(MailboxId::parse(id)?))
    }
}

impl fmt::Display for MailboxAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@iran", self.0)
    }
}

/// Parses either a bare ID or a `<id>@iran` address: envelopes accept both.
pub fn parse_recipient(s: &str) -> Result<MailboxId, IdError> {
    match s.strip_suffix("@iran") {
        Some(id) => MailboxId::parse(id),
        None => MailboxId::parse(s),
    }
}

/// An approved agency's ID: 2-32 characters of `a-z`, `0-9` and `-`,
/// starting with a letter. It is also the suffix of the agency's topics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[schemars(description = "Agency ID: 2-32 characters of a-z, 0-9 and '-', starting with a letter.")]
pub struct AgencyId(#[schemars(regex(pattern = r"^[a-z][a-z0-9-]{1,31}$"))] String);

impl AgencyId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_len = (2..=32).contains(&s.len());
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok_len && first_ok && rest_ok {
            Ok(AgencyId(s.to_owned()))
        } else {
            Err(format!(
                "agency ID {:?} must be 2-32 characters of a-z, 0-9 and '-', starting with a letter",
                truncate_for_message(s, 40)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgencyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        AgencyId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Shortens untrusted text quoted in an error message.
pub(crate) fn truncate_for_message(s: &str, max_chars: usize) -> String {
    let mut out: String = s.chars().take(max_chars).collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn py_person_valid(s: &str) -> bool {
        // Independent transcription of the DOMAIN.md rule, for cross-checks.
        let d: Vec<u32> = s.bytes().map(|b| (b - b'0') as u32).collect();
        let sum: u32 = (0..9).map(|i| d[i] * (10 - i as u32)).sum::<u32>() % 11;
        if sum < 2 {
            d[9] == sum
        } else {
            d[9] == 11 - sum
        }
    }

    #[test]
    fn known_valid_national_codes() {
        for s in ["0499370899", "0790419904", "0084575948", "0067749828"] {
            assert!(py_person_valid(s), "{s} fails the reference rule");
            let id = MailboxId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(id.kind(), MailboxKind::Person);
            assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn person_check_digit_rule() {
        // body 049937089: s = 0*10+4*9+9*8+9*7+3*6+7*5+0*4+8*3+9*2 = 266; 266 % 11 = 2 -> 11-2 = 9
        assert_eq!(national_code_check_digit(&[0, 4, 9, 9, 3, 7, 0, 8, 9]), 9);
        assert_eq!(MailboxId::parse("0499370898"), Err(IdError::BadCheckDigit));
    }

    #[test]
    fn legal_id_rule() {
        // 10380284790 is a published legal ID (checked with the DOMAIN.md rule).
        let id = MailboxId::parse("10380284790").expect("valid legal id");
        assert_eq!(id.kind(), MailboxKind::Legal);
        assert_eq!(MailboxId::parse("10380284791"), Err(IdError::BadCheckDigit));
    }

    #[test]
    fn repeated_and_zero_serial() {
        assert_eq!(MailboxId::parse("0000000000"), Err(IdError::RepeatedDigits));
        assert_eq!(MailboxId::parse("1111111111"), Err(IdError::RepeatedDigits));
        assert_eq!(
            MailboxId::parse("00000000000"),
            Err(IdError::RepeatedDigits)
        );
        // digits 3..8 zero
        assert_eq!(MailboxId::parse("1230000000"), Err(IdError::ZeroSerial));
    }

    #[test]
    fn persian_and_arabic_digits() {
        let ascii = MailboxId::parse("0499370899").unwrap();
        assert_eq!(MailboxId::parse("۰۴۹۹۳۷۰۸۹۹").unwrap(), ascii);
        assert_eq!(MailboxId::parse("٠٤٩٩٣٧٠٨٩٩").unwrap(), ascii);
        assert_eq!(MailboxId::parse("۰۴۹۹370899").unwrap(), ascii);
    }

    #[test]
    fn precise_errors() {
        assert_eq!(MailboxId::parse(""), Err(IdError::Empty));
        assert_eq!(
            MailboxId::parse("04993 0899"),
            Err(IdError::InvalidCharacter {
                position: 5,
                ch: ' '
            })
        );
        assert_eq!(
            MailboxId::parse("123"),
            Err(IdError::WrongLength { len: 3 })
        );
        assert_eq!(
            MailboxId::parse("1234567890123"),
            Err(IdError::WrongLength { len: 13 })
        );
    }

    #[test]
    fn address_round_trip() {
        let a = MailboxAddress::parse("0499370899@iran").unwrap();
        assert_eq!(a.to_string(), "0499370899@iran");
        assert_eq!(
            MailboxAddress::parse("0499370899@irn"),
            Err(IdError::BadAddress)
        );
        assert_eq!(parse_recipient("0499370899@iran").unwrap(), a.0);
    }

    #[test]
    fn agency_ids() {
        assert!(AgencyId::parse("tax").is_ok());
        assert!(AgencyId::parse("social-security-2").is_ok());
        assert!(AgencyId::parse("Tax").is_err());
        assert!(AgencyId::parse("t").is_err());
        assert!(AgencyId::parse("9tax").is_err());
        assert!(AgencyId::parse("tax.ir").is_err());
    }

    proptest! {
        #[test]
        fn generated_people_are_valid(body in 0u32..1_000_000_000) {
            if let Some(id) = MailboxId::person_from_body(body) {
                let s = id.to_string();
                prop_assert_eq!(s.len(), 10);
                prop_assert_eq!(MailboxId::parse(&s), Ok(id));
                prop_assert_eq!(MailboxId::from_key(&id.to_key()), Some(id));
            }
        }

        #[test]
        fn generated_legal_are_valid(body in 0u64..10_000_000_000) {
            if let Some(id) = MailboxId::legal_from_body(body) {
                let s = id.to_string();
                prop_assert_eq!(s.len(), 11);
                prop_assert_eq!(MailboxId::parse(&s), Ok(id));
            }
        }

        #[test]
        fn one_digit_changed_is_caught(body in 0u32..1_000_000_000, pos in 0usize..10, delta in 1u8..10) {
            if let Some(id) = MailboxId::person_from_body(body) {
                let mut bytes = id.to_string().into_bytes();
                bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
                let changed = String::from_utf8(bytes).unwrap();
                // A single substituted digit never yields another valid code
                // except in the check position where s < 2 folds 0/1: the
                // rule maps each body to exactly one check digit, so any
                // change of the check digit itself is always caught.
                if pos == 9 {
                    prop_assert!(MailboxId::parse(&changed).is_err());
                }
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,16}") {
            let _ = MailboxId::parse(&s);
            let _ = parse_recipient(&s);
        }

        #[test]
        fn persian_digits_equal_ascii(body in 0u32..1_000_000_000) {
            if let Some(id) = MailboxId::person_from_body(body) {
                let persian: String = id.to_string().chars()
                    .map(|c| char::from_u32(0x06F0 + (c as u32 - '0' as u32)).unwrap())
                    .collect();
                prop_assert_eq!(MailboxId::parse(&persian), Ok(id));
            }
        }
    }
}
