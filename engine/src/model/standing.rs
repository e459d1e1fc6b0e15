//! Who may act for a mailbox, and how far (articles 22 and 31): its holder
//! while they can, a representative within their delegation, a guardian
//! for an incapacitated person. One rule for the inbox API (list, open,
//! share) and for confirmations from any source.

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{
    AccessLevel, AgencyId, Delegation, MailboxId, MailboxProfile, MailboxStatus,
};

/// What `actor` may do for one mailbox now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Acting for someone else (a representative or guardian).
    pub by_representative: bool,
    /// Notices needing more than this stay closed (the session's own
    /// level counts too).
    pub max_access_level: AccessLevel,
    /// Only notices of these agencies; empty: of every agency.
    pub agencies: Vec<AgencyId>,
    pub may_confirm: bool,
    pub may_share: bool,
}

impl Standing {
    fn holder() -> Standing {
        Standing {
            by_representative: false,
            max_access_level: karpoosheh_schemas::MAX_ACCESS_LEVEL,
            agencies: Vec::new(),
            may_confirm: true,
            may_share: true,
        }
    }

    /// Whether notices of `agency` are within the delegation.
    pub fn covers(&self, agency: &AgencyId) -> bool {
        covers(&self.agencies, agency)
    }
}

/// An agency list of a delegation: empty is every agency.
fn covers(agencies: &[AgencyId], agency: &AgencyId) -> bool {
    agencies.is_empty() || agencies.contains(agency)
}

/// Representative `rep`'s delegation entry, if the profile narrows their
/// standing (`Ok(None)`: it does not); `Err(())` once it has ended.
fn delegation(
    p: &MailboxProfile,
    rep: MailboxId,
    now: DateTime<Utc>,
) -> Result<Option<&Delegation>, ()> {
    match p.delegations.iter().find(|d| d.to == rep) {
        Some(d) if d.until.is_some_and(|until| now >= until) => Err(()),
        d => Ok(d),
    }
}

/// `actor`'s standing for the mailbox `holder` (whose profile, if any, is
/// `profile`) at `now`, or `None` when they may not see it at all.
///
/// - The holder: while active, or never activated / without a profile
///   (they hold a token of the identity provider); not while incapacitated
///   (the guardian acts), deceased or dissolved.
/// - A representative listed in the profile: while the person is active,
///   within their delegation's scope (default: read and confirm every
///   notice, not share) until it ends; while the person is incapacitated
///   as their guardian, who may also share unless the delegation says
///   otherwise. Nobody once the person is deceased or the entity
///   dissolved: a delegation ends with its principal.
pub fn standing(
    profile: Option<&MailboxProfile>,
    holder: MailboxId,
    actor: MailboxId,
    now: DateTime<Utc>,
) -> Option<Standing> {
    let status = profile.map(|p| p.status);
    if actor == holder {
        return match status {
            None | Some(MailboxStatus::Active) | Some(MailboxStatus::NotActivated) => {
                Some(Standing::holder())
            }
            _ => None,
        };
    }
    let p = profile?;
    if !p.representatives.contains(&actor) {
        return None;
    }
    let guardian = match p.status {
        MailboxStatus::Active => false,
        MailboxStatus::Incapacitated => true,
        _ => return None,
    };
    let mut s = Standing {
        by_representative: true,
        may_share: guardian,
        ..Standing::holder()
    };
    if let Some(d) = delegation(p, actor, now).ok()? {
        s.max_access_level = d.max_access_level;
        s.agencies = d.agencies.clone();
        s.may_confirm = d.may_confirm;
        s.may_share = d.may_share;
    }
    Some(s)
}

/// Whether representative `rep`'s delegation (if the profile narrows it)
/// lets them confirm notices of `agency` at `now`. The principal's state
/// is the confirmation rules' own check (`mailbox_not_reachable`).
pub fn may_confirm_for(
    p: &MailboxProfile,
    rep: MailboxId,
    agency: &AgencyId,
    now: DateTime<Utc>,
) -> bool {
    p.representatives.contains(&rep)
        && match delegation(p, rep, now) {
            Err(()) => false,
            Ok(None) => true,
            Ok(Some(d)) => d.may_confirm && covers(&d.agencies, agency),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: &str) -> MailboxId {
        MailboxId::parse(n).unwrap()
    }

    fn profile(
        status: MailboxStatus,
        reps: Vec<MailboxId>,
        del: Vec<Delegation>,
    ) -> MailboxProfile {
        MailboxProfile {
            schema_version: karpoosheh_schemas::SCHEMA_VERSION,
            id: id("0012345679"),
            status,
            access_level: 2,
            mobile: None,
            email: None,
            push: false,
            representatives: reps,
            delegations: del,
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn holder_representative_guardian_and_stranger() {
        let now = Utc::now();
        let holder = id("0012345679");
        let rep = id("0084575948");
        let stranger = id("0013542419");
        let active = profile(MailboxStatus::Active, vec![rep], vec![]);
        let h = standing(Some(&active), holder, holder, now).unwrap();
        assert!(!h.by_representative && h.may_share && h.may_confirm);
        assert!(
            standing(None, holder, holder, now).is_some(),
            "no profile yet"
        );
        let r = standing(Some(&active), holder, rep, now).unwrap();
        assert!(r.by_representative && r.may_confirm && !r.may_share);
        assert_eq!(standing(Some(&active), holder, stranger, now), None);
        assert_eq!(standing(None, holder, rep, now), None);

        let incapacitated = profile(MailboxStatus::Incapacitated, vec![rep], vec![]);
        assert_eq!(standing(Some(&incapacitated), holder, holder, now), None);
        let g = standing(Some(&incapacitated), holder, rep, now).unwrap();
        assert!(g.may_share, "a guardian acts fully for the person");
        for ended in [MailboxStatus::Deceased, MailboxStatus::Dissolved] {
            let p = profile(ended, vec![rep], vec![]);
            assert_eq!(standing(Some(&p), holder, holder, now), None);
            assert_eq!(standing(Some(&p), holder, rep, now), None);
        }
    }

    #[test]
    fn a_delegation_narrows_widens_and_ends() {
        let now = Utc::now();
        let holder = id("0012345679");
        let rep = id("0084575948");
        let d = Delegation {
            to: rep,
            max_access_level: 1,
            agencies: vec![AgencyId::parse("tax").unwrap()],
            may_confirm: false,
            may_share: true,
            until: Some(now + chrono::Duration::days(1)),
        };
        let p = profile(MailboxStatus::Active, vec![rep], vec![d.clone()]);
        let s = standing(Some(&p), holder, rep, now).unwrap();
        assert_eq!(s.max_access_level, 1);
        assert!(s.covers(&AgencyId::parse("tax").unwrap()));
        assert!(!s.covers(&AgencyId::parse("court").unwrap()));
        assert!(!s.may_confirm && s.may_share);
        let later = now + chrono::Duration::days(2);
        assert_eq!(standing(Some(&p), holder, rep, later), None, "ended");
        // Confirmations from any source follow the same delegation.
        let tax = AgencyId::parse("tax").unwrap();
        assert!(!may_confirm_for(&p, rep, &tax, now), "may_confirm is false");
        let mut d2 = d;
        d2.may_confirm = true;
        let p2 = profile(MailboxStatus::Active, vec![rep], vec![d2]);
        assert!(may_confirm_for(&p2, rep, &tax, now));
        assert!(!may_confirm_for(
            &p2,
            rep,
            &AgencyId::parse("court").unwrap(),
            now
        ));
        assert!(!may_confirm_for(&p2, rep, &tax, later));
        assert!(
            !may_confirm_for(&p2, holder, &tax, now),
            "not a representative"
        );
    }
}
