//! What operators watch: the decision log event, metrics, the audit log, and
//! the Redis store replicas share.
//!
//! Owns how a decision is recorded; the token never appears in any record.
//! May import: [`crate::pipeline`] (decisions, the revocation store trait)
//! and [`crate::path`]; never the config or HTTP layers above.

pub mod audit;
pub mod metrics;
pub mod redis;

use crate::pipeline::Decision;
use std::time::Duration;
use tokengate_api::{AuthError, ErrorKind, Principal, RequestContext};

/// The `outcome` label of a decision: `allow`, `deny`, `unavailable` or `error`.
pub fn outcome_label(outcome: &Result<Principal, AuthError>) -> &'static str {
    match outcome {
        Ok(_) => "allow",
        Err(e) => refusal_label(e.kind()),
    }
}

/// The `outcome` label of a refusal of `kind`: `deny`, `unavailable` or `error`.
pub fn refusal_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Config => "error",
        _ => "deny",
    }
}

/// The id of the stored credential (API key entry) a decision accepted or
/// refused: the accepted principal's, else the one the refusal names (a
/// suspended key), else the principal's that was then refused (route policy).
pub fn decision_key_id(decision: &Decision) -> Option<&str> {
    match &decision.outcome {
        Ok(p) => p.key_id(),
        Err(e) => e.key_id().or_else(|| decision.validated.as_ref().and_then(|p| p.key_id())),
    }
}

/// Counts and times one decision and logs it as one event with target
/// `tokengate::decision` (INFO for allow and deny, WARN for an unavailable
/// identity service, ERROR for a misconfigured provider). A refusal is also
/// counted by its [`Reason`](tokengate_api::Reason) and logged with it
/// (`reason`, the stable name, and `detail`, the words); a refusal of a
/// principal the provider accepted (revoked, route policy) names who was refused.
pub fn record_decision(provider: &str, decision: &Decision, ctx: &RequestContext, elapsed: Duration) {
    let outcome = &decision.outcome;
    let label = outcome_label(outcome);
    metrics::record(label, provider, elapsed);
    // Microsecond resolution is plenty, and keeps log lines short.
    let latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    // `ctx.path` never holds the query, where tokens sometimes travel (`?access_token=`).
    let (method, path) = (ctx.method.as_str(), ctx.path.as_str());
    let key_id = decision_key_id(decision);
    let e = match outcome {
        Ok(p) => {
            tracing::info!(
                target: "tokengate::decision",
                outcome = label, principal = ?p.principal, tenant = p.tenant.as_deref(), key_id, provider, latency_ms,
                method, path, "allowed"
            );
            return;
        }
        Err(e) => e,
    };
    metrics::record_refusal(e.reason().code(), provider);
    // `reason` is the stable name every report shares; `detail` the words for a human.
    let (code, reason, detail) = (e.code(), e.reason().code(), e.detail());
    match e.kind() {
        ErrorKind::Unavailable => tracing::warn!(
            target: "tokengate::decision",
            outcome = label, provider, latency_ms, method, path, code, reason, detail,
            "identity service unavailable"
        ),
        ErrorKind::Config => tracing::error!(
            target: "tokengate::decision",
            outcome = label, provider, latency_ms, method, path, code, reason, detail,
            "provider misconfigured"
        ),
        _ => match &decision.validated {
            Some(p) => tracing::info!(
                target: "tokengate::decision",
                outcome = label, principal = ?p.principal, tenant = p.tenant.as_deref(), key_id, provider, latency_ms,
                method, path, code, reason, detail, "denied"
            ),
            None => tracing::info!(
                target: "tokengate::decision",
                outcome = label, key_id, provider, latency_ms, method, path, code, reason, detail,
                "denied"
            ),
        },
    }
}
