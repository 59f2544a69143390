//! The store itself: one connection manager, its health, the shared results
//! it serves, and the writes of `tokengate revoke` (replicas read the
//! revocations through [`super::RevocationMirror`]).
//!
//! One file, past 400 lines, because the shared results, the revocation
//! writes and every replica's copy ([`super::mirror`]) run each command
//! through the one connection manager and its health tracking.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokengate_api::{ConfigError, SharedHit, SharedResultStore, SharedResults, TokenHash};

use super::mirror::{write_entry, MapSpec as _};
use super::revocation_mirror::Revocations;
use super::{
    escaped_issuer, redacted_url, RedisConfig, RevokeTarget, REDIS_ERRORS_TOTAL, REDIS_FALLBACKS_TOTAL,
    RETRY_AFTER_FAILURE, WARN_INTERVAL,
};

/// Longest a stored error message gets (Redis replies can be long).
const MAX_ERROR_CHARS: usize = 200;

/// Whether a failure means Redis is unreachable (so back off and reconnect)
/// or only that it refused one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Unreachable,
    Refused,
}

/// Backoff and log rate limiting, shared by every command of one store.
struct Health {
    epoch: Instant,
    /// Milliseconds since `epoch` until which Redis is not tried (0: try).
    skip_until_ms: AtomicU64,
    last_warn_ms: AtomicU64,
    /// Warnings held back since the last one logged.
    held_back: AtomicU64,
    /// Whether the last command failed, so recovery is logged once.
    failing: std::sync::atomic::AtomicBool,
}

impl Health {
    fn new() -> Self {
        Health {
            epoch: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so "never" (0) differs from the first millisecond.
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
    }

    fn backing_off(&self) -> bool {
        self.now_ms() < self.skip_until_ms.load(Ordering::Acquire)
    }

    fn back_off(&self) {
        let until = self.now_ms().saturating_add(RETRY_AFTER_FAILURE.as_millis() as u64);
        self.skip_until_ms.store(until, Ordering::Release);
    }

    /// Whether to log a warning now; the count held back since the last one otherwise.
    fn may_warn(&self) -> Option<u64> {
        let now = self.now_ms();
        let last = self.last_warn_ms.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < WARN_INTERVAL.as_millis() as u64 {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // One winner per interval when many requests fail at once.
        if self.last_warn_ms.compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire).is_err() {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

/// The Redis side of shared state: a [`SharedResultStore`] and a
/// [`RevocationStore`]. Connects lazily, on first use, so a Redis that is down
/// when tokengate starts delays nothing and fails nothing. Cheap to share
/// (hold it in an `Arc`).
pub struct RedisStore {
    client: redis::Client,
    /// Created on first use (it needs a tokio runtime), dropped after a
    /// connection failure so the next try starts afresh.
    connection: Mutex<Option<ConnectionManager>>,
    prefix: String,
    share_results: bool,
    connect_timeout: Duration,
    command_timeout: Duration,
    /// `redis://host:port/db`, without credentials.
    shown: String,
    health: Health,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown)
            .field("key_prefix", &self.prefix)
            .field("share_results", &self.share_results)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Checks `config` and reads `tls_cafile` (relative to `base_dir`, the
    /// config file's directory); no connection is made until the first command.
    /// Errors name the field (relative to `redis`) and never quote the URL.
    pub fn new(config: &RedisConfig, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let url = config.url.trim();
        let parsed = url::Url::parse(url)
            .map_err(|e| ConfigError::new("url", format!("is not a valid URL ({e}); expected redis://host:port/db")))?;
        match parsed.scheme() {
            "redis" | "rediss" => {}
            other => {
                return Err(ConfigError::new(
                    "url",
                    format!("has scheme `{other}`; use redis:// (or rediss:// for TLS)"),
                ))
            }
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::new("url", "has no host"));
        }
        if parsed.scheme() == "rediss" {
            // rustls needs a process-wide crypto provider; install the one the
            // rest of tokengate uses (a no-op when one is already installed).
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        // The redis crate's own message could quote the URL, password and all.
        let unusable =
            |e: redis::RedisError| ConfigError::new("url", format!("is not a usable Redis URL ({})", e.category()));
        let client = match &config.tls_cafile {
            None => redis::Client::open(url).map_err(unusable)?,
            Some(_) if parsed.scheme() != "rediss" => {
                return Err(ConfigError::new("tls_cafile", "applies to rediss:// URLs only"));
            }
            Some(file) => {
                let path = match base_dir {
                    Some(base) if file.is_relative() => base.join(file),
                    _ => file.clone(),
                };
                let pem = std::fs::read(&path)
                    .map_err(|e| ConfigError::new("tls_cafile", format!("cannot read {}: {e}", path.display())))?;
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                redis::Client::build_with_tls(url, certs).map_err(|e| {
                    ConfigError::new(
                        "tls_cafile",
                        format!("{} holds no usable PEM certificate ({})", path.display(), e.category()),
                    )
                })?
            }
        };
        if config.connect_timeout.is_zero() {
            return Err(ConfigError::new("connect_timeout", "must be more than 0"));
        }
        if config.command_timeout.is_zero() {
            return Err(ConfigError::new("command_timeout", "must be more than 0"));
        }
        if config.key_prefix.chars().any(char::is_control) {
            return Err(ConfigError::new("key_prefix", "must not contain control characters"));
        }
        if config.sync_interval.is_zero() {
            return Err(ConfigError::new("sync_interval", "must be more than 0"));
        }
        if config.resync_interval < config.sync_interval {
            return Err(ConfigError::new("resync_interval", "must be at least sync_interval"));
        }
        match (config.max_staleness, config.max_staleness()) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "max_staleness",
                    "applies to on_store_error: deny only; add `on_store_error: deny`, or remove max_staleness",
                ))
            }
            (_, Some(max)) if max <= config.sync_interval => {
                return Err(ConfigError::new(
                    "max_staleness",
                    format!(
                        "must be longer than sync_interval ({}), or every token would be refused between two reads",
                        humantime::format_duration(config.sync_interval)
                    ),
                ))
            }
            _ => {}
        }
        let shown = redacted_url(url);
        if parsed.scheme() == "redis" && parsed.password().is_some() && !is_loopback(&parsed) {
            tracing::warn!(url = %shown, "Redis URL has a password but plain redis://: it crosses the network unencrypted");
        }
        Ok(RedisStore {
            client,
            connection: Mutex::new(None),
            prefix: config.key_prefix.clone(),
            share_results: config.share_results,
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            shown,
            health: Health::new(),
        })
    }

    /// Whether positive remote results are shared through this store.
    pub fn shares_results(&self) -> bool {
        self.share_results
    }

    /// This store as a [`SharedResults`] for [`tokengate_api::BuildContext`].
    pub fn shared_results(self: &Arc<Self>) -> SharedResults {
        SharedResults(self.clone())
    }

    /// `redis://host:port/db`, without credentials.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The key of a shared result.
    pub fn result_key(&self, scope: &str, token: &TokenHash) -> String {
        format!("{}result:{scope}:{}", self.prefix, hex::encode(token))
    }

    /// `key_prefix`.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key whose existence revokes `target`.
    pub fn revocation_key(&self, target: &RevokeTarget) -> String {
        format!("{}{}{}", self.prefix, Revocations::ENTRIES, revocation_suffix(target))
    }

    /// Writes the revocation key for `target` (value: the time of revocation,
    /// Unix seconds), expiring after `ttl` when given, and logs the change so
    /// every replica's copy has it within its `sync_interval`. Bounded by
    /// `timeout` rather than `command_timeout`: an operator at a terminal can wait.
    pub async fn revoke(
        &self,
        target: &RevokeTarget,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> Result<String, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        write_entry::<Revocations>(self, &revocation_suffix(target), now.to_string().as_bytes(), ttl, timeout).await?;
        Ok(self.revocation_key(target))
    }

    /// Runs one command under `command_timeout`; see [`RedisStore::run_with`].
    pub(super) async fn run<T, F, Fut>(&self, op: &'static str, command: F) -> Result<T, String>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.run_with(op, self.command_timeout, command).await
    }

    /// Runs one command: skipped while backing off, bounded by `timeout`,
    /// failures counted, logged (rate-limited) and returned as text.
    pub(super) async fn run_with<T, F, Fut>(&self, op: &'static str, timeout: Duration, command: F) -> Result<T, String>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.health.backing_off() {
            return Err(format!("Redis at {} is unreachable; retrying within {RETRY_AFTER_FAILURE:?}", self.shown));
        }
        let conn = self.connection()?;
        match tokio::time::timeout(timeout, command(conn)).await {
            Ok(Ok(value)) => {
                if self.health.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(url = %self.shown, "Redis answers again");
                }
                Ok(value)
            }
            Ok(Err(e)) => {
                let failure = classify(&e);
                Err(self.failed(op, failure, format!("{}: {}", e.category(), clip(&e.to_string()))))
            }
            Err(_) => Err(self.failed(op, Failure::Unreachable, format!("no answer within {timeout:?}"))),
        }
    }

    fn connection(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.command_timeout))
            // Few, quick retries: while Redis is down, local state answers anyway,
            // and a fresh manager is made after the backoff.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(self.client.clone(), config).map_err(|e| {
            self.failed("connect", Failure::Unreachable, format!("{}: {}", e.category(), clip(&e.to_string())))
        })?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn failed(&self, op: &'static str, failure: Failure, message: String) -> String {
        metrics::counter!(REDIS_ERRORS_TOTAL, "op" => op).increment(1);
        self.health.failing.store(true, Ordering::Release);
        if failure == Failure::Unreachable {
            self.health.back_off();
            // A connection that timed out may be wedged (a half-open socket
            // never errors); the next try after the backoff starts afresh.
            *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        if let Some(held_back) = self.health.may_warn() {
            tracing::warn!(
                url = %self.shown, op, error = %message, similar_warnings_held_back = held_back,
                "Redis command failed; local state decides"
            );
        }
        format!("Redis at {}: {op} failed: {message}", self.shown)
    }

    fn fallback(op: &'static str) {
        metrics::counter!(REDIS_FALLBACKS_TOTAL, "op" => op).increment(1);
    }
}

/// Replies Redis gave (wrong type, no permission…) concern one command;
/// anything else means the connection is not usable.
fn classify(e: &redis::RedisError) -> Failure {
    use redis::ErrorKind;
    match e.kind() {
        ErrorKind::Server(_) | ErrorKind::Parse | ErrorKind::UnexpectedReturnType | ErrorKind::Extension => {
            Failure::Refused
        }
        _ => Failure::Unreachable,
    }
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_ERROR_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_ERROR_CHARS).collect();
    out.push_str("...");
    out
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[async_trait::async_trait]
impl SharedResultStore for RedisStore {
    async fn get(&self, scope: &str, token: &TokenHash) -> Result<Option<SharedHit>, String> {
        let key = self.result_key(scope, token);
        // GET and PTTL in one round trip: the remaining life comes from Redis's
        // clock, so replicas' clock skew cannot stretch an entry past `exp`.
        let answer = self
            .run("result_get", |mut conn| async move {
                redis::pipe().get(&key).pttl(&key).query_async::<(Option<Vec<u8>>, i64)>(&mut conn).await
            })
            .await;
        match answer {
            Ok((Some(value), pttl)) => {
                let ttl = match pttl {
                    // -1: no expiry (written by hand); the reader's `cache.ttl` bounds it.
                    -1 => None,
                    // Expired between GET and PTTL (-2), or about to.
                    ms if ms <= 0 => return Ok(None),
                    ms => Some(Duration::from_millis(ms.unsigned_abs())),
                };
                Ok(Some(SharedHit { value, ttl }))
            }
            Ok((None, _)) => Ok(None),
            Err(e) => {
                Self::fallback("result_get");
                Err(e)
            }
        }
    }

    async fn put(&self, scope: &str, token: &TokenHash, value: Vec<u8>, ttl: Duration) -> Result<(), String> {
        let key = self.result_key(scope, token);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run("result_put", |mut conn| async move {
            redis::cmd("SET").arg(&key).arg(value).arg("PX").arg(ms).query_async::<()>(&mut conn).await
        })
        .await
    }

    async fn remove(&self, scope: &str, token: &TokenHash) -> Result<(), String> {
        let key = self.result_key(scope, token);
        self.run(
            "result_delete",
            |mut conn| async move { redis::cmd("DEL").arg(&key).query_async::<()>(&mut conn).await },
        )
        .await
    }
}

/// Where `target` lives under `{prefix}revoked:`.
fn revocation_suffix(target: &RevokeTarget) -> String {
    match target {
        RevokeTarget::Jti { issuer: None, jti } => format!("jti:{jti}"),
        RevokeTarget::Jti { issuer: Some(iss), jti } => format!("iss-jti:{}#{jti}", escaped_issuer(iss)),
        RevokeTarget::TokenSha256(hash) => format!("sha256:{}", hex::encode(hash)),
    }
}

#[cfg(test)]
mod tests;
