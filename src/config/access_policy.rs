//! OGX's `access_policy`, checked as OGX checks it at start-up and never
//! enforced here: it judges resources (owners, types), which only OGX sees.
//! A policy OGX would refuse to start with is refused here too, so an
//! operator does not learn about a broken policy only when OGX restarts.
//!
//! OGX's rules (its `access_control/datatypes.py` and `conditions.py`): a
//! list of rules; each has exactly one of `permit` and `forbid`, whose scope
//! names `actions` (`create`, `read`, `update`, `delete`; one or a list) and
//! optionally `principal` and `resource` (text); at most one of `when` and
//! `unless`, each a condition or a list of them, in OGX's grammar. Other keys
//! are ignored, as OGX ignores them.

use serde_json::Value;
use tokengate_api::ConfigError;

use crate::pipeline::policy::is_ogx_condition;

const ACTIONS: &[&str] = &["create", "read", "update", "delete"];

/// `Err` names the rule and field (relative to `at`, the policy's own path).
pub fn check(policy: &Value, at: &str) -> Result<(), ConfigError> {
    let rules = match policy {
        Value::Null => return Ok(()),
        Value::Array(rules) => rules,
        _ => return Err(ConfigError::new(at, "must be a list of rules (OGX's `access_policy`)")),
    };
    for (i, rule) in rules.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let Some(rule) = rule.as_object() else {
            return Err(ConfigError::new(here, "must be a mapping with `permit` or `forbid`"));
        };
        let scope = match (rule.get("permit"), rule.get("forbid")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(here, "`permit` and `forbid` are mutually exclusive (OGX refuses this)"))
            }
            (None, None) => return Err(ConfigError::new(here, "needs one of `permit` or `forbid` (OGX refuses this)")),
            (Some(scope), None) => (scope, "permit"),
            (None, Some(scope)) => (scope, "forbid"),
        };
        check_scope(scope.0, &format!("{here}.{}", scope.1))?;
        if rule.contains_key("when") && rule.contains_key("unless") {
            return Err(ConfigError::new(
                format!("{here}.unless"),
                "`when` and `unless` are mutually exclusive (OGX refuses this)",
            ));
        }
        for key in ["when", "unless"] {
            if let Some(conditions) = rule.get(key) {
                check_conditions(conditions, &format!("{here}.{key}"))?;
            }
        }
    }
    Ok(())
}

fn check_scope(scope: &Value, at: &str) -> Result<(), ConfigError> {
    let Some(scope) = scope.as_object() else {
        return Err(ConfigError::new(at, "must be a mapping with `actions`"));
    };
    let actions = match scope.get("actions") {
        None => return Err(ConfigError::new(format!("{at}.actions"), "is required (create, read, update, delete)")),
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Some(text) = item.as_str() else {
                    return Err(ConfigError::new(format!("{at}.actions"), "must be action names"));
                };
                out.push(text);
            }
            out
        }
        Some(_) => return Err(ConfigError::new(format!("{at}.actions"), "must be an action or a list of them")),
    };
    if let Some(bad) = actions.iter().find(|a| !ACTIONS.contains(a)) {
        return Err(ConfigError::new(
            format!("{at}.actions"),
            format!("`{bad}` is not an action; one of: {}", ACTIONS.join(", ")),
        ));
    }
    for key in ["principal", "resource"] {
        if let Some(v) = scope.get(key) {
            if !(v.is_string() || v.is_null()) {
                return Err(ConfigError::new(format!("{at}.{key}"), "must be text"));
            }
        }
    }
    Ok(())
}

fn check_conditions(conditions: &Value, at: &str) -> Result<(), ConfigError> {
    let list: Vec<&Value> = match conditions {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for (i, condition) in list.iter().enumerate() {
        let valid = condition.as_str().is_some_and(is_ogx_condition);
        if !valid {
            let shown = condition.as_str().map(|s| format!("{s:?}")).unwrap_or_else(|| condition.to_string());
            let where_ = if conditions.is_array() { format!("{at}[{i}]") } else { at.to_string() };
            return Err(ConfigError::new(
                where_,
                format!(
                    "{shown} is not an OGX condition (OGX refuses it): `user is owner`, `user is not owner`, \
                     `user with <value> in <attribute>`, `user with <value> not in <attribute>`, \
                     `user in owners <attribute>`, `user not in owners <attribute>`, `resource is unowned`"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_ogx_accepts_loads() {
        let policy = json!([
            {"permit": {"principal": "admin", "actions": ["create", "read", "delete"]}, "description": "x"},
            {"permit": {"actions": "read"}, "when": "user in owners teams"},
            {"forbid": {"actions": ["delete"], "resource": "model::*"}, "unless": ["user is owner", "user with admin in roles"]},
            {"permit": {"actions": ["update"]}, "when": ["resource is unowned"], "future_key": 1},
        ]);
        check(&policy, "server.auth.access_policy").unwrap();
        check(&Value::Null, "x").unwrap();
        check(&json!([]), "x").unwrap();
    }

    #[test]
    fn what_ogx_refuses_is_refused_naming_the_field() {
        let cases = [
            (json!({"permit": {}}), "access_policy"),
            (json!([{"description": "nothing"}]), "access_policy[0]"),
            (json!([{"permit": {"actions": ["read"]}, "forbid": {"actions": ["read"]}}]), "access_policy[0]"),
            (json!([{"permit": {}}]), "access_policy[0].permit.actions"),
            (json!([{"permit": {"actions": ["read", "write"]}}]), "access_policy[0].permit.actions"),
            (json!([{"forbid": {"actions": "destroy"}}]), "access_policy[0].forbid.actions"),
            (json!([{"permit": {"actions": ["read"]}, "when": "a", "unless": "b"}]), "access_policy[0].unless"),
            (json!([{"permit": {"actions": ["read"]}, "when": "user is admin"}]), "access_policy[0].when"),
            (
                json!([{"permit": {"actions": ["read"]}, "when": ["user is owner", "user has admin"]}]),
                "access_policy[0].when[1]",
            ),
            (json!([{"permit": {"actions": ["read"], "principal": ["a"]}}]), "access_policy[0].permit.principal"),
        ];
        for (policy, field) in cases {
            let e = check(&policy, "access_policy").unwrap_err();
            assert_eq!(e.field, field, "{policy}: {e}");
        }
    }
}
