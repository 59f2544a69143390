use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A string that never shows itself in `Debug`, `Display` or logs.
///
/// Client secrets, JWKS bearer tokens and the like are held in this type so that a
/// stray `{:?}` of a config struct cannot leak them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`; from here on it shows only as `<redacted>`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: call only where it is sent to its intended recipient.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for the empty string (an unset secret).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality, for comparing presented credentials with stored ones.
    pub fn ct_eq(&self, other: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A string; a number or boolean (what `${env.S}` holding `12345678` expands
/// to) is taken as its text, and nothing else is accepted. Errors never repeat
/// the value.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d) {
            Ok(serde_json::Value::String(s)) => Ok(Secret(s)),
            Ok(serde_json::Value::Number(n)) => Ok(Secret(n.to_string())),
            Ok(serde_json::Value::Bool(b)) => Ok(Secret(b.to_string())),
            _ => Err(serde::de::Error::custom("must be a string (the value is not shown)")),
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(s.ct_eq("hunter2-very-secret"));
        assert!(!s.ct_eq("hunter2"));
    }

    #[test]
    fn numbers_are_their_text_and_other_shapes_are_refused_without_the_value() {
        let s: Secret = serde_json::from_value(serde_json::json!(12345678)).unwrap();
        assert!(s.ct_eq("12345678"));
        let e = serde_json::from_value::<Secret>(serde_json::json!(["hunter2"])).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
