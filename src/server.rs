//! `tokengate serve`: a forward-auth decision service for any reverse proxy.
//!
//! Every path except `/healthz`, `/readyz` and `/metrics` is a decision
//! request, whatever its method. `/healthz` is liveness (the process answers);
//! `/readyz` is readiness (the provider can decide: its key set is loaded, or
//! still usable within the outage grace period). The request being decided on is described by
//! `X-Forwarded-Uri`/`X-Original-URI` (path and query), `X-Forwarded-Method`/
//! `X-Original-Method` and `X-Forwarded-Host`; without them the decision
//! request's own method and path are the original's, as with Envoy's HTTP
//! `ext_authz` (whose `path_prefix` is stripped when configured).
//!
//! * Allowed: 200 with `X-Auth-Principal`, `X-Auth-Attributes` (compact JSON
//!   object, non-ASCII escaped) and one `X-Auth-Attr-<name>` per attribute
//!   (values comma-joined); the body is the principal as JSON. A value that
//!   cannot be a header value (control or non-ASCII characters) is left out, as
//!   is an attribute whose name is not a header token; `X-Auth-Attributes`
//!   always has everything. `X-Auth-Unknown-Attributes` names (comma-joined)
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

use crate::gate::{Gate, DECISION_DURATION_SECONDS};
use crate::{Config, DynProvider, Principal, RequestContext};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode, Uri};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokengate_api::AuthError;

/// Where `tokengate serve` listens when neither `--listen` nor the config says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How long in-flight requests may take to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// `/readyz` answers within this even when a key-set fetch hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Buckets of `tokengate_decision_duration_seconds`: from a cached JWT check
/// (well under a millisecond) to a slow remote introspection.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

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
    /// One JSON line per decision (see [`crate::audit`]); from the config's
    /// `audit:` via [`crate::Config::audit_log`].
    pub audit: Option<crate::audit::AuditLog>,
    /// Leave `/healthz`, `/readyz` and `/metrics` out of the decision
    /// router, for [`admin_router`] on a listener of its own: then every path
    /// is a decision.
    pub separate_admin: bool,
}

impl ServeOptions {
    pub fn from_config(config: &Config) -> Self {
        ServeOptions {
            realm: config.settings.realm.clone(),
            open_paths: config.settings.open_paths.clone(),
            path_prefix: None,
            // Opening the output can fail; `Config::audit_log` reports that, and the caller sets it.
            audit: None,
            separate_admin: config.settings.admin_listen.is_some(),
        }
    }
}

struct AppState {
    gate: Gate,
    path_prefix: Option<String>,
    metrics: Option<PrometheusHandle>,
}

/// The process-wide Prometheus recorder, installed on first call.
///
/// `None` when another global `metrics` recorder was installed first (an
/// embedding application's own); `/metrics` then answers 503.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DECISION_DURATION_SECONDS.to_string()), LATENCY_BUCKETS)
                .and_then(|b| b.install_recorder());
            match installed {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!("cannot install the Prometheus recorder, /metrics is disabled: {e}");
                    None
                }
            }
        })
        .clone()
}

/// The decision service: `/healthz`, `/metrics`, and decisions on every other path.
pub fn router(provider: DynProvider, options: ServeOptions) -> Router {
    let mut gate = Gate::new(provider);
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
    let state = Arc::new(AppState { gate, path_prefix, metrics: metrics_handle() });
    let router = if options.separate_admin { Router::new() } else { admin_routes() };
    router.fallback(decide).with_state(state)
}

/// `/healthz`, `/readyz` and `/metrics` alone, for a listener of their own
/// (`admin_listen`); every other path is 404.
pub fn admin_router(provider: DynProvider) -> Router {
    let state = Arc::new(AppState { gate: Gate::new(provider), path_prefix: None, metrics: metrics_handle() });
    admin_routes().with_state(state)
}

fn admin_routes() -> Router<Arc<AppState>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(render_metrics))
}

/// Serves the decision service on `listener` until `shutdown` completes, then closes the provider.
pub async fn serve(
    listener: tokio::net::TcpListener,
    provider: DynProvider,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(provider.clone(), options);
    run(listener, app, provider, shutdown).await
}

/// Serves any router (the decision service, possibly with more routes) with
/// peer addresses recorded; drains in-flight requests for at most 30s once
/// `shutdown` completes, then closes `provider`.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    provider: DynProvider,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_admin(listener, app, None, provider, shutdown).await
}

/// [`run`], plus `admin` (a listener and, normally, [`admin_router`]) served
/// alongside until the decision service stops.
pub async fn run_with_admin(
    listener: tokio::net::TcpListener,
    app: Router,
    admin: Option<(tokio::net::TcpListener, Router)>,
    provider: DynProvider,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admin = admin.map(|(listener, router)| {
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
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
        let provider = provider.clone();
        tokio::spawn(async move {
            match provider.ready().await {
                Ok(()) => tracing::debug!("provider ready"),
                Err(e) => tracing::warn!(
                    provider = provider.type_name(),
                    "provider not ready yet, requests will retry: {}",
                    e.detail()
                ),
            }
        })
    };
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = stopping.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        signal.notify_one();
    };
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .into_future();
    let result = tokio::select! {
        r = server => r,
        _ = async { stopping.notified().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {
            tracing::warn!("requests still in flight after {}s; stopping anyway", DRAIN_TIMEOUT.as_secs());
            Ok(())
        }
    };
    if let Some(task) = upkeep {
        task.abort();
    }
    prefetch.abort();
    if let Some(task) = admin {
        task.abort();
    }
    provider.close().await;
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
    let verdict = tokio::time::timeout(READY_TIMEOUT, state.gate.provider().ready()).await;
    let reason = match verdict {
        Ok(Ok(())) => return (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => e.detail().to_string(),
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
    let ctx = match original_request(&parts, state.path_prefix.as_deref()) {
        Ok(ctx) => ctx,
        Err(e) => return state.gate.reject(e).into_response(),
    };
    if state.gate.is_open(&ctx.path) {
        return match state.gate.try_authenticate(&parts.headers, &ctx).await {
            Some(principal) => allowed(&principal),
            None => StatusCode::OK.into_response(),
        };
    }
    match state.gate.authenticate(&parts.headers, &ctx).await {
        Ok(principal) => allowed(&principal),
        Err(rejection) => rejection.into_response(),
    }
}

/// The provider's view of the request the proxy is asking about.
fn original_request(parts: &http::request::Parts, path_prefix: Option<&str>) -> Result<RequestContext, AuthError> {
    let headers = &parts.headers;
    let method = match first_header(headers, &["x-forwarded-method", "x-original-method"]) {
        Some(m) => Method::from_bytes(m.trim().as_bytes())
            .map_err(|_| AuthError::invalid_request("X-Forwarded-Method is not an HTTP method"))?,
        None => parts.method.clone(),
    };
    let mut ctx = RequestContext::new(method.as_str(), "/");
    match first_header(headers, &["x-forwarded-uri", "x-original-uri"]) {
        Some(raw) => {
            let raw = raw.trim();
            // Absolute-form (`https://host/p?q`) is accepted; only its path and query matter.
            let target = match raw.parse::<Uri>() {
                Ok(uri) => uri.path_and_query().map(|pq| pq.as_str().to_string()),
                Err(_) => None,
            };
            match target {
                Some(t) if t.starts_with('/') => ctx.set_target(&t),
                _ => return Err(AuthError::invalid_request("X-Forwarded-Uri is not a request target")),
            }
        }
        None => {
            let path = parts.uri.path();
            let path = match path_prefix.and_then(|p| path.strip_prefix(p)) {
                Some(rest) if rest.starts_with('/') => rest,
                Some("") => "/",
                _ => path,
            };
            ctx.path = path.to_string();
            if let Some(q) = parts.uri.query() {
                ctx.set_query(q);
            }
        }
    }
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            ctx.add_header(name.as_str(), value);
        }
    }
    if let Some(host) = first_header(headers, &["x-forwarded-host"]) {
        ctx.headers.insert("host".to_string(), host.trim().to_string());
    }
    ctx.peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    Ok(ctx)
}

fn first_header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| headers.get(*n)).and_then(|v| v.to_str().ok())
}

fn allowed(principal: &Principal) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match header_value(&principal.principal) {
        Some(v) => {
            headers.insert(HeaderName::from_static("x-auth-principal"), v);
        }
        None => tracing::warn!(
            target: "tokengate::decision",
            "the principal cannot be a header value (control or non-ASCII characters); X-Auth-Principal omitted"
        ),
    }
    if let Ok(v) = HeaderValue::from_str(&ascii_json(&principal.attributes)) {
        headers.insert(HeaderName::from_static("x-auth-attributes"), v);
    }
    // Unknown is not empty: the app must be able to tell "no teams" from
    // "teams could not be determined" (the attribute has no X-Auth-Attr-* header then).
    if !principal.unknown_attributes.is_empty() {
        let names: Vec<&str> = principal.unknown_attributes.iter().map(String::as_str).collect();
        if let Some(v) = header_value(&names.join(",")) {
            headers.insert(HeaderName::from_static("x-auth-unknown-attributes"), v);
        }
    }
    for (name, values) in &principal.attributes {
        let Some(header) = attribute_header_name(name) else { continue };
        if headers.contains_key(&header) {
            continue; // names differing only in case share one header; the JSON has both
        }
        let kept: Vec<&str> = values.iter().map(String::as_str).filter(|v| header_value(v).is_some()).collect();
        if let Some(v) = header_value(&kept.join(",")) {
            headers.insert(header, v);
        }
    }
    let body = ascii_json(principal);
    (StatusCode::OK, headers, Body::from(body)).into_response()
}

/// A header value only when `s` is visible ASCII (inner spaces allowed):
/// anything else could split headers or be mangled by proxies.
fn header_value(s: &str) -> Option<HeaderValue> {
    let ok = !s.is_empty() && s.trim() == s && s.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if ok {
        HeaderValue::from_str(s).ok()
    } else {
        None
    }
}

fn attribute_header_name(name: &str) -> Option<HeaderName> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
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
            if c.is_ascii() {
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
mod tests {
    use super::*;

    #[test]
    fn ascii_json_escapes_non_ascii() {
        let p = Principal::new("josé 😀");
        assert_eq!(ascii_json(&p), r#"{"principal":"jos\u00e9 \ud83d\ude00","attributes":{}}"#);
        let back: Principal = serde_json::from_str(&ascii_json(&p)).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn header_values_and_names() {
        assert!(header_value("alice").is_some());
        assert!(header_value("a b").is_some());
        assert!(header_value("a\r\nX-Evil: 1").is_none());
        assert!(header_value("josé").is_none());
        assert!(header_value("").is_none());
        assert!(attribute_header_name("roles").is_some());
        assert!(attribute_header_name("bad name").is_none());
        assert!(attribute_header_name("a:b").is_none());
        assert!(attribute_header_name("").is_none());
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn original_request_from_headers_or_path() {
        let c = original_request(
            &parts(
                "/auth",
                &[
                    ("x-forwarded-uri", "/v1/models?a=1&a=2"),
                    ("x-forwarded-method", "DELETE"),
                    ("x-forwarded-host", "api.example.com"),
                    ("authorization", "Bearer t"),
                ],
            ),
            None,
        )
        .unwrap();
        assert_eq!((c.method.as_str(), c.path.as_str()), ("DELETE", "/v1/models"));
        assert_eq!(c.params["a"], vec!["1", "2"]);
        assert_eq!(c.headers["host"], "api.example.com");
        assert!(!c.headers.contains_key("authorization"));

        let c =
            original_request(&parts("https://h/x/y?q=1", &[("x-original-uri", "https://h/x/y?q=1")]), None).unwrap();
        assert_eq!(c.path, "/x/y");

        let c = original_request(&parts("/authz/v1/chat?s=1", &[]), Some("/authz")).unwrap();
        assert_eq!((c.method.as_str(), c.path.as_str()), ("POST", "/v1/chat"));
        assert_eq!(c.params["s"], vec!["1"]);
        let c = original_request(&parts("/authzother", &[]), Some("/authz")).unwrap();
        assert_eq!(c.path, "/authzother");

        assert!(original_request(&parts("/", &[("x-forwarded-uri", "not a uri")]), None).is_err());
    }
}
