//! Issue #22: API keys as a product, end to end with the real binary and a
//! real `tokengate serve`: `key new | list | rotate | suspend | resume |
//! revoke` on a key file the server reloads, typed refusals, the key id in
//! the audit line, usage counted into the usage file, and key constraints.

use crate::fixtures::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn audit_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn config_yaml() -> &'static str {
    "realm: test\n\
     provider_config:\n  type: api_key\n  prefix: tg_\n  keys_file: keys.yaml\n  reload_interval: 100ms\n  usage_flush_interval: 200ms\n\
     audit:\n  output: audit.jsonl\n"
}

async fn status_of(c: &reqwest::Client, url: &str, key: &str) -> (u16, String) {
    let res = c.get(url).header("x-api-key", key).send().await.unwrap();
    let status = res.status().as_u16();
    (status, header(&res, "www-authenticate").unwrap_or_default())
}

#[tokio::test]
async fn a_key_lives_through_new_rotate_suspend_resume_revoke_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "keys.yaml", "[]\n");
    let config = load(&write(dir.path(), "c.yaml", config_yaml()));
    let server = serve_config(&config).await;
    let c = client();
    let url = format!("{}/v1/models", server.base);

    let made =
        key_command_json(dir.path(), &["new", "--owner", "team-ml", "--principal", "ci-bot", "--id", "ci-1", "--json"])
            .await;
    let first = made["key"].as_str().unwrap().to_string();
    assert!(first.starts_with("tg_k1_") && first.len() == 3 + 3 + 49, "{first}");
    let file = std::fs::read_to_string(dir.path().join("keys.yaml")).unwrap();
    assert!(!file.contains(&first), "the key itself is never stored");
    let ok = |key: String| {
        let (c, url) = (c.clone(), url.clone());
        async move { status_of(&c, &url, &key).await.0 == 200 }
    };
    assert!(eventually(Duration::from_secs(5), || ok(first.clone())).await, "the new key works once the file reloads");

    // A checksummed key with one character off: refused offline, as malformed.
    let mut typo = first.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'x' { 'y' } else { 'x' });
    let (status, challenge) = status_of(&c, &url, &typo).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("checksum"), "{challenge}");

    // Rotation with a short grace: the new key works at once, the old one until the grace ends.
    let rotated = key_command_json(dir.path(), &["rotate", "ci-1", "--grace", "3s", "--json"]).await;
    let second = rotated["key"].as_str().unwrap().to_string();
    let second_id = rotated["id"].as_str().unwrap().to_string();
    assert_eq!(rotated["replaces"], "ci-1");
    assert!(eventually(Duration::from_secs(5), || ok(second.clone())).await, "the new key works at once");
    assert_eq!(status_of(&c, &url, &first).await.0, 200, "the old key works during the grace");
    let listed = key_command_json(dir.path(), &["list", "--json"]).await;
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["id"].as_str(), rows[0]["rotated_to"].as_str()), (Some("ci-1"), Some(second_id.as_str())));
    assert_eq!(rows[1]["owner"], "team-ml", "the new key keeps the old one's owner");
    let text = key_command(dir.path(), &["list"]).await.1 + &listed.to_string();
    for secret in [&first, &second] {
        assert!(!text.contains(secret.as_str()), "list printed a key");
    }
    assert!(!text.contains("sha256:") && !text.contains(&made["hash"].as_str().unwrap()[7..]), "list printed a hash");

    let after_grace = |key: String| {
        let (c, url) = (c.clone(), url.clone());
        async move { status_of(&c, &url, &key).await.1.contains("key rotated; replaced by") }
    };
    assert!(eventually(Duration::from_secs(8), || after_grace(first.clone())).await, "the old key ends with its grace");
    let (_, challenge) = status_of(&c, &url, &first).await;
    assert!(challenge.contains(&format!("replaced by {second_id}")), "{challenge}");
    assert_eq!(key_command_json(dir.path(), &["list", "--json"]).await[0]["status"], "rotated");

    // Suspend, resume, revoke: each refusal says which state refused.
    assert_eq!(key_command(dir.path(), &["suspend", &second_id, "--reason", "billing overdue"]).await.0, 0);
    let refused = |key: String, words: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move { status_of(&c, &url, &key).await.1.contains(words) }
    };
    assert!(eventually(Duration::from_secs(5), || refused(second.clone(), "key suspended: billing overdue")).await);
    assert_eq!(key_command(dir.path(), &["resume", &second_id]).await.0, 0);
    assert!(eventually(Duration::from_secs(5), || ok(second.clone())).await);
    assert_eq!(key_command(dir.path(), &["revoke", &second_id, "--reason", "leaked"]).await.0, 0);
    assert!(eventually(Duration::from_secs(5), || refused(second.clone(), "key revoked: leaked")).await);
    let (code, _, err) = key_command(dir.path(), &["resume", &second_id]).await;
    assert_eq!(code, 2, "a revoked key stays revoked: {err}");

    // The audit line names the key by id, accepted or refused; never the key.
    let audit_path = dir.path().join("audit.jsonl");
    assert!(eventually(Duration::from_secs(5), || async { audit_lines(&audit_path).len() >= 6 }).await);
    let lines = audit_lines(&audit_path);
    assert!(lines.iter().any(|l| l["key_id"] == "ci-1" && l["outcome"] == "allow"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["key_id"] == second_id.as_str() && l["outcome"] == "deny" && l["reason"] == "key_suspended"),
        "{lines:?}"
    );
    let malformed = lines.iter().find(|l| l["detail"].as_str().is_some_and(|r| r.contains("checksum"))).unwrap();
    assert_eq!(malformed["reason"], "malformed", "{malformed}");
    assert!(malformed.get("key_id").is_none(), "a malformed key has no id: {malformed}");
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    assert!(!audit.contains(&first) && !audit.contains(&second));

    // Usage: counted in memory, flushed to the usage file, shown by `key list`.
    let used = || async {
        let rows = key_command_json(dir.path(), &["list", "--json"]).await;
        rows[0]["requests"].as_u64().unwrap_or(0) >= 2 && rows[0]["last_used_at"].is_string()
    };
    assert!(eventually(Duration::from_secs(5), used).await, "usage reached the usage file");
    let rows = key_command_json(dir.path(), &["list", "--json"]).await;
    assert_eq!(rows[0]["requests"], rows[0]["requests_today"]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_key_of_the_old_format_keeps_working_next_to_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    // The generator before #22: prefix and 43 base64url characters.
    let legacy = "tg_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx";
    let entry = format!("- id: legacy\n  hash: {}\n  principal: old-bot\n", tokengate_api_key::hash_key(legacy));
    write(dir.path(), "keys.yaml", &entry);
    let config = load(&write(dir.path(), "c.yaml", config_yaml()));
    let (code, _, err) = key_command(dir.path(), &["new", "--id", "fresh"]).await;
    assert_eq!(code, 0, "{err}");
    let server = serve_config(&config).await;
    let (status, _) = status_of(&client(), &format!("{}/v1/models", server.base), legacy).await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn constraints_refuse_with_403_naming_the_constraint_through_serve() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "keys.yaml", "[]\n");
    let config = load(&write(dir.path(), "c.yaml", config_yaml()));
    let narrow = key_command_json(
        dir.path(),
        &["new", "--id", "narrow", "--allow-method", "GET", "--allow-path", "/v1/models/*", "--json"],
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let by_address = key_command_json(dir.path(), &["new", "--id", "by-ip", "--allow-cidr", "127.0.0.1", "--json"])
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let server = serve_config(&config).await;
    let c = client();
    let url = |p: &str| format!("{}{p}", server.base);
    assert_eq!(c.get(url("/v1/models/x")).header("x-api-key", &narrow).send().await.unwrap().status(), 200);
    let res = c.post(url("/v1/models")).header("x-api-key", &narrow).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = c.get(url("/v1/chat")).header("x-api-key", &narrow).send().await.unwrap();
    assert_eq!(res.status(), 403);
    // `serve` sees the proxy, not the client: without a client address it does not guess.
    let res = c.get(url("/v1/models")).header("x-api-key", &by_address).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let audit_path = dir.path().join("audit.jsonl");
    assert!(eventually(Duration::from_secs(5), || async { audit_lines(&audit_path).len() >= 4 }).await);
    server.shutdown().await;
    let audit = audit_lines(&audit_path);
    let refused: Vec<(&str, &str)> =
        audit.iter().filter_map(|l| Some((l["reason"].as_str()?, l["detail"].as_str()?))).collect();
    for constraint in ["allowed_methods", "allowed_paths", "allowed_cidrs"] {
        assert!(
            refused.iter().any(|(reason, detail)| *reason == "key_constraint" && detail.contains(constraint)),
            "{constraint}: {refused:?}"
        );
    }
}
