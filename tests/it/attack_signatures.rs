//! Attack class: forged, malleated and malformed signatures.
//!
//! "Psychic signatures" (CVE-2022-21449: ECDSA with r = 0 or s = 0, r = s = n),
//! out-of-range scalars, DER instead of the fixed JWS encoding, truncated and
//! padded signatures, a signature from another key, a signature moved to
//! another payload, and non-canonical Ed25519 scalars — each refused as an
//! invalid signature, never a panic.

use crate::fixtures::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

/// The order n of P-256, big-endian.
const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBC, 0xE6, 0xFA,
    0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// The order L of the Ed25519 group, little-endian (as the scalar is encoded).
const ED25519_L: [u8; 32] = [
    0xED, 0xD3, 0xF5, 0x5C, 0x1A, 0x63, 0x12, 0x58, 0xD6, 0x9C, 0xF7, 0xA2, 0xDE, 0xF9, 0xDE, 0x14, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

fn concat(r: &[u8], s: &[u8]) -> Vec<u8> {
    [r, s].concat()
}

/// Big-endian a + b for 32-byte numbers (carry dropped).
fn add_be(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let sum = a[i] as u16 + b[i] as u16 + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// Little-endian a + b for 32-byte numbers.
fn add_le(a: &[u8], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = a[i] as u16 + b[i] as u16 + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// ASN.1 DER `SEQUENCE { INTEGER r, INTEGER s }`, as OpenSSL-style ECDSA produces.
fn der_signature(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        if v.first().is_none_or(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    }
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[tokio::test]
async fn psychic_signatures_cve_2022_21449_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let good = token(&KEYS.ec, "ec-1", &claims());
    accepted(&provider, &good).await;
    let (_, _, sig) = segments(&good);
    let sig = unb64(&sig);
    let (r, s) = sig.split_at(32);
    let zero = [0u8; 32];
    let one = {
        let mut one = [0u8; 32];
        one[31] = 1;
        one
    };
    let n_plus_1 = add_be(&P256_N, &one);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("all-zero 64 bytes (r = s = 0)", vec![0u8; 64]),
        ("r = 0", concat(&zero, s)),
        ("s = 0", concat(r, &zero)),
        ("r = s = n", concat(&P256_N, &P256_N)),
        ("r = n", concat(&P256_N, s)),
        ("s = n", concat(r, &P256_N)),
        ("r = n + 1", concat(&n_plus_1, s)),
        ("r = s = 2^256 - 1", vec![0xFF; 64]),
        ("r = s = 1", concat(&one, &one)),
    ];
    for (what, signature) in cases {
        let e = invalid(&provider, &with_signature(&good, &signature), &["signature invalid", "alg ES256"]).await;
        assert!(e.detail().contains("\"ec-1\""), "{what}: {e}");
    }
    // The same for P-384.
    let good384 = token(&KEYS.ec384, "ec384-1", &claims());
    accepted(&provider, &good384).await;
    invalid(&provider, &with_signature(&good384, &[0u8; 96]), &["signature invalid", "alg ES384"]).await;
}

#[tokio::test]
async fn der_encoded_ecdsa_signatures_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let good = token(&KEYS.ec, "ec-1", &claims());
    let sig = unb64(&segments(&good).2);
    let der = der_signature(&sig[..32], &sig[32..]);
    // Same r and s, wrong encoding (RFC 7518 §3.4 requires the fixed 64-byte R || S).
    invalid(&provider, &with_signature(&good, &der), &["signature invalid"]).await;
}

#[tokio::test]
async fn truncated_and_padded_signatures_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    for (key, kid) in [(&KEYS.ec, "ec-1"), (&KEYS.rsa.key, "rsa-1"), (&KEYS.ed, "ed-1"), (&KEYS.ec384, "ec384-1")] {
        let good = token(key, kid, &claims());
        accepted(&provider, &good).await;
        let sig = unb64(&segments(&good).2);
        let n = sig.len();
        let variants: Vec<(&str, Vec<u8>)> = vec![
            ("last byte dropped", sig[..n - 1].to_vec()),
            ("half", sig[..n / 2].to_vec()),
            ("one byte", sig[..1].to_vec()),
            ("zero byte appended", [&sig[..], &[0]].concat()),
            ("zero byte prepended", [&[0], &sig[..]].concat()),
            ("doubled", [&sig[..], &sig[..]].concat()),
            ("last byte flipped", {
                let mut v = sig.clone();
                v[n - 1] ^= 1;
                v
            }),
        ];
        for (what, bad) in variants {
            let e = invalid(&provider, &with_signature(&good, &bad), &["signature invalid"]).await;
            assert!(e.detail().contains(&format!("\"{kid}\"")), "{kid} {what}: {e}");
        }
        // An empty signature segment.
        let (h, p, _) = segments(&good);
        invalid(&provider, &format!("{h}.{p}."), &["no signature"]).await;
    }
    // A signature longer than any supported key can produce is refused before any verification.
    let good = token(&KEYS.rsa.key, "rsa-1", &claims());
    invalid(
        &provider,
        &with_signature(&good, &vec![7u8; 4096]),
        &["signature invalid", "longer than any supported key"],
    )
    .await;
}

#[tokio::test]
async fn signatures_from_other_keys_or_for_other_content_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let keys = &*KEYS;
    // The attacker's own key, under the real kid.
    invalid(&provider, &token(&keys.ec_attacker, "ec-1", &claims()), &["signature invalid", "\"ec-1\""]).await;
    invalid(&provider, &token(&keys.rsa_attacker, "rsa-1", &claims()), &["signature invalid", "\"rsa-1\""]).await;
    // A genuine signature moved onto other claims (privilege escalation attempt).
    let genuine = token(&keys.ec, "ec-1", &claims());
    let forged_claims = with(claims(), json!({"sub": "admin", "groups": ["root"]}));
    let forged = token(&keys.ec, "ec-1", &forged_claims);
    let (h, p_forged, _) = segments(&forged);
    let (_, _, genuine_sig) = segments(&genuine);
    invalid(&provider, &format!("{h}.{p_forged}.{genuine_sig}"), &["signature invalid"]).await;
    // A genuine signature under a changed header (kid moved to another key of the same type).
    let moved = sign_with(&keys.ec2, Algorithm::ES256, &json!({"alg": "ES256", "kid": "ec-1"}), &claims());
    invalid(&provider, &moved, &["signature invalid"]).await;
    // PS256 signature presented as RS256 under an unpinned key (and vice versa).
    let unpinned = Server::start().await;
    unpinned.route("/jwks", Reply::Json(200, json!({"keys": [keys.rsa.key.jwk_unpinned("rsa-any")]})));
    let p2 = build_ok(jwt_config(&unpinned));
    let ps = sign_with(&keys.rsa.key, Algorithm::PS256, &json!({"alg": "PS256", "kid": "rsa-any"}), &claims());
    let (_, _, ps_sig) = segments(&ps);
    let rs_input = signing_input(&json!({"alg": "RS256", "kid": "rsa-any"}).to_string(), &claims().to_string());
    invalid(&p2, &format!("{rs_input}.{ps_sig}"), &["signature invalid", "alg RS256"]).await;
}

#[tokio::test]
async fn non_canonical_ed25519_scalars_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let good = token(&KEYS.ed, "ed-1", &claims());
    accepted(&provider, &good).await;
    let sig = unb64(&segments(&good).2);
    // S + L verifies under a lax implementation (signature malleability); RFC 8032 §5.1.7 requires S < L.
    let s_plus_l = add_le(&sig[32..], &ED25519_L);
    invalid(&provider, &with_signature(&good, &concat(&sig[..32], &s_plus_l)), &["signature invalid", "alg EdDSA"])
        .await;
    invalid(&provider, &with_signature(&good, &[0u8; 64]), &["signature invalid"]).await;
    // The small-order "identity" forgery: R = identity point, S = 0.
    let mut identity = [0u8; 64];
    identity[0] = 1;
    invalid(&provider, &with_signature(&good, &identity), &["signature invalid"]).await;
}

#[tokio::test]
async fn rsa_signatures_with_wrong_length_or_zero_are_refused() {
    let server = Server::jwks().await;
    let provider = build_ok(jwt_config(&server));
    let good = token(&KEYS.rsa.key, "rsa-1", &claims());
    for bad in [vec![0u8; 256], vec![0xFFu8; 256], vec![1u8; 255], vec![1u8; 257]] {
        invalid(&provider, &with_signature(&good, &bad), &["signature invalid", "alg RS256"]).await;
    }
}

/// Issues #11 and #21: (r, s) → (r, n − s) needs no key and makes a second
/// valid ES256/ES384 signature over the same claims, with other bytes. Both
/// forms are accepted by default (the twin is the same token to revocation
/// and caches, see `tests/it/revocation.rs`); `require_low_s: true` refuses
/// high-S; `allow_high_s_signatures` still loads, meaning what it meant.
#[tokio::test]
async fn high_s_ecdsa_signatures_are_refused_for_es256_and_es384_only_under_require_low_s() {
    let server = Server::jwks().await;
    let default = build_ok(jwt_config(&server));
    let strict = build_ok(with(jwt_config(&server), json!({"require_low_s": true})));
    let old_lenient = build_ok(with(jwt_config(&server), json!({"allow_high_s_signatures": true})));
    for (key, kid, alg) in [(&KEYS.ec, "ec-1", "ES256"), (&KEYS.ec384, "ec384-1", "ES384")] {
        let low = token(key, kid, &claims());
        let high = tokengate_oauth2::ecdsa::flip_s(&low).unwrap();
        for p in [&default, &old_lenient] {
            assert_eq!(accepted(p, &high).await.principal, "alice", "{alg}: the twin is accepted");
            accepted(p, &low).await;
        }
        accepted(&strict, &low).await;
        invalid(&strict, &high, &["signature invalid: high-S ECDSA signature", &format!("alg {alg}"), kid]).await;
        assert_eq!(tokengate_kit::token_identity(&high), tokengate_kit::token_identity(&low), "{alg}: one token");
    }
}

/// What one real signer produced: its public keys and `(alg, token)` pairs.
struct Signed {
    signer: &'static str,
    keys: Vec<Value>,
    tokens: Vec<(String, String)>,
}

/// Tokens per algorithm and signer: the chance that all are one S form is 2^-39.
const TOKENS_PER_ALG: usize = 40;

/// Node's `crypto` (OpenSSL, what `oidc-provider` and `jose` sign with), as a
/// Node issuer signs: `dsaEncoding: 'ieee-p1363'`, S as it comes.
fn node_signed(claims: &Value) -> Option<Signed> {
    let node = require_service("node")?;
    let script = r#"
const crypto = require('crypto');
const [claims, count] = [process.argv[1], Number(process.argv[2])];
const b64 = (b) => Buffer.from(b).toString('base64url');
const out = {keys: [], tokens: []};
for (const [alg, curve, hash] of [['ES256', 'P-256', 'sha256'], ['ES384', 'P-384', 'sha384']]) {
  const kid = 'node-' + alg;
  const {privateKey, publicKey} = crypto.generateKeyPairSync('ec', {namedCurve: curve});
  out.keys.push({...publicKey.export({format: 'jwk'}), kid, alg, use: 'sig'});
  const input = b64(JSON.stringify({alg, typ: 'JWT', kid})) + '.' + b64(claims);
  for (let i = 0; i < count; i++) {
    const sig = crypto.sign(hash, Buffer.from(input), {key: privateKey, dsaEncoding: 'ieee-p1363'});
    out.tokens.push([alg, input + '.' + b64(sig)]);
  }
}
console.log(JSON.stringify(out));
"#;
    run_signer("node's crypto", std::process::Command::new(node).args(["-e", script, "--"]), claims)
}

/// Python's `cryptography` (what PyJWT signs with): DER from OpenSSL, turned
/// into `r ‖ s` as PyJWT does, S as it comes.
fn python_signed(claims: &Value) -> Option<Signed> {
    let python = require_service("python3")?;
    let script = r#"
import base64, json, sys
try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
except ImportError:
    print("no-cryptography"); sys.exit(0)
claims, count = sys.argv[1], int(sys.argv[2])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
out = {"keys": [], "tokens": []}
for alg, curve, hash_, size in [("ES256", ec.SECP256R1(), hashes.SHA256(), 32), ("ES384", ec.SECP384R1(), hashes.SHA384(), 48)]:
    kid = "python-" + alg
    key = ec.generate_private_key(curve)
    n = key.public_key().public_numbers()
    out["keys"].append({"kty": "EC", "crv": "P-%d" % (size * 8), "x": b64(n.x.to_bytes(size, "big")),
                        "y": b64(n.y.to_bytes(size, "big")), "kid": kid, "alg": alg, "use": "sig"})
    signing_input = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode()) + "." + b64(claims.encode())
    for _ in range(count):
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hash_)))
        out["tokens"].append([alg, signing_input + "." + b64(r.to_bytes(size, "big") + s.to_bytes(size, "big"))])
print(json.dumps(out))
"#;
    run_signer("python's cryptography", std::process::Command::new(python).args(["-c", script]), claims)
}

fn run_signer(signer: &'static str, command: &mut std::process::Command, claims: &Value) -> Option<Signed> {
    let out = command.arg(claims.to_string()).arg(TOKENS_PER_ALG.to_string()).output().expect("run the signer");
    assert!(out.status.success(), "{signer}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    if text.trim() == "no-cryptography" {
        assert!(!in_ci(), "{signer} is not installed; under CI=true that is a failure (pip install cryptography)");
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED {signer}: not installed (pip install cryptography)");
        return None;
    }
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{signer}: {e}: {text}"));
    let tokens =
        v["tokens"].as_array().unwrap().iter().map(|t| (t[0].as_str().unwrap().into(), t[1].as_str().unwrap().into()));
    Some(Signed { signer, keys: v["keys"].as_array().unwrap().clone(), tokens: tokens.collect() })
}

/// aws-lc (through jsonwebtoken, what Rust issuers sign with), S as it comes.
fn aws_lc_signed(claims: &Value) -> Signed {
    let mut tokens = Vec::new();
    for (key, kid, alg) in [(&KEYS.ec, "ec-1", Algorithm::ES256), (&KEYS.ec384, "ec384-1", Algorithm::ES384)] {
        let name = if alg == Algorithm::ES256 { "ES256" } else { "ES384" };
        let input = signing_input(&json!({"alg": name, "typ": "JWT", "kid": kid}).to_string(), &claims.to_string());
        for _ in 0..TOKENS_PER_ALG {
            let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key.enc, alg).unwrap();
            tokens.push((name.to_string(), format!("{input}.{signature}")));
        }
    }
    Signed { signer: "aws-lc", keys: vec![KEYS.ec.jwk("ec-1"), KEYS.ec384.jwk("ec384-1")], tokens }
}

/// Issue #21: real signers do not normalize S, so about half their ES256 and
/// ES384 signatures are high-S. Every one of their tokens is accepted by
/// default; under `require_low_s` the high-S ones are refused (and their
/// low-S twins accepted). Before, the default refused about half of them.
#[tokio::test]
async fn tokens_of_real_signers_are_accepted_in_both_s_forms() {
    let claims = claims();
    let mut signed = vec![aws_lc_signed(&claims)];
    signed.extend(node_signed(&claims));
    signed.extend(python_signed(&claims));
    let server = Server::start().await;
    let keys: Vec<Value> = signed.iter().flat_map(|s| s.keys.clone()).collect();
    server.route("/jwks", Reply::Json(200, json!({ "keys": keys })));
    let default = build_ok(jwt_config(&server));
    let strict = build_ok(with(jwt_config(&server), json!({"require_low_s": true})));
    let signature = |t: &str| unb64(t.rsplit('.').next().unwrap());
    for Signed { signer, tokens, .. } in &signed {
        for alg in ["ES256", "ES384"] {
            let mine: Vec<&String> = tokens.iter().filter(|(a, _)| a == alg).map(|(_, t)| t).collect();
            assert_eq!(mine.len(), TOKENS_PER_ALG, "{signer} {alg}");
            let high = mine.iter().filter(|t| tokengate_oauth2::ecdsa::is_high_s(&signature(t))).count();
            assert!(
                high > 0 && high < mine.len(),
                "{signer} {alg}: {high} of {} high-S; both forms expected",
                mine.len()
            );
            for t in &mine {
                let principal = default.validate(t, &ctx()).await.unwrap_or_else(|e| panic!("{signer} {alg}: {e}"));
                assert_eq!(principal.principal, "alice");
                if tokengate_oauth2::ecdsa::is_high_s(&signature(t)) {
                    invalid(&strict, t, &["high-S ECDSA signature", alg]).await;
                    accepted(&strict, &tokengate_oauth2::ecdsa::low_s_token(t)).await;
                } else {
                    accepted(&strict, t).await;
                }
            }
        }
    }
}
