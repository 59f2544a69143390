//! Claims mapping: turn token claims into attribute lists.
//!
//! `claims_mapping: {claim: attribute}`. A claim key is a dot path into nested
//! objects (`realm_access.roles`, `resource_access.my-app.roles`); `\.` is a
//! literal dot. When the nested path finds nothing, a top-level key spelled
//! exactly like the whole path is used (so `https://example.com/roles` style
//! keys need no escaping); when both exist, the nested path wins, as in OGX. Values:
//! a list keeps its string items, numbers and booleans become strings,
//! anything else is skipped, and a string is **one value** — except for
//! claims that are lists by definition, which split on whitespace: `scope`
//! and `scp` (RFC 8693 §4.2), and any claim the mapping marks with `split`:
//!
//! ```yaml
//! claims_mapping:
//!   sub: roles                              # "mallory admin" is one value, never `admin`
//!   scope: scopes                           # "read write" -> [read, write]
//!   groups_csv: {attribute: teams, split: true}   # a space-separated list claim
//!   scp: {attribute: scopes, split: false}        # turn the default off
//! ```
//!
//! Why not split every string, as Llama Stack does: identifiers (`sub`,
//! `username`, GitHub's `login`) land in `roles` by default, and a user who
//! can pick a name with a space in it would pick the role after the space.
//!
//! A claim the provider could not determine (see
//! [`ClaimsMapping::apply_with_unknown`]) makes every attribute it feeds unknown.
//!
//! The mapping reads any [`ClaimValue`]: a `serde_json::Value`, or a JWT's
//! payload borrowed from its bytes ([`JsonRef`]), with the same rules.

use crate::{Attributes, ConfigError};
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeSet;

mod source;
pub use source::{ClaimValue, ClaimView, JsonRef, JsonStr};

/// Claims whose string value is a space-separated list by definition.
pub const LIST_CLAIMS: &[&str] = &["scope", "scp"];

/// Claims that name someone or something rather than grant anything: an
/// attribute filled from one holds whatever the identity provider let a user
/// call themselves. `tokengate` warns when a route rule tests such an attribute.
pub const IDENTIFIER_CLAIMS: &[&str] = &[
    "sub",
    "username",
    "user_name",
    "preferred_username",
    "login",
    "email",
    "upn",
    "unique_name",
    "name",
    "nickname",
    "client_id",
    "azp",
    "oid",
    "uid",
    "id",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    claim: String,
    path: Vec<String>,
    attribute: String,
    /// Whether a string value is a whitespace-separated list.
    split: bool,
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
        Self::with_split(pairs.into_iter().map(|(claim, attribute)| (claim, attribute, None)))
    }

    /// Compiles `(claim, attribute, split)`; `split: None` splits only [`LIST_CLAIMS`].
    pub fn with_split<I, K, V>(entries: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V, Option<bool>)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut rules = Vec::new();
        for (claim, attribute, split) in entries {
            let claim = claim.into();
            let attribute = attribute.into();
            if attribute.trim().is_empty() {
                return Err(ConfigError::new(claim.clone(), "the attribute name is empty"));
            }
            let path = split_path(&claim).map_err(|m| ConfigError::new(claim.clone(), m))?;
            let split = split.unwrap_or_else(|| LIST_CLAIMS.contains(&claim.as_str()));
            rules.push(Rule { claim, path, attribute, split });
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
            ("tenant", "namespaces"),
            ("namespace", "namespaces"),
        ])
        .unwrap_or_default()
    }

    /// Llama Stack's default for GitHub users.
    pub fn github_default() -> Self {
        Self::new([("login", "roles"), ("organizations", "teams")]).unwrap_or_default()
    }

    /// True when the mapping has no rules: no claim becomes an attribute.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `(claim, attribute)` pairs in order.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules.iter().map(|r| (r.claim.as_str(), r.attribute.as_str()))
    }

    /// The claims among [`IDENTIFIER_CLAIMS`] that fill `attribute` (by the
    /// claim's last path segment, so `user.login` counts too).
    pub fn identifier_sources(&self, attribute: &str) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|r| r.attribute == attribute)
            .filter(|r| r.path.last().is_some_and(|last| IDENTIFIER_CLAIMS.contains(&last.as_str())))
            .map(|r| r.claim.as_str())
            .collect()
    }

    /// [`ClaimsMapping::apply`] when some claims could not be determined:
    /// an attribute any rule fills from one of `unknown_claims` (the claim
    /// itself, or a path into it) is left out of the attributes and returned
    /// as unknown — partly known is not known.
    pub fn apply_with_unknown<C: ClaimValue>(
        &self,
        claims: &C,
        unknown_claims: &[&str],
    ) -> (Attributes, BTreeSet<String>) {
        let mut attributes = self.apply(claims);
        let unknown: BTreeSet<String> = self
            .rules
            .iter()
            .filter(|r| unknown_claims.iter().any(|u| r.claim == *u || r.path.first().is_some_and(|p| p == u)))
            .map(|r| r.attribute.clone())
            .collect();
        for name in &unknown {
            attributes.remove(name);
        }
        (attributes, unknown)
    }

    /// Maps `claims` into attributes: values appended per attribute, without duplicates.
    pub fn apply<C: ClaimValue>(&self, claims: &C) -> Attributes {
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
    pub fn apply_traced<C: ClaimValue>(&self, claims: &C, mut sink: impl FnMut(&str, &str, &str)) {
        for rule in &self.rules {
            let Some(value) = lookup(claims, &rule.claim, &rule.path) else { continue };
            for_each_value(value, rule.split, |v| sink(&rule.attribute, v, &rule.claim));
        }
    }
}

impl<'de> Deserialize<'de> for ClaimsMapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = IndexMap::<String, Value>::deserialize(d)?;
        let mut compiled = Vec::with_capacity(entries.len());
        for (claim, value) in entries {
            let bad = |m: &str| serde::de::Error::custom(format!("claim `{claim}`: {m}"));
            let (attribute, split) = match value {
                Value::String(attribute) => (attribute, None),
                Value::Object(mut entry) => {
                    if let Some(unknown) = entry.keys().find(|k| *k != "attribute" && *k != "split") {
                        return Err(bad(&format!("unknown field `{unknown}`; an entry has `attribute` and `split`")));
                    }
                    let attribute = match entry.remove("attribute") {
                        Some(Value::String(a)) => a,
                        _ => return Err(bad("`attribute` (the attribute name) is required")),
                    };
                    let split = match entry.remove("split") {
                        None => None,
                        Some(Value::Bool(b)) => Some(b),
                        Some(_) => return Err(bad("`split` must be true or false")),
                    };
                    (attribute, split)
                }
                _ => return Err(bad("must be an attribute name, or {attribute: NAME, split: true|false}")),
            };
            compiled.push((claim, attribute, split));
        }
        ClaimsMapping::with_split(compiled)
            .map_err(|e| serde::de::Error::custom(format!("claim `{}`: {}", e.field, e.message)))
    }
}

/// Looks up a claim by key: the dot path first, then a top-level key spelled like the whole key.
pub fn claim_at_path<'a, C: ClaimValue>(claims: &'a C, key: &str) -> Option<&'a C> {
    let path = split_path(key).ok()?;
    lookup(claims, key, &path)
}

fn lookup<'a, C: ClaimValue>(claims: &'a C, key: &str, path: &[String]) -> Option<&'a C> {
    if !matches!(claims.view(), ClaimView::Object) {
        return None;
    }
    match path {
        [] => claims.member(key),
        // A plain key: the path and the literal key are one lookup.
        [only] if only == key => claims.member(key),
        _ => path.iter().try_fold(claims, |current, segment| current.member(segment)).or_else(|| claims.member(key)),
    }
}

fn for_each_value<C: ClaimValue>(value: &C, split: bool, mut f: impl FnMut(&str)) {
    match value.view() {
        ClaimView::String(s) if split => s.split_whitespace().for_each(f),
        // One value, spaces and all: `"mallory admin"` is nobody's `admin`.
        ClaimView::String(s) if !s.trim().is_empty() => f(s),
        ClaimView::String(_) => {}
        ClaimView::Array(items) => {
            for item in items {
                // An empty or blank item names nothing: it must not become an
                // attribute value (`teams: [""]`) that a policy could match.
                match item.view() {
                    ClaimView::String(s) if !s.trim().is_empty() => f(s),
                    _ => {}
                }
            }
        }
        ClaimView::Number(n) => f(&n.to_string()),
        ClaimView::Bool(b) => f(if b { "true" } else { "false" }),
        ClaimView::Null | ClaimView::Object => {}
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
mod tests;

#[cfg(test)]
mod proptests;
