//! Reading a run.yaml as OGX does: keys it does not know are dropped, one
//! warning each (OGX's pydantic models ignore them). tokengate's own format
//! stays strict and never comes through here.

use serde_json::Value;
use tokengate_api::ConfigError;

use super::warn_once;

/// Most keys of a run.yaml a lenient parse drops before giving up.
const MAX_IGNORED_KEYS: usize = 64;

/// `parse`, with keys it does not know dropped, one warning each: OGX's
/// models ignore unknown keys, so a run.yaml may carry fields tokengate lacks.
/// Only for run.yaml sections; tokengate's own format stays strict.
pub(super) fn lenient<T>(
    mut value: Value,
    at: &str,
    mut parse: impl FnMut(Value) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    for _ in 0..MAX_IGNORED_KEYS {
        match parse(value.clone()) {
            Err(e) if e.message.starts_with("unknown field") && remove_at(&mut value, &e.field) => {
                let path = if e.field.is_empty() { at.to_string() } else { format!("{at}.{}", e.field) };
                warn_once(format!("`{path}` is not a tokengate setting: ignored, as OGX ignores it"));
            }
            other => return other,
        }
    }
    parse(value)
}

/// Removes the member at a `serde_path_to_error` path (`a.b[2].c`); whether it was there.
fn remove_at(value: &mut Value, path: &str) -> bool {
    let mut segments: Vec<(&str, Vec<usize>)> = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        let indices = rest.split('[').filter_map(|i| i.trim_end_matches(']').parse().ok()).collect();
        segments.push((name, indices));
    }
    let Some((last, last_indices)) = segments.pop() else { return false };
    if !last_indices.is_empty() || last.is_empty() {
        return false;
    }
    let mut at = value;
    for (name, indices) in segments {
        let Some(next) = at.get_mut(name) else { return false };
        at = next;
        for i in indices {
            let Some(next) = at.get_mut(i) else { return false };
            at = next;
        }
    }
    at.as_object_mut().is_some_and(|map| map.remove(last).is_some())
}

#[cfg(test)]
mod lenient_tests {
    use super::*;
    use crate::config::{Config, Format, Registry, OGX_PUBLIC_ROUTES};

    #[test]
    fn a_run_yaml_drops_unknown_keys_and_a_tokengate_config_refuses_them() {
        let run_yaml = r#"
server:
  auth:
    provider_config:
      type: oauth2_token
      issuer: https://idp.example
      jwks: {uri: "https://idp.example/keys", shiny_new_option: 3}
      tenant_claim: org
    access_policy: []
    future_section: {x: 1}
"#;
        let c = Config::parse(run_yaml, Format::Yaml).unwrap();
        assert_eq!(c.open_paths(), OGX_PUBLIC_ROUTES, "OGX's public routes are open in a run.yaml");
        let pipeline = c.build(&Registry::with_builtins()).unwrap();
        assert_eq!(pipeline.members()[0].type_name(), "oauth2_token");

        let own = "provider_config: {type: custom, endpoint: 'http://127.0.0.1:9/x', shiny: 1}\n";
        let e = Config::parse(own, Format::Yaml).unwrap().build(&Registry::with_builtins()).err().unwrap();
        assert_eq!(e.field, "provider_config.shiny", "{e}");
        let e = Config::parse("provider_config: {type: custom}\nfuture_section: 1\n", Format::Yaml).unwrap_err();
        assert_eq!(e.field, "future_section");
    }

    #[test]
    fn paths_with_indices_are_removed() {
        let mut v = serde_json::json!({"a": [{"b": 1, "c": 2}]});
        assert!(remove_at(&mut v, "a[0].b"));
        assert_eq!(v, serde_json::json!({"a": [{"c": 2}]}));
        assert!(!remove_at(&mut v, "a[3].c") && !remove_at(&mut v, "x.y"));
    }
}
