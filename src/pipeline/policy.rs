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
//!
//! The rule types, their evaluation and the checks over them (`lint`,
//! `identifier_warnings`) stay in this one file, past 400 lines, since every
//! one of them matches on the same private rule types; reading the config
//! shapes into rules is `policy/parse.rs`'s.

use std::fmt;
use tokengate_api::{ClaimsMapping, Principal};

mod parse;

pub(crate) use parse::is_ogx_condition;

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
    /// An OGX owner condition (`user is owner`, `user in owners roles`,
    /// `resource is unowned`, …) as OGX evaluates it for a route, which has
    /// no owner: always true or always false (`holds`).
    Owner {
        text: String,
        holds: bool,
    },
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
            Test::Owner { holds, .. } => Truth::of(*holds),
        }
    }

    fn attributes(&self) -> Vec<&str> {
        match self {
            Test::One(c) => vec![c.attribute.as_str()],
            Test::NotAll(cs) => cs.iter().map(|c| c.attribute.as_str()).collect(),
            Test::Owner { .. } => Vec::new(),
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
            Test::Owner { text, holds } => write!(f, "{text} ({holds} for a route, which has no owner)"),
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

    /// Whether some request could match both rules (paths and methods only; a regex is
    /// assumed to overlap anything, so a doubt never produces a warning that is wrong).
    fn may_overlap(&self, other: &Rule) -> bool {
        let all_methods = |r: &Rule| r.methods.as_ref().is_none_or(|m| m.iter().any(|m| m == "*"));
        let methods = all_methods(self)
            || all_methods(other)
            || self.methods.iter().flatten().any(|m| other.methods.iter().flatten().any(|o| o == m));
        let paths = self.paths.iter().any(|mine| {
            other.paths.iter().any(|theirs| match (mine, theirs) {
                (PathPattern::Any, _) | (_, PathPattern::Any) => true,
                (PathPattern::Regex(_), _) | (_, PathPattern::Regex(_)) => true,
                (PathPattern::Exact(a), PathPattern::Exact(b)) => a == b,
                (PathPattern::Exact(e), PathPattern::Prefix(p)) | (PathPattern::Prefix(p), PathPattern::Exact(e)) => {
                    e.starts_with(p.as_str())
                }
                (PathPattern::Prefix(a), PathPattern::Prefix(b)) => {
                    a.starts_with(b.as_str()) || b.starts_with(a.as_str())
                }
            })
        });
        methods && paths
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
            // Rules apply in order: a forbid between the two that can match some of the same
            // requests refuses those who fail the condition, so the condition does refuse.
            let refused_between = |j: usize| {
                self.rules[i + 1..j].iter().any(|between| between.effect == Effect::Forbid && between.may_overlap(rule))
            };
            if let Some((j, _)) = shadow.filter(|(j, _)| !refused_between(*j)) {
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

    /// Decides on `method path` for `principal`.
    pub fn evaluate(&self, method: &str, path: &str, principal: &Principal) -> Verdict {
        self.evaluate_for(method, path, Some(principal))
    }

    /// Decides on `method path` for a request without a user: a permit with
    /// conditions never matches (as in OGX), a forbid with conditions refuses
    /// (OGX skips it; refusing is what its author can have meant).
    pub fn evaluate_anonymous(&self, method: &str, path: &str) -> Verdict {
        self.evaluate_for(method, path, None)
    }

    fn evaluate_for(&self, method: &str, path: &str, principal: Option<&Principal>) -> Verdict {
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

    /// For `explain`: what each rule before the deciding one (every rule, when the default
    /// decided) made of the request, in order, and why it did not decide.
    pub fn rule_story(
        &self,
        method: &str,
        path: &str,
        principal: Option<&Principal>,
        verdict: &Verdict,
    ) -> Vec<String> {
        let method = method.to_ascii_uppercase();
        let Ok(route) = normalize_path(path) else { return Vec::new() };
        let upto = verdict.rule.unwrap_or(self.rules.len());
        let mut story = Vec::new();
        for (i, rule) in self.rules.iter().enumerate().take(upto) {
            let effect = match rule.effect {
                Effect::Permit => "permit",
                Effect::Forbid => "forbid",
            };
            let why = if !rule.matches_route(&method, &route, false) {
                format!("{effect} of other paths or methods: not this request")
            } else {
                let truth = match principal {
                    Some(p) => Truth::all(rule.conditions.iter().map(|c| c.eval(p))),
                    None if rule.conditions.is_empty() => Truth::Yes,
                    None => Truth::Unknown,
                };
                let condition = rule.conditions_text();
                match (truth, rule.effect) {
                    (Truth::No, _) => {
                        format!("{effect} matches the route, but its condition ({condition}) does not hold")
                    }
                    (Truth::Unknown, Effect::Permit) => {
                        format!("permit matches the route, but its condition ({condition}) cannot be tested")
                    }
                    // Only a later reading of the path (a folded variant) made another rule decide.
                    _ => format!("{effect} matches the route, but another reading of the path decided"),
                }
            };
            story.push(format!("{}: {why}", rule.name(i)));
        }
        story
    }

    /// The verdict of rule `i`, which matched.
    fn matched(&self, rule: &Rule, i: usize, method: &str, route: &str) -> Verdict {
        let on = if rule.conditions.is_empty() { String::new() } else { format!(" ({})", rule.conditions_text()) };
        let verb = match rule.effect {
            Effect::Permit => "permitted",
            Effect::Forbid => "forbidden",
        };
        let reason = format!("route {method} {route} is {verb} by route_policy {}{on}", rule.name(i));
        Verdict { effect: rule.effect, rule: Some(i), reason }
    }

    /// The decision for one reading of the path, and whether a permit rule
    /// matched it but its condition did not hold.
    fn evaluate_route(
        &self,
        method: &str,
        route: &str,
        principal: Option<&Principal>,
        folded: bool,
    ) -> (Verdict, bool) {
        let mut unmet = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches_route(method, route, folded) {
                continue;
            }
            // Without a user a condition cannot be tested, as with an attribute that
            // could not be determined. (OGX skips a conditioned forbid then instead,
            // letting a later rule decide.)
            let truth = match principal {
                Some(principal) => Truth::all(rule.conditions.iter().map(|c| c.eval(principal))),
                None if rule.conditions.is_empty() => Truth::Yes,
                None => Truth::Unknown,
            };
            if truth == Truth::Unknown {
                // Could not tell: a forbid refuses, a permit does not permit.
                let (why, note) = match principal {
                    Some(principal) => {
                        let unknown = rule.unknown_attributes(principal).join(", ");
                        (
                            format!("{unknown} could not be determined for this principal"),
                            format!("{unknown} could not be determined"),
                        )
                    }
                    None => ("there is no user to test it on".to_string(), "there is no user".to_string()),
                };
                if rule.effect == Effect::Forbid {
                    let reason = format!(
                        "route {method} {route} is forbidden by route_policy {} ({}): {why}",
                        rule.name(i),
                        rule.conditions_text()
                    );
                    return (Verdict { effect: Effect::Forbid, rule: Some(i), reason }, !unmet.is_empty());
                }
                unmet.push(format!("{} ({note})", rule.conditions_text()));
                continue;
            }
            if truth == Truth::Yes {
                return (self.matched(rule, i, method, route), !unmet.is_empty());
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

#[cfg(test)]
mod tests;
