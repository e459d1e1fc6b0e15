//! Ed25519 key pairs, kept as JSON Web Keys (RFC 7517) of type `OKP`
//! (RFC 8037):
//!
//! ```json
//! {"kty":"OKP","crv":"Ed25519","kid":"inbox-web-2026-12","x":"<public>","d":"<private>"}
//! ```
//!
//! `x` is the 32-byte public key and `d` the 32-byte private seed, each
//! base64url without padding. A private key file is written with mode
//! 0600 and never overwritten. The public half (the same object without
//! `d`) is what goes into a trust file or a JWKS.

use std::io::Write;
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use super::{b64url, from_b64url};

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("key ID {0:?} is not 1-64 characters of A-Z a-z 0-9 . _ -")]
    BadKid(String),
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("{path} is not an Ed25519 private JWK: {message}")]
    Invalid { path: String, message: String },
    #[error("no randomness from the operating system")]
    Random,
}

/// Whether `kid` is a key ID we accept: short, printable, no separators
/// that would need escaping anywhere it is written.
pub fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A public JWK (RFC 8037, section 2): what anyone may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub kid: String,
    pub x: String,
    /// "sig": the key signs (RFC 7517, section 4.2).
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateJwk {
    kty: String,
    crv: String,
    kid: String,
    x: String,
    d: String,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
}

/// An Ed25519 signing key with its key ID.
pub struct SigningKey {
    kid: String,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("public", &b64url(self.public_key()))
            .finish()
    }
}

impl SigningKey {
    /// A new key from the operating system's randomness.
    pub fn generate(kid: &str) -> Result<SigningKey, KeyError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError::Random)?;
        SigningKey::from_seed(kid, seed)
    }

    /// The key whose private seed is `seed` (tests and fixtures).
    pub fn from_seed(kid: &str, seed: [u8; 32]) -> Result<SigningKey, KeyError> {
        if !valid_kid(kid) {
            return Err(KeyError::BadKid(kid.to_owned()));
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| KeyError::Invalid {
            path: String::new(),
            message: e.to_string(),
        })?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            seed,
            pair,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The 64-byte Ed25519 signature of `message` (RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }

    pub fn public_jwk(&self) -> PublicJwk {
        PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: self.kid.clone(),
            x: b64url(self.public_key()),
            use_: Some("sig".into()),
            alg: Some("EdDSA".into()),
        }
    }

    /// The public key alone as a JSON Web Key Set (RFC 7517, RFC 8037).
    pub fn public_jwks_json(&self) -> String {
        serde_json::to_string(&serde_json::json!({ "keys": [self.public_jwk()] }))
            .expect("a JWK set serialises")
    }

    /// The private JWK, as written to a key file.
    pub fn private_jwk_json(&self) -> String {
        let jwk = PrivateJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: self.kid.clone(),
            x: b64url(self.public_key()),
            d: b64url(&self.seed),
            use_: Some("sig".into()),
            alg: Some("EdDSA".into()),
        };
        serde_json::to_string(&jwk).expect("a JWK serialises")
    }

    /// Reads a private JWK file; its `x` must match its `d`.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| KeyError::Read {
            path: name.clone(),
            error,
        })?;
        SigningKey::from_jwk_json(&text).map_err(|message| KeyError::Invalid {
            path: name,
            message,
        })
    }

    pub fn from_jwk_json(text: &str) -> Result<SigningKey, String> {
        let jwk: PrivateJwk = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
            return Err(format!(
                "kty {:?} / crv {:?}: only OKP / Ed25519 keys are used",
                jwk.kty, jwk.crv
            ));
        }
        let seed: [u8; 32] = from_b64url(&jwk.d)
            .and_then(|d| d.try_into().ok())
            .ok_or("d is not 32 bytes of base64url")?;
        let key = SigningKey::from_seed(&jwk.kid, seed).map_err(|e| e.to_string())?;
        if b64url(key.public_key()) != jwk.x {
            return Err("x is not the public key of d".into());
        }
        Ok(key)
    }

    /// Writes the private JWK to a new file, readable by its owner only.
    /// An existing file is never overwritten.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let write = |error| KeyError::Write {
            path: path.display().to_string(),
            error,
        };
        let mut options = std::fs::File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(path).map_err(write)?;
        f.write_all(self.private_jwk_json().as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(write)
    }
}

/// Checks an Ed25519 signature (RFC 8032; ring refuses non-canonical
/// signatures and small-order keys' forgeries alike).
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032, section 7.1, TEST 1: the empty message.
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = SigningKey::from_seed("t", seed.try_into().unwrap()).unwrap();
        assert_eq!(
            key.public_key(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let sig = key.sign(b"");
        assert_eq!(
            sig.to_vec(),
            hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        );
        assert!(verify(key.public_key(), b"", &sig));
        assert!(!verify(key.public_key(), b"x", &sig));
    }

    #[test]
    fn key_files_round_trip_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.jwk");
        let key = SigningKey::generate("node-1.2026").unwrap();
        key.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = SigningKey::load(&path).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(back.kid(), "node-1.2026");
        assert!(key.save(&path).is_err(), "never overwritten");
        // A file whose x does not belong to d is refused.
        let other = SigningKey::generate("node-1.2026").unwrap();
        let forged = key
            .private_jwk_json()
            .replace(&b64url(key.public_key()), &b64url(other.public_key()));
        assert!(SigningKey::from_jwk_json(&forged)
            .unwrap_err()
            .contains("not the public key"));
        assert!(
            !format!("{key:?}").contains(&b64url(&key.seed)),
            "Debug hides d"
        );
    }

    #[test]
    fn key_ids_are_checked() {
        for bad in ["", "a b", "a/b", "é", &"k".repeat(65)] {
            assert!(SigningKey::generate(bad).is_err(), "{bad:?}");
        }
    }
}
