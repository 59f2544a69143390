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
            Err(e) if ignorable(&e) && remove_at(&mut value, &e.field) => {
                warn_once(format!("`{at}.{}` is not a tokengate setting: ignored, as OGX ignores it", e.field));
            }
            other => return other,
        }
    }
    parse(value)
}

/// Sections whose every key restricts someone: a key there that tokengate
/// does not read is refused even in a run.yaml, as dropping it (a misspelled
/// `rules`, `disabled`, `path_prefix`) would quietly let more through.
const STRICT_SECTIONS: &[&str] =
    &["route_policy", "revocation", "redis", "audit", "forward_auth", "open_paths", "tenancy"];

/// Whether `e` is an unknown key tokengate may drop: the error names the key
/// at the very end of its path (not a whole section that refused one of its
/// keys), outside [`STRICT_SECTIONS`], and not a near miss of a key tokengate
/// does know (`audiance`, `disable`, `expires`), which is surely a typo.
fn ignorable(e: &ConfigError) -> bool {
    let Some(rest) = e.message.strip_prefix("unknown field `") else { return false };
    let Some((key, expected)) = rest.split_once('`') else { return false };
    let last = e.field.rsplit('.').next().unwrap_or_default();
    let first = e.field.split(['.', '[']).next().unwrap_or_default();
    if key.is_empty() || last != key || STRICT_SECTIONS.contains(&first) {
        return false;
    }
    !expected.split('`').skip(1).step_by(2).any(|known| near_miss(key, known))
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
    fn security_sections_and_typos_are_never_dropped() {
        let policy_typo = r#"
server:
  auth:
    provider_config: {type: custom, endpoint: "http://127.0.0.1:9/x"}
    route_policy: {default: forbid, rule: [{permit: {paths: ["/v1/*"]}}]}
"#;
        let e = Config::parse(policy_typo, Format::Yaml).unwrap_err();
        assert!(e.field.starts_with("server.auth.route_policy"), "the policy is refused, not dropped: {e}");
        let key_typo = r#"
server:
  auth:
    provider_config:
      type: local_api_key
      keys: [{hash: "sha256:0000000000000000000000000000000000000000000000000000000000000000", principal: ci, disable: true}]
"#;
        let e = Config::parse(key_typo, Format::Yaml).unwrap().build(&Registry::with_builtins()).err().unwrap();
        assert!(e.message.contains("unknown field `disable`"), "a near miss of `disabled` is a typo: {e}");
        let audience_typo =
            "server:\n  auth:\n    provider_config: {type: oauth2_token, issuer: https://i, audiance: x}\n";
        assert!(Config::parse(audience_typo, Format::Yaml).unwrap().build(&Registry::with_builtins()).is_err());
        assert!(
            near_miss("expires", "expires_at")
                && near_miss("audiance", "audience")
                && !near_miss("tenant_claim", "issuer")
        );
    }

    #[test]
    fn paths_with_indices_are_removed() {
        let mut v = serde_json::json!({"a": [{"b": 1, "c": 2}]});
        assert!(remove_at(&mut v, "a[0].b"));
        assert_eq!(v, serde_json::json!({"a": [{"c": 2}]}));
        assert!(!remove_at(&mut v, "a[3].c") && !remove_at(&mut v, "x.y"));
    }
}
