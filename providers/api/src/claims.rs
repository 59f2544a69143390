//! Claims mapping: turn token claims into attribute lists.
//!
//! `claims_mapping: {claim: attribute}`. A claim key is a dot path into nested
//! objects (`realm_access.roles`, `resource_access.my-app.roles`); `\.` is a
//! literal dot, and a top-level key spelled exactly like the whole path wins
//! (so `https://example.com/roles` style keys need no escaping). Values:
//! a list keeps its string items, a string splits on whitespace (`scope`),
//! numbers and booleans become strings, anything else is skipped.

use crate::{Attributes, ConfigError};
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    claim: String,
    path: Vec<String>,
    attribute: String,
}

/// A compiled `claims_mapping`; rules apply in config order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimsMapping {
    rules: Vec<Rule>,
}

impl ClaimsMapping {
    /// Compiles `claim → attribute` pairs, rejecting empty names and path segments.
    pub fn new<I, K, V>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut rules = Vec::new();
        for (claim, attribute) in pairs {
            let claim = claim.into();
            let attribute = attribute.into();
            if attribute.trim().is_empty() {
                return Err(ConfigError::new(claim.clone(), "the attribute name is empty"));
            }
            let path = split_path(&claim).map_err(|m| ConfigError::new(claim.clone(), m))?;
            rules.push(Rule { claim, path, attribute });
        }
        Ok(ClaimsMapping { rules })
    }

    /// Llama Stack's default for OAuth2 tokens.
    pub fn oauth2_default() -> Self {
        Self::new([
            ("sub", "roles"),
            ("username", "roles"),
            ("groups", "teams"),
            ("team", "teams"),
            ("project", "projects"),
            ("namespace", "namespaces"),
        ])
        .unwrap_or_default()
    }

    /// Llama Stack's default for GitHub users.
    pub fn github_default() -> Self {
        Self::new([("login", "roles"), ("organizations", "teams")]).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `(claim, attribute)` pairs in order.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules.iter().map(|r| (r.claim.as_str(), r.attribute.as_str()))
    }

    /// Maps `claims` into attributes: values appended per attribute, without duplicates.
    pub fn apply(&self, claims: &Value) -> Attributes {
        let mut out = Attributes::new();
        self.apply_traced(claims, |attr, value, _claim| {
            let values = out.entry(attr.to_string()).or_default();
            if !values.iter().any(|v| v == value) {
                values.push(value.to_string());
            }
        });
        out
    }

    /// Calls `sink(attribute, value, claim)` for every value a rule yields, in
    /// order, duplicates included: the raw material for `tokengate explain`.
    pub fn apply_traced(&self, claims: &Value, mut sink: impl FnMut(&str, &str, &str)) {
        for rule in &self.rules {
            let Some(value) = lookup(claims, &rule.claim, &rule.path) else { continue };
            for_each_value(value, |v| sink(&rule.attribute, v, &rule.claim));
        }
    }
}

impl<'de> Deserialize<'de> for ClaimsMapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = IndexMap::<String, String>::deserialize(d)?;
        ClaimsMapping::new(pairs).map_err(|e| serde::de::Error::custom(format!("claim `{}`: {}", e.field, e.message)))
    }
}

/// Looks up a claim by key: exact top-level key first, then the dot path.
pub fn claim_at_path<'a>(claims: &'a Value, key: &str) -> Option<&'a Value> {
    let path = split_path(key).ok()?;
    lookup(claims, key, &path)
}

fn lookup<'a>(claims: &'a Value, key: &str, path: &[String]) -> Option<&'a Value> {
    let object = claims.as_object()?;
    if let Some(v) = object.get(key) {
        return Some(v);
    }
    if path.len() == 1 {
        return object.get(&path[0]);
    }
    let mut current = claims;
    for segment in path {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

fn for_each_value(value: &Value, mut f: impl FnMut(&str)) {
    match value {
        Value::String(s) => s.split_whitespace().for_each(f),
        Value::Array(items) => {
            for item in items {
                // An empty or blank item names nothing: it must not become an
                // attribute value (`teams: [""]`) that a policy could match.
                match item {
                    Value::String(s) if !s.trim().is_empty() => f(s),
                    _ => {}
                }
            }
        }
        Value::Number(n) => f(&n.to_string()),
        Value::Bool(b) => f(if *b { "true" } else { "false" }),
        Value::Null | Value::Object(_) => {}
    }
}

fn split_path(key: &str) -> Result<Vec<String>, String> {
    if key.is_empty() {
        return Err("the claim name is empty".into());
    }
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('.') => current.push('.'),
                Some('\\') => current.push('\\'),
                Some(other) => {
                    current.push('\\');
                    current.push(other);
                }
                None => current.push('\\'),
            },
            '.' => segments.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    segments.push(current);
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!("`{key}` has an empty path segment (write `\\.` for a literal dot)"));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> ClaimsMapping {
        ClaimsMapping::new(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn nested_paths_and_escaped_dots() {
        let claims = json!({
            "realm_access": {"roles": ["admin", "user"]},
            "resource_access": {"my-app": {"roles": ["editor"]}},
            "a.b": "literal",
            "x": {"y.z": "escaped"}
        });
        let m = map(&[
            ("realm_access.roles", "roles"),
            ("resource_access.my-app.roles", "roles"),
            ("a.b", "exact"),
            ("x.y\\.z", "esc"),
        ]);
        let a = m.apply(&claims);
        assert_eq!(a["roles"], vec!["admin", "user", "editor"]);
        assert_eq!(a["exact"], vec!["literal"]);
        assert_eq!(a["esc"], vec!["escaped"]);
    }

    #[test]
    fn exact_top_level_key_wins_over_path() {
        let claims = json!({"a.b": "top", "a": {"b": "nested"}});
        assert_eq!(map(&[("a.b", "v")]).apply(&claims)["v"], vec!["top"]);
    }

    #[test]
    fn scope_splits_scalars_stringify_objects_skip() {
        let claims =
            json!({"scope": "read  write\tadmin", "n": 42, "b": true, "o": {"k": 1}, "l": ["x", 1, null, "y"]});
        let a = map(&[("scope", "scopes"), ("n", "num"), ("b", "flag"), ("o", "obj"), ("l", "list")]).apply(&claims);
        assert_eq!(a["scopes"], vec!["read", "write", "admin"]);
        assert_eq!(a["num"], vec!["42"]);
        assert_eq!(a["flag"], vec!["true"]);
        assert!(!a.contains_key("obj"));
        assert_eq!(a["list"], vec!["x", "y"]);
    }

    #[test]
    fn several_claims_one_attribute_no_duplicates_missing_skipped() {
        let claims = json!({"groups": ["ml", "infra"], "team": "ml"});
        let a = map(&[("groups", "teams"), ("team", "teams"), ("missing", "teams"), ("gone", "other")]).apply(&claims);
        assert_eq!(a["teams"], vec!["ml", "infra"]);
        assert!(!a.contains_key("other"));
    }

    #[test]
    fn defaults_match_llama_stack() {
        let claims = json!({"sub": "alice", "groups": ["g1"], "project": "p", "namespace": "ns"});
        let a = ClaimsMapping::oauth2_default().apply(&claims);
        assert_eq!(a["roles"], vec!["alice"]);
        assert_eq!(a["teams"], vec!["g1"]);
        assert_eq!(a["projects"], vec!["p"]);
        assert_eq!(a["namespaces"], vec!["ns"]);
    }

    #[test]
    fn bad_paths_are_config_errors() {
        assert!(ClaimsMapping::new([("a..b", "x")]).is_err());
        assert!(ClaimsMapping::new([("", "x")]).is_err());
        assert!(ClaimsMapping::new([("a", " ")]).is_err());
    }

    #[test]
    fn blank_list_items_are_skipped() {
        // Found by the claims_mapping fuzz target.
        let a = map(&[("groups", "teams")]).apply(&json!({"groups": ["g1", "", " ", "\t", "g2"]}));
        assert_eq!(a["teams"], vec!["g1", "g2"]);
        assert!(map(&[("groups", "teams")]).apply(&json!({"groups": [""]})).is_empty());
    }

    #[test]
    fn non_object_claims_yield_nothing() {
        assert!(map(&[("a", "b")]).apply(&json!([1, 2])).is_empty());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map("[a-z.]{1,6}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_and_never_duplicates(claims in arb_json(), keys in prop::collection::vec("[a-z.\\\\]{0,8}", 0..6)) {
            let pairs: Vec<(String, String)> = keys.iter().enumerate().map(|(i, k)| (k.clone(), format!("attr{}", i % 2))).collect();
            if let Ok(m) = ClaimsMapping::new(pairs) {
                let a = m.apply(&claims);
                for values in a.values() {
                    let mut sorted = values.clone();
                    sorted.sort();
                    sorted.dedup();
                    prop_assert_eq!(sorted.len(), values.len());
                    prop_assert!(values.iter().all(|v| !v.is_empty()));
                }
            }
        }

        #[test]
        fn list_values_round_trip(items in prop::collection::vec("[a-z]{1,10}", 0..10)) {
            let claims = json!({"outer": {"inner": items.clone()}});
            let a = ClaimsMapping::new([("outer.inner", "out")]).unwrap().apply(&claims);
            let mut expected = items.clone();
            let mut seen = std::collections::HashSet::new();
            expected.retain(|i| seen.insert(i.clone()));
            prop_assert_eq!(a.get("out").cloned().unwrap_or_default(), expected);
        }
    }
}
