//! Several providers behind one door: the first that owns a token decides.

use async_trait::async_trait;
use std::sync::Arc;
use tokengate_api::{AuthError, AuthProvider, ClaimsMapping, DynProvider, Ownership, Principal, RequestContext};

/// Tries providers in order. A provider that says [`Ownership::NotMine`] is
/// skipped; the first that owns the token decides, and its rejection is final
/// (falling through on rejection would let the weakest provider decide).
///
/// A request without a token (empty `token`) belongs to the first member that
/// does not need one ([`AuthProvider::needs_token`], e.g. `upstream_header`).
pub struct Chain {
    providers: Vec<DynProvider>,
}

impl Chain {
    pub fn new(providers: Vec<DynProvider>) -> Self {
        Chain { providers }
    }

    /// A chain of one is just that provider.
    pub fn into_dyn(mut self) -> DynProvider {
        if self.providers.len() == 1 {
            if let Some(only) = self.providers.pop() {
                return only;
            }
        }
        Arc::new(self)
    }

    /// The provider that owns `token`, with its position, if any.
    pub fn owner_at(&self, token: &str) -> Option<(usize, &DynProvider)> {
        if token.is_empty() {
            // No token has a shape to look at; only tokenless providers can judge the request.
            return self.providers.iter().enumerate().find(|(_, p)| !p.needs_token());
        }
        self.providers.iter().enumerate().find(|(_, p)| p.ownership(token) == Ownership::Mine)
    }

    /// The provider that owns `token`, if any.
    pub fn owner(&self, token: &str) -> Option<&DynProvider> {
        self.owner_at(token).map(|(_, p)| p)
    }

    pub fn providers(&self) -> &[DynProvider] {
        &self.providers
    }
}

#[async_trait]
impl AuthProvider for Chain {
    fn type_name(&self) -> &str {
        "chain"
    }

    async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        match self.owner(token) {
            Some(p) => p.validate(token, ctx).await,
            None if token.is_empty() => Err(AuthError::invalid_token(format!(
                "no token, and every configured provider needs one; accepted: {}",
                self.accepts()
            ))),
            None => Err(AuthError::invalid_token(format!(
                "no configured provider accepts this kind of token; accepted: {}",
                self.accepts()
            ))),
        }
    }

    fn error_message(&self) -> String {
        format!("Authentication required. Please provide one of: {}", self.accepts())
    }

    fn ownership(&self, token: &str) -> Ownership {
        if self.owner(token).is_some() {
            Ownership::Mine
        } else {
            Ownership::NotMine
        }
    }

    fn accepts(&self) -> String {
        self.providers.iter().map(|p| p.accepts()).collect::<Vec<_>>().join("; ")
    }

    /// Only one member can own a token; its mapping is the one that applies.
    /// Without a token to look at there is no telling which, so `None`.
    fn claims_mapping(&self) -> Option<&ClaimsMapping> {
        None
    }

    fn needs_token(&self) -> bool {
        self.providers.iter().all(|p| p.needs_token())
    }

    fn chain_owner(&self, token: &str) -> Option<(usize, String)> {
        self.owner_at(token).map(|(i, p)| (i, p.type_name().to_string()))
    }

    /// Ready when every member is: a member that cannot decide would turn
    /// its tokens away. The first failure is reported, with its position.
    async fn ready(&self) -> Result<(), AuthError> {
        for (i, p) in self.providers.iter().enumerate() {
            if let Err(e) = p.ready().await {
                let detail = format!("provider {} ({}): {}", i + 1, p.type_name(), e.detail());
                let mut error = AuthError::new(e.kind(), detail);
                if let Some(after) = e.retry_after() {
                    error = error.with_retry_after(after);
                }
                return Err(error);
            }
        }
        Ok(())
    }

    async fn close(&self) {
        for p in &self.providers {
            p.close().await;
        }
    }
}
