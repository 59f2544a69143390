//! The one front door: what every front end asks of a [`Gate`] and what it
//! gets back. The tower layer ([`super::layer`]), `tokengate serve`
//! ([`super::server`]) and the Python binding are adapters over
//! [`Gate::admit`] (or, for a front end that resolves the request itself,
//! [`Gate::admit_context`]): the same request gets the same [`Admission`]
//! whichever front end asked, and a refusal the same status, code,
//! [`Reason`], body and headers ([`Rejection`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tokengate::http::admission::{Admission, RequestParts};
//! use tokengate::http::gate::Gate;
//!
//! let config = tokengate::Config::load("tokengate.yaml".as_ref())?;
//! let gate = Gate::from_config(&config, &tokengate::Registry::with_builtins())?;
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", "Bearer eyJ...".parse()?);
//! match gate.admit(&RequestParts::new("GET", "/v1/models?limit=5", &headers, None)).await {
//!     Admission::Allowed { principal: Some(p), .. } => println!("{}", p.principal),
//!     Admission::Allowed { principal: None, .. } => println!("anonymous"),
//!     Admission::Refused(r) => println!("{} {} ({})", r.status(), r.code(), r.reason().code()),
//! }
//! # Ok(()) }
//! ```

use http::header::HeaderMap;
use http::Method;
use std::net::SocketAddr;
use tokengate_api::{AuthError, ConfigError, Principal, Reason, RequestContext};

use super::credential::{canonical_route, refuse_method_override};
use super::gate::Gate;
use super::rejection::Rejection;
use crate::config::{Config, Registry};

/// A request as any front end sees it, borrowed from the front end's own
/// representation: nothing is copied until the provider's view is built.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method, as sent (methods are case-sensitive).
    pub method: &'a str,
    /// The path as sent, percent-encoding included, without the query.
    pub path: &'a str,
    /// The query as sent, without the `?`.
    pub query: Option<&'a str>,
    /// Every header, credentials included: the credential is read from them
    /// and they are left out of what the provider sees.
    pub headers: &'a HeaderMap,
    /// The TCP peer, when the front end knows it; also the client address
    /// limits count by (in front of an application the peer is the client).
    pub peer: Option<SocketAddr>,
}

impl<'a> RequestParts<'a> {
    /// A request for the origin-form `target` (`/path?query`), split at its
    /// first `?`. A target with a `#`, or one that is not origin-form, is
    /// refused by [`Gate::admit`] (400), never read another way.
    pub fn new(method: &'a str, target: &'a str, headers: &'a HeaderMap, peer: Option<SocketAddr>) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        RequestParts { method, path, query, headers, peer }
    }

    /// The parts of an `http` request; the peer is the
    /// `axum::extract::ConnectInfo<SocketAddr>` or plain `SocketAddr` in its
    /// extensions, if either is there.
    pub fn of<B>(req: &'a http::Request<B>) -> Self {
        RequestParts {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            peer: super::context::peer(req.extensions()),
        }
    }

    /// The provider's view of the request ([`RequestContext`]): the method,
    /// the path in its one canonical form ([`crate::path`]), the query, every
    /// header but the credentials, the peer. `invalid_request` (400) for a
    /// method that is none, a method override, or a path without one single
    /// meaning: route rules and open paths judge this path, and a back end
    /// that read another could be routed past them.
    pub fn context(&self) -> Result<RequestContext, AuthError> {
        let request = |detail: &str| AuthError::invalid_request(detail).because(Reason::Request);
        if Method::from_bytes(self.method.as_bytes()).is_err() {
            return Err(request("the request's method is not an HTTP method"));
        }
        // URI parsers drop what follows a `#`, while some back ends route on the whole target.
        if self.path.contains('#') || self.query.is_some_and(|q| q.contains('#')) {
            return Err(request("the request target has a `#`, which back ends read differently"));
        }
        refuse_method_override(self.headers)?;
        let path = canonical_route(self.path)?;
        Ok(super::context::request_context(self.method, path, self.query, self.headers, &[], self.peer))
    }
}

/// What a request is let in as, or why not.
#[derive(Debug, Clone)]
#[must_use]
pub enum Admission {
    /// Let in: as `principal`, or with none (`None`) on an open path without
    /// a valid credential, or when the pipeline authenticates nobody (no
    /// provider) and its route policy lets the request in.
    #[non_exhaustive]
    Allowed {
        /// Who the credential authenticated; `None` is anonymous.
        principal: Option<Principal>,
    },
    /// Refused: the answer to send ([`Rejection::status`], [`Rejection::headers`],
    /// [`Rejection::body`]) and why ([`Rejection::reason`]).
    Refused(Rejection),
}

impl Admission {
    /// Let in as `principal` (`None`: anonymous).
    pub fn allowed(principal: Option<Principal>) -> Self {
        Admission::Allowed { principal }
    }

    /// Whether the request is let in.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Admission::Allowed { .. })
    }

    /// The refusal, if refused.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Admission::Refused(r) => Some(r),
            Admission::Allowed { .. } => None,
        }
    }

    /// The principal when let in (`Ok(None)`: anonymous), else the refusal.
    // As large as the `Admission` it is made of: boxing would add an allocation per refusal.
    #[allow(clippy::result_large_err)]
    pub fn into_result(self) -> Result<Option<Principal>, Rejection> {
        match self {
            Admission::Allowed { principal } => Ok(principal),
            Admission::Refused(r) => Err(r),
        }
    }
}

impl Gate {
    /// The gate a config describes: its pipeline (providers, tenancy,
    /// revocation, route policy, limits), `realm`, `open_paths` (OGX's public
    /// routes included for a run.yaml) and `audit` log, as `tokengate serve`
    /// and [`crate::AuthLayer::from_config`] build them.
    pub fn from_config(config: &Config, registry: &Registry) -> Result<Gate, ConfigError> {
        // The audit output first: a path that cannot be opened fails before providers start background work.
        let audit = config.audit_log()?;
        let mut gate = Gate::new(config.build(registry)?);
        if let Some(audit) = audit {
            gate = gate.with_audit(audit);
        }
        if let Some(realm) = &config.settings.realm {
            gate = gate.with_realm(realm);
        }
        for path in config.open_paths() {
            gate = gate.with_open_path(path);
        }
        Ok(gate)
    }

    /// Decides `parts`: builds the provider's view ([`RequestParts::context`],
    /// whose refusals are answered but not recorded, as no credential was
    /// read), then [`Gate::admit_context`].
    pub async fn admit(&self, parts: &RequestParts<'_>) -> Admission {
        match parts.context() {
            Ok(ctx) => self.admit_context(parts.headers, &ctx).await,
            Err(e) => Admission::Refused(self.reject(e)),
        }
    }

    /// Decides a request whose provider's view `ctx` the front end built
    /// itself (`tokengate serve`: the original request the proxy describes),
    /// with its path already canonical; the credential is read from `headers`.
    ///
    /// On an open path the credential is tried, and a request without a
    /// valid one is let in anonymously (and not recorded: nothing was
    /// decided), unless a usage limit refuses it (429); elsewhere the pipeline decides, and the decision is recorded
    /// (metrics, the decision log, the audit line). A pipeline without
    /// providers has no authentication to skip: its route policy judges
    /// every path (as OGX does).
    pub async fn admit_context(&self, headers: &HeaderMap, ctx: &RequestContext) -> Admission {
        let anonymous = self.pipeline().is_anonymous();
        if !anonymous && self.is_open(&ctx.path) {
            return match self.admit_open(headers, ctx).await {
                Ok(principal) => Admission::allowed(principal),
                Err(rejection) => Admission::Refused(rejection),
            };
        }
        let admitted = if anonymous {
            self.admit_anonymous(ctx).await.map(|()| None)
        } else {
            self.authenticate(headers, ctx).await.map(Some)
        };
        match admitted {
            Ok(principal) => Admission::allowed(principal),
            Err(rejection) => Admission::Refused(rejection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    #[test]
    fn a_target_splits_at_its_first_question_mark() {
        let headers = HeaderMap::new();
        let parts = RequestParts::new("GET", "/v1/a%20b?x=1?y&z", &headers, None);
        assert_eq!((parts.path, parts.query), ("/v1/a%20b", Some("x=1?y&z")));
        let ctx = parts.context().unwrap();
        assert_eq!((ctx.path.as_str(), ctx.params().unwrap()["x"][0].as_str()), ("/v1/a b", "1?y"));
        assert_eq!(RequestParts::new("GET", "/", &headers, None).query, None);
    }

    #[test]
    fn a_request_without_one_meaning_is_refused_before_anything_reads_it() {
        let headers = HeaderMap::new();
        for (method, target) in [
            ("GET", "/public#/../admin"),
            ("GET", "/a?x#y"),
            ("G ET", "/a"),
            ("GET", "*"),
            ("GET", ""),
            ("GET", "https://host/a"),
            ("GET", "/public/../admin"),
            ("GET", "/public/%2e%2e/admin"),
            ("GET", "/a%2Fb"),
        ] {
            let e = RequestParts::new(method, target, &headers, None).context().unwrap_err();
            assert_eq!((e.code(), e.reason()), ("invalid_request", &Reason::Request), "{method} {target}");
        }
        let mut overridden = HeaderMap::new();
        overridden.insert("x-http-method-override", HeaderValue::from_static("DELETE"));
        let e = RequestParts::new("GET", "/a", &overridden, None).context().unwrap_err();
        assert_eq!(e.reason(), &Reason::Request);
    }

    #[test]
    fn the_peer_is_the_client_in_front_of_an_application() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer secret"));
        headers.insert("x-request-id", HeaderValue::from_static("r-1"));
        let peer = SocketAddr::from(([192, 0, 2, 7], 4711));
        let ctx = RequestParts::new("POST", "/x", &headers, Some(peer)).context().unwrap();
        assert_eq!((ctx.peer, ctx.client_ip), (Some(peer), Some(peer.ip())));
        assert_eq!(ctx.method, "POST");
        assert_eq!(ctx.headers().unwrap().get("x-request-id").map(String::as_str), Some("r-1"));
        assert!(!ctx.headers().unwrap().contains_key("authorization"), "credentials never reach the provider");
    }
}
