//! TLS to identity providers: real HTTPS servers on 127.0.0.1 with a CA made
//! in the test (rcgen), served through rustls.
//!
//! - trusted through `tls_cafile` (absolute, or relative to the config file): works;
//! - an unknown CA, or a certificate for another name: *unavailable* (503),
//!   with a detail that says the certificate is not trusted — never "invalid token";
//! - `verify_tls: false`: works, and warns exactly once per process.

use crate::fixtures::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use tokengate::ErrorKind;

struct Https {
    server: Server,
    pki: TestPki,
    dir: tempfile::TempDir,
}

impl Https {
    async fn start(names: &[&str]) -> Https {
        let pki = test_pki(names);
        let server = Server::start_tls(pki.server_config.clone()).await;
        server.route("/jwks", Reply::Json(200, standard_jwks()));
        server.route("/introspect", Reply::Json(200, json!({"active": true, "sub": "alice"})));
        server.route("/auth", Reply::Json(200, json!({"principal": "alice"})));
        server.route("/user", Reply::Json(200, json!({"login": "alice", "id": 1})));
        server.route("/user/orgs", Reply::Json(200, json!([])));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
        Https { server, pki, dir }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

fn jwt(server: &Server, extra: Value) -> Value {
    with(jwt_config(server), extra)
}

/// A detail that blames the certificate, and not the token.
fn says_not_trusted(e: &tokengate::AuthError) {
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.detail().contains("TLS certificate not trusted"), "{e}");
    let lower = e.detail().to_lowercase();
    assert!(!lower.contains("invalid token") && !lower.contains("signature invalid"), "{e}");
}

#[tokio::test]
async fn jwks_over_https_trusted_through_tls_cafile() {
    let idp = Https::start(&["127.0.0.1", "localhost"]).await;
    assert!(idp.server.url("/jwks").starts_with("https://127.0.0.1:"));
    let provider = build_ok(jwt(&idp.server, json!({"tls_cafile": idp.ca_file()})));
    accepted(&provider, &token(&KEYS.ec, "ec-1", &claims())).await;
    assert_eq!(idp.server.count("/jwks"), 1);

    // A relative tls_cafile is resolved against the config file's directory.
    let config_path = idp.dir.path().join("tokengate.yaml");
    let section = jwt(&idp.server, json!({"tls_cafile": "ca.pem"}));
    std::fs::write(&config_path, serde_json::to_string_pretty(&json!({"provider_config": section})).unwrap()).unwrap();
    let provider = tokengate::Config::load(&config_path).unwrap().build(&tokengate::Registry::with_builtins()).unwrap();
    accepted(&provider, &token(&KEYS.rsa.key, "rsa-1", &claims())).await;
}

#[tokio::test]
async fn unknown_ca_is_unavailable_and_says_the_certificate_is_not_trusted() {
    let idp = Https::start(&["127.0.0.1"]).await;
    let t = token(&KEYS.ec, "ec-1", &claims());
    // The system roots do not know the test CA.
    let system_roots = build_ok(jwt(&idp.server, json!({})));
    let e =
        refused(&system_roots, &t, ErrorKind::Unavailable, &["key set at https://127.0.0.1", "UnknownIssuer"]).await;
    says_not_trusted(&e);
    // Another CA in tls_cafile (instead of, not in addition to, the system roots).
    let other = test_pki(&["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("other.pem"), &other.ca_pem).unwrap();
    let wrong_ca = build_ok(jwt(&idp.server, json!({"tls_cafile": dir.path().join("other.pem")})));
    says_not_trusted(&refused(&wrong_ca, &t, ErrorKind::Unavailable, &["UnknownIssuer"]).await);
    // The gate answers 503, not 401.
    let gate = tokengate::http::gate::Gate::new(wrong_ca);
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
    let rejection = gate.authenticate(&headers, &ctx()).await.unwrap_err();
    assert_eq!(rejection.error().kind().http_status(), 503);
    // No key-set request ever completed.
    assert_eq!(idp.server.count("/jwks"), 0);
    let _ = &idp.pki;
}

#[tokio::test]
async fn certificate_for_another_name_is_not_trusted() {
    let idp = Https::start(&["idp.example.com"]).await;
    let provider = build_ok(jwt(&idp.server, json!({"tls_cafile": idp.ca_file()})));
    let e = refused(
        &provider,
        &token(&KEYS.ec, "ec-1", &claims()),
        ErrorKind::Unavailable,
        &["certificate not valid for name \"127.0.0.1\""],
    )
    .await;
    says_not_trusted(&e);
}

#[tokio::test]
async fn a_cafile_that_is_not_a_ca_bundle_is_a_config_error() {
    let idp = Https::start(&["127.0.0.1"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    std::fs::write(dir.path().join("junk.pem"), "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        .unwrap();
    config_refused(
        jwt(&idp.server, json!({"tls_cafile": dir.path().join("missing.pem")})),
        "provider_config.tls_cafile",
        "cannot read",
    );
    let e = build_err(jwt(&idp.server, json!({"tls_cafile": dir.path().join("empty.pem")})));
    assert_eq!(e.field, "provider_config.tls_cafile", "{e}");
    let e = build_err(jwt(&idp.server, json!({"tls_cafile": dir.path().join("junk.pem")})));
    assert_eq!(e.field, "provider_config.tls_cafile", "{e}");
}

#[tokio::test]
async fn every_http_provider_honours_tls_cafile() {
    let idp = Https::start(&["127.0.0.1"]).await;
    let ca = idp.ca_file();
    let s = &idp.server;
    let sections = [
        (
            json!({"type": "oauth2_token", "introspection": {"url": s.url("/introspect"), "client_id": "tg", "client_secret": "cs"}, "allow_any_audience": true}),
            "opaque-1",
        ),
        (json!({"type": "custom", "endpoint": s.url("/auth")}), "api-key-1"),
        (json!({"type": "github_token", "github_api_base_url": s.url("")}), "ghp_tls1"),
    ];
    for (section, token) in sections {
        let trusted = build_ok(with(section.clone(), json!({"tls_cafile": ca})));
        assert_eq!(accepted(&trusted, token).await.principal, "alice");
        let untrusted = build_ok(section);
        says_not_trusted(&refused(&untrusted, &format!("{token}-b"), ErrorKind::Unavailable, &[]).await);
    }
}

#[tokio::test]
async fn verify_tls_false_works_and_warns_once() {
    let logs = capture_logs();
    let idp = Https::start(&["idp.example.com"]).await;
    let t = token(&KEYS.ec, "ec-1", &claims());
    for _ in 0..3 {
        let provider = build_ok(jwt(&idp.server, json!({"verify_tls": false})));
        accepted(&provider, &t).await;
    }
    let custom = build_ok(json!({"type": "custom", "endpoint": idp.server.url("/auth"), "verify_tls": false}));
    accepted(&custom, "api-key").await;
    let text = logs.text();
    // Once per process: other tests in this binary (the OGX conformance suite) set
    // verify_tls: false too, and the one warning may have come before the capture.
    let warnings = text.matches("verify_tls is false").count();
    assert!(warnings <= 1, "expected at most one warning in the whole test binary, logs:\n{text}");
    if let Some(line) = text.lines().find(|l| l.contains("verify_tls is false")) {
        assert!(line.contains("WARN"), "{line}");
    }
}

/// Issue #11: an https issuer whose discovery document names an http
/// `jwks_uri` is refused (unavailable) and the http address is never asked,
/// so neither the keys nor `jwks.token` travel unencrypted. (Before: fetched.)
#[tokio::test]
async fn discovery_never_downgrades_an_https_issuer_to_http_keys() {
    let idp = Https::start(&["127.0.0.1"]).await;
    let plain = Server::jwks().await;
    let issuer = idp.server.url("");
    let issuer = issuer.trim_end_matches('/').to_string();
    idp.server.route(
        "/.well-known/openid-configuration",
        Reply::Json(200, json!({"issuer": issuer, "jwks_uri": plain.url("/jwks")})),
    );
    let provider = build_ok(json!({
        "type": "oauth2_token", "issuer": issuer, "audience": AUD, "tls_cafile": idp.ca_file(),
        "jwks": {"token": "jwks-bearer-secret"},
    }));
    let e =
        provider.validate(&token(&KEYS.ec, "ec-1", &with(claims(), json!({"iss": issuer}))), &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.detail().contains("while the issuer is https://"), "{e}");
    assert_eq!(plain.count("/jwks"), 0, "the http key set is never fetched");

    // The same document naming the https key set works.
    idp.server.route(
        "/.well-known/openid-configuration",
        Reply::Json(200, json!({"issuer": issuer, "jwks_uri": idp.server.url("/jwks")})),
    );
    let provider =
        build_ok(json!({"type": "oauth2_token", "issuer": issuer, "audience": AUD, "tls_cafile": idp.ca_file()}));
    accepted(&provider, &token(&KEYS.ec, "ec-1", &with(claims(), json!({"iss": issuer})))).await;
}
