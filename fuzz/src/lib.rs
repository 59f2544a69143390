//! Fixtures shared by the fuzz targets: fixed keys, a JWKS served from a tiny
//! std::net server inside the fuzz process, and pipelines built through
//! `tokengate::Config` exactly as a config file would build them.

use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};
use tokengate::{Config, Format, Pipeline, Registry};

pub const ISSUER: &str = "https://fuzz.issuer.test";
pub const AUDIENCE: &str = "fuzz-aud";
/// 32+ bytes, as `secret` requires.
pub const SECRET: &str = "fuzz-shared-secret-0123456789abcdef";
pub const LEEWAY_SECS: f64 = 30.0;

/// One runtime for the whole process (libFuzzer calls the target on one thread).
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"));

/// Deterministic Ed25519 key, so corpus tokens signed in one run verify in the next.
pub static ED25519: LazyLock<Ed25519KeyPair> =
    LazyLock::new(|| Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("ed25519 seed"));

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key set: the Ed25519 key (kid "ed"), a random P-256 key (kid "ec") and
/// a second key of each type without kid, so kid-less tokens are ambiguous.
pub static JWKS: LazyLock<Value> = LazyLock::new(|| {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ec = |_: ()| {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let p = pair.public_key().as_ref().to_vec();
        (b64(&p[1..33]), b64(&p[33..65]))
    };
    let (x1, y1) = ec(());
    let (x2, y2) = ec(());
    let ed2 = Ed25519KeyPair::from_seed_unchecked(&[9u8; 32]).unwrap();
    json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": b64(ED25519.public_key().as_ref()), "kid": "ed", "alg": "EdDSA", "use": "sig"},
        {"kty": "EC", "crv": "P-256", "x": x1, "y": y1, "kid": "ec"},
        {"kty": "EC", "crv": "P-256", "x": x2, "y": y2},
        {"kty": "OKP", "crv": "Ed25519", "x": b64(ed2.public_key().as_ref())},
    ]})
});

/// Serves `body` as JSON to every request, forever, on 127.0.0.1.
pub fn serve_json(body: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 2048];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                body.len(),
                body
            );
        }
    });
    addr
}

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::with_builtins);

fn build(yaml: &str) -> Pipeline {
    Config::parse(yaml, Format::Yaml).expect("fixture config parses").build(&REGISTRY).expect("fixture config builds")
}

const MAPPING: &str = r#"{groups: teams, scope: scopes, "realm_access.roles": roles, 'https://x\.test/claims.r': r}"#;

/// `oauth2_token` against the in-process key set; no result cache, so every
/// input runs the whole path.
pub static JWKS_PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let addr = serve_json(JWKS.to_string());
    build(&format!(
        "provider_config:\n  type: oauth2_token\n  issuer: {ISSUER}\n  audience: [{AUDIENCE}, other-aud]\n  jwks: {{uri: 'http://{addr}/jwks'}}\n  claims_mapping: {MAPPING}\n  cache: {{enabled: false}}\n  max_token_bytes: 65536\n"
    ))
});

/// `oauth2_token` with a shared secret (HS256/384/512).
pub static SECRET_PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    build(&format!(
        "provider_config:\n  type: oauth2_token\n  issuer: {ISSUER}\n  audience: {AUDIENCE}\n  secret: {SECRET}\n  claims_mapping: {MAPPING}\n  cache: {{enabled: false}}\n  max_token_bytes: 65536\n"
    ))
});

pub fn hs256(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

pub fn eddsa(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = ED25519.sign(input.as_bytes());
    format!("{input}.{}", b64(sig.as_ref()))
}

pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// An independent statement of what an accepted token's claims must satisfy.
/// Returns why the claims should NOT have been accepted, if they should not.
pub fn claims_violation(payload: &[u8], audiences: &[&str]) -> Option<String> {
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(payload) else {
        return Some("accepted a payload that is not a JSON object".into());
    };
    let now = now();
    let num = |k: &str| claims.get(k).map(|v| v.as_f64());
    match num("exp") {
        Some(Some(exp)) if now <= exp + LEEWAY_SECS + 5.0 => {}
        other => return Some(format!("accepted exp {other:?} at {now}")),
    }
    for k in ["nbf", "iat"] {
        match num(k) {
            None => {}
            Some(Some(t)) if t <= now + LEEWAY_SECS + 5.0 => {}
            other => return Some(format!("accepted {k} {other:?} at {now}")),
        }
    }
    if claims.get("iss") != Some(&json!(ISSUER)) {
        return Some(format!("accepted iss {:?}", claims.get("iss")));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audiences.contains(&a.as_str()),
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str().is_some_and(|a| audiences.contains(&a))),
        _ => false,
    };
    if !aud_ok {
        return Some(format!("accepted aud {:?}", claims.get("aud")));
    }
    match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => None,
        Some(Value::Number(_)) => None,
        other => Some(format!("accepted sub {other:?}")),
    }
}
