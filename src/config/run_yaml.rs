//! A Llama Stack / OGX `run.yaml`: its `server.auth` (and `server.tenancy`)
//! read as OGX reads them. Only those are expanded: the rest of a run.yaml is
//! OGX's, and may reference variables this process does not have. Unknown
//! keys are dropped with a warning ([`super::lenient`]); a `server.auth`
//! without a provider runs only when that is surely what was meant.

use serde_json::Value;
use tokengate_api::ConfigError;

use super::lenient::lenient;
use super::{env, parse_settings, Settings};

/// The settings of the run.yaml `value`, whose `server.auth` is `auth`.
pub(super) fn settings(
    value: &Value,
    auth: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    // tokengate's own keys next to a run.yaml's `server.auth` would be silently ignored.
    if let Some(key) = TOKENGATE_TOP_LEVEL.iter().find(|k| value.get(**k).is_some()) {
        return Err(ConfigError::new(
            *key,
            "is a tokengate setting at the top of a run.yaml, which only `server.auth` configures: \
             move it under `server.auth` (or remove `server` to use tokengate's own format)",
        ));
    }
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
    let mut settings = lenient(auth, "server.auth", parse_settings).map_err(|e| e.within("server.auth"))?;
    if settings.provider_config.is_none() && settings.providers.is_none() {
        no_provider_is_meant(&settings, &keys, switched_off)?;
    }
    if let Some(tenancy) = value.get("server").and_then(|s| s.get("tenancy")) {
        if settings.tenancy.is_some() {
            return Err(ConfigError::new(
                "server.auth.tenancy",
                "is set and so is `server.tenancy`; keep one (`server.tenancy`, as OGX)",
            ));
        }
        let tenancy = env::expand(tenancy.clone(), "server.tenancy", lookup)?;
        let tenancy = tokengate_api::parse_provider_config(tenancy).map_err(|e| e.within("server.tenancy"))?;
        settings.tenancy = Some(tenancy);
    }
    Ok(settings)
}

/// tokengate settings that, at the top of a run.yaml, would be ignored.
const TOKENGATE_TOP_LEVEL: &[&str] = &[
    "provider_config",
    "route_policy",
    "access_policy",
    "tenancy",
    "open_paths",
    "forward_auth",
    "revocation",
    "audit",
    "redis",
    "realm",
    "listen",
    "admin_listen",
];

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

/// A run.yaml without a provider authenticates nobody; that must be what was
/// meant, not what a misnamed key or an empty section left behind: only an
/// `${env…}` switch or a missing `provider_config`, no key tokengate does not
/// know beside it, and a `route_policy` that refuses something.
fn no_provider_is_meant(settings: &Settings, keys: &[String], switched_off: bool) -> Result<(), ConfigError> {
    if !switched_off && keys.iter().any(|k| k == "provider_config" || k == "providers") {
        return Err(ConfigError::new(
            "server.auth.provider_config",
            "is empty: set `type` (oauth2_token, custom, github_token, …) and its fields",
        ));
    }
    let known = |k: &str| TOKENGATE_TOP_LEVEL.contains(&k) || k == "providers";
    if let Some(unknown) = keys.iter().find(|k| !known(k)) {
        return Err(ConfigError::new(
            format!("server.auth.{unknown}"),
            "is not a tokengate setting, and this `server.auth` configures no provider: it may be a misnamed \
             `provider_config` (older Llama Stack wrote `provider_type` and `config`), so tokengate refuses to \
             start without authentication",
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
