use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn jwt(payload: &str) -> String {
    format!("eyJhbGciOiJFUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
}

#[tokio::test]
async fn jtis_are_scoped_by_issuer_and_bare_ones_apply_to_every_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "jti:\n  - {iss: \"https://a\", jti: shared-id}\n  - {iss: \"https://a\", jti: 7}\n  - legacy\n";
    let path = write(dir.path(), "r.yaml", yaml);
    let r = Revocation::from_file(&path, Duration::from_secs(60)).unwrap();
    assert_eq!((r.list().jti_count(), r.list().unscoped_jti_count()), (3, 1));
    let revoked = |claims: &str| {
        let r = r.clone();
        let t = jwt(claims);
        async move { r.check(&t).await.is_err() }
    };
    assert!(revoked(r#"{"iss":"https://a","jti":"shared-id"}"#).await);
    assert!(revoked(r#"{"iss":"https://a","jti":7}"#).await);
    assert!(!revoked(r#"{"iss":"https://b","jti":"shared-id"}"#).await, "another issuer's token with the same jti");
    assert!(!revoked(r#"{"jti":"shared-id"}"#).await, "no iss: a scoped entry cannot match");
    assert!(revoked(r#"{"iss":"https://b","jti":"legacy"}"#).await, "a bare jti keeps revoking for every issuer");
    assert!(revoked(r#"{"jti":"legacy"}"#).await);

    let path = write(dir.path(), "bad.yaml", "jti:\n  - {iss: \"\", jti: x}\n");
    let e = Revocation::from_file(&path, Duration::from_secs(1)).unwrap_err();
    assert!(e.contains("jti[0].iss") && e.contains("empty"), "{e}");
    let path = write(dir.path(), "bad2.yaml", "jti:\n  - {iss: \"https://a\", jti: x, sub: y}\n");
    assert!(Revocation::from_file(&path, Duration::from_secs(1)).unwrap_err().contains("jti[0]"));
}

#[tokio::test]
async fn jwts_are_revoked_by_signing_input_whatever_their_signature() {
    let dir = tempfile::tempdir().unwrap();
    let t = jwt(r#"{"sub":"x"}"#);
    let path = write(dir.path(), "r.yaml", &format!("token_sha256: [\"{}\"]\n", hex::encode(revocation_digest(&t))));
    let r = Revocation::from_file(&path, Duration::from_secs(60)).unwrap();
    assert!(r.check(&t).await.is_err());
    let (input, _) = t.rsplit_once('.').unwrap();
    assert!(r.check(&format!("{input}.b3RoZXItc2ln")).await.is_err(), "another signature, same header.payload");
    assert!(r.check(&jwt(r#"{"sub":"y"}"#)).await.is_ok());
}

#[tokio::test]
async fn jti_and_hash_entries() {
    let dir = tempfile::tempdir().unwrap();
    let opaque_hash = hex::encode(token_hash("opaque-token"));
    let path = write(dir.path(), "r.yaml", &format!("jti: [gone, 42]\ntoken_sha256: [\"sha256:{opaque_hash}\"]\n"));
    let r = Revocation::from_file(&path, Duration::from_secs(60)).unwrap();
    assert_eq!(r.check(&jwt(r#"{"jti":"gone"}"#)).await.unwrap_err().detail(), REVOKED);
    assert_eq!(r.check(&jwt(r#"{"jti":42}"#)).await.unwrap_err().detail(), REVOKED);
    assert!(r.check(&jwt(r#"{"jti":"live"}"#)).await.is_ok());
    assert!(r.check(&jwt(r#"{"sub":"x"}"#)).await.is_ok());
    assert_eq!(r.check("opaque-token").await.unwrap_err().code(), "invalid_token");
    assert!(r.check("other-token").await.is_ok());
}

#[test]
fn bad_entries_name_the_entry_and_never_echo_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "r.yaml", "token_sha256: [\"sha256:ab\", \"secret-token-value\"]\n");
    let e = Revocation::from_file(&path, Duration::from_secs(1)).unwrap_err();
    assert!(e.contains("token_sha256[0]") && e.contains("not a SHA-256 digest"), "{e}");
    let path = write(dir.path(), "r2.yaml", "token_sha256: [\"secret-token-value\"]\n");
    let e = Revocation::from_file(&path, Duration::from_secs(1)).unwrap_err();
    assert!(!e.contains("secret-token-value"), "{e}");
    let path = write(dir.path(), "r3.yaml", "jtis: []\n");
    let e = Revocation::from_file(&path, Duration::from_secs(1)).unwrap_err();
    assert!(e.contains("unknown field `jtis`"), "{e}");
    let path = write(dir.path(), "r4.yaml", "  \n");
    assert!(Revocation::from_file(&path, Duration::from_secs(1)).unwrap_err().contains("is empty"));
    assert!(Revocation::from_file(dir.path().join("missing.yaml"), Duration::from_secs(1)).is_err());
}

#[tokio::test]
async fn invalid_new_file_keeps_old_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "r.json", r#"{"jti": ["a"]}"#);
    let r = Revocation::from_file(&path, Duration::from_secs(60)).unwrap();
    std::fs::write(&path, r#"{"jti": ["a", "b"], "oops": 1}"#).unwrap();
    assert_eq!(r.reload_now(), Reload::Failed);
    assert_eq!(r.list().jti_count(), 1);
    std::fs::write(&path, r#"{"jti": ["a", "b", "c"]}"#).unwrap();
    assert_eq!(r.reload_now(), Reload::Reloaded);
    assert_eq!(r.list().jti_count(), 3);
    assert_eq!(r.reload_now(), Reload::Unchanged);
}

struct Store(Result<bool, String>);
#[async_trait::async_trait]
impl RevocationStore for Store {
    async fn is_revoked(&self, ids: &TokenIds) -> Result<bool, String> {
        match ids.jti.as_deref() {
            Some("store-revoked") => Ok(true),
            _ => self.0.clone(),
        }
    }
}

#[tokio::test]
async fn shared_store_is_consulted_and_failures_follow_on_store_error() {
    let r = Revocation::without_file().with_shared_store(Arc::new(Store(Ok(false))), OnStoreError::Deny);
    assert!(r.check(&jwt(r#"{"jti":"store-revoked"}"#)).await.is_err(), "jti read for the store");
    assert!(r.check(&jwt(r#"{"jti":"x"}"#)).await.is_ok());
    let down = || Arc::new(Store(Err("down".into())));
    let r = Revocation::without_file().with_shared_store(down(), OnStoreError::Allow);
    assert!(r.check("t").await.is_ok(), "allow: a store that cannot answer leaves it to the (empty) file");
    let r = Revocation::without_file().with_shared_store(down(), OnStoreError::Deny);
    let e = r.check("t").await.unwrap_err();
    assert_eq!(e.kind(), tokengate_api::ErrorKind::Unavailable, "deny: never a silent pass, never 'invalid'");
    assert!(e.detail().contains("on_store_error: deny") && e.detail().contains("down"), "{}", e.detail());
    assert_eq!(OnStoreError::default(), OnStoreError::Deny);
}

#[test]
fn signing_input_digest_is_for_jwts_only() {
    let t = jwt(r#"{"sub":"a"}"#);
    let (input, _) = t.rsplit_once('.').unwrap();
    assert_eq!(revocation_digest(&t), token_hash(input));
    assert_eq!(TokenIds::of(&t).signing_input_sha256, Some(token_hash(input)));
    for opaque in ["opaque-token", "a.b.c", "x..y", "tg_key.with.dots", ".."] {
        assert_eq!(revocation_digest(opaque), token_hash(opaque), "{opaque}");
        assert_eq!(TokenIds::of(opaque).signing_input_sha256, None, "{opaque}");
    }
}
