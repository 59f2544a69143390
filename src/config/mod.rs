//! Config files: YAML (default), JSON or TOML by extension; tokengate's own
//! shape, a pasted Llama Stack `server.auth` section, or a whole Llama Stack /
//! OGX `run.yaml` (only `server.auth` is read).
//!
//! Owns the way from text to a running [`Pipeline`]: parsing ([`Config`],
//! [`Settings`]), the provider factory ([`registry`]), the `forward_auth`
//! section, and [`Config::build`], which assembles the stages (with the
//! start-up lints each stage needs, which is most of this file's length).
//! Reading a run.yaml as OGX does is in `run_yaml`; what it may leave unread,
//! and the errors for a key written where tokengate does not read it, in `lenient`.
//! May import: [`crate::pipeline`], [`crate::ops`] and [`crate::path`].

use serde::Deserialize;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
#[cfg(feature = "redis")]
use std::sync::Arc;
use tokengate_api::{BuildContext, ConfigError, DynProvider};

use crate::ops::audit::{AuditConfig, AuditLog};
use crate::ops::redis::RedisConfig;
#[cfg(feature = "redis")]
use crate::ops::redis::RedisStore;
use crate::pipeline::limits::{Limits, LimitsConfig};
use crate::pipeline::policy::RoutePolicy;
use crate::pipeline::revocation::{Revocation, RevocationConfig};
use crate::pipeline::tenancy::{Tenancy, TenancyConfig};
use crate::pipeline::Pipeline;
use lenient::{placed, Layout};

pub mod access_policy;
pub mod env;
pub mod forward_auth;
mod lenient;
pub mod registry;
mod run_yaml;

pub use forward_auth::{ForwardAuthConfig, Proxy};
pub use registry::Registry;

/// A parsed config file, providers not yet built.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, when it was: relative paths in it resolve against its directory.
    pub file: Option<PathBuf>,
    /// What the file says (its top level).
    pub settings: Settings,
    /// Whether the file was a Llama Stack / OGX `run.yaml`, whose defaults then apply.
    pub from_llama_stack: bool,
}

/// The top level of a tokengate config file.
///
/// `Debug` redacts secrets in the provider sections (see [`redacted`]).
#[derive(Clone, Deserialize, Default)]
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
    /// Where `tokengate serve` answers `/healthz`, `/readyz` and `/metrics`
    /// instead of on `listen` (`--admin-listen` wins). With it, every path on
    /// `listen` is a decision, so a proxy that forwards the client's own path
    /// (Envoy `ext_authz` without `path_prefix`) can never hit them.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// How `tokengate serve` reads the original request from its proxy, and
    /// its connection limits (see [`ForwardAuthConfig`]).
    #[serde(default)]
    pub forward_auth: Option<ForwardAuthConfig>,
    /// The `realm` in `WWW-Authenticate` (default "tokengate").
    #[serde(default)]
    pub realm: Option<String>,
    /// Paths answered without authentication by the layer (`/health`, `/version`, `prefix*`).
    #[serde(default)]
    pub open_paths: Vec<String>,
    /// Llama Stack's `server.auth.access_policy`: accepted so a pasted section loads; not enforced.
    #[serde(default)]
    pub access_policy: Option<Value>,
    /// Route rules checked after authentication: tokengate's `{default, rules}`
    /// or Llama Stack's `server.auth.route_policy` list (see [`crate::pipeline::policy`]).
    #[serde(default)]
    pub route_policy: Option<RoutePolicy>,
    /// Revoked JWT `jti`s and token hashes, from a file that reloads on change (see [`crate::pipeline::revocation`]).
    #[serde(default)]
    pub revocation: Option<RevocationConfig>,
    /// One JSON line per decision, to a file or standard output (see [`crate::ops::audit`]).
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// State shared by replicas (revocation list, remote-result cache) in Redis (see [`crate::ops::redis`]).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Tenancy mode (see [`crate::pipeline::tenancy`]); in a run.yaml, `server.tenancy`.
    #[serde(default)]
    pub tenancy: Option<TenancyConfig>,
    /// Usage limits: rates and calendar quotas (see [`crate::pipeline::limits`]);
    /// a run.yaml's `server.quota` adds its rules here.
    #[serde(default)]
    pub limits: Option<LimitsConfig>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("provider_config", &self.provider_config.as_ref().map(redacted))
            .field("providers", &self.providers.as_ref().map(|list| list.iter().map(redacted).collect::<Vec<_>>()))
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("forward_auth", &self.forward_auth)
            .field("realm", &self.realm)
            .field("open_paths", &self.open_paths)
            .field("access_policy", &self.access_policy)
            .field("route_policy", &self.route_policy)
            .field("revocation", &self.revocation)
            .field("audit", &self.audit)
            .field("redis", &self.redis)
            .field("tenancy", &self.tenancy)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A copy of a config section fit for logs and `{:?}`: string values of
/// members whose name mentions a secret, token or password become
/// `"<redacted>"`, and passwords in URLs are masked.
pub fn redacted(value: &Value) -> Value {
    fn sensitive(name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        ["secret", "token", "password", "passwd", "credential", "private", "api_keys"].iter().any(|s| name.contains(s))
    }
    fn mask_url(text: &str) -> Option<String> {
        let mut url = url::Url::parse(text).ok()?;
        if url.password().is_none() && url.username().is_empty() {
            return None;
        }
        let _ = url.set_username("<redacted>");
        let _ = url.set_password(None);
        Some(url.to_string())
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = match v {
                        Value::String(_) if sensitive(k) => Value::String("<redacted>".into()),
                        // `api_keys: [plaintext, …]` (OGX's local_api_key): every item.
                        Value::Array(items) if sensitive(k) => {
                            Value::Array(items.iter().map(|_| Value::String("<redacted>".into())).collect())
                        }
                        other => redacted(other),
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        Value::String(text) => mask_url(text).map(Value::String).unwrap_or_else(|| value.clone()),
        other => other.clone(),
    }
}

/// Formats a config file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// YAML, also for any extension other than `.json` and `.toml`.
    Yaml,
    /// JSON (`.json`).
    Json,
    /// TOML (`.toml`).
    Toml,
}

impl Format {
    /// The format `path`'s extension names (case-insensitive); YAML when it names none of the others.
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
        // A key written twice in one mapping is refused (`UniqueKeys`): read into a
        // plain value the last copy would win, and the restrictions of the first (a
        // whole `server.auth`, a `route_policy`) would be dropped. TOML refuses them itself.
        let value: Value = match format {
            Format::Json => serde_json::from_str::<tokengate_api::UniqueKeys>(text)
                .map(|v| v.0)
                .map_err(|e| ConfigError::new("", format!("invalid JSON: {e}")))?,
            Format::Toml => {
                let t: toml::Value =
                    toml::from_str(text).map_err(|e| ConfigError::new("", format!("invalid TOML: {e}")))?;
                serde_json::to_value(t).map_err(|e| ConfigError::new("", format!("unsupported TOML value: {e}")))?
            }
            Format::Yaml => yaml_serde::from_str::<tokengate_api::UniqueKeys>(text)
                .map(|v| v.0)
                .map_err(|e| ConfigError::new("", format!("invalid YAML: {e}")))?,
        };
        Config::from_value(value)
    }

    /// Interprets an already parsed document.
    pub fn from_value(value: Value) -> Result<Config, ConfigError> {
        if !value.is_object() {
            return Err(ConfigError::new("", "the config must be a mapping with `provider_config` (or `providers`)"));
        }
        // A Llama Stack / OGX run.yaml: its `server.auth` is ours, the rest is not our business.
        let lookup = |name: &str| std::env::var(name).ok();
        if let Some(auth) = value.get("server").and_then(|s| s.get("auth")) {
            let settings = run_yaml::settings(&value, auth, &lookup)?;
            return Config { file: None, settings, from_llama_stack: true }.validated("server.auth.");
        }
        if value.get("server").is_some() {
            return Err(ConfigError::new(
                "server",
                "this looks like a Llama Stack run.yaml without `server.auth`: add `server.auth.provider_config`",
            ));
        }
        let settings = parse_settings(env::expand(value, "", &lookup)?).map_err(|e| placed(e, &Layout::own()))?;
        Config { file: None, settings, from_llama_stack: false }.validated("")
    }

    fn validated(self, prefix: &str) -> Result<Config, ConfigError> {
        if let Some(policy) = &self.settings.access_policy {
            let at = format!("{prefix}access_policy");
            access_policy::check(policy, &at)?;
            // OGX ignores other keys in it, so a tokengate setting written there would go unread.
            lenient::check_opaque_section(policy, &at, &Layout::for_prefix(prefix))?;
        }
        if let Some(Err((field, message))) = self.settings.tenancy.as_ref().map(TenancyConfig::compile) {
            return Err(ConfigError::new(format!("{}.{field}", self.tenancy_section()), message));
        }
        match (&self.settings.provider_config, &self.settings.providers) {
            // OGX: `provider_config` is optional, "if only using route_policy".
            (None, None) if self.from_llama_stack => Ok(self),
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

    /// Paths answered without authentication: `open_paths`, plus in a run.yaml
    /// OGX's public routes (`/v1/health`, `/v1/version`), which OGX itself
    /// never authenticates.
    pub fn open_paths(&self) -> Vec<String> {
        let mut paths = self.settings.open_paths.clone();
        if self.from_llama_stack {
            for public in OGX_PUBLIC_ROUTES {
                if !paths.iter().any(|p| p == public) {
                    paths.push(public.to_string());
                }
            }
        }
        paths
    }

    /// The build context for providers: relative paths resolve against the file's directory.
    pub fn build_context(&self) -> BuildContext {
        BuildContext {
            base_dir: self.file.as_ref().and_then(|f| f.parent().map(Path::to_path_buf)),
            llama_stack_defaults: self.from_llama_stack,
            ..Default::default()
        }
    }

    /// Builds the pipeline: the configured provider (a chain when
    /// `providers` lists several), then revocation, then route policy (see
    /// [`crate::pipeline`]).
    pub fn build(&self, registry: &Registry) -> Result<Pipeline, ConfigError> {
        // The revocation file first: a bad one fails before providers start background work.
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut revocation = self.revocation()?;
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut limits = self.limits()?;
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut ctx = self.build_context();
        #[cfg(not(feature = "redis"))]
        if self.settings.redis.is_some() {
            return Err(self.located(ConfigError::new(
                format!("{}redis", self.field_prefix()),
                "this tokengate was built without Redis support (cargo feature `redis`)",
            )));
        }
        // One store per build, so shared results and revocation checks share a connection and its health.
        #[cfg(feature = "redis")]
        if let (Some(store), Some(redis)) = (&self.redis_store()?, &self.settings.redis) {
            if store.shares_results() {
                ctx.shared_results = Some(store.shared_results());
            }
            // API keys and their usage for `keys_from: redis` / `usage_store: redis`; loaded only when asked.
            ctx.shared_keys = Some(crate::ops::redis::RedisKeyStore::new(store.clone(), redis).shared_keys());
            // With Redis, revocations there count even without a local file,
            // read from this replica's copy of them (it starts loading now).
            let local = revocation.unwrap_or_else(Revocation::without_file);
            let mirror = crate::ops::redis::RevocationMirror::new(store.clone(), redis);
            let shared = local.with_shared_store(mirror, redis.on_store_error);
            revocation = Some(match redis.max_staleness() {
                Some(max) => shared.with_max_staleness(max),
                None => shared,
            });
            // Limits count in Redis, one script per decision, for every replica at once.
            limits = limits.map(|l| l.with_shared_store(Arc::new(crate::ops::redis::RedisLimits::new(store.clone()))));
        }
        let mut pipeline = Pipeline::new(self.build_members_in(registry, &ctx)?);
        if pipeline.is_anonymous() {
            warn_once(match &self.settings.route_policy {
                Some(_) => "`server.auth` configures no provider: authentication is OFF, and route_policy alone \
                            judges requests (rules with conditions never match without a user)"
                    .to_string(),
                None => "`server.auth` configures no provider and no route_policy: authentication is OFF and \
                         every request is let in"
                    .to_string(),
            });
        }
        if let Some(tenancy) = &self.settings.tenancy {
            // Checked in `validated`.
            if let Ok(tenancy) = tenancy.compile() {
                if tenancy == Tenancy::Multi {
                    self.check_tenant_sources(&pipeline)?;
                }
                pipeline = pipeline.with_tenancy(tenancy);
            }
        }
        if self
            .settings
            .access_policy
            .as_ref()
            .is_some_and(|p| !p.is_null() && p.as_array().is_none_or(|a| !a.is_empty()))
        {
            // Resource rules need the resource (its owner, its type), which a gateway never sees.
            warn_once(format!(
                "`{}access_policy` is not enforced by tokengate: it judges resources, which only OGX sees; \
                 keep it in OGX's run.yaml (OGX with `upstream_header` behind tokengate enforces it) and use \
                 `route_policy` for what a gateway can judge",
                self.field_prefix()
            ));
        }
        if let Some(policy) = &self.settings.route_policy {
            if policy.is_permit_all() && policy.rule_count() > 0 {
                // First match wins and the default permits: permit rules without a
                // later forbid rule change nothing, which is surely not what was meant.
                warn_once(
                    "route_policy permits every request: with `default: permit`, only `forbid` rules can refuse; \
                     add forbid rules (e.g. `forbid: {attribute: roles, none_of: [admin]}`) or use `default: forbid`"
                        .to_string(),
                );
            }
            policy.lint().into_iter().for_each(warn_once);
            for member in pipeline.members() {
                let Some(mapping) = &member.description().mapping else { continue };
                policy.identifier_warnings(mapping, member.type_name()).into_iter().for_each(warn_once);
            }
            pipeline = pipeline.with_route_policy(policy.clone());
        }
        if let Some(revocation) = revocation {
            pipeline = pipeline.with_revocation(revocation);
        }
        if let Some(limits) = limits {
            pipeline = pipeline.with_limits(limits);
        }
        Ok(pipeline)
    }

    /// Where the tenancy settings are in this config's file.
    fn tenancy_section(&self) -> &'static str {
        if self.from_llama_stack {
            "server.tenancy"
        } else {
            "tenancy"
        }
    }

    /// `multi` needs a provider that can name a tenant: refused without any
    /// provider (nobody could ever be let in with a tenant, and anonymous
    /// requests would carry none), and a WARN when no built-in member is told
    /// where to find one (a provider of one's own may set it itself).
    fn check_tenant_sources(&self, pipeline: &Pipeline) -> Result<(), ConfigError> {
        let at = format!("{}.mode", self.tenancy_section());
        if pipeline.is_anonymous() {
            return Err(ConfigError::new(at, "is `multi`, but no provider is configured to resolve a tenant"));
        }
        let names_a_tenant = |section: &&Value| {
            ["tenant_claim", "tenant_field", "tenant_header"]
                .iter()
                .any(|k| section.get(*k).is_some_and(|v| !v.is_null()))
        };
        if !self.member_sections().iter().any(names_a_tenant) {
            warn_once(format!(
                "`{at}` is `multi`, but no provider sets tenant_claim, tenant_field or tenant_header: every \
                 request is refused unless its provider sets a tenant itself"
            ));
        }
        Ok(())
    }

    fn build_members_in(&self, registry: &Registry, ctx: &BuildContext) -> Result<Vec<DynProvider>, ConfigError> {
        let prefix = self.field_prefix();
        // As strict in a run.yaml as in tokengate's own format: every key OGX has in a provider's
        // section is one tokengate reads, and a key one level off is named with where it belongs.
        let build = |section: &Value, at: String| {
            registry
                .build(section, ctx)
                .map_err(|e| placed(e.within(&at), &Layout::for_prefix(prefix).with_provider(&at)))
        };
        let result = if let Some(single) = &self.settings.provider_config {
            build(single, format!("{prefix}provider_config")).map(|p| vec![p])
        } else {
            let list = self.settings.providers.as_deref().unwrap_or_default();
            let mut providers = Vec::with_capacity(list.len());
            for (i, section) in list.iter().enumerate() {
                providers.push(build(section, format!("{prefix}providers[{i}]"))?);
            }
            Ok(providers)
        };
        result.map_err(|e| self.located(e))
    }

    /// The config sections of [`Config::build_members`], in the same order.
    pub fn member_sections(&self) -> Vec<&Value> {
        match &self.settings.provider_config {
            Some(single) => vec![single],
            None => self.settings.providers.iter().flatten().collect(),
        }
    }

    /// The revocation checker, its file loaded now; `None` without `revocation:`.
    pub fn revocation(&self) -> Result<Option<Revocation>, ConfigError> {
        let Some(cfg) = &self.settings.revocation else { return Ok(None) };
        let base = self.build_context().base_dir;
        Revocation::from_config(cfg, base.as_deref())
            .map(Some)
            .map_err(|m| self.located(ConfigError::new(format!("{}revocation.file", self.field_prefix()), m)))
    }

    /// The limits stage, its rules compiled now (without its shared store);
    /// `None` without `limits:` (or a run.yaml's `server.quota`).
    pub fn limits(&self) -> Result<Option<Limits>, ConfigError> {
        let Some(cfg) = &self.settings.limits else { return Ok(None) };
        let limits =
            Limits::from_config(cfg).map_err(|e| self.located(e.within(&format!("{}limits", self.field_prefix()))))?;
        let proxy = self.settings.forward_auth.as_ref().map(|f| f.proxy).unwrap_or_default();
        if limits.counts_client_ip() && proxy == Proxy::Auto {
            warn_once(format!(
                "a limits rule counts by client IP, but `{}forward_auth.proxy` is `auto`: `tokengate serve` then \
                 knows no client address it can trust, and refuses (500) the requests such a rule counts; set it \
                 to the proxy in front (nginx, traefik, caddy, envoy). The tower layer counts the TCP peer.",
                self.field_prefix()
            ));
        }
        Ok(Some(limits))
    }

    /// The Redis store for shared state, not yet connected (it connects on
    /// first use, so an unreachable Redis delays and fails nothing); `None` without `redis:`.
    #[cfg(feature = "redis")]
    pub fn redis_store(&self) -> Result<Option<Arc<RedisStore>>, ConfigError> {
        let Some(cfg) = &self.settings.redis else { return Ok(None) };
        let base = self.build_context().base_dir;
        RedisStore::new(cfg, base.as_deref())
            .map(|s| Some(Arc::new(s)))
            .map_err(|e| self.located(e.within(&format!("{}redis", self.field_prefix()))))
    }

    /// The audit log, its output opened now; `None` without `audit:`.
    pub fn audit_log(&self) -> Result<Option<AuditLog>, ConfigError> {
        let Some(cfg) = &self.settings.audit else { return Ok(None) };
        let base = self.build_context().base_dir;
        AuditLog::from_config(cfg, base.as_deref())
            .map(Some)
            .map_err(|e| self.located(e.within(self.field_prefix().trim_end_matches('.'))))
    }

    fn field_prefix(&self) -> &'static str {
        if self.from_llama_stack {
            "server.auth."
        } else {
            ""
        }
    }

    /// Names the file in `e`, when there is one.
    fn located(&self, e: ConfigError) -> ConfigError {
        match &self.file {
            Some(f) => e.in_file(f.display().to_string()),
            None => e,
        }
    }
}

/// A start-up warning, once per process: configs are built again by
/// `explain` and reloads, and the same warning each time is noise.
pub(crate) fn warn_once(message: String) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if !warned.contains(&message) {
        tracing::warn!("{message}");
        warned.push(message);
    }
}

/// The routes OGX answers without authentication.
pub const OGX_PUBLIC_ROUTES: &[&str] = &["/v1/health", "/v1/version"];

pub(super) fn parse_settings(value: Value) -> Result<Settings, ConfigError> {
    tokengate_api::parse_provider_config(value).map_err(|e| {
        if e.message.starts_with("unknown field") {
            ConfigError::new(e.field, format!("{} (tokengate reads only its own fields here)", e.message))
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests;
