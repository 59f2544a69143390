//! `custom`: tokens validated by the operator's own HTTP endpoint, with Llama
//! Stack's `CustomAuthProvider` wire contract.
//!
//! For every token (cache permitting) tokengate POSTs
//!
//! ```json
//! {"api_key": "<token>",
//!  "request": {"path": "/v1/models",
//!              "headers": {"x-trace": "1"},
//!              "params": {"limit": ["10"]}}}
//! ```
//!
//! and expects `200 {"principal": "alice", "attributes": {"roles": ["admin"]}, "message": null}`.
//! `headers` never holds `Authorization`, `Proxy-Authorization` or `Cookie`;
//! `params` maps every query parameter to its values in order, leaving out
//! empty values exactly as Llama Stack's `parse_qs` does.
//!
//! Verdicts:
//! - `200` with a well-formed reply: the principal;
//! - `200` with anything else (not JSON, no principal, bad attributes): *unavailable*
//!   — a broken endpoint never lets a token through and never blames it either;
//! - `5xx`, `429`, `408`, timeouts and connection failures: *unavailable* (503);
//! - any other status: the endpoint rejected the token (401), quoting its
//!   `message` (or `error.message`, `detail`) when it gave one.
//!
//! Caching: **off by default**, since the endpoint sees the request's path and
//! may decide per request (a verdict for `/public` must not be reused for
//! `/admin`). With a `cache:` section (`enabled` then defaults to true) results
//! are cached under the token *and the request's method and path*
//! (`cache.ttl`, default 60s; rejections for `cache.negative_ttl`). Headers and
//! query parameters are not part of the key: an endpoint that decides on
//! those must be left uncached.
//!
//! Redirects are never followed: the body carries the client's token, and a
//! 307/308 would send it again to wherever the reply points. A 3xx answer is
//! *unavailable* (configure the final URL). At most `max_concurrent_requests`
//! calls (default 64) are in flight at once; past that a request fails at
//! once with 503 and `Retry-After`, so made-up tokens cannot flood the endpoint.
//!
//! Metrics: `tokengate_idp_fetches_total{provider="custom", kind="endpoint"}`,
//! `result="error"` when the outcome was "unavailable", `"ok"` otherwise.
//!
//! Imports: the contract (`tokengate-api`), the shared HTTP machinery
//! (`tokengate-kit`) and third-party crates; never `tokengate` itself.
//!
//! One file, past 400 lines, because the request, the parsing of the reply and
//! the verdicts are one wire contract, kept together so the code reads as the
//! contract above.

#![warn(missing_docs)]

use async_trait::async_trait;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokengate_api::Description;
use tokengate_api::{
    parse_provider_config, Attributes, AuthError, AuthProvider, BuildContext, ConfigError, DynProvider, Principal,
    ProviderBuilder, RequestContext,
};
use tokengate_kit::{
    host_of, is_loopback, json_type, read_body_limited, redirect_failure, request_key, CacheConfig, HttpClientOptions,
    HttpFailure, RemoteResultCache, UpstreamLimit, Validated,
};

/// The `type` name that selects this provider.
pub const TYPE_NAME: &str = "custom";

/// Longest endpoint message quoted in an error detail.
const MAX_MESSAGE_CHARS: usize = 300;
/// Most of an error body read just to find its message.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

/// `provider_config` for `type: custom`: Llama Stack's `endpoint`, plus
/// tokengate's transport and cache settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomConfig {
    /// The validation endpoint (Llama Stack: `endpoint`). May carry
    /// `user:password@` for endpoints that want HTTP Basic from tokengate.
    pub endpoint: String,
    /// Verify the endpoint's TLS certificate (default true).
    #[serde(default = "tokengate_kit::defaults::on")]
    pub verify_tls: bool,
    /// PEM CA bundle trusted instead of the system roots; relative to the config file.
    #[serde(default)]
    pub tls_cafile: Option<PathBuf>,
    /// Time allowed for the whole exchange (default 10s).
    #[serde(default = "tokengate_kit::defaults::timeout", with = "tokengate_kit::duration")]
    pub timeout: Duration,
    /// Time allowed to connect (default 3s).
    #[serde(default = "tokengate_kit::defaults::connect_timeout", with = "tokengate_kit::duration")]
    pub connect_timeout: Duration,
    /// Largest reply read (default 1 MiB).
    #[serde(default = "tokengate_kit::defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Most calls to the endpoint in flight at once (default 64); more fail with 503.
    #[serde(default = "tokengate_kit::defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Result cache: off without this section; keyed by token, method and path — see the crate docs.
    #[serde(default = "CacheConfig::disabled")]
    pub cache: CacheConfig,
    /// Field of the endpoint's 200 reply that names the tenant (`tenant`,
    /// `org.id`: a dotted path, else the literal key). Lower-cased; a value that
    /// is not a tenant id is refused (401). Absent: no tenant.
    #[serde(default)]
    pub tenant_field: Option<String>,
}

impl CustomConfig {
    /// A config for `endpoint` with every other field at its default.
    pub fn new(endpoint: impl Into<String>) -> Self {
        let http = HttpClientOptions::default();
        CustomConfig {
            endpoint: endpoint.into(),
            verify_tls: http.verify_tls,
            tls_cafile: None,
            timeout: http.timeout,
            connect_timeout: http.connect_timeout,
            max_response_bytes: http.max_response_bytes,
            max_concurrent_requests: http.max_concurrent_requests,
            cache: CacheConfig::disabled(),
            tenant_field: None,
        }
    }
}

impl fmt::Debug for CustomConfig {
    // The endpoint may carry a password: show it redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomConfig")
            .field("endpoint", &redacted_url(&self.endpoint))
            .field("verify_tls", &self.verify_tls)
            .field("tls_cafile", &self.tls_cafile)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("cache", &self.cache)
            .finish()
    }
}

/// Registers `type: custom`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CustomBuilder;

impl ProviderBuilder for CustomBuilder {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn build(&self, config: Value, ctx: &BuildContext) -> Result<DynProvider, ConfigError> {
        let cfg: CustomConfig = parse_provider_config(config)?;
        Ok(Arc::new(CustomProvider::new(cfg, ctx)?))
    }
}

/// Validates tokens by asking the configured endpoint.
pub struct CustomProvider {
    endpoint: Url,
    host: String,
    client: reqwest::Client,
    max_response_bytes: usize,
    limit: UpstreamLimit,
    cache: RemoteResultCache,
    tenant_field: Option<String>,
}

impl fmt::Debug for CustomProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomProvider")
            .field("endpoint", &redacted_url(self.endpoint.as_str()))
            .finish_non_exhaustive()
    }
}

impl CustomProvider {
    /// Checks the config and builds the HTTP client; `tls_cafile` is resolved
    /// against the config file's directory.
    pub fn new(cfg: CustomConfig, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let endpoint = parse_endpoint(&cfg.endpoint)?;
        let host = host_of(&endpoint);
        if endpoint.scheme() == "http" && !is_loopback(&endpoint) {
            tracing::warn!(
                endpoint = %host,
                "custom endpoint is plain http: API keys cross the network unencrypted"
            );
        }
        if cfg.tenant_field.as_ref().is_some_and(|f| f.trim().is_empty()) {
            return Err(ConfigError::new("tenant_field", "is empty"));
        }
        let http = tokengate_kit::http_options!(cfg, ctx);
        let client = http.build_credentialed_client()?;
        Ok(CustomProvider {
            endpoint,
            host,
            client,
            max_response_bytes: cfg.max_response_bytes,
            limit: http.build_limit(TYPE_NAME)?,
            cache: RemoteResultCache::new(&cfg.cache).with_shared(ctx),
            tenant_field: cfg.tenant_field,
        })
    }

    /// `host[:port]` of the endpoint.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What must never be quoted from the endpoint's replies: the token and
    /// the endpoint's password (as written in the URL, and decoded).
    fn secrets_for(&self, token: &str) -> Vec<String> {
        let mut secrets = vec![token.to_string()];
        if let Some(password) = self.endpoint.password() {
            secrets.push(password.to_string());
            secrets.push(percent_decoded(password));
        }
        secrets
    }

    /// One call to the endpoint, counted in the fetch metric.
    async fn ask(&self, token: &str, ctx: &RequestContext) -> Result<Validated, AuthError> {
        let outcome = self.exchange(token, ctx).await;
        let result = match &outcome {
            Err(e) if e.is_unavailable() => "error",
            _ => "ok",
        };
        metrics::counter!(
            "tokengate_idp_fetches_total",
            "provider" => TYPE_NAME,
            "kind" => "endpoint",
            "result" => result
        )
        .increment(1);
        match &outcome {
            Err(e) if e.is_unavailable() => {
                tracing::warn!(endpoint = %self.host, error = %e.detail(), "custom auth endpoint failed")
            }
            Err(e) => {
                tracing::debug!(endpoint = %self.host, error = %e.detail(), "custom auth endpoint rejected a token")
            }
            Ok(_) => {}
        }
        outcome.map(|principal| Validated {
            principal,
            // The contract carries no expiry: `cache.ttl` alone bounds reuse.
            expires_at: None,
        })
    }

    async fn exchange(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        let what = format!("custom endpoint {}", self.host);
        // Readable: `validate` checked (`?` all the same, never a guess).
        let body = AuthRequest {
            api_key: token,
            request: AuthRequestContext {
                path: &ctx.path,
                headers: ctx.headers()?,
                params: llama_stack_params(ctx.params()?),
            },
        };
        let _slot = self.limit.acquire(&what).await?;
        let response = self
            .client
            .post(self.endpoint.clone())
            .json(&body)
            .send()
            .await
            // `without_url`: the host is already in `what`, and the URL may hold a password.
            .map_err(|e| HttpFailure::from_reqwest(&what, &e.without_url()))?;
        if let Some(err) = redirect_failure(&what, &response) {
            return Err(err);
        }
        let status = response.status();
        if status == StatusCode::OK {
            let body = read_body_limited(&what, response, self.max_response_bytes).await?;
            let (principal, reply) = parse_reply(&body)
                .map_err(|why| AuthError::unavailable(format!("{what} answered 200 with a malformed reply: {why}")))?;
            let Some(field) = &self.tenant_field else { return Ok(principal) };
            let tenant = tokengate_api::tenant_from(&reply, field, &format!("the {what} reply's `{field}`"))?;
            return Ok(principal.with_tenant(tenant));
        }

        let retry_after = retry_after(response.headers());
        let message = read_body_limited(&what, response, self.max_response_bytes.min(MAX_ERROR_BODY_BYTES))
            .await
            .ok()
            .and_then(|body| endpoint_message_redacting(&body, &self.secrets_for(token)));
        let code = status.as_u16();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
        {
            let detail = match &message {
                Some(m) => format!("{what} answered {code}: {m}"),
                None => format!("{what} answered {code}"),
            };
            let err = AuthError::unavailable(detail);
            return Err(match retry_after {
                Some(after) => err.with_retry_after(after),
                None => err,
            });
        }
        Err(AuthError::invalid_token(match message {
            Some(m) => format!("{what} rejected the token (HTTP {code}): {m}"),
            None => format!("{what} rejected the token (HTTP {code})"),
        }))
    }
}

#[async_trait]
impl AuthProvider for CustomProvider {
    async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::invalid_token("the bearer token is empty"));
        }
        // The endpoint judges the request it is sent: one without a header or
        // parameter that could not be read exactly would be another request.
        // Checked before the cache, so such a request never shares a verdict.
        ctx.headers()?;
        ctx.params()?;
        // The endpoint sees the path, so its verdict is the path's (see the crate docs).
        let key = request_key(token, &[&ctx.method, &ctx.path]);
        self.cache.get_or_validate_key(key, || self.ask(token, ctx)).await
    }

    fn describe(&self) -> Description {
        // Llama Stack's wording; `host` is never empty (checked at build time).
        Description::new(TYPE_NAME)
            .with_message(format!(
                "Authentication required. Please provide your API key as a Bearer token (validated by {})",
                self.host
            ))
            .accepting(format!("API keys validated by {}", self.host))
    }
}

/// The request body, field for field Llama Stack's `AuthRequest`.
#[derive(Serialize)]
struct AuthRequest<'a> {
    api_key: &'a str,
    request: AuthRequestContext<'a>,
}

#[derive(Serialize)]
struct AuthRequestContext<'a> {
    path: &'a str,
    headers: &'a BTreeMap<String, String>,
    params: BTreeMap<&'a str, Vec<&'a str>>,
}

/// Query parameters as Python's `parse_qs` (default `keep_blank_values=False`)
/// yields them, so endpoints written for Llama Stack see the same shape:
/// empty values dropped, and names left with no value dropped too.
fn llama_stack_params(params: &BTreeMap<String, Vec<String>>) -> BTreeMap<&str, Vec<&str>> {
    params
        .iter()
        .filter_map(|(name, values)| {
            let kept: Vec<&str> = values.iter().map(String::as_str).filter(|v| !v.is_empty()).collect();
            (!kept.is_empty()).then_some((name.as_str(), kept))
        })
        .collect()
}

/// Parses a 200 reply strictly: `{"principal": str, "attributes": {str: [str]} | null,
/// "message": str | null}`; other keys are ignored, as Pydantic does. The
/// reply comes back too, for `tenant_field`.
fn parse_reply(body: &[u8]) -> Result<(Principal, Value), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("it is not JSON ({e})"))?;
    let Value::Object(fields) = &value else {
        return Err(format!("it is {} in JSON, not an object", json_type(&value)));
    };
    let principal = match fields.get("principal") {
        Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
        Some(Value::String(_)) => return Err("`principal` is empty".into()),
        None | Some(Value::Null) => return Err("it has no `principal`".into()),
        Some(other) => return Err(format!("`principal` is {}, not a string", json_type(other))),
    };
    let mut attributes = Attributes::new();
    match fields.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, values) in map {
                let Value::Array(items) = values else {
                    return Err(format!("`attributes.{name}` is {}, not a list of strings", json_type(values)));
                };
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => list.push(s.clone()),
                        other => {
                            return Err(format!("`attributes.{name}` holds {}, not only strings", json_type(other)))
                        }
                    }
                }
                attributes.insert(name.clone(), list);
            }
        }
        Some(other) => return Err(format!("`attributes` is {}, not an object of string lists", json_type(other))),
    }
    match fields.get("message") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => return Err(format!("`message` is {}, not a string", json_type(other))),
    }
    Ok((Principal::new(principal).with_attributes(attributes), value))
}

/// The human message of an error reply: `message`, `error.message`, `detail`
/// (FastAPI's `HTTPException`) or a string `error`, made safe to quote.
#[cfg(test)]
fn endpoint_message(body: &[u8], token: &str) -> Option<String> {
    endpoint_message_redacting(body, &[token])
}

/// [`endpoint_message`] with every one of `secrets` redacted.
fn endpoint_message_redacting<S: AsRef<str>>(body: &[u8], secrets: &[S]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = value
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| value.get("error").and_then(|e| e.get("message")).and_then(Value::as_str))
        .or_else(|| value.get("detail").and_then(Value::as_str))
        .or_else(|| value.get("error").and_then(Value::as_str))?;
    sanitize_message(text, secrets)
}

/// Makes an upstream message fit for an error detail: the token (and
/// tokengate's own endpoint credentials) redacted if the endpoint echoed them,
/// `Basic …` credentials masked, control characters flattened, length bounded.
fn sanitize_message<S: AsRef<str>>(text: &str, secrets: &[S]) -> Option<String> {
    let mut redacted = redact_basic(text);
    for secret in secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()) {
        redacted = redacted.replace(secret, "<redacted>");
    }
    let mut out: String =
        redacted.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_MESSAGE_CHARS + 1).collect();
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push('…');
    }
    let trimmed = out.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Masks the credentials after every `Basic ` (any case): an endpoint that
/// echoes request headers would otherwise repeat tokengate's own password.
fn redact_basic(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find("basic ") {
        let (before, after) = rest.split_at(at + "basic ".len());
        out.push_str(before);
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_')))
            .unwrap_or(after.len());
        if end > 0 {
            out.push_str("<redacted>");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `%XX` sequences decoded, as HTTP clients do with URL userinfo.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_endpoint(raw: &str) -> Result<Url, ConfigError> {
    // Never echo `raw`: it may hold a password.
    let url = Url::parse(raw.trim()).map_err(|e| ConfigError::new("endpoint", format!("is not a valid URL ({e})")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(ConfigError::new(
            "endpoint",
            format!("has scheme `{}`; only https (or http) is supported", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new("endpoint", "has no host"));
    }
    Ok(url)
}

fn redacted_url(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("redacted"));
            }
            url.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// `Retry-After` in delta-seconds form. Lenient on purpose: it is the
/// endpoint's reply, not the client's request, and only paces retries.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests;
