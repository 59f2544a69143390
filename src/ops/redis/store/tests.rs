use super::*;
use crate::pipeline::revocation::OnStoreError;

fn parse(yaml: &str) -> Result<RedisConfig, ConfigError> {
    tokengate_api::parse_provider_config(yaml_serde::from_str::<serde_json::Value>(yaml).unwrap())
}

#[test]
fn defaults_and_unknown_fields() {
    let c = parse("url: redis://127.0.0.1:6379/0\n").unwrap();
    assert_eq!(c.key_prefix, "tokengate:");
    assert!(c.share_results);
    assert_eq!(c.command_timeout, Duration::from_millis(200));
    assert_eq!(c.connect_timeout, Duration::from_secs(1));
    let e = parse("url: redis://x\nprefix: a\n").unwrap_err();
    assert!(e.message.contains("unknown field"), "{e}");
    assert_eq!(c.on_store_error, OnStoreError::LastKnown, "the last-known list, never a 503 for an outage");
    assert_eq!((c.sync_interval, c.resync_interval), (Duration::from_millis(250), Duration::from_secs(300)));
    assert_eq!(c.max_staleness(), None);
    // Configs written before the copy existed keep loading, with the same words.
    assert_eq!(parse("url: redis://x\non_store_error: allow\n").unwrap().on_store_error, OnStoreError::Allow);
    let deny = parse("url: redis://x\non_store_error: deny\n").unwrap();
    assert_eq!(deny.max_staleness(), Some(super::super::DEFAULT_MAX_STALENESS));
    let deny = parse("url: redis://x\non_store_error: deny\nmax_staleness: 1m\nsync_interval: 1s\n").unwrap();
    assert_eq!((deny.max_staleness(), deny.sync_interval), (Some(Duration::from_secs(60)), Duration::from_secs(1)));
    assert_eq!(parse("url: redis://x\non_store_error: last_known\n").unwrap().on_store_error, OnStoreError::LastKnown);
    let e = parse("url: redis://x\non_store_error: ignore\n").unwrap_err();
    assert!(e.field.contains("on_store_error") && e.message.contains("allow"), "{e}");
    let c = parse("url: redis://x\ncommand_timeout: 50ms\nshare_results: false\nkey_prefix: \"app1:\"\n").unwrap();
    assert_eq!(c.command_timeout, Duration::from_millis(50));
    assert!(!c.share_results);
}

#[test]
fn passwords_never_show() {
    let c = RedisConfig::new("redis://user:hunter2@10.0.0.5:6379/1");
    assert!(!format!("{c:?}").contains("hunter2"));
    let store = RedisStore::new(&c, None).unwrap();
    assert!(!format!("{store:?}").contains("hunter2"));
    assert_eq!(store.url(), "redis://10.0.0.5:6379/1");
    for bad in ["http://:hunter2@x", "redis://:hunter2@", "not a url hunter2"] {
        let e = RedisStore::new(&RedisConfig::new(bad), None).unwrap_err();
        assert_eq!(e.field, "url");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
    assert_eq!(redacted_url("::hunter2"), "<unparseable URL>");
}

#[test]
fn keys_hold_hashes_not_tokens() {
    let mut c = RedisConfig::new("redis://127.0.0.1");
    c.key_prefix = "p:".into();
    let store = RedisStore::new(&c, None).unwrap();
    let hash = tokengate_kit::token_hash("secret-token");
    let hex_hash = hex::encode(hash);
    assert_eq!(store.result_key("abc", &hash), format!("p:result:abc:{hex_hash}"));
    assert_eq!(store.revocation_key(&RevokeTarget::TokenSha256(hash)), format!("p:revoked:sha256:{hex_hash}"));
    let jti = |issuer: Option<&str>, jti: &str| RevokeTarget::Jti { issuer: issuer.map(Into::into), jti: jti.into() };
    assert_eq!(store.revocation_key(&jti(None, "j1")), "p:revoked:jti:j1");
    assert_eq!(store.revocation_key(&jti(Some("https://a"), "j1")), "p:revoked:iss-jti:https://a#j1");
    // The issuer is escaped so that no two (iss, jti) pairs share a key, and a
    // bare jti never collides with a scoped one (another namespace).
    let (one, other) = (jti(Some("a#b"), "c"), jti(Some("a"), "b#c"));
    assert_ne!(store.revocation_key(&one), store.revocation_key(&other));
    assert_eq!(store.revocation_key(&one), "p:revoked:iss-jti:a%23b#c");
    assert_ne!(store.revocation_key(&jti(Some("a%23b"), "c")), store.revocation_key(&one));
}

#[test]
fn staleness_and_intervals_that_cannot_work_are_refused() {
    let refused = |yaml: &str| RedisStore::new(&parse(yaml).unwrap(), None).unwrap_err();
    let e = refused("url: redis://x\nmax_staleness: 30s\n");
    assert!(e.field == "max_staleness" && e.message.contains("on_store_error: deny"), "{e}");
    let e = refused("url: redis://x\non_store_error: allow\nmax_staleness: 30s\n");
    assert_eq!(e.field, "max_staleness");
    let e = refused("url: redis://x\non_store_error: deny\nmax_staleness: 200ms\n");
    assert!(e.field == "max_staleness" && e.message.contains("sync_interval"), "{e}");
    assert_eq!(refused("url: redis://x\nsync_interval: 0s\n").field, "sync_interval");
    assert_eq!(refused("url: redis://x\nsync_interval: 10s\nresync_interval: 5s\n").field, "resync_interval");
    let e = parse("url: redis://x\nmax_staleness: soon\n").unwrap_err();
    assert!(e.field.contains("max_staleness"), "{e}");
}

#[test]
fn bad_timeouts_and_prefix() {
    let mut c = RedisConfig::new("redis://127.0.0.1");
    c.command_timeout = Duration::ZERO;
    assert_eq!(RedisStore::new(&c, None).unwrap_err().field, "command_timeout");
    let mut c = RedisConfig::new("redis://127.0.0.1");
    c.key_prefix = "a\nb".into();
    assert_eq!(RedisStore::new(&c, None).unwrap_err().field, "key_prefix");
}

#[test]
fn warnings_are_rate_limited() {
    let h = Health::new();
    assert_eq!(h.may_warn(), Some(0));
    assert_eq!(h.may_warn(), None);
    assert_eq!(h.may_warn(), None);
    assert_eq!(h.held_back.load(Ordering::Relaxed), 2);
    assert!(!h.backing_off());
    h.back_off();
    assert!(h.backing_off());
}
