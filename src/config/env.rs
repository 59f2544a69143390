//! `${env.NAME}`, `${env.NAME:=default}` and `${env.NAME:+value}` in config
//! string values, expanded as OGX (Llama Stack) expands its `run.yaml`:
//!
//! - `${env.NAME}`: the variable's value; unset or empty is a config error
//!   naming the variable and the field;
//! - `${env.NAME:=default}`: the value when set and non-empty, else `default`
//!   (which may be empty);
//! - `${env.NAME:+value}`: `value` when the variable is set and non-empty, else empty.
//!
//! Names are upper-case letters, digits and `_`. A leading `~` in a
//! substituted value is the home directory. A string that changed is then
//! read as OGX reads it: empty is `null`, `true`/`false` (any case) a boolean,
//! an integer or a float a number, anything else stays a string — so
//! `verify_tls: ${env.VERIFY_TLS:=true}` is the boolean `true`. Strings
//! without a reference are left exactly as written.

use serde_json::{Map, Number, Value};
use std::sync::OnceLock;
use tokengate_api::ConfigError;

/// Expands every reference in the strings of `value`; `at` is the dotted
/// path of `value` itself (for errors), `lookup` reads a variable.
pub fn expand(value: Value, at: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Value, ConfigError> {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                out.insert(k, expand(v, &path, lookup)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| expand(v, &format!("{at}[{i}]"), lookup))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::String(text) => expand_string(&text, at, lookup).map(|expanded| match expanded {
            Some(changed) => typed(changed),
            None => Value::String(text),
        }),
        other => Ok(other),
    }
}

/// The expanded text, or `None` when `text` has no reference.
fn expand_string(text: &str, at: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    static PATTERN: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| regex::Regex::new(r"\$\{env\.([A-Z0-9_]+)(?::([=+])([^}]*))?\}").ok());
    let Some(pattern) = pattern.as_ref() else { return Ok(None) };
    if !pattern.is_match(text) {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for found in pattern.captures_iter(text) {
        let (Some(whole), Some(name)) = (found.get(0), found.get(1)) else { continue };
        out.push_str(&text[last..whole.start()]);
        last = whole.end();
        let name = name.as_str();
        let set = lookup(name).filter(|v| !v.is_empty());
        let operand = found.get(3).map_or("", |m| m.as_str());
        let value = match (found.get(2).map(|m| m.as_str()), set) {
            (Some("="), Some(v)) => v,
            (Some("="), None) => operand.to_string(),
            (Some(_), Some(_)) => operand.to_string(),
            (Some(_), None) => String::new(),
            (None, Some(v)) => v,
            (None, None) => {
                return Err(ConfigError::new(
                    at,
                    format!(
                        "environment variable `{name}` is not set or empty; write ${{env.{name}:=default}} for a \
                         default, ${{env.{name}:+value}} to make the value conditional, or set it"
                    ),
                ))
            }
        };
        out.push_str(&home_expanded(value));
    }
    out.push_str(&text[last..]);
    Ok(Some(out))
}

/// `~` and `~/…` with the home directory, as Python's `os.path.expanduser`.
fn home_expanded(value: String) -> String {
    let Some(home) = std::env::var_os("HOME").and_then(|h| h.into_string().ok()) else { return value };
    match value.strip_prefix('~') {
        Some("") => home,
        Some(rest) if rest.starts_with('/') => format!("{home}{rest}"),
        _ => value,
    }
}

/// What an expanded string means: `null`, a boolean, a number, or itself.
fn typed(text: String) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    match text.to_ascii_lowercase().as_str() {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.trim().parse::<i64>() {
        return Value::Number(n.into());
    }
    match text.trim().parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) => Value::Number(n),
        None => Value::String(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "ISSUER" => Some("https://idp.example".into()),
            "EMPTY" => Some(String::new()),
            "VERIFY" => Some("False".into()),
            "PORT" => Some("8321".into()),
            _ => None,
        }
    }

    fn run(v: Value) -> Result<Value, ConfigError> {
        expand(v, "server.auth", &env)
    }

    #[test]
    fn the_three_forms_as_ogx_reads_them() {
        let v = run(json!({
            "issuer": "${env.ISSUER}",
            "jwks": {"uri": "${env.ISSUER}/keys"},
            "audience": "${env.AUDIENCE:=llama-stack}",
            "empty_default": "${env.EMPTY:=fallback}",
            "tls": "${env.ISSUER:+yes-tls}",
            "unset_conditional": "${env.NOPE:+x}",
            "verify_tls": "${env.VERIFY:=true}",
            "port": "${env.PORT}",
            "ratio": "${env.NOPE:=0.5}",
            "literal": "${env.lower} and $HOME stay",
            "list": ["${env.ISSUER}", 3],
        }))
        .unwrap();
        assert_eq!(
            v,
            json!({
                "issuer": "https://idp.example",
                "jwks": {"uri": "https://idp.example/keys"},
                "audience": "llama-stack",
                "empty_default": "fallback",
                "tls": "yes-tls",
                "unset_conditional": null,
                "verify_tls": false,
                "port": 8321,
                "ratio": 0.5,
                "literal": "${env.lower} and $HOME stay",
                "list": ["https://idp.example", 3],
            })
        );
    }

    #[test]
    fn a_missing_variable_names_the_variable_and_the_field() {
        let e = run(json!({"provider_config": {"jwks": [{"uri": "${env.JWKS_URI}"}]}})).unwrap_err();
        assert_eq!(e.field, "server.auth.provider_config.jwks[0].uri");
        assert!(e.message.contains("`JWKS_URI` is not set or empty"), "{e}");
        let e = run(json!({"secret": "${env.EMPTY}"})).unwrap_err();
        assert!(e.message.contains("`EMPTY`"), "{e}");
    }

    #[test]
    fn a_run_yaml_with_references_loads_and_errors_name_the_field() {
        use crate::config::{Config, Format};
        let yaml = r#"
server:
  port: ${env.TOKENGATE_TEST_SURELY_UNSET_PORT}
  auth:
    provider_config:
      type: ${env.TOKENGATE_TEST_SURELY_UNSET_TYPE:=custom}
      endpoint: ${env.TOKENGATE_TEST_SURELY_UNSET_URL:=http://127.0.0.1:9/auth}
"#;
        let c = Config::parse(yaml, Format::Yaml).unwrap();
        let section = c.settings.provider_config.unwrap();
        assert_eq!(
            (section["type"].as_str(), section["endpoint"].as_str()),
            (Some("custom"), Some("http://127.0.0.1:9/auth"))
        );
        let e = Config::parse(&yaml.replace(":=custom", ""), Format::Yaml).unwrap_err();
        assert_eq!(e.field, "server.auth.provider_config.type");
        assert!(e.message.contains("TOKENGATE_TEST_SURELY_UNSET_TYPE"), "{e}");
    }
}
