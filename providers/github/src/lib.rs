//! `github_token`: GitHub access tokens, checked by asking GitHub who they belong to.
//!
//! Compatible with Llama Stack's `GitHubTokenAuthProvider` (`github_api_base_url`,
//! `claims_mapping`, the 401 message), and extended with organizations:
//!
//! 1. `GET {base}/user` with the token: its `login` is the principal;
//! 2. `GET {base}/user/orgs?per_page=100`, following `Link: <…>; rel="next"`
//!    (or, when the answer has no `Link` header, `&page=2, 3, …` until a page
//!    is not full) for
//!    at most `max_org_pages` pages (0 skips the call), and only to the same
//!    scheme, host and port as `github_api_base_url`, so the token is never sent
//!    elsewhere;
//! 3. the claims `{"login", "id" (a string), "name", "email", "organizations": [logins]}`
//!    go through `claims_mapping` (default `login → roles`, `organizations → teams`).
//!
//! Verdicts: GitHub's `401` is a bad token; a `403` without rate-limit signs means
//! the token lacks access (also the token's fault); rate limits (`403`/`429` with
//! `X-RateLimit-Remaining: 0` or `Retry-After`, or any `429`), `5xx`, timeouts and
//! unusable replies are *unavailable*, with `retry_after` when GitHub said when.
//!
//! **Organizations are known only when GitHub's answer is provably the whole
//! list**, and unknown, not empty, otherwise. GitHub documents `/user/orgs` as
//! listing "only organizations that your authorization allows you to operate on
//! in some way": the whole membership for an OAuth app token or a classic
//! personal access token whose `X-OAuth-Scopes` grants `read:org`,
//! `write:org`, `admin:org` or `user` (the scopes GitHub names for listing
//! organizations); fewer for a classic token with other scopes (`403`), and
//! only the organizations a fine-grained personal access token (`github_pat_`)
//! or a GitHub App user token (`ghu_`) was granted, with `200` and no
//! `X-OAuth-Scopes` at all. So a page is complete only when its own
//! `X-OAuth-Scopes` header is there exactly once, is visible ASCII, and lists
//! one of those scopes; a repeated or unreadable header proves nothing. A user
//! in more organizations than `max_org_pages` pages hold would get a partial
//! list too; `max_org_pages: 0` reads none. The token is still accepted
//! (GitHub just vouched for it), but every attribute `claims_mapping` fills
//! from `organizations` (default `teams`) is left out of `attributes` and
//! listed in the principal's `unknown_attributes`, so route-policy conditions
//! on it fail closed: otherwise a contractor escapes `forbid: {attribute:
//! teams, any_of: [contractors]}` by choosing a token that lists fewer
//! organizations. `accept_partial_memberships: true` takes the list a scoped
//! token shows as its memberships, for deployments whose policies only grant
//! on membership (a `permit` that a missing organization merely withholds) and
//! never forbid on it. Other `/user/orgs` failures (rate limits, 5xx) fail the
//! validation as *unavailable*.
//!
//! A token's expiry, when GitHub reports one (`GitHub-Authentication-Token-Expiration`),
//! bounds how long its result is cached.
//!
//! Metrics: `tokengate_idp_fetches_total{provider="github_token", kind="user"|"orgs"}`,
//! `result="error"` when the outcome was "unavailable", `"ok"` otherwise.
//!
//! Imports: the contract (`tokengate-api`), the shared HTTP machinery
//! (`tokengate-kit`) and third-party crates; never `tokengate` itself.
//!
//! One file, past 400 lines, because the config, the `/user` and paged
//! `/user/orgs` calls and the verdicts on their replies are one exchange with
//! GitHub, read top to bottom.

#![warn(missing_docs)]

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER, USER_AGENT};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokengate_api::Description;
use tokengate_api::{
    parse_provider_config, AuthError, AuthProvider, BuildContext, ClaimsMapping, ConfigError, DynProvider, Ownership,
    Principal, ProviderBuilder, RequestContext,
};
use tokengate_kit::{
    read_body_limited, redirect_failure, CacheConfig, HttpClientOptions, HttpFailure, RemoteResultCache, UpstreamLimit,
    Validated,
};

/// The `type` name that selects this provider.
pub const TYPE_NAME: &str = "github_token";
/// Llama Stack's default `github_api_base_url`.
pub const DEFAULT_API_BASE_URL: &str = "https://api.github.com";
/// The REST API version tokengate is written against.
pub const API_VERSION: &str = "2022-11-28";

/// Llama Stack's 401 message for GitHub, word for word.
const ERROR_MESSAGE: &str = "Authentication required. Please provide a valid GitHub access token (https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/managing-your-personal-access-tokens) in the Authorization header (Bearer <token>)";

/// Longest GitHub message quoted in an error detail.
const MAX_MESSAGE_CHARS: usize = 300;
/// Most of an error body read just to find its message.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;
/// GitHub's largest page size.
const ORGS_PER_PAGE: u32 = 100;

/// `provider_config` for `type: github_token`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// REST API root (Llama Stack's name; default `https://api.github.com`;
    /// GitHub Enterprise Server: `https://HOST/api/v3`).
    #[serde(default = "default_base_url")]
    pub github_api_base_url: String,
    /// Claims → attributes (default `login → roles`, `organizations → teams`).
    #[serde(default = "ClaimsMapping::github_default")]
    pub claims_mapping: ClaimsMapping,
    /// Verify GitHub's TLS certificate (default true).
    #[serde(default = "tokengate_kit::defaults::on")]
    pub verify_tls: bool,
    /// PEM CA bundle trusted instead of the system roots; relative to the config file.
    #[serde(default)]
    pub tls_cafile: Option<PathBuf>,
    /// Time allowed for each request (default 10s).
    #[serde(default = "tokengate_kit::defaults::timeout", with = "tokengate_kit::duration")]
    pub timeout: Duration,
    /// Time allowed to connect (default 3s).
    #[serde(default = "tokengate_kit::defaults::connect_timeout", with = "tokengate_kit::duration")]
    pub connect_timeout: Duration,
    /// Largest reply read, per page (default 1 MiB).
    #[serde(default = "tokengate_kit::defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Result cache (default on, ttl 60s, never beyond the token's expiry).
    #[serde(default)]
    pub cache: CacheConfig,
    /// Most `/user/orgs` pages of 100 read (default 10; 0 skips organizations).
    #[serde(default = "default_max_org_pages")]
    pub max_org_pages: usize,
    /// Most token lookups in flight to GitHub at once (default 64); more fail with 503.
    #[serde(default = "tokengate_kit::defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Take the organizations a scoped token lists (fine-grained, GitHub App
    /// user, or classic without an organization scope) as the user's
    /// memberships, though GitHub lists only those the token may operate on
    /// (default false: they are unknown; see the crate docs).
    #[serde(default)]
    pub accept_partial_memberships: bool,
}

fn default_base_url() -> String {
    DEFAULT_API_BASE_URL.to_string()
}
fn default_max_org_pages() -> usize {
    10
}

impl Default for GitHubConfig {
    fn default() -> Self {
        let http = HttpClientOptions::default();
        GitHubConfig {
            github_api_base_url: default_base_url(),
            claims_mapping: ClaimsMapping::github_default(),
            verify_tls: http.verify_tls,
            tls_cafile: None,
            timeout: http.timeout,
            connect_timeout: http.connect_timeout,
            max_response_bytes: http.max_response_bytes,
            cache: CacheConfig::default(),
            max_org_pages: default_max_org_pages(),
            max_concurrent_requests: http.max_concurrent_requests,
            accept_partial_memberships: false,
        }
    }
}

/// Registers `type: github_token`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GitHubBuilder;

impl ProviderBuilder for GitHubBuilder {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn build(&self, config: Value, ctx: &BuildContext) -> Result<DynProvider, ConfigError> {
        let cfg: GitHubConfig = parse_provider_config(config)?;
        Ok(Arc::new(GitHubProvider::new(cfg, ctx)?))
    }
}

/// Validates GitHub access tokens against the GitHub REST API.
#[derive(Debug)]
pub struct GitHubProvider {
    /// Without a trailing slash, so `{base}/user` is well-formed.
    base: String,
    base_url: Url,
    client: reqwest::Client,
    claims_mapping: ClaimsMapping,
    max_response_bytes: usize,
    max_org_pages: usize,
    accept_partial_memberships: bool,
    limit: UpstreamLimit,
    cache: CacheHandle,
}

/// `RemoteResultCache` has no `Debug`; this wrapper lets the provider derive it.
struct CacheHandle(RemoteResultCache);

impl std::fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteResultCache")
    }
}

/// What `/user` told us.
struct GitHubUser {
    login: String,
    id: String,
    name: Value,
    email: Value,
}

impl GitHubProvider {
    /// Checks `github_api_base_url` and builds the HTTP client (`tls_cafile` relative to the config file).
    pub fn new(cfg: GitHubConfig, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let field = "github_api_base_url";
        let trimmed = cfg.github_api_base_url.trim().trim_end_matches('/');
        let base_url = Url::parse(trimmed)
            .map_err(|e| ConfigError::new(field, format!("`{trimmed}` is not a valid URL ({e})")))?;
        if base_url.scheme() != "https" && base_url.scheme() != "http" {
            return Err(ConfigError::new(
                field,
                format!("has scheme `{}`; only https (or http) is supported", base_url.scheme()),
            ));
        }
        if base_url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::new(field, "has no host"));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(ConfigError::new(field, "must not have a query or fragment"));
        }
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(ConfigError::new(field, "must not contain credentials"));
        }
        let http = tokengate_kit::http_options!(cfg, ctx);
        // Every request carries the token in `Authorization`: no redirects.
        let client = http.build_credentialed_client()?;
        Ok(GitHubProvider {
            base: trimmed.to_string(),
            base_url,
            client,
            claims_mapping: cfg.claims_mapping,
            max_response_bytes: cfg.max_response_bytes,
            max_org_pages: cfg.max_org_pages,
            accept_partial_memberships: cfg.accept_partial_memberships,
            limit: http.build_limit(TYPE_NAME)?,
            cache: CacheHandle(RemoteResultCache::new(&cfg.cache).with_shared(ctx)),
        })
    }

    async fn lookup(&self, token: &str) -> Result<Validated, AuthError> {
        // One slot for the whole lookup (/user and every /user/orgs page).
        let _slot = self.limit.acquire("GitHub").await?;
        let (user, expires_at) = self.fetch_user(token).await?;
        let organizations = self.fetch_orgs(token).await?;
        let unknown: &[&str] = if organizations.is_none() { &["organizations"] } else { &[] };
        let claims = json!({
            "login": user.login,
            "id": user.id,
            "name": user.name,
            "email": user.email,
            "organizations": organizations,
        });
        let (attributes, unknown) = self.claims_mapping.apply_with_unknown(&claims, unknown);
        let principal = Principal::new(user.login).with_attributes(attributes).with_unknown_attributes(unknown);
        Ok(Validated { principal, expires_at })
    }

    /// A GET carrying the token and GitHub's recommended headers.
    fn get(&self, url: Url, token: &str) -> Result<reqwest::RequestBuilder, AuthError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| AuthError::invalid_token("the token contains characters that cannot be sent in a header"))?;
        auth.set_sensitive(true);
        Ok(self
            .client
            .get(url)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header(USER_AGENT, "tokengate"))
    }

    async fn send(
        &self,
        kind: &'static str,
        endpoint: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AuthError> {
        let what = format!("GitHub {endpoint}");
        let result =
            request.send().await.map_err(|e| AuthError::from(HttpFailure::from_reqwest(&what, &e.without_url())));
        if result.is_err() {
            count(kind, "error");
        }
        result
    }

    async fn fetch_user(&self, token: &str) -> Result<(GitHubUser, Option<SystemTime>), AuthError> {
        let endpoint = "/user";
        let url = self.url(endpoint)?;
        let response = self.send("user", endpoint, self.get(url, token)?).await?;
        let outcome = self.read_user(endpoint, token, response).await;
        count("user", if matches!(&outcome, Err(e) if e.is_unavailable()) { "error" } else { "ok" });
        outcome
    }

    async fn read_user(
        &self,
        endpoint: &str,
        token: &str,
        response: reqwest::Response,
    ) -> Result<(GitHubUser, Option<SystemTime>), AuthError> {
        if response.status() != StatusCode::OK {
            return Err(self.failure(endpoint, token, response).await);
        }
        let expires_at = response
            .headers()
            .get("github-authentication-token-expiration")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_token_expiration);
        let what = format!("GitHub {endpoint}");
        let body = read_body_limited(&what, response, self.max_response_bytes).await?;
        let malformed = |why: String| {
            AuthError::unavailable(format!("GitHub answered 200 with a malformed {endpoint} reply: {why}"))
        };
        let value: Value = serde_json::from_slice(&body).map_err(|e| malformed(format!("not JSON ({e})")))?;
        let login = match value.get("login") {
            Some(Value::String(l)) if !l.trim().is_empty() => l.clone(),
            _ => return Err(malformed("no `login` string".into())),
        };
        let id = match value.get("id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(malformed("no numeric `id`".into())),
        };
        let string_or_null = |key: &str| match value.get(key) {
            Some(Value::String(s)) => Value::String(s.clone()),
            _ => Value::Null,
        };
        let user = GitHubUser { login, id, name: string_or_null("name"), email: string_or_null("email") };
        Ok((user, expires_at))
    }

    /// Every organization's login, or `None` when the list cannot be known
    /// whole (see the crate docs).
    async fn fetch_orgs(&self, token: &str) -> Result<Option<Vec<String>>, AuthError> {
        let mut organizations = Vec::new();
        if self.max_org_pages == 0 {
            return Ok(None);
        }
        let endpoint = "/user/orgs";
        let mut next = Some(self.url(&format!("{endpoint}?per_page={ORGS_PER_PAGE}"))?);
        let mut pages = 0;
        while let Some(url) = next.take() {
            if pages == self.max_org_pages {
                tracing::warn!(
                    max_org_pages = self.max_org_pages,
                    "GitHub /user/orgs has more pages than max_org_pages; organizations are unknown for this token"
                );
                return Ok(None);
            }
            pages += 1;
            let response = self.send("orgs", endpoint, self.get(url, token)?).await?;
            let outcome = self.read_orgs_page(endpoint, token, response).await;
            count("orgs", if matches!(&outcome, Err(e) if e.is_unavailable()) { "error" } else { "ok" });
            match outcome? {
                OrgsPage::Forbidden => {
                    tracing::debug!(
                        "GitHub refused /user/orgs (403): the token lacks read:org; organizations are unknown"
                    );
                    return Ok(None);
                }
                OrgsPage::Page { logins, next: link, paged, partial } => {
                    if let Some(why) = partial {
                        if !self.accept_partial_memberships {
                            tracing::debug!(
                                why = %why,
                                "GitHub /user/orgs may list only some of the user's organizations; they are unknown"
                            );
                            return Ok(None);
                        }
                    }
                    // Without a `Link` header (GitHub Enterprise proxies and OGX's own
                    // test servers leave it out) a full page means there may be more:
                    // ask for the next by number, until a short page.
                    let full = logins.len() >= ORGS_PER_PAGE as usize;
                    organizations.extend(logins);
                    next = match (paged, full) {
                        (true, _) => link.and_then(|u| self.same_origin(u)),
                        (false, true) => {
                            Some(self.url(&format!("{endpoint}?per_page={ORGS_PER_PAGE}&page={}", pages + 1))?)
                        }
                        (false, false) => None,
                    };
                }
            }
        }
        Ok(Some(organizations))
    }

    async fn read_orgs_page(
        &self,
        endpoint: &str,
        token: &str,
        response: reqwest::Response,
    ) -> Result<OrgsPage, AuthError> {
        let status = response.status();
        if status == StatusCode::FORBIDDEN && rate_limit(status, response.headers()).is_none() {
            return Ok(OrgsPage::Forbidden);
        }
        if status != StatusCode::OK {
            return Err(self.failure(endpoint, token, response).await);
        }
        let next = next_link(response.headers());
        let paged = response.headers().contains_key(reqwest::header::LINK);
        let partial = org_listing_gap(response.headers());
        let what = format!("GitHub {endpoint}");
        let body = read_body_limited(&what, response, self.max_response_bytes).await?;
        let malformed =
            |why: &str| AuthError::unavailable(format!("GitHub answered 200 with a malformed {endpoint} reply: {why}"));
        let value: Value = serde_json::from_slice(&body).map_err(|e| malformed(&format!("not JSON ({e})")))?;
        let Value::Array(items) = value else {
            return Err(malformed("not a list"));
        };
        let mut logins = Vec::with_capacity(items.len());
        for item in items {
            match item.get("login") {
                Some(Value::String(l)) if !l.is_empty() => logins.push(l.clone()),
                _ => return Err(malformed("an organization without a `login` string")),
            }
        }
        Ok(OrgsPage::Page { logins, next, paged, partial })
    }

    /// Words a non-200 answer from GitHub.
    async fn failure(&self, endpoint: &str, token: &str, response: reqwest::Response) -> AuthError {
        if let Some(err) = redirect_failure(&format!("GitHub {endpoint}"), &response) {
            return err;
        }
        let status = response.status();
        let code = status.as_u16();
        let limited = rate_limit(status, response.headers());
        let what = format!("GitHub {endpoint}");
        let message = read_body_limited(&what, response, self.max_response_bytes.min(MAX_ERROR_BODY_BYTES))
            .await
            .ok()
            .and_then(|body| github_message(&body, token));
        if let Some(limit) = limited {
            return limit.into_error();
        }
        let quoted = |prefix: &str| match &message {
            Some(m) => format!("{prefix} {m}"),
            None => prefix.to_string(),
        };
        match status {
            StatusCode::UNAUTHORIZED => {
                AuthError::invalid_token(format!("GitHub rejected the token ({})", quoted("401")))
            }
            StatusCode::FORBIDDEN => {
                AuthError::invalid_token(format!("GitHub refused the token access to {endpoint} ({})", quoted("403")))
            }
            StatusCode::NOT_FOUND => AuthError::unavailable(format!(
                "GitHub answered 404 for {endpoint}; check github_api_base_url ({})",
                self.base
            )),
            _ => AuthError::unavailable(match &message {
                Some(m) => format!("GitHub answered {code} for {endpoint}: {m}"),
                None => format!("GitHub answered {code} for {endpoint}"),
            }),
        }
    }

    fn url(&self, path_and_query: &str) -> Result<Url, AuthError> {
        Url::parse(&format!("{}{path_and_query}", self.base))
            .map_err(|e| AuthError::config(format!("cannot form the GitHub URL for {path_and_query}: {e}")))
    }

    /// Follows a pagination link only to where the token was already going.
    fn same_origin(&self, url: Url) -> Option<Url> {
        let same = url.scheme() == self.base_url.scheme()
            && url.host_str() == self.base_url.host_str()
            && url.port_or_known_default() == self.base_url.port_or_known_default();
        if !same {
            tracing::warn!(
                next_host = url.host_str().unwrap_or_default(),
                "GitHub /user/orgs pagination points to another origin; not following it"
            );
        }
        same.then_some(url)
    }
}

enum OrgsPage {
    Forbidden,
    /// One page; `paged` when the answer had a `Link` header (then only its
    /// `next` continues), else the next page is asked for by number.
    Page {
        logins: Vec<String>,
        next: Option<Url>,
        paged: bool,
        /// Why the page may leave organizations out; `None` when it cannot.
        partial: Option<String>,
    },
}

/// The scopes under which GitHub's `/user/orgs` lists every organization
/// the user belongs to: `read:org` (and `write:org`, `admin:org`, which
/// include it) lets a token list any organization's teams, `user` lets it
/// publicize any membership.
const ORG_LISTING_SCOPES: &[&str] = &["read:org", "write:org", "admin:org", "user"];

/// Why a `/user/orgs` answer with these headers may leave organizations out,
/// or `None` when its `X-OAuth-Scopes` proves the list whole.
///
/// Only a classic or OAuth app token has scopes, and GitHub sends them in one
/// `X-OAuth-Scopes: repo, read:org` header. Fine-grained and GitHub App user
/// tokens have none (no header, or an empty one). Two copies or bytes that
/// are not visible ASCII are not what GitHub writes: they prove nothing, so
/// the list stays partial rather than being read one way of several.
fn org_listing_gap(headers: &HeaderMap) -> Option<String> {
    // SAML SSO: "the API will not return results from the organizations that require SAML SSO.
    // The X-GitHub-SSO header will indicate the ID of the organizations" (GitHub's docs). Any
    // such header on a listing says something was left out, whatever the scopes.
    if headers.contains_key("x-github-sso") {
        return Some(
            "X-GitHub-SSO is present: organizations that enforce SAML SSO were left out (the token is not \
             authorized for them)"
                .into(),
        );
    }
    let mut values = headers.get_all("x-oauth-scopes").iter();
    let Some(value) = values.next() else {
        return Some("no X-OAuth-Scopes header (a fine-grained or GitHub App token)".into());
    };
    if values.next().is_some() {
        return Some("X-OAuth-Scopes is repeated".into());
    }
    let readable = value.as_bytes().iter().all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t');
    let Some(text) = value.to_str().ok().filter(|_| readable) else {
        return Some("X-OAuth-Scopes is not visible ASCII".into());
    };
    let mut scopes = text.split(',').map(|s| s.trim_matches([' ', '\t']));
    if scopes.any(|scope| ORG_LISTING_SCOPES.contains(&scope)) {
        return None;
    }
    let shown: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    Some(format!("X-OAuth-Scopes `{}` has none of {}", shown.trim(), ORG_LISTING_SCOPES.join(", ")))
}

#[async_trait]
impl AuthProvider for GitHubProvider {
    async fn validate(&self, token: &str, _ctx: &RequestContext) -> Result<Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::invalid_token("the bearer token is empty"));
        }
        self.cache.0.get_or_validate(token, || self.lookup(token)).await
    }

    fn describe(&self) -> Description {
        Description::new(TYPE_NAME)
            .with_message(ERROR_MESSAGE)
            .accepting("GitHub access tokens")
            .with_mapping(self.claims_mapping.clone())
    }

    /// GitHub's token formats: the documented prefixes (`ghp_`, `github_pat_`,
    /// `gho_`, `ghu_`, `ghs_`, `ghr_`) and the 40-hex-digit tokens issued before
    /// them. Anything else (a JWT, another service's key) is left to the next
    /// provider of a chain instead of being sent to GitHub.
    fn ownership(&self, token: &str) -> Ownership {
        const PREFIXES: &[&str] = &["ghp_", "github_pat_", "gho_", "ghu_", "ghs_", "ghr_"];
        let legacy = token.len() == 40 && token.bytes().all(|b| b.is_ascii_hexdigit());
        if legacy || PREFIXES.iter().any(|p| token.starts_with(p)) {
            Ownership::Mine
        } else {
            Ownership::NotMine
        }
    }
}

fn count(kind: &'static str, result: &'static str) {
    metrics::counter!(
        "tokengate_idp_fetches_total",
        "provider" => TYPE_NAME,
        "kind" => kind,
        "result" => result
    )
    .increment(1);
}

/// A rate-limit answer: when it resets and when to retry.
struct RateLimit {
    /// The primary quota is used up (`X-RateLimit-Remaining: 0`).
    exhausted: bool,
    reset_at: Option<SystemTime>,
    /// GitHub's own `Retry-After` (secondary limits), not derived from the reset.
    retry_after_header: bool,
    retry_after: Option<Duration>,
}

impl RateLimit {
    fn into_error(self) -> AuthError {
        let resets =
            |at: SystemTime| format!("GitHub rate limit exceeded; resets at {}", humantime::format_rfc3339_seconds(at));
        // A secondary limit (Retry-After while quota remains) ends long before
        // the primary window's reset, so that reset time would mislead.
        let detail = match (self.exhausted, self.reset_at, self.retry_after) {
            (true, Some(at), _) => resets(at),
            (_, _, Some(after)) if self.retry_after_header => {
                format!("GitHub rate limit exceeded; retry after {}s", after.as_secs())
            }
            (_, Some(at), _) => resets(at),
            _ => "GitHub rate limit exceeded".to_string(),
        };
        let err = AuthError::unavailable(detail);
        match self.retry_after {
            Some(after) => err.with_retry_after(after),
            None => err,
        }
    }
}

/// GitHub signals rate limits with 403 or 429 plus `X-RateLimit-Remaining: 0`
/// (primary limit) or `Retry-After` (secondary limit); a bare 429 is one too.
fn rate_limit(status: StatusCode, headers: &HeaderMap) -> Option<RateLimit> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    let retry_after: Option<u64> = header(RETRY_AFTER.as_str()).and_then(|v| v.parse().ok());
    if !exhausted && retry_after.is_none() && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    // humantime cannot print years past 9999; such a reset is nonsense anyway.
    const YEAR_10000: u64 = 253_402_300_800;
    let reset_at = header("x-ratelimit-reset")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|secs| *secs < YEAR_10000)
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)));
    let retry_after_delay = match retry_after {
        Some(secs) => Some(Duration::from_secs(secs)),
        // Until the reset, at least a second so clients do not spin.
        None => reset_at
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).max(Duration::from_secs(1))),
    };
    Some(RateLimit { exhausted, reset_at, retry_after_header: retry_after.is_some(), retry_after: retry_after_delay })
}

/// The `next` target of an RFC 8288 `Link` header, as GitHub writes it:
/// `<https://api.github.com/user/orgs?page=2>; rel="next", <…>; rel="last"`.
fn next_link(headers: &HeaderMap) -> Option<Url> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for link in text.split(',') {
            let mut parts = link.split(';');
            let Some(target) = parts.next() else { continue };
            let target = target.trim();
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            let is_next = parts.any(|param| {
                let Some((key, value)) = param.split_once('=') else {
                    return false;
                };
                key.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Url::parse(target).ok();
            }
        }
    }
    None
}

/// GitHub's `message`, made safe to quote.
fn github_message(body: &[u8], token: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = value.get("message")?.as_str()?;
    let redacted = if token.is_empty() { text.to_string() } else { text.replace(token, "<redacted>") };
    let mut out: String =
        redacted.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_MESSAGE_CHARS).collect();
    out = out.trim().to_string();
    (!out.is_empty()).then_some(out)
}

/// Parses `GitHub-Authentication-Token-Expiration`, e.g. `2026-01-31 12:00:00 UTC`
/// or `2026-01-31 04:00:00 -0800`.
fn parse_token_expiration(value: &str) -> Option<SystemTime> {
    let (datetime, zone) = value.trim().rsplit_once(' ')?;
    let local = humantime::parse_rfc3339_weak(datetime.trim()).ok()?;
    let offset_secs: i64 = match zone {
        "UTC" | "GMT" | "Z" | "+0000" | "-0000" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hours: i64 = z.get(1..3)?.parse().ok()?;
            let minutes: i64 = z.get(3..5)?.parse().ok()?;
            let secs = hours * 3600 + minutes * 60;
            if z.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    // Local time = UTC + offset, so UTC = local − offset.
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    if offset_secs >= 0 {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
}

#[cfg(test)]
mod tests;
