//! Reading `route_policy` (both spellings, see [`super`]) into rules: each
//! rule's fields, path patterns and `when`/`unless` conditions, with errors
//! that name the rule and the field.

use super::{normalize_path, Condition, Effect, PathPattern, Quantifier, RoutePolicy, Rule, Test};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

impl RoutePolicy {
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
}

impl<'de> Deserialize<'de> for RoutePolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        RoutePolicy::from_value(&value).map_err(serde::de::Error::custom)
    }
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
        let mut owner: Vec<(String, bool)> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            match owner_condition(text) {
                Some(holds) => owner.push((text.trim().to_string(), holds)),
                None => parsed.push(parse_condition(text).map_err(|m| err(&format!("{field}[{i}]"), m))?),
            }
        }
        if !negate {
            conditions.extend(parsed.into_iter().map(Test::One));
            conditions.extend(owner.into_iter().map(|(text, holds)| Test::Owner { text, holds }));
            continue;
        }
        // As Llama Stack: `unless: [a, b]` is not (a and b), not (not a) and (not b).
        // Owner conditions are constants for a route: a false one makes the
        // conjunction false (so `unless` holds), true ones drop out of it.
        if let Some((text, _)) = owner.iter().find(|(_, holds)| !holds) {
            conditions.push(Test::Owner { text: format!("not ({text})"), holds: true });
            continue;
        }
        match parsed.len() {
            0 => {
                let text = owner.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(" and ");
                conditions.push(Test::Owner { text: format!("not ({text})"), holds: false });
            }
            1 => conditions.extend(parsed.into_iter().map(|mut c| {
                c.negated = !c.negated;
                Test::One(c)
            })),
            _ => conditions.push(Test::NotAll(parsed)),
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

/// Whether `text` is a condition in OGX's grammar (an owner condition or an
/// attribute one), the grammar its `access_policy` is checked against too.
pub(crate) fn is_ogx_condition(text: &str) -> bool {
    owner_condition(text).is_some() || parse_condition(text).is_ok()
}

/// An OGX owner condition, as OGX evaluates it for a resource without an
/// owner — which a route is: `user is owner` and `user in owners <attribute>`
/// never hold, their negations and `resource is unowned` always do.
/// `None` for anything else.
fn owner_condition(text: &str) -> Option<bool> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["user", "is", "owner"] | ["user", "in", "owners", _] => Some(false),
        ["user", "is", "not", "owner"] | ["user", "not", "in", "owners", _] | ["resource", "is", "unowned"] => {
            Some(true)
        }
        _ => None,
    }
}

/// Llama Stack's attribute conditions: `user with <value> in <attribute>` and
/// `user with <value> not in <attribute>` (owner conditions: [`owner_condition`]).
fn parse_condition(text: &str) -> Result<Condition, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (value, negated, attribute) = match words.as_slice() {
        ["user", "with", value, "in", attribute] => (*value, false, *attribute),
        ["user", "with", value, "not", "in", attribute] => (*value, true, *attribute),
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
