//! Attack class: algorithm confusion (RFC 8725 §2.1, §3.1, §3.2).
//!
//! `alg: none` in any spelling, HMAC tokens signed with the provider's public
//! key (the classic RS256→HS256 key confusion), an algorithm that does not fit
//! the key's `kty`/`crv`/`alg`, and algorithms outside the allowlist — each
//! refused with a reason, against a real key set on 127.0.0.1.

use crate::fixtures::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

#[tokio::test]
async fn alg_none_is_refused_in_every_spelling() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let body = claims().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT"}).to_string();
        // The unsigned form (empty signature) and with a made-up signature.
        let unsigned = format!("{}.", signing_input(&header, &body));
        let e = invalid(&provider, &unsigned, &[&format!("alg \"{alg}\""), "never accepted"]).await;
        assert_eq!(e.reason(), &tokengate::Reason::Algorithm);
        let signed = format!("{}.c2lnbmF0dXJl", signing_input(&header, &body));
        invalid(&provider, &signed, &["never accepted"]).await;
        // With the kid of a real key, too.
        let header = json!({"alg": alg, "kid": "rsa-1"}).to_string();
        invalid(&provider, &format!("{}.", signing_input(&header, &body)), &["never accepted"]).await;
    }
    // JSON escapes do not smuggle it past the check: "n\u006fne" is "none".
    let escaped = format!("{}.", signing_input(r#"{"alg":"n\u006fne"}"#, &body));
    invalid(&provider, &escaped, &["never accepted"]).await;
}

#[tokio::test]
async fn alg_none_cannot_be_configured() {
    let server = Server::jwks().await;
    for spelling in ["none", "NONE"] {
        let cfg = with(jwt_config(&server), json!({"algorithms": ["RS256", spelling]}));
        config_refused(cfg, "provider_config.algorithms[1]", "never accepted");
    }
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_key_confusion() {
    let server = Server::jwks().await;
    let keys = &*KEYS;
    let default = build_ok(jwt_config(&server));
    let pinned = build_ok(with(jwt_config(&server), json!({"algorithms": ["RS256"]})));
    // What an attacker can derive from the published key, used as the HMAC secret.
    let n = unb64(keys.rsa.key.public_jwk["n"].as_str().unwrap());
    let secrets: [(&str, &[u8]); 4] = [
        ("SPKI PEM", keys.rsa.spki_pem.as_bytes()),
        ("SPKI DER", &keys.rsa.spki_der),
        ("PKCS#1 DER", &keys.rsa.pkcs1_der),
        ("modulus", &n),
    ];
    for (what, secret) in secrets {
        for alg in ["HS256", "HS384", "HS512"] {
            for kid in [Some("rsa-1"), None] {
                let header = match kid {
                    Some(kid) => json!({"alg": alg, "typ": "JWT", "kid": kid}),
                    None => json!({"alg": alg, "typ": "JWT"}),
                };
                let token = hmac_token(alg, secret, &header.to_string(), &claims());
                let e = invalid(&default, &token, &[&format!("alg {alg}"), "key confusion"]).await;
                assert!(e.detail().contains("shared-secret"), "{what}: {e}");
                assert_eq!(e.reason(), &tokengate::Reason::Algorithm, "{what}");
                invalid(&pinned, &token, &["key confusion"]).await;
            }
        }
    }
    // A symmetric key published in the set does not open the door either: it is skipped.
    let with_oct = Server::start().await;
    let mut jwks = standard_jwks();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "kid": "oct-1", "k": b64(b"0123456789abcdef0123456789abcdef")}));
    with_oct.route("/jwks", Reply::Json(200, jwks));
    let provider = build_ok(jwt_config(&with_oct));
    let token = hmac_token("HS256", b"0123456789abcdef0123456789abcdef", r#"{"alg":"HS256","kid":"oct-1"}"#, &claims());
    invalid(&provider, &token, &["key confusion"]).await;
    // A set with nothing but symmetric keys is an unusable set (the IdP's problem), not a way in.
    let only_oct = Server::start().await;
    only_oct.route("/jwks", Reply::Json(200, json!({"keys": [{"kty": "oct", "kid": "oct-1", "k": "c2VjcmV0"}]})));
    let provider = build_ok(jwt_config(&only_oct));
    refused(&provider, &token, tokengate::ErrorKind::InvalidToken, &["key confusion"]).await;
    let rsa = token_for_rsa();
    refused(&provider, &rsa, tokengate::ErrorKind::Unavailable, &["symmetric (`oct`) keys are never accepted"]).await;
}

fn token_for_rsa() -> String {
    token(&KEYS.rsa.key, "rsa-1", &claims())
}

#[tokio::test]
async fn hmac_algorithms_cannot_be_configured_beside_a_key_set() {
    let server = Server::jwks().await;
    config_refused(
        with(jwt_config(&server), json!({"algorithms": ["HS256"]})),
        "provider_config.algorithms[0]",
        "needs `secret`",
    );
    config_refused(
        with(jwt_config(&server), json!({"secret": "0123456789abcdef0123456789abcdef-long"})),
        "provider_config.secret",
        "cannot be combined with `jwks`",
    );
}

#[tokio::test]
async fn algorithm_must_fit_the_key_type_curve_and_pinned_alg() {
    let server = Server::start().await;
    let keys = &*KEYS;
    // "rsa-any" has no `alg`, so only its type constrains it; "rsa-pinned" pins RS256.
    server.route(
        "/jwks",
        Reply::Json(
            200,
            json!({"keys": [
                keys.rsa.key.jwk_unpinned("rsa-any"),
                keys.rsa.key.jwk("rsa-pinned"),
                keys.ec.jwk("ec-1"),
                keys.ec384.jwk("ec384-1"),
                keys.ed.jwk("ed-1"),
            ]}),
        ),
    );
    let provider = build_ok(jwt_config(&server));
    let c = claims();

    // Positive controls: each key with its own algorithm.
    for (key, kid) in [
        (&keys.rsa.key, "rsa-any"),
        (&keys.rsa.key, "rsa-pinned"),
        (&keys.ec, "ec-1"),
        (&keys.ec384, "ec384-1"),
        (&keys.ed, "ed-1"),
    ] {
        assert_eq!(accepted(&provider, &token(key, kid, &c)).await.principal, "alice");
    }
    // An unpinned RSA key serves PS256 as well.
    let ps = sign_with(&keys.rsa.key, Algorithm::PS256, &json!({"alg": "PS256", "kid": "rsa-any"}), &c);
    accepted(&provider, &ps).await;

    // kty mismatch: an EC signature presented under an RSA key's kid, and the other way round.
    let es_on_rsa = sign_with(&keys.ec, Algorithm::ES256, &json!({"alg": "ES256", "kid": "rsa-any"}), &c);
    invalid(&provider, &es_on_rsa, &["alg ES256 does not match key type RSA", "\"rsa-any\""]).await;
    let rs_on_ec = sign_with(&keys.rsa.key, Algorithm::RS256, &json!({"alg": "RS256", "kid": "ec-1"}), &c);
    invalid(&provider, &rs_on_ec, &["alg RS256 does not match key type EC P-256"]).await;
    let ed_on_ec = sign_with(&keys.ed, Algorithm::EdDSA, &json!({"alg": "EdDSA", "kid": "ec-1"}), &c);
    invalid(&provider, &ed_on_ec, &["alg EdDSA does not match key type EC P-256"]).await;
    let es_on_ed = sign_with(&keys.ec, Algorithm::ES256, &json!({"alg": "ES256", "kid": "ed-1"}), &c);
    invalid(&provider, &es_on_ed, &["does not match key type OKP Ed25519"]).await;
    // crv mismatch: ES384 under a P-256 key, ES256 under a P-384 key.
    let es384_on_p256 = sign_with(&keys.ec384, Algorithm::ES384, &json!({"alg": "ES384", "kid": "ec-1"}), &c);
    invalid(&provider, &es384_on_p256, &["alg ES384 does not match key type EC P-256"]).await;
    let es256_on_p384 = sign_with(&keys.ec, Algorithm::ES256, &json!({"alg": "ES256", "kid": "ec384-1"}), &c);
    invalid(&provider, &es256_on_p384, &["alg ES256 does not match key type EC P-384"]).await;
    // Pinned alg: the RS256-pinned key refuses PS256 and RS512, even though it is the right key.
    for (alg, name) in [(Algorithm::PS256, "PS256"), (Algorithm::RS512, "RS512")] {
        let t = sign_with(&keys.rsa.key, alg, &json!({"alg": name, "kid": "rsa-pinned"}), &c);
        invalid(&provider, &t, &[&format!("alg {name} does not match"), "restricts to RS256"]).await;
    }
}

#[tokio::test]
async fn key_set_entries_whose_alg_contradicts_their_type_are_not_used() {
    let server = Server::start().await;
    let keys = &*KEYS;
    let mut lying = keys.ec.jwk("ec-lies");
    lying["alg"] = json!("RS256");
    server.route("/jwks", Reply::Json(200, json!({"keys": [lying, keys.rsa.key.jwk("rsa-1")]})));
    let provider = build_ok(jwt_config(&server));
    // The contradictory entry is skipped, so its kid is simply unknown.
    let t = sign_with(&keys.ec, Algorithm::ES256, &json!({"alg": "ES256", "kid": "ec-lies"}), &claims());
    invalid(&provider, &t, &["unknown key id \"ec-lies\""]).await;
    accepted(&provider, &token_for_rsa()).await;
}

#[tokio::test]
async fn algorithms_outside_the_allowlist_are_refused() {
    let server = Server::jwks().await;
    let keys = &*KEYS;
    let c = claims();
    let es_only = build_ok(with(jwt_config(&server), json!({"algorithms": ["ES256"]})));
    accepted(&es_only, &token(&keys.ec, "ec-1", &c)).await;
    for (key, kid, name) in
        [(&keys.rsa.key, "rsa-1", "RS256"), (&keys.ed, "ed-1", "EdDSA"), (&keys.ec384, "ec384-1", "ES384")]
    {
        invalid(&es_only, &token(key, kid, &c), &[&format!("alg {name} is not allowed"), "allowed: ES256"]).await;
    }
    // The default allowlist is the asymmetric algorithms: all of these pass, no HS*.
    let default = build_ok(jwt_config(&server));
    for (key, kid) in [(&keys.rsa.key, "rsa-1"), (&keys.ec, "ec-1"), (&keys.ec384, "ec384-1"), (&keys.ed, "ed-1")] {
        accepted(&default, &token(key, kid, &c)).await;
    }
    // Names are case-sensitive (RFC 7515 §4.1.1) and unknown ones are named.
    for name in ["rs256", "Rs256", "RS1", "ES256K", "XYZ"] {
        let header = json!({"alg": name, "kid": "rsa-1"}).to_string();
        invalid(
            &default,
            &format!("{}.c2ln", signing_input(&header, &c.to_string())),
            &[&format!("unsupported alg \"{name}\"")],
        )
        .await;
    }
    // A missing or non-string alg.
    invalid(&default, &format!("{}.c2ln", signing_input(r#"{"kid":"rsa-1"}"#, &c.to_string())), &["no alg"]).await;
    invalid(
        &default,
        &format!("{}.c2ln", signing_input(r#"{"alg":256}"#, &c.to_string())),
        &["header is not valid JSON"],
    )
    .await;
    invalid(
        &default,
        &format!("{}.c2ln", signing_input(r#"{"alg":["RS256"]}"#, &c.to_string())),
        &["header is not valid JSON"],
    )
    .await;
    // Unknown names in the config are refused with the list of supported ones.
    config_refused(
        with(jwt_config(&server), json!({"algorithms": ["RS256", "RS1"]})),
        "provider_config.algorithms[1]",
        "not a supported algorithm",
    );
    config_refused(with(jwt_config(&server), json!({"algorithms": []})), "provider_config.algorithms", "is empty");
}

#[tokio::test]
async fn duplicate_alg_members_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    // Parsers disagree about which duplicate wins; tokengate refuses both orders.
    for header in [
        r#"{"alg":"ES256","alg":"none","kid":"ec-1"}"#,
        r#"{"alg":"none","alg":"ES256","kid":"ec-1"}"#,
        r#"{"alg":"ES256","kid":"ec-1","kid":"rsa-1"}"#,
    ] {
        let input = signing_input(header, &claims().to_string());
        let sig = low_s_sign(input.as_bytes(), &KEYS.ec.enc, Algorithm::ES256);
        invalid(&provider, &format!("{input}.{sig}"), &["duplicate"]).await;
    }
}
