//! The contract every tokengate provider implements.
//!
//! A provider turns a bearer token (plus the context of the request that carried
//! it) into a [`Principal`], or into an [`AuthError`] that says exactly why not.
//! A user's own provider depends only on this crate; the `tokengate` crate
//! chooses one by the `type` field of its configuration through a
//! [`ProviderBuilder`].
//!
//! This crate is the contract and nothing else: its dependencies are serde,
//! serde_json, async-trait and a few tiny, stable crates (serde_path_to_error,
//! indexmap, subtle, form_urlencoded), never an HTTP client, a cache or a
//! metrics crate, so a major release of one of those cannot break a provider
//! that does not use it. The machinery HTTP-backed providers share (client
//! options, upstream limits, the remote-result cache, duration parsing) is in
//! `tokengate-kit`.

mod builder;
mod claims;
mod context;
mod error;
mod secret;
mod shared;

pub use builder::{parse_provider_config, BuildContext, ProviderBuilder};
pub use claims::{claim_at_path, ClaimsMapping, IDENTIFIER_CLAIMS, LIST_CLAIMS};
pub use context::{RequestContext, CREDENTIAL_HEADERS};
pub use error::{AuthError, ConfigError, ErrorKind};
pub use secret::Secret;
pub use shared::{SharedHit, SharedResultStore, SharedResults, TokenHash};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use async_trait::async_trait as provider_trait;

/// Attribute name → values, e.g. `{"roles": ["admin"], "teams": ["ml"]}`.
///
/// A `BTreeMap` so every rendering (JSON output, forward-auth headers) is stable.
pub type Attributes = BTreeMap<String, Vec<String>>;

/// Who a token belongs to and what it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Principal {
    pub principal: String,
    #[serde(default)]
    pub attributes: Attributes,
    /// Attributes the provider could not determine (GitHub organizations for a
    /// token without `read:org`, or more pages than `max_org_pages`).
    ///
    /// Unknown is not empty: an attribute listed here is absent from
    /// `attributes`, and every route-policy condition that reads it comes out
    /// on the refusing side (a `forbid` refuses, a `permit` does not permit),
    /// so nobody escapes a `forbid` by choosing a token that hides what it
    /// would match. Left out of JSON when empty, so the usual shape is unchanged.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unknown_attributes: BTreeSet<String>,
}

impl Principal {
    pub fn new(principal: impl Into<String>) -> Self {
        Principal { principal: principal.into(), ..Default::default() }
    }

    pub fn with_attributes(mut self, attributes: Attributes) -> Self {
        self.attributes = attributes;
        for name in &self.unknown_attributes {
            self.attributes.remove(name);
        }
        self
    }

    /// Marks attributes as unknown, dropping whatever values they had.
    pub fn with_unknown_attributes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        for name in names {
            let name = name.into();
            self.attributes.remove(&name);
            self.unknown_attributes.insert(name);
        }
        self
    }

    /// Whether `attribute` could not be determined.
    pub fn is_unknown(&self, attribute: &str) -> bool {
        self.unknown_attributes.contains(attribute)
    }
}

/// Whether a provider in a chain claims a token before validating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The token has this provider's shape (a JWT from its issuer, its prefix…):
    /// this provider decides, and its rejection is final.
    Mine,
    /// The token cannot be this provider's; the next provider is tried.
    NotMine,
}

/// An authentication provider: validates bearer tokens into principals.
///
/// Implementations must be cheap to call concurrently; anything slow (key sets,
/// remote calls) is cached inside the provider.
#[async_trait]
pub trait AuthProvider: Send + Sync + 'static {
    /// The provider's `type` name (`oauth2_token`, `custom`, …), used in logs and metrics.
    fn type_name(&self) -> &str;

    /// Validates `token`. The context never contains the `Authorization` header.
    async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError>;

    /// The human-readable message a client gets with a 401: what to send and who checks it.
    fn error_message(&self) -> String {
        "Authentication required. Please provide a valid Bearer token in the Authorization header".to_string()
    }

    /// A cheap, offline look at the token's shape, used by provider chains.
    fn ownership(&self, _token: &str) -> Ownership {
        Ownership::Mine
    }

    /// A short description of what this provider accepts, for chain error messages.
    fn accepts(&self) -> String {
        self.type_name().to_string()
    }

    /// The claims mapping this provider applies, so `tokengate explain` can say
    /// which claim and rule produced each attribute value.
    fn claims_mapping(&self) -> Option<&ClaimsMapping> {
        None
    }

    /// The claims mapping that fills this provider's attributes, whatever it
    /// maps from (a JWT, an introspection answer, GitHub's user, a
    /// TokenReview), for start-up lints such as "a route rule tests `roles`,
    /// which the mapping fills from `sub`". Default: [`AuthProvider::claims_mapping`].
    fn attribute_mapping(&self) -> Option<&ClaimsMapping> {
        self.claims_mapping()
    }

    /// Whether a request must carry a token for this provider to judge it.
    ///
    /// `false` for providers that read the identity elsewhere (`upstream_header`
    /// takes it from a trusted proxy's headers): servers then call
    /// [`AuthProvider::validate`] with an empty token instead of refusing a
    /// request that carries none.
    fn needs_token(&self) -> bool {
        true
    }

    /// For a provider chain: the position and `type` of the member that decides
    /// `token` (`None` for a single provider, or when no member owns the token),
    /// so audit logs and `tokengate explain` can say who decided.
    fn chain_owner(&self, _token: &str) -> Option<(usize, String)> {
        None
    }

    /// Whether the provider can decide now. A provider that needs remote state
    /// (a key set) and holds none fetches it here; `Err` (normally
    /// `Unavailable`) says why it cannot. `tokengate serve` calls this at
    /// start-up, so the first requests do not wait for the fetch, and on
    /// `/readyz`. The default: always ready.
    async fn ready(&self) -> Result<(), AuthError> {
        Ok(())
    }

    /// Releases background tasks and connections.
    async fn close(&self) {}
}

/// Shared handle to any provider.
pub type DynProvider = Arc<dyn AuthProvider>;
