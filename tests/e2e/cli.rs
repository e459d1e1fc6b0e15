//! Operator commands: check-id on arguments and stdin, config errors.

use karpoosheh_tests::{person, pipe, python_script, python_with_cryptography, run};

#[test]
fn check_id_reads_arguments_and_stdin() {
    let good = person(499_370_000);
    let out = run(
        &[
            "check-id",
            &good,
            "10380284790",
            "1234567890",
            "۰۴۹۹۳۷۰۸۹۹",
            "12a",
        ],
        None,
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows[0], [good.as_str(), "valid", "person"]);
    assert_eq!(rows[1], ["10380284790", "valid", "legal"]);
    assert_eq!(rows[2], ["1234567890", "invalid", "bad_check_digit"]);
    assert_eq!(rows[3], ["۰۴۹۹۳۷۰۸۹۹", "valid", "person"]);
    assert_eq!(rows[4], ["12a", "invalid", "invalid_character"]);

    let mut input = String::new();
    for i in 0..2000u32 {
        input.push_str(&person(100_000_000 + i * 1000));
        input.push('\n');
    }
    input.push_str("0000000000\r\n\n  \n123\n");
    let out = run(&["check-id", "--strict"], Some(input.as_bytes()));
    assert_eq!(
        out.status.code(),
        Some(1),
        "--strict fails when any ID is invalid"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().count(),
        2002,
        "one line per ID, blank lines skipped"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("\tvalid\t")).count(),
        2000
    );
    assert!(text.contains("0000000000\tinvalid\trepeated_digits"));
    assert!(text.contains("123\tinvalid\twrong_length"));
}

#[test]
fn unknown_configuration_keys_are_refused() {
    let out = run(&["--set", "pipline.shards=2", "config"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pipline"), "{err}");
    let out = run(&["--set", "pipeline.shards=2", "config"], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("shards = 2"));
}

#[test]
fn run_refuses_simulated_gateways_unless_told_it_is_a_test_node() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("store.path={:?}", dir.path().display().to_string());
    // The defaults: every channel simulated, the follow-up on.
    let out = run(&["--set", &data, "run"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("channels.sms.gateway and channels.email.gateway and channels.push.gateway")
            && err.contains("channels.allow_simulated = true"),
        "{err}"
    );
    // Only the channels still simulated are named.
    let out = run(
        &[
            "--set",
            &data,
            "--set",
            "channels.sms.enabled=false",
            "--set",
            "channels.order=[\"push\", \"email\"]",
            "--set",
            "channels.email.gateway=\"smtp\"",
            "--set",
            "channels.email.smtp.host=\"mail.example.ir\"",
            "run",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: channels.push.gateway = \"simulated\": "),
        "{err}"
    );
    // Said explicitly, it goes on to the next check (here: the agency
    // registry).
    let out = run(
        &[
            "--set",
            &data,
            "--set",
            "channels.allow_simulated=true",
            "run",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("allow_simulated") && err.contains("agencies.file"),
        "{err}"
    );
    // Without the follow-up nobody is notified or told so: no refusal.
    let out = run(
        &["--set", &data, "--set", "delivery.enabled=false", "run"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("allow_simulated"), "{err}");
}

#[test]
fn signed_inputs_interoperate_with_an_independent_python_signer() {
    let Some(python) = python_with_cryptography("signed_inputs_python") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("inbox.jwk");
    let out = run(
        &[
            "keys",
            "generate",
            "--kid",
            "inbox-2026-12",
            "--out",
            key.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let entry = String::from_utf8(out.stdout).unwrap();
    assert!(entry.contains("kid = \"inbox-2026-12\""), "{entry}");
    let again = run(
        &[
            "keys",
            "generate",
            "--kid",
            "inbox-2026-12",
            "--out",
            key.to_str().unwrap(),
        ],
        None,
    );
    assert!(!again.status.success(), "a key file is never overwritten");
    // The printed entry, under a signer, is a working trust file.
    let trust = dir.path().join("trust.toml");
    std::fs::write(
        &trust,
        format!(
            "[signer.inbox]\nstatus = \"active\"\nmay_sign = [\"confirmation\"]\n{}",
            entry
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.replace("<id>", "inbox") + "\n")
                .collect::<String>()
        ),
    )
    .unwrap();
    let message = format!(
        r#"{{"schema_version":1,"confirmation_id":"c-1","tracking_code":"06YN-3RZS-R000-01","confirmed_by":"{}","confirmed_at":"2026-11-23T10:00:00Z"}}"#,
        person(499_370_000)
    );
    // Python signs; the engine verifies.
    let signed = pipe(
        std::process::Command::new(python)
            .arg(python_script("jws.py"))
            .args(["sign", key.to_str().unwrap(), "confirmation"]),
        message.as_bytes(),
    );
    assert!(signed.status.success(), "{signed:?}");
    let verify = |input: &[u8], kind: &str| {
        pipe(
            karpoosheh_tests::karpoosheh_command().args([
                "keys",
                "verify",
                "--kind",
                kind,
                "--file",
                trust.to_str().unwrap(),
            ]),
            input,
        )
    };
    let ok = verify(&signed.stdout, "confirmation");
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert_eq!(
        text.trim_end(),
        format!("ok\tinbox\tinbox-2026-12\t{message}")
    );
    // Not as a profile, and not once edited.
    let as_profile = verify(&signed.stdout, "profile");
    assert!(!as_profile.status.success());
    assert!(String::from_utf8_lossy(&as_profile.stdout).starts_with("refused\twrong_message_kind"));
    let mut sig_flipped: serde_json::Value = serde_json::from_slice(&signed.stdout).unwrap();
    let s = sig_flipped["signature"].as_str().unwrap().to_owned();
    let flipped = match s.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", &s[1..]),
    };
    sig_flipped["signature"] = flipped.into();
    let bad = verify(sig_flipped.to_string().as_bytes(), "confirmation");
    assert!(
        String::from_utf8_lossy(&bad.stdout).starts_with("refused\tbad_signature"),
        "{bad:?}"
    );

    // The engine signs; Python verifies, byte for byte the same message.
    let ours = pipe(
        karpoosheh_tests::karpoosheh_command().args([
            "keys",
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--kind",
            "confirmation",
        ]),
        message.as_bytes(),
    );
    assert!(ours.status.success(), "{ours:?}");
    assert_eq!(
        ours.stdout, signed.stdout,
        "Ed25519 is deterministic: the same bytes"
    );
    let x = entry
        .lines()
        .find_map(|l| l.strip_prefix("public_key = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let back = pipe(
        std::process::Command::new(python)
            .arg(python_script("jws.py"))
            .args(["verify", &x, "confirmation"]),
        &ours.stdout,
    );
    assert!(back.status.success(), "{back:?}");
    assert_eq!(String::from_utf8_lossy(&back.stdout).trim_end(), message);
    let refused = pipe(
        std::process::Command::new(python)
            .arg(python_script("jws.py"))
            .args(["verify", &x, "confirmation"]),
        sig_flipped.to_string().as_bytes(),
    );
    assert!(
        !refused.status.success(),
        "Python refuses the flipped signature too"
    );
}

/// Tokens of an identity provider, issued by an independent Python
/// implementation (EdDSA, ES256 and RS256 over keys it made), hold with
/// `karpoosheh token-check` and the provider's JWK Set; an expired one,
/// one for another audience and one signed by a stranger under a trusted
/// kid are refused with their reasons; the subject is never printed whole.
#[test]
fn identity_tokens_from_an_independent_python_issuer_verify() {
    let Some(python) = python_with_cryptography("identity_tokens_python") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let subject = person(456_000_000);
    let out = std::process::Command::new(python)
        .arg(python_script("tokens.py"))
        .args([
            dir.path().to_str().unwrap(),
            &subject,
            "https://sso.example.ir",
            "karpoosheh",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jwks = dir.path().join("idp.jwks");
    let check = |name: &str| {
        let t = tokens[name].as_str().unwrap();
        let out = run(
            &[
                "--set",
                &format!("identity.jwks_file={:?}", jwks.to_str().unwrap()),
                "--set",
                "identity.issuer=\"https://sso.example.ir\"",
                "token-check",
                "-",
            ],
            Some(format!("Bearer {t}\n").as_bytes()),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for name in ["eddsa", "es256", "rs256"] {
        let (ok, text) = check(name);
        assert!(ok, "{name}: {text}");
        assert!(
            text.contains("access level    2") && text.contains("client          inbox-py"),
            "{name}: {text}"
        );
        assert!(
            !text.contains(&subject),
            "{name}: the subject is masked: {text}"
        );
        assert!(text.contains(&subject[subject.len() - 4..]), "{text}");
    }
    for (name, reason) in [
        ("expired", "token_expired"),
        ("wrong_audience", "wrong_audience"),
        ("stranger", "bad_signature"),
    ] {
        let (ok, text) = check(name);
        assert!(!ok, "{name}: {text}");
        assert!(
            text.contains(&format!("REFUSED: {reason}")),
            "{name}: {text}"
        );
    }
}

/// `store check` on a store a batch was ingested into: every keyspace
/// read back whole, exit 0; a journal damaged in the middle is then
/// refused at open, by the check as by every other command.
#[test]
fn store_check_reads_a_store_back_and_a_damaged_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    // Three batch files, each its own writes: the journal has batches
    // after the one damaged below.
    for batch in 0..3u32 {
        let file = dir.path().join(format!("batch-{batch}.ndjson"));
        let lines: Vec<String> = (0..200u32)
            .map(|i| {
                karpoosheh_tests::envelope(
                    "tax",
                    &format!("chk-{batch}-{i}"),
                    &person(345_800_000 + (batch * 200 + i) * 17),
                    "t",
                )
            })
            .collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let f = file.to_str().unwrap();
        let out = run(
            &[
                "--data-dir",
                d,
                "--set",
                &karpoosheh_tests::approved_agencies(),
                "ingest",
                "--file",
                f,
                "--agency",
                "tax",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&["--data-dir", d, "store", "check"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notices = text
        .lines()
        .find(|l| l.starts_with("notices "))
        .expect("a notices line");
    assert_eq!(
        notices.split_whitespace().collect::<Vec<_>>(),
        ["notices", "600", "0"]
    );
    assert!(!text.contains("problem:"), "{text}");

    // A batch near the start of the journal zeroed: fjall would take it
    // for the end and open without the rest.
    let journal = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jnl"))
        .expect("a journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let end = bytes
        .windows(4)
        .position(|w| w == b"FJL\x03")
        .expect("a batch's end marker");
    bytes[end + 4..end + 68].fill(0);
    std::fs::write(&journal, &bytes).unwrap();
    let out = run(&["--data-dir", d, "store", "check"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("has lost writes it had acknowledged"), "{err}");
}
