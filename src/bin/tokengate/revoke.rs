//! `tokengate revoke`: add a token to the shared (Redis) revocation list.

use crate::{exit, read_token};
use std::path::PathBuf;
use std::time::Duration;
use tokengate::Config;

/// `tokengate revoke`: see [`tokengate::ops::redis`] for the keys it writes.
pub async fn revoke(
    config_path: PathBuf,
    jti: Option<String>,
    issuer: Option<String>,
    token_sha256: Option<String>,
    token: Option<String>,
    ttl: Option<String>,
) -> u8 {
    use tokengate::ops::redis::RevokeTarget;
    let target = match (jti, token_sha256, token) {
        (Some(jti), _, _) if jti.trim().is_empty() => Err("--jti is empty".to_string()),
        (Some(_), _, _) if issuer.as_deref().is_some_and(|i| i.trim().is_empty()) => {
            Err("--issuer is empty".to_string())
        }
        (Some(jti), _, _) => {
            if issuer.is_none() {
                eprintln!("tokengate revoke: note: without --issuer, jti {jti:?} is revoked for every issuer's tokens");
            }
            Ok(RevokeTarget::Jti { issuer, jti })
        }
        (_, Some(hex), _) => parse_sha256(&hex).map(RevokeTarget::TokenSha256),
        (_, _, Some(t)) => read_token((t != "-").then_some(t))
            .map(|t| RevokeTarget::TokenSha256(tokengate::pipeline::revocation::revocation_digest(&t))),
        (None, None, None) => Err("name what to revoke: --jti, --token-sha256 or --token".to_string()),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tokengate revoke: {e}");
            return exit::USAGE;
        }
    };
    let ttl = match ttl.as_deref().map(humantime::parse_duration).transpose() {
        Ok(Some(d)) if d.is_zero() => {
            eprintln!("tokengate revoke: --ttl must be longer than 0s");
            return exit::USAGE;
        }
        Ok(t) => t,
        Err(e) => {
            eprintln!("tokengate revoke: --ttl: {e} (use e.g. 30m, 24h, 7d)");
            return exit::USAGE;
        }
    };
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokengate revoke: config error: {e}");
            return exit::USAGE;
        }
    };
    let store = match config.redis_store() {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "tokengate revoke: {} has no `redis` section; list the token in the revocation file instead",
                config_path.display()
            );
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("tokengate revoke: config error: {e}");
            return exit::USAGE;
        }
    };
    // An operator can wait longer than a request: the connect timeout plus a few seconds.
    let timeout = config.settings.redis.as_ref().map_or(Duration::ZERO, |r| r.connect_timeout) + Duration::from_secs(5);
    match store.revoke(&target, ttl, timeout).await {
        Ok(key) => {
            match ttl {
                Some(ttl) => println!("revoked: {key} (lapses in {})", humantime::format_duration(ttl)),
                None => println!("revoked: {key}"),
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("tokengate revoke: {e}");
            exit::UNAVAILABLE
        }
    }
}

/// 64 hex digits, optionally `sha256:`-prefixed; never echoed (it might be a token pasted by mistake).
fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let hex_part = text.trim();
    let hex_part = hex_part.strip_prefix("sha256:").unwrap_or(hex_part);
    let mut digest = [0u8; 32];
    if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut digest).is_err() {
        return Err(format!(
            "--token-sha256 is not a SHA-256 digest (64 hex digits expected, got {} characters); \
             to revoke by the token itself use --token -",
            hex_part.chars().count()
        ));
    }
    Ok(digest)
}
