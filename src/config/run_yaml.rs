//! A Llama Stack / OGX `run.yaml`: its `server.auth` (and `server.tenancy`)
//! read as OGX reads them, and as strictly as tokengate's own format. Only
//! those are expanded: the rest of a run.yaml is OGX's, and may reference
//! variables this process does not have. What may stay unread, and what a
//! key one level off is, is in [`super::lenient`]. A `server.auth` without a
//! provider runs only when the file says so as OGX does.

use serde_json::Value;
use tokengate_api::ConfigError;

use super::lenient::{check_run_yaml_server, check_run_yaml_top, placed, Layout};
use super::{env, parse_settings, Settings};
use crate::pipeline::limits::{Callers, CountBy, LimitRuleConfig, LimitsConfig};

/// The settings of the run.yaml `value`, whose `server.auth` is `auth`.
pub(super) fn settings(
    value: &Value,
    auth: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    // tokengate's own keys anywhere but in `server.auth` would be silently ignored.
    check_run_yaml_top(value)?;
    let server = value.get("server").unwrap_or(&Value::Null);
    check_run_yaml_server(server)?;
    let mut auth = auth.clone();
    let switched_off = provider_switched_off(&auth, lookup);
    if switched_off {
        // OGX: a `type` that expands to nothing turns authentication off, and the rest of
        // the provider section is not expanded (its variables may be unset too).
        if let Some(map) = auth.as_object_mut() {
            map.remove("provider_config");
        }
    }
    let keys: Vec<String> = auth.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let auth = env::expand(auth, "server.auth", lookup)?;
    let layout = Layout::run_yaml();
    let mut settings = parse_settings(auth).map_err(|e| placed(e.within("server.auth"), &layout))?;
    if settings.provider_config.is_none() && settings.providers.is_none() {
        no_provider_is_meant(&settings, &keys, switched_off)?;
    }
    if let Some(tenancy) = server.get("tenancy") {
        if settings.tenancy.is_some() {
            return Err(ConfigError::new(
                "server.auth.tenancy",
                "is set and so is `server.tenancy`; keep one (`server.tenancy`, as OGX)",
            ));
        }
        let tenancy = env::expand(tenancy.clone(), "server.tenancy", lookup)?;
        let tenancy =
            tokengate_api::parse_provider_config(tenancy).map_err(|e| placed(e.within("server.tenancy"), &layout))?;
        settings.tenancy = Some(tenancy);
    }
    if let Some(quota) = server.get("quota") {
        let quota = env::expand(quota.clone(), "server.quota", lookup)?;
        let quota: OgxQuota =
            tokengate_api::parse_provider_config(quota).map_err(|e| placed(e.within("server.quota"), &layout))?;
        let authenticated = settings.provider_config.is_some() || settings.providers.is_some();
        let limits = settings.limits.get_or_insert_with(LimitsConfig::default);
        limits.rules.extend(quota.rules(authenticated)?);
    }
    Ok(settings)
}

/// OGX's `server.quota` (its `QuotaConfig`): requests per client per day.
/// Enforced as two `limits` rules, counted better than OGX counts them:
/// per principal (OGX: per raw token), atomically (OGX reads, then writes),
/// in Redis when `redis` is configured (OGX: one process's SQLite), and
/// anonymous callers by the client address the trusted proxy gives. Only
/// requests that are let in count (OGX counts refused ones too).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OgxQuota {
    /// OGX's store for the counts; tokengate keeps its own (memory, or `redis`).
    #[allow(dead_code)]
    kvstore: Value,
    #[serde(default = "default_anonymous_max")]
    anonymous_max_requests: u64,
    #[serde(default = "default_authenticated_max")]
    authenticated_max_requests: u64,
    #[serde(default = "default_period")]
    period: String,
}

fn default_anonymous_max() -> u64 {
    100
}
fn default_authenticated_max() -> u64 {
    1000
}
fn default_period() -> String {
    "day".to_string()
}

/// The rule names `server.quota` becomes.
pub(crate) const OGX_QUOTA_AUTHENTICATED: &str = "ogx_quota_authenticated";
/// See [`OGX_QUOTA_AUTHENTICATED`].
pub(crate) const OGX_QUOTA_ANONYMOUS: &str = "ogx_quota_anonymous";

impl OgxQuota {
    /// The rules: authenticated callers by principal, anonymous ones by client
    /// address, each per UTC day (OGX's `day`: windows of 86400 s from the
    /// epoch, which are UTC days). Without a provider every caller is
    /// anonymous, as OGX then applies `anonymous_max_requests` to all.
    fn rules(&self, authenticated: bool) -> Result<Vec<LimitRuleConfig>, ConfigError> {
        if self.period != "day" {
            return Err(ConfigError::new(
                "server.quota.period",
                format!(
                    "is `{}`; OGX (and tokengate) know only `day`",
                    self.period.chars().take(40).collect::<String>()
                ),
            ));
        }
        for (field, value) in [
            ("anonymous_max_requests", self.anonymous_max_requests),
            ("authenticated_max_requests", self.authenticated_max_requests),
        ] {
            if value == 0 {
                return Err(ConfigError::new(
                    format!("server.quota.{field}"),
                    "is 0, which would refuse every request; refuse them with route_policy instead",
                ));
            }
        }
        let mut rules = vec![LimitRuleConfig {
            name: OGX_QUOTA_ANONYMOUS.to_string(),
            by: CountBy::ClientIp,
            callers: Some(Callers::Anonymous),
            daily_quota: Some(self.anonymous_max_requests),
            ..Default::default()
        }];
        if authenticated {
            rules.push(LimitRuleConfig {
                name: OGX_QUOTA_AUTHENTICATED.to_string(),
                by: CountBy::Principal,
                callers: Some(Callers::Authenticated),
                daily_quota: Some(self.authenticated_max_requests),
                ..Default::default()
            });
        }
        Ok(rules)
    }
}

/// Whether a run.yaml's `server.auth.provider_config.type` is an `${env…}`
/// reference that expands to nothing: OGX's switch for running without
/// authentication (`type: ${env.AUTH_PROVIDER:+oauth2_token}`). A literal
/// empty, blank or null `type` is not that switch: it stays a config error.
fn provider_switched_off(auth: &Value, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    let Some(Value::String(kind)) = auth.get("provider_config").and_then(|p| p.get("type")) else { return false };
    if !kind.contains("${env.") {
        return false;
    }
    match env::expand(Value::String(kind.clone()), "server.auth.provider_config.type", lookup) {
        Ok(Value::Null) => true,
        Ok(Value::String(s)) => s.is_empty(),
        // An unset `${env.X}` stays an error, reported when the whole section is expanded.
        _ => false,
    }
}

/// A run.yaml without a provider authenticates nobody; that must be what the
/// file says, as OGX reads it: an `${env…}` switch or no `provider_config`
/// at all (not an empty one), and a `route_policy` that refuses something.
/// Every other key of `server.auth`, and of `server`, has been read strictly
/// by then, so a misnamed or misplaced provider is an error of its own.
fn no_provider_is_meant(settings: &Settings, keys: &[String], switched_off: bool) -> Result<(), ConfigError> {
    if !switched_off && keys.iter().any(|k| k == "provider_config" || k == "providers") {
        return Err(ConfigError::new(
            "server.auth.provider_config",
            "is empty: set `type` (oauth2_token, custom, github_token, …) and its fields",
        ));
    }
    if settings.route_policy.as_ref().is_none_or(|p| p.is_permit_all()) {
        let why = if switched_off { "its `type` expands to nothing" } else { "it has no `provider_config`" };
        return Err(ConfigError::new(
            "server.auth.provider_config",
            format!(
                "authentication is off ({why}) and no route_policy refuses anything, so tokengate would let every \
                 request in; configure the provider (set its variable), or add a route_policy"
            ),
        ));
    }
    Ok(())
}
