//! Fuzzes the parsers of identifiers that arrive from outside: tracking
//! codes (a citizen reads one out on the phone; an operator types one;
//! the inbox API takes one in its path), recipients (`<id>[@iran]`, in
//! every envelope and every record key), agency IDs (topic names). Besides
//! "never panics": what parses prints back to a form that parses to the
//! same value.

#![no_main]

use karpoosheh_schemas::{parse_recipient, AgencyId, TrackingCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = TrackingCode::parse(s) {
        let printed = code.to_string();
        assert_eq!(TrackingCode::parse(&printed).ok(), Some(code), "{printed}");
        assert_eq!(TrackingCode::from_u64(code.as_u64()), code);
    }
    if let Ok(id) = parse_recipient(s) {
        let printed = id.to_string();
        assert_eq!(parse_recipient(&printed).ok(), Some(id), "{printed}");
    }
    if let Ok(a) = AgencyId::parse(s) {
        assert_eq!(AgencyId::parse(a.as_str()).ok().as_ref(), Some(&a));
    }
});
