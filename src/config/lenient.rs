//! How lenient the reading of a run.yaml is: it may leave unread only what
//! cannot restrict anybody.
//!
//! A run.yaml is OGX's file. Its top level is OGX's (tokengate reads none of
//! it), and so is its `server` section, except `server.auth`, tokengate's
//! `server.tenancy` and OGX's `server.quota` (enforced as `limits` rules).
//! What tokengate leaves unread there is an allow-list:
//! [`OGX_SERVER_SETTINGS`] in `server`, and at the top OGX's sections
//! ([`OGX_TOP_LEVEL_NAMES`]) and any other key that is not, nor nearly
//! spells, a key tokengate reads. Everything under `server.auth` and
//! `server.tenancy` is read as strictly as tokengate's own format: every key
//! OGX has ever defined there is one tokengate reads, so a key neither knows
//! is a newer OGX field or a typo, and either may be a restriction that
//! ignoring it would drop.
//!
//! A key tokengate reads, found where it does not read it (`audience` under
//! `introspection`, `route_policy` beside `server.auth`), is refused with an
//! error naming where it was found and where it belongs.

use serde_json::Value;
use tokengate_api::ConfigError;

/// OGX's `server` settings, from its `ServerConfig` in every release of
/// Llama Stack and OGX: OGX's own listener, TLS, CORS and workers
/// (`quota` is read: see `run_yaml`).
/// tokengate knowingly leaves them to OGX; none of them says who gets in.
/// (`tls_cafile` here is OGX's client-certificate CA, not a provider's.)
pub(super) const OGX_SERVER_SETTINGS: &[&str] = &[
    "port",
    "host",
    "tls_certfile",
    "tls_keyfile",
    "tls_cafile",
    "disable_ipv6",
    "cors",
    "workers",
    "registry_refresh_interval_seconds",
];

/// The top-level sections of OGX's run.yaml (its `StackRunConfig` and
/// `StackConfig`, every release): OGX's, never read as tokengate's, even
/// where tokengate uses the name one level down (`providers` is OGX's map of
/// API providers, not tokengate's chain).
const OGX_TOP_LEVEL_NAMES: &[&str] = &[
    "version",
    "image_name",
    "distro_name",
    "built_at",
    "container_image",
    "docker_image",
    "conda_env",
    "apis",
    "apis_to_serve",
    "api_providers",
    "provider_map",
    "providers",
    "routing_table",
    "storage",
    "metadata_store",
    "inference_store",
    "conversations_store",
    "registered_resources",
    "models",
    "shields",
    "memory_banks",
    "vector_dbs",
    "vector_stores",
    "datasets",
    "scoring_fns",
    "benchmarks",
    "eval_tasks",
    "tool_groups",
    "connectors",
    "safety",
    "telemetry",
    "logging",
    "external_providers_dir",
    "external_apis_dir",
    "server",
];

/// The section a tokengate key is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Home {
    /// The top of tokengate's settings: `server.auth` in a run.yaml.
    Settings,
    /// Where `tenancy` goes: `server` in a run.yaml (as `server.tenancy`).
    Tenancy,
    /// A provider's section: `provider_config` or `providers[i]`.
    Provider,
    /// `provider_config.jwks`.
    Jwks,
    /// `provider_config.introspection`.
    Introspection,
}

/// Every key tokengate reads in its settings, in a built-in provider's
/// section and in `jwks` and `introspection`, with the section it belongs
/// in. A test checks it against what the parsers accept, so a new field
/// cannot be missing here.
const TOKENGATE_KEYS: &[(&str, Home)] = &[
    ("provider_config", Home::Settings),
    ("providers", Home::Settings),
    ("listen", Home::Settings),
    ("admin_listen", Home::Settings),
    ("forward_auth", Home::Settings),
    ("realm", Home::Settings),
    ("open_paths", Home::Settings),
    ("access_policy", Home::Settings),
    ("route_policy", Home::Settings),
    ("revocation", Home::Settings),
    ("audit", Home::Settings),
    ("redis", Home::Settings),
    ("tenancy", Home::Tenancy),
    ("limits", Home::Settings),
    ("type", Home::Provider),
    ("issuer", Home::Provider),
    ("audience", Home::Provider),
    ("audiences", Home::Provider),
    ("allow_any_audience", Home::Provider),
    ("allow_any_issuer", Home::Provider),
    ("claims_mapping", Home::Provider),
    ("principal_claim", Home::Provider),
    ("tenant_claim", Home::Provider),
    ("tenant_field", Home::Provider),
    ("tenant_header", Home::Provider),
    ("verify_tls", Home::Provider),
    ("tls_cafile", Home::Provider),
    ("leeway", Home::Provider),
    ("algorithms", Home::Provider),
    ("allow_high_s_signatures", Home::Provider),
    ("require_low_s", Home::Provider),
    ("allow_missing_exp", Home::Provider),
    ("max_token_bytes", Home::Provider),
    ("secret", Home::Provider),
    ("cache", Home::Provider),
    ("connect_timeout", Home::Provider),
    ("timeout", Home::Provider),
    ("max_response_bytes", Home::Provider),
    ("max_concurrent_requests", Home::Provider),
    ("jwks", Home::Provider),
    ("introspection", Home::Provider),
    ("endpoint", Home::Provider),
    ("github_api_base_url", Home::Provider),
    ("max_org_pages", Home::Provider),
    ("accept_partial_memberships", Home::Provider),
    ("api_server_url", Home::Provider),
    ("review", Home::Provider),
    ("auth_token", Home::Provider),
    ("auth_token_file", Home::Provider),
    ("principal_header", Home::Provider),
    ("attribute_headers", Home::Provider),
    ("attributes_header", Home::Provider),
    ("trusted_proxy_cidrs", Home::Provider),
    ("keys", Home::Provider),
    ("keys_file", Home::Provider),
    ("prefix", Home::Provider),
    ("reload_interval", Home::Provider),
    ("usage_file", Home::Provider),
    ("keys_from", Home::Provider),
    ("usage_store", Home::Provider),
    ("record_usage", Home::Provider),
    ("usage_flush_interval", Home::Provider),
    ("metrics", Home::Provider),
    ("api_keys", Home::Provider),
    ("uri", Home::Jwks),
    ("token", Home::Jwks),
    ("key_recheck_period", Home::Jwks),
    ("refresh_cooldown", Home::Jwks),
    ("stale_grace", Home::Jwks),
    ("max_keys", Home::Jwks),
    ("url", Home::Introspection),
    ("client_id", Home::Introspection),
    ("client_secret", Home::Introspection),
    ("send_secret_in_body", Home::Introspection),
];

/// Keys of Llama Stack's older `server.auth` format, which tokengate refuses
/// (a misnamed provider must not leave a file without one), and what to write.
const OLDER_LLAMA_STACK_KEYS: &[(&str, &str)] = &[
    ("provider_type", "older Llama Stack wrote `provider_type` and `config`: write `provider_config: {type: …, …}`"),
    ("config", "older Llama Stack wrote `provider_type` and `config`: write `provider_config: {type: …, …}`"),
    ("resource_attribute_rules", "older Llama Stack's name for `access_policy`, whose rules OGX now reads"),
];

/// The section `key` belongs in, when tokengate reads it.
pub(super) fn home_of(key: &str) -> Option<Home> {
    TOKENGATE_KEYS.iter().find(|(k, _)| *k == key).map(|(_, home)| *home)
}

/// Where a file's sections are: paths for the [`Home`]s.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    settings: &'static str,
    tenancy: &'static str,
    provider: String,
}

impl Layout {
    /// A run.yaml: settings in `server.auth`, tenancy in `server`.
    pub(super) fn run_yaml() -> Layout {
        Layout { settings: "server.auth", tenancy: "server", provider: "server.auth.provider_config".into() }
    }

    /// tokengate's own format: everything from the top.
    pub(super) fn own() -> Layout {
        Layout { settings: "", tenancy: "", provider: "provider_config".into() }
    }

    /// The layout of a file whose settings start at `prefix` (`server.auth.` or empty).
    pub(super) fn for_prefix(prefix: &str) -> Layout {
        if prefix.is_empty() {
            Layout::own()
        } else {
            Layout::run_yaml()
        }
    }

    /// The same file, with the provider section being read at `at` (`…providers[1]`).
    pub(super) fn with_provider(mut self, at: &str) -> Layout {
        self.provider = at.to_string();
        self
    }

    /// The path of the section `home`.
    fn path(&self, home: Home) -> String {
        match home {
            Home::Settings => self.settings.to_string(),
            Home::Tenancy => self.tenancy.to_string(),
            Home::Provider => self.provider.clone(),
            Home::Jwks => joined(&self.provider, "jwks"),
            Home::Introspection => joined(&self.provider, "introspection"),
        }
    }
}

/// `key` as a member of the section at `section` (the top when empty).
fn joined(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// A section's path as a phrase.
fn shown(section: &str) -> String {
    if section.is_empty() {
        "the top level".to_string()
    } else {
        format!("`{section}`")
    }
}

/// The error for `key`, a tokengate setting, found in `found_in`, which is not its home.
fn misplaced(key: &str, found_in: &str, home: Home, layout: &Layout) -> ConfigError {
    let belongs = joined(&layout.path(home), key);
    ConfigError::new(
        joined(found_in, key),
        format!(
            "unknown field `{key}` in {}: it is a tokengate setting, read only as `{belongs}`; move it there \
             (a setting written where tokengate does not read it is refused, never ignored: ignoring it would \
             drop what it restricts)",
            shown(found_in)
        ),
    )
}

/// `e` (a parse error, its path already from the top of the file) reworded
/// when the key it refuses is one tokengate reads elsewhere: it then says
/// where the key was found and where it belongs. Other errors pass unchanged.
pub(super) fn placed(e: ConfigError, layout: &Layout) -> ConfigError {
    let Some(rest) = e.message.strip_prefix("unknown field `") else { return e };
    let Some((key, _)) = rest.split_once('`') else { return e };
    let (found_in, last) = e.field.rsplit_once('.').unwrap_or(("", e.field.as_str()));
    if last != key {
        return e;
    }
    if found_in == layout.settings {
        if let Some(meant) = OLDER_LLAMA_STACK_KEYS.iter().find(|(old, _)| *old == key).map(|(_, meant)| meant) {
            return ConfigError { message: format!("{}; {meant}", e.message), ..e };
        }
    }
    let Some(home) = home_of(key) else { return e };
    if layout.path(home) == found_in {
        // Its section, but not its provider type's: the parser's own words say which keys are.
        return e;
    }
    ConfigError { file: e.file.clone(), ..misplaced(key, found_in, home, layout) }
}

/// The top of a run.yaml is OGX's, but a key tokengate reads there is a
/// setting one level off (or three): refused, naming where it belongs.
pub(super) fn check_run_yaml_top(value: &Value) -> Result<(), ConfigError> {
    let Some(top) = value.as_object() else { return Ok(()) };
    for key in top.keys().filter(|k| !OGX_TOP_LEVEL_NAMES.contains(&k.as_str())) {
        if let Some(home) = home_of(key) {
            return Err(misplaced(key, "", home, &Layout::run_yaml()));
        }
        // Any other key is OGX's, unless it is a tokengate key misspelt as well as misplaced.
        if let Some((known, home)) = TOKENGATE_KEYS.iter().find(|(known, _)| near_miss(key, known)) {
            return Err(ConfigError::new(
                key.as_str(),
                format!(
                    "unknown field `{key}` at the top of a run.yaml (did you mean `{known}`?): it is not one of \
                     OGX's sections, and `{known}` is read only as `{}`; tokengate refuses a key it cannot place, \
                     as it cannot be told from a misspelt restriction",
                    joined(&Layout::run_yaml().path(*home), known)
                ),
            ));
        }
    }
    Ok(())
}

/// A run.yaml's `server`: `auth`, `tenancy`, `quota` and [`OGX_SERVER_SETTINGS`].
/// A tokengate key beside `server.auth` is refused, naming where it belongs;
/// any other key too, as it cannot be told from a misspelt restriction.
pub(super) fn check_run_yaml_server(server: &Value) -> Result<(), ConfigError> {
    let Some(server) = server.as_object() else { return Ok(()) };
    for key in server.keys() {
        if key == "auth" || key == "tenancy" || key == "quota" || OGX_SERVER_SETTINGS.contains(&key.as_str()) {
            continue;
        }
        if let Some(home) = home_of(key) {
            return Err(misplaced(key, "server", home, &Layout::run_yaml()));
        }
        let candidates = ["auth", "tenancy", "quota"].iter().chain(OGX_SERVER_SETTINGS).copied();
        let typo = candidates.chain(TOKENGATE_KEYS.iter().map(|(k, _)| *k)).find(|known| near_miss(key, known));
        let hint = typo.map(|known| format!(" (did you mean `{known}`?)")).unwrap_or_default();
        return Err(ConfigError::new(
            format!("server.{key}"),
            format!(
                "unknown field `{key}` in `server`{hint}: it is neither a setting of OGX's server that tokengate \
                 leaves to OGX ({}) nor one tokengate reads (`server.auth`, `server.tenancy`, `server.quota`); tokengate refuses \
                 a key it cannot place, as it cannot be told from a misspelt restriction",
                OGX_SERVER_SETTINGS.join(", ")
            ),
        ));
    }
    Ok(())
}

/// OGX's `access_policy` is read as OGX reads it, other keys ignored (see
/// [`super::access_policy`]); a tokengate key anywhere inside it is a
/// setting written in the wrong place, and is refused.
pub(super) fn check_opaque_section(value: &Value, at: &str, layout: &Layout) -> Result<(), ConfigError> {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if let Some(home) = home_of(key) {
                    return Err(misplaced(key, at, home, layout));
                }
                check_opaque_section(inner, &joined(at, key), layout)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, item)| check_opaque_section(item, &format!("{at}[{i}]"), layout))
        }
        _ => Ok(()),
    }
}

/// Two spellings of one name: a prefix of the other, or at most two edits apart.
fn near_miss(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a.len() >= 3 && b.len() >= 3 && (a.starts_with(&b) || b.starts_with(&a)) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()] <= 2
}

#[cfg(test)]
mod lenient_tests {
    use super::*;
    use crate::config::{parse_settings, Registry};
    use serde_json::json;
    use tokengate_api::BuildContext;

    /// The keys a parser's "unknown field" error lists as the ones it reads.
    fn expected_keys(e: &ConfigError) -> Vec<String> {
        let listed = e.message.split_once(", expected ").map_or("", |(_, rest)| rest);
        listed.split('`').skip(1).step_by(2).map(str::to_string).collect()
    }

    fn build_error(section: Value) -> ConfigError {
        Registry::with_builtins().build(&section, &BuildContext::default()).err().expect("the probe is refused")
    }

    #[test]
    fn every_key_a_parser_reads_has_its_home() {
        let probe = "\u{1}probe";
        let mut sections: Vec<(String, Vec<String>, Home)> = Vec::new();
        let settings = parse_settings(json!({ probe: 1 })).err().unwrap();
        sections.push(("settings".into(), expected_keys(&settings), Home::Settings));
        for kind in Registry::with_builtins().type_names() {
            let e = build_error(json!({"type": kind, probe: 1}));
            assert_eq!(e.field, probe, "{kind}: {e}");
            let mut keys = expected_keys(&e);
            keys.push("type".into());
            sections.push((kind.to_string(), keys, Home::Provider));
        }
        for (sub, home) in [("jwks", Home::Jwks), ("introspection", Home::Introspection)] {
            let e = build_error(json!({"type": "oauth2_token", sub: {probe: 1}}));
            assert_eq!(e.field, format!("{sub}.{probe}"), "{e}");
            sections.push((sub.to_string(), expected_keys(&e), home));
        }
        let mut missing = Vec::new();
        for (section, keys, home) in sections {
            assert!(keys.len() > 2, "{section}: the parser's list was read: {keys:?}");
            for key in keys {
                let want = if key == "tenancy" { Home::Tenancy } else { home };
                if home_of(&key) != Some(want) {
                    missing.push(format!("{key} ({section}: {want:?})"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add these to TOKENGATE_KEYS in src/config/lenient.rs (missing, or with another home): {missing:?}"
        );
    }

    #[test]
    fn ogx_keys_left_to_ogx_are_not_tokengate_keys_but_where_both_use_a_name() {
        // OGX's access_policy vocabulary must never read as a misplaced tokengate key.
        for key in ["permit", "forbid", "when", "unless", "description", "actions", "principal", "resource"] {
            assert_eq!(home_of(key), None, "{key}");
        }
        assert_eq!(home_of("providers"), Some(Home::Settings), "skipped at the top on purpose");
        assert_eq!(home_of("tls_cafile"), Some(Home::Provider), "skipped in `server` on purpose");
    }

    #[test]
    fn a_misplaced_key_names_where_it_was_found_and_where_it_belongs() {
        let e = ConfigError::new(
            "server.auth.provider_config.introspection.audience",
            "unknown field `audience`, expected one of `url`, `client_id`",
        );
        let e = placed(e, &Layout::run_yaml());
        assert_eq!(e.field, "server.auth.provider_config.introspection.audience");
        assert!(e.message.contains("in `server.auth.provider_config.introspection`"), "{e}");
        assert!(e.message.contains("read only as `server.auth.provider_config.audience`"), "{e}");
        let at_home = ConfigError::new("provider_config.tenant_header", "unknown field `tenant_header`, expected …");
        assert_eq!(placed(at_home.clone(), &Layout::own()), at_home, "its own section: the parser's words");
        let unknown = ConfigError::new("provider_config.shiny", "unknown field `shiny`, expected …");
        assert_eq!(placed(unknown.clone(), &Layout::own()), unknown);
        assert!(near_miss("expires", "expires_at") && near_miss("route_polcy", "route_policy"));
        assert!(!near_miss("tenant_claim", "issuer"));
    }
}
