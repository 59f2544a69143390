//! A stand-in identity provider for `scripts/loadtest.sh`: one signing key, a
//! JWKS served on 127.0.0.1, a file of distinct tokens, and a tokengate config
//! that trusts it.
//!
//! ```text
//! cargo run --release --example loadtest_idp -- --dir DIR [--count 100000] [--alg ES256|RS256|EdDSA]
//! ```
//!
//! Writes `DIR/tokens.txt` (one token per line, every `sub`/`jti` distinct),
//! `DIR/repeat.txt` (one more token, for the repeated-token run) and
//! `DIR/config.yaml`, then `DIR/ready`, and serves `GET /jwks` until killed.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://issuer.loadtest";
const AUDIENCE: &str = "loadtest-api";

fn usage() -> ! {
    eprintln!("usage: loadtest_idp --dir DIR [--count N] [--alg ES256|RS256|EdDSA]");
    std::process::exit(2)
}

fn key(alg: Algorithm) -> (EncodingKey, Value) {
    let (encoding, mut jwk) = match alg {
        Algorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa keygen");
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("pkcs8");
            let pem =
                format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der.as_ref()));
            let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("pem");
            let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).expect("jwk");
            (encoding, serde_json::to_value(jwk).expect("json"))
        }
        Algorithm::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("ec keygen");
            let pair = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("ec");
            let p = pair.public_key().as_ref();
            let jwk = json!({"kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])});
            (EncodingKey::from_ec_der(doc.as_ref()), jwk)
        }
        Algorithm::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed keygen");
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("ed");
            // `alg` is optional (RFC 7517 §4.4), but jwt-authorizer 0.15 takes an OKP key
            // without it for an HMAC key (its `get_valid_algs` swaps OctetKey and OctetKeyPair).
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())});
            (EncodingKey::from_ed_der(doc.as_ref()), jwk)
        }
        _ => usage(),
    };
    jwk["kid"] = json!("loadtest-key");
    jwk["use"] = json!("sig");
    (encoding, jwk)
}

fn mint(alg: Algorithm, key: &EncodingKey, i: usize, iat: u64) -> String {
    let header = Header { kid: Some("loadtest-key".into()), ..Header::new(alg) };
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{i:07}"), "jti": format!("jti-{i:08x}"),
        "iat": iat, "nbf": iat, "exp": iat + 4 * 3600,
        "scope": "openid profile models:read", "groups": ["ml-team", "infra"], "azp": "loadtest-client",
    });
    // Low-S: tokengate refuses the high-S half of aws-lc's ECDSA signatures by default.
    tokengate_oauth2::ecdsa::low_s_token(&jsonwebtoken::encode(&header, &claims, key).expect("sign"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut dir = None;
    let mut count = 100_000usize;
    let mut alg = Algorithm::ES256;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--count" => count = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "--alg" => {
                alg = match args.next().as_deref() {
                    Some("RS256") => Algorithm::RS256,
                    Some("ES256") => Algorithm::ES256,
                    Some("EdDSA") => Algorithm::EdDSA,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    let dir = dir.unwrap_or_else(|| usage());
    std::fs::create_dir_all(&dir).expect("create dir");
    let (encoding, jwk) = key(alg);
    let iat = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();

    // Signing is the slow part (RS256: ~1 ms a token): use every core.
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = count.div_ceil(threads).max(1);
    let tokens: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|from| {
                let encoding = &encoding;
                s.spawn(move || {
                    (from..(from + chunk).min(count)).map(|i| mint(alg, encoding, i, iat)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("mint thread")).collect()
    });
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("tokens.txt")).expect("tokens.txt"));
    for t in &tokens {
        writeln!(out, "{t}").expect("write");
    }
    out.flush().expect("flush");
    std::fs::write(dir.join("repeat.txt"), format!("{}\n", mint(alg, &encoding, count, iat))).expect("repeat.txt");
    eprintln!("loadtest_idp: {count} {alg:?} tokens in {:.1}s", started.elapsed().as_secs_f64());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = format!(
        "# Written by examples/loadtest_idp.rs for scripts/loadtest.sh.\n\
         provider_config:\n  type: oauth2_token\n  jwks:\n    uri: http://{addr}/jwks\n  \
         issuer: {ISSUER}\n  audience: {AUDIENCE}\n  claims_mapping:\n    sub: roles\n    groups: teams\n    scope: scopes\n"
    );
    std::fs::write(dir.join("config.yaml"), config).expect("config.yaml");
    let body = json!({ "keys": [jwk] }).to_string();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    std::fs::write(dir.join("ready"), format!("{addr}\n")).expect("ready");
    axum::serve(listener, app).await.expect("serve");
}
