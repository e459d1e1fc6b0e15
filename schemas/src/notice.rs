//! The notice envelope an agency sends, in its validated form.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{AgencyId, MailboxId};

/// The version of every message schema in this crate. See
/// docs/wire-contract.md for the compatibility policy.
pub const SCHEMA_VERSION: u32 = 1;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $( $(#[doc = $doc:literal])* $variant:ident = $code:literal, )* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $( $(#[doc = $doc])* $variant, )* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code,)* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($code => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// What a notice is (art. 1; 1401 art. 26).
    NoticeKind {
        /// A general announcement.
        Announcement = "announcement",
        /// An official service notice (eblaghiye): legally served under art. 29.
        ServiceNotice = "service_notice",
        /// A letter.
        Letter = "letter",
        /// A certificate.
        Certificate = "certificate",
        /// A permit or licence.
        Permit = "permit",
        /// A bill.
        Bill = "bill",
        /// The result of a service the recipient requested.
        ServiceResult = "service_result",
    }
}

string_enum! {
    /// The life event a notice relates to (the national life-event catalogue).
    LifeEvent {
        Birth = "birth",
        Education = "education",
        Health = "health",
        Tax = "tax",
        Business = "business",
        SocialSecurity = "social_security",
        PropertyRegistration = "property_registration",
        UrbanUtilities = "urban_utilities",
        Insurance = "insurance",
        Marriage = "marriage",
        Retirement = "retirement",
        DocumentsAndCertificates = "documents_and_certificates",
        Death = "death",
        Other = "other",
    }
}

/// The access level needed to open a notice, or held by a mailbox (art. 18):
/// 1 — mobile, national code and ID-card serial matched online (Shahkar);
/// 2 — identity verified in person or biometrically; 3 — digital signature.
pub type AccessLevel = u8;

fn default_access_level() -> AccessLevel {
    1
}

fn default_life_event() -> LifeEvent {
    LifeEvent::Other
}

/// The highest access level.
pub const MAX_ACCESS_LEVEL: AccessLevel = 3;

/// Metadata of one attached document; the bytes travel separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// File name shown to the recipient, without any path.
    pub name: String,
    /// IANA media type, e.g. `application/pdf`; must be on the operator's list.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, 64 lowercase hexadecimal characters.
    pub sha256: String,
}

/// A validated notice, as the engine stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Notice envelope",
    description = "One notice from one agency to one mailbox. Produced by agencies to karpoosheh.notices.<agency>, keyed by recipient."
)]
pub struct Notice {
    /// Always 1 for this version of the contract.
    pub schema_version: u32,
    /// The sending agency; must match the topic or batch it arrives on.
    pub agency: AgencyId,
    /// The agency's own reference, unique per agency (1-128 characters):
    /// re-sending the same reference with the same content is absorbed,
    /// with different content it is rejected and the original kept.
    pub reference: String,
    /// The recipient mailbox: a national code or legal national ID, bare or
    /// as `<id>@iran`.
    pub recipient: MailboxId,
    pub kind: NoticeKind,
    /// Shown in the mailbox listing and in notifications.
    pub title: String,
    /// The notice text (plain text; newlines kept).
    pub body: String,
    /// Attached documents, within the operator's limits (art. 12).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The access level needed to open the notice (1-3); 1 when absent.
    #[serde(default = "default_access_level")]
    pub min_access_level: AccessLevel,
    /// The related life event; `other` when absent.
    #[serde(default = "default_life_event")]
    pub life_event: LifeEvent,
    /// Retention expiry: the notice and its traffic data are kept until
    /// then (art. 33). RFC 3339 with a time zone.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub expires_at: DateTime<Utc>,
    /// When the agency issued the notice. RFC 3339 with a time zone.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub sent_at: DateTime<Utc>,
    /// Optional batch or campaign ID, for the agency's own grouping.
    #[serde(default)]
    pub batch_id: Option<String>,
}

impl Notice {
    /// SHA-256 over the notice's content: everything the recipient sees or
    /// that has legal effect. `sent_at`, `batch_id` and `schema_version` are
    /// transport details and left out, so a re-send of the same notice in a
    /// later batch is recognised as the same notice.
    pub fn content_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        // Length-prefix every variable field so no two notices encode alike.
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(self.agency.as_str().as_bytes());
        field(self.reference.as_bytes());
        field(&self.recipient.to_key());
        field(self.kind.as_str().as_bytes());
        field(self.title.as_bytes());
        field(self.body.as_bytes());
        field(&(self.attachments.len() as u64).to_le_bytes());
        for a in &self.attachments {
            field(a.name.as_bytes());
            field(a.media_type.as_bytes());
            field(&a.size.to_le_bytes());
            field(a.sha256.as_bytes());
        }
        field(&[self.min_access_level]);
        field(self.life_event.as_str().as_bytes());
        field(&self.expires_at.timestamp_millis().to_le_bytes());
        h.finalize().into()
    }
}

/// The verification code printed on a paper copy of a notice (article
/// 15): the first 40 bits of SHA-256("karpoosheh-document-v1" ||
/// tracking code as text || content hash), in Crockford base32, as
/// `XXXX-XXXX`. Only someone who holds the document (its content hash)
/// can compute it; with the tracking code it lets anyone check a paper
/// copy, and it cannot be guessed from a tracking code.
pub fn verification_code(code: &crate::TrackingCode, content_hash: &[u8; 32]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut h = Sha256::new();
    h.update(b"karpoosheh-document-v1");
    h.update(code.to_string().as_bytes());
    h.update(content_hash);
    let d: [u8; 32] = h.finalize().into();
    let bits = u64::from_be_bytes([0, 0, 0, d[0], d[1], d[2], d[3], d[4]]);
    let mut out = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            out.push('-');
        }
        out.push(ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize] as char);
    }
    out
}

/// Reads a verification code as someone may type it: case, spaces and
/// dashes do not matter, and Crockford's look-alikes (O for 0, I and L
/// for 1) are accepted. `None` when it cannot be one.
pub fn normalize_verification_code(text: &str) -> Option<String> {
    let mut chars = Vec::with_capacity(8);
    for c in text.chars() {
        let c = match c.to_ascii_uppercase() {
            ' ' | '-' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c if c.is_ascii_digit() || ("ABCDEFGHJKMNPQRSTVWXYZ".contains(c)) => c,
            _ => return None,
        };
        chars.push(c);
    }
    if chars.len() != 8 {
        return None;
    }
    let mut out: String = chars[..4].iter().collect();
    out.push('-');
    out.extend(&chars[4..]);
    Some(out)
}

#[cfg(test)]
mod verification_tests {
    use super::*;
    use crate::TrackingCode;

    #[test]
    fn verification_codes_are_short_stable_and_typed_loosely() {
        let code = TrackingCode::parse("06YN-3RZS-R000-01").unwrap();
        let a = verification_code(&code, &[1; 32]);
        assert_eq!(a.len(), 9);
        assert_eq!(a, verification_code(&code, &[1; 32]), "deterministic");
        assert_ne!(
            a,
            verification_code(&code, &[2; 32]),
            "bound to the content"
        );
        let other = TrackingCode::from_u64(code.as_u64() + 1);
        assert_ne!(a, verification_code(&other, &[1; 32]), "and to the notice");
        assert_eq!(
            normalize_verification_code(&a.to_lowercase()),
            Some(a.clone())
        );
        assert_eq!(
            normalize_verification_code(&a.replace('-', " ")),
            Some(a.clone())
        );
        assert_eq!(
            normalize_verification_code("o1il-ab2z"),
            Some("0111-AB2Z".to_owned())
        );
        for bad in ["", "ABC", "ABCD-EFGH-J", "ABCD-EFGU", "ابلا-غیه۱"] {
            assert_eq!(normalize_verification_code(bad), None, "{bad}");
        }
    }
}
