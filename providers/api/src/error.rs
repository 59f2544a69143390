use std::fmt;
use std::time::Duration;

/// Which side of the line an authentication failure falls on.
///
/// The split that matters most to operators: a bad credential (`InvalidToken`,
/// 401) is the client's problem; an identity provider that cannot be reached or
/// understood (`Unavailable`, 503) is ours, and must never be reported as the former.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    detail: String,
    retry_after: Option<Duration>,
}

impl AuthError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        AuthError { kind, detail: detail.into(), retry_after: None }
    }

    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidToken, detail)
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }

    pub fn insufficient_scope(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InsufficientScope, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, detail)
    }

    pub fn config(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, detail)
    }

    /// When the identity service said when to come back (rate limits).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }
}

impl fmt::Debug for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthError({}: {})", self.code(), self.detail)
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
    pub message: String,
}

impl ConfigError {
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
