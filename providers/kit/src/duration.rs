//! Durations in config files: a number of seconds (as Llama Stack writes
//! `key_recheck_period: 3600`) or a human string such as `"30s"` or `"5m"`.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Secs(u64),
    Float(f64),
    Text(String),
}

/// For `Duration` fields: `#[serde(with = "tokengate_kit::duration")]`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Float(f) if f.is_finite() && (0.0..1e12).contains(&f) => Ok(Duration::from_secs_f64(f)),
        Raw::Float(f) => Err(serde::de::Error::custom(format!("{f} is not a usable number of seconds"))),
        Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{t}` is not a duration ({e}); write seconds like 30 or text like \"30s\", \"5m\""
            ))
        }),
    }
}

/// For `Option<Duration>` fields: `#[serde(default, with = "tokengate_kit::duration::option")]`.
pub mod option {
    use super::*;

    /// A duration as [`deserialize`](super::deserialize) reads it, or none.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(deserialize_with = "super::deserialize")] Duration);
        Option::<Wrap>::deserialize(d).map(|o| o.map(|w| w.0))
    }
}
