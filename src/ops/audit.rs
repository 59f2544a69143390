//! The audit log: one JSON line per authentication decision.
//!
//! ```yaml
//! audit:
//!   output: stdout            # or stderr, or a file path (appended to; relative to the config file)
//! ```
//!
//! Each line:
//!
//! ```json
//! {"time":"2026-05-01T12:00:00.123Z","outcome":"deny","status":401,"code":"invalid_token",
//!  "principal":null,"provider":"oauth2_token","provider_index":1,"method":"GET","route":"/v1/models",
//!  "reason":"claim","detail":"token expired at 2026-05-01T11:00:00Z","token_sha256_prefix":"9f86d081884c"}
//! ```
//!
//! `reason` is the refusal's [`Reason`](tokengate_api::Reason) by its stable
//! name ([`Reason::code`](tokengate_api::Reason::code): `missing_credential`,
//! `signature`, `claim`, `revoked`, `policy`, `rate_limited`, …), the same
//! name the decision log and `tokengate_refusals_total` carry; `detail` is
//! the refusal in words, for a human.
//!
//! `route` is the path without its query (where tokens sometimes travel);
//! `token_sha256_prefix` is the first 12 hex digits of the token's identity
//! (`tokengate_kit::token_identity`: the SHA-256 of the token in canonical
//! form, which is the token itself for nearly every token issued), enough to
//! correlate lines with a known token, never the token; a JWT and its
//! re-encoded or ECDSA-malleated twins share it.
//!
//! Lines are handed to a writer thread through a bounded queue and written
//! and flushed one by one, so a slow disk never stalls request handling. If
//! the queue is full (the disk has stalled for thousands of decisions) lines
//! are dropped, counted in `tokengate_audit_dropped_total` and reported.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokengate_api::{ConfigError, RequestContext};
use tokengate_kit::token_identity;

use crate::pipeline::{Decision, Pipeline};

/// Lines waiting for the writer before new ones are dropped.
const QUEUE_LINES: usize = 16_384;

/// Hex digits of the token hash written.
pub const TOKEN_HASH_PREFIX_CHARS: usize = 12;

/// `audit:` in the config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `stdout`, `stderr`, or a file path.
    pub output: String,
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditOutput {
    /// `stdout` (or `-`).
    Stdout,
    /// `stderr`.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

impl AuditOutput {
    /// `stdout`, `stderr`, or a path (relative paths resolve against `base_dir`).
    pub fn parse(text: &str, base_dir: Option<&Path>) -> Result<Self, String> {
        match text.trim() {
            "" => Err("is empty; write `stdout`, `stderr` or a file path".into()),
            "stdout" | "-" => Ok(AuditOutput::Stdout),
            "stderr" => Ok(AuditOutput::Stderr),
            path => {
                let path = PathBuf::from(path);
                Ok(AuditOutput::File(match base_dir {
                    Some(base) if path.is_relative() => base.join(path),
                    _ => path,
                }))
            }
        }
    }
}

/// One decision, as written.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// `allow`, `deny`, `unavailable` or `error`.
    pub outcome: String,
    /// The HTTP status the request got.
    pub status: u16,
    /// The error code (`invalid_token`, `insufficient_scope`…); `null` when allowed.
    pub code: Option<String>,
    /// Who the token authenticated, also when revocation or the route policy then refused it;
    /// `null` when no provider accepted the token.
    pub principal: Option<String>,
    /// The principal's tenant; left out without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The provider that decided (in a chain, the member that owned the token).
    pub provider: String,
    /// Its position in `providers`, for chains.
    pub provider_index: Option<usize>,
    /// The request's method.
    pub method: String,
    /// The request's path, without its query (where tokens sometimes travel).
    pub route: String,
    /// Why it was refused, by the stable name of its `Reason`; `null` when allowed.
    pub reason: Option<String>,
    /// Why it was refused, in words; `null` when allowed.
    pub detail: Option<String>,
    /// The first [`TOKEN_HASH_PREFIX_CHARS`] hex digits of the token's identity; `null` without a token.
    pub token_sha256_prefix: Option<String>,
    /// The id of the stored credential (API key entry) accepted or refused; left
    /// out for tokens that are none (JWTs, introspection). Never the key or its hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl AuditRecord {
    /// The line for `decision`, made by `pipeline` for `ctx` and `token`.
    pub fn of(pipeline: &Pipeline, decision: &Decision, ctx: &RequestContext, token: &str) -> AuditRecord {
        let (provider, provider_index) = match &decision.owner {
            Some(o) if pipeline.members().len() > 1 => (o.type_name.to_string(), Some(o.index)),
            _ => (pipeline.name().to_string(), None),
        };
        let (status, code, principal, tenant, reason, detail) = match &decision.outcome {
            Ok(p) => (200, None, Some(p.principal.clone()), p.tenant.clone(), None, None),
            // Refused after the provider accepted it (revoked, route policy): who was refused.
            Err(e) => (
                e.kind().http_status(),
                Some(e.code().to_string()),
                decision.validated.as_ref().map(|p| p.principal.clone()),
                decision.validated.as_ref().and_then(|p| p.tenant.clone()),
                Some(e.reason().code().to_string()),
                Some(e.detail().to_string()),
            ),
        };
        AuditRecord {
            time: AuditRecord::now(),
            outcome: super::outcome_label(&decision.outcome).to_string(),
            status,
            code,
            principal,
            tenant,
            provider,
            provider_index,
            method: ctx.method.clone(),
            // Never the query: tokens sometimes travel there (`?access_token=`).
            route: ctx.path.clone(),
            reason,
            detail,
            token_sha256_prefix: token_hash_prefix(token),
            key_id: super::decision_key_id(decision).map(str::to_string),
        }
    }

    /// The current time as written in `time`.
    pub fn now() -> String {
        humantime::format_rfc3339_millis(SystemTime::now()).to_string()
    }
}

/// The first [`TOKEN_HASH_PREFIX_CHARS`] hex digits of the token's identity
/// ([`token_identity`]); `None` for no token.
pub fn token_hash_prefix(token: &str) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    let mut hex = hex::encode(token_identity(token));
    hex.truncate(TOKEN_HASH_PREFIX_CHARS);
    Some(hex)
}

enum Message {
    Line(String),
    Flush(SyncSender<()>),
}

/// The audit log handle. Cheap to clone; the writer thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Message>,
    output: Arc<AuditOutput>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("output", &self.output).finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens `output` now (so a bad path is a start-up error, not a silent
    /// loss) and starts the writer thread.
    pub fn open(output: AuditOutput) -> Result<Self, ConfigError> {
        let sink: Box<dyn Write + Send> = match &output {
            AuditOutput::Stdout => Box::new(std::io::stdout()),
            AuditOutput::Stderr => Box::new(std::io::stderr()),
            AuditOutput::File(path) => {
                let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
                    ConfigError::new("audit.output", format!("cannot open {} for appending: {e}", path.display()))
                })?;
                Box::new(std::io::BufWriter::new(file))
            }
        };
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE_LINES);
        let shown = match &output {
            AuditOutput::File(p) => p.display().to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        std::thread::Builder::new()
            .name("tokengate-audit".into())
            .spawn(move || writer(sink, rx, shown))
            .map_err(|e| ConfigError::new("audit", format!("cannot start the audit writer thread: {e}")))?;
        Ok(AuditLog { tx, output: Arc::new(output), dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// From the config section; `base_dir` resolves a relative path.
    pub fn from_config(config: &AuditConfig, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let output = AuditOutput::parse(&config.output, base_dir).map_err(|m| ConfigError::new("audit.output", m))?;
        Self::open(output)
    }

    /// Where the lines go.
    pub fn output(&self) -> &AuditOutput {
        &self.output
    }

    /// Queues one line; never blocks.
    pub fn record(&self, record: &AuditRecord) {
        let line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!("cannot serialize an audit record: {e}");
                return;
            }
        };
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("tokengate_audit_dropped_total").increment(1);
                let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                // Once per thousand, or the log would drown in its own reports.
                if n % 1000 == 0 {
                    tracing::error!(dropped = n + 1, "audit queue full (output stalled?); audit lines dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                metrics::counter!("tokengate_audit_dropped_total").increment(1);
                tracing::error!("the audit writer has stopped; audit line dropped");
            }
        }
    }

    /// Waits (blocking, at most `timeout`) until every line queued so far is
    /// written and flushed. For tests and one-shot commands before they exit.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if self.tx.send(Message::Flush(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
    }
}

fn writer(mut sink: Box<dyn Write + Send>, rx: mpsc::Receiver<Message>, shown: String) {
    let mut failing = false;
    for message in rx {
        match message {
            Message::Line(mut line) => {
                line.push('\n');
                let result = sink.write_all(line.as_bytes()).and_then(|()| sink.flush());
                match (result, failing) {
                    (Ok(()), true) => {
                        tracing::info!(output = %shown, "audit output writable again");
                        failing = false;
                    }
                    (Err(e), false) => {
                        metrics::counter!("tokengate_audit_write_errors_total").increment(1);
                        tracing::error!(output = %shown, "cannot write the audit log: {e}");
                        failing = true;
                    }
                    (Err(_), true) => {
                        metrics::counter!("tokengate_audit_write_errors_total").increment(1);
                    }
                    (Ok(()), false) => {}
                }
            }
            Message::Flush(ack) => {
                let _ = sink.flush();
                let _ = ack.send(());
            }
        }
    }
    let _ = sink.flush();
}

/// The text log's field formatter: every value (the message included) with
/// control characters escaped. Values come from clients (paths, claims quoted
/// in refusal reasons, principals), and the default formatter writes
/// `%`-recorded values raw, so one `\n` could start a forged line.
#[cfg(feature = "cli")]
pub fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    EscapingFields
}

/// The fields of one event, `name=value` with a space between them, every value as its `Debug`.
#[cfg(feature = "cli")]
struct EscapingFields;

#[cfg(feature = "cli")]
impl<'w> tracing_subscriber::field::MakeVisitor<tracing_subscriber::fmt::format::Writer<'w>> for EscapingFields {
    type Visitor = EscapingVisitor<'w>;

    fn make_visitor(&self, writer: tracing_subscriber::fmt::format::Writer<'w>) -> Self::Visitor {
        EscapingVisitor { writer, seen: false, result: Ok(()) }
    }
}

#[cfg(feature = "cli")]
struct EscapingVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    seen: bool,
    result: std::fmt::Result,
}

#[cfg(feature = "cli")]
impl EscapingVisitor<'_> {
    fn field(&mut self, field: &tracing::field::Field, value: impl FnOnce(&mut Self) -> std::fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let delimiter = if std::mem::replace(&mut self.seen, true) { " " } else { "" };
        self.result = self.writer.write_str(delimiter);
        if self.result.is_ok() && field.name() != "message" {
            self.result = self.writer.write_str(field.name()).and_then(|()| self.writer.write_char('='));
        }
        if self.result.is_ok() {
            self.result = value(self);
        }
    }
}

#[cfg(feature = "cli")]
impl tracing::field::Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        // What `Debug` writes for printable ASCII without `"` or `\`, without
        // going through it: a line per decision, each value a few of these.
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            return self.record_debug(field, &value);
        }
        self.field(field, |v| {
            v.writer.write_char('"')?;
            v.writer.write_str(value)?;
            v.writer.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // Escaped as it is written, not formatted into a copy first.
        self.field(field, |v| {
            std::fmt::Write::write_fmt(&mut EscapingControls(&mut v.writer), format_args!("{value:?}"))
        });
    }
}

#[cfg(feature = "cli")]
impl tracing_subscriber::field::VisitOutput<std::fmt::Result> for EscapingVisitor<'_> {
    fn finish(self) -> std::fmt::Result {
        self.result
    }
}

#[cfg(feature = "cli")]
impl tracing_subscriber::field::VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        &mut self.writer
    }
}

/// Whether `c` is escaped wherever tokengate writes text a person reads line
/// by line (the log, `explain --format text`, the CLI's errors and JSON): the
/// control characters (C0 with `\n`, `\r`, `\t` and ESC; DEL; C1 with NEL,
/// U+0085), the Unicode line and paragraph separators (U+2028, U+2029), which
/// editors and log viewers break lines at, the bidirectional formatting
/// characters, which reorder what a terminal shows, and the characters shown
/// as nothing (zero-width space, BOM, …): see [`tokengate_api::is_invisible_or_bidi`].
/// A claim carrying one could otherwise start a line of its own
/// (`principal: admin`) or pass for another (`admin\u{200b}`).
pub fn needs_escape(c: char) -> bool {
    c.is_control() || tokengate_api::is_invisible_or_bidi(c)
}

/// A writer that passes text on with every character [`needs_escape`] names escaped, as [`escape_controls`] does.
struct EscapingControls<'a, W: std::fmt::Write>(&'a mut W);

impl<W: std::fmt::Write> std::fmt::Write for EscapingControls<'_, W> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        // Printable ASCII, what nearly every value is, needs no look at its characters
        // (a table of the lead bytes of the rest would have to follow the predicate).
        if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return self.0.write_str(text);
        }
        let mut start = 0;
        for (i, c) in text.char_indices().filter(|(_, c)| needs_escape(*c)) {
            self.0.write_str(&text[start..i])?;
            for escaped in c.escape_default() {
                self.0.write_char(escaped)?;
            }
            start = i + c.len_utf8();
        }
        self.0.write_str(&text[start..])
    }
}

/// `text` with every character [`needs_escape`] names escaped as Rust writes
/// it (`\n` → `\\n`, ESC → `\\u{1b}`), so that it stays on one line and reads
/// as it is stored.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    // Writing into a String cannot fail.
    let _ = std::fmt::Write::write_str(&mut EscapingControls(&mut out), text);
    std::borrow::Cow::Owned(out)
}

/// JSON text as `serde_json` writes it, with every character [`needs_escape`]
/// names written as a `\uXXXX` escape: the same document, which a terminal
/// shows on the lines it was laid out on. (`serde_json` already escapes C0
/// inside strings, so a raw `\n` is layout; the others can only be in strings.)
pub fn escape_in_json(json: &str) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| c != '\n' && needs_escape(c);
    if !json.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    /// What a test subscriber wrote.
    #[cfg(feature = "cli")]
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    #[cfg(feature = "cli")]
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    #[cfg(feature = "cli")]
    fn no_logged_value_can_start_a_line_of_its_own() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(escaping_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let forged = "bob\nINFO tokengate::decision: allowed principal=root";
            tracing::info!(principal = %forged, reason = forged, "refused: {forged}");
            tracing::info!(principal = %"é\u{1b}[0m\r\u{85}x", "second");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(text.matches("bob\\nINFO").count(), 3, "{text}");
        assert!(text.contains(r"second principal=é\u{1b}[0m\r\u{85}x"), "{text}");
    }

    /// The log line's shape is what operators parse: the same text as `Debug`
    /// of each value, escaped after formatting, gives.
    #[test]
    #[cfg(feature = "cli")]
    fn fields_read_as_debug_then_escaped() {
        use tracing_subscriber::field::MakeExt;
        let reference = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
            let text = format!("{value:?}");
            let text = escape_controls(&text);
            match field.name() {
                "message" => write!(w, "{text}"),
                name => write!(w, "{name}={text}"),
            }
        })
        .delimited(" ");
        let values = [
            "alice",
            "",
            "a b",
            "say \"hi\"",
            "back\\slash",
            "tab\there",
            "line\nnext",
            "é",
            "¢",
            "\u{85}",
            "\u{7f}",
            "\u{1b}[0m",
            "\u{200b}",
            "😀",
            "'",
            "%41",
            "x\u{c2}\u{a0}",
        ];
        let mut lines = Vec::new();
        for fields in [0, 1] {
            let buffer = Buffer::default();
            let writer = buffer.clone();
            let builder = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).without_time();
            let emit = || {
                for v in values {
                    tracing::info!(principal = ?v, path = v, shown = %v, latency_ms = 1.5, n = 3u64, ok = true, "{v}");
                }
            };
            match fields {
                0 => tracing::subscriber::with_default(builder.fmt_fields(escaping_fields()).finish(), emit),
                _ => tracing::subscriber::with_default(builder.fmt_fields(reference.clone()).finish(), emit),
            }
            lines.push(String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap());
        }
        assert_eq!(lines[0].lines().count(), values.len(), "{}", lines[0]);
        assert_eq!(lines[0], lines[1]);
    }

    #[test]
    fn log_values_cannot_start_a_line() {
        assert_eq!(escape_controls("alice"), "alice");
        assert_eq!(escape_controls("a\nINFO forged\r\u{1b}[0m"), "a\\nINFO forged\\r\\u{1b}[0m");
        // #20: line separators and bidirectional overrides too; other text, accents and dashes included, is kept.
        assert_eq!(
            escape_controls("a\u{2028}b\u{2029}c\u{85}d\u{202e}e\u{2066}f\u{200f}g\u{61c}h\t"),
            "a\\u{2028}b\\u{2029}c\\u{85}d\\u{202e}e\\u{2066}f\\u{200f}g\\u{61c}h\\t"
        );
        assert_eq!(escape_controls("équipe – ‘x’ ✓ 中 😀"), "équipe – ‘x’ ✓ 中 😀");
        // Review round 2: what shows as nothing (`admin\u{200b}` reads `admin`) is written out too.
        assert_eq!(
            escape_controls("a\u{200b}b\u{feff}c\u{2060}d\u{ad}e\u{180e}f\u{e0041}"),
            "a\\u{200b}b\\u{feff}c\\u{2060}d\\u{ad}e\\u{180e}f\\u{e0041}"
        );
    }

    #[test]
    fn json_stays_the_same_document_on_its_own_lines() {
        let value = serde_json::json!({"p": "a\nb\u{85}c\u{2028}d\u{202e}e\u{7f}f é 😀", "n": [1, "x\u{1b}"]});
        for text in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
            let escaped = escape_in_json(&text);
            assert!(!escaped.chars().any(|c| c != '\n' && needs_escape(c)), "{escaped}");
            assert_eq!(escaped.lines().count(), text.lines().count());
            assert_eq!(serde_json::from_str::<serde_json::Value>(&escaped).unwrap(), value);
            assert!(escaped.contains(r"b\u0085c\u2028d\u202ee\u007ff é 😀"), "{escaped}");
        }
    }

    use super::*;

    fn record(detail: Option<&str>) -> AuditRecord {
        AuditRecord {
            time: AuditRecord::now(),
            outcome: "deny".into(),
            status: 401,
            code: Some("invalid_token".into()),
            principal: None,
            tenant: None,
            provider: "api_key".into(),
            provider_index: None,
            method: "GET".into(),
            route: "/x".into(),
            reason: detail.map(|_| "rejected".into()),
            detail: detail.map(Into::into),
            token_sha256_prefix: token_hash_prefix("tok"),
            key_id: None,
        }
    }

    /// Issue #22: the key id is in the line when there is one, and left out otherwise.
    #[test]
    fn key_id_is_written_only_when_known() {
        let line = serde_json::to_value(record(None)).unwrap();
        assert!(line.get("key_id").is_none(), "{line}");
        let line = serde_json::to_value(AuditRecord { key_id: Some("key_abc".into()), ..record(None) }).unwrap();
        assert_eq!(line["key_id"], "key_abc");
    }

    /// Issue #21: a JWT and the twins anyone can make of it (the other ECDSA S,
    /// a padded signature) are one token in the audit log too.
    #[test]
    fn twins_of_a_token_share_one_digest() {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let signature: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37).wrapping_add(0x91)).collect();
        let token = format!("{}.{}.{}", b64(br#"{"alg":"ES256"}"#), b64(br#"{"sub":"a"}"#), b64(&signature));
        let twin = tokengate_kit::ecdsa::flip_s(&token).unwrap();
        let padded = format!("{token}==");
        let digest = token_hash_prefix(&token);
        assert_eq!(token_hash_prefix(&twin), digest);
        assert_eq!(token_hash_prefix(&padded), digest);
        let (input, _) = token.rsplit_once('.').unwrap();
        assert_ne!(token_hash_prefix(&format!("{input}.{}", b64(&[7u8; 64]))), digest, "another signature");
    }

    #[test]
    fn lines_are_json_and_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let log = AuditLog::from_config(&AuditConfig { output: "audit.jsonl".into() }, Some(dir.path())).unwrap();
        log.record(&record(Some("unknown \"key\"\nnext")));
        log.record(&record(None));
        assert!(log.flush(Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!((&lines[1]["reason"], &lines[1]["detail"]), (&"rejected".into(), &"unknown \"key\"\nnext".into()));
        assert_eq!(lines[1]["token_sha256_prefix"], &hex::encode(token_identity("tok"))[..12]);
        assert!(lines[2]["reason"].is_null() && lines[2]["detail"].is_null());
        let t = lines[1]["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(t).is_ok(), "{t}");
    }

    #[test]
    fn unopenable_output_is_a_config_error() {
        let e = AuditLog::open(AuditOutput::File("/nonexistent-dir/x/audit.jsonl".into())).unwrap_err();
        assert_eq!(e.field, "audit.output");
        assert!(e.message.contains("cannot open /nonexistent-dir/x/audit.jsonl"), "{e}");
        assert!(AuditOutput::parse(" ", None).is_err());
        assert_eq!(AuditOutput::parse("stdout", None).unwrap(), AuditOutput::Stdout);
    }
}
