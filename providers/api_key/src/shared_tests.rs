//! `keys_from: redis` and `usage_store: redis` against an in-memory
//! [`SharedKeyStore`]: what the provider makes of the shared entries.

use super::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokengate_api::{ErrorKind, KeyUse, SharedKeyStore};

#[derive(Default)]
struct FakeStore {
    generation: AtomicU64,
    entries: Mutex<Vec<(TokenHash, Arc<[u8]>)>>,
    loaded: AtomicBool,
    usage: Mutex<Vec<KeyUse>>,
    waits: AtomicU64,
    stale: AtomicBool,
}

impl FakeStore {
    fn put(&self, digest: TokenHash, entry: serde_json::Value) {
        let bytes: Arc<[u8]> = Arc::from(serde_json::to_vec(&entry).unwrap());
        let mut entries = self.entries.lock().unwrap();
        entries.retain(|(d, _)| *d != digest);
        entries.push((digest, bytes));
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// The store as the provider gets it; the test keeps the other handle.
struct Shared(Arc<FakeStore>);

#[async_trait]
impl SharedKeyStore for Shared {
    fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::SeqCst)
    }
    fn entries(&self) -> Vec<(TokenHash, Arc<[u8]>)> {
        self.0.entries.lock().unwrap().clone()
    }
    fn is_loaded(&self) -> bool {
        self.0.loaded.load(Ordering::SeqCst)
    }
    async fn wait_loaded(&self) -> bool {
        self.0.waits.fetch_add(1, Ordering::SeqCst);
        self.is_loaded()
    }
    fn last_failure(&self) -> String {
        "Redis at redis://10.0.0.1:6379/0 is unreachable".to_string()
    }
    fn too_stale(&self) -> Option<String> {
        self.0.stale.load(Ordering::SeqCst).then(|| "last read from Redis 12s ago".to_string())
    }
    async fn add_usage(&self, batch: &[KeyUse]) -> Result<(), String> {
        self.0.usage.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
}

fn shared_provider(store: &Arc<FakeStore>, config: serde_json::Value) -> Result<ApiKeyProvider, ConfigError> {
    let ctx = BuildContext { shared_keys: Some(SharedKeys::new(Shared(store.clone()))), ..Default::default() };
    ApiKeyProvider::from_config("api_key", parse_provider_config(config)?, &ctx)
}

fn ctx() -> RequestContext {
    RequestContext::new("GET", "/v1/models")
}

fn key_and_digest() -> (String, TokenHash, String) {
    let (key, hex) = generate_key("tg_").unwrap();
    (key.clone(), token_hash(&key), format!("sha256:{hex}"))
}

#[tokio::test]
async fn shared_entries_authenticate_and_changes_apply_at_the_next_generation() {
    let store = Arc::new(FakeStore::default());
    store.loaded.store(true, Ordering::SeqCst);
    let p = shared_provider(&store, json!({"prefix": "tg_", "keys_from": "redis"})).unwrap();
    let (key, digest, hash) = key_and_digest();
    assert!(p.validate(&key, &ctx()).await.is_err(), "not there yet");
    store.put(digest, json!({"id": "k1", "hash": hash, "principal": "ci-bot", "attributes": {"roles": ["dev"]}}));
    let principal = p.validate(&key, &ctx()).await.unwrap();
    assert_eq!((principal.principal.as_str(), principal.key_id()), ("ci-bot", Some("k1")));
    store.put(
        digest,
        json!({"id": "k1", "hash": hash, "principal": "ci-bot", "status": "suspended", "reason": "audit"}),
    );
    let e = p.validate(&key, &ctx()).await.unwrap_err();
    assert_eq!(*e.reason(), Reason::KeySuspended);
    assert!(e.to_string().contains("key suspended: audit"), "{e}");
}

#[tokio::test]
async fn a_shared_entry_under_another_keys_hash_a_bad_one_or_an_inline_one_is_left_out() {
    let store = Arc::new(FakeStore::default());
    store.loaded.store(true, Ordering::SeqCst);
    let (inline_key, inline_digest, inline_hash) = key_and_digest();
    let config = json!({"keys_from": "redis", "keys": [{"id": "inline", "hash": inline_hash, "principal": "ops"}]});
    let p = shared_provider(&store, config).unwrap();
    // Whoever writes Redis by hand cannot make a known key authenticate as someone else…
    let (victim, victim_digest, _) = key_and_digest();
    let (_, _, other_hash) = key_and_digest();
    store.put(victim_digest, json!({"hash": other_hash, "principal": "admin"}));
    // …nor override an inline key; and an entry that does not read locks nobody else out.
    store.put(inline_digest, json!({"hash": inline_hash, "principal": "admin"}));
    let (good, good_digest, good_hash) = key_and_digest();
    store.put(good_digest, json!({"hash": good_hash, "principal": "ci-bot"}));
    let (bad, bad_digest, bad_hash) = key_and_digest();
    store.put(bad_digest, json!({"hash": bad_hash, "principal": "x", "unknown_field": 1}));
    // An entry naming a real key's hash, stored under another name, after the real one.
    let (_, elsewhere, _) = key_and_digest();
    store.put(elsewhere, json!({"hash": good_hash, "principal": "admin"}));
    assert!(p.validate(&victim, &ctx()).await.is_err(), "an entry stored under a hash that is not its own");
    assert_eq!(p.validate(&inline_key, &ctx()).await.unwrap().principal, "ops", "the inline entry decides");
    assert_eq!(p.validate(&good, &ctx()).await.unwrap().principal, "ci-bot");
    assert!(p.validate(&bad, &ctx()).await.is_err());
}

#[tokio::test]
async fn before_the_first_load_an_unknown_key_is_unavailable_and_offline_refusals_do_not_wait() {
    let store = Arc::new(FakeStore::default());
    let (inline_key, _, inline_hash) = key_and_digest();
    let config = json!({"prefix": "tg_", "keys_from": "redis", "keys": [{"hash": inline_hash, "principal": "ops"}]});
    let p = shared_provider(&store, config).unwrap();
    let (key, _, _) = key_and_digest();
    let e = p.validate(&key, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(p.ready().await.is_err(), "not ready before the keys are loaded");
    assert_eq!(p.validate(&inline_key, &ctx()).await.unwrap().principal, "ops", "inline keys need no load");
    let waits = store.waits.load(Ordering::SeqCst);
    let mut typo = key.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'x' { 'y' } else { 'x' });
    assert_eq!(p.validate(&typo, &ctx()).await.unwrap_err().reason(), &Reason::Malformed);
    assert_eq!(p.validate("other_token", &ctx()).await.unwrap_err().kind(), ErrorKind::InvalidToken);
    assert_eq!(store.waits.load(Ordering::SeqCst), waits, "refused offline without waiting for Redis");
    store.loaded.store(true, Ordering::SeqCst);
    assert!(p.ready().await.is_ok());
}

#[tokio::test]
async fn shared_usage_is_counted_in_memory_and_added_per_flush() {
    let store = Arc::new(FakeStore::default());
    store.loaded.store(true, Ordering::SeqCst);
    let p = shared_provider(&store, json!({"keys_from": "redis", "usage_flush_interval": "1h"})).unwrap();
    let (key, digest, hash) = key_and_digest();
    store.put(digest, json!({"id": "k1", "hash": hash, "principal": "ci-bot"}));
    for _ in 0..3 {
        p.validate(&key, &ctx()).await.unwrap();
    }
    assert!(store.usage.lock().unwrap().is_empty(), "no write per request");
    p.close().await;
    let usage = store.usage.lock().unwrap().clone();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].key_id, "k1");
    assert_eq!(usage[0].per_day.iter().map(|(_, n)| n).sum::<u64>(), 3);
}

#[test]
fn keys_from_redis_is_refused_without_a_store_or_beside_a_key_file() {
    let ctx = BuildContext::default();
    let config = parse_provider_config::<ApiKeyConfig>(json!({"keys_from": "redis"})).unwrap();
    let e = ApiKeyProvider::from_config("api_key", config, &ctx).unwrap_err();
    assert_eq!(e.field, "keys_from");
    let config =
        parse_provider_config::<ApiKeyConfig>(json!({"keys": [], "usage_store": "redis", "keys_file": "k.yaml"}))
            .unwrap();
    let e = ApiKeyProvider::from_config("api_key", config, &ctx).unwrap_err();
    assert_eq!(e.field, "usage_store");
    let store = Arc::new(FakeStore::default());
    let e = shared_provider(&store, json!({"keys_from": "redis", "keys_file": "k.yaml"})).unwrap_err();
    assert_eq!(e.field, "keys_from");
}

#[tokio::test]
async fn a_copy_the_store_calls_too_stale_refuses_shared_keys_as_unavailable_and_not_inline_ones() {
    let store = Arc::new(FakeStore::default());
    store.loaded.store(true, Ordering::SeqCst);
    let (inline_key, _, inline_hash) = key_and_digest();
    let config = json!({"keys_from": "redis", "keys": [{"hash": inline_hash, "principal": "ops"}]});
    let p = shared_provider(&store, config).unwrap();
    let (key, digest, hash) = key_and_digest();
    store.put(digest, json!({"hash": hash, "principal": "ci-bot"}));
    assert!(p.validate(&key, &ctx()).await.is_ok());
    store.stale.store(true, Ordering::SeqCst);
    let e = p.validate(&key, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(p.validate(&inline_key, &ctx()).await.unwrap().principal, "ops", "inline keys need no Redis");
}
