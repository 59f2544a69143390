//! OGX conformance (issue #13): the cases of OGX's own auth tests, replayed
//! black-box against `tokengate serve` with OGX-shaped run.yaml files
//! (`server: {auth: {...}}`) and real stand-in servers on 127.0.0.1.
//!
//! Source: `llamastack/llama-stack` (now OGX) at `d1b66329`:
//! `tests/unit/server/test_auth.py`, `test_auth_github.py`,
//! `test_auth_upstream_header.py`, `test_route_auth.py`,
//! `test_auth_oauth2_introspection.py`, `test_auth_service_unavailable.py`,
//! the `server.auth` cases of `test_replace_env_vars.py` and
//! `scripts/integration-auth-tests.sh`, plus the `attribute_headers` and
//! escaped-dot cases of the unmerged PR #5756, which tokengate implements.
//! There is no `test_auth_local_api_key.py` and there are no tenancy tests in
//! OGX, so nothing here covers tokengate's `local_api_key` or tenancy.
//!
//! OGX's tests mount its middleware on an app with one route, `GET /test`; a
//! 200 from `tokengate serve` stands for "forwarded with the identity", and the
//! identity OGX puts in the ASGI scope is read from `X-Auth-Principal` and
//! `X-Auth-Attributes`. OGX's mock hosts (`mock-auth-service`, …) are stand-ins'
//! `127.0.0.1:port`, and Python exceptions its mocks raise are real failures
//! (a closed port, a server that never answers, one that answers garbage).
//!
//! Each module is one OGX file, each test one OGX test (or a table of small
//! ones), its doc comment naming them. Where tokengate deliberately answers
//! otherwise, the test asserts tokengate's answer and [`DIFFERENCES`] says why;
//! where the status is OGX's but `error.message` words it otherwise,
//! [`MESSAGE_WORDING`] says so and only the status is asserted. What looks
//! like a tokengate bug is in [`SUSPECTED_BUGS`], with an `#[ignore]`d test
//! asserting OGX's behaviour (`cargo test --test it ogx_conformance -- --ignored`).
//! Cases that call Python objects and have no HTTP equivalent are listed at the end.

use crate::fixtures::*;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Where tokengate deliberately behaves otherwise than OGX: (OGX test, what
/// tokengate does and why), for the README's OGX table.
pub const DIFFERENCES: &[(&str, &str)] = &[
    (
        "test_auth.py::test_valid_oauth2_authentication, test_oauth2_with_jwks_token_configured (HS256 JWT, `oct` key in the JWKS)",
        "401 `alg HS256 is a shared-secret algorithm, refused because this provider verifies with a public key set`; `oct` keys in a key set are skipped. A key set is public: a symmetric key served there lets anyone who can fetch it mint tokens, and the algorithm comes from the key, never the header. Replayed with ES256 tokens from a real issuer, which pass",
    ),
    (
        "test_auth.py::test_valid_oauth2_authentication (JWT without `exp`)",
        "401 `token has no exp claim; … unless the provider sets allow_missing_exp: true`; accepted with `allow_missing_exp: true`. A token that never expires outlives every key rotation and revocation window",
    ),
    (
        "every 401 for a missing or non-Bearer Authorization (test_missing_auth_header*, test_invalid_auth_header_format*, test_authenticated_endpoint_without_token, …)",
        "same status, a message that starts with OGX's (then `: ` and the reason), plus `WWW-Authenticate: Bearer realm=\"tokengate\"` (RFC 6750 §3; no `error` attribute when no Bearer credential was sent), and `error=\"invalid_token\"` with the reason on other 401s; OGX sends no challenge",
    ),
    (
        "test_auth.py::test_http_auth_service_error (the custom endpoint's call fails with a non-network error)",
        "503 (with Retry-After), not 401 `Authentication service error`: an endpoint that answers something that is not HTTP is broken, not a verdict on the token",
    ),
    (
        "test_auth.py::test_http_auth_request_payload (the custom endpoint answers 200 without `principal`)",
        "503, not 401 `Invalid authentication response format`: a 200 that does not fit the contract is a broken endpoint; it never lets the token in and never blames it (the request sent to the endpoint is OGX's, as asserted)",
    ),
    (
        "test_auth.py::test_invalid_introspection_authentication (introspection answers 200 with a body that is not JSON)",
        "503, not 401: a garbage answer is an identity-provider outage, not an invalid token",
    ),
    (
        "test_auth.py::test_failed_introspection_authentication (introspection answers 500)",
        "503, not 401 `Token introspection failed: 500`: a 5xx is an outage; clients retry instead of dropping a good token",
    ),
    (
        "test_auth.py::test_kubernetes_auth_http_error (SelfSubjectReview answers 500)",
        "503, not 401 `Token validation failed: 500`: a 5xx is an outage",
    ),
    (
        "test_auth.py::test_kubernetes_auth_request_payload (SelfSubjectReview answers 200 instead of 201)",
        "200, the user info accepted: tokengate takes 200 and 201 alike as the API server's answer to the create, OGX only 201 (`Token validation failed: 200`); the request sent is OGX's, as asserted. Not documented in the README",
    ),
    (
        "test_replace_env_vars.py::test_auth_provider_disabled_when_type_not_set, test_auth_provider_disabled_when_type_is_empty, test_auth_provider_with_complex_config unset (`type` expands to nothing, `route_policy: []` or none)",
        "a config error at start-up (`authentication is off (its `type` expands to nothing) and no route_policy refuses anything`), where OGX runs with authentication off and lets every request in; with a route_policy that refuses something it runs without a provider as OGX does. An auth gateway that lets everything in is surely a mistake (a variable not set)",
    ),
    (
        "test_replace_env_vars.py::test_auth_provider_enabled_when_type_is_set, test_auth_provider_with_hardcoded_type (`oauth2_token` with `issuer` and neither `jwks` nor `introspection`)",
        "loads, and finds the key set by OIDC discovery of `issuer`; OGX's StackConfig refuses it at start-up (`One of jwks or introspection must be configured`)",
    ),
    (
        "test_auth_github.py::test_authenticated_endpoint_with_valid_github_token, test_github_enterprise_support, test_github_token_fetches_paginated_orgs (the requests GitHub sees)",
        "the first organizations page is `/user/orgs?per_page=100` (no `page=1`), the next ones `…&page=N`; headers `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`, `User-Agent: tokengate` (OGX: `application/vnd.github.v3+json`, `ogx`). Same answers from GitHub",
    ),
    (
        "test_auth_github.py::test_github_token_handles_org_fetch_failure (`/user/orgs` answers 403)",
        "the token is accepted, but `teams` is unknown (left out of the attributes, named in `X-Auth-Unknown-Attributes`), not `[]`: route conditions on it fail closed, so a token without `read:org` cannot escape a forbid on teams",
    ),
    (
        "test_auth_github.py (every test whose `/user/orgs` answers 200: OGX's stand-in sends no `X-OAuth-Scopes`)",
        "organizations are known only when GitHub's `X-OAuth-Scopes` proves the list whole (`read:org`, `write:org`, `admin:org` or `user`): fine-grained and GitHub App user tokens, which carry no scopes, list only the organizations they were granted, so a contractor's token could leave `contractors` out. The replays send `X-OAuth-Scopes: read:org` on `/user/orgs`, as GitHub answers a classic token with that scope; without it `teams` is unknown, unless the config sets `accept_partial_memberships: true` (OGX's reading)",
    ),
    (
        "test_auth_github.py::test_github_token_preserves_partial_orgs_if_later_page_fails (page 2 answers 503)",
        "503, not success with the first 100 organizations: a partial membership list could let a user escape a forbid on an organization listed later",
    ),
    (
        "test_auth_upstream_header.py (every test: OGX's config has no `trusted_proxy_cidrs`)",
        "`trusted_proxy_cidrs` is required, so OGX's config as written does not load (`missing field trusted_proxy_cidrs`); the replays add `[127.0.0.1]`. Headers from any other peer are ignored and the request refused with 403: OGX believes the headers from anyone who can reach it",
    ),
    (
        "test_auth_upstream_header.py (untested rule: a repeated header, last value wins)",
        "400 `invalid_request`: a proxy that appends its value to a client's own `x-auth-user-id` would otherwise let the client choose who it is",
    ),
    (
        "PR #5756 test_attribute_headers_merged_with_attributes_header",
        "values of `attribute_headers` come before those of `attributes_header` within an attribute, and repeated values are kept once (OGX: the JSON blob's first, duplicates kept); the test checks membership only",
    ),
    (
        "test_route_auth.py::test_invalid_regex_pattern_logs_warning",
        "an invalid `regex:` path is a config error naming the rule; OGX logs a warning and the rule never matches. A policy that silently lost a rule is not what was written",
    ),
    (
        "test_route_auth.py::test_websocket_passthrough",
        "a WebSocket handshake is an HTTP request to a gateway and is judged like any other (403 here); OGX's middleware passes `websocket` scopes through unchecked",
    ),
    (
        "test_route_auth.py (rule OGX does not test: without a user, a rule with `when`/`unless` never matches, forbid rules included)",
        "without a user a conditioned forbid refuses (403), where OGX skips it and a later rule may let the anonymous request in: a forbid whose condition cannot be evaluated refuses, as conditions on unknown attributes do",
    ),
    (
        "test_route_auth.py (route policy applies to public routes) with a provider configured",
        "`GET /v1/health` and `/v1/version` are open paths in a run.yaml: with a provider, they are answered 200 without authentication and without route_policy, where OGX would refuse them (403) when no rule permits them; without a provider, route_policy judges them as in OGX",
    ),
    (
        "test_auth.py::test_valid_http_authentication (a principal with a control character, e.g. from the custom endpoint)",
        "401 `the principal has control characters`: it would forge log lines and header boundaries in whatever reads it next; OGX uses any string",
    ),
    (
        "test_auth.py::test_get_attributes_from_claims (OGX splits every string claim on whitespace)",
        "only `scope` and `scp` are split (and claims marked `{attribute, split: true}`): `username: \"mallory admin\"` is the one role `mallory admin`, never `admin`, since the default mapping puts identifiers into roles",
    ),
    (
        "test_auth_upstream_header.py (untested rule: a value that is neither a string nor a list becomes `[str(v)]`)",
        "numbers and booleans become their JSON text (`3` → `3`, `true` → `true`, not Python's `True`); `null`, objects and nested lists are refused with 401 rather than turned into Python reprs (`None`, `{'a': 1}`)",
    ),
    (
        "every 503 (test_auth_service_unavailable.py, test_oauth2_with_jwks_token_expected, test_introspection_uses_verify_true_by_default)",
        "503 as OGX, plus `Retry-After`; the body's message is tokengate's (see MESSAGE_WORDING) and the failure's detail stays in the log, since it names internal services",
    ),
];

/// What looks like a tokengate bug rather than a choice: (OGX behaviour,
/// what tokengate does, the `#[ignore]`d test that asserts OGX's behaviour).
pub const SUSPECTED_BUGS: &[(&str, &str, &str)] = &[];

/// Same status as OGX, other words in `error.message`: (OGX test, OGX's
/// message, what tokengate's says). These tests assert the status only.
pub const MESSAGE_WORDING: &[(&str, &str, &str)] = &[
    (
        "test_invalid_auth_header_format (custom, oauth2, introspection, kubernetes), test_authenticated_endpoint_with_invalid_bearer_format (GitHub)",
        "Invalid Authorization header format",
        "the provider's `Authentication required. …` message, then `: the Authorization header does not carry a Bearer token`",
    ),
    (
        "test_invalid_oauth2_authentication, test_bad_token_still_returns_401, test_jwks_missing_kid_still_returns_401",
        "Invalid JWT token",
        "`Authentication required. Please provide a valid OAuth2 Bearer token …: ` and the reason (`malformed JWT: …`, `unknown key id \"unknown-kid\"`)",
    ),
    ("test_inactive_introspection_authentication", "Token not active", "`…: token is not active`"),
    (
        "test_invalid_kubernetes_auth_authentication",
        "Invalid token",
        "`…: the Kubernetes API server did not accept the token (401: Unauthorized)`",
    ),
    (
        "test_authenticated_endpoint_with_invalid_github_token",
        "GitHub token validation failed. Please check your token and try again.",
        "GitHub's token-docs message, then `: GitHub rejected the token (401 Bad credentials)`",
    ),
    (
        "test_missing_principal_header, test_provider_validate_token_missing_principal",
        "Missing required authentication header: x-auth-user-id",
        "`Authentication required. This service trusts the identity its authenticating proxy asserts in the `x-auth-user-id` header; …: trusted proxy 127.0.0.1 sent no x-auth-user-id header …` (the header name is there, as test_error_message_includes_header_name asserts)",
    ),
    (
        "test_invalid_attributes_json, test_attributes_not_object",
        "Failed to parse authentication attributes header: invalid JSON / expected JSON object",
        "`…: the x-auth-attributes header is not a JSON object of attribute lists or strings`",
    ),
    (
        "every route_policy 403 in test_route_auth.py",
        "Access denied: insufficient permissions for route <path>",
        "`The token does not grant access to this resource: route GET <path> …` (the path is there), with `WWW-Authenticate: Bearer …, error=\"insufficient_scope\"`",
    ),
    (
        "every 503 in test_auth_service_unavailable.py",
        "Authentication service unavailable",
        "`The identity service is temporarily unavailable; retry later`",
    ),
];

/// The two tables stay readable: every entry names an OGX test and says something.
#[test]
fn difference_tables_are_complete() {
    for (test, what) in DIFFERENCES {
        assert!(test.contains("test_") || test.contains(".py"), "{test}");
        assert!(what.len() > 20, "{test}: {what}");
    }
    for (ogx, ours, test) in SUSPECTED_BUGS {
        assert!(!ogx.is_empty() && !ours.is_empty() && test.contains("::"), "{test}");
    }
    for (test, ogx, ours) in MESSAGE_WORDING {
        assert!(test.contains("test_"), "{test}");
        assert!(!ogx.is_empty() && !ours.is_empty(), "{test}");
    }
}

// ------------------------------------------------------------------ harness

/// A whole OGX run.yaml whose `server.auth` is `auth` (written as at column
/// 0); the rest is OGX's and is ignored (its `${env.…}` included).
fn run_yaml(auth: &str) -> String {
    let mut out = String::from(
        "version: 2\nimage_name: ogx-conformance\napis: [inference]\nproviders:\n  inference:\n  - provider_id: ollama\n    provider_type: remote::ollama\n    config: {url: \"${env.OLLAMA_URL:=http://localhost:11434}\"}\nserver:\n  port: 8321\n  auth:\n",
    );
    for line in auth.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `tokengate serve` for a run.yaml, as the binary wires it.
struct Ogx {
    base: String,
    running: Option<Running>,
    dir: tempfile::TempDir,
}

impl Ogx {
    async fn start(auth: &str) -> Ogx {
        Ogx::start_in(tempfile::tempdir().unwrap(), auth).await
    }

    async fn start_in(dir: tempfile::TempDir, auth: &str) -> Ogx {
        let config = load(&write(dir.path(), "run.yaml", &run_yaml(auth)));
        let running = serve_config(&config).await;
        Ogx { base: running.base.clone(), running: Some(running), dir }
    }

    /// The run.yaml's path (for `tokengate check` and the layer).
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("run.yaml")
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        ask(&self.base, reqwest::Method::GET, path, headers).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        ask(&self.base, method, path, headers).await
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// A response, read whole.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }

    /// The body's `error.message`.
    fn message(&self) -> String {
        match self.body["error"]["message"].as_str() {
            Some(m) => m.to_string(),
            None => panic!("no error.message in {}", self.body),
        }
    }

    fn principal(&self) -> String {
        self.header("x-auth-principal")
            .unwrap_or_else(|| panic!("no X-Auth-Principal ({}): {}", self.status, self.body))
    }

    /// `X-Auth-Attributes`, as attribute → values in order.
    fn attributes(&self) -> BTreeMap<String, Vec<String>> {
        let text = self.header("x-auth-attributes").unwrap_or_else(|| panic!("no X-Auth-Attributes: {}", self.body));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("X-Auth-Attributes {text}: {e}"))
    }

    /// The attributes with each value list as a set.
    fn attribute_sets(&self) -> BTreeMap<String, BTreeSet<String>> {
        sets(&self.attributes())
    }
}

fn sets(attributes: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, BTreeSet<String>> {
    attributes.iter().map(|(k, v)| (k.clone(), v.iter().cloned().collect())).collect()
}

/// `{"attr": ["a", "b"]}` as [`Answer::attribute_sets`] gives it.
fn expect_sets(value: Value) -> BTreeMap<String, BTreeSet<String>> {
    let map: BTreeMap<String, Vec<String>> = serde_json::from_value(value).unwrap();
    sets(&map)
}

fn expect_attrs(value: Value) -> BTreeMap<String, Vec<String>> {
    serde_json::from_value(value).unwrap()
}

async fn ask(base: &str, method: reqwest::Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = client().request(method, format!("{base}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, headers, body }
}

/// Request headers of a table row.
type Headers = &'static [(&'static str, &'static str)];

/// OGX's `Authorization: InvalidFormat token123`.
const INVALID_FORMAT: (&str, &str) = ("authorization", "InvalidFormat token123");

/// The challenge a request without a Bearer credential gets (RFC 6750 §3.1).
const BARE_CHALLENGE: &str = "Bearer realm=\"tokengate\"";

fn assert_bare_challenge(a: &Answer) {
    assert_eq!(a.header("www-authenticate").as_deref(), Some(BARE_CHALLENGE), "{}", a.body);
}

/// Asserts a 503 as tokengate words it (see [`DIFFERENCES`]).
fn assert_unavailable(a: &Answer, case: &str) {
    assert_eq!(a.status, 503, "{case}: {}", a.body);
    assert!(a.header("retry-after").is_some(), "{case}: a 503 says when to retry");
    assert_eq!(a.message(), "The identity service is temporarily unavailable; retry later", "{case}");
}

/// A TCP server on 127.0.0.1 for failures HTTP stand-ins cannot play:
/// `Some(bytes)` answers every connection with them and closes it, `None`
/// accepts and never answers.
struct RawServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RawServer {
    async fn start(reply: Option<&'static [u8]>) -> RawServer {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                match reply {
                    Some(bytes) => {
                        let _ = stream.write_all(bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    None => held.push(stream),
                }
            }
        });
        RawServer { addr, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL on 127.0.0.1 where nothing listens (connection refused).
async fn closed_url(path: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}{path}")
}

/// OGX's "valid JWT" claims (test_auth.py `jwt_token_valid`): no `iss`, no `exp`.
fn ogx_claims() -> Value {
    json!({"sub": "my-user", "groups": ["group1", "group2"], "scope": "foo bar", "aud": "ogx"})
}

/// OGX's token itself: HS256 with key `foobarbaz`, kid `1234567890`.
fn ogx_hs256_token() -> String {
    hmac_token("HS256", b"foobarbaz", r#"{"alg":"HS256","typ":"JWT","kid":"1234567890"}"#, &ogx_claims())
}

/// OGX's JWKS stand-in: the HS256 secret as an `oct` key.
fn ogx_oct_jwks() -> Value {
    json!({"keys": [{"kid": "1234567890", "kty": "oct", "alg": "HS256", "use": "sig", "k": "Zm9vYmFyYmF6"}]})
}

/// `claims` signed ES256 by the real issuer `idp` (which adds `iss`, `exp`, `iat`, `nbf` unless given).
fn idp_token(idp: &Idp, claims: &Value) -> String {
    let map: Map<String, Value> = claims.as_object().cloned().unwrap();
    let sub = map.get("sub").and_then(Value::as_str).unwrap_or("my-user").to_string();
    idp.issuer.mint(&sub, &map, Duration::from_secs(600)).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ------------------------------------------------------------------ test_auth.py

/// `tests/unit/server/test_auth.py`: custom, oauth2_token (JWKS and
/// introspection), kubernetes, claims mapping and public routes.
mod test_auth {
    use super::*;

    // ---------------------------------------------------------- custom

    fn custom_success() -> Value {
        json!({
            "message": "Authentication successful",
            "principal": "test-principal",
            "attributes": {
                "roles": ["admin", "user"],
                "teams": ["ml-team", "nlp-team"],
                "projects": ["llama-3", "project-x"],
                "namespaces": ["research", "production"],
            },
        })
    }

    fn custom_auth(endpoint: &str) -> String {
        format!("provider_config:\n  type: custom\n  endpoint: {endpoint}\naccess_policy: []\n")
    }

    async fn custom_gate(reply: Reply) -> (Server, Ogx) {
        let endpoint = Server::start().await;
        endpoint.route("/validate", reply);
        let ogx = Ogx::start(&custom_auth(&endpoint.url("/validate"))).await;
        (endpoint, ogx)
    }

    /// `test_missing_auth_header`: no Authorization, the endpoint is not asked;
    /// 401 with OGX's message word for word (the host is the stand-in's).
    #[tokio::test]
    async fn custom_missing_auth_header() {
        let (endpoint, ogx) = custom_gate(Reply::Json(200, custom_success())).await;
        let a = ogx.get("/test", &[]).await;
        assert_eq!(a.status, 401);
        let message = a.message();
        let ogx_text = format!(
            "Authentication required. Please provide your API key as a Bearer token (validated by {})",
            endpoint.addr
        );
        assert!(message.starts_with(&ogx_text), "{message}");
        assert!(
            message.contains("Authentication required") && message.contains(&format!("validated by {}", endpoint.addr))
        );
        assert_bare_challenge(&a);
        assert!(endpoint.seen().is_empty());
        ogx.stop().await;
    }

    /// `test_invalid_auth_header_format`: 401 (message: see MESSAGE_WORDING), the endpoint is not asked.
    #[tokio::test]
    async fn custom_invalid_auth_header_format() {
        let (endpoint, ogx) = custom_gate(Reply::Json(200, custom_success())).await;
        let a = ogx.get("/test", &[INVALID_FORMAT]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_bare_challenge(&a);
        assert!(endpoint.seen().is_empty());
        ogx.stop().await;
    }

    /// `test_valid_http_authentication`: 200, principal and attributes as the endpoint said.
    #[tokio::test]
    async fn custom_valid_http_authentication() {
        let (_endpoint, ogx) = custom_gate(Reply::Json(200, custom_success())).await;
        let a = ogx.get("/test", &[("authorization", "Bearer valid_api_key_12345")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "test-principal");
        assert_eq!(a.attributes(), expect_attrs(custom_success()["attributes"].clone()));
        ogx.stop().await;
    }

    /// `test_valid_http_authentication` with a principal holding a control
    /// character: refused (see DIFFERENCES).
    #[tokio::test]
    async fn custom_principal_with_control_characters_is_refused() {
        let reply = json!({"principal": "alice\nadmin", "attributes": {"roles": ["admin"]}});
        let (_endpoint, ogx) = custom_gate(Reply::Json(200, reply)).await;
        let a = ogx.get("/test", &[("authorization", "Bearer valid_api_key_12345")]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.message().contains("the principal has control characters"), "{}", a.message());
        ogx.stop().await;
    }

    /// `test_invalid_http_authentication`: the endpoint answers 401
    /// `{"message": "Authentication failed"}`; 401 whose message contains it.
    #[tokio::test]
    async fn custom_invalid_http_authentication() {
        let (_endpoint, ogx) = custom_gate(Reply::Json(401, json!({"message": "Authentication failed"}))).await;
        let a = ogx.get("/test", &[("authorization", "Bearer invalid_api_key_67890")]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.message().contains("Authentication failed"), "{}", a.message());
        ogx.stop().await;
    }

    /// `test_http_auth_service_error`: the call fails with something that is
    /// not a network error (here: the endpoint answers bytes that are not
    /// HTTP). 503, not OGX's 401 (see DIFFERENCES).
    #[tokio::test]
    async fn custom_http_auth_service_error() {
        let garbage = RawServer::start(Some(b"this is not HTTP\r\n\r\n")).await;
        let ogx = Ogx::start(&custom_auth(&garbage.url("/validate"))).await;
        let a = ogx.get("/test", &[("authorization", "Bearer valid_api_key_12345")]).await;
        assert_unavailable(&a, "test_http_auth_service_error");
        ogx.stop().await;
    }

    /// `test_http_auth_request_payload`: what the endpoint is sent — the key,
    /// the path, the headers without Authorization, the query as lists. The
    /// endpoint's reply lacks `principal`: 503 here, 401 in OGX (not asserted
    /// there; see DIFFERENCES).
    #[tokio::test]
    async fn custom_http_auth_request_payload() {
        let (endpoint, ogx) = custom_gate(Reply::Json(200, json!({"message": "Authentication successful"}))).await;
        let headers = [
            ("authorization", "Bearer valid_api_key_12345"),
            ("user-agent", "TestClient"),
            ("content-type", "application/json"),
        ];
        let a = ogx.get("/test?param1=value1&param2=value2", &headers).await;
        assert_eq!(a.status, 503, "{}", a.body);

        let seen = endpoint.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].target, "/validate");
        let body: Value = serde_json::from_str(&seen[0].body).unwrap();
        assert_eq!(body["api_key"], "valid_api_key_12345");
        assert_eq!(body["request"]["path"], "/test");
        let sent = body["request"]["headers"].as_object().unwrap();
        assert!(!sent.contains_key("authorization"), "{sent:?}");
        assert!(sent.keys().all(|k| *k == k.to_lowercase()), "header names are lower-case: {sent:?}");
        assert_eq!(sent["user-agent"], "TestClient");
        assert_eq!(sent["content-type"], "application/json");
        assert_eq!(body["request"]["params"], json!({"param1": ["value1"], "param2": ["value2"]}));
        ogx.stop().await;
    }

    /// `test_http_middleware_with_access_attributes` ([internal] in OGX, an
    /// ASGI scope): over HTTP, the forwarded identity carries exactly the
    /// endpoint's attributes.
    #[tokio::test]
    async fn custom_http_middleware_with_access_attributes() {
        let (endpoint, ogx) = custom_gate(Reply::Json(200, custom_success())).await;
        let headers = [
            ("content-type", "application/json"),
            ("authorization", "Bearer test.jwt.token"),
            ("user-agent", "test-user-agent"),
        ];
        let a = ogx.get("/models/list?limit=100&offset=0", &headers).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.attributes(), expect_attrs(custom_success()["attributes"].clone()));
        assert_eq!(endpoint.seen().len(), 1, "the endpoint is asked once");
        ogx.stop().await;
    }

    // ---------------------------------------------------------- oauth2_token, JWKS

    fn jwks_auth(jwks_uri: &str, extra: &str) -> String {
        format!("provider_config:\n  type: oauth2_token\n  audience: ogx\n  jwks:\n    uri: {jwks_uri}\n{extra}")
    }

    /// `test_missing_auth_header_oauth2`: 401 with OGX's full message (no issuer, no introspection).
    #[tokio::test]
    async fn oauth2_missing_auth_header() {
        let idp = Idp::start().await;
        let ogx = Ogx::start(&jwks_auth(&idp.issuer.jwks_uri(), "")).await;
        let a = ogx.get("/test", &[]).await;
        assert_eq!(a.status, 401);
        let message = a.message();
        assert!(
            message.starts_with(
                "Authentication required. Please provide a valid OAuth2 Bearer token in the Authorization header"
            ),
            "{message}"
        );
        assert!(message.contains("OAuth2 Bearer token"));
        assert_bare_challenge(&a);
        ogx.stop().await;
    }

    /// `test_invalid_auth_header_format_oauth2`: 401 (message: see MESSAGE_WORDING).
    #[tokio::test]
    async fn oauth2_invalid_auth_header_format() {
        let idp = Idp::start().await;
        let ogx = Ogx::start(&jwks_auth(&idp.issuer.jwks_uri(), "")).await;
        let a = ogx.get("/test", &[INVALID_FORMAT]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_bare_challenge(&a);
        ogx.stop().await;
    }

    /// `test_valid_oauth2_authentication`: OGX's claims, signed ES256 by a real
    /// issuer (which adds `iss` and `exp`): 200 as `my-user` with the default
    /// mapping's attributes, through `serve` and the tower layer alike.
    #[tokio::test]
    async fn oauth2_valid_authentication() {
        let idp = Idp::start().await;
        let ogx = Ogx::start(&jwks_auth(&idp.issuer.jwks_uri(), "")).await;
        let token = idp_token(&idp, &ogx_claims());
        let a = ogx.get("/test", &[("authorization", &bearer(&token))]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "my-user");
        assert_eq!(a.attributes(), expect_attrs(json!({"roles": ["my-user"], "teams": ["group1", "group2"]})));

        let base = serve_layer(&load(&ogx.path())).await;
        let body = json(client().get(format!("{base}/test")).bearer_auth(&token).send().await.unwrap()).await;
        assert_eq!(body["principal"], "my-user", "{body}");
        assert_eq!(body["attributes"]["teams"], json!(["group1", "group2"]));
        ogx.stop().await;
    }

    /// `test_valid_oauth2_authentication` with OGX's own token: HS256 against
    /// an `oct` key served by the JWKS (refused), and the same claims without
    /// `exp` signed ES256 (refused unless `allow_missing_exp`). See DIFFERENCES.
    #[tokio::test]
    async fn oauth2_ogx_token_as_written_is_refused() {
        let jwks = Server::start().await;
        jwks.route("/token/introspect", Reply::Json(200, ogx_oct_jwks()));
        let ogx = Ogx::start(&jwks_auth(&jwks.url("/token/introspect"), "")).await;
        let a = ogx.get("/test", &[("authorization", &bearer(&ogx_hs256_token()))]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.message().contains("alg HS256 is a shared-secret algorithm"), "{}", a.message());
        ogx.stop().await;

        let keys = Server::jwks().await;
        let no_exp = token(&KEYS.ec, "ec-1", &ogx_claims());
        let ogx = Ogx::start(&jwks_auth(&keys.url("/jwks"), "")).await;
        let a = ogx.get("/test", &[("authorization", &bearer(&no_exp))]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.message().contains("allow_missing_exp: true"), "{}", a.message());
        ogx.stop().await;

        let ogx = Ogx::start(&jwks_auth(&keys.url("/jwks"), "  allow_missing_exp: true\n")).await;
        let a = ogx.get("/test", &[("authorization", &bearer(&no_exp))]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "my-user");
        ogx.stop().await;
    }

    /// `test_invalid_oauth2_authentication`: `invalid.jwt.token` is 401 (message: see MESSAGE_WORDING).
    #[tokio::test]
    async fn oauth2_invalid_authentication() {
        let idp = Idp::start().await;
        let ogx = Ogx::start(&jwks_auth(&idp.issuer.jwks_uri(), "")).await;
        let a = ogx.get("/test", &[("authorization", "Bearer invalid.jwt.token")]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        ogx.stop().await;
    }

    /// `test_oauth2_with_jwks_token_expected`: the JWKS endpoint wants a bearer
    /// token the config does not send and answers 401: the key set is
    /// unavailable, 503.
    #[tokio::test]
    async fn oauth2_with_jwks_token_expected() {
        let idp = Idp::start().await;
        let jwks = Server::start().await;
        jwks.route("/token/introspect", Reply::Json(401, json!({"message": "Unauthorized"})));
        let ogx = Ogx::start(&jwks_auth(&jwks.url("/token/introspect"), "")).await;
        let a = ogx.get("/test", &[("authorization", &bearer(&idp_token(&idp, &ogx_claims())))]).await;
        assert_unavailable(&a, "test_oauth2_with_jwks_token_expected");
        assert!(jwks.seen().iter().all(|s| !s.headers.iter().any(|(k, _)| k == "authorization")));
        ogx.stop().await;
    }

    /// `test_oauth2_with_jwks_token_configured`: `jwks.token` and
    /// `key_recheck_period`: 200, and the key set was fetched with the token.
    #[tokio::test]
    async fn oauth2_with_jwks_token_configured() {
        let idp = Idp::start().await;
        let jwks = Server::start().await;
        jwks.route("/token/introspect", Reply::Json(200, idp.issuer.jwks()));
        let extra = "    token: my-jwks-token\n    key_recheck_period: 3600\n";
        let ogx = Ogx::start(&jwks_auth(&jwks.url("/token/introspect"), extra)).await;
        let a = ogx.get("/test", &[("authorization", &bearer(&idp_token(&idp, &ogx_claims())))]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let seen = jwks.seen();
        assert!(!seen.is_empty());
        for s in &seen {
            assert!(s.headers.contains(&("authorization".into(), "Bearer my-jwks-token".into())), "{:?}", s.headers);
        }
        ogx.stop().await;
    }

    // ---------------------------------------------------------- claims mapping

    /// `test_get_attributes_from_claims` ([internal] in OGX, a pure function),
    /// every sub-case over HTTP: the claims in a JWT from a real issuer, the
    /// mapping in the run.yaml, the attributes from `X-Auth-Attributes`
    /// (compared as sets, as OGX's test does). The three escaped-dot cases are
    /// PR #5756's. Every JWT carries `aud: ogx` and a `sub` (tokengate and
    /// OGX both need them to authenticate at all).
    #[tokio::test]
    async fn get_attributes_from_claims() {
        let idp = Idp::start().await;
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "{sub: roles, groups: teams}",
                json!({"sub": "my-user", "groups": ["group1", "group2"], "scope": "foo bar"}),
                json!({"roles": ["my-user"], "teams": ["group1", "group2"]}),
            ),
            (
                "{sub: roles, tenant: namespaces}",
                json!({"sub": "my-user", "tenant": "my-tenant"}),
                json!({"roles": ["my-user"], "namespaces": ["my-tenant"]}),
            ),
            (
                "{sub: roles, tenant: namespaces, username: roles, team: teams, groups: teams}",
                json!({"sub": "my-user", "username": "my-username", "tenant": "my-tenant",
                       "groups": ["group1", "group2"], "team": "my-team"}),
                json!({"roles": ["my-user", "my-username"], "teams": ["my-team", "group1", "group2"],
                       "namespaces": ["my-tenant"]}),
            ),
            (
                "{resource_access.ogx.roles: roles, realm_access.roles: realm_roles}",
                json!({"sub": "user123",
                       "resource_access": {"ogx": {"roles": ["inference_max", "admin"]},
                                           "other-client": {"roles": ["viewer"]}},
                       "realm_access": {"roles": ["offline_access", "uma_authorization"]}}),
                json!({"roles": ["inference_max", "admin"], "realm_roles": ["offline_access", "uma_authorization"]}),
            ),
            (
                "{my.dotted.key: test}",
                json!({"my.dotted.key": "literal-value", "my": {"dotted": {"key": "nested-value"}}}),
                json!({"test": ["nested-value"]}),
            ),
            ("{my.dotted.key: test}", json!({"my.dotted.key": "literal-value"}), json!({"test": ["literal-value"]})),
            (
                "{resource_access.ogx.roles: roles, resource_access.missing.key: missing_attr, completely.missing.path: another_missing, sub: username}",
                json!({"sub": "user123", "resource_access": {"other-client": {"roles": ["viewer"]}}}),
                json!({"username": ["user123"]}),
            ),
            (
                "{sub: user_id, scope: permissions, groups: teams, resource_access.app1.roles: app1_roles, resource_access.app2.roles: app2_roles, metadata.tenant: tenant, metadata.region: region}",
                json!({"sub": "user456", "flat_key": "flat-value", "scope": "read write admin",
                       "resource_access": {"app1": {"roles": ["role1", "role2"]}, "app2": {"roles": ["role3"]}},
                       "groups": ["group1", "group2"], "metadata": {"tenant": "tenant1", "region": "us-west"}}),
                json!({"user_id": ["user456"], "permissions": ["read", "write", "admin"], "teams": ["group1", "group2"],
                       "app1_roles": ["role1", "role2"], "app2_roles": ["role3"], "tenant": ["tenant1"],
                       "region": ["us-west"]}),
            ),
            // PR #5756: `\.` is a literal dot.
            (
                "{'kubernetes\\.io.serviceaccount.name': teams, sub: principal}",
                json!({"kubernetes.io": {"namespace": "ogx", "serviceaccount": {"name": "tenant-a", "uid": "abc-123"}},
                       "sub": "system:serviceaccount:ogx:tenant-a"}),
                json!({"teams": ["tenant-a"], "principal": ["system:serviceaccount:ogx:tenant-a"]}),
            ),
            (
                "{'my\\.dotted\\.key': test}",
                json!({"my.dotted.key": "literal-value"}),
                json!({"test": ["literal-value"]}),
            ),
            (
                "{'resource\\.access.ogx.roles': roles}",
                json!({"resource.access": {"ogx": {"roles": ["admin", "user"]}}}),
                json!({"roles": ["admin", "user"]}),
            ),
        ];
        for (mapping, claims, expected) in cases {
            let ogx = Ogx::start(&jwks_auth(&idp.issuer.jwks_uri(), &format!("  claims_mapping: {mapping}\n"))).await;
            let mut claims = claims;
            claims["aud"] = json!("ogx");
            if claims.get("sub").is_none() {
                claims["sub"] = json!("my-user");
            }
            let a = ogx.get("/test", &[("authorization", &bearer(&idp_token(&idp, &claims)))]).await;
            assert_eq!(a.status, 200, "{mapping}: {}", a.body);
            assert_eq!(a.attribute_sets(), expect_sets(expected), "{mapping}");
            ogx.stop().await;
        }

        // OGX splits every string claim on whitespace (`claim.split()`); tokengate
        // only `scope`/`scp` (see DIFFERENCES).
        let ogx =
            Ogx::start(&jwks_auth(&idp.issuer.jwks_uri(), "  claims_mapping: {username: roles, scope: scopes}\n"))
                .await;
        let claims = json!({"sub": "u", "aud": "ogx", "username": "mallory admin", "scope": "read write"});
        let a = ogx.get("/test", &[("authorization", &bearer(&idp_token(&idp, &claims)))]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.attributes(), expect_attrs(json!({"roles": ["mallory admin"], "scopes": ["read", "write"]})));
        ogx.stop().await;
    }

    // ---------------------------------------------------------- oauth2_token, introspection

    fn introspection_auth(url: &str, extra: &str) -> String {
        format!(
            "provider_config:\n  type: oauth2_token\n  introspection:\n    url: {url}\n    client_id: myclient\n    client_secret: abcdefg\n{extra}"
        )
    }

    fn active_reply() -> Value {
        json!({"active": true, "sub": "my-user", "groups": ["group1", "group2"], "scope": "foo bar", "aud": ["set1", "set2"]})
    }

    async fn introspection_gate(reply: Reply, extra: &str) -> (Server, Ogx) {
        let idp = Server::start().await;
        idp.route("/token/introspect", reply);
        let ogx = Ogx::start(&introspection_auth(&idp.url("/token/introspect"), extra)).await;
        (idp, ogx)
    }

    /// `test_missing_auth_header_introspection`: 401 with OGX's full message.
    #[tokio::test]
    async fn introspection_missing_auth_header() {
        let (idp, ogx) = introspection_gate(Reply::Json(200, active_reply()), "").await;
        let a = ogx.get("/test", &[]).await;
        assert_eq!(a.status, 401);
        let ogx_text =
            format!("Authentication required. Please provide a valid OAuth2 Bearer token validated by {}", idp.addr);
        assert!(a.message().starts_with(&ogx_text), "{}", a.message());
        assert_bare_challenge(&a);
        assert!(idp.seen().is_empty());
        ogx.stop().await;
    }

    /// `test_invalid_auth_header_format_introspection`: 401 (message: see MESSAGE_WORDING).
    #[tokio::test]
    async fn introspection_invalid_auth_header_format() {
        let (idp, ogx) = introspection_gate(Reply::Json(200, active_reply()), "").await;
        let a = ogx.get("/test", &[INVALID_FORMAT]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(idp.seen().is_empty());
        ogx.stop().await;
    }

    /// `test_valid_introspection_authentication`: 200 as `my-user`, the default
    /// mapping's attributes; the token went as a form, the client by HTTP Basic.
    #[tokio::test]
    async fn introspection_valid_authentication() {
        let (idp, ogx) = introspection_gate(Reply::Json(200, active_reply()), "").await;
        let a = ogx.get("/test", &[("authorization", "Bearer valid_api_key_12345")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "my-user");
        assert_eq!(a.attributes(), expect_attrs(json!({"roles": ["my-user"], "teams": ["group1", "group2"]})));
        let seen = idp.seen();
        assert_eq!(seen.len(), 1);
        let form: Vec<(String, String)> = url::form_urlencoded::parse(seen[0].body.as_bytes()).into_owned().collect();
        assert!(form.contains(&("token".into(), "valid_api_key_12345".into())), "{form:?}");
        // base64("myclient:abcdefg")
        assert!(seen[0].headers.contains(&("authorization".into(), "Basic bXljbGllbnQ6YWJjZGVmZw==".into())));
        ogx.stop().await;
    }

    /// `test_inactive_introspection_authentication`: `{"active": false}` is 401 (message: see MESSAGE_WORDING).
    #[tokio::test]
    async fn introspection_inactive_authentication() {
        let (_idp, ogx) = introspection_gate(Reply::Json(200, json!({"active": false})), "").await;
        let a = ogx.get("/test", &[("authorization", "Bearer invalid_api_key_67890")]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.message().contains("token is not active"), "{}", a.message());
        ogx.stop().await;
    }

    /// `test_invalid_introspection_authentication`: a 200 whose body is not
    /// JSON. 503 here, 401 in OGX (see DIFFERENCES).
    #[tokio::test]
    async fn introspection_invalid_authentication() {
        let reply = Reply::Raw { status: 200, body: b"Not JSON".to_vec(), chunked: false };
        let (_idp, ogx) = introspection_gate(reply, "").await;
        let a = ogx.get("/test", &[("authorization", "Bearer invalid_api_key_67890")]).await;
        assert_unavailable(&a, "test_invalid_introspection_authentication");
        ogx.stop().await;
    }

    /// `test_failed_introspection_authentication`: the endpoint answers 500.
    /// 503 here, 401 in OGX (see DIFFERENCES).
    #[tokio::test]
    async fn introspection_failed_authentication() {
        let (_idp, ogx) = introspection_gate(Reply::Json(500, json!({})), "").await;
        let a = ogx.get("/test", &[("authorization", "Bearer invalid_api_key_67890")]).await;
        assert_unavailable(&a, "test_failed_introspection_authentication");
        ogx.stop().await;
    }

    /// `test_valid_introspection_with_custom_mapping_authentication`:
    /// `send_secret_in_body` and a mapping that splits `scope` into roles and
    /// takes `aud` as namespaces.
    #[tokio::test]
    async fn introspection_valid_with_custom_mapping() {
        let extra = "    send_secret_in_body: true\n  claims_mapping:\n    sub: roles\n    scope: roles\n    groups: teams\n    aud: namespaces\n";
        let (idp, ogx) = introspection_gate(Reply::Json(200, active_reply()), extra).await;
        let a = ogx.get("/test", &[("authorization", "Bearer valid_api_key_12345")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            a.attribute_sets(),
            expect_sets(
                json!({"roles": ["my-user", "foo", "bar"], "teams": ["group1", "group2"], "namespaces": ["set1", "set2"]})
            )
        );
        let seen = idp.seen();
        let form: Vec<(String, String)> = url::form_urlencoded::parse(seen[0].body.as_bytes()).into_owned().collect();
        for pair in [("token", "valid_api_key_12345"), ("client_id", "myclient"), ("client_secret", "abcdefg")] {
            assert!(form.contains(&(pair.0.into(), pair.1.into())), "{pair:?} in {form:?}");
        }
        assert!(!seen[0].headers.iter().any(|(k, _)| k == "authorization"), "no Basic auth with send_secret_in_body");
        ogx.stop().await;
    }

    // ---------------------------------------------------------- kubernetes

    const SSR_PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

    fn ssr_success() -> Value {
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": {"creationTimestamp": "2025-07-15T13:53:56Z"},
            "status": {"userInfo": {
                "username": "alice",
                "uid": "alice-uid-123",
                "groups": ["system:authenticated", "developers", "admins"],
                "extra": {"scopes.authorization.openshift.io": ["user:full"]},
            }},
        })
    }

    /// The API server as an HTTPS stand-in (OGX's `https://api.cluster.example.com:6443`, `verify_tls: false`).
    async fn kubernetes_gate(reply: Reply) -> (Server, Ogx) {
        let api = Server::start_tls(test_pki(&["127.0.0.1"]).server_config).await;
        api.route(SSR_PATH, reply);
        let auth = format!(
            "provider_config:\n  type: kubernetes\n  api_server_url: {}\n  verify_tls: false\n  claims_mapping:\n    username: roles\n    groups: roles\n    uid: uid_attr\n",
            api.url("")
        );
        let ogx = Ogx::start(&auth).await;
        (api, ogx)
    }

    /// `test_missing_auth_header_kubernetes_auth`: 401 `Authentication required…`.
    #[tokio::test]
    async fn kubernetes_missing_auth_header() {
        let (api, ogx) = kubernetes_gate(Reply::Json(201, ssr_success())).await;
        let a = ogx.get("/test", &[]).await;
        assert_eq!(a.status, 401);
        assert!(a.message().starts_with("Authentication required"), "{}", a.message());
        assert_bare_challenge(&a);
        assert!(api.seen().is_empty());
        ogx.stop().await;
    }

    /// `test_invalid_auth_header_format_kubernetes_auth`: 401 (message: see MESSAGE_WORDING).
    #[tokio::test]
    async fn kubernetes_invalid_auth_header_format() {
        let (api, ogx) = kubernetes_gate(Reply::Json(201, ssr_success())).await;
        let a = ogx.get("/test", &[INVALID_FORMAT]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(api.seen().is_empty());
        ogx.stop().await;
    }

    /// `test_valid_kubernetes_auth_authentication`: 201 SelfSubjectReview; 200 as
    /// `alice`, username and groups as roles, uid as `uid_attr`.
    #[tokio::test]
    async fn kubernetes_valid_authentication() {
        let (_api, ogx) = kubernetes_gate(Reply::Json(201, ssr_success())).await;
        let a = ogx.get("/test", &[("authorization", "Bearer valid.jwt.token")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "alice");
        assert_eq!(
            a.attribute_sets(),
            expect_sets(
                json!({"roles": ["alice", "system:authenticated", "developers", "admins"], "uid_attr": ["alice-uid-123"]})
            )
        );
        ogx.stop().await;
    }

    /// `test_invalid_kubernetes_auth_authentication`: the API server answers 401; 401 (message: see MESSAGE_WORDING).
    #[tokio::test]
    async fn kubernetes_invalid_authentication() {
        let (_api, ogx) = kubernetes_gate(Reply::Json(401, json!({"message": "Unauthorized"}))).await;
        let a = ogx.get("/test", &[("authorization", "Bearer invalid.jwt.token")]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        ogx.stop().await;
    }

    /// `test_kubernetes_auth_http_error`: the API server answers 500. 503 here,
    /// 401 in OGX (see DIFFERENCES).
    #[tokio::test]
    async fn kubernetes_auth_http_error() {
        let (_api, ogx) = kubernetes_gate(Reply::Json(500, json!({"message": "Internal Server Error"}))).await;
        let a = ogx.get("/test", &[("authorization", "Bearer valid.jwt.token")]).await;
        assert_unavailable(&a, "test_kubernetes_auth_http_error");
        ogx.stop().await;
    }

    /// `test_kubernetes_auth_request_payload`: one POST to the
    /// selfsubjectreviews path with the client's token and OGX's body. The
    /// stand-in answers 200, not 201: accepted here, 401 in OGX (not asserted
    /// there; see DIFFERENCES).
    #[tokio::test]
    async fn kubernetes_auth_request_payload() {
        let mut reply = ssr_success();
        reply.as_object_mut().unwrap().remove("metadata");
        let (api, ogx) = kubernetes_gate(Reply::Json(200, reply)).await;
        let a = ogx.get("/test", &[("authorization", "Bearer valid.jwt.token")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let seen = api.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].target, SSR_PATH);
        assert!(seen[0].headers.contains(&("authorization".into(), "Bearer valid.jwt.token".into())));
        assert!(seen[0].headers.contains(&("content-type".into(), "application/json".into())));
        let body: Value = serde_json::from_str(&seen[0].body).unwrap();
        assert_eq!(body, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}));
        ogx.stop().await;
    }

    // ---------------------------------------------------------- public routes

    /// `test_unauthenticated_endpoint_access_health`,
    /// `test_unauthenticated_endpoint_denied_for_other_paths` ([internal] in
    /// OGX, a mocked route table): over HTTP, OGX's public routes `GET
    /// /v1/health` and `/v1/version` need no token, any other route does.
    #[tokio::test]
    async fn public_routes() {
        let (endpoint, ogx) = custom_gate(Reply::Json(200, custom_success())).await;
        for path in ["/v1/health", "/v1/version"] {
            let a = ogx.get(path, &[]).await;
            assert_eq!(a.status, 200, "{path}: {}", a.body);
        }
        let a = ogx.get("/v1/models", &[]).await;
        assert_eq!(a.status, 401);
        assert!(endpoint.seen().is_empty());
        ogx.stop().await;
    }
}

// ------------------------------------------------------------------ test_auth_github.py

/// `tests/unit/server/test_auth_github.py`: GitHub's `/user` and
/// `/user/orgs` played by a stand-in (wiremock where pages must differ).
mod test_auth_github {
    use super::*;

    /// Config G, against `api` (OGX: `https://api.github.com`).
    fn github_auth(base: &str, mapping: &str) -> String {
        format!("provider_config:\n  type: github_token\n  github_api_base_url: {base}\n{mapping}")
    }

    const MAPPING_G: &str = "  claims_mapping: {login: username, id: user_id, organizations: teams}\n";
    const MAPPING_PROVIDER: &str = "  claims_mapping: {login: roles, organizations: teams}\n";

    const OGX_MESSAGE: &str = "Authentication required. Please provide a valid GitHub access token (https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/managing-your-personal-access-tokens) in the Authorization header (Bearer <token>)";

    async fn github(user: Reply, orgs: Reply, mapping: &str) -> (Server, Ogx) {
        let api = Server::start().await;
        api.route("/user", user);
        api.route("/user/orgs", orgs);
        api.reply_headers("/user/orgs", &[CLASSIC_TOKEN_SCOPES]);
        let ogx = Ogx::start(&github_auth(&api.url(""), mapping)).await;
        (api, ogx)
    }

    /// What GitHub sends with every reply to a classic token that may list
    /// all its organizations (see DIFFERENCES).
    const CLASSIC_TOKEN_SCOPES: (&str, &str) = ("x-oauth-scopes", "read:org");

    fn orgs(names: &[&str]) -> Reply {
        Reply::Json(200, Value::Array(names.iter().map(|n| json!({"login": n})).collect()))
    }

    /// `test_authenticated_endpoint_without_token`: 401 with OGX's message word for word.
    #[tokio::test]
    async fn authenticated_endpoint_without_token() {
        let (api, ogx) = github(Reply::Json(200, json!({})), orgs(&[]), MAPPING_G).await;
        let a = ogx.get("/test", &[]).await;
        assert_eq!(a.status, 401);
        assert!(a.message().starts_with(OGX_MESSAGE), "{}", a.message());
        assert!(a.message().contains("GitHub access token"));
        assert_bare_challenge(&a);
        assert!(api.seen().is_empty());
        ogx.stop().await;
    }

    /// `test_authenticated_endpoint_with_invalid_bearer_format`: 401 (message: see MESSAGE_WORDING).
    #[tokio::test]
    async fn authenticated_endpoint_with_invalid_bearer_format() {
        let (api, ogx) = github(Reply::Json(200, json!({})), orgs(&[]), MAPPING_G).await;
        let a = ogx.get("/test", &[INVALID_FORMAT]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(api.seen().is_empty());
        ogx.stop().await;
    }

    /// `test_authenticated_endpoint_with_valid_github_token`: 200 as
    /// `testuser`; two GETs, `/user` then `/user/orgs`, both with the token
    /// (the first page is asked without `page=1`: see DIFFERENCES).
    #[tokio::test]
    async fn authenticated_endpoint_with_valid_github_token() {
        let user = json!({"login": "testuser", "id": 12345, "email": "test@example.com", "name": "Test User"});
        let (api, ogx) = github(Reply::Json(200, user), orgs(&["test-org-1", "test-org-2"]), MAPPING_G).await;
        let a = ogx.get("/test", &[("authorization", "Bearer github_token_123")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "testuser");
        assert_eq!(
            a.attributes(),
            expect_attrs(
                json!({"username": ["testuser"], "user_id": ["12345"], "teams": ["test-org-1", "test-org-2"]})
            )
        );
        assert_eq!(api.targets(), ["/user", "/user/orgs?per_page=100"]);
        for seen in api.seen() {
            assert!(seen.headers.contains(&("authorization".into(), "Bearer github_token_123".into())));
            assert!(seen.headers.contains(&("user-agent".into(), "tokengate".into())), "{:?}", seen.headers);
            assert!(seen.headers.contains(&("accept".into(), "application/vnd.github+json".into())));
        }
        ogx.stop().await;
    }

    /// `test_authenticated_endpoint_with_invalid_github_token`: GitHub answers
    /// 401 `Bad credentials`; 401 (message: see MESSAGE_WORDING).
    #[tokio::test]
    async fn authenticated_endpoint_with_invalid_github_token() {
        let bad = Reply::Json(401, json!({"message": "Bad credentials"}));
        let (_api, ogx) = github(bad.clone(), bad, MAPPING_G).await;
        let a = ogx.get("/test", &[("authorization", "Bearer invalid_token")]).await;
        assert_eq!(a.status, 401, "{}", a.body);
        ogx.stop().await;
    }

    /// `test_github_enterprise_support`: `github_api_base_url` with a path
    /// (`…/api/v3`), default mapping: the calls go under it.
    #[tokio::test]
    async fn github_enterprise_support() {
        let api = Server::start().await;
        api.route(
            "/api/v3/user",
            Reply::Json(200, json!({"login": "enterprise_user", "id": 99999, "email": "user@enterprise.com"})),
        );
        api.route("/api/v3/user/orgs", orgs(&["enterprise-org"]));
        api.reply_headers("/api/v3/user/orgs", &[CLASSIC_TOKEN_SCOPES]);
        let ogx = Ogx::start(&github_auth(&api.url("/api/v3"), "")).await;
        let a = ogx.get("/test", &[("authorization", "Bearer enterprise_token")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "enterprise_user");
        assert_eq!(a.attributes(), expect_attrs(json!({"roles": ["enterprise_user"], "teams": ["enterprise-org"]})));
        assert_eq!(api.targets(), ["/api/v3/user", "/api/v3/user/orgs?per_page=100"]);
        ogx.stop().await;
    }

    /// `test_github_token_extracts_org_attributes`, `test_github_token_multiple_orgs`
    /// ([internal] in OGX, provider calls): over HTTP, organizations become
    /// `teams` and the login `roles`.
    #[tokio::test]
    async fn github_token_org_attributes() {
        let cases: [(&str, &[&str]); 2] =
            [("testuser", &["org-a", "org-b"]), ("multiorguser", &["org-1", "org-2", "org-3", "org-4"])];
        for (login, names) in cases {
            let (_api, ogx) =
                github(Reply::Json(200, json!({"login": login, "id": 12345})), orgs(names), MAPPING_PROVIDER).await;
            let a = ogx.get("/test", &[("authorization", "Bearer token123")]).await;
            assert_eq!(a.status, 200, "{}", a.body);
            assert_eq!(a.principal(), login);
            let attributes = a.attributes();
            assert_eq!(attributes["roles"], [login]);
            assert_eq!(attributes["teams"], names);
            ogx.stop().await;
        }
    }

    /// `test_github_token_handles_org_fetch_failure` ([internal] in OGX):
    /// `/user/orgs` answers 403. Accepted, but `teams` is unknown, not empty
    /// (see DIFFERENCES).
    #[tokio::test]
    async fn github_token_handles_org_fetch_failure() {
        let forbidden = Reply::Json(403, json!({"message": "Resource not accessible by personal access token"}));
        let (_api, ogx) =
            github(Reply::Json(200, json!({"login": "testuser", "id": 12345})), forbidden, MAPPING_PROVIDER).await;
        let a = ogx.get("/test", &[("authorization", "Bearer token123")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "testuser");
        assert_eq!(a.header("x-auth-unknown-attributes").as_deref(), Some("teams"));
        assert_eq!(a.attributes(), expect_attrs(json!({"roles": ["testuser"]})));
        ogx.stop().await;
    }

    async fn paged_github(page_two: wiremock::ResponseTemplate) -> (wiremock::MockServer, Ogx) {
        use wiremock::matchers::{method, path, query_param};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let api = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/user"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"login": "multiorguser", "id": 99999})))
            .mount(&api)
            .await;
        Mock::given(method("GET"))
            .and(path("/user/orgs"))
            .and(query_param("page", "2"))
            .respond_with(page_two.insert_header(CLASSIC_TOKEN_SCOPES.0, CLASSIC_TOKEN_SCOPES.1))
            .with_priority(1)
            .mount(&api)
            .await;
        let first: Vec<Value> = (1..=100).map(|i| json!({"login": format!("org-{i}")})).collect();
        Mock::given(method("GET"))
            .and(path("/user/orgs"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header(CLASSIC_TOKEN_SCOPES.0, CLASSIC_TOKEN_SCOPES.1)
                    .set_body_json(first),
            )
            .mount(&api)
            .await;
        let ogx = Ogx::start(&github_auth(&api.uri(), MAPPING_PROVIDER)).await;
        (api, ogx)
    }

    /// `test_github_token_fetches_paginated_orgs` ([internal] in OGX): a full
    /// first page (100) without `Link`, then page 2 (2 more): 102 teams; the
    /// pages asked are `per_page=100` and `per_page=100&page=2`.
    #[tokio::test]
    async fn github_token_fetches_paginated_orgs() {
        let page_two =
            wiremock::ResponseTemplate::new(200).set_body_json(json!([{"login": "org-101"}, {"login": "org-102"}]));
        let (api, ogx) = paged_github(page_two).await;
        let a = ogx.get("/test", &[("authorization", "Bearer token123")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "multiorguser");
        let teams = &a.attributes()["teams"];
        assert_eq!(teams.len(), 102);
        assert!(teams.contains(&"org-101".to_string()) && teams.contains(&"org-102".to_string()));
        let asked: Vec<String> = api
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/user/orgs")
            .map(|r| r.url.query().unwrap_or_default().to_string())
            .collect();
        assert_eq!(asked, ["per_page=100", "per_page=100&page=2"]);
        ogx.stop().await;
    }

    /// `test_github_token_preserves_partial_orgs_if_later_page_fails`
    /// ([internal] in OGX): page 2 answers 503. The whole lookup is
    /// unavailable here, not a success with 100 teams (see DIFFERENCES).
    #[tokio::test]
    async fn github_token_partial_orgs_when_a_later_page_fails() {
        let page_two = wiremock::ResponseTemplate::new(503).set_body_json(json!({"message": "Service Unavailable"}));
        let (_api, ogx) = paged_github(page_two).await;
        let a = ogx.get("/test", &[("authorization", "Bearer token123")]).await;
        assert_unavailable(&a, "test_github_token_preserves_partial_orgs_if_later_page_fails");
        ogx.stop().await;
    }

    /// `test_github_token_auth_error_message_format`: the 401 body's
    /// `error.message` names what is required and links GitHub's docs.
    #[tokio::test]
    async fn github_token_auth_error_message_format() {
        let (_api, ogx) = github(Reply::Json(200, json!({})), orgs(&[]), MAPPING_G).await;
        let a = ogx.get("/test", &[]).await;
        assert_eq!(a.status, 401);
        assert_eq!(a.header("content-type").as_deref(), Some("application/json"));
        let message = a.message();
        assert!(
            message.contains("Authentication required") && message.contains("https://docs.github.com"),
            "{message}"
        );
        ogx.stop().await;
    }
}

// ------------------------------------------------------------------ test_auth_upstream_header.py

/// `tests/unit/server/test_auth_upstream_header.py`, and PR #5756's
/// `attribute_headers` cases. OGX's config plus `trusted_proxy_cidrs:
/// [127.0.0.1]` (the test client), which tokengate requires.
mod test_auth_upstream_header {
    use super::*;

    /// Config U (with `attributes_header`) or U0 (without).
    fn upstream_auth(attributes_header: bool, extra: &str) -> String {
        let attributes = if attributes_header { "  attributes_header: x-auth-attributes\n" } else { "" };
        format!(
            "provider_config:\n  type: upstream_header\n  principal_header: x-auth-user-id\n{attributes}  trusted_proxy_cidrs: [127.0.0.1]\n{extra}access_policy: []\n"
        )
    }

    /// Every HTTP test of the file, with config U unless marked U0: (OGX test,
    /// headers, status, principal, attributes).
    #[tokio::test]
    async fn upstream_header_cases() {
        type Case = (&'static str, bool, Headers, u16, &'static str, Value);
        let cases: &[Case] = &[
            (
                "test_valid_upstream_header_auth, test_provider_validate_token_extracts_attributes",
                true,
                &[
                    ("x-auth-user-id", "alice"),
                    ("x-auth-attributes", r#"{"roles": ["admin", "user"], "teams": ["ml-team"]}"#),
                ],
                200,
                "alice",
                json!({"roles": ["admin", "user"], "teams": ["ml-team"]}),
            ),
            (
                "test_valid_upstream_header_auth_principal_only",
                true,
                &[("x-auth-user-id", "alice")],
                200,
                "alice",
                json!({}),
            ),
            ("test_no_bearer_token_required", true, &[("x-auth-user-id", "alice")], 200, "alice", json!({})),
            (
                "test_bearer_token_ignored",
                true,
                &[("authorization", "Bearer some-token"), ("x-auth-user-id", "alice")],
                200,
                "alice",
                json!({}),
            ),
            ("test_no_attributes_header_configured (U0)", false, &[("x-auth-user-id", "bob")], 200, "bob", json!({})),
            (
                "test_provider_validate_token_extracts_principal (U0)",
                false,
                &[("x-auth-user-id", "alice")],
                200,
                "alice",
                json!({}),
            ),
            (
                "test_case_insensitive_headers",
                true,
                &[("X-Auth-User-Id", "alice"), ("X-Auth-Attributes", r#"{"roles": ["viewer"]}"#)],
                200,
                "alice",
                json!({"roles": ["viewer"]}),
            ),
            (
                "test_attributes_string_values_normalized",
                true,
                &[
                    ("x-auth-user-id", "alice"),
                    ("x-auth-attributes", r#"{"roles": "admin", "teams": ["ml-team", "infra"]}"#),
                ],
                200,
                "alice",
                json!({"roles": ["admin"], "teams": ["ml-team", "infra"]}),
            ),
        ];
        let u = Ogx::start(&upstream_auth(true, "")).await;
        let u0 = Ogx::start(&upstream_auth(false, "")).await;
        for (test, with_attributes, headers, status, principal, attributes) in cases {
            let ogx = if *with_attributes { &u } else { &u0 };
            let a = ogx.get("/test", headers).await;
            assert_eq!(a.status, *status, "{test}: {}", a.body);
            assert_eq!(a.principal(), *principal, "{test}");
            assert_eq!(a.attributes(), expect_attrs(attributes.clone()), "{test}");
        }
        u.stop().await;
        u0.stop().await;
    }

    /// `test_missing_principal_header`, `test_error_message_includes_header_name`,
    /// `test_provider_validate_token_missing_principal`, `test_invalid_attributes_json`,
    /// `test_attributes_not_object`: 401, naming the header where OGX's test
    /// asks (the rest of the wording: see MESSAGE_WORDING).
    #[tokio::test]
    async fn upstream_header_refusals() {
        let ogx = Ogx::start(&upstream_auth(true, "")).await;
        let cases: [(&str, Headers, &str); 6] = [
            ("test_missing_principal_header", &[], "x-auth-user-id"),
            ("untested rule: an empty principal header is missing", &[("x-auth-user-id", "")], "x-auth-user-id"),
            ("test_error_message_includes_header_name", &[], "x-auth-user-id"),
            ("test_provider_validate_token_missing_principal", &[("other-header", "value")], "x-auth-user-id"),
            (
                "test_invalid_attributes_json",
                &[("x-auth-user-id", "alice"), ("x-auth-attributes", "not-valid-json{")],
                "x-auth-attributes",
            ),
            (
                "test_attributes_not_object",
                &[("x-auth-user-id", "alice"), ("x-auth-attributes", r#"["not", "an", "object"]"#)],
                "x-auth-attributes",
            ),
        ];
        for (test, headers, names) in cases {
            let a = ogx.get("/test", headers).await;
            assert_eq!(a.status, 401, "{test}: {}", a.body);
            assert!(a.message().contains(names), "{test}: {}", a.message());
            assert!(a.header("x-auth-principal").is_none(), "{test}");
        }
        ogx.stop().await;
    }

    /// Untested rules of OGX's provider: a JSON value that is neither a string
    /// nor a list becomes `[str(v)]` (`3` → `"3"`, `true` → `"True"`, `null` →
    /// `"None"`, an object its Python repr). tokengate takes numbers and
    /// booleans as their JSON text and refuses `null` and objects (see DIFFERENCES).
    #[tokio::test]
    async fn upstream_header_attribute_values_that_are_not_strings() {
        let ogx = Ogx::start(&upstream_auth(true, "")).await;
        let a = ogx
            .get("/test", &[("x-auth-user-id", "alice"), ("x-auth-attributes", r#"{"level": 3, "on": true}"#)])
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.attributes(), expect_attrs(json!({"level": ["3"], "on": ["true"]})));
        for refused in [r#"{"roles": null}"#, r#"{"roles": {"a": 1}}"#, r#"{"roles": [["nested"]]}"#] {
            let a = ogx.get("/test", &[("x-auth-user-id", "alice"), ("x-auth-attributes", refused)]).await;
            assert_eq!(a.status, 401, "{refused}: {}", a.body);
        }
        ogx.stop().await;
    }

    /// Untested rule of OGX's provider: an attributes header that is present
    /// but empty is absent (`if attributes_value:`), so the user gets in without attributes.
    #[tokio::test]
    async fn upstream_header_empty_attributes_header_is_absent() {
        let ogx = Ogx::start(&upstream_auth(true, "")).await;
        let a = ogx.get("/test", &[("x-auth-user-id", "alice"), ("x-auth-attributes", "")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.attributes(), expect_attrs(json!({})));
        ogx.stop().await;
    }

    /// `test_valid_upstream_header_auth` through the tower layer (peer from `ConnectInfo`).
    #[tokio::test]
    async fn upstream_header_through_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(&write(dir.path(), "run.yaml", &run_yaml(&upstream_auth(true, ""))));
        let base = serve_layer(&config).await;
        let res = client()
            .get(format!("{base}/test"))
            .header("x-auth-user-id", "alice")
            .header("x-auth-attributes", r#"{"roles": ["admin", "user"], "teams": ["ml-team"]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body = json(res).await;
        assert_eq!(body["principal"], "alice");
        assert_eq!(body["attributes"], json!({"roles": ["admin", "user"], "teams": ["ml-team"]}));
        let res = client().get(format!("{base}/test")).send().await.unwrap();
        assert_eq!(res.status(), 401);
    }

    /// Every test of the file, as OGX wrote its config (no
    /// `trusted_proxy_cidrs`): refused at load; headers from a peer that is not
    /// trusted are ignored (403); a repeated identity header is 400, where OGX
    /// takes the last. See DIFFERENCES.
    #[tokio::test]
    async fn upstream_header_trusts_only_configured_proxies() {
        let ogx_config = run_yaml(
            "provider_config:\n  type: upstream_header\n  principal_header: x-auth-user-id\n  attributes_header: x-auth-attributes\naccess_policy: []\n",
        );
        let e = tokengate::Config::parse(&ogx_config, tokengate::config::Format::Yaml)
            .and_then(|c| c.build(&tokengate::Registry::with_builtins()).map(|_| ()))
            .unwrap_err();
        assert!(e.to_string().contains("trusted_proxy_cidrs"), "{e}");

        let elsewhere = upstream_auth(true, "").replace("[127.0.0.1]", "[10.0.0.0/8]");
        let ogx = Ogx::start(&elsewhere).await;
        let a = ogx.get("/test", &[("x-auth-user-id", "alice")]).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(a.header("x-auth-principal").is_none());
        ogx.stop().await;

        let ogx = Ogx::start(&upstream_auth(true, "")).await;
        let a = ogx.get("/test", &[("x-auth-user-id", "mallory"), ("x-auth-user-id", "alice")]).await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(a.header("x-auth-principal").is_none());
        ogx.stop().await;
    }

    /// PR #5756's `attribute_headers` tests (header → attribute; a value is a
    /// JSON array or one plain string, never comma-split): `plain_string`,
    /// `json_array`, `multiple_headers`, `merged_with_attributes_header`,
    /// `missing_optional_header`, `case_insensitive` ([internal] there:
    /// provider calls; here over HTTP) and `middleware_integration`.
    #[tokio::test]
    async fn attribute_headers() {
        let maps = "  attribute_headers: {x-maas-group: teams, x-maas-subscription: namespaces}\n";
        let ogx = Ogx::start(&upstream_auth(false, maps)).await;
        let cases: [(&str, Headers, Value); 5] = [
            (
                "test_attribute_headers_plain_string",
                &[("x-auth-user-id", "alice"), ("x-maas-subscription", "premium-sub")],
                json!({"namespaces": ["premium-sub"]}),
            ),
            (
                "test_attribute_headers_json_array",
                &[("x-auth-user-id", "alice"), ("x-maas-group", r#"["team-a","premium-users"]"#)],
                json!({"teams": ["team-a", "premium-users"]}),
            ),
            (
                "test_attribute_headers_multiple_headers",
                &[
                    ("x-auth-user-id", "alice"),
                    ("x-maas-group", r#"["team-a"]"#),
                    ("x-maas-subscription", "premium-sub"),
                ],
                json!({"teams": ["team-a"], "namespaces": ["premium-sub"]}),
            ),
            (
                "test_attribute_headers_missing_optional_header",
                &[("x-auth-user-id", "alice"), ("x-maas-group", r#"["team-a"]"#)],
                json!({"teams": ["team-a"]}),
            ),
            (
                "test_attribute_headers_middleware_integration",
                &[("x-auth-user-id", "alice"), ("x-maas-group", r#"["team-a"]"#), ("x-maas-subscription", "premium")],
                json!({"teams": ["team-a"], "namespaces": ["premium"]}),
            ),
        ];
        for (test, headers, expected) in cases {
            let a = ogx.get("/test", headers).await;
            assert_eq!(a.status, 200, "{test}: {}", a.body);
            assert_eq!(a.principal(), "alice", "{test}");
            assert_eq!(a.attributes(), expect_attrs(expected), "{test}");
        }
        ogx.stop().await;

        // merged_with_attributes_header: membership, as the test checks (order: see DIFFERENCES).
        let ogx = Ogx::start(&upstream_auth(true, "  attribute_headers: {x-maas-group: teams}\n")).await;
        let headers = [
            ("x-auth-user-id", "alice"),
            ("x-auth-attributes", r#"{"roles": ["admin"], "teams": ["existing-team"]}"#),
            ("x-maas-group", r#"["extra-team"]"#),
        ];
        let a = ogx.get("/test", &headers).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let attributes = a.attributes();
        assert_eq!(attributes["roles"], ["admin"]);
        assert!(attributes["teams"].contains(&"existing-team".to_string()));
        assert!(attributes["teams"].contains(&"extra-team".to_string()));
        assert_eq!(attributes["teams"], ["extra-team", "existing-team"], "attribute_headers first (see DIFFERENCES)");
        ogx.stop().await;

        // case_insensitive: header names configured in mixed case, sent in lower case.
        let mixed = "provider_config:\n  type: upstream_header\n  principal_header: X-Auth-User-Id\n  attribute_headers: {X-MaaS-Group: teams}\n  trusted_proxy_cidrs: [127.0.0.1]\n";
        let ogx = Ogx::start(mixed).await;
        let a = ogx.get("/test", &[("x-auth-user-id", "alice"), ("x-maas-group", r#"["team-a"]"#)]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "alice");
        assert_eq!(a.attributes(), expect_attrs(json!({"teams": ["team-a"]})));
        ogx.stop().await;
    }
}

// ------------------------------------------------------------------ test_route_auth.py

/// `tests/unit/server/test_route_auth.py`. OGX calls the middleware's
/// methods with mock users; here the users come from `upstream_header`
/// headers, and "no user" is a run.yaml with only `route_policy`.
mod test_route_auth {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Who {
        Nobody,
        Admin,
        Developer,
        Regular,
    }
    use Who::*;

    impl Who {
        fn headers(self) -> Vec<(&'static str, &'static str)> {
            let (principal, attributes) = match self {
                Nobody => return Vec::new(),
                Admin => ("admin@example.com", r#"{"roles": ["admin"], "teams": ["platform"]}"#),
                Developer => ("dev@example.com", r#"{"roles": ["developer"], "teams": ["ml-team"]}"#),
                Regular => ("user@example.com", r#"{"roles": ["user"], "teams": ["ml-team"]}"#),
            };
            vec![("x-auth-user-id", principal), ("x-auth-attributes", attributes)]
        }
    }

    fn indented(policy: &str) -> String {
        policy.lines().map(|l| format!("  {l}\n")).collect()
    }

    /// `policy` (the list under `route_policy:`) with users from upstream_header.
    async fn with_users(policy: &str) -> Ogx {
        Ogx::start(&format!(
            "provider_config:\n  type: upstream_header\n  principal_header: x-auth-user-id\n  attributes_header: x-auth-attributes\n  trusted_proxy_cidrs: [127.0.0.1]\nroute_policy:\n{}",
            indented(policy)
        ))
        .await
    }

    /// `policy` alone: no provider, so no request carries a user.
    async fn without_auth(policy: &str) -> Ogx {
        Ogx::start(&format!("route_policy:\n{}", indented(policy))).await
    }

    /// Asserts each (user, path, status); a 403 names the path.
    async fn expect(ogx: &Ogx, test: &str, cases: &[(Who, &str, u16)]) {
        for (who, path, status) in cases {
            let a = ogx.get(path, &who.headers()).await;
            assert_eq!(a.status, *status, "{test}: {who:?} {path}: {}", a.body);
            if *status == 403 {
                assert!(a.message().contains(path), "{test}: {}", a.message());
                let challenge = a.header("www-authenticate").unwrap_or_default();
                assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
            }
        }
    }

    /// `test_no_route_policy_allows_all`: `route_policy: []` lets every user everywhere.
    #[tokio::test]
    async fn no_route_policy_allows_all() {
        let ogx = Ogx::start(
            "provider_config:\n  type: upstream_header\n  principal_header: x-auth-user-id\n  attributes_header: x-auth-attributes\n  trusted_proxy_cidrs: [127.0.0.1]\nroute_policy: []\n",
        )
        .await;
        expect(&ogx, "test_no_route_policy_allows_all", &[(Regular, "/v1/chat/completions", 200)]).await;
        ogx.stop().await;
    }

    /// `test_exact_path_match`, `test_wildcard_prefix_match`,
    /// `test_full_wildcard_match`, `test_regex_path_matching` ([internal] in
    /// OGX, `_route_matches`): each pattern as the one permit rule of a
    /// policy; a path it matches gets 200, any other 403.
    #[tokio::test]
    async fn path_patterns() {
        let cases: [(&str, &[(&str, bool)]); 8] = [
            (
                "/v1/chat/completions",
                &[("/v1/chat/completions", true), ("/v1/chat/completions/stream", false), ("/v1/models/list", false)],
            ),
            (
                "\"/v1/files*\"",
                &[
                    ("/v1/files/upload", true),
                    ("/v1/files/delete", true),
                    ("/v1/files/list/all", true),
                    ("/v1/files", true),
                    ("/v1/models/list", false),
                ],
            ),
            (
                "\"*\"",
                &[
                    ("/v1/chat/completions", true),
                    ("/v1/files/upload", true),
                    ("/admin/reset", true),
                    ("/anything/goes", true),
                ],
            ),
            (
                "\"regex:/v1/(chat|inference)/.*\"",
                &[("/v1/chat/completions", true), ("/v1/inference/run", true), ("/v1/other/endpoint", false)],
            ),
            ("\"regex:/v1/models/.*\"", &[("/v1/models/list", true)]),
            ("'regex:/v1/files/\\d+'", &[("/v1/files/123", true)]),
            ("\"regex:/v1/chat/.*\"", &[("/v2/chat/completions", false)]),
            ("[\"/v1/models*\", \"regex:/v1/(chat|inference)/.*\"]", &[("/v1/chat/completions", true)]),
        ];
        for (pattern, paths) in cases {
            // A second, conditioned rule keeps the policy from being "permit everything".
            let ogx = without_auth(&format!(
                "- permit: {{paths: {pattern}}}\n- permit: {{paths: /never}}\n  when: user with admin in roles\n"
            ))
            .await;
            for (path, matches) in paths {
                let a = ogx.get(path, &[]).await;
                assert_eq!(a.status, if *matches { 200 } else { 403 }, "{pattern} vs {path}: {}", a.body);
            }
            ogx.stop().await;
        }
    }

    /// `test_multiple_paths_in_rule`.
    #[tokio::test]
    async fn multiple_paths_in_rule() {
        let ogx =
            with_users("- permit: {paths: [\"/v1/files*\", \"/v1/models*\"]}\n  when: user with user in roles\n").await;
        let cases = [
            (Regular, "/v1/files/upload", 200),
            (Regular, "/v1/models/list", 200),
            (Regular, "/v1/chat/completions", 403),
        ];
        expect(&ogx, "test_multiple_paths_in_rule", &cases).await;
        ogx.stop().await;
    }

    /// `test_condition_evaluation_with_roles`.
    #[tokio::test]
    async fn condition_evaluation_with_roles() {
        let ogx = with_users("- permit: {paths: /v1/chat/completions}\n  when: user with developer in roles\n").await;
        let cases = [(Developer, "/v1/chat/completions", 200), (Regular, "/v1/chat/completions", 403)];
        expect(&ogx, "test_condition_evaluation_with_roles", &cases).await;
        ogx.stop().await;
    }

    /// `test_admin_full_wildcard_access`.
    #[tokio::test]
    async fn admin_full_wildcard_access() {
        let ogx = with_users(
            "- permit: {paths: /v1/chat/completions}\n  when: user with developer in roles\n- permit: {paths: \"*\"}\n  when: user with admin in roles\n",
        )
        .await;
        let cases = [
            (Admin, "/v1/chat/completions", 200),
            (Admin, "/v1/files/upload", 200),
            (Admin, "/v1/admin/reset", 200),
            (Developer, "/v1/chat/completions", 200),
            (Developer, "/v1/files/upload", 403),
        ];
        expect(&ogx, "test_admin_full_wildcard_access", &cases).await;
        ogx.stop().await;
    }

    /// `test_forbid_rule`.
    #[tokio::test]
    async fn forbid_rule() {
        let ogx = with_users(
            "- forbid: {paths: \"/v1/admin*\"}\n  unless: user with admin in roles\n- permit: {paths: \"*\"}\n  when: user with admin in roles\n- permit: {paths: \"*\"}\n  when: user with developer in roles\n",
        )
        .await;
        let cases = [
            (Developer, "/v1/admin/reset", 403),
            (Admin, "/v1/admin/reset", 200),
            (Developer, "/v1/chat/completions", 200),
        ];
        expect(&ogx, "test_forbid_rule", &cases).await;
        ogx.stop().await;
    }

    /// `test_no_matching_rule_denies_access`.
    #[tokio::test]
    async fn no_matching_rule_denies_access() {
        let ogx = with_users("- permit: {paths: /v1/chat/completions}\n  when: user with developer in roles\n").await;
        let cases = [(Regular, "/v1/chat/completions", 403), (Regular, "/v1/models/list", 403)];
        expect(&ogx, "test_no_matching_rule_denies_access", &cases).await;
        ogx.stop().await;
    }

    /// `test_multiple_conditions`: `when` conditions must all hold.
    #[tokio::test]
    async fn multiple_conditions() {
        let ogx = with_users(
            "- permit: {paths: \"*\"}\n  when: [\"user with admin in roles\", \"user with platform in teams\"]\n",
        )
        .await;
        expect(&ogx, "test_multiple_conditions", &[(Admin, "/v1/anything", 200), (Developer, "/v1/anything", 403)])
            .await;
        ogx.stop().await;
    }

    /// `test_rule_order_matters`: the first matching rule decides.
    #[tokio::test]
    async fn rule_order_matters() {
        let ogx = with_users(
            "- permit: {paths: /v1/chat/completions}\n  when: user with developer in roles\n- forbid: {paths: \"*\"}\n  when: user with developer in roles\n",
        )
        .await;
        let cases = [(Developer, "/v1/chat/completions", 200), (Developer, "/v1/models/list", 403)];
        expect(&ogx, "test_rule_order_matters", &cases).await;
        ogx.stop().await;
    }

    /// `test_websocket_passthrough` ([internal] in OGX, a `websocket` scope):
    /// a WebSocket handshake to `/ws` with no user. OGX passes it through;
    /// tokengate judges it like any request (see DIFFERENCES).
    #[tokio::test]
    async fn websocket_passthrough() {
        let ogx = without_auth("- permit: {paths: /v1/chat/completions}\n  when: user with developer in roles\n").await;
        let handshake = [
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        let a = ogx.get("/ws", &handshake).await;
        assert_eq!(a.status, 403, "{}", a.body);
        ogx.stop().await;
    }

    /// `test_route_blocking_without_auth`: unconditioned rules apply without a user.
    #[tokio::test]
    async fn route_blocking_without_auth() {
        let ogx = without_auth("- permit: {paths: /v1/health}\n- permit: {paths: \"/v1/models*\"}\n").await;
        let cases = [
            (Nobody, "/v1/health", 200),
            (Nobody, "/v1/models/list", 200),
            (Nobody, "/v1/chat/completions", 403),
            (Nobody, "/v1/admin/reset", 403),
        ];
        expect(&ogx, "test_route_blocking_without_auth", &cases).await;
        ogx.stop().await;
    }

    /// `test_forbid_rule_without_auth`.
    #[tokio::test]
    async fn forbid_rule_without_auth() {
        let ogx = without_auth("- forbid: {paths: \"/v1/admin*\"}\n- permit: {paths: \"*\"}\n").await;
        let cases = [
            (Nobody, "/v1/admin/reset", 403),
            (Nobody, "/v1/admin/users", 403),
            (Nobody, "/v1/chat/completions", 200),
            (Nobody, "/v1/models/list", 200),
        ];
        expect(&ogx, "test_forbid_rule_without_auth", &cases).await;
        ogx.stop().await;
    }

    /// `test_rule_with_condition_requires_user`: a conditioned rule never matches without a user.
    #[tokio::test]
    async fn rule_with_condition_requires_user() {
        let ogx = without_auth("- permit: {paths: \"*\"}\n  when: user with admin in roles\n").await;
        expect(&ogx, "test_rule_with_condition_requires_user", &[(Nobody, "/v1/chat/completions", 403)]).await;
        ogx.stop().await;
    }

    /// `test_mixed_rules_with_and_without_conditions`: without a user, then with admin and regular users.
    #[tokio::test]
    async fn mixed_rules_with_and_without_conditions() {
        let policy = "- permit: {paths: [\"/v1/health\", \"/v1/version\"]}\n- permit: {paths: \"/v1/admin*\"}\n  when: user with admin in roles\n";
        let ogx = without_auth(policy).await;
        let cases = [
            (Nobody, "/v1/health", 200),
            (Nobody, "/v1/version", 200),
            (Nobody, "/v1/admin/reset", 403),
            (Nobody, "/v1/chat/completions", 403),
        ];
        expect(&ogx, "test_mixed_rules_with_and_without_conditions", &cases).await;
        ogx.stop().await;
        let ogx = with_users(policy).await;
        let cases = [
            (Admin, "/v1/admin/reset", 200),
            (Regular, "/v1/admin/reset", 403),
            (Admin, "/v1/chat/completions", 403),
            (Regular, "/v1/chat/completions", 403),
        ];
        expect(&ogx, "test_mixed_rules_with_and_without_conditions", &cases).await;
        ogx.stop().await;
    }

    /// `test_route_policy_with_regex`.
    #[tokio::test]
    async fn route_policy_with_regex() {
        let ogx = with_users(
            "- permit: {paths: \"regex:/v1/(chat|inference)/.*\"}\n  when: user with developer in roles\n- permit: {paths: 'regex:/v1/files/\\d+'}\n  when: user with user in roles\n",
        )
        .await;
        let cases = [
            (Developer, "/v1/chat/completions", 200),
            (Developer, "/v1/inference/run", 200),
            (Developer, "/v1/files/123", 403),
            (Regular, "/v1/files/123", 200),
            (Regular, "/v1/files/456", 200),
            (Regular, "/v1/files/upload", 403),
            (Regular, "/v1/chat/completions", 403),
        ];
        expect(&ogx, "test_route_policy_with_regex", &cases).await;
        ogx.stop().await;
    }

    /// `test_invalid_regex_pattern_logs_warning`: each invalid pattern is a
    /// config error naming the rule (OGX warns and never matches; see DIFFERENCES).
    #[tokio::test]
    async fn invalid_regex_pattern() {
        for pattern in ["regex:**", "regex:(?P<invalid", "regex:[z-a]"] {
            let text = run_yaml(&format!(
                "provider_config:\n  type: upstream_header\n  principal_header: x-auth-user-id\n  trusted_proxy_cidrs: [127.0.0.1]\nroute_policy:\n  - permit: {{paths: \"/v1/models\"}}\n  - permit: {{paths: '{pattern}'}}\n"
            ));
            let e = tokengate::Config::parse(&text, tokengate::config::Format::Yaml)
                .and_then(|c| c.build(&tokengate::Registry::with_builtins()).map(|_| ()))
                .unwrap_err();
            let shown = e.to_string();
            assert!(shown.contains("route_policy") && shown.contains("[1]"), "{pattern}: {shown}");
        }
    }

    /// Rule OGX does not test (`_evaluate_conditions`: a rule with `when` or
    /// `unless` never matches without a user, forbid rules included): OGX skips
    /// the conditioned forbid and the later permit lets the anonymous request
    /// in; tokengate refuses it (see DIFFERENCES).
    #[tokio::test]
    async fn conditioned_forbid_without_a_user() {
        let ogx = without_auth(
            "- forbid: {paths: \"/v1/files*\"}\n  unless: user with admin in roles\n- permit: {paths: \"*\"}\n",
        )
        .await;
        let cases = [(Nobody, "/v1/files/1", 403), (Nobody, "/v1/models", 200)];
        expect(&ogx, "conditioned forbid without a user", &cases).await;
        ogx.stop().await;
    }

    /// OGX applies route_policy to its public routes too; with a provider
    /// configured, tokengate answers `/v1/health` and `/v1/version` without
    /// authentication or route_policy (see DIFFERENCES). The policy is
    /// `test_no_matching_rule_denies_access`'s.
    #[tokio::test]
    async fn public_routes_with_a_provider_skip_route_policy() {
        let ogx = with_users("- permit: {paths: /v1/chat/completions}\n  when: user with developer in roles\n").await;
        for who in [Nobody, Regular] {
            for path in ["/v1/health", "/v1/version"] {
                let a = ogx.get(path, &who.headers()).await;
                assert_eq!(a.status, 200, "{who:?} {path}: {}", a.body);
            }
        }
        expect(&ogx, "route policy still applies elsewhere", &[(Regular, "/v1/models", 403)]).await;
        ogx.stop().await;
    }
}

// ------------------------------------------------------------------ test_auth_oauth2_introspection.py

/// `tests/unit/server/test_auth_oauth2_introspection.py` ([internal] in OGX:
/// they inspect the `httpx.AsyncClient` it builds). Over HTTP, against an
/// HTTPS introspection stand-in whose certificate a test CA signed.
mod test_auth_oauth2_introspection {
    use super::*;

    async fn gate(extra: &str) -> (Server, Ogx) {
        let pki = test_pki(&["127.0.0.1"]);
        let idp = Server::start_tls(pki.server_config.clone()).await;
        idp.route("/token/introspect", Reply::Json(200, json!({"active": true, "sub": "user1", "username": "user1"})));
        let dir = tempfile::tempdir().unwrap();
        let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
        let extra = extra.replace("{ca}", &ca.display().to_string());
        let auth = format!(
            "provider_config:\n  type: oauth2_token\n  introspection:\n    url: {}\n    client_id: myclient\n    client_secret: abcdefg\n{extra}",
            idp.url("/token/introspect")
        );
        (idp, Ogx::start_in(dir, &auth).await)
    }

    /// `test_introspection_uses_verify_true_by_default`: a certificate the
    /// system does not trust fails the handshake: 503.
    #[tokio::test]
    async fn introspection_uses_verify_true_by_default() {
        let (idp, ogx) = gate("").await;
        let a = ogx.get("/test", &[("authorization", "Bearer some-token")]).await;
        assert_unavailable(&a, "test_introspection_uses_verify_true_by_default");
        assert!(idp.seen().is_empty(), "no request got past the handshake");
        ogx.stop().await;
    }

    /// `test_introspection_uses_custom_ca_file`: `tls_cafile` trusts the CA: 200.
    #[tokio::test]
    async fn introspection_uses_custom_ca_file() {
        let (_idp, ogx) = gate("  tls_cafile: {ca}\n").await;
        let a = ogx.get("/test", &[("authorization", "Bearer some-token")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "user1");
        ogx.stop().await;
    }

    /// `test_introspection_disables_verification_when_verify_tls_false`: 200.
    #[tokio::test]
    async fn introspection_disables_verification_when_verify_tls_false() {
        let (_idp, ogx) = gate("  verify_tls: false\n").await;
        let a = ogx.get("/test", &[("authorization", "Bearer some-token")]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.principal(), "user1");
        ogx.stop().await;
    }
}

// ------------------------------------------------------------------ test_auth_service_unavailable.py

/// `tests/unit/server/test_auth_service_unavailable.py`: an identity service
/// that cannot be reached or answers 5xx is 503, a bad token still 401. The
/// exceptions OGX's mocks raise are real failures here: a closed port
/// (ConnectError), a server that never answers (ReadTimeout; `timeout: 1s`
/// instead of 10s to keep the suite quick), one that closes the connection at
/// once (OSError / network error).
mod test_auth_service_unavailable {
    use super::*;

    const TIMEOUT: &str = "  timeout: 1s\n";

    fn custom(endpoint: &str) -> String {
        format!("provider_config:\n  type: custom\n  endpoint: {endpoint}\n{TIMEOUT}")
    }

    fn jwks(uri: &str) -> String {
        format!("provider_config:\n  type: oauth2_token\n  audience: ogx\n  jwks:\n    uri: {uri}\n{TIMEOUT}")
    }

    fn introspection(url: &str) -> String {
        format!(
            "provider_config:\n  type: oauth2_token\n  introspection:\n    url: {url}\n    client_id: myclient\n    client_secret: abcdefg\n{TIMEOUT}"
        )
    }

    fn kubernetes(url: &str) -> String {
        format!(
            "provider_config:\n  type: kubernetes\n  api_server_url: {url}\n  verify_tls: false\n  claims_mapping: {{username: roles, groups: roles}}\n{TIMEOUT}"
        )
    }

    async fn expect_503(auth: &str, token: &str, test: &str) {
        let ogx = Ogx::start(auth).await;
        let a = ogx.get("/test", &[("authorization", &bearer(token))]).await;
        assert_unavailable(&a, test);
        ogx.stop().await;
    }

    /// `test_custom_auth_connection_error_returns_503`, `test_custom_auth_timeout_returns_503`.
    #[tokio::test]
    async fn custom_auth_unavailable() {
        expect_503(&custom(&closed_url("/validate").await), "token", "test_custom_auth_connection_error_returns_503")
            .await;
        let silent = RawServer::start(None).await;
        expect_503(&custom(&silent.url("/validate")), "token", "test_custom_auth_timeout_returns_503").await;
    }

    /// `test_jwks_connection_error_returns_503`, `test_jwks_network_error_returns_503`,
    /// `test_jwks_timeout_returns_503`, `test_jwks_http_500_returns_503`, with
    /// OGX's claims signed ES256 (see DIFFERENCES for its HS256 token).
    #[tokio::test]
    async fn jwks_unavailable() {
        let idp = Idp::unreachable().await;
        let token = idp_token(&idp, &ogx_claims());
        expect_503(&jwks(&idp.issuer.jwks_uri()), &token, "test_jwks_connection_error_returns_503").await;
        let closing = RawServer::start(Some(b"")).await;
        expect_503(&jwks(&closing.url("/.well-known/jwks.json")), &token, "test_jwks_network_error_returns_503").await;
        let silent = RawServer::start(None).await;
        expect_503(&jwks(&silent.url("/.well-known/jwks.json")), &token, "test_jwks_timeout_returns_503").await;
        let failing = Server::start().await;
        failing.route("/.well-known/jwks.json", Reply::Json(500, json!({"error": "internal"})));
        expect_503(&jwks(&failing.url("/.well-known/jwks.json")), &token, "test_jwks_http_500_returns_503").await;
    }

    /// `test_bad_token_still_returns_401`, `test_jwks_missing_kid_still_returns_401`:
    /// the key set answers, so a malformed token or an unknown `kid` is 401
    /// (after one refetch for the kid), not 503 (message: see MESSAGE_WORDING).
    #[tokio::test]
    async fn bad_token_still_returns_401() {
        let keys = Server::jwks().await;
        let ogx = Ogx::start(&jwks(&keys.url("/jwks"))).await;
        let a = ogx.get("/test", &[("authorization", "Bearer not.a.valid.jwt")]).await;
        assert_eq!(a.status, 401, "test_bad_token_still_returns_401: {}", a.body);

        let unknown_kid = token(&KEYS.ec, "unknown-kid", &with(ogx_claims(), json!({"exp": now() + 600})));
        let a = ogx.get("/test", &[("authorization", &bearer(&unknown_kid))]).await;
        assert_eq!(a.status, 401, "test_jwks_missing_kid_still_returns_401: {}", a.body);
        assert!(a.message().contains("unknown-kid"), "{}", a.message());
        assert!(keys.count("/jwks") >= 2, "the key set was fetched again for the unknown kid");
        ogx.stop().await;
    }

    /// `test_introspection_connection_error_returns_503`, `test_introspection_timeout_returns_503`.
    #[tokio::test]
    async fn introspection_unavailable() {
        let closed = closed_url("/token/introspect").await;
        expect_503(&introspection(&closed), "token", "test_introspection_connection_error_returns_503").await;
        let silent = RawServer::start(None).await;
        expect_503(&introspection(&silent.url("/token/introspect")), "token", "test_introspection_timeout_returns_503")
            .await;
    }

    /// `test_kubernetes_auth_connection_error_returns_503`, `test_kubernetes_auth_timeout_returns_503`.
    #[tokio::test]
    async fn kubernetes_auth_unavailable() {
        let closed = closed_url("").await;
        expect_503(&kubernetes(&closed), "token", "test_kubernetes_auth_connection_error_returns_503").await;
        let silent = RawServer::start(None).await;
        expect_503(&kubernetes(&silent.url("")), "token", "test_kubernetes_auth_timeout_returns_503").await;
    }
}

// ------------------------------------------------------------------ test_replace_env_vars.py

/// The `server.auth` cases of `tests/unit/server/test_replace_env_vars.py`
/// ([internal] in OGX: `replace_env_vars` on a dict). Black-box: the run.yaml
/// with that environment, then a request. Variables that must be set go to
/// the real `tokengate check` binary (never set in this process, which runs
/// other tests' threads); unset ones are read in-process under OGX's names.
mod test_replace_env_vars {
    use super::*;

    async fn check_with_env(config: &Path, token: &str, set: &[(&str, &str)], unset: &[&str]) -> std::process::Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tokengate"));
        cmd.args(["check", "--config", &config.display().to_string(), "--token", token]);
        cmd.stdin(std::process::Stdio::null());
        for (name, value) in set {
            cmd.env(name, value);
        }
        for name in unset {
            cmd.env_remove(name);
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
    }

    fn assert_unset(names: &[&str]) {
        for name in names {
            assert!(std::env::var_os(name).is_none(), "this case needs {name} unset in the test environment");
        }
    }

    const CONDITIONAL: &str = "provider_config:\n  type: \"${env.AUTH_PROVIDER:+oauth2_token}\"\n  audience: ogx\n  issuer: https://auth.example.com\nroute_policy: []\n";

    /// The error a run.yaml gets when its provider `type` expands to nothing and nothing would be refused.
    fn switched_off_error(auth: &str) -> String {
        let text = run_yaml(auth);
        match tokengate::Config::parse(&text, tokengate::config::Format::Yaml) {
            Ok(_) => panic!("loaded: {auth}"),
            Err(e) => e.to_string(),
        }
    }

    const SWITCHED_OFF: &str =
        "authentication is off (its `type` expands to nothing) and no route_policy refuses anything";

    /// `test_auth_provider_disabled_when_type_not_set`,
    /// `test_auth_provider_disabled_when_type_is_empty`: the type expands to
    /// nothing, so OGX turns authentication off, and with `route_policy: []`
    /// lets every request in. tokengate refuses to start like that (see
    /// DIFFERENCES); with a route_policy that refuses something it runs without
    /// a provider, as OGX does, and the policy judges anonymous requests.
    #[tokio::test]
    async fn auth_provider_disabled_when_type_is_empty() {
        assert_unset(&["AUTH_PROVIDER", "NOT_SET"]);
        let empty = "provider_config:\n  type: \"${env.NOT_SET:=}\"\n  audience: ogx\nroute_policy: []\n";
        for auth in [CONDITIONAL, empty] {
            let e = switched_off_error(auth);
            assert!(e.contains("server.auth.provider_config") && e.contains(SWITCHED_OFF), "{auth}: {e}");

            let with_policy = auth.replace("route_policy: []\n", "route_policy:\n  - permit: {paths: /v1/models}\n");
            let ogx = Ogx::start(&with_policy).await;
            let a = ogx.get("/v1/models", &[]).await;
            assert_eq!(a.status, 200, "{with_policy}: {}", a.body);
            assert_eq!(a.principal(), "", "nobody is authenticated");
            assert_eq!(ogx.get("/v1/chat/completions", &[]).await.status, 403);
            ogx.stop().await;
        }
    }

    /// `test_auth_provider_enabled_when_type_is_set`, `test_auth_provider_with_hardcoded_type`:
    /// authentication is on, with the issuer as written. OGX's StackConfig
    /// would then refuse the provider for lack of `jwks`/`introspection`;
    /// tokengate loads it, with OIDC discovery (see DIFFERENCES).
    #[tokio::test]
    async fn auth_provider_enabled_when_type_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let hardcoded = CONDITIONAL.replace("\"${env.AUTH_PROVIDER:+oauth2_token}\"", "oauth2_token");
        for (name, auth) in [("conditional.yaml", CONDITIONAL), ("hardcoded.yaml", hardcoded.as_str())] {
            let path = write(dir.path(), name, &run_yaml(auth));
            let out = check_with_env(&path, "x", &[("AUTH_PROVIDER", "yes")], &[]).await;
            assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
            let body: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with(
                    "Authentication required. Please provide a valid OAuth2 Bearer token from https://auth.example.com"
                ),
                "{name}: {message}"
            );
        }
    }

    /// `test_auth_provider_with_complex_config`: `ENABLE_AUTH=true`,
    /// `KEYCLOAK_URL` pointing at a stand-in Keycloak realm: the token is
    /// verified against the expanded `jwks.uri` and `issuer`. With both unset,
    /// authentication is off and the bare `${env.KEYCLOAK_URL}` is never expanded
    /// (tokengate then refuses to start without a refusing route_policy, as above).
    #[tokio::test]
    async fn auth_provider_with_complex_config() {
        let auth = "provider_config:\n  type: \"${env.ENABLE_AUTH:+oauth2_token}\"\n  audience: account\n  issuer: \"${env.KEYCLOAK_URL}/realms/ogx\"\n  jwks:\n    uri: \"${env.KEYCLOAK_URL}/realms/ogx/protocol/openid-connect/certs\"\n";
        let keycloak = Server::start().await;
        keycloak.route("/realms/ogx/protocol/openid-connect/certs", Reply::Json(200, standard_jwks()));
        let base = keycloak.url("");
        let claims =
            json!({"sub": "kc-user", "iss": format!("{base}/realms/ogx"), "aud": "account", "exp": now() + 600});
        let jwt = token(&KEYS.ec, "ec-1", &claims);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "run.yaml", &run_yaml(auth));
        let out = check_with_env(&path, &jwt, &[("ENABLE_AUTH", "true"), ("KEYCLOAK_URL", base.as_str())], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
        let body: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(body["principal"], "kc-user");
        assert_eq!(keycloak.count("/realms/ogx/protocol/openid-connect/certs"), 1);

        // Unset: authentication off, and the bare `${env.KEYCLOAK_URL}` is not
        // expanded (the error is the switch's, not the variable's).
        assert_unset(&["ENABLE_AUTH", "KEYCLOAK_URL"]);
        let e = switched_off_error(auth);
        assert!(e.contains(SWITCHED_OFF) && !e.contains("KEYCLOAK_URL"), "{e}");
    }
}

// ------------------------------------------------------------------ integration-auth-tests.sh

/// `scripts/integration-auth-tests.sh` (OGX's only end-to-end auth test:
/// Kubernetes ServiceAccount tokens as `oauth2_token` JWTs against the
/// cluster's key set, fetched over TLS with `tls_cafile` and `jwks.token`).
/// The cluster is a real ES256 issuer whose key set an HTTPS stand-in serves.
/// Steps 8.4–8.9 are OGX's own resource checks (ABAC on files); what a
/// gateway can see of them is that both users reach `/v1/files…`.
mod integration_auth {
    use super::*;

    #[tokio::test]
    async fn integration_auth_tests() {
        let idp = Idp::start().await;
        let pki = test_pki(&["127.0.0.1"]);
        let cluster = Server::start_tls(pki.server_config.clone()).await;
        cluster.route("/openid/v1/jwks", Reply::Json(200, idp.issuer.jwks()));
        let dir = tempfile::tempdir().unwrap();
        let ca = write(dir.path(), "ca.crt", &pki.ca_pem);
        let audience = "https://kubernetes.default.svc.cluster.local";
        let sa = |name: &str| {
            let claims = json!({"sub": format!("system:serviceaccount:ogx:{name}"), "aud": [audience]});
            idp_token(&idp, &claims)
        };
        let (ogx_auth, user1, user2) = (sa("ogx-auth"), sa("ogx-user1"), sa("ogx-user2"));
        let auth = format!(
            r#"provider_config:
  type: oauth2_token
  tls_cafile: {ca}
  issuer: {issuer}
  audience: {audience}
  jwks:
    uri: {jwks}
    token: {ogx_auth}
access_policy:
  - permit: {{actions: [read, delete], resource: "sql_record::openai_files::*"}}
    when: ["user with system:serviceaccount:ogx:ogx-user1 in roles", "user in owners roles"]
    description: User1 can read and delete their Files
  - permit: {{actions: [read], resource: "regex:sql_record::openai_files::file-[a-f0-9-]+"}}
    when: ["user in owners roles"]
    description: Owners can read their Files
route_policy:
  - permit: {{paths: ["/v1/health", "/v1/version"]}}
    description: Public endpoints (no auth required)
  - permit: {{paths: "regex:^/v1/(files|providers)(/.*)?$"}}
    description: Authenticated users can access files and providers endpoints (regex test)
  - forbid: {{paths: "*"}}
    description: Forbid all other routes by default
"#,
            ca = ca.display(),
            issuer = idp.url(),
            jwks = cluster.url("/openid/v1/jwks"),
        );
        let ogx = Ogx::start_in(dir, &auth).await;
        use reqwest::Method;
        let steps: Vec<(&str, Method, &str, Option<&str>, u16)> = vec![
            ("8.1", Method::GET, "/v1/version", None, 200),
            ("8.2", Method::GET, "/v1/providers", None, 401),
            ("8.3", Method::GET, "/v1/providers", Some(ogx_auth.as_str()), 200),
            ("8.4", Method::POST, "/v1/files", Some(user1.as_str()), 200),
            ("8.4", Method::POST, "/v1/files", Some(user2.as_str()), 200),
            ("8.5", Method::GET, "/v1/files", Some(user1.as_str()), 200),
            ("8.6", Method::GET, "/v1/files", Some(user2.as_str()), 200),
            ("8.7", Method::DELETE, "/v1/files/file-0b1c2d3e", Some(user2.as_str()), 200),
            ("8.8", Method::DELETE, "/v1/files/file-4f5a6b7c", Some(user1.as_str()), 200),
            ("8.10", Method::GET, "/v1/models", Some(user1.as_str()), 403),
        ];
        for (step, method, path, token, status) in steps {
            let authorization = token.map(bearer);
            let headers: Vec<(&str, &str)> = authorization.iter().map(|t| ("authorization", t.as_str())).collect();
            let a = ogx.send(method.clone(), path, &headers).await;
            assert_eq!(a.status, status, "step {step}: {method} {path}: {}", a.body);
            if status == 200 && token.is_some() {
                assert!(a.principal().starts_with("system:serviceaccount:ogx:"), "step {step}");
                assert!(
                    a.attributes()["roles"][0].starts_with("system:serviceaccount:ogx:"),
                    "default mapping: sub → roles"
                );
            }
        }
        let seen = cluster.seen();
        assert!(!seen.is_empty());
        let expected = ("authorization".to_string(), bearer(&ogx_auth));
        assert!(seen.iter().all(|s| s.headers.contains(&expected)), "the key set is fetched with jwks.token");
        ogx.stop().await;
    }
}

// ------------------------------------------------------------------ OGX's defaults

/// OGX's `OAuth2TokenAuthConfig` defaults (`src/ogx/core/datatypes.py`), which
/// every run.yaml without those fields relies on. Not a test file of OGX's:
/// these check what its tests take for granted.
mod ogx_defaults {
    use super::*;

    /// `audience` defaults to `ogx` (since the rename, #5613, 2026-04-24;
    /// `llama-stack` before): OGX's own tokens pass a run.yaml without
    /// `audience`; tokengate accepts Llama Stack's `llama-stack` there too.
    #[tokio::test]
    async fn default_audience_is_ogx() {
        let idp = Idp::start().await;
        let ogx = Ogx::start(&format!(
            "provider_config:\n  type: oauth2_token\n  jwks:\n    uri: {}\n",
            idp.issuer.jwks_uri()
        ))
        .await;
        let a = ogx.get("/test", &[("authorization", &bearer(&idp_token(&idp, &ogx_claims())))]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let old = idp_token(&idp, &with(ogx_claims(), json!({"aud": "llama-stack"})));
        assert_eq!(ogx.get("/test", &[("authorization", &bearer(&old))]).await.status, 200);
        let other = idp_token(&idp, &with(ogx_claims(), json!({"aud": "someone-else"})));
        assert_eq!(ogx.get("/test", &[("authorization", &bearer(&other))]).await.status, 401);
        ogx.stop().await;
    }

    /// The default `claims_mapping` has `tenant: namespaces` (since
    /// Llama Stack's #2185): a `tenant` claim becomes the `namespaces` attribute.
    #[tokio::test]
    async fn default_claims_mapping_maps_tenant_to_namespaces() {
        let idp = Idp::start().await;
        let ogx = Ogx::start(&format!(
            "provider_config:\n  type: oauth2_token\n  audience: ogx\n  jwks:\n    uri: {}\n",
            idp.issuer.jwks_uri()
        ))
        .await;
        let claims = json!({"sub": "my-user", "aud": "ogx", "tenant": "my-tenant", "namespace": "research"});
        let a = ogx.get("/test", &[("authorization", &bearer(&idp_token(&idp, &claims)))]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.attribute_sets()["namespaces"], expect_sets(json!({"n": ["my-tenant", "research"]}))["n"]);
        ogx.stop().await;
    }
}

// ------------------------------------------------------------------ not replayed
//
// [internal] cases with no HTTP equivalent, skipped:
//
// - test_auth.py::test_get_attributes_from_claims' "implied rule" (a claim that
//   is neither a string nor a list is skipped): OGX has no test for it, and
//   tokengate's rule differs on purpose (numbers and booleans become strings;
//   README "Claims mapping").
// - test_auth_upstream_header.py::test_authenticated_client_id_uses_principal:
//   reads `scope["authenticated_client_id"]` through an added route; a gateway
//   forwards the principal (asserted in upstream_header_cases), there is no
//   client-id scope to observe.
// - test_auth_upstream_header.py::test_provider_requires_http_bearer_false:
//   a Python property; its HTTP consequence is test_no_bearer_token_required.
// - test_auth_upstream_header.py::test_provider_validate_token_none_scope:
//   `validate_token(scope=None)` cannot be expressed as an HTTP request.
// - test_auth_oauth2_introspection.py: the three tests assert the arguments
//   of `httpx.AsyncClient(verify=…)` and a log line; replayed by their HTTP
//   consequences above, the log line (`TLS verification is disabled…`) is not.
// - test_route_auth.py::test_invalid_regex_pattern_logs_warning's WARNING line:
//   tokengate refuses the config instead (invalid_regex_pattern).
// - test_route_auth.py `create_app_with_route_policy`: a helper no test uses.
// - test_auth.py (6), test_auth_github.py (2), test_auth_upstream_header.py (2):
//   the inner `test_endpoint` route handlers counted among `def test_` lines.
// - test_auth_service_unavailable.py: the four inner route handlers.
// - integration-auth-tests.sh steps 8.4–8.9's expectations on OGX's storage
//   (file counts, 404 for another user's file): ABAC inside OGX, behind the
//   gateway; the gateway's part (both users reach /v1/files…) is asserted.
// - tests/evals/multitenant/*: in-process ABAC evals over `User` objects, no
//   HTTP and no auth config; OGX has no tenancy tests to replay.
