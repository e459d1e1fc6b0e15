use super::*;
use crate::evidence::b64url;
use crate::evidence::keys::SigningKey;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

fn cfg() -> IdentityConfig {
    IdentityConfig {
        issuer: "https://sso.example.ir".into(),
        audience: "karpoosheh".into(),
        ..IdentityConfig::default()
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

/// A valid person's national code.
fn person() -> String {
    (300_000_000u32..)
        .find_map(MailboxId::person_from_body)
        .unwrap()
        .to_string()
}

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://sso.example.ir",
        "aud": "karpoosheh",
        "sub": person(),
        "acr": 2,
        "exp": now().timestamp() + 300,
        "nbf": now().timestamp() - 10,
        "azp": "inbox-web",
        "jti": "t-1",
    })
}

fn token(
    header: serde_json::Value,
    claims: &serde_json::Value,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

struct Ed {
    key: SigningKey,
}

impl Ed {
    fn new(kid: &str, seed: u8) -> Ed {
        Ed {
            key: SigningKey::from_seed(kid, [seed; 32]).unwrap(),
        }
    }
    fn jwk(&self) -> serde_json::Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": self.key.kid(), "x": b64url(self.key.public_key()), "use": "sig"})
    }
    fn token(&self, claims: &serde_json::Value) -> String {
        token(
            json!({"alg": "EdDSA", "kid": self.key.kid(), "typ": "JWT"}),
            claims,
            |m| self.key.sign(m).to_vec(),
        )
    }
}

fn set(keys: &[serde_json::Value]) -> KeySet {
    KeySet::parse(&json!({ "keys": keys }).to_string()).unwrap()
}

#[test]
fn a_valid_token_is_the_session_it_names() {
    let ed = Ed::new("idp-2026", 1);
    let v = Verifier::fixed(&cfg(), set(&[ed.jwk()]));
    let s = v.verify(&ed.token(&claims()), now()).unwrap();
    assert_eq!(s.subject.to_string(), person());
    assert_eq!(s.level, 2);
    assert_eq!(s.client.as_deref(), Some("inbox-web"));
    assert_eq!(s.token_id.as_deref(), Some("t-1"));
    assert_eq!(s.expires_at.timestamp(), now().timestamp() + 300);
    // An audience list, a level as a string, no nbf: fine too.
    let mut c = claims();
    c["aud"] = json!(["other", "karpoosheh"]);
    c["acr"] = json!("3");
    c.as_object_mut().unwrap().remove("nbf");
    assert_eq!(v.verify(&ed.token(&c), now()).unwrap().level, 3);
}

#[test]
fn every_refusal_has_its_reason() {
    let ed = Ed::new("idp-2026", 1);
    let other = Ed::new("idp-2026", 2);
    let v = Verifier::fixed(&cfg(), set(&[ed.jwk()]));
    let refused = |t: &str| v.verify(t, now()).unwrap_err();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims();
        f(&mut c);
        ed.token(&c)
    };
    assert_eq!(refused(""), TokenError::Missing);
    assert_eq!(refused("a.b"), TokenError::Malformed);
    assert_eq!(refused(&"a".repeat(9000)), TokenError::TooLarge);
    // alg none, HS256 (a symmetric key no one here holds), crit.
    let none = format!(
        "{}.{}.",
        b64url(
            json!({"alg": "none", "kid": "idp-2026"})
                .to_string()
                .as_bytes()
        ),
        b64url(claims().to_string().as_bytes())
    );
    assert_eq!(refused(&none), TokenError::AlgorithmNotAllowed);
    let hs = token(
        json!({"alg": "HS256", "kid": "idp-2026"}),
        &claims(),
        |_| vec![0; 32],
    );
    assert_eq!(refused(&hs), TokenError::AlgorithmNotAllowed);
    let crit = token(
        json!({"alg": "EdDSA", "kid": "idp-2026", "crit": ["exp"]}),
        &claims(),
        |m| ed.key.sign(m).to_vec(),
    );
    assert_eq!(refused(&crit), TokenError::CriticalHeader);
    // A stranger's key under the trusted kid; an unknown kid; ES256
    // claimed for an Ed25519 key.
    assert_eq!(refused(&other.token(&claims())), TokenError::BadSignature);
    let unknown = token(json!({"alg": "EdDSA", "kid": "x"}), &claims(), |m| {
        ed.key.sign(m).to_vec()
    });
    assert_eq!(refused(&unknown), TokenError::UnknownKey);
    let confused = token(json!({"alg": "ES256", "kid": "idp-2026"}), &claims(), |m| {
        ed.key.sign(m).to_vec()
    });
    assert_eq!(refused(&confused), TokenError::KeyMismatch);
    // Claims edited after signing.
    let t = ed.token(&claims());
    let mut parts: Vec<&str> = t.split('.').collect();
    let mut c = claims();
    c["acr"] = json!(3);
    let edited = b64url(c.to_string().as_bytes());
    parts[1] = &edited;
    assert_eq!(refused(&parts.join(".")), TokenError::BadSignature);
    assert_eq!(
        refused(&with(&|c| c["iss"] = json!("https://evil.example"))),
        TokenError::WrongIssuer
    );
    assert_eq!(
        refused(&with(&|c| c["aud"] = json!("another-service"))),
        TokenError::WrongAudience
    );
    assert_eq!(
        refused(&with(&|c| {
            c.as_object_mut().unwrap().remove("aud");
        })),
        TokenError::WrongAudience
    );
    // Expiry and not-before, with the leeway of a minute.
    let at = now().timestamp();
    assert!(v
        .verify(&with(&|c| c["exp"] = json!(at - 59)), now())
        .is_ok());
    assert_eq!(
        refused(&with(&|c| c["exp"] = json!(at - 61))),
        TokenError::Expired
    );
    assert_eq!(
        refused(&with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        })),
        TokenError::Malformed
    );
    assert_eq!(
        refused(&with(&|c| c["nbf"] = json!(at + 61))),
        TokenError::NotYetValid
    );
    assert_eq!(
        refused(&with(&|c| c["sub"] = json!("0012345678"))),
        TokenError::BadSubject
    );
    for level in [json!(0), json!(4), json!("high"), json!(null)] {
        assert_eq!(
            refused(&with(&|c| c["acr"] = level.clone())),
            TokenError::BadLevel,
            "{level}"
        );
    }
    // Reasons are distinct codes.
    let mut reasons: Vec<&str> = [
        TokenError::Missing,
        TokenError::Malformed,
        TokenError::TooLarge,
        TokenError::AlgorithmNotAllowed,
        TokenError::CriticalHeader,
        TokenError::UnknownKey,
        TokenError::KeyMismatch,
        TokenError::BadSignature,
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::BadSubject,
        TokenError::BadLevel,
    ]
    .iter()
    .map(TokenError::reason)
    .collect();
    let n = reasons.len();
    reasons.dedup();
    assert_eq!(reasons.len(), n);
}

#[test]
fn es256_tokens_verify_with_their_p256_key() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "idp-ec", "alg": "ES256",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..65])});
    let v = Verifier::fixed(&cfg(), set(&[jwk]));
    let t = token(json!({"alg": "ES256", "kid": "idp-ec"}), &claims(), |m| {
        pair.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    assert_eq!(v.verify(&t, now()).unwrap().level, 2);
    let mut c = claims();
    c["sub"] = json!(person());
    c["acr"] = json!(1);
    let forged = token(json!({"alg": "ES256", "kid": "idp-ec"}), &c, |_| {
        vec![7; 64]
    });
    assert_eq!(
        v.verify(&forged, now()).unwrap_err(),
        TokenError::BadSignature
    );
}

#[test]
fn key_sets_that_would_hide_a_mistake_are_refused() {
    let ed = Ed::new("k", 1);
    let refused = |keys: serde_json::Value| KeySet::parse(&json!({ "keys": keys }).to_string());
    assert!(
        refused(json!([{"kty": "OKP", "crv": "Ed25519", "x": b64url(&[1; 32])}]))
            .unwrap_err()
            .contains("no kid")
    );
    assert!(refused(json!([ed.jwk(), ed.jwk()]))
        .unwrap_err()
        .contains("twice"));
    assert!(
        refused(json!([{"kty": "RSA", "kid": "r", "n": b64url(&[1; 128]), "e": "AQAB"}]))
            .unwrap_err()
            .contains("2048")
    );
    let mut wrong_alg = ed.jwk();
    wrong_alg["alg"] = json!("RS256");
    assert!(refused(json!([wrong_alg]))
        .unwrap_err()
        .contains("does not fit"));
    assert!(
        refused(json!([{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]))
            .unwrap_err()
            .contains("unsupported")
    );
    // Encryption keys are skipped, not refused.
    let set = refused(json!([ed.jwk(), {"kty": "RSA", "kid": "e", "use": "enc"}])).unwrap();
    assert_eq!(set.len(), 1);
}

/// Rotation: the provider adds a key to its set; tokens signed with it
/// verify once the file is read again, those of the old key still do,
/// and a broken file keeps the keys in force.
#[test]
fn a_new_key_in_the_file_is_picked_up_and_a_broken_file_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idp.jwks");
    let (a, b) = (Ed::new("a", 1), Ed::new("b", 2));
    std::fs::write(&path, json!({"keys": [a.jwk()]}).to_string()).unwrap();
    let mut c = cfg();
    c.jwks_file = path.clone();
    c.reload_interval = HumanDuration(Duration::ZERO);
    let v = Verifier::open(&c).unwrap();
    assert_eq!(
        v.verify(&b.token(&claims()), now()).unwrap_err(),
        TokenError::UnknownKey
    );
    std::fs::write(&path, json!({"keys": [a.jwk(), b.jwk()]}).to_string()).unwrap();
    assert!(v.verify(&b.token(&claims()), now()).is_ok());
    assert!(v.verify(&a.token(&claims()), now()).is_ok());
    std::fs::write(&path, "{not json").unwrap();
    assert!(v.verify(&b.token(&claims()), now()).is_ok());
    assert_eq!(v.keys(), 2);
    // A file that never loaded stops the start.
    let mut bad = cfg();
    bad.jwks_file = dir.path().join("missing.jwks");
    assert!(Verifier::open(&bad).is_err());
}

/// The provider's keys from its URL: fetched at start (none, no start),
/// refreshed on the interval (a rotated-in key is picked up, a failed
/// fetch keeps the keys in force); plain http only on loopback.
#[test]
fn keys_from_the_providers_url_are_fetched_and_refreshed() {
    use std::sync::{Arc, Mutex};
    let served = Arc::new(Mutex::new((200u16, String::new())));
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let fetches = Arc::new(std::sync::atomic::AtomicU32::new(0));
    {
        let (served, fetches) = (served.clone(), fetches.clone());
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (status, body) = served.lock().unwrap().clone();
                let _ =
                    req.respond(tiny_http::Response::from_string(body).with_status_code(status));
            }
        });
    }
    let (a, b) = (Ed::new("a", 1), Ed::new("b", 2));
    *served.lock().unwrap() = (200, json!({"keys": [a.jwk()]}).to_string());
    let mut c = cfg();
    c.jwks_url = format!("http://{addr}/jwks.json");
    c.reload_interval = HumanDuration(Duration::from_millis(100));
    c.validate().unwrap();
    let v = Verifier::open(&c).unwrap();
    assert!(v.verify(&a.token(&claims()), now()).is_ok());
    assert_eq!(
        v.verify(&b.token(&claims()), now()).unwrap_err(),
        TokenError::UnknownKey
    );
    // The provider adds b: picked up within the interval.
    *served.lock().unwrap() = (200, json!({"keys": [a.jwk(), b.jwk()]}).to_string());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while v.verify(&b.token(&claims()), now()).is_err() {
        assert!(std::time::Instant::now() < deadline, "b never picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The provider fails: the keys in force stay.
    *served.lock().unwrap() = (500, "down".into());
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    while fetches.load(std::sync::atomic::Ordering::SeqCst) < before + 3 {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(v.verify(&a.token(&claims()), now()).is_ok());
    assert_eq!(v.keys(), 2);
    // A URL that does not answer a set stops the start.
    assert!(Verifier::open(&c).is_err());
    // Plain http elsewhere than loopback, and a file and a URL at once.
    let mut plain = cfg();
    plain.jwks_url = "http://idp.example.ir/jwks.json".into();
    assert!(plain.validate().unwrap_err().contains("loopback"));
    plain.jwks_url = "https://idp.example.ir/jwks.json".into();
    assert!(plain.validate().is_ok());
    plain.jwks_file = "/etc/idp.jwks".into();
    assert!(plain.validate().unwrap_err().contains("both"));
}
