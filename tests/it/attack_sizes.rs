//! Attack class: resource exhaustion through size and depth.
//!
//! Tokens over `max_token_bytes` are refused before any parsing or network
//! call; every upstream answer (key set, discovery, introspection, custom
//! endpoint, GitHub) is capped at `max_response_bytes`, with or without a
//! Content-Length; JSON nested 10,000 deep — in claims, headers and every
//! upstream answer — is refused by serde_json's recursion limit, never a stack
//! overflow.

use crate::fixtures::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokengate::ErrorKind;

const SECRET: &str = "attack-sizes-shared-secret-0123456789";

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

fn introspection_config(server: &Server, extra: Value) -> Value {
    with(
        json!({
            "type": "oauth2_token",
            "introspection": {"url": server.url("/introspect"), "client_id": "tokengate", "client_secret": "introspection-secret"},
            "allow_any_audience": true,
            "cache": {"enabled": false},
        }),
        extra,
    )
}

fn custom_config(server: &Server, extra: Value) -> Value {
    with(json!({"type": "custom", "endpoint": server.url("/auth"), "cache": {"enabled": false}}), extra)
}

fn github_config(server: &Server, extra: Value) -> Value {
    with(json!({"type": "github_token", "github_api_base_url": server.url(""), "cache": {"enabled": false}}), extra)
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing_or_fetching() {
    let server = Server::jwks().await;
    let jwt = build_ok(jwt_config(&server));
    let secret = build_ok(json!({"type": "oauth2_token", "issuer": ISS, "audience": AUD, "secret": SECRET}));
    let introspection = build_ok(introspection_config(&server, json!({})));
    // A real, validly signed token that is simply too big.
    let big = token(&KEYS.ec, "ec-1", &with(claims(), json!({"pad": "x".repeat(8 * 1024)})));
    assert!(big.len() > 8192);
    invalid(&jwt, &big, &[&format!("token is {} bytes", big.len()), "8192-byte limit", "max_token_bytes"]).await;
    // Garbage of the same size is refused the same way: the size check comes first.
    let garbage = "A".repeat(8193);
    invalid(&jwt, &garbage, &["8193 bytes", "max_token_bytes"]).await;
    invalid(&jwt, &format!("{}.{}.{}", "A".repeat(4000), "B".repeat(4000), "C".repeat(200)), &["max_token_bytes"])
        .await;
    invalid(&secret, &garbage, &["max_token_bytes"]).await;
    invalid(&introspection, &garbage, &["max_token_bytes"]).await;
    // Exactly at the limit is parsed (and refused for what it is, not for its size).
    let at_limit = "A".repeat(8192);
    let e = invalid(&jwt, &at_limit, &[]).await;
    assert!(!e.detail().contains("max_token_bytes"), "{e}");
    // Nothing above needed the network.
    assert!(server.targets().is_empty(), "requests were made: {:?}", server.targets());

    // A raised limit lets the big token through; the limit itself is bounded.
    let raised = build_ok(with(jwt_config(&server), json!({"max_token_bytes": 65536})));
    accepted(&raised, &big).await;
    config_refused(
        with(jwt_config(&server), json!({"max_token_bytes": 2 * 1024 * 1024})),
        "provider_config.max_token_bytes",
        "between 1 and 1048576",
    );
    config_refused(
        with(jwt_config(&server), json!({"max_token_bytes": 0})),
        "provider_config.max_token_bytes",
        "between 1 and 1048576",
    );
}

#[tokio::test]
async fn key_set_answers_are_capped_in_bytes_and_keys() {
    // A key set padded past the limit, once with Content-Length and once streamed without.
    let mut padded = standard_jwks();
    padded["padding"] = json!("x".repeat(64 * 1024));
    for chunked in [false, true] {
        let server = Server::start().await;
        server.route("/jwks", Reply::Raw { status: 200, body: padded.to_string().into_bytes(), chunked });
        let provider = build_ok(with(jwt_config(&server), json!({"max_response_bytes": 16 * 1024})));
        let e = refused(
            &provider,
            &token(&KEYS.ec, "ec-1", &claims()),
            ErrorKind::Unavailable,
            &["key set at", "16384-byte limit"],
        )
        .await;
        assert!(e.detail().contains("exceeds"), "{e}");
        // The default (1 MiB) takes it.
        let default = build_ok(jwt_config(&server));
        accepted(&default, &token(&KEYS.ec, "ec-1", &claims())).await;
    }
    // Too many keys.
    let server = Server::start().await;
    let many: Vec<Value> = (0..101).map(|i| KEYS.ec.jwk(&format!("k{i}"))).collect();
    server.route("/jwks", Reply::Json(200, json!({ "keys": many })));
    let provider = build_ok(jwt_config(&server));
    refused(
        &provider,
        &token(&KEYS.ec, "k1", &claims()),
        ErrorKind::Unavailable,
        &["101 keys", "more than max_keys (100)"],
    )
    .await;
    config_refused(
        with(jwt_config(&server), json!({"jwks": {"uri": server.url("/jwks"), "max_keys": 0}})),
        "provider_config.jwks.max_keys",
        "at least 1",
    );
    config_refused(
        with(jwt_config(&server), json!({"max_response_bytes": 0})),
        "provider_config.max_response_bytes",
        "more than 0",
    );
}

#[tokio::test]
async fn discovery_documents_are_capped() {
    let server = Server::start().await;
    let doc = json!({"issuer": server.url(""), "jwks_uri": server.url("/jwks"), "padding": "x".repeat(64 * 1024)});
    server.route(
        "/.well-known/openid-configuration",
        Reply::Raw { status: 200, body: doc.to_string().into_bytes(), chunked: true },
    );
    server.route("/jwks", Reply::Json(200, standard_jwks()));
    let cfg = json!({"type": "oauth2_token", "issuer": server.url(""), "audience": AUD, "max_response_bytes": 8192});
    let provider = build_ok(cfg);
    let t = token(&KEYS.ec, "ec-1", &with(claims(), json!({"iss": server.url("")})));
    refused(&provider, &t, ErrorKind::Unavailable, &["OIDC discovery", "8192-byte limit"]).await;
    assert_eq!(server.count("/jwks"), 0);
}

#[tokio::test]
async fn introspection_custom_and_github_answers_are_capped() {
    let big_active = json!({"active": true, "sub": "alice", "padding": "x".repeat(64 * 1024)});
    let big_user = json!({"login": "alice", "id": 1, "bio": "x".repeat(64 * 1024)});
    let big_principal = json!({"principal": "alice", "attributes": {"roles": ["x".repeat(64 * 1024)]}});
    for chunked in [false, true] {
        let server = Server::start().await;
        server.route("/introspect", Reply::Raw { status: 200, body: big_active.to_string().into_bytes(), chunked });
        server.route("/auth", Reply::Raw { status: 200, body: big_principal.to_string().into_bytes(), chunked });
        server.route("/user", Reply::Raw { status: 200, body: big_user.to_string().into_bytes(), chunked });
        let limit = json!({"max_response_bytes": 4096});
        let introspection = build_ok(introspection_config(&server, limit.clone()));
        refused(
            &introspection,
            "opaque-token-1",
            ErrorKind::Unavailable,
            &["introspection endpoint", "4096-byte limit"],
        )
        .await;
        let custom = build_ok(custom_config(&server, limit.clone()));
        refused(&custom, "api-key-1", ErrorKind::Unavailable, &["custom endpoint", "4096-byte limit"]).await;
        let github = build_ok(github_config(&server, limit.clone()));
        refused(&github, "ghp_token1", ErrorKind::Unavailable, &["GitHub /user", "4096-byte limit"]).await;
        // Organization pages are capped too.
        server.route("/user", Reply::Json(200, json!({"login": "alice", "id": 1})));
        let orgs: Vec<Value> = (0..200).map(|i| json!({"login": format!("org-{i}-{}", "x".repeat(40))})).collect();
        server.route(
            "/user/orgs",
            Reply::Raw { status: 200, body: Value::Array(orgs).to_string().into_bytes(), chunked },
        );
        refused(&github, "ghp_token2", ErrorKind::Unavailable, &["GitHub /user/orgs", "4096-byte limit"]).await;
    }
}

#[tokio::test]
async fn deeply_nested_claims_do_not_overflow_the_stack() {
    let server = Server::jwks().await;
    let provider = build_ok(with(jwt_config(&server), json!({"max_token_bytes": 1_048_576})));
    let secret = build_ok(
        json!({"type": "oauth2_token", "issuer": ISS, "audience": AUD, "secret": SECRET, "max_token_bytes": 1_048_576}),
    );
    let header = r#"{"alg":"ES256","kid":"ec-1"}"#;
    let base = claims().to_string();
    for nested in [nested_arrays(10_000), nested_objects(10_000), nested_arrays(129)] {
        // Validly signed, so the payload really is parsed.
        let text = format!(r#"{{"deep":{nested},{}"#, &base[1..]);
        let input = signing_input(header, &text);
        let sig = low_s_sign(input.as_bytes(), &KEYS.ec.enc, Algorithm::ES256);
        invalid(&provider, &format!("{input}.{sig}"), &["the payload is not valid JSON"]).await;
        let t = hmac_token_text("HS256", SECRET.as_bytes(), r#"{"alg":"HS256"}"#, &text);
        invalid(&secret, &t, &["the payload is not valid JSON"]).await;
        // In the header, where the alg is looked for.
        let deep_header = format!(r#"{{"alg":{nested},"kid":"ec-1"}}"#);
        invalid(&provider, &format!("{}.c2ln", signing_input(&deep_header, &base)), &["the header is not valid JSON"])
            .await;
    }
    // Nesting inside a header member tokengate does not read is skipped without recursion:
    // the token stays valid (and the chain's ownership peek survives it too).
    let deep_ignored = format!(r#"{{"alg":"ES256","kid":"ec-1","x":{}}}"#, nested_arrays(10_000));
    let input = signing_input(&deep_ignored, &base);
    let sig = low_s_sign(input.as_bytes(), &KEYS.ec.enc, Algorithm::ES256);
    let t = format!("{input}.{sig}");
    let _ = provider.owner(&t);
    match provider.validate(&t, &ctx()).await {
        Ok(p) => assert_eq!(p.principal, "alice"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidToken, "{e}"),
    }
    // Depth that serde_json accepts still maps fine.
    let mapped = build_ok(with(jwt_config(&server), json!({"claims_mapping": {"a.a.a.a.a.a.a.a.a.a": "deep"}})));
    let c = with(claims(), json!({"a": serde_json::from_str::<Value>(&nested_objects(100)).unwrap()}));
    let p = accepted(&mapped, &token(&KEYS.ec, "ec-1", &c)).await;
    assert!(p.attributes.is_empty() || p.attributes.contains_key("deep"));
}

/// An HMAC token over claims given as raw JSON text.
fn hmac_token_text(alg: &str, secret: &[u8], header: &str, claims_text: &str) -> String {
    assert_eq!(alg, "HS256");
    let input = signing_input(header, claims_text);
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

#[tokio::test]
async fn deeply_nested_upstream_answers_are_unavailable_not_crashes() {
    let server = Server::start().await;
    let deep = nested_arrays(10_000).into_bytes();
    let deep_in_object = format!(r#"{{"active":true,"sub":"alice","x":{}}}"#, nested_arrays(10_000)).into_bytes();
    server.route(
        "/jwks",
        Reply::Raw {
            status: 200,
            body: format!(r#"{{"keys":{}}}"#, nested_arrays(10_000)).into_bytes(),
            chunked: false,
        },
    );
    server.route("/introspect", Reply::Raw { status: 200, body: deep_in_object.clone(), chunked: false });
    server.route("/auth", Reply::Raw { status: 200, body: deep.clone(), chunked: false });
    server.route("/user", Reply::Raw { status: 200, body: deep.clone(), chunked: false });

    let jwt = build_ok(jwt_config(&server));
    refused(&jwt, &token(&KEYS.ec, "ec-1", &claims()), ErrorKind::Unavailable, &["key set at", "invalid JSON"]).await;
    let introspection = build_ok(introspection_config(&server, json!({})));
    refused(&introspection, "opaque-token", ErrorKind::Unavailable, &["introspection endpoint", "not JSON"]).await;
    let custom = build_ok(custom_config(&server, json!({})));
    refused(&custom, "api-key", ErrorKind::Unavailable, &["custom endpoint", "malformed reply"]).await;
    let github = build_ok(github_config(&server, json!({})));
    refused(&github, "ghp_deep", ErrorKind::Unavailable, &["GitHub", "not JSON"]).await;
    // Error bodies are parsed for a message too: a deep 401 body is just a 401.
    server.route("/auth", Reply::Raw { status: 401, body: deep.clone(), chunked: false });
    refused(&custom, "api-key-2", ErrorKind::InvalidToken, &["rejected the token (HTTP 401)"]).await;
    server.route("/user", Reply::Raw { status: 401, body: deep, chunked: false });
    refused(&github, "ghp_deep2", ErrorKind::InvalidToken, &["GitHub rejected the token"]).await;
}

#[test]
fn config_files_cannot_exhaust_memory_or_stack() {
    use tokengate::{Config, Format};
    // "Billion laughs": nine levels of ten aliases each would expand to 10^9 strings.
    let mut yaml =
        String::from("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        yaml.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(",")));
    }
    yaml.push_str("provider_config: {type: custom, endpoint: 'http://127.0.0.1:9/x', bomb: *a8}\n");
    let started = std::time::Instant::now();
    let e = Config::parse(&yaml, Format::Yaml).unwrap_err();
    assert!(e.message.contains("invalid YAML") && e.message.contains("repetition limit"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());

    // 10,000-deep nesting in each format is refused, not a stack overflow.
    let deep_yaml = format!("provider_config: {}\n", nested_arrays(10_000));
    let e = Config::parse(&deep_yaml, Format::Yaml).unwrap_err();
    assert!(e.message.contains("invalid YAML"), "{e}");
    let deep_json = format!(r#"{{"provider_config": {}}}"#, nested_arrays(10_000));
    let e = Config::parse(&deep_json, Format::Json).unwrap_err();
    assert!(e.message.contains("invalid JSON") && e.message.contains("recursion limit"), "{e}");
    let deep_toml = format!("provider_config = {}\n", nested_arrays(10_000));
    let e = Config::parse(&deep_toml, Format::Toml).unwrap_err();
    assert!(e.message.contains("invalid TOML"), "{e}");
    let deep_inline_tables = format!("provider_config = {}\n", "{a = ".repeat(10_000) + "1" + &"}".repeat(10_000));
    let e = Config::parse(&deep_inline_tables, Format::Toml).unwrap_err();
    assert!(e.message.contains("invalid TOML"), "{e}");
}

#[tokio::test]
async fn extreme_durations_in_config_never_panic_at_request_time() {
    let server = Server::jwks().await;
    server.route("/introspect", Reply::Json(200, json!({"active": true, "sub": "alice"})));
    server.route("/auth", Reply::Json(200, json!({"principal": "alice"})));
    server.route("/user", Reply::Json(200, json!({"login": "alice", "id": 1})));
    server.route("/user/orgs", Reply::Json(200, json!([])));
    let huge = json!({
        "timeout": u64::MAX, "connect_timeout": u64::MAX,
        "cache": {"ttl": u64::MAX, "negative_ttl": u64::MAX},
    });
    let jwt = build_ok(with(jwt_config(&server), huge.clone()));
    accepted(&jwt, &token(&KEYS.ec, "ec-1", &claims())).await;
    accepted(&jwt, &token(&KEYS.ec, "ec-1", &claims())).await;
    invalid(&jwt, &token(&KEYS.ec_attacker, "ec-1", &claims()), &["signature invalid"]).await;
    let remote = [
        introspection_config(&server, json!({})),
        custom_config(&server, json!({})),
        github_config(&server, json!({})),
    ];
    for section in remote {
        let p = build_ok(with(section, huge.clone()));
        accepted(&p, "some-token").await;
        accepted(&p, "some-token").await;
    }
}
