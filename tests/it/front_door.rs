//! Issue #23 part 1: one front door. The same requests through the tower
//! layer, through `tokengate serve` in Envoy mode (where the decision request
//! is the original) and through `Gate::admit` in-process (what the Python
//! binding calls) get the same status, error code, `Reason`, body and
//! authentication headers — because all three are adapters over the same code.

use crate::fixtures::*;
use axum::routing::any;
use axum::Router;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokengate::config::Proxy;
use tokengate::http::server::ServeOptions;
use tokengate::{Admission, AuthLayer, Config, Gate, MaybeAuthenticated, Registry, RequestParts};

/// The headers a refusal's meaning travels in (the rest is transport).
const ANSWER_HEADERS: [&str; 6] =
    ["www-authenticate", "retry-after", "ratelimit-policy", "ratelimit", "content-type", "cache-control"];

/// One request of the matrix.
struct Case {
    name: &'static str,
    path: &'static str,
    authorization: Option<String>,
    /// The expected status and `Reason` name (`None`: allowed).
    status: u16,
    reason: Option<&'static str>,
}

impl Case {
    /// Who an allowed case is let in as: the `sub` of its token, or nobody.
    fn principal(&self) -> Option<&'static str> {
        match (self.status, self.name) {
            (200, n) if n.starts_with("open path") => None,
            (200, n) if n.contains("rate") => Some("bob"),
            (200, _) => Some("alice"),
            _ => None,
        }
    }
}

/// What one front end answered, comparable across front ends.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    /// Who was let in (`None`: anonymous, or refused).
    principal: Option<String>,
    code: Option<String>,
    reason: Option<String>,
    /// The refusal's body, exactly (digits of a 429 or 503 normalized: see [`timeless`]).
    body: Option<String>,
    headers: Vec<(&'static str, Option<String>)>,
}

/// Retry-After and RateLimit count seconds from the moment of asking, and
/// front ends are asked moments apart: their digits are compared apart
/// (within a second), everything else exactly.
fn timeless(status: u16, text: &str) -> String {
    if status != 429 && status != 503 {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn config(idp: &Idp) -> Config {
    Config::from_value(json!({
        "realm": "test",
        "provider_config": idp.provider_config(),
        "open_paths": ["/public/*"],
        "route_policy": {
            "default": "permit",
            "rules": [{"path": "/admin*", "forbid": {"attribute": "groups", "none_of": ["admin"]}}],
        },
        "limits": {"rules": [{"name": "chat", "paths": ["/v1/chat/*"], "by": "principal", "rate": "2/min"}]},
    }))
    .unwrap()
}

fn cases(idp: &Idp) -> Vec<Case> {
    let bearer = |t: String| Some(format!("Bearer {t}"));
    let mut wrong_audience = Map::new();
    wrong_audience.insert("aud".into(), json!("someone-else"));
    let wrong_audience = idp.issuer.mint("alice", &wrong_audience, Duration::from_secs(600)).unwrap();
    let case = |name, path, authorization, status, reason| Case { name, path, authorization, status, reason };
    vec![
        case("valid", "/v1/models", bearer(idp.token("alice")), 200, None),
        case("expired", "/v1/models", bearer(idp.expired_token("alice")), 401, Some("claim")),
        case("wrong audience", "/v1/models", bearer(wrong_audience), 401, Some("claim")),
        case("forged signature", "/v1/models", bearer(tamper(&idp.token("alice"))), 401, Some("signature")),
        case("no token", "/v1/models", None, 401, Some("missing_credential")),
        case("another scheme", "/v1/models", Some("Basic dXNlcjpwYXNz".into()), 401, Some("missing_credential")),
        case("malformed bearer", "/v1/models", Some("Bearer two words".into()), 400, Some("request")),
        case("policy", "/admin/users", bearer(idp.token("alice")), 403, Some("policy")),
        case("open path, no token", "/public/site.css", None, 200, None),
        case("open path, bad token", "/public/site.css", bearer(tamper(&idp.token("alice"))), 200, None),
        case("under the rate", "/v1/chat/completions", bearer(idp.token("bob")), 200, None),
        case("at the rate", "/v1/chat/completions", bearer(idp.token("bob")), 200, None),
        case("over the rate", "/v1/chat/completions", bearer(idp.token("bob")), 429, Some("rate_limited")),
    ]
}

/// The layer in front of an app that answers every path, from `Gate::from_config`.
async fn start_layer(config: &Config, audit: &AuditTail) -> String {
    let gate = Gate::from_config(config, &Registry::with_builtins()).unwrap().with_audit(audit.log.clone());
    let app = Router::new().fallback(any(who)).layer(AuthLayer::from_gate(gate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    format!("http://{addr}")
}

/// Who the layer let in, as `tokengate serve` says it: `X-Auth-Principal`, empty for nobody.
async fn who(MaybeAuthenticated(p): MaybeAuthenticated) -> ([(&'static str, String); 1], &'static str) {
    ([("x-auth-principal", p.map(|p| p.principal).unwrap_or_default())], "")
}

/// `tokengate serve` as the binary wires it, behind Envoy.
async fn start_serve(config: &Config, audit: &AuditTail) -> Running {
    let mut options = ServeOptions::from_config(config);
    options.proxy = Proxy::Envoy;
    options.audit = Some(audit.log.clone());
    serve_provider(config.build(&Registry::with_builtins()).unwrap(), options).await
}

async fn over_http(base: &str, case: &Case, audit: &AuditTail) -> Answer {
    let mut request = client().get(format!("{base}{}", case.path));
    if let Some(value) = &case.authorization {
        request = request.header("authorization", value);
    }
    let res = request.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = ANSWER_HEADERS.map(|name| (name, header(&res, name).map(|v| timeless(status, &v))));
    if status == 200 {
        let principal = header(&res, "x-auth-principal").filter(|p| !p.is_empty());
        return Answer { status, principal, code: None, reason: None, body: None, headers: Vec::new() };
    }
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    Answer {
        status,
        principal: None,
        code: body["error"]["code"].as_str().map(str::to_string),
        reason: audit.last_reason(),
        body: Some(timeless(status, &text)),
        headers: headers.to_vec(),
    }
}

async fn in_process(gate: &Gate, case: &Case) -> Answer {
    let mut headers = http::HeaderMap::new();
    if let Some(value) = &case.authorization {
        headers.insert("authorization", value.parse().unwrap());
    }
    let peer = Some(SocketAddr::from(([127, 0, 0, 1], 40000)));
    match gate.admit(&RequestParts::new("GET", case.path, &headers, peer)).await {
        Admission::Allowed { principal, .. } => Answer {
            status: 200,
            principal: principal.map(|p| p.principal),
            code: None,
            reason: None,
            body: None,
            headers: Vec::new(),
        },
        Admission::Refused(r) => {
            let status = r.status().as_u16();
            let answer = r.headers();
            let headers =
                ANSWER_HEADERS.map(|name| (name, answer.get(name).map(|v| timeless(status, v.to_str().unwrap()))));
            Answer {
                status,
                principal: None,
                code: Some(r.code().to_string()),
                reason: Some(r.reason().code().to_string()),
                body: Some(timeless(status, std::str::from_utf8(&r.body()).unwrap())),
                headers: headers.to_vec(),
            }
        }
    }
}

/// Runs `cases` through the three front ends and compares them case by case.
async fn same_answers_everywhere(config: &Config, cases: &[Case]) {
    let (layer_audit, serve_audit) = (AuditTail::new(), AuditTail::new());
    let layer = start_layer(config, &layer_audit).await;
    let served = start_serve(config, &serve_audit).await;
    let gate = Gate::from_config(config, &Registry::with_builtins()).unwrap();
    for case in cases {
        let through_layer = over_http(&layer, case, &layer_audit).await;
        let through_serve = over_http(&served.base, case, &serve_audit).await;
        let through_gate = in_process(&gate, case).await;
        let name = case.name;
        assert_eq!(
            (through_layer.status, through_layer.reason.as_deref(), through_layer.principal.as_deref()),
            (case.status, case.reason, case.principal()),
            "{name}: {through_layer:?}"
        );
        assert_eq!(through_layer, through_serve, "{name}: the layer and serve differ");
        assert_eq!(through_layer, through_gate, "{name}: the layer and Gate::admit differ");
    }
    served.shutdown().await;
}

#[tokio::test]
async fn the_layer_serve_and_gate_admit_answer_alike() {
    let idp = Idp::start().await;
    same_answers_everywhere(&config(&idp), &cases(&idp)).await;
}

#[tokio::test]
async fn an_unreachable_identity_provider_is_the_same_503_everywhere() {
    let idp = Idp::unreachable().await;
    let down = Case {
        name: "identity provider down",
        path: "/v1/models",
        authorization: Some(format!("Bearer {}", idp.token("alice"))),
        status: 503,
        reason: Some("upstream"),
    };
    same_answers_everywhere(&config(&idp), &[down]).await;
}
