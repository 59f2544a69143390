//! `tokengate token`: ask a `serve --dev` issuer for a token.

use crate::exit;

pub async fn token(url: String, sub: Option<String>, claim_args: Vec<String>, ttl: Option<String>) -> u8 {
    let mut claims = serde_json::Map::new();
    for arg in &claim_args {
        match tokengate::dev::parse_claim(arg) {
            Ok((k, v)) => {
                claims.insert(k, v);
            }
            Err(e) => {
                eprintln!("tokengate token: {e}");
                return exit::USAGE;
            }
        }
    }
    match tokengate::dev::request_token(&url, sub.as_deref(), claims, ttl.as_deref()).await {
        Ok(token) => {
            println!("{token}");
            exit::OK
        }
        Err(e) => {
            eprintln!("tokengate token: {e}");
            exit::UNAVAILABLE
        }
    }
}
