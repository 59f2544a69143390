//! JWT validation against real key sets served over HTTP on 127.0.0.1, with
//! keys generated per test run. Fetch counts are read from the test server.
//!
//! One file, past 400 lines, because every test shares the one key-set server
//! and token builders above.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokengate_api::{
    AuthError, AuthProvider, BuildContext, ErrorKind, Ownership, Principal, ProviderBuilder, RequestContext,
};
use tokengate_oauth2::config::OAuth2Config;
use tokengate_oauth2::{OAuth2Builder, OAuth2Provider};

const ISS: &str = "https://issuer.test";
const AUD: &str = "tokengate-test";

// ---------------------------------------------------------------- keys

struct TestKey {
    enc: EncodingKey,
    alg: Algorithm,
    /// Public JWK, without `kid`.
    jwk: Value,
}

impl TestKey {
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    /// The JWK without its `alg` member, so the key may serve any algorithm of its type.
    fn jwk_unpinned(&self, kid: &str) -> Value {
        let mut jwk = self.jwk(kid);
        jwk.as_object_mut().unwrap().remove("alg");
        jwk
    }
}

struct Keys {
    rsa: TestKey,
    rsa2: TestKey,
    rsa_other: TestKey,
    ec: TestKey,
    ed: TestKey,
}

fn public_jwk(enc: &EncodingKey, alg: Algorithm) -> Value {
    serde_json::to_value(Jwk::from_encoding_key(enc, alg).unwrap()).unwrap()
}

fn rsa_key() -> TestKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
    let enc = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let jwk = public_jwk(&enc, Algorithm::RS256);
    TestKey { enc, alg: Algorithm::RS256, jwk }
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let rng = SystemRandom::new();
    let ec_der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EncodingKey::from_ec_der(ec_der.as_ref());
    let ed_der = Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap();
    let ed = EncodingKey::from_ed_der(ed_der.as_ref());
    Keys {
        rsa: rsa_key(),
        rsa2: rsa_key(),
        rsa_other: rsa_key(),
        ec: TestKey { jwk: public_jwk(&ec, Algorithm::ES256), enc: ec, alg: Algorithm::ES256 },
        ed: TestKey { jwk: public_jwk(&ed, Algorithm::EdDSA), enc: ed, alg: Algorithm::EdDSA },
    }
});

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs any header/claims JSON, so tests can craft headers a library would refuse to.
fn sign_raw(enc: &EncodingKey, alg: Algorithm, header: &Value, claims: &Value) -> String {
    let message =
        format!("{}.{}", b64url(&serde_json::to_vec(header).unwrap()), b64url(&serde_json::to_vec(claims).unwrap()));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), enc, alg).unwrap();
    let token = format!("{message}.{signature}");
    // jsonwebtoken (aws-lc) does not normalize S; tokengate refuses high-S by default.
    if matches!(alg, Algorithm::ES256 | Algorithm::ES384) {
        tokengate_oauth2::ecdsa::low_s_token(&token)
    } else {
        token
    }
}

fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg).unwrap().as_str().unwrap().to_string()
}

fn token(key: &TestKey, kid: &str, claims: &Value) -> String {
    token_alg(key, key.alg, kid, claims)
}

fn token_alg(key: &TestKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
    sign_raw(&key.enc, alg, &json!({"alg": alg_name(alg), "typ": "JWT", "kid": kid}), claims)
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims() -> Value {
    json!({"sub": "alice", "iss": ISS, "aud": AUD, "exp": now() + 600, "iat": now() - 10})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

// ---------------------------------------------------------------- identity provider

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Serve,
    Fail500,
    Garbage,
}

struct Shared {
    jwks: Mutex<Value>,
    discovery: Mutex<Value>,
    behaviour: Mutex<Behaviour>,
    delay: Mutex<Duration>,
    last_authorization: Mutex<Option<String>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    evil_fetches: AtomicUsize,
}

struct Idp {
    base: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn jwks_route(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.jwks_fetches.fetch_add(1, SeqCst);
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    *s.last_authorization.lock().unwrap() = auth;
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let behaviour = *s.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::Serve => {
            let body = s.jwks.lock().unwrap().to_string();
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Behaviour::Fail500 => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Behaviour::Garbage => ([(header::CONTENT_TYPE, "application/json")], "<html>oops</html>").into_response(),
    }
}

async fn discovery_route(State(s): State<Arc<Shared>>) -> Response {
    s.discovery_fetches.fetch_add(1, SeqCst);
    let body = s.discovery.lock().unwrap().to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn evil_route(State(s): State<Arc<Shared>>) -> Response {
    s.evil_fetches.fetch_add(1, SeqCst);
    let body = json!({"keys": [KEYS.rsa_other.jwk("attacker")]}).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl Idp {
    async fn start(keys: Value) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            jwks: Mutex::new(json!({ "keys": keys })),
            discovery: Mutex::new(json!({"issuer": base, "jwks_uri": format!("{base}/jwks")})),
            behaviour: Mutex::new(Behaviour::Serve),
            delay: Mutex::new(Duration::ZERO),
            last_authorization: Mutex::new(None),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            evil_fetches: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/jwks", get(jwks_route))
            .route("/.well-known/openid-configuration", get(discovery_route))
            .route("/evil", get(evil_route))
            // Redirects to this same server: by path, and by another name for
            // the host (`localhost`), which must not be followed.
            .route("/moved-here", get(|| async { axum::response::Redirect::temporary("/jwks") }))
            .route(
                "/moved-away",
                get(move |headers: HeaderMap| async move {
                    let port = headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| h.rsplit(':').next())
                        .unwrap_or("80")
                        .to_string();
                    axum::response::Redirect::temporary(&format!("http://localhost:{port}/jwks"))
                }),
            )
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Idp { base, shared, shutdown: Some(tx), task: Some(task) }
    }

    fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.base)
    }

    fn fetches(&self) -> usize {
        self.shared.jwks_fetches.load(SeqCst)
    }

    fn set_keys(&self, keys: Value) {
        *self.shared.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    fn set_behaviour(&self, b: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = b;
    }

    fn set_delay(&self, d: Duration) {
        *self.shared.delay.lock().unwrap() = d;
    }

    /// Stops listening and closes kept-alive connections: the provider then
    /// sees connection failures, as in a real outage.
    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------- providers

/// A JWKS config for `idp`; `extra` members replace the defaults (`null` removes one).
fn config(idp: &Idp, extra: Value) -> Value {
    let base = json!({
        "jwks": {"uri": idp.jwks_uri(), "refresh_cooldown": "30s"},
        "issuer": ISS,
        "audience": AUD,
    });
    with(base, extra)
}

fn provider(cfg: Value) -> OAuth2Provider {
    let cfg: OAuth2Config = serde_json::from_value(cfg).unwrap();
    OAuth2Provider::new(cfg, &BuildContext::default()).unwrap()
}

async fn check(p: &OAuth2Provider, token: &str) -> Result<Principal, AuthError> {
    p.validate(token, &RequestContext::default()).await
}

#[track_caller]
fn assert_rejected(result: Result<Principal, AuthError>, kind: ErrorKind, needle: &str) -> AuthError {
    let err = match result {
        Ok(p) => panic!("expected {kind:?} containing {needle:?}, got principal {p:?}"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), kind, "wrong kind for {err:?}");
    assert!(err.detail().contains(needle), "detail {:?} does not contain {needle:?}", err.detail());
    err
}

fn standard_keys() -> Value {
    json!([KEYS.rsa.jwk_unpinned("rsa1"), KEYS.ec.jwk("ec1"), KEYS.ed.jwk("ed1")])
}

// ---------------------------------------------------------------- signatures and algorithms

#[tokio::test]
async fn rs256_ps256_es256_eddsa_tokens_validate() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    for (key, alg, kid) in [
        (&KEYS.rsa, Algorithm::RS256, "rsa1"),
        (&KEYS.rsa, Algorithm::PS256, "rsa1"),
        (&KEYS.rsa, Algorithm::RS512, "rsa1"),
        (&KEYS.ec, Algorithm::ES256, "ec1"),
        (&KEYS.ed, Algorithm::EdDSA, "ed1"),
    ] {
        let principal = check(&p, &token_alg(key, alg, kid, &claims())).await.unwrap();
        assert_eq!(principal.principal, "alice", "{alg:?}");
        assert_eq!(principal.attributes["roles"], vec!["alice"], "default mapping: sub → roles");
    }
    assert_eq!(idp.fetches(), 1);
}

/// Issues #11 and #21: (r, s) → (r, n − s) needs no key, and most signers do
/// not normalize S, so both forms are accepted by default (the twin is the
/// same token to revocation and caches); `require_low_s: true` refuses high-S,
/// also for the twin of a token it has cached; `allow_high_s_signatures`
/// still loads.
#[tokio::test]
async fn high_s_ecdsa_signatures_are_accepted_unless_low_s_is_required() {
    use tokengate_oauth2::ecdsa::{flip_s, is_high_s};
    let idp = Idp::start(standard_keys()).await;
    let default = provider(config(&idp, json!({})));
    let strict = provider(config(&idp, json!({"require_low_s": true})));
    let old_lenient = provider(config(&idp, json!({"allow_high_s_signatures": true})));
    let old_strict = provider(config(&idp, json!({"allow_high_s_signatures": false})));
    let low = token(&KEYS.ec, "ec1", &claims());
    let signature = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.rsplit('.').next().unwrap());
    assert!(!is_high_s(&signature(&low).unwrap()), "fixtures sign low-S");
    let high = flip_s(&low).unwrap();
    assert_ne!(high, low);
    assert!(is_high_s(&signature(&high).unwrap()));

    for p in [&default, &old_lenient] {
        assert_eq!(check(p, &low).await.unwrap().principal, "alice");
        assert_eq!(check(p, &high).await.unwrap().principal, "alice");
    }
    // Low-S verified twice, so cached: its twin must still be refused.
    for p in [&strict, &old_strict] {
        assert_eq!(check(p, &low).await.unwrap().principal, "alice");
        assert_eq!(check(p, &low).await.unwrap().principal, "alice");
        for _ in 0..2 {
            assert_rejected(
                check(p, &high).await,
                ErrorKind::InvalidToken,
                "signature invalid: high-S ECDSA signature (alg ES256, key \"ec1\"); this provider accepts only the low-S form",
            );
        }
    }

    // A signer that does not normalize S (aws-lc here, like OpenSSL, Java and
    // Node.js issuers) produces high-S about half the time.
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "ec1"});
    let message = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims().to_string().as_bytes()));
    let raw: Vec<String> = (0..64)
        .map(|_| {
            format!(
                "{message}.{}",
                jsonwebtoken::crypto::sign(message.as_bytes(), &KEYS.ec.enc, Algorithm::ES256).unwrap()
            )
        })
        .collect();
    let raw_high = raw.iter().find(|t| is_high_s(&signature(t).unwrap())).expect("one in 64 signatures is high-S");
    assert!(raw.iter().any(|t| !is_high_s(&signature(t).unwrap())), "one in 64 signatures is low-S");
    for t in &raw {
        assert_eq!(check(&default, t).await.unwrap().principal, "alice");
    }
    assert_rejected(check(&strict, raw_high).await, ErrorKind::InvalidToken, "high-S");
    // A forged signature stays a plain invalid signature, whatever its S.
    for p in [&default, &strict] {
        assert_rejected(
            check(p, &common_tamper(raw_high)).await,
            ErrorKind::InvalidToken,
            "signature invalid (alg ES256",
        );
    }
    // A padded signature is refused, also once its canonical spelling is cached.
    assert_rejected(check(&default, &format!("{low}==")).await, ErrorKind::InvalidToken, "not base64url");

    // The old field and the new one at once must agree.
    let ctx = BuildContext::default();
    for (require, allow) in [(true, true), (false, false)] {
        let cfg = config(&idp, json!({"require_low_s": require, "allow_high_s_signatures": allow}));
        let err = OAuth2Builder.build(cfg, &ctx).err().expect("contradiction refused");
        assert_eq!(err.field, "allow_high_s_signatures", "{err}");
        assert!(err.message.contains("say opposite things"), "{err}");
    }
    let introspection = json!({"introspection": {"url": "https://idp.test/i", "client_id": "c", "client_secret": "s"},
        "allow_any_audience": true, "require_low_s": true});
    assert_eq!(OAuth2Builder.build(introspection, &ctx).err().expect("refused").field, "require_low_s");
}

fn common_tamper(token: &str) -> String {
    let (input, _) = token.rsplit_once('.').unwrap();
    let mut sig = vec![0x11u8; 32];
    sig.extend_from_slice(&[0xff; 32]);
    format!("{input}.{}", b64url(&sig))
}

#[tokio::test]
async fn claims_mapping_nested_roles_and_scopes() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(
        &idp,
        json!({
            "principal_claim": "preferred_username",
            "claims_mapping": {"realm_access.roles": "roles", "scope": "scopes", "groups": "teams"}
        }),
    ));
    let c = with(
        claims(),
        json!({
            "preferred_username": "alice@example.com",
            "realm_access": {"roles": ["admin", "user"]},
            "scope": "read write  read",
            "groups": ["ml"]
        }),
    );
    let principal = check(&p, &token(&KEYS.ec, "ec1", &c)).await.unwrap();
    assert_eq!(principal.principal, "alice@example.com");
    assert_eq!(principal.attributes["roles"], vec!["admin", "user"]);
    assert_eq!(principal.attributes["scopes"], vec!["read", "write"]);
    assert_eq!(principal.attributes["teams"], vec!["ml"]);

    let no_name = with(claims(), json!({}));
    assert_rejected(
        check(&p, &token(&KEYS.ec, "ec1", &no_name)).await,
        ErrorKind::InvalidToken,
        "token has no \"preferred_username\" claim to name the principal",
    );
}

#[tokio::test]
async fn bad_signatures_are_invalid_tokens() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let forged = token(&KEYS.rsa_other, "rsa1", &claims());
    let err = assert_rejected(
        check(&p, &forged).await,
        ErrorKind::InvalidToken,
        "signature invalid (alg RS256, key \"rsa1\")",
    );
    let signature = forged.rsplit('.').next().unwrap();
    assert!(!err.detail().contains(signature) && !format!("{err:?}").contains(signature));

    // A valid token whose payload was swapped keeps its signature but not its validity.
    let good = token(&KEYS.ed, "ed1", &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let admin = b64url(&serde_json::to_vec(&with(claims(), json!({"sub": "admin"}))).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], admin, parts[2]);
    assert_rejected(check(&p, &tampered).await, ErrorKind::InvalidToken, "signature invalid (alg EdDSA, key \"ed1\")");

    let not_b64 = format!("{}.{}.%%%", parts[0], parts[1]);
    assert_rejected(check(&p, &not_b64).await, ErrorKind::InvalidToken, "signature is not base64url");
}

#[tokio::test]
async fn alg_none_is_refused_in_any_spelling() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    for alg in ["none", "NONE", "nOnE"] {
        let header = b64url(json!({"alg": alg, "kid": "rsa1"}).to_string().as_bytes());
        let payload = b64url(claims().to_string().as_bytes());
        let unsigned = format!("{header}.{payload}.");
        assert_rejected(check(&p, &unsigned).await, ErrorKind::InvalidToken, "(an unsigned token) is never accepted");
    }
    assert_eq!(idp.fetches(), 0, "refused before any key lookup");
}

#[tokio::test]
async fn alg_must_match_the_key_not_just_the_header() {
    let idp = Idp::start(json!([KEYS.rsa.jwk("rsa1"), KEYS.ec.jwk("ec1")])).await;
    let p = provider(config(&idp, json!({})));
    // An ES256 token naming an RSA key.
    let t = token_alg(&KEYS.ec, Algorithm::ES256, "rsa1", &claims());
    assert_rejected(
        check(&p, &t).await,
        ErrorKind::InvalidToken,
        "alg ES256 does not match key type RSA of key \"rsa1\"",
    );
    // The JWK pins RS256: a PS256 signature by the same key is still refused.
    let t = token_alg(&KEYS.rsa, Algorithm::PS256, "rsa1", &claims());
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "restricts to RS256");
    // Outside the configured allowlist.
    let narrow = provider(config(&idp, json!({"algorithms": ["ES256"]})));
    let t = token(&KEYS.rsa, "rsa1", &claims());
    assert_rejected(check(&narrow, &t).await, ErrorKind::InvalidToken, "alg RS256 is not allowed (allowed: ES256)");
}

#[tokio::test]
async fn hs256_against_a_key_set_is_key_confusion() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    // The classic attack: HMAC keyed with the public key's bytes.
    let n = KEYS.rsa.jwk["n"].as_str().unwrap();
    let enc = EncodingKey::from_secret(n.as_bytes()).unwrap();
    let t = sign_raw(&enc, Algorithm::HS256, &json!({"alg": "HS256", "kid": "rsa1"}), &claims());
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "key confusion");
}

#[tokio::test]
async fn shared_secret_mode_verifies_hs_tokens_only() {
    // 64+ bytes: RFC 7518 §3.2 wants HS512 keys at least as long as the hash.
    let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-secret";
    let p = provider(json!({"secret": secret, "issuer": ISS, "audience": AUD}));
    let enc = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    for alg in [Algorithm::HS256, Algorithm::HS512] {
        let t = sign_raw(&enc, alg, &json!({"alg": alg_name(alg)}), &claims());
        assert_eq!(check(&p, &t).await.unwrap().principal, "alice");
    }
    let wrong = EncodingKey::from_secret(b"another-secret-another-secret-another").unwrap();
    let t = sign_raw(&wrong, Algorithm::HS256, &json!({"alg": "HS256"}), &claims());
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "signature invalid (alg HS256)");
    let t = token(&KEYS.rsa, "rsa1", &claims());
    assert_rejected(
        check(&p, &t).await,
        ErrorKind::InvalidToken,
        "alg RS256 is not allowed (allowed: HS256, HS384, HS512)",
    );
    assert!(!format!("{p:?}").contains(secret));
}

// ---------------------------------------------------------------- structure

#[tokio::test]
async fn malformed_tokens_say_what_is_wrong() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let good = token(&KEYS.rsa, "rsa1", &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        ("opaque-token".to_string(), "expected 3 dot-separated segments, found 1"),
        ("a.b".to_string(), "found 2"),
        ("a.b.c.d".to_string(), "found 4"),
        ("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d".to_string(), "JWE (encrypted JWT) is not supported"),
        (format!("!!!.{}.{}", parts[1], parts[2]), "the header is not base64url"),
        (format!("{}.{}.{}", b64url(b"not json"), parts[1], parts[2]), "the header is not a JSON object"),
        (format!("{}.{}.{}", b64url(b"{\"alg\":"), parts[1], parts[2]), "the header is not valid JSON"),
        (format!(".{}.{}", parts[1], parts[2]), "empty header or payload"),
        (format!("{}.{}.", parts[0], parts[1]), "the token has no signature"),
    ];
    for (t, needle) in cases {
        assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, needle);
    }
    // A correctly signed token whose payload is not a JSON object.
    let t = {
        let header = b64url(json!({"alg": "RS256", "kid": "rsa1"}).to_string().as_bytes());
        let message = format!("{header}.{}", b64url(b"[1,2]"));
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &KEYS.rsa.enc, Algorithm::RS256).unwrap();
        format!("{message}.{sig}")
    };
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "the payload is not a JSON object");
}

#[tokio::test]
async fn oversize_tokens_are_refused_before_parsing() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({"max_token_bytes": 1024})));
    let big = with(claims(), json!({"pad": "x".repeat(2000)}));
    let t = token(&KEYS.rsa, "rsa1", &big);
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "more than the 1024-byte limit");
    assert_eq!(idp.fetches(), 0, "no key set fetched for an oversize token");
}

#[tokio::test]
async fn crit_header_is_refused() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let header = json!({"alg": "RS256", "kid": "rsa1", "crit": ["b64"], "b64": false});
    let t = sign_raw(&KEYS.rsa.enc, Algorithm::RS256, &header, &claims());
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "critical ([\"b64\"]) and tokengate supports none");
}

#[tokio::test]
async fn keys_named_by_the_token_itself_are_never_used() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let header = json!({
        "alg": "RS256",
        "kid": "attacker",
        "jku": format!("{}/evil", idp.base),
        "x5u": format!("{}/evil", idp.base),
        "jwk": KEYS.rsa_other.jwk("attacker"),
    });
    let t = sign_raw(&KEYS.rsa_other.enc, Algorithm::RS256, &header, &claims());
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "unknown key id \"attacker\"");
    assert_eq!(idp.shared.evil_fetches.load(SeqCst), 0, "jku/x5u never fetched");
}

#[tokio::test]
async fn token_without_kid_needs_exactly_one_fitting_key() {
    let idp = Idp::start(json!([KEYS.rsa.jwk("rsa1"), KEYS.ec.jwk("ec1")])).await;
    let p = provider(config(&idp, json!({})));
    let no_kid = sign_raw(&KEYS.rsa.enc, Algorithm::RS256, &json!({"alg": "RS256"}), &claims());
    assert_eq!(check(&p, &no_kid).await.unwrap().principal, "alice");

    let idp2 = Idp::start(json!([KEYS.rsa.jwk("rsa1"), KEYS.rsa2.jwk("rsa2")])).await;
    let p2 = provider(config(&idp2, json!({})));
    assert_rejected(
        check(&p2, &no_kid).await,
        ErrorKind::InvalidToken,
        "token has no kid and 2 keys in the key set fit alg RS256",
    );
    let es = sign_raw(&KEYS.ec.enc, Algorithm::ES256, &json!({"alg": "ES256"}), &claims());
    assert_rejected(
        check(&p2, &es).await,
        ErrorKind::InvalidToken,
        "token has no kid and the key set has no key for alg ES256",
    );
}

#[tokio::test]
async fn mutated_tokens_are_always_rejected_never_panic() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let good = token(&KEYS.ed, "ed1", &claims());
    assert!(check(&p, &good).await.is_ok());
    let alphabet = b"ABCxyz019-_.=+/ \"{}";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..600 {
        let mut bytes = good.clone().into_bytes();
        for _ in 0..=(next() % 3) {
            let at = (next() as usize) % bytes.len();
            match next() % 3 {
                0 => bytes[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, alphabet[(next() as usize) % alphabet.len()]),
            }
        }
        let mutated = String::from_utf8(bytes).unwrap();
        if mutated == good {
            continue;
        }
        let err = check(&p, &mutated).await.expect_err("a mutated token was accepted");
        assert_eq!(err.kind(), ErrorKind::InvalidToken, "{err:?}");
        assert!(!err.detail().contains(&mutated), "the token leaked into {err:?}");
    }
}

// ---------------------------------------------------------------- claims

#[tokio::test]
async fn expired_token_names_the_time() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let c = with(claims(), json!({"exp": 1_700_000_000, "iat": 1_699_990_000}));
    let t = token(&KEYS.rsa, "rsa1", &c);
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "token expired at 2023-11-14T22:13:20Z");
    // Within leeway (30s by default) is still accepted.
    let c = with(claims(), json!({"exp": now() - 10}));
    assert!(check(&p, &token(&KEYS.rsa, "rsa1", &c)).await.is_ok());
}

#[tokio::test]
async fn exp_is_required_and_numeric() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"exp": null})));
    let e = assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "token has no exp claim");
    assert!(e.detail().contains("allow_missing_exp: true"), "the 401 says how such tokens are accepted: {e}");
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"exp": "9999999999"})));
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "the exp claim is not a number");

    let lenient = provider(config(&idp, json!({"allow_missing_exp": true})));
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"exp": null})));
    assert_eq!(check(&lenient, &t).await.unwrap().principal, "alice");
}

#[tokio::test]
async fn not_yet_valid_and_issued_in_the_future() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let t = token(&KEYS.ec, "ec1", &with(claims(), json!({"nbf": now() + 3600})));
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "token not valid before 2");
    let t = token(&KEYS.ec, "ec1", &with(claims(), json!({"iat": now() + 3600})));
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "token issued in the future (iat 2");
    // Clock skew within leeway is tolerated.
    let t = token(&KEYS.ec, "ec1", &with(claims(), json!({"nbf": now() + 10, "iat": now() + 10})));
    assert!(check(&p, &t).await.is_ok());
}

#[tokio::test]
async fn wrong_issuer_names_expected_and_got() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"iss": "https://evil.test"})));
    assert_rejected(
        check(&p, &t).await,
        ErrorKind::InvalidToken,
        "issuer \"https://evil.test\" is not the expected \"https://issuer.test\"",
    );
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"iss": null})));
    assert_rejected(
        check(&p, &t).await,
        ErrorKind::InvalidToken,
        "token has no iss claim (expected \"https://issuer.test\")",
    );
}

#[tokio::test]
async fn wrong_audience_as_string_and_as_list() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"aud": "x"})));
    assert_rejected(
        check(&p, &t).await,
        ErrorKind::InvalidToken,
        "audience [\"x\"] is not one of [\"tokengate-test\"]",
    );
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"aud": ["x", "y"]})));
    assert_rejected(
        check(&p, &t).await,
        ErrorKind::InvalidToken,
        "audience [\"x\", \"y\"] is not one of [\"tokengate-test\"]",
    );
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"aud": null})));
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "token has no aud claim");
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"aud": ["x", AUD]})));
    assert!(check(&p, &t).await.is_ok());

    // Several accepted audiences: any one matching is enough.
    let multi = provider(config(&idp, json!({"audience": ["a", "b"]})));
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"aud": "b"})));
    assert!(check(&multi, &t).await.is_ok());
    let any = provider(config(&idp, json!({"audience": null, "allow_any_audience": true})));
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"aud": "whatever"})));
    assert!(check(&any, &t).await.is_ok());
}

#[tokio::test]
async fn llama_stack_defaults_supply_the_audience() {
    let idp = Idp::start(standard_keys()).await;
    let cfg = config(&idp, json!({"audience": null}));
    let ctx = BuildContext { llama_stack_defaults: true, ..Default::default() };
    let p = OAuth2Builder.build(cfg.clone(), &ctx).unwrap();
    for aud in ["llama-stack", "ogx"] {
        let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"aud": aud})));
        assert!(p.validate(&t, &RequestContext::default()).await.is_ok(), "{aud}");
    }
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"aud": "ogx-other"})));
    assert!(p.validate(&t, &RequestContext::default()).await.is_err());
    let err = OAuth2Builder.build(cfg, &BuildContext::default()).err().unwrap();
    assert_eq!(err.field, "audience");
}

/// Issue #11: `jwks.uri` without `issuer` never checked `iss` and said nothing,
/// so every issuer a key set signs for (multi-tenant providers share one) got in.
#[tokio::test]
async fn jwks_uri_needs_an_issuer_or_allow_any_issuer() {
    let idp = Idp::start(standard_keys()).await;
    let build = |extra: Value, ctx: &BuildContext| OAuth2Builder.build(config(&idp, extra), ctx);
    let err = build(json!({"issuer": null}), &BuildContext::default()).err().expect("refused");
    assert_eq!(err.field, "issuer", "{err}");
    assert!(err.message.contains("allow_any_issuer: true"), "{err}");
    let err = build(json!({"allow_any_issuer": true}), &BuildContext::default()).err().expect("refused");
    assert_eq!(err.field, "allow_any_issuer", "{err}");

    let other_tenant = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"iss": "https://other-tenant.test"})));
    let any = build(json!({"issuer": null, "allow_any_issuer": true}), &BuildContext::default()).unwrap();
    assert!(any.validate(&other_tenant, &RequestContext::default()).await.is_ok(), "said on purpose");
    let checked = build(json!({}), &BuildContext::default()).unwrap();
    let e = checked.validate(&other_tenant, &RequestContext::default()).await.unwrap_err();
    assert!(e.detail().contains("is not the expected"), "{e:?}");
    // A Llama Stack run.yaml leaves `issuer` optional: it loads, with a WARN naming the field.
    let ctx = BuildContext { llama_stack_defaults: true, ..Default::default() };
    assert!(build(json!({"issuer": null}), &ctx).is_ok());
}

// ---------------------------------------------------------------- key set: discovery, rotation, outages

#[tokio::test]
async fn discovery_finds_the_key_set() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(json!({"issuer": idp.base, "audience": AUD}));
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"iss": idp.base})));
    assert_eq!(check(&p, &t).await.unwrap().principal, "alice");
    assert_eq!(idp.shared.discovery_fetches.load(SeqCst), 1);
    assert_eq!(idp.fetches(), 1);

    // `jwks` without `uri` also means discovery, with the jwks settings applied.
    let p = provider(json!({"issuer": idp.base, "audience": AUD, "jwks": {"refresh_cooldown": "1s"}}));
    assert!(check(&p, &t).await.is_ok());
}

#[tokio::test]
async fn discovery_for_another_issuer_is_unavailable() {
    let idp = Idp::start(standard_keys()).await;
    *idp.shared.discovery.lock().unwrap() = json!({"issuer": "https://evil.test", "jwks_uri": idp.jwks_uri()});
    let p = provider(json!({"issuer": idp.base, "audience": AUD}));
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"iss": idp.base})));
    assert_rejected(
        check(&p, &t).await,
        ErrorKind::Unavailable,
        "names issuer \"https://evil.test\", not the configured",
    );
    assert_eq!(idp.fetches(), 0, "keys from an impersonating document are never fetched");
}

#[tokio::test]
async fn rotation_accepts_a_new_kid_after_exactly_one_fetch() {
    let idp = Idp::start(json!([KEYS.rsa.jwk("k1")])).await;
    let p = provider(config(&idp, json!({})));
    assert!(check(&p, &token(&KEYS.rsa, "k1", &claims())).await.is_ok());
    assert_eq!(idp.fetches(), 1);

    idp.set_keys(json!([KEYS.rsa.jwk("k1"), KEYS.rsa2.jwk("k2")]));
    let t2 = token(&KEYS.rsa2, "k2", &claims());
    assert!(check(&p, &t2).await.is_ok());
    assert_eq!(idp.fetches(), 2, "exactly one extra fetch");
    assert!(check(&p, &t2).await.is_ok());
    assert!(check(&p, &token(&KEYS.rsa, "k1", &claims())).await.is_ok());
    assert_eq!(idp.fetches(), 2);
    assert_eq!(p.fetch_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_kids_costs_at_most_one_fetch() {
    let idp = Idp::start(standard_keys()).await;
    let p = Arc::new(provider(config(&idp, json!({}))));
    assert!(check(&p, &token(&KEYS.rsa, "rsa1", &claims())).await.is_ok());
    assert_eq!(idp.fetches(), 1);

    let mut tasks = Vec::new();
    for i in 0..100 {
        let p = p.clone();
        let t = token(&KEYS.rsa_other, &format!("bogus-{i}"), &claims());
        tasks.push(tokio::spawn(async move { check(&p, &t).await }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_rejected(task.await.unwrap(), ErrorKind::InvalidToken, &format!("unknown key id \"bogus-{i}\""));
    }
    assert!(idp.fetches() <= 2, "{} fetches for 100 bogus kids", idp.fetches());
    // More made-up kids within the cooldown: no fetch at all.
    let before = idp.fetches();
    for i in 0..20 {
        let t = token(&KEYS.rsa_other, &format!("later-{i}"), &claims());
        assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "unknown key id");
    }
    assert_eq!(idp.fetches(), before);
}

#[tokio::test]
async fn outage_keeps_known_keys_and_makes_unknown_kids_unavailable() {
    let mut idp = Idp::start(standard_keys()).await;
    let p = provider(config(
        &idp,
        json!({"jwks": {"uri": idp.jwks_uri(), "key_recheck_period": 1, "refresh_cooldown": "100ms"}}),
    ));
    let known = token(&KEYS.rsa, "rsa1", &claims());
    assert!(check(&p, &known).await.is_ok());
    idp.stop().await;

    // Refresh due while the provider is down: the last good keys keep serving.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(check(&p, &token(&KEYS.ec, "ec1", &claims())).await.is_ok());
    assert!(check(&p, &known).await.is_ok());

    let unknown = token(&KEYS.rsa2, "new-key", &claims());
    assert_rejected(
        check(&p, &unknown).await,
        ErrorKind::Unavailable,
        "key id \"new-key\" is not among the cached keys",
    );
    // Still unavailable within the cooldown, without a new fetch being possible.
    assert_rejected(check(&p, &unknown).await, ErrorKind::Unavailable, "connection failed");
    assert!(check(&p, &known).await.is_ok());
}

#[tokio::test]
async fn keys_past_their_stale_grace_are_not_trusted() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(
        &idp,
        json!({"jwks": {"uri": idp.jwks_uri(), "key_recheck_period": 1, "stale_grace": 0, "refresh_cooldown": "100ms"}}),
    ));
    let known = token(&KEYS.rsa, "rsa1", &claims());
    assert!(check(&p, &known).await.is_ok());
    idp.set_behaviour(Behaviour::Fail500);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_rejected(check(&p, &known).await, ErrorKind::Unavailable, "answered HTTP 500");
    idp.set_behaviour(Behaviour::Serve);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(check(&p, &known).await.is_ok(), "recovers once the provider answers");
}

#[tokio::test]
async fn broken_key_set_with_no_keys_is_unavailable() {
    let t = token(&KEYS.rsa, "rsa1", &claims());

    let idp = Idp::start(standard_keys()).await;
    idp.set_behaviour(Behaviour::Fail500);
    let p = provider(config(&idp, json!({})));
    assert_rejected(check(&p, &t).await, ErrorKind::Unavailable, "answered HTTP 500");

    idp.set_behaviour(Behaviour::Garbage);
    let p = provider(config(&idp, json!({})));
    assert_rejected(check(&p, &t).await, ErrorKind::Unavailable, "invalid JSON");

    idp.set_behaviour(Behaviour::Serve);
    idp.set_keys(json!([{"kty": "RSA", "kid": "rsa1", "n": "AQAB", "e": "AQAB"}, {"kty": "oct", "k": "c2VjcmV0"}]));
    let p = provider(config(&idp, json!({})));
    assert_rejected(check(&p, &t).await, ErrorKind::Unavailable, "has no usable key");

    idp.set_keys(json!([KEYS.rsa.jwk("a"), KEYS.rsa.jwk("b"), KEYS.rsa.jwk("c")]));
    let p = provider(config(&idp, json!({"jwks": {"uri": idp.jwks_uri(), "max_keys": 2}})));
    assert_rejected(check(&p, &t).await, ErrorKind::Unavailable, "more than max_keys (2)");

    idp.set_keys(standard_keys());
    idp.set_delay(Duration::from_secs(3));
    let p = provider(config(&idp, json!({"timeout": "300ms"})));
    assert_rejected(check(&p, &t).await, ErrorKind::Unavailable, "timed out");

    let p = provider(config(&idp, json!({"jwks": {"uri": "http://127.0.0.1:9/jwks"}})));
    assert_rejected(check(&p, &t).await, ErrorKind::Unavailable, "connection failed");
}

#[tokio::test]
async fn unusable_jwks_entries_are_skipped() {
    let idp = Idp::start(json!([
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA", "kid": "weird"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": KEYS.rsa2.jwk["n"], "e": "AQAB"},
        "not even an object",
        KEYS.rsa.jwk("rsa1"),
    ]))
    .await;
    let p = provider(config(&idp, json!({})));
    assert!(check(&p, &token(&KEYS.rsa, "rsa1", &claims())).await.is_ok());
    assert_rejected(
        check(&p, &token(&KEYS.rsa2, "enc", &claims())).await,
        ErrorKind::InvalidToken,
        "unknown key id \"enc\"",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_fetch() {
    let idp = Idp::start(standard_keys()).await;
    idp.set_delay(Duration::from_millis(300));
    let p = Arc::new(provider(config(&idp, json!({}))));
    let t = Arc::new(token(&KEYS.rsa, "rsa1", &claims()));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (p, t) = (p.clone(), t.clone());
        tasks.push(tokio::spawn(async move { check(&p, &t).await }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().principal, "alice");
    }
    assert_eq!(idp.fetches(), 1);
}

#[tokio::test]
async fn jwks_token_is_sent_as_bearer() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({"jwks": {"uri": idp.jwks_uri(), "token": "sa-token-123"}})));
    assert!(check(&p, &token(&KEYS.rsa, "rsa1", &claims())).await.is_ok());
    assert_eq!(idp.shared.last_authorization.lock().unwrap().as_deref(), Some("Bearer sa-token-123"));
    assert!(!format!("{p:?}").contains("sa-token-123"));
}

#[tokio::test]
async fn warm_up_fetches_once_and_reports_outages() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({})));
    p.warm_up().await.unwrap();
    p.warm_up().await.unwrap();
    assert_eq!(idp.fetches(), 1);
    assert!(check(&p, &token(&KEYS.rsa, "rsa1", &claims())).await.is_ok());
    assert_eq!(idp.fetches(), 1);

    idp.set_behaviour(Behaviour::Fail500);
    let p = provider(config(&idp, json!({})));
    assert_eq!(p.warm_up().await.unwrap_err().kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn key_set_redirects_are_followed_on_the_same_host_only() {
    let idp = Idp::start(standard_keys()).await;
    let here = provider(config(&idp, json!({"jwks": {"uri": format!("{}/moved-here", idp.base)}})));
    assert!(check(&here, &token(&KEYS.rsa, "rsa1", &claims())).await.is_ok());
    assert_eq!(idp.fetches(), 1, "the same-host redirect was followed");

    let away = provider(config(&idp, json!({"jwks": {"uri": format!("{}/moved-away", idp.base)}})));
    let err = away.warm_up().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.detail().contains("redirect to another origin (scheme, host or port) refused"), "{err}");
    assert_eq!(idp.fetches(), 1, "the key set behind the other host name was never asked");
}

// ---------------------------------------------------------------- verified-token cache

#[tokio::test]
async fn verified_tokens_are_reused_until_their_key_leaves_the_set() {
    let idp = Idp::start(json!([KEYS.rsa.jwk("k1")])).await;
    let p = provider(config(&idp, json!({"claims_mapping": {"groups": "teams"}})));
    let t1 = token(&KEYS.rsa, "k1", &with(claims(), json!({"groups": ["ml"]})));
    let first = check(&p, &t1).await.unwrap();
    let second = check(&p, &t1).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(second.attributes["teams"], vec!["ml"]);
    assert_eq!(idp.fetches(), 1);

    // Rotate k1 out; a k2 token forces the refresh.
    idp.set_keys(json!([KEYS.rsa2.jwk("k2")]));
    assert!(check(&p, &token(&KEYS.rsa2, "k2", &claims())).await.is_ok());
    assert_eq!(idp.fetches(), 2);
    assert_rejected(check(&p, &t1).await, ErrorKind::InvalidToken, "unknown key id \"k1\"");
    assert_eq!(idp.fetches(), 2, "within the cooldown, no further fetch");
}

#[tokio::test]
async fn cached_tokens_still_expire() {
    let idp = Idp::start(standard_keys()).await;
    let p = provider(config(&idp, json!({"leeway": 0})));
    // Two seconds of life: one could tick away before the first check on a busy machine.
    let t = token(&KEYS.rsa, "rsa1", &with(claims(), json!({"exp": now() + 2})));
    assert!(check(&p, &t).await.is_ok());
    assert!(check(&p, &t).await.is_ok());
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_rejected(check(&p, &t).await, ErrorKind::InvalidToken, "token expired at");

    let uncached = provider(config(&idp, json!({"cache": {"enabled": false}})));
    let t = token(&KEYS.rsa, "rsa1", &claims());
    assert!(check(&uncached, &t).await.is_ok());
    assert!(check(&uncached, &t).await.is_ok());
}

// ---------------------------------------------------------------- config, messages, ownership

#[test]
fn config_errors_name_the_field() {
    let ctx =
        BuildContext { base_dir: Some("/nonexistent-dir".into()), llama_stack_defaults: false, ..Default::default() };
    let jwks = json!({"uri": "https://idp.test/jwks"});
    let secret = "a-secret-value-that-is-long-enough-1234";
    let cases = [
        (json!({}), "jwks"),
        (json!({"audience": "a"}), "jwks"),
        (
            json!({"jwks": jwks, "introspection": {"url": "https://i.test", "client_id": "c", "client_secret": "s"}}),
            "introspection",
        ),
        (json!({"jwks": jwks}), "audience"),
        (json!({"jwks": jwks, "audience": []}), "audience"),
        (json!({"jwks": jwks, "audience": "a", "allow_any_audience": true}), "allow_any_audience"),
        (json!({"jwks": jwks, "audience": "a", "leeway": "10m"}), "leeway"),
        (json!({"jwks": jwks, "audience": "a", "algorithms": ["RS256", "RS257"]}), "algorithms[1]"),
        (json!({"jwks": jwks, "audience": "a", "algorithms": ["none"]}), "algorithms[0]"),
        (json!({"jwks": jwks, "audience": "a", "algorithms": ["HS256"]}), "algorithms[0]"),
        (json!({"jwks": jwks, "audience": "a", "algorithms": []}), "algorithms"),
        (json!({"jwks": jwks, "audience": "a", "secret": secret}), "secret"),
        (json!({"audience": "a", "secret": "short"}), "secret"),
        (json!({"audience": "a", "secret": secret, "algorithms": ["RS256"]}), "algorithms[0]"),
        (json!({"jwks": {"uri": "not a url"}, "audience": "a"}), "jwks.uri"),
        (json!({"jwks": {"uri": "file:///etc/jwks"}, "audience": "a"}), "jwks.uri"),
        (json!({"jwks": {}, "audience": "a"}), "jwks.uri"),
        (json!({"issuer": "not a url", "audience": "a"}), "issuer"),
        (
            json!({"jwks": {"uri": "https://idp.test/jwks", "refresh_cooldown": 0}, "audience": "a"}),
            "jwks.refresh_cooldown",
        ),
        (json!({"jwks": {"uri": "https://idp.test/jwks", "max_keys": 0}, "audience": "a"}), "jwks.max_keys"),
        (json!({"jwks": jwks, "audience": "a", "tls_cafile": "ca.pem"}), "tls_cafile"),
        (json!({"jwks": jwks, "audience": "a", "max_token_bytes": 0}), "max_token_bytes"),
    ];
    for (cfg, field) in cases {
        let err = OAuth2Builder.build(cfg.clone(), &ctx).err().unwrap_or_else(|| panic!("{cfg} was accepted"));
        assert_eq!(err.field, field, "{cfg}: {err}");
        assert!(!err.message.contains(secret), "secret leaked: {err}");
    }
    // tls_cafile is resolved against the config file's directory.
    let err = OAuth2Builder.build(json!({"jwks": jwks, "audience": "a", "tls_cafile": "ca.pem"}), &ctx).err().unwrap();
    assert!(err.message.contains("/nonexistent-dir/ca.pem"), "{err}");
    // Unknown algorithm names are listed with the supported ones.
    let err = OAuth2Builder.build(json!({"jwks": jwks, "audience": "a", "algorithms": ["RS257"]}), &ctx).err().unwrap();
    assert!(err.message.contains("\"RS257\" is not a supported algorithm"), "{err}");
    assert_eq!(OAuth2Builder.type_name(), "oauth2_token");
}

#[tokio::test]
async fn error_messages_ownership_and_accepts() {
    let ctx = BuildContext::default();
    let build = |cfg: Value| OAuth2Builder.build(cfg, &ctx).unwrap();
    let with_issuer = build(json!({"jwks": {"uri": "https://idp.test/jwks"}, "issuer": ISS, "audience": "a"}));
    assert_eq!(
        with_issuer.describe().message,
        "Authentication required. Please provide a valid OAuth2 Bearer token from https://issuer.test"
    );
    assert_eq!(with_issuer.describe().type_name, "oauth2_token");
    assert!(with_issuer.describe().accepts.contains(ISS));

    let without = build(json!({"jwks": {"uri": "https://idp.test/jwks"}, "audience": "a", "allow_any_issuer": true}));
    assert_eq!(
        without.describe().message,
        "Authentication required. Please provide a valid OAuth2 Bearer token in the Authorization header"
    );
    let introspection = build(
        json!({"introspection": {"url": "https://idp.test/introspect", "client_id": "c", "client_secret": "s"}, "allow_any_audience": true}),
    );
    assert_eq!(
        introspection.describe().message,
        "Authentication required. Please provide a valid OAuth2 Bearer token validated by idp.test"
    );

    let ours = token(&KEYS.ed, "ed1", &claims());
    let theirs = token(&KEYS.ed, "ed1", &with(claims(), json!({"iss": "https://other.test"})));
    assert_eq!(with_issuer.ownership(&ours), Ownership::Mine);
    assert_eq!(with_issuer.ownership(&theirs), Ownership::NotMine);
    assert_eq!(with_issuer.ownership("ghp_opaque"), Ownership::NotMine);
    assert_eq!(with_issuer.ownership("a.b.c"), Ownership::NotMine, "undecodable header");
    assert_eq!(without.ownership(&theirs), Ownership::Mine, "no issuer configured: any JWT");
    assert_eq!(introspection.ownership("opaque-token"), Ownership::Mine);
}
