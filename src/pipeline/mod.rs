//! The decision pipeline: from a token and its request to a [`Decision`].
//!
//! Owns the stages every front end runs, in this order (the tower layer,
//! `tokengate serve`, `check` and `explain` all hold a [`Pipeline`]):
//!
//! 1. **ownership**: the first member whose [`AuthProvider::ownership`] says
//!    [`Ownership::Mine`] decides, and its rejection is final (falling through
//!    on rejection would let the weakest provider decide). A request without a
//!    token belongs to the first member that needs none (`upstream_header`);
//!    a single member decides every token;
//! 2. **provider**: the owner validates the token;
//! 3. **principal**: an empty principal, or one with control characters, is
//!    refused: it would be no identity at all, or would forge log lines and
//!    header boundaries in whatever reads it next;
//! 4. **tenancy** ([`tenancy`]): the deployment's mode settles the tenant
//!    (`single` sets it, `multi` requires one, 401 otherwise);
//! 5. **revocation** ([`revocation`]): revoked tokens get 401 — before the
//!    route policy, so a revoked token is told it is revoked, not that it
//!    lacks a role;
//! 6. **route policy** ([`policy`]): routes the principal may not use get 403;
//! 7. **limits** ([`limits`]): a caller over a rate or quota gets 429 — last,
//!    so only requests that would otherwise be let in are counted.
//!
//! A pipeline without members (a run.yaml `server.auth` with only
//! `route_policy`, or whose provider `type` is empty) authenticates nobody:
//! [`Pipeline::admit_anonymous`] judges requests by the route policy alone,
//! and [`Pipeline::admit_anonymous_request`] adds the limits that count
//! anonymous callers by client address.
//!
//! May import: [`crate::path`] and the provider contract (`tokengate_api`).
//! Nothing here knows HTTP, config files or logs.

pub mod limits;
pub mod policy;
pub mod revocation;
pub mod tenancy;

use std::sync::Arc;
use tokengate_api::{
    AuthError, Check, Description, DynProvider, Ownership, Principal, Reason, RequestContext, TracedAttribute,
};

use limits::Limits;
use policy::RoutePolicy;
use revocation::Revocation;
use tenancy::Tenancy;

/// One configured provider, described once when the pipeline is built.
pub struct Member {
    provider: DynProvider,
    description: Description,
    type_name: Arc<str>,
    /// Where it is configured: `provider_config` or `providers[i]`.
    position: String,
}

impl Member {
    /// The provider itself.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// What the provider said it is.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// Its `type` name.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// Where it is configured: `provider_config` or `providers[i]`.
    pub fn position(&self) -> &str {
        &self.position
    }
}

/// The member that decided a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its position in the chain (0 for a single provider).
    pub index: usize,
    /// Its `type` name.
    pub type_name: Arc<str>,
}

/// What the pipeline made of one request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Decision {
    /// The member that decided; `None` when no member owns the token.
    pub owner: Option<Owner>,
    /// The principal, or why not.
    pub outcome: Result<Principal, AuthError>,
    /// What the provider produced before revocation and route policy judged
    /// it: always there when one of them refused it (who was refused); for an
    /// accepted request, only when the trace was on.
    pub validated: Option<Principal>,
    /// Every check made, in order, when the request's trace was on; else empty.
    pub trace: Vec<Check>,
    /// Where each attribute value came from, when the trace was on; else empty.
    pub attributes: Vec<TracedAttribute>,
}

impl Decision {
    /// A decision made before any member was asked (no credential, a malformed header).
    pub fn unowned(outcome: Result<Principal, AuthError>) -> Self {
        Decision { owner: None, outcome, validated: None, trace: Vec::new(), attributes: Vec::new() }
    }
}

/// Providers, revocation and route policy, built and ready. Cheap to share
/// behind an `Arc`; see the module docs for the stages.
pub struct Pipeline {
    members: Vec<Member>,
    revocation: Option<Revocation>,
    policy: Option<RoutePolicy>,
    limits: Option<Limits>,
    tenancy: Tenancy,
    accepts: String,
    message: String,
    needs_token: bool,
}

impl Pipeline {
    /// A pipeline of `providers`, tried in order, without revocation or route policy.
    pub fn new(providers: Vec<DynProvider>) -> Self {
        let single = providers.len() == 1;
        let members: Vec<Member> = providers
            .into_iter()
            .enumerate()
            .map(|(i, provider)| {
                let description = provider.describe();
                Member {
                    type_name: Arc::from(description.type_name.as_str()),
                    position: if single { "provider_config".to_string() } else { format!("providers[{i}]") },
                    provider,
                    description,
                }
            })
            .collect();
        let accepts = members.iter().map(|m| m.description.accepts.as_str()).collect::<Vec<_>>().join("; ");
        let message = match members.as_slice() {
            [only] => only.description.message.clone(),
            _ => format!("Authentication required. Please provide one of: {accepts}"),
        };
        let needs_token = members.iter().all(|m| m.description.needs_token);
        Pipeline {
            members,
            revocation: None,
            policy: None,
            limits: None,
            tenancy: Tenancy::Disabled,
            accepts,
            message,
            needs_token,
        }
    }

    /// Adds the revocation stage.
    pub fn with_revocation(mut self, revocation: Revocation) -> Self {
        self.revocation = Some(revocation);
        self
    }

    /// Adds the route-policy stage (skipped when the policy permits everything).
    pub fn with_route_policy(mut self, policy: RoutePolicy) -> Self {
        self.policy = (!policy.is_permit_all()).then_some(policy);
        self
    }

    /// Adds the limits stage (skipped when it has no rules: an API key's own
    /// limits apply only with a `limits` section).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The limits stage, if any.
    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_ref()
    }

    /// Adds the tenancy stage.
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// The tenancy stage.
    pub fn tenancy(&self) -> &Tenancy {
        &self.tenancy
    }

    /// Whether the pipeline authenticates nobody (no members); see the module docs.
    pub fn is_anonymous(&self) -> bool {
        self.members.is_empty()
    }

    /// For a pipeline without members: the route policy's verdict on a request
    /// without a user (rules with conditions never match one, as in OGX).
    pub fn admit_anonymous(&self, ctx: &RequestContext) -> Result<(), AuthError> {
        let Some(policy) = &self.policy else {
            ctx.trace.check("route_policy", true, || "no provider and no route_policy: every request is let in".into());
            return Ok(());
        };
        let verdict = policy.evaluate_anonymous(&ctx.method, &ctx.path);
        if ctx.trace.is_on() {
            for line in policy.rule_story(&ctx.method, &ctx.path, None, &verdict) {
                ctx.trace.check("route_policy rule", true, || line);
            }
        }
        ctx.trace.check("route_policy", verdict.is_permit(), || verdict.reason.clone());
        match verdict.is_permit() {
            true => Ok(()),
            false => Err(AuthError::insufficient_scope(verdict.reason).because(Reason::Policy)),
        }
    }

    /// [`Pipeline::admit_anonymous`], then the limits that count anonymous
    /// callers (by client address): what a front end asks for a request
    /// when the pipeline has no members.
    pub async fn admit_anonymous_request(&self, ctx: &RequestContext) -> Result<(), AuthError> {
        self.admit_anonymous(ctx)?;
        match &self.limits {
            Some(limits) => limits.check(ctx, None).await,
            None => Ok(()),
        }
    }

    /// [`Pipeline::decide`], keeping only the outcome.
    pub async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        self.decide(token, ctx).await.outcome
    }

    /// The members, in order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The revocation stage, if any.
    pub fn revocation(&self) -> Option<&Revocation> {
        self.revocation.as_ref()
    }

    /// The route-policy stage, if any.
    pub fn route_policy(&self) -> Option<&RoutePolicy> {
        self.policy.as_ref()
    }

    /// The message a client gets with a 401: the provider's own, or for a
    /// chain, what each member accepts.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What a refused client is told, for every front end alike (`serve`, the
    /// layer, `check`, `explain`): the 401 message says what to send; a 403
    /// of `refused`, a principal the provider accepted, says the caller is
    /// authenticated and not allowed here, never what to send.
    pub fn refusal_message(&self, error: &AuthError, refused: Option<&Principal>) -> String {
        use tokengate_api::ErrorKind;
        match error.kind() {
            ErrorKind::InvalidToken => self.message.clone(),
            // Not a credential problem: the request itself could mean two things.
            ErrorKind::InvalidRequest => "The request is malformed or ambiguous and was not decided".to_string(),
            ErrorKind::InsufficientScope => match refused {
                Some(p) => format!("Authenticated as {}, but not allowed to make this request", p.principal),
                None if self.is_anonymous() => "This request is not allowed".to_string(),
                None => "The token does not grant access to this resource".to_string(),
            },
            ErrorKind::Unavailable => "The identity service is temporarily unavailable; retry later".to_string(),
            ErrorKind::RateLimited => "Too many requests: a usage limit refuses this one for now".to_string(),
            _ => "Authentication is misconfigured on this server".to_string(),
        }
    }

    /// What the members accept, `; `-joined.
    pub fn accepts(&self) -> &str {
        &self.accepts
    }

    /// Whether a request must carry a token (false when a member reads the identity elsewhere).
    pub fn needs_token(&self) -> bool {
        self.needs_token
    }

    /// The name decisions are counted and logged under when no member owns
    /// the token: the single member's type, `none` without members, else `chain`.
    pub fn name(&self) -> &str {
        match self.members.as_slice() {
            [] => "none",
            [only] => only.type_name(),
            _ => "chain",
        }
    }

    /// The position of the member that owns `token`, if any.
    pub fn owner(&self, token: &str) -> Option<usize> {
        if let [_] = self.members.as_slice() {
            return Some(0);
        }
        if token.is_empty() {
            // No token has a shape to look at; only tokenless providers can judge the request.
            return self.members.iter().position(|m| !m.description.needs_token);
        }
        self.members.iter().position(|m| m.provider.ownership(token) == Ownership::Mine)
    }

    /// Runs every stage for `token` (empty for a request without one) and the
    /// request `ctx`. With `ctx.trace` on, the decision lists each check made.
    pub async fn decide(&self, token: &str, ctx: &RequestContext) -> Decision {
        self.decide_stages(token, ctx, Stages::All).await
    }

    /// For an open path (answered without authentication): who the caller
    /// is, and whether the limits let the request in. A token the pipeline
    /// accepts makes it that principal's request, counted by their rules as
    /// anywhere else (so over a limit it is refused, not let in as someone
    /// else); without one (none, or one refused) the request is anonymous,
    /// counted by the `by: client_ip` rules whose `callers` take anonymous
    /// requests: otherwise an open, expensive route would have no limit at all.
    /// `Err` comes only from the limits: a 429, or the 400/500 of a path or
    /// client address they cannot read.
    pub async fn admit_open(&self, token: Option<&str>, ctx: &RequestContext) -> Result<Option<Principal>, AuthError> {
        let principal = match token {
            Some(token) => self.decide_stages(token, ctx, Stages::BeforeLimits).await.outcome.ok(),
            None => None,
        };
        if let Some(limits) = &self.limits {
            limits.check(ctx, principal.as_ref()).await?;
        }
        Ok(principal)
    }

    async fn decide_stages(&self, token: &str, ctx: &RequestContext, stages: Stages) -> Decision {
        let trace = &ctx.trace;
        let Some(index) = self.owner(token) else {
            let error = self.not_owned(token);
            trace.check("ownership", false, || format!("no provider owns it: {}", self.ownership_story(token, None)));
            return self.finish(None, Err(error), None, ctx);
        };
        let member = &self.members[index];
        let owner = Some(Owner { index, type_name: member.type_name.clone() });
        trace.check("ownership", true, || self.ownership_story(token, Some(index)));
        let mark = trace.mark();
        let validated = member.provider.validate(token, ctx).await;
        if trace.is_on() && trace.mark() == mark {
            // A provider that records no checks of its own: say what it was given and what it said.
            trace.check("shape", true, || shape(token));
            let name = member.type_name();
            match &validated {
                Ok(p) => trace.check("provider", true, || format!("{name} accepted the token as {}", p.principal)),
                Err(e) => trace.check("provider", false, || format!("{name}: {}", e.detail())),
            }
        }
        let principal = match validated.and_then(fit_to_travel).and_then(|p| self.settle_tenant(p, trace)) {
            Ok(principal) => principal,
            Err(e) => return self.finish(owner, Err(e), None, ctx),
        };
        let (outcome, validated) = match self.judge(token, ctx, &principal, stages).await {
            Ok(()) => {
                // Kept apart only for a trace: an untraced decision copies no principal.
                let copy = trace.is_on().then(|| principal.clone());
                (Ok(principal), copy)
            }
            // Who was refused, for the audit line and the refusal's wording.
            Err(e) => (Err(e), Some(principal)),
        };
        self.finish(owner, outcome, validated, ctx)
    }

    fn settle_tenant(&self, principal: Principal, trace: &tokengate_api::Trace) -> Result<Principal, AuthError> {
        if self.tenancy == Tenancy::Disabled {
            return Ok(principal);
        }
        let settled = self.tenancy.settle(principal).map_err(|e| trace.failed("tenancy", e))?;
        trace.check("tenancy", true, || format!("tenant {}", settled.tenant.as_deref().unwrap_or("(none)")));
        Ok(settled)
    }

    /// Revocation, route policy, then limits, for a principal the provider accepted.
    async fn judge(
        &self,
        token: &str,
        ctx: &RequestContext,
        principal: &Principal,
        stages: Stages,
    ) -> Result<(), AuthError> {
        let trace = &ctx.trace;
        // A tokenless request (upstream_header) has nothing that could be revoked.
        if let (Some(revocation), false) = (&self.revocation, token.is_empty()) {
            revocation.check(token).await.map_err(|e| trace.failed("revocation", e))?;
            trace.check("revocation", true, || {
                let list = revocation.list();
                format!("not revoked (list: {} jti, {} token hashes)", list.jti_count(), list.hash_count())
            });
        }
        if let Some(policy) = &self.policy {
            let verdict = policy.evaluate(&ctx.method, &ctx.path, principal);
            if trace.is_on() {
                for line in policy.rule_story(&ctx.method, &ctx.path, Some(principal), &verdict) {
                    trace.check("route_policy rule", true, || line);
                }
            }
            trace.check("route_policy", verdict.is_permit(), || verdict.reason.clone());
            if !verdict.is_permit() {
                return Err(AuthError::insufficient_scope(verdict.reason).because(Reason::Policy));
            }
        }
        if let (Some(limits), Stages::All) = (&self.limits, stages) {
            limits.check(ctx, Some(principal)).await?;
        }
        Ok(())
    }

    fn finish(
        &self,
        owner: Option<Owner>,
        outcome: Result<Principal, AuthError>,
        validated: Option<Principal>,
        ctx: &RequestContext,
    ) -> Decision {
        let trace = &ctx.trace;
        if !trace.is_on() {
            return Decision { owner, outcome, validated, trace: Vec::new(), attributes: Vec::new() };
        }
        if let Some(p) = &validated {
            // Attributes the provider did not trace came from the provider itself
            // (an API key's entry, a proxy header, an introspection answer).
            let by = owner.as_ref().map(|o| o.type_name.to_string()).unwrap_or_else(|| "provider".into());
            for (attribute, values) in &p.attributes {
                for value in values {
                    trace.attribute(attribute, value, None, || format!("set by the {by} provider"));
                }
            }
        }
        let mut attributes = trace.attributes();
        // Only what the principal really has, in the provider's order of attributes.
        let has = |a: &TracedAttribute| {
            validated.as_ref().is_some_and(|p| p.attributes.get(&a.attribute).is_some_and(|v| v.contains(&a.value)))
        };
        attributes.retain(has);
        Decision { owner, outcome, validated, trace: trace.checks(), attributes }
    }

    fn not_owned(&self, token: &str) -> AuthError {
        let detail = if self.members.is_empty() {
            "this config has no provider (authentication is off): no token authenticates anyone".to_string()
        } else if token.is_empty() {
            format!("no token, and every configured provider needs one; accepted: {}", self.accepts)
        } else {
            format!("no configured provider accepts this kind of token; accepted: {}", self.accepts)
        };
        AuthError::invalid_token(detail).because(Reason::NotOwned)
    }

    /// How the owner was found, for the `ownership` check.
    fn ownership_story(&self, token: &str, owner: Option<usize>) -> String {
        if let [only] = self.members.as_slice() {
            return format!("{} ({}) decides every token", only.position, only.type_name());
        }
        let mut seen = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            if Some(i) == owner {
                seen.push(format!("{} {} owns it", m.position, m.type_name()));
                break;
            }
            let why = if token.is_empty() { "needs a token" } else { "not its kind of token" };
            seen.push(format!("{} {}: {why} (accepts {})", m.position, m.type_name(), m.description.accepts));
        }
        seen.join("; ")
    }

    /// Ready when every member is: a member that cannot decide would turn
    /// its tokens away. The first failure is reported, with its position.
    pub async fn ready(&self) -> Result<(), AuthError> {
        for (i, m) in self.members.iter().enumerate() {
            if let Err(e) = m.provider.ready().await {
                return Err(if self.members.len() == 1 {
                    e
                } else {
                    e.with_context(format_args!("provider {} ({})", i + 1, m.type_name()))
                });
            }
        }
        // A replica that never loaded the shared revocation list would refuse every token.
        if let Some(revocation) = &self.revocation {
            revocation.ready()?;
        }
        Ok(())
    }

    /// Stops background work: file watchers, key-set refreshes, connections.
    pub async fn close(&self) {
        if let Some(r) = &self.revocation {
            r.close();
        }
        for m in &self.members {
            m.provider.close().await;
        }
    }
}

/// How far a decision goes: [`Pipeline::admit_open`] counts the limits
/// itself, once it knows whether the caller is anonymous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stages {
    All,
    BeforeLimits,
}

/// The principal, unless it cannot travel (see the module docs).
fn fit_to_travel(principal: Principal) -> Result<Principal, AuthError> {
    if principal.principal.is_empty() {
        return Err(AuthError::invalid_token("the provider produced an empty principal").because(Reason::Principal));
    }
    if principal.principal.chars().any(char::is_control) {
        return Err(AuthError::invalid_token("the principal has control characters").because(Reason::Principal));
    }
    Ok(principal)
}

/// What a token looks like, without any of it.
fn shape(token: &str) -> String {
    if token.is_empty() {
        "no token (the provider reads the identity elsewhere)".to_string()
    } else if token.split('.').count() == 3 {
        format!("a JWT-shaped token (three segments), {} characters", token.chars().count())
    } else {
        format!("opaque token (not a JWT), {} characters", token.chars().count())
    }
}

/// Anything a front end can hold as its pipeline: a [`Pipeline`], one
/// provider (a pipeline of one, without revocation or route policy), or a
/// shared pipeline.
pub trait IntoPipeline {
    /// The pipeline, shared.
    fn into_pipeline(self) -> Arc<Pipeline>;
}

impl IntoPipeline for Pipeline {
    fn into_pipeline(self) -> Arc<Pipeline> {
        Arc::new(self)
    }
}

impl IntoPipeline for Arc<Pipeline> {
    fn into_pipeline(self) -> Arc<Pipeline> {
        self
    }
}

impl IntoPipeline for DynProvider {
    fn into_pipeline(self) -> Arc<Pipeline> {
        Arc::new(Pipeline::new(vec![self]))
    }
}

impl<P: tokengate_api::AuthProvider> IntoPipeline for Arc<P> {
    fn into_pipeline(self) -> Arc<Pipeline> {
        let provider: DynProvider = self;
        provider.into_pipeline()
    }
}

#[cfg(test)]
mod tests;
