//! Answering a refusal the RFC 6750 way: status, `WWW-Authenticate`
//! challenge, `Retry-After` and the JSON body; a 429 also carries the
//! `RateLimit-Policy` and `RateLimit` fields of
//! draft-ietf-httpapi-ratelimit-headers (-09/-10): Structured Field lists
//! of a quoted policy name with `q` (quota) and `w` (window, seconds), and
//! with `r` (remaining) and `t` (seconds until reset):
//!
//! ```text
//! RateLimit-Policy: "chat";q=100;w=60, "chat:day";q=1000;w=86400
//! RateLimit: "chat";r=0;t=4, "chat:day";r=310;t=40211
//! ```

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokengate_api::{AuthError, ErrorKind, RateLimitInfo, Reason};

/// `WWW-Authenticate` realm when none is configured.
pub const DEFAULT_REALM: &str = "tokengate";

/// `Retry-After` sent with a 503 when the provider did not say when to come back.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Longest `error_description` sent; details are for humans, not for headers to grow unbounded.
const MAX_DESCRIPTION_CHARS: usize = 300;

/// A refused request: the status, RFC 6750 challenge and JSON body it gets.
#[derive(Clone, Debug)]
pub struct Rejection {
    error: AuthError,
    missing_token: bool,
    realm: Arc<str>,
    message: String,
}

impl Rejection {
    /// A refusal of `error`; `missing_token` leaves the `error` attribute out of
    /// the challenge (RFC 6750 §3.1); `message` is the body's.
    pub fn new(error: AuthError, missing_token: bool, realm: Arc<str>, message: String) -> Self {
        Rejection { error, missing_token, realm, message }
    }

    /// Why.
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// Why, as the typed reason every front end, metric, audit line and
    /// decision-log line reports ([`Reason::code`] is its stable name).
    pub fn reason(&self) -> &Reason {
        self.error.reason()
    }

    /// The error code of the body and the challenge (`invalid_token`, `insufficient_scope`, …).
    pub fn code(&self) -> &'static str {
        self.error.code()
    }

    /// True when the request carried no credentials at all.
    pub fn is_missing_token(&self) -> bool {
        self.missing_token
    }

    /// The HTTP status the error's kind calls for.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.error.kind().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `outcome` label: `deny`, `unavailable` or `error`.
    pub fn outcome(&self) -> &'static str {
        crate::ops::refusal_label(self.error.kind())
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

    /// Seconds for `Retry-After`, on a 503 or a 429.
    pub fn retry_after_secs(&self) -> Option<u64> {
        if !matches!(self.error.kind(), ErrorKind::Unavailable | ErrorKind::RateLimited) {
            return None;
        }
        let after = self.error.retry_after().unwrap_or(DEFAULT_RETRY_AFTER);
        // Rounded up and at least 1: "0" would invite a retry storm.
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        Some(secs.max(1))
    }

    /// `{"error": {"code", "message"}}`: the message says what to send and,
    /// for a 400, 401 or 403, why this request was refused (`… : token
    /// expired at …`), so clients that only show `error.message` (OGX's) show
    /// the reason. A 503's or 500's detail stays in the log: it names
    /// internal services.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({"error": {"code": self.error.code(), "message": self.client_message()}});
        Bytes::from(body.to_string())
    }

    /// The body's `message`.
    pub fn client_message(&self) -> String {
        with_reason(&self.message, &self.error)
    }

    /// `Content-Type`, `Cache-Control: no-store`, and `WWW-Authenticate` or `Retry-After` when they apply.
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
        if let Some(info) = self.error.rate_limit() {
            for (name, value) in rate_limit_headers(info) {
                headers.insert(name, value);
            }
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

/// `message` followed by the reason `error` gives, for the refusals that are
/// the client's (400, 401, 403); `message` alone otherwise.
pub fn with_reason(message: &str, error: &AuthError) -> String {
    match error.kind() {
        ErrorKind::InvalidToken | ErrorKind::InvalidRequest | ErrorKind::InsufficientScope | ErrorKind::RateLimited
            if !error.detail().is_empty() =>
        {
            let detail = error.detail();
            match detail.char_indices().nth(MAX_DESCRIPTION_CHARS) {
                Some((cut, _)) => format!("{message}: {}...", &detail[..cut]),
                None => format!("{message}: {detail}"),
            }
        }
        _ => message.to_string(),
    }
}

/// `RateLimit-Policy` and `RateLimit` for the limits that applied
/// (draft-ietf-httpapi-ratelimit-headers); none when no policy applied.
/// Policy names are limits rule names, which hold only letters, digits,
/// `_`, `-`, `.` and `:`, so they need no escaping in a Structured Field string.
pub fn rate_limit_headers(info: &RateLimitInfo) -> Vec<(HeaderName, HeaderValue)> {
    if info.policies.is_empty() {
        return Vec::new();
    }
    let name = |n: &str| -> String { n.chars().filter(|c| c.is_ascii_alphanumeric() || "_-.:".contains(*c)).collect() };
    let policy = info
        .policies
        .iter()
        .map(|p| format!("\"{}\";q={};w={}", name(&p.name), p.quota, p.window_secs))
        .collect::<Vec<_>>()
        .join(", ");
    let state = info
        .policies
        .iter()
        .map(|p| format!("\"{}\";r={};t={}", name(&p.name), p.remaining, p.reset_secs))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::with_capacity(2);
    if let (Ok(policy), Ok(state)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&state)) {
        out.push((RATELIMIT_POLICY, policy));
        out.push((RATELIMIT, state));
    }
    out
}

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

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

    #[test]
    fn descriptions_are_quoted_string_safe() {
        assert_eq!(quoted_string_safe("aud \"x\" \\ bad\r\nline é"), "aud 'x'  badline ?");
        assert!(quoted_string_safe(&"x".repeat(1000)).len() <= MAX_DESCRIPTION_CHARS + 3);
    }

    #[test]
    fn retry_after_rounds_up() {
        let r = rejection(AuthError::unavailable("x").with_retry_after(Duration::from_millis(1500)));
        assert_eq!(r.retry_after_secs(), Some(2));
        assert_eq!(rejection(AuthError::unavailable("x")).retry_after_secs(), Some(5));
        assert_eq!(rejection(AuthError::invalid_token("x")).retry_after_secs(), None);
    }

    #[test]
    fn a_429_carries_retry_after_and_the_ratelimit_fields() {
        use tokengate_api::{LimitPolicy, Reason};
        let policy = |name: &str, quota, window_secs, remaining, reset_secs| LimitPolicy {
            name: name.into(),
            quota,
            window_secs,
            remaining,
            reset_secs,
        };
        let info = RateLimitInfo {
            policies: vec![policy("chat", 100, 60, 0, 4), policy("chat:day", 1000, 86400, 310, 40211)],
        };
        let error = AuthError::rate_limited("rule chat", Reason::RateLimited, Duration::from_millis(3200), info);
        let r = rejection(error);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = r.headers();
        assert_eq!(headers[RETRY_AFTER], "4");
        assert_eq!(headers["ratelimit-policy"], "\"chat\";q=100;w=60, \"chat:day\";q=1000;w=86400");
        assert_eq!(headers["ratelimit"], "\"chat\";r=0;t=4, \"chat:day\";r=310;t=40211");
        assert!(headers.get(WWW_AUTHENTICATE).is_none(), "a 429 is no authentication challenge");
        let body: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }

    fn rejection(error: AuthError) -> Rejection {
        Rejection::new(error, false, Arc::from(DEFAULT_REALM), String::new())
    }
}
