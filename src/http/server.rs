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
//! with dashes. Traefik: `authResponseHeadersRegex: "(?i)^x[^a-z0-9]auth[^a-z0-9]"`, which
//! removes the client's copies under every spelling before copying the answer's
//! (`authResponseHeaders` removes only the exact names it lists). Envoy: list
//! `authorization` in `allowed_headers` and `x-auth-*` in
//! `allowed_upstream_headers`; Envoy sends tokengate only the headers listed,
//! so the refusal of client copies below never sees one there, and the listener
//! must remove them (README).
//!
//! A decision request that carries a header tokengate sets in its answer
//! (`X-Auth-Principal`, `X-Auth-Tenant`, `X-Auth-Attributes`,
//! `X-Auth-Unknown-Attributes`, any `X-Auth-Attr-*`), under any name that
//! folds to one (case ignored, any other character than a letter or digit
//! for `-`: `x_auth_principal`, `X.Auth.Principal`), is refused
//! with 400 `invalid_request` before any provider runs, on open paths too:
//! nginx, Traefik and Caddy pass the client's headers to tokengate, so it is a
//! client's copy the proxy did not remove, and the application behind would
//! read it beside tokengate's own. Exempt are the exact names a configured
//! provider reads identity from ([`ServeOptions::provider_identity_headers`]).
//!
//! The provider's `RequestContext.peer` is the TCP peer (the proxy); the
//! client's address, if the proxy sends it, is in the `x-forwarded-for` header.

use super::admission::Admission;
use super::gate::Gate;
pub use super::listener::ConnectionLimits;
use crate::config::{Config, ForwardAuthConfig, Proxy};
use crate::ops::metrics::prometheus as metrics_handle;
use crate::pipeline::IntoPipeline;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use identity::{allowed, anonymous, refuse_identity_copies, AttributeHeaderNames};
pub use identity::{percent_decoded, percent_encoded};
use metrics_exporter_prometheus::PrometheusHandle;
use original::original_request;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

mod identity;
mod original;

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
    /// Headers a provider reads identity from (`upstream_header`'s, set by
    /// the authenticating proxy in front), exempt from the refusal of
    /// decision requests that carry a header tokengate sets; exact names,
    /// any case. [`ServeOptions::from_config`] fills it from the config; add
    /// the names a provider of your own reads, if one is among tokengate's.
    pub provider_identity_headers: Vec<String>,
}

impl ServeOptions {
    /// The options the config's settings give; `audit` stays `None` (see [`crate::Config::audit_log`]).
    pub fn from_config(config: &Config) -> Self {
        ServeOptions {
            realm: config.settings.realm.clone(),
            open_paths: config.open_paths(),
            path_prefix: config.settings.forward_auth.as_ref().and_then(|f| f.path_prefix.clone()),
            proxy: config.settings.forward_auth.as_ref().map(|f| f.proxy).unwrap_or_default(),
            // Opening the output can fail; `Config::audit_log` reports that, and the caller sets it.
            audit: None,
            separate_admin: config.settings.admin_listen.is_some(),
            provider_identity_headers: provider_identity_headers(config),
        }
    }
}

/// The headers the config's `upstream_header` members read identity from.
/// A section that does not parse adds none: `Config::build` refuses it, so
/// no server runs with it.
fn provider_identity_headers(config: &Config) -> Vec<String> {
    let mut names = Vec::new();
    for section in config.member_sections() {
        let Some(object) = section.as_object() else { continue };
        if object.get("type").and_then(|t| t.as_str()) != Some("upstream_header") {
            continue;
        }
        let mut rest = object.clone();
        rest.remove("type");
        let parsed = tokengate_api::parse_provider_config::<tokengate_upstream_header::UpstreamHeaderConfig>(
            serde_json::Value::Object(rest),
        );
        if let Ok(upstream) = parsed {
            names.extend(upstream.identity_headers());
        }
    }
    names
}

struct AppState {
    gate: Gate,
    proxy: Proxy,
    path_prefix: Option<String>,
    metrics: Option<PrometheusHandle>,
    attribute_headers: AttributeHeaderNames,
    /// [`ServeOptions::provider_identity_headers`].
    provider_identity_headers: Vec<HeaderName>,
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
    // A name that is no header name is in no request: nothing to exempt.
    let provider_identity_headers = options
        .provider_identity_headers
        .iter()
        .filter_map(|name| HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect();
    let state = Arc::new(AppState {
        gate,
        proxy: options.proxy,
        path_prefix,
        metrics: metrics_handle(),
        attribute_headers: AttributeHeaderNames::default(),
        provider_identity_headers,
    });
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
        attribute_headers: AttributeHeaderNames::default(),
        provider_identity_headers: Vec::new(),
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
    if let Err(e) = refuse_identity_copies(&parts.headers, &state.provider_identity_headers) {
        return state.gate.reject(e).into_response();
    }
    let ctx = match original_request(&parts, state.proxy, state.path_prefix.as_deref()) {
        Ok(ctx) => ctx,
        Err(e) => return state.gate.reject(e).into_response(),
    };
    match state.gate.admit_context(&parts.headers, &ctx).await {
        Admission::Allowed { principal: Some(principal) } => allowed(&principal, &state.attribute_headers),
        // An open path without a valid token, or a pipeline that authenticates nobody.
        Admission::Allowed { principal: None } => anonymous(state.gate.pipeline().tenancy().anonymous()),
        Admission::Refused(rejection) => rejection.into_response(),
    }
}

/// What `fuzz/` drives directly: the two parsers of a decision that are
/// private to this module. Not an API; it may change at any time.
#[doc(hidden)]
pub mod fuzzing {
    use super::{
        allowed as allowed_answer, original_request as read_original, refuse_identity_copies, AttributeHeaderNames,
    };
    use crate::config::Proxy;
    use axum::response::Response;
    use std::sync::LazyLock;
    use tokengate_api::{AuthError, Principal, RequestContext};

    /// How `decide` reads the request a decision is about (no provider
    /// reading identity headers, so every copy of tokengate's is refused).
    pub fn original_request(
        parts: &http::request::Parts,
        proxy: Proxy,
        path_prefix: Option<&str>,
    ) -> Result<RequestContext, AuthError> {
        refuse_identity_copies(&parts.headers, &[])?;
        read_original(parts, proxy, path_prefix)
    }

    /// The answer `decide` gives for an allowed `principal`; one header-name
    /// cache for the process, as a server has.
    pub fn allowed(principal: &Principal) -> Response {
        static NAMES: LazyLock<AttributeHeaderNames> = LazyLock::new(AttributeHeaderNames::default);
        allowed_answer(principal, &NAMES)
    }
}

#[cfg(test)]
mod tests;
