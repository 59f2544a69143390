//! Inputs the fuzz targets in `fuzz/` found, kept as ordinary tests so the
//! fixes stay fixed without a fuzzing toolchain. See SECURITY.md, "Fuzzing".

use crate::fixtures::*;
use serde_json::{json, Value};
use tokengate::ClaimsMapping;

/// The invariants the `claims_mapping` target checks, for one input.
fn check_mapping(pairs: &[(&str, &str)], claims: &Value) {
    let Ok(mapping) = ClaimsMapping::new(pairs.iter().copied()) else { return };
    let attributes = mapping.apply(claims);
    for (attr, values) in &attributes {
        assert!(values.iter().all(|v| !v.trim().is_empty()), "blank value in {attr:?}: {values:?}");
        let mut sorted = values.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), values.len(), "duplicate values in {attr:?}");
    }
}

/// claims_mapping crash-94f7cead: `groups: ["g1", "", 1, null]` mapped to `teams`
/// produced the attribute value `""`.
#[test]
fn empty_list_items_never_become_attribute_values() {
    let claims = json!({
        "sub": "a", "groups": ["g1", "", 1, null],
        "realm_access": {"roles": ["x"]}, "resource_access": {"app.x": {"roles": ["y"]}}, "scope": "a b  c"
    });
    let pairs = [
        ("sub", "roles"),
        ("groups", "teams"),
        ("realm_access.roles", "roles"),
        ("resource_access.app\\.x.roles", "r"),
    ];
    check_mapping(&pairs, &claims);
    let a = ClaimsMapping::new(pairs).unwrap().apply(&claims);
    assert_eq!(a["teams"], vec!["g1"]);
    assert_eq!(a["roles"], vec!["a", "x"]);
    assert_eq!(a["r"], vec!["y"]);
    check_mapping(&[("groups", "teams")], &json!({"groups": [" ", "\t", "\n"]}));
}

/// The same through a provider: a signed token with blank groups gets no blank team.
#[tokio::test]
async fn blank_groups_in_a_token_give_no_blank_team() {
    let server = Server::jwks().await;
    let provider = build_ok(with(jwt_config(&server), json!({"claims_mapping": {"groups": "teams"}})));
    let t = token(&KEYS.ec, "ec-1", &with(claims(), json!({"groups": ["", "ml", " "]})));
    let p = accepted(&provider, &t).await;
    assert_eq!(p.attributes.get("teams"), Some(&vec!["ml".to_string()]));
    let t = token(&KEYS.ec, "ec-1", &with(claims(), json!({"groups": [""]})));
    assert!(!accepted(&provider, &t).await.attributes.contains_key("teams"));
}

/// identity_roundtrip crash-e9186266: `percent_decoded` read `%+2` as the byte
/// 0x02 (`u8::from_str_radix` takes a sign), where its contract is `None` for
/// any `%` that does not start two hex digits.
#[test]
fn a_signed_escape_is_no_escape() {
    use tokengate::http::server::percent_decoded;
    assert_eq!(percent_decoded("s3\u{1}]%+2\u{1}"), None);
    for bad in ["%+5", "%-5", "%+", "% 5", "%5", "%G0"] {
        assert_eq!(percent_decoded(bad), None, "{bad:?}");
    }
    assert_eq!(percent_decoded("%2B5").as_deref(), Some("+5"));
}
