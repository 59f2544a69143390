//! JSON values read with every mapping's keys unique.
//!
//! `serde_json::Value` keeps the last copy of a repeated key. For a config
//! (a second `route_policy` replacing the first) or an identity header
//! (`{"teams": ["contractors"], "teams": ["staff"]}`) that silently drops a
//! restriction, so whoever reads such text refuses a repeat instead: which
//! copy was meant is not guessed.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A [`Value`] whose mappings had no repeated key; deserialize into it from
/// any format (JSON, YAML, …) instead of into `Value`.
#[derive(Debug, Clone, PartialEq)]
pub struct UniqueKeys(pub Value);

/// Parses JSON text like `serde_json::from_str::<Value>`, refusing a key
/// repeated in any object.
pub fn json_with_unique_keys(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<UniqueKeys>(text).map(|v| v.0)
}

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(UniqueKeys)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        UniqueKeys::deserialize(deserializer).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key `{}` appears twice in one mapping (which copy would count is not guessed)",
                    key.escape_debug()
                )));
            }
            let UniqueKeys(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        for text in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"x": {"teams": ["contractors"], "teams": ["staff"]}}"#,
            r#"[{"k": 1}, {"k": 1, "k": 1}]"#,
            "{\"realm\": \"x\u{81}\", \"p\": 1, \"p\": 2}",
            r#"{"a": 1, "\u0061": 2}"#,
        ] {
            let e = json_with_unique_keys(text).expect_err(text);
            assert!(e.to_string().contains("appears twice"), "{text}: {e}");
        }
    }

    #[test]
    fn otherwise_it_reads_what_serde_json_reads() {
        for text in [r#"{"a": [1, -2, 3.5, true, null, "é"], "b": {"a": {}}}"#, "[]", "\"x\"", "18446744073709551615"]
        {
            assert_eq!(json_with_unique_keys(text).unwrap(), serde_json::from_str::<Value>(text).unwrap(), "{text}");
        }
    }
}
