//! `tokengate serve`: a forward-auth decision service for any reverse proxy.
//!
//! Every path except `/healthz`, `/readyz` and `/metrics` is a decision
//! request, whatever its method. `/healthz` is liveness (the process answers);
//! `/readyz` is readiness (the provider can decide: its key set is loaded, or
//! still usable within the outage grace period). Which headers describe the
//! request being decided on is `forward_auth.proxy`'s choice ([`Proxy`]):
//! nginx's `X-Original-*`, Traefik's and Caddy's `X-Forwarded-*`, or (Envoy
//! `ext_authz`) the decision request's own method and path minus
//! `path_prefix`; `auto` takes whichever is present and refuses (400)
//! anything with two possible meanings. The path is then put in the one
//! canonical form of [`crate::path`], or refused.
//!
//! * Allowed: 200 with `X-Auth-Principal` (always), `X-Auth-Attributes`
//!   (compact JSON object, non-ASCII escaped) and one `X-Auth-Attr-<name>` per
//!   attribute with a lower-case header-token name (values comma-joined). The
//!   principal and every attribute value are percent-encoded
//!   ([`percent_encoded`]), so they decode back exactly; the body is the
//!   principal as JSON. `X-Auth-Unknown-Attributes` names (comma-joined)
//!   the attributes the provider could not determine, which are in neither.
//! * Denied: 401 (400 for a malformed `Authorization`, 403 for insufficient
//!   scope, e.g. a `route_policy` refusal of the original method and path)
//!   with the RFC 6750 `WWW-Authenticate` and `{"error": {"code", "message"}}`.
//!
//! The credential is the `Authorization: Bearer` token or, without an
//! `Authorization` header, the `X-API-Key` value (have the proxy pass that
//! header to tokengate too). With `upstream_header` no token is needed at all.
//! * Identity service unavailable: 503 with `Retry-After`.
//!
//! Proxy notes: nginx `auth_request` only understands 2xx/401/403 (a 503 becomes
//! a 500 for the client) and passes nothing back unless told to
//! (`auth_request_set $principal $upstream_http_x_auth_principal;`); nginx also
//! drops request headers with underscores by default, so prefer attribute names
//! with dashes. Traefik: `authResponseHeaders: [X-Auth-Principal, X-Auth-Attributes]`.
//! Envoy: list `authorization` in `allowed_headers` and `x-auth-*` in
//! `allowed_upstream_headers`.
//!
//! The provider's `RequestContext.peer` is the TCP peer (the proxy); the
//! client's address, if the proxy sends it, is in the `x-forwarded-for` header.

use super::gate::Gate;
pub use super::listener::ConnectionLimits;
use crate::config::{Config, ForwardAuthConfig, Proxy};
use crate::ops::metrics::prometheus as metrics_handle;
use crate::pipeline::IntoPipeline;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokengate_api::AuthError;
use tokengate_api::{Principal, RequestContext};

/// Where `tokengate serve` listens when neither `--listen` nor the config says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How long in-flight requests may take to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// `/readyz` answers within this even when a key-set fetch hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

impl ConnectionLimits {
    /// The limits a `forward_auth:` section sets, defaults for the rest.
    pub fn from_config(config: &ForwardAuthConfig) -> Self {
        let defaults = ConnectionLimits::default();
        ConnectionLimits {
            header_read_timeout: config.header_read_timeout.unwrap_or(defaults.header_read_timeout),
            idle_timeout: config.idle_timeout.unwrap_or(defaults.idle_timeout),
            max_connections: config.max_connections.unwrap_or(defaults.max_connections),
        }
    }
}

/// Options of the decision service beyond the provider.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `realm` of `WWW-Authenticate` (default `tokengate`).
    pub realm: Option<String>,
    /// Original paths answered 200 without authentication (exact, or `prefix*`);
    /// a valid token there still gets the principal headers.
    pub open_paths: Vec<String>,
    /// Envoy `ext_authz` `path_prefix`, removed from the decision request's path.
    pub path_prefix: Option<String>,
    /// One JSON line per decision (see [`crate::ops::audit`]); from the config's
    /// `audit:` via [`crate::Config::audit_log`].
    pub audit: Option<crate::ops::audit::AuditLog>,
    /// Leave `/healthz`, `/readyz` and `/metrics` out of the decision
    /// router, for [`admin_router`] on a listener of its own: then every path
    /// is a decision.
    pub separate_admin: bool,
    /// Which headers carry the original request.
    pub proxy: Proxy,
}

impl ServeOptions {
    /// The options the config's settings give; `audit` stays `None` (see [`crate::Config::audit_log`]).
    pub fn from_config(config: &Config) -> Self {
        ServeOptions {
            realm: config.settings.realm.clone(),
            open_paths: config.settings.open_paths.clone(),
            path_prefix: config.settings.forward_auth.as_ref().and_then(|f| f.path_prefix.clone()),
            proxy: config.settings.forward_auth.as_ref().map(|f| f.proxy).unwrap_or_default(),
            // Opening the output can fail; `Config::audit_log` reports that, and the caller sets it.
            audit: None,
            separate_admin: config.settings.admin_listen.is_some(),
        }
    }
}

struct AppState {
    gate: Gate,
    proxy: Proxy,
    path_prefix: Option<String>,
    metrics: Option<PrometheusHandle>,
}

/// The decision service: `/healthz`, `/metrics`, and decisions on every other path.
pub fn router(pipeline: impl IntoPipeline, options: ServeOptions) -> Router {
    let mut gate = Gate::new(pipeline);
    if let Some(realm) = &options.realm {
        gate = gate.with_realm(realm);
    }
    for path in &options.open_paths {
        gate = gate.with_open_path(path.clone());
    }
    if let Some(audit) = options.audit {
        gate = gate.with_audit(audit);
    }
    let path_prefix = options.path_prefix.filter(|p| !p.is_empty() && p != "/");
    let state = Arc::new(AppState { gate, proxy: options.proxy, path_prefix, metrics: metrics_handle() });
    let router = if options.separate_admin { Router::new() } else { admin_routes() };
    router.fallback(decide).with_state(state)
}

/// `/healthz`, `/readyz` and `/metrics` alone, for a listener of their own
/// (`admin_listen`); every other path is 404.
pub fn admin_router(pipeline: impl IntoPipeline) -> Router {
    let state = Arc::new(AppState {
        gate: Gate::new(pipeline),
        proxy: Proxy::Auto,
        path_prefix: None,
        metrics: metrics_handle(),
    });
    admin_routes().with_state(state)
}

fn admin_routes() -> Router<Arc<AppState>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(render_metrics))
}

/// Serves the decision service on `listener` until `shutdown` completes, then closes the pipeline.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pipeline: impl IntoPipeline,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pipeline = pipeline.into_pipeline();
    let app = router(pipeline.clone(), options);
    run(listener, app, pipeline, shutdown).await
}

/// Serves any router (the decision service, possibly with more routes) with
/// peer addresses recorded; drains in-flight requests for at most 30s once
/// `shutdown` completes, then closes `pipeline`.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    pipeline: impl IntoPipeline,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_admin(listener, app, None, pipeline, shutdown).await
}

/// [`run`], plus `admin` (a listener and, normally, [`admin_router`]) served
/// alongside until the decision service stops.
pub async fn run_with_admin(
    listener: tokio::net::TcpListener,
    app: Router,
    admin: Option<(tokio::net::TcpListener, Router)>,
    pipeline: impl IntoPipeline,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_limits(listener, app, admin, pipeline, ConnectionLimits::default(), shutdown).await
}

/// [`run_with_admin`] with `limits` on both listeners.
pub async fn run_with_limits(
    listener: tokio::net::TcpListener,
    app: Router,
    admin: Option<(tokio::net::TcpListener, Router)>,
    pipeline: impl IntoPipeline,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pipeline = pipeline.into_pipeline();
    // The admin listener has nothing worth draining: it is aborted once the decision service stops.
    let admin = admin.map(|(listener, router)| {
        tokio::spawn(async move {
            let never = std::future::pending::<()>();
            if let Err(e) = super::listener::serve(listener, router, limits, never, Duration::ZERO).await {
                tracing::error!("admin listener stopped: {e}");
            }
        })
    });
    // `install_recorder` leaves histogram upkeep to us; scrapes do it too, but
    // an unscraped process must not accumulate samples forever.
    let upkeep = metrics_handle().map(|handle| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    });
    // Fetch key sets now, not on the first request, and say at start-up when
    // the identity provider cannot be reached (requests keep retrying).
    let prefetch = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            match pipeline.ready().await {
                Ok(()) => tracing::debug!("provider ready"),
                Err(e) => tracing::warn!(
                    provider = pipeline.name(),
                    "provider not ready yet, requests will retry: {}",
                    e.detail()
                ),
            }
        })
    };
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
    };
    let result = super::listener::serve(listener, app, limits, shutdown, DRAIN_TIMEOUT).await;
    if let Some(task) = upkeep {
        task.abort();
    }
    prefetch.abort();
    if let Some(task) = admin {
        task.abort();
    }
    pipeline.close().await;
    result
}

/// Completes on Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 once the provider can decide; 503 with the reason while it cannot
/// (identity provider unreachable and no usable keys), so orchestrators keep
/// traffic away until then.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let verdict = tokio::time::timeout(READY_TIMEOUT, state.gate.pipeline().ready()).await;
    // The body is for whoever can reach the port; the detail (key set URLs,
    // with their queries) only goes to the log.
    let reason = match verdict {
        Ok(Ok(())) => return (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(reason = e.detail(), "/readyz: provider not ready");
            match e.kind() {
                tokengate_api::ErrorKind::Unavailable => "the identity provider is unavailable (details in the log)",
                tokengate_api::ErrorKind::Config => "the provider is misconfigured (details in the log)",
                _ => "the provider cannot decide yet (details in the log)",
            }
            .to_string()
        }
        Err(_) => format!("the readiness check did not finish within {}s", READY_TIMEOUT.as_secs()),
    };
    let headers = [(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))];
    (StatusCode::SERVICE_UNAVAILABLE, headers, format!("not ready: {reason}\n")).into_response()
}

async fn render_metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(handle) => {
            ([(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], handle.render()).into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed\n").into_response(),
    }
}

async fn decide(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let ctx = match original_request(&parts, state.proxy, state.path_prefix.as_deref()) {
        Ok(ctx) => ctx,
        Err(e) => return state.gate.reject(e).into_response(),
    };
    if state.gate.is_open(&ctx.path) {
        return match state.gate.try_authenticate(&parts.headers, &ctx).await {
            Some(principal) => allowed(&principal),
            None => anonymous(),
        };
    }
    match state.gate.authenticate(&parts.headers, &ctx).await {
        Ok(principal) => allowed(&principal),
        Err(rejection) => rejection.into_response(),
    }
}

/// The original-request headers of both families. The context a provider
/// sees never holds them: the method, path and host it gets are the
/// resolved ones.
const ORIGINAL_REQUEST_HEADERS: &[&str] =
    &[X_ORIGINAL_URI, X_ORIGINAL_METHOD, X_FORWARDED_URI, X_FORWARDED_METHOD, X_FORWARDED_HOST, X_FORWARDED_PROTO];
const X_ORIGINAL_URI: &str = "x-original-uri";
const X_ORIGINAL_METHOD: &str = "x-original-method";
const X_FORWARDED_URI: &str = "x-forwarded-uri";
const X_FORWARDED_METHOD: &str = "x-forwarded-method";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// Where the original request's method and target come from.
struct Original<'a> {
    method: Option<&'a str>,
    /// `None`: the decision request's own path and query (Envoy).
    target: Option<&'a str>,
    host: Option<&'a str>,
    proto: Option<&'a str>,
}

impl Original<'_> {
    /// The decision request itself is the original (Envoy `ext_authz`).
    const OWN: Original<'static> = Original { method: None, target: None, host: None, proto: None };
}

/// The provider's view of the request the proxy is asking about.
///
/// Which headers describe it is `proxy`'s choice alone (see [`Proxy`]); with
/// `auto`, anything that could have two meanings is refused with
/// `invalid_request` (400) rather than decided on another path.
fn original_request(
    parts: &http::request::Parts,
    proxy: Proxy,
    path_prefix: Option<&str>,
) -> Result<RequestContext, AuthError> {
    let headers = &parts.headers;
    super::credential::refuse_method_override(headers)?;
    let original = match proxy {
        Proxy::Nginx => Original {
            method: Some(required(headers, X_ORIGINAL_METHOD, proxy)?),
            target: Some(required(headers, X_ORIGINAL_URI, proxy)?),
            host: single(headers, X_FORWARDED_HOST)?,
            proto: None,
        },
        Proxy::Traefik | Proxy::Caddy => Original {
            method: Some(required(headers, X_FORWARDED_METHOD, proxy)?),
            target: Some(required(headers, X_FORWARDED_URI, proxy)?),
            host: single(headers, X_FORWARDED_HOST)?,
            proto: single(headers, X_FORWARDED_PROTO)?,
        },
        Proxy::Envoy => Original::OWN,
        // A path prefix is Envoy's: its client may send any header `allowed_headers` lets through.
        Proxy::Auto if path_prefix.is_some() => Original::OWN,
        Proxy::Auto => auto_detect(headers)?,
    };
    let method = match original.method {
        Some(m) => Method::from_bytes(m.as_bytes())
            .map_err(|_| AuthError::invalid_request("the original request's method is not an HTTP method"))?,
        None => parts.method.clone(),
    };
    let (path, query) = match original.target {
        Some(raw) => super::credential::route_target(raw)?,
        None => {
            let path = parts.uri.path();
            let path = match path_prefix {
                None => path,
                Some(prefix) => match path.strip_prefix(prefix) {
                    Some(rest) if rest.starts_with('/') => rest,
                    Some("") => "/",
                    // A decision request outside the prefix is not one Envoy sends.
                    _ => {
                        return Err(AuthError::invalid_request(
                            "the decision request's path does not start with forward_auth.path_prefix",
                        ))
                    }
                },
            };
            (super::credential::canonical_route(path)?, parts.uri.query().map(str::to_string))
        }
    };
    let mut ctx = RequestContext::new(method.as_str(), path);
    if let Some(q) = query {
        ctx.set_query(&q);
    }
    for (name, value) in headers {
        if ORIGINAL_REQUEST_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            ctx.add_header(name.as_str(), value);
        }
    }
    if let Some(host) = original.host {
        ctx.headers.insert("host".to_string(), host.to_string());
    }
    if let Some(proto) = original.proto {
        ctx.headers.insert(X_FORWARDED_PROTO.to_string(), proto.to_string());
    }
    ctx.peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    Ok(ctx)
}

/// `auto`: nginx's `X-Original-*` or Traefik/Caddy's `X-Forwarded-*`, each
/// complete (URI and method); both only when they agree exactly; neither
/// means the decision request itself is the original (Envoy).
fn auto_detect(headers: &HeaderMap) -> Result<Original<'_>, AuthError> {
    let nginx = (single(headers, X_ORIGINAL_URI)?, single(headers, X_ORIGINAL_METHOD)?);
    let forwarded = (single(headers, X_FORWARDED_URI)?, single(headers, X_FORWARDED_METHOD)?);
    let host = single(headers, X_FORWARDED_HOST)?;
    let proto = single(headers, X_FORWARDED_PROTO)?;
    let complete = |(uri, method): (Option<&str>, Option<&str>), family: &str| match (uri, method) {
        (Some(_), Some(_)) | (None, None) => Ok(()),
        _ => Err(AuthError::invalid_request(format!(
            "{family} URI and method must come together; set forward_auth.proxy to say which proxy is in front"
        ))),
    };
    complete(nginx, "X-Original-*")?;
    complete(forwarded, "X-Forwarded-*")?;
    let chosen = match (nginx.0.is_some(), forwarded.0.is_some()) {
        (true, true) if nginx != forwarded => {
            return Err(AuthError::invalid_request(
                "X-Original-URI/-Method and X-Forwarded-Uri/-Method disagree; set forward_auth.proxy to say which \
                 proxy is in front",
            ))
        }
        (true, _) => nginx,
        (false, true) => forwarded,
        (false, false) => return Ok(Original::OWN),
    };
    Ok(Original { method: chosen.1, target: chosen.0, host, proto })
}

/// The one value of header `name`, if present: repeated, empty or not
/// visible ASCII is `invalid_request`, never "absent".
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AuthError::invalid_request(format!("the {name} header is repeated")));
    }
    let text = value
        .to_str()
        .ok()
        .filter(|v| v.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or_else(|| AuthError::invalid_request(format!("the {name} header has characters outside visible ASCII")))?
        .trim_matches([' ', '\t']);
    if text.is_empty() {
        return Err(AuthError::invalid_request(format!("the {name} header is empty")));
    }
    Ok(Some(text))
}

fn required<'a>(headers: &'a HeaderMap, name: &str, proxy: Proxy) -> Result<&'a str, AuthError> {
    single(headers, name)?.ok_or_else(|| {
        AuthError::invalid_request(format!(
            "no {name} header, which forward_auth.proxy {} always sends",
            proxy.as_str()
        ))
    })
}

/// An open path without a (valid) token: the identity headers are still sent,
/// empty, so a proxy that only overrides what tokengate returns (Envoy)
/// replaces a client's own `X-Auth-Principal` too. An empty principal is
/// never an authenticated one (those are refused).
fn anonymous() -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("x-auth-principal"), HeaderValue::from_static(""));
    headers.insert(HeaderName::from_static("x-auth-attributes"), HeaderValue::from_static("{}"));
    (StatusCode::OK, headers).into_response()
}

fn allowed(principal: &Principal) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Always present: behind Envoy a header left out is one the client may supply.
    headers.insert(HeaderName::from_static("x-auth-principal"), header_text(&principal.principal));
    match HeaderValue::from_str(&ascii_json(&principal.attributes)) {
        Ok(v) => {
            headers.insert(HeaderName::from_static("x-auth-attributes"), v);
        }
        // Never an allow without it: behind Envoy the client's copy would stand in.
        Err(_) => {
            tracing::error!("X-Auth-Attributes is not a valid header value; refusing rather than omitting it");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    // Unknown is not empty: the app must be able to tell "no teams" from
    // "teams could not be determined" (the attribute has no X-Auth-Attr-* header then).
    if !principal.unknown_attributes.is_empty() {
        let names: Vec<String> = principal.unknown_attributes.iter().map(|n| percent_encoded(n)).collect();
        if let Ok(v) = HeaderValue::from_str(&names.join(",")) {
            headers.insert(HeaderName::from_static("x-auth-unknown-attributes"), v);
        }
    }
    for (name, values) in &principal.attributes {
        let Some(header) = attribute_header_name(name) else { continue };
        // `[]` and `[""]` would both be an empty header; X-Auth-Attributes tells them apart.
        if values.is_empty() || (values.len() == 1 && values[0].is_empty()) {
            continue;
        }
        let joined = values.iter().map(|v| percent_encoded(v)).collect::<Vec<_>>().join(",");
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(header, v);
        }
    }
    let body = ascii_json(principal);
    (StatusCode::OK, headers, Body::from(body)).into_response()
}

/// Every byte that is not visible ASCII, plus `%` and `,`, as `%XX` (UTF-8).
///
/// The one encoding of every `X-Auth-*` value but `X-Auth-Attributes`: a
/// plain value never holds `%`, so percent-decoding gives back exactly what
/// the provider produced, and a list (`,`-joined) splits back into its values.
pub fn percent_encoded(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' && b != b',' {
            out.push(b as char);
        } else {
            out.extend(['%', HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 0xf)] as char]);
        }
    }
    out
}

/// The inverse of [`percent_encoded`], for applications reading `X-Auth-*`
/// headers (split a list on `,` first); `None` for a bad escape or bytes that
/// are not UTF-8, which tokengate never sends.
pub fn percent_decoded(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn header_text(value: &str) -> HeaderValue {
    // Only visible ASCII is left after encoding, which is always a valid header value.
    HeaderValue::from_str(&percent_encoded(value)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `x-auth-attr-<name>` for names that are already lower-case header tokens
/// (no `%`): header names are case-insensitive, so `Roles` and `roles` would
/// share one. Other names travel in `X-Auth-Attributes` only.
fn attribute_header_name(name: &str) -> Option<HeaderName> {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$&'*+^`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(ok) {
        return None;
    }
    HeaderName::from_bytes(format!("x-auth-attr-{name}").as_bytes()).ok()
}

/// Compact JSON with every non-ASCII character escaped, so it is always a valid header value.
fn ascii_json<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    if value.serialize(&mut ser).is_err() {
        return "{}".to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| "{}".to_string())
}

struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            // DEL is ASCII but no header value may hold it.
            if c.is_ascii() && c != '\u{7f}' {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests;
