//! Keys as the provider holds them: entries (inline or from the key file)
//! checked and compiled into a map from digest to principal, and the key
//! file read.

use crate::{KeyEntry, MAX_KEYS_FILE_BYTES};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use tokengate_api::{ConfigError, Principal, TokenHash};

#[derive(Debug)]
pub(crate) struct StoredKey {
    pub(crate) principal: Principal,
    pub(crate) id: Option<String>,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) disabled: bool,
    /// Where the entry came from (`keys[2]` inline, `[0]` in the key file), for duplicate reports.
    pub(crate) origin: String,
}

pub(crate) type KeyMap = HashMap<TokenHash, Arc<StoredKey>>;

pub(crate) fn parse_digest(text: &str) -> Result<TokenHash, String> {
    tokengate_kit::file::parse_sha256(text, "store the key's hash, never the key; `tokengate key new` prints both")
}

pub(crate) fn parse_expiry(text: &str) -> Result<SystemTime, String> {
    let at = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).map_err(|e| {
        format!("`{text}` is not an RFC 3339 timestamp ({e}); write a full time such as 2027-01-01T00:00:00Z")
    })?;
    Ok(SystemTime::from(at))
}

pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    // Keys travel in HTTP headers as RFC 6750 b64token material; keep the prefix
    // within the URL-safe part of that alphabet so a key never needs quoting.
    if let Some(bad) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))) {
        return Err(format!("contains {bad:?}; use only letters, digits and - _ . ~"));
    }
    Ok(())
}

/// Checks one entry; `field` is its path for error messages (`keys[2]`).
pub(crate) fn compile_entry(entry: &KeyEntry, field: &str) -> Result<(TokenHash, StoredKey), ConfigError> {
    let at = |name: &str| {
        if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        }
    };
    let digest = parse_digest(&entry.hash).map_err(|m| ConfigError::new(at("hash"), m))?;
    if entry.principal.trim().is_empty() {
        return Err(ConfigError::new(at("principal"), "is empty; name whom the key authenticates"));
    }
    if entry.attributes.keys().any(|name| name.trim().is_empty()) {
        return Err(ConfigError::new(at("attributes"), "has an empty attribute name"));
    }
    let expires_at = match &entry.expires_at {
        Some(text) => Some(parse_expiry(text).map_err(|m| ConfigError::new(at("expires_at"), m))?),
        None => None,
    };
    let key = StoredKey {
        principal: Principal::new(entry.principal.clone()).with_attributes(entry.attributes.clone()),
        id: entry.id.clone(),
        expires_at,
        disabled: entry.disabled,
        origin: field.to_string(),
    };
    Ok((digest, key))
}

/// Compiles `entries` into `into`, refusing a key configured twice.
pub(crate) fn compile_into(into: &mut KeyMap, entries: &[KeyEntry], list: &str) -> Result<(), ConfigError> {
    for (i, entry) in entries.iter().enumerate() {
        let field = format!("{list}[{i}]");
        let (digest, key) = compile_entry(entry, &field)?;
        if let Some(first) = into.get(&digest) {
            // Two entries for one key would make its principal depend on load order.
            let first = if first.origin.starts_with('[') {
                format!("entry `{}` of the key file", first.origin)
            } else {
                format!("`{}`", first.origin)
            };
            return Err(ConfigError::new(
                format!("{field}.hash"),
                format!("the same key is already configured in {first}"),
            ));
        }
        into.insert(digest, Arc::new(key));
    }
    Ok(())
}

/// Reads and parses a key file: the entries, or an error naming the file and field.
pub(crate) fn read_keys_file(path: &Path) -> Result<Vec<KeyEntry>, String> {
    // An empty file is what a half-done `>` redirect leaves behind; taking it
    // as "no keys" would lock every client out until the write finishes.
    tokengate_kit::file::read_document(
        path,
        "a key file",
        MAX_KEYS_FILE_BYTES,
        "write `[]` to revoke every key on purpose",
    )
}

/// The inline keys plus the file's, or an error naming the file and entry.
pub(crate) fn load_file_keys(inline: &KeyMap, path: &Path) -> Result<KeyMap, String> {
    let entries = read_keys_file(path)?;
    let mut keys = inline.clone();
    // Entries are named `[i]` like the parse errors above, relative to the file.
    compile_into(&mut keys, &entries, "").map_err(|e| format!("{} at `{}`: {}", path.display(), e.field, e.message))?;
    Ok(keys)
}
