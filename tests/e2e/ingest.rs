//! `karpoosheh ingest`: an agency's NDJSON batch with good and bad lines,
//! every line accounted for, receipts written, a re-run absorbed.

use karpoosheh_tests::{envelope, person, run};

/// A `batch_signed` receipt: the signed batch the receipts after it name.
fn is_batch(line: &str) -> bool {
    line.contains("\"event\":\"batch_signed\"")
}

fn lines(v: &serde_json::Value, event: &str) -> usize {
    v.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == event)
        .count()
}

#[test]
fn mixed_batch_is_fully_accounted_for_and_rerun_is_absorbed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("batch.ndjson");
    let receipts = dir.path().join("receipts.ndjson");
    let a = person(123_456_000);
    let b = person(223_456_000);
    let mut content = Vec::new();
    for i in 0..50 {
        content.push(envelope(
            "tax",
            &format!("t-{i}"),
            if i % 2 == 0 { &a } else { &b },
            &format!("اخطاریه شماره {i}"),
        ));
    }
    let mut bad_digit = a.clone().into_bytes();
    bad_digit[9] = b'0' + (bad_digit[9] - b'0' + 1) % 10;
    content.push(envelope(
        "tax",
        "bad-1",
        std::str::from_utf8(&bad_digit).unwrap(),
        "x",
    )); // bad check digit
    content.push(envelope("tax", "t-3", &a, "changed title")); // reference conflict
    content.push(envelope("tax", "t-4", &a, "اخطاریه شماره 4")); // exact re-send
    content.push(envelope("judiciary", "j-1", &a, "x")); // agency mismatch
    content.push("{not json".to_owned()); // dead letter
    content.push(String::new()); // blank line: not a record
    let mut bytes = content.join("\n").into_bytes();
    bytes.extend_from_slice(b"\n\xff\xfe\n"); // invalid UTF-8: dead letter
    std::fs::write(&file, &bytes).unwrap();

    let d = data.to_str().unwrap();
    let out = run(
        &[
            "--data-dir",
            d,
            "ingest",
            "--set",
            &karpoosheh_tests::approved_agencies(),
            "--file",
            file.to_str().unwrap(),
            "--agency",
            "tax",
            "--receipts",
            receipts.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("56 records"), "{stdout}");
    assert!(
        stdout.contains("stored 50, duplicates 1, rejected 3, dead-lettered 2"),
        "{stdout}"
    );

    let rs: Vec<serde_json::Value> = std::fs::read_to_string(&receipts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rs = serde_json::Value::Array(rs);
    assert_eq!(
        lines(&rs, "accepted"),
        51,
        "50 new + 1 duplicate are accepted"
    );
    assert_eq!(
        lines(&rs, "rejected"),
        3,
        "dead letters get no agency receipt; 3 rejections do"
    );
    let reasons: Vec<String> = rs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "rejected")
        .map(|r| r["problems"][0]["reason"].as_str().unwrap().to_owned())
        .collect();
    for want in ["bad_check_digit", "reference_conflict", "agency_mismatch"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "missing {want} in {reasons:?}"
        );
    }
    // Every receipt ID is unique; the receipts (one agency's) came in one
    // signed batch, whose receipt came first.
    let ids: std::collections::HashSet<_> = rs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["receipt_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 55);
    assert_eq!(lines(&rs, "batch_signed"), 1);
    assert_eq!(rs[0]["event"], "batch_signed");
    assert_eq!(rs[0]["size"], 54);

    // Rejections are kept for the agency; dead letters with their bytes.
    let out = run(&["--data-dir", d, "rejections", "--agency", "tax"], None);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let out = run(&["--data-dir", d, "dead-letters"], None);
    let dl = String::from_utf8_lossy(&out.stdout);
    assert_eq!(dl.lines().count(), 2, "{dl}");
    assert!(
        dl.contains("malformed_json") && dl.contains("invalid_utf8"),
        "{dl}"
    );

    // An agency's question by reference: `status`. t-3 was stored, and its
    // later conflicting envelope kept as a rejection of the reference.
    let status = |reference: &str| {
        run(
            &[
                "--data-dir",
                d,
                "status",
                "--agency",
                "tax",
                "--reference",
                reference,
                "--json",
            ],
            None,
        )
    };
    let out = status("t-3");
    assert!(out.status.success(), "{out:?}");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t3 = rs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reference"] == "t-3" && r["event"] == "accepted" && r["duplicate"] != true)
        .expect("t-3's receipt");
    assert_eq!(st["notice"]["tracking_code"], t3["tracking_code"]);
    assert_eq!(st["notice"]["lane"], "normal");
    assert_eq!(st["notice"]["state"], "scheduled");
    assert_eq!(st["notice"]["chain_intact"], true);
    let chain = st["notice"]["receipts"].as_array().unwrap();
    assert_eq!(chain[0]["event"], "accepted");
    assert_eq!(
        chain[0]["receipt_id"], t3["receipt_id"],
        "the receipt ID the agency got"
    );
    let reasons: Vec<&str> = st["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["problems"][0]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["reference_conflict"]);
    // bad-1 was only ever refused.
    let st: serde_json::Value = serde_json::from_slice(&status("bad-1").stdout).unwrap();
    assert!(st["notice"].is_null());
    assert_eq!(st["rejections"].as_array().unwrap().len(), 1);
    // An unknown reference: said plainly, exit status 1.
    let out = status("never-sent");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no notice and no kept rejection"),
        "{out:?}"
    );
    // The text form names the lane, the state and the receipts.
    let out = run(
        &[
            "--data-dir",
            d,
            "status",
            "--agency",
            "tax",
            "--reference",
            "t-3",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("lane            normal") && text.contains("receipt         accepted"),
        "{text}"
    );

    // Mailbox a holds the 25 even-numbered notices, newest first, once each.
    let out = run(
        &["--data-dir", d, "mailbox", &a, "--limit", "100", "--json"],
        None,
    );
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 25);
    assert!(
        listed
            .iter()
            .all(|n| n["notice"]["title"] != "changed title"),
        "the later envelope re-using t-3 did not win over the original"
    );
    let codes: Vec<&str> = listed
        .iter()
        .map(|n| n["tracking_code"].as_str().unwrap())
        .collect();
    let mut sorted = codes.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(codes, sorted, "newest first");

    // Re-running the whole file stores nothing twice, and answers every
    // line the first run stored with the receipt it got then: the same
    // records again, not re-sends. The exact re-send in the file is still
    // one.
    let again = dir.path().join("receipts-again.ndjson");
    let out = run(
        &[
            "--data-dir",
            d,
            "ingest",
            "--set",
            &karpoosheh_tests::approved_agencies(),
            "--file",
            file.to_str().unwrap(),
            "--agency",
            "tax",
            "--receipts",
            again.to_str().unwrap(),
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stored 0, duplicates 51"), "{stdout}");
    let read = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &serde_json::Value| r["event"] == "accepted")
            .collect()
    };
    let (before, after) = (read(&receipts), read(&again));
    assert_eq!(before.len(), 51);
    let strip = |r: &serde_json::Value| {
        let mut r = r.clone();
        r.as_object_mut().unwrap().remove("evidence");
        r
    };
    for (x, y) in before.iter().zip(&after) {
        if x["duplicate"] == true {
            // The re-send's answer: the same ID, at the time of each run.
            assert_eq!(x["receipt_id"], y["receipt_id"]);
            continue;
        }
        assert_eq!(
            strip(x),
            strip(y),
            "a line read again gets its first receipt"
        );
        assert_eq!(x["evidence"]["chain"], y["evidence"]["chain"]);
    }
    assert_eq!(
        after.iter().filter(|r| r["duplicate"] == true).count(),
        1,
        "only the re-send in the file reads as one"
    );
    let out = run(
        &["--data-dir", d, "mailbox", &a, "--limit", "100", "--json"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 25);
}

#[test]
fn a_notice_reads_back_by_tracking_code() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.ndjson");
    let receipts = dir.path().join("r.ndjson");
    let id = person(345_678_000);
    std::fs::write(
        &file,
        envelope(
            "tax",
            "only-1",
            &format!("{id}@iran"),
            "مالیات بر ارزش افزوده",
        ),
    )
    .unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let out = run(
        &[
            "--data-dir",
            d,
            "ingest",
            "--set",
            &karpoosheh_tests::approved_agencies(),
            "--agency",
            "tax",
            "--file",
            file.to_str().unwrap(),
            "--receipts",
            receipts.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&receipts).unwrap();
    let receipt: serde_json::Value =
        serde_json::from_str(text.lines().find(|l| !is_batch(l)).unwrap()).unwrap();
    let code = receipt["tracking_code"].as_str().unwrap();
    let out = run(&["--data-dir", d, "notice", code, "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n["notice"]["recipient"], id.as_str());
    assert_eq!(n["notice"]["title"], "مالیات بر ارزش افزوده");
    assert_eq!(n["content_sha256"].as_str().unwrap().len(), 64);
    // A mistyped code is refused before touching the store.
    let mut bad = code.to_owned();
    bad.replace_range(0..1, if code.starts_with('0') { "1" } else { "0" });
    let out = run(&["--data-dir", d, "notice", &bad], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("check character"));
}

/// Logs that cannot be written (stderr on a full disk: `/dev/full`) are
/// dropped; the batch is still stored and answered.
#[test]
fn an_unwritable_log_does_not_stop_an_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.ndjson");
    let receipts = dir.path().join("r.ndjson");
    let lines: Vec<String> = (0..20)
        .map(|i| {
            envelope(
                "tax",
                &format!("full-{i}"),
                &person(345_700_000 + i * 13),
                "t",
            )
        })
        .chain(["][".to_owned()]) // a dead letter, which logs a warning
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let d = dir.path().join("data");
    let out = karpoosheh_tests::karpoosheh_command()
        .args([
            "--data-dir",
            d.to_str().unwrap(),
            "--set",
            &karpoosheh_tests::approved_agencies(),
            "ingest",
            "--agency",
            "tax",
            "--file",
        ])
        .arg(&file)
        .arg("--receipts")
        .arg(&receipts)
        .env_remove("KARPOOSHEH_CONFIG")
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ingest with stderr on a full device: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let answered = std::fs::read_to_string(&receipts)
        .unwrap()
        .lines()
        .filter(|l| !is_batch(l))
        .count();
    // 20 receipts; the unparseable line is kept as a dead letter.
    assert_eq!(answered, 20, "every notice answered");
}

/// Receipts as an agency gets them from `ingest --receipts`: every one
/// verifies with an independent verifier (Python, `cryptography`) and the
/// node's public key as `keys list --node` prints it; an edited one does
/// not, and says why. The stored chain of a notice reads as intact.
#[test]
fn receipts_verify_independently_and_an_edited_one_does_not() {
    let Some(python) = karpoosheh_tests::python_with_cryptography("receipts_python") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (file, receipts) = (dir.path().join("b.ndjson"), dir.path().join("r.ndjson"));
    let a = person(499_370_000);
    let mut lines: Vec<String> = (0..300)
        .map(|i| envelope("tax", &format!("v-{i}"), &a, &format!("ابلاغیه {i}")))
        .collect();
    lines.push(envelope("tax", "v-0", &a, "ابلاغیه 0")); // a duplicate
    lines.push(envelope("tax", "bad", "123", "x")); // a rejection
    std::fs::write(&file, lines.join("\n")).unwrap();
    let d = dir.path().join("data");
    let out = run(
        &[
            "--data-dir",
            d.to_str().unwrap(),
            "ingest",
            "--set",
            &karpoosheh_tests::approved_agencies(),
            "--agency",
            "tax",
            "--file",
            file.to_str().unwrap(),
            "--receipts",
            receipts.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwks = run(&["keys", "list", "--node"], None);
    assert!(jwks.status.success());
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, &jwks.stdout).unwrap();
    let verify = |input: &[u8]| {
        let out = karpoosheh_tests::pipe(
            std::process::Command::new(python)
                .arg(karpoosheh_tests::python_script("receipts.py"))
                .arg(&jwks_file),
            input,
        );
        (
            out.status.success(),
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        )
    };
    let text = std::fs::read_to_string(&receipts).unwrap();
    let (ok, report) = verify(text.as_bytes());
    assert!(ok, "{report}");
    assert_eq!(report["receipts"], 302, "{report}");
    assert_eq!(report["verified"], 302, "{report}");
    assert_eq!(
        report["chained"], 300,
        "the duplicate and the rejection are no events"
    );
    assert!(report["batches"].as_u64().unwrap() >= 2, "{report}");
    // Edit one: the reference of the 8th receipt.
    let mut edited: Vec<String> = text.lines().map(str::to_owned).collect();
    let eighth = (0..edited.len())
        .filter(|i| !is_batch(&edited[*i]))
        .nth(7)
        .unwrap();
    edited[eighth] = edited[eighth].replacen("\"reference\":\"v-", "\"reference\":\"w-", 1);
    let (ok, report) = verify((edited.join("\n") + "\n").as_bytes());
    assert!(!ok);
    assert_eq!(report["verified"], 301, "{report}");
    assert_eq!(report["failures"][0]["line"], eighth + 1, "{report}");
    assert!(
        report["failures"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("chain hash"),
        "{report}"
    );
    // The stored chain of that notice, as the operator sees it.
    let code = serde_json::from_str::<serde_json::Value>(&edited[eighth]).unwrap()["tracking_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = run(&["--data-dir", d.to_str().unwrap(), "notice", &code], None);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("evidence chain  intact: 1 events"),
        "{shown}"
    );

    // Content hash v1, recomputed by Python from the notice's JSON, is the
    // engine's and the receipt's; the paper's verification code checks.
    for line in text.lines().filter(|l| !is_batch(l)).take(5) {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let code = r["tracking_code"].as_str().unwrap();
        let shown = run(
            &["--data-dir", d.to_str().unwrap(), "notice", code, "--json"],
            None,
        );
        assert!(shown.status.success());
        let ours = karpoosheh_tests::pipe(
            std::process::Command::new(python)
                .arg(karpoosheh_tests::python_script("content_hash.py")),
            &shown.stdout,
        );
        let py = String::from_utf8_lossy(&ours.stdout).trim().to_owned();
        let engine: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        assert_eq!(py, engine["content_sha256"].as_str().unwrap());
        assert_eq!(py, r["content_hash"].as_str().unwrap());
        let vcode = r["verification_code"].as_str().unwrap();
        let ok = run(
            &[
                "--data-dir",
                d.to_str().unwrap(),
                "verify-document",
                code,
                &vcode.to_lowercase(),
            ],
            None,
        );
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stdout)
        );
        assert!(String::from_utf8_lossy(&ok.stdout).contains("agency          tax"));
        assert!(
            !String::from_utf8_lossy(&ok.stdout).contains(&a),
            "no recipient shown"
        );
    }
    let r: serde_json::Value =
        serde_json::from_str(text.lines().find(|l| !is_batch(l)).unwrap()).unwrap();
    let forged = run(
        &[
            "--data-dir",
            d.to_str().unwrap(),
            "verify-document",
            r["tracking_code"].as_str().unwrap(),
            "ZZZZ-ZZZZ",
        ],
        None,
    );
    assert!(!forged.status.success());
    assert!(String::from_utf8_lossy(&forged.stdout).contains("NOT GENUINE"));

    // The node's audit log in the store matches the tree head `ingest`
    // signed at its end; the head as published is there to copy out.
    let batches = std::fs::read_to_string(&receipts)
        .unwrap()
        .lines()
        .filter(|l| is_batch(l))
        .count();
    let log = run(&["--data-dir", d.to_str().unwrap(), "audit-log"], None);
    let text = String::from_utf8_lossy(&log.stdout).into_owned();
    assert!(log.status.success(), "{text}");
    assert!(
        text.contains(&format!("entries         {batches} signed receipt batches"))
            && text.contains("consistent      yes"),
        "{text}"
    );
    let head = run(
        &["--data-dir", d.to_str().unwrap(), "audit-log", "--json"],
        None,
    );
    let head: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
    assert_eq!(
        (head["type"].as_str(), head["size"].as_u64()),
        (Some("tree_head"), Some(batches as u64))
    );

    // A proof bundle of that notice holds offline with the node's public
    // keys and the notice's JSON; edited, it says what broke.
    let code = r["tracking_code"].as_str().unwrap();
    let bundle = dir.path().join("proof.json");
    let made = run(
        &[
            "--data-dir",
            d.to_str().unwrap(),
            "proof",
            code,
            "--out",
            bundle.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let shown = run(
        &["--data-dir", d.to_str().unwrap(), "notice", code, "--json"],
        None,
    );
    let doc = dir.path().join("doc.json");
    let notice: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    std::fs::write(&doc, notice["notice"].to_string()).unwrap();
    let verify = |bundle: &std::path::Path| {
        run(
            &[
                "verify",
                bundle.to_str().unwrap(),
                "--jwks",
                jwks_file.to_str().unwrap(),
                "--document",
                doc.to_str().unwrap(),
            ],
            None,
        )
    };
    let ok = verify(&bundle);
    let text = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success(), "{text}");
    assert!(
        text.contains("one of the keys you trust") && text.contains("content hash matches"),
        "{text}"
    );
    // The acceptance is in a signed batch of the node's audit log, under
    // the tree head `ingest` signed at its end.
    assert!(
        text.contains("audit log (") && text.contains("events 1 are in signed batches"),
        "{text}"
    );
    let mut b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    // A log path that leads elsewhere: the batch is not under that head.
    let mut moved = b.clone();
    moved["audit"]["events"][0]["entry"] = 1_000_000.into();
    let moved_file = dir.path().join("moved.json");
    std::fs::write(&moved_file, moved.to_string()).unwrap();
    let bad = verify(&moved_file);
    let text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert!(!bad.status.success());
    assert!(
        text.contains("FAIL  event 1: its batch (log entry 1000000) is not in the tree head's log"),
        "{text}"
    );
    b["events"][0]["event"]["reference"] = "forged".into();
    let edited = dir.path().join("edited.json");
    std::fs::write(&edited, b.to_string()).unwrap();
    let bad = verify(&edited);
    let text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert!(!bad.status.success());
    assert!(text.contains("FAIL  event 1 was edited"), "{text}");
}

/// A batch file speaks for one agency, which must be approved in the
/// registry, as on Kafka: an unknown, suspended or dissolved agency's file
/// is refused before anything is read, with the reason code.
#[test]
fn ingest_refuses_an_agency_the_registry_does_not_approve() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.ndjson");
    let a = person(345_900_001);
    std::fs::write(&file, envelope("paused", "p-1", &a, "x")).unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let agencies = karpoosheh_tests::approved_agencies();
    let ingest = |agency: &str| {
        run(
            &[
                "--data-dir",
                d,
                "--set",
                &agencies,
                "ingest",
                "--file",
                file.to_str().unwrap(),
                "--agency",
                agency,
            ],
            None,
        )
    };
    for (agency, reason) in [
        ("nobody-here", "agency_unknown"),
        ("paused", "agency_not_allowed"),
        ("old-ministry", "agency_not_allowed"),
    ] {
        let out = ingest(agency);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{agency}: it ingested");
        assert!(
            err.contains(&format!("(reason {reason})")) && err.contains("nothing was read"),
            "{agency}: {err}"
        );
    }
    // Refused before the store was even opened.
    assert!(!std::path::Path::new(d).exists(), "a store was made");
    // Without a registry at all, it says what to set.
    let out = run(
        &[
            "--data-dir",
            d,
            "ingest",
            "--file",
            file.to_str().unwrap(),
            "--agency",
            "tax",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("agencies.file"));
    // And --agency is required.
    let out = run(
        &["--data-dir", d, "ingest", "--file", file.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--agency"));
}
