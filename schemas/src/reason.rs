//! Stable, machine-readable reason codes for every rejection, and the
//! [`Problem`] that pairs one with a field and a human message.
//!
//! Codes are part of the wire contract: they are never renamed or reused.
//! New codes may be added in any version; agencies must treat an unknown
//! code as a generic rejection.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident = $code:literal, )*) => {
        /// Why input was rejected. Serialized as its snake_case code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum Reason {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable snake_case code.
            pub fn code(self) -> &'static str {
                match self { $(Reason::$variant => $code,)* }
            }

            /// One line on what the code means, for docs and `--help`.
            pub fn describe(self) -> &'static str {
                match self { $(Reason::$variant => concat!($($doc),*).trim_ascii(),)* }
            }

            /// Parses a code back into a reason.
            pub fn from_code(code: &str) -> Option<Reason> {
                match code { $($code => Some(Reason::$variant),)* _ => None }
            }
        }
    };
}

reasons! {
    /// The payload is not valid JSON.
    MalformedJson = "malformed_json",
    /// The payload is not valid UTF-8.
    InvalidUtf8 = "invalid_utf8",
    /// The payload is larger than the operator's limit for one message.
    PayloadTooLarge = "payload_too_large",
    /// The payload is empty.
    EmptyPayload = "empty_payload",
    /// The payload is JSON but not an object.
    NotAnObject = "not_an_object",
    /// A required field is missing or null.
    MissingField = "missing_field",
    /// A field has the wrong JSON type.
    WrongType = "wrong_type",
    /// A field that the schema does not define (a typo?).
    UnknownField = "unknown_field",
    /// The same field appears twice in one object.
    DuplicateField = "duplicate_field",
    /// The message's schema_version is not one this engine accepts.
    UnsupportedSchemaVersion = "unsupported_schema_version",
    /// An ID contains a character that is not a digit.
    InvalidCharacter = "invalid_character",
    /// An ID has neither 10 (national code) nor 11 (legal ID) digits.
    WrongLength = "wrong_length",
    /// An ID's check digit does not match.
    BadCheckDigit = "bad_check_digit",
    /// An ID made of one repeated digit.
    RepeatedDigits = "repeated_digits",
    /// An ID whose digits 4 to 9 are all zero.
    ZeroSerial = "zero_serial",
    /// A mailbox address that is not of the form <id>@iran.
    InvalidAddress = "invalid_address",
    /// The agency ID is malformed.
    InvalidAgency = "invalid_agency",
    /// The agency's reference is empty, too long or has control characters.
    InvalidReference = "invalid_reference",
    /// The notice kind is not one of the defined kinds.
    UnknownKind = "unknown_kind",
    /// The life event is not one of the defined life events.
    UnknownLifeEvent = "unknown_life_event",
    /// The minimum access level is not 1, 2 or 3.
    InvalidAccessLevel = "invalid_access_level",
    /// A timestamp is not RFC 3339 with a time zone.
    InvalidTimestamp = "invalid_timestamp",
    /// The retention expiry is already in the past.
    ExpiryInPast = "expiry_in_past",
    /// The retention expiry is further away than the operator allows.
    ExpiryTooFar = "expiry_too_far",
    /// The scheduled delivery time is not before the retention expiry.
    DeliverAtAfterExpiry = "deliver_at_after_expiry",
    /// The scheduled delivery time is further away than the operator allows.
    DeliverAtTooFar = "deliver_at_too_far",
    /// The response deadline is not after the notice lands (now, or its deliver_at).
    RespondByTooEarly = "respond_by_too_early",
    /// The response deadline is after the retention expiry.
    RespondByAfterExpiry = "respond_by_after_expiry",
    /// The title is empty.
    TitleEmpty = "title_empty",
    /// The title is longer than the operator's limit.
    TitleTooLong = "title_too_long",
    /// The body is empty.
    BodyEmpty = "body_empty",
    /// The body is longer than the operator's limit.
    BodyTooLong = "body_too_long",
    /// Text contains control characters other than newline and tab.
    ControlCharacters = "control_characters",
    /// More attachments than the operator allows.
    TooManyAttachments = "too_many_attachments",
    /// One attachment is over the operator's size limit (art. 12).
    AttachmentTooLarge = "attachment_too_large",
    /// All attachments together are over the operator's limit.
    AttachmentsTotalTooLarge = "attachments_total_too_large",
    /// An attachment's media type is not on the operator's list (art. 12).
    AttachmentTypeNotAllowed = "attachment_type_not_allowed",
    /// An attachment's name is empty, too long or has path separators.
    AttachmentInvalidName = "attachment_invalid_name",
    /// An attachment's SHA-256 is not 64 hexadecimal characters.
    AttachmentInvalidSha256 = "attachment_invalid_sha256",
    /// The batch ID is empty, too long or has control characters.
    InvalidBatchId = "invalid_batch_id",
    /// The e-mail address is malformed.
    InvalidEmail = "invalid_email",
    /// A natural person's e-mail must be on a .ir domain (art. 20).
    EmailNotIr = "email_not_ir",
    /// The mobile number is not an Iranian mobile number (09xxxxxxxxx).
    InvalidMobile = "invalid_mobile",
    /// A mailbox cannot be its own representative.
    SelfRepresentative = "self_representative",
    /// A delegation names no representative of the profile, names one
    /// twice, or has an access level outside 1-3.
    InvalidDelegation = "invalid_delegation",
    /// The agency reference was used before for a notice with different
    /// content; the original is kept.
    ReferenceConflict = "reference_conflict",
    /// The envelope's agency differs from the agency its source speaks for.
    AgencyMismatch = "agency_mismatch",
    /// The agency is not in the operator's registry of approved agencies.
    AgencyUnknown = "agency_unknown",
    /// The agency is suspended or dissolved and may not send (art. 8, 26).
    AgencyNotAllowed = "agency_not_allowed",
    /// The agency has sent its quota of notices for the day (Tehran time) on this node; send again tomorrow.
    QuotaExceeded = "quota_exceeded",
    /// A confirmation names a tracking code the system does not know.
    UnknownNotice = "unknown_notice",
    /// A confirmation arrived after the notice's retention expiry.
    NoticeExpired = "notice_expired",
    /// A confirmation comes from a mailbox that is neither the notice's recipient nor one of its representatives.
    NotRecipient = "not_recipient",
    /// A confirmation comes from a mailbox that was never notified of the notice: no round reached it (art. 29 counts confirmations of a notification).
    NotNotified = "not_notified",
    /// A confirmation arrived after the notice was served; it does not count again.
    AlreadyServed = "already_served",
    /// A confirmation comes from a mailbox that cannot confirm in its state: deceased, dissolved, never activated, or an incapacitated person whose guardian acts for them.
    MailboxNotReachable = "mailbox_not_reachable",
    /// A mailbox profile is dated further in the future than the operator allows (kafka.registry_max_future_skew); it would pin the mailbox against later corrections.
    ProfileFromFuture = "profile_from_future",
    /// A confirmation's Kafka record key is not the mailbox that confirms (confirmed_by): the key is what broker ACLs and partitioning see, so the two must agree.
    KeyMismatch = "key_mismatch",
    /// A confirmation or mailbox profile that is not signed: it must be a JWS (flattened JSON serialization, EdDSA) by a key in the operator's trust file.
    Unsigned = "unsigned",
    /// The signature does not verify, or the signed envelope is malformed (its header, encoding or algorithm).
    BadSignature = "bad_signature",
    /// The signature names a key ID that is not in the operator's trust file.
    UnknownKey = "unknown_key",
    /// The signing key was revoked in the trust file (a leaked or retired key).
    KeyRevoked = "key_revoked",
    /// The signer is suspended or revoked in the trust file, or not allowed to sign this kind of message.
    SignerNotAllowed = "signer_not_allowed",
    /// The message was signed as another kind (the JWS typ header): a signed profile is no confirmation, and the reverse.
    WrongMessageKind = "wrong_message_kind",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Reason {
    /// Input that could not be decoded into an envelope at all: these go
    /// to the dead-letter record, since no agency can be told reliably.
    pub fn is_undecodable(self) -> bool {
        matches!(
            self,
            Reason::MalformedJson
                | Reason::InvalidUtf8
                | Reason::PayloadTooLarge
                | Reason::EmptyPayload
                | Reason::NotAnObject
        )
    }
}

/// One problem found in one message: the reason code, the field it is
/// about (a JSON path such as `attachments[2].size`), and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// The stable reason code.
    pub reason: Reason,
    /// The field the problem is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong and how to fix it, in English.
    pub message: String,
}

impl Problem {
    pub fn new(
        reason: Reason,
        field: impl Into<Option<String>>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({}): {}", self.reason, field, self.message),
            None => write!(f, "{}: {}", self.reason, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &r in Reason::ALL {
            let code = r.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
            assert_eq!(Reason::from_code(code), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{code}\""));
            assert!(!r.describe().is_empty());
        }
    }
}
