//! The operator's limits on what a notice may carry (art. 12), and the
//! typed size and duration values used in configuration.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written in configuration as `262144`, `"256KiB"`,
/// `"64 MiB"`, `"1GB"` (SI) and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * 1024)
    }
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("{s:?} is not a size: expected e.g. 1048576, \"512KiB\", \"64MiB\"")
        })?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} in {s:?}: use B, KiB, MiB, GiB, KB, MB or GB"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 30 && n % (1 << 30) == 0 {
            write!(f, "{}GiB", n >> 30)
        } else if n >= 1 << 20 && n % (1 << 20) == 0 {
            write!(f, "{}MiB", n >> 20)
        } else if n >= 1 << 10 && n % (1 << 10) == 0 {
            write!(f, "{}KiB", n >> 10)
        } else {
            write!(f, "{n}B")
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as `"250ms"`, `"5s"`, `"3days"`, `"30years"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| {
                format!("{s:?} is not a duration ({e}): expected e.g. \"250ms\", \"5s\", \"3days\"")
            })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What one notice may carry. Operator configuration (`[limits]`); the
/// defaults below are conservative starting points, not regulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest encoded message accepted; larger ones are dead-lettered
    /// unread, so a flood of huge records cannot exhaust memory.
    pub max_payload_bytes: ByteSize,
    /// Longest agency reference, in characters.
    pub max_reference_chars: usize,
    /// Longest title, in characters (it goes into SMS notifications).
    pub max_title_chars: usize,
    /// Largest body, in UTF-8 bytes.
    pub max_body_bytes: ByteSize,
    /// Most attachments on one notice.
    pub max_attachments: usize,
    /// Largest single attachment (art. 12).
    pub max_attachment_bytes: ByteSize,
    /// Largest total of all attachments on one notice.
    pub max_total_attachment_bytes: ByteSize,
    /// Media types an attachment may have (art. 12), compared
    /// case-insensitively and without parameters.
    pub allowed_media_types: Vec<String>,
    /// How far in the future a retention expiry may be.
    pub max_retention: HumanDuration,
    /// How far in the future a scheduled delivery (`deliver_at`) may be.
    pub max_schedule_ahead: HumanDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Notices are text plus attachment metadata; 256 KiB is ~100x a typical one.
            max_payload_bytes: ByteSize::kib(256),
            max_reference_chars: 128,
            // Long enough for any real subject line, short enough for an SMS.
            max_title_chars: 200,
            max_body_bytes: ByteSize::kib(64),
            max_attachments: 20,
            max_attachment_bytes: ByteSize::mib(20),
            max_total_attachment_bytes: ByteSize::mib(50),
            allowed_media_types: [
                "application/pdf",
                "image/jpeg",
                "image/png",
                "image/tiff",
                "application/xml",
                "text/plain",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            // Legal documents may need to outlive decades of appeals.
            max_retention: HumanDuration(Duration::from_secs(1_577_880_000)), // "50years"
            // A campaign planned for the next tax year; further is a mistake.
            max_schedule_ahead: HumanDuration(Duration::from_secs(366 * 24 * 3600)), // "366days"
        }
    }
}

impl Limits {
    /// Refuses limits that make no sense, at start-up.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_payload_bytes.0 < 1024 {
            return Err("limits.max_payload_bytes must be at least 1KiB".into());
        }
        if self.max_title_chars == 0 || self.max_reference_chars == 0 || self.max_body_bytes.0 == 0
        {
            return Err(
                "limits.max_title_chars, max_reference_chars and max_body_bytes must be above zero"
                    .into(),
            );
        }
        if self.max_attachment_bytes > self.max_total_attachment_bytes {
            return Err(
                "limits.max_attachment_bytes is larger than limits.max_total_attachment_bytes"
                    .into(),
            );
        }
        if self.allowed_media_types.iter().any(|m| !m.contains('/')) {
            return Err("limits.allowed_media_types entries must look like type/subtype".into());
        }
        Ok(())
    }

    pub(crate) fn media_type_allowed(&self, media_type: &str) -> bool {
        let base = media_type.split(';').next().unwrap_or("").trim();
        self.allowed_media_types
            .iter()
            .any(|m| m.eq_ignore_ascii_case(base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!("256KiB".parse::<ByteSize>(), Ok(ByteSize(262_144)));
        assert_eq!("64 MiB".parse::<ByteSize>(), Ok(ByteSize(64 << 20)));
        assert_eq!("1GB".parse::<ByteSize>(), Ok(ByteSize(1_000_000_000)));
        assert_eq!("42".parse::<ByteSize>(), Ok(ByteSize(42)));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("KiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(262_144).to_string(), "256KiB");
    }

    #[test]
    fn defaults_are_valid() {
        Limits::default().validate().unwrap();
        let l = Limits {
            max_attachment_bytes: ByteSize::mib(100),
            ..Limits::default()
        };
        assert!(l.validate().is_err());
    }

    #[test]
    fn media_types_ignore_case_and_parameters() {
        let l = Limits::default();
        assert!(l.media_type_allowed("Application/PDF"));
        assert!(l.media_type_allowed("text/plain; charset=utf-8"));
        assert!(!l.media_type_allowed("application/x-msdownload"));
    }
}
