//! Events of evidence: the trust file and signed inputs.

use karpoosheh_schemas::Reason;
use metrics::{counter, gauge, histogram};

use crate::metric_names as m;

/// A signed input (confirmation or mailbox profile) was refused before
/// anything in it was applied. Its reader counts and keeps it as well;
/// this counter says why the signature did not hold.
pub struct SignedInputRefused {
    /// `confirmation` or `profile`.
    pub kind: &'static str,
    pub reason: Reason,
}

impl SignedInputRefused {
    pub fn emit(self) {
        counter!(m::SIGNED_INPUTS_REFUSED, "kind" => self.kind, "reason" => self.reason.code())
            .increment(1);
        tracing::debug!(
            kind = self.kind,
            reason = self.reason.code(),
            "signed input refused"
        );
    }

    /// Every series at zero, so alerts and dashboards see them from the start.
    pub fn zero(kinds: &[&'static str]) {
        for kind in kinds {
            for reason in Self::REASONS {
                counter!(m::SIGNED_INPUTS_REFUSED, "kind" => *kind, "reason" => reason.code())
                    .increment(0);
            }
        }
        counter!(m::TRUST_FILE_LOADS, "result" => "ok").increment(0);
        counter!(m::TRUST_FILE_LOADS, "result" => "error").increment(0);
    }

    /// The reasons a signature check gives (decoding failures of the
    /// message itself are counted by its reader).
    pub const REASONS: &'static [Reason] = &[
        Reason::Unsigned,
        Reason::BadSignature,
        Reason::UnknownKey,
        Reason::KeyRevoked,
        Reason::SignerNotAllowed,
        Reason::WrongMessageKind,
    ];
}

/// The trust file was loaded (or a reload failed and the previous one
/// stays in force).
pub struct TrustFileLoaded<'a> {
    pub keys: usize,
    pub error: Option<&'a dyn std::error::Error>,
}

impl TrustFileLoaded<'_> {
    pub fn emit(self) {
        match self.error {
            None => {
                counter!(m::TRUST_FILE_LOADS, "result" => "ok").increment(1);
                tracing::info!(keys = self.keys, "trust file loaded");
            }
            Some(e) => {
                counter!(m::TRUST_FILE_LOADS, "result" => "error").increment(1);
                tracing::error!(error = %e, keys = self.keys, "trust file not reloaded; the previous one stays in force");
            }
        }
    }
}

/// An inquiry about a printed notice was answered (article 15). Never
/// logs the codes asked about.
pub struct DocumentInquired {
    /// One of [`DocumentInquired::RESULTS`].
    pub result: &'static str,
}

impl DocumentInquired {
    pub const RESULTS: &'static [&'static str] = &[
        "genuine",
        "not_genuine",
        "document_mismatch",
        "rate_limited",
        "bad_request",
        "error",
    ];

    pub fn emit(self) {
        counter!(m::DOCUMENT_INQUIRIES, "result" => self.result).increment(1);
        if self.result == "error" {
            tracing::warn!("a document inquiry could not read the store");
        }
    }

    /// Every series at zero, from the start.
    pub fn zero() {
        for r in Self::RESULTS {
            counter!(m::DOCUMENT_INQUIRIES, "result" => *r).increment(0);
        }
    }
}

/// Batches were appended to the node's audit log.
pub struct AuditAppended {
    /// Batches in the log now.
    pub size: u64,
}

impl AuditAppended {
    pub fn emit(self) {
        gauge!(m::AUDIT_LOG_ENTRIES).set(self.size as f64);
    }
}

/// A signed tree head of the audit log was published, or publishing (or
/// signing and keeping) one failed and will be retried.
pub struct TreeHeadPublished;

impl TreeHeadPublished {
    /// A head of `size` batches, signed at `signed_at`, went out.
    pub fn published(size: u64, signed_at: chrono::DateTime<chrono::Utc>) {
        counter!(m::AUDIT_TREE_HEADS, "result" => "published").increment(1);
        gauge!(m::AUDIT_LAST_TREE_HEAD).set(signed_at.timestamp_millis() as f64 / 1000.0);
        tracing::debug!(size, "tree head published");
    }

    pub fn failed(error: &str) {
        counter!(m::AUDIT_TREE_HEADS, "result" => "error").increment(1);
        tracing::warn!(
            error,
            "publishing the audit log's tree head failed; retrying"
        );
    }

    /// The size of the last head published (kept in the store).
    pub fn marked(size: u64) {
        gauge!(m::AUDIT_PUBLISHED_ENTRIES).set(size as f64);
    }

    /// Both results at zero from the start.
    pub fn zero() {
        counter!(m::AUDIT_TREE_HEADS, "result" => "published").increment(0);
        counter!(m::AUDIT_TREE_HEADS, "result" => "error").increment(0);
    }
}

/// The identity provider's key file was loaded (or a reload failed and
/// the keys in force stay).
pub struct IdentityKeysLoaded<'a> {
    pub keys: usize,
    pub error: Option<&'a dyn std::error::Error>,
}

impl IdentityKeysLoaded<'_> {
    pub fn emit(self) {
        match self.error {
            None => {
                counter!(m::IDENTITY_KEY_LOADS, "result" => "ok").increment(1);
                counter!(m::IDENTITY_KEY_LOADS, "result" => "error").increment(0);
                tracing::info!(keys = self.keys, "identity provider keys loaded");
            }
            Some(e) => {
                counter!(m::IDENTITY_KEY_LOADS, "result" => "error").increment(1);
                tracing::error!(error = %e, keys = self.keys, "identity provider keys not reloaded; the keys in force stay");
            }
        }
    }
}

/// The inbox API answered a call. Never carries who called or which
/// mailbox: those are personal data (the traffic record keeps them).
pub struct InboxAnswered {
    pub route: &'static str,
    pub status: u16,
    pub elapsed: std::time::Duration,
}

impl InboxAnswered {
    pub fn emit(self) {
        counter!(m::INBOX_REQUESTS, "route" => self.route, "status" => self.status.to_string())
            .increment(1);
        histogram!(m::INBOX_REQUEST_SECONDS, "route" => self.route)
            .record(self.elapsed.as_secs_f64());
    }

    /// The series an idle API shows from the start.
    pub fn zero() {
        for route in ["mailbox", "notice"] {
            counter!(m::INBOX_REQUESTS, "route" => route, "status" => "200").increment(0);
        }
    }
}
