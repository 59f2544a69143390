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

/// A shared store whose copy was last read `age` ago (`None`: never loaded);
/// it revokes the jti `store-revoked`.
struct Store(Option<Duration>);
#[async_trait::async_trait]
impl RevocationStore for Store {
    async fn lookup(&self, ids: &TokenIds, _first_load: Duration) -> StoreAnswer {
        match (self.0, ids.jti.as_deref()) {
            (None, _) => StoreAnswer::NeverLoaded { why: "down".into() },
            (Some(_), Some("store-revoked")) => StoreAnswer::Revoked,
            (Some(age), _) => StoreAnswer::NotRevoked { age },
        }
    }
    fn is_loaded(&self) -> bool {
        self.0.is_some()
    }
}

#[tokio::test]
async fn the_shared_copy_decides_and_on_store_error_says_when_it_cannot_be_trusted() {
    let fresh = || Arc::new(Store(Some(Duration::from_millis(100))));
    let old = || Arc::new(Store(Some(Duration::from_secs(3600))));
    let never = || Arc::new(Store(None));
    let revoked_token = jwt(r#"{"jti":"store-revoked"}"#);
    let live_token = jwt(r#"{"jti":"x"}"#);
    let unavailable = |r: Result<(), AuthError>| r.is_err_and(|e| e.kind() == tokengate_api::ErrorKind::Unavailable);

    // Every mode: the copy decides however old it is, except deny past max_staleness.
    for mode in [OnStoreError::LastKnown, OnStoreError::Deny, OnStoreError::Allow] {
        let r = Revocation::without_file().with_shared_store(fresh(), mode).with_max_staleness(Duration::from_secs(10));
        assert_eq!(r.check(&revoked_token).await.unwrap_err().detail(), REVOKED, "{mode:?}");
        assert!(r.check(&live_token).await.is_ok(), "{mode:?}");
        assert!(r.ready().is_ok());
        let r = Revocation::without_file().with_shared_store(old(), mode).with_max_staleness(Duration::from_secs(10));
        assert_eq!(r.check(&revoked_token).await.unwrap_err().detail(), REVOKED, "{mode:?}: an old copy still revokes");
        let live = r.check(&live_token).await;
        if mode == OnStoreError::Deny {
            let e = live.unwrap_err();
            assert_eq!(e.kind(), tokengate_api::ErrorKind::Unavailable);
            assert!(e.detail().contains("max_staleness") && e.detail().contains("3600s"), "{}", e.detail());
        } else {
            assert!(live.is_ok(), "{mode:?}: an old copy lets valid tokens in");
        }
    }

    // Never loaded: nothing to enforce. Refused (and not ready) unless allow, where the file decides.
    for mode in [OnStoreError::LastKnown, OnStoreError::Deny] {
        let r = Revocation::without_file().with_shared_store(never(), mode);
        assert!(unavailable(r.check(&live_token).await), "{mode:?}");
        let e = r.check(&live_token).await.unwrap_err();
        assert!(e.detail().contains("not loaded") && e.detail().contains("down"), "{}", e.detail());
        assert!(r.ready().is_err(), "{mode:?}");
    }
    let r = Revocation::without_file().with_shared_store(never(), OnStoreError::Allow);
    assert!(r.check(&live_token).await.is_ok());
    assert!(r.ready().is_ok());
    assert_eq!(OnStoreError::default(), OnStoreError::LastKnown);
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
