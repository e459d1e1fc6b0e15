//! Who is calling: bearer tokens (JWT, RFC 7519) issued by the national
//! identity provider, verified against its public keys (a JWK Set file,
//! RFC 7517, hot-reloaded; several keys at once, by `kid`, for
//! rotation). The inbox API (issue 22) builds on this.
//!
//! A token holds when, all of:
//! - it is a JWS in compact form (RFC 7515, section 7.1), at most 8 KiB,
//!   whose protected header names `alg` EdDSA (Ed25519), ES256 or RS256
//!   (2048 bits or more) and a `kid` in the key set, of that key's type
//!   (and `alg`, when the key names one), with no `crit`;
//! - the signature verifies with that key;
//! - `iss` is `identity.issuer`; `aud` is (or contains)
//!   `identity.audience`; `exp` has not passed and `nbf`, when present,
//!   has come, each with `identity.leeway`;
//! - `sub` is a valid national code or legal national ID (the mailbox),
//!   and the level claim (`identity.level_claim`) an access level 1-3
//!   (article 18), as a number or a string.
//!
//! Anything else is refused with a [`TokenError`], whose
//! [`TokenError::reason`] is the machine-readable code the API answers
//! 401 with. Tokens are never logged; errors name no claim values.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{AccessLevel, HumanDuration, MailboxId, MAX_ACCESS_LEVEL};
use ring::signature::{self, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::evidence::{b64url, from_b64url};
use crate::internal_events::IdentityKeysLoaded;
use crate::reload::Reloaded;

/// The largest token read.
pub const MAX_TOKEN_BYTES: usize = 8 << 10;

/// `[identity]` in the engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// The identity provider's public keys, a JWK Set (RFC 7517) file:
    /// `{"keys": [{"kty", "kid", …}, …]}`. Re-read when it changes; a
    /// file that no longer loads keeps the keys in force.
    pub jwks_file: PathBuf,
    /// Or the provider's JWK Set URL (`https://`; `http://` only on a
    /// loopback address), fetched at start (a node that cannot fetch it
    /// does not start) and again every `reload_interval`, and at once
    /// (at most every 10 s) when a token names a key not in the set; a
    /// fetch that fails keeps the keys in force.
    pub jwks_url: String,
    /// How often the key file is looked at, or the URL fetched.
    pub reload_interval: HumanDuration,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (or contain): this service.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: HumanDuration,
    /// The claim holding the session's access level (1-3, article 18).
    pub level_claim: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            jwks_file: PathBuf::new(),
            jwks_url: String::new(),
            reload_interval: HumanDuration(Duration::from_secs(60)),
            issuer: String::new(),
            audience: "karpoosheh".into(),
            leeway: HumanDuration(Duration::from_secs(60)),
            level_claim: "acr".into(),
        }
    }
}

impl IdentityConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.leeway.0 > Duration::from_secs(300) {
            return Err(format!(
                "identity.leeway is {:?}; at most 5m (a token's life is minutes)",
                self.leeway.0
            ));
        }
        if self.level_claim.is_empty() {
            return Err("identity.level_claim must name a claim".into());
        }
        if !self.jwks_file.as_os_str().is_empty() && !self.jwks_url.is_empty() {
            return Err("identity.jwks_file and identity.jwks_url are both set: name the provider's keys one way".into());
        }
        if self.has_keys() && (self.issuer.is_empty() || self.audience.is_empty()) {
            return Err(
                "identity.jwks_file or jwks_url is set: identity.issuer and identity.audience must be too"
                    .into(),
            );
        }
        if !self.jwks_url.is_empty() {
            check_url(&self.jwks_url)?;
        }
        Ok(())
    }

    /// Whether the provider's keys are named (a file or a URL).
    pub fn has_keys(&self) -> bool {
        !self.jwks_file.as_os_str().is_empty() || !self.jwks_url.is_empty()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Whose mailbox: the token's `sub`.
    pub subject: MailboxId,
    /// The session's access level (article 18).
    pub level: AccessLevel,
    pub expires_at: DateTime<Utc>,
    /// The app the token was issued to (`azp`, else `client_id`), for
    /// the traffic record.
    pub client: Option<String>,
    /// The token's ID (`jti`), when it has one.
    pub token_id: Option<String>,
    /// The network address the call came from (set by the server, not
    /// by the token), for the traffic record.
    pub address: Option<std::net::IpAddr>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not a compact JWS (three base64url parts, JSON header and claims)")]
    Malformed,
    #[error("the token is over {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token's algorithm is not one accepted (EdDSA, ES256, RS256)")]
    AlgorithmNotAllowed,
    #[error("the token names a critical header extension")]
    CriticalHeader,
    #[error("the token's key is not one of the identity provider's")]
    UnknownKey,
    #[error("the token's algorithm does not match its key")]
    KeyMismatch,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's subject is not a valid national code or national ID")]
    BadSubject,
    #[error("the token carries no valid access level (1-3)")]
    BadLevel,
}

impl TokenError {
    /// The machine-readable reason of a 401.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed => "token_malformed",
            TokenError::TooLarge => "token_too_large",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::CriticalHeader => "critical_header",
            TokenError::UnknownKey => "unknown_key",
            TokenError::KeyMismatch => "key_mismatch",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::BadSubject => "bad_subject",
            TokenError::BadLevel => "bad_access_level",
        }
    }
}

/// Why the key file did not load.
#[derive(Debug, thiserror::Error)]
#[error("identity.jwks_file {path}: {message}")]
pub struct KeyFileError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    EdDsa,
    Es256,
    Rs256,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        match s {
            "EdDSA" => Some(Alg::EdDsa),
            "ES256" => Some(Alg::Es256),
            "RS256" => Some(Alg::Rs256),
            _ => None,
        }
    }
}

/// One public key of the identity provider.
#[derive(Debug, Clone)]
enum Key {
    Ed25519(Vec<u8>),
    /// The uncompressed SEC1 point.
    P256(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl Key {
    fn alg(&self) -> Alg {
        match self {
            Key::Ed25519(_) => Alg::EdDsa,
            Key::P256(_) => Alg::Es256,
            Key::Rsa { .. } => Alg::Rs256,
        }
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match self {
            Key::Ed25519(k) => UnparsedPublicKey::new(&signature::ED25519, k)
                .verify(message, sig)
                .is_ok(),
            Key::P256(k) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, k)
                .verify(message, sig)
                .is_ok(),
            Key::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
        }
    }
}

#[derive(Deserialize)]
struct JwkIn {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// The provider's keys by `kid`, with the `alg` each may be used with.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<(String, Key)>,
}

impl KeySet {
    /// Parses a JWK Set. Keys for encryption (`use` `enc`) are skipped;
    /// a signing key without `kid`, of an unknown type, or malformed makes
    /// the whole set refused (a half-read set would hide a mistake).
    pub fn parse(text: &str) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<JwkIn>,
        }
        let set: Set = serde_json::from_str(text).map_err(|e| format!("not a JWK Set: {e}"))?;
        let mut keys = Vec::new();
        for (i, k) in set.keys.into_iter().enumerate() {
            if k.use_.as_deref() == Some("enc") {
                continue;
            }
            let kid = k.kid.clone().ok_or(format!("key {i} has no kid"))?;
            let b = |v: &Option<String>, what: &str| {
                v.as_deref()
                    .and_then(from_b64url)
                    .ok_or(format!("key {kid}: {what} is missing or not base64url"))
            };
            let key = match (k.kty.as_str(), k.crv.as_deref()) {
                ("OKP", Some("Ed25519")) => {
                    let x = b(&k.x, "x")?;
                    if x.len() != 32 {
                        return Err(format!("key {kid}: x is not 32 bytes"));
                    }
                    Key::Ed25519(x)
                }
                ("EC", Some("P-256")) => {
                    let (x, y) = (b(&k.x, "x")?, b(&k.y, "y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return Err(format!("key {kid}: x and y must be 32 bytes"));
                    }
                    let mut p = vec![4u8];
                    p.extend_from_slice(&x);
                    p.extend_from_slice(&y);
                    Key::P256(p)
                }
                ("RSA", _) => {
                    let (n, e) = (b(&k.n, "n")?, b(&k.e, "e")?);
                    if n.len() < 256 {
                        return Err(format!("key {kid}: RSA keys under 2048 bits are refused"));
                    }
                    Key::Rsa { n, e }
                }
                (kty, crv) => {
                    return Err(format!("key {kid}: unsupported key type {kty} {crv:?}"));
                }
            };
            if let Some(alg) = &k.alg {
                if Alg::parse(alg) != Some(key.alg()) {
                    return Err(format!("key {kid}: alg {alg} does not fit its key type"));
                }
            }
            if keys.iter().any(|(k, _)| *k == kid) {
                return Err(format!("kid {kid} appears twice"));
            }
            keys.push((kid, key));
        }
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// `aud`: one string or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Checks tokens against the provider's keys and this service's claims.
pub struct Verifier {
    keys: Keys,
    issuer: String,
    audience: String,
    leeway: chrono::Duration,
    level_claim: String,
}

impl Verifier {
    /// Opens the key file named by `cfg`.
    pub fn open(cfg: &IdentityConfig) -> Result<Verifier, KeyFileError> {
        let keys = if cfg.jwks_url.is_empty() {
            Keys::File(Reloaded::open(
                &cfg.jwks_file,
                cfg.reload_interval.0,
                load_keys,
            )?)
        } else {
            Keys::Url(UrlKeys::start(&cfg.jwks_url, cfg.reload_interval.0)?)
        };
        IdentityKeysLoaded {
            keys: keys.with(|k| k.len()),
            error: None,
        }
        .emit();
        Ok(Self::with_keys(cfg, keys))
    }

    /// A verifier with fixed keys (tests, tools).
    pub fn fixed(cfg: &IdentityConfig, keys: KeySet) -> Verifier {
        Self::with_keys(cfg, Keys::File(Reloaded::fixed(keys)))
    }

    fn with_keys(cfg: &IdentityConfig, keys: Keys) -> Verifier {
        Verifier {
            keys,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: chrono::Duration::from_std(cfg.leeway.0).unwrap_or_default(),
            level_claim: cfg.level_claim.clone(),
        }
    }

    /// The session a bearer token stands for, at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Session, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(c64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = from_b64url(h64)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(TokenError::Malformed)?;
        let alg = Alg::parse(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let sig = from_b64url(s64).ok_or(TokenError::Malformed)?;
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        self.keys.maybe_reload();
        if self.keys.with(|keys| keys.get(&kid).is_none()) {
            // A key the provider may just have added: fetch the set now.
            self.keys.missing_key();
        }
        let verified = self.keys.with(|keys| {
            let key = keys.get(&kid).ok_or(TokenError::UnknownKey)?;
            if key.alg() != alg {
                return Err(TokenError::KeyMismatch);
            }
            let signed = &token.as_bytes()[..h64.len() + 1 + c64.len()];
            if key.verify(signed, &sig) {
                Ok(())
            } else {
                Err(TokenError::BadSignature)
            }
        });
        verified?;
        let claims: serde_json::Map<String, serde_json::Value> = from_b64url(c64)
            .and_then(|c| serde_json::from_slice(&c).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.get("iss").and_then(|v| v.as_str()) != Some(self.issuer.as_str()) {
            return Err(TokenError::WrongIssuer);
        }
        let aud = claims
            .get("aud")
            .and_then(|v| serde_json::from_value::<Audience>(v.clone()).ok());
        let ours = match aud {
            Some(Audience::One(a)) => a == self.audience,
            Some(Audience::Many(all)) => all.contains(&self.audience),
            None => false,
        };
        if !ours {
            return Err(TokenError::WrongAudience);
        }
        let time = |name: &str| {
            claims
                .get(name)
                .map(|v| v.as_i64().and_then(|s| DateTime::from_timestamp(s, 0)))
        };
        let expires_at = match time("exp") {
            Some(Some(t)) => t,
            _ => return Err(TokenError::Malformed),
        };
        if now > expires_at + self.leeway {
            return Err(TokenError::Expired);
        }
        match time("nbf") {
            None => {}
            Some(Some(t)) if now + self.leeway >= t => {}
            Some(Some(_)) => return Err(TokenError::NotYetValid),
            Some(None) => return Err(TokenError::Malformed),
        }
        let subject = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .and_then(|s| MailboxId::parse(s).ok())
            .ok_or(TokenError::BadSubject)?;
        let level = match claims.get(&self.level_claim) {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse::<u64>().ok(),
            _ => None,
        }
        .filter(|l| (1..=MAX_ACCESS_LEVEL as u64).contains(l))
        .ok_or(TokenError::BadLevel)? as AccessLevel;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        Ok(Session {
            subject,
            level,
            expires_at,
            client: text("azp").or_else(|| text("client_id")),
            token_id: text("jti"),
            address: None,
        })
    }

    /// Keys in force.
    pub fn keys(&self) -> usize {
        self.keys.with(|k| k.len())
    }
}

/// Where the provider's keys come from.
enum Keys {
    File(Reloaded<KeySet>),
    Url(Arc<UrlKeys>),
}

impl Keys {
    fn with<R>(&self, f: impl FnOnce(&KeySet) -> R) -> R {
        match self {
            Keys::File(r) => r.with(f),
            Keys::Url(u) => f(&u.set.read().unwrap_or_else(|p| p.into_inner())),
        }
    }

    /// The file's reload when due; the URL is fetched by its own thread.
    fn maybe_reload(&self) {
        if let Keys::File(r) = self {
            r.maybe_reload(load_keys, |r| match r {
                Ok(keys) => IdentityKeysLoaded {
                    keys: keys.len(),
                    error: None,
                }
                .emit(),
                Err((e, kept)) => IdentityKeysLoaded {
                    keys: kept.len(),
                    error: Some(e),
                }
                .emit(),
            });
        }
    }

    /// A token named a key not in the set: the URL is fetched again now,
    /// at most once every [`REFETCH_AFTER`] (a flood of made-up key IDs
    /// costs the provider nothing). This call waits for that fetch.
    fn missing_key(&self) {
        if let Keys::Url(u) = self {
            u.refetch_if_due();
        }
    }
}

/// The soonest a token with an unknown key ID fetches the set again.
const REFETCH_AFTER: Duration = Duration::from_secs(10);

/// A JWK Set fetched from the provider's URL, refreshed by a thread.
struct UrlKeys {
    url: String,
    agent: ureq::Agent,
    set: std::sync::RwLock<KeySet>,
    last_fetch: std::sync::Mutex<std::time::Instant>,
}

/// `https://`, or `http://` to a loopback address (tests, a local proxy).
fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("https://")
        .map(|_| None)
        .or_else(|| url.strip_prefix("http://").map(Some))
    else {
        return Err(format!(
            "identity.jwks_url {url:?}: must be https:// (or http:// on loopback)"
        ));
    };
    if let Some(rest) = rest {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback());
        if !loopback {
            return Err(format!(
                "identity.jwks_url {url:?}: plain http only on a loopback address; the keys decide who may read mailboxes"
            ));
        }
    }
    Ok(())
}

impl UrlKeys {
    fn start(url: &str, every: Duration) -> Result<Arc<UrlKeys>, KeyFileError> {
        check_url(url).map_err(|message| KeyFileError {
            path: url.to_owned(),
            message,
        })?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let set = fetch(&agent, url)?;
        let me = Arc::new(UrlKeys {
            url: url.to_owned(),
            agent,
            set: std::sync::RwLock::new(set),
            last_fetch: std::sync::Mutex::new(std::time::Instant::now()),
        });
        // The refresher holds a weak reference: it ends with the verifier.
        let weak = Arc::downgrade(&me);
        let every = every.max(Duration::from_millis(50));
        let _ = std::thread::Builder::new()
            .name("jwks-fetch".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                match weak.upgrade() {
                    Some(u) => u.refetch(),
                    None => return,
                }
            });
        Ok(me)
    }

    fn refetch(&self) {
        *self.last_fetch.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        match fetch(&self.agent, &self.url) {
            Ok(set) => {
                IdentityKeysLoaded {
                    keys: set.len(),
                    error: None,
                }
                .emit();
                *self.set.write().unwrap_or_else(|p| p.into_inner()) = set;
            }
            Err(e) => IdentityKeysLoaded {
                keys: self.set.read().unwrap_or_else(|p| p.into_inner()).len(),
                error: Some(&e),
            }
            .emit(),
        }
    }

    fn refetch_if_due(&self) {
        let due = self
            .last_fetch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            >= REFETCH_AFTER;
        if due {
            self.refetch();
        }
    }
}

/// One fetch of the set: at most 1 MiB, within 10 s, a 2xx answer.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<KeySet, KeyFileError> {
    let err = |message: String| KeyFileError {
        path: url.to_owned(),
        message,
    };
    let mut resp = agent.get(url).call().map_err(|e| err(e.to_string()))?;
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| err(e.to_string()))?;
    KeySet::parse(&text).map_err(err)
}

/// A token as the identity provider issues one: `claims` signed with the
/// Ed25519 `key` (EdDSA, JWS compact form, `kid` the key's). For the
/// demo's own provider, the load generator and tests; nodes only verify.
pub fn sign_token(key: &crate::evidence::keys::SigningKey, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    format!("{input}.{}", b64url(&key.sign(input.as_bytes())))
}

fn load_keys(path: &Path) -> Result<KeySet, KeyFileError> {
    let err = |message: String| KeyFileError {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let keys = KeySet::parse(&text).map_err(err)?;
    if keys.is_empty() {
        return Err(err("no signing keys".into()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests;
