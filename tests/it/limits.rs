//! Issue #22 parts 4 and 5: usage limits through every front end — 429 with
//! `Retry-After` and the draft IETF `RateLimit` / `RateLimit-Policy` fields
//! from `tokengate serve` and the tower layer, an API key's own limits, the
//! client address read only through the proxy profile, OGX's `server.quota`
//! enforced per principal, and limits shared by replicas through a real
//! `redis-server`: exact under concurrency, refusing nothing below the
//! limit, and falling back to local counts (never a 503) when Redis dies.

use crate::fixtures::{client, header, json, load, serve_config, serve_layer, write};
use crate::redis::RedisServer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokengate::{Config, Pipeline, Registry, RequestContext};

const ALICE: &str = "tg_alice_key_one";
const ALICE_TWO: &str = "tg_alice_key_two";
const BOB: &str = "tg_bob_key";
const METERED: &str = "tg_metered_key";

/// An `api_key` provider: two keys of alice, one of bob, one with its own limits.
fn keys_yaml(indent: &str) -> String {
    let hash = tokengate_api_key::hash_key;
    format!(
        "{indent}type: api_key\n{indent}prefix: tg_\n{indent}keys:\n\
         {indent}  - {{id: alice-1, hash: {}, principal: alice}}\n\
         {indent}  - {{id: alice-2, hash: {}, principal: alice}}\n\
         {indent}  - {{id: bob-1, hash: {}, principal: bob}}\n\
         {indent}  - {{id: metered, hash: {}, principal: carol, rate_limit: 2/min}}\n",
        hash(ALICE),
        hash(ALICE_TWO),
        hash(BOB),
        hash(METERED)
    )
}

fn config(dir: &std::path::Path, limits: &str) -> Config {
    let text = format!("provider_config:\n{}limits:\n{limits}", keys_yaml("  "));
    load(&write(dir, "tokengate.yaml", &text))
}

async fn get(url: &str, key: &str) -> reqwest::Response {
    client().get(url).bearer_auth(key).send().await.unwrap()
}

/// Asserts a 429 with every field the draft and RFC 9110 call for.
async fn assert_limited(res: reqwest::Response, policy: &str, reason_code: &str) {
    assert_eq!(res.status(), 429);
    let retry: u64 = header(&res, "retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let policy_field = header(&res, "ratelimit-policy").expect("RateLimit-Policy");
    assert!(policy_field.starts_with(&format!("\"{policy}\";q=")), "{policy_field}");
    let state = header(&res, "ratelimit").expect("RateLimit");
    assert!(state.starts_with(&format!("\"{policy}\";r=0;t=")), "{state}");
    assert!(header(&res, "www-authenticate").is_none());
    let body = json(res).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Too many requests"), "{message}");
    assert!(!reason_code.is_empty());
}

#[tokio::test]
async fn serve_and_the_layer_answer_429_with_retry_after_and_the_ratelimit_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "  rules: [{name: chat, paths: [/v1/chat/*], by: principal, rate: 3/min}]\n");
    let served = serve_config(&config).await;
    let layer = serve_layer(&config).await;
    for base in [served.base.as_str(), layer.as_str()] {
        let url = format!("{base}/v1/chat/completions");
        for i in 0..3 {
            // Two keys of one principal share its count.
            let key = if i % 2 == 0 { ALICE } else { ALICE_TWO };
            assert_eq!(get(&url, key).await.status(), 200, "{base}: request {i}");
        }
        assert_limited(get(&url, ALICE_TWO).await, "chat", "rate_limited").await;
        assert_eq!(get(&url, BOB).await.status(), 200, "{base}: bob has his own count");
        assert_eq!(get(&format!("{base}/v1/models"), ALICE).await.status(), 200, "{base}: another route");
        assert_eq!(get(&url, "tg_nobody").await.status(), 401, "{base}: a bad key is told so, not limited");
    }
    served.shutdown().await;
}

#[tokio::test]
async fn an_api_key_s_own_rate_limit_applies_with_a_limits_section() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "  rules: [{name: wide, daily_quota: 1000000}]\n");
    let served = serve_config(&config).await;
    let url = format!("{}/anything", served.base);
    assert_eq!(get(&url, METERED).await.status(), 200);
    assert_eq!(get(&url, METERED).await.status(), 200);
    assert_limited(get(&url, METERED).await, "key", "rate_limited").await;
    served.shutdown().await;
}

#[tokio::test]
async fn the_client_address_is_the_proxy_s_hop_and_an_ambiguous_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "provider_config:\n{}forward_auth: {{proxy: nginx}}\nlimits:\n  rules: [{{name: per-ip, by: client_ip, rate: 2/min}}]\n",
        keys_yaml("  ")
    );
    let served = serve_config(&load(&write(dir.path(), "tokengate.yaml", &text))).await;
    let ask = |xff: Vec<&'static str>| {
        let mut req = client()
            .get(format!("{}/_tokengate", served.base))
            .bearer_auth(ALICE)
            .header("x-original-uri", "/v1/x")
            .header("x-original-method", "GET");
        for hop in xff {
            req = req.header("x-forwarded-for", hop);
        }
        req.send()
    };
    // The client writes the first hops; nginx appends the address it saw: only that one counts.
    assert_eq!(ask(vec!["198.51.100.1, 203.0.113.7"]).await.unwrap().status(), 200);
    assert_eq!(ask(vec!["198.51.100.2, 203.0.113.7"]).await.unwrap().status(), 200);
    assert_eq!(ask(vec!["203.0.113.7"]).await.unwrap().status(), 429, "a forged first hop is no new client");
    assert_eq!(ask(vec!["203.0.113.8"]).await.unwrap().status(), 200);
    assert_eq!(ask(vec!["203.0.113.9", "203.0.113.10"]).await.unwrap().status(), 400, "repeated: which is it?");
    assert_eq!(ask(vec!["203.0.113.9, unknown"]).await.unwrap().status(), 400);
    assert_eq!(ask(vec![]).await.unwrap().status(), 500, "no address: never counted as nobody's");
    served.shutdown().await;
}

/// A run.yaml with OGX's `server.quota`, behind nginx.
fn ogx_run_yaml(dir: &std::path::Path, auth: &str) -> Config {
    let text = format!(
        "version: 2\nimage_name: x\nserver:\n  port: 8321\n  quota:\n    kvstore: {{type: sqlite, db_path: /tmp/q.db}}\n    \
         anonymous_max_requests: 2\n    authenticated_max_requests: 3\n    period: day\n  auth:\n    forward_auth: {{proxy: nginx}}\n{auth}"
    );
    load(&write(dir, "run.yaml", &text))
}

fn nginx_request(base: &str, xff: &str, key: Option<&str>) -> reqwest::RequestBuilder {
    let mut req = client()
        .get(format!("{base}/_tokengate"))
        .header("x-original-uri", "/v1/models")
        .header("x-original-method", "GET")
        .header("x-forwarded-for", xff);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req
}

#[tokio::test]
async fn ogx_server_quota_counts_per_principal_and_anonymous_callers_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = ogx_run_yaml(dir.path(), &format!("    provider_config:\n{}", keys_yaml("      ")));
    let served = serve_config(&config).await;
    let base = served.base.as_str();
    // Per principal, not per token as OGX: alice's two keys share her 3.
    for key in [ALICE, ALICE_TWO, ALICE] {
        assert_eq!(nginx_request(base, "203.0.113.1", Some(key)).send().await.unwrap().status(), 200);
    }
    let res = nginx_request(base, "203.0.113.1", Some(ALICE_TWO)).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(header(&res, "ratelimit-policy").unwrap().starts_with("\"ogx_quota_authenticated:day\";q=3;w=86400"));
    assert_eq!(nginx_request(base, "203.0.113.1", Some(BOB)).send().await.unwrap().status(), 200);
    served.shutdown().await;

    // Without a provider every caller is anonymous, counted by the address nginx wrote.
    let dir = tempfile::tempdir().unwrap();
    let config = ogx_run_yaml(dir.path(), "    route_policy:\n      - permit: {paths: /v1/*}\n");
    let served = serve_config(&config).await;
    let base = served.base.as_str();
    for _ in 0..2 {
        assert_eq!(nginx_request(base, "9.9.9.9, 203.0.113.5", None).send().await.unwrap().status(), 200);
    }
    let res = nginx_request(base, "8.8.8.8, 203.0.113.5", None).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(header(&res, "ratelimit").unwrap().starts_with("\"ogx_quota_anonymous:day\";r=0;"));
    assert_eq!(json(res).await["error"]["code"], "rate_limited");
    assert_eq!(nginx_request(base, "203.0.113.6", None).send().await.unwrap().status(), 200);
    served.shutdown().await;
}

#[test]
fn ogx_server_quota_with_a_period_ogx_does_not_know_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "server:\n  quota: {kvstore: {type: sqlite}, period: week}\n  auth:\n    route_policy: [{permit: {paths: /v1/*}}]\n";
    let e = Config::load(&write(dir.path(), "run.yaml", text)).unwrap_err();
    assert_eq!(e.field, "server.quota.period", "{e}");
    let text = "server:\n  quota: {kvstore: {type: sqlite}, max_requests: 5}\n  auth:\n    route_policy: [{permit: {paths: /v1/*}}]\n";
    let e = Config::load(&write(dir.path(), "run.yaml", text)).unwrap_err();
    assert!(e.to_string().contains("max_requests"), "{e}");
}

// ------------------------------------------------------------------ replicas

fn redis_config(dir: &std::path::Path, redis: &RedisServer, limits: &str) -> Config {
    let text = format!(
        "provider_config:\n{}redis: {{url: \"{}\", key_prefix: \"limits-test:\", command_timeout: 500ms}}\nlimits:\n{limits}",
        keys_yaml("  "),
        redis.url()
    );
    load(&write(dir, "tokengate.yaml", &text))
}

/// `requests` decisions spread over `replicas` from 64 tasks at once;
/// (admitted, refused with 429) and the time taken; any other refusal fails the test.
async fn hammer(replicas: &[Arc<Pipeline>], requests: usize) -> (usize, usize, Duration) {
    let admitted = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..64 {
        let replica = replicas[t % replicas.len()].clone();
        let (admitted, limited, next) = (admitted.clone(), limited.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < requests {
                let ctx = RequestContext::new("POST", "/v1/chat/completions");
                match replica.validate(ALICE, &ctx).await {
                    Ok(_) => admitted.fetch_add(1, Ordering::SeqCst),
                    Err(e) if e.kind().http_status() == 429 => limited.fetch_add(1, Ordering::SeqCst),
                    Err(e) => panic!("refused otherwise: {e:?}"),
                };
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    (admitted.load(Ordering::SeqCst), limited.load(Ordering::SeqCst), elapsed)
}

fn replicas(config: &Config) -> Vec<Arc<Pipeline>> {
    (0..2).map(|_| Arc::new(config.build(&Registry::with_builtins()).unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_under_64_connections_admit_exactly_the_quota_and_at_most_the_burst() {
    let Some(redis) = RedisServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    // A daily quota is exact: 40 of 300, whatever the interleaving.
    let config = redis_config(dir.path(), &redis, "  rules: [{name: q, daily_quota: 40}]\n");
    let (admitted, limited, _) = hammer(&replicas(&config), 300).await;
    assert_eq!((admitted, limited), (40, 260), "the quota across both replicas, exactly");
    // A rate: the burst at once, then 60 a minute; nothing is refused below it.
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config(dir.path(), &redis, "  rules: [{name: r, rate: 60/min burst 25}]\n");
    let (admitted, limited, elapsed) = hammer(&replicas(&config), 300).await;
    let refill = (elapsed.as_secs_f64() + 1.0).ceil() as usize; // 1 a second, rounded up
    assert!(admitted >= 25 && admitted <= 25 + refill, "admitted {admitted} in {elapsed:?}");
    assert_eq!(admitted + limited, 300);
    // Below the limit, nothing is refused.
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config(dir.path(), &redis, "  rules: [{name: big, rate: 1000/min, daily_quota: 500}]\n");
    let (admitted, limited, _) = hammer(&replicas(&config), 400).await;
    assert_eq!((admitted, limited), (400, 0));
    assert!(!redis.keys("limits-test:limit:big:*").await.is_empty(), "counted in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_share_script_calls_and_each_stays_all_or_none() {
    let Some(redis) = RedisServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    // Two components per decision: a refusal by the quota must not spend the rate.
    let config = redis_config(dir.path(), &redis, "  rules: [{name: both, rate: 100000/min, daily_quota: 1000}]\n");
    let before = redis.evalsha_calls().await;
    let (admitted, limited, _) = hammer(&replicas(&config), 2000).await;
    assert_eq!((admitted, limited), (1000, 1000), "the quota across both replicas, exactly");
    let calls = redis.evalsha_calls().await - before;
    assert!(calls > 0 && calls < 1000, "2000 decisions from 64 tasks took {calls} script calls");
    // A lone decision goes out at once, in a batch of its own.
    let lone = replicas(&config).remove(0);
    let started = Instant::now();
    let refused = lone.validate(ALICE, &RequestContext::new("GET", "/")).await.unwrap_err();
    assert_eq!(refused.kind().http_status(), 429);
    assert!(started.elapsed() < Duration::from_millis(400), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_refuses_nothing_and_a_dead_redis_means_local_limits_never_a_503() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config(dir.path(), &redis, "  mode: dry_run\n  rules: [{name: q, daily_quota: 5}]\n");
    assert_eq!(hammer(&replicas(&config), 50).await.0, 50, "dry run: every request let in");

    let dir = tempfile::tempdir().unwrap();
    let config = redis_config(dir.path(), &redis, "  rules: [{name: outage, daily_quota: 5}]\n");
    let replicas = replicas(&config);
    let (admitted, _, _) = hammer(&replicas, 3).await;
    assert_eq!(admitted, 3);
    redis.stop();
    // Each replica now counts alone, from nothing: 5 each, then 429 — never 503.
    for replica in &replicas {
        let (admitted, limited, _) = hammer(std::slice::from_ref(replica), 20).await;
        assert_eq!((admitted, limited), (5, 15));
    }
}

// ------------------------------------------------- batches under strain

/// A TCP proxy to the Redis at `redis_url` that hands every reply back
/// `delay` late (a far or slow Redis): latency only, replies queue behind
/// nothing. Its `redis://` URL.
async fn slow_proxy(redis_url: &str, delay: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = redis_url.trim_start_matches("redis://").trim_end_matches("/0").to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else { return };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let (late, mut due) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                        if late.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                });
                while let Some((at, bytes)) = due.recv().await {
                    tokio::time::sleep_until(at).await;
                    if client_write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("redis://{addr}/0")
}

fn replica_at(dir: &std::path::Path, url: &str, redis_options: &str, limits: &str) -> Arc<Pipeline> {
    let text = format!(
        "provider_config:\n{}redis: {{url: \"{url}\", key_prefix: \"limits-test:\", {redis_options}}}\nlimits:\n{limits}",
        keys_yaml("  ")
    );
    Arc::new(load(&write(dir, "tokengate.yaml", &text)).build(&Registry::with_builtins()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_and_a_backlog_keep_every_decision_within_the_command_timeout() {
    let Some(redis) = RedisServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    // The script loaded straight, so the first call through the proxy is one EVALSHA.
    let direct =
        replica_at(dir.path(), &redis.url(), "command_timeout: 1s", "  rules: [{name: warm, daily_quota: 9}]\n");
    direct.validate(ALICE, &RequestContext::new("GET", "/")).await.unwrap();
    let proxy = slow_proxy(&redis.url(), Duration::from_millis(150)).await;
    let slow = replica_at(dir.path(), &proxy, "command_timeout: 1s", "  rules: [{name: slow, daily_quota: 3000}]\n");
    let before = redis.evalsha_calls().await;
    slow.validate(ALICE, &RequestContext::new("GET", "/")).await.unwrap();
    assert_eq!(redis.evalsha_calls().await, before + 1, "the first decision is Redis's");
    // 4,000 at once: 32 full batches. Every one is Redis's decision (2,999 let
    // in, exactly), and none waits behind the others' calls past the timeout.
    let tasks: Vec<_> = (0..4000)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = slow.validate(ALICE, &RequestContext::new("GET", "/")).await;
                (started.elapsed(), outcome.is_ok())
            })
        })
        .collect();
    let (mut longest, mut admitted) = (Duration::ZERO, 0);
    for task in tasks {
        let (waited, ok) = task.await.unwrap();
        longest = longest.max(waited);
        admitted += usize::from(ok);
    }
    assert_eq!(admitted, 2999, "the quota, decided in Redis");
    assert!(longest < Duration::from_secs(2), "a decision waited {longest:?}: past twice command_timeout (1s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_gone_before_its_batch_goes_out_is_not_charged() {
    let Some(redis) = RedisServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let direct =
        replica_at(dir.path(), &redis.url(), "command_timeout: 2s", "  rules: [{name: warm, daily_quota: 9}]\n");
    direct.validate(ALICE, &RequestContext::new("GET", "/")).await.unwrap();
    let proxy = slow_proxy(&redis.url(), Duration::from_millis(300)).await;
    let slow = replica_at(dir.path(), &proxy, "command_timeout: 2s", "  rules: [{name: gone, daily_quota: 1000}]\n");
    slow.validate(ALICE, &RequestContext::new("GET", "/")).await.unwrap();
    // One decision on the wire; fifty queue behind it and are dropped before it answers.
    let on_the_wire = tokio::spawn({
        let slow = slow.clone();
        async move { slow.validate(ALICE, &RequestContext::new("GET", "/")).await.is_ok() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let dropped: Vec<_> = (0..50)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move { slow.validate(ALICE, &RequestContext::new("GET", "/")).await.is_ok() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for task in &dropped {
        task.abort();
    }
    assert!(on_the_wire.await.unwrap());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let bucket = redis.keys("limits-test:limit:gone:*").await.remove(0);
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let count: u64 = redis::cmd("GET").arg(&bucket).query_async(&mut conn).await.unwrap();
    assert_eq!(count, 2, "only the two decisions whose callers waited are charged");
}

#[test]
fn a_runtime_left_idle_after_a_decision_strands_no_later_decision() {
    let main = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let Some(redis) = main.block_on(RedisServer::start()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let replica = {
        let _entered = main.enter();
        replica_at(dir.path(), &redis.url(), "command_timeout: 500ms", "  rules: [{name: idle, daily_quota: 1000}]\n")
    };
    // One decision on a runtime of its own (a warm-up, a one-off block_on),
    // which then stays alive but is never driven again.
    let idle = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    idle.block_on(replica.validate(ALICE, &RequestContext::new("GET", "/"))).unwrap();
    main.block_on(async {
        for i in 0..3 {
            let decided =
                tokio::time::timeout(Duration::from_secs(3), replica.validate(ALICE, &RequestContext::new("GET", "/")))
                    .await;
            assert!(decided.is_ok(), "decision {i} on the serving runtime is still waiting after 3s");
        }
        // And Redis decides again, soon.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let before = redis.evalsha_calls().await;
            replica.validate(ALICE, &RequestContext::new("GET", "/")).await.unwrap();
            if redis.evalsha_calls().await > before {
                break;
            }
            assert!(Instant::now() < deadline, "Redis never decides again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_redis_cannot_read_fails_its_own_decision_only_and_charges_nobody_for_a_failure() {
    let Some(redis) = RedisServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let replica = replica_at(
        dir.path(),
        &redis.url(),
        "command_timeout: 1s",
        "  on_store_error: deny\n  rules: [{name: q, daily_quota: 100000}]\n",
    );
    replica.validate(BOB, &RequestContext::new("GET", "/")).await.unwrap();
    let bob_bucket = redis.keys("limits-test:limit:q:*").await.remove(0);
    // Bob's count is now a list (another program under the same prefix):
    // a GET of it fails inside the script.
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("DEL").arg(&bob_bucket).query_async::<()>(&mut conn).await.unwrap();
    redis::cmd("RPUSH").arg(&bob_bucket).arg("x").query_async::<()>(&mut conn).await.unwrap();
    let alice_admitted = Arc::new(AtomicUsize::new(0));
    let alice_failed = Arc::new(AtomicUsize::new(0));
    let bob_admitted = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let (replica, alice_admitted, alice_failed, bob_admitted) =
                (replica.clone(), alice_admitted.clone(), alice_failed.clone(), bob_admitted.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    let key = if (t + i) % 2 == 0 { ALICE } else { BOB };
                    let outcome = replica.validate(key, &RequestContext::new("GET", "/")).await;
                    match (key == ALICE, outcome) {
                        (true, Ok(_)) => alice_admitted.fetch_add(1, Ordering::SeqCst),
                        (true, Err(_)) => alice_failed.fetch_add(1, Ordering::SeqCst),
                        (false, Ok(_)) => bob_admitted.fetch_add(1, Ordering::SeqCst),
                        (false, Err(e)) => {
                            assert_eq!(e.kind().http_status(), 503, "{e:?}");
                            0
                        }
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let alice_bucket: Vec<String> =
        redis.keys("limits-test:limit:q:*").await.into_iter().filter(|k| *k != bob_bucket).collect();
    let alice_count: u64 = redis::cmd("GET").arg(&alice_bucket[0]).query_async(&mut conn).await.unwrap();
    let (admitted, failed) = (alice_admitted.load(Ordering::SeqCst), alice_failed.load(Ordering::SeqCst));
    assert_eq!(bob_admitted.load(Ordering::SeqCst), 0, "bob's count cannot be read: on_store_error: deny");
    assert_eq!(alice_count, admitted as u64, "alice is charged for exactly the requests let in ({failed} failed)");
    assert_eq!((admitted, failed), (1280, 0), "alice's decisions never fail for bob's bucket");
}

// ------------------------------------------------- check and explain only peek

fn check_args(config: &std::path::Path, key: &str) -> Vec<String> {
    ["check", "--config", &config.display().to_string(), "--token", key, "--path", "/v1/chat/completions"]
        .map(String::from)
        .to_vec()
}

fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {text}"))
}

async fn explain_once(config: &Config, key: &str) -> tokengate::explain::Explanation {
    let ctx = RequestContext::new("GET", "/v1/chat/completions");
    tokengate::explain::explain(config, &Registry::with_builtins(), key, &ctx).await.unwrap()
}

#[tokio::test]
async fn asking_with_peek_limits_never_spends_the_caller_s_quota() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = config(dir.path(), "  rules: [{name: one, by: principal, daily_quota: 1}]\n")
        .build(&Registry::with_builtins())
        .unwrap();
    let mut peek = RequestContext::new("GET", "/v1/chat/completions");
    peek.peek_limits = true;
    for _ in 0..5 {
        assert!(pipeline.validate(ALICE, &peek).await.is_ok(), "a peek never uses the quota of 1 up");
    }
    let real = RequestContext::new("GET", "/v1/chat/completions");
    assert!(pipeline.validate(ALICE, &real).await.is_ok(), "the real caller still has their one request");
    let e = pipeline.validate(ALICE, &real).await.unwrap_err();
    assert_eq!(e.kind().http_status(), 429);
    let e = pipeline.validate(ALICE, &peek).await.unwrap_err();
    assert_eq!(e.kind().http_status(), 429, "a peek reports what the limits say");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_explain_against_redis_report_the_limits_and_charge_nothing() {
    let Some(redis) = RedisServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config(dir.path(), &redis, "  rules: [{name: two, by: principal, daily_quota: 2}]\n");
    let path = dir.path().join("tokengate.yaml");
    for _ in 0..4 {
        let out = crate::fixtures::run(check_args(&path, ALICE)).await;
        assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout_json(&out)["principal"], "alice");
        let explained = explain_once(&config, ALICE).await;
        assert!(explained.error.is_none(), "{explained:?}");
        let limits = explained.checks.iter().find(|c| c.check == "limits").expect("the limits were asked");
        assert!(limits.detail.contains("nothing was charged"), "{limits:?}");
    }
    assert!(redis.keys("limits-test:limit:*").await.is_empty(), "no count was written");
    let replica = Arc::new(config.build(&Registry::with_builtins()).unwrap());
    let ctx = RequestContext::new("GET", "/v1/chat/completions");
    assert!(replica.validate(ALICE, &ctx).await.is_ok());
    let out = crate::fixtures::run(check_args(&path, ALICE)).await;
    assert_eq!(out.status.code(), Some(0), "one of two left: check says so");
    assert!(replica.validate(ALICE, &ctx).await.is_ok(), "the check in between took nothing");
    let out = crate::fixtures::run(check_args(&path, ALICE)).await;
    assert_ne!(out.status.code(), Some(0), "the quota is used up, and check says so");
    assert_eq!(stdout_json(&out)["error"]["code"], "rate_limited");
    assert_eq!(explain_once(&config, ALICE).await.error.expect("refused").code, "rate_limited");
    assert_eq!(replica.validate(ALICE, &ctx).await.unwrap_err().kind().http_status(), 429);
    assert_eq!(redis.keys("limits-test:limit:two:*").await.len(), 1);
}

// ------------------------------------------------------------------ open paths

#[tokio::test]
async fn open_paths_count_anonymous_callers_by_address_and_principals_by_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "provider_config:\n{}forward_auth: {{proxy: nginx}}\nlimits:\n  rules:\n    \
         - {{name: anon, by: client_ip, callers: anonymous, daily_quota: 2}}\n    \
         - {{name: per-principal, by: principal, daily_quota: 1}}\n",
        keys_yaml("  ")
    );
    let pipeline = load(&write(dir.path(), "tokengate.yaml", &text)).build(&Registry::with_builtins()).unwrap();
    let from = |ip: &str| {
        let mut ctx = RequestContext::new("POST", "/v1/expensive");
        ctx.client_ip = Some(ip.parse().unwrap());
        ctx
    };
    let one = from("203.0.113.1");
    assert_eq!(pipeline.admit_open(None, &one).await.unwrap(), None);
    assert_eq!(pipeline.admit_open(Some("tg_nobody"), &one).await.unwrap(), None, "a refused token: anonymous");
    let e = pipeline.admit_open(None, &one).await.unwrap_err();
    assert_eq!(e.kind().http_status(), 429, "an open route is no way around a limit");
    assert_eq!(e.rate_limit().unwrap().policies[0].name, "anon:day");
    assert!(pipeline.admit_open(None, &from("203.0.113.2")).await.is_ok(), "another address");
    let alice = pipeline.admit_open(Some(ALICE), &one).await.unwrap().expect("alice");
    assert_eq!(alice.principal, "alice", "counted as herself, not by the address");
    let e = pipeline.admit_open(Some(ALICE_TWO), &from("203.0.113.3")).await.unwrap_err();
    assert_eq!(e.rate_limit().unwrap().policies[0].name, "per-principal:day", "her rules, on an open path too");
    let mut unknown = RequestContext::new("POST", "/v1/expensive");
    unknown.client_ip = None;
    assert_eq!(pipeline.admit_open(None, &unknown).await.unwrap_err().kind().http_status(), 500, "never nobody's");
}

/// Through the front door: needs `Gate::admit_context` to ask
/// [`Pipeline::admit_open`] on open paths (src/http is being reshaped; see issue #22).
#[tokio::test]
async fn an_open_route_is_limited_through_the_layer_too() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "provider_config:\n{}forward_auth: {{proxy: nginx}}\nopen_paths: [/v1/expensive]\nlimits:\n  rules:\n    \
         - {{name: anon, by: client_ip, callers: anonymous, daily_quota: 2}}\n",
        keys_yaml("  ")
    );
    let base = serve_layer(&load(&write(dir.path(), "tokengate.yaml", &text))).await;
    let url = format!("{base}/v1/expensive");
    for i in 0..2 {
        assert_ne!(client().post(&url).send().await.unwrap().status(), 429, "request {i}");
    }
    let res = client().post(&url).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(header(&res, "ratelimit-policy").unwrap().starts_with("\"anon:day\";q=2"));
}
