//! Verification keys, prepared once per key-set fetch.
//!
//! Each JWK becomes one verifier per algorithm the key may verify, built when
//! the key set is fetched, so the hot path never re-parses key material
//! (jsonwebtoken's `DecodingKey` rebuilds the public key on every `decode`).
//! A JWK that cannot be used is skipped with a debug log instead of failing
//! the whole set.
//!
//! The backend is chosen per algorithm, by measurement (BENCHMARKS.md): aws-lc-rs
//! `ParsedPublicKey` for RSA, P-384 and Ed25519, where it is fastest (P-384 4×,
//! Ed25519 1.4× ring), and ring for P-256, whose dedicated P-256 code verifies
//! about 4% faster than aws-lc's generic EVP path. The P-256 key is still parsed
//! by aws-lc when the set is loaded, so an invalid point is refused there, not
//! on the first token.

use crate::alg::{Alg, AlgSet, KeyType};
use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Key material from the identity provider: base64url, padding tolerated
/// because some providers pad and the source is trusted configuration.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One usable public key.
pub(crate) struct Key {
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) key_type: KeyType,
    /// The JWK's `alg`, when it pins one: then no other algorithm may use the key.
    pub(crate) pinned: Option<Alg>,
    /// Identifies the key material, so a cached verdict can tell whether the
    /// key that signed the token is still in the current set.
    pub(crate) fingerprint: u64,
    verifiers: Vec<(Alg, Verifier)>,
}

/// A public key ready to verify one algorithm.
enum Verifier {
    AwsLc(ParsedPublicKey),
    /// The uncompressed P-256 point (`04 || x || y`), checked on load.
    RingP256(Box<[u8]>),
}

impl Verifier {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::AwsLc(key) => key.verify_sig(message, signature).is_ok(),
            Verifier::RingP256(point) => {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

/// Why a key cannot verify a given algorithm.
pub(crate) enum Mismatch {
    KeyType(KeyType),
    Pinned(Alg),
}

impl Key {
    pub(crate) fn check(&self, alg: Alg) -> Result<(), Mismatch> {
        if self.key_type != alg.key_type() {
            return Err(Mismatch::KeyType(self.key_type));
        }
        match self.pinned {
            Some(p) if p != alg => Err(Mismatch::Pinned(p)),
            _ => Ok(()),
        }
    }

    pub(crate) fn can_verify(&self, alg: Alg) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    pub(crate) fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        self.verifiers.iter().find(|(a, _)| *a == alg).is_some_and(|(_, verifier)| verifier.verify(message, signature))
    }

    pub(crate) fn describe(&self) -> String {
        match &self.kid {
            Some(kid) => format!("key {}", crate::text::quoted(kid)),
            None => "the key without kid".to_string(),
        }
    }
}

/// A fetched key set, ready for lookups.
#[derive(Debug, Default)]
pub(crate) struct KeyMap {
    by_kid: HashMap<Arc<str>, Vec<Arc<Key>>>,
    all: Vec<Arc<Key>>,
}

/// The outcome of choosing keys for a token.
pub(crate) enum Pick<'a> {
    /// Keys under the token's `kid` (more than one only when a provider reuses
    /// a kid), at least one of which fits the algorithm; callers skip the rest.
    Keys(&'a [Arc<Key>]),
    UnknownKid,
    /// The `kid` exists but no key under it fits the algorithm.
    Mismatch(&'a Key, Mismatch),
    /// No `kid` in the token, and not exactly one key fits the algorithm.
    NoKidAmbiguous(usize),
}

impl KeyMap {
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    pub(crate) fn pick(&self, kid: Option<&str>, alg: Alg) -> Pick<'_> {
        match kid {
            Some(kid) => {
                let Some(keys) = self.by_kid.get(kid) else {
                    return Pick::UnknownKid;
                };
                if keys.iter().any(|k| k.check(alg).is_ok()) {
                    return Pick::Keys(keys);
                }
                match keys.first() {
                    Some(key) => match key.check(alg) {
                        Err(m) => Pick::Mismatch(key, m),
                        Ok(()) => Pick::UnknownKid,
                    },
                    None => Pick::UnknownKid,
                }
            }
            None => {
                let mut fitting = self.all.iter().filter(|k| k.check(alg).is_ok());
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Pick::Keys(std::slice::from_ref(only)),
                    (None, _) => Pick::NoKidAmbiguous(0),
                    (Some(_), Some(_)) => Pick::NoKidAmbiguous(2 + fitting.count()),
                }
            }
        }
    }

    /// Whether the key that verified a cached token is still in this set.
    pub(crate) fn still_has(&self, kid: Option<&str>, fingerprint: u64) -> bool {
        match kid {
            Some(kid) => self.by_kid.get(kid).is_some_and(|keys| keys.iter().any(|k| k.fingerprint == fingerprint)),
            None => self.all.iter().any(|k| k.fingerprint == fingerprint),
        }
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Builds a [`KeyMap`] from a JWKS document. `Err` is a description of why
/// the answer is unusable as a whole (the caller reports it as unavailable).
pub(crate) fn parse_jwks(doc: &Value, allowed: AlgSet, max_keys: usize, source: &str) -> Result<KeyMap, String> {
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err("the answer is not a JWK set (no `keys` list)".to_string());
    };
    if entries.len() > max_keys {
        return Err(format!("the set holds {} keys, more than max_keys ({max_keys})", entries.len()));
    }
    let mut map = KeyMap::default();
    let mut skipped = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match parse_jwk(entry, allowed) {
            Ok(key) => {
                let key = Arc::new(key);
                if let Some(kid) = &key.kid {
                    map.by_kid.entry(kid.clone()).or_default().push(key.clone());
                }
                map.all.push(key);
            }
            Err(reason) => {
                let name = entry.get("kid").and_then(Value::as_str).map(crate::text::quoted);
                let name = name.unwrap_or_else(|| format!("#{index}"));
                tracing::debug!(source, key = %name, %reason, "skipping a JWK that cannot be used");
                skipped.push(format!("{name}: {reason}"));
            }
        }
    }
    if map.all.is_empty() {
        let detail = if skipped.is_empty() { "it is empty".to_string() } else { skipped.join("; ") };
        return Err(format!("the set has no usable key ({detail})"));
    }
    Ok(map)
}

fn parse_jwk(entry: &Value, allowed: AlgSet) -> Result<Key, String> {
    let raw = RawJwk::deserialize(entry).map_err(|e| format!("not a valid JWK ({e})"))?;
    if let Some(use_) = raw.use_.as_deref() {
        if use_ != "sig" {
            return Err(format!("`use` is {use_:?}, not \"sig\""));
        }
    }
    if let Some(ops) = &raw.key_ops {
        if !ops.iter().any(|op| op == "verify") {
            return Err("`key_ops` does not include \"verify\"".to_string());
        }
    }
    let kty = raw.kty.as_deref().ok_or("no `kty`")?;
    let (key_type, material) = match kty {
        "RSA" => (KeyType::Rsa, rsa_material(&raw)?),
        "EC" => ec_material(&raw)?,
        "OKP" => okp_material(&raw)?,
        "oct" => return Err("symmetric (`oct`) keys are never accepted from a key set".to_string()),
        other => return Err(format!("unsupported kty {other:?}")),
    };
    let pinned = match raw.alg.as_deref() {
        None => None,
        Some(name) => {
            let alg = Alg::from_name(name).ok_or_else(|| format!("unsupported alg {name:?}"))?;
            if alg.key_type() != key_type {
                return Err(format!("alg {alg} does not fit a {} key", key_type.describe()));
            }
            Some(alg)
        }
    };
    let algs = allowed.iter().filter(|a| a.key_type() == key_type && pinned.is_none_or(|p| p == *a));
    let mut verifiers = Vec::new();
    for alg in algs {
        let parsed = match (key_type, &material) {
            (KeyType::Rsa, Material::Rsa { n, e }) => {
                alg.rsa_parameters().ok_or("internal: RSA parameters missing").and_then(|params| {
                    RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
                        .to_parsed_public_key(params)
                        .map(Verifier::AwsLc)
                        .map_err(|_| "the RSA key is invalid")
                })
            }
            (_, Material::Raw(bytes)) => alg
                .verification()
                .ok_or("internal: no verifier")
                .and_then(|v| ParsedPublicKey::new(v, bytes).map_err(|_| "the public key is invalid"))
                .map(|parsed| match alg {
                    Alg::ES256 => Verifier::RingP256(bytes.clone().into_boxed_slice()),
                    _ => Verifier::AwsLc(parsed),
                }),
            _ => Err("internal: key material mismatch"),
        };
        verifiers.push((alg, parsed.map_err(str::to_string)?));
    }
    if verifiers.is_empty() {
        return Err(format!("no allowed algorithm uses a {} key", key_type.describe()));
    }
    let fingerprint = {
        let mut h = Sha256::new();
        h.update(key_type.describe().as_bytes());
        match &material {
            Material::Rsa { n, e } => {
                h.update((n.len() as u64).to_be_bytes());
                h.update(n);
                h.update(e);
            }
            Material::Raw(bytes) => h.update(bytes),
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    };
    Ok(Key { kid: raw.kid.map(Arc::from), key_type, pinned, fingerprint, verifiers })
}

enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Raw(Vec<u8>),
}

fn b64_field(value: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    let text = value.as_deref().ok_or_else(|| format!("no `{name}`"))?;
    JWK_B64.decode(text).map_err(|_| format!("`{name}` is not base64url"))
}

fn rsa_material(raw: &RawJwk) -> Result<Material, String> {
    let n = strip_leading_zeros(b64_field(&raw.n, "n")?);
    let e = strip_leading_zeros(b64_field(&raw.e, "e")?);
    if n.is_empty() || e.is_empty() {
        return Err("`n` or `e` is zero".to_string());
    }
    let bits = n.len() * 8 - n[0].leading_zeros() as usize;
    if !(2048..=8192).contains(&bits) {
        return Err(format!("the RSA modulus has {bits} bits; 2048 to 8192 are accepted"));
    }
    Ok(Material::Rsa { n, e })
}

/// Some providers encode `n`/`e` with a leading zero byte (a DER habit);
/// aws-lc-rs wants the minimal big-endian form.
fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn ec_material(raw: &RawJwk) -> Result<(KeyType, Material), String> {
    let (key_type, size) = match raw.crv.as_deref() {
        Some("P-256") => (KeyType::P256, 32),
        Some("P-384") => (KeyType::P384, 48),
        Some(other) => return Err(format!("unsupported EC curve {other:?}")),
        None => return Err("no `crv`".to_string()),
    };
    let x = b64_field(&raw.x, "x")?;
    let y = b64_field(&raw.y, "y")?;
    if x.len() != size || y.len() != size {
        return Err(format!("`x`/`y` must be {size} bytes for {}", key_type.describe()));
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok((key_type, Material::Raw(point)))
}

fn okp_material(raw: &RawJwk) -> Result<(KeyType, Material), String> {
    match raw.crv.as_deref() {
        Some("Ed25519") => {}
        Some(other) => return Err(format!("unsupported OKP curve {other:?}")),
        None => return Err("no `crv`".to_string()),
    }
    let x = b64_field(&raw.x, "x")?;
    if x.len() != 32 {
        return Err("`x` must be 32 bytes for Ed25519".to_string());
    }
    Ok((KeyType::Ed25519, Material::Raw(x)))
}

/// Shared-secret keys for HS256/384/512, from `secret`.
pub(crate) struct HmacKeys {
    keys: Vec<(Alg, aws_lc_rs::hmac::Key)>,
}

impl fmt::Debug for HmacKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKeys(<redacted>)")
    }
}

impl HmacKeys {
    pub(crate) fn new(secret: &[u8], allowed: AlgSet) -> HmacKeys {
        use aws_lc_rs::hmac;
        let keys = allowed
            .iter()
            .filter_map(|alg| {
                let algorithm = match alg {
                    Alg::HS256 => hmac::HMAC_SHA256,
                    Alg::HS384 => hmac::HMAC_SHA384,
                    Alg::HS512 => hmac::HMAC_SHA512,
                    _ => return None,
                };
                Some((alg, hmac::Key::new(algorithm, secret)))
            })
            .collect();
        HmacKeys { keys }
    }

    pub(crate) fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        self.keys
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| aws_lc_rs::hmac::verify(key, message, signature).is_ok())
    }
}

/// Decoder for the parts of a token: strict base64url, no padding, no
/// non-canonical trailing bits (which would make signatures malleable).
pub(crate) const TOKEN_B64: GeneralPurpose = general_purpose::URL_SAFE_NO_PAD;

#[cfg(test)]
mod tests;
