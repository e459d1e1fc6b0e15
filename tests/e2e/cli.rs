//! Operator commands: check-id on arguments and stdin, config errors.

use karpoosheh_tests::{person, run};

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
