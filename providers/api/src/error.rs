use std::fmt;
use std::time::Duration;

/// Which side of the line an authentication failure falls on.
///
/// The split that matters most to operators: a bad credential (`InvalidToken`,
/// 401) is the client's problem; an identity provider that cannot be reached or
/// understood (`Unavailable`, 503) is ours, and must never be reported as the former.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The credential is missing, malformed, expired, forged or revoked: 401.
    InvalidToken,
    /// The request itself is malformed (e.g. an unparsable `Authorization` header): 400.
    InvalidRequest,
    /// Authenticated, but a policy forbids this request: 403.
    InsufficientScope,
    /// The identity service could not be reached or understood: 503.
    Unavailable,
    /// The provider is misconfigured: 500, and exit code 2 on the command line.
    Config,
    /// Authenticated (or judged anonymously), but a usage limit refuses the
    /// request for now: 429, with the limits in [`AuthError::rate_limit`].
    RateLimited,
}

impl ErrorKind {
    /// The stable machine code (RFC 6750 names where they exist).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidToken => "invalid_token",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::InsufficientScope => "insufficient_scope",
            ErrorKind::Unavailable => "temporarily_unavailable",
            ErrorKind::Config => "server_error",
            ErrorKind::RateLimited => "rate_limited",
        }
    }

    /// The HTTP status a server should answer with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidToken => 401,
            ErrorKind::InvalidRequest => 400,
            ErrorKind::InsufficientScope => 403,
            ErrorKind::Unavailable => 503,
            ErrorKind::Config => 500,
            ErrorKind::RateLimited => 429,
        }
    }
}

/// What failed, as a machine can read it: the stage or check that refused.
///
/// [`ErrorKind`] says whose problem it is (401, 400, 403, 503, 500); the
/// reason says where the refusal came from, so callers, tests and metrics
/// never have to read the wording of [`AuthError::detail`]. Providers set
/// the most specific reason they know; [`AuthError::new`] starts from the
/// kind's default ([`Reason::default_for`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The request carried no credential at all.
    MissingCredential,
    /// The request around the token is unusable: a malformed `Authorization`
    /// header, a refused path, an ambiguous proxy header.
    Request,
    /// The token is not well-formed for its provider (segments, encoding, JSON, size).
    Malformed,
    /// The signing algorithm is unsupported, unsigned or not allowed.
    Algorithm,
    /// No key fits the token (unknown `kid`, key type or pinned-algorithm mismatch).
    Key,
    /// The signature does not verify.
    Signature,
    /// A claim is missing, malformed or out of bounds; the claim's name (`exp`, `aud`, …).
    Claim(std::borrow::Cow<'static, str>),
    /// The token was verified but names no usable principal.
    Principal,
    /// The tenant is not a valid tenant id, or (tenancy `multi`, `single`) is
    /// missing or not the configured one.
    Tenant,
    /// The token is on the revocation list.
    Revoked,
    /// A stored key (API key entry) is suspended (`status: suspended`, or
    /// `disabled: true`); the detail carries the reason given.
    KeySuspended,
    /// A stored key is revoked (`status: revoked`); the detail carries the reason given.
    KeyRevoked,
    /// A stored key's `expires_at` has passed.
    KeyExpired,
    /// A stored key was rotated and the grace during which it kept working has ended.
    KeyRotated,
    /// A stored key is valid but restricted, and this request is outside the
    /// restriction; the constraint's name (`allowed_cidrs`, `allowed_paths`, `allowed_methods`).
    KeyConstraint(std::borrow::Cow<'static, str>),
    /// No configured provider owns this kind of token.
    NotOwned,
    /// The identity service answered that the credential is not valid
    /// (inactive, unknown key, refused by the endpoint).
    Rejected,
    /// Authenticated, but route policy refuses the request.
    Policy,
    /// The identity service could not be reached or understood.
    Upstream,
    /// The provider or its configuration cannot work.
    Config,
    /// A rate limit (requests per second, minute or hour) refuses the request for now.
    RateLimited,
    /// A calendar quota (per UTC day or month) is used up until the period ends.
    QuotaExceeded,
}

impl Reason {
    /// The reason an error of `kind` has when its provider names none.
    pub fn default_for(kind: ErrorKind) -> Reason {
        match kind {
            ErrorKind::InvalidToken => Reason::Rejected,
            ErrorKind::InvalidRequest => Reason::Request,
            ErrorKind::InsufficientScope => Reason::Policy,
            ErrorKind::Unavailable => Reason::Upstream,
            ErrorKind::Config => Reason::Config,
            ErrorKind::RateLimited => Reason::RateLimited,
        }
    }

    /// A named claim: `Reason::claim("exp")`.
    pub fn claim(name: &'static str) -> Reason {
        Reason::Claim(std::borrow::Cow::Borrowed(name))
    }

    /// A key constraint by name: `Reason::key_constraint("allowed_cidrs")`.
    pub fn key_constraint(name: &'static str) -> Reason {
        Reason::KeyConstraint(std::borrow::Cow::Borrowed(name))
    }

    /// A stable snake_case name for logs and metrics (`signature`, `claim`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::MissingCredential => "missing_credential",
            Reason::Request => "request",
            Reason::Malformed => "malformed",
            Reason::Algorithm => "algorithm",
            Reason::Key => "key",
            Reason::Signature => "signature",
            Reason::Claim(_) => "claim",
            Reason::Principal => "principal",
            Reason::Tenant => "tenant",
            Reason::Revoked => "revoked",
            Reason::KeySuspended => "key_suspended",
            Reason::KeyRevoked => "key_revoked",
            Reason::KeyExpired => "key_expired",
            Reason::KeyRotated => "key_rotated",
            Reason::KeyConstraint(_) => "key_constraint",
            Reason::NotOwned => "not_owned",
            Reason::Rejected => "rejected",
            Reason::Policy => "policy",
            Reason::Upstream => "upstream",
            Reason::Config => "config",
            Reason::RateLimited => "rate_limited",
            Reason::QuotaExceeded => "quota_exceeded",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Claim(name) => write!(f, "claim {name}"),
            Reason::KeyConstraint(name) => write!(f, "key constraint {name}"),
            other => f.write_str(other.code()),
        }
    }
}

/// Why a token was not accepted.
///
/// `detail` says exactly what failed ("token expired at 2026-11-28T10:00:00Z",
/// "audience \"x\" is not one of [\"y\"]", "introspection endpoint answered 500")
/// and never contains the token or a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthError {
    kind: ErrorKind,
    reason: Reason,
    detail: String,
    retry_after: Option<Duration>,
    /// The stored credential (API key entry) that was refused, safe to log.
    key_id: Option<String>,
    rate_limit: Option<std::sync::Arc<RateLimitInfo>>,
}

/// The usage limits that applied to a request, for the IETF `RateLimit` and
/// `RateLimit-Policy` fields (draft-ietf-httpapi-ratelimit-headers): carried
/// on a 429's [`AuthError`], and by front ends on allowed answers too.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitInfo {
    /// One entry per limit that applied, the one that refused first.
    pub policies: Vec<LimitPolicy>,
}

/// One limit's state after a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPolicy {
    /// The policy's name (a `limits` rule's name, with `:day` or `:month` for its quotas).
    pub name: String,
    /// Requests (cost units) the policy allows per window.
    pub quota: u64,
    /// The window, in seconds (for a calendar quota: the whole period's length).
    pub window_secs: u64,
    /// Units left now.
    pub remaining: u64,
    /// Seconds until the policy has room again (a rate: until it is full; a quota: until the period ends).
    pub reset_secs: u64,
}

impl RateLimitInfo {
    /// The longest wait among the policies with nothing left; `None` when every one has room.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.policies.iter().filter(|p| p.remaining == 0).map(|p| p.reset_secs).max()
    }
}

impl AuthError {
    /// An error of `kind` with the kind's default [`Reason`].
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        AuthError {
            kind,
            reason: Reason::default_for(kind),
            detail: detail.into(),
            retry_after: None,
            key_id: None,
            rate_limit: None,
        }
    }

    /// The same error with a more specific reason.
    pub fn because(mut self, reason: Reason) -> Self {
        self.reason = reason;
        self
    }

    /// A 401: the credential is not valid.
    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidToken, detail)
    }

    /// A 400: the request around the credential is unusable.
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }

    /// A 403: authenticated, but not allowed.
    pub fn insufficient_scope(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InsufficientScope, detail)
    }

    /// A 503: the identity service cannot be reached or understood.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, detail)
    }

    /// A 500: the provider is misconfigured.
    pub fn config(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, detail)
    }

    /// When the identity service said when to come back (rate limits).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// A 429: a usage limit refuses the request for now; `info` says which
    /// limits applied, and `after` when to come back.
    pub fn rate_limited(detail: impl Into<String>, reason: Reason, after: Duration, info: RateLimitInfo) -> Self {
        let mut error = Self::new(ErrorKind::RateLimited, detail).because(reason).with_retry_after(after);
        error.rate_limit = Some(std::sync::Arc::new(info));
        error
    }

    /// The usage limits that applied, on a 429.
    pub fn rate_limit(&self) -> Option<&RateLimitInfo> {
        self.rate_limit.as_deref()
    }

    /// The same error naming the stored credential (API key entry) it refuses,
    /// for the audit line and the decision log; never the key or its hash.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// The id of the stored credential refused, when the provider knew it.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// Whose problem it is, and so the status.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Where the refusal came from.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// The kind's machine code (`invalid_token`, …).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// What failed, for humans; never the token or a secret.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The same error with its detail prefixed (`provider 2 (custom): …`).
    pub fn with_context(mut self, context: impl fmt::Display) -> Self {
        self.detail = format!("{context}: {}", self.detail);
        self
    }

    /// When the identity service asked to come back.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether this is a 503 (`Unavailable`).
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }
}

impl fmt::Debug for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthError({}, {}: {})", self.code(), self.reason, self.detail)
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail)
    }
}

impl std::error::Error for AuthError {}

/// A configuration that cannot work, naming where and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, once known.
    pub file: Option<String>,
    /// Dotted path of the field (`provider_config.jwks.uri`), empty for the whole file.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// An error about `field` (dotted path; empty for the whole file).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { file: None, field: field.into(), message: message.into() }
    }

    /// Prefixes the field path, as a builder's errors bubble up to the file level.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = match (parent.is_empty(), self.field.is_empty()) {
            (true, _) => self.field,
            (false, true) => parent.to_string(),
            (false, false) => format!("{parent}.{}", self.field),
        };
        self
    }

    /// Names the file the error is in.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for AuthError {
    fn from(e: ConfigError) -> Self {
        AuthError::config(e.to_string())
    }
}
