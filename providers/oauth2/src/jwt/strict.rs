//! JSON for JWT payloads, refusing a member that appears twice in one object.
//!
//! serde_json's `Value` keeps the last of two same-named members. Other
//! readers keep the first, so `{"sub":"alice","sub":"root"}` could name one
//! principal to tokengate and another to the application the token is
//! forwarded to. Ambiguity is refused, at every depth (a nested claim can
//! name the tenant or an attribute).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A JSON value whose objects have no repeated member.
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor { members: 0 }).map(StrictValue)
    }
}

/// A JWT payload: a [`StrictValue`] whose top-level object is sized up front
/// for the claims a token usually carries, instead of growing (and moving)
/// its table three or four times on the way there.
pub(crate) struct StrictClaims(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor { members: USUAL_CLAIMS }).map(StrictClaims)
    }
}

/// iss, sub, aud, exp, nbf, iat, jti, scope and a few of the issuer's own.
const USUAL_CLAIMS: usize = 16;

struct StrictVisitor {
    /// Room reserved in an object before its first member.
    members: usize,
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::with_capacity(self.members);
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if out.insert(key, value).is_some() {
                // The name stays out of the message: errors never quote the token.
                return Err(de::Error::custom("duplicate member"));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both entry points, which must agree.
    fn parse(text: &str) -> Result<Value, serde_json::Error> {
        let claims = serde_json::from_str::<StrictClaims>(text).map(|v| v.0);
        let value = serde_json::from_str::<StrictValue>(text).map(|v| v.0);
        assert_eq!(claims.as_ref().ok(), value.as_ref().ok(), "{text}");
        value
    }

    #[test]
    fn same_as_value_without_duplicates() {
        let text =
            r#"{"sub":"a","n":-1,"u":18446744073709551615,"f":1.5,"b":true,"z":null,"l":[1,{"x":"y"}],"o":{"k":[]}}"#;
        assert_eq!(parse(text).unwrap(), serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn duplicates_at_any_depth_are_refused() {
        let many: String = (0..40).map(|i| format!("\"c{i}\":{i},")).collect();
        let late_duplicate = format!("{{{many}\"c3\":0}}");
        for text in [
            late_duplicate.as_str(),
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"org":{"id":"a","id":"b"}}"#,
            r#"{"l":[{"t":1,"t":1}]}"#,
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
