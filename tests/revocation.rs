//! Revocation (issue #7): a list of JWT `jti`s and token hashes from a file
//! that reloads on change, checked after validation and after cache hits.

mod common;
mod support;

use common::{client, header, Idp};
use serde_json::{json, Map};
use std::path::Path;
use std::time::Duration;
use support::*;
use tokengate::{Registry, RequestContext};

const RELOAD: Duration = Duration::from_secs(10);

fn jwt_config(dir: &Path, idp: &Idp) -> std::path::PathBuf {
    let yaml = format!(
        "realm: test\nprovider_config:\n{}revocation:\n  file: revoked.yaml\n  reload_interval: 100ms\n",
        oauth2_yaml("  ", &idp.url(), &idp.issuer.jwks_uri(), &[("groups", "teams")])
    );
    write(dir, "c.yaml", &yaml)
}

fn with_jti(idp: &Idp, sub: &str, jti: &str) -> String {
    let mut claims = Map::new();
    claims.insert("jti".into(), json!(jti));
    idp.issuer.mint(sub, &claims, Duration::from_secs(600)).unwrap()
}

/// Replaces the file the way operators should: write a new one, rename it over.
fn replace(dir: &Path, text: &str) {
    let tmp = dir.join("revoked.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("revoked.yaml")).unwrap();
}

#[tokio::test]
async fn revoking_a_live_tokens_jti_takes_effect_after_reload() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "revoked.yaml", "jti: [some-old-id]\n");
    let provider = load(&jwt_config(dir.path(), &idp)).build(&Registry::with_builtins()).unwrap();
    let ctx = RequestContext::new("GET", "/");
    let live = with_jti(&idp, "alice", "live-1");
    let other = with_jti(&idp, "bob", "live-2");
    assert_eq!(provider.validate(&live, &ctx).await.unwrap().principal, "alice");
    // Validated twice: the second is a cache hit in the provider, so the
    // rejection below proves revocation is checked after cache hits.
    assert_eq!(provider.validate(&live, &ctx).await.unwrap().principal, "alice");

    replace(dir.path(), "jti: [some-old-id, live-1]\n");
    let revoked = eventually(RELOAD, || async { provider.validate(&live, &ctx).await.is_err() }).await;
    assert!(revoked, "the reloaded list never took effect");
    let e = provider.validate(&live, &ctx).await.unwrap_err();
    assert_eq!((e.code(), e.detail()), ("invalid_token", "token has been revoked"));
    assert_eq!(provider.validate(&other, &ctx).await.unwrap().principal, "bob", "other tokens unaffected");

    // Un-revoking works the same way.
    replace(dir.path(), "{}\n");
    assert!(eventually(RELOAD, || async { provider.validate(&live, &ctx).await.is_ok() }).await);
    provider.close().await;
}

#[tokio::test]
async fn an_invalid_new_file_keeps_the_old_list() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "revoked.yaml", "jti: [gone]\n");
    let provider = load(&jwt_config(dir.path(), &idp)).build(&Registry::with_builtins()).unwrap();
    let ctx = RequestContext::new("GET", "/");
    let gone = with_jti(&idp, "alice", "gone");
    let next = with_jti(&idp, "bob", "next");
    assert!(provider.validate(&gone, &ctx).await.is_err());

    // Broken YAML, an unknown field, a token pasted where a hash belongs, an empty file, no file:
    // each keeps "gone" revoked (and does not revoke "next").
    for broken in ["jti: [gone, next\n", "jti: [gone, next]\njtis: []\n", "token_sha256: [not-a-hash]\n", "", "DELETE"]
    {
        if broken == "DELETE" {
            std::fs::remove_file(dir.path().join("revoked.yaml")).unwrap();
        } else {
            replace(dir.path(), broken);
        }
        // Several reload intervals pass.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(provider.validate(&gone, &ctx).await.unwrap_err().detail(), "token has been revoked", "{broken:?}");
        assert!(provider.validate(&next, &ctx).await.is_ok(), "{broken:?}");
    }
    // A valid file again is picked up.
    replace(dir.path(), "jti: [next]\n");
    assert!(eventually(RELOAD, || async { provider.validate(&next, &ctx).await.is_err() }).await);
    assert!(provider.validate(&gone, &ctx).await.is_ok());
    provider.close().await;
}

#[tokio::test]
async fn token_hash_entries_revoke_api_keys_through_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, dropped) = ("tg_kept-key-000000000000", "tg_dropped-key-11111111");
    let yaml = format!(
        "realm: test\nprovider_config:\n{}revocation:\n  file: revoked.json\n",
        api_key_yaml("  ", &[(kept, "kept", &["r"]), (dropped, "dropped", &["r"])])
    );
    let hash = tokengate_api_key::hash_key(dropped);
    write(dir.path(), "revoked.json", &json!({"token_sha256": [hash]}).to_string());
    let config = load(&write(dir.path(), "c.yaml", &yaml));
    let server = serve_config(&config).await;
    let c = client();
    let res = c.get(format!("{}/x", server.base)).bearer_auth(kept).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = c.get(format!("{}/x", server.base)).header("x-api-key", dropped).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        "Bearer realm=\"test\", error=\"invalid_token\", error_description=\"token has been revoked\""
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_file_at_start_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = "provider_config: {type: custom, endpoint: 'http://127.0.0.1:1/'}\n";
    let cfg = write(dir.path(), "c.yaml", &format!("{base}revocation:\n  file: absent.yaml\n"));
    let out = run(args(&["check", "--config", &cfg.display().to_string(), "--token", "x"])).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`revocation.file`") && err.contains("absent.yaml"), "{err}");

    write(dir.path(), "bad.yaml", "token_sha256: [\"my-secret-token\"]\n");
    let cfg = write(dir.path(), "c2.yaml", &format!("{base}revocation: {{file: bad.yaml}}\n"));
    let out = run(args(&["check", "--config", &cfg.display().to_string(), "--token", "x"])).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("token_sha256[0]") && err.contains("not a SHA-256 digest"), "{err}");
    assert!(!err.contains("my-secret-token"), "the entry is never echoed: {err}");

    let cfg = write(dir.path(), "c3.yaml", &format!("{base}revocation: {{file: bad.yaml, reload: 1s}}\n"));
    let out = run(args(&["check", "--config", &cfg.display().to_string(), "--token", "x"])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown field `reload`"), "{}", stderr(&out));
}
