//! The shared revocation list as every replica holds it: a
//! [`SyncedMap`] of the `{prefix}revoked:` keys, each a 33-byte key
//! (a token digest, or the SHA-256 of a JWT ID entry, so long IDs cost no more).

use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokengate_api::TokenHash;

use super::mirror::{MapSpec, SyncedMap};
use super::{escaped_issuer, RedisConfig, RedisStore};
use crate::ops::metrics::{REVOCATION_MIRROR_AGE_SECONDS, REVOCATION_MIRROR_ENTRIES, REVOCATION_MIRROR_RELOADS_TOTAL};
use crate::pipeline::revocation::{RevocationStore, StoreAnswer, TokenIds};

/// One revocation, as the map keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RevokedKey {
    /// `revoked:sha256:{hex}`: a token digest.
    Digest(TokenHash),
    /// `revoked:jti:{jti}`: SHA-256 of the JWT ID, revoked whatever the issuer.
    Jti([u8; 32]),
    /// `revoked:iss-jti:{iss}#{jti}`: SHA-256 of `{escaped iss}#{jti}`.
    IssuerJti([u8; 32]),
}

impl RevokedKey {
    fn jti(jti: &str) -> RevokedKey {
        RevokedKey::Jti(Sha256::digest(jti.as_bytes()).into())
    }

    fn issuer_jti(escaped: &str) -> RevokedKey {
        RevokedKey::IssuerJti(Sha256::digest(escaped.as_bytes()).into())
    }
}

/// The revocation list's place in Redis.
pub(super) struct Revocations;

impl MapSpec for Revocations {
    type Key = RevokedKey;
    type Value = ();
    const NAME: &'static str = "revocations";
    const ENTRIES: &'static str = "revoked:";
    const READS_VALUES: bool = false;
    const AGE_GAUGE: &'static str = REVOCATION_MIRROR_AGE_SECONDS;
    const ENTRIES_GAUGE: &'static str = REVOCATION_MIRROR_ENTRIES;
    const RELOADS_TOTAL: &'static str = REVOCATION_MIRROR_RELOADS_TOTAL;

    fn key(suffix: &str) -> Option<RevokedKey> {
        if let Some(hex_digest) = suffix.strip_prefix("sha256:") {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_digest, &mut digest).ok()?;
            return Some(RevokedKey::Digest(digest));
        }
        if let Some(jti) = suffix.strip_prefix("jti:") {
            return (!jti.is_empty()).then(|| RevokedKey::jti(jti));
        }
        let scoped = suffix.strip_prefix("iss-jti:")?;
        let (issuer, jti) = scoped.split_once('#')?;
        (!issuer.is_empty() && !jti.is_empty()).then(|| RevokedKey::issuer_jti(scoped))
    }

    fn value(_: Option<&[u8]>) -> Option<()> {
        Some(())
    }
}

/// Every [`RevokedKey`] that would revoke the token `ids` describes.
fn keys_of(ids: &TokenIds) -> Vec<RevokedKey> {
    let mut keys = Vec::with_capacity(6);
    // Every spelling of the token (as sent, its identity, the other ECDSA S form, its
    // signing input): a whole-token digest revokes the token's twins too.
    keys.extend(ids.digests().map(|d| RevokedKey::Digest(*d)));
    if let Some(jti) = ids.jti.as_deref() {
        keys.push(RevokedKey::jti(jti));
        if let Some(issuer) = ids.issuer.as_deref() {
            keys.push(RevokedKey::issuer_jti(&format!("{}#{jti}", escaped_issuer(issuer))));
        }
    }
    keys
}

/// This replica's copy of the shared revocation list (see
/// [`super::mirror`]); the [`RevocationStore`] of a pipeline with `redis:`.
pub struct RevocationMirror {
    map: Arc<SyncedMap<Revocations>>,
}

impl std::fmt::Debug for RevocationMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationMirror")
            .field("entries", &self.map.len())
            .field("age", &self.map.age())
            .finish_non_exhaustive()
    }
}

impl RevocationMirror {
    /// A copy following `store` as `config` says (`sync_interval`,
    /// `resync_interval`); it starts loading at once when a tokio runtime runs.
    pub fn new(store: Arc<RedisStore>, config: &RedisConfig) -> Arc<Self> {
        Arc::new(RevocationMirror { map: SyncedMap::new(store, config.sync_interval, config.resync_interval) })
    }

    /// Revocations held (those kept over a Redis that lost its data included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no revocation is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Time since the copy last matched Redis; `None` before the first load.
    pub fn age(&self) -> Option<Duration> {
        self.map.age()
    }
}

#[async_trait::async_trait]
impl RevocationStore for RevocationMirror {
    async fn lookup(&self, token: &TokenIds, first_load: Duration) -> StoreAnswer {
        if !self.map.wait_loaded(first_load).await {
            return StoreAnswer::NeverLoaded { why: self.map.last_failure() };
        }
        if self.map.contains_any(&keys_of(token)) {
            return StoreAnswer::Revoked;
        }
        StoreAnswer::NotRevoked { age: self.map.age().unwrap_or(Duration::MAX) }
    }

    fn is_loaded(&self) -> bool {
        // Asked by readiness checks, which may come before any request.
        self.map.ensure_started();
        self.map.is_loaded()
    }
}
