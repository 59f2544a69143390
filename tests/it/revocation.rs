//! Revocation (issue #7): a list of JWT `jti`s and token hashes from a file
//! that reloads on change, checked after validation and after cache hits.

use crate::fixtures::*;
use serde_json::{json, Map};
use std::path::Path;
use std::time::Duration;
use tokengate::pipeline::revocation::TokenIds;
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
    assert_eq!(e.reason(), &tokengate::Reason::Revoked);
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

/// Issues #11 and #21: a JWT listed by the SHA-256 of its signing input stays
/// revoked in every spelling of its signature: the ES256 twin (s → n − s,
/// made without the key), which the default now accepts, and a padded
/// signature. Under `require_low_s` the twin is refused as high-S.
#[tokio::test]
async fn a_revoked_es256_token_and_its_malleated_twin_are_both_refused() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = with_jti(&idp, "mallory", "m-1");
    let twin = tokengate_oauth2::ecdsa::flip_s(&token).expect("an ES256 token");
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    let digest = hex::encode(tokengate_kit::token_hash(signing_input));
    assert_eq!(digest, hex::encode(tokengate::pipeline::revocation::revocation_digest(&token)));
    write(dir.path(), "revoked.yaml", &format!("token_sha256: [\"sha256:{digest}\"]\n"));
    let default = load(&jwt_config(dir.path(), &idp)).build(&Registry::with_builtins()).unwrap();
    let strict_yaml = std::fs::read_to_string(dir.path().join("c.yaml"))
        .unwrap()
        .replace("  type: oauth2_token\n", "  type: oauth2_token\n  require_low_s: true\n");
    let strict = load(&write(dir.path(), "strict.yaml", &strict_yaml)).build(&Registry::with_builtins()).unwrap();
    let ctx = RequestContext::new("GET", "/");

    for t in [&token, &twin] {
        assert_eq!(default.validate(t, &ctx).await.unwrap_err().detail(), "token has been revoked");
    }
    assert_eq!(strict.validate(&token, &ctx).await.unwrap_err().detail(), "token has been revoked");
    assert!(strict.validate(&twin, &ctx).await.unwrap_err().detail().contains("high-S"));
    let other = with_jti(&idp, "bob", "b-1");
    assert_eq!(default.validate(&other, &ctx).await.unwrap().principal, "bob");
    assert_eq!(
        default.validate(&tokengate_oauth2::ecdsa::flip_s(&other).unwrap(), &ctx).await.unwrap().principal,
        "bob"
    );
    default.close().await;
    strict.close().await;
}

/// Issue #21: a whole-token digest (the form before issue #11, and what
/// `printf %s "$TOKEN" | sha256sum` gives) of a token as issued, in either S
/// form, revokes the token and its twins; so does the token's identity (the
/// digest caches and the audit log use). Before, a whole-token digest matched
/// those exact bytes only: the twin, now accepted, would have walked in.
#[tokio::test]
async fn whole_token_digests_revoke_the_token_in_every_spelling() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = RequestContext::new("GET", "/");
    write(dir.path(), "revoked.yaml", "{}\n");
    let provider = load(&jwt_config(dir.path(), &idp)).build(&Registry::with_builtins()).unwrap();
    type Listed = fn(&str, &str) -> [u8; 32];
    let kinds: [(&str, Listed); 3] = [
        ("the high-S form hashed whole", |_low, high| tokengate_kit::token_hash(high)),
        ("the low-S form hashed whole", |low, _high| tokengate_kit::token_hash(low)),
        ("the identity", |_low, high| tokengate_kit::token_identity(high)),
    ];
    for (i, (what, listed)) in kinds.into_iter().enumerate() {
        let low = with_jti(&idp, "mallory", &format!("w-{i}"));
        let high = tokengate_oauth2::ecdsa::flip_s(&low).expect("an ES256 token");
        for t in [&low, &high] {
            assert_eq!(provider.validate(t, &ctx).await.unwrap().principal, "mallory", "{what}: not yet revoked");
        }
        let digest = listed(&low, &high);
        replace(dir.path(), &format!("token_sha256: [\"sha256:{}\"]\n", hex::encode(digest)));
        assert!(eventually(RELOAD, || async { provider.validate(&low, &ctx).await.is_err() }).await, "{what}");
        for t in [&low, &high] {
            assert_eq!(provider.validate(t, &ctx).await.unwrap_err().detail(), "token has been revoked", "{what}");
        }
        // A padded signature, as a lenient remote verifier (introspection) might accept it.
        let padded = TokenIds::of(&format!("{high}=="));
        assert!(padded.digests().any(|d| *d == digest), "{what}: the padded spelling is revoked too");
    }
    provider.close().await;
}

/// Issue #11: in a chain of two issuers, `{iss, jti}` revokes only that
/// issuer's token; a bare `jti` (the old form) still revokes it for both.
#[tokio::test]
async fn jti_entries_are_scoped_by_issuer_in_a_chain() {
    let (one, two) = (Idp::start().await, Idp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "realm: test\nproviders:\n{}{}revocation:\n  file: revoked.yaml\n  reload_interval: 100ms\n",
        list_item(&oauth2_yaml("    ", &one.url(), &one.issuer.jwks_uri(), &[])),
        list_item(&oauth2_yaml("    ", &two.url(), &two.issuer.jwks_uri(), &[])),
    );
    write(dir.path(), "revoked.yaml", &format!("jti:\n  - {{iss: \"{}\", jti: same-id}}\n", one.url()));
    let chain = load(&write(dir.path(), "c.yaml", &yaml)).build(&Registry::with_builtins()).unwrap();
    let ctx = RequestContext::new("GET", "/");
    let (from_one, from_two) = (with_jti(&one, "ann", "same-id"), with_jti(&two, "ben", "same-id"));
    assert_eq!(chain.validate(&from_one, &ctx).await.unwrap_err().detail(), "token has been revoked");
    assert_eq!(chain.validate(&from_two, &ctx).await.unwrap().principal, "ben", "another issuer's token");

    replace(dir.path(), "jti: [same-id]\n");
    assert!(eventually(RELOAD, || async { chain.validate(&from_two, &ctx).await.is_err() }).await);
    assert!(chain.validate(&from_one, &ctx).await.is_err());
    chain.close().await;
}
