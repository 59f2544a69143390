//! RFC 7662 introspection through `OAuth2Provider`, against a stand-in
//! authorization server on 127.0.0.1.
//!
//! One file, past 400 lines, because every test shares the one stand-in server.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokengate_api::{AuthError, AuthProvider, BuildContext, ErrorKind, RequestContext};
use tokengate_oauth2::config::OAuth2Config;
use tokengate_oauth2::OAuth2Provider;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "2YotnFZFEjr1zCsicMWpAA";
/// Characters that RFC 6749 §2.3.1 requires to be form-urlencoded before Basic.
const CLIENT_ID: &str = "gate:way";
const CLIENT_SECRET: &str = "p@ss word/é";
/// base64("gate%3Away:p%40ss+word%2F%C3%A9")
const BASIC: &str = "Basic Z2F0ZSUzQXdheTpwJTQwc3Mrd29yZCUyRiVDMyVBOQ==";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A config pointing at `server`, with `extra` merged in at the top level
/// (and `"introspection"` keys merged into the introspection section).
fn config(server: &MockServer, extra: Value) -> OAuth2Config {
    let mut introspection = json!({
        "url": format!("{}/introspect", server.uri()),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    });
    let mut top = extra.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(more)) = top.remove("introspection") {
        if let Some(section) = introspection.as_object_mut() {
            section.extend(more);
        }
    }
    top.insert("introspection".into(), introspection);
    // Most tests here are not about the audience; audience tests set it (or `allow_any_audience: false`).
    if !top.contains_key("audience") && !top.contains_key("allow_any_audience") {
        top.insert("allow_any_audience".into(), json!(true));
    }
    serde_json::from_value(Value::Object(top)).expect("test config parses")
}

fn provider(server: &MockServer, extra: Value) -> Arc<OAuth2Provider> {
    match OAuth2Provider::new(config(server, extra), &BuildContext::default()) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("config rejected: {e}"),
    }
}

async fn answer(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST")).and(path("/introspect")).respond_with(response).mount(server).await;
}

async fn answer_json(server: &MockServer, body: Value) {
    answer(server, ResponseTemplate::new(200).set_body_json(body)).await;
}

async fn validate(p: &OAuth2Provider) -> Result<tokengate_api::Principal, AuthError> {
    p.validate(TOKEN, &RequestContext::new("GET", "/")).await
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

async fn only_form(server: &MockServer) -> HashMap<String, String> {
    let received = server.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-www-form-urlencoded")
    );
    url::form_urlencoded::parse(&received[0].body).into_owned().collect()
}

fn host(server: &MockServer) -> String {
    server.address().to_string()
}

fn assert_kind(err: &AuthError, kind: ErrorKind) {
    assert_eq!(err.kind(), kind, "unexpected error: {err}");
    assert!(!err.detail().contains(TOKEN), "token leaked: {err}");
    assert!(!err.detail().contains(CLIENT_SECRET), "secret leaked: {err}");
}

fn active(extra: Value) -> Value {
    let mut reply = json!({
        "active": true,
        "sub": "Z5O3upPC88QrAjx00dis",
        "username": "jdoe",
        "client_id": "l238j323ds-23ij4",
        "scope": "read write dolphin",
        "token_type": "Bearer",
        "exp": now() + 3600,
        "iat": now() - 60,
        "groups": ["ml", "infra"],
    });
    if let (Some(r), Some(e)) = (reply.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    reply
}

#[tokio::test]
async fn active_token_with_basic_client_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(header("authorization", BASIC))
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(active(json!({}))))
        .mount(&server)
        .await;
    let p = provider(&server, json!({}));
    let who = validate(&p).await.unwrap();
    assert_eq!(who.principal, "Z5O3upPC88QrAjx00dis");
    // Llama Stack's default mapping: sub and username → roles, groups → teams.
    assert_eq!(who.attributes["roles"], vec!["Z5O3upPC88QrAjx00dis", "jdoe"]);
    assert_eq!(who.attributes["teams"], vec!["ml", "infra"]);

    let form = only_form(&server).await;
    assert_eq!(form.get("token").map(String::as_str), Some(TOKEN));
    assert_eq!(form.get("token_type_hint").map(String::as_str), Some("access_token"));
    assert!(!form.contains_key("client_secret"));
    assert!(!form.contains_key("client_id"));
    assert_eq!(
        p.describe().message,
        format!("Authentication required. Please provide a valid OAuth2 Bearer token validated by {}", host(&server))
    );
}

#[tokio::test]
async fn secret_in_body_mode() {
    let server = MockServer::start().await;
    answer_json(&server, active(json!({}))).await;
    let p = provider(&server, json!({"introspection": {"send_secret_in_body": true}}));
    validate(&p).await.unwrap();
    let received = server.received_requests().await.unwrap_or_default();
    assert!(received[0].headers.get("authorization").is_none());
    let form = only_form(&server).await;
    assert_eq!(form.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(form.get("client_secret").map(String::as_str), Some(CLIENT_SECRET));
    assert_eq!(form.get("token").map(String::as_str), Some(TOKEN));
}

#[tokio::test]
async fn principal_falls_back_to_username_then_principal_claim() {
    let server = MockServer::start().await;
    answer_json(&server, json!({"active": true, "username": "jdoe"})).await;
    assert_eq!(validate(&provider(&server, json!({}))).await.unwrap().principal, "jdoe");

    let server = MockServer::start().await;
    answer_json(&server, active(json!({"ext": {"employee_id": "E-42"}}))).await;
    let p = provider(&server, json!({"principal_claim": "ext.employee_id"}));
    assert_eq!(validate(&p).await.unwrap().principal, "E-42");

    let server = MockServer::start().await;
    answer_json(&server, active(json!({}))).await;
    let p = provider(&server, json!({"principal_claim": "email"}));
    let err = validate(&p).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert!(err.detail().contains("`email`"), "{err}");
}

#[tokio::test]
async fn active_without_sub_username_or_client_id_is_invalid() {
    let server = MockServer::start().await;
    answer_json(&server, json!({"active": true, "scope": "read"})).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert_eq!(err.reason(), &tokengate_api::Reason::Principal);
    assert!(err.detail().contains("neither `sub`, `username` nor `client_id`"), "{err}");
}

#[tokio::test]
async fn a_client_credentials_token_is_its_client() {
    let server = MockServer::start().await;
    answer_json(&server, json!({"active": true, "client_id": "billing-batch", "scope": "read"})).await;
    assert_eq!(validate(&provider(&server, json!({}))).await.unwrap().principal, "billing-batch");
    let server = MockServer::start().await;
    answer_json(&server, json!({"active": true, "client_id": "billing-batch", "username": "alice"})).await;
    assert_eq!(validate(&provider(&server, json!({}))).await.unwrap().principal, "alice", "a user comes first");
}

#[tokio::test]
async fn claims_mapping_from_config() {
    let server = MockServer::start().await;
    answer_json(&server, active(json!({}))).await;
    let p = provider(&server, json!({"claims_mapping": {"scope": "scopes"}}));
    let who = validate(&p).await.unwrap();
    assert_eq!(who.attributes["scopes"], vec!["read", "write", "dolphin"]);
    assert!(!who.attributes.contains_key("roles"));
}

#[tokio::test]
async fn inactive_token_is_invalid() {
    let server = MockServer::start().await;
    answer_json(&server, json!({"active": false})).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert_eq!(err.detail(), "token is not active");
}

#[tokio::test]
async fn refresh_tokens_are_refused_access_tokens_pass() {
    for (field, kind) in [("token_type", "refresh_token"), ("token_type", "Refresh"), ("typ", "Refresh")] {
        let server = MockServer::start().await;
        answer_json(&server, active(json!({ field: kind }))).await;
        let err = validate(&provider(&server, json!({}))).await.unwrap_err();
        assert_kind(&err, ErrorKind::InvalidToken);
        assert!(err.detail().contains("a refresh token is not an access token"), "{field}={kind}: {err}");
        assert!(err.detail().contains(field), "{err}");
    }
    for kind in ["Bearer", "access_token", "N_A"] {
        let server = MockServer::start().await;
        answer_json(&server, active(json!({"token_type": kind, "typ": "Bearer"}))).await;
        let p = validate(&provider(&server, json!({}))).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(p.principal, "Z5O3upPC88QrAjx00dis");
    }
}

#[tokio::test]
async fn server_error_is_unavailable() {
    let server = MockServer::start().await;
    answer(&server, ResponseTemplate::new(500)).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert_eq!(err.detail(), format!("introspection endpoint {} answered 500", host(&server)));
}

#[tokio::test]
async fn unparsable_token_400_is_a_rejection_not_an_outage() {
    // oidc-provider answers 400 unsupported_token_type for JWT-shaped garbage.
    for code in ["unsupported_token_type", "invalid_request"] {
        let server = MockServer::start().await;
        answer(&server, ResponseTemplate::new(400).set_body_json(json!({"error": code}))).await;
        let err = validate(&provider(&server, json!({}))).await.unwrap_err();
        assert_kind(&err, ErrorKind::InvalidToken);
        assert_eq!(
            err.detail(),
            format!("introspection endpoint {} refused to introspect the token (400 `{code}`)", host(&server))
        );
    }
    // A 400 about our own client is still the service's (or our config's) problem.
    let server = MockServer::start().await;
    answer(&server, ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_client"}))).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
}

#[tokio::test]
async fn our_rejected_client_credentials_are_unavailable_and_say_so() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(401)
            .insert_header("www-authenticate", "Basic realm=\"introspection\"")
            .set_body_json(json!({"error": "invalid_client", "error_description": "bad secret"})),
    )
    .await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    let d = err.detail();
    assert!(d.starts_with(&format!("introspection endpoint {} answered 401: ", host(&server))), "{err}");
    assert!(d.contains("client credentials"), "{err}");
    assert!(d.contains("`invalid_client`"), "{err}");
}

#[tokio::test]
async fn rate_limited_endpoint_passes_retry_after() {
    let server = MockServer::start().await;
    answer(&server, ResponseTemplate::new(429).insert_header("retry-after", "12")).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
}

#[tokio::test]
async fn timeout_is_unavailable() {
    let server = MockServer::start().await;
    answer(&server, ResponseTemplate::new(200).set_body_json(active(json!({}))).set_delay(Duration::from_secs(2)))
        .await;
    let started = std::time::Instant::now();
    let err = validate(&provider(&server, json!({"timeout": "200ms"}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert_eq!(err.detail(), format!("introspection endpoint {}: timed out", host(&server)));
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn non_json_is_unavailable() {
    let server = MockServer::start().await;
    answer(&server, ResponseTemplate::new(200).set_body_string("<html>login</html>")).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(
        err.detail().starts_with(&format!(
            "introspection endpoint {} answered 200 with a reply that is not JSON",
            host(&server)
        )),
        "{err}"
    );
}

#[tokio::test]
async fn missing_or_non_boolean_active_is_unavailable() {
    for (reply, why) in [
        (json!({"sub": "alice"}), "no `active` field"),
        (json!({"active": "true", "sub": "alice"}), "`active` is a string, not a boolean"),
        (json!([{"active": true}]), "not an object"),
    ] {
        let server = MockServer::start().await;
        answer_json(&server, reply).await;
        let err = validate(&provider(&server, json!({}))).await.unwrap_err();
        assert_kind(&err, ErrorKind::Unavailable);
        assert!(err.detail().contains(why), "{err} should say {why}");
    }
}

#[tokio::test]
async fn oversize_reply_is_unavailable() {
    let server = MockServer::start().await;
    answer_json(&server, active(json!({"groups": vec!["g".repeat(64); 64]}))).await;
    let err = validate(&provider(&server, json!({"max_response_bytes": 1024}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().contains("1024-byte limit"), "{err}");
}

#[tokio::test]
async fn expired_reply_is_invalid_beyond_leeway_only() {
    let server = MockServer::start().await;
    let exp = now() - 120;
    answer_json(&server, active(json!({"exp": exp}))).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(exp));
    assert_eq!(err.detail(), format!("token expired at {at}"));

    // Ten seconds late is within the default 30s leeway.
    let server = MockServer::start().await;
    answer_json(&server, active(json!({"exp": now() - 10}))).await;
    assert!(validate(&provider(&server, json!({}))).await.is_ok());
}

#[tokio::test]
async fn not_yet_valid_reply_is_invalid() {
    let server = MockServer::start().await;
    answer_json(&server, active(json!({"nbf": now() + 600}))).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert!(err.detail().starts_with("token is not valid before "), "{err}");
}

#[tokio::test]
async fn non_numeric_exp_is_unavailable() {
    let server = MockServer::start().await;
    answer_json(&server, active(json!({"exp": "tomorrow"}))).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().contains("`exp` is a string, not a number"), "{err}");
}

#[tokio::test]
async fn issuer_is_checked_when_configured() {
    let expected = "https://auth.example.com/realms/main";
    let server = MockServer::start().await;
    answer_json(&server, active(json!({"iss": "https://evil.example.com"}))).await;
    let err = validate(&provider(&server, json!({"issuer": expected}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert_eq!(err.detail(), format!("issuer \"https://evil.example.com\" is not the expected \"{expected}\""));

    let server = MockServer::start().await;
    answer_json(&server, active(json!({"iss": expected}))).await;
    assert!(validate(&provider(&server, json!({"issuer": expected}))).await.is_ok());

    // No `iss` in the reply: the endpoint itself vouches for the token.
    let server = MockServer::start().await;
    answer_json(&server, active(json!({}))).await;
    assert!(validate(&provider(&server, json!({"issuer": expected}))).await.is_ok());
}

#[tokio::test]
async fn audience_is_checked_when_configured() {
    let server = MockServer::start().await;
    answer_json(&server, active(json!({"aud": ["other", "api://tokengate"]}))).await;
    assert!(validate(&provider(&server, json!({"audience": "api://tokengate"}))).await.is_ok());

    let server = MockServer::start().await;
    answer_json(&server, active(json!({"aud": "other"}))).await;
    let err = validate(&provider(&server, json!({"audience": ["api://tokengate"]}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert_eq!(err.detail(), "audience \"other\" is not one of [\"api://tokengate\"]");

    let server = MockServer::start().await;
    answer_json(&server, active(json!({}))).await;
    let err = validate(&provider(&server, json!({"audience": "api://tokengate"}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert!(err.detail().contains("names no audience"), "{err}");
}

/// Issue #11: introspection without `audience` used to accept, silently, a
/// token the same authorization server issued to any other resource server;
/// JWT mode refused that config. Now both require `audience` or an explicit
/// `allow_any_audience: true`; a Llama Stack run.yaml loads with a warning.
#[tokio::test]
async fn audience_is_required_unless_any_is_allowed() {
    let server = MockServer::start().await;
    answer_json(&server, active(json!({"aud": "another-resource-server"}))).await;
    let silent = config(&server, json!({"allow_any_audience": false}));
    let err = OAuth2Provider::new(silent.clone(), &BuildContext::default()).unwrap_err();
    assert_eq!(err.field, "audience", "{err}");
    assert!(err.message.contains("allow_any_audience: true"), "{err}");
    assert_eq!(requests(&server).await, 0);

    let both = config(&server, json!({"audience": "api://tokengate", "allow_any_audience": true}));
    assert_eq!(OAuth2Provider::new(both, &BuildContext::default()).unwrap_err().field, "allow_any_audience");
    let empty = config(&server, json!({"audience": ""}));
    assert_eq!(OAuth2Provider::new(empty, &BuildContext::default()).unwrap_err().field, "audience");

    // Said on purpose: any audience passes.
    assert!(validate(&provider(&server, json!({"allow_any_audience": true}))).await.is_ok());
    // The audience named: the other resource server's token is refused.
    let err = validate(&provider(&server, json!({"audience": "api://tokengate"}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    // Llama Stack's run.yaml leaves it optional: it loads (with a WARN naming `audience`) and accepts.
    let ctx = BuildContext { llama_stack_defaults: true, ..Default::default() };
    let p = OAuth2Provider::new(silent, &ctx).expect("a run.yaml loads");
    assert!(validate(&p).await.is_ok());
}

#[tokio::test]
async fn concurrent_same_token_is_one_upstream_request() {
    let server = MockServer::start().await;
    answer(&server, ResponseTemplate::new(200).set_body_json(active(json!({}))).set_delay(Duration::from_millis(200)))
        .await;
    let p = provider(&server, json!({}));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let p = Arc::clone(&p);
        tasks.push(tokio::spawn(async move { validate(&p).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().principal, "Z5O3upPC88QrAjx00dis");
    }
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn inactive_tokens_are_negatively_cached() {
    let server = MockServer::start().await;
    answer_json(&server, json!({"active": false})).await;
    let p = provider(&server, json!({}));
    for _ in 0..3 {
        assert_kind(&validate(&p).await.unwrap_err(), ErrorKind::InvalidToken);
    }
    assert_eq!(requests(&server).await, 1);

    // negative_ttl: 0 turns the negative cache off.
    let server = MockServer::start().await;
    answer_json(&server, json!({"active": false})).await;
    let p = provider(&server, json!({"cache": {"negative_ttl": 0}}));
    for _ in 0..3 {
        assert_kind(&validate(&p).await.unwrap_err(), ErrorKind::InvalidToken);
    }
    assert_eq!(requests(&server).await, 3);
}

#[tokio::test]
async fn outages_are_not_cached() {
    let server = MockServer::start().await;
    answer(&server, ResponseTemplate::new(503)).await;
    let p = provider(&server, json!({}));
    for _ in 0..3 {
        assert_kind(&validate(&p).await.unwrap_err(), ErrorKind::Unavailable);
    }
    assert_eq!(requests(&server).await, 3);
}

#[tokio::test]
async fn cache_disabled_asks_every_time() {
    let server = MockServer::start().await;
    answer_json(&server, active(json!({}))).await;
    let p = provider(&server, json!({"cache": {"enabled": false}}));
    for _ in 0..3 {
        validate(&p).await.unwrap();
    }
    assert_eq!(requests(&server).await, 3);
}

#[tokio::test]
async fn cache_never_outlives_exp() {
    let server = MockServer::start().await;
    // Whole seconds: `exp` is 1–2s away. leeway 0 so the token is dead once it passes.
    answer_json(&server, active(json!({"exp": now() + 2}))).await;
    let p = provider(&server, json!({"leeway": 0}));
    validate(&p).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let err = validate(&p).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert!(err.detail().starts_with("token expired at"), "{err}");
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn bad_introspection_config_is_rejected() {
    let server = MockServer::start().await;
    let mut cfg = config(&server, json!({}));
    if let Some(i) = cfg.introspection.as_mut() {
        i.url = "ftp://auth.example.com/introspect".into();
    }
    let err = OAuth2Provider::new(cfg, &BuildContext::default()).unwrap_err();
    assert_eq!(err.field, "introspection.url");

    let mut cfg = config(&server, json!({}));
    if let Some(i) = cfg.introspection.as_mut() {
        i.url = "https://user:pw@auth.example.com/introspect".into();
    }
    let err = OAuth2Provider::new(cfg, &BuildContext::default()).unwrap_err();
    assert_eq!(err.field, "introspection.url");
    assert!(!err.to_string().contains("pw@"), "{err}");
}

/// #11: a 307/308 re-sends the POST body — the client's token and, with
/// `send_secret_in_body`, tokengate's `client_secret` — so no redirect is
/// followed, to another port or within the origin.
#[tokio::test]
async fn redirects_are_never_followed_with_the_secret() {
    let elsewhere = MockServer::start().await;
    answer_json(&elsewhere, json!({"active": true, "sub": "mallory"})).await;
    let server = MockServer::start().await;
    answer(&server, ResponseTemplate::new(307).insert_header("location", format!("{}/introspect", elsewhere.uri())))
        .await;
    let p = provider(&server, json!({"introspection": {"send_secret_in_body": true}}));
    let err = validate(&p).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.detail().contains("307 redirecting to"), "{err}");
    assert!(elsewhere.received_requests().await.unwrap().is_empty(), "the secret went to the other port");

    let same = MockServer::start().await;
    answer(&same, ResponseTemplate::new(308).insert_header("location", "/introspect2")).await;
    Mock::given(method("POST"))
        .and(path("/introspect2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": true, "sub": "x"})))
        .mount(&same)
        .await;
    let err = validate(&provider(&same, json!({}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(same.received_requests().await.unwrap().len(), 1, "the same-origin redirect was followed");
}

/// #11: past `max_concurrent_requests` introspections, the excess is 503 at once.
#[tokio::test]
async fn excess_concurrent_introspections_are_unavailable() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(json!({"active": true, "sub": "alice"}))
            .set_delay(Duration::from_millis(1500)),
    )
    .await;
    let p = provider(&server, json!({"max_concurrent_requests": 3}));
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let p = Arc::clone(&p);
            tokio::spawn(async move { p.validate(&format!("opaque-{i}"), &RequestContext::new("GET", "/")).await })
        })
        .collect();
    let mut unavailable = 0;
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
            assert!(e.detail().contains("max_concurrent_requests"), "{e}");
            unavailable += 1;
        }
    }
    assert_eq!(unavailable, 1);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}
