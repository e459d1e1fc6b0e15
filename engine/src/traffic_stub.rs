//! Temporary stub with the traffic API (replaced by traffic.rs).
use karpoosheh_schemas::{MailboxId, Reason};
pub struct TrafficConfig {
    pub notices: u64,
    pub bad_ratio: f64,
    pub duplicate_ratio: f64,
    pub mailboxes: u64,
    pub seed: u64,
    pub start: chrono::DateTime<chrono::Utc>,
}
impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            notices: 0,
            bad_ratio: 0.03,
            duplicate_ratio: 0.01,
            mailboxes: 2_000_000,
            seed: 42,
            start: chrono::Utc::now(),
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    Stored,
    Duplicate,
    Rejected(Reason),
    DeadLetter(Reason),
}
pub struct Generated {
    pub payload: Vec<u8>,
    pub agency: &'static str,
    pub expect: Expect,
}
pub struct Traffic {
    cfg: TrafficConfig,
}
impl Traffic {
    pub fn new(cfg: TrafficConfig) -> Self {
        Traffic { cfg }
    }
    pub fn config(&self) -> &TrafficConfig {
        &self.cfg
    }
    pub fn record(&self, i: u64) -> Generated {
        let id = MailboxId::person_from_body(100_000_000 + i as u32 % 1000)
            .unwrap_or_else(|| MailboxId::person_from_body(123456789).unwrap());
        let p = format!(
            r#"{{"schema_version":1,"agency":"tax","reference":"r-{i}","recipient":"{id}","kind":"bill","title":"قبض","body":"متن","expires_at":"2030-01-01T00:00:00Z","sent_at":"2026-01-01T00:00:00Z"}}"#
        );
        Generated {
            payload: p.into_bytes(),
            agency: "tax",
            expect: Expect::Stored,
        }
    }
    pub fn chunk(&self, start: u64, end: u64) -> Vec<Generated> {
        (start..end).map(|i| self.record(i)).collect()
    }
    pub fn agencies() -> &'static [(&'static str, f64)] {
        &[("tax", 1.0)]
    }
    pub fn recipient_of(&self, i: u64) -> Option<MailboxId> {
        MailboxId::person_from_body(100_000_000 + i as u32 % 1000)
    }
}
