//! Secrets in configuration (passwords, tokens, header values): kept out
//! of every printout, for the channels and the database alike.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A password, token or header value: never printed. `Debug` and
/// serialisation (`karpoosheh config`) show `***` when it is set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

/// What a set secret looks like in `karpoosheh config` and debug output.
pub const MASK: &str = "***";

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether two digests are equal, in a time that does not depend on where
/// they differ (a credential's digest against the one held).
pub fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            write!(f, "\"{MASK}\"")
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { MASK })
    }
}

/// A secret as configured: the text itself, or `{ file = "/path" }` —
/// read when the configuration is loaded, so the secret need not be in the
/// configuration file or the environment.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretSource {
    Text(String),
    File { file: std::path::PathBuf },
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match SecretSource::deserialize(d).map_err(|_| {
            serde::de::Error::custom("a secret is a string, or { file = \"/path/to/file\" }")
        })? {
            SecretSource::Text(s) => Ok(Secret(s)),
            SecretSource::File { file } => read_secret_file(&file)
                .map(Secret)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Reads a secret from a file: its text without the trailing line end.
/// Refused when every user of the machine may read it (fix: `chmod 600`,
/// or `640` with the engine's group), or when it is empty.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(path).map_err(|e| format!("secret file {}: {e}", path.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o004 != 0 {
            return Err(format!(
                "secret file {} is readable by every user (mode {:o}): chmod o-r it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("secret file {}: {e}", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(text.to_owned())
}

/// Whether a librdkafka option carries a secret (its value is masked in
/// `karpoosheh config`): passwords, client secrets, private keys and the
/// OAuth bearer configuration.
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k == "ssl.key.pem"
        || k == "sasl.oauthbearer.config"
}

/// Serialises a map of librdkafka options with secret values masked.
pub fn serialize_masked_options<S: Serializer>(
    map: &std::collections::BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(map.len()))?;
    for (k, v) in map {
        if is_secret_option(k) && !v.is_empty() {
            m.serialize_entry(k, MASK)?;
        } else {
            m.serialize_entry(k, v)?;
        }
    }
    m.end()
}
