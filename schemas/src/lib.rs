//! The Karpoosheh wire contract.
//!
//! Everything agencies, the identity side and the inbox apps exchange with
//! the engine: mailbox and agency IDs (with the national check-digit
//! rules), tracking codes, the notice envelope and its validation, receipts,
//! confirmations, mailbox profiles and dead-letter records; the JSON Schema
//! files generated from these types (`schemas/json/`) and the ScyllaDB CQL
//! schema (`schemas/cql/`); and the names of the metrics every engine node
//! exports ([`metric_names`]), the contract with SRE's alerts and the
//! operators' dashboard, which reads them without linking the engine.
//!
//! This crate does no I/O and has no async code, so anyone — the engine,
//! the load generator, an agency's own Rust tooling — can depend on it.
//! Validation reports every problem in a message at once, each as a stable
//! snake_case [`Reason`] plus a human message.

mod calendar;
mod cql;
mod dashboard;
mod decode;
mod ids;
mod json_schema;
mod limits;
mod mask;
mod messages;
pub mod metric_names;
mod notice;
mod priority;
mod reason;
pub mod rfc3339;
mod tracking;

pub use calendar::{solar_hijri, TEHRAN_UTC_OFFSET_SECS};
pub use cql::{cql_checksum, cql_schema_version, cql_statements, Migration, CQL_MIGRATIONS};
pub use dashboard::{NoticeHistory, ParkedLot, QuarantinedView};
pub use decode::{
    decode_envelope, decode_notice, email_domain, is_iranian_mobile, validate_profile, Envelope,
    Rejection,
};
pub use ids::{
    digit_value, legal_id_check_digit, national_code_check_digit, parse_recipient, AgencyId,
    IdError, MailboxAddress, MailboxId, MailboxKind,
};
pub use json_schema::all_schemas;
pub use limits::{ByteSize, HumanDuration, Limits};
pub use mask::{mask_id, mask_personal};
pub use messages::{
    BatchRef, ChainLink, Channel, Confirmation, DeadLetter, Delegation, Evidence, MailboxProfile,
    MailboxStatus, Receipt, ReceiptEvent, SourcePosition,
};
pub use notice::{
    normalize_verification_code, verification_code, AccessLevel, Attachment, LifeEvent, Notice,
    NoticeKind, MAX_ACCESS_LEVEL, SCHEMA_VERSION,
};
pub use priority::Priority;
pub use reason::{Problem, Reason};
pub use tracking::{TrackingCode, TrackingCodeError, MAX_NODE, TRACKING_EPOCH_MS};
