//! Outside review of the #20/#21 fixes (round 2): each test reproduces a
//! defect found by attacking the fixes with variants, and fails until it is
//! fixed. Each names the class it stands for.

use crate::fixtures::*;

const API_KEY: &str = "tg_example-key-do-not-use-in-production";
const API_KEY_ENTRY: &str = r#"{"type": "api_key", "keys": [{"hash": "sha256:552ffdc863eb87c78a8bd6044103539d5991b8230376082d375280600542a1d2", "principal": "demo"}]}"#;

/// #20 part 3, `.` spellings: PHP (php-fpm / php-cgi, as Caddy's
/// `php_fastcgi` feeds it) turns `.` (and ` `) in a variable name into `_`,
/// so a client's `X.Auth.Principal: admin` becomes
/// `$_SERVER['HTTP_X_AUTH_PRINCIPAL']` beside (and, in Caddy's random
/// environment order, about half the time instead of) tokengate's own. The
/// Caddy recipe's `request_header -X-Auth-*` / `-X-Auth_*` / `-X_Auth-*` /
/// `-X_Auth_*` does not match it and Go passes `.` in names, so the only
/// backstop is serve's refusal of client copies, which folds only `_` and
/// case. Seen end to end: Caddy 2.6 + php-cgi 8.2 on an open path without
/// a token printed `HTTP_X_AUTH_PRINCIPAL=admin` in 8 of 20 requests.
#[tokio::test]
async fn a_dot_spelling_of_an_identity_header_is_refused_like_an_underscore_one() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("provider_config: {API_KEY_ENTRY}\nopen_paths: ['/public/*']\nforward_auth: {{proxy: envoy}}\n");
    let config = load(&write(dir.path(), "c.yaml", &yaml));
    let server = serve_config(&config).await;
    let c = client();
    // The `_` spelling is refused today (the reference behaviour)...
    let res = c.get(format!("{}/public/x", server.base)).header("x_auth_principal", "admin").send().await.unwrap();
    assert_eq!(res.status(), 400, "baseline: `_` spelling refused");
    for name in
        ["x.auth.principal", "x-auth.principal", "x.auth-attributes", "x-auth-unknown.attributes", "x.auth.tenant"]
    {
        for (path, key) in [("/public/x", None), ("/private", Some(API_KEY))] {
            let mut req = c.get(format!("{}{path}", server.base)).header(name, "admin");
            if let Some(key) = key {
                req = req.header("x-api-key", key);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 400, "{name} on {path}: a PHP back end reads it as tokengate's own header");
        }
    }
    server.shutdown().await;
}

/// #20 (duplicate keys): the duplicate-key check of a JSON config parses it
/// as YAML and reports only a "duplicate entry" error; any other YAML error
/// skips the check, and serde_json then keeps the LAST copy. A raw C1
/// control character (U+0080..U+009F, valid in JSON strings, not printable
/// YAML) anywhere in the file is enough: the restrictive `route_policy`
/// written first is silently replaced by the permissive one after it.
#[test]
fn a_json_config_with_a_c1_character_still_refuses_duplicate_keys() {
    let dir = tempfile::tempdir().unwrap();
    let restrictive = r#"{"default": "forbid", "rules": [{"path": "/public*", "permit": "all"}]}"#;
    let open = r#"{"default": "permit", "rules": []}"#;
    let body = |realm: &str| {
        format!(
            r#"{{"realm": "{realm}", "provider_config": {API_KEY_ENTRY}, "route_policy": {restrictive}, "route_policy": {open}}}"#
        )
    };
    let plain = write(dir.path(), "plain.json", &body("x"));
    assert!(tokengate::Config::load(&plain).is_err(), "baseline: a duplicate route_policy is refused");
    let with_c1 = write(dir.path(), "c1.json", &body("x\u{81}"));
    let loaded = tokengate::Config::load(&with_c1);
    assert!(loaded.is_err(), "a duplicate route_policy loaded (last copy, permit-all) once the file held U+0081");
    // The same in a run.yaml written as JSON: two `server.auth`, the second without the route policy.
    let run = format!(
        r#"{{"image_name": "d{c1}", "server": {{"auth": {{"provider_config": {API_KEY_ENTRY}, "route_policy": {restrictive}}}, "auth": {{"provider_config": {API_KEY_ENTRY}}}}}}}"#,
        c1 = "\u{85}\u{99}"
    );
    let run = write(dir.path(), "run.json", &run);
    assert!(tokengate::Config::load(&run).is_err(), "a run.yaml (JSON) with two server.auth loaded the last one");
}

/// #20 part 4, SAML SSO: a classic token with `read:org` that is not
/// SSO-authorised for an organization enforcing SAML gets a 200 from
/// `/user/orgs` WITHOUT that organization, with `X-OAuth-Scopes: read:org`
/// and `X-GitHub-SSO: partial-results; organizations=<ids>` (GitHub's docs,
/// "Authenticating to the REST API": "If you requested data that could come
/// from multiple organizations, the API will not return results from the
/// organizations that require SAML SSO. The X-GitHub-SSO header will indicate
/// the ID of the organizations ..."). The scopes prove nothing then: the
/// contractor escapes `forbid: {attribute: teams, any_of: [contractors]}`.
#[tokio::test]
async fn github_saml_partial_results_leave_teams_unknown() {
    const CLASSIC: &str = "ghp_notssoauthorised0000000000000000000000";
    let github = wiremock::MockServer::start().await;
    mount_github_carol_in_staff(&github, &[("x-github-sso", "partial-results; organizations=21955855")]).await;
    let yaml = format!(
        "provider_config:\n  type: github_token\n  github_api_base_url: {}\nroute_policy:\n  default: permit\n  rules:\n    - path: /v1/*\n      forbid: {{attribute: teams, any_of: [contractors]}}\n",
        github.uri()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &yaml));
    let server = serve_config(&config).await;
    let res = client().get(format!("{}/v1/models", server.base)).bearer_auth(CLASSIC).send().await.unwrap();
    let teams = header(&res, "x-auth-attr-teams");
    assert_eq!(res.status(), 403, "a SAML-partial org list was read as complete (teams: {teams:?})");
    server.shutdown().await;
}

/// #20 part 1 (ambiguity refused): the `attributes_header` JSON with a key
/// written twice is read last-copy-wins (serde_json), so
/// `{"teams":["contractors"],"teams":["staff"]}` is teams=[staff] and a
/// forbid on contractors does not fire. The run.yaml reader refuses the same
/// shape (3232220); identity data should too.
#[tokio::test]
async fn an_attributes_header_with_a_duplicate_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "provider_config:\n  type: upstream_header\n  trusted_proxy_cidrs: [127.0.0.1]\n  attributes_header: x-forwarded-attributes\nroute_policy:\n  default: permit\n  rules:\n    - path: '*'\n      forbid: {attribute: teams, any_of: [contractors]}\n";
    let config = load(&write(dir.path(), "c.yaml", yaml));
    let server = serve_config(&config).await;
    let res = client()
        .get(format!("{}/x", server.base))
        .header("x-forwarded-user", "carol")
        .header("x-forwarded-attributes", r#"{"teams":["contractors"],"teams":["staff"]}"#)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let teams = header(&res, "x-auth-attr-teams");
    assert_ne!(status, 200, "duplicate key read as its last copy (teams: {teams:?})");
    server.shutdown().await;
}
