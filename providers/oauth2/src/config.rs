//! `provider_config` for `type: oauth2_token`, field for field compatible with
//! Llama Stack / OGX's `OAuth2TokenAuthConfig`, plus tokengate's additions.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tokengate_api::{ClaimsMapping, Secret};
use tokengate_kit::CacheConfig;

/// `provider_config` for `type: oauth2_token`: how tokens are verified, and what they must say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// Verify JWTs against a key set (Llama Stack: `jwks`).
    #[serde(default)]
    pub jwks: Option<JwksConfig>,
    /// Validate opaque tokens by RFC 7662 introspection (Llama Stack: `introspection`).
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// Expected `iss`; with neither `jwks` nor `introspection`, the key set is
    /// found by OIDC discovery at `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Expected `aud` (a string, or a list: any one must match). Required for JWTs.
    #[serde(default)]
    pub audience: Option<Audience>,
    /// Explicit opt-out of the audience check; never the default.
    #[serde(default)]
    pub allow_any_audience: bool,
    /// Explicit opt-out of the issuer check for `jwks.uri` (without it, `issuer`
    /// is required there: a key set may sign for several issuers or tenants).
    #[serde(default)]
    pub allow_any_issuer: bool,
    /// Claims → attributes (default: `sub`/`username` → roles, `groups`/`team` → teams, …).
    #[serde(default)]
    pub claims_mapping: Option<ClaimsMapping>,
    /// Claim that names the principal (default `sub`; introspection falls back to `username`).
    #[serde(default)]
    pub principal_claim: Option<String>,
    /// Claim that names the tenant (`tid`, `org.id`: a dotted path into nested
    /// objects, else the literal key). Lower-cased; a value that is not a tenant
    /// id is refused (401). Absent: no tenant (see `tenancy`).
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// Verify the identity provider's TLS certificate (default true).
    #[serde(default = "tokengate_kit::defaults::on")]
    pub verify_tls: bool,
    /// PEM CA bundle trusted instead of the system roots; relative to the config file.
    #[serde(default)]
    pub tls_cafile: Option<PathBuf>,
    /// Clock skew tolerated for `exp`, `nbf` and `iat` (default 30s, at most 5 minutes).
    #[serde(default = "default_leeway", with = "tokengate_kit::duration")]
    pub leeway: Duration,
    /// Accepted JWS algorithms (default: every asymmetric one tokengate supports).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Refuse ES256/ES384 signatures whose S is above n/2 (default false:
    /// both forms are accepted, as RFC 7518 and the signers of OpenSSL, Node,
    /// Python, Go and Java, which do not normalize S, expect). Either way the
    /// twin (r, n − s) that anyone can make of a signature is the same token
    /// to revocation and every cache (`tokengate_kit::identity`); this makes
    /// it unacceptable as well, for an issuer known to sign low-S only.
    #[serde(default)]
    pub require_low_s: Option<bool>,
    /// Before issue #21: `true` accepted high-S signatures, which is now the
    /// default; `false` refused them, which is now `require_low_s: true`.
    /// Still loads, with a warning.
    #[serde(default)]
    pub allow_high_s_signatures: Option<bool>,
    /// Accept JWTs without `exp` (default false).
    #[serde(default)]
    pub allow_missing_exp: bool,
    /// Tokens longer than this are rejected before parsing (default 8 KiB).
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// HS256/384/512 shared secret, for those who must; never combined with `jwks`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Caches for introspection results and verified JWTs.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Time allowed to connect (default 3s).
    #[serde(default = "tokengate_kit::defaults::connect_timeout", with = "tokengate_kit::duration")]
    pub connect_timeout: Duration,
    /// Time allowed for each key-set, discovery or introspection request (default 10s).
    #[serde(default = "tokengate_kit::defaults::timeout", with = "tokengate_kit::duration")]
    pub timeout: Duration,
    /// Largest reply read (default 1 MiB).
    #[serde(default = "tokengate_kit::defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Most introspection calls in flight at once (default 64); more fail with 503.
    #[serde(default = "tokengate_kit::defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
}

/// `audience`: one value, or a list of which any one must be in the token's `aud`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Audience {
    /// `audience: api`.
    One(String),
    /// `audience: [api, web]`: any one of them.
    Any(Vec<String>),
}

impl Audience {
    /// The accepted audiences, in order.
    pub fn values(&self) -> Vec<String> {
        match self {
            Audience::One(a) => vec![a.clone()],
            Audience::Any(v) => v.clone(),
        }
    }
}

/// `jwks`: where the key set is and how it is refreshed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// Where the key set lives (Llama Stack: `jwks.uri`). Optional when `issuer` allows discovery.
    #[serde(default)]
    pub uri: Option<String>,
    /// Bearer token sent when fetching the key set (Kubernetes' JWKS endpoint needs one).
    #[serde(default)]
    pub token: Option<Secret>,
    /// Longest a fetched key set is trusted before a refresh (default 3600s, as Llama Stack).
    #[serde(default = "default_recheck", with = "tokengate_kit::duration")]
    pub key_recheck_period: Duration,
    /// Least time between refreshes forced by unknown `kid`s (default 30s).
    #[serde(default = "default_cooldown", with = "tokengate_kit::duration")]
    pub refresh_cooldown: Duration,
    /// How long the last good keys keep serving while refreshes fail (default 1h).
    #[serde(default = "default_stale_grace", with = "tokengate_kit::duration")]
    pub stale_grace: Duration,
    /// Most keys accepted from one key set (default 100).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

/// `introspection`: the RFC 7662 endpoint and tokengate's client credentials for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection endpoint.
    pub url: String,
    /// tokengate's client ID at the authorization server.
    pub client_id: String,
    /// tokengate's client secret (sent by HTTP Basic unless `send_secret_in_body`).
    pub client_secret: Secret,
    /// Send the client credentials in the form body instead of HTTP Basic.
    #[serde(default)]
    pub send_secret_in_body: bool,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_max_token_bytes() -> usize {
    8 * 1024
}
fn default_recheck() -> Duration {
    Duration::from_secs(3600)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}
fn default_stale_grace() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_keys() -> usize {
    100
}

/// Llama Stack's default audience, applied only to configs read from a `run.yaml`.
pub const LLAMA_STACK_DEFAULT_AUDIENCE: &str = "llama-stack";
/// OGX's default audience (Llama Stack's, since the rename), applied with
/// [`LLAMA_STACK_DEFAULT_AUDIENCE`] to configs read from a `run.yaml`.
pub const OGX_DEFAULT_AUDIENCE: &str = "ogx";
/// Upper bound on `leeway`: more would make `exp` meaningless.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
