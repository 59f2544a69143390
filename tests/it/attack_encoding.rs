//! Attack class: encoding and structure (RFC 7515 §2, §7.1; RFC 8725 §3.11).
//!
//! Only canonical compact JWS is accepted: base64url without padding, without
//! `+`/`/`, without set trailing bits, exactly three segments. Encrypted (JWE,
//! five segments) and nested (`cty: JWT`) tokens are refused by name. Where
//! it matters, the malformed segment is covered by a *valid* signature, so the
//! refusal comes from the strict decoder and not from the signature check.

use crate::fixtures::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Signs the exact text `input` (whatever its encoding) with the EC key.
fn sign_text(input: &str) -> String {
    let signature = low_s_sign(input.as_bytes(), &KEYS.ec.enc, Algorithm::ES256);
    format!("{input}.{signature}")
}

fn header() -> String {
    b64(json!({"alg": "ES256", "kid": "ec-1"}).to_string().as_bytes())
}

fn payload() -> String {
    b64(claims().to_string().as_bytes())
}

/// The segment with one unused low bit of its last character set: the same
/// bytes to a lax decoder, a different string to the signature.
fn with_trailing_bit(segment: &str) -> Option<String> {
    let unused_bits = match segment.len() % 4 {
        2 => 4,
        3 => 2,
        _ => return None,
    };
    let last = *segment.as_bytes().last()?;
    let value = ALPHABET.iter().position(|c| *c == last)? as u8;
    assert_eq!(value & ((1 << unused_bits) - 1), 0, "canonical encodings leave the unused bits clear");
    let changed = ALPHABET[(value | 1) as usize] as char;
    Some(format!("{}{changed}", &segment[..segment.len() - 1]))
}

/// `segment` padded with `=` to a multiple of four (or with "==" if already aligned).
fn padded(segment: &str) -> String {
    match segment.len() % 4 {
        0 => format!("{segment}=="),
        n => format!("{segment}{}", "=".repeat(4 - n)),
    }
}

/// A variant of the header whose base64url contains `-` or `_`, by adding filler.
fn header_with_url_chars() -> String {
    for i in 0..64 {
        let h = b64(json!({"alg": "ES256", "kid": "ec-1", "x": "~".repeat(i) + "?>"}).to_string().as_bytes());
        if h.contains('-') && h.contains('_') {
            return h;
        }
    }
    panic!("no header variant with both - and _");
}

fn payload_with_url_chars() -> String {
    for i in 0..64 {
        let p = b64(with(claims(), json!({"x": "~".repeat(i) + "?>"})).to_string().as_bytes());
        if p.contains('-') && p.contains('_') {
            return p;
        }
    }
    panic!("no payload variant with both - and _");
}

/// Variants of a canonical segment that a strict base64url decoder must refuse.
fn non_canonical(segment: &str) -> Vec<(String, String)> {
    let mut out = vec![
        ("padding".to_string(), padded(segment)),
        ("inner space".to_string(), format!("{} {}", &segment[..4], &segment[4..])),
        ("newline".to_string(), format!("{}\n{}", &segment[..4], &segment[4..])),
        ("percent-encoding".to_string(), format!("{}%3D", segment)),
    ];
    if segment.contains('-') {
        out.push(("'+' for '-'".into(), segment.replacen('-', "+", 1)));
    }
    if segment.contains('_') {
        out.push(("'/' for '_'".into(), segment.replacen('_', "/", 1)));
    }
    if let Some(t) = with_trailing_bit(segment) {
        out.push(("trailing bits".into(), t));
    }
    out
}

#[tokio::test]
async fn non_canonical_base64url_in_the_header_is_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let h = header_with_url_chars();
    accepted(&provider, &sign_text(&format!("{h}.{}", payload()))).await;
    let mut tried = 0;
    for (what, bad) in non_canonical(&h) {
        // Signed as sent: a lax decoder would accept this token.
        let token = sign_text(&format!("{bad}.{}", payload()));
        let e = invalid(&provider, &token, &["malformed JWT", "the header is not base64url"]).await;
        assert!(!e.detail().contains(&bad), "{what}: the detail quotes the segment");
        tried += 1;
    }
    assert!(tried >= 6, "covered padding, +, /, trailing bits, whitespace, %");
    // Padding of a header whose length happens to need none, and trailing bits in a 2-bit slot.
    for n in 0..3 {
        let h = b64(json!({"alg": "ES256", "kid": "ec-1", "p": "x".repeat(n)}).to_string().as_bytes());
        invalid(&provider, &sign_text(&format!("{}.{}", padded(&h), payload())), &["header is not base64url"]).await;
        if let Some(t) = with_trailing_bit(&h) {
            invalid(&provider, &sign_text(&format!("{t}.{}", payload())), &["header is not base64url"]).await;
        }
    }
}

#[tokio::test]
async fn non_canonical_base64url_in_the_payload_is_refused_even_when_signed() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let p = payload_with_url_chars();
    accepted(&provider, &sign_text(&format!("{}.{p}", header()))).await;
    for (_what, bad) in non_canonical(&p) {
        let token = sign_text(&format!("{}.{bad}", header()));
        invalid(&provider, &token, &["malformed JWT", "the payload is not base64url"]).await;
    }
    // Every payload length class (0, 1, 2 leftover bytes) with trailing bits or padding.
    for n in 0..3 {
        let p = b64(with(claims(), json!({"p": "x".repeat(n)})).to_string().as_bytes());
        invalid(&provider, &sign_text(&format!("{}.{}", header(), padded(&p))), &["payload is not base64url"]).await;
        if let Some(t) = with_trailing_bit(&p) {
            invalid(&provider, &sign_text(&format!("{}.{t}", header())), &["payload is not base64url"]).await;
        }
    }
}

#[tokio::test]
async fn non_canonical_base64url_in_the_signature_is_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    // An ES256 signature is 64 bytes: 86 characters, the last with 4 unused bits.
    let mut with_both = None;
    for _ in 0..500 {
        let t = token(&KEYS.ec, "ec-1", &claims());
        let sig = segments(&t).2;
        if sig.contains('-') && sig.contains('_') {
            with_both = Some(t);
            break;
        }
    }
    let good = with_both.expect("some ES256 signature contains - and _");
    accepted(&provider, &good).await;
    let (h, p, sig) = segments(&good);
    assert_eq!(sig.len(), 86);
    let variants = non_canonical(&sig);
    assert!(variants.iter().any(|(w, _)| w == "trailing bits"));
    for (what, bad) in variants {
        let e = invalid(&provider, &format!("{h}.{p}.{bad}"), &["the signature is not base64url"]).await;
        assert!(e.detail().starts_with("malformed JWT"), "{what}: {e}");
    }
}

#[tokio::test]
async fn wrong_segment_counts_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let good = token(&KEYS.ec, "ec-1", &claims());
    let (h, p, s) = segments(&good);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "found 1"),
        ("opaque-token".into(), "found 1"),
        (format!("{h}.{p}"), "found 2"),
        (format!("{h}.{p}.{s}."), "found 4"),
        (format!(".{h}.{p}.{s}"), "found 4"),
        (format!("{h}.{p}.{s}.{s}"), "found 4"),
        (format!("{h}.{p}.{p}.{p}.{p}.{s}"), "found 6"),
        (format!("{h}.{p}.{s}.{h}.{p}.{s}.{h}"), "found 7"),
    ];
    for (token, reason) in cases {
        invalid(&provider, &token, &["malformed JWT: expected 3 dot-separated segments", reason]).await;
    }
    invalid(&provider, &format!(".{p}.{s}"), &["empty header or payload segment"]).await;
    invalid(&provider, &format!("{h}..{s}"), &["empty header or payload segment"]).await;
    invalid(&provider, "..", &["empty header or payload segment"]).await;
}

#[tokio::test]
async fn jwe_where_jws_is_expected_is_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    // A JWE compact serialization: protected header, encrypted key, IV, ciphertext, tag.
    let jwe_header = b64(json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "rsa-1"}).to_string().as_bytes());
    let jwe = format!("{jwe_header}.{}.{}.{}.{}", b64(&[1; 256]), b64(&[2; 12]), b64(b"ciphertext"), b64(&[3; 16]));
    invalid(&provider, &jwe, &["JWE (encrypted JWT) is not supported", "3 segments"]).await;
    // "dir" JWE has an empty encrypted-key segment.
    let dir =
        format!("{}..{}.{}.{}", b64(br#"{"alg":"dir","enc":"A128GCM"}"#), b64(&[2; 12]), b64(b"x"), b64(&[3; 16]));
    invalid(&provider, &dir, &["JWE"]).await;
    // A JWE header squeezed into three segments names its alg as unsupported.
    let three = format!("{jwe_header}.{}.{}", payload(), b64(&[0; 64]));
    invalid(&provider, &three, &["unsupported alg \"RSA-OAEP-256\""]).await;
}

#[tokio::test]
async fn nested_jwts_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let inner = token(&KEYS.ec, "ec-1", &claims());
    for cty in ["JWT", "jwt", "Jwt", "application/jwt", "APPLICATION/JWT"] {
        let h = b64(json!({"alg": "ES256", "kid": "ec-1", "cty": cty}).to_string().as_bytes());
        let outer = sign_text(&format!("{h}.{}", b64(inner.as_bytes())));
        invalid(&provider, &outer, &["nested JWTs", "not accepted"]).await;
        // Even when the outer payload is an ordinary claims object.
        let outer = sign_text(&format!("{h}.{}", payload()));
        invalid(&provider, &outer, &["nested JWTs"]).await;
    }
    // Without cty, a JWT as payload is simply not a claims object.
    let outer = sign_text(&format!("{}.{}", header(), b64(inner.as_bytes())));
    invalid(&provider, &outer, &["the payload is not a JSON object"]).await;
    // An unrelated cty is not a reason to refuse a valid token.
    let h = b64(json!({"alg": "ES256", "kid": "ec-1", "cty": "application/example+json"}).to_string().as_bytes());
    accepted(&provider, &sign_text(&format!("{h}.{}", payload()))).await;
}

#[tokio::test]
async fn headers_and_payloads_that_are_not_json_objects_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    for (bytes, reason) in [
        (&b"[\"ES256\"]"[..], "the header is not a JSON object"),
        (b"\"ES256\"", "the header is not a JSON object"),
        (b"null", "the header is not a JSON object"),
        (b"", "empty header"),
        (b"{\"alg\":\"ES256\"", "the header is not valid JSON (truncated)"),
        (b"{\"alg\":\"ES256\"}}", "the header is not valid JSON"),
        (b"{\"alg\":\"ES256\",}", "the header is not valid JSON"),
        (b"\xef\xbb\xbf{\"alg\":\"ES256\"}", "the header is not a JSON object"),
        (b"{\"alg\":\"ES\xff256\"}", "the header is not valid JSON"),
    ] {
        invalid(&provider, &sign_text(&format!("{}.{}", b64(bytes), payload())), &[reason]).await;
    }
    for (bytes, reason) in [
        (&b"[1,2]"[..], "the payload is not a JSON object"),
        (b"\"alice\"", "the payload is not a JSON object"),
        (b"null", "the payload is not a JSON object"),
        (b"{\"sub\":", "the payload is not valid JSON"),
        (b"{\"sub\":\"a\"} trailing", "the payload is not valid JSON"),
        (b"{\"sub\":\"\xc3\x28\"}", "the payload is not valid JSON"),
    ] {
        invalid(&provider, &sign_text(&format!("{}.{}", header(), b64(bytes))), &[reason]).await;
    }
}

#[tokio::test]
async fn refusals_never_quote_the_token() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let good = token(&KEYS.ec, "ec-1", &claims());
    let (h, p, s) = segments(&good);
    for bad in [
        format!("{h}.{p}.{s}x"),
        format!("{h}x.{p}.{s}"),
        format!("{h}.{p}x.{s}"),
        format!("{h}.{p}"),
        good.replace('.', ","),
    ] {
        let e = provider.validate(&bad, &ctx()).await.unwrap_err();
        for part in [&h, &p, &s] {
            assert!(!e.detail().contains(part.as_str()), "{e} quotes a token segment");
        }
    }
}
