use super::*;
use serde_json::json;

#[test]
fn unusable_keys_are_skipped_and_an_empty_result_is_an_error() {
    let doc = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA", "kid": "k1"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "short"},
        {"kty": "RSA", "kid": 5},
        "not an object"
    ]});
    let err = parse_jwks(&doc, AlgSet::asymmetric(), 100, "test").unwrap_err();
    assert!(err.contains("no usable key"), "{err}");
    assert!(err.contains("\"sym\": symmetric"), "{err}");
    assert!(err.contains("secp256k1"), "{err}");
    assert!(err.contains("bits"), "{err}");
}

#[test]
fn not_a_jwks_and_too_many_keys() {
    assert!(parse_jwks(&json!({"nope": 1}), AlgSet::asymmetric(), 100, "t").unwrap_err().contains("no `keys`"));
    let doc = json!({"keys": [{}, {}, {}]});
    assert!(parse_jwks(&doc, AlgSet::asymmetric(), 2, "t").unwrap_err().contains("max_keys"));
}

#[test]
fn ed25519_key_with_invalid_length_is_rejected() {
    let doc = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]});
    assert!(parse_jwks(&doc, AlgSet::asymmetric(), 10, "t").unwrap_err().contains("32 bytes"));
}

#[test]
fn leading_zeros_are_stripped() {
    assert_eq!(strip_leading_zeros(vec![0, 0, 1, 0]), vec![1, 0]);
    assert!(strip_leading_zeros(vec![0, 0]).is_empty());
}
