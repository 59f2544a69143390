//! The contract side of API keys shared by every replica (Redis in the
//! `tokengate` crate): the entries of stored keys, as this replica holds
//! them in memory, and the per-key usage they add up.
//!
//! Only the trait and the handle [`BuildContext`](crate::BuildContext)
//! carries live here; what an entry means (`api_key`'s `KeyEntry`) is the
//! provider's, so entries cross this seam as the bytes stored (JSON). The
//! provider reads [`SharedKeyStore::entries`] again only when
//! [`SharedKeyStore::generation`] changes, so a request costs one atomic
//! load here, never a Redis round trip.

use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;

use crate::shared::TokenHash;

/// Requests by one key since the last flush, as [`SharedKeyStore::add_usage`] takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUse {
    /// The key's id (never the key).
    pub key_id: String,
    /// When it was last accepted, Unix seconds.
    pub last_used: u64,
    /// Days since the Unix epoch (UTC) → requests that day.
    pub per_day: Vec<(u64, u64)>,
}

/// Stored API keys every replica shares, each held in memory by every replica.
///
/// Implementations keep their copy in step in the background and never make
/// a request wait on the store, except [`SharedKeyStore::wait_loaded`]
/// before the first load; they count and log their own failures.
#[async_trait]
pub trait SharedKeyStore: Send + Sync + 'static {
    /// A number that changes whenever the entries held change.
    fn generation(&self) -> u64;

    /// Every entry held: the key's SHA-256 and the entry as stored. Entries
    /// the store could not read are left out (and logged by the store).
    fn entries(&self) -> Vec<(TokenHash, Arc<[u8]>)>;

    /// Whether the entries were loaded at least once (until then an unknown
    /// key cannot be told from one not loaded yet).
    fn is_loaded(&self) -> bool;

    /// Starts loading if it has not started, then waits (a bounded time the
    /// implementation chooses) for the first load to be tried; whether it is loaded.
    async fn wait_loaded(&self) -> bool;

    /// Why the entries are not loaded (or the last sync failed).
    fn last_failure(&self) -> String;

    /// Why the copy held is too old to decide by, when the store's policy
    /// says so (`on_store_error: deny` with its `max_staleness`); `None`:
    /// it decides however old it is.
    fn too_stale(&self) -> Option<String> {
        None
    }

    /// Adds `batch` to the shared usage (last use, requests per day).
    /// `Err`: nothing may have been added, and the caller keeps the batch for
    /// its next flush (a timed-out write that did arrive is then counted twice).
    async fn add_usage(&self, batch: &[KeyUse]) -> Result<(), String>;
}

/// A shared key store as carried in [`BuildContext`](crate::BuildContext).
#[derive(Clone)]
pub struct SharedKeys(pub Arc<dyn SharedKeyStore>);

impl SharedKeys {
    /// Wraps `store` for [`BuildContext::shared_keys`](crate::BuildContext::shared_keys).
    pub fn new(store: impl SharedKeyStore) -> Self {
        SharedKeys(Arc::new(store))
    }
}

impl fmt::Debug for SharedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKeys")
    }
}
