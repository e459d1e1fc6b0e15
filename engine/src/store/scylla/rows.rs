//! Row mapping and bucketing for the ScyllaDB backend: how a notice, a
//! rejection, a timer or a receipt becomes columns and partition keys, and
//! back. Pure functions, tested without a server.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use karpoosheh_schemas::{
    AgencyId, Attachment, LifeEvent, MailboxId, Notice, NoticeKind, TrackingCode,
};
use scylla::{DeserializeRow, DeserializeValue, SerializeRow, SerializeValue};

use crate::model::StoredNotice;
use crate::store::StoreError;

const HOUR_MS: i64 = 3_600_000;

/// CQL's TTL ceiling: 20 years. Rows meant to live longer get no TTL and
/// are removed by the engine's own expiry timers.
pub(crate) const MAX_TTL_SECS: i64 = 630_720_000;

/// Rejections and dead letters of one day are spread over this many
/// partitions (see the `rejections` table).
pub(crate) const TRAFFIC_BUCKETS: u8 = 16;

/// The agency column of rejections without one.
pub(crate) const UNATTRIBUTED: &str = "_unattributed";
/// The agency column of `traffic_days` for dead letters (a partition key
/// component is better not empty).
pub(crate) const DEAD_LETTER_DAYS: &str = "_dead_letters";

/// A tracking code as CQL stores it: the same 64 bits as a bigint.
pub(crate) fn code_col(code: TrackingCode) -> i64 {
    code.as_u64() as i64
}

pub(crate) fn code_of(col: i64) -> TrackingCode {
    TrackingCode::from_u64(col as u64)
}

/// The timer and outbox partition hour of a time in milliseconds.
pub(crate) fn hour_of(ms: i64) -> i32 {
    ms.div_euclid(HOUR_MS)
        .clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// The first millisecond of a partition hour.
pub(crate) fn hour_start_ms(hour: i32) -> i64 {
    hour as i64 * HOUR_MS
}

/// `yyyymm` (UTC) of a tracking code's issue time: its mailbox month.
pub(crate) fn month_of(code: TrackingCode) -> i32 {
    let t = DateTime::from_timestamp_millis(code.unix_ms()).unwrap_or_default();
    t.year() * 100 + t.month() as i32
}

/// The UTC day of a time in milliseconds.
pub(crate) fn day_of(ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

/// The traffic bucket of a rejection or dead-letter ID.
pub(crate) fn bucket_of(id: u64) -> i8 {
    (id % TRAFFIC_BUCKETS as u64) as i8
}

/// Seconds of TTL for a row that must live until `until` (plus `slack`),
/// counted from `now`: at least one second, and 0 (no TTL) past the CQL
/// ceiling.
pub(crate) fn ttl_until(until: DateTime<Utc>, now: DateTime<Utc>, slack_secs: i64) -> i32 {
    let secs = (until - now).num_seconds().saturating_add(slack_secs);
    if secs > MAX_TTL_SECS {
        0
    } else {
        secs.max(1) as i32
    }
}

/// IDs of rejections, dead letters and outbox receipts: the layout of a
/// tracking code (milliseconds, node, sequence), so they are unique across
/// the fleet and increase with time on each node.
pub(crate) fn next_id(last: &mut u64, node: u16, now_ms: i64) -> u64 {
    let candidate = TrackingCode::from_parts(now_ms, node, 0).as_u64();
    let after = TrackingCode::from_u64(*last);
    let bumped = if after.as_u64() == 0 {
        0
    } else if after.as_u64() & 0xfff == 0xfff {
        // The sequence of that millisecond is used up: the next one.
        TrackingCode::from_parts(after.unix_ms() + 1, node, 0).as_u64()
    } else {
        after.as_u64() + 1
    };
    *last = candidate.max(bumped);
    *last
}

/// The time an ID was issued at, in milliseconds.
pub(crate) fn id_ms(id: u64) -> i64 {
    TrackingCode::from_u64(id).unix_ms()
}

/// An attachment's metadata as the `attachment` user type.
#[derive(Debug, Clone, PartialEq, SerializeValue, DeserializeValue)]
pub(crate) struct AttachmentUdt {
    pub name: String,
    pub media_type: String,
    pub size: i64,
    pub sha256: String,
}

/// One row of `notices`, and the values of its insert.
#[derive(Debug, Clone, PartialEq, SerializeRow, DeserializeRow)]
pub(crate) struct NoticeRow {
    pub tracking_code: i64,
    pub schema_version: i32,
    pub agency: String,
    pub reference: String,
    pub mailbox_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// `None` reads as no attachments (an empty collection may come back
    /// as null).
    pub attachments: Option<Vec<AttachmentUdt>>,
    pub min_access_level: i8,
    pub life_event: String,
    pub expires_at: DateTime<Utc>,
    pub sent_at: DateTime<Utc>,
    pub batch_id: Option<String>,
    pub accepted_at: DateTime<Utc>,
    pub content_hash: Vec<u8>,
}

impl NoticeRow {
    pub fn from_notice(
        code: TrackingCode,
        accepted_at: DateTime<Utc>,
        content_hash: &[u8; 32],
        n: &Notice,
    ) -> NoticeRow {
        NoticeRow {
            tracking_code: code_col(code),
            schema_version: n.schema_version as i32,
            agency: n.agency.as_str().to_owned(),
            reference: n.reference.clone(),
            mailbox_id: n.recipient.to_string(),
            kind: n.kind.as_str().to_owned(),
            title: n.title.clone(),
            body: n.body.clone(),
            attachments: Some(
                n.attachments
                    .iter()
                    .map(|a| AttachmentUdt {
                        name: a.name.clone(),
                        media_type: a.media_type.clone(),
                        size: a.size.min(i64::MAX as u64) as i64,
                        sha256: a.sha256.clone(),
                    })
                    .collect(),
            ),
            min_access_level: n.min_access_level as i8,
            life_event: n.life_event.as_str().to_owned(),
            expires_at: n.expires_at,
            sent_at: n.sent_at,
            batch_id: n.batch_id.clone(),
            accepted_at,
            content_hash: content_hash.to_vec(),
        }
    }

    /// Back into the read path's type; a column the engine could not have
    /// written is corruption.
    pub fn into_stored(self) -> Result<StoredNotice, StoreError> {
        let bad = |what: &str, v: &str| {
            StoreError::Corrupt(format!(
                "notice {}: bad {what} {v:?}",
                code_of(self.tracking_code)
            ))
        };
        let content_hash: [u8; 32] = self
            .content_hash
            .as_slice()
            .try_into()
            .map_err(|_| bad("content hash", "(wrong length)"))?;
        let notice = Notice {
            schema_version: self.schema_version.max(0) as u32,
            agency: AgencyId::parse(&self.agency).map_err(|_| bad("agency", &self.agency))?,
            reference: self.reference.clone(),
            recipient: MailboxId::parse(&self.mailbox_id)
                .map_err(|_| bad("mailbox", "(not a mailbox ID)"))?,
            kind: NoticeKind::parse(&self.kind).ok_or_else(|| bad("kind", &self.kind))?,
            title: self.title.clone(),
            body: self.body.clone(),
            attachments: self
                .attachments
                .iter()
                .flatten()
                .map(|a| Attachment {
                    name: a.name.clone(),
                    media_type: a.media_type.clone(),
                    size: a.size.max(0) as u64,
                    sha256: a.sha256.clone(),
                })
                .collect(),
            min_access_level: self.min_access_level.max(0) as u8,
            life_event: LifeEvent::parse(&self.life_event)
                .ok_or_else(|| bad("life event", &self.life_event))?,
            expires_at: self.expires_at,
            sent_at: self.sent_at,
            batch_id: self.batch_id.clone(),
        };
        Ok(StoredNotice {
            tracking_code: code_of(self.tracking_code),
            accepted_at: self.accepted_at,
            content_hash,
            notice,
        })
    }
}

/// The values of a `notices` insert: a row and its TTL.
#[derive(Debug, Clone, PartialEq, SerializeRow)]
pub(crate) struct NoticeValues<'a> {
    pub tracking_code: i64,
    pub schema_version: i32,
    pub agency: &'a str,
    pub reference: &'a str,
    pub mailbox_id: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub attachments: &'a [AttachmentUdt],
    pub min_access_level: i8,
    pub life_event: &'a str,
    pub expires_at: DateTime<Utc>,
    pub sent_at: DateTime<Utc>,
    pub batch_id: Option<&'a str>,
    pub accepted_at: DateTime<Utc>,
    pub content_hash: &'a [u8],
    pub ttl: i32,
}

impl<'a> NoticeValues<'a> {
    pub fn new(r: &'a NoticeRow, ttl: i32) -> NoticeValues<'a> {
        NoticeValues {
            tracking_code: r.tracking_code,
            schema_version: r.schema_version,
            agency: &r.agency,
            reference: &r.reference,
            mailbox_id: &r.mailbox_id,
            kind: &r.kind,
            title: &r.title,
            body: &r.body,
            attachments: r.attachments.as_deref().unwrap_or(&[]),
            min_access_level: r.min_access_level,
            life_event: &r.life_event,
            expires_at: r.expires_at,
            sent_at: r.sent_at,
            batch_id: r.batch_id.as_deref(),
            accepted_at: r.accepted_at,
            content_hash: &r.content_hash,
            ttl,
        }
    }
}

/// The values of a `mailbox_notices` insert.
#[derive(Debug, Clone, PartialEq, SerializeRow)]
pub(crate) struct MailboxRow<'a> {
    pub mailbox_id: String,
    pub month: i32,
    pub tracking_code: i64,
    pub agency: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub life_event: &'a str,
    pub min_access_level: i8,
    pub accepted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ttl: i32,
}

impl<'a> MailboxRow<'a> {
    pub fn new(row: &'a NoticeRow, ttl: i32) -> MailboxRow<'a> {
        MailboxRow {
            mailbox_id: row.mailbox_id.clone(),
            month: month_of(code_of(row.tracking_code)),
            tracking_code: row.tracking_code,
            agency: &row.agency,
            kind: &row.kind,
            title: &row.title,
            life_event: &row.life_event,
            min_access_level: row.min_access_level,
            accepted_at: row.accepted_at,
            expires_at: row.expires_at,
            ttl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{notice, person, t0};
    use chrono::Duration;

    #[test]
    fn a_notice_survives_the_row_mapping() {
        let mut n = notice("tax", "r-1", person(12_345_678), "متن ابلاغیه");
        n.attachments = vec![Attachment {
            name: "برگ.pdf".into(),
            media_type: "application/pdf".into(),
            size: 123_456,
            sha256: "ab".repeat(32),
        }];
        n.batch_id = Some("b-7".into());
        n.min_access_level = 2;
        let code = TrackingCode::from_parts(t0().timestamp_millis(), 3, 9);
        let hash = n.content_hash();
        let row = NoticeRow::from_notice(code, t0(), &hash, &n);
        assert_eq!(row.mailbox_id.len(), 10, "the ASCII ID");
        assert_eq!(row.kind, "service_notice");
        let back = row.clone().into_stored().unwrap();
        assert_eq!(back.notice, n);
        // An empty collection read back as null is no attachments.
        let mut bare = row;
        bare.attachments = None;
        assert!(bare.into_stored().unwrap().notice.attachments.is_empty());
        assert_eq!(back.tracking_code, code);
        assert_eq!(back.content_hash, hash);
        assert_eq!(back.accepted_at, t0());
    }

    #[test]
    fn a_corrupt_row_is_reported_not_guessed() {
        let n = notice("tax", "r-1", person(12_345_678), "x");
        let code = TrackingCode::from_parts(t0().timestamp_millis(), 3, 9);
        let mut row = NoticeRow::from_notice(code, t0(), &n.content_hash(), &n);
        row.kind = "love_letter".into();
        assert!(
            matches!(row.clone().into_stored(), Err(StoreError::Corrupt(m)) if m.contains("kind"))
        );
        row.kind = "letter".into();
        row.content_hash.pop();
        assert!(matches!(row.into_stored(), Err(StoreError::Corrupt(m)) if m.contains("hash")));
    }

    #[test]
    fn codes_keep_their_order_as_bigints() {
        let a = TrackingCode::from_parts(t0().timestamp_millis(), 1, 5);
        let b = TrackingCode::from_parts(t0().timestamp_millis() + 1, 0, 0);
        assert!(code_col(a) < code_col(b));
        assert!(code_col(a) > 0, "the top bit is clear until 2094");
        assert_eq!(code_of(code_col(a)), a);
    }

    #[test]
    fn buckets_are_hours_months_and_days() {
        let ms = t0().timestamp_millis(); // 2026-11-01 08:00 UTC
        assert_eq!(hour_start_ms(hour_of(ms)), ms);
        assert_eq!(hour_of(ms + 3_599_999), hour_of(ms));
        assert_eq!(hour_of(ms + 3_600_000), hour_of(ms) + 1);
        assert_eq!(hour_of(-1), -1, "before 1970 still orders");
        let code = TrackingCode::from_parts(ms, 0, 0);
        assert_eq!(month_of(code), 202611);
        assert_eq!(day_of(ms), NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        let mut seen = [0u32; TRAFFIC_BUCKETS as usize];
        let mut last = 0;
        for _ in 0..1600 {
            seen[bucket_of(next_id(&mut last, 7, ms)) as usize] += 1;
        }
        assert!(
            seen.iter().all(|&n| n == 100),
            "IDs spread evenly: {seen:?}"
        );
    }

    #[test]
    fn ids_are_unique_per_node_and_increase() {
        let ms = t0().timestamp_millis();
        let (mut a, mut b) = (0, 0);
        let mut prev = 0;
        // 5000 in the same millisecond overflow one sequence: still increasing.
        for _ in 0..5000 {
            let id = next_id(&mut a, 1, ms);
            assert!(id > prev);
            assert_eq!(TrackingCode::from_u64(id).node(), 1);
            prev = id;
        }
        assert!(
            id_ms(prev) > ms,
            "the sequence moved to the next millisecond"
        );
        let other = next_id(&mut b, 2, ms);
        assert_ne!(other, next_id(&mut a, 1, ms));
        // A clock that went back never reissues an ID.
        let before = next_id(&mut a, 1, ms - 60_000);
        assert!(before > prev);
    }

    #[test]
    fn ttls_count_to_the_end_and_stop_at_the_ceiling() {
        let now = t0();
        assert_eq!(ttl_until(now + Duration::days(1), now, 0), 86_400);
        assert_eq!(ttl_until(now + Duration::days(1), now, 60), 86_460);
        assert_eq!(
            ttl_until(now - Duration::days(1), now, 0),
            1,
            "already due: gone soon"
        );
        assert_eq!(
            ttl_until(now + Duration::days(50 * 365), now, 0),
            0,
            "no TTL past 20 years"
        );
    }
}
