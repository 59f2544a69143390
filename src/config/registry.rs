//! The factory: `provider_config.type` → a registered [`ProviderBuilder`].

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokengate_api::{BuildContext, ConfigError, DynProvider, ProviderBuilder};

/// Provider builders by `type` name. Users add their own with [`Registry::register`].
#[derive(Clone)]
pub struct Registry {
    builders: BTreeMap<&'static str, Arc<dyn ProviderBuilder>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::with_builtins()
    }
}

impl Registry {
    /// A registry with no provider types at all.
    pub fn empty() -> Self {
        Registry { builders: BTreeMap::new() }
    }

    /// Every built-in type: `oauth2_token`, `custom`, `github_token`, `api_key`
    /// (alias `local_api_key`), `kubernetes`, `upstream_header`.
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        r.register(tokengate_oauth2::OAuth2Builder);
        r.register(tokengate_custom::CustomBuilder);
        r.register(tokengate_github::GitHubBuilder);
        r.register(tokengate_api_key::ApiKeyBuilder);
        r.register(tokengate_api_key::LocalApiKeyBuilder);
        r.register(tokengate_kubernetes::KubernetesBuilder);
        r.register(tokengate_upstream_header::UpstreamHeaderBuilder);
        r
    }

    /// Registers (or replaces) the builder for its `type` name.
    pub fn register(&mut self, builder: impl ProviderBuilder) -> &mut Self {
        self.builders.insert(builder.type_name(), Arc::new(builder));
        self
    }

    /// The registered `type` names, sorted.
    pub fn type_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.builders.keys().copied()
    }

    /// Builds one provider from its section (`{type: ..., ...}`).
    pub fn build(&self, section: &Value, ctx: &BuildContext) -> Result<DynProvider, ConfigError> {
        let allowed = || self.type_names().collect::<Vec<_>>().join(", ");
        let Some(object) = section.as_object() else {
            return Err(ConfigError::new("", "must be a mapping with a `type` field"));
        };
        let type_name = match object.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Null) => {
                return Err(ConfigError::new(
                    "type",
                    format!(
                        "is empty (an `${{env.…}}` that expands to nothing turns authentication off in OGX; \
                         tokengate always needs a provider), one of: {}",
                        allowed()
                    ),
                ))
            }
            Some(_) => return Err(ConfigError::new("type", format!("must be a string, one of: {}", allowed()))),
            None => return Err(ConfigError::new("type", format!("missing; one of: {}", allowed()))),
        };
        let Some(builder) = self.builders.get(type_name) else {
            return Err(ConfigError::new(
                "type",
                format!("unknown provider type `{type_name}`; one of: {}", allowed()),
            ));
        };
        let mut rest = object.clone();
        rest.remove("type");
        // Each provider gets its own scope in the shared result store (see `tokengate_kit::for_section`).
        builder.build(Value::Object(rest), &tokengate_kit::for_section(ctx, type_name, section))
    }
}
