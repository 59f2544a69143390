use super::*;
use serde_json::json;
use serde_json::Value;

fn who(attrs: &[(&str, &[&str])]) -> Principal {
    Principal::new("p").with_attributes(
        attrs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
    )
}

fn policy(v: Value) -> RoutePolicy {
    RoutePolicy::from_value(&v).unwrap()
}

#[test]
fn first_match_wins_with_conditions() {
    let p = policy(json!({"rules": [
        {"path": "/admin*", "methods": ["GET"], "permit": {"attribute": "roles", "any_of": ["admin", "ops"]}},
        {"paths": ["/v1/*"], "forbid": {"attribute": "teams", "all_of": ["contractors"]}},
        {"path": "/v1/*", "permit": "all"},
    ]}));
    let admin = who(&[("roles", &["admin"])]);
    let nobody = who(&[]);
    assert!(p.evaluate("GET", "/admin/users", &admin).is_permit());
    let d = p.evaluate("GET", "/admin", &nobody);
    assert_eq!(d.reason, "route GET /admin requires roles any of [admin, ops]");
    assert!(!p.evaluate("POST", "/admin", &admin).is_permit(), "methods restrict the rule");
    let contractor = who(&[("teams", &["contractors", "ml"])]);
    let d = p.evaluate("GET", "/v1/models", &contractor);
    assert_eq!((d.effect, d.rule), (Effect::Forbid, Some(1)));
    assert!(p.evaluate("get", "/v1/models", &nobody).is_permit());
    let d = p.evaluate("GET", "/other", &admin);
    assert_eq!(d.reason, "route GET /other is not permitted by any route_policy rule");
}

#[test]
fn llama_stack_shape() {
    let p = policy(json!([
        {"permit": {"paths": "/v1/chat/completions"}, "when": "user with developer in roles"},
        {"permit": {"paths": ["/v1/files*", "/v1/models*"]}, "when": ["user with user in roles"]},
        {"forbid": {"paths": "*"}, "unless": "user with admin in roles", "description": "admins only"},
        {"permit": {"paths": "regex:/v1/(a|b)/"}},
    ]));
    assert!(p.evaluate("POST", "/v1/chat/completions/", &who(&[("roles", &["developer"])])).is_permit());
    assert!(p.evaluate("GET", "/v1/files/x", &who(&[("roles", &["user"])])).is_permit());
    let d = p.evaluate("GET", "/v1/files/x", &who(&[]));
    assert_eq!(
        d.reason,
        "route GET /v1/files/x is forbidden by route_policy rule 3 (\"admins only\") (roles none of [admin])"
    );
    assert!(p.evaluate("GET", "/v1/a/x", &who(&[("roles", &["admin"])])).is_permit());
    assert!(!p.evaluate("GET", "/elsewhere", &who(&[("roles", &["admin"])])).is_permit(), "bare list: default deny");
    assert!(RoutePolicy::from_value(&json!([])).unwrap().is_permit_all());
}

#[test]
fn not_in_and_unless_not_in() {
    let p = policy(json!([{"permit": {"paths": "*"}, "when": "user with banned not in roles"}]));
    assert!(p.evaluate("GET", "/", &who(&[])).is_permit());
    assert!(!p.evaluate("GET", "/", &who(&[("roles", &["banned"])])).is_permit());
}

#[test]
fn default_permit() {
    let p = policy(json!({"default": "permit", "rules": [
        {"path": "/admin", "forbid": "all"},
        {"path": "/ops*", "forbid": {"attribute": "roles", "none_of": ["ops", "admin"]}},
    ]}));
    assert!(p.evaluate("GET", "/x", &who(&[])).is_permit());
    assert!(!p.evaluate("GET", "/admin/", &who(&[])).is_permit());
    assert!(p.evaluate("GET", "/ops/x", &who(&[("roles", &["admin"])])).is_permit());
    let d = p.evaluate("GET", "/ops/x", &who(&[("roles", &["dev"])]));
    assert_eq!(d.reason, "route GET /ops/x is forbidden by route_policy rule 2 (roles none of [ops, admin])");
    // Under `default: permit`, permit rules alone cannot refuse anything.
    let p =
        policy(json!({"default": "permit", "rules": [{"path": "/a", "permit": {"attribute": "r", "any_of": ["x"]}}]}));
    assert!(p.is_permit_all());
}

#[test]
fn normalization_and_traversal() {
    assert_eq!(normalize_path("//admin//x").unwrap(), "/admin/x");
    assert_eq!(normalize_path("//admin//x/").unwrap(), "/admin/x/");
    assert_eq!(normalize_path("/adm%69n").unwrap(), "/admin");
    assert!(normalize_path("/v1/../admin").is_err());
    assert!(normalize_path("/v1/%2e%2e/admin").is_err());
    assert!(normalize_path("/v1/%252e%252e/admin").is_err());
    assert!(normalize_path("/v1%2fadmin").is_err());
    let p = policy(json!({"default": "permit", "rules": [{"path": "/admin*", "forbid": "all"}]}));
    assert!(!p.evaluate("GET", "//admin", &who(&[])).is_permit());
    assert!(!p.evaluate("GET", "/adm%69n", &who(&[])).is_permit());
    let d = p.evaluate("GET", "/x/../admin", &who(&[]));
    assert!(!d.is_permit() && d.reason.contains("`..` segment"), "{}", d.reason);
    for trick in ["/x/..;/admin", "/admin;x=1", "/admin.", "/admin%20"] {
        assert!(!p.evaluate("GET", trick, &who(&[])).is_permit(), "{trick}");
    }
}

#[test]
fn every_reading_of_case_and_trailing_slash_must_be_permitted() {
    let p = policy(json!({"default": "forbid", "rules": [
        {"path": "/admin/*", "forbid": {"attribute": "roles", "none_of": ["admin"]}},
        {"path": "/v1/*", "methods": ["GET"], "permit": "all"},
        {"path": "/v1/*", "forbid": {"attribute": "roles", "none_of": ["admin"]}},
        {"path": "/v1/models", "permit": "all"},
        {"path": "*", "permit": "all"},
    ]}));
    let user = who(&[("roles", &["user"])]);
    for (method, path) in [
        ("GET", "/ADMIN/users"),
        ("GET", "/Admin/users"),
        ("GET", "/admin/"),
        ("GET", "/admin"),
        ("GET", "//admin//"),
        ("DELETE", "/v1/"),
        ("DELETE", "/v1"),
        ("DELETE", "/V1/x"),
    ] {
        assert!(!p.evaluate(method, path, &user).is_permit(), "{method} {path}");
    }
    let p2 =
        policy(json!([{"permit": {"paths": "/k*"}, "when": "user with admin in roles"}, {"permit": {"paths": "*"}}]));
    assert!(p2.evaluate("GET", "/x", &user).is_permit());
    assert!(p.evaluate("GET", "/v1/models/", &user).is_permit(), "exact rules ignore a trailing slash");
    assert!(p.evaluate("GET", "/public/x", &user).is_permit());
}

#[test]
fn capitalised_rules_hold_on_case_insensitive_back_ends_and_allow_lists_still_allow() {
    let p = policy(json!([
        {"forbid": {"paths": ["/Admin*", "/v1/files*"]}, "unless": "user with admin in roles"},
        {"permit": {"paths": "regex:^/v1/agents/[A-Za-z0-9_-]+/session$"}},
        {"permit": {"paths": "/v1/Admin/*"}, "when": "user with admin in roles"},
        {"permit": {"paths": "/v1/models/meta-llama/Llama-3.2-3B-Instruct"}},
    ]));
    let (user, admin) = (who(&[("roles", &["user"])]), who(&[("roles", &["admin"])]));
    for path in ["/admin/users", "/ADMIN/Users", "/aDmin/x", "/Admin/Users", "/V1/FILES/abc"] {
        assert!(!p.evaluate("GET", path, &user).is_permit(), "{path}");
    }
    assert!(p.evaluate("GET", "/v1/agents/agent_1/session", &user).is_permit(), "anchored regex permit");
    assert!(p.evaluate("GET", "/v1/Admin/x", &admin).is_permit(), "capitalised permit");
    assert!(!p.evaluate("GET", "/v1/admin/x", &user).is_permit());
    assert!(p.evaluate("GET", "/v1/models/meta-llama/Llama-3.2-3B-Instruct", &user).is_permit());
    let allow_list = policy(json!({"default": "forbid", "rules": [
        {"path": "/v1/models", "methods": ["GET"], "permit": "all"},
        {"path": "/v1/models/*", "permit": "all"},
    ]}));
    assert!(!allow_list.evaluate("POST", "/v1/models/", &user).is_permit(), "`/v1/models/` is `/v1/models`");
    assert!(allow_list.evaluate("GET", "/v1/models/", &user).is_permit());
    assert!(allow_list.evaluate("POST", "/v1/models/x", &user).is_permit());
    let ogx = policy(json!([{"permit": {"paths": ["/v1/files/*"]}}]));
    assert!(!ogx.evaluate("GET", "/v1/files/", &user).is_permit());
    let head =
        policy(json!({"default": "permit", "rules": [{"path": "/secret", "methods": ["GET"], "forbid": "all"}]}));
    assert!(!head.evaluate("HEAD", "/secret", &user).is_permit(), "HEAD runs the GET handler");
}

#[test]
fn a_conditional_permit_shadowed_by_an_unconditional_one_is_named() {
    let p = policy(json!([
        {"permit": {"paths": "/admin*"}, "when": "user with admin in roles", "description": "admins"},
        {"permit": {"paths": "/v1/*"}},
        {"permit": {"paths": "*"}},
    ]));
    let warnings = p.lint();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("rule 1 (\"admins\")") && warnings[0].contains("rule 3"), "{warnings:?}");
    let fine = policy(json!([
        {"permit": {"paths": "/admin*"}, "when": "user with admin in roles"},
        {"permit": {"paths": "/v1/*"}},
    ]));
    assert!(fine.lint().is_empty(), "{:?}", fine.lint());
    let methods = policy(json!({"rules": [
        {"path": "/x", "methods": ["DELETE"], "permit": {"attribute": "roles", "any_of": ["admin"]}},
        {"path": "/x", "methods": ["GET"], "permit": "all"},
    ]}));
    assert!(methods.lint().is_empty());
}

/// #21: the lint follows the rules' real order: a `forbid` between the conditional permit
/// and the catch-all refuses whoever fails the condition, so there is nothing to warn about.
#[test]
fn a_forbid_between_a_conditional_permit_and_the_catch_all_is_a_real_refusal() {
    let guarded = policy(json!([
        {"permit": {"paths": "/admin*"}, "when": "user with admin in roles"},
        {"forbid": {"paths": "/admin*"}},
        {"permit": {"paths": "*"}},
    ]));
    assert!(guarded.lint().is_empty(), "{:?}", guarded.lint());
    let admin = who(&[("roles", &["admin"])]);
    let dev = who(&[("roles", &["dev"])]);
    assert!(guarded.evaluate("GET", "/admin/users", &admin).is_permit());
    assert!(!guarded.evaluate("GET", "/admin/users", &dev).is_permit(), "the forbid does refuse");
    let forbid_everything = policy(json!({"rules": [
        {"path": "/admin*", "permit": {"attribute": "roles", "any_of": ["admin"]}},
        {"path": "*", "forbid": "all"},
        {"path": "*", "permit": "all"},
    ]}));
    assert!(forbid_everything.lint().is_empty(), "{:?}", forbid_everything.lint());
    // A forbid of other requests changes nothing for these: the warning stays.
    let elsewhere = policy(json!({"rules": [
        {"path": "/admin*", "methods": ["GET"], "permit": {"attribute": "roles", "any_of": ["admin"]}},
        {"path": "/billing*", "forbid": "all"},
        {"path": "/admin*", "methods": ["DELETE"], "forbid": "all"},
        {"path": "*", "permit": "all"},
    ]}));
    assert_eq!(elsewhere.lint().len(), 1, "{:?}", elsewhere.lint());
}

/// #11: an attribute the provider could not determine is on the refusing
/// side of every condition that reads it: plain, negated and `unless`.
#[test]
fn unknown_attributes_refuse_whatever_the_form() {
    let contractor_unknown = who(&[("roles", &["dev"])]).with_unknown_attributes(["teams"]);
    let forbid = policy(json!({"default": "permit", "rules": [
        {"path": "/v1/*", "forbid": {"attribute": "teams", "all_of": ["contractors"]}},
    ]}));
    let d = forbid.evaluate("GET", "/v1/models", &contractor_unknown);
    assert_eq!((d.effect, d.rule), (Effect::Forbid, Some(0)));
    assert!(d.reason.contains("teams could not be determined"), "{}", d.reason);
    assert!(forbid.evaluate("GET", "/v1/models", &who(&[("teams", &[])])).is_permit(), "known empty passes");

    // Negated forms: `none_of`, `not in`, `unless`, in forbid and permit rules alike.
    for rules in [
        json!([{"permit": {"paths": "*"}, "when": "user with contractors not in teams"}]),
        json!([{"path": "/*", "permit": {"attribute": "teams", "none_of": ["contractors"]}}]),
        json!([{"forbid": {"paths": "*"}, "unless": "user with staff in teams"}, {"permit": {"paths": "*"}}]),
        json!([{"forbid": {"paths": "*"}, "when": "user with contractors in teams"}, {"permit": {"paths": "*"}}]),
        json!([{"path": "/*", "forbid": {"attribute": "teams", "none_of": ["staff"]}}, {"permit": {"paths": "*"}}]),
        json!([{"permit": {"paths": "*"}, "unless": "user with contractors in teams"}]),
        json!([{"permit": {"paths": "*"}, "unless": ["user with dev in roles", "user with contractors in teams"]}]),
    ] {
        let p = policy(rules.clone());
        assert!(!p.evaluate("GET", "/x", &contractor_unknown).is_permit(), "{rules}");
        let known = who(&[("roles", &["dev"]), ("teams", &["staff"])]);
        assert!(p.evaluate("GET", "/x", &known).is_permit(), "{rules} with teams known");
    }

    // A rule that does not read the unknown attribute is unaffected.
    let p = policy(json!([{"permit": {"paths": "*"}, "when": "user with dev in roles"}]));
    assert!(p.evaluate("GET", "/x", &contractor_unknown).is_permit());
    // A permit skipped for an unknown attribute says why.
    let p = policy(json!([{"permit": {"paths": "*"}, "when": "user with staff in teams"}]));
    let d = p.evaluate("GET", "/x", &contractor_unknown);
    assert_eq!(d.reason, "route GET /x requires teams any of [staff] (teams could not be determined)");
}

/// Llama Stack's `unless: [a, b]` forbids unless *both* hold
/// (`not matches_conditions`); it used to compile to (not a) and (not b).
#[test]
fn unless_with_several_conditions_is_not_all() {
    let p = policy(json!([
        {"forbid": {"paths": "*"}, "unless": ["user with admin in roles", "user with ops in teams"]},
        {"permit": {"paths": "*"}},
    ]));
    assert!(p.evaluate("GET", "/x", &who(&[("roles", &["admin"]), ("teams", &["ops"])])).is_permit());
    let d = p.evaluate("GET", "/x", &who(&[("roles", &["admin"])]));
    assert!(!d.is_permit(), "admin alone is not admin and ops");
    assert!(d.reason.contains("not (roles any of [admin] and teams any of [ops])"), "{}", d.reason);
    assert!(!p.evaluate("GET", "/x", &who(&[])).is_permit());
}

#[test]
fn rules_testing_identifier_attributes_are_named() {
    let p = policy(json!([
        {"permit": {"paths": "/admin*"}, "when": "user with admin in roles", "description": "admins"},
        {"path": "/v1/*", "forbid": {"attribute": "teams", "all_of": ["contractors"]}},
    ]));
    let w = p.identifier_warnings(&ClaimsMapping::oauth2_default(), "oauth2_token");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("route_policy rule 1 (\"admins\") tests `roles`"), "{}", w[0]);
    assert!(w[0].contains("(sub, username)"), "{}", w[0]);
    let safe = ClaimsMapping::new([("realm_access.roles", "roles"), ("groups", "teams")]).unwrap();
    assert!(p.identifier_warnings(&safe, "oauth2_token").is_empty());
    assert_eq!(p.identifier_warnings(&ClaimsMapping::github_default(), "github_token").len(), 1);
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        (json!([{"path": "/x"}]), "[0]: one of `permit` or `forbid` is required"),
        (
            json!([{"path": "/x", "permit": "all", "forbid": "all"}]),
            "[0]: `permit` and `forbid` are mutually exclusive",
        ),
        (json!({"rules": [{"path": "x", "permit": "all"}]}), "rules[0].path[0]: `x` must start with `/`"),
        (
            json!([{"path": "/x", "permit": {"attribute": "roles"}}]),
            "[0].permit: `attribute` needs `any_of`, `all_of` or `none_of`",
        ),
        (
            json!([{"path": "/x", "permit": {"attribute": "r", "any_of": ["a"], "none_of": ["b"]}}]),
            "mutually exclusive",
        ),
        (json!([{"path": "/x", "permit": {"attribute": "roles", "any_of": []}}]), "[0].permit.any_of: is empty"),
        (
            json!([{"path": "/x", "methods": ["GE T"], "permit": "all"}]),
            "[0].methods[0]: \"GE T\" is not an HTTP method",
        ),
        (
            json!([{"permit": {"paths": "*"}, "when": "admins only"}]),
            "[0].when[0]: \"admins only\" is not a route condition",
        ),
        (json!([{"permit": "all"}]), "[0]: no paths"),
        (json!([{"path": "/x", "permit": "all", "role": "x"}]), "[0].role: unknown field"),
        (json!({"default": "allow"}), "`default` must be `permit` or `forbid`"),
        (json!([{"path": "/a*b", "permit": "all"}]), "`*` is allowed only at the end"),
        (json!([{"path": "regex:(", "permit": "all"}]), "is not a valid regular expression"),
    ];
    for (value, expected) in cases {
        let e = RoutePolicy::from_value(&value).err().unwrap_or_else(|| panic!("{value} should fail"));
        assert!(e.starts_with(expected) || e.contains(expected), "{value}: {e}");
    }
}

/// OGX's owner conditions load and evaluate as OGX does for a resource
/// without an owner, which a route is.
#[test]
fn owner_conditions_are_constants_for_routes() {
    let alice = Principal::new("alice").with_attributes([("roles".into(), vec!["dev".into()])].into());
    let decide = |rules: serde_json::Value| {
        RoutePolicy::from_value(&rules).unwrap().evaluate("GET", "/v1/models", &alice).is_permit()
    };
    // `user is owner` and `user in owners roles` never hold for a route.
    assert!(!decide(serde_json::json!([{"permit": {"paths": "*"}, "when": "user is owner"}])));
    assert!(!decide(serde_json::json!([{"permit": {"paths": "*"}, "when": ["user in owners roles"]}])));
    // Their negations and `resource is unowned` always do.
    assert!(decide(serde_json::json!([{"permit": {"paths": "*"}, "when": "resource is unowned"}])));
    assert!(decide(serde_json::json!([{"permit": {"paths": "*"}, "when": "user is not owner"}])));
    // `unless` with an owner condition that never holds: the rule applies.
    assert!(decide(
        serde_json::json!([{"permit": {"paths": "*"}, "unless": ["user is owner", "user with x in roles"]}])
    ));
    // `unless` with only always-true owner conditions: the rule never applies.
    assert!(!decide(serde_json::json!([{"permit": {"paths": "*"}, "unless": "resource is unowned"}])));
    // Mixed with an attribute condition, the attribute still decides.
    assert!(decide(
        serde_json::json!([{"permit": {"paths": "*"}, "when": ["resource is unowned", "user with dev in roles"]}])
    ));
    assert!(!decide(
        serde_json::json!([{"permit": {"paths": "*"}, "when": ["resource is unowned", "user with ops in roles"]}])
    ));
}

/// Without a user a condition cannot be tested: a conditioned forbid refuses,
/// a conditioned permit does not permit, and each says so.
#[test]
fn anonymous_requests_and_conditions() {
    let p = policy(json!([
        {"forbid": {"paths": "/admin*"}, "unless": "user with admin in roles"},
        {"permit": {"paths": "/models"}, "when": "user with dev in roles"},
        {"permit": {"paths": "/health"}},
    ]));
    let d = p.evaluate_anonymous("GET", "/admin/x");
    assert!(!d.is_permit());
    assert_eq!(
        d.reason,
        "route GET /admin/x is forbidden by route_policy rule 1 (roles none of [admin]): there is no user to test it on"
    );
    let d = p.evaluate_anonymous("GET", "/models");
    assert_eq!(d.reason, "route GET /models requires roles any of [dev] (there is no user)");
    assert!(p.evaluate_anonymous("GET", "/health").is_permit());
}

/// #21: `explain --path` shows why each rule before the deciding one did not decide.
#[test]
fn the_rule_story_says_why_each_earlier_rule_did_not_decide() {
    let p = policy(json!({"default": "forbid", "rules": [
        {"path": "/billing*", "permit": "all"},
        {"path": "/v1/*", "methods": ["GET"], "permit": {"attribute": "roles", "any_of": ["admin"]}, "description": "admins"},
        {"path": "/v1/*", "forbid": {"attribute": "teams", "any_of": ["contractors"]}},
        {"path": "/v1/*", "permit": "all"},
    ]}));
    let dev = who(&[("roles", &["dev"])]);
    let verdict = p.evaluate("GET", "/v1/models", &dev);
    assert_eq!(verdict.rule, Some(3), "{}", verdict.reason);
    let story = p.rule_story("GET", "/v1/models", Some(&dev), &verdict);
    assert_eq!(
        story,
        [
            "rule 1: permit of other paths or methods: not this request",
            "rule 2 (\"admins\"): permit matches the route, but its condition (roles any of [admin]) does not hold",
            "rule 3: forbid matches the route, but its condition (teams any of [contractors]) does not hold",
        ]
    );
    let default = p.evaluate("GET", "/elsewhere", &dev);
    assert_eq!(p.rule_story("GET", "/elsewhere", Some(&dev), &default).len(), 4, "the default decided: every rule");
}
