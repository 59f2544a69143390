//! The defaults of the transport settings every HTTP-backed provider repeats
//! in its own `provider_config` (`verify_tls`, `timeout`, …), as functions for
//! `#[serde(default = "tokengate_kit::defaults::timeout")]`, so that each
//! provider's defaults are [`HttpClientOptions`](crate::HttpClientOptions)'s.
//!
//! The fields themselves stay in each provider's config struct: serde's
//! `flatten` cannot be combined with `deny_unknown_fields`, and each field's
//! doc comment names that provider's service.

use std::time::Duration;

/// `true`: `verify_tls`, `enabled` and the like.
pub fn on() -> bool {
    true
}

/// `connect_timeout`: 3s.
pub fn connect_timeout() -> Duration {
    Duration::from_secs(3)
}

/// `timeout`, for a whole exchange: 10s.
pub fn timeout() -> Duration {
    Duration::from_secs(10)
}

/// `max_response_bytes`: 1 MiB.
pub fn max_response_bytes() -> usize {
    1024 * 1024
}

/// `max_concurrent_requests`: [`DEFAULT_MAX_CONCURRENT_REQUESTS`](crate::DEFAULT_MAX_CONCURRENT_REQUESTS).
pub fn max_concurrent_requests() -> usize {
    crate::DEFAULT_MAX_CONCURRENT_REQUESTS
}
