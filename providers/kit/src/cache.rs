//! Cache for results of remote validation (introspection, custom, GitHub).
//!
//! Keyed by the token's identity ([`crate::token_identity`], a SHA-256), never
//! the token: a JWS and its re-encoded or ECDSA-malleated twins share one entry. A positive entry lives
//! `min(ttl, token's remaining lifetime)` and is not extended by hits; rejected
//! tokens are remembered for a short `negative_ttl`; concurrent requests with
//! the same token share one upstream call (moka's `try_get_with` coalesces them).
//!
//! With a [`SharedResultStore`] (Redis, when configured) positive results are
//! also shared by replicas: a local miss looks there, inside the single-flight
//! load, before calling upstream, and an upstream success is written there with
//! the same TTL. Rejections stay local: a shared negative entry would let one
//! replica's transient view refuse a token everywhere.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokengate_api::{AuthError, BuildContext, ErrorKind, Principal, SharedResultStore, SharedResults, TokenHash};

/// SHA-256 of a token's bytes. Whatever asks "is this the same token?" asks
/// [`crate::token_identity`] instead; this is for secrets compared by their
/// exact bytes (API keys).
pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// `(token_hash(token), token_hash(&token[..prefix_len]))`, the shared bytes
/// hashed once (SHA-256 reads its input in order, so the prefix's state is
/// where the whole token's hashing stands after it). A JWT's digest and its
/// signing input's are what revocation looks up; `None` for the second when
/// `prefix_len` is not a char boundary of `token`.
pub fn token_and_prefix_hash(token: &str, prefix_len: usize) -> (TokenHash, Option<TokenHash>) {
    let (Some(prefix), Some(rest)) = (token.get(..prefix_len), token.get(prefix_len..)) else {
        return (token_hash(token), None);
    };
    let mut hasher = Sha256::new();
    hasher.update(prefix.as_bytes());
    let prefix_digest = hasher.clone().finalize().into();
    hasher.update(rest.as_bytes());
    (hasher.finalize().into(), Some(prefix_digest))
}

/// A cache key for a verdict that depends on the request as well as the
/// token (`custom`, whose endpoint sees the path): SHA-256 over the token's
/// identity and each part, every part length-prefixed so no two inputs share
/// a key.
pub fn request_key(token: &str, parts: &[&str]) -> TokenHash {
    let mut hasher = Sha256::new();
    // v2: the token by its identity (issue #21), so its twins share the key.
    hasher.update(b"tokengate-request-key-v2\0");
    hasher.update(crate::token_identity(token));
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// `cache:` in a provider's config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Turn result caching off entirely (default on).
    #[serde(default = "crate::defaults::on")]
    pub enabled: bool,
    /// Longest a successful result is reused (default 60s); never beyond the token's `exp`.
    #[serde(default = "default_ttl", with = "crate::duration")]
    pub ttl: Duration,
    /// How long a rejected token is remembered (default 5s; 0 turns it off).
    #[serde(default = "default_negative_ttl", with = "crate::duration")]
    pub negative_ttl: Duration,
    /// Most entries kept (default 10,000 positive and as many negative).
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
}

fn default_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_max_entries() -> u64 {
    10_000
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl: default_ttl(),
            negative_ttl: default_negative_ttl(),
            max_entries: default_max_entries(),
        }
    }
}

impl CacheConfig {
    /// No caching at all: every call asks upstream.
    pub fn disabled() -> Self {
        CacheConfig { enabled: false, ..Default::default() }
    }
}

/// What a remote validation yields: the principal and, when the service said so, its expiry.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Who the token belongs to.
    pub principal: Principal,
    /// When the token stops being valid (`exp`); the cache keeps the result no longer.
    pub expires_at: Option<SystemTime>,
}

#[derive(Clone)]
struct Entry<T> {
    value: T,
    ttl: Duration,
}

struct PerEntryTtl;

impl<T> moka::Expiry<TokenHash, Entry<T>> for PerEntryTtl {
    fn expire_after_create(&self, _key: &TokenHash, value: &Entry<T>, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct RemoteResultCache {
    config: CacheConfig,
    positive: Option<moka::future::Cache<TokenHash, Entry<Principal>>>,
    negative: Option<moka::future::Cache<TokenHash, Entry<AuthError>>>,
    shared: Option<Shared>,
}

/// The shared store and this provider's scope in it.
#[derive(Clone)]
struct Shared {
    store: Arc<dyn SharedResultStore>,
    scope: Arc<str>,
}

impl Shared {
    /// A usable entry, or `None` for a miss, a store failure (the store logged
    /// and counted it) or an entry this version cannot read.
    async fn lookup(&self, key: &TokenHash, max_ttl: Duration) -> Option<Entry<Principal>> {
        let hit = match self.store.get(&self.scope, key).await {
            Ok(Some(hit)) => hit,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "shared result store failed; asking upstream");
                return None;
            }
        };
        let ttl = hit.ttl.map_or(max_ttl, |t| t.min(max_ttl));
        if ttl.is_zero() {
            return None;
        }
        match serde_json::from_slice::<Principal>(&hit.value) {
            Ok(principal) => Some(Entry { value: principal, ttl }),
            Err(e) => {
                tracing::debug!(error = %e, "unreadable shared result; asking upstream");
                None
            }
        }
    }

    async fn store(&self, key: &TokenHash, entry: &Entry<Principal>) {
        // Redis `PX` wants at least 1ms; shorter-lived results are not worth sharing.
        if entry.ttl < Duration::from_millis(1) {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(&entry.value) else { return };
        if let Err(e) = self.store.put(&self.scope, key, bytes, entry.ttl).await {
            tracing::debug!(error = %e, "could not share a result; it stays local");
        }
    }
}

impl RemoteResultCache {
    /// A cache as `config` says (entirely off when `config.enabled` is false).
    pub fn new(config: &CacheConfig) -> Self {
        let build = |ttl: Duration| config.enabled && !ttl.is_zero() && config.max_entries > 0;
        RemoteResultCache {
            config: config.clone(),
            positive: build(config.ttl).then(|| {
                moka::future::Cache::builder().max_capacity(config.max_entries).expire_after(PerEntryTtl).build()
            }),
            negative: build(config.negative_ttl).then(|| {
                moka::future::Cache::builder().max_capacity(config.max_entries).expire_after(PerEntryTtl).build()
            }),
            shared: None,
        }
    }

    /// Shares positive results through the store in `ctx` (Redis, when
    /// configured), under the provider's scope that the registry set.
    ///
    /// No-op when `ctx` has no store or no scope (a provider built outside the
    /// registry cannot be told apart from others), and when the positive cache
    /// is off: a provider whose verdict depends on the request must not reuse
    /// results, locally or otherwise.
    pub fn with_shared(mut self, ctx: &BuildContext) -> Self {
        if let (Some(SharedResults(store)), Some(scope), true) =
            (&ctx.shared_results, &ctx.shared_scope, self.positive.is_some())
        {
            self.shared = Some(Shared { store: store.clone(), scope: Arc::from(scope.as_str()) });
        }
        self
    }

    /// Whether results are shared with other replicas.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Returns the cached result for `token`, or runs `validate` once for all
    /// concurrent callers with the same token and caches its outcome.
    pub async fn get_or_validate<F, Fut>(&self, token: &str, validate: F) -> Result<Principal, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Validated, AuthError>>,
    {
        self.get_or_validate_key(crate::token_identity(token), validate).await
    }

    /// [`RemoteResultCache::get_or_validate`] under a key the caller computed
    /// (see [`request_key`]); never the token itself.
    pub async fn get_or_validate_key<F, Fut>(&self, key: TokenHash, validate: F) -> Result<Principal, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Validated, AuthError>>,
    {
        if let Some(negative) = &self.negative {
            if let Some(hit) = negative.get(&key).await {
                metrics::counter!("tokengate_result_cache_total", "result" => "negative_hit").increment(1);
                return Err(hit.value);
            }
        }
        let Some(positive) = &self.positive else {
            return validate().await.map(|v| v.principal);
        };
        let ttl = self.config.ttl;
        let mut loaded = false;
        let mut from_shared = false;
        let outcome = positive
            .try_get_with(key, async {
                loaded = true;
                if let Some(shared) = &self.shared {
                    if let Some(entry) = shared.lookup(&key, ttl).await {
                        from_shared = true;
                        return Ok(entry);
                    }
                }
                let v = validate().await?;
                let ttl = match v.expires_at {
                    Some(at) => at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).min(ttl),
                    None => ttl,
                };
                let entry = Entry { value: v.principal, ttl };
                if let Some(shared) = &self.shared {
                    shared.store(&key, &entry).await;
                }
                Ok::<_, AuthError>(entry)
            })
            .await;
        let result = match (loaded, from_shared) {
            (false, _) => "hit",
            (true, true) => "shared_hit",
            (true, false) => "miss",
        };
        metrics::counter!("tokengate_result_cache_total", "result" => result).increment(1);
        match outcome {
            Ok(entry) => Ok(entry.value),
            Err(shared) => {
                let err: AuthError = Arc::unwrap_or_clone(shared);
                if err.kind() == ErrorKind::InvalidToken {
                    if let Some(negative) = &self.negative {
                        negative.insert(key, Entry { value: err.clone(), ttl: self.config.negative_ttl }).await;
                    }
                }
                Err(err)
            }
        }
    }

    /// Drops whatever is cached for `token` and its twins (revocation).
    pub async fn forget(&self, token: &str) {
        let key = crate::token_identity(token);
        if let Some(p) = &self.positive {
            p.invalidate(&key).await;
        }
        if let Some(n) = &self.negative {
            n.invalidate(&key).await;
        }
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.store.remove(&shared.scope, &key).await {
                tracing::debug!(error = %e, "could not drop a shared result");
            }
        }
    }
}

#[cfg(test)]
mod tests;
