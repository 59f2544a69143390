//! The provider's keys, key file reloading and key generation; one file, past
//! 400 lines, because the tests share the key and file helpers below.

use super::*;
use serde_json::json;
use std::time::Instant;

fn ctx() -> RequestContext {
    RequestContext::new("GET", "/v1/models")
}

fn build(config: serde_json::Value) -> Result<DynProvider, ConfigError> {
    ApiKeyBuilder.build(config, &BuildContext::default())
}

fn build_err(config: serde_json::Value) -> ConfigError {
    match build(config) {
        Ok(_) => panic!("the config was accepted"),
        Err(e) => e,
    }
}

fn provider(config: serde_json::Value) -> ApiKeyProvider {
    ApiKeyProvider::from_config("api_key", parse_provider_config(config).unwrap(), &BuildContext::default()).unwrap()
}

fn build_in(dir: &Path, config: serde_json::Value) -> Result<DynProvider, ConfigError> {
    ApiKeyBuilder.build(config, &BuildContext { base_dir: Some(dir.to_path_buf()), ..Default::default() })
}

/// A fresh key and its `sha256:` hash.
fn new_key(prefix: &str) -> (String, String) {
    let (key, hex) = generate_key(prefix).unwrap();
    (key, format!("sha256:{hex}"))
}

fn entry_yaml(hash: &str, principal: &str) -> String {
    format!("- hash: {hash}\n  principal: {principal}\n  attributes:\n    roles: [{principal}-role]\n")
}

/// Polls `check` until it holds or `within` passes.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

#[tokio::test]
async fn inline_keys_authenticate_with_attributes() {
    let (key, hash) = new_key("");
    let (other, other_hash) = new_key("");
    let p = build(json!({
        "keys": [
            {"hash": hash, "principal": "ci-bot", "attributes": {"roles": ["deployer"], "teams": ["infra"]}},
            // Bare hex, upper case: both spellings are accepted.
            {"hash": other_hash.trim_start_matches("sha256:").to_ascii_uppercase(), "principal": "alice"}
        ]
    }))
    .unwrap();
    let principal = p.validate(&key, &ctx()).await.unwrap();
    assert_eq!(principal.principal, "ci-bot");
    assert_eq!(principal.attributes["roles"], vec!["deployer"]);
    assert_eq!(principal.attributes["teams"], vec!["infra"]);
    assert_eq!(p.validate(&other, &ctx()).await.unwrap().principal, "alice");
    assert_eq!(p.describe().type_name, "api_key");
}

#[tokio::test]
async fn unknown_key_is_invalid_token() {
    let (_, hash) = new_key("");
    let p = build(json!({"keys": [{"hash": hash, "principal": "a"}]})).unwrap();
    let e = p.validate("not-a-configured-key", &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), tokengate_api::ErrorKind::InvalidToken);
    assert_eq!(e.detail(), "unknown API key");
    assert_eq!(e.kind().http_status(), 401);
}

#[tokio::test]
async fn expired_key_is_rejected_with_its_expiry_and_future_expiry_accepted() {
    let (old, old_hash) = new_key("");
    let (fresh, fresh_hash) = new_key("");
    let p = build(json!({"keys": [
        {"hash": old_hash, "principal": "old", "expires_at": "2020-01-01T00:00:00Z"},
        // An offset is accepted and normalised to UTC in messages.
        {"hash": fresh_hash, "principal": "fresh", "expires_at": "2999-01-01T02:00:00+02:00"}
    ]}))
    .unwrap();
    let e = p.validate(&old, &ctx()).await.unwrap_err();
    assert_eq!(e.code(), "invalid_token");
    assert_eq!(e.detail(), "key expired at 2020-01-01T00:00:00Z");
    assert_eq!(e.reason(), &Reason::KeyExpired);
    assert_eq!(p.validate(&fresh, &ctx()).await.unwrap().principal, "fresh");
}

#[tokio::test]
async fn disabled_key_is_rejected() {
    let (key, hash) = new_key("");
    let p = build(json!({"keys": [{"hash": hash, "principal": "gone", "disabled": true}]})).unwrap();
    let e = p.validate(&key, &ctx()).await.unwrap_err();
    assert_eq!(e.code(), "invalid_token");
    // `disabled: true`, the older form, is `status: suspended`.
    assert_eq!(e.detail(), "key suspended");
    assert_eq!(e.reason(), &Reason::KeySuspended);
}

#[tokio::test]
async fn prefix_decides_ownership() {
    let (key, hash) = new_key("tg_");
    assert!(key.starts_with("tg_"));
    let p = build(json!({"prefix": "tg_", "keys": [{"hash": hash, "principal": "a"}]})).unwrap();
    assert_eq!(p.ownership(&key), Ownership::Mine);
    assert_eq!(p.ownership("tg_whatever"), Ownership::Mine);
    assert_eq!(p.ownership("eyJhbGciOiJSUzI1NiJ9.e30.sig"), Ownership::NotMine);
    assert_eq!(p.ownership(""), Ownership::NotMine);
    // Called directly anyway, a foreign token gets a precise 401.
    let e = p.validate("ghp_abc", &ctx()).await.unwrap_err();
    assert_eq!(e.detail(), "not an API key: it does not start with `tg_`");
    assert!(p.describe().accepts.contains("tg_"));
    assert!(p.describe().message.contains("X-API-Key") && p.describe().message.contains("tg_"));

    let unprefixed = build(json!({"keys": [{"hash": new_key("").1, "principal": "a"}]})).unwrap();
    assert_eq!(unprefixed.ownership("anything"), Ownership::Mine);
}

#[tokio::test]
async fn keys_file_yaml_and_json_merge_with_inline_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (inline_key, inline_hash) = new_key("");
    let (yaml_key, yaml_hash) = new_key("");
    let (json_key, json_hash) = new_key("");
    std::fs::write(dir.path().join("keys.yaml"), entry_yaml(&yaml_hash, "from-yaml")).unwrap();
    std::fs::write(
        dir.path().join("keys.json"),
        serde_json::to_string(&json!([{"hash": json_hash, "principal": "from-json"}])).unwrap(),
    )
    .unwrap();

    // Relative paths resolve against the config file's directory.
    let p =
        build_in(dir.path(), json!({"keys": [{"hash": inline_hash, "principal": "inline"}], "keys_file": "keys.yaml"}))
            .unwrap();
    assert_eq!(p.validate(&inline_key, &ctx()).await.unwrap().principal, "inline");
    let from_file = p.validate(&yaml_key, &ctx()).await.unwrap();
    assert_eq!(from_file.principal, "from-yaml");
    assert_eq!(from_file.attributes["roles"], vec!["from-yaml-role"]);

    let p = build_in(dir.path(), json!({"keys_file": "keys.json"})).unwrap();
    assert_eq!(p.validate(&json_key, &ctx()).await.unwrap().principal, "from-json");
    p.close().await;
}

#[tokio::test]
async fn keys_file_reloads_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    let (a, a_hash) = new_key("tg_");
    let (b, b_hash) = new_key("tg_");
    let (c, c_hash) = new_key("tg_");
    std::fs::write(&path, entry_yaml(&a_hash, "alice")).unwrap();
    let p = build(json!({"prefix": "tg_", "keys_file": path, "reload_interval": "50ms"})).unwrap();
    assert_eq!(p.validate(&a, &ctx()).await.unwrap().principal, "alice");
    assert!(p.validate(&b, &ctx()).await.is_err());

    // Edit in place: alice's key removed, bob's added.
    std::fs::write(&path, entry_yaml(&b_hash, "bob-the-builder")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || p.validate(&b, &ctx()).await.is_ok()).await,
        "the new key was never picked up"
    );
    assert_eq!(p.validate(&b, &ctx()).await.unwrap().principal, "bob-the-builder");
    assert_eq!(p.validate(&a, &ctx()).await.unwrap_err().detail(), "unknown API key");

    // Replace by rename, as editors and ConfigMap updates do.
    let staged = dir.path().join("keys.yaml.new");
    std::fs::write(&staged, format!("{}{}", entry_yaml(&b_hash, "bob"), entry_yaml(&c_hash, "carol"))).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    assert!(eventually(Duration::from_secs(5), async || p.validate(&c, &ctx()).await.is_ok()).await);
    assert_eq!(p.validate(&b, &ctx()).await.unwrap().principal, "bob");
    p.close().await;
}

#[tokio::test]
async fn invalid_reload_keeps_old_keys_until_the_file_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    let (a, a_hash) = new_key("");
    let (b, b_hash) = new_key("");
    std::fs::write(&path, entry_yaml(&a_hash, "alice")).unwrap();
    let p = build(json!({"keys_file": path, "reload_interval": "50ms"})).unwrap();

    // Syntax error, a bad entry, an empty file, and no file: each keeps alice's key.
    for broken in ["- hash: [unterminated\n", "- hash: abc\n  principal: x\n", "", "\n  \n"] {
        std::fs::write(&path, broken).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(p.validate(&a, &ctx()).await.unwrap().principal, "alice", "after writing {broken:?}");
    }
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.validate(&a, &ctx()).await.unwrap().principal, "alice", "after removing the file");

    // A fixed file is picked up: the broken versions were retried, not forgotten.
    std::fs::write(&path, entry_yaml(&b_hash, "bob")).unwrap();
    assert!(eventually(Duration::from_secs(5), async || p.validate(&b, &ctx()).await.is_ok()).await);
    assert!(p.validate(&a, &ctx()).await.is_err());

    // An explicit empty list revokes everything.
    std::fs::write(&path, "[]\n").unwrap();
    assert!(eventually(Duration::from_secs(5), async || p.validate(&b, &ctx()).await.is_err()).await);
    p.close().await;
}

#[test]
fn reload_now_reports_failures_and_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    let (_, a_hash) = new_key("");
    std::fs::write(&path, entry_yaml(&a_hash, "alice")).unwrap();
    // Built outside any runtime: no poller; reload_now drives the checks.
    let provider = ApiKeyProvider::from_config(
        "api_key",
        parse_provider_config(json!({"keys_file": path, "reload_interval": "1h"})).unwrap(),
        &BuildContext::default(),
    )
    .unwrap();
    assert!(!provider.watcher.is_running());
    assert_eq!(provider.key_count(), 1);
    std::fs::write(&path, format!("{}{}", entry_yaml(&a_hash, "alice"), entry_yaml(&a_hash, "again"))).unwrap();
    assert!(!provider.reload_now(), "a key listed twice must be refused");
    let err = load_file_keys(&KeyMap::new(), &path).unwrap_err();
    assert!(err.contains("at `[1].hash`") && err.contains("entry `[0]` of the key file"), "{err}");
    assert_eq!(provider.key_count(), 1);
}

#[tokio::test]
async fn close_stops_the_poller() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    let (a, a_hash) = new_key("");
    let (b, b_hash) = new_key("");
    std::fs::write(&path, entry_yaml(&a_hash, "alice")).unwrap();
    let p = build(json!({"keys_file": path, "reload_interval": "20ms"})).unwrap();
    p.close().await;
    std::fs::write(&path, entry_yaml(&b_hash, "bob-is-new")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(p.validate(&b, &ctx()).await.is_err());
    assert!(p.validate(&a, &ctx()).await.is_ok());
}

/// A provider built under one runtime and served by another keeps reloading.
#[test]
fn poller_restarts_on_the_runtime_that_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    let (a, a_hash) = new_key("");
    let (b, b_hash) = new_key("");
    std::fs::write(&path, entry_yaml(&a_hash, "alice")).unwrap();
    let config = json!({"keys_file": path, "reload_interval": "30ms"});
    let first = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let p = first.block_on(async { build(config).unwrap() });
    drop(first); // its poller goes with it
    let serving = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    serving.block_on(async {
        assert_eq!(p.validate(&a, &ctx()).await.unwrap().principal, "alice");
        std::fs::write(&path, entry_yaml(&b_hash, "bob-from-new-runtime")).unwrap();
        assert!(eventually(Duration::from_secs(5), async || p.validate(&b, &ctx()).await.is_ok()).await);
        p.close().await;
    });
}

#[tokio::test]
async fn keys_never_appear_in_debug_errors_or_logs_of_config() {
    let (key, hash) = new_key("tg_");
    let secret_part = key.trim_start_matches("tg_").to_string();
    let p = provider(json!({"prefix": "tg_", "keys": [{"hash": hash, "principal": "a"}]}));
    let principal = p.validate(&key, &ctx()).await.unwrap();
    let config: ApiKeyConfig = parse_provider_config(json!({"keys": [{"hash": hash, "principal": "a"}]})).unwrap();
    let mut wrong = key.clone();
    wrong.push('x');
    let err = p.validate(&wrong, &ctx()).await.unwrap_err();
    for shown in [format!("{p:?}"), format!("{principal:?}"), format!("{config:?}"), format!("{err:?} {err}")] {
        assert!(!shown.contains(&secret_part), "key leaked: {shown}");
    }

    // A key pasted into `hash` by mistake is neither echoed by the error nor shown by Debug.
    let e = build_err(json!({"keys": [{"hash": key, "principal": "a"}]}));
    assert_eq!(e.field, "keys[0].hash");
    assert!(!e.message.contains(&secret_part), "{}", e.message);
    let entry = KeyEntry::new(key.clone(), "a");
    assert!(!format!("{entry:?}").contains(&secret_part));
}

#[tokio::test]
async fn generated_key_and_config_line_round_trip() {
    let (key, hex) = generate_key("tg_").unwrap();
    assert_eq!(hex.len(), 64);
    assert_eq!(hash_key(&key), format!("sha256:{hex}"));
    // The checksummed format: prefix, `k1_`, 43 random and 6 checksum base62 characters.
    assert_eq!(key.len(), 3 + 3 + 43 + 6);
    assert!(key.starts_with("tg_k1_"), "{key}");
    assert!(key[6..].chars().all(|c| c.is_ascii_alphanumeric()), "{key}");
    assert_ne!(generate_key("tg_").unwrap().0, key);

    let mut attributes = Attributes::new();
    attributes.insert("roles".into(), vec!["admin".into(), "ops: on-call".into()]);
    let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(32_503_680_000); // year 3000
    let entry =
        KeyEntry::new(&hex, "alice: the admin").with_id("alice-laptop").with_attributes(attributes).expiring_at(expiry);
    let line = config_line(&entry).unwrap();
    assert!(line.starts_with("- id: alice-laptop\n  hash: sha256:"), "{line}");
    assert!(line.contains("expires_at: 3000-01-01T00:00:00Z"), "{line}");
    assert!(!line.contains(&key));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys.yaml"), &line).unwrap();
    let p = build_in(dir.path(), json!({"prefix": "tg_", "keys_file": "keys.yaml"})).unwrap();
    let principal = p.validate(&key, &ctx()).await.unwrap();
    assert_eq!(principal.principal, "alice: the admin");
    assert_eq!(principal.attributes["roles"], vec!["admin", "ops: on-call"]);

    // Indented under `keys:` it works inline too.
    let indented: String = line.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!("provider_config:\n  type: api_key\n  keys:\n{indented}");
    let doc: serde_json::Value = yaml_serde::from_str(&yaml).unwrap();
    let mut section = doc["provider_config"].clone();
    section.as_object_mut().unwrap().remove("type");
    assert_eq!(build(section).unwrap().validate(&key, &ctx()).await.unwrap().principal, "alice: the admin");

    assert!(matches!(generate_key("tg "), Err(KeyGenError::InvalidPrefix(..))));
    assert!(matches!(config_line(&KeyEntry::new("abc", "x")), Err(KeyGenError::InvalidEntry(_))));
    assert!(matches!(config_line(&KeyEntry::new(&hex, "")), Err(KeyGenError::InvalidEntry(_))));
}

#[test]
fn config_errors_name_the_field() {
    let (_, hash) = new_key("");
    let cases = [
        (json!({}), "", "no keys"),
        (json!({"keys": []}), "", "no keys"),
        (json!({"keys": [{"hash": hash, "principal": "a"}], "prefx": "tg_"}), "prefx", "unknown field"),
        (json!({"keys": [{"hash": "sha256:zz", "principal": "a"}]}), "keys[0].hash", "64 hex digits"),
        (json!({"keys": [{"hash": "g".repeat(64), "principal": "a"}]}), "keys[0].hash", "hex digits"),
        (json!({"keys": [{"hash": hash, "principal": " "}]}), "keys[0].principal", "empty"),
        (
            json!({"keys": [{"hash": hash, "principal": "a", "expires_at": "2027-01-01"}]}),
            "keys[0].expires_at",
            "RFC 3339",
        ),
        (json!({"keys": [{"hash": hash, "principal": "a", "attributes": {"": ["x"]}}]}), "keys[0].attributes", "empty"),
        (json!({"keys": [{"hash": hash, "principal": "a", "role": "x"}]}), "keys[0].role", "unknown field `role`"),
        (
            json!({"keys": [{"hash": hash, "principal": "a"}, {"hash": hash, "principal": "b"}]}),
            "keys[1].hash",
            "`keys[0]`",
        ),
        (json!({"keys": [{"hash": hash, "principal": "a"}], "prefix": ""}), "prefix", "empty"),
        (json!({"keys": [{"hash": hash, "principal": "a"}], "prefix": "tg/"}), "prefix", "'/'"),
        (
            json!({"keys": [{"hash": hash, "principal": "a"}], "reload_interval": 0}),
            "reload_interval",
            "longer than 0s",
        ),
        (json!({"keys_file": "/nonexistent/keys.yaml"}), "keys_file", "cannot read /nonexistent/keys.yaml"),
    ];
    for (config, field, needle) in cases {
        let e = build_err(config.clone());
        assert_eq!(e.field, field, "{config}: {e}");
        assert!(e.message.contains(needle), "{config}: {e}");
    }
}

#[test]
fn key_file_errors_name_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    std::fs::write(&path, "- hash: sha256:abc\n  principal: a\n").unwrap();
    let e = build_err(json!({"keys_file": path}));
    assert_eq!(e.field, "keys_file");
    assert!(e.message.contains(&format!("{} at `[0].hash`", path.display())), "{e}");
    std::fs::write(&path, "- hash: x\n  principal: a\n  disabled: maybe\n").unwrap();
    let e = build_err(json!({"keys_file": path}));
    assert!(e.message.contains("[0].disabled"), "{e}");
    std::fs::write(&path, "").unwrap();
    assert!(build_err(json!({"keys_file": path})).message.contains("is empty"));
}

#[tokio::test]
async fn local_api_key_is_the_same_provider_under_the_ogx_name() {
    let (key, hash) = new_key("");
    let p = LocalApiKeyBuilder
        .build(json!({"keys": [{"hash": hash, "principal": "a"}]}), &BuildContext::default())
        .unwrap();
    assert_eq!(LocalApiKeyBuilder.type_name(), "local_api_key");
    assert_eq!(p.describe().type_name, "local_api_key");
    assert_eq!(p.validate(&key, &ctx()).await.unwrap().principal, "a");
    assert_eq!(API_KEY_HEADER, "x-api-key");
}

/// The shipped examples must load as they are.
#[tokio::test]
async fn example_configs_build() {
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    for (file, builder) in [
        ("api_key.yaml", &ApiKeyBuilder as &dyn ProviderBuilder),
        ("local_api_key.yaml", &LocalApiKeyBuilder as &dyn ProviderBuilder),
    ] {
        let text = std::fs::read_to_string(config_dir.join(file)).unwrap();
        let doc: serde_json::Value = yaml_serde::from_str(&text).unwrap();
        let mut section = doc["provider_config"].clone();
        let object = section.as_object_mut().unwrap();
        assert_eq!(object.remove("type"), Some(json!(builder.type_name())), "{file}");
        // Not into the repository's config directory.
        object.insert("record_usage".into(), json!(false));
        let build_ctx = BuildContext { base_dir: Some(config_dir.clone()), ..Default::default() };
        let p = builder.build(section, &build_ctx).unwrap_or_else(|e| panic!("{file}: {e}"));
        // The documented demo key works, so users can try the example as is.
        assert_eq!(p.validate("tg_example-key-do-not-use-in-production", &ctx()).await.unwrap().principal, "demo");
        if file == "api_key.yaml" {
            let from_file = p.validate("tg_example-file-key-do-not-use-in-production", &ctx()).await.unwrap();
            assert_eq!(from_file.principal, "file-demo");
        }
        p.close().await;
    }
}

/// OGX's `local_api_key` form: plaintext keys, hashed at load; the principal
/// is a digest-derived id, never the key; OGX's implicit roles.
#[tokio::test]
async fn ogx_plaintext_api_keys_are_hashed_and_never_the_principal() {
    let key = "sk-ogx-plaintext-key-0123456789";
    let p = LocalApiKeyBuilder
        .build(serde_json::json!({"api_keys": [key]}), &tokengate_api::BuildContext::default())
        .unwrap();
    let who = p.validate(key, &tokengate_api::RequestContext::new("GET", "/v1/models")).await.unwrap();
    let digest = hex::encode(tokengate_kit::token_hash(key));
    assert_eq!(who.principal, format!("api-key-{}", &digest[..8]));
    assert_ne!(who.principal, key);
    assert_eq!(who.attributes["roles"], vec!["admin", "owner"]);
    assert!(!format!("{:?}", p.describe()).contains(key));
    assert!(p.validate("sk-ogx-other", &tokengate_api::RequestContext::new("GET", "/")).await.is_err());
}

// ---------------------------------------------------------------------------
// Issue #22: the key format, lifecycle, usage and constraints
// ---------------------------------------------------------------------------

/// A key of the generator before the checksummed format: prefix + 43 base64url characters.
fn legacy_key(prefix: &str) -> (String, String) {
    use base64::Engine as _;
    let mut random = [0u8; 32];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    let key = format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random));
    let hash = hash_key(&key);
    (key, hash)
}

/// `key` with its last checksum character changed.
fn with_bad_checksum(key: &str) -> String {
    let mut bad = key.to_string();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    bad
}

#[tokio::test]
async fn a_wrong_checksum_is_refused_offline_as_malformed() {
    let (key, hash) = new_key("tg_");
    let bad = with_bad_checksum(&key);
    // Configure the bad key's own hash too: were it looked up, it would be accepted.
    let p = build(json!({"keys": [
        {"id": "good", "hash": hash, "principal": "a"},
        {"id": "typo", "hash": hash_key(&bad), "principal": "should-never-match"}
    ]}))
    .unwrap();
    let e = p.validate(&bad, &ctx()).await.unwrap_err();
    assert_eq!(e.reason(), &Reason::Malformed);
    assert_eq!(e.kind().http_status(), 401);
    assert!(e.detail().contains("checksum"), "{}", e.detail());
    assert_eq!(e.key_id(), None, "no lookup, so no key");
    assert_eq!(p.validate(&key, &ctx()).await.unwrap().principal, "a");
    // Truncated by one character: no longer the new shape, so looked up, and unknown.
    let e = p.validate(&key[..key.len() - 1], &ctx()).await.unwrap_err();
    assert_eq!(e.detail(), "unknown API key");
}

#[tokio::test]
async fn keys_of_the_old_format_and_hand_made_keys_keep_working() {
    let (legacy, legacy_hash) = legacy_key("tg_");
    let (bare, bare_hash) = legacy_key("");
    let hand_made = "tg_example-key-do-not-use-in-production";
    let p = build(json!({"keys": [
        {"hash": legacy_hash, "principal": "legacy"},
        {"hash": bare_hash, "principal": "bare"},
        {"hash": hash_key(hand_made), "principal": "hand"}
    ]}))
    .unwrap();
    assert_eq!(p.validate(&legacy, &ctx()).await.unwrap().principal, "legacy");
    assert_eq!(p.validate(&bare, &ctx()).await.unwrap().principal, "bare");
    assert_eq!(p.validate(hand_made, &ctx()).await.unwrap().principal, "hand");
}

#[test]
fn the_documented_scanner_regex_matches_generated_keys() {
    assert_eq!(scanner_regex("tg_"), "tg_k1_[0-9A-Za-z]{49}");
    let (key, _) = generate_key("tg_").unwrap();
    let body = key.strip_prefix("tg_k1_").unwrap();
    assert_eq!(body.len(), 49);
    assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(keygen::shape_of(&key), Shape::Checksummed);
    assert_eq!(keygen::shape_of(&with_bad_checksum(&key)), Shape::BadChecksum);
    // Without a prefix too: the shape is the key's tail.
    let (bare, _) = generate_key("").unwrap();
    assert_eq!(keygen::shape_of(&bare), Shape::Checksummed);
}

#[tokio::test]
async fn each_lifecycle_state_refuses_with_its_own_reason_and_the_key_id() {
    let keys: Vec<(String, String)> = (0..5).map(|_| new_key("tg_")).collect();
    let p = build(json!({"keys": [
        {"id": "k-susp", "hash": keys[0].1, "principal": "a", "status": "suspended", "reason": "billing overdue"},
        {"id": "k-rev", "hash": keys[1].1, "principal": "a", "status": "revoked", "reason": "leaked in a gist"},
        {"id": "k-old", "hash": keys[2].1, "principal": "a", "expires_at": "2020-01-01T00:00:00Z", "rotated_to": "k-new"},
        {"id": "k-new", "hash": keys[3].1, "principal": "a", "owner": "team-ml", "name": "ci",
         "description": "deploys", "created_at": "2026-01-01T00:00:00Z", "metadata": {"ticket": 42},
         "rate_limit": "100/min", "daily_quota": 1000, "monthly_quota": 20000},
        {"id": "k-exp", "hash": keys[4].1, "principal": "a", "expires_at": "2020-01-01T00:00:00Z"}
    ]}))
    .unwrap();
    let refusal = |i: usize| {
        let p = &p;
        let key = keys[i].0.clone();
        async move { p.validate(&key, &ctx()).await.unwrap_err() }
    };
    let e = refusal(0).await;
    assert_eq!(
        (e.reason(), e.detail(), e.key_id()),
        (&Reason::KeySuspended, "key suspended: billing overdue", Some("k-susp"))
    );
    let e = refusal(1).await;
    assert_eq!(
        (e.reason(), e.detail(), e.key_id()),
        (&Reason::KeyRevoked, "key revoked: leaked in a gist", Some("k-rev"))
    );
    let e = refusal(2).await;
    assert_eq!(e.reason(), &Reason::KeyRotated);
    assert_eq!(e.detail(), "key rotated; replaced by k-new, grace ended at 2020-01-01T00:00:00Z");
    let e = refusal(4).await;
    assert_eq!((e.reason(), e.detail()), (&Reason::KeyExpired, "key expired at 2020-01-01T00:00:00Z"));
    for e in [refusal(0).await, refusal(1).await, refusal(2).await, refusal(4).await] {
        assert_eq!(e.kind().http_status(), 401);
    }
    // The accepted key carries its id and per-key limits to the later stages.
    let principal = p.validate(&keys[3].0, &ctx()).await.unwrap();
    assert_eq!(principal.key_id(), Some("k-new"));
    let credential = principal.credential.as_deref().unwrap();
    assert_eq!(credential.rate_limit.as_deref(), Some("100/min"));
    assert_eq!((credential.daily_quota, credential.monthly_quota), (Some(1000), Some(20000)));
    // Never serialized: not identity to send upstream.
    assert!(!serde_json::to_string(&principal).unwrap().contains("k-new"));
}

#[tokio::test]
async fn key_ids_are_unique_and_entries_without_one_get_a_derived_id() {
    let (a, a_hash) = new_key("");
    let (_, b_hash) = new_key("");
    let e = build_err(json!({"keys": [
        {"id": "same", "hash": a_hash, "principal": "a"},
        {"id": "same", "hash": b_hash, "principal": "b"}
    ]}));
    assert_eq!(e.field, "keys[1].id");
    assert!(e.message.contains("`same`"), "{}", e.message);
    let e = build_err(json!({"keys": [{"id": "bad id", "hash": a_hash, "principal": "a"}]}));
    assert_eq!(e.field, "keys[0].id");
    let e = build_err(json!({"keys": [{"hash": a_hash, "principal": "a", "daily_quota": 0}]}));
    assert_eq!(e.field, "keys[0].daily_quota");
    let e = build_err(json!({"keys": [{"hash": a_hash, "principal": "a", "rate_limit": " "}]}));
    assert_eq!(e.field, "keys[0].rate_limit");
    let p = build(json!({"keys": [{"hash": a_hash, "principal": "a"}]})).unwrap();
    let id = p.validate(&a, &ctx()).await.unwrap().key_id().unwrap().to_string();
    assert_eq!(id, format!("h-{}", &a_hash["sha256:".len()..][..8]));
}

fn ctx_at(method: &str, path: &str, client: Option<&str>) -> RequestContext {
    let mut ctx = RequestContext::new(method, path);
    ctx.client_ip = client.map(|ip| ip.parse().unwrap());
    ctx
}

#[tokio::test]
async fn constraints_refuse_with_403_naming_the_constraint() {
    let (key, hash) = new_key("tg_");
    let p = build(json!({"keys": [{
        "id": "narrow", "hash": hash, "principal": "a",
        "allowed_methods": ["GET", "POST"],
        "allowed_paths": ["/v1/models", "/v1/chat/*"],
        "allowed_cidrs": ["10.0.0.0/8", "2001:db8::1"]
    }]}))
    .unwrap();
    for (method, path, client) in [
        ("GET", "/v1/models", "10.1.2.3"),
        ("POST", "/v1/chat", "10.1.2.3"),
        ("POST", "/v1/chat/completions", "2001:db8::1"),
        // A dual-stack listener's IPv4 form.
        ("GET", "/v1/chat/", "::ffff:10.9.9.9"),
    ] {
        let principal = p.validate(&key, &ctx_at(method, path, Some(client))).await;
        assert!(principal.is_ok(), "{method} {path} from {client}: {principal:?}");
    }
    for (method, path, client, constraint) in [
        ("DELETE", "/v1/models", Some("10.1.2.3"), "allowed_methods"),
        ("get", "/v1/models", Some("10.1.2.3"), "allowed_methods"),
        ("GET", "/v1/chatx", Some("10.1.2.3"), "allowed_paths"),
        ("GET", "/v1/models/x", Some("10.1.2.3"), "allowed_paths"),
        ("GET", "/v1/chat/%2e%2e/admin", Some("10.1.2.3"), "allowed_paths"),
        ("GET", "/v1/chat/../admin", Some("10.1.2.3"), "allowed_paths"),
        ("GET", "/v1/models", Some("192.168.0.1"), "allowed_cidrs"),
        // Unknown is not allowed: `serve` without a proxy profile that sets the client's address.
        ("GET", "/v1/models", None, "allowed_cidrs"),
    ] {
        let e = p.validate(&key, &ctx_at(method, path, client)).await.unwrap_err();
        assert_eq!(e.kind().http_status(), 403, "{method} {path}");
        assert_eq!(e.code(), "insufficient_scope");
        assert_eq!(e.reason(), &Reason::KeyConstraint(constraint.into()), "{method} {path} {client:?}");
        assert!(e.detail().contains(constraint), "{}", e.detail());
        assert_eq!(e.key_id(), Some("narrow"));
    }
    // The peer alone is not the client: under `serve` it is the proxy.
    let mut via_proxy = ctx_at("GET", "/v1/models", None);
    via_proxy.peer = Some("10.0.0.1:443".parse().unwrap());
    assert_eq!(p.validate(&key, &via_proxy).await.unwrap_err().reason(), &Reason::key_constraint("allowed_cidrs"));
    for (field, value) in [
        ("allowed_cidrs", json!(["10.0.0.0/33"])),
        ("allowed_paths", json!(["v1"])),
        ("allowed_paths", json!(["/v1/%61"])),
        ("allowed_paths", json!(["/v1/*/x"])),
        ("allowed_paths", json!(["/v1/../x"])),
        ("allowed_methods", json!(["get"])),
        ("allowed_methods", json!(["GE T"])),
    ] {
        let e = build_err(json!({"keys": [{"hash": new_key("").1, "principal": "a", field: value}]}));
        assert_eq!(e.field, format!("keys[0].{field}[0]"), "{value}");
    }
}

#[tokio::test]
async fn usage_is_counted_in_memory_and_written_at_flush_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_hash) = new_key("tg_");
    let (b, b_hash) = new_key("tg_");
    let file = format!("- id: ka\n  hash: {a_hash}\n  principal: a\n- id: kb\n  hash: {b_hash}\n  principal: b\n");
    std::fs::write(dir.path().join("keys.yaml"), file).unwrap();
    let config = json!({"keys_file": "keys.yaml", "usage_flush_interval": "1h"});
    let p = build_in(dir.path(), config.clone()).unwrap();
    for _ in 0..3 {
        p.validate(&a, &ctx()).await.unwrap();
    }
    p.validate(&b, &ctx()).await.unwrap();
    // A refused request is not usage.
    let _ = p.validate(&with_bad_checksum(&b), &ctx()).await;
    let usage_path = dir.path().join("keys.yaml.usage.json");
    assert!(!usage_path.exists(), "no I/O per request");
    p.close().await;
    let usage = usage::read_usage_file(&usage_path).unwrap();
    assert_eq!(usage.keys["ka"].total(), 3);
    assert_eq!(usage.keys["kb"].total(), 1);
    let today = &humantime::format_rfc3339_seconds(SystemTime::now()).to_string()[..10];
    assert_eq!(usage.keys["ka"].requests_per_day[today], 3);
    assert!(usage.keys["ka"].last_used_at.as_deref().unwrap().starts_with(today));

    // A second provider (a restart, another process) adds to the file rather than overwriting it.
    let p = build_in(dir.path(), config).unwrap();
    p.validate(&a, &ctx()).await.unwrap();
    p.close().await;
    assert_eq!(usage::read_usage_file(&usage_path).unwrap().keys["ka"].total(), 4);
}

#[tokio::test]
async fn usage_is_flushed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_hash) = new_key("tg_");
    std::fs::write(dir.path().join("keys.json"), format!(r#"[{{"id": "ka", "hash": "{a_hash}", "principal": "a"}}]"#))
        .unwrap();
    let p = build_in(dir.path(), json!({"keys_file": "keys.json", "usage_flush_interval": "100ms"})).unwrap();
    p.validate(&a, &ctx()).await.unwrap();
    let usage_path = dir.path().join("keys.json.usage.json");
    let written = eventually(Duration::from_secs(5), async || {
        usage::read_usage_file(&usage_path).is_ok_and(|u| u.keys.get("ka").is_some_and(|k| k.total() == 1))
    })
    .await;
    assert!(written, "the usage file was not written by the flusher");
    p.close().await;
}
