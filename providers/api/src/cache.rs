//! Cache for results of remote validation (introspection, custom, GitHub).
//!
//! Keyed by SHA-256 of the token, never the token. A positive entry lives
//! `min(ttl, token's remaining lifetime)` and is not extended by hits; rejected
//! tokens are remembered for a short `negative_ttl`; concurrent requests with
//! the same token share one upstream call (moka's `try_get_with` coalesces them).

use crate::{AuthError, ErrorKind, Principal};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// SHA-256 of a token: what caches, logs and revocation lists hold instead of it.
pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// `cache:` in a provider's config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Turn result caching off entirely (default on).
    #[serde(default = "default_true")]
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

fn default_true() -> bool {
    true
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
    pub fn disabled() -> Self {
        CacheConfig { enabled: false, ..Default::default() }
    }
}

/// What a remote validation yields: the principal and, when the service said so, its expiry.
#[derive(Debug, Clone)]
pub struct Validated {
    pub principal: Principal,
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
}

impl RemoteResultCache {
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
        }
    }

    /// Returns the cached result for `token`, or runs `validate` once for all
    /// concurrent callers with the same token and caches its outcome.
    pub async fn get_or_validate<F, Fut>(&self, token: &str, validate: F) -> Result<Principal, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Validated, AuthError>>,
    {
        let key = token_hash(token);
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
        let outcome = positive
            .try_get_with(key, async {
                loaded = true;
                let v = validate().await?;
                let ttl = match v.expires_at {
                    Some(at) => at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).min(ttl),
                    None => ttl,
                };
                Ok::<_, AuthError>(Entry { value: v.principal, ttl })
            })
            .await;
        metrics::counter!("tokengate_result_cache_total", "result" => if loaded { "miss" } else { "hit" }).increment(1);
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

    /// Drops whatever is cached for `token` (revocation).
    pub async fn forget(&self, token: &str) {
        let key = token_hash(token);
        if let Some(p) = &self.positive {
            p.invalidate(&key).await;
        }
        if let Some(n) = &self.negative {
            n.invalidate(&key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ok(name: &str, expires_in: Option<Duration>) -> Result<Validated, AuthError> {
        Ok(Validated { principal: Principal::new(name), expires_at: expires_in.map(|d| SystemTime::now() + d) })
    }

    #[tokio::test]
    async fn single_flight_and_hits() {
        let cache = RemoteResultCache::new(&CacheConfig::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let cache = cache.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_validate("tok", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        ok("alice", None)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().principal, "alice");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn ttl_never_beyond_exp() {
        let cache = RemoteResultCache::new(&CacheConfig::default());
        let calls = AtomicUsize::new(0);
        for _ in 0..2 {
            cache
                .get_or_validate("short", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    ok("bob", Some(Duration::from_millis(150)))
                })
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "second call within exp is a hit");
        tokio::time::sleep(Duration::from_millis(300)).await;
        cache
            .get_or_validate("short", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                ok("bob", Some(Duration::from_secs(60)))
            })
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "entry expired with the token");
    }

    #[tokio::test]
    async fn rejected_tokens_are_remembered_but_outages_are_not() {
        let cache = RemoteResultCache::new(&CacheConfig::default());
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            let e = cache
                .get_or_validate("bad", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(AuthError::invalid_token("inactive"))
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), "invalid_token");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        for _ in 0..3 {
            let _ = cache
                .get_or_validate("down", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(AuthError::unavailable("500"))
                })
                .await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4, "unavailable results are never cached");
    }

    #[tokio::test]
    async fn disabled_cache_always_calls() {
        let cache = RemoteResultCache::new(&CacheConfig::disabled());
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            cache
                .get_or_validate("t", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    ok("c", None)
                })
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
