//! `kubernetes`: the Kubernetes API server says who a token belongs to.
//!
//! Two ways to ask it (`review:`):
//!
//! * `self_subject_review` (default, Kubernetes ≥ 1.28): the client's own token
//!   creates a `SelfSubjectReview`, and the API server answers with the user it
//!   authenticated. Needs no credentials of tokengate's own; every
//!   authenticated user may create one under the default RBAC policy.
//! * `token_review`: tokengate creates a `TokenReview` with its own
//!   ServiceAccount token (`auth_token` / `auth_token_file`, whose account
//!   needs `system:auth-delegator`), optionally for given `audiences`.
//!
//! Either way the user info becomes claims `{username, uid, groups, extra}`
//! mapped by `claims_mapping` (default `username → roles`, `groups → teams`;
//! in a run.yaml OGX's `username → roles`, `groups → roles`),
//! and the principal is the username. Results are cached by token hash.
//!
//! Imports: the contract (`tokengate-api`), the shared HTTP machinery
//! (`tokengate-kit`) and third-party crates; never `tokengate` itself.
//!
//! One file, past 400 lines, because the config, the two reviews and the
//! verdicts on their answers are one exchange with the API server: split, each
//! review's request would sit apart from its answer.

#![warn(missing_docs)]

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokengate_api::Description;
use tokengate_api::{
    parse_provider_config, AuthError, AuthProvider, BuildContext, ClaimsMapping, ConfigError, DynProvider, Principal,
    ProviderBuilder, RequestContext, Secret,
};
use tokengate_kit::{
    read_body_limited, redirect_failure, CacheConfig, HttpFailure, RemoteResultCache, UpstreamLimit, Validated,
};
use url::Url;

const SELF_SUBJECT_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// How long a reviewer token read from `auth_token_file` is used before the
/// file is read again: the kubelet rotates projected ServiceAccount tokens
/// well before they expire, and client-go re-reads them on the same cadence.
const AUTH_TOKEN_FILE_REFRESH: Duration = Duration::from_secs(60);

/// Messages copied from the API server into error details are cut to this.
const MAX_SERVER_MESSAGE_CHARS: usize = 300;

/// How the API server is asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReviewMode {
    /// POST a `SelfSubjectReview` authenticated with the client's token.
    #[default]
    SelfSubjectReview,
    /// POST a `TokenReview` authenticated with tokengate's own token.
    TokenReview,
}

impl ReviewMode {
    fn as_str(self) -> &'static str {
        match self {
            ReviewMode::SelfSubjectReview => "self_subject_review",
            ReviewMode::TokenReview => "token_review",
        }
    }
}

/// `provider_config` for `type: kubernetes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The API server (default `https://kubernetes.default.svc`, its name inside a cluster, as OGX).
    #[serde(default = "default_api_server_url")]
    pub api_server_url: String,
    /// Which review is created: `self_subject_review` (default) or `token_review`.
    #[serde(default)]
    pub review: ReviewMode,
    /// `token_review` only: tokengate's own token for creating TokenReviews.
    #[serde(default)]
    pub auth_token: Option<Secret>,
    /// `token_review` only: a file holding that token (re-read every minute, as
    /// projected ServiceAccount tokens rotate), relative to the config file.
    #[serde(default)]
    pub auth_token_file: Option<PathBuf>,
    /// `token_review` only: audiences the token must be valid for (default: the API server's).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims `username`, `uid`, `groups`, `extra.<key>` → attributes.
    #[serde(default)]
    pub claims_mapping: Option<ClaimsMapping>,
    /// Claim of the user info that names the tenant, with the path syntax of
    /// `claims_mapping` (`extra.tenant`, `groups`…). Lower-cased; a value that is
    /// not a tenant id (or a list of more than one) is refused (401).
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// Result cache, keyed by token hash (default on, ttl 60s).
    #[serde(default)]
    pub cache: CacheConfig,
    /// Verify the API server's TLS certificate (default true).
    #[serde(default = "tokengate_kit::defaults::on")]
    pub verify_tls: bool,
    /// The cluster's CA bundle (in a pod: `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`).
    #[serde(default)]
    pub tls_cafile: Option<PathBuf>,
    /// Time allowed to connect (default 3s).
    #[serde(default = "tokengate_kit::defaults::connect_timeout", with = "tokengate_kit::duration")]
    pub connect_timeout: Duration,
    /// Time allowed for each review (default 10s).
    #[serde(default = "tokengate_kit::defaults::timeout", with = "tokengate_kit::duration")]
    pub timeout: Duration,
    /// Largest reply read (default 1 MiB).
    #[serde(default = "tokengate_kit::defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Most reviews in flight to the API server at once (default 64); more fail with 503.
    #[serde(default = "tokengate_kit::defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
}

/// The API server's name inside a cluster.
pub const IN_CLUSTER_API_SERVER: &str = "https://kubernetes.default.svc";

fn default_api_server_url() -> String {
    IN_CLUSTER_API_SERVER.to_string()
}

/// The default `claims_mapping`: the user's name as a role, groups as teams.
pub fn default_claims_mapping() -> ClaimsMapping {
    ClaimsMapping::new([("username", "roles"), ("groups", "teams")]).unwrap_or_default()
}

/// OGX's default `claims_mapping`, used in a run.yaml: the user's name and groups as roles.
pub fn ogx_claims_mapping() -> ClaimsMapping {
    ClaimsMapping::new([("username", "roles"), ("groups", "roles")]).unwrap_or_default()
}

/// Builds `type: kubernetes` providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct KubernetesBuilder;

impl ProviderBuilder for KubernetesBuilder {
    fn type_name(&self) -> &'static str {
        "kubernetes"
    }

    fn build(&self, config: serde_json::Value, ctx: &BuildContext) -> Result<DynProvider, ConfigError> {
        Ok(Arc::new(KubernetesProvider::from_config(parse_provider_config(config)?, ctx)?))
    }
}

/// Where the reviewer's own token comes from.
enum ReviewerToken {
    Inline(Secret),
    File { path: PathBuf, refresh: Duration, cached: Mutex<(Secret, Instant)> },
}

impl ReviewerToken {
    fn read_file(path: &std::path::Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        Ok(Secret::new(token))
    }

    /// The token to send now; a file is re-read once its copy is a minute old.
    async fn current(&self) -> Secret {
        match self {
            ReviewerToken::Inline(secret) => secret.clone(),
            ReviewerToken::File { path, refresh, cached } => {
                {
                    let cached = cached.lock().unwrap_or_else(|p| p.into_inner());
                    if cached.1.elapsed() < *refresh {
                        return cached.0.clone();
                    }
                }
                let path_for_read = path.clone();
                let fresh = tokio::task::spawn_blocking(move || Self::read_file(&path_for_read))
                    .await
                    .unwrap_or_else(|e| Err(format!("reading the token file failed: {e}")));
                let mut cached = cached.lock().unwrap_or_else(|p| p.into_inner());
                match fresh {
                    Ok(secret) => *cached = (secret, Instant::now()),
                    Err(message) => {
                        // The last token read may well still be valid; keep using it
                        // and try again at the next refresh rather than failing now.
                        tracing::warn!(error = %message, "auth_token_file unreadable; using the token read before");
                        cached.1 = Instant::now();
                    }
                }
                cached.0.clone()
            }
        }
    }
}

/// Validates tokens by asking the Kubernetes API server. See the crate docs.
pub struct KubernetesProvider {
    base: String,
    review_url: Url,
    review: ReviewMode,
    reviewer: Option<ReviewerToken>,
    audiences: Vec<String>,
    mapping: ClaimsMapping,
    tenant_claim: Option<String>,
    client: reqwest::Client,
    max_response_bytes: usize,
    limit: UpstreamLimit,
    cache: RemoteResultCache,
}

impl fmt::Debug for KubernetesProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesProvider")
            .field("review_url", &self.review_url.as_str())
            .field("review", &self.review)
            .field("audiences", &self.audiences)
            .field("reviewer_token", &self.reviewer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl KubernetesProvider {
    /// Checks which fields go with which `review` and builds the client; reads `auth_token_file` now.
    pub fn from_config(config: KubernetesConfig, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let base = parse_api_server_url(&config.api_server_url).map_err(|m| ConfigError::new("api_server_url", m))?;
        let path = match config.review {
            ReviewMode::SelfSubjectReview => SELF_SUBJECT_REVIEW_PATH,
            ReviewMode::TokenReview => TOKEN_REVIEW_PATH,
        };
        // Appending (not `Url::join`) keeps a path prefix such as a Rancher or
        // kubectl-proxy mount (`https://rancher/k8s/clusters/c-1`).
        let review_url = Url::parse(&format!("{}{path}", base.as_str().trim_end_matches('/')))
            .map_err(|e| ConfigError::new("api_server_url", format!("cannot append {path}: {e}")))?;

        let reviewer = match config.review {
            ReviewMode::SelfSubjectReview => {
                for (field, set) in [
                    ("auth_token", config.auth_token.is_some()),
                    ("auth_token_file", config.auth_token_file.is_some()),
                    ("audiences", !config.audiences.is_empty()),
                ] {
                    if set {
                        return Err(ConfigError::new(
                            field,
                            "is only used with `review: token_review`; a SelfSubjectReview is made with the client's own token",
                        ));
                    }
                }
                None
            }
            ReviewMode::TokenReview => Some(match (config.auth_token, config.auth_token_file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        "auth_token_file",
                        "set either `auth_token` or `auth_token_file`, not both",
                    ))
                }
                (None, None) => return Err(ConfigError::new(
                    "auth_token",
                    "`review: token_review` needs tokengate's own token to create TokenReviews: set `auth_token` or \
                         `auth_token_file` (in a pod: /var/run/secrets/kubernetes.io/serviceaccount/token)",
                )),
                (Some(token), None) if token.expose().trim().is_empty() => {
                    return Err(ConfigError::new("auth_token", "is empty"))
                }
                (Some(token), None) => ReviewerToken::Inline(Secret::new(token.expose().trim())),
                (None, Some(path)) => {
                    let path = ctx.resolve(&path);
                    let token = ReviewerToken::read_file(&path).map_err(|m| ConfigError::new("auth_token_file", m))?;
                    ReviewerToken::File {
                        path,
                        refresh: AUTH_TOKEN_FILE_REFRESH,
                        cached: Mutex::new((token, Instant::now())),
                    }
                }
            }),
        };
        if config.tenant_claim.as_ref().is_some_and(|c| c.trim().is_empty()) {
            return Err(ConfigError::new("tenant_claim", "is empty"));
        }
        if let Some(i) = config.audiences.iter().position(|a| a.trim().is_empty()) {
            return Err(ConfigError::new(format!("audiences[{i}]"), "is empty"));
        }

        let http = tokengate_kit::http_options!(config, ctx);
        // Reviews carry a bearer token (the client's or tokengate's own): no redirects.
        let client = http.build_credentialed_client()?;
        Ok(KubernetesProvider {
            base: base.as_str().trim_end_matches('/').to_string(),
            review_url,
            review: config.review,
            reviewer,
            audiences: config.audiences,
            tenant_claim: config.tenant_claim,
            mapping: config.claims_mapping.unwrap_or_else(|| match ctx.llama_stack_defaults {
                true => ogx_claims_mapping(),
                false => default_claims_mapping(),
            }),
            client,
            max_response_bytes: config.max_response_bytes,
            limit: http.build_limit("kubernetes")?,
            cache: RemoteResultCache::new(&config.cache).with_shared(ctx),
        })
    }

    /// `what` for error details: which call to which server.
    fn what(&self) -> String {
        let kind = match self.review {
            ReviewMode::SelfSubjectReview => "SelfSubjectReview",
            ReviewMode::TokenReview => "TokenReview",
        };
        format!("{kind} at the Kubernetes API server {}", self.base)
    }

    async fn review(&self, token: &str) -> Result<Validated, AuthError> {
        let what = self.what();
        let _slot = self.limit.acquire(&what).await?;
        let request = match (&self.review, &self.reviewer) {
            (ReviewMode::TokenReview, Some(reviewer)) => {
                let mut spec = json!({ "token": token });
                if !self.audiences.is_empty() {
                    spec["audiences"] = json!(self.audiences);
                }
                let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec});
                self.client.post(self.review_url.clone()).bearer_auth(reviewer.current().await.expose()).json(&body)
            }
            _ => {
                let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
                self.client.post(self.review_url.clone()).bearer_auth(token).json(&body)
            }
        };
        let started = Instant::now();
        let response = request.header(http::header::ACCEPT, "application/json").send().await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                self.record("error", started);
                return Err(HttpFailure::from_reqwest(&what, &e).into());
            }
        };
        if let Some(err) = redirect_failure(&what, &response) {
            self.record("error", started);
            return Err(err);
        }
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = read_body_limited(&what, response, self.max_response_bytes).await;
        let outcome = body.and_then(|body| self.interpret(&what, token, status.as_u16(), &body, retry_after));
        self.record(
            match &outcome {
                Ok(_) => "authenticated",
                Err(e) if e.kind() == tokengate_api::ErrorKind::InvalidToken => "rejected",
                Err(_) => "error",
            },
            started,
        );
        outcome
    }

    fn record(&self, outcome: &'static str, started: Instant) {
        let review = self.review.as_str();
        metrics::counter!("tokengate_kubernetes_reviews_total", "review" => review, "outcome" => outcome).increment(1);
        metrics::histogram!("tokengate_kubernetes_review_seconds", "review" => review)
            .record(started.elapsed().as_secs_f64());
    }

    /// Turns the API server's answer into a principal or a classified error.
    fn interpret(
        &self,
        what: &str,
        token: &str,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Result<Validated, AuthError> {
        let server_says = || status_message(body, token);
        let token_review = self.review == ReviewMode::TokenReview;
        match status {
            200 | 201 => {}
            401 if token_review => {
                // Here 401 is about *our* credentials, not the client's token.
                return Err(AuthError::unavailable(format!(
                    "{what}: the reviewer's auth_token was rejected (401{}); renew it or check auth_token_file",
                    server_says()
                )));
            }
            401 => {
                return Err(AuthError::invalid_token(format!(
                    "the Kubernetes API server did not accept the token (401{})",
                    server_says()
                )))
            }
            403 if token_review => {
                return Err(AuthError::unavailable(format!(
                    "{what}: the reviewer may not create tokenreviews (403{}); bind its ServiceAccount to the \
                     `system:auth-delegator` ClusterRole",
                    server_says()
                )));
            }
            403 => {
                // The token authenticated (or it would be 401) but may not create
                // selfsubjectreviews; the token may be fine, so this is not its fault.
                return Err(AuthError::unavailable(format!(
                    "{what}: the token's user may not create selfsubjectreviews (403{}); allow it by RBAC or use \
                     `review: token_review`",
                    server_says()
                )));
            }
            404 if !token_review => {
                return Err(AuthError::unavailable(format!(
                    "{what}: not found (404{}); SelfSubjectReview needs Kubernetes 1.28 or later, use \
                     `review: token_review` on older clusters",
                    server_says()
                )));
            }
            429 => {
                let e = AuthError::unavailable(format!("{what}: rate limited (429{})", server_says()));
                return Err(match retry_after {
                    Some(after) => e.with_retry_after(after),
                    None => e,
                });
            }
            other => {
                return Err(AuthError::unavailable(format!(
                    "{what}: answered {other}{}",
                    server_says_with_colon(body, token)
                )))
            }
        }

        let review: Value = serde_json::from_slice(body)
            .map_err(|e| AuthError::unavailable(format!("{what}: answered {status} with invalid JSON ({e})")))?;
        // The kind first: something else answering on this path (a proxy's
        // login page as JSON, a Status) should be named as such, not as a bad shape.
        let expected = if token_review { "TokenReview" } else { "SelfSubjectReview" };
        if let Some(kind) = review.get("kind").and_then(Value::as_str).filter(|k| *k != expected) {
            return Err(AuthError::unavailable(format!("{what}: answered with a `{kind}` object, not a {expected}")));
        }
        let review: Review = serde_json::from_value(review)
            .map_err(|e| AuthError::unavailable(format!("{what}: answered a {expected} of unexpected shape ({e})")))?;
        let status_obj = review.status.unwrap_or_default();
        if token_review {
            if status_obj.authenticated != Some(true) {
                let reason = status_obj.error.as_deref().map(|e| sanitize(e, token)).filter(|e| !e.is_empty());
                return Err(AuthError::invalid_token(match reason {
                    Some(reason) => format!("the Kubernetes API server did not authenticate the token: {reason}"),
                    None => "the Kubernetes API server did not authenticate the token".to_string(),
                }));
            }
            self.check_audiences(what, status_obj.audiences.as_deref().unwrap_or_default())?;
        }
        // The same UserInfo sits under different names in the two kinds.
        let (user, field) =
            if token_review { (status_obj.user, "status.user") } else { (status_obj.user_info, "status.userInfo") };
        let user = user.ok_or_else(|| AuthError::unavailable(format!("{what}: answered without {field}")))?;
        let username = user.username.clone().unwrap_or_default();
        if username.is_empty() {
            return Err(AuthError::unavailable(format!("{what}: answered without {field}.username")));
        }
        let claims = json!({
            "username": username,
            "uid": user.uid,
            "groups": user.groups,
            "extra": user.extra,
        });
        let tenant = match &self.tenant_claim {
            Some(claim) => tokengate_api::tenant_from(&claims, claim, &format!("the user info's `{claim}`"))?,
            None => None,
        };
        let principal = Principal::new(username).with_attributes(self.mapping.apply(&claims)).with_tenant(tenant);
        Ok(Validated { principal, expires_at: jwt_expiry(token) })
    }

    /// A TokenReview for `audiences` must confirm one of them: an API server
    /// that ignores `spec.audiences` would otherwise accept tokens meant for
    /// any other audience (the TokenReview API documents this check).
    fn check_audiences(&self, what: &str, confirmed: &[String]) -> Result<(), AuthError> {
        if self.audiences.is_empty() || confirmed.iter().any(|a| self.audiences.contains(a)) {
            return Ok(());
        }
        if confirmed.is_empty() {
            // Empty means "valid for the API server's own audience" only; the
            // authenticator behind it ignored spec.audiences, which no client
            // token can fix.
            return Err(AuthError::unavailable(format!(
                "{what}: authenticated the token but confirmed none of the audiences {:?} (status.audiences is \
                 empty: its authenticator is not audience-aware)",
                self.audiences
            )));
        }
        Err(AuthError::invalid_token(format!(
            "the token is for the audiences {confirmed:?}, not any of {:?}",
            self.audiences
        )))
    }
}

#[async_trait]
impl AuthProvider for KubernetesProvider {
    async fn validate(&self, token: &str, _ctx: &RequestContext) -> Result<Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::invalid_token("the token is empty"));
        }
        // A token that cannot be put in a header would fail inside reqwest and
        // read as an outage; it is the client's malformed credential.
        if http::HeaderValue::from_str(token).is_err() {
            return Err(AuthError::invalid_token("the token contains characters not allowed in an HTTP header"));
        }
        self.cache.get_or_validate(token, || self.review(token)).await
    }

    fn describe(&self) -> Description {
        Description::new("kubernetes")
            .with_message(format!(
                "Authentication required. Send a Kubernetes token (e.g. a ServiceAccount token) as \
                 `Authorization: Bearer <token>`; it is verified by the Kubernetes API server at {}",
                self.base
            ))
            .accepting(format!("Kubernetes tokens (checked by {})", self.base))
            .with_mapping(self.mapping.clone())
    }
}

fn parse_api_server_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; use `auth_token` for token_review".to_string());
    }
    match url.scheme() {
        "https" => Ok(url),
        // Plain HTTP would put every client's token on the wire in clear; it is
        // allowed only to this machine (kubectl proxy, tests).
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "`{text}` uses http:// to a host other than this machine; tokens would cross the network in clear, use https://"
        )),
        other => Err(format!("`{text}` has scheme `{other}`; use https://")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `Retry-After` in delta-seconds form. Lenient on purpose: it is the API
/// server's reply, not the client's request, and only paces retries.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A server-provided message made safe for an error detail: the token (should
/// a server ever echo it) is cut out, control characters dropped, length capped.
fn sanitize(message: &str, token: &str) -> String {
    let message = if token.is_empty() { message.to_string() } else { message.replace(token, "<token>") };
    let cleaned: String = message.chars().filter(|c| !c.is_control()).collect();
    let mut out: String = cleaned.trim().chars().take(MAX_SERVER_MESSAGE_CHARS).collect();
    if cleaned.trim().chars().count() > MAX_SERVER_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// The `message` of a Kubernetes `Status` error body, as `: message`, or nothing.
fn status_message(body: &[u8], token: &str) -> String {
    serde_json::from_slice::<StatusObject>(body)
        .ok()
        .and_then(|s| s.message)
        .map(|m| sanitize(&m, token))
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

/// Like [`status_message`], falling back to the start of a non-Status body.
fn server_says_with_colon(body: &[u8], token: &str) -> String {
    let from_status = status_message(body, token);
    if !from_status.is_empty() {
        return from_status;
    }
    let text = sanitize(&String::from_utf8_lossy(body), token);
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.chars().take(120).collect::<String>())
    }
}

/// `exp` of a JWT-shaped token, read without verification.
///
/// Only ever used to *shorten* how long a result is cached (the API server has
/// already verified the token), so a cached principal never outlives its token.
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let exp = serde_json::from_slice::<Value>(&bytes).ok()?.get("exp")?.as_u64()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

// Response shapes (authentication.k8s.io/v1).

#[derive(Deserialize)]
struct Review {
    #[serde(default)]
    status: Option<ReviewStatus>,
}

#[derive(Deserialize, Default)]
struct ReviewStatus {
    /// TokenReview only.
    #[serde(default)]
    authenticated: Option<bool>,
    /// SelfSubjectReview's name for the user.
    #[serde(default, rename = "userInfo")]
    user_info: Option<UserInfo>,
    /// TokenReview's name for the user.
    #[serde(default)]
    user: Option<UserInfo>,
    /// TokenReview only.
    #[serde(default)]
    error: Option<String>,
    /// TokenReview only.
    #[serde(default)]
    audiences: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct UserInfo {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    extra: BTreeMap<String, Vec<String>>,
}

/// A `kind: Status` error body.
#[derive(Deserialize)]
struct StatusObject {
    #[serde(default)]
    message: Option<String>,
}

#[cfg(test)]
mod tests;
