//! A token's identity: the one answer to "are these two the same token?"
//! (issue #21), asked by the verified-token cache, the remote-result caches,
//! revocation and the audit log.
//!
//! A compact JWS can be re-encoded without its key and still verify: its
//! ECDSA signature (r, s) has a twin (r, n − s) (see [`crate::ecdsa`]), and a
//! lenient base64url decoder (Node's `Buffer`, Python's `urlsafe_b64decode`)
//! also reads the signature with `=` padding, non-zero trailing bits or the
//! `+` `/` alphabet. Such twins carry the same signature value over the same
//! `header.payload`, so they are the same token, and their bytes differ.
//!
//! The identity is the SHA-256 of the token's **canonical form**: for a JWS
//! (three segments, the first base64url of a JSON object with a string
//! `alg`), `header.payload` exactly as sent (the signature covers those
//! bytes) and the signature re-encoded as unpadded base64url, with S
//! normalised to low-S when `alg` is ES256, ES384 or ES512; for anything else,
//! the token's bytes. The signature is never dropped: knowing
//! `header.payload` alone does not give a token's identity, so an entry cached
//! for a verified token cannot be reached with a garbage signature.
//!
//! The canonical form of a JWS is itself a JWS whose canonical form is
//! itself, and the canonical form of anything else is itself: two tokens have
//! one identity exactly when their canonical forms are equal, and a token
//! already in canonical form (unpadded base64url, low-S or not ECDSA, which
//! is what most issuers send) has the SHA-256 of its own bytes as identity,
//! as before this module.

use crate::cache::token_hash;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use tokengate_api::TokenHash;

/// Reads every base64url spelling of the same bytes: padded or not, with
/// non-zero trailing bits (the `+` `/` alphabet is mapped before).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decoded signatures up to this size stay on the stack (RSA-4096 is 512 bytes).
const SIGNATURE_STACK_BYTES: usize = 640;

/// Headers up to this size (encoded) are decoded on the stack.
const HEADER_STACK_BYTES: usize = 512;

/// What [`identify`] found out about a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    digest: TokenHash,
    reencoded: bool,
    high_s: bool,
}

impl std::fmt::Debug for Identity {
    // Only how the token differs from its canonical form: the digest names a
    // token, which stray debug output has no business correlating.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("reencoded", &self.reencoded).field("high_s", &self.high_s).finish()
    }
}

impl Identity {
    /// SHA-256 of the token's canonical form: what caches, revocation and audit hold.
    pub fn digest(&self) -> TokenHash {
        self.digest
    }

    /// The JWS signature was not in unpadded, canonical base64url (a strict
    /// JWS verifier refuses the token as sent).
    pub fn signature_reencoded(&self) -> bool {
        self.reencoded
    }

    /// The ES256/ES384/ES512 signature was high-S (s > n/2) as sent.
    pub fn high_s(&self) -> bool {
        self.high_s
    }

    /// The token as sent is its own canonical form.
    pub fn is_canonical(&self) -> bool {
        !self.reencoded && !self.high_s
    }
}

/// The identity of `token` (see the module docs).
pub fn token_identity(token: &str) -> TokenHash {
    identify(token).digest
}

/// The identity of `token`, and how the token as sent differs from its canonical form.
pub fn identify(token: &str) -> Identity {
    let as_sent = || Identity { digest: token_hash(token), reencoded: false, high_s: false };
    let Some((input, header, encoded)) = split_jws(token) else { return as_sent() };
    let Some(ecdsa_len) = ecdsa_len_of(header) else { return as_sent() };
    // What most issuers send (RSA, EdDSA, HMAC, already canonical) is its own
    // canonical form: no need to decode the signature to know that.
    if ecdsa_len.is_none() && is_unpadded_b64url(encoded) {
        return as_sent();
    }
    let Some(jws) = Jws::decode(input, encoded, ecdsa_len) else { return as_sent() };
    let digest = if jws.reencoded || jws.high_s {
        canonical_digest(jws.input, jws.signature.as_slice())
    } else {
        token_hash(token)
    };
    Identity { digest, reencoded: jws.reencoded, high_s: jws.high_s }
}

/// SHA-256 of `input.{signature as unpadded base64url}`: the digest of the
/// canonical form, without writing that form out.
fn canonical_digest(input: &str, signature: &[u8]) -> TokenHash {
    let mut hasher = Sha256::new();
    hasher.update(input.as_bytes());
    hasher.update(b".");
    let mut out = [0u8; SIGNATURE_STACK_BYTES * 4 / 3 + 4];
    match URL_SAFE_NO_PAD.encode_slice(signature, &mut out) {
        Ok(n) => hasher.update(&out[..n]),
        Err(_) => hasher.update(URL_SAFE_NO_PAD.encode(signature).as_bytes()),
    }
    hasher.finalize().into()
}

/// The canonical form of `token` (see the module docs); borrowed when the
/// token already is in it.
pub fn canonical_token(token: &str) -> Cow<'_, str> {
    match Jws::read(token) {
        Some(jws) if jws.reencoded || jws.high_s => {
            Cow::Owned(format!("{}.{}", jws.input, URL_SAFE_NO_PAD.encode(jws.signature.as_slice())))
        }
        _ => Cow::Borrowed(token),
    }
}

/// The SHA-256 of each spelling of `token` that anyone might have listed as
/// "the token's digest" by hashing it whole: the canonical form (the
/// identity, always first), the canonical form with the other S (ES256,
/// ES384, ES512), and the token as sent when that is neither. Distinct.
///
/// For lists written by hand (`token_sha256` in a revocation file): an
/// operator hashed the token as the issuer sent it, in whichever S form.
pub fn spelling_digests(token: &str) -> Vec<TokenHash> {
    let spellings = Spellings::of(token, token_hash(token));
    let mut digests = vec![spellings.canonical.unwrap_or(spellings.as_sent)];
    digests.extend(spellings.other_s);
    if !digests.contains(&spellings.as_sent) {
        digests.push(spellings.as_sent);
    }
    digests
}

/// [`spelling_digests`] but the token as sent, whose digest the caller has
/// (`as_sent`, which must be [`token_hash`] of `token`: revocation hashes it
/// together with the signing input, see [`crate::token_and_prefix_hash`]):
/// the digests of its other spellings, in `spelling_digests`'s order, empty
/// when it has none. Each spelling is hashed once.
pub fn other_spellings(token: &str, as_sent: TokenHash) -> Vec<TokenHash> {
    debug_assert!(as_sent == token_hash(token), "other_spellings: as_sent is not the digest of the token");
    let spellings = Spellings::of(token, as_sent);
    let mut others: Vec<TokenHash> = spellings.canonical.into_iter().chain(spellings.other_s).collect();
    others.retain(|digest| *digest != as_sent);
    others
}

/// A token's whole-token digests, each computed once.
struct Spellings {
    as_sent: TokenHash,
    /// `None` when the token as sent is its own canonical form (then it is `as_sent`).
    canonical: Option<TokenHash>,
    /// The canonical form with the other ECDSA S.
    other_s: Option<TokenHash>,
}

impl Spellings {
    /// `as_sent` is [`token_hash`] of `token`.
    fn of(token: &str, as_sent: TokenHash) -> Spellings {
        let as_sent_only = Spellings { as_sent, canonical: None, other_s: None };
        let Some((input, header, encoded)) = split_jws(token) else { return as_sent_only };
        let Some(ecdsa_len) = ecdsa_len_of(header) else { return as_sent_only };
        // Not ECDSA and already canonical: its own bytes are its only spelling.
        if ecdsa_len.is_none() && is_unpadded_b64url(encoded) {
            return as_sent_only;
        }
        let Some(mut jws) = Jws::decode(input, encoded, ecdsa_len) else { return as_sent_only };
        // Canonical as sent: the canonical form is the token's own bytes.
        let canonical = (jws.reencoded || jws.high_s).then(|| canonical_digest(jws.input, jws.signature.as_slice()));
        let other_s = (jws.ecdsa && crate::ecdsa::flip_in_place(jws.signature.as_mut_slice()))
            .then(|| canonical_digest(jws.input, jws.signature.as_slice()));
        Spellings { as_sent, canonical, other_s }
    }
}

/// A decoded signature, on the stack when it fits.
// Large on purpose: it lives on the stack of one call, to spare the hot path an allocation.
#[allow(clippy::large_enum_variant)]
enum SignatureBytes {
    Stack([u8; SIGNATURE_STACK_BYTES], usize),
    Heap(Vec<u8>),
}

impl SignatureBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            SignatureBytes::Stack(buf, n) => &buf[..*n],
            SignatureBytes::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            SignatureBytes::Stack(buf, n) => &mut buf[..*n],
            SignatureBytes::Heap(v) => v,
        }
    }
}

/// A compact JWS, its signature decoded and (for ECDSA) made low-S.
struct Jws<'t> {
    /// `header.payload`, as sent.
    input: &'t str,
    /// The signature's bytes, low-S for ECDSA.
    signature: SignatureBytes,
    /// `alg` is ES256/ES384/ES512 and the signature has that alg's length.
    ecdsa: bool,
    reencoded: bool,
    high_s: bool,
}

#[derive(Deserialize)]
struct AlgOnly<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
}

/// `(header.payload, header, signature)` of a token with three segments and a
/// non-empty header, as sent.
fn split_jws(token: &str) -> Option<(&str, &str, &str)> {
    let (input, encoded) = token.rsplit_once('.')?;
    let (header, payload) = input.split_once('.')?;
    if header.is_empty() || payload.contains('.') {
        return None;
    }
    Some((input, header, encoded))
}

impl<'t> Jws<'t> {
    fn read(token: &'t str) -> Option<Jws<'t>> {
        let (input, header, encoded) = split_jws(token)?;
        Jws::decode(input, encoded, ecdsa_len_of(header)?)
    }

    /// The signature `encoded` decoded; `alg_len` is what [`ecdsa_len_of`] said of the header.
    fn decode(input: &'t str, encoded: &str, alg_len: Option<usize>) -> Option<Jws<'t>> {
        // Mapped only when needed: the standard alphabet is rare.
        let mapped: Cow<'_, str> = if encoded.bytes().any(|b| b == b'+' || b == b'/') {
            Cow::Owned(encoded.replace('+', "-").replace('/', "_"))
        } else {
            Cow::Borrowed(encoded)
        };
        let mut signature = if base64::decoded_len_estimate(mapped.len()) <= SIGNATURE_STACK_BYTES {
            let mut buf = [0u8; SIGNATURE_STACK_BYTES];
            let n = LENIENT.decode_slice(mapped.as_bytes(), &mut buf).ok()?;
            SignatureBytes::Stack(buf, n)
        } else {
            SignatureBytes::Heap(LENIENT.decode(mapped.as_bytes()).ok()?)
        };
        let reencoded = !is_unpadded_b64url(encoded);
        let ecdsa = alg_len.is_some_and(|len| len == signature.as_slice().len());
        let high_s = ecdsa && crate::ecdsa::normalize_low_s(signature.as_mut_slice());
        Some(Jws { input, signature, ecdsa, reencoded, high_s })
    }
}

/// `Some(ecdsa signature length)` for a JWS header (base64url of a JSON object
/// with a string `alg`), `None` inside when `alg` is not ECDSA; `None` for
/// anything that is not such a header (then the token is not a JWS here).
fn ecdsa_len_of(header: &str) -> Option<Option<usize>> {
    let mut stack = [0u8; HEADER_STACK_BYTES];
    let heap;
    let bytes = if base64::decoded_len_estimate(header.len()) <= stack.len() {
        let n = LENIENT.decode_slice(header, &mut stack).ok()?;
        &stack[..n]
    } else {
        heap = LENIENT.decode(header).ok()?;
        &heap[..]
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    // A duplicated `alg` fails here, as it does in the verifier: not a JWS.
    let header: AlgOnly<'_> = serde_json::from_slice(bytes).ok()?;
    Some(crate::ecdsa::signature_len(&header.alg))
}

/// Whether `encoded` is the unpadded base64url of some bytes, exactly as
/// that encoding writes them: only the URL-safe alphabet, no `=`, a length
/// that is not 1 modulo 4, and zero bits past the last byte. Such a string
/// decodes and re-encodes to itself, and no other string does.
///
/// Read without decoding, without branching or an early exit, a chunk at a
/// time (the compiler turns it into vector compares): the signature is a
/// third of a token and this runs on every request.
fn is_unpadded_b64url(encoded: &str) -> bool {
    let bytes = encoded.as_bytes();
    let fits = |b: u8| {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        letter | digit | (b == b'-') | (b == b'_')
    };
    if !bytes.chunks(32).all(|chunk| chunk.iter().fold(true, |all, &b| all & fits(b))) {
        return false;
    }
    // The last character's low bits that no whole byte uses: 4 of them after
    // 2 characters of a quantum (one byte), 2 after 3 (two bytes).
    let unused_bits = match bytes.len() % 4 {
        0 => return true,
        1 => return false,
        2 => 0b1111,
        _ => 0b11,
    };
    bytes.last().is_some_and(|&last| sextet(last) & unused_bits == 0)
}

/// The 6-bit value of a base64url character (one [`is_unpadded_b64url`] accepted).
fn sextet(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    }
}

#[cfg(test)]
mod tests;
