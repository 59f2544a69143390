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

/// (scope, token hash) → (value, ttl).
type FakeEntries = std::collections::HashMap<(String, TokenHash), (Vec<u8>, Duration)>;

/// An in-memory stand-in for Redis: counts calls, can be made to fail.
#[derive(Default)]
struct FakeStore {
    entries: std::sync::Mutex<FakeEntries>,
    failing: std::sync::atomic::AtomicBool,
    puts: AtomicUsize,
}

#[async_trait::async_trait]
impl SharedResultStore for FakeStore {
    async fn get(&self, scope: &str, token: &TokenHash) -> Result<Option<tokengate_api::SharedHit>, String> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("down".into());
        }
        let entries = self.entries.lock().map_err(|_| "poisoned".to_string())?;
        Ok(entries
            .get(&(scope.to_string(), *token))
            .map(|(value, ttl)| tokengate_api::SharedHit { value: value.clone(), ttl: Some(*ttl) }))
    }
    async fn put(&self, scope: &str, token: &TokenHash, value: Vec<u8>, ttl: Duration) -> Result<(), String> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("down".into());
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.entries.lock().map_err(|_| "poisoned".to_string())?.insert((scope.to_string(), *token), (value, ttl));
        Ok(())
    }
}

fn shared_ctx(store: &Arc<FakeStore>, scope: &str) -> BuildContext {
    BuildContext {
        shared_results: Some(SharedResults(store.clone())),
        shared_scope: Some(scope.to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn replicas_share_positive_results_only() {
    let store = Arc::new(FakeStore::default());
    let a = RemoteResultCache::new(&CacheConfig::default()).with_shared(&shared_ctx(&store, "s"));
    let b = RemoteResultCache::new(&CacheConfig::default()).with_shared(&shared_ctx(&store, "s"));
    assert!(a.is_shared());
    let calls = AtomicUsize::new(0);
    let upstream = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        ok("alice", Some(Duration::from_secs(30)))
    };
    assert_eq!(a.get_or_validate("tok", upstream).await.unwrap().principal, "alice");
    assert_eq!(b.get_or_validate("tok", upstream).await.unwrap().principal, "alice");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "replica b was served by the store");
    let stored = store.entries.lock().unwrap().get(&("s".to_string(), token_hash("tok"))).unwrap().1;
    assert!(stored <= Duration::from_secs(30), "shared ttl bounded by exp: {stored:?}");

    let rejecting = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(AuthError::invalid_token("inactive"))
    };
    a.get_or_validate("bad", rejecting).await.unwrap_err();
    b.get_or_validate("bad", rejecting).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "rejections are not shared");
    assert_eq!(store.puts.load(Ordering::SeqCst), 1);

    // Another provider (another scope) never sees this one's results.
    let other = RemoteResultCache::new(&CacheConfig::default()).with_shared(&shared_ctx(&store, "t"));
    other.get_or_validate("tok", upstream).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_failing_store_falls_through_to_upstream() {
    let store = Arc::new(FakeStore::default());
    store.failing.store(true, Ordering::SeqCst);
    let cache = RemoteResultCache::new(&CacheConfig::default()).with_shared(&shared_ctx(&store, "s"));
    let calls = AtomicUsize::new(0);
    let p = cache
        .get_or_validate("tok", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            ok("alice", None)
        })
        .await
        .unwrap();
    assert_eq!(p.principal, "alice");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn garbage_in_the_store_is_a_miss() {
    let store = Arc::new(FakeStore::default());
    store.put("s", &token_hash("tok"), b"not json".to_vec(), Duration::from_secs(60)).await.unwrap();
    let cache = RemoteResultCache::new(&CacheConfig::default()).with_shared(&shared_ctx(&store, "s"));
    let p = cache.get_or_validate("tok", || async { ok("alice", None) }).await.unwrap();
    assert_eq!(p.principal, "alice");
}

#[test]
fn no_sharing_without_scope_or_without_a_positive_cache() {
    let store = Arc::new(FakeStore::default());
    let mut ctx = shared_ctx(&store, "s");
    assert!(!RemoteResultCache::new(&CacheConfig::disabled()).with_shared(&ctx).is_shared());
    ctx.shared_scope = None;
    assert!(!RemoteResultCache::new(&CacheConfig::default()).with_shared(&ctx).is_shared());
    assert!(!RemoteResultCache::new(&CacheConfig::default()).with_shared(&BuildContext::default()).is_shared());
    let scoped = crate::for_section(&ctx, "custom", &serde_json::json!({"endpoint": "http://x"}));
    assert!(RemoteResultCache::new(&CacheConfig::default()).with_shared(&scoped).is_shared());
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

/// Issue #21: a JWT checked remotely (introspection, custom, Kubernetes) and
/// its twins (the other ECDSA S, a padded signature) are one token: one
/// upstream call, one entry, and forgetting one forgets them all. Another
/// signature over the same claims is another token.
#[tokio::test]
async fn twins_of_a_token_share_one_entry() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!("{}.{}", b64(br#"{"alg":"ES256"}"#), b64(br#"{"sub":"carol"}"#));
    let mut signature: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(41).wrapping_add(7)).collect();
    signature[32] = 0x21; // low S
    let token = format!("{input}.{}", b64(&signature));
    let twins = [crate::ecdsa::flip_s(&token).unwrap(), format!("{token}==")];
    let cache = RemoteResultCache::new(&CacheConfig::default());
    let calls = AtomicUsize::new(0);
    let validate = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        ok("carol", None)
    };
    cache.get_or_validate(&token, validate).await.unwrap();
    for twin in &twins {
        assert_eq!(cache.get_or_validate(twin, validate).await.unwrap().principal, "carol");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the twins were answered from the token's entry");
    assert_eq!(request_key(&twins[0], &["GET", "/x"]), request_key(&token, &["GET", "/x"]));
    assert_ne!(request_key(&token, &["GET", "/y"]), request_key(&token, &["GET", "/x"]));

    cache.forget(&twins[0]).await;
    cache.get_or_validate(&token, validate).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "forgetting a twin forgot the token");

    let mut other = signature.clone();
    other[0] ^= 1;
    cache.get_or_validate(&format!("{input}.{}", b64(&other)), validate).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "another signature is another token");
}
