//! `AuthLayer` on a real axum server, real sockets, real tokens.

use crate::fixtures::*;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::net::SocketAddr;
use tokengate::DynProvider;
use tokengate::{AuthLayer, Authenticated, MaybeAuthenticated};

async fn maybe(MaybeAuthenticated(p): MaybeAuthenticated) -> String {
    p.map_or_else(|| "anonymous".to_string(), |p| p.principal)
}

async fn optional(p: Option<Authenticated>) -> String {
    p.map_or_else(|| "none".to_string(), |p| p.principal.clone())
}

/// Serves the test app behind `layer`; returns its base URL.
async fn serve(layer: AuthLayer) -> String {
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/v1/things/{id}", post(whoami))
        .route("/maybe", get(maybe))
        .route("/public/{*rest}", get(maybe))
        .route("/optional", get(optional))
        .route("/healthz", get(|| async { "ok" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    format!("http://{addr}")
}

fn recording_layer(p: &std::sync::Arc<Recording>) -> AuthLayer {
    let provider: DynProvider = p.clone();
    AuthLayer::new(provider).realm("test").open_path("/healthz").open_path("/public/*").open_path("/maybe")
}

/// [`recording_layer`], and the audit log its decisions go to (where a test reads their reasons).
fn audited_recording_layer(p: &std::sync::Arc<Recording>) -> (AuthLayer, AuditTail) {
    let audit = AuditTail::new();
    (recording_layer(p).audit(audit.log.clone()), audit)
}

/// A layer in front of `provider`, with realm `test`, and its audit log.
fn audited_layer(provider: DynProvider) -> (AuthLayer, AuditTail) {
    let audit = AuditTail::new();
    (AuthLayer::new(provider).realm("test").audit(audit.log.clone()), audit)
}

#[tokio::test]
async fn valid_jwt_reaches_the_handler_with_its_principal() {
    let idp = Idp::start().await;
    let base = serve(AuthLayer::new(idp.provider()).realm("test")).await;
    let res = client().get(format!("{base}/whoami")).bearer_auth(idp.token("alice")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"principal":"alice","attributes":{"groups":["ml","ops"],"scopes":["read","write"]}}"#
    );
}

#[tokio::test]
async fn expired_jwt_is_401_invalid_token() {
    let idp = Idp::start().await;
    let (layer, audit) = audited_layer(idp.provider());
    let base = serve(layer).await;
    let res = client().get(format!("{base}/whoami")).bearer_auth(idp.expired_token("alice")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let challenge = header(&res, "www-authenticate").unwrap();
    assert!(challenge.starts_with(&invalid_token_challenge("test")), "{challenge}");
    assert!(challenge.ends_with('"'), "{challenge}");
    assert_eq!(json(res).await["error"]["code"], "invalid_token");
    assert_eq!(audit.last_reason().as_deref(), Some("claim"));
}

#[tokio::test]
async fn bad_signature_is_401_invalid_token() {
    let idp = Idp::start().await;
    let (layer, audit) = audited_layer(idp.provider());
    let base = serve(layer).await;
    let token = tamper(&idp.token("alice"));
    let res = client().get(format!("{base}/whoami")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let challenge = header(&res, "www-authenticate").unwrap();
    assert!(challenge.starts_with(&invalid_token_challenge("test")), "{challenge}");
    assert_eq!(json(res).await["error"]["code"], "invalid_token");
    assert_eq!(audit.last_reason().as_deref(), Some("signature"));
}

#[tokio::test]
async fn unreachable_identity_provider_is_503_with_retry_after() {
    let idp = Idp::unreachable().await;
    let (layer, audit) = audited_layer(idp.provider());
    let base = serve(layer).await;
    let res = client().get(format!("{base}/whoami")).bearer_auth(idp.token("alice")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let retry: u64 = header(&res, "retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(header(&res, "www-authenticate"), None);
    assert_eq!(json(res).await["error"]["code"], "temporarily_unavailable");
    assert_eq!(audit.last_reason().as_deref(), Some("upstream"));
}

#[tokio::test]
async fn stopped_identity_provider_is_503_not_401() {
    let mut idp = Idp::start().await;
    idp.stop();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let base = serve(AuthLayer::new(idp.provider())).await;
    let res = client().get(format!("{base}/whoami")).bearer_auth(idp.token("alice")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(header(&res, "retry-after").is_some());
}

#[tokio::test]
async fn missing_token_is_401_without_error_attribute() {
    let p = Recording::new("rec");
    let (layer, audit) = audited_recording_layer(&p);
    let base = serve(layer).await;
    let res = client().get(format!("{base}/whoami")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "www-authenticate").unwrap(), r#"Bearer realm="test""#);
    assert_eq!(header(&res, "content-type").unwrap(), "application/json");
    assert_eq!(
        json(res).await,
        json!({"error": {"code": "invalid_token", "message": "Send a test token: no credentials: neither an Authorization: Bearer header nor an X-API-Key header"}})
    );
    assert_eq!(audit.last_reason().as_deref(), Some("missing_credential"));
    assert_eq!(p.count(), 0, "no token, no provider call");
}

#[tokio::test]
async fn unknown_token_is_401_with_exact_challenge() {
    let p = Recording::new("rec");
    let (layer, audit) = audited_recording_layer(&p);
    let base = serve(layer).await;
    let res = client().get(format!("{base}/whoami")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        r#"Bearer realm="test", error="invalid_token", error_description="token not recognized""#
    );
    assert_eq!(
        json(res).await,
        json!({"error": {"code": "invalid_token", "message": "Send a test token: token not recognized"}})
    );
    assert_eq!(audit.last_reason().as_deref(), Some("rejected"));
}

#[tokio::test]
async fn error_description_is_quoted_string_safe() {
    let p = Recording::new("rec");
    let base = serve(recording_layer(&p)).await;
    let res = client().get(format!("{base}/whoami")).bearer_auth("quoted").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        r#"Bearer realm="test", error="invalid_token", error_description="audience 'x' is not  one of['y']""#
    );
}

#[tokio::test]
async fn malformed_bearer_is_400_and_another_scheme_401() {
    let p = Recording::new("rec");
    let (layer, audit) = audited_recording_layer(&p);
    let base = serve(layer).await;
    for value in ["Basic dXNlcjpwYXNz", "InvalidFormat x", "just-a-token"] {
        let res = client().get(format!("{base}/whoami")).header("authorization", value).send().await.unwrap();
        assert_eq!(res.status(), 401, "another scheme is no Bearer credential: {value:?}");
        assert_eq!(header(&res, "www-authenticate").unwrap(), r#"Bearer realm="test""#, "no error attribute");
        assert_eq!(json(res).await["error"]["code"], "invalid_token");
        assert_eq!(audit.last_reason().as_deref(), Some("missing_credential"), "{value:?}");
    }
    for value in ["Bearer", "Bearer ", "Bearer two words", "Bearer a,b", "Bearer just a token"] {
        let res = client().get(format!("{base}/whoami")).header("authorization", value).send().await.unwrap();
        assert_eq!(res.status(), 400, "{value:?}");
        let challenge = header(&res, "www-authenticate").unwrap();
        assert!(
            challenge.starts_with(r#"Bearer realm="test", error="invalid_request", error_description=""#),
            "{challenge}"
        );
        assert!(!challenge.contains("just-a-token"), "the header is never echoed: {challenge}");
        assert_eq!(json(res).await["error"]["code"], "invalid_request");
        assert_eq!(audit.last_reason().as_deref(), Some("request"), "{value:?}");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    headers.append("authorization", "Bearer good".parse().unwrap());
    headers.append("authorization", "Bearer good".parse().unwrap());
    let res = client().get(format!("{base}/whoami")).headers(headers).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(p.count(), 0, "malformed requests never reach the provider");
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    let p = Recording::new("rec");
    let base = serve(recording_layer(&p)).await;
    let res = client().get(format!("{base}/whoami")).header("authorization", "bEARER good").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"principal":"alice","attributes":{"roles":["admin","dev"],"teams":["ml"]}}"#
    );
}

#[tokio::test]
async fn refusals_by_kind() {
    let p = Recording::new("rec");
    let (layer, audit) = audited_recording_layer(&p);
    let base = serve(layer).await;
    let c = client();

    let res = c.get(format!("{base}/whoami")).bearer_auth("scope").send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        r#"Bearer realm="test", error="insufficient_scope", error_description="needs scope admin""#
    );
    assert_eq!(json(res).await["error"]["code"], "insufficient_scope");
    assert_eq!(audit.last_reason().as_deref(), Some("policy"));

    let res = c.get(format!("{base}/whoami")).bearer_auth("down").send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(header(&res, "retry-after").unwrap(), "7");
    assert_eq!(header(&res, "www-authenticate"), None);
    let body = json(res).await;
    assert_eq!(body["error"]["code"], "temporarily_unavailable");
    assert!(!body.to_string().contains("502"), "internal details stay in the logs: {body}");
    assert_eq!(audit.last_reason().as_deref(), Some("upstream"));

    let res = c.get(format!("{base}/whoami")).bearer_auth("down-default").send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(header(&res, "retry-after").unwrap(), "5");

    let res = c.get(format!("{base}/whoami")).bearer_auth("broken").send().await.unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(header(&res, "www-authenticate"), None);
    let body = json(res).await;
    assert_eq!(body["error"]["code"], "server_error");
    assert!(!body.to_string().contains("jwks"), "{body}");
    assert_eq!(audit.last_reason().as_deref(), Some("config"));
}

#[tokio::test]
async fn provider_sees_the_request_but_not_its_credentials() {
    let p = Recording::new("rec");
    let base = serve(recording_layer(&p)).await;
    let res = client()
        .post(format!("{base}/v1/things/42?a=1&b=x%20y&a=3"))
        .bearer_auth("good")
        .header("cookie", "session=secret")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-request-id", "r-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ctx = p.last();
    assert_eq!(ctx.method, "POST");
    assert_eq!(ctx.path, "/v1/things/42");
    assert_eq!(ctx.params().unwrap()["a"], vec!["1", "3"]);
    assert_eq!(ctx.params().unwrap()["b"], vec!["x y"]);
    assert_eq!(ctx.headers().unwrap()["x-request-id"], "r-1");
    for secret in ["authorization", "cookie", "proxy-authorization"] {
        assert!(!ctx.headers().unwrap().contains_key(secret), "{secret} leaked into the context");
    }
    assert!(ctx.peer.is_some_and(|a| a.ip().is_loopback()), "{:?}", ctx.peer);
}

#[tokio::test]
async fn open_paths_need_no_token_but_use_a_valid_one() {
    let p = Recording::new("rec");
    let base = serve(recording_layer(&p)).await;
    let c = client();

    let res = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "ok".to_string()));
    let res = c.get(format!("{base}/public/css/site.css")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "anonymous".to_string()));
    let res = c.get(format!("{base}/maybe")).bearer_auth("good").send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "alice".to_string()));
    let res = c.get(format!("{base}/maybe")).bearer_auth("nope").send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "anonymous".to_string()));
    let res = c.get(format!("{base}/maybe")).header("authorization", "Basic x").send().await.unwrap();
    assert_eq!(res.status(), 200, "a malformed header on an open path is no refusal");

    // Not open: exact means exact.
    let res = c.get(format!("{base}/healthz/extra")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn optional_extractor() {
    let p = Recording::new("rec");
    let base = serve(recording_layer(&p)).await;
    let res = client().get(format!("{base}/optional")).bearer_auth("good").send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "alice");
}

#[tokio::test]
async fn authenticated_without_a_principal_fails_closed() {
    // `Authenticated` on a route outside any layer: a wiring mistake, never a pass.
    let app = Router::new().route("/whoami", get(whoami));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let res = client().get(format!("http://{addr}/whoami")).send().await.unwrap();
    assert_eq!(res.status(), 500);
}

#[tokio::test]
async fn layer_from_config_takes_realm_and_open_paths() {
    let idp = Idp::start().await;
    let config = tokengate::Config::from_value(json!({
        "provider_config": idp.provider_config(),
        "realm": "from-config",
        "open_paths": ["/healthz"],
    }))
    .unwrap();
    let layer = AuthLayer::from_config(&config, &tokengate::Registry::with_builtins()).unwrap();
    let base = serve(layer).await;
    let c = client();
    assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    let res = c.get(format!("{base}/whoami")).send().await.unwrap();
    assert_eq!(header(&res, "www-authenticate").unwrap(), r#"Bearer realm="from-config""#);
}

/// The example's own app, driven over a socket.
#[path = "../../examples/axum.rs"]
#[allow(dead_code)]
mod example;

#[tokio::test]
async fn example_app_with_a_custom_provider() {
    let p = Recording::new("rec");
    let provider: DynProvider = p.clone();
    let app = example::app(AuthLayer::new(provider));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = client();
    let res = c.get(format!("http://{addr}/whoami")).bearer_auth("good").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"principal":"alice","attributes":{"roles":["admin","dev"],"teams":["ml"]}}"#
    );
    let res = c.get(format!("http://{addr}/hello")).bearer_auth("good").send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "hello, alice\n");
    let res = c.get(format!("http://{addr}/hello")).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "hello, stranger\n");
    assert_eq!(c.get(format!("http://{addr}/whoami")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn example_dev_setup_end_to_end() {
    let (auth, token) = example::dev_setup().await.expect("dev setup (needs the oauth2_token provider)");
    let app = example::app(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = client();
    let res = c.get(format!("http://{addr}/whoami")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["principal"], "dev-user");
    assert_eq!(body["attributes"]["groups"], json!(["developers"]));
    let res = c.get(format!("http://{addr}/whoami")).bearer_auth(tamper(&token)).send().await.unwrap();
    assert_eq!(res.status(), 401);
}
