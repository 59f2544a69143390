//! The `forward_auth:` section: how `tokengate serve` meets its proxy.
//!
//! Here, not in the server, because a config file is parsed (and checked)
//! without starting one; [`crate::http::server`] turns it into listener limits.

use serde::Deserialize;
use std::time::Duration;

/// Which reverse proxy asks, and so which headers describe the original request.
///
/// Only the named proxy's headers are read: nginx's `auth_request` forwards
/// every header the client sent, so a header the proxy does not set is the
/// client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Proxy {
    /// `X-Original-URI` and `X-Original-Method` (the shipped `auth_request` snippet).
    Nginx,
    /// `X-Forwarded-Uri`, `-Method`, `-Host` and `-Proto` (`forwardAuth`).
    Traefik,
    /// As Traefik (`forward_auth`).
    Caddy,
    /// The decision request's own method and path, minus `path_prefix` (`ext_authz`).
    Envoy,
    /// Whichever family is present; both only when they agree, a repeated,
    /// empty or unreadable one never (400).
    #[default]
    Auto,
}

impl Proxy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Proxy::Nginx => "nginx",
            Proxy::Traefik => "traefik",
            Proxy::Caddy => "caddy",
            Proxy::Envoy => "envoy",
            Proxy::Auto => "auto",
        }
    }
}

/// The `forward_auth:` section: how `tokengate serve` meets its proxy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// `nginx | traefik | caddy | envoy | auto` (default `auto`); `--proxy` wins.
    #[serde(default)]
    pub proxy: Proxy,
    /// Envoy `ext_authz` `path_prefix`, removed from decision request paths; `--path-prefix` wins.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Longest wait for a request's headers from their first byte, on both listeners (default 10s).
    #[serde(default, with = "tokengate_kit::duration::option")]
    pub header_read_timeout: Option<Duration>,
    /// A connection with no request for this long is closed (default 75s).
    #[serde(default, with = "tokengate_kit::duration::option")]
    pub idle_timeout: Option<Duration>,
    /// Open connections per listener; more are closed on accept (default 4096).
    #[serde(default)]
    pub max_connections: Option<usize>,
}
