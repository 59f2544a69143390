//! The contract side of the second-level store for remote results, shared by
//! every replica (Redis in the `tokengate` crate), so an introspection answer
//! fetched by one replica serves them all.
//!
//! Only the trait and the handle [`BuildContext`](crate::BuildContext)
//! carries live here, in std and async-trait types; the cache that consults
//! the store and the scope hash are in `tokengate-kit`
//! (`RemoteResultCache::with_shared`, `shared_scope`, `for_section`). The
//! cache asks the store only on a local miss, inside its single-flight load,
//! and never lets it decide a rejection: a store that fails or answers
//! nonsense is a miss, and the upstream is asked.

use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// SHA-256 of a token: what caches, logs and revocation lists hold instead of it
/// (computed by `tokengate_kit::token_hash`).
pub type TokenHash = [u8; 32];

/// What [`SharedResultStore::get`] found.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedHit {
    /// The bytes given to `put`.
    pub value: Vec<u8>,
    /// How long the entry has left, as the store counts it (`None`: no expiry
    /// set, e.g. written by hand); the reader bounds it by its own `cache.ttl`.
    pub ttl: Option<Duration>,
}

impl fmt::Debug for SharedHit {
    // The value is a principal: who someone is does not belong in stray debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedHit").field("bytes", &self.value.len()).field("ttl", &self.ttl).finish()
    }
}

/// Remote results shared across replicas, keyed by `scope` (which provider
/// config produced the result) and the token's SHA-256 — never the token.
///
/// Implementations bound every call in time, and count and log their own
/// failures (they know what failed); callers treat `Err` as a miss.
#[async_trait]
pub trait SharedResultStore: Send + Sync + 'static {
    /// The entry for `token` under `scope`; `Ok(None)` when there is none.
    async fn get(&self, scope: &str, token: &TokenHash) -> Result<Option<SharedHit>, String>;

    /// Stores `value` for `ttl` (always more than zero).
    async fn put(&self, scope: &str, token: &TokenHash, value: Vec<u8>, ttl: Duration) -> Result<(), String>;

    /// Drops the entry (a token forgotten locally should not come back from the store).
    async fn remove(&self, _scope: &str, _token: &TokenHash) -> Result<(), String> {
        Ok(())
    }
}

/// A shared store as carried in [`BuildContext`](crate::BuildContext): `Debug`
/// without requiring it of implementations.
#[derive(Clone)]
pub struct SharedResults(pub Arc<dyn SharedResultStore>);

impl SharedResults {
    /// Wraps `store` for [`BuildContext::shared_results`](crate::BuildContext::shared_results).
    pub fn new(store: impl SharedResultStore) -> Self {
        SharedResults(Arc::new(store))
    }
}

impl fmt::Debug for SharedResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedResults")
    }
}
