//! tokengate: pluggable bearer-token authentication.
//!
//! A config file chooses a provider by `provider_config.type`; the
//! [`Pipeline`] it builds turns a bearer token into a [`Principal`] or an
//! [`AuthError`] that says why not, with a typed [`Reason`]. Use it as a
//! library (the tower layer, [`AuthLayer`]) or as the `tokengate` binary
//! (`check`, `explain`, `serve`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = tokengate::Config::load("config/oauth2-jwks.yaml".as_ref())?;
//! let pipeline = config.build(&tokengate::Registry::with_builtins())?;
//! let ctx = tokengate::RequestContext::new("GET", "/v1/models");
//! let decision = pipeline.decide("eyJ...", &ctx).await;
//! match decision.outcome {
//!     Ok(p) => println!("{} {:?}", p.principal, p.attributes),
//!     Err(e) => println!("{} ({}): {}", e.code(), e.reason(), e.detail()),
//! }
//! # Ok(()) }
//! ```
//!
//! The modules are the stages, each importing only those listed before it:
//! [`path`] (the one path canonicalizer), [`pipeline`] (decide: chain,
//! revocation, route policy), [`ops`] (decision log, metrics, audit, Redis),
//! [`config`] (text → [`Config`] → [`Pipeline`]), [`http`] (layer, server),
//! then [`explain`] and [`dev`].

#![warn(missing_docs)]

pub mod config;
#[cfg(feature = "server")]
pub mod dev;
pub mod explain;
pub mod http;
pub mod ops;
pub mod path;
pub mod pipeline;

pub use config::{Config, Format, Registry, Settings};
pub use http::admission::{Admission, RequestParts};
pub use http::extract::{Authenticated, MaybeAuthenticated};
pub use http::gate::Gate;
pub use http::layer::AuthLayer;
pub use pipeline::revocation::RevocationStore;
pub use pipeline::{Decision, Pipeline};
pub use tokengate_api::{
    Attributes, AuthError, AuthProvider, BuildContext, ClaimsMapping, ConfigError, Description, DynProvider, ErrorKind,
    Ownership, Principal, ProviderBuilder, Reason, RequestContext,
};
