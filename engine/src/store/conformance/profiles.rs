//! Conformance cases of [`ProfileStore`]: newest profile wins, removals.

use super::*;

pub(super) fn profiles_are_kept_newest_wins(s: &dyn Store) {
    let (a, b) = (person(300_000_001), person(300_000_101));
    assert_eq!(
        s.profile(a).unwrap(),
        None,
        "no profile before the registry sends one"
    );
    let v1 = profile(a, MailboxStatus::NotActivated, 0);
    let v2 = profile(a, MailboxStatus::Active, 10);
    let other = profile(b, MailboxStatus::Deceased, 5);
    assert_eq!(
        s.put_profiles(&[v1.clone(), other.clone()]).unwrap(),
        [true, true]
    );
    assert_eq!(s.profile(a).unwrap(), Some(v1.clone()));
    assert_eq!(
        s.put_profiles(std::slice::from_ref(&v2)).unwrap(),
        [true],
        "a newer version replaces"
    );
    assert_eq!(
        s.put_profiles(std::slice::from_ref(&v1)).unwrap(),
        [false],
        "a re-delivered older version is ignored"
    );
    assert_eq!(
        s.profile(a).unwrap(),
        Some(v2.clone()),
        "the newer version is kept"
    );
    // Within one call: the older one after the newer is ignored too.
    let v3 = profile(a, MailboxStatus::Deceased, 20);
    assert_eq!(s.put_profiles(&[v3.clone(), v2]).unwrap(), [true, false]);
    assert_eq!(s.profile(a).unwrap(), Some(v3));
    assert_eq!(s.profile(b).unwrap(), Some(other), "mailboxes are isolated");
    // Same time: the later write wins (a correction with the same stamp).
    let mut fix = profile(b, MailboxStatus::Active, 5);
    fix.push = false;
    assert_eq!(s.put_profiles(&[fix.clone()]).unwrap(), [true]);
    assert_eq!(s.profile(b).unwrap(), Some(fix));
}

pub(super) fn profiles_are_deleted(s: &dyn Store) {
    let (a, b) = (person(400_000_001), person(400_000_101));
    s.put_profiles(&[
        profile(a, MailboxStatus::Active, 0),
        profile(b, MailboxStatus::Active, 0),
    ])
    .unwrap();
    let at = t0() + Duration::seconds(30);
    s.delete_profiles(&[(a, at), (person(400_000_201), at)])
        .unwrap();
    assert_eq!(s.profile(a).unwrap(), None, "deleted");
    assert!(s.profile(b).unwrap().is_some(), "others kept");
    // A tombstone older than the stored profile leaves it alone.
    s.delete_profiles(&[(b, t0() - Duration::minutes(1))])
        .unwrap();
    assert!(
        s.profile(b).unwrap().is_some(),
        "a stale tombstone removed a newer profile"
    );
    // A tombstone does not block a later registration.
    assert_eq!(
        s.put_profiles(&[profile(a, MailboxStatus::Active, 1)])
            .unwrap(),
        [true]
    );
}
