//! The operators' endpoint over a real store and server: the same reads
//! as the store's own, only with the credential, each mailbox read in its
//! traffic data.

use super::*;
use crate::store::conformance::{
    dead_letter, fjall_store, new_notice, notice, person, receipt, rejection,
};
use karpoosheh_schemas::Reason;

/// Writes a credential file only its owner may read.
fn write_token(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The endpoint over `store` on a free port, with a credential written in
/// `dir`, and a client holding it.
fn serve(
    store: &Arc<dyn Store>,
    dir: &std::path::Path,
) -> (crate::http::HttpServer, OperatorConfig, Remote) {
    let token_file = dir.join("operator.token");
    write_token(&token_file, &("x".repeat(40) + "\n"));
    let mut op = OperatorConfig {
        listen: String::new(),
        token_file,
    };
    let server = crate::http::HttpServer::start_router(
        "127.0.0.1:0",
        router(store.clone(), &op.token().unwrap()),
    )
    .unwrap();
    op.listen = server.addr.to_string();
    let remote = Remote::new(&op).unwrap();
    (server, op, remote)
}

#[test]
fn a_running_node_answers_what_the_store_would_to_operators_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = fjall_store(&dir.path().join("store"));
    store
        .write(&[
            new_notice(notice("tax", "r-1", person(100), "body one"), 1),
            new_notice(notice("tax", "r-2", person(100), "body two"), 2),
            rejection(Some("tax"), "r-bad", Reason::BadCheckDigit),
            dead_letter(7),
        ])
        .unwrap();
    let (_server, op, remote) = serve(&store, dir.path());
    let token_file = op.token_file.clone();
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
    write_token(&token_file, &"y".repeat(40));
    let stranger = Remote::new(&op).unwrap();
    assert!(stranger
        .mailbox(person(100), None, 1)
        .unwrap_err()
        .contains("401"));
    assert_eq!(store.access_log(person(100), 10).unwrap().len(), 4);
    // A credential too short to be one is refused at start.
    write_token(&token_file, "short");
    assert!(op.token().is_err());
    // So is one every user of the machine may read.
    {
        use std::os::unix::fs::PermissionsExt;
        write_token(&token_file, &"z".repeat(40));
        assert!(op.token().is_ok());
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = op.token().unwrap_err();
        assert!(e.contains("readable by every user"), "{e}");
    }
}

#[test]
fn the_dashboard_reads_the_latest_rejections_the_parked_lots_and_a_masked_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = fjall_store(&dir.path().join("store"));
    let mut entries = vec![new_notice(notice("tax", "r-1", person(100), "body one"), 1)];
    // A rejection that quotes what it refused: a national ID, a phone.
    let mut quoting = rejection(Some("tax"), "ref-09121234567", Reason::BadCheckDigit);
    if let crate::model::Entry::Rejection(r) = &mut quoting {
        r.problems[0].message = "recipient 0012345679 (mobile 0912 123 4567) is wrong".into();
    }
    entries.push(quoting);
    entries
        .extend((0..5).map(|i| rejection(Some("tax"), &format!("bad-{i}"), Reason::BadCheckDigit)));
    store.write(&entries).unwrap();
    let customs = AgencyId::parse("customs").unwrap();
    store
        .park(&customs, &[receipt("customs", 1), receipt("customs", 2)])
        .unwrap();
    let (_server, _op, remote) = serve(&store, dir.path());

    let tax = AgencyId::parse("tax").unwrap();
    let latest = remote.latest_rejections(Some(&tax), 2).unwrap();
    let refs: Vec<_> = latest
        .iter()
        .map(|r| r.rejection.reference.clone().unwrap())
        .collect();
    assert_eq!(refs, ["bad-4", "bad-3"], "newest first");
    assert_eq!(
        remote.latest_rejections(Some(&tax), 10).unwrap()[5]
            .rejection
            .reference
            .as_deref(),
        Some("ref-09121234567"),
        "the commands' own read is whole"
    );
    let both: Result<Vec<StoredRejection>, _> =
        remote.get("/v1/operator/rejections?latest=true&after=3");
    assert!(both.unwrap_err().contains("400"));

    // The dashboard's own reads: masked before they leave the node.
    let shown: Vec<StoredRejection> = remote
        .get("/v1/operator/dashboard/rejections?agency=tax&limit=10")
        .unwrap();
    assert_eq!(shown.len(), 6);
    let quoted = &shown[5].rejection;
    assert_eq!(quoted.reference.as_deref(), Some("ref-*******4567"));
    assert_eq!(
        quoted.problems[0].message,
        "recipient ******5679 (mobile **** *** 4567) is wrong"
    );
    store
        .quarantine(&crate::model::Quarantined {
            id: 0,
            at: chrono::Utc::now(),
            kind: "outbox_receipt".into(),
            key: "1".into(),
            error: "expected value near \"0012345679\"".into(),
            bytes_b64: "eyJyZWNpcGllbnQiOiIwMDEyMzQ1Njc5In0=".into(),
            detail: "0012345679".into(),
        })
        .unwrap();
    let aside: serde_json::Value = remote
        .get("/v1/operator/dashboard/quarantine?limit=10")
        .unwrap();
    let text = aside.to_string();
    assert!(
        text.contains("******5679") && !text.contains("0012345679"),
        "{text}"
    );
    assert!(
        !text.contains("bytes_b64") && !text.contains("detail"),
        "{text}"
    );

    let lots = remote.parked().unwrap();
    assert_eq!(lots.len(), 1);
    assert_eq!(lots[0].agency, customs);
    assert_eq!(lots[0].receipts, 2);
    assert_eq!(lots[0].oldest_at, Some(receipt("customs", 1).at));
    assert!(lots[0].oldest_event.is_some());
    assert_eq!(lots, (&store as &dyn Inspect).parked().unwrap());

    let code = store.mailbox(person(100), None, 1).unwrap().notices[0].tracking_code;
    let h = remote.history(code).unwrap();
    assert_eq!(h.tracking_code, code.to_string());
    assert_eq!(h.agency, "tax");
    let id = person(100).to_string();
    assert_eq!(h.recipient, karpoosheh_schemas::mask_id(&id));
    assert!(h.recipient.ends_with(&id[id.len() - 4..]));
    assert!(!h.history.is_empty() && h.history[0].starts_with("legal outcome"));
    assert!(
        h.history
            .iter()
            .any(|l| l == "lane            normal, agencies' queue 6"),
        "tax's normal notice, in its queue: {:?}",
        h.history
    );
    let whole = serde_json::to_string(&h).unwrap();
    assert!(!whole.contains(&id), "the national ID never leaves whole");
    assert!(!whole.contains("body one"), "nor the notice's body");
    // The lookup is a read of the mailbox's traffic data.
    let log = store.access_log(person(100), 10).unwrap();
    assert_eq!(log[0].action, "operator_notice");
    assert_eq!(log[0].tracking_code, Some(code));
    assert!(remote
        .history(TrackingCode::from_parts(1_760_000_000_000, 9, 9))
        .unwrap_err()
        .contains("404"));
}

#[test]
fn status_by_reference_reads_the_same_through_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = fjall_store(&dir.path().join("store"));
    // A reference with characters a query string must encode.
    let reference = "r/1 & ب?=#";
    store
        .write(&[
            new_notice(notice("tax", reference, person(200), "body"), 1),
            rejection(Some("tax"), reference, Reason::BadCheckDigit),
        ])
        .unwrap();
    let (_server, _op, remote) = serve(&store, dir.path());
    let local: &dyn Inspect = &store;
    let tax = AgencyId::parse("tax").unwrap();
    let there = remote.status(&tax, reference).unwrap();
    let here = local.status(&tax, reference).unwrap();
    assert!(there.notice.is_some() && there.rejections.len() == 1);
    // The same, but for whose notice it is (never answered).
    assert!(there.notice.as_ref().unwrap().recipient.is_none());
    assert_eq!(here.notice.as_ref().unwrap().recipient, Some(person(200)));
    assert_eq!(
        serde_json::to_value(&there).unwrap(),
        serde_json::to_value(&here).unwrap()
    );
    // The read is in the mailbox's traffic data.
    let log = store.access_log(person(200), 10).unwrap();
    assert_eq!(log[0].action, "operator_status");
    // Nothing known: an empty answer, not an error.
    assert!(!remote.status(&tax, "r-none").unwrap().found());
}

/// `karpoosheh receipts replay` through a running node: its store's
/// outbox gets the agency's receipts again (accepted, and the kept
/// rejection as first answered), nothing of another agency's; a bad
/// window or no credential is refused.
#[test]
fn a_running_node_replays_an_agencys_receipts_into_its_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let store = fjall_store(&dir.path().join("store"));
    store
        .write(&[
            new_notice(notice("tax", "r-1", person(300), "body"), 1),
            new_notice(notice("judiciary", "j-1", person(300), "body"), 2),
            rejection(Some("tax"), "r-bad", Reason::BadCheckDigit),
        ])
        .unwrap();
    let (_server, op, remote) = serve(&store, dir.path());
    let tax = AgencyId::parse("tax").unwrap();
    let since = chrono::DateTime::UNIX_EPOCH;
    let until = chrono::Utc::now() + chrono::Duration::days(1);
    let done = remote.replay(&tax, since, until).unwrap();
    assert_eq!((done.notices, done.receipts, done.rejections), (1, 1, 1));
    let out: Vec<_> = store.outbox(None, 100).unwrap();
    let ids: Vec<&str> = out.iter().map(|(_, r)| r.receipt_id.as_str()).collect();
    let code = store.reference(&tax, "r-1").unwrap().unwrap();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids.contains(&format!("accepted:{code}").as_str()),
        "{ids:?}"
    );
    assert!(ids.iter().any(|i| i.starts_with("rejected:")), "{ids:?}");
    assert!(out.iter().all(|(_, r)| r.agency == tax));
    // The window is checked, and the credential.
    assert!(remote.replay(&tax, until, since).is_err());
    let wrong = Remote::new(&OperatorConfig {
        listen: op.listen.clone(),
        token_file: {
            let f = dir.path().join("wrong.token");
            write_token(&f, &"y".repeat(40));
            f
        },
    })
    .unwrap();
    let e = wrong.replay(&tax, since, until).unwrap_err();
    assert!(e.contains("401"), "{e}");
    assert_eq!(store.outbox(None, 100).unwrap().len(), 2, "nothing more");
}
