//! ECDSA signature malleability (issues #11, #21).
//!
//! For any valid ECDSA signature (r, s), (r, n − s) verifies too, and anyone
//! can compute it without the key. A JWT signed with ES256/ES384/ES512
//! therefore has a twin with other signature bytes. Most signers (OpenSSL and
//! so Node's `crypto`, Python's `cryptography`, Go, Java, aws-lc) do not
//! normalise S, so about half their signatures are "high-S" (s > n/2), and
//! RFC 7518 does not ask them to: refusing high-S refuses real tokens.
//! Instead, whatever treats two tokens as the same token asks
//! [`crate::identity`], which maps both forms to the low-S one
//! ([`normalize_low_s`]); `require_low_s: true` in `oauth2_token` still
//! refuses high-S for those who want exactly one accepted encoding.
//!
//! Public so that identity, test fixtures, benches and examples can use it.

/// `(n − 1) / 2` of P-256, big-endian: the largest low S.
const P256_HALF_ORDER: [u8; 32] = from_hex(*b"7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8");
/// The order n of P-256.
const P256_ORDER: [u8; 32] = from_hex(*b"ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
/// `(n − 1) / 2` of P-384.
const P384_HALF_ORDER: [u8; 48] =
    from_hex(*b"7fffffffffffffffffffffffffffffffffffffffffffffffe3b1a6c0fa1b96efac0d06d9245853bd76760cb5666294b9");
/// The order n of P-384.
const P384_ORDER: [u8; 48] =
    from_hex(*b"ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973");
/// `(n − 1) / 2` of P-521, in the 66 bytes of a JWS ES512 half.
const P521_HALF_ORDER: [u8; 66] = from_hex(
    *b"00fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffd28c343c1df97cb35bfe600a47b84d2e81ddae4dc44ce23d75db7db8f489c3204",
);
/// The order n of P-521.
const P521_ORDER: [u8; 66] = from_hex(
    *b"01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
);

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lowercase hex digit"),
    }
}

/// `N` bytes from `2N` lowercase hex digits, at compile time (a wrong length
/// or digit fails the build).
const fn from_hex<const N: usize, const DIGITS: usize>(text: [u8; DIGITS]) -> [u8; N] {
    assert!(DIGITS == 2 * N, "two hex digits per byte");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]);
        i += 1;
    }
    out
}

/// The curve order and its half for a fixed-size JWS signature (`r ‖ s`), by
/// length: 64 bytes is P-256 (ES256), 96 bytes P-384 (ES384), 132 bytes P-521 (ES512).
fn curve_of(signature_len: usize) -> Option<(&'static [u8], &'static [u8])> {
    match signature_len {
        64 => Some((&P256_ORDER, &P256_HALF_ORDER)),
        96 => Some((&P384_ORDER, &P384_HALF_ORDER)),
        132 => Some((&P521_ORDER, &P521_HALF_ORDER)),
        _ => None,
    }
}

/// The JWS signature length (`r ‖ s`) of an ECDSA `alg`; `None` for any other alg.
pub fn signature_len(alg: &str) -> Option<usize> {
    match alg {
        "ES256" => Some(64),
        "ES384" => Some(96),
        "ES512" => Some(132),
        _ => None,
    }
}

/// Whether the `s` half of a JWS ECDSA signature (`r ‖ s`, 64, 96 or 132 bytes)
/// is above n/2. Any other length is not an ECDSA JWS signature: `false`.
pub fn is_high_s(signature: &[u8]) -> bool {
    let Some((_, half)) = curve_of(signature.len()) else { return false };
    let s = &signature[signature.len() / 2..];
    // Big-endian byte strings of equal length compare like the numbers.
    s > half
}

/// Rewrites a JWS ECDSA signature (`r ‖ s`, 64, 96 or 132 bytes) to its low-S form
/// (`s → n − s` when s > n/2); returns whether it changed anything. A
/// signature of another length, or whose s is not below n, is left alone.
pub fn normalize_low_s(signature: &mut [u8]) -> bool {
    let Some((order, half)) = curve_of(signature.len()) else { return false };
    let split = signature.len() / 2;
    let s = &mut signature[split..];
    if &*s <= half || &*s >= order {
        return false;
    }
    negate(s, order);
    true
}

/// `s = n − s` for 0 < s < n, big-endian with borrow (n > s: no final borrow).
fn negate(s: &mut [u8], order: &[u8]) {
    let mut borrow = 0u16;
    for i in (0..s.len()).rev() {
        let (a, b) = (u16::from(order[i]), u16::from(s[i]) + borrow);
        if a >= b {
            s[i] = (a - b) as u8;
            borrow = 0;
        } else {
            s[i] = (a + 256 - b) as u8;
            borrow = 1;
        }
    }
}

/// The signing input of a compact JWS, and its signature's bytes, when the
/// header is base64url JSON naming ES256, ES384 or ES512 (Ed25519 signatures
/// are 64 bytes too, so the length alone cannot tell).
fn ecdsa_parts(token: &str) -> Option<(&str, Vec<u8>)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (input, signature) = token.rsplit_once('.')?;
    let header = b64.decode(input.split('.').next()?).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let expected = signature_len(header.get("alg")?.as_str()?)?;
    let bytes = b64.decode(signature).ok()?;
    (bytes.len() == expected).then_some((input, bytes))
}

fn encode(input: &str, signature: &[u8]) -> String {
    use base64::Engine as _;
    format!("{input}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature))
}

/// [`normalize_low_s`] on a compact ES256/ES384/ES512 JWS: the same token with a
/// low-S signature. Any other token comes back unchanged.
pub fn low_s_token(token: &str) -> String {
    let Some((input, mut signature)) = ecdsa_parts(token) else { return token.to_string() };
    if normalize_low_s(&mut signature) {
        encode(input, &signature)
    } else {
        token.to_string()
    }
}

/// The same ES256/ES384/ES512 token with its signature's `s` replaced by `n − s`:
/// what anyone can do without the key. For tests and for showing the attack;
/// `None` for any other token.
pub fn flip_s(token: &str) -> Option<String> {
    let (input, mut signature) = ecdsa_parts(token)?;
    flip_in_place(&mut signature).then(|| encode(input, &signature))
}

/// `s → n − s` in a JWS ECDSA signature (`r ‖ s`, 64, 96 or 132 bytes): its
/// twin, whichever form it is in. `false` (and unchanged) for another
/// length, or an s that is 0 or not below n.
pub fn flip_in_place(signature: &mut [u8]) -> bool {
    let Some((order, _)) = curve_of(signature.len()) else { return false };
    let split = signature.len() / 2;
    let s = &mut signature[split..];
    if s.iter().all(|b| *b == 0) || &*s >= order {
        return false;
    }
    negate(s, order);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_are_half_the_orders() {
        // 2·half + 1 = n, checked bytewise.
        for (order, half) in [
            (&P256_ORDER[..], &P256_HALF_ORDER[..]),
            (&P384_ORDER[..], &P384_HALF_ORDER[..]),
            (&P521_ORDER[..], &P521_HALF_ORDER[..]),
        ] {
            let mut carry = 1u16;
            let mut twice = vec![0u8; order.len()];
            for i in (0..order.len()).rev() {
                let v = u16::from(half[i]) * 2 + carry;
                twice[i] = v as u8;
                carry = v >> 8;
            }
            assert_eq!(twice, order);
        }
    }

    #[test]
    fn normalizing_flips_high_s_only() {
        let mut sig = [0u8; 64];
        sig[32..].copy_from_slice(&P256_HALF_ORDER);
        assert!(!is_high_s(&sig));
        assert!(!normalize_low_s(&mut sig));
        sig[63] += 1; // half + 1: the smallest high S
        assert!(is_high_s(&sig));
        assert!(normalize_low_s(&mut sig));
        assert_eq!(&sig[32..], &P256_HALF_ORDER[..], "n − (half + 1) = half");
        let mut n = [0u8; 96];
        n[48..].copy_from_slice(&P384_ORDER);
        assert!(is_high_s(&n) && !normalize_low_s(&mut n), "s = n is left for the verifier to refuse");
        assert!(!is_high_s(&[0xff; 65]), "not an ECDSA JWS signature");
        let mut p521 = [0u8; 132];
        p521[66..].copy_from_slice(&P521_HALF_ORDER);
        p521[131] += 1;
        assert!(is_high_s(&p521) && normalize_low_s(&mut p521));
        assert_eq!(&p521[66..], &P521_HALF_ORDER[..]);
    }
}
