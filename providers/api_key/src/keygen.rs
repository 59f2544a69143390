//! `tokengate key new`: a fresh random key, its digest, and the key-file
//! entry that lists it; and the checksummed key format, checked offline.
//!
//! # The key format
//!
//! A key made by [`generate_key`] is
//!
//! ```text
//! <prefix>k1_<43 random base62 characters><6 base62 characters: CRC32 of the 43>
//! ```
//!
//! e.g. `tg_k1_4kQ0…Zr1AbC9x`: 256 random bits (43 × log2 62 ≈ 256.0), and a
//! CRC32 (IEEE) of the random part written in base62 (`0-9A-Za-z`, most
//! significant digit first, left-padded with `0`), as GitHub's tokens carry.
//! The checksum is not a secret and adds no strength: it lets a secret
//! scanner tell a real key from a look-alike, and lets the provider refuse a
//! mistyped or truncated key without looking it up ([`Reason::Malformed`]).
//!
//! With the default prefix `tg_`, a scanner's regex is
//! `\btg_k1_[0-9A-Za-z]{49}\b` (in general: the prefix, then `k1_[0-9A-Za-z]{49}`).
//!
//! Keys made before this format (`<prefix><43 base64url characters>`, or any
//! hand-made key) keep working: the checksum is checked only on a token that
//! ends in exactly the new shape (`k1_` and 49 base62 characters), which a key
//! of the old generator with a prefix of up to 8 characters cannot have (it is
//! too short), and one with a longer prefix has by chance with odds of about
//! one in a million (such a key would be refused, never wrongly accepted).
//! Every other token is looked up as before, so the check only ever adds a
//! refusal before the lookup, never an acceptance.
//!
//! [`Reason::Malformed`]: tokengate_api::Reason::Malformed

use crate::keys::{check_prefix, compile_entry};
use crate::{KeyEntry, HASH_PREFIX};
use tokengate_api::ConfigError;
use tokengate_kit::token_hash;

/// Marks a key of the checksummed format (see the module docs); the `1` is
/// the format's version, so a later one can be told apart the same way.
pub const CHECKSUMMED_MARKER: &str = "k1_";
/// Random base62 characters in a checksummed key: 43 give 256 bits.
const RANDOM_CHARS: usize = 43;
/// Base62 characters of the CRC32: 62^6 > 2^32.
const CHECKSUM_CHARS: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The regex a secret scanner finds keys made with `prefix` by.
pub fn scanner_regex(prefix: &str) -> String {
    let escaped: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_string() } else { format!("\\{c}") })
        .collect();
    format!("{escaped}{CHECKSUMMED_MARKER}[0-9A-Za-z]{{{}}}", RANDOM_CHARS + CHECKSUM_CHARS)
}

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

/// `n` random base62 characters, each uniform (bytes of 248 and above are
/// drawn again, so `% 62` has no bias).
pub(crate) fn random_base62(n: usize) -> Result<String, KeyGenError> {
    let mut out = String::with_capacity(n);
    let mut pool = [0u8; 64];
    while out.len() < n {
        aws_lc_rs::rand::fill(&mut pool).map_err(|_| KeyGenError::Random)?;
        for &byte in pool.iter().filter(|&&b| b < 248) {
            if out.len() == n {
                break;
            }
            out.push(BASE62[usize::from(byte % 62)] as char);
        }
    }
    Ok(out)
}

fn checksum(random: &str) -> String {
    let mut value = u64::from(crc32fast::hash(random.as_bytes()));
    let mut digits = [b'0'; CHECKSUM_CHARS];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits.iter().map(|&b| b as char).collect()
}

/// What the offline look at a key's shape found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Not the checksummed format: an older or hand-made key, looked up as before.
    Other,
    /// The checksummed format, checksum right.
    Checksummed,
    /// The checksummed format's shape with a wrong checksum: mistyped, truncated or made up.
    BadChecksum,
}

/// The shape of `token`: its last 52 characters are looked at, so the check
/// works whatever prefix the key was made with, configured or not.
pub(crate) fn shape_of(token: &str) -> Shape {
    const LEN: usize = CHECKSUMMED_MARKER.len() + RANDOM_CHARS + CHECKSUM_CHARS;
    let Some(tail) = token.len().checked_sub(LEN).and_then(|start| token.get(start..)) else {
        return Shape::Other;
    };
    let Some(rest) = tail.strip_prefix(CHECKSUMMED_MARKER) else {
        return Shape::Other;
    };
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Shape::Other;
    }
    let (random, sum) = rest.split_at(RANDOM_CHARS);
    if checksum(random) == sum {
        Shape::Checksummed
    } else {
        Shape::BadChecksum
    }
}

/// Generates a new key in the checksummed format (see the module docs):
/// `prefix` + `k1_` + 43 random base62 characters + their CRC32 in base62.
///
/// Returns `(key, sha256_hex)`. Show the key to its owner once; store only the
/// hash (see [`config_line`]).
pub fn generate_key(prefix: &str) -> Result<(String, String), KeyGenError> {
    if !prefix.is_empty() {
        check_prefix(prefix).map_err(|m| KeyGenError::InvalidPrefix(prefix.to_string(), m))?;
    }
    let random = random_base62(RANDOM_CHARS)?;
    let key = format!("{prefix}{CHECKSUMMED_MARKER}{random}{}", checksum(&random));
    let hash = hex::encode(token_hash(&key));
    Ok((key, hash))
}

/// A fresh key id (`key_` and 12 random base62 characters): unique with
/// overwhelming odds, and unrelated to the key, so logging it reveals nothing.
pub fn generate_key_id() -> Result<String, KeyGenError> {
    Ok(format!("key_{}", random_base62(12)?))
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
