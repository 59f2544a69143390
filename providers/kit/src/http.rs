//! One HTTP client per provider: rustls, timeouts, custom CA, bounded bodies,
//! and failures classified so an unreachable identity service is never
//! mistaken for a bad token.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokengate_api::{AuthError, ConfigError};

mod failure;
pub use failure::HttpFailure;

/// Transport settings shared by every provider that talks HTTP.
///
/// In a provider's config these fields sit beside its own (`verify_tls`,
/// `tls_cafile` are Llama Stack's names; the rest are tokengate's additions).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpClientOptions {
    /// Verify the identity service's TLS certificate (default true).
    #[serde(default = "crate::defaults::on")]
    pub verify_tls: bool,
    /// A PEM bundle of CA certificates to trust *instead of* the system roots.
    #[serde(default)]
    pub tls_cafile: Option<PathBuf>,
    /// Time allowed to open a connection (default 3s).
    #[serde(default = "crate::defaults::connect_timeout", with = "crate::duration")]
    pub connect_timeout: Duration,
    /// Time allowed for a whole exchange (default 10s).
    #[serde(default = "crate::defaults::timeout", with = "crate::duration")]
    pub timeout: Duration,
    /// Largest response body read from the identity service (default 1 MiB).
    #[serde(default = "crate::defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Most calls to the identity service in flight at once (default 64); see [`UpstreamLimit`].
    #[serde(default = "crate::defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
}

/// The default `max_concurrent_requests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;

impl Default for HttpClientOptions {
    fn default() -> Self {
        HttpClientOptions {
            verify_tls: true,
            tls_cafile: None,
            connect_timeout: crate::defaults::connect_timeout(),
            timeout: crate::defaults::timeout(),
            max_response_bytes: crate::defaults::max_response_bytes(),
            max_concurrent_requests: crate::defaults::max_concurrent_requests(),
        }
    }
}

static INSECURE_WARNED: AtomicBool = AtomicBool::new(false);

impl HttpClientOptions {
    /// Builds a client for requests that carry no credential (a key set,
    /// OIDC discovery): redirects are followed within the same origin. Use
    /// [`HttpClientOptions::build_credentialed_client`] for anything that sends
    /// a token or a secret. `tls_cafile` is resolved by the caller.
    pub fn build_client(&self) -> Result<reqwest::Client, ConfigError> {
        self.build(same_origin_redirects())
    }

    /// Builds a client for requests that carry a token or a secret (in a POST
    /// body or an `Authorization` header): it follows no redirect at all.
    ///
    /// Why none, not "same origin only": a 307/308 re-sends the body, so any
    /// redirect an endpoint (or whoever controls its responses) chooses gets
    /// the client's token and tokengate's `client_secret` again, and a port on
    /// the same host can be another service. Identity endpoints are configured
    /// by their final URL; a 3xx answer is reported by the provider as an
    /// unavailable service naming where it pointed (see [`redirect_failure`]).
    pub fn build_credentialed_client(&self) -> Result<reqwest::Client, ConfigError> {
        self.build(reqwest::redirect::Policy::none())
    }

    /// The cap on concurrent calls that goes with this provider's client.
    pub fn build_limit(&self, provider: &'static str) -> Result<UpstreamLimit, ConfigError> {
        UpstreamLimit::new(provider, self.max_concurrent_requests)
    }

    fn build(&self, redirects: reqwest::redirect::Policy) -> Result<reqwest::Client, ConfigError> {
        // A zero limit would fail every request and look like an outage; say so at startup.
        for (field, is_zero) in [
            ("timeout", self.timeout.is_zero()),
            ("connect_timeout", self.connect_timeout.is_zero()),
            ("max_response_bytes", self.max_response_bytes == 0),
            ("max_concurrent_requests", self.max_concurrent_requests == 0),
        ] {
            if is_zero {
                return Err(ConfigError::new(field, "must be more than 0"));
            }
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .user_agent(concat!("tokengate/", env!("CARGO_PKG_VERSION")))
            // The URL tokengate was configured with is nobody else's business.
            .referer(false)
            .redirect(redirects);
        if let Some(path) = &self.tls_cafile {
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError::new("tls_cafile", format!("cannot read {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ConfigError::new("tls_cafile", format!("{} is not a PEM certificate bundle: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(ConfigError::new("tls_cafile", format!("{} holds no certificate", path.display())));
            }
            builder = builder.tls_certs_only(certs);
        }
        if !self.verify_tls {
            if !INSECURE_WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "verify_tls is false: identity-service certificates are NOT verified; anyone on the path can impersonate it"
                );
            }
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        builder.build().map_err(|e| ConfigError::new("", format!("cannot build the HTTP client: {e}")))
    }
}

/// Key sets and discovery documents move within their own origin (`/jwks` →
/// `/jwks.json`); anything else is refused, so a compromised or misconfigured
/// endpoint cannot point tokengate somewhere else. The origin is compared
/// whole — scheme, host and port — since another port on the same host is
/// another service; the one exception is http → https on the same host with
/// default ports, the upgrade every server does.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| match redirect_refusal(attempt.previous(), attempt.url()) {
        Some(why) => attempt.error(why),
        None => attempt.follow(),
    })
}

/// Why a redirect from the chain `previous` (the original URL first) to `next`
/// is not followed, if it is not.
fn redirect_refusal(previous: &[reqwest::Url], next: &reqwest::Url) -> Option<&'static str> {
    let original = previous.first()?;
    // `previous` holds the original URL and every redirect followed so far.
    if previous.len() > 3 {
        return Some("more than 3 redirects");
    }
    if original.scheme() == "https" && next.scheme() != "https" {
        return Some("redirect from https to http refused");
    }
    let same_origin = next.origin() == original.origin();
    let upgrade = original.scheme() == "http"
        && next.scheme() == "https"
        && next.host_str() == original.host_str()
        && original.port().is_none()
        && next.port().is_none();
    if same_origin || upgrade {
        None
    } else {
        Some("redirect to another origin (scheme, host or port) refused")
    }
}

/// The error for a 3xx answer to a request sent without following redirects:
/// the service is misconfigured (or hijacked), not the token bad. `None` when
/// `response` is no redirect. Only the target's origin is named: a query could
/// hold anything.
pub fn redirect_failure(what: &str, response: &reqwest::Response) -> Option<AuthError> {
    let status = response.status();
    if !status.is_redirection() {
        return None;
    }
    // Lenient on purpose: the identity service's reply, not the client's
    // request, and only named in the error; the 3xx is refused either way.
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| response.url().join(l).ok())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "nowhere usable".to_string());
    Some(AuthError::unavailable(format!(
        "{what} answered {} redirecting to {target}; tokengate sends no token or secret after a redirect: \
         configure the final URL",
        status.as_u16()
    )))
}

/// A cap on the calls one provider has in flight to its identity service.
///
/// Why: each new token the cache has not seen costs one upstream call, and
/// anyone can make up tokens. Without a cap one client can hold every
/// connection and use up the identity service's rate limit (GitHub's is per
/// application) for everyone. At the cap a call waits at most
/// [`UpstreamLimit::MAX_WAIT`] for a slot, then fails at once as
/// *unavailable* (503 with `Retry-After`) instead of queueing without bound.
/// Cheap to clone; clones share the cap.
#[derive(Clone)]
pub struct UpstreamLimit {
    provider: &'static str,
    max: usize,
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for UpstreamLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLimit").field("max", &self.max).finish()
    }
}

/// A slot taken from an [`UpstreamLimit`]; dropping it frees the slot.
pub struct UpstreamPermit(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl UpstreamLimit {
    /// How long a call waits for a free slot before it is refused: long enough
    /// to ride out a burst, short enough that nothing piles up behind a slow service.
    pub const MAX_WAIT: Duration = Duration::from_millis(100);
    /// The `Retry-After` given with a refusal.
    pub const RETRY_AFTER: Duration = Duration::from_secs(1);

    /// A cap of `max` calls in flight for `provider` (its `type`, for the
    /// `tokengate_upstream_saturated_total` counter); `max` must be more than 0.
    pub fn new(provider: &'static str, max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::new("max_concurrent_requests", "must be more than 0"));
        }
        // tokio's semaphore holds at most usize::MAX >> 3 permits.
        let max = max.min(tokio::sync::Semaphore::MAX_PERMITS);
        Ok(UpstreamLimit { provider, max, slots: Arc::new(tokio::sync::Semaphore::new(max)) })
    }

    /// Takes a slot for one upstream exchange (hold it until the reply is read).
    pub async fn acquire(&self, what: &str) -> Result<UpstreamPermit, AuthError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(UpstreamPermit(permit));
        }
        if let Ok(Ok(permit)) = tokio::time::timeout(Self::MAX_WAIT, self.slots.clone().acquire_owned()).await {
            return Ok(UpstreamPermit(permit));
        }
        metrics::counter!("tokengate_upstream_saturated_total", "provider" => self.provider).increment(1);
        tracing::debug!(
            provider = self.provider,
            max = self.max,
            "upstream call refused: max_concurrent_requests reached"
        );
        Err(AuthError::unavailable(format!(
            "{what}: {} calls already in flight (max_concurrent_requests); try again shortly",
            self.max
        ))
        .with_retry_after(Self::RETRY_AFTER))
    }

    /// Slots free now (for tests and metrics).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

/// Reads at most `limit` bytes of body; a larger body is an unavailable service,
/// not something to buffer.
pub async fn read_body_limited(
    what: &str,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, AuthError> {
    if let Some(len) = response.content_length() {
        if len > limit as u64 {
            return Err(AuthError::unavailable(format!(
                "{what}: response of {len} bytes exceeds the {limit}-byte limit"
            )));
        }
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(AuthError::unavailable(format!("{what}: response exceeds the {limit}-byte limit")));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(HttpFailure::from_reqwest(what, &e).into()),
        }
    }
}

/// Reads a bounded JSON body; garbage is an *unavailable* service, never a bad token.
pub async fn read_json_limited<T: DeserializeOwned>(
    what: &str,
    response: reqwest::Response,
    limit: usize,
) -> Result<T, AuthError> {
    let body = read_body_limited(what, response, limit).await?;
    serde_json::from_slice(&body)
        .map_err(|e| AuthError::unavailable(format!("{what}: answered with invalid JSON ({e})")))
}

/// The JSON type of `v`, with its article, for error details about a reply.
pub fn json_type(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The [`HttpClientOptions`] of a provider config that declares the transport
/// fields under their usual names (`verify_tls`, `tls_cafile`,
/// `connect_timeout`, `timeout`, `max_response_bytes`,
/// `max_concurrent_requests`; defaults in [`defaults`](crate::defaults)),
/// `tls_cafile` resolved against the config file's folder by a
/// `BuildContext`: `http_options!(cfg, ctx)`.
#[macro_export]
macro_rules! http_options {
    ($cfg:expr, $ctx:expr) => {
        $crate::HttpClientOptions {
            verify_tls: $cfg.verify_tls,
            tls_cafile: $cfg.tls_cafile.as_deref().map(|p| $ctx.resolve(p)),
            connect_timeout: $cfg.connect_timeout,
            timeout: $cfg.timeout,
            max_response_bytes: $cfg.max_response_bytes,
            max_concurrent_requests: $cfg.max_concurrent_requests,
        }
    };
}

/// `host[:port]` of a URL without userinfo: what 401 messages and logs name
/// (Python's `urlparse(url).netloc`, as Llama Stack shows it, minus credentials).
pub fn host_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Whether a URL points at this machine, where plain http is not a network exposure.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests;
