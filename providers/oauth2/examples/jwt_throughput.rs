//! Throughput of `OAuth2Provider::validate` on distinct tokens (every one a
//! cache miss) against raw `jsonwebtoken::decode` with a prebuilt key.
//!
//! `cargo run --release -p tokengate-oauth2 --example jwt_throughput [tokens]`

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokengate_api::{AuthProvider, BuildContext, RequestContext};
use tokengate_oauth2::config::OAuth2Config;
use tokengate_oauth2::OAuth2Provider;

fn rsa() -> EncodingKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa keygen");
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("pkcs8");
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    EncodingKey::from_rsa_pem(pem.as_bytes()).expect("pem")
}

fn ec() -> EncodingKey {
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("ec keygen");
    EncodingKey::from_ec_der(der.as_ref())
}

async fn serve(jwks: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = jwks.to_string();
    let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { body }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/jwks")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3000);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    // HS256 makes the signature nearly free, so its ratio exposes the
    // non-cryptographic overhead alone.
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    let hs = EncodingKey::from_secret(SECRET).expect("secret");
    for (name, alg, key) in
        [("RS256", Algorithm::RS256, rsa()), ("ES256", Algorithm::ES256, ec()), ("HS256", Algorithm::HS256, hs)]
    {
        let (decoding, config) = if alg == Algorithm::HS256 {
            let decoding = DecodingKey::from_secret(SECRET).expect("secret");
            let secret = std::str::from_utf8(SECRET).expect("utf8");
            (decoding, json!({"secret": secret, "issuer": "https://issuer.test", "audience": "bench"}))
        } else {
            let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).expect("jwk")).expect("json");
            jwk["kid"] = json!("k1");
            let decoding = DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).expect("jwk")).expect("key");
            let uri = serve(json!({ "keys": [jwk] })).await;
            (decoding, json!({"jwks": {"uri": uri}, "issuer": "https://issuer.test", "audience": "bench"}))
        };
        let header = Header { kid: Some("k1".into()), ..Header::new(alg) };
        let tokens: Vec<String> = (0..n)
            .map(|i| {
                let claims = json!({"sub": format!("user-{i}"), "iss": "https://issuer.test", "aud": "bench",
                    "exp": now + 3600, "iat": now, "groups": ["a", "b"], "scope": "read write"});
                // Low-S: tokengate refuses high-S ECDSA signatures by default.
                tokengate_oauth2::ecdsa::low_s_token(&jsonwebtoken::encode(&header, &claims, &key).expect("sign"))
            })
            .collect();

        let mut validation = Validation::new(alg);
        validation.set_audience(&["bench"]);
        validation.set_issuer(&["https://issuer.test"]);
        let ctx = RequestContext::default();

        // Raw and tokengate alternate in small chunks so that load from other
        // processes hits both alike; the sums are compared.
        let (mut raw_total, mut our_total) = (0f64, 0f64);
        for round in 0..3 {
            // A fresh provider per round keeps every token a cache miss.
            let cfg: OAuth2Config = serde_json::from_value(config.clone()).expect("config");
            let provider = OAuth2Provider::new(cfg, &BuildContext::default()).expect("provider");
            provider.warm_up().await.expect("warm up");
            for (i, chunk) in tokens.chunks(50).enumerate() {
                let raw_first = (i + round) % 2 == 0;
                for pass in 0..2 {
                    let start = Instant::now();
                    if (pass == 0) == raw_first {
                        for t in chunk {
                            let data = jsonwebtoken::decode::<Value>(t, &decoding, &validation).expect("raw decode");
                            std::hint::black_box(data);
                        }
                        raw_total += start.elapsed().as_secs_f64();
                    } else {
                        for t in chunk {
                            let principal = provider.validate(t, &ctx).await.expect("validate");
                            std::hint::black_box(principal);
                        }
                        our_total += start.elapsed().as_secs_f64();
                    }
                }
            }
        }
        let (best_raw, best_ours) = (raw_total / 3.0, our_total / 3.0);
        let raw_rate = n as f64 / best_raw;
        let our_rate = n as f64 / best_ours;
        println!(
            "{name}: raw jsonwebtoken::decode {raw_rate:>9.0}/s   tokengate validate {our_rate:>9.0}/s   ratio {:.3}",
            our_rate / raw_rate
        );
    }
}
