use super::*;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWS with `signature` under `header`: nothing here verifies, identity only reads.
fn jws(header: &str, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header.as_bytes()), b64(br#"{"sub":"alice","exp":4102444800}"#), b64(signature))
}

/// An `r ‖ s` of `len` bytes whose s is high (top byte 0xf0 > the half order's 0x7f or 0x00/0x01).
fn high_s_signature(len: usize) -> Vec<u8> {
    let mut sig: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
    let half = len / 2;
    sig[half] = if len == 132 { 0x01 } else { 0xf0 };
    sig[half + 1] = if len == 132 { 0x00 } else { sig[half + 1] };
    sig
}

/// The same signature bytes, spelled with the last character's unused bits
/// set; unchanged when the last character has none (a multiple of 3 bytes).
fn with_trailing_bits(token: &str) -> String {
    if URL_SAFE_NO_PAD.decode(token.rsplit('.').next().unwrap()).unwrap().len() % 3 == 0 {
        return token.to_string();
    }
    let mut bytes = token.as_bytes().to_vec();
    let last = bytes.last_mut().unwrap();
    let index = ALPHABET.iter().position(|c| c == last).unwrap();
    *last = ALPHABET[index | 1];
    String::from_utf8(bytes).unwrap()
}

fn padded(token: &str) -> String {
    let pad = (4 - token.rsplit('.').next().unwrap().len() % 4) % 4;
    format!("{token}{}", "=".repeat(pad))
}

#[test]
fn anything_but_a_jws_is_its_own_bytes() {
    for token in ["tg_secret-api-key", "a.b.c", "ghp_x.y", "", "e30.e30.!!!", "e30.payload.sig"] {
        let id = identify(token);
        assert_eq!(id.digest(), token_hash(token), "{token:?}");
        assert!(id.is_canonical(), "{token:?}");
        assert!(matches!(canonical_token(token), Cow::Borrowed(_)));
        assert_eq!(spelling_digests(token), vec![token_hash(token)]);
    }
    // `e30` is `{}`: a JSON object without `alg` is not a JWS header.
    let no_alg = format!("e30.e30.{}", b64(&[1, 2, 3]));
    assert_eq!(token_identity(&no_alg), token_hash(&no_alg));
    // A duplicated alg is refused by the verifier; here it is not a JWS either.
    let twice = jws(r#"{"alg":"ES256","alg":"RS256"}"#, &high_s_signature(64));
    assert_eq!(token_identity(&twice), token_hash(&twice));
}

#[test]
fn a_canonical_jws_is_identified_by_its_own_bytes() {
    for (header, len) in [(r#"{"alg":"RS256"}"#, 256), (r#"{"alg":"EdDSA"}"#, 64), (r#"{"alg":"HS256"}"#, 32)] {
        let token = jws(header, &high_s_signature(len));
        let id = identify(&token);
        assert!(id.is_canonical(), "{header}");
        assert_eq!(id.digest(), token_hash(&token), "{header}: the digest of before issue #21");
    }
}

#[test]
fn ecdsa_twins_and_base64_spellings_share_one_identity() {
    for (alg, len) in [("ES256", 64), ("ES384", 96), ("ES512", 132)] {
        let high = jws(&format!(r#"{{"alg":"{alg}","kid":"k"}}"#), &high_s_signature(len));
        let low = crate::ecdsa::low_s_token(&high);
        assert_ne!(low, high, "{alg}");
        assert_eq!(crate::ecdsa::flip_s(&low).as_deref(), Some(high.as_str()), "{alg}");
        let id = identify(&low);
        assert!(id.is_canonical(), "{alg}");
        assert_eq!(id.digest(), token_hash(&low), "{alg}: a low-S token is its own canonical form");
        let h = identify(&high);
        assert!(h.high_s() && !h.signature_reencoded(), "{alg}");
        assert_eq!(h.digest(), id.digest(), "{alg}: the high-S twin");
        assert_eq!(canonical_token(&high), low, "{alg}");
        for (what, twin) in [
            ("trailing bits", with_trailing_bits(&low)),
            ("padding", padded(&low)),
            ("padding, high-S", padded(&high)),
            ("trailing bits, high-S", with_trailing_bits(&high)),
            ("standard alphabet", low.replace('-', "+").replace('_', "/")),
        ] {
            if twin == low || twin == high {
                continue; // no such spelling for this length, or no such character
            }
            let t = identify(&twin);
            assert_eq!(t.digest(), id.digest(), "{alg} {what}");
            assert!(t.signature_reencoded(), "{alg} {what}");
            assert_eq!(canonical_token(&twin), low, "{alg} {what}");
        }
        let mut digests = spelling_digests(&with_trailing_bits(&high));
        assert_eq!(digests[0], id.digest(), "{alg}: the identity comes first");
        digests.sort();
        let mut expected = vec![token_hash(&low), token_hash(&high), token_hash(&with_trailing_bits(&high))];
        expected.sort();
        expected.dedup();
        assert_eq!(digests, expected, "{alg}: both S forms and the spelling as sent");
    }
}

#[test]
fn the_signature_is_part_of_the_identity() {
    let token = jws(r#"{"alg":"ES256"}"#, &high_s_signature(64));
    let (input, _) = token.rsplit_once('.').unwrap();
    let mut other = high_s_signature(64);
    other[3] ^= 1;
    let forged = format!("{input}.{}", b64(&other));
    let empty = format!("{input}.");
    let ids = [token_identity(&token), token_identity(&forged), token_identity(&empty), token_hash(input)];
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert_ne!(a, b, "header.payload alone, or with another signature, is another token");
        }
    }
    // Not ECDSA: a 64-byte EdDSA signature is never "normalised".
    let ed = jws(r#"{"alg":"EdDSA"}"#, &high_s_signature(64));
    let flipped = {
        let (input, sig) = ed.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert!(crate::ecdsa::flip_in_place(&mut bytes));
        format!("{input}.{}", b64(&bytes))
    };
    assert_ne!(token_identity(&ed), token_identity(&flipped));
    assert_eq!(spelling_digests(&ed), vec![token_hash(&ed)]);
}

#[test]
fn canonical_forms_are_fixed_points() {
    let high = jws(r#"{"alg":"ES384"}"#, &high_s_signature(96));
    for token in [padded(&high), high.clone(), "opaque".to_string()] {
        let canonical = canonical_token(&token).into_owned();
        assert_eq!(canonical_token(&canonical), canonical);
        assert_eq!(token_identity(&canonical), token_hash(&canonical));
        assert_eq!(token_identity(&token), token_hash(&canonical));
    }
}

/// `is_unpadded_b64url` reads without decoding what decoding and encoding
/// again would say: the same answer for every spelling of every length, in
/// every position of a chunk.
#[test]
fn the_canonical_base64_check_agrees_with_decoding_and_encoding_again() {
    let decode_and_encode_again =
        |s: &str| LENIENT.decode(s).is_ok_and(|bytes| !s.contains(['+', '/']) && URL_SAFE_NO_PAD.encode(bytes) == s);
    let mut checked = 0;
    for len in 0..80usize {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 151 + len * 7 + 3) as u8).collect();
        let canonical = b64(&bytes);
        let mut spellings = vec![canonical.clone(), padded(&format!("x.{canonical}"))[2..].to_string()];
        // Each character position replaced by a character of each class.
        for at in 0..canonical.len() {
            for c in [b'A', b'z', b'0', b'-', b'_', b'+', b'/', b'=', b'.', b' ', b'!', 0x7f, b'@', b'[', b'`', b'{'] {
                let mut s = canonical.clone().into_bytes();
                s[at] = c;
                spellings.push(String::from_utf8(s).unwrap());
            }
        }
        // Unused trailing bits set, one character too many.
        if let Some(last) = canonical.bytes().last() {
            let index = ALPHABET.iter().position(|&c| c == last).unwrap();
            for bit in [1, 2, 4, 8, 16, 32] {
                let mut s = canonical.clone().into_bytes();
                *s.last_mut().unwrap() = ALPHABET[index ^ bit];
                spellings.push(String::from_utf8(s).unwrap());
            }
        }
        spellings.push(format!("{canonical}A"));
        for s in &spellings {
            assert_eq!(is_unpadded_b64url(s), decode_and_encode_again(s), "{s:?}");
            checked += 1;
        }
    }
    assert!(checked > 10_000);
}

/// Hashing each spelling once gives the digests hashing every candidate
/// did: the canonical form, the other S, the token as sent, deduplicated in
/// that order; and `other_spellings` is that list without the token as sent.
#[test]
fn each_spelling_hashed_once_gives_the_digests_of_hashing_every_candidate() {
    let hashing_every_candidate = |token: &str| {
        let Some(mut jws) = Jws::read(token) else { return vec![token_hash(token)] };
        let mut digests = vec![canonical_digest(jws.input, jws.signature.as_slice())];
        if jws.ecdsa && crate::ecdsa::flip_in_place(jws.signature.as_mut_slice()) {
            digests.push(canonical_digest(jws.input, jws.signature.as_slice()));
        }
        let raw = token_hash(token);
        if !digests.contains(&raw) {
            digests.push(raw);
        }
        digests
    };
    let mut tokens: Vec<String> =
        ["tg_secret-api-key", "a.b.c", "", "e30.e30.!!!", "e30.e30.AQID"].iter().map(|t| t.to_string()).collect();
    for (header, len) in [
        (r#"{"alg":"RS256"}"#, 256),
        (r#"{"alg":"EdDSA"}"#, 64),
        (r#"{"alg":"HS256"}"#, 32),
        (r#"{"alg":"ES256"}"#, 64),
        (r#"{"alg":"ES256"}"#, 63),
        (r#"{"alg":"ES384"}"#, 96),
        (r#"{"alg":"ES512"}"#, 132),
    ] {
        let high = jws(header, &high_s_signature(len));
        let low = crate::ecdsa::low_s_token(&high);
        for token in [&high, &low] {
            tokens.extend([
                token.clone(),
                with_trailing_bits(token),
                padded(token),
                token.replace('-', "+").replace('_', "/"),
                format!("{token}A"),
            ]);
        }
    }
    for token in &tokens {
        let expected = hashing_every_candidate(token);
        assert_eq!(spelling_digests(token), expected, "{token:?}");
        let as_sent = token_hash(token);
        let others = other_spellings(token, as_sent);
        let mut rest = expected.clone();
        rest.retain(|d| *d != as_sent);
        assert_eq!(others, rest, "{token:?}");
    }
}

/// The whole token and its prefix hashed in one pass: the digests of hashing each alone.
#[test]
fn a_token_and_its_prefix_hashed_once_are_each_one_hashed_alone() {
    let token = jws(r#"{"alg":"RS256"}"#, &high_s_signature(256)) + "é";
    for len in [0, 1, 63, 64, 65, token.len() / 2, token.len() - 3, token.len() - 2, token.len()] {
        let (whole, prefix) = crate::token_and_prefix_hash(&token, len);
        assert_eq!(whole, token_hash(&token), "{len}");
        assert_eq!(prefix, token.get(..len).map(token_hash), "{len}");
    }
    // Not a char boundary (inside "é") or past the end: the whole token only.
    assert_eq!(crate::token_and_prefix_hash(&token, token.len() - 1), (token_hash(&token), None));
    assert_eq!(crate::token_and_prefix_hash(&token, token.len() + 1), (token_hash(&token), None));
}
