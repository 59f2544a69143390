//! tokengate: pluggable bearer-token authentication.
//!
//! A config file chooses a provider by `provider_config.type`; the provider
//! turns a bearer token into a [`Principal`] or an [`AuthError`] that says why not.
//! Use it as a library (the tower layer in [`layer`]) or as the `tokengate`
//! binary (`check`, `serve`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = tokengate::Config::load("config/oauth2-jwks.yaml".as_ref())?;
//! let provider = config.build(&tokengate::Registry::with_builtins())?;
//! let ctx = tokengate::RequestContext::new("GET", "/v1/models");
//! match provider.validate("eyJ...", &ctx).await {
//!     Ok(p) => println!("{} {:?}", p.principal, p.attributes),
//!     Err(e) => println!("{}: {}", e.code(), e.detail()),
//! }
//! # Ok(()) }
//! ```

pub mod audit;
pub mod chain;
pub mod config;
pub mod dev;
pub mod explain;
pub mod gate;
pub mod guard;
pub mod layer;
pub mod listener;
pub mod path;
pub mod policy;
pub mod redis;
pub mod registry;
pub mod revocation;
pub mod server;

pub use config::{Config, Format, Settings};
pub use layer::{AuthLayer, Authenticated, MaybeAuthenticated};
pub use registry::Registry;
pub use revocation::RevocationStore;
pub use tokengate_api::{
    Attributes, AuthError, AuthProvider, BuildContext, ClaimsMapping, ConfigError, DynProvider, ErrorKind, Ownership,
    Principal, ProviderBuilder, RequestContext,
};
