//! Issue #22 parts 2 and 3: API keys shared by every replica through a real
//! `redis-server` (`keys_from: redis`). `tokengate key …` run as the binary
//! with the same config stands for "another machine"; two pipelines built
//! from that config are two replicas, each with its own Redis connection and
//! copy of the keys. A key made, suspended or resumed there applies to both
//! within the lag; Redis killed leaves the last-known keys working; usage
//! from both replicas adds up in `key list`.

use crate::fixtures::{eventually, key_command, key_command_json, write};
use crate::redis::RedisServer;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokengate::{Config, ErrorKind, Pipeline, Registry, RequestContext};

/// What a change may take to reach a replica here: `sync_interval` (100ms)
/// plus a round trip, with room for a busy 2-core CI machine.
const LAG: Duration = Duration::from_secs(5);

fn config_text(redis: &RedisServer, prefix: &str) -> String {
    format!(
        "realm: test\n\
         redis: {{url: \"{}\", key_prefix: \"{prefix}\", sync_interval: 100ms}}\n\
         provider_config:\n  type: api_key\n  prefix: tg_\n  keys_from: redis\n  usage_flush_interval: 100ms\n",
        redis.url()
    )
}

/// One replica, and the requests it accepted (so usage can be checked exactly).
struct Replica {
    pipeline: Pipeline,
    accepted: AtomicU64,
}

impl Replica {
    fn new(config: &Config) -> Arc<Replica> {
        Arc::new(Replica { pipeline: config.build(&Registry::with_builtins()).unwrap(), accepted: AtomicU64::new(0) })
    }

    /// `Ok(principal)` or the refusal's kind and message.
    async fn try_key(&self, key: &str) -> Result<String, (ErrorKind, String)> {
        match self.pipeline.validate(key, &RequestContext::new("GET", "/v1/models")).await {
            Ok(p) => {
                self.accepted.fetch_add(1, Ordering::SeqCst);
                Ok(p.principal)
            }
            Err(e) => Err((e.kind(), e.to_string())),
        }
    }
}

/// Whether `check` holds for every replica within `within`; polls every 20ms.
async fn on_all_within(
    replicas: &[Arc<Replica>],
    within: Duration,
    key: &str,
    check: fn(&Result<String, (ErrorKind, String)>) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    loop {
        let mut all = true;
        for replica in replicas {
            all &= check(&replica.try_key(key).await);
        }
        if all {
            return Some(started.elapsed());
        }
        if started.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn accepted(r: &Result<String, (ErrorKind, String)>) -> bool {
    r.is_ok()
}

fn suspended(r: &Result<String, (ErrorKind, String)>) -> bool {
    matches!(r, Err((ErrorKind::InvalidToken, m)) if m.contains("key suspended: billing overdue"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_and_suspended_on_another_machine_apply_to_every_replica_and_survive_redis_going_away() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yaml", &config_text(&redis, "keys-test:"));
    let config = Config::load(&path).unwrap();
    let replicas = [Replica::new(&config), Replica::new(&config)];
    for replica in &replicas {
        // The first load runs in the background: on a busy machine it can take a moment.
        let ready = eventually(Duration::from_secs(20), || async { replica.pipeline.ready().await.is_ok() }).await;
        assert!(ready, "ready once the (empty) key set is loaded: {:?}", replica.pipeline.ready().await.err());
    }

    // `key new` on "another machine": accepted by both replicas within the lag.
    let made =
        key_command_json(dir.path(), &["new", "--id", "ci-1", "--owner", "team-ml", "--principal", "ci-bot", "--json"])
            .await;
    let secret = made["key"].as_str().unwrap().to_string();
    assert!(made["store"].as_str().unwrap().starts_with("Redis at redis://127.0.0.1:"), "{made}");
    let took = on_all_within(&replicas, LAG, &secret, accepted).await;
    assert!(took.is_some(), "a key made on another machine works on every replica");
    assert_eq!(replicas[1].try_key(&secret).await.unwrap(), "ci-bot");

    // Redis holds the hash and metadata, never the key.
    let stored = redis.keys("keys-test:*").await;
    assert!(stored.iter().any(|k| k.starts_with("keys-test:api-key:")), "{stored:?}");
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    for name in &stored {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(name).query_async(&mut conn).await.unwrap();
        assert!(!String::from_utf8_lossy(&dump).contains(&secret[7..]), "{name} holds the key");
    }

    // `suspend` there: refused on both, with the reason.
    assert_eq!(key_command(dir.path(), &["suspend", "ci-1", "--reason", "billing overdue"]).await.0, 0);
    assert!(on_all_within(&replicas, LAG, &secret, suspended).await.is_some(), "suspended on every replica");
    assert_eq!(key_command(dir.path(), &["resume", "ci-1"]).await.0, 0);
    assert!(on_all_within(&replicas, LAG, &secret, accepted).await.is_some(), "resumed on every replica");

    // Usage: both replicas' requests add up in `key list`.
    for _ in 0..7 {
        replicas[0].try_key(&secret).await.unwrap();
    }
    for _ in 0..5 {
        replicas[1].try_key(&secret).await.unwrap();
    }
    let expected = replicas.iter().map(|r| r.accepted.load(Ordering::SeqCst)).sum::<u64>();
    let mut listed = Value::Null;
    let started = Instant::now();
    while started.elapsed() < LAG {
        listed = key_command_json(dir.path(), &["list", "--json"]).await;
        if listed[0]["requests"] == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed[0]["id"], "ci-1", "{listed}");
    assert_eq!(listed[0]["requests"], expected, "every replica's requests, added up: {listed}");
    assert_eq!(listed[0]["requests_today"], expected, "{listed}");
    assert!(listed[0]["last_used_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{listed}");
    let text = key_command(dir.path(), &["list"]).await.1 + &listed.to_string();
    assert!(!text.contains(&secret) && !text.contains("sha256:"), "list printed a key or a hash: {text}");

    // Redis killed: the last-known keys still decide, on both replicas.
    redis.stop();
    for replica in &replicas {
        assert_eq!(replica.try_key(&secret).await.unwrap(), "ci-bot", "the last-known key works without Redis");
        let unknown = replica.try_key("tg_not-a-key-anyone-made").await.unwrap_err();
        assert_eq!(unknown.0, ErrorKind::InvalidToken, "an unknown key is still unknown: {unknown:?}");
    }
    // A replica that never loaded the keys cannot tell: unavailable (503), and not ready.
    let newcomer = Replica::new(&config);
    let refused = newcomer.try_key(&secret).await.unwrap_err();
    assert_eq!(refused.0, ErrorKind::Unavailable, "{refused:?}");
    assert!(newcomer.pipeline.ready().await.is_err(), "not ready before the keys are loaded");
    // The command line says Redis is away (exit 3), and changes nothing.
    let (code, _, err) = key_command(dir.path(), &["suspend", "ci-1", "--reason", "x"]).await;
    assert_eq!(code, 3, "{err}");

    // Redis back (empty: no persistence here): the replicas keep the keys they knew.
    redis.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for replica in &replicas {
        assert_eq!(replica.try_key(&secret).await.unwrap(), "ci-bot", "kept over a Redis that lost its data");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_and_revoke_through_redis_reach_every_replica() {
    let Some(redis) = RedisServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yaml", &config_text(&redis, "rotate-test:"));
    let config = Config::load(&path).unwrap();
    let replicas = [Replica::new(&config), Replica::new(&config)];

    let first =
        key_command_json(dir.path(), &["new", "--id", "svc-1", "--json"]).await["key"].as_str().unwrap().to_string();
    assert!(on_all_within(&replicas, LAG, &first, accepted).await.is_some());
    let rotated = key_command_json(dir.path(), &["rotate", "svc-1", "--grace", "1h", "--json"]).await;
    let second = rotated["key"].as_str().unwrap().to_string();
    assert!(on_all_within(&replicas, LAG, &second, accepted).await.is_some(), "the new key works at once");
    for replica in &replicas {
        assert!(replica.try_key(&first).await.is_ok(), "the old key works during the grace");
    }
    let listed = key_command_json(dir.path(), &["list", "--json"]).await;
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(rows.iter().any(|r| r["id"] == "svc-1" && r["rotated_to"] == rotated["id"]), "{listed}");

    // Ids stay unique across the shared list.
    let (code, _, err) = key_command(dir.path(), &["new", "--id", "svc-1"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("svc-1"), "{err}");

    assert_eq!(key_command(dir.path(), &["revoke", "svc-1", "--reason", "leaked"]).await.0, 0);
    fn revoked(r: &Result<String, (ErrorKind, String)>) -> bool {
        matches!(r, Err((_, m)) if m.contains("key revoked: leaked"))
    }
    assert!(on_all_within(&replicas, LAG, &first, revoked).await.is_some(), "revoked on every replica");
    for replica in &replicas {
        assert!(replica.try_key(&second).await.is_ok(), "the replacement is untouched");
    }
}

#[tokio::test]
async fn keys_from_redis_needs_a_redis_section_and_no_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = "provider_config:\n  type: api_key\n  keys_from: redis\n";
    let config = Config::load(&write(dir.path(), "a.yaml", text)).unwrap();
    let Err(e) = config.build(&Registry::with_builtins()) else { panic!("built") };
    assert!(e.to_string().contains("keys_from") && e.to_string().contains("redis:"), "{e}");
    let text = "redis: {url: \"redis://127.0.0.1:1/0\"}\nprovider_config:\n  type: api_key\n  keys_from: redis\n  keys_file: k.yaml\n";
    write(dir.path(), "k.yaml", "[]\n");
    let config = Config::load(&write(dir.path(), "b.yaml", text)).unwrap();
    let Err(e) = config.build(&Registry::with_builtins()) else { panic!("built") };
    assert!(e.to_string().contains("keys_file"), "{e}");
}
