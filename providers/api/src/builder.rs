use crate::shared::SharedResults;
use crate::shared_keys::SharedKeys;
use crate::{ConfigError, DynProvider};
use serde::de::DeserializeOwned;
use std::path::PathBuf;

/// What a builder may need beyond its own config section.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Directory of the config file, for resolving relative paths (`tls_cafile`, key files).
    pub base_dir: Option<PathBuf>,
    /// True when the config came from a Llama Stack / OGX `run.yaml`, whose defaults then apply.
    pub llama_stack_defaults: bool,
    /// Where remote results are shared with other replicas (Redis, when configured);
    /// providers opt in with `tokengate_kit::RemoteResultCache::with_shared`.
    pub shared_results: Option<SharedResults>,
    /// This provider's scope in `shared_results`, set per provider by the
    /// registry (`tokengate_kit::for_section`, a hash of the provider's type
    /// and section); no scope, no sharing.
    pub shared_scope: Option<String>,
    /// Where API keys shared by every replica live (Redis, when configured);
    /// the `api_key` provider reads them with `keys_from: redis`, and adds
    /// its usage there with `usage_store: redis`.
    pub shared_keys: Option<SharedKeys>,
}

impl BuildContext {
    /// Resolves a path from the config relative to the config file's directory.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// Builds a provider from its config section; registered under a `type` name.
///
/// A user's provider crate implements this (depending only on `tokengate-api`)
/// and registers it with `tokengate::Registry::register`; its `type` is then
/// chosen by config exactly like a built-in one.
pub trait ProviderBuilder: Send + Sync + 'static {
    /// The value of `provider_config.type` that selects this builder.
    fn type_name(&self) -> &'static str;

    /// Builds the provider from its section (the `type` key already removed).
    fn build(&self, config: serde_json::Value, ctx: &BuildContext) -> Result<DynProvider, ConfigError>;
}

/// Deserializes a provider section, naming the exact field on failure.
///
/// Use `#[serde(deny_unknown_fields)]` on `T` so typos are errors, not silence.
pub fn parse_provider_config<T: DeserializeOwned>(config: serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ConfigError::new(field, e.into_inner().to_string())
    })
}
