//! Issue #4: what tokengate's `oauth2_token` validation costs next to raw
//! `jsonwebtoken` verification, measured in one process so the ratios hold on
//! a noisy machine.
//!
//! ```text
//! taskset -c 1 cargo bench --bench validate
//! taskset -c 1 cargo bench --bench validate -- 'jwt/ES256'   # one algorithm
//! ```
//!
//! Groups (throughput is one token per iteration):
//! - `jwt/<ALG>/raw_jsonwebtoken`: `jsonwebtoken::decode::<serde_json::Value>`
//!   with a `DecodingKey` (from the JWK) and a `Validation` (alg, iss, aud,
//!   exp) prepared once: the bar. `Value` because that is what the provider
//!   needs too (the whole claim set, for the claims mapping).
//! - `jwt/<ALG>/tokengate_distinct`: `OAuth2Provider::validate` (the real
//!   `AuthProvider` entry point, async-trait box and all) with a claims mapping
//!   and the verified-token cache ON, over a pool of distinct tokens (distinct
//!   `sub` and `jti`). A provider never sees a token twice: when the pool wraps,
//!   a fresh provider is built and warmed up outside the timed region, so every
//!   timed call is a cache miss (hash + verify + claims + mapping + insert).
//! - `jwt/<ALG>/tokengate_repeated`: one token over and over: the cache hit path.
//! - `jwt/<ALG>/aws_lc_verify_only`: base64 + signature check with an
//!   aws-lc-rs `ParsedPublicKey`, nothing else: the cryptographic floor, for
//!   reference (not a target).
//! - `runtime/block_on_batch_empty_future`: the harness's per-call overhead
//!   (an empty future polled in the same batched `block_on` loop), so runtime
//!   cost is not mistaken for provider cost.
//! - `introspection/cold_distinct`: RFC 7662 introspection against an axum mock
//!   on 127.0.0.1 (its own thread), every token distinct (fresh provider per
//!   pool wrap): one HTTP round trip per call.
//! - `introspection/warm_repeated`: the same token, answered by the result cache.
//!
//! - `paired <ALG> distinct|no-cache|repeated` (printed, and appended to
//!   `target/tmp/tokengate-paired.txt`): raw and tokengate batches timed back
//!   to back in alternating order, the ratio taken per round, median reported.
//!   On a shared machine this is the ratio to quote; criterion's separate runs
//!   can see different background load.
//!
//! - `paired <ALG> pipeline`: `OAuth2Provider::validate` against
//!   `Pipeline::decide` over that provider, on a cache hit: what the pipeline
//!   stages add per decision.
//!
//! - `paired backend <curve>` (printed like the above): aws-lc-rs
//!   `ParsedPublicKey` against ring's `UnparsedPublicKey` on the same
//!   signatures, for P-256, P-384 and Ed25519: the measurement behind
//!   verifying ES256 with ring and everything else with aws-lc-rs.
//!
//! Every async call runs inside one `block_on` per batch on a current-thread
//! tokio runtime; tokens are checked to validate before anything is timed.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokengate_api::{AuthProvider, BuildContext, RequestContext};
use tokengate_oauth2::config::OAuth2Config;
use tokengate_oauth2::OAuth2Provider;

const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "bench-api";

/// Distinct tokens per algorithm (`TOKENGATE_BENCH_TOKENS` overrides).
fn pool_size() -> usize {
    std::env::var("TOKENGATE_BENCH_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// A signing key, its public JWK (with `kid`), and the raw public key bytes
/// aws-lc-rs wants for the verify-only floor.
struct Signer {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    floor: ParsedPublicKey,
}

fn signer(alg: Algorithm) -> Signer {
    let (encoding, mut jwk, floor) = match alg {
        Algorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa keygen");
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("pkcs8");
            let pem =
                format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der.as_ref()));
            let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("pem");
            let jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).expect("jwk")).expect("json");
            let spki = pair.public_key().as_ref().to_vec(); // PKCS#1 RSAPublicKey
            let floor = ParsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, spki).expect("rsa public key");
            (encoding, jwk, floor)
        }
        Algorithm::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("ec keygen");
            let pair = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("ec");
            let point = pair.public_key().as_ref().to_vec();
            let jwk = json!({"kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
            let floor = ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).expect("ec public key");
            (EncodingKey::from_ec_der(doc.as_ref()), jwk, floor)
        }
        Algorithm::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed keygen");
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("ed");
            let x = pair.public_key().as_ref().to_vec();
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&x)});
            let floor = ParsedPublicKey::new(&sig::ED25519, x).expect("ed public key");
            (EncodingKey::from_ed_der(doc.as_ref()), jwk, floor)
        }
        other => panic!("no bench for {other:?}"),
    };
    jwk["kid"] = json!("bench-key");
    jwk["use"] = json!("sig");
    Signer { alg, encoding, jwk, floor }
}

/// Realistic access-token claims: what the raw decode and tokengate both get.
fn mint(s: &Signer, i: usize, iat: u64) -> String {
    let header = Header { kid: Some("bench-key".into()), ..Header::new(s.alg) };
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{i:06}"), "jti": format!("jti-{i:08x}"),
        "iat": iat, "nbf": iat, "exp": iat + 4 * 3600,
        "scope": "openid profile models:read", "groups": ["ml-team", "infra"], "azp": "bench-client",
    });
    // Low-S: tokengate refuses the high-S half of aws-lc's ECDSA signatures by default.
    tokengate_oauth2::ecdsa::low_s_token(&jsonwebtoken::encode(&header, &claims, &s.encoding).expect("sign"))
}

/// Serves `router` on 127.0.0.1 from its own thread and runtime, so the bench
/// runtime only ever runs the client side.
fn serve(router: axum::Router) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            axum::serve(listener, router).await.expect("serve");
        });
    });
    rx.recv().expect("server address")
}

fn jwks_server(jwk: &Value) -> String {
    let body = json!({ "keys": [jwk] }).to_string();
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    format!("http://{}/jwks", serve(router))
}

fn provider(rt: &tokio::runtime::Runtime, cfg: &Value) -> OAuth2Provider {
    let cfg: OAuth2Config = serde_json::from_value(cfg.clone()).expect("config");
    let p = OAuth2Provider::new(cfg, &BuildContext::default()).expect("provider");
    rt.block_on(p.warm_up()).expect("warm up");
    p
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Times `iters` calls of `provider.validate` over `tokens`, never showing a
/// provider the same token twice: a fresh (warmed-up) provider replaces it,
/// untimed, whenever the pool wraps.
struct Distinct<'a> {
    rt: &'a tokio::runtime::Runtime,
    cfg: Value,
    tokens: &'a [String],
    provider: OAuth2Provider,
    next: usize,
}

impl<'a> Distinct<'a> {
    fn new(rt: &'a tokio::runtime::Runtime, cfg: Value, tokens: &'a [String]) -> Self {
        let provider = provider(rt, &cfg);
        Distinct { rt, cfg, tokens, provider, next: 0 }
    }

    fn run(&mut self, iters: u64) -> Duration {
        let ctx = RequestContext::default();
        let mut left = iters as usize;
        let mut total = Duration::ZERO;
        while left > 0 {
            if self.next == self.tokens.len() {
                self.provider = provider(self.rt, &self.cfg);
                self.next = 0;
            }
            let n = left.min(self.tokens.len() - self.next);
            let batch = &self.tokens[self.next..self.next + n];
            let p = &self.provider;
            let start = Instant::now();
            self.rt.block_on(async {
                for t in batch {
                    let _ = black_box(p.validate(black_box(t), &ctx).await);
                }
            });
            total += start.elapsed();
            self.next += n;
            left -= n;
        }
        total
    }
}

/// The cryptographic floor: base64 of the signature and its check with a parsed key.
fn verify_only(s: &Signer, token: &str) -> bool {
    let dot = token.rfind('.').expect("jws");
    let mut buf = [0u8; 512];
    let len = URL_SAFE_NO_PAD.decode_slice(&token[dot + 1..], &mut buf).expect("b64");
    s.floor.verify_sig(&token.as_bytes()[..dot], &buf[..len]).is_ok()
}

/// Issue #14's tower-layer target: the same axum route bare and behind
/// `AuthLayer` (one token, a verified-token cache hit), and `Pipeline::decide`
/// alone on that token, timed in rotating order round by round. Prints the
/// layer's overhead (layered − bare, median of the rounds) against the
/// decision's cost plus 2 µs.
fn layer_rounds(
    label: &str,
    batch: u64,
    rt: &tokio::runtime::Runtime,
    pipeline: &std::sync::Arc<tokengate::Pipeline>,
    token: &str,
) {
    use tower::ServiceExt as _;
    let route = || axum::Router::new().route("/v1/models", axum::routing::get(|| async { "ok" }));
    let bare = route();
    let layered = route().layer(tokengate::AuthLayer::new(pipeline.clone()));
    let bearer = format!("Bearer {token}");
    let request = || {
        http::Request::builder()
            .uri("/v1/models")
            .header(http::header::AUTHORIZATION, &bearer)
            .header(http::header::HOST, "api.example.com")
            .body(axum::body::Body::empty())
            .expect("request")
    };
    let ctx = RequestContext::new("GET", "/v1/models");
    let app = |router: &axum::Router, iters: u64| {
        let start = Instant::now();
        rt.block_on(async {
            for _ in 0..iters {
                let response = router.clone().oneshot(request()).await.expect("infallible");
                assert_eq!(response.status(), 200);
                black_box(response);
            }
        });
        start.elapsed()
    };
    let decide = |iters: u64| {
        let start = Instant::now();
        rt.block_on(async {
            for _ in 0..iters {
                black_box(pipeline.decide(black_box(token), &ctx).await);
            }
        });
        start.elapsed()
    };
    let rounds = bench_rounds();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / batch as f64;
    // One untimed round each to warm caches and branch predictors.
    let (_, _, _) = (app(&bare, batch), app(&layered, batch), decide(batch));
    let (mut overhead, mut decision, mut bare_cost) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut times = [0.0; 3];
        for side in (0..3).map(|k| (k + round) % 3) {
            times[side] = per(match side {
                0 => app(&bare, batch),
                1 => app(&layered, batch),
                _ => decide(batch),
            });
        }
        bare_cost.push(times[0]);
        overhead.push(times[1] - times[0]);
        decision.push(times[2]);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bare_cost, overhead, decision) = (median(&mut bare_cost), median(&mut overhead), median(&mut decision));
    let verdict = if overhead <= decision + 2.0 { "met" } else { "NOT met" };
    let line = format!(
        "paired {label:<16} bare app {bare_cost:>8.2} µs/request  layer overhead {overhead:>6.2} µs  decision {decision:>6.2} µs  target overhead <= decision + 2 µs: {verdict}  ({rounds} rounds x {batch})"
    );
    record_paired_line(&line);
}

fn jwt_benches(c: &mut Criterion) {
    let rt = runtime();
    let n = pool_size();
    let iat = now();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let name = format!("{alg:?}");
        if !wanted(&format!("jwt/{name}")) {
            continue;
        }
        let s = signer(alg);
        let started = Instant::now();
        let tokens: Vec<String> = (0..n).map(|i| mint(&s, i, iat)).collect();
        eprintln!("{name}: minted {n} distinct tokens in {:.1}s", started.elapsed().as_secs_f64());

        let decoding = DecodingKey::from_jwk(&serde_json::from_value(s.jwk.clone()).expect("jwk")).expect("key");
        let mut validation = Validation::new(alg);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);

        let cfg = json!({
            "jwks": {"uri": jwks_server(&s.jwk)},
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "claims_mapping": {"sub": "roles", "groups": "teams", "scope": "scopes"},
            "cache": {"enabled": true, "max_entries": 10_000, "ttl": "60s"},
        });

        // Both sides must accept every token before anything is timed.
        let check = provider(&rt, &cfg);
        let ctx = RequestContext::default();
        for t in tokens.iter().step_by((n / 200).max(1)) {
            jsonwebtoken::decode::<Value>(t, &decoding, &validation).expect("raw decode");
            let p = rt.block_on(check.validate(t, &ctx)).expect("tokengate validate");
            assert_eq!(p.attributes["teams"], vec!["ml-team", "infra"]);
        }
        drop(check);

        let mut group = c.benchmark_group(format!("jwt/{name}"));
        group.throughput(Throughput::Elements(1));
        group.measurement_time(Duration::from_secs(if alg == Algorithm::RS256 { 8 } else { 5 }));

        let mut i = 0usize;
        group.bench_function("raw_jsonwebtoken", |b| {
            b.iter(|| {
                let t = &tokens[i % n];
                i = i.wrapping_add(1);
                black_box(jsonwebtoken::decode::<Value>(black_box(t), &decoding, &validation)).ok()
            })
        });

        let mut distinct = Distinct::new(&rt, cfg.clone(), &tokens);
        group.bench_function("tokengate_distinct", |b| b.iter_custom(|iters| distinct.run(iters)));
        drop(distinct);

        let repeated = provider(&rt, &cfg);
        let one = tokens[0].clone();
        group.bench_function("tokengate_repeated", |b| {
            b.to_async(&rt).iter(|| repeated.validate(black_box(&one), &ctx))
        });

        let mut i = 0usize;
        group.bench_function("aws_lc_verify_only", |b| {
            b.iter(|| {
                let t = &tokens[i % n];
                i = i.wrapping_add(1);
                verify_only(&s, black_box(t))
            })
        });
        group.finish();

        if paired_enabled() {
            let (pool, decoding, validation) = (&tokens, &decoding, &validation);
            let raw = || rotating(pool, |t| jsonwebtoken::decode::<Value>(t, decoding, validation).is_ok());
            let mut distinct = Distinct::new(&rt, cfg.clone(), &tokens);
            let batch = if alg == Algorithm::RS256 { 1000 } else { 2000 };
            paired(&format!("{name} distinct"), batch, raw(), |iters| distinct.run(iters));
            drop(distinct);
            // The same with the verified-token cache off: what hashing and
            // remembering each token costs on a miss.
            let mut uncached = cfg.clone();
            uncached["cache"] = json!({"enabled": false});
            let mut distinct = Distinct::new(&rt, uncached, &tokens);
            paired(&format!("{name} no-cache"), batch, raw(), |iters| distinct.run(iters));
            drop(distinct);
            let repeated = provider(&rt, &cfg);
            paired(&format!("{name} repeated"), batch, raw(), |iters| {
                let start = Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        let _ = black_box(repeated.validate(black_box(&one), &ctx).await);
                    }
                });
                start.elapsed()
            });
            // The library path against the cryptographic floor (base64 and the
            // signature with a parsed key, no JSON): what everything that is not
            // the signature costs on a cache miss.
            let mut distinct = Distinct::new(&rt, cfg.clone(), &tokens);
            let floor = rotating(pool, |t| verify_only(&s, t));
            paired_named(&format!("{name} floor"), ["floor", "tokengate"], batch, floor, |iters| distinct.run(iters));
            drop(distinct);
            // What the pipeline adds around the provider (ownership, the
            // principal check, the decision), on the cheapest provider path
            // (a verified-token cache hit), where it is the largest share.
            let alone = std::sync::Arc::new(provider(&rt, &cfg));
            let pipeline = std::sync::Arc::new(tokengate::Pipeline::new(vec![alone.clone()]));
            layer_rounds(&format!("{name} layer"), batch * 10, &rt, &pipeline, &one);
            let (rt, alone, pipeline, one, ctx) = (&rt, &alone, &pipeline, &one, &ctx);
            paired_named(
                &format!("{name} pipeline"),
                ["provider", "pipeline"],
                batch * 10,
                |iters| {
                    let start = Instant::now();
                    rt.block_on(async {
                        for _ in 0..iters {
                            let _ = black_box(alone.validate(black_box(one), ctx).await);
                        }
                    });
                    start.elapsed()
                },
                |iters| {
                    let start = Instant::now();
                    rt.block_on(async {
                        for _ in 0..iters {
                            let _ = black_box(pipeline.decide(black_box(one), ctx).await);
                        }
                    });
                    start.elapsed()
                },
            );
        }
    }

    if !wanted("runtime/block_on_batch_empty_future") {
        return;
    }
    let mut group = c.benchmark_group("runtime");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter("block_on_batch_empty_future"), |b| {
        b.to_async(&rt).iter(|| async { black_box(0u8) })
    });
    group.finish();
}

fn introspection_benches(c: &mut Criterion) {
    use axum::extract::Form;
    use std::collections::HashMap;

    let rt = runtime();
    let exp = now() + 4 * 3600;
    // An RFC 7662 endpoint that answers every token active, as a real one would
    // after its own lookup: `sub` derived from the token, the usual fields.
    let router = axum::Router::new().route(
        "/introspect",
        axum::routing::post(move |Form(form): Form<HashMap<String, String>>| async move {
            let token = form.get("token").cloned().unwrap_or_default();
            axum::Json(json!({
                "active": true, "sub": format!("user-{}", &token[token.len().saturating_sub(6)..]),
                "iss": ISSUER, "aud": AUDIENCE, "exp": exp, "client_id": "bench-client",
                "scope": "openid models:read", "groups": ["ml-team", "infra"],
            }))
        }),
    );
    let url = format!("http://{}/introspect", serve(router));
    let cfg = json!({
        "introspection": {"url": url, "client_id": "tokengate", "client_secret": "bench-secret-bench-secret"},
        "issuer": ISSUER, "audience": AUDIENCE,
        "claims_mapping": {"sub": "roles", "groups": "teams", "scope": "scopes"},
        "cache": {"enabled": true, "max_entries": 10_000, "ttl": "60s"},
    });
    let tokens: Vec<String> = (0..pool_size()).map(|i| format!("opaque-bench-token-{i:012}")).collect();
    let ctx = RequestContext::default();
    {
        let check = provider(&rt, &cfg);
        let p = rt.block_on(check.validate(&tokens[7], &ctx)).expect("introspection");
        assert_eq!(p.principal, "user-000007");
    }

    let mut group = c.benchmark_group("introspection");
    group.throughput(Throughput::Elements(1));
    let mut distinct = Distinct::new(&rt, cfg.clone(), &tokens);
    group.bench_function("cold_distinct", |b| b.iter_custom(|iters| distinct.run(iters)));
    drop(distinct);

    let warm = provider(&rt, &cfg);
    rt.block_on(warm.validate(&tokens[0], &ctx)).expect("warm");
    group.bench_function("warm_repeated", |b| b.to_async(&rt).iter(|| warm.validate(black_box(&tokens[0]), &ctx)));
    group.finish();
}

/// Interleaved A/B rounds: criterion runs one benchmark after another, so on a
/// shared machine a change of load between the raw and the tokengate run
/// skews their ratio. Here each round times a batch of raw decodes and a
/// batch of tokengate validations back to back (order alternating, ABBA), and
/// the ratio is taken per round; the median of the rounds is reported.
/// `TOKENGATE_BENCH_PAIRED=0` skips it, `TOKENGATE_BENCH_ROUNDS` sets the rounds (31).
fn paired(label: &str, batch: u64, raw: impl FnMut(u64) -> Duration, ours: impl FnMut(u64) -> Duration) {
    paired_named(label, ["raw", "tokengate"], batch, raw, ours)
}

/// [`paired`] with other names for the two sides; the ratio is always
/// second-side throughput over first-side throughput.
fn paired_named(
    label: &str,
    names: [&str; 2],
    batch: u64,
    mut raw: impl FnMut(u64) -> Duration,
    mut ours: impl FnMut(u64) -> Duration,
) {
    let rounds = bench_rounds();
    // One untimed round each to warm caches and branch predictors.
    raw(batch);
    ours(batch);
    let (mut ratios, mut raw_total, mut our_total) = (Vec::with_capacity(rounds), Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let (r, o) = if round % 4 == 0 || round % 4 == 3 {
            let r = raw(batch);
            (r, ours(batch))
        } else {
            let o = ours(batch);
            (raw(batch), o)
        };
        raw_total += r;
        our_total += o;
        ratios.push(r.as_secs_f64() / o.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let (q1, q3) = (ratios[ratios.len() / 4], ratios[ratios.len() * 3 / 4]);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (rounds as f64 * batch as f64);
    let line = format!(
        "paired {label:<16} {a} {:>8.2} µs/token  {b} {:>8.2} µs/token  ratio ({b}/{a} throughput) median {median:.3}  IQR {q1:.3}..{q3:.3}  ({rounds} rounds x {batch})",
        per(raw_total),
        per(our_total),
        a = names[0],
        b = names[1],
    );
    record_paired_line(&line);
}

/// A timer of `check` over `pool`'s tokens in turn, each call going on from
/// where the last one stopped, so that no token is checked twice in a row.
fn rotating<'p>(pool: &'p [String], mut check: impl FnMut(&'p str) -> bool + 'p) -> impl FnMut(u64) -> Duration + 'p {
    let mut i = 0usize;
    move |iters: u64| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(check(black_box(&pool[i % pool.len()])));
            i = i.wrapping_add(1);
        }
        start.elapsed()
    }
}

/// Rounds of every paired measurement: `TOKENGATE_BENCH_ROUNDS`, else 31.
fn bench_rounds() -> usize {
    std::env::var("TOKENGATE_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(31)
}

/// Prints a paired result and appends it to `tokengate-paired.txt`, where the
/// results of a whole run can be read together after criterion's output.
fn record_paired_line(line: &str) {
    println!("{line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tokengate-paired.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        use std::io::Write as _;
        let _ = writeln!(f, "{line}");
    }
}

fn paired_enabled() -> bool {
    std::env::var("TOKENGATE_BENCH_PAIRED").map_or(true, |v| v != "0")
}

/// Whether a criterion filter on the command line selects anything under `id`
/// (so that `cargo bench --bench validate -- introspection` mints no JWTs).
fn wanted(id: &str) -> bool {
    const WITH_VALUE: &[&str] = &[
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--profile-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
        "--format",
        "--color",
    ];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()) || f.contains(id))
}

/// A signature and the message it signs.
type Signed = (Vec<u8>, Vec<u8>);

/// The same signatures verified by aws-lc-rs (parsed once) and by ring, per
/// curve: the numbers behind the oauth2 provider's per-algorithm backend.
fn backend_rounds() {
    use ring::signature as rs;
    let curves: [(&str, Algorithm, &'static dyn rs::VerificationAlgorithm); 3] = [
        ("P-256", Algorithm::ES256, &rs::ECDSA_P256_SHA256_FIXED),
        ("P-384", Algorithm::ES384, &rs::ECDSA_P384_SHA384_FIXED),
        ("Ed25519", Algorithm::EdDSA, &rs::ED25519),
    ];
    for (curve, alg, ring_alg) in curves {
        let rng = SystemRandom::new();
        let (public, signatures): (Vec<u8>, Vec<Signed>) = {
            let messages: Vec<Vec<u8>> =
                (0..2000).map(|i| format!("header.claims-{i:06}").repeat(8).into_bytes()).collect();
            match alg {
                Algorithm::EdDSA => {
                    let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed keygen");
                    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("ed");
                    let sigs = messages.into_iter().map(|m| (pair.sign(&m).as_ref().to_vec(), m)).collect();
                    (pair.public_key().as_ref().to_vec(), sigs)
                }
                _ => {
                    let signing = if alg == Algorithm::ES256 {
                        &sig::ECDSA_P256_SHA256_FIXED_SIGNING
                    } else {
                        &sig::ECDSA_P384_SHA384_FIXED_SIGNING
                    };
                    let doc = EcdsaKeyPair::generate_pkcs8(signing, &rng).expect("ec keygen");
                    let pair = EcdsaKeyPair::from_pkcs8(signing, doc.as_ref()).expect("ec");
                    let sigs = messages
                        .into_iter()
                        .map(|m| (pair.sign(&rng, &m).expect("sign").as_ref().to_vec(), m))
                        .collect();
                    (pair.public_key().as_ref().to_vec(), sigs)
                }
            }
        };
        let aws_alg: &'static dyn sig::VerificationAlgorithm = match alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            _ => &sig::ED25519,
        };
        let parsed = ParsedPublicKey::new(aws_alg, public.clone()).expect("aws-lc key");
        let ring_key = rs::UnparsedPublicKey::new(ring_alg, public);
        let aws = |m: &[u8], s: &[u8]| parsed.verify_sig(m, s).is_ok();
        let ring = |m: &[u8], s: &[u8]| ring_key.verify(m, s).is_ok();
        paired_named(
            &format!("backend {curve}"),
            ["aws-lc", "ring"],
            50,
            verifying(&signatures, aws),
            verifying(&signatures, ring),
        );
    }
}

/// Times `iters` verifications, cycling through `signatures`.
fn verifying<'a>(
    signatures: &'a [Signed],
    verify: impl Fn(&[u8], &[u8]) -> bool + 'a,
) -> impl FnMut(u64) -> Duration + 'a {
    let mut i = 0usize;
    move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let (signature, message) = &signatures[i % signatures.len()];
            i = i.wrapping_add(1);
            assert!(verify(black_box(message), black_box(signature)));
        }
        start.elapsed()
    }
}

/// Issue #22: what the local limiter adds to a decision. The same API-key
/// decision (no I/O) by a pipeline without limits and by one with a rule
/// that counts every request by principal and never refuses, paired.
fn limits_rounds() {
    let pipeline = |limits: &str| {
        let text = format!(
            "provider_config:\n  type: api_key\n  prefix: tg_\n  keys:\n    - {{hash: {}, principal: alice}}\n{limits}",
            tokengate_api_key::hash_key("tg_bench_key")
        );
        let config = tokengate::Config::parse(&text, tokengate::config::Format::Yaml).expect("bench config");
        config.build(&tokengate::Registry::with_builtins()).expect("bench pipeline")
    };
    let without = pipeline("");
    let with =
        pipeline("limits:\n  rules: [{name: all, by: principal, rate: 1000000000/s, daily_quota: 1000000000}]\n");
    let rt = runtime();
    let ctx = tokengate::RequestContext::new("POST", "/v1/chat/completions");
    let timer = |p: &'static tokengate::Pipeline| {
        let (rt, ctx) = (&rt, ctx.clone());
        move |iters: u64| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(p.validate(black_box("tg_bench_key"), &ctx).await.is_ok());
                }
                start.elapsed()
            })
        }
    };
    let (without, with): (&'static _, &'static _) = (Box::leak(Box::new(without)), Box::leak(Box::new(with)));
    assert!(rt.block_on(with.validate("tg_bench_key", &ctx)).is_ok());
    paired_named("limits/local", ["no_limits", "local_limits"], 20_000, timer(without), timer(with));
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    if paired_enabled() && wanted("limits") {
        limits_rounds();
    }
    if paired_enabled() && wanted("backend") {
        backend_rounds();
    }
    jwt_benches(&mut c);
    if wanted("introspection") {
        introspection_benches(&mut c);
    }
    c.final_summary();
}
