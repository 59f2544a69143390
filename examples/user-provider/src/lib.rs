//! A user's own provider type, chosen by config exactly like a built-in one:
//!
//! ```yaml
//! provider_config:
//!   type: shared_secret
//!   secret: "a-long-random-value-shared-with-one-service"
//!   principal: billing-service
//!   attributes: {roles: [service]}
//! ```
//!
//! The crate depends only on `tokengate-api`. The application registers it:
//! `registry.register(SharedSecretBuilder)`, then builds from config as usual.

#![warn(missing_docs)]

use async_trait::async_trait;
use serde::Deserialize;
use tokengate_api::Description;
use tokengate_api::{
    parse_provider_config, Attributes, AuthError, AuthProvider, BuildContext, ConfigError, DynProvider, Principal,
    ProviderBuilder, RequestContext, Secret,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedSecretConfig {
    secret: Secret,
    principal: String,
    #[serde(default)]
    attributes: Attributes,
}

/// Accepts exactly one pre-shared bearer secret.
pub struct SharedSecretProvider {
    config: SharedSecretConfig,
}

#[async_trait]
impl AuthProvider for SharedSecretProvider {
    async fn validate(&self, token: &str, _ctx: &RequestContext) -> Result<Principal, AuthError> {
        // Constant time, so response timing does not reveal how much of a guess was right.
        if self.config.secret.ct_eq(token) {
            Ok(Principal::new(&self.config.principal).with_attributes(self.config.attributes.clone()))
        } else {
            Err(AuthError::invalid_token("the shared secret does not match"))
        }
    }

    fn describe(&self) -> Description {
        Description::new("shared_secret").with_message(format!(
            "Authentication required. Please provide the shared secret issued to {} as a Bearer token",
            self.config.principal
        ))
    }
}

/// Registers `type: shared_secret`.
pub struct SharedSecretBuilder;

impl ProviderBuilder for SharedSecretBuilder {
    fn type_name(&self) -> &'static str {
        "shared_secret"
    }

    fn build(&self, config: serde_json::Value, _ctx: &BuildContext) -> Result<DynProvider, ConfigError> {
        let config: SharedSecretConfig = parse_provider_config(config)?;
        if config.secret.expose().len() < 32 {
            return Err(ConfigError::new(
                "secret",
                "must be at least 32 characters; generate one with `openssl rand -base64 32`",
            ));
        }
        Ok(std::sync::Arc::new(SharedSecretProvider { config }))
    }
}
