//! Tokens, client secrets, shared secrets, endpoint passwords and GitHub tokens
//! never appear in logs, error details, `Debug` output or metrics labels.
//!
//! One full run of every provider — successes, rejections, and upstream errors
//! that echo everything they were sent — with a TRACE subscriber capturing
//! every log line (including `log` records from the HTTP stack) and a
//! Prometheus recorder capturing every metric; then each secret, and its
//! base64 and Basic-header encodings, is searched for in all of it.

use crate::fixtures::*;
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::Arc;
use tokengate::http::gate::Gate;
use tokengate::{Pipeline, RequestContext};

const JWKS_BEARER: &str = "jwks-bearer-SECRET-7f3a9c21";
const HMAC_SECRET: &str = "hmac-shared-SECRET-0123456789abcdef0123";
const CLIENT_SECRET: &str = "client-SECRET-9d8e7f6a5b";
const OPAQUE: &str = "opaque-SECRET-token-4b5c6d7e";
const CUSTOM_KEY: &str = "custom-SECRET-api-key-1a2b3c";
const ENDPOINT_PASSWORD: &str = "endpoint-SECRET-pw-55aa";
const GITHUB_TOKEN: &str = "ghp_SECRETgithubtoken0123456789abcdefXYZ";

/// Everything observed from outside: error texts, Debug renderings, messages.
#[derive(Default)]
struct Observed(Vec<String>);

impl Observed {
    fn push(&mut self, text: impl Into<String>) {
        self.0.push(text.into());
    }

    fn result(&mut self, r: &Result<tokengate::Principal, tokengate::AuthError>) {
        match r {
            Ok(p) => self.push(format!("{p:?}")),
            Err(e) => {
                self.push(format!("{e:?}"));
                self.push(e.to_string());
                self.push(e.detail());
            }
        }
    }

    fn provider(&mut self, p: &Pipeline) {
        self.push(p.accepts());
        self.push(p.message());
        self.push(p.name());
        for m in p.members() {
            self.push(format!("{:?}", m.description()));
        }
    }
}

/// Runs `token` through the provider directly and through the gate (which logs
/// decisions and counts them in metrics), recording everything visible.
async fn run(
    seen: &mut Observed,
    provider: &Arc<Pipeline>,
    token: &str,
) -> Result<tokengate::Principal, tokengate::AuthError> {
    let ctx = RequestContext::new("GET", "/v1/models");
    let direct = provider.validate(token, &ctx).await;
    seen.result(&direct);
    let gate = Gate::new(provider.clone());
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    match gate.authenticate(&headers, &ctx).await {
        Ok(p) => seen.push(format!("{p:?}")),
        Err(rejection) => {
            seen.push(format!("{rejection:?}"));
            let response = axum::response::IntoResponse::into_response(rejection);
            for (name, value) in response.headers() {
                seen.push(format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())));
            }
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            seen.push(String::from_utf8_lossy(&body).into_owned());
        }
    }
    direct
}

fn config_debug(seen: &mut Observed, section: &Value) {
    let yaml = serde_json::to_string_pretty(&json!({ "provider_config": section })).unwrap();
    let config = tokengate::Config::parse(&yaml, tokengate::Format::Yaml).unwrap();
    seen.push(format!("{config:?}"));
    seen.push(format!("{:?}", config.settings));
}

#[tokio::test]
async fn a_full_run_of_every_provider_leaks_no_secret() {
    let logs = capture_logs();
    // The process-wide recorder `tokengate serve` installs: the one every test in this binary shares.
    let metrics = tokengate::ops::metrics::prometheus().expect("the Prometheus recorder");
    let mut seen = Observed::default();
    let server = Server::start().await;
    let echo = Server::start().await;
    server.route("/jwks", Reply::Json(200, standard_jwks()));
    let good_jwt = token(&KEYS.ec, "ec-1", &claims());
    let expired_jwt = token(&KEYS.ec, "ec-1", &with(claims(), json!({"exp": now() - 3600})));
    let forged_jwt = token(&KEYS.ec_attacker, "ec-1", &claims());
    let unknown_kid_jwt = token(&KEYS.ec, "no-such-kid", &claims());
    let hmac_jwt = hmac_token("HS256", HMAC_SECRET.as_bytes(), r#"{"alg":"HS256"}"#, &claims());
    let bad_hmac_jwt = hmac_token("HS256", b"wrong-secret-wrong-secret-wrong-secret", r#"{"alg":"HS256"}"#, &claims());

    // ---- oauth2_token, JWT against a key set fetched with a bearer token.
    let jwt_section = with(jwt_config(&server), json!({"jwks": {"uri": server.url("/jwks"), "token": JWKS_BEARER}}));
    config_debug(&mut seen, &jwt_section);
    let jwt = Arc::new(build_ok(jwt_section.clone()));
    seen.provider(&jwt);
    assert!(run(&mut seen, &jwt, &good_jwt).await.is_ok());
    for t in [&expired_jwt, &forged_jwt, &unknown_kid_jwt, &hmac_jwt] {
        assert!(run(&mut seen, &jwt, t).await.is_err());
    }
    let sent = server.seen().into_iter().find(|s| s.target == "/jwks").unwrap();
    assert!(
        sent.headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {JWKS_BEARER}")),
        "jwks.token is sent"
    );
    // A key set endpoint that fails while echoing the request (bearer included).
    for status in [500, 401, 200] {
        echo.route("/jwks", Reply::Echo(status));
        let failing = Arc::new(build_ok(with(
            jwt_config(&echo),
            json!({"jwks": {"uri": echo.url("/jwks"), "token": JWKS_BEARER}}),
        )));
        let r = run(&mut seen, &failing, &good_jwt).await;
        assert!(r.unwrap_err().is_unavailable());
    }

    // ---- oauth2_token with a shared secret.
    let hmac_section = json!({"type": "oauth2_token", "issuer": ISS, "audience": AUD, "secret": HMAC_SECRET});
    config_debug(&mut seen, &hmac_section);
    let hmac = Arc::new(build_ok(hmac_section));
    seen.provider(&hmac);
    assert!(run(&mut seen, &hmac, &hmac_jwt).await.is_ok());
    assert!(run(&mut seen, &hmac, &bad_hmac_jwt).await.is_err());
    assert!(run(&mut seen, &hmac, &good_jwt).await.is_err());
    // Config errors about the secret do not repeat it.
    let e = build_err(json!({"type": "oauth2_token", "audience": AUD, "secret": "short-SECRET-x"}));
    seen.push(format!("{e:?} {e}"));

    // ---- oauth2_token introspection, client secret in Basic and in the body.
    for in_body in [false, true] {
        let section = json!({
            "type": "oauth2_token",
            "introspection": {"url": server.url("/introspect"), "client_id": "tokengate", "client_secret": CLIENT_SECRET, "send_secret_in_body": in_body},
            "allow_any_audience": true,
            "cache": {"enabled": false},
        });
        config_debug(&mut seen, &section);
        let p = Arc::new(build_ok(section));
        seen.provider(&p);
        server.route("/introspect", Reply::Json(200, json!({"active": true, "sub": "alice", "scope": "read"})));
        assert!(run(&mut seen, &p, OPAQUE).await.is_ok());
        server.route("/introspect", Reply::Json(200, json!({"active": false})));
        assert!(run(&mut seen, &p, OPAQUE).await.is_err());
        for status in [500, 400, 401, 200] {
            server.route("/introspect", Reply::Echo(status));
            assert!(run(&mut seen, &p, OPAQUE).await.is_err());
        }
    }
    let introspected = server.seen().into_iter().filter(|s| s.target == "/introspect").count();
    assert!(introspected >= 12, "the endpoint was really called ({introspected})");

    // ---- custom, with a password in the endpoint URL.
    let endpoint = format!("http://gate:{ENDPOINT_PASSWORD}@{}/auth", server.addr);
    let custom_section = json!({"type": "custom", "endpoint": endpoint, "cache": {"enabled": false}});
    config_debug(&mut seen, &custom_section);
    let custom = Arc::new(build_ok(custom_section));
    seen.provider(&custom);
    seen.push(format!("{:?}", tokengate_custom_config(&endpoint)));
    server.route("/auth", Reply::Json(200, json!({"principal": "bob", "attributes": {"roles": ["dev"]}})));
    assert!(run(&mut seen, &custom, CUSTOM_KEY).await.is_ok());
    for status in [401, 403, 500, 429, 200] {
        server.route("/auth", Reply::Echo(status));
        assert!(run(&mut seen, &custom, CUSTOM_KEY).await.is_err());
    }
    // An unreachable custom endpoint (connection refused) with the password in its URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = Arc::new(build_ok(
        json!({"type": "custom", "endpoint": format!("http://gate:{ENDPOINT_PASSWORD}@{closed}/auth")}),
    ));
    assert!(run(&mut seen, &unreachable, CUSTOM_KEY).await.unwrap_err().is_unavailable());
    // An invalid endpoint with a password is refused without quoting it.
    if let Err(e) = build(json!({"type": "custom", "endpoint": format!("ftp://gate:{ENDPOINT_PASSWORD}@host/auth")})) {
        seen.push(format!("{e:?} {e}"));
    }

    // ---- github_token.
    let gh_section =
        json!({"type": "github_token", "github_api_base_url": server.url(""), "cache": {"enabled": false}});
    config_debug(&mut seen, &gh_section);
    let github = Arc::new(build_ok(gh_section));
    seen.provider(&github);
    server.route("/user", Reply::Json(200, json!({"login": "octocat", "id": 1, "name": "Octo"})));
    server.route("/user/orgs", Reply::Json(200, json!([{"login": "org-a"}])));
    assert!(run(&mut seen, &github, GITHUB_TOKEN).await.is_ok());
    for status in [401, 403, 500, 502] {
        server.route("/user/orgs", Reply::Echo(status));
        let _ = run(&mut seen, &github, GITHUB_TOKEN).await;
    }
    for status in [401, 403, 404, 500, 429, 200] {
        server.route("/user", Reply::Echo(status));
        assert!(run(&mut seen, &github, GITHUB_TOKEN).await.is_err());
    }

    // ---- every provider also went through Debug.
    for p in [&jwt, &hmac, &custom, &github] {
        seen.push(format!("{:?}", p.name()));
    }

    // ---- the search.
    let logged = logs.text();
    assert!(logged.contains("tokengate::decision"), "the gate's decisions were captured");
    let rendered = metrics.render();
    assert!(rendered.contains("tokengate_decisions_total"), "metrics were captured:\n{rendered}");
    let basic = |id: &str, secret: &str| base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let mut secrets: Vec<(String, String)> = vec![
        ("jwks.token".into(), JWKS_BEARER.into()),
        ("HMAC secret".into(), HMAC_SECRET.into()),
        ("client_secret".into(), CLIENT_SECRET.into()),
        ("client_secret (Basic)".into(), basic("tokengate", CLIENT_SECRET)),
        ("opaque token".into(), OPAQUE.into()),
        ("custom API key".into(), CUSTOM_KEY.into()),
        ("endpoint password".into(), ENDPOINT_PASSWORD.into()),
        ("endpoint password (Basic)".into(), basic("gate", ENDPOINT_PASSWORD)),
        ("GitHub token".into(), GITHUB_TOKEN.into()),
        ("short secret".into(), "short-SECRET-x".into()),
    ];
    for (name, t) in [
        ("JWT", &good_jwt),
        ("expired JWT", &expired_jwt),
        ("forged JWT", &forged_jwt),
        ("HS256 JWT", &hmac_jwt),
        ("unknown-kid JWT", &unknown_kid_jwt),
    ] {
        secrets.push((name.to_string(), t.to_string()));
        secrets.push((format!("{name} signature"), segments(t).2));
    }
    let mut leaks = Vec::new();
    for (name, secret) in &secrets {
        if logged.contains(secret.as_str()) {
            let line = logged.lines().find(|l| l.contains(secret.as_str())).unwrap_or_default();
            leaks.push(format!("{name} in the logs: {line}"));
        }
        if rendered.contains(secret.as_str()) {
            leaks.push(format!("{name} in the metrics"));
        }
        for text in &seen.0 {
            if text.contains(secret.as_str()) {
                leaks.push(format!("{name} in {text}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    // The logs are not empty by accident: they saw the failures the run caused.
    assert!(logged.contains("introspection"), "introspection logs captured");
}

fn tokengate_custom_config(endpoint: &str) -> impl std::fmt::Debug {
    let mut cfg = tokengate_custom::CustomConfig::new(endpoint);
    cfg.cache = tokengate_kit::CacheConfig::disabled();
    cfg
}

#[test]
fn secret_holders_redact_themselves() {
    let s = tokengate_api::Secret::new(CLIENT_SECRET);
    assert!(!format!("{s:?} {s}").contains(CLIENT_SECRET));
    assert!(!serde_json::to_string(&s).unwrap().contains(CLIENT_SECRET));
    // Constant-time comparison is what Secret offers for presented credentials.
    assert!(s.ct_eq(CLIENT_SECRET) && !s.ct_eq("client-SECRET") && !s.ct_eq(""));
    let cfg: tokengate_oauth2::config::OAuth2Config = serde_json::from_value(json!({
        "introspection": {"url": "https://idp.example/introspect", "client_id": "a", "client_secret": CLIENT_SECRET},
        "secret": HMAC_SECRET,
        "jwks": {"uri": "https://idp.example/jwks", "token": JWKS_BEARER},
    }))
    .unwrap();
    let shown = format!("{cfg:?}");
    for secret in [CLIENT_SECRET, HMAC_SECRET, JWKS_BEARER] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
