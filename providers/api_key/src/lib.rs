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
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokengate_api::Description;
use tokengate_api::Secret;
use tokengate_api::{
    parse_provider_config, Attributes, AuthError, AuthProvider, BuildContext, ConfigError, DynProvider, Ownership,
    Principal, ProviderBuilder, RequestContext,
};
mod keygen;
mod keys;

pub use keygen::{config_line, generate_key, hash_key, KeyGenError};
use keys::{check_prefix, compile_into, load_file_keys, parse_digest, KeyMap};
use tokengate_kit::file::Poller;
use tokengate_kit::token_hash;

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

/// Random bytes in a generated key: 256 bits, beyond any guessing.
const KEY_RANDOM_BYTES: usize = 32;

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
}

/// The roles OGX gives every key of its `api_keys` list.
pub const OGX_API_KEY_ROLES: &[&str] = &["admin", "owner"];

/// The entry a plaintext key of `api_keys` stands for (see [`ApiKeyConfig::api_keys`]).
fn plaintext_entry(key: &Secret) -> KeyEntry {
    let hash = hex::encode(tokengate_kit::token_hash(key.expose()));
    KeyEntry {
        principal: format!("api-key-{}", &hash[..8]),
        hash,
        id: None,
        attributes: [("roles".to_string(), OGX_API_KEY_ROLES.iter().map(|r| r.to_string()).collect())].into(),
        expires_at: None,
        disabled: false,
    }
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(2)
}

/// One API key: its digest and whom it authenticates.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// SHA-256 of the key, hex, optionally prefixed `sha256:`.
    pub hash: String,
    /// The principal the key authenticates as.
    pub principal: String,
    /// A label for logs (`ci-bot-2026`), so operators can tell a principal's keys apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Attribute name → values given to the principal.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// RFC 3339 time after which the key is refused (`2027-01-01T00:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// A disabled key is refused (revocation that keeps the record).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl KeyEntry {
    /// An entry for `hash` (hex or `sha256:hex`) authenticating `principal`.
    pub fn new(hash: impl Into<String>, principal: impl Into<String>) -> Self {
        KeyEntry {
            hash: hash.into(),
            principal: principal.into(),
            id: None,
            attributes: Attributes::new(),
            expires_at: None,
            disabled: false,
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
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A user may paste the key itself into `hash` by mistake; show the
        // field only when it really is a digest.
        let hash = if parse_digest(&self.hash).is_ok() { self.hash.as_str() } else { "<not a digest; hidden>" };
        f.debug_struct("KeyEntry")
            .field("hash", &hash)
            .field("principal", &self.principal)
            .field("id", &self.id)
            .field("attributes", &self.attributes)
            .field("expires_at", &self.expires_at)
            .field("disabled", &self.disabled)
            .finish()
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

struct Inner {
    type_name: &'static str,
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
        if config.keys.is_empty() && config.keys_file.is_none() && config.api_keys.is_empty() {
            return Err(ConfigError::new(
                "",
                "no keys: configure `keys` (inline entries), `keys_file` or `api_keys` (OGX's plaintext list)",
            ));
        }
        let mut inline = KeyMap::new();
        compile_into(&mut inline, &config.keys, "keys")?;
        let plaintext: Vec<KeyEntry> = config.api_keys.iter().map(plaintext_entry).collect();
        drop(config.api_keys);
        compile_into(&mut inline, &plaintext, "api_keys")?;
        let mut keys = inline.clone();
        let mut file = None;
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
            prefix,
            keys: ArcSwap::from_pointee(keys),
            inline,
            file,
            reload_interval: config.reload_interval,
        });
        let provider = ApiKeyProvider { inner, watcher: Poller::default() };
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
    }

    /// Checks the key file now instead of waiting for the poller.
    pub fn reload_now(&self) -> bool {
        self.inner.check_file() != Reload::Failed
    }

    /// How many keys are in force (enabled or not).
    pub fn key_count(&self) -> usize {
        self.inner.keys.load().len()
    }

    fn lookup(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(prefix) = &self.inner.prefix {
            if !token.starts_with(prefix.as_str()) {
                return Err(AuthError::invalid_token(format!("not an API key: it does not start with `{prefix}`")));
            }
        }
        let keys = self.inner.keys.load();
        let Some(key) = keys.get(&token_hash(token)) else {
            return Err(AuthError::invalid_token("unknown API key"));
        };
        let id = key.id.as_deref().unwrap_or("");
        if key.disabled {
            tracing::debug!(principal = %key.principal.principal, key_id = id, "disabled API key presented");
            return Err(AuthError::invalid_token("API key is disabled"));
        }
        if let Some(at) = key.expires_at {
            if SystemTime::now() >= at {
                tracing::debug!(principal = %key.principal.principal, key_id = id, "expired API key presented");
                return Err(AuthError::invalid_token(format!(
                    "API key expired at {}",
                    humantime::format_rfc3339_seconds(at)
                )));
            }
        }
        tracing::debug!(principal = %key.principal.principal, key_id = id, "API key accepted");
        Ok(key.principal.clone())
    }
}

#[async_trait]
impl AuthProvider for ApiKeyProvider {
    async fn validate(&self, token: &str, _ctx: &RequestContext) -> Result<Principal, AuthError> {
        self.ensure_watcher();
        self.lookup(token)
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
    }
}

#[cfg(test)]
mod tests;
