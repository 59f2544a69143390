use super::*;

#[test]
fn minted_tokens_verify_with_the_published_jwk() {
    let issuer = DevIssuer::generate("http://127.0.0.1:1").unwrap();
    let token = issuer.mint("alice", &sample_claims(), DEFAULT_TTL).unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(issuer.jwks()["keys"][0].clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[DEV_AUDIENCE]);
    v.set_issuer(&["http://127.0.0.1:1"]);
    let data = jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap();
    assert_eq!(data.claims["sub"], "alice");
    assert_eq!(data.claims["groups"], json!(["developers"]));
    assert_eq!(data.header.kid.as_deref(), issuer.jwk["kid"].as_str());
    for _ in 0..32 {
        let token = issuer.mint("alice", &sample_claims(), DEFAULT_TTL).unwrap();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.rsplit('.').next().unwrap());
        assert!(!tokengate_oauth2::ecdsa::is_high_s(&sig.unwrap()), "dev tokens are always low-S");
    }
}

#[test]
fn base_urls() {
    assert_eq!(base_url("0.0.0.0:80".parse().unwrap()), "http://127.0.0.1:80");
    assert_eq!(base_url("[::]:80".parse().unwrap()), "http://[::1]:80");
    assert_eq!(base_url("127.0.0.1:9".parse().unwrap()), "http://127.0.0.1:9");
}

#[test]
fn loopback_hosts() {
    for h in ["localhost", "localhost:8080", "127.0.0.1:1", "[::1]:80", "[::1]", "LOCALHOST"] {
        assert!(is_loopback_host(h), "{h}");
    }
    for h in ["evil.example:8080", "10.0.0.1", "127.0.0.1.evil.example", "[::2]:80"] {
        assert!(!is_loopback_host(h), "{h}");
    }
}

#[test]
fn claims_from_the_command_line() {
    assert_eq!(parse_claim("admin=true").unwrap(), ("admin".into(), json!(true)));
    assert_eq!(parse_claim("groups=[\"a\",\"b\"]").unwrap().1, json!(["a", "b"]));
    assert_eq!(parse_claim("team=ml").unwrap().1, json!("ml"));
    assert_eq!(parse_claim("url=a=b").unwrap().1, json!("a=b"));
    assert!(parse_claim("novalue").is_err());
    assert!(parse_claim("=x").is_err());
}
