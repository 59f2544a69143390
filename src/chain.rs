//! Several providers behind one door: the first that owns a token decides.

use async_trait::async_trait;
use std::sync::Arc;
use tokengate_api::{AuthError, AuthProvider, DynProvider, Ownership, Principal, RequestContext};

/// Tries providers in order. A provider that says [`Ownership::NotMine`] is
/// skipped; the first that owns the token decides, and its rejection is final
/// (falling through on rejection would let the weakest provider decide).
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

    /// The provider that owns `token`, if any.
    pub fn owner(&self, token: &str) -> Option<&DynProvider> {
        self.providers.iter().find(|p| p.ownership(token) == Ownership::Mine)
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

    async fn close(&self) {
        for p in &self.providers {
            p.close().await;
        }
    }
}
