//! Signed inputs: a JWS (RFC 7515) in the flattened JSON serialization
//! (section 7.2.2), signed with Ed25519 (`alg` `EdDSA`, RFC 8037):
//!
//! ```json
//! {"protected":"<b64url(header)>","payload":"<b64url(message)>","signature":"<b64url(sig)>"}
//! ```
//!
//! The protected header is a JSON object with exactly `alg` (`"EdDSA"`),
//! `kid` (a key ID of the trust file) and `typ` (the kind of message,
//! [`SignedKind::typ`]). The signature is over the ASCII bytes
//! `protected || "." || payload`, as RFC 7515 says; the payload is the
//! message's JSON (a confirmation or a mailbox profile) as the signer
//! wrote it. Anything else in the header (`crit`, `b64`, `jwk`, `x5u`, …)
//! is refused: the trust file, not the message, says which key to use.

use karpoosheh_schemas::{Problem, Reason};
use serde::{Deserialize, Serialize};

use super::keys::SigningKey;
use super::{b64url, from_b64url, SignedKind};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    protected: String,
    payload: String,
    signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    kid: String,
    typ: String,
}

/// Signs `payload` (a message's JSON) as `kind` with `key`: the bytes to
/// put on the topic.
pub fn sign(kind: SignedKind, payload: &[u8], key: &SigningKey) -> Vec<u8> {
    let header = serde_json::to_vec(&Header {
        alg: "EdDSA".into(),
        kid: key.kid().to_owned(),
        typ: kind.typ().into(),
    })
    .expect("a header serialises");
    let protected = b64url(&header);
    let payload = b64url(payload);
    let input = format!("{protected}.{payload}");
    let signature = b64url(&key.sign(input.as_bytes()));
    serde_json::to_vec(&Flattened {
        protected,
        payload,
        signature,
    })
    .expect("a JWS serialises")
}

/// A signed message, parsed but not yet verified.
#[derive(Debug)]
pub struct Parsed {
    pub kid: String,
    pub typ: String,
    /// The message's bytes (the decoded payload).
    pub payload: Vec<u8>,
    /// What the signature covers: `protected "." payload`, as sent.
    pub signing_input: Vec<u8>,
    pub signature: Vec<u8>,
}

fn bad(message: impl Into<String>) -> Problem {
    Problem::new(Reason::BadSignature, "signature".to_owned(), message)
}

/// Parses a record's value as a signed message. A JSON object without a
/// `signature` member is [`Reason::Unsigned`]; one with a malformed
/// envelope is [`Reason::BadSignature`].
pub fn parse(value: &[u8]) -> Result<Parsed, Problem> {
    let text = std::str::from_utf8(value)
        .map_err(|_| Problem::new(Reason::InvalidUtf8, None, "the message is not valid UTF-8"))?;
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Problem::new(
            Reason::MalformedJson,
            None,
            format!("the message is not JSON: {e}"),
        )
    })?;
    let Some(object) = json.as_object() else {
        return Err(Problem::new(
            Reason::NotAnObject,
            None,
            "the message is not a JSON object",
        ));
    };
    if !object.contains_key("signature") {
        return Err(Problem::new(
            Reason::Unsigned,
            None,
            "the message is not signed: send it as a JWS in the flattened JSON serialization (protected, payload, signature), signed with a key in the operator's trust file",
        ));
    }
    let jws: Flattened = serde_json::from_value(json).map_err(|e| {
        bad(format!(
            "not a flattened JWS ({e}); only protected, payload and signature are allowed"
        ))
    })?;
    let header = from_b64url(&jws.protected)
        .ok_or_else(|| bad("protected is not base64url without padding"))?;
    let header: Header = serde_json::from_slice(&header).map_err(|e| {
        bad(format!(
            "the protected header must be a JSON object of exactly alg, kid and typ: {e}"
        ))
    })?;
    if header.alg != "EdDSA" {
        return Err(bad(format!(
            "alg {:?}: only EdDSA (Ed25519) is accepted",
            header.alg
        )));
    }
    let payload =
        from_b64url(&jws.payload).ok_or_else(|| bad("payload is not base64url without padding"))?;
    let signature = from_b64url(&jws.signature)
        .filter(|s| s.len() == 64)
        .ok_or_else(|| bad("signature is not 64 bytes of base64url without padding"))?;
    let mut signing_input = Vec::with_capacity(jws.protected.len() + 1 + jws.payload.len());
    signing_input.extend_from_slice(jws.protected.as_bytes());
    signing_input.push(b'.');
    signing_input.extend_from_slice(jws.payload.as_bytes());
    Ok(Parsed {
        kid: header.kid,
        typ: header.typ,
        payload,
        signing_input,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_seed("app-1", [7; 32]).unwrap()
    }

    #[test]
    fn a_signed_message_parses_back_to_its_payload() {
        let signed = sign(SignedKind::Confirmation, br#"{"a":1}"#, &key());
        let p = parse(&signed).unwrap();
        assert_eq!(p.payload, br#"{"a":1}"#);
        assert_eq!(p.kid, "app-1");
        assert_eq!(p.typ, "karpoosheh-confirmation");
        assert!(super::super::keys::verify(
            key().public_key(),
            &p.signing_input,
            &p.signature
        ));
    }

    #[test]
    fn the_wire_contract_example_is_exact() {
        // docs/wire-contract.md, "Signed inputs": signed with RFC 8032's
        // first test key; Ed25519 is deterministic, so the bytes match.
        let doc = include_str!("../../../docs/wire-contract.md");
        let section = &doc[doc.find("## Signed inputs").unwrap()..];
        let section = &section[..section.find("\n## ").unwrap()];
        let blocks: Vec<&str> = section
            .split("```json\n")
            .skip(1)
            .map(|b| b[..b.find("```").unwrap()].trim())
            .collect();
        let (message, signed) = (blocks[0], blocks[1]);
        let seed = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let key = SigningKey::from_seed("inbox-web-2026-12", seed).unwrap();
        assert_eq!(
            b64url(key.public_key()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(
            String::from_utf8(sign(SignedKind::Confirmation, message.as_bytes(), &key)).unwrap(),
            signed
        );
        let p = parse(signed.as_bytes()).unwrap();
        assert_eq!(p.payload, message.as_bytes());
    }

    #[test]
    fn unsigned_and_malformed_envelopes_have_their_reasons() {
        let reason = |v: &[u8]| parse(v).unwrap_err().reason;
        assert_eq!(reason(br#"{"schema_version":1}"#), Reason::Unsigned);
        assert_eq!(reason(b"{nope"), Reason::MalformedJson);
        assert_eq!(reason(b"[1]"), Reason::NotAnObject);
        assert_eq!(reason(b"\xff"), Reason::InvalidUtf8);
        let signed = String::from_utf8(sign(SignedKind::Profile, b"{}", &key())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&signed).unwrap();
        let with = |field: &str, value: serde_json::Value| {
            let mut v = v.clone();
            v[field] = value;
            serde_json::to_vec(&v).unwrap()
        };
        // An extra member, padding, a header with another algorithm or
        // an extra member, a short signature.
        assert_eq!(
            reason(&with("header", serde_json::json!({}))),
            Reason::BadSignature
        );
        let padded = format!("{}=", v["payload"].as_str().unwrap());
        assert_eq!(
            reason(&with("payload", padded.into())),
            Reason::BadSignature
        );
        for header in [
            r#"{"alg":"none","kid":"app-1","typ":"karpoosheh-profile"}"#,
            r#"{"alg":"HS256","kid":"app-1","typ":"karpoosheh-profile"}"#,
            r#"{"alg":"EdDSA","kid":"app-1","typ":"karpoosheh-profile","crit":["b64"],"b64":false}"#,
            r#"{"alg":"EdDSA","typ":"karpoosheh-profile"}"#,
        ] {
            assert_eq!(
                reason(&with("protected", b64url(header.as_bytes()).into())),
                Reason::BadSignature,
                "{header}"
            );
        }
        assert_eq!(
            reason(&with("signature", b64url(&[0; 63]).into())),
            Reason::BadSignature
        );
    }
}
