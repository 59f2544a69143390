//! `tokengate serve --dev`: the decision service with its own throwaway issuer,
//! for development without an identity provider. NOT for production.
//!
//! At start an ES256 key is generated; the same listener serves
//! `/.well-known/openid-configuration` and `/.well-known/jwks.json` for it, and
//! tokens are checked by the ordinary `oauth2_token` provider, configured
//! through the registry to discover that issuer over HTTP like any other.
//! `POST /dev/token` (loopback clients only) mints more tokens; `tokengate
//! token` is its client.
//!
//! May import: [`crate::config`], [`crate::pipeline`] and [`crate::http`].

use crate::config::Registry;
use crate::http::server::{self, ServeOptions};
use crate::pipeline::Pipeline;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{header, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokengate_api::ConfigError;

/// The `aud` of dev tokens.
pub const DEV_AUDIENCE: &str = "tokengate-dev";
/// Default listen address of `serve --dev`.
pub const DEFAULT_DEV_LISTEN: &str = "127.0.0.1:8080";
/// Lifetime of minted tokens unless the request says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Lifetime of the token printed at start: a working day.
pub const PRINTED_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Longest lifetime `POST /dev/token` grants.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest `POST /dev/token` body read.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What the printed token and the banner say about it.
pub const BANNER: &str = "\
================================================================================
 tokengate serve --dev: DEVELOPMENT MODE. NOT FOR PRODUCTION.
 A throwaway signing key was generated for this process; anyone on this machine
 can mint tokens it accepts (POST /dev/token). Use a real identity provider
 (tokengate serve --config FILE) for anything that matters.
================================================================================";

/// A throwaway ES256 issuer.
pub struct DevIssuer {
    issuer: String,
    kid: String,
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
}

impl DevIssuer {
    /// Generates a fresh P-256 key for `issuer` (the base URL tokens name in `iss`).
    pub fn generate(issuer: impl Into<String>) -> Result<Self, String> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new())
                .map_err(|_| "cannot generate a P-256 key".to_string())?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|e| format!("cannot read the generated key: {e}"))?;
        // Uncompressed SEC1 point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err("unexpected P-256 public key encoding".into());
        }
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
        // RFC 7638 thumbprint: members in lexicographic order, no whitespace.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "alg": "ES256", "use": "sig", "kid": kid});
        Ok(DevIssuer { issuer: issuer.into(), kid, key: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()), jwk })
    }

    /// The base URL tokens name in `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key set, as served at [`DevIssuer::jwks_uri`].
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// `{issuer}/.well-known/jwks.json`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.issuer)
    }

    /// The OIDC discovery document, pointing at the JWKS and `POST /dev/token`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri(),
            "token_endpoint": format!("{}/dev/token", self.issuer),
            "id_token_signing_alg_values_supported": ["ES256"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        })
    }

    /// Signs a token for `sub` valid for `ttl`; `claims` are added last and may
    /// override anything (an `exp` in the past makes an expired token to test with).
    pub fn mint(&self, sub: &str, claims: &Map<String, Value>, ttl: Duration) -> Result<String, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| "the clock is before 1970")?.as_secs();
        let mut body = Map::new();
        body.insert("iss".into(), json!(self.issuer));
        body.insert("aud".into(), json!(DEV_AUDIENCE));
        body.insert("sub".into(), json!(sub));
        body.insert("iat".into(), json!(now));
        body.insert("nbf".into(), json!(now));
        body.insert("exp".into(), json!(now.saturating_add(ttl.as_secs())));
        for (k, v) in claims {
            body.insert(k.clone(), v.clone());
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &Value::Object(body), &self.key).map_err(|e| format!("cannot sign: {e}"))?;
        // aws-lc does not normalize S, and tokengate refuses high-S signatures by default.
        Ok(tokengate_oauth2::ecdsa::low_s_token(&token))
    }
}

/// The URL clients and the provider use for `addr`: an unspecified address
/// (`0.0.0.0`, `::`) is reached through loopback.
pub fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{}", addr.port()),
        IpAddr::V6(v6) => format!("http://[{v6}]:{}", addr.port()),
    }
}

/// The `oauth2_token` section that trusts a dev issuer at `issuer`: discovery
/// from the issuer URL, the dev audience, and a mapping that shows attributes.
pub fn provider_config(issuer: &str) -> Value {
    json!({
        "type": "oauth2_token",
        "issuer": issuer,
        "audience": DEV_AUDIENCE,
        "claims_mapping": {
            "groups": "groups",
            "roles": "roles",
            "scope": "scopes",
            "team": "teams",
            "project": "projects",
            "namespace": "namespaces",
        },
    })
}

/// The claims of the token printed at start.
pub fn sample_claims() -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("groups".into(), json!(["developers"]));
    claims.insert("scope".into(), json!("read write"));
    claims.insert("name".into(), json!("Dev User"));
    claims
}

/// The dev issuer plus the provider that trusts it, for a listener already bound.
pub struct DevServer {
    issuer: Arc<DevIssuer>,
    pipeline: Arc<Pipeline>,
    base_url: String,
}

impl DevServer {
    /// `addr` is the bound listener's address (bind first: the port is part of the issuer).
    pub fn new(addr: SocketAddr, registry: &Registry) -> Result<Self, ConfigError> {
        let base_url = base_url(addr);
        let issuer = DevIssuer::generate(base_url.clone()).map_err(|e| ConfigError::new("", e))?;
        let provider = registry
            .build(&provider_config(&base_url), &crate::BuildContext::default())
            .map_err(|e| e.within("dev provider_config"))?;
        let pipeline = Arc::new(Pipeline::new(vec![provider]));
        Ok(DevServer { issuer: Arc::new(issuer), pipeline, base_url })
    }

    /// The server's base URL, also the dev issuer.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The issuer that signs the dev tokens.
    pub fn issuer(&self) -> &Arc<DevIssuer> {
        &self.issuer
    }

    /// The pipeline of the one provider that trusts the dev issuer.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The decision service plus the issuer's routes (which are not decisions).
    pub fn router(&self, options: ServeOptions) -> Router {
        server::router(self.pipeline.clone(), options).merge(self.issuer_router())
    }

    /// Only the issuer: discovery, JWKS and `POST /dev/token`.
    pub fn issuer_router(&self) -> Router {
        issuer_router(self.issuer.clone())
    }

    /// The token printed at start.
    pub fn sample_token(&self) -> Result<String, String> {
        self.issuer.mint("dev-user", &sample_claims(), PRINTED_TOKEN_TTL)
    }

    /// What `serve --dev` prints on stdout: address, token and a `curl` that gets a 200.
    pub fn instructions(&self, token: &str) -> String {
        let url = &self.base_url;
        format!(
            "tokengate dev server listening on {url}\n\
             issuer:   {url} (audience {DEV_AUDIENCE}, ES256, key generated at start)\n\
             token:    {token}\n\
             try:      curl -i -H \"Authorization: Bearer {token}\" {url}/anything\n\
             more:     tokengate token --url {url} --sub alice --claim groups='[\"admins\"]' --ttl 1h\n"
        )
    }
}

/// Discovery, JWKS and `POST /dev/token` for `issuer`; serve it at the issuer's base URL.
pub fn issuer_router(issuer: Arc<DevIssuer>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(openid_configuration))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/dev/token", post(mint_token))
        .with_state(issuer)
}

async fn openid_configuration(State(issuer): State<Arc<DevIssuer>>) -> Json<Value> {
    Json(issuer.openid_configuration())
}

async fn jwks(State(issuer): State<Arc<DevIssuer>>) -> Response {
    ([(header::CACHE_CONTROL, "max-age=300")], Json(issuer.jwks())).into_response()
}

/// `POST /dev/token` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token's `sub` (default `dev-user`).
    #[serde(default)]
    pub sub: Option<String>,
    /// Claims added last, overriding the defaults (`iss`, `aud`, `exp`…).
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// `1h`, `30m`, `7d`… (default 1h, at most 30 days).
    #[serde(default)]
    pub ttl: Option<String>,
}

fn dev_error(status: StatusCode, message: impl Into<String>) -> Response {
    let code = if status == StatusCode::FORBIDDEN { "forbidden" } else { "invalid_request" };
    (status, Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

async fn mint_token(State(issuer): State<Arc<DevIssuer>>, req: Request) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if !peer.is_some_and(|ip| ip.to_canonical().is_loopback()) {
        return dev_error(StatusCode::FORBIDDEN, "dev tokens are minted for loopback clients only");
    }
    // A browser page can reach loopback too; a non-loopback Host means DNS
    // rebinding, and requiring JSON forces a CORS preflight we never grant.
    // Every host the request names must be loopback: a Host that cannot be
    // read, or a second one, is not one to fall back from to the URI's.
    let hosts: Vec<Option<&str>> =
        req.headers().get_all(header::HOST).iter().map(|h| h.to_str().ok()).chain(req.uri().host().map(Some)).collect();
    if hosts.is_empty() || !hosts.iter().all(|h| h.is_some_and(is_loopback_host)) {
        return dev_error(StatusCode::FORBIDDEN, "the Host must be a loopback address or localhost");
    }
    // Lenient on purpose: a Content-Type that cannot be read is not JSON, and is refused below.
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return dev_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json");
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => return dev_error(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large"),
    };
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest { sub: None, claims: Map::new(), ttl: None }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return dev_error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
        }
    };
    let ttl = match request.ttl.as_deref().map(humantime::parse_duration) {
        None => DEFAULT_TTL,
        Some(Ok(d)) if !d.is_zero() && d <= MAX_TTL => d,
        Some(Ok(_)) => return dev_error(StatusCode::BAD_REQUEST, "ttl must be more than 0 and at most 30 days"),
        Some(Err(e)) => return dev_error(StatusCode::BAD_REQUEST, format!("ttl: {e}")),
    };
    let sub = request.sub.unwrap_or_else(|| "dev-user".to_string());
    match issuer.mint(&sub, &request.claims, ttl) {
        Ok(token) => {
            tracing::info!(sub, ttl_secs = ttl.as_secs(), "minted a dev token");
            Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs()})).into_response()
        }
        Err(e) => dev_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn is_loopback_host(host: &str) -> bool {
    // `[::1]:8080`, `127.0.0.1:8080`, `localhost`…
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Asks a dev server for a token (the client side of `POST /dev/token`).
pub async fn request_token(
    base_url: &str,
    sub: Option<&str>,
    claims: Map<String, Value>,
    ttl: Option<&str>,
) -> Result<String, String> {
    let url = format!("{}/dev/token", base_url.trim_end_matches('/'));
    let mut body = json!({"claims": claims});
    if let Some(sub) = sub {
        body["sub"] = json!(sub);
    }
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e} (is `tokengate serve --dev` running?)"))?;
    let status = response.status();
    let answer: Value = response.json().await.map_err(|e| format!("{url}: answered {status} without JSON: {e}"))?;
    if !status.is_success() {
        let message = answer["error"]["message"].as_str().unwrap_or("no message");
        return Err(format!("{url}: {status}: {message}"));
    }
    answer["access_token"].as_str().map(str::to_string).ok_or_else(|| format!("{url}: no access_token in the answer"))
}

/// Parses `--claim key=value`: the value as JSON when it is JSON (`true`,
/// `3`, `["a","b"]`), else as a string.
pub fn parse_claim(arg: &str) -> Result<(String, Value), String> {
    let (key, value) = arg.split_once('=').ok_or_else(|| format!("--claim {arg}: expected KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("--claim {arg}: the key is empty"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

#[cfg(test)]
mod tests;
