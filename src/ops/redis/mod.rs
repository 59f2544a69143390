//! State shared by replicas, in Redis: the revocation list, API keys and
//! their usage (`keys_from: redis`, see [`api_keys`]) and, optionally, the
//! remote-result cache (so an introspection answer one replica fetched
//! serves them all).
//!
//! ```yaml
//! redis:
//!   url: redis://redis.internal:6379/0   # rediss:// for TLS; a password may go in the URL
//!   tls_cafile: redis-ca.pem             # rediss:// only: trust this CA instead of the system's
//!   key_prefix: "tokengate:"             # default
//!   share_results: true                  # default: share positive remote results
//!   connect_timeout: 1s                  # default
//!   command_timeout: 200ms               # default: a slow Redis must not slow authentication much
//!   sync_interval: 250ms                 # default: how often each replica reads new revocations
//!   resync_interval: 5m                  # default: how often each replica reloads the whole list
//!   on_store_error: last_known           # default; or deny (with max_staleness), or allow
//!   # max_staleness: 10s                 # deny only (default 10s): refuse once the copy is this old
//! ```
//!
//! Keys (token material appears only as SHA-256, hex):
//! - `{prefix}result:{scope}:{sha256}`: a principal as JSON, `PX` = the local TTL
//!   (never beyond the token's `exp`); `scope` tells providers apart
//!   ([`tokengate_kit::shared_scope`]);
//! - `{prefix}revoked:iss-jti:{iss}#{jti}`: one issuer's JWT ID (`%` and `#`
//!   in the issuer written `%25` and `%23`, so the first `#` ends it);
//! - `{prefix}revoked:jti:{jti}`: a JWT ID whatever the issuer (the form
//!   before issue #11, still honoured);
//! - `{prefix}revoked:sha256:{sha256}`: a token's digest — for a JWT the
//!   SHA-256 of its signing input `header.payload` (what `revoke --token`
//!   writes; a rewritten ECDSA signature does not change it), for anything
//!   else of the whole token; a whole-token digest of a JWT still matches
//!   that exact token;
//! - `{prefix}revocations:log`, `:seq`, `:epoch`: the change log the
//!   replicas follow (see [`mirror`]).
//!
//! Any value; the key existing revokes (give it a TTL of the token's
//! remaining life, or none). `tokengate revoke` writes them, and logs each
//! write so every replica sees it within `sync_interval`; a key written by
//! hand (`SET`) is seen at the next full reload (`resync_interval`).
//!
//! Revocation checks never wait for Redis: every replica holds the list in
//! memory ([`RevocationMirror`]), loaded whole at start and then kept up to
//! date from the change log. While Redis is down, slow or restarting, the
//! last-known list is enforced — nothing can be revoked meanwhile, since
//! revoking writes to Redis — and valid tokens pass. `on_store_error` says
//! what happens when that copy cannot be trusted:
//! - `last_known` (the default): the copy decides however old it is; a
//!   replica that has never loaded it (started while Redis was away) refuses
//!   tokens as unavailable (503) and is not ready (`/readyz`);
//! - `deny`: as `last_known`, and tokens are also refused (503) once the
//!   copy is older than `max_staleness` (default 10s);
//! - `allow`: the copy decides however old it is, and a replica that never
//!   loaded it lets the local revocation file decide alone.
//!
//! A Redis that comes back *empty* (restarted without persistence, flushed,
//! failed over to a copy that missed writes) does not clear the replicas'
//! lists: each replica keeps what it knew, every entry until its own TTL, and
//! logs an error; a replica started afterwards knows only what Redis holds.
//! Restore Redis's data (persistence, or run the revocations again).
//!
//! The result cache never turns a valid token away: a lookup that fails is a
//! miss (the upstream is asked). Each
//! command is bounded by `command_timeout`; after a connection failure Redis
//! is left alone for [`RETRY_AFTER_FAILURE`], so an outage costs one slow
//! request a second, not every request. Metrics:
//! `tokengate_redis_errors_total{op}` (commands that failed or timed out),
//! `tokengate_redis_fallbacks_total{op}` (lookups answered without Redis,
//! including those skipped while it is down), and the revocation copy's
//! `tokengate_revocation_mirror_age_seconds` (since its last successful read
//! of Redis), `tokengate_revocation_mirror_entries` and
//! `tokengate_revocation_mirror_reloads_total{reason}`. Warnings are logged
//! at most once per [`WARN_INTERVAL`], with the count of those held back.

use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tokengate_api::TokenHash;

use crate::pipeline::revocation::OnStoreError;

#[cfg(feature = "redis")]
pub mod api_keys;
#[cfg(feature = "redis")]
mod limits;
#[cfg(feature = "redis")]
pub mod mirror;
#[cfg(feature = "redis")]
mod revocation_mirror;
#[cfg(feature = "redis")]
mod store;
#[cfg(feature = "redis")]
pub use api_keys::RedisKeyStore;
#[cfg(feature = "redis")]
pub use limits::RedisLimits;
#[cfg(feature = "redis")]
pub use revocation_mirror::RevocationMirror;
#[cfg(feature = "redis")]
pub use store::RedisStore;

/// Counter of failed Redis commands, by `op`.
pub const REDIS_ERRORS_TOTAL: &str = "tokengate_redis_errors_total";
/// Counter of lookups answered without Redis (local state decided), by `op`.
pub const REDIS_FALLBACKS_TOTAL: &str = "tokengate_redis_fallbacks_total";

/// How long Redis is left alone after it could not be reached.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Least time between two warnings about Redis.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// `redis:` in the config.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.
    pub url: String,
    /// PEM CA bundle trusted for `rediss://` instead of the system roots; relative to the config file.
    #[serde(default)]
    pub tls_cafile: Option<PathBuf>,
    /// Prepended to every key, so several deployments can share one Redis (default `tokengate:`).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Share positive remote results (introspection, custom, GitHub, Kubernetes) between replicas (default true).
    #[serde(default = "tokengate_kit::defaults::on")]
    pub share_results: bool,
    /// Time allowed to (re)connect (default 1s).
    #[serde(default = "default_connect_timeout", with = "tokengate_kit::duration")]
    pub connect_timeout: Duration,
    /// Time allowed for one command, after which local state decides (default 200ms).
    #[serde(default = "default_command_timeout", with = "tokengate_kit::duration")]
    pub command_timeout: Duration,
    /// How often each replica reads the revocations written since its last
    /// read (default 250ms): the lag of a revocation, plus one round trip.
    #[serde(default = "default_sync_interval", with = "tokengate_kit::duration")]
    pub sync_interval: Duration,
    /// How often each replica reloads the whole revocation list (default
    /// 5m), which also picks up keys written by hand rather than by `tokengate revoke`.
    #[serde(default = "default_resync_interval", with = "tokengate_kit::duration")]
    pub resync_interval: Duration,
    /// What a revocation check does when the replica's copy of the list
    /// cannot be trusted: `last_known` (default), `deny` or `allow` (see the module docs).
    #[serde(default)]
    pub on_store_error: OnStoreError,
    /// Under `on_store_error: deny`, the age of the copy past which tokens
    /// are refused (default [`DEFAULT_MAX_STALENESS`]).
    #[serde(default, with = "tokengate_kit::duration::option")]
    pub max_staleness: Option<Duration>,
}

/// `max_staleness` when `on_store_error: deny` names none.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(10);

fn default_key_prefix() -> String {
    "tokengate:".to_string()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_command_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_sync_interval() -> Duration {
    Duration::from_millis(250)
}
fn default_resync_interval() -> Duration {
    Duration::from_secs(300)
}

impl RedisConfig {
    /// A config for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            tls_cafile: None,
            key_prefix: default_key_prefix(),
            share_results: true,
            connect_timeout: default_connect_timeout(),
            command_timeout: default_command_timeout(),
            sync_interval: default_sync_interval(),
            resync_interval: default_resync_interval(),
            on_store_error: OnStoreError::default(),
            max_staleness: None,
        }
    }

    /// The age of the revocation copy past which tokens are refused: `None`
    /// unless `on_store_error: deny`.
    pub fn max_staleness(&self) -> Option<Duration> {
        (self.on_store_error == OnStoreError::Deny).then(|| self.max_staleness.unwrap_or(DEFAULT_MAX_STALENESS))
    }
}

impl fmt::Debug for RedisConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted_url(&self.url))
            .field("tls_cafile", &self.tls_cafile)
            .field("key_prefix", &self.key_prefix)
            .field("share_results", &self.share_results)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("sync_interval", &self.sync_interval)
            .field("resync_interval", &self.resync_interval)
            .field("on_store_error", &self.on_store_error)
            .field("max_staleness", &self.max_staleness)
            .finish()
    }
}

/// `scheme://host:port/db` without user or password, for logs, errors and `Debug`.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        // Unparseable text may be anything, a password included: say nothing of it.
        Err(_) => "<unparseable URL>".to_string(),
    }
}

/// What `tokengate revoke` revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeTarget {
    /// A JWT ID: of one issuer, or (`issuer: None`) of every issuer.
    Jti {
        /// The issuer (`iss`) whose token it is; `None` for every issuer.
        issuer: Option<String>,
        /// The JWT ID (`jti`).
        jti: String,
    },
    /// A token digest: for a JWT the SHA-256 of its signing input
    /// ([`crate::pipeline::revocation::revocation_digest`]), else of the whole token.
    TokenSha256(TokenHash),
}

/// An issuer as it appears in a `revoked:iss-jti:` key: `%` and `#` escaped,
/// so the first `#` ends it and no two `(iss, jti)` pairs share a key.
pub fn escaped_issuer(issuer: &str) -> String {
    issuer.replace('%', "%25").replace('#', "%23")
}
