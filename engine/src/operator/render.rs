//! What the operators' inspection commands print of stored records.

use chrono::{DateTime, Utc};

use crate::channel::channel_label;
use crate::evidence::{b64url, chain};
use crate::model::{Action, DeliveryRecord, DeliveryState, StoredEvent};

/// The evidence chain of a notice, checked: one line per event and a
/// verdict, for `karpoosheh notice`.
pub fn render_chain(events: &[StoredEvent]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for e in events {
        #[derive(serde::Deserialize)]
        struct View {
            event: String,
            at: String,
        }
        let view = serde_json::from_slice::<View>(&e.bytes)
            .map(|v| format!("{:<26} {}", v.event, v.at))
            .unwrap_or_else(|_| "(unreadable event)".into());
        let _ = writeln!(s, "event {:>3}       {view}  {}", e.seq, b64url(&e.hash));
    }
    match chain::verify(events) {
        Ok(head) if !events.is_empty() => {
            let _ = writeln!(
                s,
                "evidence chain  intact: {} events, head {}",
                events.len(),
                b64url(&head)
            );
        }
        Ok(_) => {
            let _ = writeln!(
                s,
                "evidence chain  none stored (a notice from before evidence)"
            );
        }
        Err(broken) => {
            let _ = writeln!(s, "evidence chain  BROKEN at {broken}");
        }
    }
    s
}

/// The legal history of a notice, for `karpoosheh notice`: outcome,
/// rounds with their channels, confirmations, what is pending.
pub fn render_history(rec: &DeliveryRecord) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let t = |d: &DateTime<Utc>| d.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let outcome = match &rec.state {
        DeliveryState::Scheduled => "in progress: rounds running".to_owned(),
        DeliveryState::AwaitingActivation => {
            "waiting: the mailbox is not activated; rounds start when the person registers"
                .to_owned()
        }
        DeliveryState::Unreachable { status } => {
            format!(
                "unreachable: mailbox {}",
                serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        }
        DeliveryState::Served { at } => format!("SERVED (art. 29) at {}", t(at)),
        DeliveryState::NotServed { at } => format!(
            "NOT SERVED: fewer than two confirmations after every round (decided {})",
            t(at)
        ),
        DeliveryState::Expired { at } => format!("EXPIRED before service, at {}", t(at)),
        DeliveryState::Held { until } => format!(
            "scheduled: held out of the mailbox until {} (deliver_at); cancellable until then",
            t(until)
        ),
        DeliveryState::Cancelled { at } => format!(
            "CANCELLED by the agency at {}, before it landed: never seen, never notified",
            t(at)
        ),
    };
    let _ = writeln!(s, "legal outcome   {outcome}");
    for r in &rec.rounds {
        let attempt = if r.retry > 0 {
            format!(" (retry {})", r.retry)
        } else {
            String::new()
        };
        for d in &r.deliveries {
            let who = if d.to_representative {
                "representative"
            } else {
                "recipient"
            };
            let what = match (&d.channel, &d.failure) {
                (Some(c), _) => format!("sent by {}", channel_label(*c)),
                (None, Some(f)) => format!("failed: {f}"),
                (None, None) => "failed".to_owned(),
            };
            let _ = writeln!(
                s,
                "round {}{attempt:<10} {}  to {who:<15} {what} ({} attempt(s))",
                r.round,
                t(&r.at),
                d.attempts
            );
        }
        if r.deliveries.is_empty() {
            let _ = writeln!(
                s,
                "round {}{attempt:<10} {}  nobody to notify",
                r.round,
                t(&r.at)
            );
        }
    }
    for (i, c) in rec.confirmations.iter().enumerate() {
        let by = if c.by_representative {
            "a representative"
        } else {
            "the recipient"
        };
        let _ = writeln!(
            s,
            "confirmation {}  {}  by {by} (received {}; id {})",
            i + 1,
            t(&c.confirmed_at),
            t(&c.received_at),
            c.confirmation_id
        );
    }
    if let Some(p) = &rec.next {
        let what = match p.action {
            Action::Round { round, retry: 0 } => format!("round {round}"),
            Action::Round { round, retry } => format!("round {round}, retry {retry}"),
            Action::Verdict => "verdict (served / not served)".to_owned(),
            Action::Release => "into the mailbox (scheduled send), then round 1".to_owned(),
        };
        let due = DateTime::from_timestamp_millis(p.due_ms).unwrap_or_default();
        let _ = writeln!(s, "next            {what} at {}", t(&due));
    }
    let q = rec.queue();
    if q.lane == karpoosheh_schemas::Priority::Urgent {
        let _ = writeln!(s, "lane            urgent");
    } else {
        let _ = writeln!(s, "lane            {}, agencies' queue {}", q.lane, q.index);
    }
    if rec.purged {
        let _ = writeln!(s, "retention       the notice itself left the store at its expiry ({}); this history is kept", t(&rec.expires_at));
    }
    s
}

/// What happened to an agency's reference, for `karpoosheh status`.
pub fn render_status(st: &crate::status::NoticeStatus) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "agency          {} (reference {})",
        st.agency, st.reference
    );
    match &st.notice {
        Some(n) => {
            let _ = writeln!(s, "tracking code   {}", n.tracking_code);
            let _ = writeln!(s, "accepted at     {}", n.accepted_at.to_rfc3339());
            let _ = writeln!(s, "lane            {}", n.lane);
            let state = match n.state_at {
                Some(at) => format!("{} at {}", n.state, at.to_rfc3339()),
                None => n.state.clone(),
            };
            let _ = writeln!(s, "state           {state}");
            if let Some(by) = n.respond_by {
                let reminded = match n.reminded {
                    Some(at) => format!("reminder decided at {}", at.to_rfc3339()),
                    None => "reminder pending".to_owned(),
                };
                let _ = writeln!(s, "respond by      {} ({reminded})", by.to_rfc3339());
            }
            let _ = writeln!(
                s,
                "rounds          {} sent, {} confirmation(s)",
                n.rounds, n.confirmations
            );
            for r in &n.receipts {
                let word = |k: &str| r[k].as_str().unwrap_or("?").to_owned();
                let _ = writeln!(
                    s,
                    "receipt         {:<26} {}  {}",
                    word("event"),
                    word("at"),
                    word("receipt_id")
                );
            }
            let _ = writeln!(
                s,
                "evidence chain  {}",
                if n.chain_intact { "intact" } else { "BROKEN" }
            );
        }
        None => {
            let _ = writeln!(s, "not stored (or its record's retention has passed)");
        }
    }
    for r in &st.rejections {
        let reasons: Vec<String> = r
            .problems
            .iter()
            .map(|p| match &p.field {
                Some(f) => format!("{} ({f})", p.reason),
                None => p.reason.to_string(),
            })
            .collect();
        let _ = writeln!(
            s,
            "rejected        {}  #{}  {}",
            r.at.to_rfc3339(),
            r.id,
            reasons.join(", ")
        );
    }
    s
}
