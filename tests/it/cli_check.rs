//! `tokengate check`: exit codes and JSON shapes operators script against,
//! driving the real binary against a real identity provider on 127.0.0.1.

use crate::fixtures::{run, run_with_stdin, tamper, write, Idp};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

fn yaml_for(idp: &Idp) -> String {
    format!(
        "provider_config:\n  type: oauth2_token\n  issuer: {iss}\n  audience: tokengate-dev\n  jwks:\n    uri: {jwks}\n  claims_mapping:\n    sub: roles\n    groups: teams\n    scope: scopes\n",
        iss = idp.url(),
        jwks = idp.issuer.jwks_uri()
    )
}

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {text}"))
}

fn args(config: &Path, token: Option<&str>) -> Vec<String> {
    let mut a = vec!["check".to_string(), "--config".to_string(), config.display().to_string()];
    if let Some(t) = token {
        a.push("--token".into());
        a.push(t.into());
    }
    a
}

#[tokio::test]
async fn valid_token_prints_principal_and_exits_0() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "gate.yaml", &yaml_for(&idp));
    let out = run(args(&config, Some(&idp.token("alice")))).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout_json(&out),
        json!({"principal": "alice", "attributes": {"roles": ["alice"], "teams": ["ml", "ops"], "scopes": ["read", "write"]}})
    );
}

#[tokio::test]
async fn token_from_first_line_of_stdin_with_or_without_bearer() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "gate.yaml", &yaml_for(&idp));
    let token = idp.token("bob");
    for input in [format!("{token}\nignored second line\n"), format!("Bearer {token}\n")] {
        let out = run_with_stdin(args(&config, None), Some(input)).await;
        assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout_json(&out)["principal"], "bob");
    }
}

#[tokio::test]
async fn rejected_token_exits_1_with_error_shape() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "gate.yaml", &yaml_for(&idp));
    let out = run(args(&config, Some(&idp.expired_token("carol")))).await;
    assert_eq!(out.status.code(), Some(1));
    let body = stdout_json(&out);
    assert_eq!(body["error"]["code"], "invalid_token");
    let message = body["error"]["message"].as_str().unwrap();
    let expected = format!(
        "Authentication required. Please provide a valid OAuth2 Bearer token from {}: token expired at ",
        idp.url()
    );
    assert!(message.starts_with(&expected), "the reason follows the provider's message: {message}");
    let detail = body["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("expired"), "{detail}");

    let out = run(args(&config, Some(&tamper(&idp.token("dave"))))).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_json(&out)["error"]["code"], "invalid_token");
}

#[tokio::test]
async fn unreachable_identity_provider_exits_3_not_1() {
    let idp = Idp::unreachable().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "gate.yaml", &yaml_for(&idp));
    let out = run(args(&config, Some(&idp.token("erin")))).await;
    assert_eq!(out.status.code(), Some(3), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let body = stdout_json(&out);
    assert_eq!(body["error"]["code"], "temporarily_unavailable");
    // Worded as serve words a 503 (one refusal wording for every front end, #21): not "send a token".
    assert_eq!(body["error"]["message"], "The identity service is temporarily unavailable; retry later");
}

#[tokio::test]
async fn config_errors_exit_2_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown-type.yaml", "provider_config:\n  type: saml\n", "unknown provider type `saml`"),
        ("typo.yaml", "provider_config:\n  type: custom\n  endpont: http://x\n", "endpont"),
        (
            "both.yaml",
            "provider_config:\n  type: oauth2_token\n  audience: a\n  jwks: {uri: 'http://127.0.0.1:1/k'}\n  introspection: {url: 'http://127.0.0.1:1/i', client_id: a, client_secret: b}\n",
            "provider_config",
        ),
        ("no-audience.yaml", "provider_config:\n  type: oauth2_token\n  jwks: {uri: 'http://127.0.0.1:1/k'}\n", "audience"),
        ("bad-url.yaml", "provider_config:\n  type: custom\n  endpoint: 'not a url'\n", "endpoint"),
        ("broken.yaml", "provider_config: [\n", "invalid YAML"),
    ];
    for (name, text, expected) in cases {
        let config = write(dir.path(), name, text);
        let out = run(args(&config, Some("x"))).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: stderr must name the file: {stderr}");
        assert!(stderr.contains(expected), "{name}: stderr must say `{expected}`: {stderr}");
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout for config errors");
    }
    let missing = run(args(&dir.path().join("absent.yaml"), Some("x"))).await;
    assert_eq!(missing.status.code(), Some(2));
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "c.yaml", "provider_config:\n  type: custom\n  endpoint: http://127.0.0.1:1/\n");
    let no_token = run_with_stdin(args(&config, None), Some(String::new())).await;
    assert_eq!(no_token.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("no token"));
    let bad_flag = run(vec!["check".into(), "--nope".into()]).await;
    assert_eq!(bad_flag.status.code(), Some(2));
}

#[tokio::test]
async fn json_and_toml_configs_by_extension() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let section = json!({
        "type": "oauth2_token", "issuer": idp.url(), "audience": "tokengate-dev",
        "jwks": {"uri": idp.issuer.jwks_uri()}
    });
    let json_cfg = write(dir.path(), "gate.json", &json!({ "provider_config": section }).to_string());
    let toml_cfg = write(
        dir.path(),
        "gate.toml",
        &format!(
            "[provider_config]\ntype = \"oauth2_token\"\nissuer = \"{}\"\naudience = \"tokengate-dev\"\n[provider_config.jwks]\nuri = \"{}\"\n",
            idp.url(),
            idp.issuer.jwks_uri()
        ),
    );
    let token = idp.token("frank");
    for cfg in [json_cfg, toml_cfg] {
        let out = run(args(&cfg, Some(&token))).await;
        assert_eq!(out.status.code(), Some(0), "{}: {}", cfg.display(), String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout_json(&out)["principal"], "frank");
    }
}

#[tokio::test]
async fn llama_stack_run_yaml_applies_its_default_audience() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let run_yaml = format!(
        "version: 2\nimage_name: demo\napis: [inference]\nproviders:\n  inference: []\nserver:\n  port: 8321\n  auth:\n    provider_config:\n      type: oauth2_token\n      issuer: {}\n      jwks:\n        uri: {}\n        key_recheck_period: 3600\n",
        idp.url(),
        idp.issuer.jwks_uri()
    );
    let config = write(dir.path(), "run.yaml", &run_yaml);
    let mut claims = Map::new();
    claims.insert("aud".into(), json!("llama-stack"));
    claims.insert("groups".into(), json!(["research"]));
    let token = idp.issuer.mint("gina", &claims, Duration::from_secs(300)).unwrap();
    let out = run(args(&config, Some(&token))).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Llama Stack's default claims_mapping: sub→roles, groups→teams.
    assert_eq!(
        stdout_json(&out),
        json!({"principal": "gina", "attributes": {"roles": ["gina"], "teams": ["research"]}})
    );

    // The dev audience is not Llama Stack's default: refused.
    let out = run(args(&config, Some(&idp.token("gina")))).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout_json(&out)["error"]["detail"].as_str().unwrap().contains("audience"));

    // #11: with that default mapping, `roles` holds user names; a route rule on
    // roles is named at start-up, once.
    let with_policy = format!(
        "{run_yaml}    route_policy:\n      - permit: {{paths: \"*\"}}\n        when: user with admin in roles\n        description: admins\n"
    );
    let config = write(dir.path(), "run-policy.yaml", &with_policy);
    let out = run(args(&config, Some(&token))).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = "route_policy rule 1 (\"admins\") tests `roles`, which the oauth2_token provider's claims_mapping \
                   fills from identifier claims (sub, username)";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
}

/// #20: `check` prints one JSON line and its errors one line each, whatever
/// the token's claims or the file's name hold: a line break, a terminal
/// escape (ESC, C1's CSI), a line separator or a bidirectional override
/// in a value is written as a `\uXXXX` escape, so the JSON is the same
/// document and a terminal acts on none of them.
#[tokio::test]
async fn hostile_values_stay_inside_one_line() {
    let forged = [
        "dev\nprincipal: admin",
        "x\r\n[ok  ] revocation",
        "\u{1b}[2Jroot",
        "\u{9b}2J",
        "a\u{2028}b\u{2029}c\u{85}d",
        "\u{7f}\t\u{202e}nimda\u{2066}",
    ];
    let on_one_line = |text: &str| {
        text.trim_end_matches('\n').lines().count() == 1
            && !text.chars().any(|c| c != '\n' && tokengate::ops::audit::needs_escape(c))
    };
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "gate.yaml", &yaml_for(&idp));
    let mut claims = Map::new();
    claims.insert("groups".into(), json!(forged));
    claims.insert("scope".into(), json!("read\u{2028}write"));
    let token = idp.issuer.mint("alice\u{2028}principal: admin", &claims, Duration::from_secs(300)).unwrap();
    let out = run(args(&config, Some(&token))).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(on_one_line(&text), "{text:?}");
    let body = stdout_json(&out);
    assert_eq!(body["principal"], "alice\u{2028}principal: admin", "the same values, escaped");
    assert_eq!(body["attributes"]["teams"], json!(forged));

    let mut claims = Map::new();
    claims.insert("iss".into(), json!(forged[1]));
    let out = run(args(&config, Some(&idp.issuer.mint("bob", &claims, Duration::from_secs(300)).unwrap()))).await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(on_one_line(&text), "{text:?}");
    assert!(stdout_json(&out)["error"]["detail"].as_str().unwrap().contains("[ok  ] revocation"), "{text}");

    // A config error quoting the file's name, and a usage error quoting the path.
    for name in forged {
        let path = dir.path().join(format!("{}.yaml", name.replace('/', "_")));
        let out = run(args(&path, Some("x"))).await;
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(on_one_line(&err), "{err:?}");
    }
    let mut with_path = args(&config, Some(&token));
    with_path.extend(["--path".to_string(), format!("/v1/{}", forged[0])]);
    let out = run(with_path).await;
    for text in [String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)] {
        assert!(text.is_empty() || on_one_line(&text), "{text:?}");
    }
}
