//! What the claims mapping reads: a `serde_json::Value` (an introspection
//! reply, a GitHub user, a Kubernetes user info), or a [`JsonRef`] borrowed
//! from a JWT payload's bytes, so one mapping implementation serves both.
//!
//! A JWT's claims were parsed into a `Value`: a `String` per key and per
//! string value, a map per object, all of it dropped a moment later, and the
//! largest part of the work of a verification beside the signature.
//! [`JsonRef`] keeps what the text already has: a string without escapes is
//! a slice of the payload, an object is a vector of members in the order
//! written, and nothing is copied that the checks and the mapping only read.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, RandomState};

/// A JSON value the claims mapping can read.
pub trait ClaimValue: Sized {
    /// What this value is, with its contents borrowed.
    fn view(&self) -> ClaimView<'_, Self>;
    /// The member named `key` of an object; `None` when absent or not an object.
    fn member(&self, key: &str) -> Option<&Self>;
}

/// One JSON value as [`ClaimValue::view`] shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClaimView<'a, V> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as serde_json read it.
    Number(&'a Number),
    /// A string, escapes resolved.
    String(&'a str),
    /// A list.
    Array(&'a [V]),
    /// An object: its members are read with [`ClaimValue::member`].
    Object,
}

impl<'a, V> ClaimView<'a, V> {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            ClaimView::String(s) => Some(s),
            _ => None,
        }
    }
}

impl ClaimValue for Value {
    fn view(&self) -> ClaimView<'_, Value> {
        match self {
            Value::Null => ClaimView::Null,
            Value::Bool(b) => ClaimView::Bool(*b),
            Value::Number(n) => ClaimView::Number(n),
            Value::String(s) => ClaimView::String(s),
            Value::Array(items) => ClaimView::Array(items),
            Value::Object(_) => ClaimView::Object,
        }
    }

    fn member(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }
}

/// A JSON value borrowed from the text it was read from, whose objects have
/// no repeated member.
///
/// Deserializing refuses a key written twice in any object, at any depth
/// (`{"sub":"alice","sub":"root"}`, or `"s\u0075b"` beside `"sub"`):
/// serde_json's `Value` keeps the last copy and other readers the first, so
/// which one counts is not guessed. The refusal is serde's custom error
/// `duplicate member` (a `Data` error), which names no key, so a message
/// built from it never quotes the token. Numbers are serde_json's own
/// reading of them, exactly as in a `Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonRef<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string: borrowed unless it had escapes.
    String(Cow<'a, str>),
    /// A list.
    Array(Vec<JsonRef<'a>>),
    /// An object's members, in the order written.
    Object(Vec<(Cow<'a, str>, JsonRef<'a>)>),
}

impl<'a> JsonRef<'a> {
    /// The members of an object, in the order written.
    pub fn members(&self) -> Option<&[(Cow<'a, str>, JsonRef<'a>)]> {
        match self {
            JsonRef::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsonRef::String(s) => Some(s),
            _ => None,
        }
    }

    /// The same value as a `serde_json::Value`, owning its strings.
    pub fn to_value(&self) -> Value {
        match self {
            JsonRef::Null => Value::Null,
            JsonRef::Bool(b) => Value::Bool(*b),
            JsonRef::Number(n) => Value::Number(n.clone()),
            JsonRef::String(s) => Value::String(s.to_string()),
            JsonRef::Array(items) => Value::Array(items.iter().map(JsonRef::to_value).collect()),
            JsonRef::Object(members) => {
                Value::Object(members.iter().map(|(k, v)| (k.to_string(), v.to_value())).collect::<Map<_, _>>())
            }
        }
    }
}

impl ClaimValue for JsonRef<'_> {
    fn view(&self) -> ClaimView<'_, Self> {
        match self {
            JsonRef::Null => ClaimView::Null,
            JsonRef::Bool(b) => ClaimView::Bool(*b),
            JsonRef::Number(n) => ClaimView::Number(n),
            JsonRef::String(s) => ClaimView::String(s),
            JsonRef::Array(items) => ClaimView::Array(items),
            JsonRef::Object(_) => ClaimView::Object,
        }
    }

    /// A linear scan: a token's claims are a dozen or two, where comparing
    /// lengths first is cheaper than hashing the key.
    fn member(&self, key: &str) -> Option<&Self> {
        self.members()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonRef<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RefVisitor { reserve: USUAL_MEMBERS })
    }
}

/// A JSON string, borrowed from the text when it has no escapes (an object's
/// keys here; a JWT header's `alg`, `kid` and `cty` in the oauth2 provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Room reserved in the top-level object before its first member: iss, sub,
/// aud, exp, nbf, iat, jti, scope and a few of the issuer's own, so a token's
/// claims fill one allocation instead of growing it three or four times.
/// Nested objects reserve nothing: a payload of many `{}` must not cost a
/// reservation each (about 0.9 KB per 3 bytes of payload).
const USUAL_MEMBERS: usize = 16;

/// Past this many members an object's keys are also remembered by hash, so
/// that refusing a repeat stays linear in the size of the object.
const SCAN_MEMBERS: usize = 32;

/// Reads one value; `reserve` is the room an object gets before its first member.
#[derive(Clone, Copy)]
struct RefVisitor {
    reserve: usize,
}

/// Array items and member values: nested, so their objects reserve nothing.
impl<'de> de::DeserializeSeed<'de> for RefVisitor {
    type Value = JsonRef<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<JsonRef<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

const NESTED: RefVisitor = RefVisitor { reserve: 0 };

impl<'de> Visitor<'de> for RefVisitor {
    type Value = JsonRef<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(JsonRef::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(JsonRef::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(JsonRef::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As `Value::from(f64)`: serde_json reads no infinite number from text anyway.
        Ok(Number::from_f64(v).map_or(JsonRef::Null, JsonRef::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonRef::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonRef::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonRef::String(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonRef::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(JsonRef::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(NESTED)? {
            items.push(item);
        }
        Ok(JsonRef::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(Cow<'de, str>, JsonRef<'de>)> = Vec::with_capacity(self.reserve);
        let mut hashed: Option<(RandomState, HashSet<u64>)> = None;
        // Key, value, then the repeat check, in that order: the first error
        // met (and so its category) is the one a `Value` parse would meet.
        while let Some(JsonStr(key)) = map.next_key()? {
            let value: JsonRef<'de> = map.next_value_seed(NESTED)?;
            let repeated = match &mut hashed {
                None => members.iter().any(|(k, _)| same_key(k, &key)),
                // A hash seen before is confirmed by comparing the keys themselves.
                Some((state, seen)) => {
                    !seen.insert(state.hash_one(&*key)) && members.iter().any(|(k, _)| same_key(k, &key))
                }
            };
            if repeated {
                // The name stays out of the message: errors never quote the token.
                return Err(de::Error::custom("duplicate member"));
            }
            members.push((key, value));
            if hashed.is_none() && members.len() == SCAN_MEMBERS {
                let state = RandomState::new();
                let seen = members.iter().map(|(k, _)| state.hash_one(&**k)).collect();
                hashed = Some((state, seen));
            }
        }
        Ok(JsonRef::Object(members))
    }
}

/// `a == b`, without a call to `memcmp` for keys as short as a JWT's (`iss`,
/// `sub`, `aud`, `exp`, `nbf`, `iat`, `jti` share a length, so every pair of
/// them got that far).
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JsonRef<'_>, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"sub":"a","n":-1,"u":18446744073709551615,"f":1.5,"b":true,"z":null,"l":[1,{"x":"y"}],"o":{"k":[]}}"#,
            r#"{"big":18446744073709551616,"e":1e300,"neg":-9223372036854775808,"exp":1.7e9}"#,
            r#"{"s\u0075b":"\u00e9l\u00e8ve \"q\"","name":"Zoë 🚀","k\\":"\ud83d\ude80"}"#,
            "[]",
            "\"x\"",
            "12",
        ] {
            assert_eq!(parse(text).unwrap().to_value(), serde_json::from_str::<Value>(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed_and_escaped_keys_resolved() {
        let claims = parse(r#"{"s\u0075b":"alice","iss":"https:\/\/i"}"#).unwrap();
        let members = claims.members().unwrap();
        assert!(matches!(members[0].0, Cow::Owned(_)));
        assert_eq!(claims.member("sub").and_then(|v| v.view().as_str()), Some("alice"));
        assert!(matches!(claims.member("sub"), Some(JsonRef::String(Cow::Borrowed("alice")))));
        assert_eq!(claims.member("iss").and_then(|v| v.view().as_str()), Some("https://i"));
    }

    #[test]
    fn a_repeated_member_is_refused_at_any_depth_as_a_data_error() {
        let many: String = (0..100).map(|i| format!("\"c{i}\":{i},")).collect();
        let late = format!("{{{many}\"c3\":0}}");
        let last = format!("{{{many}\"c99\":0}}");
        let early_in_many = format!("{{\"c0\":1,{many}\"x\":0}}");
        let nested_many = format!("{{\"o\":{{{many}\"c50\":1}}}}");
        for text in [
            late.as_str(),
            last.as_str(),
            early_in_many.as_str(),
            nested_many.as_str(),
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"sub":"a","s\u0075b":"b"}"#,
            r#"{"org":{"id":"a","id":"b"}}"#,
            r#"{"l":[{"t":1,"t":1}]}"#,
            r#"{"a":{"b":{"c":{"d":1,"d":1}}}}"#,
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.classify(), serde_json::error::Category::Data, "{text}");
            assert!(e.to_string().starts_with("duplicate member"), "{text}: {e}");
        }
        let distinct: String = (0..100).map(|i| format!("\"c{i}\":{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(parse(&format!("{{{distinct}}}")).unwrap().members().unwrap().len(), 100);
    }

    #[test]
    fn members_are_read_like_a_value_s() {
        let text = r#"{"a":{"b":[1,"x"]},"n":2}"#;
        let (borrowed, value) = (parse(text).unwrap(), serde_json::from_str::<Value>(text).unwrap());
        for key in ["a", "n", "missing"] {
            assert_eq!(borrowed.member(key).map(JsonRef::to_value).as_ref(), value.member(key), "{key}");
        }
        assert!(borrowed.member("a").unwrap().member("b").is_some());
        assert!(JsonRef::Number(1.into()).member("a").is_none());
        assert!(Value::from(1).member("a").is_none());
    }

    #[test]
    fn only_the_top_level_object_reserves_room() {
        // Many small nested objects must cost what they hold, not a reservation each.
        let text = format!(r#"{{"sub":"a","x":[{}],"o":{{"k":{{}}}}}}"#, vec!["{}"; 1000].join(","));
        let claims = parse(&text).unwrap();
        let JsonRef::Object(top) = &claims else { panic!("an object") };
        assert!(top.capacity() >= USUAL_MEMBERS);
        let Some(JsonRef::Array(items)) = claims.member("x") else { panic!("an array") };
        assert_eq!(items.len(), 1000);
        for item in items.iter().chain([claims.member("o").unwrap(), claims.member("o").unwrap().member("k").unwrap()])
        {
            let JsonRef::Object(members) = item else { panic!("an object") };
            assert!(members.capacity() <= members.len().max(4), "{}", members.capacity());
        }
    }
}
