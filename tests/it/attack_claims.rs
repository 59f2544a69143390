//! Attack class: claims that are missing, mistyped, out of time or meant for
//! someone else (RFC 7519 §4.1, RFC 8725 §3.8–3.9). Every token here carries
//! a valid signature: only the claims are wrong.

use crate::fixtures::*;
use serde_json::{json, Value};

async fn setup() -> (Server, tokengate::Pipeline) {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    (server, provider)
}

fn signed(claims: &Value) -> String {
    token(&KEYS.ec, "ec-1", claims)
}

#[tokio::test]
async fn exp_must_be_present_and_numeric() {
    let (server, provider) = setup().await;
    invalid(&provider, &signed(&with(claims(), json!({"exp": null}))), &["token has no exp claim"]).await;
    for (exp, reason) in [
        (json!("9999999999"), "the exp claim is not a number"),
        (json!(true), "the exp claim is not a number"),
        (json!([9_999_999_999u64]), "the exp claim is not a number"),
        (json!({"$date": 9_999_999_999u64}), "the exp claim is not a number"),
    ] {
        invalid(&provider, &signed(&with(claims(), json!({ "exp": exp }))), &[reason]).await;
    }
    // An explicit JSON null is a value, and not a number.
    let text = claims().to_string().replacen("\"exp\":", "\"exp\":null,\"x\":", 1);
    let input = signing_input(r#"{"alg":"ES256","kid":"ec-1"}"#, &text);
    let sig = low_s_sign(input.as_bytes(), &KEYS.ec.enc, jsonwebtoken::Algorithm::ES256);
    invalid(&provider, &format!("{input}.{sig}"), &["the exp claim is not a number"]).await;
    // Fractional NumericDates are numbers (RFC 7519 §2).
    accepted(&provider, &signed(&with(claims(), json!({"exp": now() as f64 + 600.5})))).await;
    // Out-of-range numbers do not parse at all.
    let text = claims().to_string().replacen("\"sub\"", "\"big\":1e400,\"sub\"", 1);
    let input = signing_input(r#"{"alg":"ES256","kid":"ec-1"}"#, &text);
    let sig = low_s_sign(input.as_bytes(), &KEYS.ec.enc, jsonwebtoken::Algorithm::ES256);
    invalid(&provider, &format!("{input}.{sig}"), &["the payload is not valid JSON"]).await;

    // allow_missing_exp accepts a missing exp, but still not a mistyped or past one.
    let lax = build_ok(with(jwt_config(&server), json!({"allow_missing_exp": true})));
    accepted(&lax, &signed(&with(claims(), json!({"exp": null})))).await;
    invalid(&lax, &signed(&with(claims(), json!({"exp": "never"}))), &["not a number"]).await;
    invalid(&lax, &signed(&with(claims(), json!({"exp": now() - 3600}))), &["token expired at"]).await;
}

#[tokio::test]
async fn time_claims_honour_the_leeway_and_no_more() {
    let (server, provider) = setup().await;
    let t = now();
    // Default leeway 30s.
    accepted(&provider, &signed(&with(claims(), json!({"exp": t - 10})))).await;
    let e = invalid(&provider, &signed(&with(claims(), json!({"exp": t - 45}))), &["token expired at"]).await;
    assert!(e.detail().contains('T') && e.detail().ends_with('Z'), "RFC 3339 time: {e}");
    invalid(&provider, &signed(&with(claims(), json!({"exp": 0}))), &["token expired at 1970-01-01T00:00:00Z"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"exp": -1e15}))), &["token expired"]).await;

    accepted(&provider, &signed(&with(claims(), json!({"nbf": t + 10})))).await;
    invalid(&provider, &signed(&with(claims(), json!({"nbf": t + 120}))), &["token not valid before"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"nbf": "later"}))), &["the nbf claim is not a number"]).await;

    accepted(&provider, &signed(&with(claims(), json!({"iat": t + 10})))).await;
    invalid(&provider, &signed(&with(claims(), json!({"iat": t + 120}))), &["token issued in the future"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"iat": "now"}))), &["the iat claim is not a number"]).await;

    // A configured leeway of 2 minutes widens the window to exactly that.
    let wide = build_ok(with(jwt_config(&server), json!({"leeway": "2m"})));
    accepted(&wide, &signed(&with(claims(), json!({"exp": t - 100, "nbf": t + 100, "iat": t + 100})))).await;
    invalid(&wide, &signed(&with(claims(), json!({"exp": t - 150}))), &["expired"]).await;
    // Leeway 0: expired means expired.
    let strict = build_ok(with(jwt_config(&server), json!({"leeway": 0})));
    invalid(&strict, &signed(&with(claims(), json!({"exp": t - 2}))), &["expired"]).await;
}

#[tokio::test]
async fn leeway_above_five_minutes_is_refused_by_config() {
    let server = Server::jwks().await;
    for leeway in [json!("6m"), json!(301), json!("1h"), json!(86400)] {
        config_refused(
            with(jwt_config(&server), json!({ "leeway": leeway })),
            "provider_config.leeway",
            "more than the allowed",
        );
    }
    build_ok(with(jwt_config(&server), json!({"leeway": "5m"})));
    build_ok(with(jwt_config(&server), json!({"leeway": 300})));
    // Negative or nonsense durations are refused by the parser.
    for leeway in [json!(-5), json!("soon"), json!(1e300)] {
        let e = build_err(with(jwt_config(&server), json!({ "leeway": leeway })));
        assert_eq!(e.field, "provider_config.leeway", "{e}");
    }
}

#[tokio::test]
async fn audience_as_string_or_array() {
    let (server, provider) = setup().await;
    accepted(&provider, &signed(&with(claims(), json!({"aud": AUD})))).await;
    accepted(&provider, &signed(&with(claims(), json!({"aud": ["other", AUD]})))).await;
    invalid(
        &provider,
        &signed(&with(claims(), json!({"aud": "other"}))),
        &["audience [\"other\"] is not one of [\"attack-aud\"]"],
    )
    .await;
    invalid(
        &provider,
        &signed(&with(claims(), json!({"aud": ["a", "b"]}))),
        &["audience [\"a\", \"b\"] is not one of"],
    )
    .await;
    invalid(&provider, &signed(&with(claims(), json!({"aud": []}))), &["audience [] is not one of"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"aud": null}))), &["token has no aud claim"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"aud": 7}))), &["neither a string nor a list"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"aud": {"aud": AUD}}))), &["neither a string nor a list"]).await;
    // No near-misses: case, whitespace, prefix.
    for near in ["ATTACK-AUD", "attack-aud ", " attack-aud", "attack-au", "attack-aud2", "attack-aud/"] {
        invalid(&provider, &signed(&with(claims(), json!({ "aud": near }))), &["is not one of"]).await;
        invalid(&provider, &signed(&with(claims(), json!({ "aud": [near] }))), &["is not one of"]).await;
    }
    // Non-string members of the list never match, even if they look like the audience.
    invalid(&provider, &signed(&with(claims(), json!({"aud": [[AUD], {"a": AUD}, 1]}))), &["is not one of"]).await;
    // Several configured audiences: any one matches.
    let many = build_ok(with(jwt_config(&server), json!({"audience": ["x", AUD]})));
    accepted(&many, &signed(&with(claims(), json!({"aud": AUD})))).await;
    // No audience configured is refused unless explicitly waived.
    let mut cfg = jwt_config(&server);
    cfg.as_object_mut().unwrap().remove("audience");
    config_refused(cfg.clone(), "provider_config.audience", "is required");
    let any = build_ok(with(cfg, json!({"allow_any_audience": true})));
    accepted(&any, &signed(&with(claims(), json!({"aud": "whatever"})))).await;
    config_refused(with(jwt_config(&server), json!({"audience": ""})), "provider_config.audience", "is empty");
    config_refused(with(jwt_config(&server), json!({"audience": []})), "provider_config.audience", "is empty");
}

#[tokio::test]
async fn issuer_must_match_exactly() {
    let (_server, provider) = setup().await;
    accepted(&provider, &signed(&claims())).await;
    for iss in [
        "https://issuer.attack.test/",
        "https://issuer.attack.test.evil.example",
        "https://issuer.attack.test/evil",
        "HTTPS://ISSUER.ATTACK.TEST",
        "https://Issuer.attack.test",
        "http://issuer.attack.test",
        "https://issuer.attack.tes",
        " https://issuer.attack.test",
        "https://issuer.attack.test\u{0}",
        "",
    ] {
        let e = invalid(
            &provider,
            &signed(&with(claims(), json!({ "iss": iss }))),
            &["is not the expected \"https://issuer.attack.test\""],
        )
        .await;
        assert!(e.detail().starts_with("issuer "), "{e}");
    }
    invalid(&provider, &signed(&with(claims(), json!({"iss": null}))), &["token has no iss claim"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"iss": [ISS]}))), &["the iss claim is not a string"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"iss": {"iss": ISS}}))), &["not a string"]).await;
}

#[tokio::test]
async fn the_principal_claim_must_name_someone() {
    let (_server, provider) = setup().await;
    invalid(&provider, &signed(&with(claims(), json!({"sub": null}))), &["token has no \"sub\" claim"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"sub": ""}))), &["cannot name the principal"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"sub": ["alice"]}))), &["cannot name the principal"]).await;
    invalid(&provider, &signed(&with(claims(), json!({"sub": {"id": 1}}))), &["cannot name the principal"]).await;
}

#[tokio::test]
async fn duplicate_time_and_audience_claims_are_refused() {
    // RFC 7519 §4: reject, or use the lexically last member. tokengate rejects:
    // whichever copy it read, a reader of the forwarded token may read the other.
    let (_server, provider) = setup().await;
    let text = format!(r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{},"exp":{}}}"#, now() + 600, now() - 3600);
    let input = signing_input(r#"{"alg":"ES256","kid":"ec-1"}"#, &text);
    let sig = low_s_sign(input.as_bytes(), &KEYS.ec.enc, jsonwebtoken::Algorithm::ES256);
    invalid(&provider, &format!("{input}.{sig}"), &["duplicate member"]).await;
    let text = format!(r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","aud":"other","exp":{}}}"#, now() + 600);
    let input = signing_input(r#"{"alg":"ES256","kid":"ec-1"}"#, &text);
    let sig = low_s_sign(input.as_bytes(), &KEYS.ec.enc, jsonwebtoken::Algorithm::ES256);
    invalid(&provider, &format!("{input}.{sig}"), &["duplicate member"]).await;
}

/// Attack review (#13): `{"tenant":"acme","tenant":"globex"}` read as globex by
/// tokengate (last wins) and as acme by a first-wins reader of the forwarded
/// token. A member repeated anywhere in the payload is refused.
#[tokio::test]
async fn a_claim_given_twice_is_refused_at_any_depth() {
    let (server, provider) = setup().await;
    let base = claims();
    let body = base.to_string();
    let inner = body.trim_start_matches('{').trim_end_matches('}');
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "ec-1"}).to_string();
    for extra in [r#""sub":"root""#, r#""org":{"id":"acme","id":"globex"}"#] {
        let payload = format!("{{{inner},{extra}}}");
        let input = signing_input(&header, &payload);
        let t = format!("{input}.{}", low_s_sign(input.as_bytes(), &KEYS.ec.enc, jsonwebtoken::Algorithm::ES256));
        let e = invalid(&provider, &t, &["duplicate"]).await;
        assert_eq!(e.reason(), &tokengate::Reason::Malformed, "{extra}");
    }
    // The same members once each are fine.
    let payload = format!("{{{inner},\"org\":{{\"id\":\"acme\"}}}}");
    let input = signing_input(&header, &payload);
    let t = format!("{input}.{}", low_s_sign(input.as_bytes(), &KEYS.ec.enc, jsonwebtoken::Algorithm::ES256));
    accepted(&provider, &t).await;
    drop(server);
}

/// Issue #24 (claims read borrowed from the payload): a key spelled with
/// escapes is the key it spells, for the checks, the principal, the tenant
/// and the mapping alike; a second spelling of a key already there is a
/// repeat, at the top or nested; a large claim nobody maps changes nothing.
#[tokio::test]
async fn escaped_keys_are_the_keys_they_spell() {
    let server = Server::jwks().await;
    let mapped = json!({"tenant_claim": "org.id", "claims_mapping": {"realm_access.roles": "roles", "grp": "teams"}});
    let provider = build_ok(with(jwt_config(&server), mapped));
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "ec-1"}).to_string();
    let sign = |payload: &str| {
        let input = signing_input(&header, payload);
        format!("{input}.{}", low_s_sign(input.as_bytes(), &KEYS.ec.enc, jsonwebtoken::Algorithm::ES256))
    };
    let times = format!(r#""\u0065xp":{},"n\u0062f":{},"iat":{}"#, now() + 600, now() - 10, now() - 10);
    let escaped = format!(
        r#"{{"s\u0075b":"\u0061lice","\u0069ss":"{ISS}","a\u0075d":["x","{AUD}"],{times},
            "realm\u005faccess":{{"r\u006fles":["admin","\u0065ditor"]}},"\u0067rp":"ml","org":{{"\u0069d":"Acme"}}}}"#
    );
    let p = accepted(&provider, &sign(&escaped)).await;
    assert_eq!(p.principal, "alice");
    assert_eq!(p.attributes["roles"], vec!["admin", "editor"]);
    assert_eq!(p.attributes["teams"], vec!["ml"]);
    assert_eq!(p.tenant.as_deref(), Some("acme"));

    // The checks read the escaped spelling too: an expired `\u0065xp` is expired.
    let expired = escaped.replacen(&format!("{}", now() + 600), "1000", 1);
    invalid(&provider, &sign(&expired), &["token expired at"]).await;

    let plain = format!(r#""sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{}"#, now() + 600);
    for repeat in [
        r#""s\u0075b":"root""#,
        r#""\u0073\u0075\u0062":"root""#,
        r#""org":{"id":"acme","\u0069d":"globex"}"#,
        r#""realm_access":{"roles":["a"],"roles":["b"]}"#,
    ] {
        let e = invalid(&provider, &sign(&format!("{{{plain},{repeat}}}")), &["duplicate member"]).await;
        assert_eq!(e.reason(), &tokengate::Reason::Malformed, "{repeat}");
    }

    // A claim nobody maps or checks, large and nested, is read and ignored.
    let items: Vec<Value> = (0..40).map(|i| json!({"id": i, "tags": ["t", {"deep": [i, null, true]}]})).collect();
    let huge = json!({"audit": {"items": items, "note": "x".repeat(1_000)}});
    let payload = format!("{{{plain},\"blob\":{huge}}}");
    let p = accepted(&provider, &sign(&payload)).await;
    assert_eq!(p.principal, "alice");
    assert!(p.attributes.is_empty(), "{:?}", p.attributes);
    drop(server);
}
