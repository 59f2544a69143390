//! The audit log (issue #7): one JSON line per decision from the layer,
//! `tokengate serve` and `tokengate check`; never the token.

use crate::fixtures::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const KEY: &str = "tg_audit-key-abcdefghijklmnop";

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn chain_yaml(idp: &Idp) -> String {
    format!(
        "realm: test\nproviders:\n{}{}audit:\n  output: audit.jsonl\nroute_policy:\n  default: permit\n  rules:\n    - path: /admin*\n      forbid: {{attribute: roles, none_of: [admin]}}\n",
        list_item(&api_key_yaml("    ", &[(KEY, "ci-bot", &["deployer"])])),
        list_item(&oauth2_yaml("    ", &idp.url(), &idp.issuer.jwks_uri(), &[("groups", "teams")])),
    )
}

fn sha_prefix(token: &str) -> String {
    hex::encode(tokengate_kit::token_hash(token))[..12].to_string()
}

#[tokio::test]
async fn serve_writes_one_line_per_decision_without_tokens() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &chain_yaml(&idp)));
    let audit_path = dir.path().join("audit.jsonl");
    let server = serve_config(&config).await;
    let c = client();
    let jwt = idp.token("alice");
    let expired = idp.expired_token("alice");
    let url = |p: &str| format!("{}{p}", server.base);

    assert_eq!(c.get(url("/v1/models?access_token=nope")).bearer_auth(&jwt).send().await.unwrap().status(), 200);
    assert_eq!(c.post(url("/v1/x")).header("x-api-key", KEY).send().await.unwrap().status(), 200);
    assert_eq!(c.get(url("/v1/models")).bearer_auth(&expired).send().await.unwrap().status(), 401);
    assert_eq!(c.get(url("/admin")).bearer_auth(&jwt).send().await.unwrap().status(), 403);
    assert_eq!(c.get(url("/v1/models")).send().await.unwrap().status(), 401);
    assert_eq!(c.get(url("/healthz")).send().await.unwrap().status(), 200, "not a decision");

    let expected = 5;
    assert!(eventually(Duration::from_secs(5), || async { lines(&audit_path).len() >= expected }).await);
    server.shutdown().await;
    let text = std::fs::read_to_string(&audit_path).unwrap();
    for secret in [jwt.as_str(), expired.as_str(), KEY] {
        assert!(!text.contains(secret), "a token leaked into the audit log");
        // Not even a recognizable piece of it (the signature part of a JWT, the key's tail).
        let tail = &secret[secret.len() - 16..];
        assert!(!text.contains(tail), "part of a token leaked into the audit log");
    }
    assert!(!text.contains("access_token"), "queries never reach the audit log");
    let l = lines(&audit_path);
    assert_eq!(l.len(), expected, "{text}");
    for line in &l {
        let t = line["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(t).is_ok(), "{t}");
    }

    assert_eq!(l[0]["outcome"], "allow");
    assert_eq!(l[0]["status"], 200);
    assert_eq!(l[0]["principal"], "alice");
    assert_eq!(l[0]["provider"], "oauth2_token");
    assert_eq!(l[0]["provider_index"], 1);
    assert_eq!(l[0]["method"], "GET");
    assert_eq!(l[0]["route"], "/v1/models");
    assert!(l[0]["reason"].is_null() && l[0]["detail"].is_null() && l[0]["code"].is_null());
    assert_eq!(l[0]["token_sha256_prefix"], sha_prefix(&jwt));

    assert_eq!((l[1]["principal"].as_str(), l[1]["provider"].as_str()), (Some("ci-bot"), Some("api_key")));
    assert_eq!((l[1]["method"].as_str(), l[1]["provider_index"].as_u64()), (Some("POST"), Some(0)));
    assert_eq!(l[1]["token_sha256_prefix"], sha_prefix(KEY));

    assert_eq!((l[2]["outcome"].as_str(), l[2]["status"].as_u64()), (Some("deny"), Some(401)));
    assert_eq!(l[2]["code"], "invalid_token");
    assert!(l[2]["principal"].is_null());
    assert_eq!(l[2]["reason"], "claim", "{}", l[2]);
    assert!(l[2]["detail"].as_str().unwrap().starts_with("token expired at "), "{}", l[2]);

    assert_eq!((l[3]["status"].as_u64(), l[3]["code"].as_str()), (Some(403), Some("insufficient_scope")));
    assert_eq!(l[3]["reason"], "policy");
    assert_eq!(l[3]["detail"], "route GET /admin is forbidden by route_policy rule 1 (roles none of [admin])");
    // #21: a refusal after authentication names who was refused.
    assert_eq!(l[3]["principal"], "alice", "{}", l[3]);

    assert!(l[4]["token_sha256_prefix"].is_null());
    assert_eq!(l[4]["provider"], "chain");
    assert_eq!(l[4]["reason"], "missing_credential", "{}", l[4]);
    assert!(l[4]["detail"].as_str().unwrap().starts_with("no credentials"), "{}", l[4]);
}

#[tokio::test]
async fn the_layer_audits_too() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &chain_yaml(&idp)));
    let audit_path = dir.path().join("audit.jsonl");
    let base = serve_layer(&config).await;
    let res = client().get(format!("{base}/whoami")).header("x-api-key", KEY).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(eventually(Duration::from_secs(5), || async { lines(&audit_path).len() == 1 }).await);
    let l = lines(&audit_path);
    assert_eq!((l[0]["principal"].as_str(), l[0]["route"].as_str()), (Some("ci-bot"), Some("/whoami")));
}

#[tokio::test]
async fn check_audits_to_the_file_or_to_stderr_instead_of_stdout() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.yaml", &chain_yaml(&idp));
    let out = run(args(&["check", "--config", &cfg.display().to_string(), "--token", KEY, "--path", "/v1/a"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let l = lines(&dir.path().join("audit.jsonl"));
    assert_eq!(l.len(), 1);
    assert_eq!((l[0]["outcome"].as_str(), l[0]["route"].as_str()), (Some("allow"), Some("/v1/a")));

    // `stdout` would corrupt check's one-JSON-object output: the line goes to stderr.
    let text = std::fs::read_to_string(&cfg).unwrap().replace("output: audit.jsonl", "output: stdout");
    let cfg = write(dir.path(), "c2.yaml", &text);
    let out = run(args(&["check", "--config", &cfg.display().to_string(), "--token", "tg_wrong"])).await;
    assert_eq!(out.status.code(), Some(1));
    let body: Value = serde_json::from_str(stdout(&out).trim()).expect("stdout is exactly one JSON object");
    assert_eq!(body["error"]["detail"], "unknown API key");
    let audit_line = stderr(&out).lines().find_map(|l| serde_json::from_str::<Value>(l).ok()).expect("audit on stderr");
    assert_eq!(
        (audit_line["outcome"].as_str(), audit_line["reason"].as_str(), audit_line["detail"].as_str()),
        (Some("deny"), Some("rejected"), Some("unknown API key"))
    );
    assert!(!stderr(&out).contains("tg_wrong"));
}

#[tokio::test]
async fn an_unwritable_output_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.yaml",
        "provider_config: {type: custom, endpoint: 'http://127.0.0.1:1/'}\naudit: {output: /nonexistent-dir/a/audit.jsonl}\n",
    );
    let out = run(args(&["check", "--config", &cfg.display().to_string(), "--token", "x"])).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`audit.output`") && err.contains("cannot open /nonexistent-dir/a/audit.jsonl"), "{err}");
}
