//! Fuzzes the decoders of the other signed inputs, once their signature
//! has been checked (the payload is then still only as good as its signer
//! makes it): a recipient's confirmation (`karpoosheh.acks`, the inbox
//! app) and a mailbox profile (`karpoosheh.registry`, the identity side).
//! Besides "never panics": a decoded confirmation or profile re-serializes
//! to JSON that decodes to the same value, and profile validation gives
//! the same verdict on both.

#![no_main]

use karpoosheh_schemas::{validate_profile, Confirmation, MailboxProfile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = serde_json::from_slice::<Confirmation>(data) {
        let json = serde_json::to_vec(&c).expect("a confirmation serializes");
        let again: Confirmation = serde_json::from_slice(&json).expect("and decodes again");
        assert_eq!(again, c);
    }
    if let Ok(p) = serde_json::from_slice::<MailboxProfile>(data) {
        let problems = validate_profile(&p);
        let json = serde_json::to_vec(&p).expect("a profile serializes");
        let again: MailboxProfile = serde_json::from_slice(&json).expect("and decodes again");
        assert_eq!(again, p);
        assert_eq!(validate_profile(&again), problems);
    }
});
