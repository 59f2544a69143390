//! One HTTP client per provider: rustls, timeouts, custom CA, bounded bodies,
//! and failures classified so an unreachable identity service is never
//! mistaken for a bad token.

use crate::{AuthError, ConfigError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Transport settings shared by every provider that talks HTTP.
///
/// In a provider's config these fields sit beside its own (`verify_tls`,
/// `tls_cafile` are Llama Stack's names; the rest are tokengate's additions).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpClientOptions {
    /// Verify the identity service's TLS certificate (default true).
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    /// A PEM bundle of CA certificates to trust *instead of* the system roots.
    #[serde(default)]
    pub tls_cafile: Option<PathBuf>,
    /// Time allowed to open a connection (default 3s).
    #[serde(default = "default_connect_timeout", with = "crate::duration")]
    pub connect_timeout: Duration,
    /// Time allowed for a whole exchange (default 10s).
    #[serde(default = "default_timeout", with = "crate::duration")]
    pub timeout: Duration,
    /// Largest response body read from the identity service (default 1 MiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_true() -> bool {
    true
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_response_bytes() -> usize {
    1024 * 1024
}

impl Default for HttpClientOptions {
    fn default() -> Self {
        HttpClientOptions {
            verify_tls: true,
            tls_cafile: None,
            connect_timeout: default_connect_timeout(),
            timeout: default_timeout(),
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

static INSECURE_WARNED: AtomicBool = AtomicBool::new(false);

impl HttpClientOptions {
    /// Builds the provider's client. `tls_cafile` is resolved by the caller.
    pub fn build_client(&self) -> Result<reqwest::Client, ConfigError> {
        // A zero limit would fail every request and look like an outage; say so at startup.
        for (field, is_zero) in [
            ("timeout", self.timeout.is_zero()),
            ("connect_timeout", self.connect_timeout.is_zero()),
            ("max_response_bytes", self.max_response_bytes == 0),
        ] {
            if is_zero {
                return Err(ConfigError::new(field, "must be more than 0"));
            }
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .user_agent(concat!("tokengate/", env!("CARGO_PKG_VERSION")))
            .redirect(same_host_redirects());
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

/// Identity services move endpoints within their own host (`/jwks` →
/// `/jwks.json`, http → https); anything else is refused, so a compromised or
/// misconfigured endpoint cannot send tokengate — with its client credentials
/// or `jwks.token` — somewhere else.
fn same_host_redirects() -> reqwest::redirect::Policy {
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
        Some("more than 3 redirects")
    } else if next.host_str() != original.host_str() {
        Some("redirect to another host refused")
    } else if original.scheme() == "https" && next.scheme() != "https" {
        Some("redirect from https to http refused")
    } else {
        None
    }
}

/// Why an exchange with an identity service failed, already worded for operators.
#[derive(Debug)]
pub struct HttpFailure(pub String);

impl HttpFailure {
    /// Words a transport error: timeout, refused connection, untrusted certificate…
    pub fn from_reqwest(what: &str, err: &reqwest::Error) -> Self {
        let chain = error_chain(err);
        let reason = if err.is_timeout() {
            "timed out".to_string()
        } else if chain.contains("UnknownIssuer") || chain.contains("certificate") || chain.contains("Certificate") {
            format!("TLS certificate not trusted ({chain})")
        } else if err.is_connect() {
            format!("connection failed ({chain})")
        } else if err.is_redirect() {
            format!("redirect refused ({chain})")
        } else {
            chain
        };
        HttpFailure(format!("{what}: {reason}"))
    }
}

impl From<HttpFailure> for AuthError {
    fn from(f: HttpFailure) -> Self {
        AuthError::unavailable(f.0)
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
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
mod tests {
    use super::redirect_refusal;
    use reqwest::Url;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn redirects_stay_on_the_host_never_downgrade_and_stop_after_three() {
        let next = |u: &str| Url::parse(u).unwrap();
        let one = urls(&["http://idp.test/jwks"]);
        assert_eq!(redirect_refusal(&one, &next("http://idp.test/jwks.json")), None);
        assert_eq!(redirect_refusal(&one, &next("https://idp.test/jwks")), None, "upgrade is fine");
        assert_eq!(redirect_refusal(&one, &next("http://idp.test:8443/jwks")), None, "same host, other port");
        for elsewhere in ["http://evil.test/jwks", "http://idp.test.evil.test/jwks", "http://127.0.0.1/jwks"] {
            assert_eq!(
                redirect_refusal(&one, &next(elsewhere)),
                Some("redirect to another host refused"),
                "{elsewhere}"
            );
        }
        let secure = urls(&["https://idp.test/jwks"]);
        assert_eq!(
            redirect_refusal(&secure, &next("http://idp.test/jwks")),
            Some("redirect from https to http refused")
        );
        let two_followed = urls(&["http://idp.test/a", "http://idp.test/b", "http://idp.test/c"]);
        assert_eq!(redirect_refusal(&two_followed, &next("http://idp.test/d")), None, "the third redirect");
        let three_followed =
            urls(&["http://idp.test/a", "http://idp.test/b", "http://idp.test/c", "http://idp.test/d"]);
        assert_eq!(redirect_refusal(&three_followed, &next("http://idp.test/e")), Some("more than 3 redirects"));
    }
}
