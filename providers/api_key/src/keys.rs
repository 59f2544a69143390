//! Keys as the provider holds them: entries (inline or from the key file)
//! checked and compiled into a map from digest to principal, and the key
//! file read.

use crate::{KeyEntry, KeyStatus, MAX_KEYS_FILE_BYTES};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use tokengate_api::{ConfigError, CredentialInfo, Principal, TokenHash};

/// A key as the provider checks it.
#[derive(Debug)]
pub(crate) struct StoredKey {
    /// The principal it authenticates, already carrying the credential's id and limits.
    pub(crate) principal: Principal,
    /// The entry's `id`, or `h-` and 8 hex digits of its hash for an entry without one.
    pub(crate) key_id: String,
    pub(crate) status: KeyStatus,
    pub(crate) reason: Option<String>,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) rotated_to: Option<String>,
    pub(crate) constraints: Constraints,
    /// Where the entry came from (`keys[2]` inline, `[0]` in the key file), for duplicate reports.
    pub(crate) origin: String,
}

/// What a key may be used for beyond who it is; every list empty: anything.
#[derive(Debug, Default)]
pub(crate) struct Constraints {
    pub(crate) cidrs: Vec<IpNet>,
    pub(crate) paths: Vec<PathPattern>,
    pub(crate) methods: Vec<String>,
}

/// An `allowed_paths` entry: one canonical path, or one and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPattern {
    Exact(String),
    /// `/v1/chat/*`: `/v1/chat`, `/v1/chat/` and every path below, never `/v1/chatx`.
    Below(String),
}

impl PathPattern {
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => p == path,
            PathPattern::Below(base) => {
                path.strip_prefix(base.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }
}

/// Whether `path` is in the plain canonical form every front end gives
/// providers (no `%`, `;`, `\\`, `.`/`..` segments, repeated slashes or
/// control characters). A path with any of them is not compared to
/// `allowed_paths` but refused: matching it would be a guess about how a back
/// end reads it.
pub(crate) fn is_plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && !path.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '%' | ';' | '\\' | '?' | '#'))
        && !path.split('/').any(|segment| segment == "." || segment == "..")
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

/// The id an entry is known by: its `id`, else `h-` and 8 hex digits of its hash.
pub(crate) fn key_id_of(entry: &KeyEntry, digest: &TokenHash) -> String {
    match &entry.id {
        Some(id) => id.clone(),
        None => format!("h-{}", &hex::encode(digest)[..8]),
    }
}

/// Checks a key id: it is logged and typed on command lines, so it is kept to
/// letters, digits and `- _ . :`, at most 64 characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))) {
        return Err(format!("contains {bad:?}; use only letters, digits and - _ . :"));
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(())
}

pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        // `10.1.2.3/8` means 10.0.0.0/8 everywhere; store it so.
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{text}` is not a CIDR (like 10.0.0.0/8 or fd00::/8) or an IP address"))
}

pub(crate) fn parse_path_pattern(text: &str) -> Result<PathPattern, String> {
    let (base, below) = match text.strip_suffix("/*") {
        Some(base) => (if base.is_empty() { "/" } else { base }, true),
        None => (text, false),
    };
    if base.contains('*') {
        return Err(format!("`{text}`: `*` is allowed only as a last segment (`/v1/chat/*`)"));
    }
    if !is_plain_path(base) {
        return Err(format!(
            "`{text}` is not a plain canonical path: start with /, and write no %-escapes, `;`, `\\`, `?`, `#`, \
             `.` or `..` segments, repeated slashes, spaces or control characters"
        ));
    }
    Ok(if below {
        PathPattern::Below(base.trim_end_matches('/').to_string())
    } else {
        PathPattern::Exact(base.to_string())
    })
}

fn parse_method(text: &str) -> Result<String, String> {
    // RFC 9110 `token` characters; methods are case-sensitive and the standard ones upper case.
    let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(format!("`{text}` is not an HTTP method"));
    }
    if text.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!("`{text}`: methods are case-sensitive; write `{}`", text.to_ascii_uppercase()));
    }
    Ok(text.to_string())
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
    if let Some(id) = &entry.id {
        check_id(id).map_err(|m| ConfigError::new(at("id"), m))?;
    }
    if let Some(id) = &entry.rotated_to {
        check_id(id).map_err(|m| ConfigError::new(at("rotated_to"), m))?;
    }
    for (name, text) in
        [("owner", &entry.owner), ("name", &entry.name), ("description", &entry.description), ("reason", &entry.reason)]
    {
        if let Some(text) = text {
            check_text(text).map_err(|m| ConfigError::new(at(name), m))?;
        }
    }
    let expires_at = match &entry.expires_at {
        Some(text) => Some(parse_expiry(text).map_err(|m| ConfigError::new(at("expires_at"), m))?),
        None => None,
    };
    if let Some(text) = &entry.created_at {
        parse_expiry(text).map_err(|m| ConfigError::new(at("created_at"), m))?;
    }
    if entry.rate_limit.as_deref().is_some_and(|rate| rate.trim().is_empty()) {
        return Err(ConfigError::new(at("rate_limit"), "is empty; write a rate such as 100/min, or omit it"));
    }
    for (name, quota) in [("daily_quota", entry.daily_quota), ("monthly_quota", entry.monthly_quota)] {
        if quota == Some(0) {
            return Err(ConfigError::new(at(name), "is 0; to refuse every request, suspend the key instead"));
        }
    }
    let mut constraints = Constraints::default();
    for (i, text) in entry.allowed_cidrs.iter().enumerate() {
        let net = parse_cidr(text).map_err(|m| ConfigError::new(at(&format!("allowed_cidrs[{i}]")), m))?;
        constraints.cidrs.push(net);
    }
    for (i, text) in entry.allowed_paths.iter().enumerate() {
        let pattern = parse_path_pattern(text).map_err(|m| ConfigError::new(at(&format!("allowed_paths[{i}]")), m))?;
        constraints.paths.push(pattern);
    }
    for (i, text) in entry.allowed_methods.iter().enumerate() {
        let method = parse_method(text).map_err(|m| ConfigError::new(at(&format!("allowed_methods[{i}]")), m))?;
        constraints.methods.push(method);
    }
    let key_id = key_id_of(entry, &digest);
    let credential = CredentialInfo::new(key_id.clone()).with_limits(
        entry.rate_limit.as_ref().map(|rate| rate.trim().to_string()),
        entry.daily_quota,
        entry.monthly_quota,
    );
    let key = StoredKey {
        principal: Principal::new(entry.principal.clone())
            .with_attributes(entry.attributes.clone())
            .with_credential(Some(Arc::new(credential))),
        key_id,
        status: entry.effective_status(),
        reason: entry.reason.clone(),
        expires_at,
        rotated_to: entry.rotated_to.clone(),
        constraints,
        origin: field.to_string(),
    };
    Ok((digest, key))
}

/// Compiles `entries` into `into`, refusing a key configured twice.
pub(crate) fn compile_into(into: &mut KeyMap, entries: &[KeyEntry], list: &str) -> Result<(), ConfigError> {
    // Ids name keys in commands, logs and `rotated_to`: one id, one key.
    let mut ids: HashMap<String, String> = into.values().map(|k| (k.key_id.clone(), k.origin.clone())).collect();
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
        if let Some(first) = ids.get(&key.key_id) {
            let first =
                if first.starts_with('[') { format!("entry `{first}` of the key file") } else { format!("`{first}`") };
            return Err(ConfigError::new(
                format!("{field}.id"),
                format!("the key id `{}` is already used by {first}; every key needs its own id", key.key_id),
            ));
        }
        ids.insert(key.key_id.clone(), field.clone());
        into.insert(digest, Arc::new(key));
    }
    Ok(())
}

/// Reads and parses a key file: the entries, or an error naming the file and field.
pub fn read_keys_file(path: &Path) -> Result<Vec<KeyEntry>, String> {
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
