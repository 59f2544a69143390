//! `tokengate explain`: what happened to a token, step by step.
//!
//! Runs the same pipeline as `check` — provider (or chain), revocation, route
//! policy — one stage at a time, and reports which provider owned the token,
//! every check made, and for each attribute value the claim and
//! `claims_mapping` rule it came from.
//!
//! For JWTs the structure, header and claim checks (`iss`, `aud`, `exp`,
//! `nbf`, `iat`) are recomputed here from the payload and the owning
//! `oauth2_token` section, after the provider's own verdict; key lookup and
//! signature results come from that verdict (only the provider holds the
//! keys). Checks the provider never reached (it stops at the first failure)
//! are not listed. Nothing here prints the token or any part of it.

use crate::{Config, Registry};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokengate_api::{AuthError, ConfigError, DynProvider, ErrorKind, Ownership, Principal, RequestContext};

/// The provider that owned the token.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Owner {
    /// Position in `providers` (0 for a single `provider_config`).
    pub index: usize,
    #[serde(rename = "type")]
    pub type_name: String,
    /// Where it is configured: `provider_config` or `providers[i]`.
    pub config: String,
    pub accepts: String,
}

/// One check and its result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// Where one attribute value came from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttributeSource {
    pub attribute: String,
    pub value: String,
    /// The claim it was read from; `null` when the provider set it otherwise
    /// (an API key's entry, a proxy header, an introspection answer).
    pub claim: Option<String>,
    /// The rule that produced it (`claims_mapping: groups -> teams`), or how the provider set it.
    pub rule: String,
}

/// The final error, shaped like `tokengate check`'s.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExplainedError {
    pub code: String,
    pub message: String,
    pub detail: String,
}

/// The whole explanation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Explanation {
    pub provider: Option<Owner>,
    pub checks: Vec<Check>,
    pub attributes: Vec<AttributeSource>,
    pub principal: Option<Principal>,
    pub error: Option<ExplainedError>,
    /// The error's kind, for exit codes.
    #[serde(skip)]
    pub error_kind: Option<ErrorKind>,
}

impl Explanation {
    /// Readable text for `--format text`. Control characters (which a crafted
    /// `kid` or claim could carry to a terminal) are shown as `?`.
    pub fn to_text(&self) -> String {
        self.raw_text().chars().map(|c| if c.is_control() && c != '\n' { '?' } else { c }).collect()
    }

    fn raw_text(&self) -> String {
        let mut out = String::new();
        match &self.provider {
            Some(o) => {
                let _ = writeln!(out, "provider: {} ({}) - {}", o.config, o.type_name, o.accepts);
            }
            None => out.push_str("provider: none owns this token\n"),
        }
        out.push_str("checks:\n");
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  [{mark}] {:<14} {}", c.check, c.detail);
        }
        if !self.attributes.is_empty() {
            out.push_str("attributes:\n");
            for a in &self.attributes {
                let from = match &a.claim {
                    Some(claim) => format!("claim {claim}, {}", a.rule),
                    None => a.rule.clone(),
                };
                let _ = writeln!(out, "  {} = {}   ({from})", a.attribute, a.value);
            }
        }
        if let Some(p) = &self.principal {
            let _ = writeln!(out, "principal: {}", p.principal);
        }
        if let Some(e) = &self.error {
            let _ = writeln!(out, "error: {}: {}", e.code, e.detail);
        }
        out
    }
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check { check: name.to_string(), ok, detail: detail.into() }
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
    let pipeline = config.build_pipeline(registry)?;
    let provider: DynProvider = pipeline.provider();
    let (members, revocation) = (pipeline.members, pipeline.revocation);
    let sections: Vec<Value> = config.member_sections().into_iter().cloned().collect();
    let single = config.settings.provider_config.is_some();

    let mut checks = Vec::new();
    let owner = ownership(&members, single, token, &mut checks);
    let jwt = Jwt::parse(token);
    match &jwt {
        Some(j) => checks.extend(j.structure_checks()),
        None if !token.is_empty() => {
            checks.push(check("shape", true, format!("opaque token (not a JWT), {} characters", token.chars().count())))
        }
        None => checks.push(check("shape", true, "no token (the provider reads the identity elsewhere)")),
    }

    let verdict = provider.validate(token, ctx).await;
    let owner_member = owner.as_ref().and_then(|o| members.get(o.index));
    let section = owner.as_ref().and_then(|o| sections.get(o.index));
    let local_jwt = match (&jwt, owner_member, section) {
        (Some(j), Some(m), Some(s)) if m.type_name() == "oauth2_token" && s.get("introspection").is_none() => {
            Some((j, s))
        }
        _ => None,
    };
    match local_jwt {
        Some((j, s)) => checks.extend(jwt_checks(j, s, config.from_llama_stack, &verdict)),
        None => {
            let name = owner.as_ref().map(|o| o.type_name.clone()).unwrap_or_else(|| provider.type_name().to_string());
            checks.push(match &verdict {
                Ok(p) => check("provider", true, format!("{name} accepted the token as {}", p.principal)),
                Err(e) => check("provider", false, format!("{name}: {}", e.detail())),
            });
        }
    }

    let mut outcome = verdict.clone();
    if let (Ok(_), Some(r)) = (&outcome, &revocation) {
        if !token.is_empty() {
            match r.check(token).await {
                Ok(()) => {
                    let list = r.list();
                    checks.push(check(
                        "revocation",
                        true,
                        format!("not revoked (list: {} jti, {} token hashes)", list.jti_count(), list.hash_count()),
                    ));
                }
                Err(e) => {
                    checks.push(check("revocation", false, e.detail()));
                    outcome = Err(e);
                }
            }
        }
    }
    if let (Ok(p), Some(policy)) = (&outcome, &pipeline.route_policy) {
        let decision = policy.evaluate(&ctx.method, &ctx.path, p);
        checks.push(check("route_policy", decision.is_permit(), decision.reason.clone()));
        if !decision.is_permit() {
            outcome = Err(AuthError::insufficient_scope(decision.reason));
        }
    }

    let attributes = match &verdict {
        Ok(p) => attribute_sources(p, jwt.as_ref(), owner_member, owner.as_ref()),
        Err(_) => Vec::new(),
    };
    if let Some(r) = &revocation {
        r.close();
    }
    let message = provider.error_message();
    provider.close().await;
    let (principal, error, error_kind) = match outcome {
        Ok(p) => (Some(p), None, None),
        Err(e) => (
            None,
            Some(ExplainedError { code: e.code().to_string(), message, detail: e.detail().to_string() }),
            Some(e.kind()),
        ),
    };
    Ok(Explanation { provider: owner, checks, attributes, principal, error, error_kind })
}

/// Which member owns `token`, with one `ownership` check saying how it was found.
fn ownership(members: &[DynProvider], single: bool, token: &str, checks: &mut Vec<Check>) -> Option<Owner> {
    let describe = |i: usize| if single { "provider_config".to_string() } else { format!("providers[{i}]") };
    let owner_of = |i: usize, p: &DynProvider| Owner {
        index: i,
        type_name: p.type_name().to_string(),
        config: describe(i),
        accepts: p.accepts(),
    };
    if members.len() == 1 {
        let p = &members[0];
        checks.push(check("ownership", true, format!("{} ({}) decides every token", describe(0), p.type_name())));
        return Some(owner_of(0, p));
    }
    let mut seen = Vec::new();
    for (i, p) in members.iter().enumerate() {
        let mine = if token.is_empty() { !p.needs_token() } else { p.ownership(token) == Ownership::Mine };
        if mine {
            seen.push(format!("{} {} owns it", describe(i), p.type_name()));
            checks.push(check("ownership", true, seen.join("; ")));
            return Some(owner_of(i, p));
        }
        let why = if token.is_empty() { "needs a token" } else { "not its kind of token" };
        seen.push(format!("{} {}: {why} (accepts {})", describe(i), p.type_name(), p.accepts()));
    }
    checks.push(check("ownership", false, format!("no provider owns it: {}", seen.join("; "))));
    None
}

/// A token that parses as a JWT: header and payload decoded, nothing verified.
struct Jwt {
    header: Map<String, Value>,
    payload: Option<Map<String, Value>>,
    signature_chars: usize,
}

impl Jwt {
    fn parse(token: &str) -> Option<Jwt> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header = decode_object(h)?;
        Some(Jwt { header, payload: decode_object(p), signature_chars: s.len() })
    }

    fn structure_checks(&self) -> Vec<Check> {
        let text = |name: &str| self.header.get(name).and_then(Value::as_str).map(str::to_string);
        let alg = text("alg");
        let mut header = format!("alg {}", alg.as_deref().unwrap_or("(missing)"));
        if let Some(kid) = text("kid") {
            let _ = write!(header, ", kid {kid}");
        }
        if let Some(typ) = text("typ") {
            let _ = write!(header, ", typ {typ}");
        }
        let mut out = vec![
            check("segments", true, "three base64url segments: header.payload.signature"),
            check("header", alg.is_some(), header),
        ];
        match &self.payload {
            Some(p) => {
                let names: Vec<&str> = p.keys().map(String::as_str).collect();
                out.push(check("payload", true, format!("a JSON object with claims {}", names.join(", "))));
            }
            None => out.push(check("payload", false, "the payload is not a base64url JSON object")),
        }
        if self.signature_chars == 0 {
            out.push(check("signature", false, "the token has no signature"));
        }
        out
    }
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Where the provider stopped, read from its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before key lookup: size, structure, header, algorithm.
    Parse,
    Key,
    Signature,
    Claims,
    Principal,
    /// Accepted.
    Done,
}

fn stage_of(verdict: &Result<Principal, AuthError>) -> Stage {
    let Err(e) = verdict else { return Stage::Done };
    let d = e.detail();
    let has = |s: &str| d.contains(s);
    if e.kind() == ErrorKind::Unavailable
        || has("unknown key id")
        || has("has no kid")
        || has("does not match key type")
        || has("restricts to")
    {
        Stage::Key
    } else if d.starts_with("signature invalid") || has(" is not allowed for ") {
        Stage::Signature
    } else if has("to name the principal") || has("cannot name the principal") {
        Stage::Principal
    } else if d.starts_with("token expired")
        || d.starts_with("token not valid before")
        || d.starts_with("token issued in the future")
        || d.starts_with("token has no exp")
        || d.starts_with("token has no iss")
        || d.starts_with("token has no aud")
        || d.starts_with("issuer ")
        || d.starts_with("audience ")
        || (d.starts_with("the ") && has(" claim "))
    {
        Stage::Claims
    } else {
        Stage::Parse
    }
}

fn jwt_checks(jwt: &Jwt, section: &Value, llama_stack: bool, verdict: &Result<Principal, AuthError>) -> Vec<Check> {
    let stage = stage_of(verdict);
    let detail = verdict.as_ref().err().map(|e| e.detail().to_string()).unwrap_or_default();
    let kid = jwt.header.get("kid").and_then(Value::as_str);
    let mut out = Vec::new();
    if stage == Stage::Parse {
        out.push(check("token", false, detail));
        return out;
    }
    let secret = section.get("secret").is_some();
    out.push(match (stage, secret) {
        (Stage::Key, _) => check("key", false, detail.clone()),
        (_, true) => check("key", true, "the configured shared secret"),
        (_, false) => check("key", true, format!("found in the key set (kid {})", kid.unwrap_or("(none)"))),
    });
    if stage == Stage::Key {
        return out;
    }
    out.push(match stage {
        Stage::Signature => check("signature", false, detail.clone()),
        _ => check("signature", true, "verified"),
    });
    if stage == Stage::Signature {
        return out;
    }
    let Some(claims) = &jwt.payload else { return out };
    out.extend(claim_checks(claims, section, llama_stack));
    if stage == Stage::Claims && out.iter().all(|c| c.ok) {
        // The provider refused on a claim the local recomputation accepts (clock
        // moved past `exp` in between, say): its word is the verdict.
        out.push(check("claims", false, detail.clone()));
    }
    if stage == Stage::Principal {
        out.push(check("principal", false, detail));
    } else if let Ok(p) = verdict {
        let claim = section.get("principal_claim").and_then(Value::as_str).unwrap_or("sub");
        out.push(check("principal", true, format!("{} (claim {claim})", p.principal)));
    }
    out
}

fn leeway_of(section: &Value) -> Duration {
    match section.get("leeway") {
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(Duration::from_secs_f64),
        Some(Value::String(s)) => humantime::parse_duration(s.trim()).ok(),
        _ => None,
    }
    .unwrap_or(Duration::from_secs(30))
}

fn rfc3339(secs: f64) -> String {
    if !(0.0..=253_402_300_799.0).contains(&secs) {
        return format!("{secs} (seconds since 1970)");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(secs)).to_string()
}

fn human(secs: f64) -> String {
    humantime::format_duration(Duration::from_secs(secs.abs().round() as u64)).to_string()
}

/// `exp`, `nbf`, `iat`, `iss` and `aud`, judged as the `oauth2_token` section would.
fn claim_checks(claims: &Map<String, Value>, section: &Value, llama_stack: bool) -> Vec<Check> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let leeway = leeway_of(section).as_secs_f64();
    let number = |name: &str| claims.get(name).map(|v| v.as_f64().filter(|f| f.is_finite()));
    let mut out = Vec::new();
    let allow_missing_exp = section.get("allow_missing_exp").and_then(Value::as_bool).unwrap_or(false);
    out.push(match number("exp") {
        None if allow_missing_exp => check("exp", true, "no exp claim (allowed by allow_missing_exp)"),
        None => check("exp", false, "token has no exp claim"),
        Some(None) => check("exp", false, "the exp claim is not a number"),
        Some(Some(exp)) if now > exp + leeway => {
            check("exp", false, format!("expired at {} ({} ago; leeway {leeway}s)", rfc3339(exp), human(now - exp)))
        }
        Some(Some(exp)) => check("exp", true, format!("expires at {} (in {})", rfc3339(exp), human(exp - now))),
    });
    match number("nbf") {
        None => {}
        Some(None) => out.push(check("nbf", false, "the nbf claim is not a number")),
        Some(Some(nbf)) if nbf > now + leeway => {
            out.push(check("nbf", false, format!("not valid before {} (in {})", rfc3339(nbf), human(nbf - now))))
        }
        Some(Some(nbf)) => out.push(check("nbf", true, format!("valid since {}", rfc3339(nbf)))),
    }
    match number("iat") {
        None => {}
        Some(None) => out.push(check("iat", false, "the iat claim is not a number")),
        Some(Some(iat)) if iat > now + leeway => {
            out.push(check("iat", false, format!("issued in the future ({})", rfc3339(iat))))
        }
        Some(Some(iat)) => out.push(check("iat", true, format!("issued at {}", rfc3339(iat)))),
    }
    let got_iss = claims.get("iss");
    out.push(match (section.get("issuer").and_then(Value::as_str), got_iss) {
        (None, Some(Value::String(iss))) => check("iss", true, format!("{iss} (no issuer configured; not checked)")),
        (None, _) => check("iss", true, "no issuer configured; not checked"),
        (Some(want), Some(Value::String(iss))) if iss == want => check("iss", true, format!("{iss} as configured")),
        (Some(want), Some(Value::String(iss))) => check("iss", false, format!("{iss} is not the expected {want}")),
        (Some(want), Some(_)) => check("iss", false, format!("the iss claim is not a string (expected {want})")),
        (Some(want), None) => check("iss", false, format!("token has no iss claim (expected {want})")),
    });
    let expected: Option<Vec<String>> = if section.get("allow_any_audience").and_then(Value::as_bool) == Some(true) {
        None
    } else {
        match section.get("audience") {
            Some(Value::String(a)) => Some(vec![a.clone()]),
            Some(Value::Array(items)) => Some(items.iter().filter_map(Value::as_str).map(str::to_string).collect()),
            _ if llama_stack => Some(vec![tokengate_oauth2::config::LLAMA_STACK_DEFAULT_AUDIENCE.to_string()]),
            _ => Some(Vec::new()),
        }
    };
    let got: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    out.push(match expected {
        None => check("aud", true, format!("[{}] (allow_any_audience: not checked)", got.join(", "))),
        Some(want) => {
            let hit = got.iter().find(|g| want.iter().any(|w| w == *g));
            match hit {
                Some(a) => check("aud", true, format!("{a} is one of [{}]", want.join(", "))),
                None if got.is_empty() => {
                    check("aud", false, format!("token has no aud claim (expected one of [{}])", want.join(", ")))
                }
                None => check("aud", false, format!("[{}] is not one of [{}]", got.join(", "), want.join(", "))),
            }
        }
    });
    out
}

fn attribute_sources(
    principal: &Principal,
    jwt: Option<&Jwt>,
    member: Option<&DynProvider>,
    owner: Option<&Owner>,
) -> Vec<AttributeSource> {
    let mut out: Vec<AttributeSource> = Vec::new();
    if let (Some(mapping), Some(Some(payload))) = (member.and_then(|m| m.claims_mapping()), jwt.map(|j| &j.payload)) {
        let claims = Value::Object(payload.clone());
        mapping.apply_traced(&claims, |attribute, value, claim| {
            // The first rule to yield a value is the one that put it there; `apply` drops repeats.
            if out.iter().any(|a| a.attribute == attribute && a.value == value) {
                return;
            }
            // Named by the mapping line itself: positions would not match the file,
            // whose key order the parsed config does not keep.
            out.push(AttributeSource {
                attribute: attribute.to_string(),
                value: value.to_string(),
                claim: Some(claim.to_string()),
                rule: format!("claims_mapping: {claim} -> {attribute}"),
            });
        });
    }
    let by = owner.map(|o| o.type_name.as_str()).unwrap_or("provider");
    for (attribute, values) in &principal.attributes {
        for value in values {
            if out.iter().any(|a| &a.attribute == attribute && &a.value == value) {
                continue;
            }
            out.push(AttributeSource {
                attribute: attribute.clone(),
                value: value.clone(),
                claim: None,
                rule: format!("set by the {by} provider"),
            });
        }
    }
    // Only what the principal really has: a mapping traced over a payload the
    // provider did not use (it should not happen) must not invent attributes.
    out.retain(|a| principal.attributes.get(&a.attribute).is_some_and(|v| v.contains(&a.value)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(d: &str) -> Result<Principal, AuthError> {
        Err(AuthError::invalid_token(d))
    }

    #[test]
    fn stages_from_oauth2_details() {
        assert_eq!(stage_of(&err("unknown key id \"k9\"")), Stage::Key);
        assert_eq!(stage_of(&Err(AuthError::unavailable("key set unreachable"))), Stage::Key);
        assert_eq!(stage_of(&err("signature invalid (alg ES256, key k1)")), Stage::Signature);
        assert_eq!(stage_of(&err("token expired at 2001-09-09T01:46:40Z")), Stage::Claims);
        assert_eq!(stage_of(&err("audience [\"x\"] is not one of [\"y\"]")), Stage::Claims);
        assert_eq!(stage_of(&err("the exp claim is not a number")), Stage::Claims);
        assert_eq!(stage_of(&err("token has no \"sub\" claim to name the principal")), Stage::Principal);
        assert_eq!(stage_of(&err("alg \"none\" (an unsigned token) is never accepted")), Stage::Parse);
        assert_eq!(stage_of(&Ok(Principal::new("a"))), Stage::Done);
    }
}
