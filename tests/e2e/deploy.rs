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

/// The Debian package `scripts/package` built (scripts/test builds it
/// from the debug binaries before the suite): installed into a scratch
/// root, its binaries run, and it carries the units, the configuration as
/// a conffile, completions, the manual page, alert rules and dashboard.
#[test]
fn the_debian_package_installs_into_a_scratch_root_and_runs() {
    let debian = karpoosheh_bin()
        .parent()
        .and_then(|d| d.parent())
        .map(|t| t.join("debian"))
        .unwrap();
    // The newest package there (scripts/test builds it just before).
    let deb = std::fs::read_dir(&debian).ok().and_then(|d| {
        d.filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
    });
    let Some(deb) = deb else {
        assert!(
            std::env::var_os("KARPOOSHEH_REQUIRE_DEB").is_none(),
            "no package in {} but KARPOOSHEH_REQUIRE_DEB is set",
            debian.display()
        );
        eprintln!("SKIPPED the_debian_package_installs_into_a_scratch_root_and_runs: run scripts/package --dev first");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "usr/bin/karpoosheh",
        "usr/bin/karpoosheh-monitor",
        "lib/systemd/system/karpoosheh.service",
        "lib/systemd/system/karpoosheh-migrate.service",
        "etc/karpoosheh/karpoosheh.toml",
        "usr/share/bash-completion/completions/karpoosheh",
        "usr/share/man/man1/karpoosheh.1.gz",
        "usr/share/karpoosheh/prometheus/karpoosheh-alerts.yml",
        "usr/share/karpoosheh/grafana/karpoosheh.json",
        "usr/share/doc/karpoosheh/operations.md",
    ] {
        assert!(root.path().join(f).exists(), "{f} not in the package");
    }
    let installed = root.path().join("usr/bin/karpoosheh");
    let v = Command::new(&installed).arg("--version").output().unwrap();
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("karpoosheh "));
    // The installed binary with the installed configuration: refuses.
    let store = tempfile::tempdir().unwrap();
    let r = Command::new(&installed)
        .arg("--config")
        .arg(root.path().join("etc/karpoosheh/karpoosheh.toml"))
        .args([
            "--set",
            &format!("store.path={:?}", store.path().display().to_string()),
            "run",
        ])
        .env_remove("KARPOOSHEH_CONFIG")
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("channels.sms.http.url"));
    let m = Command::new(root.path().join("usr/bin/karpoosheh-monitor"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(m.status.success());
    // Its control files: the conffile, the user made at install, adduser.
    let control = tempfile::tempdir().unwrap();
    let out = Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(control.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert!(conffiles.contains("/etc/karpoosheh/karpoosheh.toml"));
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"));
    let fields = std::fs::read_to_string(control.path().join("control")).unwrap();
    assert!(
        fields.contains("Package: karpoosheh") && fields.contains("adduser"),
        "{fields}"
    );
}
