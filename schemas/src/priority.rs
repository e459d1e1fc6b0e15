//! A notice's lane: how soon it must be handled, chosen by the topic an
//! agency sends it on (wire contract, "Priority lanes").

use serde::{Deserialize, Serialize};

/// How soon a notice must be handled. Urgent work is taken before normal,
/// and normal before bulk, wherever work waits in the engine.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// A summons with a deadline, a court order: never waits behind the
    /// others. On `<prefix><agency>.urgent`.
    Urgent,
    /// Everyday notices. On `<prefix><agency>`. What records stored
    /// before lanes existed are.
    #[default]
    Normal,
    /// Campaigns of millions, taken when nothing more pressing waits. On
    /// `<prefix><agency>.bulk`.
    Bulk,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Urgent, Priority::Normal, Priority::Bulk];

    /// The metric label and configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::Normal => "normal",
            Priority::Bulk => "bulk",
        }
    }

    /// What follows the agency ID in the topic name of this lane.
    pub fn topic_suffix(self) -> &'static str {
        match self {
            Priority::Urgent => ".urgent",
            Priority::Normal => "",
            Priority::Bulk => ".bulk",
        }
    }

    /// Splits a topic name's tail after the prefix into the agency part
    /// and the lane: `tax.urgent` → (`tax`, urgent), `tax` → (`tax`,
    /// normal). The agency part is not checked here.
    pub fn split_topic_tail(tail: &str) -> (&str, Priority) {
        for p in [Priority::Urgent, Priority::Bulk] {
            if let Some(agency) = tail.strip_suffix(p.topic_suffix()) {
                return (agency, p);
            }
        }
        (tail, Priority::Normal)
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_tails_name_the_agency_and_the_lane() {
        assert_eq!(Priority::split_topic_tail("tax"), ("tax", Priority::Normal));
        assert_eq!(
            Priority::split_topic_tail("tax.urgent"),
            ("tax", Priority::Urgent)
        );
        assert_eq!(
            Priority::split_topic_tail("social-security.bulk"),
            ("social-security", Priority::Bulk)
        );
        // Only a whole suffix counts; an agency ID never holds a dot.
        assert_eq!(
            Priority::split_topic_tail("taxurgent"),
            ("taxurgent", Priority::Normal)
        );
        for p in Priority::ALL {
            let topic = format!("judiciary{}", p.topic_suffix());
            assert_eq!(Priority::split_topic_tail(&topic), ("judiciary", p));
        }
        assert!(Priority::Urgent < Priority::Normal && Priority::Normal < Priority::Bulk);
    }
}
