//! `route_policy`: which authenticated principals may use which routes.
//!
//! Evaluated after authentication (and revocation), for the tower layer,
//! `tokengate serve` and `tokengate check` alike (see [`crate::pipeline`]). Rules
//! are tried in order and the first whose path, method and conditions all
//! match decides; a refusal is `insufficient_scope` (403).
//!
//! Two spellings of a rule are accepted, and may be mixed:
//!
//! ```yaml
//! route_policy:
//!   default: forbid                  # when no rule matches (default: forbid)
//!   rules:
//!     - path: /admin*                # exact path, `prefix*`, `*`, or `regex:<pattern>`
//!       methods: [GET, POST]         # optional; any method when absent
//!       permit: {attribute: roles, any_of: [admin]}
//!     - paths: [/v1/models, /v1/chat/*]
//!       forbid: {attribute: teams, all_of: [contractors]}
//!     - path: /v1/*
//!       permit: all
//! ```
//!
//! and Llama Stack / OGX's `server.auth.route_policy` (`RouteAccessRule`),
//! pasted as is:
//!
//! ```yaml
//! route_policy:
//!   - permit: {paths: [/v1/files*, /v1/models*]}
//!     when: user with developer in roles
//!   - forbid: {paths: "*"}
//!     unless: user with admin in roles
//!     description: only admins elsewhere
//! ```
//!
//! As in Llama Stack, a bare list denies requests no rule matches, and an
//! empty list allows everything. Request paths are matched in the canonical
//! form of [`crate::path`] (repeated slashes merged, decoded once, a trailing
//! slash kept; exact rules ignore it, as Llama Stack does); a path without
//! one (`;` parameters, dot segments, encoded separators, double encoding) is
//! refused outright, since a back end that reads it differently could
//! otherwise reach a route the policy never saw. A permit also needs the
//! other readings a back end may make (trailing slash toggled, case-folded)
//! not to be refused by a rule (see [`RoutePolicy::evaluate`]).

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;
use tokengate_api::{ClaimsMapping, Principal};

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The request may go on.
    Permit,
    /// The request is refused with `insufficient_scope` (403).
    Forbid,
}

impl Effect {
    fn as_str(self) -> &'static str {
        match self {
            Effect::Permit => "permit",
            Effect::Forbid => "forbid",
        }
    }
}

/// A compiled `route_policy`.
#[derive(Clone)]
pub struct RoutePolicy {
    default: Effect,
    rules: Vec<Rule>,
}

#[derive(Clone)]
struct Rule {
    effect: Effect,
    paths: Vec<PathPattern>,
    /// `paths` case-folded, for readings of case-insensitive back ends.
    folded: Vec<PathPattern>,
    /// Upper-cased; `None` for any method.
    methods: Option<Vec<String>>,
    /// All must hold.
    conditions: Vec<Test>,
    description: Option<String>,
}

/// One term of a rule's conjunction.
#[derive(Clone)]
enum Test {
    One(Condition),
    /// Llama Stack's `unless: [a, b]`: the rule applies unless *all* hold
    /// (its `not matches_conditions(...)`), i.e. not (a and b).
    NotAll(Vec<Condition>),
}

/// Three-valued: a condition on an attribute the provider could not
/// determine (see `Principal::unknown_attributes`) is neither true nor false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    Yes,
    No,
    Unknown,
}

impl Truth {
    fn of(b: bool) -> Truth {
        if b {
            Truth::Yes
        } else {
            Truth::No
        }
    }

    /// Kleene negation: not unknown is still unknown, so `none_of`, `not in`
    /// and `unless` cannot turn "could not tell" into a match.
    fn not(self) -> Truth {
        match self {
            Truth::Yes => Truth::No,
            Truth::No => Truth::Yes,
            Truth::Unknown => Truth::Unknown,
        }
    }

    /// Kleene conjunction: any false is false, else any unknown is unknown.
    fn all(items: impl IntoIterator<Item = Truth>) -> Truth {
        let mut out = Truth::Yes;
        for t in items {
            match t {
                Truth::No => return Truth::No,
                Truth::Unknown => out = Truth::Unknown,
                Truth::Yes => {}
            }
        }
        out
    }
}

impl Test {
    fn eval(&self, principal: &Principal) -> Truth {
        match self {
            Test::One(c) => c.eval(principal),
            Test::NotAll(cs) => Truth::all(cs.iter().map(|c| c.eval(principal))).not(),
        }
    }

    fn attributes(&self) -> Vec<&str> {
        match self {
            Test::One(c) => vec![c.attribute.as_str()],
            Test::NotAll(cs) => cs.iter().map(|c| c.attribute.as_str()).collect(),
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Test::One(c) => c.fmt(f),
            Test::NotAll(cs) => {
                write!(f, "not ({})", cs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and "))
            }
        }
    }
}

#[derive(Clone)]
enum PathPattern {
    Any,
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

#[derive(Clone, PartialEq, Eq)]
enum Quantifier {
    Any,
    All,
}

/// `attribute` has any (or all) of `values`; `negated` turns it around.
#[derive(Clone)]
struct Condition {
    attribute: String,
    values: Vec<String>,
    quantifier: Quantifier,
    negated: bool,
}

impl Condition {
    fn eval(&self, principal: &Principal) -> Truth {
        if principal.is_unknown(&self.attribute) {
            return Truth::Unknown;
        }
        let have = principal.attributes.get(&self.attribute).map(Vec::as_slice).unwrap_or_default();
        let has = |v: &String| have.iter().any(|h| h == v);
        let positive = match self.quantifier {
            Quantifier::Any => self.values.iter().any(has),
            Quantifier::All => self.values.iter().all(has),
        };
        Truth::of(positive != self.negated)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(", ");
        match (&self.quantifier, self.negated) {
            (Quantifier::Any, false) => write!(f, "{} any of [{values}]", self.attribute),
            (Quantifier::All, false) => write!(f, "{} all of [{values}]", self.attribute),
            (Quantifier::Any, true) => write!(f, "{} none of [{values}]", self.attribute),
            (Quantifier::All, true) => write!(f, "{} not all of [{values}]", self.attribute),
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Any => f.write_str("*"),
            PathPattern::Exact(p) => f.write_str(p),
            PathPattern::Prefix(p) => write!(f, "{p}*"),
            PathPattern::Regex(r) => write!(f, "regex:{}", r.as_str()),
        }
    }
}

impl PathPattern {
    /// The pattern as a case-insensitive back end matches it (Unicode lower case).
    fn folded(&self) -> Result<PathPattern, String> {
        Ok(match self {
            PathPattern::Any => PathPattern::Any,
            PathPattern::Exact(e) => PathPattern::Exact(e.to_lowercase()),
            PathPattern::Prefix(p) => PathPattern::Prefix(p.to_lowercase()),
            PathPattern::Regex(r) => PathPattern::Regex(
                regex::RegexBuilder::new(r.as_str()).case_insensitive(true).build().map_err(|e| e.to_string())?,
            ),
        })
    }
}

impl Rule {
    /// Whether the rule applies to `method path`; `folded` matches the
    /// case-folded patterns (and `path` is folded too). A rule naming GET
    /// also covers HEAD, which back ends answer with the GET handler.
    fn matches_route(&self, method: &str, path: &str, folded: bool) -> bool {
        let named = |m: &String| m == "*" || m == method || (m == "GET" && method == "HEAD");
        let method_ok = self.methods.as_ref().is_none_or(|m| m.iter().any(named));
        let paths = if folded { &self.folded } else { &self.paths };
        method_ok
            && paths.iter().any(|p| match p {
                PathPattern::Any => true,
                // As Llama Stack: `/v1/models` is also `/v1/models/`.
                PathPattern::Exact(e) => without_trailing_slash(e) == without_trailing_slash(path),
                PathPattern::Prefix(prefix) => path.starts_with(prefix.as_str()),
                PathPattern::Regex(r) => r.is_match(path),
            })
    }

    /// Whether every request `other` matches is matched by this rule too.
    fn covers(&self, other: &Rule) -> bool {
        let methods = match (&self.methods, &other.methods) {
            (None, _) => true,
            (Some(mine), _) if mine.iter().any(|m| m == "*") => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.iter().all(|m| mine.contains(m)),
        };
        let covers_path = |theirs: &PathPattern| {
            self.paths.iter().any(|mine| match (mine, theirs) {
                (PathPattern::Any, _) => true,
                (PathPattern::Exact(a), PathPattern::Exact(b)) => a == b,
                (PathPattern::Prefix(a), PathPattern::Exact(b) | PathPattern::Prefix(b)) => b.starts_with(a.as_str()),
                (PathPattern::Regex(a), PathPattern::Regex(b)) => a.as_str() == b.as_str(),
                _ => false,
            })
        };
        methods && other.paths.iter().all(covers_path)
    }

    fn conditions_text(&self) -> String {
        self.conditions.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and ")
    }

    /// The attributes this rule reads that `principal` has as unknown.
    fn unknown_attributes<'a>(&'a self, principal: &Principal) -> Vec<&'a str> {
        let mut out: Vec<&str> = self.conditions.iter().flat_map(Test::attributes).collect();
        out.retain(|a| principal.is_unknown(a));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// `rule 2 ("only admins")`.
    fn name(&self, index: usize) -> String {
        match &self.description {
            Some(d) => format!("rule {} ({d:?})", index + 1),
            None => format!("rule {}", index + 1),
        }
    }
}

/// The outcome of evaluating the policy for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Permit or forbid.
    pub effect: Effect,
    /// The zero-based index of the rule that decided; `None` for the default.
    pub rule: Option<usize>,
    /// Why, for people: which rule (or the default) decided, and on what.
    pub reason: String,
}

impl Verdict {
    /// True when the request may go on.
    pub fn is_permit(&self) -> bool {
        self.effect == Effect::Permit
    }
}

impl RoutePolicy {
    /// A policy that permits everything (what an empty Llama Stack list means).
    pub fn permit_all() -> Self {
        RoutePolicy { default: Effect::Permit, rules: Vec::new() }
    }

    /// Whether the policy can refuse anything at all.
    pub fn is_permit_all(&self) -> bool {
        self.default == Effect::Permit && self.rules.iter().all(|r| r.effect == Effect::Permit)
    }

    /// The effect when no rule matches (`default:`).
    pub fn default_effect(&self) -> Effect {
        self.default
    }

    /// How many rules the policy has.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Start-up warnings about rules that cannot do what they look like they do.
    ///
    /// A conditional `permit` followed by an unconditional `permit` of the same
    /// paths and methods never refuses anything: whoever fails its condition
    /// is permitted by the later rule anyway.
    pub fn lint(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.effect != Effect::Permit || rule.conditions.is_empty() {
                continue;
            }
            let shadow =
                self.rules.iter().enumerate().skip(i + 1).find(|(_, later)| {
                    later.effect == Effect::Permit && later.conditions.is_empty() && later.covers(rule)
                });
            if let Some((j, _)) = shadow {
                warnings.push(format!(
                    "route_policy {} permits only when {}, but {} permits the same requests unconditionally, so \
                     the condition never refuses anything",
                    rule.name(i),
                    rule.conditions_text(),
                    self.rules[j].name(j)
                ));
            }
        }
        warnings
    }

    /// Parses a `route_policy` value: a list of rules, or `{default, rules}`.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(Self::permit_all()),
            // Llama Stack: an empty list means no route-level authorization at all.
            Value::Array(items) if items.is_empty() => Ok(Self::permit_all()),
            Value::Array(items) => Ok(RoutePolicy { default: Effect::Forbid, rules: compile_rules(items, "")? }),
            Value::Object(map) => {
                if let Some(unknown) = map.keys().find(|k| !matches!(k.as_str(), "default" | "rules")) {
                    return Err(format!(
                        "unknown field `{unknown}`: write a list of rules, or a mapping with `default` and `rules`"
                    ));
                }
                let default = match map.get("default") {
                    None => Effect::Forbid,
                    Some(Value::String(s)) if s == "permit" => Effect::Permit,
                    Some(Value::String(s)) if s == "forbid" => Effect::Forbid,
                    Some(_) => return Err("`default` must be `permit` or `forbid`".into()),
                };
                let rules = match map.get("rules") {
                    None => Vec::new(),
                    Some(Value::Array(items)) => compile_rules(items, "rules")?,
                    Some(_) => return Err("`rules` must be a list of rules".into()),
                };
                Ok(RoutePolicy { default, rules })
            }
            _ => Err("must be a list of rules, or a mapping with `default` and `rules`".into()),
        }
    }

    /// Decides on `method path` for `principal`.
    pub fn evaluate(&self, method: &str, path: &str, principal: &Principal) -> Verdict {
        let method = method.to_ascii_uppercase();
        if self.is_permit_all() {
            // Nothing to protect, so nothing to refuse (not even paths that cannot be normalized).
            return Verdict {
                effect: Effect::Permit,
                rule: None,
                reason: format!("route {method} {}: route_policy permits every request", shown(path)),
            };
        }
        let route = match normalize_path(path) {
            Ok(route) => route,
            Err(why) => {
                return Verdict {
                    effect: Effect::Forbid,
                    rule: None,
                    reason: format!("route {method} {} cannot be checked against route_policy: {why}", shown(path)),
                }
            }
        };
        let (first, _) = self.evaluate_route(&method, &route, principal, false);
        if first.effect == Effect::Forbid {
            return first;
        }
        // Back ends differ on case and on a trailing slash (`/ADMIN/x` and
        // `/admin/` reach `/admin/*` in many). Another reading refuses when a
        // rule refuses it (a forbid, or a permit whose condition fails), not
        // when it merely falls through to the default.
        for (variant, folded) in readings(&route) {
            let (d, unmet) = self.evaluate_route(&method, &variant, principal, folded);
            // Without its trailing slash the path is what most routers serve
            // (`/v1/models/` is `/v1/models` to Express, Spring, ASP.NET), so
            // there even the default's refusal counts.
            let slash_removed = route.ends_with('/') && !variant.ends_with('/');
            if d.effect == Effect::Forbid && (d.rule.is_some() || unmet || slash_removed) {
                return Verdict { reason: format!("a back end may read {route} as {variant}: {}", d.reason), ..d };
            }
        }
        first
    }

    /// The decision for one reading of the path, and whether a permit rule
    /// matched it but its condition did not hold.
    fn evaluate_route(&self, method: &str, route: &str, principal: &Principal, folded: bool) -> (Verdict, bool) {
        let mut unmet = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches_route(method, route, folded) {
                continue;
            }
            let truth = Truth::all(rule.conditions.iter().map(|c| c.eval(principal)));
            if truth == Truth::Unknown {
                // Could not tell: a forbid refuses, a permit does not permit.
                let unknown = rule.unknown_attributes(principal).join(", ");
                if rule.effect == Effect::Forbid {
                    let reason = format!(
                        "route {method} {route} is forbidden by route_policy {} ({}): {unknown} could not be \
                         determined for this principal",
                        rule.name(i),
                        rule.conditions_text()
                    );
                    return (Verdict { effect: Effect::Forbid, rule: Some(i), reason }, !unmet.is_empty());
                }
                unmet.push(format!("{} ({unknown} could not be determined)", rule.conditions_text()));
                continue;
            }
            if truth == Truth::Yes {
                let on =
                    if rule.conditions.is_empty() { String::new() } else { format!(" ({})", rule.conditions_text()) };
                let reason = match rule.effect {
                    Effect::Permit => {
                        format!("route {method} {route} is permitted by route_policy {}{on}", rule.name(i))
                    }
                    Effect::Forbid => {
                        format!("route {method} {route} is forbidden by route_policy {}{on}", rule.name(i))
                    }
                };
                return (Verdict { effect: rule.effect, rule: Some(i), reason }, !unmet.is_empty());
            }
            if rule.effect == Effect::Permit {
                unmet.push(rule.conditions_text());
            }
        }
        let reason = match (self.default, unmet.is_empty()) {
            (Effect::Permit, _) => {
                format!("route {method} {route}: no route_policy rule matches; the default permits it")
            }
            (Effect::Forbid, false) => format!("route {method} {route} requires {}", unmet.join(", or ")),
            (Effect::Forbid, true) => format!("route {method} {route} is not permitted by any route_policy rule"),
        };
        let unmet = !unmet.is_empty();
        (Verdict { effect: self.default, rule: None, reason }, unmet)
    }

    /// Start-up lint: one message per rule whose conditions test an attribute
    /// that `mapping` fills from identifier claims (`sub`, `username`,
    /// `login`, … — see [`tokengate_api::IDENTIFIER_CLAIMS`]). Such an
    /// attribute holds whatever name a user got or chose, so a user named
    /// `admin` matches `user with admin in roles` — which is exactly what
    /// Llama Stack's default mapping (`sub → roles`) sets up.
    pub fn identifier_warnings(&self, mapping: &ClaimsMapping, provider: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let mut tested: Vec<&str> = rule.conditions.iter().flat_map(Test::attributes).collect();
            tested.sort_unstable();
            tested.dedup();
            for attribute in tested {
                let sources = mapping.identifier_sources(attribute);
                if sources.is_empty() {
                    continue;
                }
                out.push(format!(
                    "route_policy {} tests `{attribute}`, which the {provider} provider's claims_mapping fills from \
                     identifier claims ({}): a principal whose name equals a value the rule looks for matches it; \
                     map `{attribute}` from a claim that grants it (roles, groups) instead",
                    rule.name(i),
                    sources.join(", ")
                ));
            }
        }
        out
    }
}

impl fmt::Debug for RoutePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|r| {
                let paths = r.paths.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                let methods = r.methods.as_ref().map(|m| m.join(",")).unwrap_or_else(|| "*".into());
                format!("{} {methods} [{paths}] when [{}]", r.effect.as_str(), r.conditions_text())
            })
            .collect();
        f.debug_struct("RoutePolicy").field("default", &self.default).field("rules", &rules).finish()
    }
}

impl<'de> Deserialize<'de> for RoutePolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        RoutePolicy::from_value(&value).map_err(serde::de::Error::custom)
    }
}

fn without_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => path,
    }
}

/// Other ways a back end may read canonical `route`, each with whether it is
/// case-folded: the trailing slash toggled, and case-folded (Unicode lower
/// case, as Go's and .NET's case-insensitive routers fold).
fn readings(route: &str) -> Vec<(String, bool)> {
    let toggled = |r: &str| if r.ends_with('/') { without_trailing_slash(r).to_string() } else { format!("{r}/") };
    let lower = route.to_lowercase();
    let mut out: Vec<(String, bool)> = Vec::with_capacity(3);
    for candidate in [(toggled(route), false), (toggled(&lower), true), (lower, true)] {
        if (candidate.0 != route || candidate.1) && !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// The path as shown in messages: control characters and overlong paths tamed.
fn shown(path: &str) -> String {
    let mut s: String = path.chars().filter(|c| !c.is_control()).take(200).collect();
    if path.chars().count() > 200 {
        s.push_str("...");
    }
    s
}

/// The path rules are matched against, or why there is none: the one
/// canonical form of [`crate::path`], shared with `open_paths` and audit.
pub fn normalize_path(path: &str) -> Result<String, crate::path::PathError> {
    crate::path::canonical_path(path)
}

fn compile_rules(items: &[Value], list: &str) -> Result<Vec<Rule>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = if list.is_empty() { format!("[{i}]") } else { format!("{list}[{i}]") };
            compile_rule(item).map_err(|(field, m)| {
                if field.is_empty() {
                    format!("{at}: {m}")
                } else {
                    format!("{at}.{field}: {m}")
                }
            })
        })
        .collect()
}

type FieldError = (String, String);

fn err(field: &str, message: impl Into<String>) -> FieldError {
    (field.to_string(), message.into())
}

const RULE_FIELDS: &[&str] = &["path", "paths", "methods", "permit", "forbid", "when", "unless", "description"];

fn compile_rule(item: &Value) -> Result<Rule, FieldError> {
    let Some(map) = item.as_object() else {
        return Err(err("", "a rule must be a mapping with `permit` or `forbid`"));
    };
    if let Some(unknown) = map.keys().find(|k| !RULE_FIELDS.contains(&k.as_str())) {
        return Err(err(unknown, format!("unknown field; a rule has {}", RULE_FIELDS.join(", "))));
    }
    let (effect, scope_field, scope) = match (map.get("permit"), map.get("forbid")) {
        (Some(_), Some(_)) => return Err(err("", "`permit` and `forbid` are mutually exclusive")),
        (Some(s), None) => (Effect::Permit, "permit", s),
        (None, Some(s)) => (Effect::Forbid, "forbid", s),
        (None, None) => return Err(err("", "one of `permit` or `forbid` is required")),
    };
    let mut conditions = Vec::new();
    let mut scope_paths = None;
    match scope {
        Value::String(s) if s == "all" => {}
        Value::Object(m) => {
            const SCOPE_FIELDS: &[&str] = &["paths", "attribute", "any_of", "all_of", "none_of"];
            if let Some(unknown) = m.keys().find(|k| !SCOPE_FIELDS.contains(&k.as_str())) {
                return Err(err(
                    &format!("{scope_field}.{unknown}"),
                    format!("unknown field; `{scope_field}` has {}", SCOPE_FIELDS.join(", ")),
                ));
            }
            if let Some(p) = m.get("paths") {
                scope_paths = Some(strings(p).map_err(|e| err(&format!("{scope_field}.paths"), e))?);
            }
            let mut given = Vec::new();
            for (which, quantifier, negated) in [
                ("any_of", Quantifier::Any, false),
                ("all_of", Quantifier::All, false),
                ("none_of", Quantifier::Any, true),
            ] {
                if let Some(v) = m.get(which) {
                    let values = strings(v).map_err(|e| err(&format!("{scope_field}.{which}"), e))?;
                    given.push((values, quantifier, negated, which));
                }
            }
            if given.len() > 1 {
                return Err(err(
                    scope_field,
                    "`any_of`, `all_of` and `none_of` are mutually exclusive; write one rule for each",
                ));
            }
            match (m.get("attribute"), given.pop()) {
                (None, None) => {}
                (None, Some(_)) => {
                    return Err(err(scope_field, "`any_of`/`all_of`/`none_of` need an `attribute` to look in"))
                }
                (Some(_), None) => return Err(err(scope_field, "`attribute` needs `any_of`, `all_of` or `none_of`")),
                (Some(a), Some((values, quantifier, negated, which))) => {
                    let Some(attribute) = a.as_str().map(str::trim).filter(|a| !a.is_empty()) else {
                        return Err(err(&format!("{scope_field}.attribute"), "must be a non-empty attribute name"));
                    };
                    if values.is_empty() {
                        return Err(err(&format!("{scope_field}.{which}"), "is empty; list at least one value"));
                    }
                    conditions.push(Test::One(Condition {
                        attribute: attribute.to_string(),
                        values,
                        quantifier,
                        negated,
                    }));
                }
            }
        }
        _ => {
            return Err(err(
                scope_field,
                "must be `all`, or a mapping such as {attribute: roles, any_of: [admin]} or {paths: [...]}",
            ))
        }
    }
    let rule_paths = match (map.get("path"), map.get("paths")) {
        (Some(_), Some(_)) => return Err(err("path", "`path` and `paths` are mutually exclusive")),
        (Some(p), None) => Some(("path", strings(p).map_err(|e| err("path", e))?)),
        (None, Some(p)) => Some(("paths", strings(p).map_err(|e| err("paths", e))?)),
        (None, None) => None,
    };
    let (paths_field, raw_paths) = match (rule_paths, scope_paths) {
        (Some(_), Some(_)) => {
            return Err(err(&format!("{scope_field}.paths"), "paths are given twice (here and in `path`/`paths`)"))
        }
        (Some((f, p)), None) => (f.to_string(), p),
        (None, Some(p)) => (format!("{scope_field}.paths"), p),
        (None, None) => {
            return Err(err("", "no paths: set `path`, `paths` or (Llama Stack style) `permit: {paths: ...}`"))
        }
    };
    if raw_paths.is_empty() {
        return Err(err(&paths_field, "is empty; list at least one path (`*` for every path)"));
    }
    let paths = raw_paths
        .iter()
        .enumerate()
        .map(|(i, p)| compile_path(p).map_err(|m| err(&format!("{paths_field}[{i}]"), m)))
        .collect::<Result<Vec<_>, _>>()?;
    let methods = match map.get("methods") {
        None => None,
        Some(m) => {
            let list = strings(m).map_err(|e| err("methods", e))?;
            if list.is_empty() {
                return Err(err("methods", "is empty; omit it to match every method"));
            }
            let mut out = Vec::new();
            for (i, name) in list.iter().enumerate() {
                let upper = name.trim().to_ascii_uppercase();
                if upper != "*" && http::Method::from_bytes(upper.as_bytes()).is_err() {
                    return Err(err(&format!("methods[{i}]"), format!("{name:?} is not an HTTP method")));
                }
                out.push(upper);
            }
            Some(out)
        }
    };
    for (field, negate) in [("when", false), ("unless", true)] {
        let Some(v) = map.get(field) else { continue };
        let texts = strings(v).map_err(|e| err(field, e))?;
        let mut parsed = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            parsed.push(parse_condition(text).map_err(|m| err(&format!("{field}[{i}]"), m))?);
        }
        match (negate, parsed.len()) {
            (false, _) => conditions.extend(parsed.into_iter().map(Test::One)),
            // As Llama Stack: `unless: [a, b]` is not (a and b), not (not a) and (not b).
            (true, 1) => conditions.extend(parsed.into_iter().map(|mut c| {
                c.negated = !c.negated;
                Test::One(c)
            })),
            (true, _) => conditions.push(Test::NotAll(parsed)),
        }
    }
    if map.contains_key("when") && map.contains_key("unless") {
        return Err(err("unless", "`when` and `unless` are mutually exclusive"));
    }
    let description = match map.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(err("description", "must be text")),
    };
    let folded = paths.iter().map(PathPattern::folded).collect::<Result<_, _>>().map_err(|m| err("paths", m))?;
    Ok(Rule { effect, paths, folded, methods, conditions, description })
}

/// A string or a list of strings.
fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err("must be a string or a list of strings".to_string()),
            })
            .collect(),
        _ => Err("must be a string or a list of strings".into()),
    }
}

fn compile_path(p: &str) -> Result<PathPattern, String> {
    let p = p.trim();
    if p == "*" {
        return Ok(PathPattern::Any);
    }
    if let Some(pattern) = p.strip_prefix("regex:") {
        // Rules are also matched case-folded (for case-insensitive back ends);
        // a pattern that turns case sensitivity back on would dodge that.
        let flags = regex::Regex::new(r"\(\?[a-zA-Z]*-[a-zA-Z]*i").map_err(|e| e.to_string())?;
        if flags.is_match(pattern) {
            return Err(format!("`{pattern}`: `(?-i)` is refused; rules are also matched case-insensitively"));
        }
        // Python's re.match, which Llama Stack uses: anchored at the start only.
        return regex::Regex::new(&format!("^(?:{pattern})"))
            .map(PathPattern::Regex)
            .map_err(|e| format!("`{pattern}` is not a valid regular expression: {e}"));
    }
    if !p.starts_with('/') {
        return Err(format!("`{p}` must start with `/` (or be `*`, or `regex:<pattern>`)"));
    }
    if let Some(prefix) = p.strip_suffix('*') {
        if prefix.contains('*') {
            return Err(format!("`{p}`: `*` is allowed only at the end"));
        }
        return Ok(PathPattern::Prefix(prefix.to_string()));
    }
    if p.contains('*') {
        return Err(format!("`{p}`: `*` is allowed only at the end"));
    }
    let normalized = normalize_path(p).map_err(|why| format!("`{p}`: {why}"))?;
    Ok(PathPattern::Exact(normalized))
}

/// Llama Stack's route conditions: `user with <value> in <attribute>` and
/// `user with <value> not in <attribute>`. Owner conditions need a resource,
/// which routes do not have, so they are refused rather than never matching.
fn parse_condition(text: &str) -> Result<Condition, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (value, negated, attribute) = match words.as_slice() {
        ["user", "with", value, "in", attribute] => (*value, false, *attribute),
        ["user", "with", value, "not", "in", attribute] => (*value, true, *attribute),
        ["user", "is", ..] | ["user", "in", "owners", ..] | ["user", "not", "in", "owners", ..] => {
            return Err(format!(
                "{text:?}: owner conditions apply to resources (access_policy), not to routes; \
                 use `user with <value> in <attribute>`"
            ))
        }
        _ => {
            return Err(format!(
                "{text:?} is not a route condition; write `user with <value> in <attribute>` or \
                 `user with <value> not in <attribute>`"
            ))
        }
    };
    Ok(Condition {
        attribute: attribute.to_string(),
        values: vec![value.to_string()],
        quantifier: Quantifier::Any,
        negated,
    })
}

#[cfg(test)]
mod tests;
