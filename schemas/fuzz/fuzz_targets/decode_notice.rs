//! Fuzzes the notice envelope decoder: the first thing untrusted agency
//! bytes meet. Besides "never panics", it checks the decoder's promises:
//! an accepted notice re-serializes to JSON that decodes to the same
//! notice, and a rejection always lists at least one problem.

#![no_main]

use chrono::{TimeZone, Utc};
use karpoosheh_schemas::{decode_notice, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A fixed clock keeps every run reproducible.
    let now = Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
    let limits = Limits::default();
    match decode_notice(data, &limits, now) {
        Ok(notice) => {
            let json = serde_json::to_vec(&notice).expect("a notice always serializes");
            match decode_notice(&json, &limits, now) {
                Ok(again) => assert_eq!(again, notice, "re-decoded notice differs"),
                Err(r) => panic!(
                    "an accepted notice does not re-decode: {:?}\n{}",
                    r.problems,
                    String::from_utf8_lossy(&json)
                ),
            }
            assert_eq!(
                notice.content_hash(),
                decode_notice(&json, &limits, now).unwrap().content_hash()
            );
        }
        Err(rejection) => {
            assert!(
                !rejection.problems.is_empty(),
                "a rejection without problems"
            );
            let _ = rejection.primary_reason();
        }
    }
});
