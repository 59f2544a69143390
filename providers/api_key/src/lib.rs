//! `api_key` (alias `local_api_key`): static API keys, stored only as SHA-256 hashes.
//!
//! Keys live inline in the provider config (`keys:`) and/or in a separate
//! `keys_file` (YAML or JSON list of the same entries) that is re-read when it
//! changes, so keys can be issued, disabled or removed without a restart.
//!
//! ```yaml
//! provider_config:
//!   type: api_key
//!   prefix: tg_
//!   keys:
//!     - hash: sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//!       principal: ci-bot
//!       attributes: {roles: [deployer]}
//!       expires_at: 2027-01-01T00:00:00Z
//!   keys_file: api_keys.yaml
//!   reload_interval: 2s
//! ```
//!
//! With `keys_from: redis` (and a `redis:` section in the config), the
//! stored keys live in Redis instead of a file — entries with their hash and
//! metadata, never a key — and `tokengate key … --config` on any machine
//! writes them there. Every replica holds them in memory, kept in step in the
//! background within about `redis.sync_interval`; a request never waits on
//! Redis. Redis away: the keys last loaded keep deciding. A replica that has
//! never loaded them (started while Redis was away) refuses keys it does not
//! know inline as unavailable (503) and is not ready. Usage then goes to
//! Redis as well (`usage_store: redis`, the default with `keys_from: redis`),
//! so `tokengate key list` shows every replica's requests added up.
//!
//! ```yaml
//! redis: {url: "redis://redis.internal:6379/0"}
//! provider_config:
//!   type: api_key
//!   prefix: tg_
//!   keys_from: redis
//! ```
//!
//! Clients send a key as `Authorization: Bearer <key>` or in the
//! [`API_KEY_HEADER`] (`X-API-Key`) header; picking the header is the job of
//! the layer/server, which hands the key to [`AuthProvider::validate`] either way.
//!
//! # Why a hash-map lookup and not a constant-time comparison
//!
//! A presented key is hashed with SHA-256 and the digest looked up in a
//! `HashMap`. The lookup's timing can at most reveal how a *digest* relates to
//! stored digests, and a caller cannot choose digest bytes without inverting
//! SHA-256; the digest of an unguessable key therefore leaks nothing that helps
//! forge one. (The map's SipHash keys are also random per process.) This is the
//! scheme GitHub and Stripe use for their tokens. The digests of *unknown*
//! keys are never logged, though: a user who pastes a password into the header
//! would otherwise leave an unsalted, dictionary-attackable hash in the logs.
//!
//! Imports: the contract (`tokengate-api`), the shared HTTP machinery
//! (`tokengate-kit`) and third-party crates; never `tokengate` itself.
//!
//! This file, past 400 lines, keeps the config, the builders and the provider
//! with its reloading key file together, as the provider's state is that
//! file's; compiled keys are `keys.rs`'s and key generation `keygen.rs`'s.

#![warn(missing_docs)]

use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokengate_api::Description;
use tokengate_api::Secret;
use tokengate_api::{
    parse_provider_config, Attributes, AuthError, AuthProvider, BuildContext, ConfigError, DynProvider, Ownership,
    Principal, ProviderBuilder, Reason, RequestContext,
};
use tokengate_api::{SharedKeys, TokenHash};
mod keygen;
mod keys;
pub mod usage;

use keygen::Shape;
pub use keygen::{
    config_line, generate_key, generate_key_id, hash_key, scanner_regex, KeyGenError, CHECKSUMMED_MARKER,
};
pub use keys::{check_id, read_keys_file};

/// An entry's time (`expires_at`, `created_at`): RFC 3339, any offset.
pub fn parse_entry_time(text: &str) -> Result<SystemTime, String> {
    keys::parse_expiry(text)
}

/// Checks a whole key list as the provider would load it (every entry valid,
/// no key or id twice), so a tool that rewrites a key file never writes one
/// the provider refuses.
pub fn check_entries(entries: &[KeyEntry]) -> Result<(), ConfigError> {
    compile_into(&mut KeyMap::new(), entries, "")
}
use keys::{check_prefix, compile_into, load_file_keys, parse_digest, KeyMap, StoredKey};
use tokengate_kit::file::Poller;
use tokengate_kit::token_hash;
use usage::{LocalUsage, SharedUsage, UsageRecorder};

/// The header (lower-cased) that carries an API key when `Authorization` does not.
///
/// Many API-key clients (and the OGX/Llama Stack conventions users bring along)
/// send `X-API-Key: <key>` instead of a bearer token. The provider does not see
/// request headers that carry credentials, so the layer/server must take the
/// key from this header when there is no `Authorization` header and pass it to
/// [`AuthProvider::validate`] as the token.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Digests are written `sha256:<64 hex digits>`; the bare hex is accepted too.
const HASH_PREFIX: &str = "sha256:";

/// A key file this large is a mistake (or an attack on memory), not a key list.
const MAX_KEYS_FILE_BYTES: u64 = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// `provider_config` for `type: api_key` and `type: local_api_key`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Keys given inline.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// A YAML (or, by a `.json` extension, JSON) list of [`KeyEntry`], relative
    /// to the config file's directory; re-read when it changes.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Every key starts with this (e.g. `tg_`); tokens without it are left to
    /// the next provider in a chain.
    #[serde(default)]
    pub prefix: Option<String>,
    /// How often `keys_file` is checked for changes (default 2s).
    #[serde(default = "default_reload_interval", with = "tokengate_kit::duration")]
    pub reload_interval: Duration,
    /// OGX's `local_api_key` form: the keys themselves. Each is hashed at load
    /// and the plaintext dropped; it authenticates as `api-key-<first 8 hex
    /// digits of its SHA-256>` (never the key itself, as OGX would) with OGX's
    /// implicit `roles: [admin, owner]`.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Where per-key usage (last used, requests per UTC day) is written; by
    /// default `<keys_file>.usage.json` when there is a `keys_file`, else
    /// usage is not recorded.
    #[serde(default)]
    pub usage_file: Option<PathBuf>,
    /// `false` records no usage at all (default `true`).
    #[serde(default = "default_true")]
    pub record_usage: bool,
    /// How often counted usage is written to `usage_file` (default 10s); it
    /// is also written when the provider closes.
    #[serde(default = "default_usage_flush_interval", with = "tokengate_kit::duration")]
    pub usage_flush_interval: Duration,
    /// `redis`: the stored keys live in the config's Redis, shared by every
    /// replica (see the crate docs); not together with `keys_file`.
    #[serde(default)]
    pub keys_from: Option<SharedSource>,
    /// Where usage is added up: `file` (`usage_file`) or `redis` (shared by
    /// every replica). Default: `redis` with `keys_from: redis`, else `file`.
    #[serde(default)]
    pub usage_store: Option<UsageStore>,
    /// Metrics options.
    #[serde(default)]
    pub metrics: ApiKeyMetrics,
}

/// `keys_from:` of the api_key provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedSource {
    /// The config's `redis:`.
    Redis,
}

/// `usage_store:` of the api_key provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageStore {
    /// `usage_file`, written by this process alone.
    File,
    /// The config's `redis:`, shared by every replica.
    Redis,
}

/// `metrics:` of the api_key provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyMetrics {
    /// Count accepted requests per key id (`tokengate_api_key_requests_total{key_id}`).
    /// Off by default: one series per key is the operator's choice to make.
    #[serde(default)]
    pub per_key: bool,
}

fn default_true() -> bool {
    true
}

fn default_usage_flush_interval() -> Duration {
    Duration::from_secs(10)
}

/// The roles OGX gives every key of its `api_keys` list.
pub const OGX_API_KEY_ROLES: &[&str] = &["admin", "owner"];

/// The entry a plaintext key of `api_keys` stands for (see [`ApiKeyConfig::api_keys`]).
fn plaintext_entry(key: &Secret) -> KeyEntry {
    let hash = hex::encode(tokengate_kit::token_hash(key.expose()));
    let roles = OGX_API_KEY_ROLES.iter().map(|r| r.to_string()).collect();
    KeyEntry::new(hash.clone(), format!("api-key-{}", &hash[..8]))
        .with_attributes([("roles".to_string(), roles)].into())
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(2)
}

/// Where a key stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// The key works (until its `expires_at`, if any).
    #[default]
    Active,
    /// Refused for now, and may be resumed (`tokengate key resume`).
    Suspended,
    /// Refused for good; the record stays for the inventory and the audit trail.
    Revoked,
}

impl KeyStatus {
    /// `active`, `suspended` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Suspended => "suspended",
            KeyStatus::Revoked => "revoked",
        }
    }

    fn is_active(&self) -> bool {
        *self == KeyStatus::Active
    }
}

/// One API key: its digest, whom it authenticates, its place in the
/// inventory (owner, name, lifecycle) and what it may do.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The key's id: unique among the provider's keys, shown in `tokengate key
    /// list`, the audit line and the decision log (never the key or its hash).
    /// `tokengate key new` always writes one; an entry without one is known
    /// as `h-` and the first 8 hex digits of its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// SHA-256 of the key, hex, optionally prefixed `sha256:`.
    pub hash: String,
    /// The principal the key authenticates as.
    pub principal: String,
    /// Who is responsible for the key (a person, a team, a customer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A short human name (`ci deploys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the key is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// RFC 3339 time the key was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Free-form data kept with the key (a customer id, a ticket); tokengate never reads it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Attribute name → values given to the principal.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// `active` (the default), `suspended` or `revoked`.
    #[serde(default, skip_serializing_if = "KeyStatus::is_active")]
    pub status: KeyStatus,
    /// Why the key is suspended or revoked, said in its refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339 time after which the key is refused (`2027-01-01T00:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Set by `tokengate key rotate`: the id of the key that replaces this one,
    /// which works until `expires_at` (the end of the grace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_to: Option<String>,
    /// Older form of `status: suspended`: still read, and means exactly that.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Per-key rate for the `limits:` stage, as written (`100/min`, `10/s burst 20`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// Per-key requests per UTC day, for the `limits:` stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_quota: Option<u64>,
    /// Per-key requests per UTC calendar month, for the `limits:` stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_quota: Option<u64>,
    /// Client addresses the key may be used from (CIDRs or addresses); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
    /// Canonical request paths the key may be used on (`/v1/models`, or
    /// `/v1/chat/*` for a path and everything below it); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_paths: Vec<String>,
    /// HTTP methods the key may be used with (`GET`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_methods: Vec<String>,
}

impl KeyEntry {
    /// An entry for `hash` (hex or `sha256:hex`) authenticating `principal`.
    pub fn new(hash: impl Into<String>, principal: impl Into<String>) -> Self {
        KeyEntry {
            id: None,
            hash: hash.into(),
            principal: principal.into(),
            owner: None,
            name: None,
            description: None,
            created_at: None,
            metadata: BTreeMap::new(),
            attributes: Attributes::new(),
            status: KeyStatus::Active,
            reason: None,
            expires_at: None,
            rotated_to: None,
            disabled: false,
            rate_limit: None,
            daily_quota: None,
            monthly_quota: None,
            allowed_cidrs: Vec::new(),
            allowed_paths: Vec::new(),
            allowed_methods: Vec::new(),
        }
    }

    /// Sets `id`, the label that tells this key apart in logs.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the attributes given to the principal.
    pub fn with_attributes(mut self, attributes: Attributes) -> Self {
        self.attributes = attributes;
        self
    }

    /// Sets `expires_at`, written in UTC to the second.
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(humantime::format_rfc3339_seconds(at).to_string());
        self
    }

    /// The status in force: `disabled: true` is `suspended`.
    pub fn effective_status(&self) -> KeyStatus {
        match self.status {
            KeyStatus::Active if self.disabled => KeyStatus::Suspended,
            status => status,
        }
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A user may paste the key itself into `hash` by mistake; show the
        // field only when it really is a digest.
        let hash = if parse_digest(&self.hash).is_ok() { self.hash.as_str() } else { "<not a digest; hidden>" };
        f.debug_struct("KeyEntry")
            .field("id", &self.id)
            .field("hash", &hash)
            .field("principal", &self.principal)
            .field("owner", &self.owner)
            .field("attributes", &self.attributes)
            .field("status", &self.effective_status())
            .field("expires_at", &self.expires_at)
            .field("rotated_to", &self.rotated_to)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

/// Builds `type: api_key` providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiKeyBuilder;

/// Builds `type: local_api_key` providers: the same provider under the name
/// OGX users know it by.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalApiKeyBuilder;

impl ProviderBuilder for ApiKeyBuilder {
    fn type_name(&self) -> &'static str {
        "api_key"
    }

    fn build(&self, config: serde_json::Value, ctx: &BuildContext) -> Result<DynProvider, ConfigError> {
        Ok(Arc::new(ApiKeyProvider::from_config(self.type_name(), parse_provider_config(config)?, ctx)?))
    }
}

impl ProviderBuilder for LocalApiKeyBuilder {
    fn type_name(&self) -> &'static str {
        "local_api_key"
    }

    fn build(&self, config: serde_json::Value, ctx: &BuildContext) -> Result<DynProvider, ConfigError> {
        Ok(Arc::new(ApiKeyProvider::from_config(self.type_name(), parse_provider_config(config)?, ctx)?))
    }
}

// ---------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------

/// What identifies one version of the key file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

#[derive(Default)]
struct FileState {
    /// The version whose keys are in force.
    loaded: Option<Stamp>,
    /// The last failure logged, so a broken file is reported once, not every poll.
    reported: Option<(Option<Stamp>, String)>,
}

struct KeyFile {
    path: PathBuf,
    state: Mutex<FileState>,
}

/// The keys every replica shares, compiled again whenever the store's copy changes.
struct SharedKeySet {
    store: SharedKeys,
    /// The store's generation and its entries, compiled.
    compiled: ArcSwap<(u64, KeyMap)>,
    /// Held by the one request that compiles a new generation; others use the last one meanwhile.
    compiling: Mutex<()>,
}

impl SharedKeySet {
    /// The compiled keys of the store's current generation.
    fn current(&self, type_name: &str, inline: &KeyMap) -> Arc<(u64, KeyMap)> {
        let compiled = self.compiled.load_full();
        let generation = self.store.0.generation();
        if compiled.0 == generation {
            return compiled;
        }
        let Ok(_compiling) = self.compiling.try_lock() else { return compiled };
        let again = self.compiled.load_full();
        if again.0 == generation {
            return again;
        }
        let fresh = Arc::new((generation, compile_shared(type_name, inline, self.store.0.entries())));
        self.compiled.store(fresh.clone());
        fresh
    }
}

/// Most bytes one shared entry may take: anything larger is refused, not read.
const MAX_SHARED_ENTRY_BYTES: usize = 64 * 1024;

/// The shared entries as the provider checks them. An entry that does not
/// read, or is stored under another key's hash, or is configured inline as
/// well, is left out and logged: one bad entry must not lock everyone out.
fn compile_shared(type_name: &str, inline: &KeyMap, entries: Vec<(TokenHash, Arc<[u8]>)>) -> KeyMap {
    let mut keys = KeyMap::with_capacity(entries.len());
    let mut refused = 0usize;
    for (digest, stored) in entries {
        let at = format!("redis:{}", &hex::encode(digest)[..8]);
        let parsed = if stored.len() > MAX_SHARED_ENTRY_BYTES {
            Err(format!("is {} bytes, more than {MAX_SHARED_ENTRY_BYTES}", stored.len()))
        } else {
            serde_json::from_slice::<KeyEntry>(&stored).map_err(|e| format!("is not a key entry: {e}"))
        };
        let compiled = parsed
            .and_then(|entry| keys::compile_entry(&entry, &at).map_err(|e| format!("`{}`: {}", e.field, e.message)));
        let problem = match compiled {
            Err(message) => Some(message),
            Ok((hash, _)) if hash != digest => Some("holds the hash of another key than its name says".to_string()),
            Ok(_) if inline.contains_key(&digest) => {
                Some("is configured inline too; the inline entry decides".to_string())
            }
            Ok((hash, key)) => {
                keys.insert(hash, Arc::new(key));
                None
            }
        };
        if let Some(problem) = problem {
            refused += 1;
            tracing::error!(provider = type_name, entry = %at, problem = %problem, "shared API key entry left out");
        }
    }
    tracing::info!(provider = type_name, keys = keys.len(), left_out = refused, "shared API keys compiled");
    keys
}

struct Inner {
    type_name: &'static str,
    usage: Option<Arc<dyn UsageRecorder>>,
    /// The same recorder when it is the shared one, so `close` can await its last write.
    shared_usage: Option<Arc<SharedUsage>>,
    shared: Option<SharedKeySet>,
    usage_flush_interval: Duration,
    per_key_metrics: bool,
    prefix: Option<String>,
    inline: KeyMap,
    file: Option<KeyFile>,
    keys: ArcSwap<KeyMap>,
    reload_interval: Duration,
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp { modified: m.modified().ok(), len: m.len() })
}

/// What one look at the key file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reload {
    Unchanged,
    Reloaded,
    Failed,
}

impl Inner {
    /// Re-reads the key file if its modification time or size changed.
    ///
    /// A file that cannot be read or parsed keeps the keys in force (an editor
    /// mid-save or a typo must not lock everyone out) and is retried on every
    /// poll until it loads, with the error logged once per version.
    /// Flushes usage, logging a failure (the counts are kept for the next try).
    fn flush_usage(&self) {
        if let Some(usage) = &self.usage {
            if let Err(error) = usage.flush() {
                tracing::warn!(provider = self.type_name, %error, "API key usage not written; retrying at the next flush");
            }
        }
    }

    fn check_file(&self) -> Reload {
        let Some(file) = &self.file else {
            return Reload::Unchanged;
        };
        let mut state = file.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Metadata follows symlinks, so a Kubernetes ConfigMap's `..data` swap
        // shows up as a new file with its own mtime.
        let stamp = stamp_of(&file.path);
        if stamp.is_some() && stamp == state.loaded {
            return Reload::Unchanged;
        }
        match load_file_keys(&self.inline, &file.path) {
            Ok(keys) => {
                let count = keys.len();
                self.keys.store(Arc::new(keys));
                state.loaded = stamp;
                state.reported = None;
                metrics::counter!("tokengate_api_key_reloads_total", "result" => "ok").increment(1);
                tracing::info!(provider = self.type_name, file = %file.path.display(), keys = count, "API keys reloaded");
                Reload::Reloaded
            }
            Err(message) => {
                let failure = (stamp, message);
                if state.reported.as_ref() != Some(&failure) {
                    metrics::counter!("tokengate_api_key_reloads_total", "result" => "error").increment(1);
                    tracing::error!(
                        provider = self.type_name,
                        error = %failure.1,
                        keys_in_force = self.keys.load().len(),
                        "API key file is invalid; keeping the keys loaded before"
                    );
                    state.reported = Some(failure);
                }
                Reload::Failed
            }
        }
    }
}

/// Validates API keys against SHA-256 digests. See the crate docs.
pub struct ApiKeyProvider {
    inner: Arc<Inner>,
    watcher: Poller,
    flusher: Poller,
}

impl fmt::Debug for ApiKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Digests are harmless but noisy; the count says what an operator needs.
        f.debug_struct("ApiKeyProvider")
            .field("type", &self.inner.type_name)
            .field("prefix", &self.inner.prefix)
            .field("keys", &self.inner.keys.load().len())
            .field("keys_file", &self.inner.file.as_ref().map(|f| &f.path))
            .field("reload_interval", &self.inner.reload_interval)
            .finish()
    }
}

impl ApiKeyProvider {
    /// Builds the provider; `type_name` is the `type` it was configured under.
    pub fn from_config(type_name: &'static str, config: ApiKeyConfig, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let prefix = match config.prefix {
            Some(p) if p.is_empty() => {
                return Err(ConfigError::new("prefix", "is empty; omit it for keys without one"))
            }
            Some(p) => {
                check_prefix(&p).map_err(|m| ConfigError::new("prefix", m))?;
                Some(p)
            }
            None => None,
        };
        if config.reload_interval.is_zero() {
            return Err(ConfigError::new("reload_interval", "must be longer than 0s"));
        }
        let from_redis = config.keys_from == Some(SharedSource::Redis);
        if config.keys.is_empty() && config.keys_file.is_none() && config.api_keys.is_empty() && !from_redis {
            return Err(ConfigError::new(
                "",
                "no keys: configure `keys` (inline entries), `keys_file`, `keys_from: redis` or `api_keys` \
                 (OGX's plaintext list)",
            ));
        }
        if from_redis && config.keys_file.is_some() {
            return Err(ConfigError::new(
                "keys_from",
                "is `redis`, and `keys_file` is set too: managed keys live in one place; keep one of them",
            ));
        }
        let usage_store = config.usage_store.unwrap_or(if from_redis { UsageStore::Redis } else { UsageStore::File });
        let needs_redis = match (from_redis, usage_store) {
            (true, _) => Some("keys_from"),
            (false, UsageStore::Redis) => Some("usage_store"),
            (false, UsageStore::File) => None,
        };
        if let (Some(field), None) = (needs_redis, &ctx.shared_keys) {
            return Err(ConfigError::new(field, "is `redis`, and the config has no `redis:` section"));
        }
        if usage_store == UsageStore::Redis && config.usage_file.is_some() {
            return Err(ConfigError::new(
                "usage_file",
                "is set, and usage goes to Redis (`usage_store: redis`, the default with `keys_from: redis`); \
                 remove one of them",
            ));
        }
        let mut inline = KeyMap::new();
        compile_into(&mut inline, &config.keys, "keys")?;
        let plaintext: Vec<KeyEntry> = config.api_keys.iter().map(plaintext_entry).collect();
        drop(config.api_keys);
        compile_into(&mut inline, &plaintext, "api_keys")?;
        if config.usage_flush_interval.is_zero() {
            return Err(ConfigError::new("usage_flush_interval", "must be longer than 0s"));
        }
        let mut keys = inline.clone();
        let mut file = None;
        let usage_path = match (&config.usage_file, &config.keys_file) {
            (Some(path), _) => Some(ctx.resolve(path)),
            (None, Some(keys_file)) => Some(usage::default_usage_path(&ctx.resolve(keys_file))),
            (None, None) => None,
        };
        let shared_usage = match (&ctx.shared_keys, usage_store) {
            (Some(store), UsageStore::Redis) if config.record_usage => Some(Arc::new(SharedUsage::new(store.clone()))),
            _ => None,
        };
        let usage: Option<Arc<dyn UsageRecorder>> = match (&shared_usage, usage_path) {
            (Some(shared), _) => Some(shared.clone()),
            (None, Some(path)) if config.record_usage && usage_store == UsageStore::File => {
                Some(Arc::new(LocalUsage::new(path)))
            }
            _ => None,
        };
        let shared = match (&ctx.shared_keys, from_redis) {
            (Some(store), true) => Some(SharedKeySet {
                store: store.clone(),
                // No generation yet: the first lookup compiles what the store holds.
                compiled: ArcSwap::from_pointee((u64::MAX, KeyMap::new())),
                compiling: Mutex::new(()),
            }),
            _ => None,
        };
        if let Some(path) = config.keys_file {
            let path = ctx.resolve(&path);
            // The first load must succeed: there are no old keys to fall back on.
            // The stamp is taken before reading so a write racing this read is
            // picked up by the first poll.
            let stamp = stamp_of(&path);
            keys = load_file_keys(&inline, &path).map_err(|m| ConfigError::new("keys_file", m))?;
            let state = FileState { loaded: stamp, reported: None };
            file = Some(KeyFile { path, state: Mutex::new(state) });
        }
        let inner = Arc::new(Inner {
            type_name,
            usage,
            shared_usage,
            shared,
            usage_flush_interval: config.usage_flush_interval,
            per_key_metrics: config.metrics.per_key,
            prefix,
            keys: ArcSwap::from_pointee(keys),
            inline,
            file,
            reload_interval: config.reload_interval,
        });
        let provider = ApiKeyProvider { inner, watcher: Poller::default(), flusher: Poller::default() };
        // Built inside a runtime (the server), start watching now; otherwise the
        // first validation starts it.
        provider.ensure_watcher();
        Ok(provider)
    }

    /// Starts the key-file poller when there is a file, a tokio runtime, and
    /// no poller running.
    ///
    /// Called on every validation, not just once: a poller dies with the
    /// runtime it was spawned on (a provider built by one runtime and served
    /// by another), and is then started again on the current one.
    fn ensure_watcher(&self) {
        if self.inner.file.is_some() {
            // Weak, so a provider that is dropped without `close()` stops its poller too.
            self.watcher.ensure(&self.inner, self.inner.reload_interval, |inner| {
                inner.check_file();
            });
        }
        if self.inner.usage.is_some() {
            self.flusher.ensure(&self.inner, self.inner.usage_flush_interval, |inner| {
                inner.flush_usage();
            });
        }
    }

    /// Writes the usage counted so far (it is also written every
    /// `usage_flush_interval` and at close); `Err` says why it could not be.
    pub fn flush_usage(&self) -> Result<(), String> {
        match &self.inner.usage {
            Some(usage) => usage.flush(),
            None => Ok(()),
        }
    }

    /// Checks the key file now instead of waiting for the poller.
    pub fn reload_now(&self) -> bool {
        self.inner.check_file() != Reload::Failed
    }

    /// How many keys are in force (enabled or not), shared ones included.
    pub fn key_count(&self) -> usize {
        let shared =
            self.inner.shared.as_ref().map_or(0, |s| s.current(self.inner.type_name, &self.inner.inline).1.len());
        self.inner.keys.load().len() + shared
    }

    /// Before the first load of the shared keys, waits for it; `Err`
    /// (unavailable) when it cannot be had and `token` is not a local key.
    async fn ensure_shared_loaded(&self, token: &str) -> Result<(), AuthError> {
        let Some(shared) = &self.inner.shared else { return Ok(()) };
        if shared.store.0.is_loaded() || self.inner.keys.load().contains_key(&token_hash(token)) {
            return Ok(());
        }
        if shared.store.0.wait_loaded().await {
            return Ok(());
        }
        Err(AuthError::unavailable(format!(
            "the shared API keys have not been loaded from Redis yet: {}",
            shared.store.0.last_failure()
        )))
    }

    fn lookup(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        if let Some(prefix) = &self.inner.prefix {
            if !token.starts_with(prefix.as_str()) {
                return Err(AuthError::invalid_token(format!("not an API key: it does not start with `{prefix}`")));
            }
        }
        // Offline: a checksummed key with a wrong checksum is never looked up.
        if keygen::shape_of(token) == Shape::BadChecksum {
            return Err(AuthError::invalid_token(
                "malformed API key: its checksum does not match (mistyped, truncated or made up)",
            )
            .because(Reason::Malformed));
        }
        let keys = self.inner.keys.load();
        let digest = token_hash(token);
        let shared = self.inner.shared.as_ref().map(|s| s.current(self.inner.type_name, &self.inner.inline));
        let key = match (keys.get(&digest), &shared) {
            (Some(key), _) => key,
            (None, Some(compiled)) => match compiled.1.get(&digest) {
                Some(key) => {
                    if let Some(why) = self.inner.shared.as_ref().and_then(|s| s.store.0.too_stale()) {
                        return Err(AuthError::unavailable(why));
                    }
                    key
                }
                None => return Err(AuthError::invalid_token("unknown API key")),
            },
            (None, None) => return Err(AuthError::invalid_token("unknown API key")),
        };
        let now = SystemTime::now();
        if let Err(e) = key_state(key, now).and_then(|()| key_constraints(key, ctx)) {
            tracing::debug!(principal = %key.principal.principal, key_id = %key.key_id, reason = %e.reason(), "API key refused");
            return Err(e.with_key_id(key.key_id.clone()));
        }
        if let Some(usage) = &self.inner.usage {
            usage.record(&key.key_id, now);
        }
        if self.inner.per_key_metrics {
            metrics::counter!("tokengate_api_key_requests_total", "key_id" => key.key_id.clone()).increment(1);
        }
        tracing::debug!(principal = %key.principal.principal, key_id = %key.key_id, "API key accepted");
        Ok(key.principal.clone())
    }
}

fn with_reason(what: &str, reason: &Option<String>) -> String {
    match reason.as_deref().map(str::trim) {
        Some(reason) if !reason.is_empty() => format!("{what}: {reason}"),
        _ => what.to_string(),
    }
}

/// Whether the key's lifecycle lets it work at `now`.
fn key_state(key: &StoredKey, now: SystemTime) -> Result<(), AuthError> {
    match key.status {
        KeyStatus::Revoked => {
            return Err(AuthError::invalid_token(with_reason("key revoked", &key.reason)).because(Reason::KeyRevoked))
        }
        KeyStatus::Suspended => {
            return Err(
                AuthError::invalid_token(with_reason("key suspended", &key.reason)).because(Reason::KeySuspended)
            )
        }
        KeyStatus::Active => {}
    }
    if let Some(at) = key.expires_at {
        if now >= at {
            let at = humantime::format_rfc3339_seconds(at);
            return Err(match &key.rotated_to {
                Some(next) => AuthError::invalid_token(format!("key rotated; replaced by {next}, grace ended at {at}"))
                    .because(Reason::KeyRotated),
                None => AuthError::invalid_token(format!("key expired at {at}")).because(Reason::KeyExpired),
            });
        }
    }
    Ok(())
}

/// Whether this request is within the key's `allowed_*` constraints: a 403
/// naming the constraint when not.
fn key_constraints(key: &StoredKey, ctx: &RequestContext) -> Result<(), AuthError> {
    let constraints = &key.constraints;
    let refuse = |name: &'static str, detail: String| {
        Err(AuthError::insufficient_scope(detail).because(Reason::key_constraint(name)))
    };
    if !constraints.methods.is_empty() && !constraints.methods.contains(&ctx.method) {
        return refuse(
            "allowed_methods",
            format!("key {} may not be used with method {} (allowed_methods)", key.key_id, shown(&ctx.method)),
        );
    }
    if !constraints.paths.is_empty() {
        if !keys::is_plain_path(&ctx.path) {
            return refuse(
                "allowed_paths",
                format!("key {} has allowed_paths, and this path is not in plain canonical form", key.key_id),
            );
        }
        if !constraints.paths.iter().any(|p| p.matches(&ctx.path)) {
            return refuse(
                "allowed_paths",
                format!("key {} may not be used on path {} (allowed_paths)", key.key_id, shown(&ctx.path)),
            );
        }
    }
    if !constraints.cidrs.is_empty() {
        // The client address as the front end established it; never a header's
        // claim. Unknown is refused, not treated as allowed.
        let Some(ip) = ctx.client_ip else {
            return refuse(
                "allowed_cidrs",
                format!(
                    "key {} has allowed_cidrs, and the client's address is not known here (tokengate serve \
                     knows it only from a proxy profile that sets it)",
                    key.key_id
                ),
            );
        };
        // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        if !constraints.cidrs.iter().any(|net| net.contains(&ip)) {
            return refuse("allowed_cidrs", format!("key {} may not be used from {ip} (allowed_cidrs)", key.key_id));
        }
    }
    Ok(())
}

/// A client-supplied value as shown in a refusal: control characters dropped, at most 100 characters.
fn shown(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(100).collect();
    if text.chars().count() > 100 {
        out.push_str("...");
    }
    out
}

#[async_trait]
impl AuthProvider for ApiKeyProvider {
    async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        self.ensure_watcher();
        // What is refused offline (another prefix, a wrong checksum) never waits for the shared keys.
        let prefixed = self.inner.prefix.as_ref().is_none_or(|p| token.starts_with(p.as_str()));
        if prefixed && keygen::shape_of(token) != Shape::BadChecksum {
            self.ensure_shared_loaded(token).await?;
        }
        self.lookup(token, ctx)
    }

    async fn ready(&self) -> Result<(), AuthError> {
        let Some(shared) = &self.inner.shared else { return Ok(()) };
        if shared.store.0.wait_loaded().await {
            return Ok(());
        }
        Err(AuthError::unavailable(format!(
            "the shared API keys have not been loaded from Redis yet: {}",
            shared.store.0.last_failure()
        )))
    }

    fn describe(&self) -> Description {
        let (shape, accepts) = match &self.inner.prefix {
            Some(p) => (format!("an API key (starting with `{p}`)"), format!("API keys starting with `{p}`")),
            None => ("an API key".to_string(), "API keys".to_string()),
        };
        Description::new(self.inner.type_name).accepting(accepts).with_message(format!(
            "Authentication required. Send {shape} issued for this service as `Authorization: Bearer <key>` \
             or in the `X-API-Key` header; it is checked against this server's configured API keys"
        ))
    }

    fn ownership(&self, token: &str) -> Ownership {
        match &self.inner.prefix {
            Some(prefix) if !token.starts_with(prefix.as_str()) => Ownership::NotMine,
            _ => Ownership::Mine,
        }
    }

    async fn close(&self) {
        self.watcher.close();
        self.flusher.close();
        if let Some(shared) = &self.inner.shared_usage {
            if let Err(error) = shared.flush_now().await {
                tracing::warn!(provider = self.inner.type_name, %error, "API key usage not added to Redis at close");
            }
            return;
        }
        let inner = self.inner.clone();
        // File I/O: off the async threads, and awaited, so the last counts are written.
        if tokio::task::spawn_blocking(move || inner.flush_usage()).await.is_err() {
            self.inner.flush_usage();
        }
    }
}

#[cfg(test)]
mod shared_tests;
#[cfg(test)]
mod tests;
