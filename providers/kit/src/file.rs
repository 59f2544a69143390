//! Reloadable documents: a YAML or JSON file an operator rewrites while
//! tokengate runs (the revocation list, the API key file), read with a size
//! cap, an empty file refused and parse errors located by file and field, and
//! the SHA-256 digests such files list; [`Poller`], the task that re-reads one.

use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokengate_api::TokenHash;

/// Reads and parses `path` as JSON (by a `.json` extension, any case) or YAML.
///
/// Errors name the file: unreadable (`cannot read {path}: …`), larger than
/// `max_bytes` (`{path} is N bytes; {what} may hold at most {max_bytes}`),
/// empty or blank (`{path} is empty; {empty_hint}`: what a half-done `>`
/// redirect leaves behind, which must never read as an empty document), or
/// not of type `T` (`{path} at `field.path`: message`, the location left out
/// where the error is about the whole document).
pub fn read_document<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    max_bytes: u64,
    empty_hint: &str,
) -> Result<T, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > max_bytes {
        return Err(format!("{shown} is {} bytes; {what} may hold at most {max_bytes}", meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if text.trim().is_empty() {
        return Err(format!("{shown} is empty; {empty_hint}"));
    }
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let located = |at: String, message: String| {
        let at = if at == "." { String::new() } else { format!(" at `{at}`") };
        format!("{shown}{at}: {message}")
    };
    if is_json {
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| located(e.path().to_string(), e.into_inner().to_string()))
    } else {
        serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(&text))
            .map_err(|e| located(e.path().to_string(), e.into_inner().to_string()))
    }
}

/// A SHA-256 digest as such files list it: 64 hex digits, optionally prefixed
/// `sha256:`. The error never echoes `text` (a value that is not a digest may
/// be the secret itself) and ends with `hint`, in parentheses: how to write
/// the digest instead.
pub fn parse_sha256(text: &str, hint: &str) -> Result<TokenHash, String> {
    let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
    if hex_part.len() != 64 {
        return Err(format!(
            "is not a SHA-256 digest: expected 64 hex digits, optionally prefixed `sha256:`, got {} characters \
             ({hint})",
            hex_part.chars().count()
        ));
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut digest)
        .map_err(|_| "is not a SHA-256 digest: it contains characters other than hex digits".to_string())?;
    Ok(digest)
}

/// The background task that re-checks a reloadable file every period.
///
/// [`Poller::ensure`] is called on every use, not once: a task dies with the
/// runtime it was spawned on (a provider built by one runtime and served by
/// another), and is then started again on the current one. Dropping the
/// poller stops its task.
#[derive(Default)]
pub struct Poller {
    /// True from spawning the task until its future is dropped.
    running: Arc<AtomicBool>,
    closed: AtomicBool,
    handle: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Clears the `running` flag when the task's future is dropped.
struct RunningFlag(Arc<AtomicBool>);

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Poller {
    /// Starts the task when there is a tokio runtime, the poller is not
    /// closed and no task is running: every `period` (the first one after a
    /// period; the file was just loaded) it runs `check` on `target` on the
    /// blocking pool (file I/O blocks), until `target` is dropped (held
    /// weakly) or the runtime shuts down.
    pub fn ensure<T: Send + Sync + 'static>(&self, target: &Arc<T>, period: Duration, check: fn(&T)) {
        if self.closed.load(Ordering::Acquire) || self.running.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let mut handle = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        // Re-checked under the lock: concurrent callers start one task.
        if self.running.swap(true, Ordering::AcqRel) || self.closed.load(Ordering::Acquire) {
            return;
        }
        let running = RunningFlag(self.running.clone());
        let weak = Arc::downgrade(target);
        let task = runtime.spawn(async move {
            // Dropped with this future (end, abort, or runtime shutdown), which
            // tells `ensure` to start a new task.
            let _running = running;
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate
            loop {
                ticker.tick().await;
                let Some(target) = weak.upgrade() else { break };
                if tokio::task::spawn_blocking(move || check(&target)).await.is_err() {
                    break; // the runtime is shutting down
                }
            }
        });
        *handle = Some(task.abort_handle());
    }

    /// Whether a task is running.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Stops the task for good: `ensure` starts none after this.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(task) = self.handle.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            task.abort();
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        if let Some(task) = self.handle.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}
