//! Arbitrary JSON claims and arbitrary `claims_mapping` keys: compile, apply,
//! trace and look up, checking the mapping's invariants.
//!
//! Input: `claim=attribute` lines, a NUL byte, then the claims JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokengate_api::{claim_at_path, ClaimsMapping};

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (keys, json) = (&data[..cut], data.get(cut + 1..).unwrap_or_default());
    let keys = String::from_utf8_lossy(keys);
    let pairs: Vec<(String, String)> = keys
        .split('\n')
        .take(16)
        .enumerate()
        .map(|(i, line)| match line.split_once('=') {
            Some((claim, attr)) => (claim.to_string(), attr.to_string()),
            None => (line.to_string(), format!("attr{}", i % 3)),
        })
        .collect();
    let Ok(claims) = serde_json::from_slice::<Value>(json) else { return };

    for (claim, _) in &pairs {
        let _ = claim_at_path(&claims, claim);
    }
    // The config path: a JSON object of claim → attribute (later duplicates win there).
    let object: serde_json::Map<String, Value> =
        pairs.iter().map(|(c, a)| (c.clone(), Value::String(a.clone()))).collect();
    let _ = serde_json::from_value::<ClaimsMapping>(Value::Object(object));

    let Ok(mapping) = ClaimsMapping::new(pairs.clone()) else { return };
    let attributes = mapping.apply(&claims);
    let mut traced: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    mapping.apply_traced(&claims, |attr, value, claim| {
        assert!(pairs.iter().any(|(c, a)| c == claim && a == attr), "trace names an unknown rule");
        let values = traced.entry(attr.to_string()).or_default();
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
        }
    });
    assert_eq!(attributes, traced, "apply and apply_traced disagree");
    for (attr, values) in &attributes {
        assert!(pairs.iter().any(|(_, a)| a == attr), "attribute {attr:?} from no rule");
        assert!(values.iter().all(|v| !v.is_empty()), "empty value in {attr:?}");
        let mut sorted = values.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), values.len(), "duplicate values in {attr:?}");
    }
});
