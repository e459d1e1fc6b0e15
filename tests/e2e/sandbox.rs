//! The agencies' sandbox (issue 24) over Kafka: an integrator sends to
//! test national IDs on the sandbox topics and gets, from the real
//! pipeline, scheduler and evidence, each outcome it chose by ID, with
//! real, verifiable receipts; the node's gateways are simulated and it
//! reads no real registry or confirmations.

use std::time::Duration;

use karpoosheh_tests::{envelope, person};
use rdkafka::producer::Producer;

use crate::kafka::{
    broker_or_skip, produce, read_answers, verify_receipts, Answers, Engine, Names, Storage,
};

#[test]
fn kafka_the_sandbox_gives_each_outcome_its_test_id_asks_for() {
    let Some(broker) = broker_or_skip("kafka_sandbox", Storage::Fresh) else {
        return;
    };
    // The topic names say "sandbox" (the node refuses others).
    let names = Names::new("sandbox");
    names.create(&broker, &["tax"], 1);
    let dir = tempfile::tempdir().unwrap();
    // A key of its own, that says it is the sandbox's.
    let key = dir.path().join("sandbox.jwk");
    let made = karpoosheh_tests::karpoosheh_command()
        .args(["keys", "generate", "--kid", "sandbox-test-2026-12", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let key_set = format!("evidence.key_file={:?}", key.display().to_string());
    let engine = Engine::start(
        &broker,
        &names,
        dir.path(),
        7,
        &[
            &key_set,
            "sandbox.enabled=true",
            "delivery.enabled=true",
            "kafka.acks_topic=\"\"",
            "kafka.registry_topic=\"\"",
            "delivery.quiet_hours=\"\"",
            // Rounds 4 s apart: the sandbox's recipients confirm 1 s and
            // 2 s after round 1.
            "delivery.round_intervals=[\"0s\", \"4s\", \"4s\"]",
            "delivery.not_served_after=\"3s\"",
        ],
    );
    assert_eq!(engine.metric("karpoosheh_sandbox", ""), 1.0);
    // The digit before the check digit chooses (the agency guide's table).
    let outcomes: [(u32, &str, &[&str]); 7] = [
        (
            0,
            "served",
            &[
                "accepted",
                "notification_sent",
                "confirmed",
                "confirmed",
                "served",
            ],
        ),
        (
            4,
            "confirms-once",
            &[
                "accepted",
                "notification_sent",
                "confirmed",
                "notification_sent",
                "notification_sent",
                "not_served",
            ],
        ),
        (
            5,
            "silent",
            &[
                "accepted",
                "notification_sent",
                "notification_sent",
                "notification_sent",
                "not_served",
            ],
        ),
        (6, "deceased", &["accepted", "mailbox_unreachable"]),
        (7, "not-activated", &["accepted", "mailbox_unreachable"]),
        (
            8,
            "no-channel",
            &[
                "accepted",
                "notification_failed",
                "notification_failed",
                "notification_failed",
                "not_served",
            ],
        ),
        (
            9,
            "guardian",
            &[
                "accepted",
                "mailbox_unreachable",
                "notification_sent",
                "confirmed",
                "confirmed",
                "served",
            ],
        ),
    ];
    let p = broker.producer();
    for (d, r, _) in &outcomes {
        let id = person(123_456_780 + d);
        assert_eq!(id.as_bytes()[8], b'0' + *d as u8, "{id}");
        produce(
            &p,
            &names.notices("tax"),
            &id,
            envelope("tax", r, &id, "آزمایشی").as_bytes(),
        );
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let events = |a: &Answers, r: &str| a.events("tax", r);
    let a = read_answers(
        &broker,
        &names,
        |a| {
            outcomes
                .iter()
                .all(|(_, r, want)| events(a, r).len() >= want.len())
        },
        Duration::from_secs(120),
    );
    for (_, r, want) in &outcomes {
        assert_eq!(&events(&a, r), want, "{r}");
    }
    // Real receipts: every one verifies with the node's key.
    let (_, jwks) = engine.get("/.well-known/jwks.json");
    if let Some(report) = verify_receipts(dir.path(), &jwks, &a.raw) {
        assert_eq!(report["verified"], a.raw.len() - a.batches, "{report}");
    }
    // Only simulated gateways, and the confirmations were the sandbox's.
    assert_eq!(
        engine.metric("karpoosheh_channel_gateway_info", "gateway=\"simulated\""),
        engine.metric("karpoosheh_channel_gateway_info", ""),
    );
    assert_eq!(
        engine.metric("karpoosheh_confirmations_total", "outcome=\"applied\""),
        5.0,
        "two each for served and the guardian's, one for confirms-once"
    );
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SANDBOX"), "says so at start: {log}");
}

/// A sandbox node's settings that reach nothing real.
const SANDBOX_SETS: &[&str] = &[
    "sandbox.enabled=true",
    "delivery.enabled=true",
    "kafka.acks_topic=\"\"",
    "kafka.registry_topic=\"\"",
    "kafka.notice_topic_prefix=\"karpoosheh.sandbox.notices.\"",
    "kafka.receipt_topic_prefix=\"karpoosheh.sandbox.receipts.\"",
    "kafka.dead_letter_topic=\"karpoosheh.sandbox.dlq\"",
    "kafka.group_id=\"karpoosheh-sandbox\"",
    "kafka.audit_topic=\"karpoosheh.sandbox.audit\"",
];

/// `karpoosheh run` on `dir` with [`SANDBOX_SETS`] and `extra` (later
/// settings win): it must refuse to start; its error output.
fn refused(dir: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec![
        "run".to_owned(),
        "--data-dir".to_owned(),
        dir.display().to_string(),
    ];
    for s in SANDBOX_SETS.iter().chain(extra) {
        args.push("--set".into());
        args.push((*s).into());
    }
    let out = karpoosheh_tests::karpoosheh_command()
        .args(&args)
        .env_remove("KARPOOSHEH_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{extra:?}: started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A sandbox that could touch something real does not start: a real
/// gateway, live topic names, group or keyspace, a real registry or
/// confirmations topic.
#[test]
fn a_sandbox_that_could_reach_something_real_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, says) in [
        (
            "channels.sms.gateway=\"http\"",
            "channels.sms.gateway names a real gateway",
        ),
        (
            "kafka.notice_topic_prefix=\"karpoosheh.notices.\"",
            "kafka.notice_topic_prefix",
        ),
        ("kafka.acks_topic=\"karpoosheh.acks\"", "kafka.acks_topic"),
        ("delivery.enabled=false", "needs delivery.enabled"),
        ("kafka.group_id=\"karpoosheh\"", "kafka.group_id"),
        (
            "kafka.audit_topic=\"karpoosheh.audit\"",
            "kafka.audit_topic",
        ),
        (
            "store.backend=\"scylla\"",
            "scylla.keyspace = \"karpoosheh\" is not a sandbox one",
        ),
    ] {
        let err = refused(dir.path(), &[extra]);
        assert!(err.contains(says), "{extra}: {err}");
    }
}

/// Its receipts must never pass for a live node's: a signing key whose ID
/// does not say `sandbox` is refused at start.
#[test]
fn a_sandbox_with_a_live_nodes_key_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let agencies = dir.path().join("agencies.toml");
    std::fs::write(&agencies, "[agency.tax]\nstatus = \"approved\"\n").unwrap();
    let agencies_set = format!("agencies.file={:?}", agencies.display().to_string());
    // The suite's node key (karpoosheh_command sets it): not a sandbox one.
    let err = refused(
        dir.path(),
        &["kafka.brokers=\"127.0.0.1:1\"", &agencies_set],
    );
    assert!(err.contains("is not a sandbox key"), "{err}");
}
