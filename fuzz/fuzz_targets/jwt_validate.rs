//! Arbitrary bytes as a bearer token, against `oauth2_token` with a fixed key
//! set (served in-process) and with a shared secret; plus fuzzer-chosen
//! headers and claims signed with the real keys, so the post-signature checks
//! (claims, principal, mapping) are reached too.
//!
//! Invariants: no panic; no error detail repeats the token; an accepted token
//! satisfies an independent statement of the claim rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::{ErrorKind, Pipeline, RequestContext};
use tokengate_fuzz::*;

fn check(pipeline: &Pipeline, token: &str) -> Option<tokengate::Principal> {
    let ctx = RequestContext::new("GET", "/");
    match RUNTIME.block_on(pipeline.validate(token, &ctx)) {
        Ok(p) => Some(p),
        Err(e) => {
            assert_ne!(e.kind(), ErrorKind::Config, "config error for a token: {e}");
            if token.len() >= 24 {
                assert!(!e.detail().contains(token), "error detail repeats the token: {e}");
            }
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 5 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(&JWKS_PIPELINE, token);
            }
        }
        1 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(&SECRET_PIPELINE, token);
            }
        }
        2 => {
            let token = hs256(br#"{"alg":"HS256","typ":"JWT"}"#, rest);
            if check(&SECRET_PIPELINE, &token).is_some() {
                if let Some(why) = claims_violation(rest, &[AUDIENCE]) {
                    panic!("HS256 token accepted wrongly: {why}");
                }
            }
        }
        3 => {
            let token = eddsa(br#"{"alg":"EdDSA","kid":"ed"}"#, rest);
            if check(&JWKS_PIPELINE, &token).is_some() {
                if let Some(why) = claims_violation(rest, &[AUDIENCE, "other-aud"]) {
                    panic!("EdDSA token accepted wrongly: {why}");
                }
            }
        }
        _ => {
            // Fuzzer-chosen header and payload (split at the first NUL), signed with both keys.
            let cut = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            let (header, payload) = (&rest[..cut], rest.get(cut + 1..).unwrap_or_default());
            if check(&SECRET_PIPELINE, &hs256(header, payload)).is_some() {
                if let Some(why) = claims_violation(payload, &[AUDIENCE]) {
                    panic!("HS256 token with fuzzed header accepted wrongly: {why}");
                }
            }
            if check(&JWKS_PIPELINE, &eddsa(header, payload)).is_some() {
                if let Some(why) = claims_violation(payload, &[AUDIENCE, "other-aud"]) {
                    panic!("EdDSA token with fuzzed header accepted wrongly: {why}");
                }
            }
        }
    }
});
