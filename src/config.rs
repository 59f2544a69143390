//! Config files: YAML (default), JSON or TOML by extension; tokengate's own
//! shape, a pasted Llama Stack `server.auth` section, or a whole Llama Stack /
//! OGX `run.yaml` (only `server.auth` is read).

use serde::Deserialize;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokengate_api::{BuildContext, ConfigError, DynProvider};

use crate::registry::Registry;

/// A parsed config file, providers not yet built.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: Option<PathBuf>,
    pub settings: Settings,
    /// Whether the file was a Llama Stack / OGX `run.yaml`, whose defaults then apply.
    pub from_llama_stack: bool,
}

/// The top level of a tokengate config file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// One provider, Llama Stack style: `{type: oauth2_token, ...}`.
    #[serde(default)]
    pub provider_config: Option<Value>,
    /// Several providers tried in order (each `{type: ..., ...}`); see README "Provider chains".
    #[serde(default)]
    pub providers: Option<Vec<Value>>,
    /// Address `tokengate serve` listens on (default 127.0.0.1:8080; `--listen` wins).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The `realm` in `WWW-Authenticate` (default "tokengate").
    #[serde(default)]
    pub realm: Option<String>,
    /// Paths answered without authentication by the layer (`/health`, `/version`, `prefix*`).
    #[serde(default)]
    pub open_paths: Vec<String>,
    /// Llama Stack's `server.auth.access_policy`: accepted so a pasted section loads; not enforced.
    #[serde(default)]
    pub access_policy: Option<Value>,
    /// Llama Stack's `server.auth.route_policy`, and tokengate's route rules.
    #[serde(default)]
    pub route_policy: Option<Value>,
    /// Revoked JWT `jti`s and token hashes, from a file that reloads on change.
    #[serde(default)]
    pub revocation: Option<Value>,
    /// One JSON line per decision, to a file or standard output.
    #[serde(default)]
    pub audit: Option<Value>,
    /// State shared by replicas (revocation list, remote-result cache): `{url, key_prefix}`.
    #[serde(default)]
    pub redis: Option<Value>,
}

/// Formats a config file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Toml,
}

impl Format {
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
            Some("json") => Format::Json,
            Some("toml") => Format::Toml,
            _ => Format::Yaml,
        }
    }
}

impl Config {
    /// Reads and parses `path`; every error names the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read the config file: {e}")).in_file(&display))?;
        let mut config = Config::parse(&text, Format::from_path(path)).map_err(|e| e.in_file(&display))?;
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses config text in the given format.
    pub fn parse(text: &str, format: Format) -> Result<Config, ConfigError> {
        let value: Value = match format {
            Format::Json => serde_json::from_str(text).map_err(|e| ConfigError::new("", format!("invalid JSON: {e}")))?,
            Format::Toml => {
                let t: toml::Value = toml::from_str(text).map_err(|e| ConfigError::new("", format!("invalid TOML: {e}")))?;
                serde_json::to_value(t).map_err(|e| ConfigError::new("", format!("unsupported TOML value: {e}")))?
            }
            Format::Yaml => {
                serde_yaml::from_str(text).map_err(|e| ConfigError::new("", format!("invalid YAML: {e}")))?
            }
        };
        Config::from_value(value)
    }

    /// Interprets an already parsed document.
    pub fn from_value(value: Value) -> Result<Config, ConfigError> {
        if !value.is_object() {
            return Err(ConfigError::new("", "the config must be a mapping with `provider_config` (or `providers`)"));
        }
        // A Llama Stack / OGX run.yaml: its `server.auth` is ours, the rest is not our business.
        if let Some(auth) = value.get("server").and_then(|s| s.get("auth")) {
            let settings = parse_settings(auth.clone()).map_err(|e| e.within("server.auth"))?;
            return Config { file: None, settings, from_llama_stack: true }.validated("server.auth.");
        }
        if value.get("server").is_some() {
            return Err(ConfigError::new(
                "server",
                "this looks like a Llama Stack run.yaml without `server.auth`: add `server.auth.provider_config`",
            ));
        }
        let settings = parse_settings(value)?;
        Config { file: None, settings, from_llama_stack: false }.validated("")
    }

    fn validated(self, prefix: &str) -> Result<Config, ConfigError> {
        match (&self.settings.provider_config, &self.settings.providers) {
            (None, None) => Err(ConfigError::new(
                format!("{prefix}provider_config"),
                "missing: set `provider_config` with a `type` (oauth2_token, custom, github_token, …) or a `providers` list",
            )),
            (Some(_), Some(_)) => Err(ConfigError::new(
                format!("{prefix}providers"),
                "set either `provider_config` (one provider) or `providers` (a chain), not both",
            )),
            (_, Some(list)) if list.is_empty() => {
                Err(ConfigError::new(format!("{prefix}providers"), "the list is empty: name at least one provider"))
            }
            _ => Ok(self),
        }
    }

    /// The build context for providers: relative paths resolve against the file's directory.
    pub fn build_context(&self) -> BuildContext {
        BuildContext {
            base_dir: self.file.as_ref().and_then(|f| f.parent().map(Path::to_path_buf)),
            llama_stack_defaults: self.from_llama_stack,
        }
    }

    /// Builds the configured provider (a chain when `providers` lists several).
    pub fn build(&self, registry: &Registry) -> Result<DynProvider, ConfigError> {
        let ctx = self.build_context();
        let prefix = if self.from_llama_stack { "server.auth." } else { "" };
        let file = self.file.as_ref().map(|f| f.display().to_string());
        let result = if let Some(single) = &self.settings.provider_config {
            registry.build(single, &ctx).map_err(|e| e.within(&format!("{prefix}provider_config")))
        } else {
            let list = self.settings.providers.as_deref().unwrap_or_default();
            let mut providers = Vec::with_capacity(list.len());
            for (i, section) in list.iter().enumerate() {
                providers.push(registry.build(section, &ctx).map_err(|e| e.within(&format!("{prefix}providers[{i}]")))?);
            }
            Ok(crate::chain::Chain::new(providers).into_dyn())
        };
        result.map_err(|e| match &file {
            Some(f) => e.in_file(f),
            None => e,
        })
    }
}

fn parse_settings(value: Value) -> Result<Settings, ConfigError> {
    tokengate_api::parse_provider_config(value).map_err(|e| {
        if e.message.starts_with("unknown field") {
            ConfigError::new(e.field, format!("{} (tokengate reads only its own fields here)", e.message))
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_stack_run_yaml_reads_only_server_auth() {
        let yaml = r#"
version: 2
image_name: demo
apis: [inference]
providers: {inference: []}
server:
  port: 8321
  auth:
    provider_config:
      type: github_token
"#;
        let c = Config::parse(yaml, Format::Yaml).unwrap();
        assert!(c.from_llama_stack);
        assert_eq!(c.settings.provider_config.unwrap()["type"], "github_token");
    }

    #[test]
    fn unknown_top_level_field_is_named() {
        let e = Config::parse("provider_config: {type: custom}\nlisten_addr: x\n", Format::Yaml).unwrap_err();
        assert_eq!(e.field, "listen_addr");
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn missing_provider_is_an_error() {
        let e = Config::parse("listen: 127.0.0.1:9000\n", Format::Yaml).unwrap_err();
        assert_eq!(e.field, "provider_config");
    }

    #[test]
    fn toml_and_json() {
        let t = Config::parse("[provider_config]\ntype = \"custom\"\nendpoint = \"http://x\"\n", Format::Toml).unwrap();
        assert_eq!(t.settings.provider_config.unwrap()["type"], "custom");
        let j = Config::parse(r#"{"provider_config": {"type": "custom"}}"#, Format::Json).unwrap();
        assert!(!j.from_llama_stack);
    }
}
