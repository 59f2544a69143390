use super::*;
use serde_json::json;

fn map(pairs: &[(&str, &str)]) -> ClaimsMapping {
    ClaimsMapping::new(pairs.iter().copied()).unwrap()
}

#[test]
fn nested_paths_and_escaped_dots() {
    let claims = json!({
        "realm_access": {"roles": ["admin", "user"]},
        "resource_access": {"my-app": {"roles": ["editor"]}},
        "a.b": "literal",
        "x": {"y.z": "escaped"}
    });
    let m = map(&[
        ("realm_access.roles", "roles"),
        ("resource_access.my-app.roles", "roles"),
        ("a.b", "exact"),
        ("x.y\\.z", "esc"),
    ]);
    let a = m.apply(&claims);
    assert_eq!(a["roles"], vec!["admin", "user", "editor"]);
    assert_eq!(a["exact"], vec!["literal"]);
    assert_eq!(a["esc"], vec!["escaped"]);
}

#[test]
fn the_nested_path_wins_over_a_top_level_key_spelled_like_it() {
    let claims = json!({"a.b": "top", "a": {"b": "nested"}});
    assert_eq!(map(&[("a.b", "v")]).apply(&claims)["v"], vec!["nested"], "as OGX");
    let claims = json!({"a.b": "top", "a": {"c": "other"}});
    assert_eq!(map(&[("a.b", "v")]).apply(&claims)["v"], vec!["top"], "the literal key when the path finds nothing");
}

#[test]
fn scope_splits_scalars_stringify_objects_skip() {
    let claims = json!({"scope": "read  write\tadmin", "n": 42, "b": true, "o": {"k": 1}, "l": ["x", 1, null, "y"]});
    let a = map(&[("scope", "scopes"), ("n", "num"), ("b", "flag"), ("o", "obj"), ("l", "list")]).apply(&claims);
    assert_eq!(a["scopes"], vec!["read", "write", "admin"]);
    assert_eq!(a["num"], vec!["42"]);
    assert_eq!(a["flag"], vec!["true"]);
    assert!(!a.contains_key("obj"));
    assert_eq!(a["list"], vec!["x", "y"]);
}

/// #11: `username: "mallory admin"` gave the role `admin`.
#[test]
fn identifiers_are_one_value_only_list_claims_split() {
    let claims = json!({"sub": "u1", "username": "mallory admin", "scope": "read write", "scp": "a b",
                        "groups_csv": "ml infra", "name": "Ada Lovelace"});
    let a = ClaimsMapping::oauth2_default().apply(&claims);
    assert_eq!(a["roles"], vec!["u1", "mallory admin"]);
    let a = map(&[("scope", "scopes"), ("scp", "scp"), ("groups_csv", "teams"), ("name", "names")]).apply(&claims);
    assert_eq!(a["scopes"], vec!["read", "write"]);
    assert_eq!(a["scp"], vec!["a", "b"]);
    assert_eq!(a["teams"], vec!["ml infra"], "not a list claim unless marked");
    assert_eq!(a["names"], vec!["Ada Lovelace"]);
    assert!(map(&[("sub", "roles")]).apply(&json!({"sub": "  "})).is_empty(), "blank is nothing");

    let marked: ClaimsMapping = serde_json::from_value(json!({
        "groups_csv": {"attribute": "teams", "split": true},
        "scope": {"attribute": "scopes", "split": false},
        "sub": "roles"
    }))
    .unwrap();
    let a = marked.apply(&claims);
    assert_eq!(a["teams"], vec!["ml", "infra"]);
    assert_eq!(a["scopes"], vec!["read write"]);
    assert_eq!(a["roles"], vec!["u1"]);
    assert_eq!(marked.rules().map(|(c, _)| c).collect::<Vec<_>>(), ["groups_csv", "scope", "sub"]);

    for (bad, needle) in [
        (json!({"x": {"split": true}}), "`attribute`"),
        (json!({"x": {"attribute": "a", "split": "yes"}}), "true or false"),
        (json!({"x": {"attribute": "a", "spilt": true}}), "unknown field `spilt`"),
        (json!({"x": 3}), "must be an attribute name"),
    ] {
        let e = serde_json::from_value::<ClaimsMapping>(bad).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
}

#[test]
fn identifier_sources_and_unknown_claims() {
    let m = ClaimsMapping::github_default();
    assert_eq!(m.identifier_sources("roles"), ["login"]);
    assert!(m.identifier_sources("teams").is_empty());
    assert_eq!(map(&[("user.email", "roles")]).identifier_sources("roles"), ["user.email"]);

    let m = map(&[("login", "teams"), ("organizations", "teams"), ("login", "roles"), ("orgs.x", "other")]);
    let claims = json!({"login": "octocat", "organizations": null});
    let (a, unknown) = m.apply_with_unknown(&claims, &["organizations"]);
    assert_eq!(a["roles"], vec!["octocat"]);
    assert!(!a.contains_key("teams"), "partly known is unknown");
    assert_eq!(unknown.into_iter().collect::<Vec<_>>(), ["teams"]);
    let (_, unknown) = m.apply_with_unknown(&claims, &["orgs"]);
    assert_eq!(unknown.into_iter().collect::<Vec<_>>(), ["other"]);
}

#[test]
fn several_claims_one_attribute_no_duplicates_missing_skipped() {
    let claims = json!({"groups": ["ml", "infra"], "team": "ml"});
    let a = map(&[("groups", "teams"), ("team", "teams"), ("missing", "teams"), ("gone", "other")]).apply(&claims);
    assert_eq!(a["teams"], vec!["ml", "infra"]);
    assert!(!a.contains_key("other"));
}

#[test]
fn defaults_match_llama_stack() {
    let claims = json!({"sub": "alice", "groups": ["g1"], "project": "p", "namespace": "ns"});
    let a = ClaimsMapping::oauth2_default().apply(&claims);
    assert_eq!(a["roles"], vec!["alice"]);
    assert_eq!(a["teams"], vec!["g1"]);
    assert_eq!(a["projects"], vec!["p"]);
    assert_eq!(a["namespaces"], vec!["ns"]);
}

#[test]
fn bad_paths_are_config_errors() {
    assert!(ClaimsMapping::new([("a..b", "x")]).is_err());
    assert!(ClaimsMapping::new([("", "x")]).is_err());
    assert!(ClaimsMapping::new([("a", " ")]).is_err());
}

#[test]
fn blank_list_items_are_skipped() {
    // Found by the claims_mapping fuzz target.
    let a = map(&[("groups", "teams")]).apply(&json!({"groups": ["g1", "", " ", "\t", "g2"]}));
    assert_eq!(a["teams"], vec!["g1", "g2"]);
    assert!(map(&[("groups", "teams")]).apply(&json!({"groups": [""]})).is_empty());
}

#[test]
fn non_object_claims_yield_nothing() {
    assert!(map(&[("a", "b")]).apply(&json!([1, 2])).is_empty());
}
