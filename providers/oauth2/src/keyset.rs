//! A remote key set: fetched, refreshed and shared without locks on the hot path.
//!
//! The current [`State`] sits in an `ArcSwap`; requests only ever load it. All
//! writes happen in [`KeySet::refresh_locked`] under one async mutex, so at
//! most one fetch per key set is in flight, and requests that queued behind it
//! re-check the attempt counter and reuse its result instead of fetching again.
//!
//! When a fetch happens:
//! - no usable keys (never fetched, or past `stale_grace`): the request waits
//!   for a fetch, retried at most every [`NO_KEYS_RETRY`] (or the cooldown if shorter);
//! - keys due for refresh (`key_recheck_period`, or a shorter `Cache-Control:
//!   max-age`): a background task refreshes them while requests keep using the
//!   current ones;
//! - a token names an unknown `kid`: the request waits for a fetch, at most one
//!   such forced fetch per `refresh_cooldown`, so made-up kids cannot make us
//!   hammer the identity provider.
//!
//! A failed fetch keeps the last good keys (stale-if-error) until
//! `refresh_at + stale_grace`; the failure is remembered so that a token whose
//! kid we do not know is answered "unavailable", not "invalid".

use crate::alg::AlgSet;
use crate::keys::{parse_jwks, KeyMap};
use crate::text::display_url;
use arc_swap::ArcSwap;
use reqwest::header::{HeaderMap, ACCEPT, CACHE_CONTROL};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokengate_api::{AuthError, Secret};
use tokengate_kit::{read_json_limited, HttpFailure};
use url::Url;

/// Shortest refresh period a `Cache-Control: max-age` may impose: a provider
/// answering `max-age=0` must not turn every refresh check into a fetch.
pub(crate) const MIN_MAX_AGE: Duration = Duration::from_secs(60);
/// How often a key set with no usable keys is retried while requests wait.
pub(crate) const NO_KEYS_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Jwks(Url),
    Discovery { issuer: String, url: Url },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// No usable keys: the request cannot proceed without a fetch.
    Missing,
    /// A token named a kid the current set does not have.
    UnknownKid,
    /// The set is due for its periodic refresh (background).
    Periodic,
}

/// One published view of the key set. Replaced whole, never mutated.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) keys: Option<Arc<KeyMap>>,
    /// Completed fetch attempts, successful or not: lets queued requests see
    /// that a fetch finished while they waited.
    pub(crate) attempts: u64,
    refresh_at: Option<Instant>,
    usable_until: Option<Instant>,
    last_attempt: Option<Instant>,
    last_forced: Option<Instant>,
    /// Why the last attempt failed; `None` when it succeeded.
    pub(crate) last_error: Option<String>,
}

impl State {
    /// The keys, unless they are missing or older than the stale grace allows.
    pub(crate) fn usable_keys(&self, now: Instant) -> Option<&KeyMap> {
        match (&self.keys, self.usable_until) {
            (Some(keys), Some(until)) if now < until => Some(keys),
            _ => None,
        }
    }

    fn refresh_due(&self, now: Instant) -> bool {
        self.refresh_at.is_none_or(|at| now >= at)
    }
}

pub(crate) struct KeySetOptions {
    pub(crate) source: Source,
    pub(crate) client: reqwest::Client,
    pub(crate) token: Option<Secret>,
    pub(crate) allowed: AlgSet,
    pub(crate) max_keys: usize,
    pub(crate) max_response_bytes: usize,
    pub(crate) recheck: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) stale_grace: Duration,
}

pub(crate) struct KeySet {
    opts: KeySetOptions,
    state: ArcSwap<State>,
    gate: tokio::sync::Mutex<()>,
    background: AtomicBool,
    /// `jwks_uri` found by discovery; cleared when a fetch from it fails, so the
    /// next attempt re-discovers (the provider may have moved its keys).
    discovered: Mutex<Option<Url>>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("source", &self.describe_source()).finish_non_exhaustive()
    }
}

impl KeySet {
    pub(crate) fn new(opts: KeySetOptions) -> KeySet {
        KeySet {
            opts,
            state: ArcSwap::from_pointee(State::default()),
            gate: tokio::sync::Mutex::new(()),
            background: AtomicBool::new(false),
            discovered: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// The current state: lock-free, for the hot path.
    pub(crate) fn state(&self) -> arc_swap::Guard<Arc<State>> {
        self.state.load()
    }

    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Where the keys come from, for messages.
    pub(crate) fn describe_source(&self) -> String {
        match &self.opts.source {
            Source::Jwks(url) => display_url(url),
            Source::Discovery { issuer, .. } => format!("{issuer} (OIDC discovery)"),
        }
    }

    /// Whether a request without usable keys may trigger a fetch now.
    pub(crate) fn may_fetch_missing(&self, state: &State, now: Instant) -> bool {
        let retry = NO_KEYS_RETRY.min(self.opts.cooldown);
        state.last_attempt.is_none_or(|t| now.saturating_duration_since(t) >= retry)
    }

    /// Whether an unknown kid may force a fetch now (once per cooldown).
    pub(crate) fn may_force(&self, state: &State, now: Instant) -> bool {
        state.last_forced.is_none_or(|t| now.saturating_duration_since(t) >= self.opts.cooldown)
    }

    /// Why there are no usable keys, worded for a 503.
    pub(crate) fn unavailable(&self, state: &State) -> AuthError {
        let reason = state.last_error.as_deref().unwrap_or("no key set has been fetched yet");
        if state.keys.is_some() {
            AuthError::unavailable(format!(
                "the cached keys from {} are past their stale grace and cannot be refreshed: {reason}",
                self.describe_source()
            ))
        } else {
            AuthError::unavailable(reason.to_string())
        }
    }

    /// Starts a background refresh when the set is due and none is running.
    pub(crate) fn refresh_in_background_if_due(self: &Arc<Self>, state: &State, now: Instant) {
        if !state.refresh_due(now)
            || state.last_attempt.is_some_and(|t| now.saturating_duration_since(t) < self.opts.cooldown)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let observed = state.attempts;
        runtime.spawn(async move {
            // Reset even if the refresh panics, or periodic refreshes would stop for good.
            struct Reset(Arc<KeySet>);
            impl Drop for Reset {
                fn drop(&mut self) {
                    self.0.background.store(false, Ordering::Release);
                }
            }
            let reset = Reset(this);
            reset.0.refresh_locked(Why::Periodic, observed).await;
        });
    }

    /// Waits for a fetch (or for the one in flight) and returns the resulting state.
    pub(crate) async fn refresh(self: &Arc<Self>, why: Why, observed: u64) -> Arc<State> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.refresh_locked(why, observed).await;
        };
        let this = self.clone();
        // The fetch runs in its own task: a client hanging up must not cancel it
        // halfway and make the next queued request start another one.
        let task = runtime.spawn(async move { this.refresh_locked(why, observed).await });
        match task.await {
            Ok(state) => state,
            Err(_) => self.state.load_full(),
        }
    }

    async fn refresh_locked(&self, why: Why, observed: u64) -> Arc<State> {
        let _gate = self.gate.lock().await;
        let current = self.state.load_full();
        if current.attempts != observed {
            return current;
        }
        let now = Instant::now();
        let go = match why {
            Why::Missing => self.may_fetch_missing(&current, now),
            Why::UnknownKid => self.may_force(&current, now),
            Why::Periodic => {
                current.refresh_due(now)
                    && current.last_attempt.is_none_or(|t| now.saturating_duration_since(t) >= self.opts.cooldown)
            }
        };
        if !go {
            return current;
        }
        let outcome = self.fetch().await;
        let done = Instant::now();
        let last_forced = if why == Why::UnknownKid { Some(done) } else { current.last_forced };
        let next = match outcome {
            Ok((keys, max_age)) => {
                let period = match max_age {
                    Some(age) => self.opts.recheck.min(age.max(MIN_MAX_AGE)),
                    None => self.opts.recheck,
                };
                tracing::debug!(source = %self.describe_source(), keys = keys.len(), ?period, "key set fetched");
                State {
                    keys: Some(Arc::new(keys)),
                    attempts: current.attempts + 1,
                    refresh_at: Some(done + period),
                    usable_until: Some(done + period + self.opts.stale_grace),
                    last_attempt: Some(done),
                    last_forced,
                    last_error: None,
                }
            }
            Err(error) => {
                let kept = current.keys.as_ref().map_or(0, |k| k.len());
                tracing::warn!(error = %error.detail(), kept_keys = kept, "key set refresh failed");
                State {
                    keys: current.keys.clone(),
                    attempts: current.attempts + 1,
                    refresh_at: current.refresh_at,
                    usable_until: current.usable_until,
                    last_attempt: Some(done),
                    last_forced,
                    last_error: Some(error.detail().to_string()),
                }
            }
        };
        let next = Arc::new(next);
        self.state.store(next.clone());
        next
    }

    async fn fetch(&self) -> Result<(KeyMap, Option<Duration>), AuthError> {
        let url = match &self.opts.source {
            Source::Jwks(url) => url.clone(),
            Source::Discovery { issuer, url } => {
                let known = self.discovered.lock().ok().and_then(|d| d.clone());
                match known {
                    Some(jwks) => jwks,
                    None => {
                        let jwks =
                            crate::discovery::discover(&self.opts.client, url, issuer, self.opts.max_response_bytes)
                                .await?;
                        if let Ok(mut slot) = self.discovered.lock() {
                            *slot = Some(jwks.clone());
                        }
                        jwks
                    }
                }
            }
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let outcome = self.fetch_jwks(&url).await;
        let result = if outcome.is_ok() { "ok" } else { "error" };
        metrics::counter!("tokengate_idp_fetches_total", "provider" => "oauth2_token", "kind" => "jwks", "result" => result)
            .increment(1);
        if outcome.is_err() {
            if let Ok(mut slot) = self.discovered.lock() {
                *slot = None;
            }
        }
        outcome
    }

    async fn fetch_jwks(&self, url: &Url) -> Result<(KeyMap, Option<Duration>), AuthError> {
        let what = format!("key set at {}", display_url(url));
        let mut request =
            self.opts.client.get(url.clone()).header(ACCEPT, "application/jwk-set+json, application/json");
        if let Some(token) = &self.opts.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| HttpFailure::from_reqwest(&what, &e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(AuthError::unavailable(format!("{what}: answered HTTP {status}")));
        }
        let max_age = max_age(response.headers());
        let doc: Value = read_json_limited(&what, response, self.opts.max_response_bytes).await?;
        let keys = parse_jwks(&doc, self.opts.allowed, self.opts.max_keys, &what)
            .map_err(|reason| AuthError::unavailable(format!("{what}: {reason}")))?;
        Ok((keys, max_age))
    }
}

/// `Cache-Control: max-age` of a key-set response; `no-cache`/`no-store` read as 0
/// (and are then raised to [`MIN_MAX_AGE`] by the caller).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store") {
                return Some(Duration::ZERO);
            }
            if let Some((name, value)) = directive.split_once('=') {
                if name.trim().eq_ignore_ascii_case("max-age") {
                    if let Ok(secs) = value.trim().trim_matches('"').parse::<u64>() {
                        return Some(Duration::from_secs(secs));
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn cache_control_max_age() {
        let mut h = HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=120, must-revalidate"));
        assert_eq!(max_age(&h), Some(Duration::from_secs(120)));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(max_age(&h), Some(Duration::ZERO));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=abc"));
        assert_eq!(max_age(&h), None);
    }

    #[test]
    fn urls_lose_credentials_in_messages() {
        let url = Url::parse("https://user:pw@idp.example/jwks?key=secret").unwrap();
        let shown = display_url(&url);
        assert_eq!(shown, "https://idp.example/jwks?…");
    }
}
