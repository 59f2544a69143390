//! Attack class: a token that brings its own key or steers the key lookup
//! (RFC 7515 §4.1.2–4.1.6, §4.1.11; RFC 8725 §3.10).
//!
//! `jku`, `x5u`, `x5c` and `jwk` are never trusted (and never fetched: the
//! test server records every request), `crit` is refused, and `kid` — path
//! traversal, SQL, URLs, 100 KB — is only ever a key in the fetched set.

use crate::fixtures::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

/// Every request the server saw was a key-set fetch, and there were at most `max` of them.
fn only_jwks_fetches(server: &Server, max: usize) {
    let targets = server.targets();
    assert!(targets.iter().all(|t| t == "/jwks"), "unexpected requests: {targets:?}");
    assert!(targets.len() <= max, "{} key-set fetches: {targets:?}", targets.len());
}

fn evil_routes(server: &Server) {
    let attacker_jwks = json!({"keys": [KEYS.ec_attacker.jwk("ec-1"), KEYS.ec_attacker.jwk("attacker-1")]});
    server.route("/evil/jwks", Reply::Json(200, attacker_jwks));
    server.route(
        "/evil/cert.pem",
        Reply::Raw { status: 200, body: b"-----BEGIN CERTIFICATE-----".to_vec(), chunked: false },
    );
}

#[tokio::test]
async fn embedded_jwk_is_never_trusted() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let attacker = &KEYS.ec_attacker;
    // The attacker's key embedded in the header, under the kid of the real set's key.
    let header = json!({"alg": "ES256", "kid": "ec-1", "jwk": attacker.jwk("ec-1")});
    invalid(&provider, &sign_with(attacker, Algorithm::ES256, &header, &claims()), &["signature invalid", "\"ec-1\""])
        .await;
    // Without a kid: the set's only P-256 key is used, not the embedded one.
    let header = json!({"alg": "ES256", "jwk": attacker.public_jwk});
    invalid(&provider, &sign_with(attacker, Algorithm::ES256, &header, &claims()), &["signature invalid"]).await;
    // A kid that only the embedded key has is simply unknown.
    let header = json!({"alg": "ES256", "kid": "attacker-1", "jwk": attacker.jwk("attacker-1")});
    invalid(&provider, &sign_with(attacker, Algorithm::ES256, &header, &claims()), &["unknown key id \"attacker-1\""])
        .await;
    // The same embedded key next to a *genuine* signature changes nothing: header members are ignored.
    let header = json!({"alg": "ES256", "kid": "ec-1", "jwk": attacker.jwk("ec-1")});
    accepted(&provider, &sign_with(&KEYS.ec, Algorithm::ES256, &header, &claims())).await;
    only_jwks_fetches(&server, 2);
}

#[tokio::test]
async fn jku_and_x5u_are_never_fetched() {
    let server = Server::jwks().await;
    evil_routes(&server);
    let provider = build_ok(jwt_config(&server));
    let attacker = &KEYS.ec_attacker;
    for (member, path) in [("jku", "/evil/jwks"), ("x5u", "/evil/cert.pem")] {
        let url = server.url(path);
        let real_kid = json!({"alg": "ES256", "kid": "ec-1", member: url});
        invalid(&provider, &sign_with(attacker, Algorithm::ES256, &real_kid, &claims()), &["signature invalid"]).await;
        let own_kid = json!({"alg": "ES256", "kid": "attacker-1", member: url});
        invalid(
            &provider,
            &sign_with(attacker, Algorithm::ES256, &own_kid, &claims()),
            &["unknown key id \"attacker-1\""],
        )
        .await;
    }
    assert_eq!(server.count("/evil/jwks"), 0, "the jku URL was fetched");
    assert_eq!(server.count("/evil/cert.pem"), 0, "the x5u URL was fetched");
    only_jwks_fetches(&server, 2);
}

#[tokio::test]
async fn embedded_x5c_certificate_is_never_trusted() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    // The attacker's self-signed certificate and its key.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["issuer.attack.test".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "issuer.attack.test");
    let cert = params.self_signed(&key).unwrap();
    let enc = EncodingKey::from_ec_der(&key.serialize_der());
    let x5c = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert.der());
    let input = |header: Value| signing_input(&header.to_string(), &claims().to_string());
    for header in [
        json!({"alg": "ES256", "kid": "ec-1", "x5c": [x5c]}),
        json!({"alg": "ES256", "x5c": [x5c]}),
        json!({"alg": "ES256", "kid": "ec-1", "x5c": [x5c], "x5t#S256": "AAAA"}),
    ] {
        let text = input(header);
        let sig = low_s_sign(text.as_bytes(), &enc, Algorithm::ES256);
        invalid(&provider, &format!("{text}.{sig}"), &["signature invalid"]).await;
    }
    only_jwks_fetches(&server, 2);
}

#[tokio::test]
async fn crit_is_refused_in_any_form() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let cases: Vec<(Value, &str)> = vec![
        (json!({"alg": "ES256", "kid": "ec-1", "crit": ["exp"], "exp": 1}), "critical ([\"exp\"])"),
        (json!({"alg": "ES256", "kid": "ec-1", "b64": false, "crit": ["b64"]}), "critical ([\"b64\"])"),
        (
            json!({"alg": "ES256", "kid": "ec-1", "crit": ["http://example.com/ext"], "http://example.com/ext": true}),
            "critical",
        ),
        (json!({"alg": "ES256", "kid": "ec-1", "crit": ["x-unknown"]}), "critical ([\"x-unknown\"])"),
        (json!({"alg": "ES256", "kid": "ec-1", "crit": []}), "critical ([])"),
        (json!({"alg": "ES256", "kid": "ec-1", "crit": "b64"}), "critical"),
        (json!({"alg": "ES256", "kid": "ec-1", "crit": null}), "critical"),
    ];
    for (header, reason) in cases {
        // Validly signed: only the crit member is wrong.
        let e = invalid(&provider, &sign_with(&KEYS.ec, Algorithm::ES256, &header, &claims()), &[reason]).await;
        assert!(e.detail().contains("supports none"), "{e}");
    }
}

#[tokio::test]
async fn hostile_kids_only_ever_look_up_the_key_set() {
    let server = Server::jwks().await;
    evil_routes(&server);
    let provider = build_ok(with(jwt_config(&server), json!({"max_token_bytes": 1_048_576})));
    accepted(&provider, &token(&KEYS.ec, "ec-1", &claims())).await;
    let evil_url = server.url("/evil/jwks");
    let kids: Vec<String> = vec![
        "../../etc/passwd".into(),
        "../../../../../../dev/zero".into(),
        "/etc/shadow".into(),
        "..\\..\\windows\\win.ini".into(),
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
        "file:///etc/passwd".into(),
        evil_url.clone(),
        "' OR 1=1 --".into(),
        "\"; DROP TABLE keys; --".into(),
        "ec-1' OR '1'='1".into(),
        "${jndi:ldap://127.0.0.1/a}".into(),
        "ec-1\u{0}".into(),
        "ec-1 ".into(),
        "EC-1".into(),
        "ec-1\nX-Injected: 1".into(),
        "*".into(),
        "".into(),
    ];
    for kid in &kids {
        let t = sign_with(&KEYS.ec, Algorithm::ES256, &json!({"alg": "ES256", "kid": kid}), &claims());
        let e = invalid(&provider, &t, &["unknown key id"]).await;
        assert!(e.detail().contains(&format!("{kid:?}")), "the kid is quoted escaped: {e}");
        assert!(!e.detail().contains('\n'), "{e}");
    }
    // 100 KB of kid: looked up, refused, and quoted only in part.
    let huge = "k".repeat(100 * 1024);
    let t = sign_with(&KEYS.ec, Algorithm::ES256, &json!({"alg": "ES256", "kid": huge}), &claims());
    let e = invalid(&provider, &t, &["unknown key id \"kkkk"]).await;
    assert!(e.detail().len() < 200, "detail of {} bytes", e.detail().len());
    // And with the default max_token_bytes the token never gets that far.
    let default = build_ok(jwt_config(&server));
    invalid(&default, &t, &["more than the 8192-byte limit"]).await;

    // One fetch to start, one forced by the first unknown kid; the cooldown absorbs the rest.
    assert_eq!(server.count("/evil/jwks"), 0);
    only_jwks_fetches(&server, 2);
}

#[tokio::test]
async fn kid_of_the_wrong_type_is_malformed() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    for kid in [json!(1), json!(["ec-1"]), json!({"kid": "ec-1"}), json!(true)] {
        let t = sign_with(&KEYS.ec, Algorithm::ES256, &json!({"alg": "ES256", "kid": kid}), &claims());
        invalid(&provider, &t, &["the header is not valid JSON"]).await;
    }
}

#[tokio::test]
async fn missing_kid_needs_an_unambiguous_key() {
    let server = Server::start().await;
    let k = &*KEYS;
    server.route(
        "/jwks",
        Reply::Json(200, json!({"keys": [k.ec.jwk("ec-1"), k.ec2.jwk("ec-2"), k.rsa.key.jwk("rsa-1")]})),
    );
    let provider = build_ok(jwt_config(&server));
    // Two P-256 keys: a kid-less ES256 token cannot pick one, even if it would verify under either.
    let no_kid = sign_with(&k.ec, Algorithm::ES256, &json!({"alg": "ES256"}), &claims());
    invalid(&provider, &no_kid, &["token has no kid", "2 keys in the key set fit alg ES256", "a kid is required"])
        .await;
    // One RSA key: unambiguous, so a kid-less RS256 token is fine.
    let rs = sign_with(&k.rsa.key, Algorithm::RS256, &json!({"alg": "RS256"}), &claims());
    accepted(&provider, &rs).await;
    // No key of the type at all.
    let ed = sign_with(&k.ed, Algorithm::EdDSA, &json!({"alg": "EdDSA"}), &claims());
    invalid(&provider, &ed, &["token has no kid", "no key for alg EdDSA"]).await;
    // `kid: null` is the same as no kid.
    let null_kid = sign_with(&k.ec, Algorithm::ES256, &json!({"alg": "ES256", "kid": null}), &claims());
    invalid(&provider, &null_kid, &["a kid is required"]).await;
}
