//! `tokengate key new`: a fresh random key, its digest, and the key-file
//! entry that lists it.

use crate::keys::{check_prefix, compile_entry};
use crate::{KeyEntry, HASH_PREFIX, KEY_RANDOM_BYTES};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tokengate_api::ConfigError;
use tokengate_kit::token_hash;

/// Why a key or its config entry could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyGenError {
    /// The prefix (quoted first) is not usable, for the reason given second.
    #[error("prefix `{0}`: {1}")]
    InvalidPrefix(String, String),
    /// The system's random number generator gave no bytes: no key is made without them.
    #[error("the system random number generator failed")]
    Random,
    /// The entry [`config_line`] would write is not one the provider accepts.
    #[error("{0}")]
    InvalidEntry(ConfigError),
    /// The entry could not be written as YAML.
    #[error("cannot render the entry as YAML: {0}")]
    Yaml(String),
}

/// Generates a new key: `prefix` + 32 random bytes, base64url without padding.
///
/// Returns `(key, sha256_hex)`. Show the key to its owner once; store only the
/// hash (see [`config_line`]).
pub fn generate_key(prefix: &str) -> Result<(String, String), KeyGenError> {
    if !prefix.is_empty() {
        check_prefix(prefix).map_err(|m| KeyGenError::InvalidPrefix(prefix.to_string(), m))?;
    }
    let mut random = [0u8; KEY_RANDOM_BYTES];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| KeyGenError::Random)?;
    let key = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random));
    let hash = hex::encode(token_hash(&key));
    Ok((key, hash))
}

/// `sha256:<hex>` of a key, as written in `hash:` fields.
pub fn hash_key(key: &str) -> String {
    format!("{HASH_PREFIX}{}", hex::encode(token_hash(key)))
}

/// Renders `entry` as a YAML list item to paste into a `keys_file` as is, or
/// (indented) under `keys:` in the provider config:
///
/// ```yaml
/// - hash: sha256:…
///   principal: alice
///   attributes:
///     roles:
///     - admin
///   expires_at: 2027-01-01T00:00:00Z
/// ```
///
/// The entry is checked exactly as the provider would check it, so a line this
/// returns always loads.
pub fn config_line(entry: &KeyEntry) -> Result<String, KeyGenError> {
    compile_entry(entry, "").map_err(KeyGenError::InvalidEntry)?;
    let mut entry = entry.clone();
    if !entry.hash.starts_with(HASH_PREFIX) {
        entry.hash = format!("{HASH_PREFIX}{}", entry.hash.to_ascii_lowercase());
    }
    yaml_serde::to_string(&[entry]).map_err(|e| KeyGenError::Yaml(e.to_string()))
}
