//! The HTTP side of an authentication decision, shared by the tower layer
//! ([`crate::layer`]) and the forward-auth server ([`crate::server`]): reading
//! the credential, asking the provider, and answering refusals the RFC 6750 way.
//!
//! The credential is the `Authorization: Bearer` token or, when there is no
//! `Authorization` header at all, the value of `X-API-Key` (as API-key clients
//! send it); `Authorization` wins when both are present. A provider that needs
//! no token ([`AuthProvider::needs_token`](tokengate_api::AuthProvider::needs_token),
//! e.g. `upstream_header`) is asked even when there is neither, with an empty token.
//!
//! With an [`AuditLog`] attached, every decision is also one JSON line there
//! (see [`crate::audit`]).
//!
//! Every decision is counted in `tokengate_decisions_total{outcome, provider}`,
//! timed in `tokengate_decision_duration_seconds{outcome, provider}` and logged
//! as one event with target `tokengate::decision` (INFO for allow and deny, WARN
//! for an unavailable identity service, ERROR for a misconfigured provider).
//! The token never appears in any of them.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokengate_api::{AuthError, DynProvider, ErrorKind, Principal, RequestContext};

use crate::audit::{token_hash_prefix, AuditLog, AuditRecord};

/// The header API keys travel in when there is no `Authorization` header.
pub const API_KEY_HEADER: &str = tokengate_api_key::API_KEY_HEADER;

/// `WWW-Authenticate` realm when none is configured.
pub const DEFAULT_REALM: &str = "tokengate";

/// `Retry-After` sent with a 503 when the provider did not say when to come back.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Name of the decision counter.
pub const DECISIONS_TOTAL: &str = "tokengate_decisions_total";
/// Name of the decision latency histogram (seconds).
pub const DECISION_DURATION_SECONDS: &str = "tokengate_decision_duration_seconds";

/// Longest `error_description` sent; details are for humans, not for headers to grow unbounded.
const MAX_DESCRIPTION_CHARS: usize = 300;

/// A provider plus what the HTTP side needs around it: realm and open paths.
/// Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    provider: DynProvider,
    realm: Arc<str>,
    open_paths: OpenPaths,
    audit: Option<AuditLog>,
}

impl Gate {
    pub fn new(provider: DynProvider) -> Self {
        Gate { provider, realm: Arc::from(DEFAULT_REALM), open_paths: OpenPaths::default(), audit: None }
    }

    /// Writes one audit line per decision to `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    pub fn with_realm(mut self, realm: impl AsRef<str>) -> Self {
        self.realm = Arc::from(quoted_string_safe(realm.as_ref()).as_str());
        self
    }

    pub fn with_open_path(mut self, pattern: impl Into<String>) -> Self {
        self.open_paths.add(pattern.into());
        self
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Whether `path` is answered without authentication.
    pub fn is_open(&self, path: &str) -> bool {
        self.open_paths.matches(path)
    }

    /// Reads the credential from `headers` and validates it against the
    /// provider with `ctx`; records the decision (metrics, one log event, and
    /// the audit line).
    pub async fn authenticate(&self, headers: &HeaderMap, ctx: &RequestContext) -> Result<Principal, Rejection> {
        let started = Instant::now();
        let (outcome, token) = match credential(headers) {
            Ok(Some(token)) => (self.validate(token, ctx).await.map_err(|e| self.reject(e)), token),
            Ok(None) if !self.provider.needs_token() => (self.validate("", ctx).await.map_err(|e| self.reject(e)), ""),
            Ok(None) => (Err(self.reject_missing()), ""),
            Err(e) => (Err(self.reject(e)), ""),
        };
        self.record(&outcome, ctx, token, started.elapsed());
        outcome
    }

    /// For open paths: the principal when the request carries a valid token,
    /// else `None`; never refuses (and so is not counted as a decision).
    pub async fn try_authenticate(&self, headers: &HeaderMap, ctx: &RequestContext) -> Option<Principal> {
        let token = match credential(headers).ok()? {
            Some(token) => token,
            None if !self.provider.needs_token() => "",
            None => return None,
        };
        match self.validate(token, ctx).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::debug!(
                    target: "tokengate::decision",
                    path = ctx.path, code = e.code(), reason = e.detail(),
                    "open path: token not accepted, continuing without a principal"
                );
                None
            }
        }
    }

    /// The provider's verdict, with principals that cannot travel refused: an
    /// empty one would be no identity at all, and control characters forge
    /// log lines and header boundaries in whatever reads them next.
    async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        let principal = self.provider.validate(token, ctx).await?;
        if principal.principal.is_empty() {
            return Err(AuthError::invalid_token("the provider produced an empty principal"));
        }
        if principal.principal.chars().any(char::is_control) {
            return Err(AuthError::invalid_token("the principal has control characters"));
        }
        Ok(principal)
    }

    /// The refusal for `err`, worded with this gate's realm and provider message.
    pub fn reject(&self, err: AuthError) -> Rejection {
        let message = match err.kind() {
            ErrorKind::InvalidToken | ErrorKind::InvalidRequest => self.provider.error_message(),
            ErrorKind::InsufficientScope => "The token does not grant access to this resource".to_string(),
            ErrorKind::Unavailable => "The identity service is temporarily unavailable; retry later".to_string(),
            ErrorKind::Config => "Authentication is misconfigured on this server".to_string(),
        };
        Rejection { error: err, missing_token: false, realm: self.realm.clone(), message }
    }

    /// The refusal for a request without credentials: RFC 6750 §3.1 says no `error` attribute then.
    pub fn reject_missing(&self) -> Rejection {
        let mut r = self.reject(AuthError::invalid_token(
            "no credentials: neither an Authorization: Bearer header nor an X-API-Key header",
        ));
        r.missing_token = true;
        r
    }

    fn record(&self, outcome: &Result<Principal, Rejection>, ctx: &RequestContext, token: &str, elapsed: Duration) {
        if let Some(audit) = &self.audit {
            audit.record(&self.audit_record(outcome, ctx, token));
        }
        let provider = self.provider.type_name().to_string();
        let label = match outcome {
            Ok(_) => "allow",
            Err(r) => r.outcome(),
        };
        metrics::counter!(DECISIONS_TOTAL, "outcome" => label, "provider" => provider.clone()).increment(1);
        metrics::histogram!(DECISION_DURATION_SECONDS, "outcome" => label, "provider" => provider.clone())
            .record(elapsed.as_secs_f64());
        // Microsecond resolution is plenty, and keeps log lines short.
        let latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        // `ctx.path` never holds the query, where tokens sometimes travel (`?access_token=`).
        let (method, path) = (ctx.method.as_str(), ctx.path.as_str());
        match outcome {
            Ok(p) => tracing::info!(
                target: "tokengate::decision",
                outcome = label, principal = ?p.principal, provider, latency_ms, method, path,
                "allowed"
            ),
            Err(r) => {
                let (code, reason) = (r.error.code(), r.error.detail());
                match r.error.kind() {
                    ErrorKind::Unavailable => tracing::warn!(
                        target: "tokengate::decision",
                        outcome = label, provider, latency_ms, method, path, code, reason,
                        "identity service unavailable"
                    ),
                    ErrorKind::Config => tracing::error!(
                        target: "tokengate::decision",
                        outcome = label, provider, latency_ms, method, path, code, reason,
                        "provider misconfigured"
                    ),
                    _ => tracing::info!(
                        target: "tokengate::decision",
                        outcome = label, provider, latency_ms, method, path, code, reason,
                        "denied"
                    ),
                }
            }
        }
    }
}

impl Gate {
    /// The audit line for a decision; public so `tokengate check` writes the same shape.
    pub fn audit_record(
        &self,
        outcome: &Result<Principal, Rejection>,
        ctx: &RequestContext,
        token: &str,
    ) -> AuditRecord {
        audit_record(
            &self.provider,
            outcome.as_ref().map_err(|r| (r.error(), r.status().as_u16(), r.outcome())),
            ctx,
            token,
        )
    }
}

/// The audit line for `outcome`: `Ok(principal)` or `Err((error, status, outcome label))`.
pub fn audit_record(
    provider: &DynProvider,
    outcome: Result<&Principal, (&AuthError, u16, &str)>,
    ctx: &RequestContext,
    token: &str,
) -> AuditRecord {
    let (name, index) = match provider.chain_owner(token) {
        Some((i, name)) => (name, Some(i)),
        None => (provider.type_name().to_string(), None),
    };
    let (outcome, status, code, principal, reason) = match outcome {
        Ok(p) => ("allow", 200, None, Some(p.principal.clone()), None),
        Err((e, status, label)) => (label, status, Some(e.code().to_string()), None, Some(e.detail().to_string())),
    };
    AuditRecord {
        time: AuditRecord::now(),
        outcome: outcome.to_string(),
        status,
        code,
        principal,
        provider: name,
        provider_index: index,
        method: ctx.method.clone(),
        // Never the query: tokens sometimes travel there (`?access_token=`).
        route: ctx.path.clone(),
        reason,
        token_sha256_prefix: token_hash_prefix(token),
    }
}

/// The canonical form of a request path (see [`crate::path`]), or the
/// `invalid_request` (400) a path without one single meaning gets.
pub fn canonical_route(path: &str) -> Result<String, AuthError> {
    crate::path::canonical_path(path).map_err(|e| AuthError::invalid_request(format!("refused request path: {e}")))
}

/// Headers that ask a back end to run another method than the request's.
const METHOD_OVERRIDES: &[&str] = &["x-http-method-override", "x-http-method", "x-method-override"];

/// `invalid_request` when the request asks for another method than it has:
/// route rules judge the real method, a back end honouring the override
/// would run another.
///
/// Underscore spellings count too: CGI-style gateways (PHP, some WSGI
/// servers) read `X_HTTP_Method_Override` as the same variable.
pub fn refuse_method_override(headers: &HeaderMap) -> Result<(), AuthError> {
    let dashed = |b: u8| if b == b'_' { b'-' } else { b };
    let is_override = |name: &str| METHOD_OVERRIDES.iter().any(|o| o.bytes().eq(name.bytes().map(dashed)));
    match headers.keys().find(|name| is_override(name.as_str())) {
        Some(name) => {
            Err(AuthError::invalid_request(format!("the request carries {name}, which route rules cannot judge")))
        }
        None => Ok(()),
    }
}

/// A request target (`/path?query`, or absolute-form `https://host/path?query`)
/// as the canonical path and the raw query. A `#` is refused: URI parsers drop
/// what follows it, while some back ends route on the whole target
/// (`/public/x#/../../admin`).
pub fn route_target(raw: &str) -> Result<(String, Option<String>), AuthError> {
    if raw.contains('#') {
        return Err(AuthError::invalid_request("the request target has a `#`, which back ends read differently"));
    }
    let uri = raw.parse::<http::Uri>().ok().filter(|u| u.path().starts_with('/') && u.path_and_query().is_some());
    let Some(uri) = uri else {
        return Err(AuthError::invalid_request("the original request's URI is not a request target"));
    };
    Ok((canonical_route(uri.path())?, uri.query().map(str::to_string)))
}

/// Paths that skip authentication: exact (`/healthz`) or prefix (`/public/*`, `/docs*`).
///
/// Patterns and paths are compared in their canonical form ([`crate::path`]);
/// a path that has none is never open.
#[derive(Clone, Debug, Default)]
pub struct OpenPaths {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl OpenPaths {
    pub fn add(&mut self, pattern: String) {
        match pattern.strip_suffix('*') {
            Some(prefix) => self.prefixes.push(prefix.to_string()),
            // Exact means exact: `/exact/` may be another resource (a directory index).
            None => self.exact.push(crate::path::canonical_path(&pattern).unwrap_or(pattern)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// Whether `path` is open. Paths with `;` parameters, dot segments,
    /// encoded separators or double encoding have no canonical form and are
    /// never open: a back end that reads them differently could otherwise be
    /// routed past authentication (`/public/..;/admin`).
    pub fn matches(&self, path: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let Ok(path) = crate::path::canonical_path(path) else { return false };
        self.exact.contains(&path) || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

/// A refused request: the status, RFC 6750 challenge and JSON body it gets.
#[derive(Clone, Debug)]
pub struct Rejection {
    error: AuthError,
    missing_token: bool,
    realm: Arc<str>,
    message: String,
}

impl Rejection {
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// True when the request carried no credentials at all.
    pub fn is_missing_token(&self) -> bool {
        self.missing_token
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.error.kind().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `outcome` label: `deny`, `unavailable` or `error`.
    pub fn outcome(&self) -> &'static str {
        match self.error.kind() {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Config => "error",
            _ => "deny",
        }
    }

    /// The `WWW-Authenticate` value, for the statuses that carry one (400, 401, 403).
    pub fn www_authenticate(&self) -> Option<String> {
        let kind = self.error.kind();
        if !matches!(kind, ErrorKind::InvalidToken | ErrorKind::InvalidRequest | ErrorKind::InsufficientScope) {
            return None;
        }
        let mut value = format!("Bearer realm=\"{}\"", self.realm);
        if !self.missing_token {
            value.push_str(&format!(", error=\"{}\"", kind.code()));
            let description = quoted_string_safe(self.error.detail());
            if !description.is_empty() {
                value.push_str(&format!(", error_description=\"{description}\""));
            }
        }
        Some(value)
    }

    /// Seconds for `Retry-After`, on a 503.
    pub fn retry_after_secs(&self) -> Option<u64> {
        if self.error.kind() != ErrorKind::Unavailable {
            return None;
        }
        let after = self.error.retry_after().unwrap_or(DEFAULT_RETRY_AFTER);
        // Rounded up and at least 1: "0" would invite a retry storm.
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        Some(secs.max(1))
    }

    /// `{"error": {"code", "message"}}`.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({"error": {"code": self.error.code(), "message": self.message}});
        Bytes::from(body.to_string())
    }

    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.www_authenticate().and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        headers
    }

    /// The whole response, with any body type that can hold bytes.
    pub fn to_http<B: From<Bytes>>(&self) -> http::Response<B> {
        let mut response = http::Response::new(B::from(self.body()));
        *response.status_mut() = self.status();
        *response.headers_mut() = self.headers();
        response
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.to_http::<axum::body::Body>()
    }
}

/// The credential in `headers`: the bearer token of `Authorization`, else the
/// `X-API-Key` value; `Ok(None)` when there is neither.
///
/// `X-API-Key` must be exactly one header of visible ASCII without spaces;
/// errors never quote it.
pub fn credential(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    if headers.contains_key(AUTHORIZATION) {
        return bearer_token(headers);
    }
    let mut values = headers.get_all(API_KEY_HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AuthError::invalid_request("several X-API-Key headers"));
    }
    let key = value
        .to_str()
        .map_err(|_| AuthError::invalid_request("the X-API-Key header has characters outside visible ASCII"))?
        .trim_matches([' ', '\t']);
    if key.is_empty() {
        return Err(AuthError::invalid_request("the X-API-Key header is empty"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::invalid_request("the X-API-Key header has spaces or control characters inside the key"));
    }
    Ok(Some(key))
}

/// The bearer token in `headers`: `Ok(None)` when there is no `Authorization`
/// header, an `invalid_request` error when it is not exactly one well-formed
/// `Bearer <token68>` (scheme case-insensitive, RFC 6750 §2.1).
///
/// Error details never quote the header: a client that forgot the scheme puts
/// its token where the scheme should be.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AuthError::invalid_request("several Authorization headers"));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::invalid_request("the Authorization header has characters outside visible ASCII"))?
        .trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::invalid_request("the Authorization scheme is not Bearer"));
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthError::invalid_request("the Bearer token is empty"));
    }
    if !is_token68(token) {
        return Err(AuthError::invalid_request(
            "the Bearer token has characters outside the token68 syntax (RFC 6750 section 2.1)",
        ));
    }
    Ok(Some(token))
}

fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// Makes text fit inside an RFC 6750 quoted attribute, whose values may not
/// contain `"` or `\` at all (§3): quotes become `'`, backslashes and control
/// characters are dropped, other non-ASCII becomes `?`; long text is cut.
pub fn quoted_string_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_DESCRIPTION_CHARS));
    for (count, c) in text.chars().enumerate() {
        if count >= MAX_DESCRIPTION_CHARS {
            out.push_str("...");
            break;
        }
        match c {
            '"' => out.push('\''),
            '\\' => {}
            ' '..='~' => out.push(c),
            c if c.is_control() => {}
            _ => out.push('?'),
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(&HeaderMap::new()).unwrap(), None);
        assert_eq!(bearer_token(&auth(&["Bearer abc.def-_~+/=="])).unwrap(), Some("abc.def-_~+/=="));
        assert_eq!(bearer_token(&auth(&["bEaReR   tok"])).unwrap(), Some("tok"));
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "Bearer a=b", "Bearer =", "eyJabc", ""] {
            let e = bearer_token(&auth(&[bad])).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{bad:?}");
        }
        assert_eq!(bearer_token(&auth(&["Bearer a", "Bearer b"])).unwrap_err().code(), "invalid_request");
    }

    #[test]
    fn x_api_key_when_no_authorization() {
        let mut h = HeaderMap::new();
        h.insert(API_KEY_HEADER, HeaderValue::from_static("tg_key-1"));
        assert_eq!(credential(&h).unwrap(), Some("tg_key-1"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        assert_eq!(credential(&h).unwrap(), Some("other"), "Authorization wins");
        let mut h = HeaderMap::new();
        h.append(API_KEY_HEADER, HeaderValue::from_static("a"));
        h.append(API_KEY_HEADER, HeaderValue::from_static("b"));
        assert_eq!(credential(&h).unwrap_err().detail(), "several X-API-Key headers");
        for bad in ["", "  ", "a b"] {
            let mut h = HeaderMap::new();
            h.insert(API_KEY_HEADER, HeaderValue::from_str(bad).unwrap());
            let e = credential(&h).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{bad:?}");
            assert!(bad.trim().is_empty() || !e.detail().contains(bad), "{e}");
        }
        assert_eq!(credential(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn scheme_errors_never_echo_the_header() {
        let e = bearer_token(&auth(&["eyJsecret-token-value"])).unwrap_err();
        assert!(!e.detail().contains("eyJ"), "{e}");
    }

    #[test]
    fn descriptions_are_quoted_string_safe() {
        assert_eq!(quoted_string_safe("aud \"x\" \\ bad\r\nline é"), "aud 'x'  badline ?");
        assert!(quoted_string_safe(&"x".repeat(1000)).len() <= MAX_DESCRIPTION_CHARS + 3);
    }

    #[test]
    fn open_paths_exact_prefix_and_traversal() {
        let mut o = OpenPaths::default();
        o.add("/healthz".into());
        o.add("/public/*".into());
        assert!(o.matches("/healthz"));
        assert!(!o.matches("/healthz/x"));
        assert!(o.matches("/public/a.css"));
        assert!(!o.matches("/public/../admin"));
        assert!(!o.matches("/public/%2e%2e/admin"));
        assert!(!o.matches("/public/..;/admin/users"));
        assert!(!o.matches("/public/%252e%252e/admin"));
        assert!(!o.matches("/healthz;x=1"));
        assert!(!o.matches("/healthz."));
        assert!(!o.matches("/healthz%20"));
        assert!(!o.matches("/healthz/"), "a directory index is not the exact open path");
        assert!(!o.matches("/HEALTHZ"));
        assert!(o.matches("//public//a.css"));
        assert!(!o.matches("/admin"));
    }

    #[test]
    fn retry_after_rounds_up() {
        let gate = Gate::new(Arc::new(Nobody));
        let r = gate.reject(AuthError::unavailable("x").with_retry_after(Duration::from_millis(1500)));
        assert_eq!(r.retry_after_secs(), Some(2));
        assert_eq!(gate.reject(AuthError::unavailable("x")).retry_after_secs(), Some(5));
        assert_eq!(gate.reject(AuthError::invalid_token("x")).retry_after_secs(), None);
    }

    struct Nobody;
    #[async_trait::async_trait]
    impl tokengate_api::AuthProvider for Nobody {
        fn type_name(&self) -> &str {
            "nobody"
        }
        async fn validate(&self, _: &str, _: &RequestContext) -> Result<Principal, AuthError> {
            Err(AuthError::invalid_token("nobody"))
        }
    }
}
