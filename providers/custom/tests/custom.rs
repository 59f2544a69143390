//! `type: custom` against an in-process stand-in endpoint on 127.0.0.1.
//!
//! One file, past 400 lines, because every test shares the one stand-in
//! endpoint.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokengate_api::{AuthError, AuthProvider, BuildContext, DynProvider, ErrorKind, ProviderBuilder, RequestContext};
use tokengate_custom::{CustomBuilder, CustomConfig, CustomProvider};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "sk-live-4f6b1c0e9d";

/// Builds the provider through its registered builder, as the server would.
fn provider(server: &MockServer, extra: Value) -> DynProvider {
    let mut config = json!({ "endpoint": format!("{}/auth", server.uri()) });
    if let (Some(cfg), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        cfg.extend(extra.clone());
    }
    match CustomBuilder.build(config, &BuildContext::default()) {
        Ok(p) => p,
        Err(e) => panic!("config rejected: {e}"),
    }
}

fn host(server: &MockServer) -> String {
    server.address().to_string()
}

fn context() -> RequestContext {
    let mut ctx = RequestContext::new("GET", "");
    ctx.set_target("/v1/models?limit=10&tag=a&tag=b&empty=");
    ctx.add_header("Authorization", &format!("Bearer {TOKEN}"));
    ctx.add_header("Cookie", "session=1");
    ctx.add_header("X-Trace-Id", "abc");
    ctx.add_header("Accept", "application/json");
    ctx
}

async fn mount(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST")).and(path("/auth")).respond_with(response).mount(server).await;
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.map(|r| r.len()).unwrap_or(0)
}

fn assert_kind(err: &AuthError, kind: ErrorKind) {
    assert_eq!(err.kind(), kind, "unexpected error: {err}");
    assert!(!err.detail().contains(TOKEN), "the token leaked into: {err}");
}

#[tokio::test]
async fn sends_llama_stack_request_shape() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(200).set_body_json(json!({"principal": "alice"}))).await;
    let p = provider(&server, json!({}));
    p.validate(TOKEN, &context()).await.unwrap();

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert!(
        request.headers.get("authorization").is_none(),
        "tokengate must not authenticate to the endpoint unless the URL says so"
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({
            "api_key": TOKEN,
            "request": {
                "path": "/v1/models",
                "headers": {"x-trace-id": "abc", "accept": "application/json"},
                "params": {"limit": ["10"], "tag": ["a", "b"]}
            }
        })
    );
}

/// #20: the endpoint is sent the request exactly: UTF-8 headers and
/// parameters as their text; one that is not UTF-8 is a 400, never left out
/// of what the endpoint judges.
#[tokio::test]
async fn forwards_utf8_exactly_and_refuses_what_is_not() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(200).set_body_json(json!({"principal": "alice"}))).await;
    let p = provider(&server, json!({}));
    let mut ctx = context();
    ctx.add_header_bytes("x-forwarded-groups", "contractors,équipe".as_bytes());
    ctx.set_query("team=%C3%A9quipe");
    p.validate(TOKEN, &ctx).await.unwrap();
    let received = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["request"]["headers"]["x-forwarded-groups"], "contractors,équipe");
    assert_eq!(body["request"]["params"]["team"], json!(["équipe"]));

    let mut header = context();
    header.add_header_bytes("x-forwarded-groups", b"contractors,\xe9quipe");
    let mut query = context();
    query.set_query("team=%E9quipe");
    for ctx in [header, query] {
        let e = p.validate(TOKEN, &ctx).await.unwrap_err();
        assert_kind(&e, ErrorKind::InvalidRequest);
    }
    assert_eq!(requests(&server).await, 1, "an unreadable request never reaches the endpoint");
}

#[tokio::test]
async fn success_with_attributes() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "principal": "alice",
            "attributes": {"roles": ["admin", "user"], "teams": ["ml"]},
            "message": "welcome"
        })),
    )
    .await;
    let p = provider(&server, json!({}));
    let who = p.validate(TOKEN, &context()).await.unwrap();
    assert_eq!(who.principal, "alice");
    assert_eq!(who.attributes["roles"], vec!["admin", "user"]);
    assert_eq!(who.attributes["teams"], vec!["ml"]);
}

#[tokio::test]
async fn success_with_null_attributes() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"principal": "bob", "attributes": null, "message": null})),
    )
    .await;
    let who = provider(&server, json!({})).validate(TOKEN, &context()).await.unwrap();
    assert_eq!(who.principal, "bob");
    assert!(who.attributes.is_empty());
}

#[tokio::test]
async fn rejection_401_carries_the_endpoint_message() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(401).set_body_json(json!({"message": "API key revoked"}))).await;
    let err = provider(&server, json!({})).validate(TOKEN, &context()).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert_eq!(
        err.detail(),
        format!("custom endpoint {} rejected the token (HTTP 401): API key revoked", host(&server))
    );
}

#[tokio::test]
async fn rejection_messages_from_error_message_and_detail() {
    for (body, expected) in [
        (json!({"error": {"message": "key unknown"}}), "key unknown"),
        (json!({"detail": "Invalid API key"}), "Invalid API key"),
    ] {
        let server = MockServer::start().await;
        mount(&server, ResponseTemplate::new(401).set_body_json(body)).await;
        let err = provider(&server, json!({})).validate(TOKEN, &context()).await.unwrap_err();
        assert_kind(&err, ErrorKind::InvalidToken);
        assert!(err.detail().ends_with(expected), "{err}");
    }
}

#[tokio::test]
async fn echoed_token_is_redacted_from_the_message() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(401).set_body_json(json!({"message": format!("unknown key {TOKEN}")}))).await;
    let err = provider(&server, json!({})).validate(TOKEN, &context()).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert!(err.detail().ends_with("unknown key <redacted>"), "{err}");
}

#[tokio::test]
async fn rejection_403_without_message() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(403)).await;
    let p = provider(&server, json!({}));
    let err = p.validate(TOKEN, &context()).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert_eq!(err.detail(), format!("custom endpoint {} rejected the token (HTTP 403)", host(&server)));
    assert_eq!(
        p.describe().message,
        format!(
            "Authentication required. Please provide your API key as a Bearer token (validated by {})",
            host(&server)
        )
    );
}

#[tokio::test]
async fn malformed_200_replies_are_unavailable_never_a_pass() {
    let cases = [
        (ResponseTemplate::new(200).set_body_string("OK"), "not JSON"),
        (ResponseTemplate::new(200).set_body_json(json!({"user": "alice"})), "no `principal`"),
        (ResponseTemplate::new(200).set_body_json(json!({"principal": ""})), "`principal` is empty"),
        (
            ResponseTemplate::new(200).set_body_json(json!({"principal": "a", "attributes": {"roles": "admin"}})),
            "`attributes.roles` is a string, not a list of strings",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"principal": "a", "attributes": {"roles": [1]}})),
            "`attributes.roles` holds a number",
        ),
    ];
    for (response, why) in cases {
        let server = MockServer::start().await;
        mount(&server, response).await;
        let err = provider(&server, json!({})).validate(TOKEN, &context()).await.unwrap_err();
        assert_kind(&err, ErrorKind::Unavailable);
        let prefix = format!("custom endpoint {} answered 200 with a malformed reply: ", host(&server));
        assert!(err.detail().starts_with(&prefix), "{err}");
        assert!(err.detail().contains(why), "{err} should say {why}");
    }
}

#[tokio::test]
async fn oversize_reply_is_unavailable() {
    let server = MockServer::start().await;
    let big = json!({"principal": "a", "attributes": {"x": vec!["y".repeat(100); 100]}});
    mount(&server, ResponseTemplate::new(200).set_body_json(big)).await;
    let err = provider(&server, json!({"max_response_bytes": 1024})).validate(TOKEN, &context()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().contains("1024-byte limit"), "{err}");
}

#[tokio::test]
async fn slow_endpoint_beyond_timeout_is_unavailable() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"principal": "alice"})).set_delay(Duration::from_secs(2)),
    )
    .await;
    let started = std::time::Instant::now();
    let err = provider(&server, json!({"timeout": "200ms"})).validate(TOKEN, &context()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_unavailable() {
    for (status, retry) in [(500, None), (502, None), (503, Some(7)), (429, Some(30))] {
        let server = MockServer::start().await;
        let mut response = ResponseTemplate::new(status);
        if let Some(secs) = retry {
            response = response.insert_header("Retry-After", secs.to_string().as_str());
        }
        mount(&server, response).await;
        let err = provider(&server, json!({})).validate(TOKEN, &context()).await.unwrap_err();
        assert_kind(&err, ErrorKind::Unavailable);
        assert_eq!(err.detail(), format!("custom endpoint {} answered {status}", host(&server)));
        assert_eq!(err.retry_after(), retry.map(Duration::from_secs));
    }
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    // Bind then drop a listener: the port is (almost certainly) closed afterwards.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = CustomConfig::new(format!("http://127.0.0.1:{port}/auth"));
    let p = CustomProvider::new(cfg, &BuildContext::default()).unwrap();
    let err = p.validate(TOKEN, &context()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().starts_with(&format!("custom endpoint 127.0.0.1:{port}: ")), "{err}");
}

#[tokio::test]
async fn concurrent_same_token_makes_one_upstream_call() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"principal": "alice"})).set_delay(Duration::from_millis(200)),
    )
    .await;
    let p = provider(&server, json!({"cache": {}}));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let p = Arc::clone(&p);
        tasks.push(tokio::spawn(async move { p.validate(TOKEN, &context()).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().principal, "alice");
    }
    assert_eq!(requests(&server).await, 1);
    // And later calls are hits.
    p.validate(TOKEN, &context()).await.unwrap();
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn rejections_are_negatively_cached() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(401)).await;
    let p = provider(&server, json!({"cache": {"enabled": true}}));
    for _ in 0..3 {
        let err = p.validate(TOKEN, &context()).await.unwrap_err();
        assert_kind(&err, ErrorKind::InvalidToken);
    }
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn outages_are_not_cached() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(503)).await;
    let p = provider(&server, json!({}));
    for _ in 0..3 {
        let _ = p.validate(TOKEN, &context()).await;
    }
    assert_eq!(requests(&server).await, 3);
}

#[tokio::test]
async fn cache_disabled_asks_every_time() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(200).set_body_json(json!({"principal": "alice"}))).await;
    let p = provider(&server, json!({"cache": {"enabled": false}}));
    for _ in 0..3 {
        p.validate(TOKEN, &context()).await.unwrap();
    }
    assert_eq!(requests(&server).await, 3);
}

fn at(path: &str) -> RequestContext {
    RequestContext::new("GET", path)
}

/// #11: the endpoint sees the path and may decide per path; a verdict for
/// `/public` must never answer for `/admin`.
#[tokio::test]
async fn verdicts_are_per_path_uncached_by_default() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth"))
        .and(body_partial_json(json!({"request": {"path": "/public"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"principal": "alice"})))
        .mount(&server)
        .await;
    mount(&server, ResponseTemplate::new(403).set_body_json(json!({"message": "not on this path"}))).await;

    let p = provider(&server, json!({}));
    assert_eq!(p.validate(TOKEN, &at("/public")).await.unwrap().principal, "alice");
    let err = p.validate(TOKEN, &at("/admin")).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert!(err.detail().contains("not on this path"), "{err}");
    p.validate(TOKEN, &at("/public")).await.unwrap();
    assert_eq!(requests(&server).await, 3, "no cache unless asked for");

    // Turned on, the cache keys on method and path as well as the token.
    let server2 = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth"))
        .and(body_partial_json(json!({"request": {"path": "/public"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"principal": "alice"})))
        .mount(&server2)
        .await;
    mount(&server2, ResponseTemplate::new(403)).await;
    let cached = provider(&server2, json!({"cache": {"ttl": "60s"}}));
    for _ in 0..2 {
        cached.validate(TOKEN, &at("/public")).await.unwrap();
    }
    assert_eq!(requests(&server2).await, 1, "the same request is a hit");
    assert_kind(&cached.validate(TOKEN, &at("/admin")).await.unwrap_err(), ErrorKind::InvalidToken);
    cached.validate(TOKEN, &RequestContext::new("POST", "/public")).await.unwrap();
    assert_eq!(requests(&server2).await, 3, "another path or method asks again");
}

/// #11: a 307/308 would re-send the token in the body; none is followed,
/// not to another port on the same host, not even within the origin.
#[tokio::test]
async fn redirects_are_never_followed() {
    let elsewhere = MockServer::start().await;
    mount(&elsewhere, ResponseTemplate::new(200).set_body_json(json!({"principal": "mallory"}))).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", format!("{}/auth", elsewhere.uri())))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/moved"))
        .respond_with(ResponseTemplate::new(308).insert_header("location", "/auth2"))
        .mount(&server)
        .await;
    let p = provider(&server, json!({}));
    let err = p.validate(TOKEN, &context()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().contains(&format!("307 redirecting to {}", elsewhere.uri())), "{err}");
    assert_eq!(requests(&elsewhere).await, 0, "the token went to the other port");

    let cfg = CustomConfig::new(format!("{}/moved", server.uri()));
    let same = CustomProvider::new(cfg, &BuildContext::default()).unwrap();
    assert_kind(&same.validate(TOKEN, &context()).await.unwrap_err(), ErrorKind::Unavailable);
    assert_eq!(requests(&server).await, 2, "the same-origin redirect was not followed either");
}

/// #11: every made-up token costs an upstream call; past
/// `max_concurrent_requests` the excess is refused at once with 503.
#[tokio::test]
async fn excess_concurrent_calls_are_unavailable_at_once() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"principal": "alice"})).set_delay(Duration::from_millis(1500)),
    )
    .await;
    let p = provider(&server, json!({"max_concurrent_requests": 4}));
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let p = Arc::clone(&p);
        tasks.push(tokio::spawn(async move {
            let outcome = p.validate(&format!("{TOKEN}-{i}"), &context()).await;
            (outcome, started.elapsed())
        }));
    }
    let mut refused = Vec::new();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            (Ok(_), _) => ok += 1,
            (Err(e), when) => refused.push((e, when)),
        }
    }
    assert_eq!(ok, 4);
    assert_eq!(refused.len(), 1, "{refused:?}");
    let (err, when) = &refused[0];
    assert_kind(err, ErrorKind::Unavailable);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(err.detail().contains("max_concurrent_requests"), "{err}");
    assert!(*when < Duration::from_millis(1000), "the excess waited for the slow endpoint: {when:?}");
    assert_eq!(requests(&server).await, 4, "the excess never reached the endpoint");
    let Err(e) = CustomBuilder
        .build(json!({"endpoint": "http://127.0.0.1:1", "max_concurrent_requests": 0}), &BuildContext::default())
    else {
        panic!("0 accepted")
    };
    assert_eq!(e.field, "max_concurrent_requests");
}

#[tokio::test]
async fn unknown_config_fields_are_rejected() {
    let Err(err) = CustomBuilder.build(
        json!({"endpoint": "https://auth.example.com", "timeout": "1s", "verify_ssl": false}),
        &BuildContext::default(),
    ) else {
        panic!("typo accepted")
    };
    assert!(err.message.contains("verify_ssl"), "{err}");
    assert_eq!(CustomBuilder.type_name(), "custom");
}
