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
//!
//! Imports: serde, serde_json and async-trait (plus a few small, stable
//! helpers); nothing from any other tokengate crate.

#![warn(missing_docs)]

mod builder;
mod claims;
mod context;
mod error;
mod secret;
mod shared;
mod shared_keys;
mod tenant;
mod text;
mod unique;

pub use builder::{parse_provider_config, BuildContext, ProviderBuilder};
pub use claims::{
    claim_at_path, ClaimValue, ClaimView, ClaimsMapping, JsonRef, JsonStr, IDENTIFIER_CLAIMS, LIST_CLAIMS,
};
pub use context::{Check, RequestContext, Trace, TracedAttribute, CREDENTIAL_HEADERS};
pub use error::{AuthError, ConfigError, ErrorKind, LimitPolicy, RateLimitInfo, Reason};
pub use secret::Secret;
pub use shared::{SharedHit, SharedResultStore, SharedResults, TokenHash};
pub use shared_keys::{KeyUse, SharedKeyStore, SharedKeys};
pub use tenant::{tenant_from, tenant_id, TENANT_PATTERN};
pub use text::is_invisible_or_bidi;
pub use unique::{json_with_unique_keys, UniqueKeys};

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
    /// Who it is: a stable, non-empty identifier without control characters.
    pub principal: String,
    /// What they carry (`roles`, `teams`, …).
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
    /// The tenant the principal acts for, when the provider resolved one
    /// (`tenant_claim`, `tenant_field`, `tenant_header`) or tenancy `single`
    /// set it: always a valid tenant id ([`tenant_id`]). Left out of JSON
    /// when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The stored credential the token matched (an API key entry), for the
    /// stages after authentication: its id for audit and decision logs, its
    /// per-key limits for the limiter. `None` for tokens that are not a stored
    /// credential (JWTs, introspection). Never serialized: it is tokengate's
    /// bookkeeping, not identity sent upstream.
    #[serde(skip)]
    pub credential: Option<Arc<CredentialInfo>>,
}

/// What the pipeline may know about the stored credential behind a
/// [`Principal`]: its id and its per-key limits, never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CredentialInfo {
    /// The credential's id (an API key entry's `id`), safe to log.
    pub key_id: String,
    /// The per-key rate, as written on the entry (`100/min`, `10/s burst 20`);
    /// its grammar is the limiter's to parse.
    pub rate_limit: Option<String>,
    /// Requests allowed per UTC day.
    pub daily_quota: Option<u64>,
    /// Requests allowed per UTC calendar month.
    pub monthly_quota: Option<u64>,
}

impl CredentialInfo {
    /// A credential with this id and no per-key limits.
    pub fn new(key_id: impl Into<String>) -> Self {
        CredentialInfo { key_id: key_id.into(), ..Default::default() }
    }

    /// Sets the per-key limits.
    pub fn with_limits(
        mut self,
        rate_limit: Option<String>,
        daily_quota: Option<u64>,
        monthly_quota: Option<u64>,
    ) -> Self {
        self.rate_limit = rate_limit;
        self.daily_quota = daily_quota;
        self.monthly_quota = monthly_quota;
        self
    }
}

impl Principal {
    /// A principal without attributes.
    pub fn new(principal: impl Into<String>) -> Self {
        Principal { principal: principal.into(), ..Default::default() }
    }

    /// Sets the attributes (unknown ones stay unknown).
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

    /// Sets the tenant, already a valid tenant id (see [`tenant_id`]).
    pub fn with_tenant(mut self, tenant: Option<String>) -> Self {
        self.tenant = tenant;
        self
    }

    /// Sets the stored credential the token matched.
    pub fn with_credential(mut self, credential: Option<Arc<CredentialInfo>>) -> Self {
        self.credential = credential;
        self
    }

    /// The id of the stored credential the token matched, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.credential.as_deref().map(|credential| credential.key_id.as_str())
    }

    /// Whether `attribute` could not be determined.
    pub fn is_unknown(&self, attribute: &str) -> bool {
        self.unknown_attributes.contains(attribute)
    }
}

/// Whether a provider in a chain claims a token before validating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ownership {
    /// The token has this provider's shape (a JWT from its issuer, its prefix…):
    /// this provider decides, and its rejection is final.
    Mine,
    /// The token cannot be this provider's; the next provider is tried.
    NotMine,
}

/// What a provider is, for everything around it: logs and metrics, the 401
/// message, chain errors, `tokengate explain` and start-up lints.
///
/// Asked once, when the pipeline is built, so it may allocate freely.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Description {
    /// The provider's `type` name (`oauth2_token`, `custom`, …).
    pub type_name: String,
    /// The message a client gets with a 401: what to send and who checks it.
    pub message: String,
    /// What this provider accepts, for chain error messages (`JWTs from https://idp`).
    pub accepts: String,
    /// The claims mapping that fills the principal's attributes, whatever it
    /// maps from (a JWT, an introspection answer, GitHub's user, a TokenReview).
    pub mapping: Option<ClaimsMapping>,
    /// Whether a request must carry a token for this provider to judge it.
    /// `false` for providers that read the identity elsewhere
    /// (`upstream_header`): they are asked with an empty token.
    pub needs_token: bool,
}

impl Description {
    /// The generic 401 message.
    pub const DEFAULT_MESSAGE: &'static str =
        "Authentication required. Please provide a valid Bearer token in the Authorization header";

    /// A provider of `type_name` that needs a token, accepts what its name says,
    /// has no mapping and the generic message.
    pub fn new(type_name: impl Into<String>) -> Self {
        let type_name = type_name.into();
        Description {
            accepts: type_name.clone(),
            type_name,
            message: Self::DEFAULT_MESSAGE.to_string(),
            mapping: None,
            needs_token: true,
        }
    }

    /// Sets the 401 message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets what the provider accepts.
    pub fn accepting(mut self, accepts: impl Into<String>) -> Self {
        self.accepts = accepts.into();
        self
    }

    /// Sets the claims mapping that fills attributes.
    pub fn with_mapping(mut self, mapping: ClaimsMapping) -> Self {
        self.mapping = Some(mapping);
        self
    }

    /// Marks a provider that judges requests without a token.
    pub fn without_token(mut self) -> Self {
        self.needs_token = false;
        self
    }
}

/// An authentication provider: validates bearer tokens into principals.
///
/// Implementations must be cheap to call concurrently; anything slow (key sets,
/// remote calls) is cached inside the provider. Everything around a provider
/// (chains, revocation, route policy, the HTTP side) lives in the `tokengate`
/// crate's pipeline, not here.
#[async_trait]
pub trait AuthProvider: Send + Sync + 'static {
    /// Validates `token`. The context never contains the `Authorization` header.
    ///
    /// When `ctx.trace` is on ([`Trace::is_on`]), the provider may record the
    /// checks it made, for `tokengate explain`.
    async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError>;

    /// A cheap, offline look at the token's shape, used by provider chains.
    fn ownership(&self, _token: &str) -> Ownership {
        Ownership::Mine
    }

    /// What this provider is; see [`Description`].
    fn describe(&self) -> Description;

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
