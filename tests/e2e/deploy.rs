//! What a package installs beside the binaries: the systemd units (valid
//! for systemd, hardened), the shipped configuration (refuses to start
//! until the operator has named what must be named), shell completions
//! and the manual page (generated from the command's definition).

use std::path::PathBuf;
use std::process::Command;

use karpoosheh_tests::{karpoosheh_bin, run};

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn the_systemd_units_are_valid_and_hardened() {
    for unit in ["karpoosheh.service", "karpoosheh-migrate.service"] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
        for directive in [
            "User=karpoosheh",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=\n",
            "SystemCallFilter=@system-service",
            "ExecStart=/usr/bin/karpoosheh --config /etc/karpoosheh/karpoosheh.toml ",
        ] {
            assert!(text.contains(directive), "{unit}: no {directive:?}");
        }
        if unit == "karpoosheh.service" {
            // Nothing writable but the store; a restart after a failure.
            assert!(text.contains("ReadWritePaths=/var/lib/karpoosheh"));
            assert!(text.contains("Restart=on-failure"));
        }
        let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
            eprintln!(
                "SKIPPED the_systemd_units_are_valid_and_hardened ({unit}): no systemd-analyze"
            );
            continue;
        };
        assert!(v.status.success());
        // The unit as installed, pointing at the binary just built.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(unit);
        std::fs::write(
            &path,
            text.replace(
                "/usr/bin/karpoosheh",
                &karpoosheh_bin().display().to_string(),
            ),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        // Only what the scratch machine lacks may be said (the unit it
        // orders itself after, the user it runs as).
        let problems: Vec<&str> = said
            .lines()
            .filter(|l| !l.contains("karpoosheh-migrate.service") && !l.trim().is_empty())
            .collect();
        assert!(
            out.status.success() && problems.is_empty(),
            "{unit}:\n{said}"
        );
    }
}

#[test]
fn the_shipped_configuration_refuses_to_start_until_completed() {
    let store = tempfile::tempdir().unwrap();
    let config = deploy().join("karpoosheh.toml");
    let start = |extra: &[&str]| {
        let mut args = vec![
            "--config".to_owned(),
            config.display().to_string(),
            "--set".to_owned(),
            format!("store.path={:?}", store.path().display().to_string()),
        ];
        for s in extra {
            args.push("--set".into());
            args.push((*s).into());
        }
        args.push("run".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, None);
        assert!(!out.status.success(), "it started");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // As shipped: the real gateways are not named.
    assert!(start(&[]).contains("channels.sms.http.url"));
    // Each named in turn, the next refusal names the next thing missing.
    let mut named = vec![
        "channels.sms.http.url=\"https://sms.example.ir/send\"",
        "channels.email.smtp.host=\"mail.example.ir\"",
        "channels.push.webhook.url=\"https://push.example.ir/send\"",
    ];
    let said = start(&named);
    assert!(said.contains("kafka.brokers"), "{said}");
    named.push("kafka.brokers=\"10.0.0.5:9092\"");
    let said = start(&named);
    assert!(said.contains("agencies.file"), "{said}");
}

#[test]
fn completions_and_the_manual_page_come_from_the_command() {
    let out = run(&["completions", "bash"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("_karpoosheh()")
            && text.contains("access-log")
            && text.contains("--data-dir")
    );
    let out = run(&["manpage"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains(".TH karpoosheh 1") && text.contains("mailbox"),
        "{text}"
    );
}
