//! The operator's trust file: who may sign which kind of input, with which
//! keys. TOML, re-read when it changes (like the agency registry); a file
//! that fails to parse on reload is reported and the previous one stays in
//! force.
//!
//! ```toml
//! [signer.inbox-web]
//! name = "National inbox web portal"
//! status = "active"                # active | suspended | revoked
//! may_sign = ["confirmation"]      # confirmation, profile
//!
//! [[signer.inbox-web.keys]]
//! kid = "inbox-web-2026-12"        # unique in the whole file
//! public_key = "<43 characters: the JWK x from keys generate>"
//! status = "active"                # active | revoked
//! ```
//!
//! A signer may have several keys at once (rotation: add the new key,
//! move the signer to it, then revoke the old one). A message is applied
//! only if its key is in the file and active, its signer is active and
//! may sign that kind, and the signature verifies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use karpoosheh_schemas::{HumanDuration, Problem, Reason};
use serde::{Deserialize, Serialize};

use super::jws;
use super::keys::{valid_kid, verify};
use super::{from_b64url, SignedKind};
use crate::internal_events::{SignedInputRefused, TrustFileLoaded};
use crate::reload::Reloaded;

/// `[trust]` in the engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// The trust file; `karpoosheh run` refuses to read confirmations or
    /// profiles without one.
    pub file: PathBuf,
    /// How often the file's modification time is checked for a reload.
    pub reload_interval: HumanDuration,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            // Whom to trust is the operator's decision, never a default.
            file: PathBuf::new(),
            // A revoked key stops being accepted within seconds.
            reload_interval: HumanDuration(Duration::from_secs(5)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerStatus {
    Active,
    Suspended,
    Revoked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Revoked,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    kid: String,
    public_key: String,
    status: KeyStatus,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignerEntry {
    #[serde(default)]
    name: String,
    status: SignerStatus,
    may_sign: Vec<String>,
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFileText {
    #[serde(default)]
    signer: HashMap<String, SignerEntry>,
}

/// One trusted key, as `karpoosheh keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustedKey {
    pub signer: String,
    pub signer_name: String,
    pub signer_status: SignerStatus,
    pub may_sign: Vec<SignedKind>,
    pub kid: String,
    /// base64url, 32 bytes.
    pub public_key: String,
    pub status: KeyStatus,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    #[error("cannot read the trust file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the trust file {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Public keys whose private halves are published (RFC 8032, section
/// 7.1, tests 1-3): never trusted, whatever a file says.
const PUBLISHED_TEST_KEYS: &[&str] = &[
    "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    "PUAXw-hDiVqStwqnTRt-vJyYLM8uxJaMwM1V8Sr0Zgw",
    "_FHNjmIYoaONpH7QAjDwWAgW7RO6MwOsXeuRFUiQgCU",
];

#[derive(Clone)]
struct Key {
    signer: String,
    signer_status: SignerStatus,
    may_sign: Vec<SignedKind>,
    public_key: [u8; 32],
    status: KeyStatus,
}

/// Parses a trust file's text. `path` only names it in errors.
fn parse(path: &Path, text: &str) -> Result<Vec<TrustedKey>, TrustError> {
    let invalid = |message: String| TrustError::Invalid {
        path: path.to_owned(),
        message,
    };
    let file: TrustFileText = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut signers: Vec<_> = file.signer.into_iter().collect();
    signers.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, s) in signers {
        if !valid_kid(&id) {
            return Err(invalid(format!(
                "[signer.{id}]: a signer ID is 1-64 characters of A-Z a-z 0-9 . _ -"
            )));
        }
        let mut may_sign = Vec::new();
        for kind in &s.may_sign {
            let k = SignedKind::parse(kind).ok_or_else(|| {
                invalid(format!(
                    "[signer.{id}] may_sign: {kind:?} is not confirmation or profile"
                ))
            })?;
            may_sign.push(k);
        }
        for k in &s.keys {
            if !valid_kid(&k.kid) {
                return Err(invalid(format!(
                    "[signer.{id}]: key ID {:?} is not 1-64 characters of A-Z a-z 0-9 . _ -",
                    k.kid
                )));
            }
            if !seen.insert(k.kid.clone()) {
                return Err(invalid(format!(
                    "key ID {:?} appears twice: key IDs are unique in the whole file",
                    k.kid
                )));
            }
            if PUBLISHED_TEST_KEYS.contains(&k.public_key.as_str()) {
                return Err(invalid(format!(
                    "[signer.{id}] key {:?}: that is a published test key (RFC 8032), whose private half anyone has",
                    k.kid
                )));
            }
            if from_b64url(&k.public_key).is_none_or(|b| b.len() != 32) {
                return Err(invalid(format!(
                    "[signer.{id}] key {:?}: public_key is not 32 bytes of base64url (the JWK x of an Ed25519 key)",
                    k.kid
                )));
            }
            out.push(TrustedKey {
                signer: id.clone(),
                signer_name: s.name.clone(),
                signer_status: s.status,
                may_sign: may_sign.clone(),
                kid: k.kid.clone(),
                public_key: k.public_key.clone(),
                status: k.status,
            });
        }
    }
    Ok(out)
}

fn index(keys: &[TrustedKey]) -> HashMap<String, Key> {
    keys.iter()
        .map(|k| {
            let mut public_key = [0u8; 32];
            public_key.copy_from_slice(&from_b64url(&k.public_key).expect("checked when parsed"));
            (
                k.kid.clone(),
                Key {
                    signer: k.signer.clone(),
                    signer_status: k.signer_status,
                    may_sign: k.may_sign.clone(),
                    public_key,
                    status: k.status,
                },
            )
        })
        .collect()
}

/// Reads and checks a trust file.
pub fn load_file(path: &Path) -> Result<Vec<TrustedKey>, TrustError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrustError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// A message whose signature verified, by a signer allowed to sign it.
#[derive(Debug)]
pub struct Verified {
    /// The message's bytes (a confirmation's or profile's JSON).
    pub payload: Vec<u8>,
    pub signer: String,
    pub kid: String,
}

/// The trust file, shared and reloadable.
#[derive(Clone)]
pub struct Trust {
    inner: Arc<Reloaded<HashMap<String, Key>>>,
}

fn load_index(path: &Path) -> Result<HashMap<String, Key>, TrustError> {
    load_file(path).map(|keys| index(&keys))
}

impl Trust {
    /// Loads the configured file; a missing, unreadable or invalid file is
    /// an error.
    pub fn open(cfg: &TrustConfig) -> Result<Trust, TrustError> {
        if cfg.file.as_os_str().is_empty() {
            return Err(TrustError::Invalid {
                path: cfg.file.clone(),
                message: "no trust file configured: set trust.file to the TOML file of trusted signers (docs/configuration.md, [trust]); confirmations and mailbox profiles are accepted only when signed".into(),
            });
        }
        let keys = Reloaded::open(&cfg.file, cfg.reload_interval.0, load_index)?;
        keys.with(|k| {
            TrustFileLoaded {
                keys: k.len(),
                error: None,
            }
            .emit()
        });
        Ok(Trust {
            inner: Arc::new(keys),
        })
    }

    /// A trust store of exactly these keys, never reloaded (tests, tools).
    pub fn fixed(keys: &[TrustedKey]) -> Trust {
        Trust {
            inner: Arc::new(Reloaded::fixed(index(keys))),
        }
    }

    /// Re-reads the file if the reload interval passed and it changed (a
    /// broken file keeps the previous one).
    pub fn maybe_reload(&self) {
        self.inner.maybe_reload(load_index, |outcome| {
            let (keys, error) = match outcome {
                Ok(new) => (new.len(), None),
                Err((e, kept)) => (kept.len(), Some(e as &dyn std::error::Error)),
            };
            TrustFileLoaded { keys, error }.emit();
        });
    }

    /// Checks a record's value as a signed message of `kind`: the payload
    /// and who signed it, or the problem (also counted in
    /// `karpoosheh_signed_inputs_refused_total`).
    pub fn verify(&self, kind: SignedKind, value: &[u8]) -> Result<Verified, Problem> {
        let result = self.check(kind, value);
        // Messages that are not even JSON are counted by their reader.
        if let Err(p) = &result {
            if SignedInputRefused::REASONS.contains(&p.reason) {
                SignedInputRefused {
                    kind: kind.as_str(),
                    reason: p.reason,
                }
                .emit();
            }
        }
        result
    }

    fn check(&self, kind: SignedKind, value: &[u8]) -> Result<Verified, Problem> {
        self.maybe_reload();
        let parsed = jws::parse(value)?;
        let refuse =
            |reason, message: String| Err(Problem::new(reason, "signature".to_owned(), message));
        if parsed.typ != kind.typ() {
            return refuse(
                Reason::WrongMessageKind,
                format!(
                    "signed as typ {:?}, but this topic takes {:?}",
                    parsed.typ,
                    kind.typ()
                ),
            );
        }
        let Some(key) = self.inner.with(|keys| keys.get(&parsed.kid).cloned()) else {
            return refuse(
                Reason::UnknownKey,
                format!(
                    "key ID {:?} is not in the operator's trust file",
                    parsed.kid
                ),
            );
        };
        if key.status != KeyStatus::Active {
            return refuse(
                Reason::KeyRevoked,
                format!("key {:?} of signer {:?} is revoked", parsed.kid, key.signer),
            );
        }
        if key.signer_status != SignerStatus::Active {
            return refuse(
                Reason::SignerNotAllowed,
                format!(
                    "signer {:?} is {:?} in the trust file",
                    key.signer, key.signer_status
                ),
            );
        }
        if !key.may_sign.contains(&kind) {
            return refuse(
                Reason::SignerNotAllowed,
                format!("signer {:?} may not sign a {}", key.signer, kind.as_str()),
            );
        }
        if !verify(&key.public_key, &parsed.signing_input, &parsed.signature) {
            return refuse(
                Reason::BadSignature,
                format!("the signature does not verify with key {:?}", parsed.kid),
            );
        }
        Ok(Verified {
            payload: parsed.payload,
            signer: key.signer,
            kid: parsed.kid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::keys::SigningKey;
    use crate::evidence::{b64url, jws};
    use std::time::SystemTime;

    fn file(app: &SigningKey, old: &SigningKey, idp: &SigningKey) -> String {
        format!(
            r#"
[signer.inbox-web]
name = "Inbox"
status = "active"
may_sign = ["confirmation"]
[[signer.inbox-web.keys]]
kid = "{}"
public_key = "{}"
status = "active"
[[signer.inbox-web.keys]]
kid = "{}"
public_key = "{}"
status = "revoked"

[signer.identity]
status = "active"
may_sign = ["profile"]
[[signer.identity.keys]]
kid = "{}"
public_key = "{}"
status = "active"
"#,
            app.kid(),
            b64url(app.public_key()),
            old.kid(),
            b64url(old.public_key()),
            idp.kid(),
            b64url(idp.public_key()),
        )
    }

    #[test]
    fn only_active_keys_of_allowed_signers_verify() {
        let app = SigningKey::generate("app-2").unwrap();
        let old = SigningKey::generate("app-1").unwrap();
        let idp = SigningKey::generate("idp-1").unwrap();
        let stranger = SigningKey::generate("stranger").unwrap();
        let keys = parse(Path::new("t"), &file(&app, &old, &idp)).unwrap();
        let trust = Trust::fixed(&keys);
        let c = SignedKind::Confirmation;
        let msg = br#"{"x":1}"#;
        let ok = trust.verify(c, &jws::sign(c, msg, &app)).unwrap();
        assert_eq!(ok.payload, msg);
        assert_eq!(ok.signer, "inbox-web");
        let reason = |kind, value: Vec<u8>| trust.verify(kind, &value).unwrap_err().reason;
        assert_eq!(reason(c, jws::sign(c, msg, &old)), Reason::KeyRevoked);
        assert_eq!(reason(c, jws::sign(c, msg, &stranger)), Reason::UnknownKey);
        // The identity side may sign profiles, not confirmations.
        assert_eq!(reason(c, jws::sign(c, msg, &idp)), Reason::SignerNotAllowed);
        // A profile signature presented as a confirmation.
        assert_eq!(
            reason(c, jws::sign(SignedKind::Profile, msg, &idp)),
            Reason::WrongMessageKind
        );
        // A stranger's key under a trusted key ID.
        let forged = SigningKey::from_seed("app-2", [9; 32]).unwrap();
        assert_eq!(reason(c, jws::sign(c, msg, &forged)), Reason::BadSignature);
        // The payload changed after signing.
        let signed = String::from_utf8(jws::sign(c, msg, &app)).unwrap();
        let other = signed.replace(&b64url(msg), &b64url(br#"{"x":2}"#));
        assert_eq!(reason(c, other.into_bytes()), Reason::BadSignature);
        assert_eq!(reason(c, msg.to_vec()), Reason::Unsigned);
    }

    #[test]
    fn bad_files_are_refused_and_a_bad_reload_keeps_the_previous_file() {
        let app = SigningKey::generate("app-2").unwrap();
        let old = SigningKey::generate("app-1").unwrap();
        let idp = SigningKey::generate("idp-1").unwrap();
        let good = file(&app, &old, &idp);
        let p = Path::new("t");
        assert!(
            parse(p, &good.replace("idp-1", "app-2")).is_err(),
            "kid twice"
        );
        assert!(parse(p, &good.replace("[\"profile\"]", "[\"notice\"]")).is_err());
        assert!(parse(p, &good.replace(&b64url(idp.public_key()), "abc")).is_err());
        assert!(parse(p, &good.replace("status = \"revoked\"", "status = \"old\"")).is_err());
        // RFC 8032's test key: its private half is published.
        let published = good.replace(
            &b64url(idp.public_key()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        );
        assert!(parse(p, &published)
            .unwrap_err()
            .to_string()
            .contains("published test key"));
        assert!(Trust::open(&TrustConfig::default())
            .err()
            .unwrap()
            .to_string()
            .contains("trust.file"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.toml");
        std::fs::write(&path, &good).unwrap();
        let trust = Trust::open(&TrustConfig {
            file: path.clone(),
            reload_interval: HumanDuration(Duration::ZERO),
        })
        .unwrap();
        let c = SignedKind::Confirmation;
        assert!(trust.verify(c, &jws::sign(c, b"{}", &app)).is_ok());
        let touch = |secs| {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(SystemTime::now() + Duration::from_secs(secs))
                .unwrap();
        };
        // The key leaked: the operator revokes it; it stops verifying.
        let revoked = good.replacen("status = \"active\"\n[[", "status = \"revoked\"\n[[", 1);
        assert_ne!(revoked, good);
        std::fs::write(&path, &revoked).unwrap();
        touch(10);
        assert_eq!(
            trust
                .verify(c, &jws::sign(c, b"{}", &app))
                .unwrap_err()
                .reason,
            Reason::KeyRevoked
        );
        // A broken file keeps what was in force.
        std::fs::write(&path, "[signer.x\n").unwrap();
        touch(20);
        assert_eq!(
            trust
                .verify(c, &jws::sign(c, b"{}", &app))
                .unwrap_err()
                .reason,
            Reason::KeyRevoked
        );
    }
}
