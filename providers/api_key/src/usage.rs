//! Per-key usage: when each key was last used and how many requests it made
//! per UTC day, counted in memory and written out in batches.
//!
//! A request costs one mutex-guarded map update, never I/O. [`LocalUsage`]
//! writes what was counted since its last write to a usage file (by default
//! `<keys_file>.usage.json`) every `usage_flush_interval` and when the
//! provider closes: it reads the file, adds its counts, and replaces the
//! file atomically (a temporary file renamed over it), so `tokengate key
//! list` never reads half a file and a restart adds to the counts before it.
//! One process writes one usage file: two writing the same one could, in the
//! moment between one's read and its rename, lose the other's batch. Give
//! each replica its own `usage_file` (or share usage through Redis).
//!
//! [`UsageRecorder`] is the seam for other stores: the provider only calls
//! `record` per request and `flush` in the background. [`SharedUsage`]
//! (`usage_store: redis`) adds the counts to the usage every replica shares,
//! one batch per flush, so `tokengate key list` shows the sum of all of them.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokengate_api::{KeyUse, SharedKeys};

/// Days of counts the usage file keeps per key; older days are dropped when it is written.
pub const USAGE_DAYS_KEPT: u64 = 62;

const SECONDS_PER_DAY: u64 = 86_400;

/// Where per-key usage goes. `record` is called once per accepted request
/// and must not block on I/O; `flush` is called in the background and at close.
pub trait UsageRecorder: Send + Sync + 'static {
    /// Counts one request by `key_id` at `at`.
    fn record(&self, key_id: &str, at: SystemTime);
    /// Writes out what was counted since the last flush.
    fn flush(&self) -> Result<(), String>;
}

/// One key's usage as the usage file holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUsage {
    /// When the key was last accepted (RFC 3339, UTC, seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// Requests per UTC day (`2026-05-01` → count), the last [`USAGE_DAYS_KEPT`] days.
    #[serde(default)]
    pub requests_per_day: BTreeMap<String, u64>,
}

impl KeyUsage {
    /// Requests over every day kept.
    pub fn total(&self) -> u64 {
        self.requests_per_day.values().fold(0u64, |sum, n| sum.saturating_add(*n))
    }
}

/// The usage file: key id → usage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageFile {
    /// Per key id.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyUsage>,
}

/// The usage file that goes with `keys_file`: `<keys_file>.usage.json`.
pub fn default_usage_path(keys_file: &Path) -> PathBuf {
    let mut name = keys_file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".usage.json");
    keys_file.with_file_name(name)
}

/// Reads a usage file; a missing one is empty.
pub fn read_usage_file(path: &Path) -> Result<UsageFile, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a usage file: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsageFile::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory, synced, then renamed over `path`.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    temp.persist(path).map_err(|e| format!("cannot replace {}: {}", path.display(), e.error))?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
struct Counted {
    last_used: u64,
    /// Days since the epoch → requests.
    per_day: BTreeMap<u64, u64>,
}

/// [`UsageRecorder`] that keeps counts in memory and adds them to a usage file.
pub struct LocalUsage {
    path: PathBuf,
    pending: Mutex<HashMap<String, Counted>>,
}

impl std::fmt::Debug for LocalUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUsage").field("path", &self.path).finish_non_exhaustive()
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A day since the Unix epoch as its UTC date, `2026-05-01`: how usage names days.
pub fn day_name(day: u64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_secs(day * SECONDS_PER_DAY);
    let text = humantime::format_rfc3339_seconds(at).to_string();
    text[..10].to_string()
}

impl LocalUsage {
    /// Counts for the usage file at `path`.
    pub fn new(path: PathBuf) -> Self {
        LocalUsage { path, pending: Mutex::new(HashMap::new()) }
    }

    /// The usage file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn merge(file: &mut UsageFile, counted: HashMap<String, Counted>, today: u64) {
        let oldest = day_name(today.saturating_sub(USAGE_DAYS_KEPT - 1));
        for (key_id, counted) in counted {
            let usage = file.keys.entry(key_id).or_default();
            let last =
                humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(counted.last_used))
                    .to_string();
            // RFC 3339 in UTC to the second sorts as text.
            if usage.last_used_at.as_deref().is_none_or(|known| known < last.as_str()) {
                usage.last_used_at = Some(last);
            }
            for (day, n) in counted.per_day {
                let count = usage.requests_per_day.entry(day_name(day)).or_insert(0);
                *count = count.saturating_add(n);
            }
        }
        for usage in file.keys.values_mut() {
            usage.requests_per_day.retain(|day, _| day.as_str() >= oldest.as_str());
        }
    }
}

impl UsageRecorder for LocalUsage {
    fn record(&self, key_id: &str, at: SystemTime) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        count_into(&mut pending, key_id, unix_seconds(at), 1);
    }

    fn flush(&self) -> Result<(), String> {
        let counted = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if counted.is_empty() {
            return Ok(());
        }
        let result = (|| {
            let mut file = read_usage_file(&self.path)?;
            LocalUsage::merge(&mut file, counted.clone(), unix_seconds(SystemTime::now()) / SECONDS_PER_DAY);
            let json = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
            write_atomically(&self.path, &json)
        })();
        if result.is_err() {
            // Kept for the next flush rather than lost.
            restore(&self.pending, counted);
        }
        result
    }
}

/// [`UsageRecorder`] that keeps counts in memory and adds them, every flush,
/// to the usage every replica shares ([`SharedKeyStore::add_usage`]: Redis,
/// one round trip per flush, never one per request).
pub struct SharedUsage {
    store: SharedKeys,
    pending: Arc<Mutex<HashMap<String, Counted>>>,
}

impl std::fmt::Debug for SharedUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedUsage").finish_non_exhaustive()
    }
}

fn count_into(pending: &mut HashMap<String, Counted>, key_id: &str, seconds: u64, requests: u64) {
    let counted = match pending.get_mut(key_id) {
        Some(c) => c,
        None => pending.entry(key_id.to_string()).or_default(),
    };
    counted.last_used = counted.last_used.max(seconds);
    let day = counted.per_day.entry(seconds / SECONDS_PER_DAY).or_insert(0);
    *day = day.saturating_add(requests);
}

/// Puts counts that could not be written back, for the next flush.
fn restore(pending: &Mutex<HashMap<String, Counted>>, counted: HashMap<String, Counted>) {
    let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    for (key_id, old) in counted {
        let now = pending.entry(key_id).or_default();
        now.last_used = now.last_used.max(old.last_used);
        for (day, n) in old.per_day {
            let count = now.per_day.entry(day).or_insert(0);
            *count = count.saturating_add(n);
        }
    }
}

fn batch_of(counted: &HashMap<String, Counted>) -> Vec<KeyUse> {
    counted
        .iter()
        .map(|(key_id, c)| KeyUse {
            key_id: key_id.clone(),
            last_used: c.last_used,
            per_day: c.per_day.iter().map(|(day, n)| (*day, *n)).collect(),
        })
        .collect()
}

impl SharedUsage {
    /// Counts for `store`.
    pub fn new(store: SharedKeys) -> Self {
        SharedUsage { store, pending: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Adds what was counted to the shared usage now, waiting for the answer.
    pub async fn flush_now(&self) -> Result<(), String> {
        let counted = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if counted.is_empty() {
            return Ok(());
        }
        let result = self.store.0.add_usage(&batch_of(&counted)).await;
        if result.is_err() {
            restore(&self.pending, counted);
        }
        result
    }
}

impl UsageRecorder for SharedUsage {
    fn record(&self, key_id: &str, at: SystemTime) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        count_into(&mut pending, key_id, unix_seconds(at), 1);
    }

    /// Hands the batch to a task on the current runtime, which adds it to the
    /// shared usage (the store logs a failure; the batch is kept for the next flush).
    fn flush(&self) -> Result<(), String> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err("no async runtime to write the shared usage from".to_string());
        };
        let counted = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if counted.is_empty() {
            return Ok(());
        }
        let (store, pending) = (self.store.clone(), self.pending.clone());
        runtime.spawn(async move {
            if store.0.add_usage(&batch_of(&counted)).await.is_err() {
                restore(&pending, counted);
            }
        });
        Ok(())
    }
}
