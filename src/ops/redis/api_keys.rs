//! API keys shared by every replica (`keys_from: redis` of the `api_key`
//! provider): a second [`SyncedMap`], beside the revocation list, and the
//! per-key usage every replica adds to.
//!
//! Keys (after `key_prefix`):
//! - `api-key:{sha256 hex}`: one key's entry, as JSON (the `KeyEntry` of a
//!   key file: its hash and metadata, never the key), without TTL — a key's
//!   end is its `expires_at`, and a revoked key's record stays for the
//!   inventory;
//! - `api-keys:log`, `:seq`, `:epoch`: the change log replicas follow
//!   ([`super::mirror`]); `tokengate key new | rotate | suspend | resume |
//!   revoke --config` writes an entry and its log record in one script, so
//!   every replica has the change within `sync_interval` (plus a round trip);
//! - `api-key-usage:{id}`: a hash, `last_used` (Unix seconds) and
//!   `day:YYYY-MM-DD` → requests that UTC day, the last
//!   [`USAGE_DAYS_KEPT`] days. Each replica counts in memory and adds its
//!   counts every `usage_flush_interval`, one pipeline for all its keys.
//!
//! A replica whose Redis goes away keeps deciding with the keys it last
//! loaded (a key suspended meanwhile cannot be, since suspending writes to
//! Redis); one that never loaded them refuses the keys it does not hold
//! inline as unavailable (503) and is not ready (`/readyz`), as
//! `on_store_error: last_known` does for revocations. Under
//! `on_store_error: deny`, shared keys are also refused (503) once the copy
//! is older than `max_staleness`; `allow` is `last_known` here (an unknown
//! key cannot be let in). A Redis that comes back
//! empty leaves every replica the entries it knew (logged as an error).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokengate_api::{KeyUse, SharedKeyStore, SharedKeys, TokenHash};
use tokengate_api_key::usage::{day_name, KeyUsage, UsageFile, USAGE_DAYS_KEPT};
use tokengate_api_key::KeyEntry;

use super::mirror::{glob_literal, write_entry, MapSpec, SyncedMap};
use super::{RedisConfig, RedisStore};
use crate::ops::metrics::{API_KEY_MIRROR_AGE_SECONDS, API_KEY_MIRROR_ENTRIES, API_KEY_MIRROR_RELOADS_TOTAL};

/// The longest a request waits for the first load of the keys (then: 503 until loaded).
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(5);
/// Keys read per round trip by `tokengate key` commands.
const READ_BATCH: usize = 500;

/// Adds one key's counts: `last_used` only ever moves forward; days older
/// than ARGV[2] are dropped.
const USAGE_SCRIPT: &str = r#"
local known = tonumber(redis.call('HGET', KEYS[1], 'last_used') or '0') or 0
if tonumber(ARGV[1]) > known then
  redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
end
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], 'day:' .. ARGV[i], ARGV[i + 1])
end
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 4) == 'day:' and string.sub(field, 5) < ARGV[2] then
    redis.call('HDEL', KEYS[1], field)
  end
end
return 1
"#;

/// The shared keys' place in Redis.
pub(super) struct ApiKeys;

impl MapSpec for ApiKeys {
    type Key = TokenHash;
    type Value = Arc<[u8]>;
    const NAME: &'static str = "api-keys";
    const ENTRIES: &'static str = "api-key:";
    const READS_VALUES: bool = true;
    const AGE_GAUGE: &'static str = API_KEY_MIRROR_AGE_SECONDS;
    const ENTRIES_GAUGE: &'static str = API_KEY_MIRROR_ENTRIES;
    const RELOADS_TOTAL: &'static str = API_KEY_MIRROR_RELOADS_TOTAL;

    fn key(suffix: &str) -> Option<TokenHash> {
        // Lower-case hex only, so one key has one name.
        if suffix.len() != 64 || suffix.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(suffix, &mut digest).ok()?;
        Some(digest)
    }

    fn value(stored: Option<&[u8]>) -> Option<Arc<[u8]>> {
        stored.map(Arc::from)
    }
}

/// The SHA-256 an entry names (`sha256:hex` or hex), as its Redis key suffix.
fn suffix_of(entry: &KeyEntry) -> Result<String, String> {
    let text = entry.hash.trim();
    let hex_part = text.strip_prefix("sha256:").unwrap_or(text).to_ascii_lowercase();
    ApiKeys::key(&hex_part).map(|_| hex_part).ok_or_else(|| "the entry's hash is not a SHA-256 digest".to_string())
}

/// This replica's copy of the shared API keys, and the shared usage: the
/// [`SharedKeyStore`] providers get through `BuildContext::shared_keys`.
/// The copy is made (and starts loading) when a provider first asks for it,
/// so a config without `keys_from: redis` never loads keys.
pub struct RedisKeyStore {
    store: Arc<RedisStore>,
    sync_interval: Duration,
    resync_interval: Duration,
    /// `on_store_error: deny`'s `max_staleness`: past it, shared keys are refused as unavailable.
    max_staleness: Option<Duration>,
    map: OnceLock<Arc<SyncedMap<ApiKeys>>>,
}

impl std::fmt::Debug for RedisKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.map.get();
        f.debug_struct("RedisKeyStore")
            .field("entries", &map.map(|m| m.len()))
            .field("age", &map.and_then(|m| m.age()))
            .finish_non_exhaustive()
    }
}

impl RedisKeyStore {
    /// Keys and usage in `store`, followed as `config` says (`sync_interval`, `resync_interval`).
    pub fn new(store: Arc<RedisStore>, config: &RedisConfig) -> Arc<Self> {
        Arc::new(RedisKeyStore {
            store,
            sync_interval: config.sync_interval,
            resync_interval: config.resync_interval,
            max_staleness: config.max_staleness(),
            map: OnceLock::new(),
        })
    }

    /// This store as a [`SharedKeys`] for [`tokengate_api::BuildContext`].
    pub fn shared_keys(self: &Arc<Self>) -> SharedKeys {
        SharedKeys(self.clone())
    }

    fn map(&self) -> &Arc<SyncedMap<ApiKeys>> {
        let map = self.map.get_or_init(|| SyncedMap::new(self.store.clone(), self.sync_interval, self.resync_interval));
        // A copy made outside a runtime, or whose runtime ended, starts (again) here.
        map.ensure_started();
        map
    }
}

#[async_trait::async_trait]
impl SharedKeyStore for RedisKeyStore {
    fn generation(&self) -> u64 {
        self.map().generation()
    }

    fn entries(&self) -> Vec<(TokenHash, Arc<[u8]>)> {
        self.map().entries()
    }

    fn is_loaded(&self) -> bool {
        self.map().is_loaded()
    }

    async fn wait_loaded(&self) -> bool {
        self.map().wait_loaded(FIRST_LOAD_WAIT).await
    }

    fn last_failure(&self) -> String {
        self.map().last_failure()
    }

    fn too_stale(&self) -> Option<String> {
        let max = self.max_staleness?;
        let age = self.map().age()?;
        (age > max).then(|| {
            format!(
                "the shared API keys were last read from Redis {}s ago, more than max_staleness ({}s; \
                 on_store_error: deny): {}",
                age.as_secs(),
                max.as_secs(),
                self.map().last_failure()
            )
        })
    }

    async fn add_usage(&self, batch: &[KeyUse]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let prefix = self.store.prefix().to_string();
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or_default();
        let oldest = day_name(today.saturating_sub(USAGE_DAYS_KEPT - 1));
        let mut pipe = redis::pipe();
        // All or nothing: a batch that failed is sent again whole.
        pipe.atomic();
        for used in batch {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(USAGE_SCRIPT).arg(1).arg(format!("{prefix}api-key-usage:{}", used.key_id));
            cmd.arg(used.last_used).arg(&oldest);
            for (day, n) in &used.per_day {
                cmd.arg(day_name(*day)).arg(*n);
            }
            pipe.add_command(cmd).ignore();
        }
        self.store.run("api_key_usage", |mut conn| async move { pipe.query_async::<()>(&mut conn).await }).await
    }
}

/// The shared key entries, as `tokengate key` reads them: every entry, and
/// the names of the keys under `api-key:` that hold no readable entry.
pub async fn list_keys(store: &RedisStore, timeout: Duration) -> Result<(Vec<KeyEntry>, Vec<String>), String> {
    let pattern = format!("{}{}*", glob_literal(store.prefix()), ApiKeys::ENTRIES);
    let mut names: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let pattern = pattern.clone();
        let (next, found) = store
            .run_with("api_key_scan", timeout, |mut conn| async move {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async::<(u64, Vec<String>)>(&mut conn)
                    .await
            })
            .await?;
        names.extend(found);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // SCAN may name a key twice.
    names.sort_unstable();
    names.dedup();
    let mut entries = Vec::with_capacity(names.len());
    let mut unreadable = Vec::new();
    for chunk in names.chunks(READ_BATCH) {
        let keys = chunk.to_vec();
        let values = store
            .run_with("api_key_read", timeout, |mut conn| async move {
                redis::cmd("MGET").arg(&keys).query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await
            })
            .await?;
        for (name, value) in chunk.iter().zip(values) {
            // Deleted between SCAN and MGET: not an entry, not a problem.
            let Some(value) = value else { continue };
            let entry = serde_json::from_slice::<KeyEntry>(&value).ok();
            let named = name.strip_prefix(store.prefix()).and_then(|n| n.strip_prefix(ApiKeys::ENTRIES));
            match (entry, named) {
                (Some(entry), Some(suffix)) if suffix_of(&entry).is_ok_and(|s| s == suffix) => entries.push(entry),
                _ => unreadable.push(name.clone()),
            }
        }
    }
    // The order they were made in, as a key file keeps them.
    entries.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    Ok((entries, unreadable))
}

/// Writes `entry` (under its hash) and logs the change for every replica.
pub async fn put_key(store: &RedisStore, entry: &KeyEntry, timeout: Duration) -> Result<(), String> {
    let suffix = suffix_of(entry)?;
    let json = serde_json::to_vec(entry).map_err(|e| format!("cannot write the entry as JSON: {e}"))?;
    write_entry::<ApiKeys>(store, &suffix, &json, None, timeout).await.map(|_| ())
}

/// The shared usage of the keys `ids`.
pub async fn read_usage(store: &RedisStore, ids: &[String], timeout: Duration) -> Result<UsageFile, String> {
    let mut usage = UsageFile::default();
    for chunk in ids.chunks(READ_BATCH) {
        let keys: Vec<String> = chunk.iter().map(|id| format!("{}api-key-usage:{id}", store.prefix())).collect();
        let hashes = store
            .run_with("api_key_usage_read", timeout, |mut conn| async move {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.hgetall(key);
                }
                pipe.query_async::<Vec<BTreeMap<String, String>>>(&mut conn).await
            })
            .await?;
        for (id, fields) in chunk.iter().zip(hashes) {
            if fields.is_empty() {
                continue;
            }
            let mut used = KeyUsage::default();
            for (field, value) in fields {
                if field == "last_used" {
                    let seconds = value.parse::<u64>().unwrap_or(0);
                    let at = std::time::UNIX_EPOCH + Duration::from_secs(seconds);
                    used.last_used_at = Some(humantime::format_rfc3339_seconds(at).to_string());
                } else if let (Some(day), Ok(n)) = (field.strip_prefix("day:"), value.parse::<u64>()) {
                    used.requests_per_day.insert(day.to_string(), n);
                }
            }
            usage.keys.insert(id.clone(), used);
        }
    }
    Ok(usage)
}
