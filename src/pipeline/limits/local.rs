//! This replica's own counts: the store without Redis, and the one that
//! stands in while Redis is away (`on_store_error: local`).

use std::collections::HashMap;
use std::sync::Mutex;

use super::rate::{gcra, quota, ChargeResult};
use super::{Charge, Limit};

/// Buckets kept before new ones share one per rule and component: a flood
/// of distinct callers (addresses, keys) must not grow memory without bound,
/// and must not escape counting either.
const MAX_BUCKETS: usize = 1_000_000;
/// Charges between two sweeps of expired buckets.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// A rate's theoretical arrival time, or a quota's count.
    value: u64,
    /// When the bucket is of no more use (a rate: full again; a quota: its period is over).
    expires_us: u64,
}

#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<String, Bucket>,
    charges: u64,
}

/// Buckets in memory, behind one lock: each decision applies all its
/// charges or none, with no other decision in between.
#[derive(Debug, Default)]
pub struct LocalStore {
    buckets: Mutex<Buckets>,
}

impl LocalStore {
    /// Applies `charges` at `now` (microseconds), all or none.
    pub fn charge(&self, charges: &[Charge], now: u64) -> Vec<ChargeResult> {
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let buckets = &mut *guard;
        buckets.charges += 1;
        if buckets.charges % SWEEP_EVERY == 0 {
            buckets.map.retain(|_, b| b.expires_us > now);
        }
        let full = buckets.map.len() >= MAX_BUCKETS;
        let keys: Vec<std::borrow::Cow<'_, str>> = charges
            .iter()
            .map(|c| match full && !buckets.map.contains_key(&c.key) {
                false => std::borrow::Cow::Borrowed(c.key.as_str()),
                // The rule and component, with a value no caller has.
                true => {
                    let scope = c.key.splitn(3, '|').take(2).collect::<Vec<_>>().join("|");
                    std::borrow::Cow::Owned(format!("{scope}|\u{0}overflow"))
                }
            })
            .collect();
        let mut results = Vec::with_capacity(charges.len());
        let mut updates = Vec::with_capacity(charges.len());
        for (charge, key) in charges.iter().zip(&keys) {
            let live = buckets.map.get(key.as_ref()).filter(|b| b.expires_us > now).map(|b| b.value);
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
            updates.push(bucket);
        }
        if results.iter().all(|r| r.allowed) {
            for (key, bucket) in keys.into_iter().zip(updates) {
                buckets.map.insert(key.into_owned(), bucket);
            }
        }
        results
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).map.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
