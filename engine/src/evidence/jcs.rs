//! RFC 8785 JSON Canonicalization Scheme, for the values the engine signs
//! and hashes: objects with keys sorted by their UTF-16 code units, no
//! whitespace, strings escaped as ECMAScript's `JSON.stringify` does, and
//! integers only (our messages carry no fractions; a float is refused
//! rather than formatted in a way someone else might not reproduce).

use serde_json::Value;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not canonicalizable: {0}")]
pub struct JcsError(String);

/// The canonical bytes of `value`.
pub fn canonical(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

/// The canonical bytes of anything that serialises to JSON.
pub fn canonical_of<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, JcsError> {
    canonical(&serde_json::to_value(v).map_err(|e| JcsError(e.to_string()))?)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(JcsError(format!("the number {n} is not an integer")));
            }
            // ECMAScript prints integers beyond 2^53 with lost precision.
            if n.as_i64().is_some_and(|i| i.unsigned_abs() > 1 << 53)
                || n.as_u64().is_some_and(|u| u > 1 << 53)
            {
                return Err(JcsError(format!("the integer {n} is beyond 2^53")));
            }
        }
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                write(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A JSON string as RFC 8785 (section 3.2.2.2) writes it.
pub fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x09 => Some(b"\\t"),
            0x0a => Some(b"\\n"),
            0x0c => Some(b"\\f"),
            0x0d => Some(b"\\r"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(json: &str) -> String {
        String::from_utf8(canonical(&serde_json::from_str(json).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn rfc8785_rules() {
        // Sorted keys, nested; no whitespace; literals.
        assert_eq!(
            c(r#"{ "b": [1, {"z": null, "a": true}], "a": "x", "c": false }"#),
            r#"{"a":"x","b":[1,{"a":true,"z":null}],"c":false}"#
        );
        // Escapes: the short ones, \u00XX lowercase for other controls,
        // everything else (non-ASCII, '/', DEL) as is.
        assert_eq!(
            c(r#"{"s": "\"\\\b\f\n\r\t\u0001\u001f/\u007f€ابلاغ"}"#),
            "{\"s\":\"\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f/\u{7f}€ابلاغ\"}"
        );
        // UTF-16 order: U+FB01 (one unit, 0xFB01) sorts after U+1F600
        // (surrogates 0xD83D...), unlike code point or UTF-8 order.
        assert_eq!(c(r#"{"ﬁ": 1, "😀": 2}"#), r#"{"😀":2,"ﬁ":1}"#);
        assert!(canonical(&serde_json::json!({"f": 1.5})).is_err());
        assert!(canonical(&serde_json::json!({"big": 1u64 << 60})).is_err());
        assert_eq!(
            c(r#"{"n": -42, "u": 9007199254740992}"#),
            r#"{"n":-42,"u":9007199254740992}"#
        );
    }
}
