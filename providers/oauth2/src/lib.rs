//! `oauth2_token`: JWTs verified against a key set, or opaque tokens checked by
//! RFC 7662 introspection.
//!
//! Which one is chosen by the config:
//! - `introspection` → [`introspection::Introspector`];
//! - `jwks.uri` → JWTs verified against that key set;
//! - `issuer` without `jwks.uri` → the key set is found by OIDC discovery;
//! - `secret` → HS256/384/512 JWTs verified with that shared secret.
//!
//! Imports: the contract (`tokengate-api`), the shared HTTP machinery
//! (`tokengate-kit`) and third-party crates; never `tokengate` itself.
//!
//! One file, past 400 lines, because it checks the config as a whole (which
//! combinations are allowed) while building the provider; each way of verifying
//! lives in its own module (`jwt`, `introspection`, `keyset`, `discovery`).

#![warn(missing_docs)]

mod alg;
pub mod config;
mod discovery;
pub mod ecdsa;
mod introspection;
mod jwt;
mod keys;
mod keyset;
mod text;

use crate::alg::{Alg, AlgSet};
use crate::config::{JwksConfig, OAuth2Config, LLAMA_STACK_DEFAULT_AUDIENCE, MAX_LEEWAY, OGX_DEFAULT_AUDIENCE};
use crate::introspection::Introspector;
use crate::jwt::{ClaimRules, JwtValidator, KeySource, VerifiedCache};
use crate::keys::HmacKeys;
use crate::keyset::{KeySet, KeySetOptions, Source};
use crate::text::display_url;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokengate_api::Description;
use tokengate_api::{
    parse_provider_config, AuthError, AuthProvider, BuildContext, ClaimsMapping, ConfigError, DynProvider, Ownership,
    Principal, ProviderBuilder, RequestContext,
};
use tokengate_kit::HttpClientOptions;
use url::Url;

/// The `type` name of this provider.
pub const TYPE_NAME: &str = "oauth2_token";

/// Shortest shared secret accepted for HS256/384/512 (RFC 7518 §3.2: at least
/// the hash size; 256 bits is the floor for the weakest of the three).
pub const MIN_SECRET_BYTES: usize = 32;

/// Builds [`OAuth2Provider`]s from `provider_config` sections of `type: oauth2_token`.
#[derive(Debug, Default, Clone, Copy)]
pub struct OAuth2Builder;

impl ProviderBuilder for OAuth2Builder {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn build(&self, config: serde_json::Value, ctx: &BuildContext) -> Result<DynProvider, ConfigError> {
        let cfg = parse_provider_config::<OAuth2Config>(config)?;
        Ok(Arc::new(OAuth2Provider::new(cfg, ctx)?))
    }
}

/// Validates OAuth2 bearer tokens: JWTs locally, opaque tokens by introspection.
pub struct OAuth2Provider {
    mode: Mode,
    issuer: Option<String>,
    max_token_bytes: usize,
    error_message: String,
    accepts: String,
}

// Built once per provider and never moved afterwards: boxing the JWT side
// would only add a pointer chase to every validation.
#[allow(clippy::large_enum_variant)]
enum Mode {
    Jwt(JwtValidator),
    Introspection(Introspector),
}

impl std::fmt::Debug for OAuth2Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Provider").field("accepts", &self.accepts).finish_non_exhaustive()
    }
}

impl OAuth2Provider {
    /// Checks `cfg` and prepares the provider. Nothing is fetched yet: the key
    /// set is fetched on first use (or by [`OAuth2Provider::warm_up`]).
    pub fn new(cfg: OAuth2Config, ctx: &BuildContext) -> Result<Self, ConfigError> {
        check_common(&cfg)?;
        if cfg.introspection.is_some() {
            return Self::new_introspection(cfg, ctx);
        }
        // Where keys come from is the most basic question, so it is answered (or
        // its absence reported) before any claim setting.
        let source = if cfg.secret.is_none() { Some(key_source(&cfg)?) } else { None };
        let rules = claim_rules(&cfg, ctx)?;
        let allowed = allowed_algorithms(&cfg)?;
        let require_low_s = require_low_s(&cfg)?;
        let cache = (cfg.cache.enabled && cfg.cache.max_entries > 0 && !cfg.cache.ttl.is_zero())
            .then(|| VerifiedCache::new(cfg.cache.max_entries, cfg.cache.ttl));

        if let Some(secret) = &cfg.secret {
            if cfg.jwks.is_some() {
                return Err(ConfigError::new(
                    "secret",
                    "cannot be combined with `jwks`: a shared secret beside a public key set invites key confusion; use one or the other",
                ));
            }
            if secret.expose().len() < MIN_SECRET_BYTES {
                return Err(ConfigError::new(
                    "secret",
                    format!("is shorter than {MIN_SECRET_BYTES} bytes; use a random secret of at least {MIN_SECRET_BYTES} bytes"),
                ));
            }
            let accepts = match &cfg.issuer {
                Some(issuer) => format!("JWTs from {issuer} signed with the shared secret ({})", allowed.describe()),
                None => format!("JWTs signed with the shared secret ({})", allowed.describe()),
            };
            let validator = JwtValidator {
                rules,
                allowed,
                max_token_bytes: cfg.max_token_bytes,
                keys: KeySource::Secret(HmacKeys::new(secret.expose().as_bytes(), allowed)),
                cache,
                require_low_s,
            };
            return Ok(Self::assemble(&cfg, Mode::Jwt(validator), accepts));
        }

        let Some(source) = source else {
            return Err(ConfigError::new("jwks", "is required: set `jwks.uri`, `issuer` or `secret`"));
        };
        let jwks = match &cfg.jwks {
            Some(jwks) => jwks.clone(),
            None => serde_json::from_value::<JwksConfig>(serde_json::json!({}))
                .map_err(|e| ConfigError::new("jwks", format!("cannot apply the defaults: {e}")))?,
        };
        check_jwks_timing(&jwks)?;
        if let (Some(_), Source::Jwks(url)) = (&jwks.token, &source) {
            if url.scheme() == "http" {
                tracing::warn!(
                    jwks = %display_url(url),
                    "jwks.token is sent over plain http: anyone on the path can read it"
                );
            }
        }
        let accepts = match (&cfg.issuer, &source) {
            (Some(issuer), _) => format!("JWTs from {issuer}"),
            (None, Source::Jwks(url)) => {
                format!("JWTs signed by the key set at {}", display_url(url))
            }
            (None, Source::Discovery { url, .. }) => {
                format!("JWTs signed by keys found at {}", display_url(url))
            }
        };
        // A key set fetched with `jwks.token` follows no redirect: the token would go along.
        let client = if jwks.token.is_some() { credentialed_client(&cfg, ctx)? } else { http_client(&cfg, ctx)? };
        // Last, so that errors in the rest of the section are reported first.
        if matches!(source, Source::Jwks(_)) {
            check_issuer_required(&cfg, ctx)?;
        }
        let set = KeySet::new(KeySetOptions {
            source,
            client,
            token: jwks.token.clone(),
            allowed,
            max_keys: jwks.max_keys,
            max_response_bytes: cfg.max_response_bytes,
            recheck: jwks.key_recheck_period,
            cooldown: jwks.refresh_cooldown,
            stale_grace: jwks.stale_grace,
        });
        let validator = JwtValidator {
            rules,
            allowed,
            max_token_bytes: cfg.max_token_bytes,
            keys: KeySource::Remote(Arc::new(set)),
            cache,
            require_low_s,
        };
        Ok(Self::assemble(&cfg, Mode::Jwt(validator), accepts))
    }

    fn new_introspection(cfg: OAuth2Config, ctx: &BuildContext) -> Result<Self, ConfigError> {
        if cfg.require_low_s.is_some() {
            return Err(ConfigError::new(
                "require_low_s",
                "applies to JWTs verified here and cannot be combined with `introspection`, where the identity provider verifies signatures",
            ));
        }
        if cfg.allow_high_s_signatures.is_some() {
            tracing::warn!("allow_high_s_signatures has no effect with introspection (the identity provider verifies signatures); remove it");
        }
        if cfg.jwks.is_some() {
            return Err(ConfigError::new(
                "introspection",
                "cannot be combined with `jwks`: configure either JWT validation against a key set or introspection",
            ));
        }
        if cfg.secret.is_some() {
            return Err(ConfigError::new("secret", "applies to JWTs only and cannot be combined with `introspection`"));
        }
        let client = credentialed_client(&cfg, ctx)?;
        let introspector = Introspector::new(&cfg, client, ctx)?;
        let accepts = format!("OAuth2 tokens validated by {}", introspector.host());
        Ok(Self::assemble(&cfg, Mode::Introspection(introspector), accepts))
    }

    fn assemble(cfg: &OAuth2Config, mode: Mode, accepts: String) -> Self {
        let error_message = match (&cfg.issuer, &mode) {
            (Some(issuer), _) => {
                format!("Authentication required. Please provide a valid OAuth2 Bearer token from {issuer}")
            }
            (None, Mode::Introspection(i)) => {
                format!("Authentication required. Please provide a valid OAuth2 Bearer token validated by {}", i.host())
            }
            (None, Mode::Jwt(_)) => {
                "Authentication required. Please provide a valid OAuth2 Bearer token in the Authorization header"
                    .to_string()
            }
        };
        OAuth2Provider {
            mode,
            issuer: cfg.issuer.clone(),
            max_token_bytes: cfg.max_token_bytes,
            error_message,
            accepts,
        }
    }

    /// Fetches the key set now unless usable keys are already held, so the
    /// first requests do not wait and a broken identity provider shows at start-up.
    /// A no-op for shared-secret and introspection modes.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        match &self.mode {
            Mode::Jwt(v) => v.warm_up().await,
            Mode::Introspection(_) => Ok(()),
        }
    }

    /// Key-set fetches attempted so far (discovery documents not counted).
    pub fn fetch_count(&self) -> u64 {
        match &self.mode {
            Mode::Jwt(JwtValidator { keys: KeySource::Remote(set), .. }) => set.fetch_count(),
            _ => 0,
        }
    }
}

#[async_trait]
impl AuthProvider for OAuth2Provider {
    async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        match &self.mode {
            Mode::Jwt(v) => v.validate(token, &ctx.trace).await,
            // Boxed so that the (much larger) introspection future does not
            // size the future of every JWT validation: async-trait boxes this
            // whole body, and a multi-kilobyte box misses the allocator's fast path.
            Mode::Introspection(i) => Box::pin(i.validate(token)).await,
        }
    }

    /// A JWT is ours when its (unverified) `iss` is our issuer, or when no
    /// issuer is configured; introspection also owns every non-JWT token.
    fn ownership(&self, token: &str) -> Ownership {
        let owned = match jwt::peek(token, self.max_token_bytes) {
            Some(iss) => match &self.issuer {
                None => true,
                Some(expected) => iss.as_deref() == Some(expected.as_str()),
            },
            None => matches!(self.mode, Mode::Introspection(_)),
        };
        if owned {
            Ownership::Mine
        } else {
            Ownership::NotMine
        }
    }

    fn describe(&self) -> Description {
        let mapping = match &self.mode {
            Mode::Jwt(v) => &v.rules.claims_mapping,
            Mode::Introspection(i) => i.claims_mapping(),
        };
        Description::new(TYPE_NAME)
            .with_message(self.error_message.clone())
            .accepting(self.accepts.clone())
            .with_mapping(mapping.clone())
    }

    /// Ready once a usable key set is held (JWKS mode); introspection and
    /// shared-secret modes have nothing to fetch ahead of a token.
    async fn ready(&self) -> Result<(), AuthError> {
        self.warm_up().await
    }
}

fn check_common(cfg: &OAuth2Config) -> Result<(), ConfigError> {
    if cfg.leeway > MAX_LEEWAY {
        return Err(ConfigError::new(
            "leeway",
            format!("{} is more than the allowed {}", human(cfg.leeway), human(MAX_LEEWAY)),
        ));
    }
    if cfg.max_token_bytes == 0 || cfg.max_token_bytes > 1024 * 1024 {
        return Err(ConfigError::new("max_token_bytes", "must be between 1 and 1048576"));
    }
    if cfg.max_response_bytes == 0 {
        return Err(ConfigError::new("max_response_bytes", "must be more than 0"));
    }
    if cfg.timeout.is_zero() {
        return Err(ConfigError::new("timeout", "must be more than 0"));
    }
    if cfg.connect_timeout.is_zero() {
        return Err(ConfigError::new("connect_timeout", "must be more than 0"));
    }
    for (field, claim) in [("principal_claim", &cfg.principal_claim), ("tenant_claim", &cfg.tenant_claim)] {
        if claim.as_ref().is_some_and(|c| c.trim().is_empty()) {
            return Err(ConfigError::new(field, "is empty"));
        }
    }
    Ok(())
}

/// `require_low_s`, and the field it replaced (issue #21): before, high-S
/// ECDSA signatures were refused unless `allow_high_s_signatures: true`; now
/// both forms are accepted unless `require_low_s: true`. The old field keeps
/// meaning what it meant, with a warning; both at once must agree.
fn require_low_s(cfg: &OAuth2Config) -> Result<bool, ConfigError> {
    match (cfg.require_low_s, cfg.allow_high_s_signatures) {
        (require, None) => Ok(require.unwrap_or(false)),
        (Some(require), Some(allow)) if require == allow => Err(ConfigError::new(
            "allow_high_s_signatures",
            format!(
                "is {allow} and require_low_s is {require}, which say opposite things; remove allow_high_s_signatures \
                 (require_low_s replaces it)"
            ),
        )),
        (_, Some(true)) => {
            tracing::warn!(
                "allow_high_s_signatures: true is now the default (both ECDSA S forms are accepted, and a token's \
                 malleated twin is the same token to revocation and caches); remove it"
            );
            Ok(false)
        }
        (_, Some(false)) => {
            tracing::warn!(
                "allow_high_s_signatures: false is replaced by require_low_s: true (high-S ECDSA signatures stay \
                 refused); write that instead"
            );
            Ok(true)
        }
    }
}

/// `jwks.uri` without `issuer` would accept tokens of every issuer that key
/// set signs for (multi-tenant providers share one), so one of `issuer` or
/// an explicit `allow_any_issuer: true` is required. A Llama Stack run.yaml,
/// where `issuer` is optional, loads with a warning instead.
fn check_issuer_required(cfg: &OAuth2Config, ctx: &BuildContext) -> Result<(), ConfigError> {
    match (&cfg.issuer, cfg.allow_any_issuer) {
        (Some(_), true) => Err(ConfigError::new(
            "allow_any_issuer",
            "cannot be combined with `issuer`: either check the issuer or explicitly accept any",
        )),
        (Some(_), false) | (None, true) => Ok(()),
        (None, false) if ctx.llama_stack_defaults => {
            tracing::warn!(
                field = "issuer",
                "oauth2_token: `jwks.uri` without `issuer`: the iss claim is NOT checked, so tokens of every issuer \
                 this key set signs for are accepted; set `issuer` (or allow_any_issuer: true to say so on purpose)"
            );
            Ok(())
        }
        (None, false) => Err(ConfigError::new(
            "issuer",
            "is required with `jwks.uri`: name the issuer your tokens carry (iss), or set allow_any_issuer: true to accept tokens of any issuer this key set signs for",
        )),
    }
}

fn claim_rules(cfg: &OAuth2Config, ctx: &BuildContext) -> Result<ClaimRules, ConfigError> {
    let audiences = if cfg.allow_any_audience {
        if cfg.audience.is_some() {
            return Err(ConfigError::new(
                "allow_any_audience",
                "cannot be combined with `audience`: either check the audience or explicitly accept any",
            ));
        }
        None
    } else {
        match &cfg.audience {
            Some(audience) => {
                let values = audience.values();
                if values.is_empty() || values.iter().any(|v| v.is_empty()) {
                    return Err(ConfigError::new(
                        "audience",
                        "is empty; name the audience your tokens carry, or set allow_any_audience: true",
                    ));
                }
                Some(values)
            }
            None if ctx.llama_stack_defaults => {
                // A run.yaml cannot say which release wrote it: OGX defaults to `ogx`,
                // Llama Stack before the rename to `llama-stack`.
                tracing::warn!(
                    field = "audience",
                    "oauth2_token without `audience`: accepting tokens for OGX's default `{OGX_DEFAULT_AUDIENCE}` and \
                     Llama Stack's `{LLAMA_STACK_DEFAULT_AUDIENCE}`; set `audience` to the one your tokens carry"
                );
                Some(vec![OGX_DEFAULT_AUDIENCE.to_string(), LLAMA_STACK_DEFAULT_AUDIENCE.to_string()])
            }
            None => {
                return Err(ConfigError::new(
                    "audience",
                    "is required for JWTs: name the audience your tokens carry (aud), or set allow_any_audience: true to accept tokens meant for any service",
                ))
            }
        }
    };
    if let Some(issuer) = &cfg.issuer {
        if issuer.is_empty() {
            return Err(ConfigError::new("issuer", "is empty"));
        }
    }
    Ok(ClaimRules {
        issuer: cfg.issuer.clone(),
        audiences,
        leeway: cfg.leeway.as_secs_f64(),
        allow_missing_exp: cfg.allow_missing_exp,
        principal_claim: cfg.principal_claim.clone().unwrap_or_else(|| "sub".to_string()),
        tenant_claim: cfg.tenant_claim.clone(),
        claims_mapping: cfg.claims_mapping.clone().unwrap_or_else(ClaimsMapping::oauth2_default),
    })
}

/// RFC 7518 §3.2: an HMAC key "of the same size as the hash output or larger MUST be used".
fn hmac_min_secret_bytes(alg: Alg) -> usize {
    match alg {
        Alg::HS384 => 48,
        Alg::HS512 => 64,
        _ => MIN_SECRET_BYTES,
    }
}

fn allowed_algorithms(cfg: &OAuth2Config) -> Result<AlgSet, ConfigError> {
    let with_secret = cfg.secret.is_some();
    let secret_len = cfg.secret.as_ref().map_or(0, |s| s.expose().len());
    let Some(names) = &cfg.algorithms else {
        return Ok(if with_secret {
            // Only the HMAC algorithms the secret is long enough for.
            AlgSet::hmac().iter().filter(|a| secret_len >= hmac_min_secret_bytes(*a)).collect()
        } else {
            AlgSet::asymmetric()
        });
    };
    if names.is_empty() {
        return Err(ConfigError::new("algorithms", "is empty; omit it to accept every supported algorithm"));
    }
    let supported = || Alg::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ");
    let mut set = AlgSet::default();
    for (i, name) in names.iter().enumerate() {
        let field = format!("algorithms[{i}]");
        if name.eq_ignore_ascii_case("none") {
            return Err(ConfigError::new(field, "\"none\" (unsigned tokens) is never accepted"));
        }
        let Some(alg) = Alg::from_name(name) else {
            return Err(ConfigError::new(field, format!("{name:?} is not a supported algorithm ({})", supported())));
        };
        if alg.is_hmac() && !with_secret {
            return Err(ConfigError::new(
                field,
                format!("{alg} needs `secret`; a key set only verifies asymmetric algorithms"),
            ));
        }
        if !alg.is_hmac() && with_secret {
            return Err(ConfigError::new(
                field,
                format!("{alg} needs a key set; with `secret` only HS256, HS384 and HS512 apply"),
            ));
        }
        let min = hmac_min_secret_bytes(alg);
        if alg.is_hmac() && secret_len >= MIN_SECRET_BYTES && secret_len < min {
            return Err(ConfigError::new(
                field,
                format!("{alg} needs a secret of at least {min} bytes (RFC 7518 §3.2); `secret` has {secret_len}"),
            ));
        }
        set.insert(alg);
    }
    Ok(set)
}

fn key_source(cfg: &OAuth2Config) -> Result<Source, ConfigError> {
    let uri = cfg.jwks.as_ref().and_then(|j| j.uri.as_deref());
    match (uri, &cfg.issuer) {
        (Some(uri), _) => Ok(Source::Jwks(parse_url("jwks.uri", uri)?)),
        (None, Some(issuer)) => {
            let url = discovery::discovery_url(issuer).map_err(|m| ConfigError::new("issuer", m))?;
            Ok(Source::Discovery { issuer: issuer.clone(), url })
        }
        (None, None) if cfg.jwks.is_some() => Err(ConfigError::new(
            "jwks.uri",
            "is required unless `issuer` is set (the key set is then found by OIDC discovery)",
        )),
        (None, None) => Err(ConfigError::new(
            "jwks",
            "is required: set `jwks.uri`, `issuer` (to find the key set by OIDC discovery) or `introspection`",
        )),
    }
}

fn parse_url(field: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| ConfigError::new(field, format!("is not a valid URL ({e})")))?;
    discovery::check_scheme(&url).map_err(|m| ConfigError::new(field, m))?;
    Ok(url)
}

fn check_jwks_timing(jwks: &JwksConfig) -> Result<(), ConfigError> {
    const DAY: Duration = Duration::from_secs(86_400);
    let bounded = |field: &str, value: Duration, min: Duration, max: Duration| {
        if value < min || value > max {
            Err(ConfigError::new(
                format!("jwks.{field}"),
                format!("is {}; it must be between {} and {}", human(value), human(min), human(max)),
            ))
        } else {
            Ok(())
        }
    };
    bounded("key_recheck_period", jwks.key_recheck_period, Duration::from_secs(1), DAY)?;
    // A zero cooldown would let every made-up kid trigger a fetch.
    bounded("refresh_cooldown", jwks.refresh_cooldown, Duration::from_millis(10), Duration::from_secs(3600))?;
    bounded("stale_grace", jwks.stale_grace, Duration::ZERO, 7 * DAY)?;
    if jwks.max_keys == 0 {
        return Err(ConfigError::new("jwks.max_keys", "must be at least 1"));
    }
    Ok(())
}

fn http_options(cfg: &OAuth2Config, ctx: &BuildContext) -> HttpClientOptions {
    tokengate_kit::http_options!(cfg, ctx)
}

/// For key sets and discovery documents, fetched without credentials.
fn http_client(cfg: &OAuth2Config, ctx: &BuildContext) -> Result<reqwest::Client, ConfigError> {
    http_options(cfg, ctx).build_client()
}

/// For requests carrying a token or a secret: follows no redirect.
fn credentialed_client(cfg: &OAuth2Config, ctx: &BuildContext) -> Result<reqwest::Client, ConfigError> {
    http_options(cfg, ctx).build_credentialed_client()
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
