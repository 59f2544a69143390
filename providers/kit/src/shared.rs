//! Scoping of the second-level store for remote results, shared by every
//! replica (Redis in the `tokengate` crate), so an introspection answer
//! fetched by one replica serves them all.
//!
//! The store's trait ([`SharedResultStore`](tokengate_api::SharedResultStore))
//! and the handle [`BuildContext`] carries are part of the contract
//! (`tokengate-api`); what needs a hash function is here: the scope that
//! keeps one provider's results from another's. The
//! [`RemoteResultCache`](crate::RemoteResultCache) asks the store only on a
//! local miss, inside its single-flight load, and never lets it decide a
//! rejection: a store that fails or answers nonsense is a miss, and the
//! upstream is asked.

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokengate_api::BuildContext;

/// `ctx` for the provider built from `section` (its `type` is `type_name`):
/// when `ctx` carries a shared store, the provider's results get their own
/// [`shared_scope`], so providers with different configs never serve each
/// other's results. The registry calls this for every provider it builds.
pub fn for_section(ctx: &BuildContext, type_name: &str, section: &Value) -> BuildContext {
    let mut ctx = ctx.clone();
    if ctx.shared_results.is_some() {
        ctx.shared_scope = Some(shared_scope(type_name, section));
    }
    ctx
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
