//! Revocation: tokens refused even though they still validate.
//!
//! ```yaml
//! revocation:
//!   file: revoked.yaml      # relative to the config file
//!   reload_interval: 2s     # how often the file is checked for changes (default 2s)
//! ```
//!
//! The file lists JWT IDs and SHA-256 digests of tokens (any kind: JWTs,
//! opaque tokens, API keys), never tokens themselves:
//!
//! ```yaml
//! jti:
//!   - {iss: "https://idp.example.com", jti: 4f1c2b7e-revoked-id}   # one issuer's token
//!   - 9a8b7c-legacy-id    # no issuer: this jti is revoked for EVERY issuer (the pre-#11 form)
//! token_sha256:
//!   # a JWT: SHA-256 of its signing input, the token without its last `.signature`
//!   - sha256:…   # `printf %s "${TOKEN%.*}" | sha256sum`
//!   # an opaque token or API key: SHA-256 of the whole token
//!   - sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08   # `printf %s "$TOKEN" | sha256sum`
//! ```
//!
//! A token is revoked, with every twin of it, when `token_sha256` holds one of
//! the digests [`TokenIds::digests`] lists (issue #21):
//! - for a JWT, the SHA-256 of its signing input `header.payload`: the form to
//!   use, and the one `tokengate revoke --token` writes ([`revocation_digest`]).
//!   No rewriting of the signature changes it, whatever the verifier accepts:
//!   the other ECDSA S (s → n − s, made without the key, see
//!   `tokengate_kit::ecdsa`), a padded or re-spelled base64url signature;
//! - the token's identity (`tokengate_kit::token_identity`, the SHA-256 of its
//!   canonical form), which every cache and the audit log use;
//! - the SHA-256 of the whole token as an operator may have hashed it (the
//!   only form before issue #11): the token in canonical base64url in either
//!   ECDSA S form, or exactly as sent. So `printf %s "$TOKEN" | sha256sum` of
//!   a token as issued revokes it and its twins, as it always revoked it.
//!
//! Each is the SHA-256 of a different text (a signing input has one dot, a
//! whole token two), so no digest can mean two things: a file keeps the
//! meaning it had, extended to every twin of each token it lists.
//!
//! A `jti` entry `{iss, jti}` matches only tokens whose `iss` is that issuer, so
//! in a chain of issuers one revocation cannot hit another issuer's token that
//! happens to share the ID. A bare `jti` string keeps its old meaning, revoking
//! that ID whatever the issuer: a file written before scoping existed must not
//! let a revoked token back in after an upgrade.
//!
//! It is checked after the provider accepted a token, so also after the
//! provider's cache hits; `iss` and `jti` are read from the (by then verified)
//! JWT payload only when they could matter. The file is re-read when its
//! modification time or size changes; a file that cannot be read or parsed
//! keeps the previous list in force and logs an error (once per version).
//!
//! A shared [`RevocationStore`] (Redis) may be consulted as well: a token is
//! revoked when either says so. The store answers from the replica's own
//! copy of the shared list, never waiting on the network once that copy is
//! loaded; how old a copy may be, and what a replica that never loaded one
//! does, is [`OnStoreError`]'s (`redis.on_store_error`).
//!
//! One file, past 400 lines, because the list's format, its reloading and the
//! check against it (and the shared store) all work on the one private list
//! type; reading and polling the file are `tokengate_kit::file`'s.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokengate_api::{AuthError, TokenHash};
use tokengate_kit::file::Poller;
use tokengate_kit::{token_and_prefix_hash, token_hash};

/// The detail of a refusal for a revoked token.
pub const REVOKED: &str = "token has been revoked";

/// A revocation file this large is a mistake, not a list.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Longest a check waits for the first load of the shared list.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(5);

/// `revocation:` in the config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// The list (YAML, or JSON by a `.json` extension), relative to the config file.
    pub file: PathBuf,
    /// How often the file is checked for changes (default 2s).
    #[serde(default = "default_reload_interval", with = "tokengate_kit::duration")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(2)
}

/// What a revocation check does when the replica's copy of the shared list
/// cannot be trusted (`redis.on_store_error`). Every mode enforces the
/// last-known list while Redis is away: nothing can be revoked while it is,
/// so that list is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnStoreError {
    /// The copy decides however old it is; a replica that never loaded one
    /// refuses tokens as unavailable (503), having no list to enforce (the default).
    #[default]
    LastKnown,
    /// As [`OnStoreError::LastKnown`], and tokens are refused as unavailable
    /// once the copy is older than `redis.max_staleness`.
    Deny,
    /// As [`OnStoreError::LastKnown`], except that a replica that never
    /// loaded the copy lets the local revocation file decide alone:
    /// availability over revocation.
    Allow,
}

/// What identifies a token to the revocation check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIds {
    /// SHA-256 of the whole token, as sent.
    pub token_sha256: TokenHash,
    /// The other digests that name this token whole, whatever the spelling
    /// of its signature (`tokengate_kit::identity::spelling_digests`): its
    /// identity (`tokengate_kit::token_identity`, the SHA-256 of its canonical
    /// form, shared by its twins) and its canonical form with the other ECDSA
    /// S; empty for a token that has no other spelling. See [`TokenIds::digests`].
    pub spelling_sha256: Vec<TokenHash>,
    /// For a JWT, SHA-256 of its signing input (`header.payload`), which no
    /// rewriting of the signature changes.
    pub signing_input_sha256: Option<TokenHash>,
    /// A JWT's `iss`, when it has one.
    pub issuer: Option<String>,
    /// A JWT's `jti`, when it has one (numbers as their text).
    pub jti: Option<String>,
}

impl TokenIds {
    /// Reads `token`; call only on tokens a provider accepted (the payload is not verified here).
    pub fn of(token: &str) -> TokenIds {
        let Some(signing_input) = jwt_signing_input(token) else {
            let token_sha256 = token_hash(token);
            let spelling_sha256 = tokengate_kit::identity::other_spellings(token, token_sha256);
            return TokenIds { token_sha256, spelling_sha256, signing_input_sha256: None, issuer: None, jti: None };
        };
        // The signing input is most of the token: hashed once for both digests.
        let (token_sha256, signing_input_sha256) = token_and_prefix_hash(token, signing_input.len());
        let spelling_sha256 = tokengate_kit::identity::other_spellings(token, token_sha256);
        let (issuer, jti) = jwt_iss_jti(token).unwrap_or_default();
        TokenIds { token_sha256, spelling_sha256, signing_input_sha256, issuer, jti }
    }

    /// Every `token_sha256` entry that revokes this token (see the module
    /// docs): the token as sent, its identity and other whole-token spellings
    /// and, for a JWT, its signing input's digest. A shared store must look up
    /// each of them, or it misses the twins of what it lists.
    pub fn digests(&self) -> impl Iterator<Item = &TokenHash> {
        std::iter::once(&self.token_sha256).chain(&self.spelling_sha256).chain(&self.signing_input_sha256)
    }
}

/// The digest `tokengate revoke --token` (and an operator) should list for
/// `token`: for a JWT the SHA-256 of its signing input `header.payload`, which
/// survives any rewriting of the signature; for anything else the SHA-256 of
/// the whole token.
pub fn revocation_digest(token: &str) -> TokenHash {
    token_hash(jwt_signing_input(token).unwrap_or(token))
}

/// Revocations shared by every replica (Redis), next to the local file.
#[async_trait::async_trait]
pub trait RevocationStore: Send + Sync + 'static {
    /// What the replica's copy of the shared list says of `token`: revoked
    /// when it holds its whole-token or signing-input digest, its `jti`
    /// unscoped, or its `(iss, jti)`. Waits at most `first_load` for the copy
    /// to be loaded the first time, never for Redis afterwards.
    async fn lookup(&self, token: &TokenIds, first_load: Duration) -> StoreAnswer;

    /// Whether the copy has been loaded at least once.
    fn is_loaded(&self) -> bool;
}

/// What a [`RevocationStore`] knows of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreAnswer {
    /// The shared list revokes it.
    Revoked,
    /// The shared list, as last read `age` ago, does not.
    NotRevoked {
        /// Time since the copy last matched Redis.
        age: Duration,
    },
    /// The shared list has never been loaded; `why` says what failed.
    NeverLoaded {
        /// The last failure, without secrets.
        why: String,
    },
}

/// One `jti` entry: a bare ID (every issuer) or `{iss, jti}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JtiEntry {
    Any(Text),
    Scoped(ScopedJti),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopedJti {
    iss: String,
    jti: Text,
}

/// A string, or an integer taken as its text: some issuers write numeric IDs
/// (`jti: 42`), and YAML reads an unquoted 42 as a number.
#[derive(Debug)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The parsed revocation file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationFile {
    #[serde(default)]
    jti: Vec<JtiEntry>,
    #[serde(default)]
    token_sha256: Vec<String>,
}

/// What is revoked right now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RevokedList {
    /// Bare `jti` entries: revoked whatever the issuer.
    jtis: HashSet<String>,
    /// `{iss, jti}` entries, by issuer.
    scoped: HashMap<String, HashSet<String>>,
    hashes: HashSet<TokenHash>,
}

impl RevokedList {
    /// Every `jti` entry, scoped or not.
    pub fn jti_count(&self) -> usize {
        self.jtis.len() + self.scoped.values().map(HashSet::len).sum::<usize>()
    }

    /// `jti` entries without an issuer (revoked for every issuer).
    pub fn unscoped_jti_count(&self) -> usize {
        self.jtis.len()
    }

    /// `token_sha256` entries (token digests).
    pub fn hash_count(&self) -> usize {
        self.hashes.len()
    }

    fn contains(&self, ids: &TokenIds) -> bool {
        if ids.digests().any(|digest| self.hashes.contains(digest)) {
            return true;
        }
        let Some(jti) = ids.jti.as_deref() else { return false };
        if self.jtis.contains(jti) {
            return true;
        }
        ids.issuer.as_deref().and_then(|iss| self.scoped.get(iss)).is_some_and(|jtis| jtis.contains(jti))
    }
}

fn parse_digest(text: &str) -> Result<TokenHash, String> {
    tokengate_kit::file::parse_sha256(
        text.trim(),
        "list the token's hash, never the token: `printf %s \"$TOKEN\" | sha256sum`",
    )
}

/// Reads and checks the file; errors name the file and the entry.
fn read_list(path: &Path) -> Result<RevokedList, String> {
    let shown = path.display();
    // An empty file is what a half-done `>` redirect leaves behind; taking it as
    // "nothing is revoked" would un-revoke every token until the write finishes.
    let file: RevocationFile = tokengate_kit::file::read_document(
        path,
        "a revocation file",
        MAX_FILE_BYTES,
        "write `{}` to clear the list on purpose",
    )?;
    let mut list = RevokedList::default();
    for (i, entry) in file.jti.into_iter().enumerate() {
        match entry {
            JtiEntry::Any(Text(jti)) if jti.trim().is_empty() => {
                return Err(format!("{shown} at `jti[{i}]`: is empty"))
            }
            JtiEntry::Any(Text(jti)) => {
                list.jtis.insert(jti);
            }
            JtiEntry::Scoped(ScopedJti { iss, jti: Text(jti) }) => {
                if iss.trim().is_empty() {
                    return Err(format!("{shown} at `jti[{i}].iss`: is empty"));
                }
                if jti.trim().is_empty() {
                    return Err(format!("{shown} at `jti[{i}].jti`: is empty"));
                }
                list.scoped.entry(iss).or_default().insert(jti);
            }
        }
    }
    for (i, text) in file.token_sha256.iter().enumerate() {
        let digest = parse_digest(text).map_err(|m| format!("{shown} at `token_sha256[{i}]`: {m}"))?;
        list.hashes.insert(digest);
    }
    Ok(list)
}

/// `header.payload` of a compact JWS: three segments, the first base64url of
/// a JSON object. Anything else (opaque tokens, API keys, even ones with two
/// dots) is not a JWT here.
fn jwt_signing_input(token: &str) -> Option<&str> {
    let (signing_input, _signature) = token.rsplit_once('.')?;
    let (header, payload) = signing_input.split_once('.')?;
    if payload.contains('.') || header.is_empty() || payload.is_empty() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes).ok()?;
    Some(signing_input)
}

/// The `iss` and `jti` of a JWT, read without verifying: call only on tokens a provider accepted.
fn jwt_iss_jti(token: &str) -> Option<(Option<String>, Option<String>)> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    #[derive(Deserialize)]
    struct Ids {
        #[serde(default)]
        iss: Option<serde_json::Value>,
        #[serde(default)]
        jti: Option<serde_json::Value>,
    }
    let ids = serde_json::from_slice::<Ids>(&bytes).ok()?;
    let text = |v: Option<serde_json::Value>| match v? {
        serde_json::Value::String(s) => Some(s),
        // Some issuers write numeric IDs; the list holds them as text.
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Some((text(ids.iss), text(ids.jti)))
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp { modified: m.modified().ok(), len: m.len() })
}

#[derive(Default)]
struct FileState {
    loaded: Option<Stamp>,
    /// The last failure logged, so a broken file is reported once per version.
    reported: Option<(Option<Stamp>, String)>,
}

struct Inner {
    path: Option<PathBuf>,
    list: RwLock<Arc<RevokedList>>,
    state: Mutex<FileState>,
    reload_interval: Duration,
}

/// Whether the last look at the file changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reload {
    /// The file has not changed since the last look.
    Unchanged,
    /// The file changed and its new list is in force.
    Reloaded,
    /// The file is unreadable or invalid; the previous list stays in force.
    Failed,
}

impl Inner {
    fn current(&self) -> Arc<RevokedList> {
        self.list.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn check_file(&self) -> Reload {
        let Some(path) = &self.path else { return Reload::Unchanged };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = stamp_of(path);
        if stamp.is_some() && stamp == state.loaded {
            return Reload::Unchanged;
        }
        match read_list(path) {
            Ok(list) => {
                let (jtis, hashes) = (list.jti_count(), list.hash_count());
                *self.list.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
                state.loaded = stamp;
                state.reported = None;
                metrics::counter!("tokengate_revocation_reloads_total", "result" => "ok").increment(1);
                tracing::info!(file = %path.display(), jti = jtis, token_sha256 = hashes, "revocation list reloaded");
                Reload::Reloaded
            }
            Err(message) => {
                let failure = (stamp, message);
                if state.reported.as_ref() != Some(&failure) {
                    metrics::counter!("tokengate_revocation_reloads_total", "result" => "error").increment(1);
                    let kept = self.current();
                    tracing::error!(
                        error = %failure.1,
                        jti_in_force = kept.jti_count(),
                        token_sha256_in_force = kept.hash_count(),
                        "revocation file is invalid; keeping the list loaded before"
                    );
                    state.reported = Some(failure);
                }
                Reload::Failed
            }
        }
    }
}

/// The revocation check: a reloading file and, optionally, a shared store. Cheap to clone.
#[derive(Clone)]
pub struct Revocation {
    inner: Arc<Inner>,
    shared: Option<Arc<dyn RevocationStore>>,
    on_store_error: OnStoreError,
    /// Under [`OnStoreError::Deny`], the oldest copy still trusted.
    max_staleness: Duration,
    watcher: Arc<Poller>,
}

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = self.inner.current();
        f.debug_struct("Revocation")
            .field("file", &self.inner.path)
            .field("jti", &list.jti_count())
            .field("token_sha256", &list.hash_count())
            .field("shared_store", &self.shared.is_some())
            .field("on_store_error", &self.on_store_error)
            .field("max_staleness", &self.max_staleness)
            .finish()
    }
}

impl Revocation {
    /// Loads `file` now (the first load must succeed: there is no old list to
    /// fall back on) and re-reads it every `reload_interval` once a tokio
    /// runtime is running.
    pub fn from_file(file: impl Into<PathBuf>, reload_interval: Duration) -> Result<Self, String> {
        if reload_interval.is_zero() {
            return Err("reload_interval must be longer than 0s".into());
        }
        let path = file.into();
        // The stamp is taken before reading so a write racing this read is picked up by the first poll.
        let stamp = stamp_of(&path);
        let list = read_list(&path)?;
        Ok(Revocation {
            inner: Arc::new(Inner {
                path: Some(path),
                list: RwLock::new(Arc::new(list)),
                state: Mutex::new(FileState { loaded: stamp, reported: None }),
                reload_interval,
            }),
            shared: None,
            on_store_error: OnStoreError::default(),
            max_staleness: Duration::MAX,
            watcher: Arc::new(Poller::default()),
        })
    }

    /// From the config section; `base_dir` resolves a relative `file`.
    pub fn from_config(config: &RevocationConfig, base_dir: Option<&Path>) -> Result<Self, String> {
        let path = match base_dir {
            Some(base) if config.file.is_relative() => base.join(&config.file),
            _ => config.file.clone(),
        };
        Self::from_file(path, config.reload_interval)
    }

    /// No local list: only a shared store (added with [`Revocation::with_shared_store`]) decides.
    pub fn without_file() -> Self {
        Revocation {
            inner: Arc::new(Inner {
                path: None,
                list: RwLock::new(Arc::new(RevokedList::default())),
                state: Mutex::new(FileState::default()),
                reload_interval: default_reload_interval(),
            }),
            shared: None,
            on_store_error: OnStoreError::default(),
            max_staleness: Duration::MAX,
            watcher: Arc::new(Poller::default()),
        }
    }

    /// Also consults `store`; a token is revoked when either says so. When
    /// the store's copy cannot be trusted, `on_error` decides.
    pub fn with_shared_store(mut self, store: Arc<dyn RevocationStore>, on_error: OnStoreError) -> Self {
        self.shared = Some(store);
        self.on_store_error = on_error;
        self
    }

    /// Under [`OnStoreError::Deny`], refuses tokens once the store's copy is
    /// older than `max_staleness` (no effect under the other modes).
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// Err while a shared store has never loaded its copy and tokens would be
    /// refused for it (every mode but [`OnStoreError::Allow`]): orchestrators
    /// then keep traffic away from this replica.
    pub fn ready(&self) -> Result<(), AuthError> {
        match &self.shared {
            Some(store) if self.on_store_error != OnStoreError::Allow && !store.is_loaded() => {
                Err(AuthError::unavailable("the shared revocation list has not been loaded from Redis yet"))
            }
            _ => Ok(()),
        }
    }

    /// The list in force.
    pub fn list(&self) -> Arc<RevokedList> {
        self.inner.current()
    }

    /// Looks at the file now instead of waiting for the poller (blocking file I/O).
    pub fn reload_now(&self) -> Reload {
        self.inner.check_file()
    }

    /// `Err(invalid_token "token has been revoked")` when `token` is revoked;
    /// `Err(unavailable)` when the shared store's copy cannot be trusted
    /// under [`OnStoreError`]. Call only for tokens a provider accepted.
    pub async fn check(&self, token: &str) -> Result<(), AuthError> {
        self.ensure_watcher();
        let list = self.inner.current();
        let shared = self.shared.as_ref();
        // Hashing and decoding cost; do each only when it could matter.
        if shared.is_none() && list.hash_count() == 0 && list.jti_count() == 0 {
            return Ok(());
        }
        let ids = TokenIds::of(token);
        if list.contains(&ids) {
            return Err(revoked());
        }
        let Some(store) = shared else { return Ok(()) };
        let refusal = match store.lookup(&ids, FIRST_LOAD_WAIT).await {
            StoreAnswer::Revoked => return Err(revoked()),
            StoreAnswer::NotRevoked { age }
                if self.on_store_error == OnStoreError::Deny && age > self.max_staleness =>
            {
                format!(
                    "this replica's copy of the shared revocation list was last read from Redis {}s ago, \
                     longer than redis.max_staleness ({}) allows under on_store_error: deny",
                    age.as_secs(),
                    humantime::format_duration(self.max_staleness)
                )
            }
            StoreAnswer::NotRevoked { .. } => return Ok(()),
            StoreAnswer::NeverLoaded { .. } if self.on_store_error == OnStoreError::Allow => {
                metrics::counter!("tokengate_revocation_store_errors_total").increment(1);
                return Ok(());
            }
            StoreAnswer::NeverLoaded { why } => format!(
                "this replica has not loaded the shared revocation list from Redis yet ({why}); \
                 refused under redis.on_store_error: {}",
                if self.on_store_error == OnStoreError::Deny { "deny" } else { "last_known" }
            ),
        };
        metrics::counter!("tokengate_revocation_store_errors_total").increment(1);
        Err(AuthError::unavailable(refusal).with_retry_after(Duration::from_secs(1)))
    }

    /// Stops watching the file.
    pub fn close(&self) {
        self.watcher.close();
    }

    /// Starts the file poller when there is a file, a runtime, and no poller.
    ///
    /// Called on every check, not once: a poller dies with the runtime it was
    /// spawned on (a config built by one runtime and served by another).
    fn ensure_watcher(&self) {
        if self.inner.path.is_some() {
            // Weak, so a dropped checker stops its poller too.
            self.watcher.ensure(&self.inner, self.inner.reload_interval, |inner| {
                inner.check_file();
            });
        }
    }
}

fn revoked() -> AuthError {
    AuthError::invalid_token(REVOKED).because(tokengate_api::Reason::Revoked)
}

#[cfg(test)]
mod tests;
