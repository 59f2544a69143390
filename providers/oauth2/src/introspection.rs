//! RFC 7662 token introspection: the authorization server says whether a token
//! is active and what it carries.
//!
//! One POST per token (`token=…&token_type_hint=access_token`), authenticated
//! with tokengate's own client credentials: HTTP Basic by default, form fields
//! with `send_secret_in_body`. Results go through a [`RemoteResultCache`], so a
//! busy token costs one introspection per `cache.ttl` (never beyond its `exp`),
//! concurrent requests with the same token share one call, and inactive tokens
//! are remembered for `cache.negative_ttl`.
//!
//! The split that matters: a reply that says "not active", "expired" or "wrong
//! issuer/audience" is the *token's* fault (401); a reply we cannot use — a
//! non-200 status, non-JSON, a missing `active` — is the *service's* fault and
//! is reported as unavailable (503), never as a bad token.
//!
//! Checks on an active token's reply:
//! - `exp` / `nbf`, when present, with `leeway` for clock skew;
//! - `iss`, when `issuer` is configured: a different issuer is rejected; a reply
//!   without `iss` is accepted, because the endpoint we were configured to ask
//!   is itself the authority for the tokens it vouches for;
//! - `aud`, when `audience` is configured (and `allow_any_audience` is not set):
//!   a reply without `aud` is rejected, since the audience restriction the
//!   operator asked for cannot be verified otherwise;
//! - the token is not a refresh token: servers answer `active: true` for any
//!   live token they issued, so a leaked refresh token would otherwise open the
//!   API. Refused when `token_type` is `refresh_token` (RFC 7009's hint name) or
//!   `refresh`, or Keycloak's `typ` is `Refresh`; any other or no type passes.
//!
//! Metrics: `tokengate_idp_fetches_total{provider="oauth2_token", kind="introspection"}`
//! counts upstream calls (cache hits are not fetches); `result="error"` when the
//! outcome was "unavailable", `"ok"` when the endpoint gave a usable verdict,
//! active or not.
//!
//! One file, past 400 lines, because the request, the checks on the reply and
//! their verdicts are one exchange, and the checks read in the order listed
//! above.

use crate::config::OAuth2Config;
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokengate_api::{claim_at_path, AuthError, BuildContext, ClaimsMapping, ConfigError, Principal, Secret};
use tokengate_kit::{
    host_of, is_loopback, json_type, read_body_limited, redirect_failure, HttpFailure, RemoteResultCache,
    UpstreamLimit, Validated,
};

/// Validates tokens by asking an RFC 7662 introspection endpoint.
///
/// A cheap handle (one `Arc`): clones share the client and the cache, and the
/// provider's mode enum stays small whichever variant it holds.
#[derive(Clone)]
pub struct Introspector {
    inner: Arc<Inner>,
}

struct Inner {
    url: Url,
    host: String,
    client: reqwest::Client,
    credentials: Credentials,
    principal_claim: Option<String>,
    tenant_claim: Option<String>,
    claims_mapping: ClaimsMapping,
    issuer: Option<String>,
    audience: Option<Vec<String>>,
    leeway: Duration,
    timeout: Duration,
    max_token_bytes: usize,
    max_response_bytes: usize,
    limit: UpstreamLimit,
    cache: RemoteResultCache,
}

/// How tokengate authenticates itself to the endpoint (RFC 6749 §2.3.1).
enum Credentials {
    /// The complete `Basic …` header value, computed once; marked sensitive so
    /// the HTTP stack never prints it.
    Basic(HeaderValue),
    /// `client_id` / `client_secret` form fields (`send_secret_in_body: true`).
    Body { client_id: String, client_secret: Secret },
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl fmt::Debug for Inner {
    // Hand-written so that neither the client secret nor the Basic header can
    // ever reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("url", &self.url.as_str())
            .field(
                "client_auth",
                &match self.credentials {
                    Credentials::Basic(_) => "basic",
                    Credentials::Body { .. } => "form body",
                },
            )
            .field("principal_claim", &self.principal_claim)
            .field("tenant_claim", &self.tenant_claim)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// Prepares introspection from `cfg.introspection`; `client` carries the
    /// transport settings (TLS, timeouts) the caller built from the same config;
    /// `ctx` may carry a store that shares results with other replicas.
    pub fn new(cfg: &OAuth2Config, client: reqwest::Client, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let Some(ic) = &cfg.introspection else {
            return Err(ConfigError::new(
                "introspection",
                "is not configured; set introspection.url, client_id and client_secret",
            ));
        };
        let url = parse_endpoint(&ic.url)?;
        let host = host_of(&url);
        if url.scheme() == "http" && !is_loopback(&url) {
            tracing::warn!(
                endpoint = %host,
                "introspection.url is plain http: tokens and the client secret cross the network unencrypted"
            );
        }

        let credentials = if ic.send_secret_in_body {
            Credentials::Body { client_id: ic.client_id.clone(), client_secret: ic.client_secret.clone() }
        } else {
            Credentials::Basic(basic_auth_header(&ic.client_id, &ic.client_secret)?)
        };

        // `leeway`, `principal_claim` and `tenant_claim` were checked with the rest
        // of the common settings, by the `OAuth2Provider::new` that builds this.
        // The same rule as for JWTs: without an audience, a token issued to any
        // resource server of this authorization server would be accepted.
        let audience = match (&cfg.audience, cfg.allow_any_audience) {
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "allow_any_audience",
                    "cannot be combined with `audience`: either check the audience or explicitly accept any",
                ))
            }
            (None, true) => None,
            (Some(a), false) => {
                let values = a.values();
                if values.is_empty() || values.iter().any(|v| v.is_empty()) {
                    return Err(ConfigError::new(
                        "audience",
                        "is empty, which no token could match; name the audience your tokens carry or set allow_any_audience: true",
                    ));
                }
                Some(values)
            }
            (None, false) if ctx.llama_stack_defaults => {
                tracing::warn!(
                    field = "audience",
                    endpoint = %host,
                    "oauth2_token introspection without `audience`: the aud of introspected tokens is NOT checked, so \
                     tokens issued to any resource server are accepted; set `audience` (or allow_any_audience: true)"
                );
                None
            }
            (None, false) => {
                return Err(ConfigError::new(
                    "audience",
                    "is required for introspection too: name the audience your tokens carry (aud), or set allow_any_audience: true to accept tokens issued to any resource server",
                ))
            }
        };

        Ok(Introspector {
            inner: Arc::new(Inner {
                url,
                host,
                client,
                credentials,
                principal_claim: cfg.principal_claim.clone(),
                tenant_claim: cfg.tenant_claim.clone(),
                claims_mapping: cfg.claims_mapping.clone().unwrap_or_else(ClaimsMapping::oauth2_default),
                issuer: cfg.issuer.clone(),
                audience,
                leeway: cfg.leeway,
                timeout: cfg.timeout,
                max_token_bytes: cfg.max_token_bytes,
                max_response_bytes: cfg.max_response_bytes,
                limit: UpstreamLimit::new("oauth2_token", cfg.max_concurrent_requests)?,
                cache: RemoteResultCache::new(&cfg.cache).with_shared(ctx),
            }),
        })
    }

    /// `host[:port]` of the introspection URL, for the 401 message.
    /// The mapping applied to active answers.
    pub fn claims_mapping(&self) -> &ClaimsMapping {
        &self.inner.claims_mapping
    }

    pub fn host(&self) -> String {
        self.inner.host.clone()
    }

    /// Validates `token`, from the cache when possible.
    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        self.inner.validate(token).await
    }
}

impl Inner {
    async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        // Cheap local refusals first: neither deserves an upstream call.
        if token.is_empty() {
            return Err(AuthError::invalid_token("the bearer token is empty"));
        }
        if token.len() > self.max_token_bytes {
            return Err(AuthError::invalid_token(format!(
                "the token is {} bytes, more than max_token_bytes ({})",
                token.len(),
                self.max_token_bytes
            )));
        }
        // The HTTP call's future is boxed only when a miss makes it: held
        // inline it would make every cache hit allocate kilobytes.
        self.cache.get_or_validate(token, || Box::pin(self.introspect(token))).await
    }

    /// One upstream introspection, counted in the fetch metric.
    async fn introspect(&self, token: &str) -> Result<Validated, AuthError> {
        let outcome = match self.fetch(token).await {
            Ok(reply) => self.judge(reply),
            Err(e) => Err(e),
        };
        let result = match &outcome {
            Err(e) if e.is_unavailable() => "error",
            _ => "ok",
        };
        metrics::counter!(
            "tokengate_idp_fetches_total",
            "provider" => "oauth2_token",
            "kind" => "introspection",
            "result" => result
        )
        .increment(1);
        if let Err(e) = &outcome {
            if e.is_unavailable() {
                tracing::warn!(endpoint = %self.host, error = %e.detail(), "token introspection failed");
            } else {
                tracing::debug!(endpoint = %self.host, error = %e.detail(), "token rejected by introspection");
            }
        }
        outcome
    }

    /// POSTs the token and returns the reply's JSON object, or why there is none.
    async fn fetch(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let what = format!("introspection endpoint {}", self.host);
        let mut form: Vec<(&str, &str)> = vec![("token", token), ("token_type_hint", "access_token")];
        let mut request = self.client.post(self.url.clone()).timeout(self.timeout).header(ACCEPT, "application/json");
        match &self.credentials {
            Credentials::Basic(header) => request = request.header(AUTHORIZATION, header.clone()),
            Credentials::Body { client_id, client_secret } => {
                form.push(("client_id", client_id));
                form.push(("client_secret", client_secret.expose()));
            }
        }
        let _slot = self.limit.acquire(&what).await?;
        let response = request.form(&form).send().await.map_err(|e| HttpFailure::from_reqwest(&what, &e))?;
        if let Some(err) = redirect_failure(&what, &response) {
            return Err(err);
        }
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.status_error(status, response).await);
        }
        let body = read_body_limited(&what, response, self.max_response_bytes).await?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(fields)) => Ok(fields),
            Ok(other) => Err(AuthError::unavailable(format!(
                "{what} answered 200 with JSON that is not an object ({})",
                json_type(&other)
            ))),
            Err(e) => Err(AuthError::unavailable(format!("{what} answered 200 with a reply that is not JSON ({e})"))),
        }
    }

    /// Words a non-200 answer. Every one of them is the service's (or our
    /// configuration's) problem: RFC 7662 answers an invalid token with
    /// `200 {"active": false}`, not with an error status.
    async fn status_error(&self, status: StatusCode, response: reqwest::Response) -> AuthError {
        let retry_after = retry_after(response.headers());
        let what = format!("introspection endpoint {}", self.host);
        // The OAuth error code (`invalid_client`…) says what the server disliked;
        // only a well-formed code is quoted, never free text that might echo input.
        let oauth_error = read_body_limited(&what, response, self.max_response_bytes.min(16 * 1024))
            .await
            .ok()
            .and_then(|body| oauth_error_code(&body));
        // Some servers (oidc-provider among them) refuse to introspect a token they
        // cannot even parse with 400 `invalid_request` / `unsupported_token_type`
        // instead of `{"active": false}`. That is a verdict on the token, not an
        // outage: reporting it as 503 would let any client trip "IdP down" alarms.
        if status == StatusCode::BAD_REQUEST
            && matches!(oauth_error.as_deref(), Some("invalid_request" | "unsupported_token_type" | "invalid_token"))
        {
            let code = oauth_error.as_deref().unwrap_or_default();
            return AuthError::invalid_token(format!("{what} refused to introspect the token (400 `{code}`)"));
        }
        let mut detail = format!("{what} answered {}", status.as_u16());
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            detail.push_str(
                ": it rejected tokengate's own client credentials (check introspection.client_id, \
                 client_secret and send_secret_in_body)",
            );
        }
        if let Some(code) = oauth_error {
            detail.push_str(&format!(" (error `{code}`)"));
        }
        let err = AuthError::unavailable(detail);
        match retry_after {
            Some(after) => err.with_retry_after(after),
            None => err,
        }
    }

    /// Turns a reply object into a principal, or says why the token is refused.
    fn judge(&self, fields: Map<String, Value>) -> Result<Validated, AuthError> {
        // One `Value` for both the field checks and the dotted-path lookups
        // of `principal_claim` and `claims_mapping`.
        let fields = Value::Object(fields);
        let malformed = |why: String| {
            AuthError::unavailable(format!(
                "introspection endpoint {} answered 200 with a malformed reply: {why}",
                self.host
            ))
        };
        match fields.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Err(AuthError::invalid_token("token is not active")),
            None => return Err(malformed("no `active` field".into())),
            Some(other) => return Err(malformed(format!("`active` is {}, not a boolean", json_type(other)))),
        }

        for field in ["token_type", "typ"] {
            if let Some(Value::String(kind)) = fields.get(field) {
                if kind.eq_ignore_ascii_case("refresh_token") || kind.eq_ignore_ascii_case("refresh") {
                    return Err(AuthError::invalid_token(format!(
                        "the introspection reply says `{field}` is {kind:?}: a refresh token is not an access token"
                    )));
                }
            }
        }

        let now = unix_now();
        let leeway = self.leeway.as_secs_f64();
        let exp = numeric_claim(&fields, "exp").map_err(malformed)?;
        if let Some(exp) = exp {
            if exp + leeway < now {
                return Err(AuthError::invalid_token(format!("token expired at {}", describe_time(exp))));
            }
        }
        if let Some(nbf) = numeric_claim(&fields, "nbf").map_err(malformed)? {
            if nbf - leeway > now {
                return Err(AuthError::invalid_token(format!("token is not valid before {}", describe_time(nbf))));
            }
        }

        if let Some(expected) = &self.issuer {
            match fields.get("iss") {
                None | Some(Value::Null) => {}
                Some(Value::String(iss)) if iss == expected => {}
                Some(Value::String(iss)) => {
                    return Err(AuthError::invalid_token(format!("issuer {iss:?} is not the expected {expected:?}")))
                }
                Some(other) => return Err(malformed(format!("`iss` is {}, not a string", json_type(other)))),
            }
        }

        if let Some(expected) = &self.audience {
            let got: Vec<&str> = match fields.get("aud") {
                None | Some(Value::Null) => {
                    return Err(AuthError::invalid_token(format!(
                        "the introspection reply names no audience; expected one of {expected:?}"
                    )))
                }
                Some(Value::String(a)) => vec![a.as_str()],
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                Some(other) => return Err(malformed(format!("`aud` is {}, not a string or a list", json_type(other)))),
            };
            if !got.iter().any(|a| expected.iter().any(|e| e == a)) {
                let shown = match got.as_slice() {
                    [one] => format!("{one:?}"),
                    many => format!("{many:?}"),
                };
                return Err(AuthError::invalid_token(format!("audience {shown} is not one of {expected:?}")));
            }
        }

        let principal = match &self.principal_claim {
            Some(claim) => principal_from(&fields, claim).ok_or_else(|| {
                AuthError::invalid_token(format!(
                    "the introspection reply has no usable `{claim}` claim to name the principal"
                ))
            })?,
            // RFC 7662 makes all three optional; `sub` is the stable identifier,
            // `username` the human one some servers send instead, and a
            // client-credentials token (a machine's, no user) may carry only
            // `client_id`: it is then its client (OGX's order).
            None => principal_from(&fields, "sub")
                .or_else(|| principal_from(&fields, "username"))
                .or_else(|| principal_from(&fields, "client_id"))
                .ok_or_else(|| {
                    AuthError::invalid_token(
                        "the introspection reply for an active token has neither `sub`, `username` nor `client_id`",
                    )
                    .because(tokengate_api::Reason::Principal)
                })?,
        };

        let tenant = match &self.tenant_claim {
            Some(claim) => tokengate_api::tenant_from(&fields, claim, &format!("the introspection reply's `{claim}`"))?,
            None => None,
        };
        let attributes = self.claims_mapping.apply(&fields);
        Ok(Validated {
            principal: Principal::new(principal).with_attributes(attributes).with_tenant(tenant),
            expires_at: exp.and_then(unix_to_system),
        })
    }
}

/// Parses and vets the endpoint URL; never echoes it, since a URL may hold credentials.
fn parse_endpoint(raw: &str) -> Result<Url, ConfigError> {
    let field = "introspection.url";
    let url = Url::parse(raw.trim()).map_err(|e| ConfigError::new(field, format!("is not a valid URL ({e})")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(ConfigError::new(
            field,
            format!("has scheme `{}`; only https (or http) is supported", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(field, "has no host"));
    }
    // Credentials in the URL would be sent alongside (or instead of) ours.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            field,
            "must not contain credentials; use introspection.client_id and client_secret",
        ));
    }
    Ok(url)
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1 requires
/// the form-urlencoding first, so ids and secrets containing `:` or non-ASCII
/// survive the trip (servers decode both parts after splitting on the colon).
fn basic_auth_header(client_id: &str, client_secret: &Secret) -> Result<HeaderValue, ConfigError> {
    let id: String = url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String = url::form_urlencoded::byte_serialize(client_secret.expose().as_bytes()).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
        // Unreachable in practice (base64 is always a valid header value), but
        // a config error beats a panic.
        ConfigError::new("introspection.client_secret", "cannot be sent in a Basic header")
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A numeric time claim: `Ok(None)` when absent or null, an error message when not a number.
fn numeric_claim(fields: &Value, name: &str) -> Result<Option<f64>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or_else(|| format!("`{name}` is not a usable number"))
        }
        Some(other) => Err(format!("`{name}` is {}, not a number", json_type(other))),
    }
}

/// A non-empty string (or a number, stringified) at `claim`.
fn principal_from(fields: &Value, claim: &str) -> Option<String> {
    match claim_at_path(fields, claim)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `error` code of an OAuth error body, if it is a well-formed code.
fn oauth_error_code(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.as_str()?;
    let well_formed = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    well_formed.then(|| code.to_string())
}

/// `Retry-After` in delta-seconds form (the form rate limiters use).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn unix_to_system(secs: f64) -> Option<SystemTime> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

/// RFC 3339 when representable; humantime refuses years past 9999, so those
/// (and negative times) are shown as raw epoch seconds.
fn describe_time(secs: f64) -> String {
    const YEAR_10000: f64 = 253_402_300_800.0;
    match unix_to_system(secs) {
        Some(t) if secs < YEAR_10000 => humantime::format_rfc3339_seconds(t).to_string(),
        _ => format!("{secs} (epoch seconds)"),
    }
}
