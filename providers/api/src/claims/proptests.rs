use super::*;
use proptest::prelude::*;
use serde_json::json;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z.]{1,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn never_panics_and_never_duplicates(claims in arb_json(), keys in prop::collection::vec("[a-z.\\\\]{0,8}", 0..6)) {
        let pairs: Vec<(String, String)> = keys.iter().enumerate().map(|(i, k)| (k.clone(), format!("attr{}", i % 2))).collect();
        if let Ok(m) = ClaimsMapping::new(pairs) {
            let a = m.apply(&claims);
            for values in a.values() {
                let mut sorted = values.clone();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), values.len());
                prop_assert!(values.iter().all(|v| !v.is_empty()));
            }
        }
    }

    #[test]
    fn list_values_round_trip(items in prop::collection::vec("[a-z]{1,10}", 0..10)) {
        let claims = json!({"outer": {"inner": items.clone()}});
        let a = ClaimsMapping::new([("outer.inner", "out")]).unwrap().apply(&claims);
        let mut expected = items.clone();
        let mut seen = std::collections::HashSet::new();
        expected.retain(|i| seen.insert(i.clone()));
        prop_assert_eq!(a.get("out").cloned().unwrap_or_default(), expected);
    }
}
