//! `route_policy` (issue #7): checked after authentication in the tower layer,
//! in `tokengate serve` and in `tokengate check`; a refusal is 403 with
//! `WWW-Authenticate: Bearer realm=…, error="insufficient_scope"`.

use crate::fixtures::*;
use serde_json::{json, Map};
use std::time::Duration;

fn config_yaml(idp: &Idp, policy: &str) -> String {
    format!(
        "realm: test\nprovider_config:\n{}{policy}",
        oauth2_yaml("  ", &idp.url(), &idp.issuer.jwks_uri(), &[("roles", "roles"), ("groups", "teams")])
    )
}

const POLICY: &str = "\
route_policy:
  default: forbid
  rules:
    - path: /admin*
      methods: [GET, POST]
      permit: {attribute: roles, any_of: [admin, ops]}
    - paths: [/v1/*]
      forbid: {attribute: teams, all_of: [contractors]}
    - path: /v1/*
      permit: all
";

fn token(idp: &Idp, sub: &str, roles: &[&str], groups: &[&str]) -> String {
    let mut claims = Map::new();
    claims.insert("roles".into(), json!(roles));
    claims.insert("groups".into(), json!(groups));
    idp.issuer.mint(sub, &claims, Duration::from_secs(600)).unwrap()
}

/// [`config_yaml`] with decisions audited to `audit.jsonl` beside the config.
fn audited_config_yaml(idp: &Idp, policy: &str) -> String {
    format!("{}audit:\n  output: audit.jsonl\n", config_yaml(idp, policy))
}

/// The `reason` of each of the `count` audit lines in `dir` (the stable
/// name of the refusal's `Reason`, `None` when allowed), once all are written.
async fn audited_reasons(dir: &std::path::Path, count: usize) -> Vec<Option<String>> {
    let path = dir.join("audit.jsonl");
    let lines = || std::fs::read_to_string(&path).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>();
    assert!(eventually(Duration::from_secs(5), || async { lines().len() >= count }).await, "{:?}", lines());
    let reason = |l: &String| {
        let line: serde_json::Value = serde_json::from_str(l).unwrap();
        line["reason"].as_str().map(str::to_string)
    };
    lines().iter().map(reason).collect()
}

fn reasons(names: &[Option<&str>]) -> Vec<Option<String>> {
    names.iter().map(|n| n.map(str::to_string)).collect()
}

const ADMIN_REFUSAL: &str = "Bearer realm=\"test\", error=\"insufficient_scope\", error_description=\"route GET /admin/users requires roles any of [admin, ops]\"";

#[tokio::test]
async fn layer_permits_and_forbids_by_route() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &audited_config_yaml(&idp, POLICY)));
    let base = serve_layer(&config).await;
    let c = client();

    let admin = token(&idp, "root", &["admin"], &[]);
    let res = c.get(format!("{base}/admin/users")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["principal"], "root");

    let user = token(&idp, "bob", &["viewer"], &["ml"]);
    let res = c.get(format!("{base}/admin/users")).bearer_auth(&user).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(header(&res, "www-authenticate").unwrap(), ADMIN_REFUSAL);
    let body = json(res).await;
    assert_eq!(body["error"]["code"], "insufficient_scope");
    // #21: an authenticated caller is told so, and which rule refused; never what to send.
    assert_eq!(
        body["error"]["message"],
        "Authenticated as bob, but not allowed to make this request: route GET /admin/users requires roles any of \
         [admin, ops]"
    );

    // Methods restrict the rule: DELETE /admin is matched by no rule, and the default forbids.
    let res = c.delete(format!("{base}/admin/users")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        "Bearer realm=\"test\", error=\"insufficient_scope\", error_description=\"route DELETE /admin/users is not permitted by any route_policy rule\""
    );

    // First match wins: the forbid for contractors comes before the general permit.
    let contractor = token(&idp, "carl", &[], &["contractors", "ml"]);
    let res = c.get(format!("{base}/v1/models")).bearer_auth(&contractor).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        "Bearer realm=\"test\", error=\"insufficient_scope\", error_description=\"route GET /v1/models is forbidden by route_policy rule 2 (teams all of [contractors])\""
    );
    let res = c.get(format!("{base}/v1/models")).bearer_auth(&user).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // Encoded traversal cannot slip past: refused (400) rather than matched against `/v1/*`
    // (which would permit it). `%2F` survives URL parsing; `%2e%2e` would be resolved by the client.
    for trick in ["/v1/%2F..%2Fadmin/users", "/v1/..;/admin/users", "/v1/%252e%252e/admin/users"] {
        let res = c.get(format!("{base}{trick}")).bearer_auth(&user).send().await.unwrap();
        assert_eq!(res.status(), 400, "{trick}");
    }

    // Authentication still comes first: no token is a 401, not a 403.
    let res = c.get(format!("{base}/admin/users")).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // Every refusal after authentication is the route policy's; the paths
    // refused before any credential was read are not decisions.
    let policy = Some("policy");
    assert_eq!(
        audited_reasons(dir.path(), 6).await,
        reasons(&[None, policy, policy, policy, None, Some("missing_credential")])
    );
}

#[tokio::test]
async fn serve_decides_on_the_original_method_and_path() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &audited_config_yaml(&idp, POLICY)));
    let server = serve_config(&config).await;
    let c = client();
    let user = token(&idp, "bob", &["viewer"], &[]);
    let admin = token(&idp, "root", &["ops"], &[]);

    let ask = |t: &str, method: &str, uri: &str| {
        c.get(format!("{}/auth", server.base))
            .bearer_auth(t)
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .send()
    };
    let res = ask(&user, "GET", "/admin/users?page=2").await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(header(&res, "www-authenticate").unwrap(), ADMIN_REFUSAL);
    assert_eq!(
        json(res).await["error"]["message"],
        "Authenticated as bob, but not allowed to make this request: route GET /admin/users requires roles any of \
         [admin, ops]"
    );

    let res = ask(&admin, "POST", "/admin/users").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "root");
    let res = ask(&user, "POST", "/v1/chat/completions").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(audited_reasons(dir.path(), 3).await, reasons(&[Some("policy"), None, None]));
    server.shutdown().await;
}

#[tokio::test]
async fn llama_stack_route_policy_in_a_run_yaml() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let run_yaml = format!(
        "version: 2\nimage_name: demo\nserver:\n  port: 8321\n  auth:\n    provider_config:\n      type: oauth2_token\n      issuer: {}\n      audience: tokengate-dev\n      jwks: {{uri: '{}'}}\n      claims_mapping: {{roles: roles}}\n    route_policy:\n      - permit: {{paths: [/v1/chat/completions]}}\n        when: user with developer in roles\n      - permit: {{paths: \"*\"}}\n        when: [user with admin in roles]\n        description: admins everywhere\n",
        idp.url(),
        idp.issuer.jwks_uri()
    );
    let config = load(&write(dir.path(), "run.yaml", &run_yaml));
    let base = serve_layer(&config).await;
    let c = client();
    let dev = token(&idp, "dev", &["developer"], &[]);
    let res = c.post(format!("{base}/v1/chat/completions/")).bearer_auth(&dev).send().await.unwrap();
    assert_eq!(res.status(), 200, "trailing slash normalized as Llama Stack does");
    let res = c.get(format!("{base}/v1/models")).bearer_auth(&dev).send().await.unwrap();
    assert_eq!(res.status(), 403, "a non-empty list denies what no rule permits");
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        "Bearer realm=\"tokengate\", error=\"insufficient_scope\", error_description=\"route GET /v1/models requires roles any of [admin]\""
    );
    let admin = token(&idp, "root", &["admin"], &[]);
    assert_eq!(c.get(format!("{base}/v1/models")).bearer_auth(&admin).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn check_applies_the_policy_to_method_and_path() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yaml", &config_yaml(&idp, POLICY));
    let cfg = path.display().to_string();
    let user = token(&idp, "bob", &["viewer"], &[]);

    let out = run(args(&["check", "--config", &cfg, "--token", &user, "--path", "/v1/models"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(args(&["check", "--config", &cfg, "--token", &user, "--path", "/admin/users"])).await;
    assert_eq!(out.status.code(), Some(1));
    let body: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(body["error"]["code"], "insufficient_scope");
    assert_eq!(body["error"]["detail"], "route GET /admin/users requires roles any of [admin, ops]");
    assert_eq!(body["error"]["reason"], "policy");
    // #21: the same wording as serve's and the layer's, never the missing-token message.
    assert_eq!(
        body["error"]["message"],
        "Authenticated as bob, but not allowed to make this request: route GET /admin/users requires roles any of \
         [admin, ops]"
    );
    let out =
        run(args(&["explain", "--config", &cfg, "--token", &user, "--path", "/admin/users", "--format", "json"])).await;
    let explained: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("explain's JSON");
    assert_eq!(explained["error"]["message"], "Authenticated as bob, but not allowed to make this request");
    assert_eq!(explained["error"]["reason"], "policy", "the typed reason, as the audit line says it");
    let checks = explained["checks"].as_array().expect("checks").iter();
    let policy: Vec<&str> = checks
        .filter(|c| c["check"].as_str().is_some_and(|c| c.starts_with("route_policy")))
        .filter_map(|c| c["detail"].as_str())
        .collect();
    assert_eq!(
        policy,
        [
            "rule 1: permit matches the route, but its condition (roles any of [admin, ops]) does not hold",
            "rule 2: forbid of other paths or methods: not this request",
            "rule 3: permit of other paths or methods: not this request",
            "route GET /admin/users requires roles any of [admin, ops]",
        ],
        "the default decided: why each rule did not, then the verdict"
    );
    let out =
        run(args(&["check", "--config", &cfg, "--token", &user, "--method", "delete", "--path", "/v1/models"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[tokio::test]
async fn policy_config_errors_name_the_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = "provider_config: {type: custom, endpoint: 'http://127.0.0.1:1/'}\n";
    let cases = [
        (
            "r1.yaml",
            "route_policy:\n  - path: /x\n    permit: {attribute: roles}\n",
            "[0].permit: `attribute` needs `any_of`, `all_of` or `none_of`",
        ),
        (
            "r2.yaml",
            "route_policy:\n  rules:\n    - path: admin\n      permit: all\n",
            "rules[0].path[0]: `admin` must start with `/`",
        ),
        ("r3.yaml", "route_policy:\n  - permit: {paths: '*'}\n    when: user is admin\n", "is not a route condition"),
        ("r4.yaml", "route_policy: {default: allow}\n", "`default` must be `permit` or `forbid`"),
    ];
    for (name, policy, expected) in cases {
        let path = write(dir.path(), name, &format!("{base}{policy}"));
        let out = run(args(&["check", "--config", &path.display().to_string(), "--token", "x"])).await;
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = stderr(&out);
        assert!(err.contains(name) && err.contains("`route_policy`") && err.contains(expected), "{name}: {err}");
    }
}

/// #11 end to end: a stand-in GitHub that answers 403 on /user/orgs (a token
/// without read:org). The contractor's organizations are unknown, so the
/// `forbid` on teams refuses instead of letting the token choose "no teams";
/// where no rule reads teams the request passes, and says teams is unknown.
/// #20: the same for a fine-grained token, whose 200 lists only the
/// organizations it was granted (here not `contractors`) and has no scopes.
#[tokio::test]
async fn github_without_read_org_cannot_escape_a_forbid_on_teams() {
    use wiremock::matchers::{header as has_header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    const NO_READ_ORG: &str = "ghp_noreadorg000000000000000000000000000";
    const WITH_READ_ORG: &str = "ghp_withreadorg0000000000000000000000000";
    const FINE_GRAINED: &str = "github_pat_11AAAAAAA0granted_only_staff000000000000000000000000000000000000000000000";
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user/orgs"))
        .and(has_header("authorization", format!("Bearer {NO_READ_ORG}").as_str()))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"message": "Resource not accessible by personal access token"})),
        )
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/orgs"))
        .and(has_header("authorization", format!("Bearer {FINE_GRAINED}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"login": "staff"}])))
        .mount(&github)
        .await;
    // WITH_READ_ORG, and every other token, after the two above.
    mount_github_carol_in_staff(&github, &[]).await;
    let yaml = format!(
        "realm: test\nprovider_config:\n  type: github_token\n  github_api_base_url: {}\nroute_policy:\n  default: permit\n  rules:\n    - path: /v1/*\n      forbid: {{attribute: teams, all_of: [contractors]}}\n",
        github.uri()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &yaml));
    let server = serve_config(&config).await;
    let c = client();

    let res = c.get(format!("{}/v1/models", server.base)).bearer_auth(NO_READ_ORG).send().await.unwrap();
    assert_eq!(res.status(), 403, "unknown organizations escaped the forbid");
    let refusal = header(&res, "www-authenticate").unwrap();
    assert!(refusal.contains("teams could not be determined"), "{refusal}");

    let res = c.get(format!("{}/v1/models", server.base)).bearer_auth(FINE_GRAINED).send().await.unwrap();
    assert_eq!(res.status(), 403, "a fine-grained token's partial list escaped the forbid");
    assert!(header(&res, "www-authenticate").unwrap().contains("teams could not be determined"));

    let res = c.get(format!("{}/public", server.base)).bearer_auth(NO_READ_ORG).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-unknown-attributes").unwrap(), "teams");
    assert!(header(&res, "x-auth-attr-teams").is_none());
    assert_eq!(header(&res, "x-auth-attributes").unwrap(), r#"{"roles":["carol"]}"#);
    let body = json(res).await;
    assert_eq!(body["unknown_attributes"], json!(["teams"]));

    let res = c.get(format!("{}/v1/models", server.base)).bearer_auth(WITH_READ_ORG).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-unknown-attributes").as_deref(), Some(""), "always sent, empty when all is known");
    assert_eq!(header(&res, "x-auth-attr-teams").unwrap(), "staff");
    assert!(json(res).await.get("unknown_attributes").is_none(), "the usual JSON shape is unchanged");
    server.shutdown().await;
}
