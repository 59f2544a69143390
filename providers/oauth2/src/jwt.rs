//! JWT validation: structure, algorithm, key, signature, then claims.
//!
//! Nothing in the token is trusted before its signature checks out except what
//! is needed to find the key (`alg`, `kid`); `jku`, `x5u`, `x5c` and `jwk`
//! headers are never read, so a token cannot bring its own key. Every
//! rejection says what failed, and never repeats the token.
//!
//! The hot path takes no lock and never awaits: the key set is loaded from an
//! `ArcSwap`, the header is parsed once into borrowed fields, the claims are
//! parsed once into a [`JsonRef`] borrowed from the decoded payload (no copy
//! of a string without escapes) that serves both the checks and the claims
//! mapping, and verified tokens are remembered in a sharded
//! `quick_cache` keyed by the token's identity (`tokengate_kit::identity`:
//! the SHA-256 of its canonical form, so an ECDSA token and its high-S twin
//! share one entry) — from their second verification on, so that a token
//! used once costs no cache insert (see `VerifiedCache::admit`).
//!
//! One file, past 400 lines, because the checks run in one order on one parsed
//! token (structure, algorithm, key, signature, claims) and each refusal's
//! wording depends on the steps before it; keys and algorithms are `keys`'s and
//! `alg`'s.

use crate::alg::{Alg, AlgSet};
use crate::keys::{HmacKeys, Key, KeyMap, Mismatch, Pick, TOKEN_B64};
use crate::keyset::{KeySet, State, Why};
use crate::text::{list, quoted, rfc3339};
use base64::Engine as _;
use serde::de::Deserializer;
use serde::Deserialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokengate_api::{
    claim_at_path, AuthError, ClaimValue, ClaimsMapping, JsonRef, JsonStr, Principal, Reason, TokenHash, Trace,
};
use tokengate_kit::{identify, Identity};

/// What the claims must satisfy, compiled from the config.
#[derive(Debug)]
pub(crate) struct ClaimRules {
    pub(crate) issuer: Option<String>,
    /// `None` only with `allow_any_audience`.
    pub(crate) audiences: Option<Vec<String>>,
    pub(crate) leeway: f64,
    pub(crate) allow_missing_exp: bool,
    pub(crate) principal_claim: String,
    pub(crate) tenant_claim: Option<String>,
    pub(crate) claims_mapping: ClaimsMapping,
}

pub(crate) enum KeySource {
    Secret(HmacKeys),
    Remote(Arc<KeySet>),
}

pub(crate) struct JwtValidator {
    pub(crate) rules: ClaimRules,
    pub(crate) allowed: AlgSet,
    pub(crate) max_token_bytes: usize,
    pub(crate) keys: KeySource,
    pub(crate) cache: Option<VerifiedCache>,
    /// `require_low_s`: refuse ECDSA signatures with s > n/2 (see `tokengate_kit::ecdsa`).
    pub(crate) require_low_s: bool,
}

enum Step {
    Done(Result<Principal, AuthError>),
    Refresh(Why, u64),
}

impl JwtValidator {
    /// Validates `token`, recording each check in `trace` when it is on.
    pub(crate) async fn validate(&self, token: &str, trace: &Trace) -> Result<Principal, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(trace.failed(
                "token",
                AuthError::invalid_token(format!(
                    "token is {} bytes, more than the {}-byte limit (max_token_bytes)",
                    token.len(),
                    self.max_token_bytes
                ))
                .because(Reason::Malformed),
            ));
        }
        let now = unix_now();
        // A traced validation must make every check, not answer from memory.
        let hash = self
            .cache
            .as_ref()
            .filter(|_| !trace.is_on())
            .and_then(|_| cache_key(&identify(token), self.require_low_s));
        match &self.keys {
            KeySource::Secret(hmac) => self.validate_with_secret(hmac, token, hash.as_ref(), now, trace),
            KeySource::Remote(set) => {
                let mark = trace.mark();
                let first = {
                    let state = set.state();
                    self.step(set, &state, token, hash.as_ref(), now, true, trace)
                };
                let (why, observed) = match first {
                    Step::Done(result) => return result,
                    Step::Refresh(why, observed) => (why, observed),
                };
                // The checks of a pass that ends in a refresh are made again after it.
                trace.rewind(mark);
                // Boxed: the fetch future (reqwest and all) is kilobytes, and
                // held inline it would make every call's future that big, so
                // the hot path would pay a large allocation for a fetch it
                // almost never makes.
                let state = Box::pin(set.refresh(why, observed)).await;
                match self.step(set, &state, token, hash.as_ref(), unix_now(), false, trace) {
                    Step::Done(result) => result,
                    Step::Refresh(..) => Err(trace.failed("key", set.unavailable(&state))),
                }
            }
        }
    }

    /// Forces a first fetch if no keys are usable; for start-up and readiness checks.
    pub(crate) async fn warm_up(&self) -> Result<(), AuthError> {
        let KeySource::Remote(set) = &self.keys else {
            return Ok(());
        };
        let (usable, attempts) = {
            let state = set.state();
            (state.usable_keys(Instant::now()).is_some(), state.attempts)
        };
        if usable {
            return Ok(());
        }
        let state = set.refresh(Why::Missing, attempts).await;
        match state.usable_keys(Instant::now()) {
            Some(_) => Ok(()),
            None => Err(set.unavailable(&state)),
        }
    }

    fn validate_with_secret(
        &self,
        hmac: &HmacKeys,
        token: &str,
        hash: Option<&TokenHash>,
        now: f64,
        trace: &Trace,
    ) -> Result<Principal, AuthError> {
        if let Some(principal) = self.cached(hash, now, None) {
            return Ok(principal);
        }
        let parsed = parse(token, self.allowed, false, trace)?;
        trace.check("key", true, || "the configured shared secret".to_string());
        let mut buf = [0u8; SIGNATURE_BUF];
        let signature = decode_signature(parsed.signature, &mut buf).map_err(|e| trace.failed("signature", e))?;
        if !hmac.verify(parsed.alg, parsed.signing_input, signature) {
            return Err(trace.failed(
                "signature",
                AuthError::invalid_token(format!("signature invalid (alg {})", parsed.alg)).because(Reason::Signature),
            ));
        }
        trace.check("signature", true, || "verified".to_string());
        self.finish(parsed.payload, now, hash, None, 0, trace)
    }

    /// One pass over the current key set. `may_refresh` is false on the pass
    /// after a refresh, so a request waits for at most one fetch.
    #[allow(clippy::too_many_arguments)] // the hot path's state, passed rather than bundled per call
    fn step(
        &self,
        set: &Arc<KeySet>,
        state: &State,
        token: &str,
        hash: Option<&TokenHash>,
        now: f64,
        may_refresh: bool,
        trace: &Trace,
    ) -> Step {
        let clock = Instant::now();
        let keys = state.usable_keys(clock);
        if keys.is_some() {
            if let Some(principal) = self.cached(hash, now, keys) {
                return Step::Done(Ok(principal));
            }
        }
        let parsed = match parse(token, self.allowed, true, trace) {
            Ok(parsed) => parsed,
            Err(e) => return Step::Done(Err(e)),
        };
        let Some(keys) = keys else {
            if may_refresh && set.may_fetch_missing(state, clock) {
                return Step::Refresh(Why::Missing, state.attempts);
            }
            return Step::Done(Err(trace.failed("key", set.unavailable(state))));
        };
        if may_refresh {
            set.refresh_in_background_if_due(state, clock);
        }
        let kid = parsed.kid.as_deref();
        let mismatch = match keys.pick(kid, parsed.alg) {
            Pick::Keys(candidates) => return Step::Done(self.verify_with(candidates, &parsed, now, hash, trace)),
            Pick::UnknownKid => {
                if may_refresh && set.may_force(state, clock) {
                    return Step::Refresh(Why::UnknownKid, state.attempts);
                }
                let kid = quoted(kid.unwrap_or_default());
                return Step::Done(
                    Err(match &state.last_error {
                        Some(error) => AuthError::unavailable(format!(
                            "key id {kid} is not among the cached keys and the key set cannot be refreshed: {error}"
                        )),
                        None => AuthError::invalid_token(format!("unknown key id {kid}")).because(Reason::Key),
                    })
                    .map_err(|e| trace.failed("key", e)),
                );
            }
            Pick::Mismatch(key, Mismatch::KeyType(key_type)) => {
                format!("alg {} does not match key type {} of {}", parsed.alg, key_type.describe(), key.describe())
            }
            Pick::Mismatch(key, Mismatch::Pinned(pinned)) => {
                format!("alg {} does not match {}, which the key set restricts to {pinned}", parsed.alg, key.describe())
            }
            Pick::NoKidAmbiguous(0) => format!("token has no kid and the key set has no key for alg {}", parsed.alg),
            Pick::NoKidAmbiguous(n) => {
                format!(
                    "token has no kid and {n} keys in the key set fit alg {}; a kid is required to choose",
                    parsed.alg
                )
            }
        };
        Step::Done(Err(trace.failed("key", AuthError::invalid_token(mismatch).because(Reason::Key))))
    }

    fn verify_with(
        &self,
        candidates: &[Arc<Key>],
        parsed: &Parsed<'_>,
        now: f64,
        hash: Option<&TokenHash>,
        trace: &Trace,
    ) -> Result<Principal, AuthError> {
        let mut buf = [0u8; SIGNATURE_BUF];
        let signature = decode_signature(parsed.signature, &mut buf).map_err(|e| trace.failed("signature", e))?;
        let mut fitting = candidates.iter().filter(|k| k.check(parsed.alg).is_ok());
        let signer = fitting.clone().find(|key| key.verify(parsed.alg, parsed.signing_input, signature));
        let Some(signer) = signer else {
            let key = fitting.next().map(|k| k.describe()).unwrap_or_default();
            if candidates.iter().all(|k| !k.can_verify(parsed.alg)) {
                let e = AuthError::invalid_token(format!("alg {} is not allowed for {key}", parsed.alg));
                return Err(trace.failed("key", e.because(Reason::Key)));
            }
            let e = AuthError::invalid_token(format!("signature invalid (alg {}, {key})", parsed.alg));
            return Err(trace.failed("signature", e.because(Reason::Signature)));
        };
        trace
            .check("key", true, || format!("found in the key set (kid {})", parsed.kid.as_deref().unwrap_or("(none)")));
        // Checked only once the signature verified, so forgeries keep the plain
        // "signature invalid" and only a genuine-but-malleable one is named.
        if matches!(parsed.alg, Alg::ES256 | Alg::ES384) && self.require_low_s && crate::ecdsa::is_high_s(signature) {
            let e = AuthError::invalid_token(format!(
                "signature invalid: high-S ECDSA signature (alg {}, {}); this provider accepts only the low-S form \
                 (s <= n/2) because require_low_s is true; remove it for an issuer that does not normalize S",
                parsed.alg,
                signer.describe()
            ));
            return Err(trace.failed("signature", e.because(Reason::Signature)));
        }
        trace.check("signature", true, || "verified".to_string());
        self.finish(parsed.payload, now, hash, signer.kid.clone(), signer.fingerprint, trace)
    }

    /// Claims checks, principal, and remembering the verdict.
    fn finish(
        &self,
        payload: &str,
        now: f64,
        hash: Option<&TokenHash>,
        kid: Option<Arc<str>>,
        fingerprint: u64,
        trace: &Trace,
    ) -> Result<Principal, AuthError> {
        let mut stack = [0u8; PAYLOAD_STACK_BYTES];
        let mut heap = Vec::new();
        let claims = read_claims(payload, &mut stack, &mut heap).map_err(|e| trace.failed("payload", e))?;
        let valid_until = check_claims(&claims, &self.rules, now, trace)?;
        let principal = principal_from(&claims, &self.rules, trace)?;
        if let (Some(cache), Some(hash)) = (&self.cache, hash) {
            if cache.admit(hash) {
                cache.insert(*hash, principal.clone(), valid_until.min(now + cache.ttl), kid, fingerprint);
            }
        }
        Ok(principal)
    }

    /// A remembered verdict, if it still holds: not past the token's `exp`
    /// (nor the cache TTL), and signed by a key that is still in the set.
    fn cached(&self, hash: Option<&TokenHash>, now: f64, keys: Option<&KeyMap>) -> Option<Principal> {
        let (cache, hash) = (self.cache.as_ref()?, hash?);
        let entry = cache.entries.get(hash)?;
        let key_present = keys.is_none_or(|keys| keys.still_has(entry.kid.as_deref(), entry.fingerprint));
        if now > entry.until || !key_present {
            cache.entries.remove(hash);
            return None;
        }
        Some(entry.principal.clone())
    }
}

/// Where the verdict for a token of this identity is remembered; `None` when
/// the token as sent is one the verifier refuses although its canonical twin
/// passes (a padded or otherwise re-encoded signature, or high-S under
/// `require_low_s`): a cache hit must never accept what verifying refuses, so
/// such a token is verified (and refused) every time.
fn cache_key(identity: &Identity, require_low_s: bool) -> Option<TokenHash> {
    let refused_as_sent = identity.signature_reencoded() || (require_low_s && identity.high_s());
    (!refused_as_sent).then(|| identity.digest())
}

/// Verified tokens, by identity (`tokengate_kit::token_identity`).
pub(crate) struct VerifiedCache {
    entries: quick_cache::sync::Cache<TokenHash, Arc<CacheEntry>>,
    /// Doorkeeper: a direct-mapped table of tags of tokens verified once.
    seen: Box<[AtomicU64]>,
    ttl: f64,
}

struct CacheEntry {
    principal: Principal,
    /// Unix time after which the entry must not be used (`exp` + leeway, or the TTL).
    until: f64,
    kid: Option<Arc<str>>,
    fingerprint: u64,
}

/// Doorkeeper slots: one per cache entry (rounded up to a power of two),
/// within 1 Ki..=128 Ki (8 KiB..=1 MiB).
const SEEN_SLOTS: (usize, usize) = (1 << 10, 1 << 17);

impl VerifiedCache {
    pub(crate) fn new(max_entries: u64, ttl: std::time::Duration) -> VerifiedCache {
        let capacity = usize::try_from(max_entries).unwrap_or(usize::MAX).max(1);
        let slots = capacity.clamp(SEEN_SLOTS.0, SEEN_SLOTS.1).next_power_of_two();
        VerifiedCache {
            entries: quick_cache::sync::Cache::new(capacity),
            seen: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            ttl: ttl.as_secs_f64(),
        }
    }

    /// Whether a just-verified token should be cached: true when it was
    /// verified before (recently enough that no other token took its slot).
    ///
    /// Caching a verdict costs more than looking it up (a copy of the
    /// principal, the insert, and evicting an older entry, whose memory is
    /// cold by then): worth it for a token that comes back, pure overhead for
    /// one that does not. A token's first verification only records a 64-bit
    /// tag of its hash; the second caches it, and every later use is a hit.
    /// A reused token thus costs one extra verification over its lifetime,
    /// while tokens seen once (and floods of them) neither pay for the cache
    /// nor evict the tokens that do come back. Relaxed atomics suffice: a lost
    /// race only means one more verification.
    fn admit(&self, hash: &TokenHash) -> bool {
        let word = |i: usize| u64::from_le_bytes(hash[i..i + 8].try_into().unwrap_or_default());
        let slot = &self.seen[word(0) as usize & (self.seen.len() - 1)];
        let tag = word(8) | 1; // never 0, the empty slot
        if slot.load(Ordering::Relaxed) == tag {
            return true;
        }
        slot.store(tag, Ordering::Relaxed);
        false
    }

    fn insert(&self, hash: TokenHash, principal: Principal, until: f64, kid: Option<Arc<str>>, fingerprint: u64) {
        self.entries.insert(hash, Arc::new(CacheEntry { principal, until, kid, fingerprint }));
    }
}

/// Largest signature accepted: an RSA-8192 signature is 1024 bytes; the buffer
/// leaves room for base64's length estimate.
const SIGNATURE_BUF: usize = 1032;

/// The parts of a token that were checked to be well-formed.
#[derive(Debug)]
pub(crate) struct Parsed<'t> {
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    /// `header.payload`: the bytes the signature covers.
    pub(crate) signing_input: &'t [u8],
    pub(crate) payload: &'t str,
    pub(crate) signature: &'t str,
}

/// The header fields tokengate reads. Duplicate `alg`/`kid` members are an
/// error (serde rejects duplicate fields), closing the door on parsers that
/// disagree about which one counts.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    alg: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    kid: Option<JsonStr<'a>>,
    /// Any `crit` member counts, even `null`: we understand no extension.
    #[serde(default, deserialize_with = "present")]
    crit: Option<Value>,
    /// `cty: JWT` announces a nested JWT (RFC 7519 §5.2), which is refused.
    #[serde(borrow, default)]
    cty: Option<JsonStr<'a>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn malformed(what: &str) -> AuthError {
    AuthError::invalid_token(format!("malformed JWT: {what}")).because(Reason::Malformed)
}

/// Splits a compact JWS into its three parts.
fn split(token: &str) -> Result<(&str, &str, &str), AuthError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => {
            let count = token.split('.').count();
            if count == 5 {
                Err(AuthError::invalid_token(
                    "JWE (encrypted JWT) is not supported; expected a signed JWT with 3 segments",
                )
                .because(Reason::Malformed))
            } else {
                Err(malformed(&format!("expected 3 dot-separated segments, found {count}")))
            }
        }
    }
}

/// Decodes a base64url part into `stack` when it fits, else onto the heap.
fn decode_part<'b>(part: &str, stack: &'b mut [u8], heap: &'b mut Vec<u8>) -> Option<&'b [u8]> {
    if base64::decoded_len_estimate(part.len()) <= stack.len() {
        let n = TOKEN_B64.decode_slice(part, stack).ok()?;
        Some(&stack[..n])
    } else {
        *heap = TOKEN_B64.decode(part).ok()?;
        Some(heap.as_slice())
    }
}

fn is_json_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Checks structure, header and algorithm. `public_keys` is true when keys
/// come from a key set, where a shared-secret algorithm is key confusion.
pub(crate) fn parse<'t>(
    token: &'t str,
    allowed: AlgSet,
    public_keys: bool,
    trace: &Trace,
) -> Result<Parsed<'t>, AuthError> {
    let parsed = parse_untraced(token, allowed, public_keys).map_err(|e| trace.failed("token", e))?;
    if trace.is_on() {
        trace.check("segments", true, || "three base64url segments: header.payload.signature".to_string());
        trace.check("header", true, || {
            let mut header = format!("alg {}", parsed.alg);
            if let Some(kid) = &parsed.kid {
                header.push_str(&format!(", kid {kid}"));
            }
            header
        });
        // Decoded again by the validation proper, after the signature: here
        // only to show the claims in the order a reader expects.
        let mut stack = [0u8; PAYLOAD_STACK_BYTES];
        let mut heap = Vec::new();
        match read_claims(parsed.payload, &mut stack, &mut heap) {
            Ok(JsonRef::Object(claims)) => trace.check("payload", true, || {
                let names: Vec<&str> = claims.iter().map(|(name, _)| name.as_ref()).collect();
                format!("a JSON object with claims {}", names.join(", "))
            }),
            Ok(_) | Err(_) => trace.check("payload", false, || "the payload is not a base64url JSON object".into()),
        }
    }
    Ok(parsed)
}

fn parse_untraced(token: &str, allowed: AlgSet, public_keys: bool) -> Result<Parsed<'_>, AuthError> {
    let (header, payload, signature) = split(token)?;
    if header.is_empty() || payload.is_empty() {
        return Err(malformed("empty header or payload segment"));
    }
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let bytes = decode_part(header, &mut stack, &mut heap).ok_or_else(|| malformed("the header is not base64url"))?;
    if !is_json_object(bytes) {
        return Err(malformed("the header is not a JSON object"));
    }
    let raw: RawHeader<'_> = serde_json::from_slice(bytes)
        .map_err(|e| malformed(&format!("the header is not valid JSON ({})", e.classify_text())))?;
    let Some(JsonStr(alg_name)) = raw.alg else {
        return Err(AuthError::invalid_token("the JWT header has no alg").because(Reason::Algorithm));
    };
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(AuthError::invalid_token(format!(
            "alg {} (an unsigned token) is never accepted",
            quoted(&alg_name)
        ))
        .because(Reason::Algorithm));
    }
    let Some(alg) = Alg::from_name(&alg_name) else {
        return Err(
            AuthError::invalid_token(format!("unsupported alg {}", quoted(&alg_name))).because(Reason::Algorithm)
        );
    };
    if alg.is_hmac() && public_keys {
        return Err(AuthError::invalid_token(format!(
            "alg {alg} is a shared-secret algorithm, refused because this provider verifies with a public key set (key confusion)"
        )).because(Reason::Algorithm));
    }
    if !allowed.contains(alg) {
        return Err(AuthError::invalid_token(format!("alg {alg} is not allowed (allowed: {})", allowed.describe()))
            .because(Reason::Algorithm));
    }
    if let Some(crit) = raw.crit {
        let listed = match &crit {
            Value::Array(items) => items.iter().filter_map(Value::as_str).map(quoted).collect::<Vec<_>>().join(", "),
            _ => String::new(),
        };
        return Err(AuthError::invalid_token(format!(
            "the JWT header marks extensions as critical ([{listed}]) and tokengate supports none"
        ))
        .because(Reason::Malformed));
    }
    if let Some(JsonStr(cty)) = &raw.cty {
        // RFC 7519 §5.2: "JWT" (media types are case-insensitive, and may carry the "application/" prefix).
        let media = cty.trim().to_ascii_lowercase();
        if media == "jwt" || media == "application/jwt" {
            return Err(AuthError::invalid_token(
                "nested JWTs (cty \"JWT\") are not accepted; send the inner token itself",
            )
            .because(Reason::Malformed));
        }
    }
    if signature.is_empty() {
        return Err(AuthError::invalid_token("the token has no signature").because(Reason::Malformed));
    }
    Ok(Parsed {
        alg,
        kid: raw.kid.map(|JsonStr(k)| k.into_owned()),
        signing_input: &token.as_bytes()[..header.len() + 1 + payload.len()],
        payload,
        signature,
    })
}

trait ClassifyText {
    fn classify_text(&self) -> &'static str;
}

impl ClassifyText for serde_json::Error {
    /// The category only: serde's full message can quote parts of the token.
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected or duplicate member",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

fn decode_signature<'b>(signature: &str, buf: &'b mut [u8; SIGNATURE_BUF]) -> Result<&'b [u8], AuthError> {
    if base64::decoded_len_estimate(signature.len()) > buf.len() {
        return Err(AuthError::invalid_token("signature invalid (longer than any supported key produces)")
            .because(Reason::Signature));
    }
    let n = TOKEN_B64.decode_slice(signature, buf).map_err(|_| malformed("the signature is not base64url"))?;
    Ok(&buf[..n])
}

/// Payloads up to this size (decoded) are read from the stack: most tokens
/// are well under it, and a heap buffer per validation was one more
/// allocation on every cache miss.
const PAYLOAD_STACK_BYTES: usize = 1024;

/// The claims of `payload`, decoded into `stack` (or `heap` when larger) and
/// borrowed from there. A member written twice in any object is refused
/// ([`JsonRef`]).
fn read_claims<'b>(payload: &str, stack: &'b mut [u8], heap: &'b mut Vec<u8>) -> Result<JsonRef<'b>, AuthError> {
    let bytes = decode_part(payload, stack, heap).ok_or_else(|| malformed("the payload is not base64url"))?;
    if !is_json_object(bytes) {
        return Err(malformed("the payload is not a JSON object"));
    }
    // Checked as UTF-8 once, whole (a word at a time while it is ASCII),
    // instead of string by string as `from_slice` does. Not UTF-8 goes to
    // `from_slice` all the same, so a refusal keeps its wording.
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<JsonRef<'b>>(text),
        Err(_) => serde_json::from_slice::<JsonRef<'b>>(bytes),
    };
    parsed.map_err(|e| malformed(&format!("the payload is not valid JSON ({})", e.classify_text())))
}

/// [`read_claims`] into a `Value`, for tests to compare with serde_json's own reading.
#[cfg(test)]
fn decode_claims(payload: &str) -> Result<Value, AuthError> {
    let mut stack = [0u8; PAYLOAD_STACK_BYTES];
    let mut heap = Vec::new();
    read_claims(payload, &mut stack, &mut heap).map(|claims| claims.to_value())
}

/// Checks time, issuer and audience claims; returns the Unix time until which
/// the token stays valid (for the verified-token cache). Each claim's result
/// goes to `trace` when it is on.
pub(crate) fn check_claims(
    claims: &JsonRef<'_>,
    rules: &ClaimRules,
    now: f64,
    trace: &Trace,
) -> Result<f64, AuthError> {
    if claims.members().is_none() {
        return Err(trace.failed("payload", malformed("the payload is not a JSON object")));
    }
    let leeway = rules.leeway;
    let refuse = |claim: &'static str, detail: String| {
        trace.failed(claim, AuthError::invalid_token(detail).because(Reason::claim(claim)))
    };
    let valid_until = match numeric(claims, "exp").map_err(|d| refuse("exp", d))? {
        Some(exp) if now > exp + leeway => {
            trace.check("exp", false, || {
                format!("expired at {} ({} ago; leeway {leeway}s)", rfc3339(exp), ago(now - exp))
            });
            let e = AuthError::invalid_token(format!("token expired at {}", rfc3339(exp)));
            return Err(e.because(Reason::claim("exp")));
        }
        Some(exp) => {
            trace.check("exp", true, || format!("expires at {} (in {})", rfc3339(exp), ago(exp - now)));
            exp + leeway
        }
        None if rules.allow_missing_exp => {
            trace.check("exp", true, || "no exp claim (allowed by allow_missing_exp)".to_string());
            f64::INFINITY
        }
        None => {
            let detail = "token has no exp claim; tokens that never expire are refused unless the provider sets allow_missing_exp: true";
            return Err(refuse("exp", detail.to_string()));
        }
    };
    if let Some(nbf) = numeric(claims, "nbf").map_err(|d| refuse("nbf", d))? {
        if nbf > now + leeway {
            return Err(refuse("nbf", format!("token not valid before {}", rfc3339(nbf))));
        }
        trace.check("nbf", true, || format!("valid since {}", rfc3339(nbf)));
    }
    if let Some(iat) = numeric(claims, "iat").map_err(|d| refuse("iat", d))? {
        if iat > now + leeway {
            return Err(refuse("iat", format!("token issued in the future (iat {})", rfc3339(iat))));
        }
        trace.check("iat", true, || format!("issued at {}", rfc3339(iat)));
    }
    match (&rules.issuer, claims.member("iss")) {
        (None, got) => trace.check("iss", true, || match got {
            Some(JsonRef::String(iss)) => format!("{iss} (no issuer configured; not checked)"),
            _ => "no issuer configured; not checked".to_string(),
        }),
        (Some(expected), Some(JsonRef::String(got))) if got == expected => {
            trace.check("iss", true, || format!("{got} as configured"))
        }
        (Some(expected), Some(JsonRef::String(got))) => {
            return Err(refuse("iss", format!("issuer {} is not the expected {}", quoted(got), quoted(expected))))
        }
        (Some(_), Some(_)) => return Err(refuse("iss", "the iss claim is not a string".to_string())),
        (Some(expected), None) => {
            return Err(refuse("iss", format!("token has no iss claim (expected {})", quoted(expected))))
        }
    }
    let Some(expected) = &rules.audiences else {
        trace.check("aud", true, || "allow_any_audience: not checked".to_string());
        return Ok(valid_until);
    };
    let matches = |s: &str| expected.iter().any(|e| e == s);
    let wanted = || list(expected.iter().map(String::as_str));
    let found = match claims.member("aud") {
        Some(JsonRef::String(aud)) if matches(aud) => aud.as_ref(),
        Some(JsonRef::Array(items)) if items.iter().any(|i| i.as_str().is_some_and(matches)) => {
            items.iter().filter_map(JsonRef::as_str).find(|a| matches(a)).unwrap_or_default()
        }
        Some(JsonRef::String(aud)) => {
            return Err(refuse("aud", format!("audience {} is not one of {}", list([aud.as_ref()]), wanted())))
        }
        Some(JsonRef::Array(items)) => {
            let got = list(items.iter().filter_map(JsonRef::as_str));
            return Err(refuse("aud", format!("audience {got} is not one of {}", wanted())));
        }
        Some(_) => return Err(refuse("aud", "the aud claim is neither a string nor a list of strings".to_string())),
        None => return Err(refuse("aud", format!("token has no aud claim (expected one of {})", wanted()))),
    };
    trace.check("aud", true, || format!("{found} is one of [{}]", expected.join(", ")));
    Ok(valid_until)
}

/// A span of seconds for humans (`1h 5m`).
fn ago(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.abs().round().min(u64::MAX as f64) as u64 } else { 0 };
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

fn numeric(claims: &JsonRef<'_>, name: &str) -> Result<Option<f64>, String> {
    match claims.member(name) {
        None => Ok(None),
        Some(JsonRef::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(format!("the {name} claim is not a usable number")),
        },
        Some(_) => Err(format!("the {name} claim is not a number")),
    }
}

pub(crate) fn principal_from(claims: &JsonRef<'_>, rules: &ClaimRules, trace: &Trace) -> Result<Principal, AuthError> {
    let claim = rules.principal_claim.as_str();
    let value = match claims.member(claim) {
        Some(v) => Some(v),
        None if claim.contains('.') => claim_at_path(claims, claim),
        None => None,
    };
    let name = match value {
        Some(JsonRef::String(s)) if !s.is_empty() => s.to_string(),
        Some(JsonRef::Number(n)) => n.to_string(),
        Some(_) => {
            let detail = format!("the {} claim cannot name the principal (not a non-empty string)", quoted(claim));
            return Err(trace.failed("principal", AuthError::invalid_token(detail).because(Reason::Principal)));
        }
        None => {
            let detail = format!("token has no {} claim to name the principal", quoted(claim));
            return Err(trace.failed("principal", AuthError::invalid_token(detail).because(Reason::Principal)));
        }
    };
    trace.check("principal", true, || format!("{name} (claim {claim})"));
    let tenant = match &rules.tenant_claim {
        Some(claim) => {
            let tenant = tokengate_api::tenant_from(claims, claim, &format!("claim {}", quoted(claim)))
                .map_err(|e| trace.failed("tenant", e))?;
            trace.check("tenant", true, || match &tenant {
                Some(t) => format!("{t} (claim {claim})"),
                None => format!("no {claim} claim: no tenant"),
            });
            tenant
        }
        None => None,
    };
    if trace.is_on() {
        rules.claims_mapping.apply_traced(claims, |attribute, value, claim| {
            trace.attribute(attribute, value, Some(claim), || format!("claims_mapping: {claim} -> {attribute}"))
        });
    }
    Ok(Principal::new(name).with_attributes(rules.claims_mapping.apply(claims)).with_tenant(tenant))
}

/// What `ownership` needs: is it a JWT, and which `iss` does it claim (unverified).
pub(crate) fn peek(token: &str, max_token_bytes: usize) -> Option<Option<String>> {
    let (header, payload, _) = split(token).ok()?;
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let bytes = decode_part(header, &mut stack, &mut heap)?;
    if !is_json_object(bytes) || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
        return None;
    }
    if token.len() > max_token_bytes {
        // Shaped like a JWT: ours to reject as too large, without decoding more.
        return Some(None);
    }
    #[derive(Deserialize)]
    struct Iss<'a> {
        #[serde(borrow, default)]
        iss: Option<JsonStr<'a>>,
    }
    let claims = TOKEN_B64.decode(payload).ok();
    let iss = claims
        .as_deref()
        .filter(|b| is_json_object(b))
        .and_then(|b| serde_json::from_slice::<Iss<'_>>(b).ok())
        .and_then(|i| i.iss.map(|JsonStr(s)| s.into_owned()));
    Some(iss)
}

/// Seconds since the Unix epoch; a clock before 1970 reads as 0.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The reading of payloads before [`JsonRef`] (a `Value` refusing repeated
/// members), kept as the reference the new reading is held to.
#[cfg(test)]
mod strict;

#[cfg(test)]
mod tests;
