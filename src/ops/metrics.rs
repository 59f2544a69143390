//! The decision metrics, by name, and (with the `server` feature) the
//! Prometheus recorder `/metrics` renders.

use std::time::Duration;

/// Name of the decision counter.
pub const DECISIONS_TOTAL: &str = "tokengate_decisions_total";
/// Name of the decision latency histogram (seconds).
pub const DECISION_DURATION_SECONDS: &str = "tokengate_decision_duration_seconds";
/// Counter of refused decisions by `reason` (the refusal's [`Reason::code`]:
/// `missing_credential`, `signature`, `claim`, `revoked`, `policy`,
/// `upstream`, `rate_limited`, …) and `provider`: what
/// `tokengate_decisions_total`'s `outcome` says happened, this says why.
///
/// [`Reason::code`]: tokengate_api::Reason::code
pub const REFUSALS_TOTAL: &str = "tokengate_refusals_total";
/// Gauge: seconds since this replica's copy of the shared revocation list
/// last matched Redis (see [`crate::ops::redis::mirror`]); it grows while
/// Redis is away.
pub const REVOCATION_MIRROR_AGE_SECONDS: &str = "tokengate_revocation_mirror_age_seconds";
/// Gauge: entries in this replica's copy of the shared revocation list
/// (those kept over a Redis that came back empty included).
pub const REVOCATION_MIRROR_ENTRIES: &str = "tokengate_revocation_mirror_entries";
/// Counter: whole reloads of the shared revocation list, by `reason`
/// (`start`, `resync`, `gap`: the change log no longer reaches back to this
/// replica's position, `reset`: Redis lost its data).
pub const REVOCATION_MIRROR_RELOADS_TOTAL: &str = "tokengate_revocation_mirror_reloads_total";
/// Gauge: seconds since this replica's copy of the shared API keys
/// (`keys_from: redis`) last matched Redis; it grows while Redis is away.
pub const API_KEY_MIRROR_AGE_SECONDS: &str = "tokengate_api_key_mirror_age_seconds";
/// Gauge: entries in this replica's copy of the shared API keys.
pub const API_KEY_MIRROR_ENTRIES: &str = "tokengate_api_key_mirror_entries";
/// Counter: whole reloads of the shared API keys, by `reason` (as for revocations).
pub const API_KEY_MIRROR_RELOADS_TOTAL: &str = "tokengate_api_key_mirror_reloads_total";

/// Counter of usage-limit decisions, by `rule` and `outcome` (`allowed`,
/// `limited`, `dry_run_limited`); and of decisions the shared store (Redis)
/// could not make, by `fallback` (`local`, `allow`, `deny`). Counted by the
/// limits stage itself ([`crate::pipeline::limits`]), which knows its rules.
pub use crate::pipeline::limits::{LIMIT_DECISIONS_TOTAL, LIMIT_STORE_FALLBACKS_TOTAL};

/// Buckets of `tokengate_decision_duration_seconds`: from a cached JWT check
/// (well under a millisecond) to a slow remote introspection.
#[cfg(feature = "server")]
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counts one decision in `tokengate_decisions_total{outcome, provider}` and
/// times it in `tokengate_decision_duration_seconds{outcome, provider}`.
///
/// Under the recorder `prometheus()` installed (`tokengate serve`), the two
/// handles of each (outcome, provider) are registered once and kept: a decision
/// then costs two atomic updates, not two label sets built, hashed and looked up
/// (issue #14). Under any other recorder (an embedding application's global one,
/// a test's local one) each call registers as before, so handles never outlive
/// the recorder they belong to.
pub fn record(outcome: &'static str, provider: &str, elapsed: Duration) {
    #[cfg(feature = "server")]
    if handles::record(outcome, provider, elapsed) {
        return;
    }
    let (counter, histogram) = register(outcome, provider);
    counter.increment(1);
    histogram.record(elapsed.as_secs_f64());
}

/// Counts one refusal in `tokengate_refusals_total{reason, provider}`, with
/// kept handles under the installed recorder as [`record`] does.
pub fn record_refusal(reason: &'static str, provider: &str) {
    #[cfg(feature = "server")]
    if handles::record_refusal(reason, provider) {
        return;
    }
    register_refusal(reason, provider).increment(1);
}

fn register_refusal(reason: &'static str, provider: &str) -> metrics::Counter {
    metrics::counter!(REFUSALS_TOTAL, "reason" => reason, "provider" => provider.to_string())
}

fn register(outcome: &'static str, provider: &str) -> (metrics::Counter, metrics::Histogram) {
    let provider = provider.to_string();
    (
        metrics::counter!(DECISIONS_TOTAL, "outcome" => outcome, "provider" => provider.clone()),
        metrics::histogram!(DECISION_DURATION_SECONDS, "outcome" => outcome, "provider" => provider),
    )
}

/// The handles of [`record`], kept for the recorder [`prometheus`] installed.
#[cfg(feature = "server")]
mod handles {
    use metrics::{Counter, Histogram};
    use std::sync::{OnceLock, RwLock};
    use std::time::Duration;

    /// Address of the recorder [`super::prometheus`] installed as the global one:
    /// it lives as long as the process, so no other recorder ever has it.
    pub(super) static INSTALLED: OnceLock<usize> = OnceLock::new();

    /// Bound on the kept handles: outcomes (4) times providers, which come from
    /// the config; past it, calls register as if nothing were kept.
    const MAX_KEPT: usize = 256;

    pub(super) struct Kept {
        pub(super) outcome: &'static str,
        pub(super) provider: Box<str>,
        counter: Counter,
        histogram: Histogram,
    }

    pub(super) static KEPT: RwLock<Vec<Kept>> = RwLock::new(Vec::new());

    /// `tokengate_refusals_total` by (reason, provider): reasons are a closed
    /// set of names, providers come from the config; bounded as [`KEPT`] is.
    static KEPT_REFUSALS: RwLock<Vec<(&'static str, Box<str>, Counter)>> = RwLock::new(Vec::new());

    /// Counts a refusal with a kept handle; false when the recorder in effect
    /// is not the installed one (nothing counted then).
    pub(super) fn record_refusal(reason: &'static str, provider: &str) -> bool {
        if INSTALLED.get().is_none_or(|&a| a != recorder_address()) {
            return false;
        }
        let matches = |(r, p, _): &&(&'static str, Box<str>, Counter)| *r == reason && &**p == provider;
        let kept = KEPT_REFUSALS.read().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, counter)) = kept.iter().find(matches) {
            counter.increment(1);
            return true;
        }
        drop(kept);
        let counter = super::register_refusal(reason, provider);
        counter.increment(1);
        let mut kept = KEPT_REFUSALS.write().unwrap_or_else(|e| e.into_inner());
        if kept.len() < MAX_KEPT && !kept.iter().any(|k| matches(&k)) {
            kept.push((reason, provider.into(), counter));
        }
        true
    }

    pub(super) fn recorder_address() -> usize {
        metrics::with_recorder(|r| (r as *const dyn metrics::Recorder).cast::<()>() as usize)
    }

    /// Records with kept handles; false when the recorder in effect is not the
    /// installed one (nothing recorded then).
    pub(super) fn record(outcome: &'static str, provider: &str, elapsed: Duration) -> bool {
        if INSTALLED.get().is_none_or(|&a| a != recorder_address()) {
            return false;
        }
        let seconds = elapsed.as_secs_f64();
        let kept = KEPT.read().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = kept.iter().find(|k| k.outcome == outcome && &*k.provider == provider) {
            k.counter.increment(1);
            k.histogram.record(seconds);
            return true;
        }
        drop(kept);
        let (counter, histogram) = super::register(outcome, provider);
        counter.increment(1);
        histogram.record(seconds);
        let mut kept = KEPT.write().unwrap_or_else(|e| e.into_inner());
        if kept.len() < MAX_KEPT && !kept.iter().any(|k| k.outcome == outcome && &*k.provider == provider) {
            kept.push(Kept { outcome, provider: provider.into(), counter, histogram });
        }
        true
    }
}

/// The process-wide Prometheus recorder, installed on first call.
///
/// `None` when another global `metrics` recorder was installed first (an
/// embedding application's own); `/metrics` then answers 503.
#[cfg(feature = "server")]
pub fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
    use std::sync::OnceLock;
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DECISION_DURATION_SECONDS.to_string()), LATENCY_BUCKETS)
                .and_then(|b| b.install_recorder());
            match installed {
                Ok(handle) => {
                    // Read on a thread of its own: a new thread has no local
                    // recorder, so what it sees is the global one just installed.
                    if let Ok(address) = std::thread::spawn(handles::recorder_address).join() {
                        let _ = handles::INSTALLED.set(address);
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!("cannot install the Prometheus recorder, /metrics is disabled: {e}");
                    None
                }
            }
        })
        .clone()
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;
    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn count(rendered: &str, provider: &str, outcome: &str) -> f64 {
        let series = format!("{DECISIONS_TOTAL}{{outcome=\"{outcome}\",provider=\"{provider}\"}} ");
        rendered.lines().find_map(|l| l.strip_prefix(&series)).map_or(0.0, |v| v.trim().parse().unwrap())
    }

    #[test]
    fn the_installed_recorder_counts_through_kept_handles() {
        let handle = prometheus().expect("the Prometheus recorder");
        for outcome in ["allow", "allow", "deny", "allow"] {
            record(outcome, "kept_handles_test", Duration::from_micros(20));
        }
        let rendered = handle.render();
        assert_eq!(count(&rendered, "kept_handles_test", "allow"), 3.0, "{rendered}");
        assert_eq!(count(&rendered, "kept_handles_test", "deny"), 1.0, "{rendered}");
        let kept = handles::KEPT.read().unwrap();
        assert_eq!(kept.iter().filter(|k| &*k.provider == "kept_handles_test").count(), 2);
    }

    /// Counts `tokengate_decisions_total` registrations and increments.
    #[derive(Default)]
    struct Local {
        registered: AtomicU64,
        total: Arc<AtomicU64>,
    }
    impl Recorder for Local {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            assert_eq!(key.name(), DECISIONS_TOTAL);
            self.registered.fetch_add(1, Ordering::Relaxed);
            Counter::from_arc(self.total.clone())
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn another_recorder_gets_every_decision_and_keeps_no_handle_of_ours() {
        let _ = prometheus();
        for _ in 0..2 {
            let local = Local::default();
            metrics::with_local_recorder(&local, || {
                for _ in 0..3 {
                    record("allow", "local_recorder_test", Duration::from_micros(20));
                }
            });
            assert_eq!(local.total.load(Ordering::Relaxed), 3);
            assert_eq!(local.registered.load(Ordering::Relaxed), 3, "registered on every call, never kept");
        }
        assert!(!handles::KEPT.read().unwrap().iter().any(|k| &*k.provider == "local_recorder_test"));
    }
}
