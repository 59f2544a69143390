//! Attack class: shared-secret (HS256/384/512) tokens (RFC 8725 §3.5, RFC 7518 §3.2).
//!
//! HMAC stays available with an explicit `secret` — never beside a key set,
//! never shorter than the hash (32, 48, 64 bytes for HS256/384/512) — and a secret-configured provider accepts
//! only the HMAC algorithms it was given. The MAC is checked with
//! aws-lc-rs' constant-time `hmac::verify`.

use crate::fixtures::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

/// 64 bytes: long enough for HS512 (RFC 7518 §3.2).
const SECRET: &str = "an-hmac-secret-of-sixty-four-bytes-0123456789abcdef0123456789abc";

fn secret_config(extra: Value) -> Value {
    with(json!({"type": "oauth2_token", "issuer": ISS, "audience": AUD, "secret": SECRET}), extra)
}

#[tokio::test]
async fn hs256_384_512_with_the_shared_secret_work() {
    let provider = build_ok(secret_config(json!({})));
    for alg in ["HS256", "HS384", "HS512"] {
        let t = hmac_token(alg, SECRET.as_bytes(), &json!({"alg": alg, "typ": "JWT"}).to_string(), &claims());
        assert_eq!(accepted(&provider, &t).await.principal, "alice");
    }
    // Claims are still checked.
    let expired =
        hmac_token("HS256", SECRET.as_bytes(), r#"{"alg":"HS256"}"#, &with(claims(), json!({"exp": now() - 3600})));
    invalid(&provider, &expired, &["token expired"]).await;
    let wrong_aud = hmac_token("HS256", SECRET.as_bytes(), r#"{"alg":"HS256"}"#, &with(claims(), json!({"aud": "x"})));
    invalid(&provider, &wrong_aud, &["audience"]).await;
}

#[tokio::test]
async fn wrong_secrets_and_tampering_are_refused() {
    let provider = build_ok(secret_config(json!({})));
    let header = r#"{"alg":"HS256"}"#;
    let shorter = &SECRET[..SECRET.len() - 1];
    let longer = format!("{SECRET}0");
    let upper = SECRET.to_uppercase();
    for wrong in [shorter.as_bytes(), longer.as_bytes(), upper.as_bytes(), b""] {
        let t = hmac_token("HS256", wrong, header, &claims());
        invalid(&provider, &t, &["signature invalid (alg HS256)"]).await;
    }
    let good = hmac_token("HS256", SECRET.as_bytes(), header, &claims());
    let mac = unb64(&segments(&good).2);
    for bad in [vec![0u8; 32], mac[..31].to_vec(), [&mac[..], &[0]].concat(), mac[..16].to_vec(), vec![]] {
        let t =
            if bad.is_empty() { format!("{}.", good.rsplit_once('.').unwrap().0) } else { with_signature(&good, &bad) };
        invalid(&provider, &t, &[]).await;
    }
    // An HS512 MAC presented as HS256 (truncation attack) is refused.
    let hs512 = hmac_token("HS512", SECRET.as_bytes(), header, &claims());
    let (h, p, s) = segments(&hs512);
    let truncated = b64(&unb64(&s)[..32]);
    invalid(&provider, &format!("{h}.{p}.{truncated}"), &["signature invalid"]).await;
    // A genuine MAC moved onto other claims.
    let other = hmac_token("HS256", SECRET.as_bytes(), header, &with(claims(), json!({"sub": "root"})));
    let (_, p_other, _) = segments(&other);
    let (h, _, s) = segments(&good);
    invalid(&provider, &format!("{h}.{p_other}.{s}"), &["signature invalid"]).await;
}

#[tokio::test]
async fn a_secret_provider_accepts_only_hmac_and_only_its_allowlist() {
    let provider = build_ok(secret_config(json!({})));
    // Asymmetric tokens mean nothing to a shared-secret provider.
    for (key, kid) in [(&KEYS.rsa.key, "rsa-1"), (&KEYS.ec, "ec-1"), (&KEYS.ed, "ed-1")] {
        let t = token(key, kid, &claims());
        invalid(&provider, &t, &["is not allowed (allowed: HS256, HS384, HS512)"]).await;
    }
    // alg none, in every case.
    for alg in ["none", "NONE", "None"] {
        let t = format!("{}.", signing_input(&json!({"alg": alg}).to_string(), &claims().to_string()));
        invalid(&provider, &t, &["never accepted"]).await;
    }
    // A narrowed allowlist.
    let hs512_only = build_ok(secret_config(json!({"algorithms": ["HS512"]})));
    let hs256 = hmac_token("HS256", SECRET.as_bytes(), r#"{"alg":"HS256"}"#, &claims());
    invalid(&hs512_only, &hs256, &["alg HS256 is not allowed (allowed: HS512)"]).await;
    let hs512 = hmac_token("HS512", SECRET.as_bytes(), r#"{"alg":"HS512"}"#, &claims());
    accepted(&hs512_only, &hs512).await;
    // A token signed with an RSA key set's public key is just a wrong secret here.
    let confused = hmac_token("HS256", KEYS.rsa.spki_pem.as_bytes(), r#"{"alg":"HS256"}"#, &claims());
    invalid(&provider, &confused, &["signature invalid"]).await;
    // A kid is irrelevant to a single shared secret.
    let with_kid = hmac_token("HS256", SECRET.as_bytes(), r#"{"alg":"HS256","kid":"../../etc/passwd"}"#, &claims());
    accepted(&provider, &with_kid).await;
    let _ = Algorithm::HS256;
}

#[tokio::test]
async fn secret_configuration_is_checked() {
    // Shorter than 32 bytes.
    for short in ["", "short", "0123456789abcdef0123456789abcde"] {
        config_refused(secret_config(json!({"secret": short})), "provider_config.secret", "shorter than 32 bytes");
    }
    build_ok(secret_config(json!({"secret": "0123456789abcdef0123456789abcdef"})));
    // Never beside a key set, nor with introspection.
    config_refused(
        secret_config(json!({"jwks": {"uri": "https://idp.example/jwks"}})),
        "provider_config.secret",
        "cannot be combined with `jwks`",
    );
    config_refused(
        secret_config(
            json!({"introspection": {"url": "https://idp.example/introspect", "client_id": "a", "client_secret": "b"}}),
        ),
        "provider_config.secret",
        "cannot be combined with `introspection`",
    );
    // Only HMAC algorithms with a secret; never none.
    config_refused(secret_config(json!({"algorithms": ["RS256"]})), "provider_config.algorithms[0]", "needs a key set");
    config_refused(
        secret_config(json!({"algorithms": ["HS256", "none"]})),
        "provider_config.algorithms[1]",
        "never accepted",
    );
    // And the secret never shows in errors or Debug output.
    let e = build_err(secret_config(json!({"secret": "tiny-secret-value"})));
    assert!(!e.to_string().contains("tiny-secret-value") && !format!("{e:?}").contains("tiny-secret-value"));
    let provider = build_ok(secret_config(json!({})));
    assert!(!provider.message().contains(SECRET) && !provider.accepts().contains(SECRET));
    let config = tokengate::Config::parse(
        &serde_json::to_string_pretty(&json!({"provider_config": secret_config(json!({}))})).unwrap(),
        tokengate::Format::Yaml,
    )
    .unwrap();
    assert!(!format!("{config:?}").contains(SECRET), "Config's Debug shows the secret");
}

#[tokio::test]
async fn each_hmac_algorithm_needs_a_secret_as_long_as_its_hash() {
    let s32 = &SECRET[..32];
    let s48 = &SECRET[..48];
    let tok = |alg: &str, secret: &str| hmac_token(alg, secret.as_bytes(), &json!({"alg": alg}).to_string(), &claims());
    // By default only the algorithms the secret is long enough for are allowed.
    let p32 = build_ok(secret_config(json!({"secret": s32})));
    accepted(&p32, &tok("HS256", s32)).await;
    invalid(&p32, &tok("HS384", s32), &["alg HS384 is not allowed (allowed: HS256)"]).await;
    invalid(&p32, &tok("HS512", s32), &["alg HS512 is not allowed (allowed: HS256)"]).await;
    let p48 = build_ok(secret_config(json!({"secret": s48})));
    accepted(&p48, &tok("HS384", s48)).await;
    invalid(&p48, &tok("HS512", s48), &["alg HS512 is not allowed (allowed: HS256, HS384)"]).await;
    // Asking for them explicitly with a short secret is a config error.
    config_refused(
        secret_config(json!({"secret": s32, "algorithms": ["HS256", "HS512"]})),
        "provider_config.algorithms[1]",
        "HS512 needs a secret of at least 64 bytes",
    );
    config_refused(
        secret_config(json!({"secret": s32, "algorithms": ["HS384"]})),
        "provider_config.algorithms[0]",
        "at least 48 bytes",
    );
}
