//! `karpoosheh store check`: reads every record of the embedded store
//! back -- which makes fjall verify every block's checksum -- and decodes
//! those whose format the engine owns, then checks the high-water marks
//! against what is stored. It says what is wrong and where; it changes
//! nothing.

use super::*;
use crate::model::{NewRejection, Quarantined, StoredNotice};

/// One keyspace's reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceCheck {
    pub name: &'static str,
    pub records: u64,
    /// Records that could not be read or decoded (a scan that failed
    /// counts one, and stops that keyspace).
    pub unreadable: u64,
}

/// What `check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub keyspaces: Vec<KeyspaceCheck>,
    /// The first problems, in words (at most `show`), and how many in all.
    pub problems: Vec<String>,
    pub problem_count: u64,
}

type Decoder = fn(&[u8]) -> Result<(), StoreError>;

fn notice(v: &[u8]) -> Result<(), StoreError> {
    decode::<StoredNotice>("notice", v).map(|_| ())
}
fn delivery(v: &[u8]) -> Result<(), StoreError> {
    decode_delivery(v).map(|_| ())
}
fn receipt(v: &[u8]) -> Result<(), StoreError> {
    decode::<Receipt>("receipt", v).map(|_| ())
}
fn profile(v: &[u8]) -> Result<(), StoreError> {
    decode::<MailboxProfile>("profile", v).map(|_| ())
}
fn rejection(v: &[u8]) -> Result<(), StoreError> {
    decode::<NewRejection>("rejection", v).map(|_| ())
}
fn dead_letter(v: &[u8]) -> Result<(), StoreError> {
    decode::<DeadLetter>("dead letter", v).map(|_| ())
}
fn quarantined(v: &[u8]) -> Result<(), StoreError> {
    decode::<Quarantined>("quarantined record", v).map(|_| ())
}

impl FjallStore {
    /// Reads the whole store back; at most `show` problems in words.
    pub fn check(&self, show: usize) -> CheckReport {
        let mut report = CheckReport::default();
        let problem = |report: &mut CheckReport, text: String| {
            report.problem_count += 1;
            if report.problems.len() < show {
                report.problems.push(text);
            }
        };
        let spaces: [(&'static str, &Keyspace, Option<Decoder>); 22] = [
            ("notices", &self.notices, Some(notice)),
            ("mailbox", &self.mailbox, None),
            ("refs", &self.refs, None),
            ("rejections", &self.rejections, Some(rejection)),
            ("dead_letters", &self.dead_letters, Some(dead_letter)),
            ("kept_sources", &self.kept_sources, None),
            ("profiles", &self.profiles, Some(profile)),
            ("meta", &self.meta, None),
            ("delivery", &self.delivery, Some(delivery)),
            ("timers", &self.timers, None),
            ("outbox", &self.outbox, Some(receipt)),
            ("confirmations", &self.confirmations, None),
            ("awaiting", &self.awaiting, None),
            ("events", &self.events, None),
            ("audit_log", &self.audit_log, None),
            ("audit_leaves", &self.audit_leaves, None),
            ("audit_events", &self.audit_events, None),
            ("audit_heads", &self.audit_heads, None),
            ("parked", &self.parked, Some(receipt)),
            ("quarantine", &self.quarantine, Some(quarantined)),
            ("access", &self.access, None),
            ("access_by_mailbox", &self.access_by_mailbox, None),
        ];
        let mut highest_notice = None;
        for (name, ks, decoder) in spaces {
            let mut c = KeyspaceCheck {
                name,
                records: 0,
                unreadable: 0,
            };
            for guard in ks.iter() {
                let (k, v) = match guard.into_inner() {
                    Ok(kv) => kv,
                    Err(e) => {
                        c.unreadable += 1;
                        problem(
                            &mut report,
                            format!("{name}: reading stopped after {} records: {e}", c.records),
                        );
                        break;
                    }
                };
                c.records += 1;
                if name == "notices" {
                    highest_notice = u64_of(&k).ok();
                }
                if let Some(d) = decoder {
                    if let Err(e) = d(&v) {
                        c.unreadable += 1;
                        // Keys of these name a mailbox: personal data.
                        let key = match name {
                            "profiles" | "mailbox" | "awaiting" | "access"
                            | "access_by_mailbox" => "(a mailbox's, not shown)".to_owned(),
                            _ => hex_key(&k),
                        };
                        problem(&mut report, format!("{name}: key {key}: {e}"));
                    }
                }
            }
            report.keyspaces.push(c);
        }
        // The next tracking code is issued above the `meta` mark: one
        // below a stored notice would be issued twice.
        let last = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_tracking;
        if let Some(h) = highest_notice {
            if last.is_none_or(|l| l < h) {
                problem(
                    &mut report,
                    format!(
                        "meta: the last tracking code issued ({}) is below a stored notice's ({}): codes would be issued twice",
                        last.map_or("none".to_owned(), |l| TrackingCode::from_u64(l).to_string()),
                        TrackingCode::from_u64(h)
                    ),
                );
            }
        }
        report
    }
}

fn hex_key(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every decoder the check uses, by keyspace (for the damaged-bytes test).
#[cfg(test)]
pub(super) const DECODERS: &[(&str, Decoder)] = &[
    ("notices", notice),
    ("delivery", delivery),
    ("outbox", receipt),
    ("profiles", profile),
    ("rejections", rejection),
    ("dead_letters", dead_letter),
    ("quarantine", quarantined),
];
