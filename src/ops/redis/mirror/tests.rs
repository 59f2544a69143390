use super::super::revocation_mirror::{Revocations, RevokedKey};
use super::super::RedisConfig;
use super::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts the bytes the current thread holds, so a test can measure what a
/// structure it builds costs while other tests run on other threads.
struct PerThread;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = HELD.try_with(|h| h.set(h.get() + layout.size() as isize));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = HELD.try_with(|h| h.set(h.get() - layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = HELD.try_with(|h| h.set(h.get() + new_size as isize - layout.size() as isize));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: PerThread = PerThread;

fn held() -> isize {
    HELD.with(Cell::get)
}

fn map() -> Arc<SyncedMap<Revocations>> {
    // Nothing listens there, and no runtime runs: no task starts.
    let store = Arc::new(RedisStore::new(&RedisConfig::new("redis://127.0.0.1:1/0"), None).unwrap());
    SyncedMap::new(store, Duration::from_millis(250), Duration::from_secs(300))
}

fn digest(i: u32) -> RevokedKey {
    RevokedKey::Digest(Sha256::digest(i.to_le_bytes()).into())
}

/// Issue #21: 1 M revocations fit in well under 100 MB. Measured here: the
/// map as a whole reload builds it (sorted, then bulk-built) and as one built
/// by incremental inserts in random order (the worst case: half-full nodes).
#[test]
fn a_million_revocations_take_well_under_100_mb() {
    const N: u32 = 1_000_000;
    let before = held();
    let bulk: BTreeMap<RevokedKey, Entry<()>> =
        (0..N).map(|i| (digest(i), Entry { expires: NEVER, value: () })).collect();
    let bulk_bytes = held() - before;
    assert_eq!(bulk.len(), N as usize);
    drop(bulk);

    let before = held();
    let mut incremental = BTreeMap::new();
    for i in 0..N {
        incremental.insert(digest(i), Entry { expires: 1, value: () });
    }
    let incremental_bytes = held() - before;
    let mb = |b: isize| b as f64 / 1e6;
    eprintln!(
        "1M revocations: {:.1} MB loaded whole ({:.1} B each), {:.1} MB inserted one by one ({:.1} B each)",
        mb(bulk_bytes),
        bulk_bytes as f64 / f64::from(N),
        mb(incremental_bytes),
        incremental_bytes as f64 / f64::from(N)
    );
    assert!(bulk_bytes < 60_000_000, "{} MB", mb(bulk_bytes));
    assert!(incremental_bytes < 80_000_000, "{} MB", mb(incremental_bytes));
}

#[test]
fn expired_entries_are_absent_at_once_and_swept_in_slices() {
    let m = map();
    let now = m.now_ms();
    {
        let mut maps = m.maps.write().unwrap();
        for i in 0..(SWEEP_BATCH as u32 + 10) {
            let expires = if i % 2 == 0 { now } else { NEVER };
            maps.live.insert(digest(i), Entry { expires, value: () });
        }
        maps.retained.insert(digest(1_000_000), Entry { expires: now + 60_000, value: () });
        maps.retained.insert(digest(1_000_001), Entry { expires: now.saturating_sub(1), value: () });
    }
    assert!(m.get(&digest(0)).is_none(), "expired: absent before any sweep");
    assert!(m.contains_any(&[digest(0), digest(1)]));
    assert!(!m.contains_any(&[digest(0), digest(2)]));
    assert!(m.contains_any(&[digest(1_000_000)]), "a retained entry counts");
    assert!(!m.contains_any(&[digest(1_000_001)]));

    let mut cursors = (None, None);
    m.sweep(&mut cursors);
    assert!(cursors.0.is_some(), "a slice, not the whole map, under one lock");
    m.sweep(&mut cursors);
    assert!(cursors.0.is_none(), "the second call reached the end");
    let maps = m.maps.read().unwrap();
    assert_eq!(maps.live.len(), (SWEEP_BATCH + 10) / 2);
    assert_eq!(maps.retained.len(), 1);
}

#[test]
fn revocation_keys_decode_every_form_and_refuse_the_rest() {
    let hash = tokengate_kit::token_hash("t");
    assert_eq!(Revocations::key(&format!("sha256:{}", hex::encode(hash))), Some(RevokedKey::Digest(hash)));
    assert!(Revocations::key("sha256:abc").is_none());
    assert!(Revocations::key(&format!("sha256:{}zz", &hex::encode(hash)[..62])).is_none());
    assert!(matches!(Revocations::key("jti:x"), Some(RevokedKey::Jti(_))));
    assert!(Revocations::key("jti:").is_none());
    assert!(matches!(Revocations::key("iss-jti:https://a#x"), Some(RevokedKey::IssuerJti(_))));
    for bad in ["iss-jti:no-hash", "iss-jti:#x", "iss-jti:a#", "other:x", ""] {
        assert!(Revocations::key(bad).is_none(), "{bad}");
    }
    // A bare jti and a scoped one never share a key, whatever their text.
    assert_ne!(Revocations::key("jti:a#b"), Revocations::key("iss-jti:a#b"));
}

#[test]
fn stream_ids_patterns_and_states() {
    assert_eq!(parse_id("1700000000000-3"), Some((1_700_000_000_000, 3)));
    assert_eq!(parse_id("x-3"), None);
    assert_eq!(next_id((5, 3)), "5-4");
    assert_eq!(next_id((5, u64::MAX)), "6-0");
    assert_eq!(glob_literal("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    assert!(entry_of::<Revocations>((-2, None), 10).is_none(), "gone");
    assert!(entry_of::<Revocations>((0, None), 10).is_none(), "lapsing now");
    assert_eq!(entry_of::<Revocations>((-1, None), 10).map(|e| e.expires), Some(NEVER));
    assert_eq!(entry_of::<Revocations>((500, None), 10).map(|e| e.expires), Some(510));
    assert_ne!(new_epoch(), new_epoch());
}
