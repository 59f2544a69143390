//! The decision metrics, by name, and (with the `server` feature) the
//! Prometheus recorder `/metrics` renders.

use std::time::Duration;

/// Name of the decision counter.
pub const DECISIONS_TOTAL: &str = "tokengate_decisions_total";
/// Name of the decision latency histogram (seconds).
pub const DECISION_DURATION_SECONDS: &str = "tokengate_decision_duration_seconds";

/// Buckets of `tokengate_decision_duration_seconds`: from a cached JWT check
/// (well under a millisecond) to a slow remote introspection.
#[cfg(feature = "server")]
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counts one decision in `tokengate_decisions_total{outcome, provider}` and
/// times it in `tokengate_decision_duration_seconds{outcome, provider}`.
pub fn record(outcome: &'static str, provider: &str, elapsed: Duration) {
    let provider = provider.to_string();
    metrics::counter!(DECISIONS_TOTAL, "outcome" => outcome, "provider" => provider.clone()).increment(1);
    metrics::histogram!(DECISION_DURATION_SECONDS, "outcome" => outcome, "provider" => provider)
        .record(elapsed.as_secs_f64());
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
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!("cannot install the Prometheus recorder, /metrics is disabled: {e}");
                    None
                }
            }
        })
        .clone()
}
