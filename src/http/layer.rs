//! Bearer-token authentication for Rust servers: a [`tower::Layer`].
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tokengate::{AuthLayer, Authenticated};
//!
//! async fn whoami(Authenticated(p): Authenticated) -> String {
//!     p.principal
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = tokengate::Config::load("tokengate.yaml".as_ref())?;
//! let auth = AuthLayer::from_config(&config, &tokengate::Registry::with_builtins())?;
//! let app = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/healthz", get(|| async { "ok" }))
//!     .layer(auth.open_path("/healthz"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // `with_connect_info` lets providers see the client address.
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! The service is generic over the request body and the inner response body
//! `ResBody` (any [`http_body::Body`] with `Bytes` data); it answers with
//! `Response<AuthBody<ResBody>>`, where [`AuthBody`] is either the inner body or
//! a refusal's JSON. That fits axum (`Router::layer`), plain hyper (wrap a
//! `service_fn` with `ServiceBuilder`) and tonic (`Server::builder().layer(..)`;
//! a refusal reaches gRPC clients as an HTTP 401/403/503, which tonic clients
//! map to `Unauthenticated`/`PermissionDenied`/`Unavailable`).
//!
//! On success the [`Principal`] is in the request's extensions; axum handlers
//! take it with [`Authenticated`], [`MaybeAuthenticated`] or
//! `Option<Authenticated>`. The credential is the `Authorization: Bearer`
//! token or, without an `Authorization` header, the `X-API-Key` value; a
//! provider that needs no token (`upstream_header`) is asked even without one. The provider's [`RequestContext`] carries the
//! method, path, query parameters, headers (without `Authorization`,
//! `Proxy-Authorization`, `X-API-Key` and `Cookie`; a value that is not UTF-8
//! is recorded as unreadable, and refused by a provider that reads it, never
//! left out) and the peer address when the server
//! recorded one (`axum::extract::ConnectInfo<SocketAddr>`, or a plain
//! `SocketAddr` in the extensions for hyper users).
//!
//! Refusals follow RFC 6750 — see [`super::rejection`]: 401 with
//! `WWW-Authenticate: Bearer realm="…", error="invalid_token", error_description="…"`
//! (no `error` when there was no token), 400 `invalid_request` for a malformed
//! `Authorization` header, 403 `insufficient_scope`, 503 with `Retry-After`
//! when the identity service is unavailable, 500 for a misconfigured provider;
//! the body is `{"error": {"code", "message"}}`.

use super::admission::{Admission, RequestParts};
use super::gate::Gate;
use super::rejection::Rejection;
use crate::config::{Config, Registry};
use crate::pipeline::{IntoPipeline, Pipeline};
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokengate_api::{ConfigError, RequestContext};

/// Adds bearer-token authentication to a service. Cheap to clone.
#[derive(Clone)]
pub struct AuthLayer {
    gate: Gate,
}

impl AuthLayer {
    /// A layer in front of `pipeline` (or a single provider).
    pub fn new(pipeline: impl IntoPipeline) -> Self {
        AuthLayer { gate: Gate::new(pipeline) }
    }

    /// Builds the pipeline from `config` (with its `revocation` and
    /// `route_policy`) and takes its `realm`, `open_paths` and `audit` log.
    pub fn from_config(config: &Config, registry: &Registry) -> Result<Self, ConfigError> {
        Gate::from_config(config, registry).map(AuthLayer::from_gate)
    }

    /// A layer in front of `gate` (see [`Gate::from_config`]).
    pub fn from_gate(gate: Gate) -> Self {
        AuthLayer { gate }
    }

    /// The `realm` of `WWW-Authenticate` (default `tokengate`).
    pub fn realm(mut self, realm: impl AsRef<str>) -> Self {
        self.gate = self.gate.with_realm(realm);
        self
    }

    /// A path served without authentication: exact (`/healthz`) or a prefix
    /// ending in `*` (`/public/*`). A valid token there still yields a
    /// principal (for [`MaybeAuthenticated`]); an invalid or missing one is no
    /// refusal. Matched against the path the layer sees (inside `Router::nest`,
    /// the nested path), in the canonical form of [`crate::path`]; a request
    /// whose path has none (`;` parameters, dot segments, encoded separators,
    /// double encoding) is refused with 400 before anything else.
    pub fn open_path(mut self, pattern: impl Into<String>) -> Self {
        self.gate = self.gate.with_open_path(pattern);
        self
    }

    /// Writes one JSON line per decision to `audit` (see [`crate::ops::audit`]).
    pub fn audit(mut self, audit: crate::ops::audit::AuditLog) -> Self {
        self.gate = self.gate.with_audit(audit);
        self
    }

    /// The pipeline decisions are asked of.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        self.gate.pipeline()
    }

    /// The HTTP side around the pipeline.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, gate: self.gate.clone() }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    gate: Gate,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> tower::Service<Request<B>> for AuthService<S>
where
    S: tower::Service<Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone may not be ready; the instance polled ready goes into the future.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            match gate.admit(&RequestParts::of(&req)).await {
                Admission::Allowed { principal: Some(principal) } => {
                    req.extensions_mut().insert(principal);
                }
                Admission::Allowed { principal: None } => {}
                Admission::Refused(rejection) => return Ok(rejection.to_http::<Bytes>().map(AuthBody::rejection)),
            }
            inner.call(req).await.map(|res| res.map(AuthBody::inner))
        })
    }
}

/// The provider's view of a request: everything but its credentials, the
/// path as sent (see [`RequestParts::context`] for the canonical one the
/// layer decides on).
pub fn request_context<B>(req: &Request<B>) -> RequestContext {
    let parts = RequestParts::of(req);
    super::context::request_context(parts.method, parts.path, parts.query, parts.headers, &[], parts.peer)
}

pin_project_lite::pin_project! {
    /// The response body of [`AuthService`]: the inner service's body, or a refusal's JSON.
    pub struct AuthBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Rejection { body: Option<Bytes> },
    }
}

impl<B> AuthBody<B> {
    fn inner(body: B) -> Self {
        AuthBody { kind: Kind::Inner { body } }
    }

    fn rejection(body: Bytes) -> Self {
        AuthBody { kind: Kind::Rejection { body: Some(body) } }
    }
}

impl<B: Body<Data = Bytes>> Body for AuthBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Rejection { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { body } => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// A refusal as an axum response, for handlers that run their own checks.
pub fn rejection_response(rejection: &Rejection) -> Response {
    rejection.to_http::<axum::body::Body>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::convert::Infallible;
    use tokengate_api::{AuthError, AuthProvider, Description, Principal};
    use tower::{ServiceBuilder, ServiceExt};

    struct Fixed;
    #[async_trait::async_trait]
    impl AuthProvider for Fixed {
        fn describe(&self) -> Description {
            Description::new("fixed")
        }
        async fn validate(&self, token: &str, _: &RequestContext) -> Result<Principal, AuthError> {
            if token == "good" {
                Ok(Principal::new("alice"))
            } else {
                Err(AuthError::invalid_token("unknown token"))
            }
        }
    }

    /// A plain hyper-style service: `Full<Bytes>` bodies, no axum.
    #[tokio::test]
    async fn works_with_plain_http_services() {
        let fixed: tokengate_api::DynProvider = Arc::new(Fixed);
        let svc = ServiceBuilder::new().layer(AuthLayer::new(fixed)).service(tower::service_fn(
            |req: Request<Full<Bytes>>| async move {
                let who = req.extensions().get::<Principal>().map(|p| p.principal.clone()).unwrap_or_default();
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(who))))
            },
        ));
        let ok = Request::builder().uri("/x").header("authorization", "Bearer good").body(Full::default()).unwrap();
        let res = svc.clone().oneshot(ok).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "alice");

        let bad = Request::builder().uri("/x").header("authorization", "Bearer nope").body(Full::default()).unwrap();
        let res = svc.oneshot(bad).await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer realm=\"tokengate\", error=\"invalid_token\", error_description=\"unknown token\""
        );
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "invalid_token");
    }
}
