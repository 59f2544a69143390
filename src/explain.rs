//! `tokengate explain`: what happened to a token, step by step.
//!
//! Renders a traced [`Decision`] of the same pipeline `check` runs: which
//! provider owned the token, every check each stage made (the provider's own,
//! such as `oauth2_token`'s key, signature and claim checks, then revocation
//! and route policy), and for each attribute value the claim and
//! `claims_mapping` rule it came from. Nothing is recomputed here: a check
//! the pipeline never reached (it stops at the first failure) is not listed.
//! Nothing here prints the token or any part of it.
//!
//! May import: [`crate::config`], [`crate::pipeline`] and [`crate::ops`] (its escaping).

use crate::config::{Config, Registry};
use crate::ops::audit::escape_controls;
use crate::pipeline::Decision;
use serde::Serialize;
use std::fmt::Write as _;
use tokengate_api::{AuthError, ConfigError, ErrorKind, Principal, RequestContext, Trace};

/// One check and its result.
pub type Check = tokengate_api::Check;
/// Where one attribute value came from.
pub type AttributeSource = tokengate_api::TracedAttribute;

/// The provider that owned the token.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Owner {
    /// Position in `providers` (0 for a single `provider_config`).
    pub index: usize,
    /// Its `type` (`oauth2_token`, `api_key`…).
    #[serde(rename = "type")]
    pub type_name: String,
    /// Where it is configured: `provider_config` or `providers[i]`.
    pub config: String,
    /// What it accepts, as its 401 message says (`JWTs from https://idp`).
    pub accepts: String,
}

/// The final error, shaped like `tokengate check`'s.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExplainedError {
    /// The machine code (`invalid_token`, …).
    pub code: String,
    /// The typed reason's stable name (`claim`, `policy`, …), as the audit line says it.
    pub reason: String,
    /// What the client is told: the provider's 401 message, or for a 403 of
    /// an authenticated caller, that it is not allowed here.
    pub message: String,
    /// What failed, for the operator; never the token or a secret.
    pub detail: String,
}

/// The whole explanation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Explanation {
    /// The provider that owned the token; `None` when none did.
    pub provider: Option<Owner>,
    /// Every check made, in order, up to the first failure.
    pub checks: Vec<Check>,
    /// Where each attribute value came from.
    pub attributes: Vec<AttributeSource>,
    /// Who the token authenticated, when it was accepted.
    pub principal: Option<Principal>,
    /// Why it was refused, when it was.
    pub error: Option<ExplainedError>,
    /// The error's kind, for exit codes.
    #[serde(skip)]
    pub error_kind: Option<ErrorKind>,
}

impl Explanation {
    /// Readable text for `--format text`, a line per fact. Every value in it
    /// (a claim, a `kid`, an issuer, an error detail) is written through
    /// [`escape_controls`], as the log writes them, so that a crafted one
    /// cannot start a line of its own (a forged `principal:` or `[ok  ]`) or
    /// send a terminal escape.
    pub fn to_text(&self) -> String {
        let e = |text: &str| escape_controls(text).into_owned();
        let mut out = String::new();
        match &self.provider {
            Some(o) => {
                let _ = writeln!(out, "provider: {} ({}) - {}", e(&o.config), e(&o.type_name), e(&o.accepts));
            }
            None if self.checks.iter().all(|c| c.check == "route_policy") => {
                out.push_str("provider: none configured (authentication is off; route_policy alone decides)\n")
            }
            None => out.push_str("provider: none owns this token\n"),
        }
        out.push_str("checks:\n");
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  [{mark}] {:<14} {}", e(&c.check), e(&c.detail));
        }
        if !self.attributes.is_empty() {
            out.push_str("attributes:\n");
            for a in &self.attributes {
                let from = match &a.claim {
                    Some(claim) => format!("claim {}, {}", e(claim), e(&a.rule)),
                    None => e(&a.rule),
                };
                let _ = writeln!(out, "  {} = {}   ({from})", e(&a.attribute), e(&a.value));
            }
        }
        if let Some(p) = &self.principal {
            let _ = writeln!(out, "principal: {}", e(&p.principal));
            if let Some(tenant) = &p.tenant {
                let _ = writeln!(out, "tenant: {}", e(tenant));
            }
            if !p.unknown_attributes.is_empty() {
                let unknown: Vec<String> = p.unknown_attributes.iter().map(|a| e(a)).collect();
                let _ = writeln!(out, "unknown attributes: {}", unknown.join(", "));
            }
        }
        if let Some(err) = &self.error {
            let _ = writeln!(out, "error: {} ({}): {}", e(&err.code), e(&err.reason), e(&err.detail));
        }
        out
    }
}

/// Explains what `config` makes of `token` for the request `ctx`.
///
/// `Err` only when the config cannot be built; a rejected token is an
/// explanation with an `error`.
pub async fn explain(
    config: &Config,
    registry: &Registry,
    token: &str,
    ctx: &RequestContext,
) -> Result<Explanation, ConfigError> {
    let pipeline = config.build(registry)?;
    let mut ctx = ctx.clone();
    ctx.trace = Trace::on();
    // An explanation must not spend the caller's rate or quota (shared in Redis): the limits only say what they would decide.
    ctx.peek_limits = true;
    if pipeline.is_anonymous() {
        // What `serve` and the layer do without a provider: route_policy alone, no token read.
        let outcome = pipeline.admit_anonymous(&ctx);
        pipeline.close().await;
        let (error, error_kind) = match outcome {
            Ok(()) => (None, None),
            Err(e) => (Some(ExplainedError::of(&e, pipeline.refusal_message(&e, None))), Some(e.kind())),
        };
        let checks = ctx.trace.checks();
        return Ok(Explanation { provider: None, checks, attributes: Vec::new(), principal: None, error, error_kind });
    }
    let decision = pipeline.decide(token, &ctx).await;
    let provider = decision.owner.as_ref().and_then(|o| {
        let m = pipeline.members().get(o.index)?;
        Some(Owner {
            index: o.index,
            type_name: m.type_name().to_string(),
            config: m.position().to_string(),
            accepts: m.description().accepts.clone(),
        })
    });
    let message = match &decision.outcome {
        Ok(_) => String::new(),
        Err(e) => pipeline.refusal_message(e, decision.validated.as_ref()),
    };
    pipeline.close().await;
    Ok(render(decision, provider, message))
}

impl ExplainedError {
    fn of(e: &AuthError, message: String) -> Self {
        ExplainedError {
            code: e.code().to_string(),
            reason: e.reason().code().to_string(),
            message,
            detail: e.detail().to_string(),
        }
    }
}

fn render(decision: Decision, provider: Option<Owner>, message: String) -> Explanation {
    let (principal, error, error_kind) = match decision.outcome {
        Ok(p) => (Some(p), None, None),
        Err(e) => (None, Some(ExplainedError::of(&e, message)), Some(e.kind())),
    };
    Explanation { provider, checks: decision.trace, attributes: decision.attributes, principal, error, error_kind }
}
