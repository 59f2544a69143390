//! The HTTP side of a decision, shared by every front end (the tower layer,
//! [`super::layer`], the forward-auth server, [`super::server`], the Python
//! binding): read the credential, ask the [`Pipeline`], record the decision,
//! and word the refusal. What front ends call is [`Gate::admit`] (see
//! [`super::admission`]).
//!
//! The credential is the `Authorization: Bearer` token or, when there is no
//! `Authorization` header at all, the value of `X-API-Key` (see
//! [`super::credential`]). A pipeline whose member needs no token
//! (`upstream_header`) is asked even when there is neither, with an empty token.
//!
//! Every decision is recorded once (see [`crate::ops::record_decision`]) and,
//! with an [`AuditLog`] attached, written as one JSON line there.

use http::header::HeaderMap;
use std::sync::Arc;
use std::time::Instant;
use tokengate_api::{AuthError, Principal, Reason, RequestContext};

use super::credential::credential;
use super::rejection::{quoted_string_safe, Rejection, DEFAULT_REALM};
use crate::ops::audit::{AuditLog, AuditRecord};
use crate::pipeline::{Decision, IntoPipeline, Pipeline};

/// A pipeline plus what the HTTP side needs around it: realm, open paths and
/// the audit log. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    pipeline: Arc<Pipeline>,
    realm: Arc<str>,
    open_paths: OpenPaths,
    audit: Option<AuditLog>,
}

impl Gate {
    /// A gate in front of `pipeline` (or a single provider).
    pub fn new(pipeline: impl IntoPipeline) -> Self {
        Gate {
            pipeline: pipeline.into_pipeline(),
            realm: Arc::from(DEFAULT_REALM),
            open_paths: OpenPaths::default(),
            audit: None,
        }
    }

    /// Writes one audit line per decision to `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The audit log, if any.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// The `realm` of `WWW-Authenticate`.
    pub fn with_realm(mut self, realm: impl AsRef<str>) -> Self {
        self.realm = Arc::from(quoted_string_safe(realm.as_ref()).as_str());
        self
    }

    /// Answers `pattern` (exact, or `prefix*`) without authentication.
    pub fn with_open_path(mut self, pattern: impl Into<String>) -> Self {
        self.open_paths.add(pattern.into());
        self
    }

    /// The pipeline decisions are asked of.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The configured realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Whether `path` is answered without authentication.
    pub fn is_open(&self, path: &str) -> bool {
        self.open_paths.matches(path)
    }

    /// Reads the credential from `headers`, asks the pipeline with `ctx`, and
    /// records the decision (metrics, one log event, and the audit line).
    pub async fn authenticate(&self, headers: &HeaderMap, ctx: &RequestContext) -> Result<Principal, Rejection> {
        let started = Instant::now();
        let (decision, token) = match self.token(headers) {
            Ok(token) => (self.pipeline.decide(token, ctx).await, token),
            Err(e) => (Decision::unowned(Err(e)), ""),
        };
        self.record(&decision, ctx, token, started);
        let refused = decision.validated;
        decision.outcome.map_err(|e| self.reject_principal(e, refused.as_ref()))
    }

    /// For a pipeline that authenticates nobody (no provider): whether its
    /// route policy and limits let the request in; the credential is not
    /// read at all (OGX without a provider). Records the decision, as
    /// [`Gate::authenticate`] does.
    pub async fn admit_anonymous(&self, ctx: &RequestContext) -> Result<(), Rejection> {
        let started = Instant::now();
        // Recorded as a decision for nobody: an empty principal, which no provider can produce.
        let admitted = self.pipeline.admit_anonymous_request(ctx).await;
        let decision = Decision::unowned(admitted.map(|()| Principal::new("")));
        self.record(&decision, ctx, "", started);
        decision.outcome.map(|_| ()).map_err(|e| self.reject(e))
    }

    /// For open paths, with usage limits: the principal when the request
    /// carries a token the pipeline accepts, else `None` (anonymous); only a
    /// limit refuses (429, or 400/500 when what it counts cannot be read),
    /// so an open route is no way around one.
    pub async fn admit_open(&self, headers: &HeaderMap, ctx: &RequestContext) -> Result<Option<Principal>, Rejection> {
        self.pipeline.admit_open(self.token(headers).ok(), ctx).await.map_err(|e| self.reject(e))
    }

    /// The token the pipeline is asked with: the credential, or empty when
    /// there is none and a member reads the identity elsewhere.
    fn token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, AuthError> {
        match credential(headers)? {
            Some(token) => Ok(token),
            None if !self.pipeline.needs_token() => Ok(""),
            None => Err(missing_credential()),
        }
    }

    /// Records `decision` under the owner's type (the pipeline's name when none owns it).
    pub fn record(&self, decision: &Decision, ctx: &RequestContext, token: &str, started: Instant) {
        if let Some(audit) = &self.audit {
            audit.record(&AuditRecord::of(&self.pipeline, decision, ctx, token));
        }
        let provider = decision.owner.as_ref().map(|o| &*o.type_name).unwrap_or(self.pipeline.name());
        crate::ops::record_decision(provider, decision, ctx, started.elapsed());
    }

    /// The refusal for `err`, worded with this gate's realm and the pipeline's message.
    pub fn reject(&self, err: AuthError) -> Rejection {
        self.reject_principal(err, None)
    }

    /// The refusal for `err` of `refused`, a principal the provider accepted
    /// and a later stage (revocation, route policy) turned away: a 403 says
    /// the caller is authenticated and not allowed here, never what to send.
    pub fn reject_principal(&self, err: AuthError, refused: Option<&Principal>) -> Rejection {
        let message = self.pipeline.refusal_message(&err, refused);
        // RFC 6750 §3.1: no `error` attribute for a request without credentials.
        let missing_token = *err.reason() == Reason::MissingCredential;
        Rejection::new(err, missing_token, self.realm.clone(), message)
    }

    /// The refusal for a request without credentials.
    pub fn reject_missing(&self) -> Rejection {
        self.reject(missing_credential())
    }
}

fn missing_credential() -> AuthError {
    AuthError::invalid_token("no credentials: neither an Authorization: Bearer header nor an X-API-Key header")
        .because(Reason::MissingCredential)
}
/// Paths that skip authentication: exact (`/healthz`) or prefix (`/public/*`, `/docs*`).
///
/// Patterns and paths are compared in their canonical form ([`crate::path`]);
/// a path that has none is never open.
#[derive(Clone, Debug, Default)]
pub struct OpenPaths {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl OpenPaths {
    /// Adds `pattern`: a prefix when it ends in `*`, else an exact path.
    pub fn add(&mut self, pattern: String) {
        match pattern.strip_suffix('*') {
            Some(prefix) => self.prefixes.push(prefix.to_string()),
            // Exact means exact: `/exact/` may be another resource (a directory index).
            None => self.exact.push(crate::path::canonical_path(&pattern).unwrap_or(pattern)),
        }
    }

    /// True when no path is open.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// Whether `path` is open. Paths with `;` parameters, dot segments,
    /// encoded separators or double encoding have no canonical form and are
    /// never open: a back end that reads them differently could otherwise be
    /// routed past authentication (`/public/..;/admin`).
    pub fn matches(&self, path: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let Ok(path) = crate::path::canonical_path(path) else { return false };
        self.exact.contains(&path) || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_paths_exact_prefix_and_traversal() {
        let mut o = OpenPaths::default();
        o.add("/healthz".into());
        o.add("/public/*".into());
        assert!(o.matches("/healthz"));
        assert!(!o.matches("/healthz/x"));
        assert!(o.matches("/public/a.css"));
        assert!(!o.matches("/public/../admin"));
        assert!(!o.matches("/public/%2e%2e/admin"));
        assert!(!o.matches("/public/..;/admin/users"));
        assert!(!o.matches("/public/%252e%252e/admin"));
        assert!(!o.matches("/healthz;x=1"));
        assert!(!o.matches("/healthz."));
        assert!(!o.matches("/healthz%20"));
        assert!(!o.matches("/healthz/"), "a directory index is not the exact open path");
        assert!(!o.matches("/HEALTHZ"));
        assert!(o.matches("//public//a.css"));
        assert!(!o.matches("/admin"));
    }
}
