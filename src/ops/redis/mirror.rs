//! A map every replica holds in memory, synchronised from Redis: what the
//! shared revocation list is made of ([`super::RevocationMirror`]) and the
//! shared API keys ([`super::RedisKeyStore`]), and meant for any state that
//! replicas read on every request and that changes rarely. Requests read the map in memory and
//! never wait on Redis; a Redis that is away leaves the last-known map in force.
//!
//! For a map named `N` whose entries live under `E` (both after `key_prefix`):
//! - `{prefix}{E}{suffix}`: one Redis key per entry, with its own TTL (and
//!   value, for maps that have values);
//! - `{prefix}N:log`: a stream of one record `seq <n> key <suffix>` per
//!   change, capped at about [`LOG_MAX_LEN`] records;
//! - `{prefix}N:seq`: the number of the last change;
//! - `{prefix}N:epoch`: a random name for this Redis's copy of the map, made
//!   by whoever comes first: a Redis that lost its data has none, or another.
//!
//! [`write_entry`] changes an entry, counts the change and logs it in one
//! script, so the three never disagree. A replica loads the whole map once
//! (SCAN, then PTTL/GET of what it found), having read epoch, counter and the
//! log's last record in one transaction first; then, every `sync_interval`,
//! it reads epoch, counter and the records after its position in one
//! transaction, and reads again each key they name. A record says "look at
//! this key again", never what to believe, so records can be read twice, or
//! overtaken by a later write, and the map still ends up as Redis has it.
//!
//! The whole map is loaded again when:
//! - the records no longer continue the replica's position (their numbers
//!   skip, or the counter is ahead of them): the log was trimmed past it
//!   while the replica was away (`gap`);
//! - the epoch changed or the counter went back: Redis lost its data
//!   (`reset`). Entries the replica held that Redis no longer has are kept,
//!   each until its own expiry, and an error is logged: a Redis that
//!   restarts empty must not lift revocations on every replica at once;
//! - `resync_interval` has passed (`resync`): keys written without the log
//!   (by hand) are picked up, and keys deleted by hand dropped.
//!
//! Why a counted log rather than keyspace notifications or pub/sub: those
//! are fire-and-forget, so a replica disconnected for a moment misses
//! changes with no way to know, and notifications need the server's
//! `notify-keyspace-events`; a log with contiguous numbers makes every missed
//! change visible, and a replica that reconnects resumes from its position.
//! Reading it on an interval (XRANGE) rather than with a blocking XREAD keeps
//! the one multiplexed connection free for the other commands, and bounds
//! the lag by `sync_interval` plus a round trip.
//!
//! Entries expire when their TTL in Redis says, read as a remaining time
//! (PTTL), so clocks need not agree. The map is a `BTreeMap`, 33-byte keys
//! for the revocation list: about 45 bytes an entry (see the tests), and a
//! whole reload holds the old and the new map for a moment.
//!
//! One file, past 400 lines, because loading, following the log and
//! sweeping all work on the one private pair of maps and the position.

use redis::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::RedisStore;

/// Records the log keeps, about: a replica away for longer than that many
/// changes loads the whole map again.
pub const LOG_MAX_LEN: u64 = 100_000;
/// Records read per round trip.
const LOG_BATCH: usize = 1_000;
/// Keys asked of each SCAN.
const SCAN_BATCH: usize = 1_000;
/// Entries looked at for expiry per sync, so no sweep holds the lock long.
const SWEEP_BATCH: usize = 16_384;
/// An entry without TTL.
const NEVER: u64 = u64::MAX;

/// Changes one entry, counts the change and appends it to the log, atomically.
const WRITE_SCRIPT: &str = r#"
if ARGV[1] == 'set' then
  if ARGV[3] ~= '0' then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
else
  redis.call('DEL', KEYS[1])
end
redis.call('SET', KEYS[4], ARGV[5], 'NX')
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'seq', seq, 'key', ARGV[4])
return seq
"#;

/// What one synchronised map is: where it lives in Redis, how its entries read.
pub trait MapSpec: Send + Sync + 'static {
    /// An entry's key in memory.
    type Key: Ord + Clone + Send + Sync + 'static;
    /// An entry's value in memory (`()` for a set).
    type Value: Clone + Send + Sync + 'static;
    /// The map's name: its log is `{prefix}{NAME}:log`.
    const NAME: &'static str;
    /// Where entries live: `{prefix}{ENTRIES}{suffix}`.
    const ENTRIES: &'static str;
    /// Whether entries' values are read (GET), or only whether they exist.
    const READS_VALUES: bool;
    /// Gauge of the seconds since the map last matched Redis.
    const AGE_GAUGE: &'static str;
    /// Gauge of the entries held.
    const ENTRIES_GAUGE: &'static str;
    /// Counter of whole reloads, by `reason`.
    const RELOADS_TOTAL: &'static str;
    /// The key of the entry stored under `suffix`; `None` when it names none
    /// (the key is then ignored, and counted in a warning).
    fn key(suffix: &str) -> Option<Self::Key>;
    /// The value of an entry (`None` from a map that reads no values); `None`
    /// when it does not decode: the entry is then taken as absent.
    fn value(stored: Option<&[u8]>) -> Option<Self::Value>;
}

/// Why the whole map was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Start,
    Resync,
    Gap,
    Reset,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Resync => "resync",
            Reason::Gap => "gap",
            Reason::Reset => "reset",
        }
    }
}

#[derive(Clone)]
struct Entry<V> {
    /// Milliseconds on the map's clock at which it lapses ([`NEVER`]: it does not).
    expires: u64,
    value: V,
}

struct Maps<K, V> {
    /// As Redis has it.
    live: BTreeMap<K, Entry<V>>,
    /// Kept over a Redis that lost its data; only expiry removes them.
    retained: BTreeMap<K, Entry<V>>,
}

/// Where in the log a replica is.
struct Position {
    epoch: String,
    seq: u64,
    last_id: (u64, u64),
    loaded_at: Instant,
}

/// A stream ID `ms-seq`.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The smallest ID after `id`: XRANGE's start, inclusive (on every Redis with streams).
fn next_id((ms, seq): (u64, u64)) -> String {
    match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms.saturating_add(1)),
    }
}

/// `text` as a SCAN pattern that matches it literally.
pub(super) fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A fresh epoch name: unique, not secret.
fn new_epoch() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    hasher.update(now.as_nanos().to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hex::encode(&hasher.finalize()[..16])
}

fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields.chunks_exact(2).find(|pair| pair[0] == name).map(|pair| pair[1].as_str())
}

/// Writes `value` under `suffix` (expiring after `ttl` when given) and logs
/// the change for every replica's copy; the change's number. Bounded by `timeout`.
pub async fn write_entry<S: MapSpec>(
    store: &RedisStore,
    suffix: &str,
    value: &[u8],
    ttl: Option<Duration>,
    timeout: Duration,
) -> Result<u64, String> {
    let ttl_ms = ttl.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
    change::<S>(store, "set", suffix, value, ttl_ms, timeout).await
}

/// Deletes the entry under `suffix` and logs the change; the change's number.
pub async fn remove_entry<S: MapSpec>(store: &RedisStore, suffix: &str, timeout: Duration) -> Result<u64, String> {
    change::<S>(store, "del", suffix, b"", 0, timeout).await
}

async fn change<S: MapSpec>(
    store: &RedisStore,
    op: &str,
    suffix: &str,
    value: &[u8],
    ttl_ms: u64,
    timeout: Duration,
) -> Result<u64, String> {
    let prefix = store.prefix();
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(WRITE_SCRIPT)
        .arg(4)
        .arg(format!("{prefix}{}{suffix}", S::ENTRIES))
        .arg(format!("{prefix}{}:seq", S::NAME))
        .arg(format!("{prefix}{}:log", S::NAME))
        .arg(format!("{prefix}{}:epoch", S::NAME))
        .arg(op)
        .arg(value)
        .arg(ttl_ms)
        .arg(suffix)
        .arg(new_epoch())
        .arg(LOG_MAX_LEN);
    store
        .run_with("mirror_write", timeout, move |mut conn| async move { cmd.query_async::<u64>(&mut conn).await })
        .await
}

/// A map held in memory and kept in step with Redis by a task of its own
/// (see the module docs). Hold it in an `Arc`; the task ends when the last
/// one is dropped.
pub struct SyncedMap<S: MapSpec> {
    store: Arc<RedisStore>,
    maps: RwLock<Maps<S::Key, S::Value>>,
    clock: Instant,
    /// Milliseconds on `clock`, plus one, when the last successful sync began (0: never).
    synced_ms: AtomicU64,
    last_failure: Mutex<String>,
    /// True once the first load was tried, whatever came of it.
    first_attempt: tokio::sync::watch::Sender<bool>,
    sync_interval: Duration,
    resync_interval: Duration,
    /// Counts the changes to the maps, so a reader that compiles them knows when to again.
    generation: AtomicU64,
    running: Arc<AtomicBool>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Clears the `running` flag when the task's future is dropped.
struct RunningFlag(Arc<AtomicBool>);

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<S: MapSpec> Drop for SyncedMap<S> {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

impl<S: MapSpec> SyncedMap<S> {
    /// An empty map reading `store` every `sync_interval` and whole every
    /// `resync_interval`; synchronising starts now when a tokio runtime runs,
    /// else on the first [`SyncedMap::wait_loaded`].
    pub fn new(store: Arc<RedisStore>, sync_interval: Duration, resync_interval: Duration) -> Arc<Self> {
        let map = Arc::new(SyncedMap {
            store,
            maps: RwLock::new(Maps { live: BTreeMap::new(), retained: BTreeMap::new() }),
            clock: Instant::now(),
            synced_ms: AtomicU64::new(0),
            last_failure: Mutex::new("the first load has not finished".to_string()),
            first_attempt: tokio::sync::watch::Sender::new(false),
            sync_interval,
            resync_interval,
            generation: AtomicU64::new(0),
            running: Arc::new(AtomicBool::new(false)),
            task: Mutex::new(None),
        });
        map.ensure_started();
        map
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX - 1).saturating_add(1).min(NEVER - 1)
    }

    /// Whether the map was loaded from Redis at least once.
    pub fn is_loaded(&self) -> bool {
        self.synced_ms.load(Ordering::Acquire) != 0
    }

    /// Time since the map last matched Redis; `None` before the first load.
    pub fn age(&self) -> Option<Duration> {
        match self.synced_ms.load(Ordering::Acquire) {
            0 => None,
            at => Some(Duration::from_millis(self.now_ms().saturating_sub(at))),
        }
    }

    /// Why the last sync failed (or the first load has not happened yet).
    pub fn last_failure(&self) -> String {
        self.last_failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Entries held, those kept over a Redis that lost its data included.
    pub fn len(&self) -> usize {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        maps.live.len() + maps.retained.len()
    }

    /// Whether the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value under `key`, unless absent or expired.
    pub fn get(&self, key: &S::Key) -> Option<S::Value> {
        let now = self.now_ms();
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        let found = [&maps.live, &maps.retained]
            .into_iter()
            .find_map(|map| map.get(key).filter(|e| now < e.expires).map(|e| e.value.clone()));
        found
    }

    /// A number that changes whenever the entries held do (and at every whole reload).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Every entry held and not expired; where Redis has an entry, its value
    /// rather than one kept over a Redis that lost its data.
    pub fn entries(&self) -> Vec<(S::Key, S::Value)> {
        let now = self.now_ms();
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        let live = maps.live.iter().filter(|(_, e)| now < e.expires);
        let lost = maps.retained.iter().filter(|(k, e)| now < e.expires && !maps.live.contains_key(k));
        live.chain(lost).map(|(k, e)| (k.clone(), e.value.clone())).collect()
    }

    /// Whether any of `keys` is present (and not expired), under one lock.
    pub fn contains_any(&self, keys: &[S::Key]) -> bool {
        let now = self.now_ms();
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        keys.iter().any(|key| {
            [&maps.live, &maps.retained].into_iter().any(|map| map.get(key).is_some_and(|e| now < e.expires))
        })
    }

    /// Starts synchronising if it is not running, then waits at most `max`
    /// for the first load to be tried; whether the map is loaded.
    pub async fn wait_loaded(self: &Arc<Self>, max: Duration) -> bool {
        self.ensure_started();
        if self.is_loaded() {
            return true;
        }
        let mut tried = self.first_attempt.subscribe();
        let _ = tokio::time::timeout(max, tried.wait_for(|done| *done)).await;
        self.is_loaded()
    }

    /// Starts the task when there is a runtime and none runs: a task dies
    /// with the runtime it was spawned on (a config built by one runtime and
    /// served by another), so this is asked again on every wait.
    pub fn ensure_started(self: &Arc<Self>) {
        if self.running.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let mut slot = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let running = RunningFlag(self.running.clone());
        let weak = Arc::downgrade(self);
        let task = runtime.spawn(async move {
            let _running = running;
            Self::follow_forever(weak).await;
        });
        *slot = Some(task.abort_handle());
    }

    async fn follow_forever(weak: Weak<Self>) {
        let mut position: Option<Position> = None;
        let mut sweep_cursor: (Option<S::Key>, Option<S::Key>) = (None, None);
        loop {
            let Some(map) = weak.upgrade() else { return };
            let more = match map.sync(&mut position).await {
                Ok(more) => more,
                Err(e) => {
                    *map.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = e;
                    false
                }
            };
            map.first_attempt.send_replace(true);
            map.sweep(&mut sweep_cursor);
            map.publish_gauges();
            let interval = map.sync_interval;
            drop(map);
            if !more {
                tokio::time::sleep(interval).await;
            }
        }
    }

    fn publish_gauges(&self) {
        let age = self.age().unwrap_or_else(|| self.clock.elapsed());
        metrics::gauge!(S::AGE_GAUGE).set(age.as_secs_f64());
        metrics::gauge!(S::ENTRIES_GAUGE).set(self.len() as f64);
    }

    /// One step: a whole load when there is no position (or it is time to
    /// resync, or the log broke), else the records after the position.
    /// Ok(true) when more records are waiting.
    async fn sync(&self, position: &mut Option<Position>) -> Result<bool, String> {
        let started = self.now_ms();
        let more = match position.as_mut() {
            None => {
                *position = Some(self.load(None, Reason::Start).await?);
                false
            }
            Some(p) if p.loaded_at.elapsed() >= self.resync_interval => {
                *position = Some(self.load(Some(p), Reason::Resync).await?);
                false
            }
            Some(p) => match self.follow(p).await? {
                Ok(more) => more,
                Err(reason) => {
                    *position = Some(self.load(Some(p), reason).await?);
                    false
                }
            },
        };
        self.synced_ms.store(started, Ordering::Release);
        Ok(more)
    }

    /// Applies the records after `p`; Ok(Err(reason)) when they do not
    /// continue it and the whole map must be loaded again.
    async fn follow(&self, p: &mut Position) -> Result<Result<bool, Reason>, String> {
        let prefix = self.store.prefix();
        let (epoch_key, seq_key, log_key) = (
            format!("{prefix}{}:epoch", S::NAME),
            format!("{prefix}{}:seq", S::NAME),
            format!("{prefix}{}:log", S::NAME),
        );
        let start = next_id(p.last_id);
        let (epoch, seq, records) = self
            .store
            .run("mirror_follow", |mut conn| async move {
                redis::pipe()
                    .atomic()
                    .get(&epoch_key)
                    .get(&seq_key)
                    .cmd("XRANGE")
                    .arg(&log_key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(LOG_BATCH)
                    .query_async::<(Option<String>, Option<u64>, Vec<(String, Vec<String>)>)>(&mut conn)
                    .await
            })
            .await?;
        let seq = seq.unwrap_or(0);
        if epoch.as_deref() != Some(p.epoch.as_str()) || seq < p.seq {
            return Ok(Err(Reason::Reset));
        }
        let mut reached = p.seq;
        let mut last_id = p.last_id;
        let mut suffixes = Vec::with_capacity(records.len());
        for (id, fields) in &records {
            let numbered = field(fields, "seq").and_then(|n| n.parse::<u64>().ok());
            let (Some(id), Some(n)) = (parse_id(id), numbered) else { return Ok(Err(Reason::Gap)) };
            if n != reached + 1 {
                return Ok(Err(Reason::Gap));
            }
            reached = n;
            last_id = id;
            if let Some(suffix) = field(fields, "key") {
                suffixes.push(suffix.to_string());
            }
        }
        let more = records.len() == LOG_BATCH;
        if !more && reached != seq {
            return Ok(Err(Reason::Gap));
        }
        if !suffixes.is_empty() {
            suffixes.sort_unstable();
            suffixes.dedup();
            let states = self.states(&suffixes).await?;
            let now = self.now_ms();
            let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
            for (suffix, state) in suffixes.iter().zip(states) {
                let Some(key) = S::key(suffix) else { continue };
                match entry_of::<S>(state, now) {
                    Some(entry) => maps.live.insert(key, entry),
                    None => maps.live.remove(&key),
                };
            }
            drop(maps);
            self.changed();
        }
        p.seq = reached;
        p.last_id = last_id;
        Ok(Ok(more))
    }

    /// Each key's remaining life (PTTL: -2 gone, -1 forever) and, for a map
    /// with values, its value; in the order asked.
    async fn states(&self, suffixes: &[String]) -> Result<Vec<(i64, Option<Vec<u8>>)>, String> {
        let prefix = self.store.prefix();
        let keys: Vec<String> = suffixes.iter().map(|s| format!("{prefix}{}{s}", S::ENTRIES)).collect();
        let replies = self
            .store
            .run("mirror_read", |mut conn| async move {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.pttl(key);
                    if S::READS_VALUES {
                        pipe.get(key);
                    }
                }
                pipe.query_async::<Vec<Value>>(&mut conn).await
            })
            .await?;
        let per_key = if S::READS_VALUES { 2 } else { 1 };
        if replies.len() != suffixes.len() * per_key {
            return Err(format!("Redis answered {} replies to {} questions", replies.len(), suffixes.len() * per_key));
        }
        replies
            .chunks_exact(per_key)
            .map(|reply| {
                let pttl = redis::from_redis_value_ref::<i64>(&reply[0]).map_err(|e| format!("PTTL: {e}"))?;
                let value = match reply.get(1) {
                    Some(v) => redis::from_redis_value_ref::<Option<Vec<u8>>>(v).map_err(|e| format!("GET: {e}"))?,
                    None => None,
                };
                Ok((pttl, value))
            })
            .collect()
    }

    /// Loads the whole map, replacing the one held; keeps, over a Redis that
    /// lost its data, the entries it no longer has.
    async fn load(&self, previous: Option<&Position>, reason: Reason) -> Result<Position, String> {
        let began = Instant::now();
        let prefix = self.store.prefix();
        let (epoch_key, seq_key, log_key) = (
            format!("{prefix}{}:epoch", S::NAME),
            format!("{prefix}{}:seq", S::NAME),
            format!("{prefix}{}:log", S::NAME),
        );
        let candidate = new_epoch();
        let (epoch, seq, last) = self
            .store
            .run("mirror_load", |mut conn| {
                let (epoch_key, log_key) = (epoch_key.clone(), log_key.clone());
                async move {
                    redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg(&epoch_key)
                        .arg(&candidate)
                        .arg("NX")
                        .ignore()
                        .get(&epoch_key)
                        .get(&seq_key)
                        .cmd("XREVRANGE")
                        .arg(&log_key)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query_async::<(Option<String>, Option<u64>, Vec<(String, Vec<String>)>)>(&mut conn)
                        .await
                }
            })
            .await?;
        let epoch = epoch.ok_or_else(|| format!("{epoch_key} vanished as it was written"))?;
        let seq = seq.unwrap_or(0);
        let last_id = match last.first() {
            Some((id, _)) => parse_id(id).ok_or_else(|| format!("{log_key} holds a record with a malformed ID"))?,
            None => (0, 0),
        };
        let reason = match previous {
            Some(p) if p.epoch != epoch || seq < p.seq => Reason::Reset,
            _ => reason,
        };

        let entries_prefix = format!("{prefix}{}", S::ENTRIES);
        let pattern = format!("{}*", glob_literal(&entries_prefix));
        let mut loaded = Vec::new();
        let mut unreadable = 0usize;
        let mut cursor = 0u64;
        loop {
            let pattern = pattern.clone();
            let (next, keys) = self
                .store
                .run("mirror_scan", |mut conn| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_BATCH)
                        .query_async::<(u64, Vec<Vec<u8>>)>(&mut conn)
                        .await
                })
                .await?;
            let mut suffixes = Vec::with_capacity(keys.len());
            for key in keys {
                match String::from_utf8(key).ok().and_then(|k| k.strip_prefix(&entries_prefix).map(str::to_string)) {
                    Some(suffix) => suffixes.push(suffix),
                    None => unreadable += 1,
                }
            }
            if !suffixes.is_empty() {
                let states = self.states(&suffixes).await?;
                let now = self.now_ms();
                for (suffix, state) in suffixes.iter().zip(states) {
                    match S::key(suffix) {
                        None => unreadable += 1,
                        Some(key) => {
                            if let Some(entry) = entry_of::<S>(state, now) {
                                loaded.push((key, entry));
                            }
                        }
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let fresh: BTreeMap<S::Key, Entry<S::Value>> = loaded.into_iter().collect();
        let count = fresh.len();
        let (old, kept) = {
            let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
            let old = std::mem::replace(&mut maps.live, fresh);
            // Under the same lock, so no reader sees an entry neither in the new map nor kept.
            let kept = (reason == Reason::Reset).then(|| self.retain_lost(&mut maps, &old));
            (old, kept)
        };
        self.changed();
        drop(old);
        if let Some((kept, retained)) = kept {
            tracing::error!(
                map = S::NAME,
                kept,
                retained,
                "Redis lost the shared map (it restarted without persistence, was flushed, or failed over to a copy \
                 that missed writes): this replica keeps the entries it knew, each until its own expiry; a replica \
                 started from now on knows only what Redis holds: restore Redis's data or write the entries again"
            );
        }
        metrics::counter!(S::RELOADS_TOTAL, "reason" => reason.label()).increment(1);
        if unreadable > 0 {
            tracing::warn!(
                keys = unreadable, pattern = %pattern, map = S::NAME,
                "ignored keys that name no entry of the shared map"
            );
        }
        let took_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        match reason {
            Reason::Start | Reason::Gap => {
                tracing::info!(
                    map = S::NAME,
                    entries = count,
                    took_ms,
                    reason = reason.label(),
                    "shared map loaded from Redis"
                )
            }
            Reason::Resync => {
                tracing::debug!(map = S::NAME, entries = count, took_ms, "shared map reloaded from Redis")
            }
            Reason::Reset => {}
        }
        Ok(Position { epoch, seq, last_id, loaded_at: Instant::now() })
    }

    /// Copies the entries of `old` that Redis no longer has, and that have
    /// not expired, to the retained map; (kept now, retained in all).
    fn retain_lost(
        &self,
        maps: &mut Maps<S::Key, S::Value>,
        old: &BTreeMap<S::Key, Entry<S::Value>>,
    ) -> (usize, usize) {
        let now = self.now_ms();
        let lost: Vec<(S::Key, Entry<S::Value>)> = old
            .iter()
            .filter(|(k, e)| now < e.expires && !maps.live.contains_key(*k))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        let kept = lost.len();
        maps.retained.extend(lost);
        (kept, maps.retained.len())
    }

    /// Drops expired entries, a slice of each map per call.
    fn sweep(&self, cursors: &mut (Option<S::Key>, Option<S::Key>)) {
        let now = self.now_ms();
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        let Maps { live, retained } = &mut *maps;
        let swept = sweep_slice(live, &mut cursors.0, now) + sweep_slice(retained, &mut cursors.1, now);
        drop(maps);
        if swept > 0 {
            self.changed();
        }
    }
}

/// Drops the expired entries of one slice of `map`; how many.
fn sweep_slice<K: Ord + Clone, V>(map: &mut BTreeMap<K, Entry<V>>, cursor: &mut Option<K>, now: u64) -> usize {
    let start = match cursor.take() {
        Some(k) => Bound::Excluded(k),
        None => Bound::Unbounded,
    };
    let mut expired = Vec::new();
    let mut visited = 0;
    let mut last = None;
    for (key, entry) in map.range((start, Bound::Unbounded)).take(SWEEP_BATCH) {
        visited += 1;
        if entry.expires <= now {
            expired.push(key.clone());
        }
        last = Some(key);
    }
    // Where the next call starts; past the end, from the beginning again.
    *cursor = if visited == SWEEP_BATCH { last.cloned() } else { None };
    let swept = expired.len();
    for key in expired {
        map.remove(&key);
    }
    swept
}

/// The entry a key's state makes, or `None` when it is gone (or does not decode).
fn entry_of<S: MapSpec>((pttl, stored): (i64, Option<Vec<u8>>), now: u64) -> Option<Entry<S::Value>> {
    let expires = match pttl {
        -1 => NEVER,
        ms if ms > 0 => now.saturating_add(ms.unsigned_abs()).min(NEVER - 1),
        _ => return None,
    };
    if S::READS_VALUES && stored.is_none() {
        return None;
    }
    Some(Entry { expires, value: S::value(stored.as_deref())? })
}

#[cfg(test)]
mod tests;
