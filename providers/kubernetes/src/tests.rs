//! Against a stand-in API server on 127.0.0.1 that answers as the Kubernetes
//! API reference documents (authentication.k8s.io/v1 objects, `Status` errors).
//!
//! One file, past 400 lines, because every test shares the one stand-in API
//! server.

use super::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokengate_api::ErrorKind;

const ALICE: &str = "system:serviceaccount:ml:trainer";
const REVIEWER_TOKEN: &str = "reviewer-sa-token";
const WEAK_REVIEWER_TOKEN: &str = "reviewer-without-auth-delegator";
/// Audiences the stand-in's valid tokens were issued for.
const TOKEN_AUDIENCES: [&str; 2] = ["https://kubernetes.default.svc", "tokengate"];

#[derive(Default)]
struct Stand {
    calls: AtomicUsize,
    last_body: Mutex<Option<Value>>,
    /// The reviewer token the stand-in accepts (rotated by a test).
    reviewer: Mutex<String>,
}

fn k8s_status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    });
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response()
}

fn unauthorized() -> Response {
    k8s_status(401, "Unauthorized", "Unauthorized")
}

fn user_info() -> Value {
    json!({
        "username": ALICE,
        "uid": "6a1f6d0c-3c2e-4e1f-9f5e-0d3b8c2a7e41",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:ml", "system:authenticated"],
        "extra": {
            "authentication.kubernetes.io/pod-name": ["trainer-0"],
            "authentication.kubernetes.io/pod-uid": ["0b0c7a52-8f9e-4d3a-a7a4-3f0b8e3c1d22"]
        }
    })
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::to_string)
}

async fn self_subject_reviews(State(st): State<Arc<Stand>>, headers: HeaderMap, body: Bytes) -> Response {
    st.calls.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *st.last_body.lock().unwrap() = Some(body.clone());
    if body["apiVersion"] != "authentication.k8s.io/v1" || body["kind"] != "SelfSubjectReview" {
        return k8s_status(400, "BadRequest", "the body is not an authentication.k8s.io/v1 SelfSubjectReview");
    }
    match bearer(&headers).as_deref() {
        Some("alice-token") => (
            StatusCode::CREATED,
            Json(json!({
                "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": user_info()}
            })),
        )
            .into_response(),
        Some("forbidden-token") => k8s_status(
            403,
            "Forbidden",
            "selfsubjectreviews.authentication.k8s.io is forbidden: User \"bob\" cannot create resource \
             \"selfsubjectreviews\" in API group \"authentication.k8s.io\" at the cluster scope",
        ),
        Some("boom-token") => k8s_status(500, "InternalError", "etcdserver: request timed out"),
        Some("busy-token") => {
            let mut r = k8s_status(429, "TooManyRequests", "too many requests");
            r.headers_mut().insert("retry-after", "7".parse().unwrap());
            r
        }
        Some("garbage-token") => (StatusCode::CREATED, "<html>proxy login</html>").into_response(),
        Some("nouser-token") => {
            (StatusCode::CREATED, Json(json!({"kind": "SelfSubjectReview", "status": {}}))).into_response()
        }
        Some("wrongkind-token") => {
            (StatusCode::OK, Json(json!({"kind": "Status", "status": "Success"}))).into_response()
        }
        Some("slow-token") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            unauthorized()
        }
        _ => unauthorized(),
    }
}

async fn token_reviews(State(st): State<Arc<Stand>>, headers: HeaderMap, body: Bytes) -> Response {
    st.calls.fetch_add(1, Ordering::SeqCst);
    let reviewer = st.reviewer.lock().unwrap().clone();
    match bearer(&headers) {
        Some(t) if t == reviewer => {}
        Some(t) if t == WEAK_REVIEWER_TOKEN => {
            return k8s_status(
                403,
                "Forbidden",
                "tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:auth:tokengate\" \
                 cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope",
            )
        }
        _ => return unauthorized(),
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *st.last_body.lock().unwrap() = Some(body.clone());
    if body["apiVersion"] != "authentication.k8s.io/v1" || body["kind"] != "TokenReview" {
        return k8s_status(400, "BadRequest", "the body is not an authentication.k8s.io/v1 TokenReview");
    }
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    let requested: Vec<String> = body["spec"]["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let reply = |status: Value| {
        let review = json!({
            "kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": body["spec"].clone(),
            "status": status
        });
        (StatusCode::CREATED, Json(review)).into_response()
    };
    match token {
        "alice-token" => {
            // Audience-aware, as the API server is: the token's audiences
            // intersected with the requested ones (the server's own if none).
            let confirmed: Vec<&str> = if requested.is_empty() {
                vec![TOKEN_AUDIENCES[0]]
            } else {
                TOKEN_AUDIENCES.iter().copied().filter(|a| requested.iter().any(|r| r == a)).collect()
            };
            if confirmed.is_empty() {
                return reply(json!({
                    "user": {},
                    "error": format!("[invalid bearer token, token audiences {TOKEN_AUDIENCES:?} is invalid for the target audiences {requested:?}]")
                }));
            }
            reply(json!({"authenticated": true, "user": user_info(), "audiences": confirmed}))
        }
        // An authenticator that ignores audiences (status.audiences left empty).
        "legacy-token" => reply(json!({"authenticated": true, "user": user_info()})),
        _ => reply(json!({
            "user": {},
            "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive, token lookup failed]"
        })),
    }
}

/// Serves the stand-in; `prefix` mounts it under a path, as proxies do.
async fn serve(prefix: &str) -> (String, Arc<Stand>) {
    let stand = Arc::new(Stand { reviewer: Mutex::new(REVIEWER_TOKEN.to_string()), ..Default::default() });
    let router = Router::new()
        .route(&format!("{prefix}{SELF_SUBJECT_REVIEW_PATH}"), post(self_subject_reviews))
        .route(&format!("{prefix}{TOKEN_REVIEW_PATH}"), post(token_reviews))
        .with_state(stand.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}{prefix}"), stand)
}

fn provider(config: Value) -> KubernetesProvider {
    build(config).unwrap_or_else(|e| panic!("{e}"))
}

fn build(config: Value) -> Result<KubernetesProvider, ConfigError> {
    KubernetesProvider::from_config(parse_provider_config(config)?, &BuildContext::default())
}

fn ctx() -> RequestContext {
    RequestContext::new("GET", "/v1/models")
}

async fn reject(p: &KubernetesProvider, token: &str) -> AuthError {
    match p.validate(token, &ctx()).await {
        Ok(principal) => panic!("{token} was accepted as {principal:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn self_subject_review_maps_user_info() {
    let (url, stand) = serve("").await;
    let p = provider(json!({"api_server_url": url}));
    let principal = p.validate("alice-token", &ctx()).await.unwrap();
    assert_eq!(principal.principal, ALICE);
    assert_eq!(principal.attributes["roles"], vec![ALICE]);
    assert_eq!(
        principal.attributes["teams"],
        vec!["system:serviceaccounts", "system:serviceaccounts:ml", "system:authenticated"]
    );
    assert_eq!(
        stand.last_body.lock().unwrap().clone().unwrap(),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    );

    // uid and `extra` keys (dotted, hence escaped) are mappable too.
    let p = provider(json!({
        "api_server_url": url,
        "claims_mapping": {"uid": "uid", "extra.authentication\\.kubernetes\\.io/pod-name": "pods", "groups": "teams"}
    }));
    let principal = p.validate("alice-token", &ctx()).await.unwrap();
    assert_eq!(principal.attributes["pods"], vec!["trainer-0"]);
    assert_eq!(principal.attributes["uid"], vec!["6a1f6d0c-3c2e-4e1f-9f5e-0d3b8c2a7e41"]);
    assert!(!principal.attributes.contains_key("roles"));
}

#[tokio::test]
async fn api_server_under_a_path_prefix() {
    let (url, _) = serve("/k8s/clusters/c-1").await;
    let p = provider(json!({"api_server_url": format!("{url}/")}));
    assert_eq!(p.validate("alice-token", &ctx()).await.unwrap().principal, ALICE);
}

#[tokio::test]
async fn rejected_token_is_invalid_token() {
    let (url, _) = serve("").await;
    let p = provider(json!({"api_server_url": url}));
    let e = reject(&p, "expired-or-forged").await;
    assert_eq!(e.kind(), ErrorKind::InvalidToken);
    assert_eq!(e.detail(), "the Kubernetes API server did not accept the token (401: Unauthorized)");
}

#[tokio::test]
async fn forbidden_self_subject_review_is_unavailable_not_the_tokens_fault() {
    let (url, _) = serve("").await;
    let p = provider(json!({"api_server_url": url}));
    let e = reject(&p, "forbidden-token").await;
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(
        e.detail()
            .contains("may not create selfsubjectreviews (403: selfsubjectreviews.authentication.k8s.io is forbidden"),
        "{e}"
    );
    assert!(e.detail().contains("review: token_review"), "{e}");
}

#[tokio::test]
async fn outages_and_garbage_are_unavailable() {
    let (url, _) = serve("").await;
    let p = provider(json!({"api_server_url": url, "timeout": "300ms"}));
    for (token, needle) in [
        ("boom-token", "answered 500: etcdserver: request timed out"),
        ("garbage-token", "answered 201 with invalid JSON"),
        ("nouser-token", "answered without status.userInfo"),
        ("wrongkind-token", "answered with a `Status` object, not a SelfSubjectReview"),
        ("slow-token", "timed out"),
    ] {
        let e = reject(&p, token).await;
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{token}: {e}");
        assert!(e.detail().contains(needle), "{token}: {e}");
        assert!(e.detail().contains(&url), "{token}: the detail names the server: {e}");
    }
    let e = reject(&p, "busy-token").await;
    assert_eq!((e.kind(), e.retry_after()), (ErrorKind::Unavailable, Some(Duration::from_secs(7))));

    // No SelfSubjectReview API (Kubernetes < 1.28): 404, with the way out.
    let p = provider(json!({"api_server_url": format!("{url}/not-kubernetes")}));
    let e = reject(&p, "alice-token").await;
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.detail().contains("404") && e.detail().contains("1.28"), "{e}");

    // Nothing listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let p = provider(json!({"api_server_url": format!("http://127.0.0.1:{port}")}));
    let e = reject(&p, "alice-token").await;
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.detail().contains("connection failed"), "{e}");
}

#[tokio::test]
async fn results_are_cached_and_outages_are_not() {
    let (url, stand) = serve("").await;
    let p = provider(json!({"api_server_url": url}));
    for _ in 0..3 {
        p.validate("alice-token", &ctx()).await.unwrap();
        reject(&p, "bad-token").await;
    }
    assert_eq!(stand.calls.load(Ordering::SeqCst), 2, "one review per token");
    for _ in 0..3 {
        reject(&p, "boom-token").await;
    }
    assert_eq!(stand.calls.load(Ordering::SeqCst), 5, "a 500 is asked again every time");

    let p = provider(json!({"api_server_url": url, "cache": {"enabled": false}}));
    p.validate("alice-token", &ctx()).await.unwrap();
    p.validate("alice-token", &ctx()).await.unwrap();
    assert_eq!(stand.calls.load(Ordering::SeqCst), 7);
}

#[tokio::test]
async fn token_review_uses_the_reviewer_token_and_documented_body() {
    let (url, stand) = serve("").await;
    let p = provider(json!({"api_server_url": url, "review": "token_review", "auth_token": REVIEWER_TOKEN}));
    let principal = p.validate("alice-token", &ctx()).await.unwrap();
    assert_eq!(principal.principal, ALICE);
    assert_eq!(principal.attributes["roles"], vec![ALICE]);
    assert_eq!(
        stand.last_body.lock().unwrap().clone().unwrap(),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "alice-token"}})
    );
}

#[tokio::test]
async fn token_review_unauthenticated_reports_status_error() {
    let (url, _) = serve("").await;
    let p = provider(json!({"api_server_url": url, "review": "token_review", "auth_token": REVIEWER_TOKEN}));
    let e = reject(&p, "forged-token").await;
    assert_eq!(e.kind(), ErrorKind::InvalidToken);
    assert_eq!(
        e.detail(),
        "the Kubernetes API server did not authenticate the token: [invalid bearer token, square/go-jose: error in \
         cryptographic primitive, token lookup failed]"
    );
}

#[tokio::test]
async fn token_review_audiences_are_sent_and_confirmed() {
    let (url, stand) = serve("").await;
    let config = |audiences: Value| json!({"api_server_url": url, "review": "token_review", "auth_token": REVIEWER_TOKEN, "audiences": audiences});
    let p = provider(config(json!(["tokengate", "other"])));
    assert_eq!(p.validate("alice-token", &ctx()).await.unwrap().principal, ALICE);
    assert_eq!(stand.last_body.lock().unwrap().clone().unwrap()["spec"]["audiences"], json!(["tokengate", "other"]));

    // The server says the token is not for us.
    let p = provider(config(json!(["someone-else"])));
    let e = reject(&p, "alice-token").await;
    assert_eq!(e.kind(), ErrorKind::InvalidToken);
    assert!(e.detail().contains("is invalid for the target audiences"), "{e}");

    // The server authenticated but did not confirm an audience: it is not
    // audience-aware, which is an operator's problem, not the client's.
    let p = provider(config(json!(["tokengate"])));
    let e = reject(&p, "legacy-token").await;
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.detail().contains("confirmed none of the audiences"), "{e}");
}

#[tokio::test]
async fn token_review_reviewer_problems_are_unavailable() {
    let (url, _) = serve("").await;
    let p = provider(json!({"api_server_url": url, "review": "token_review", "auth_token": "revoked-reviewer"}));
    let e = reject(&p, "alice-token").await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "our credential failing is not the client's 401");
    assert!(e.detail().contains("the reviewer's auth_token was rejected (401: Unauthorized)"), "{e}");

    let p = provider(json!({"api_server_url": url, "review": "token_review", "auth_token": WEAK_REVIEWER_TOKEN}));
    let e = reject(&p, "alice-token").await;
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.detail().contains("system:auth-delegator"), "{e}");
}

#[tokio::test]
async fn auth_token_file_is_reread_after_rotation() {
    let (url, stand) = serve("").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), format!("{REVIEWER_TOKEN}\n")).unwrap();
    let ctx_with_dir = BuildContext { base_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let config = json!({"api_server_url": url, "review": "token_review", "auth_token_file": "token", "cache": {"enabled": false}});
    let mut p = KubernetesProvider::from_config(parse_provider_config(config).unwrap(), &ctx_with_dir).unwrap();
    assert_eq!(p.validate("alice-token", &ctx()).await.unwrap().principal, ALICE);

    // The kubelet rotates the token; the API server stops accepting the old one.
    if let Some(ReviewerToken::File { refresh, .. }) = &mut p.reviewer {
        *refresh = Duration::ZERO;
    }
    std::fs::write(dir.path().join("token"), "rotated-reviewer-token").unwrap();
    *stand.reviewer.lock().unwrap() = "rotated-reviewer-token".to_string();
    assert_eq!(p.validate("alice-token", &ctx()).await.unwrap().principal, ALICE);

    // An unreadable file keeps the last token read.
    std::fs::remove_file(dir.path().join("token")).unwrap();
    assert_eq!(p.validate("alice-token", &ctx()).await.unwrap().principal, ALICE);
}

#[tokio::test]
async fn tokens_never_appear_in_errors_or_debug() {
    let (url, _) = serve("").await;
    let p = provider(json!({"api_server_url": url, "review": "token_review", "auth_token": REVIEWER_TOKEN}));
    assert!(!format!("{p:?}").contains(REVIEWER_TOKEN));
    let e = reject(&p, "forged-token").await;
    assert!(!e.detail().contains("forged-token"));
    // A server that echoes the token has it cut out of the detail.
    assert_eq!(sanitize("bad token secret-123 here", "secret-123"), "bad token <token> here");
    let e = reject(&p, "").await;
    assert_eq!(e.detail(), "the token is empty");
    let e = reject(&p, "bad\ntoken").await;
    assert_eq!(e.kind(), ErrorKind::InvalidToken);
    assert!(p.describe().message.contains(&url));
}

#[test]
fn jwt_expiry_caps_caching_only_when_present() {
    use base64::Engine as _;
    let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!("{}.{}.sig", enc(json!({"alg": "RS256"})), enc(json!({"exp": 2_000_000_000u64})));
    assert_eq!(jwt_expiry(&token), Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
    assert_eq!(jwt_expiry("opaque-token"), None);
    assert_eq!(jwt_expiry("a.b.c.d"), None);
    assert_eq!(jwt_expiry(&format!("x.{}.y", enc(json!({"sub": "no-exp"})))), None);
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        (json!({"api_server_url": "not a url"}), "api_server_url", "is not a URL"),
        (json!({"api_server_url": "http://10.0.0.1:6443"}), "api_server_url", "use https://"),
        (json!({"api_server_url": "ftp://k8s"}), "api_server_url", "scheme `ftp`"),
        (json!({"api_server_url": "https://k8s?x=1"}), "api_server_url", "query"),
        (json!({"api_server_url": "https://u:p@k8s"}), "api_server_url", "credentials"),
        (json!({"api_server_url": "https://k8s", "review": "subject_access_review"}), "review", "unknown variant"),
        (
            json!({"api_server_url": "https://k8s", "auth_token": "x"}),
            "auth_token",
            "only used with `review: token_review`",
        ),
        (json!({"api_server_url": "https://k8s", "audiences": ["a"]}), "audiences", "only used with"),
        (
            json!({"api_server_url": "https://k8s", "review": "token_review"}),
            "auth_token",
            "needs tokengate's own token",
        ),
        (
            json!({"api_server_url": "https://k8s", "review": "token_review", "auth_token": "x", "auth_token_file": "/t"}),
            "auth_token_file",
            "not both",
        ),
        (
            json!({"api_server_url": "https://k8s", "review": "token_review", "auth_token": " "}),
            "auth_token",
            "is empty",
        ),
        (
            json!({"api_server_url": "https://k8s", "review": "token_review", "auth_token_file": "/nonexistent/token"}),
            "auth_token_file",
            "cannot read /nonexistent/token",
        ),
        (
            json!({"api_server_url": "https://k8s", "review": "token_review", "auth_token": "x", "audiences": [""]}),
            "audiences[0]",
            "is empty",
        ),
        (json!({"api_server_url": "https://k8s", "tls_cafile": "/nonexistent/ca.crt"}), "tls_cafile", "cannot read"),
        (json!({"api_server_url": "https://k8s", "verify_tsl": false}), "verify_tsl", "unknown field"),
        (
            json!({"api_server_url": "https://k8s", "claims_mapping": {"a..b": "x"}}),
            "claims_mapping",
            "empty path segment",
        ),
    ];
    for (config, field, needle) in cases {
        let e = match build(config.clone()) {
            Ok(_) => panic!("{config} was accepted"),
            Err(e) => e,
        };
        assert_eq!(e.field, field, "{config}: {e}");
        assert!(e.message.contains(needle), "{config}: {e}");
        assert!(!e.to_string().contains("\"x\""), "no secret in {e}");
    }
    // Loopback may use plain HTTP (kubectl proxy).
    assert!(build(json!({"api_server_url": "http://localhost:8001"})).is_ok());
    assert!(build(json!({"api_server_url": "http://[::1]:8001"})).is_ok());
}

/// The shipped example parses, and builds once its in-cluster files exist.
#[test]
fn example_config_parses_and_builds() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/kubernetes.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = yaml_serde::from_str(&text).unwrap();
    let mut section = doc["provider_config"].clone();
    let object = section.as_object_mut().unwrap();
    assert_eq!(object.remove("type"), Some(json!("kubernetes")));
    let config: KubernetesConfig = parse_provider_config(section.clone()).unwrap();
    assert_eq!(config.review, ReviewMode::SelfSubjectReview);
    // The pod's CA file does not exist here; the rest must build as written.
    section.as_object_mut().unwrap().remove("tls_cafile");
    build(section).unwrap();
}

/// A stand-in API server whose review endpoint answers `answer` after `delay`,
/// counting calls.
async fn serve_fixed(delay: Duration, answer: fn() -> Response) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let router = Router::new().route(
        SELF_SUBJECT_REVIEW_PATH,
        post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                answer()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), calls)
}

/// #11: a review carries the client's bearer token; a redirect is never
/// followed (here to another port of the same host), and past
/// `max_concurrent_requests` the excess is 503 at once.
#[tokio::test]
async fn redirects_are_not_followed_and_concurrent_reviews_are_capped() {
    let (elsewhere, stand) = serve("").await;
    static TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TARGET.get_or_init(|| format!("{elsewhere}{SELF_SUBJECT_REVIEW_PATH}"));
    let (url, _) = serve_fixed(Duration::ZERO, || {
        (StatusCode::TEMPORARY_REDIRECT, [("location", TARGET.get().cloned().unwrap_or_default())]).into_response()
    })
    .await;
    let err = reject(&provider(json!({"api_server_url": url})), "alice-token").await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.detail().contains("307 redirecting to"), "{err}");
    assert_eq!(stand.calls.load(Ordering::SeqCst), 0, "the token went to the other port");

    let (slow, calls) = serve_fixed(Duration::from_millis(1500), unauthorized).await;
    let p =
        Arc::new(provider(json!({"api_server_url": slow, "max_concurrent_requests": 2, "cache": {"enabled": false}})));
    let started = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move { (p.validate(&format!("made-up-{i}"), &ctx()).await, started.elapsed()) })
        })
        .collect();
    let mut unavailable = Vec::new();
    for t in tasks {
        if let (Err(e), when) = t.await.unwrap() {
            if e.is_unavailable() {
                unavailable.push(when);
                assert!(e.retry_after().is_some(), "{e}");
            }
        }
    }
    assert_eq!(unavailable.len(), 1, "{unavailable:?}");
    assert!(unavailable[0] < Duration::from_millis(1000), "the excess waited: {unavailable:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn without_api_server_url_the_in_cluster_name_and_in_a_run_yaml_ogx_mapping() {
    let p = KubernetesBuilder.build(json!({}), &BuildContext::default()).unwrap();
    let d = p.describe();
    assert!(d.accepts.contains(IN_CLUSTER_API_SERVER), "{}", d.accepts);
    assert_eq!(d.mapping, Some(default_claims_mapping()));
    let run_yaml = BuildContext { llama_stack_defaults: true, ..Default::default() };
    let p = KubernetesBuilder.build(json!({}), &run_yaml).unwrap();
    assert_eq!(p.describe().mapping, Some(ogx_claims_mapping()));
}
