//! How a record that could not be decoded becomes a [`DeadLetter`]: one
//! constructor for every reader (the notice pipeline, the registry), so
//! the truncation and the encoding of the kept bytes never drift apart.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use karpoosheh_schemas::{AgencyId, DeadLetter, Problem, SourcePosition, SCHEMA_VERSION};

/// Most bytes of an undecodable payload kept in its dead letter.
pub const DEAD_LETTER_MAX_BYTES: usize = 64 * 1024;

/// A dead letter for `payload` (of `size` bytes as received; the payload
/// handed in may already be cut short), keeping at most
/// [`DEAD_LETTER_MAX_BYTES`] of it in standard base64 (RFC 4648, padded).
pub fn dead_letter(
    payload: &[u8],
    size: u64,
    source: SourcePosition,
    agency: Option<AgencyId>,
    problems: Vec<Problem>,
    at: DateTime<Utc>,
) -> DeadLetter {
    DeadLetter {
        schema_version: SCHEMA_VERSION,
        source,
        agency,
        problems,
        payload_base64: base64::engine::general_purpose::STANDARD
            .encode(&payload[..payload.len().min(DEAD_LETTER_MAX_BYTES)]),
        payload_size: size,
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        let p = SourcePosition::File {
            path: "x".into(),
            line: 1,
        };
        dead_letter(bytes, bytes.len() as u64, p, None, vec![], Utc::now()).payload_base64
    }

    #[test]
    fn payload_is_standard_padded_base64() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn payload_is_cut_at_the_limit_and_its_size_kept() {
        let big = vec![b'a'; DEAD_LETTER_MAX_BYTES + 10];
        let p = SourcePosition::File {
            path: "x".into(),
            line: 1,
        };
        let d = dead_letter(&big, big.len() as u64, p, None, vec![], Utc::now());
        assert_eq!(d.payload_size, big.len() as u64);
        assert_eq!(
            d.payload_base64.len(),
            DEAD_LETTER_MAX_BYTES.div_ceil(3) * 4
        );
    }
}
