//! `karpoosheh demo` without a terminal, as CI and a newcomer run it: every
//! record accounted for, and the article-29 follow-up reaching an outcome
//! for every stored notice.

use karpoosheh_tests::run;

/// `GET path` on `addr` with an optional bearer token: (status, body).
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        out.split_once("\r\n\r\n")
            .map(|x| x.1.to_owned())
            .unwrap_or_default(),
    )
}

#[test]
fn demo_accounts_for_everything_and_serves_notices() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut child = karpoosheh_tests::karpoosheh_command()
        .args([
            "demo",
            "--notices",
            "4000",
            "--quiet",
            "--dir",
            data.to_str().unwrap(),
            "--set",
            "metrics.listen=\"127.0.0.1:0\"",
            "--set",
            "inbox.listen=\"127.0.0.1:0\"",
            "--set",
            "operator.listen=\"127.0.0.1:0\"",
            "--set",
            "delivery.round_intervals=[\"0s\", \"3s\", \"3s\"]",
            "--set",
            "delivery.not_served_after=\"3s\"",
        ])
        .env_remove("KARPOOSHEH_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the demo");
    // The addresses it bound, from its first lines.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let (mut metrics, mut inbox, mut operator) = (None, None, None);
    let mut seen = String::new();
    while metrics.is_none() || inbox.is_none() || operator.is_none() {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen += &line;
        let addr = |prefix: &str, suffix: &str| {
            line.trim()
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(suffix))
                .map(str::to_owned)
        };
        metrics = metrics.or(addr("karpoosheh: metrics on http://", "/metrics"));
        inbox = inbox.or(addr("karpoosheh: inbox API on http://", "/v1/"));
        operator = operator.or(addr(
            "karpoosheh: operator endpoint on http://",
            "/v1/operator/",
        ));
    }
    let (Some(metrics), Some(inbox), Some(operator)) = (metrics, inbox, operator) else {
        let _ = child.kill();
        panic!("the demo did not say where it serves:\n{seen}");
    };
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    // A citizen's app, with a token of the demo's identity provider from
    // the file the demo writes for people to try it.
    let try_file = data.join("inbox-try.txt");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !try_file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&try_file).expect("inbox-try.txt");
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("export T1='")?.strip_suffix('\''))
        .expect("a token in inbox-try.txt")
        .to_owned();
    // Their first notice may still be on its way into the store.
    let page = loop {
        let (status, body) = get(&inbox, "/v1/mailbox?limit=1", Some(&token));
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        if page["notices"][0].is_object() || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let code = page["notices"][0]["tracking_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = get(&inbox, &format!("/v1/notices/{code}"), Some(&token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&inbox, "/v1/mailbox", None).0, 401);
    // The API is measured, by route and status, never by who called.
    let (_, m) = get(&metrics, "/metrics", None);
    for want in [
        "karpoosheh_inbox_requests_total{route=\"mailbox\",status=\"200\"} ",
        "karpoosheh_inbox_requests_total{route=\"mailbox\",status=\"401\"} ",
        "karpoosheh_inbox_requests_total{route=\"notice\",status=\"200\"} ",
        "karpoosheh_inbox_request_seconds_bucket{route=\"notice\",le=",
        "# TYPE karpoosheh_inbox_request_seconds histogram",
    ] {
        assert!(m.contains(want), "{want} not in /metrics");
    }
    let who = page["mailbox"].as_str().unwrap();
    assert!(!m.contains(who), "a national ID in /metrics");
    // An operator looks inside while the demo holds its store: through the
    // node's operator endpoint, with the demo's credential.
    let token_file = data.join("operator.token");
    let (listen, token_file) = (
        format!("operator.listen=\"{operator}\""),
        format!("operator.token_file={:?}", token_file.display().to_string()),
    );
    let inspect = |command: &str, arg: &str| {
        let dir = data.to_str().unwrap();
        run(
            &[
                "--data-dir",
                dir,
                "--set",
                &listen,
                "--set",
                &token_file,
                command,
                arg,
            ],
            None,
        )
    };
    let looked = inspect("mailbox", who);
    let text = String::from_utf8_lossy(&looked.stdout);
    assert!(
        looked.status.success() && text.contains(&code),
        "{text}\n{}",
        String::from_utf8_lossy(&looked.stderr)
    );
    assert!(String::from_utf8_lossy(&looked.stderr).contains("operator endpoint"));
    let shown = inspect("notice", &code);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains("evidence chain  intact"));
    // The dashboard's drill-down reads the same endpoint, as the monitor
    // does: a tracking code's history (masked), an agency's newest
    // rejections, the node's lots and quarantine.
    let rejecting = {
        use karpoosheh_monitor::drill::{credential, fetch, Answer, Endpoint, Query};
        let access = karpoosheh_monitor::OperatorAccess {
            token_file: Some(data.join("operator.token")),
            endpoints: vec![operator.clone()],
        };
        let token = credential(&access).unwrap();
        let ep = [Endpoint {
            name: "demo".into(),
            base: format!("http://{operator}"),
        }];
        let q = Query::Lookup { code: code.clone() };
        let Ok(Answer::Lookup(found)) = fetch(&q, &ep, &token) else {
            panic!("no history of {code}");
        };
        let h = found.history;
        assert_eq!(h.tracking_code, code);
        assert!(h.history[0].starts_with("legal outcome"), "{:?}", h.history);
        assert!(
            h.chain.iter().any(|l| l.contains("intact")),
            "{:?}",
            h.chain
        );
        assert!(h.recipient.ends_with(&who[who.len() - 4..]) && !h.recipient.contains(who));
        // An agency with rejections, from the demo's metrics.
        let agency = loop {
            let (_, m) = get(&metrics, "/metrics", None);
            let found = m.lines().find_map(|l| {
                let labels = l.strip_prefix("karpoosheh_notices_rejected_total{")?;
                let a = labels.split("agency=\"").nth(1)?.split('"').next()?;
                Some(a.to_owned())
            });
            match found {
                Some(a) => break a,
                None if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                None => panic!("no rejection in the demo's metrics"),
            }
        };
        let q = Query::Rejections {
            agency: agency.clone(),
        };
        let Ok(Answer::Rejections(r)) = fetch(&q, &ep, &token) else {
            panic!("no rejections of {agency}");
        };
        assert!(!r.samples.is_empty() && r.notes.is_empty(), "{r:?}");
        assert!(
            r.samples.windows(2).all(|w| w[0].at >= w[1].at),
            "newest first"
        );
        assert!(!r.by_reason().is_empty());
        let Ok(Answer::Inside(i)) = fetch(&Query::Inside { node: 0 }, &ep, &token) else {
            panic!("nothing inside");
        };
        assert!(i.parked.is_empty() && i.quarantined.is_empty(), "{i:?}");
        agency
    };
    let out = child.wait_with_output().unwrap();
    let stderr = drain.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // With the demo gone, the same commands read its store directly.
    let dir = data.to_str().unwrap();
    let latest = run(
        &[
            "--data-dir",
            dir,
            "rejections",
            "--agency",
            &rejecting,
            "--latest",
            "--limit",
            "3",
        ],
        None,
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&latest.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "{}",
        String::from_utf8_lossy(&latest.stderr)
    );
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["id"].as_u64() > w[1]["id"].as_u64()),
        "--latest is newest first: {lines:?}"
    );
    let parked = run(&["--data-dir", dir, "parked"], None);
    assert!(parked.status.success() && parked.stdout.is_empty());
    assert!(String::from_utf8_lossy(&parked.stderr).contains("no receipts parked"));
    assert!(
        stdout.contains("all 4,000 records accounted for"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every stored notice reached an outcome"),
        "the follow-up did not settle:\n{stdout}"
    );
    let count = |label: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"));
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap()
    };
    let stored = count("stored ");
    let served = count("served ");
    let not_served = count("not served ");
    assert!(
        served > stored / 3,
        "simulated recipients confirm most notices: {served} of {stored}"
    );
    assert!(not_served > 0, "some are never confirmed twice");
    assert!(
        count("notifications ") >= served,
        "every served notice was notified"
    );
    // The legal history is there to inspect.
    let code_line = stdout
        .lines()
        .find(|l| l.contains("--data-dir") && l.contains(" notice "))
        .expect("an example notice command");
    let code = code_line.split_whitespace().last().unwrap();
    let shown = run(
        &["--data-dir", data.to_str().unwrap(), "notice", code],
        None,
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(text.contains("legal outcome"), "{text}");
}
