//! A second-level store for remote results, shared by every replica (Redis in
//! the `tokengate` crate), so an introspection answer fetched by one replica
//! serves them all.
//!
//! The [`RemoteResultCache`](crate::RemoteResultCache) asks it only on a local
//! miss, inside its single-flight load, and never lets it decide a rejection:
//! a store that fails or answers nonsense is a miss, and the upstream is asked.

use crate::TokenHash;
use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    pub fn new(store: impl SharedResultStore) -> Self {
        SharedResults(Arc::new(store))
    }
}

impl fmt::Debug for SharedResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedResults")
    }
}

/// The scope of one provider's shared results: a short hash of its type and
/// config section.
///
/// Why: two providers in one deployment (a chain, or two `custom` endpoints)
/// see the same token bytes but may give different answers, so a result one
/// validated must never be served to the other; replicas built from the same
/// config get the same scope and do share. Values under keys that name
/// secrets or passwords are left out so the hash is of no help in guessing
/// them; object keys are sorted so the file's key order does not matter.
pub fn shared_scope(type_name: &str, section: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"tokengate-shared-scope-v1\0");
    hasher.update(type_name.as_bytes());
    hasher.update(b"\0");
    hash_canonical(&mut hasher, section);
    let digest = hasher.finalize();
    // 64 bits tell a deployment's handful of providers apart; shorter keys are cheaper.
    hex::encode(&digest[..8])
}

fn hash_canonical(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for key in keys {
                hasher.update(serde_json::to_string(key).unwrap_or_default().as_bytes());
                hasher.update(b":");
                if is_secret_name(key) {
                    hasher.update(b"<redacted>");
                } else if let Some(v) = map.get(key) {
                    hash_canonical(hasher, v);
                }
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                hash_canonical(hasher, item);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        // Scalars print canonically (strings escaped, so no two values collide).
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

fn is_secret_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("secret") || key.contains("password")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scope_ignores_key_order_and_secrets_but_not_endpoints() {
        let a = shared_scope("custom", &json!({"endpoint": "http://a", "cache": {"ttl": "60s", "enabled": true}}));
        let b = shared_scope("custom", &json!({"cache": {"enabled": true, "ttl": "60s"}, "endpoint": "http://a"}));
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        assert_ne!(
            a,
            shared_scope("custom", &json!({"endpoint": "http://b", "cache": {"ttl": "60s", "enabled": true}}))
        );
        assert_ne!(
            a,
            shared_scope("github_token", &json!({"endpoint": "http://a", "cache": {"ttl": "60s", "enabled": true}}))
        );
        let s1 = shared_scope("oauth2_token", &json!({"introspection": {"url": "u", "client_secret": "one"}}));
        let s2 = shared_scope("oauth2_token", &json!({"introspection": {"url": "u", "client_secret": "two"}}));
        assert_eq!(s1, s2, "secrets do not feed the hash");
    }
}
