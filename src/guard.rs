//! What runs after a provider accepted a token: revocation, then route policy.
//!
//! [`Guarded`] wraps the configured provider (or chain) so every user of
//! [`crate::Config::build`] — the tower layer, `tokengate serve`, `tokengate
//! check` — gets the same pipeline:
//!
//! 1. the provider validates the token (its cache hits included);
//! 2. the revocation list refuses revoked tokens (401 `invalid_token`);
//! 3. the route policy refuses routes the principal may not use (403
//!    `insufficient_scope`).
//!
//! Revocation comes before the route policy so a revoked token is told it is
//! revoked, not that it lacks a role.

use crate::policy::RoutePolicy;
use crate::revocation::Revocation;
use async_trait::async_trait;
use tokengate_api::{AuthError, AuthProvider, ClaimsMapping, DynProvider, Ownership, Principal, RequestContext};

/// A provider with revocation and route policy applied after it. See the module docs.
pub struct Guarded {
    inner: DynProvider,
    revocation: Option<Revocation>,
    policy: Option<RoutePolicy>,
}

impl Guarded {
    pub fn new(inner: DynProvider) -> Self {
        Guarded { inner, revocation: None, policy: None }
    }

    pub fn with_revocation(mut self, revocation: Revocation) -> Self {
        self.revocation = Some(revocation);
        self
    }

    pub fn with_route_policy(mut self, policy: RoutePolicy) -> Self {
        if policy.is_permit_all() && policy.rule_count() > 0 {
            // First match wins and the default permits: permit rules without a
            // later forbid rule change nothing, which is surely not what was meant.
            tracing::warn!(
                "route_policy permits every request: with `default: permit`, only `forbid` rules can refuse; \
                 add forbid rules (e.g. `forbid: {{attribute: roles, none_of: [admin]}}`) or use `default: forbid`"
            );
        }
        // A policy that permits everything is no policy: skip the work.
        self.policy = (!policy.is_permit_all()).then_some(policy);
        self
    }

    pub fn inner(&self) -> &DynProvider {
        &self.inner
    }

    pub fn revocation(&self) -> Option<&Revocation> {
        self.revocation.as_ref()
    }

    pub fn route_policy(&self) -> Option<&RoutePolicy> {
        self.policy.as_ref()
    }

    /// The provider itself when there is nothing to add.
    pub fn into_dyn(self) -> DynProvider {
        if self.revocation.is_none() && self.policy.is_none() {
            return self.inner;
        }
        std::sync::Arc::new(self)
    }
}

#[async_trait]
impl AuthProvider for Guarded {
    fn type_name(&self) -> &str {
        self.inner.type_name()
    }

    async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        let principal = self.inner.validate(token, ctx).await?;
        if let Some(revocation) = &self.revocation {
            // A tokenless request (upstream_header) has nothing that could be revoked.
            if !token.is_empty() {
                revocation.check(token).await?;
            }
        }
        if let Some(policy) = &self.policy {
            policy.authorize(&ctx.method, &ctx.path, &principal)?;
        }
        Ok(principal)
    }

    fn error_message(&self) -> String {
        self.inner.error_message()
    }

    fn ownership(&self, token: &str) -> Ownership {
        self.inner.ownership(token)
    }

    fn accepts(&self) -> String {
        self.inner.accepts()
    }

    fn claims_mapping(&self) -> Option<&ClaimsMapping> {
        self.inner.claims_mapping()
    }

    fn needs_token(&self) -> bool {
        self.inner.needs_token()
    }

    fn chain_owner(&self, token: &str) -> Option<(usize, String)> {
        self.inner.chain_owner(token)
    }

    async fn ready(&self) -> Result<(), AuthError> {
        self.inner.ready().await
    }

    async fn close(&self) {
        if let Some(r) = &self.revocation {
            r.close();
        }
        self.inner.close().await;
    }
}
