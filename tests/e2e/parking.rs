//! One agency's failing receipt topic never holds up the others (issue
//! 23, isolation): its receipts are parked in the store, counted, and
//! delivered in order once the topic takes them again.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use karpoosheh_tests::{envelope, person};
use rdkafka::producer::Producer;

use crate::kafka::{
    broker_or_skip, produce, read_answers, Answers, Broker, Engine, Names, Storage,
};

/// Produces `n` notices of `agency`, references `<tag>-<i>`.
fn notices(broker: &Broker, names: &Names, agency: &str, tag: &str, n: u32) -> Vec<String> {
    let p = broker.producer();
    let mut refs = Vec::new();
    for i in 0..n {
        let id = person(300_000_000 + i * 71);
        let r = format!("{tag}-{i}");
        produce(
            &p,
            &names.notices(agency),
            &id,
            envelope(agency, &r, &id, "اخطاریه").as_bytes(),
        );
        refs.push(r);
    }
    p.flush(Duration::from_secs(60)).unwrap();
    refs
}

/// The references of `agency` answered `accepted`, once each, one code
/// each (asserted), and how many.
fn accepted(a: &Answers, agency: &str, refs: &[String]) -> usize {
    refs.iter()
        .filter(|r| a.receipts.contains_key(&(agency.to_owned(), (*r).clone())))
        .count()
}

fn assert_accepted_once(a: &Answers, agency: &str, refs: &[String]) {
    assert_eq!(
        accepted(a, agency, refs),
        refs.len(),
        "{agency}: every notice answered"
    );
    for r in refs {
        let got = &a.receipts[&(agency.to_owned(), r.clone())];
        let codes: HashSet<_> = got.iter().map(|g| g.1.clone()).collect();
        assert!(got.iter().all(|g| g.0 == "accepted"), "{r}: {got:?}");
        assert_eq!(codes.len(), 1, "{r}: one tracking code: {got:?}");
    }
}

#[test]
fn kafka_an_agency_whose_receipt_topic_fails_is_parked_and_the_others_flow() {
    let Some(broker) = broker_or_skip("kafka_parking", Storage::Fresh) else {
        return;
    };
    let names = Names::new("park");
    names.create(&broker, &["tax"], 2);
    // Judiciary is approved and may send, but its receipt topic is missing.
    broker.create_topics(&[&names.notices("judiciary")], 2);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    let parked =
        |e: &Engine, a: &str| e.metric("karpoosheh_agency_parked", &format!("agency=\"{a}\""));
    assert_eq!(parked(&engine, "judiciary"), 0.0, "nothing parked at start");

    // Judiciary's notices first: their receipts are refused, and tax's,
    // behind them, still flow.
    let jud = notices(&broker, &names, "judiciary", "jud", 200);
    let tax = notices(&broker, &names, "tax", "tax", 500);
    let answers = read_answers(
        &broker,
        &names,
        |a| accepted(a, "tax", &tax) == tax.len(),
        Duration::from_secs(120),
    );
    assert_accepted_once(&answers, "tax", &tax);
    assert_eq!(
        accepted(&answers, "judiciary", &jud),
        0,
        "its topic is missing"
    );
    assert_eq!(parked(&engine, "judiciary"), 1.0, "judiciary parked");
    assert_eq!(parked(&engine, "tax"), 0.0, "tax is not");
    let waiting = engine.metric("karpoosheh_receipts_parked", "agency=\"judiciary\"");
    assert!(
        waiting >= 200.0,
        "every judiciary receipt waits in the store ({waiting})"
    );
    assert!(
        engine.metric(
            "karpoosheh_receipts_parked_total",
            "reason=\"topic_missing\""
        ) >= 1.0,
        "parked because its topic is missing"
    );
    assert_eq!(engine.get("/health/ready").0, 200, "the node goes on");
    assert_eq!(
        engine.metric("karpoosheh_notices_stored_total", ""),
        700.0,
        "every notice stored"
    );

    // Stopped and started while parked: the lot is in the store, the
    // agency parked again at start, and tax still flows.
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("agency parked"), "{log}");
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    // The metrics endpoint is up (and its address printed) a moment
    // before the parking lot is read from the store.
    engine.wait_for("parked again at start", Duration::from_secs(30), |e| {
        parked(e, "judiciary") == 1.0
    });
    assert_eq!(
        engine.metric("karpoosheh_receipts_parked", "agency=\"judiciary\""),
        waiting,
        "the same lot"
    );
    let tax2 = notices(&broker, &names, "tax", "tax2", 100);
    let jud2 = notices(&broker, &names, "judiciary", "jud2", 100);
    let answers = read_answers(
        &broker,
        &names,
        |a| accepted(a, "tax", &tax2) == tax2.len(),
        Duration::from_secs(120),
    );
    assert_accepted_once(&answers, "tax", &tax2);
    engine.wait_for(
        "judiciary's new receipts parked too",
        Duration::from_secs(60),
        |e| e.metric("karpoosheh_receipts_parked", "agency=\"judiciary\"") >= waiting + 100.0,
    );

    // The operator creates the topic: the lot is delivered by itself, in
    // order, and the agency's receipts flow directly again.
    let created = Instant::now();
    broker.create_topics(&[&names.receipts("judiciary")], 2);
    engine.wait_for("judiciary unparked", Duration::from_secs(90), |e| {
        parked(e, "judiciary") == 0.0
    });
    eprintln!(
        "kafka_parking: judiciary's lot delivered {:?} after its topic was created",
        created.elapsed()
    );
    assert!(
        engine.metric("karpoosheh_receipts_unparked_total", "agency=\"judiciary\"") >= 300.0,
        "delivered from the lot"
    );
    assert_eq!(
        engine.metric("karpoosheh_receipts_parked", "agency=\"judiciary\""),
        0.0
    );
    let jud3 = notices(&broker, &names, "judiciary", "jud3", 50);
    let all: Vec<String> = jud.iter().chain(&jud2).chain(&jud3).cloned().collect();
    let answers = read_answers(
        &broker,
        &names,
        |a| accepted(a, "judiciary", &all) == all.len(),
        Duration::from_secs(90),
    );
    assert_accepted_once(&answers, "judiciary", &all);
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("agency unparked"), "{log}");
}

/// A receipt topic deleted under a running engine (issue 23), on a real
/// Apache Kafka broker (the test broker, tansu 0.6, stops answering after a
/// `DeleteTopics`): the node finds it missing at its next metadata refresh,
/// parks the agency's receipts while every other agency flows, and
/// delivers them once the topic is made again.
#[test]
fn apache_kafka_a_receipt_topic_deleted_mid_run_parks_its_agency_until_it_is_back() {
    let Some(broker) = crate::kafka::apache_kafka_or_skip(
        "apache_kafka_a_receipt_topic_deleted_mid_run_parks_its_agency_until_it_is_back",
    ) else {
        return;
    };
    let names = Names::new("deleted");
    names.create(&broker, &["tax", "judiciary"], 2);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(&broker, &names, dir.path(), 1, &[]);
    let parked =
        |e: &Engine, a: &str| e.metric("karpoosheh_agency_parked", &format!("agency=\"{a}\""));
    let jud = notices(&broker, &names, "judiciary", "jud", 100);
    let tax = notices(&broker, &names, "tax", "tax", 100);
    let answers = read_answers(
        &broker,
        &names,
        |a| accepted(a, "tax", &tax) == tax.len() && accepted(a, "judiciary", &jud) == jud.len(),
        Duration::from_secs(120),
    );
    assert_accepted_once(&answers, "tax", &tax);
    assert_accepted_once(&answers, "judiciary", &jud);

    // The judiciary's receipt topic is deleted while the engine runs.
    broker.delete_topics(&[&names.receipts("judiciary")]);
    let deleted = Instant::now();
    let jud2 = notices(&broker, &names, "judiciary", "jud2", 200);
    let tax2 = notices(&broker, &names, "tax", "tax2", 200);
    let answers = read_answers(
        &broker,
        &names,
        |a| accepted(a, "tax", &tax2) == tax2.len(),
        Duration::from_secs(120),
    );
    assert_accepted_once(&answers, "tax", &tax2);
    engine.wait_for("judiciary parked", Duration::from_secs(90), |e| {
        parked(e, "judiciary") == 1.0
            && e.metric("karpoosheh_receipts_parked", "agency=\"judiciary\"") >= 200.0
    });
    eprintln!(
        "apache_kafka_deleted: judiciary parked with its 200 receipts {:?} after its topic was deleted",
        deleted.elapsed()
    );
    assert!(
        engine.metric(
            "karpoosheh_receipts_parked_total",
            "reason=\"topic_missing\""
        ) >= 1.0,
        "parked because its topic is missing"
    );
    assert_eq!(parked(&engine, "tax"), 0.0, "tax is not parked");
    assert_eq!(engine.get("/health/ready").0, 200, "the node goes on");
    engine.wait_for("every notice stored", Duration::from_secs(60), |e| {
        e.metric("karpoosheh_notices_stored_total", "") == 600.0
    });

    // Made again: the lot is delivered, and the agency flows directly.
    broker.create_topics(&[&names.receipts("judiciary")], 2);
    engine.wait_for("judiciary unparked", Duration::from_secs(90), |e| {
        parked(e, "judiciary") == 0.0
    });
    let jud3 = notices(&broker, &names, "judiciary", "jud3", 50);
    let after: Vec<String> = jud2.iter().chain(&jud3).cloned().collect();
    let answers = read_answers(
        &broker,
        &names,
        |a| accepted(a, "judiciary", &after) == after.len(),
        Duration::from_secs(90),
    );
    assert_accepted_once(&answers, "judiciary", &after);
    assert_eq!(
        accepted(&answers, "judiciary", &jud),
        0,
        "the first receipts went with the deleted topic"
    );
    let (code, _, log) = engine.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("agency parked") && log.contains("agency unparked"),
        "{log}"
    );
}
