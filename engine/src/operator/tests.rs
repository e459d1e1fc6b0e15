//! The operators' endpoint over a real store and server: the same reads
//! as the store's own, only with the credential, each mailbox read in its
//! traffic data.

use super::*;
use crate::store::conformance::{dead_letter, new_notice, notice, person, rejection};
use crate::store::{Durability, FjallStore, FjallStoreConfig};
use karpoosheh_schemas::Reason;

#[test]
fn a_running_node_answers_what_the_store_would_to_operators_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = FjallStoreConfig::new(dir.path().join("store"));
    cfg.durability = Durability::Buffered;
    let store: Arc<dyn Store> = Arc::new(FjallStore::open(cfg).unwrap());
    store
        .write(&[
            new_notice(notice("tax", "r-1", person(100), "body one"), 1),
            new_notice(notice("tax", "r-2", person(100), "body two"), 2),
            rejection(Some("tax"), "r-bad", Reason::BadCheckDigit),
            dead_letter(7),
        ])
        .unwrap();
    let token_file = dir.path().join("operator.token");
    std::fs::write(&token_file, "x".repeat(40) + "\n").unwrap();
    let mut op = OperatorConfig {
        listen: String::new(),
        token_file: token_file.clone(),
    };
    let server = crate::http::HttpServer::start_router(
        "127.0.0.1:0",
        router(store.clone(), &op.token().unwrap()),
    )
    .unwrap();
    op.listen = server.addr.to_string();
    let remote = Remote::new(&op).unwrap();
    let local: &dyn Inspect = &store;

    let page = remote.mailbox(person(100), None, 1).unwrap();
    assert_eq!(page, local.mailbox(person(100), None, 1).unwrap());
    assert_eq!(page.notices.len(), 1);
    let rest = remote.mailbox(person(100), page.next, 10).unwrap();
    assert_eq!(rest.notices.len(), 1);
    let code = page.notices[0].tracking_code;
    let view = remote.notice(code).unwrap();
    assert_eq!(view.notice, local.notice(code).unwrap().notice);
    assert_eq!(view.delivery, local.notice(code).unwrap().delivery);
    assert_eq!(view.events, local.notice(code).unwrap().events);
    assert!(remote
        .notice(TrackingCode::from_parts(1_760_000_000_000, 9, 9))
        .unwrap_err()
        .contains("404"));
    let tax = AgencyId::parse("tax").unwrap();
    assert_eq!(
        remote.rejections(Some(&tax), None, 10).unwrap(),
        local.rejections(Some(&tax), None, 10).unwrap()
    );
    assert_eq!(remote.rejections(Some(&tax), None, 10).unwrap().len(), 1);
    assert_eq!(
        remote.dead_letters(None, 10).unwrap(),
        local.dead_letters(None, 10).unwrap()
    );
    // Every read of the mailbox is in its traffic data, the operator's
    // own read of that included.
    let log = remote.access_log(person(100), 10).unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "operator_access_log",
            "operator_notice",
            "operator_mailbox",
            "operator_mailbox"
        ]
    );
    assert!(log
        .iter()
        .all(|r| r.actor.is_none() && r.client.as_deref() == Some("operator")));

    // Without the credential, or with another: 401, nothing read.
    std::fs::write(&token_file, "y".repeat(40)).unwrap();
    let stranger = Remote::new(&op).unwrap();
    assert!(stranger
        .mailbox(person(100), None, 1)
        .unwrap_err()
        .contains("401"));
    assert_eq!(store.access_log(person(100), 10).unwrap().len(), 4);
    // A credential too short to be one is refused at start.
    std::fs::write(&token_file, "short").unwrap();
    assert!(op.token().is_err());
}
