//! This replica's own counts: the store without Redis, and the one that
//! stands in while Redis is away (`on_store_error: local`).
//!
//! A bucket is known by a 128-bit keyed hash of what names it (rule,
//! component, what is counted and its value), not by that text: no string
//! is built or kept per request, and a caller who does not know the keys
//! (random per process) cannot aim two values at one bucket. Buckets live
//! in [`SHARDS`] maps, each behind its own lock, so that decisions for
//! different callers rarely wait for each other; a decision locks the
//! shards it touches in ascending order (no two decisions can deadlock)
//! and holds them while it reads and writes, so it still applies all its
//! charges or none, with no other decision in between.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

use super::rate::{gcra, quota, ChargeResult};
use super::{Charge, Commit, Limit};

/// Buckets kept before new ones share one per rule and component: a flood
/// of distinct callers (addresses, keys) must not grow memory without bound,
/// and must not escape counting either. Each shard holds its part.
const MAX_BUCKETS: usize = 1_000_000;
/// Locks the buckets are spread over (a power of two).
const SHARDS: usize = 16;
const SHARD_CAPACITY: usize = MAX_BUCKETS / SHARDS;
/// Charges of a shard between two sweeps of its expired buckets.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// A rate's theoretical arrival time, or a quota's count.
    value: u64,
    /// When the bucket is of no more use (a rate: full again; a quota: its period is over).
    expires_us: u64,
}

/// A bucket's name: a keyed hash, so its own bits are the map's hash.
type BucketId = u128;

/// Hands a [`BucketId`]'s low bits to the map: hashing a keyed hash again buys nothing.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; anything else is folded in, never lost.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, id: u128) {
        self.0 = id as u64;
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<BucketId, Bucket, BuildHasherDefault<IdHasher>>,
    charges: u64,
}

/// Buckets in memory, in locked shards (see the module docs).
#[derive(Debug)]
pub struct LocalStore {
    shards: Box<[Mutex<Shard>]>,
    /// Two independent keys: 128 bits of bucket name.
    keys: [RandomState; 2],
}

impl Default for LocalStore {
    fn default() -> Self {
        LocalStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            keys: [RandomState::new(), RandomState::new()],
        }
    }
}

/// What a bucket id is of: a caller's count, or the one callers share past [`MAX_BUCKETS`].
#[derive(Clone, Copy)]
enum Named<'a> {
    Value(&'a str),
    Overflow,
}

fn shard_of(id: BucketId) -> usize {
    (id >> 64) as usize % SHARDS
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalStore {
    fn id(&self, charge: &Charge<'_>, named: Named<'_>) -> BucketId {
        let half = |key: &RandomState| {
            let mut h = key.build_hasher();
            // `str` hashes with a terminator no UTF-8 text holds: the parts cannot run into each other.
            charge.rule.hash(&mut h);
            charge.component.hash(&mut h);
            charge.by.hash(&mut h);
            match named {
                Named::Value(value) => {
                    h.write_u8(0);
                    value.hash(&mut h);
                }
                Named::Overflow => h.write_u8(1),
            }
            h.finish()
        };
        (u128::from(half(&self.keys[0])) << 64) | u128::from(half(&self.keys[1]))
    }

    /// Applies `charges` at `now` (microseconds), all or none; with
    /// [`Commit::Peek`], none, answering as a charge would have.
    pub fn charge(&self, charges: &[Charge<'_>], now: u64, commit: Commit) -> Vec<ChargeResult> {
        let mut ids: Vec<BucketId> = charges.iter().map(|c| self.id(c, Named::Value(&c.value))).collect();
        let mut wanted: u32 = ids.iter().fold(0, |mask, &id| mask | 1 << shard_of(id));
        loop {
            let mut guards: [Option<MutexGuard<'_, Shard>>; SHARDS] = std::array::from_fn(|_| None);
            for (i, guard) in guards.iter_mut().enumerate() {
                if wanted & (1 << i) != 0 {
                    *guard = Some(lock(&self.shards[i]));
                }
            }
            if commit == Commit::Charge {
                for guard in guards.iter_mut().flatten() {
                    guard.charges += 1;
                    if guard.charges % SWEEP_EVERY == 0 {
                        guard.map.retain(|_, b| b.expires_us > now);
                    }
                }
            }
            // A new caller in a full shard is counted with every other such caller of its rule and component.
            let mut more = 0;
            for (charge, id) in charges.iter().zip(ids.iter_mut()) {
                let shard = locked(&guards, shard_of(*id));
                if shard.map.len() >= SHARD_CAPACITY && !shard.map.contains_key(id) {
                    *id = self.id(charge, Named::Overflow);
                    more |= 1 << shard_of(*id);
                }
            }
            if more & !wanted != 0 {
                // The shared bucket is in a shard not locked: start again holding it too, in order.
                wanted |= more;
                drop(guards);
                ids = charges.iter().map(|c| self.id(c, Named::Value(&c.value))).collect();
                continue;
            }
            let mut results = Vec::with_capacity(charges.len());
            let mut updates = Vec::with_capacity(charges.len());
            for (charge, &id) in charges.iter().zip(&ids) {
                let live = locked(&guards, shard_of(id)).map.get(&id).filter(|b| b.expires_us > now).map(|b| b.value);
                let (result, bucket) = match charge.limit {
                    Limit::Rate { interval_us, burst } => {
                        let (result, tat) = gcra(live, now, interval_us, burst, charge.cost);
                        (result, Bucket { value: tat, expires_us: tat })
                    }
                    Limit::Quota { limit, end_us } => {
                        let (result, used) = quota(live.unwrap_or(0), limit, charge.cost, now, end_us);
                        (result, Bucket { value: used, expires_us: end_us })
                    }
                };
                results.push(result);
                updates.push((id, bucket));
            }
            if commit == Commit::Charge && results.iter().all(|r| r.allowed) {
                for (id, bucket) in updates {
                    if let Some(guard) = guards[shard_of(id)].as_mut() {
                        guard.map.insert(id, bucket);
                    }
                }
            }
            return results;
        }
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The locked shard `index`: every shard a decision's ids fall in is locked
/// before they are read (`LocalStore::charge`).
fn locked<'g>(guards: &'g [Option<MutexGuard<'_, Shard>>; SHARDS], index: usize) -> &'g Shard {
    guards[index].as_deref().expect("a decision locks every shard its buckets are in")
}
