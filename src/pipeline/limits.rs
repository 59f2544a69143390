//! `limits`: usage limits for any caller — rates with a burst and UTC
//! calendar quotas, counted per API key, principal, tenant, client address
//! or attribute value, local to a replica or shared by every replica
//! through one atomic store decision per request (Redis: a script, which
//! carries a batch of decisions and applies each all or none).
//!
//! ```yaml
//! limits:
//!   mode: enforce              # or dry_run (alias shadow): count and report, refuse nothing
//!   on_store_error: local      # Redis away: local (default) | allow | deny (503)
//!   rules:
//!     - name: chat                    # letters, digits, `_`, `-`, `.`; in headers and metrics
//!       paths: [/v1/chat/*]           # as route_policy: exact, `prefix*`, `*`, `regex:…` (default `*`)
//!       methods: [POST]               # default: every method
//!       by: principal                 # key | principal (default) | tenant | client_ip | {attribute: team}
//!       rate: 100/min burst 20        # N/s, N/min, N/hour; burst default N
//!       daily_quota: 10000            # per UTC day
//!       monthly_quota: 200000         # per UTC calendar month
//!       cost: 5                       # one request counts as 5 (default 1)
//!       tiers:                        # limits by an attribute's value, first match wins
//!         attribute: tier
//!         values:
//!           - {value: premium, rate: 1000/min}
//!           - {value: free, rate: 10/min, daily_quota: 100}
//!     - name: anonymous
//!       by: client_ip
//!       callers: anonymous            # all (default for client_ip) | authenticated | anonymous
//!       daily_quota: 100
//! ```
//!
//! Every rule whose route matches the request counts it, and the request
//! is let in only when every one of them (and every rate and quota of
//! each) has room: then all are charged, else none is. An API key entry's
//! own `rate_limit`, `daily_quota` and `monthly_quota` (on the principal's
//! [`tokengate_api::CredentialInfo`]) form one more rule, `key`, over every
//! route, counted by the key's id, at the highest cost of the rules that matched.
//!
//! What is counted, and what stands in when it is missing (never nothing:
//! a caller without a value must not escape the rule):
//! - `key`: the API key's id; the principal for callers without a stored key (JWTs);
//! - `principal`; `tenant` (callers without a tenant share one count);
//! - `client_ip`: [`RequestContext::client_ip`], which each front end sets
//!   from what it can trust (the tower layer: the TCP peer; `serve`: the
//!   hop the configured `forward_auth.proxy` writes). IPv6 addresses count
//!   by their /64, which one client can hold whole. A request whose address
//!   is unknown is refused (500, naming the fix), never counted as nobody's;
//! - `{attribute: name}`: every value counts (a caller in teams a and b is
//!   charged in both); callers without one share one count, and callers
//!   whose value is unknown share another.
//!
//! Tiers choose the limits, not the count: the first listed value the
//! principal has sets the fields it names; an unknown attribute, or none
//! of the values, leaves the rule's own (make those the strictest).
//!
//! A refusal is 429 `rate_limited` ([`tokengate_api::ErrorKind::RateLimited`],
//! reason `rate_limited` or `quota_exceeded`) with `Retry-After` and the
//! draft IETF `RateLimit` / `RateLimit-Policy` fields (see
//! [`crate::http::rejection`]).
//!
//! Anonymous requests (a pipeline without providers, or a request on an
//! open path without a token the pipeline accepts: see
//! [`crate::Pipeline::admit_open`]) are counted only by rules that count
//! `by: client_ip` and whose `callers` include them.
//!
//! `tokengate check` and `explain` only peek
//! ([`RequestContext::peek_limits`]): they report what the limits would
//! decide for the caller and charge nothing, locally or in Redis.
//!
//! May import: [`crate::path`] and the provider contract, as the rest of
//! [`crate::pipeline`]; the Redis store implements [`SharedLimitStore`] in
//! `crate::ops::redis`.

mod local;
pub mod rate;

use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokengate_api::{AuthError, ConfigError, LimitPolicy, Principal, RateLimitInfo, Reason, RequestContext};

pub use local::LocalStore;
use rate::{utc_timestamp, MAX_COUNT, SECOND_US};
pub use rate::{ChargeResult, Period, Rate};

/// Counter of limit decisions, by `rule` and `outcome` (`allowed`, `limited`, `dry_run_limited`).
pub const LIMIT_DECISIONS_TOTAL: &str = "tokengate_limit_decisions_total";
/// Counter of decisions the shared store could not make, by `fallback` (`local`, `allow`, `deny`).
pub const LIMIT_STORE_FALLBACKS_TOTAL: &str = "tokengate_limit_store_fallbacks_total";

/// The name of the rule an API key's own limits form.
pub const KEY_RULE: &str = "key";

/// `limits:` in the config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// `enforce` (default) or `dry_run` (alias `shadow`).
    #[serde(default)]
    pub mode: LimitMode,
    /// What a decision does when the shared store (Redis) cannot make it.
    #[serde(default)]
    pub on_store_error: OnLimitStoreError,
    /// The rules, each counting the requests its route matches.
    #[serde(default)]
    pub rules: Vec<LimitRuleConfig>,
}

/// Whether a limit refuses.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitMode {
    /// Over the limit: 429.
    #[default]
    Enforce,
    /// Over the limit: logged (WARN) and counted
    /// (`tokengate_limit_decisions_total{outcome="dry_run_limited"}`), let in.
    #[serde(alias = "shadow")]
    DryRun,
}

/// What a decision does when the shared store cannot make it (Redis down,
/// slow past `redis.command_timeout`, refusing the script).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnLimitStoreError {
    /// This replica's own counts decide (the default): each replica then
    /// allows up to the whole limit by itself until Redis is back.
    #[default]
    Local,
    /// No limit applies until Redis is back.
    Allow,
    /// Every request a rule matches is refused as unavailable (503).
    Deny,
}

/// One rule of `limits.rules`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitRuleConfig {
    /// The rule's name: in the `RateLimit` fields, metrics and logs.
    pub name: String,
    /// One path pattern (as `route_policy`'s).
    #[serde(default)]
    pub path: Option<String>,
    /// Path patterns; with neither `path` nor `paths`, every path.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Methods (any case); every method when absent. `GET` covers `HEAD`.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// What is counted (default `principal`).
    #[serde(default)]
    pub by: CountBy,
    /// Which requests the rule counts (default: `all` for `client_ip`, else `authenticated`).
    #[serde(default)]
    pub callers: Option<Callers>,
    /// `N/s`, `N/min` or `N/hour`, optionally `burst B`.
    #[serde(default)]
    pub rate: Option<String>,
    /// Requests per UTC day.
    #[serde(default)]
    pub daily_quota: Option<u64>,
    /// Requests per UTC calendar month.
    #[serde(default)]
    pub monthly_quota: Option<u64>,
    /// What one request counts as (default 1).
    #[serde(default)]
    pub cost: Option<u64>,
    /// Limits by an attribute's value.
    #[serde(default)]
    pub tiers: Option<TiersConfig>,
}

/// What a rule counts by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CountBy {
    /// The API key's id (the principal for callers without one).
    Key,
    /// The principal.
    #[default]
    Principal,
    /// The tenant.
    Tenant,
    /// The client's address (IPv6 by /64).
    ClientIp,
    /// Each value of an attribute.
    Attribute(String),
}

impl<'de> Deserialize<'de> for CountBy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Name(String),
            Attribute { attribute: String },
        }
        match Shape::deserialize(deserializer) {
            Ok(Shape::Name(name)) => match name.as_str() {
                "key" | "api_key" => Ok(CountBy::Key),
                "principal" => Ok(CountBy::Principal),
                "tenant" => Ok(CountBy::Tenant),
                "client_ip" | "ip" => Ok(CountBy::ClientIp),
                other => Err(serde::de::Error::custom(format!(
                    "unknown `by: {other}`; expected key, principal, tenant, client_ip or {{attribute: NAME}}"
                ))),
            },
            Ok(Shape::Attribute { attribute }) if !attribute.trim().is_empty() => Ok(CountBy::Attribute(attribute)),
            _ => Err(serde::de::Error::custom(
                "expected key, principal, tenant, client_ip or {attribute: NAME} (a non-empty name)",
            )),
        }
    }
}

impl fmt::Display for CountBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountBy::Key => f.write_str("key"),
            CountBy::Principal => f.write_str("principal"),
            CountBy::Tenant => f.write_str("tenant"),
            CountBy::ClientIp => f.write_str("client_ip"),
            CountBy::Attribute(a) => write!(f, "attribute {a}"),
        }
    }
}

/// Which requests a rule counts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Callers {
    /// Authenticated and anonymous.
    All,
    /// Requests a provider authenticated.
    Authenticated,
    /// Requests nobody authenticated (a pipeline without providers, or an
    /// open path without an accepted token).
    Anonymous,
}

/// `tiers:` of a rule.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TiersConfig {
    /// The attribute whose value chooses the tier.
    pub attribute: String,
    /// The tiers, the first the principal has winning.
    pub values: Vec<TierConfig>,
}

/// One tier.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The attribute value.
    pub value: String,
    /// Replaces the rule's `rate`.
    #[serde(default)]
    pub rate: Option<String>,
    /// Replaces the rule's `daily_quota`.
    #[serde(default)]
    pub daily_quota: Option<u64>,
    /// Replaces the rule's `monthly_quota`.
    #[serde(default)]
    pub monthly_quota: Option<u64>,
}

/// A rate and the quotas, as one rule (or tier) sets them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Allowance {
    rate: Option<Rate>,
    daily: Option<u64>,
    monthly: Option<u64>,
}

impl Allowance {
    fn is_empty(&self) -> bool {
        self.rate.is_none() && self.daily.is_none() && self.monthly.is_none()
    }

    fn least_burst(&self) -> u64 {
        [self.rate.map(|r| r.burst), self.daily, self.monthly].into_iter().flatten().min().unwrap_or(u64::MAX)
    }
}

/// A path pattern, as `route_policy` spells it.
#[derive(Debug, Clone)]
enum PathPattern {
    Any,
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

impl PathPattern {
    fn compile(p: &str) -> Result<PathPattern, String> {
        let p = p.trim();
        if p == "*" {
            return Ok(PathPattern::Any);
        }
        if let Some(re) = p.strip_prefix("regex:") {
            return regex::Regex::new(&format!("^(?:{re})$")).map(PathPattern::Regex).map_err(|e| e.to_string());
        }
        if !p.starts_with('/') {
            return Err(format!("`{p}` must start with `/` (or be `*` or `regex:…`)"));
        }
        if let Some(prefix) = p.strip_suffix('*') {
            return Ok(PathPattern::Prefix(prefix.to_lowercase()));
        }
        let canonical = crate::path::canonical_path(p).map_err(|e| format!("`{p}`: {e}"))?;
        Ok(PathPattern::Exact(canonical.trim_end_matches('/').to_lowercase()))
    }

    /// Whether `lowered`, a canonical path in lower case, matches; patterns
    /// are lower case too, so `/V1/Chat` counts where `/v1/chat` does (a
    /// back end that folds case must not be a way around a limit).
    fn matches(&self, path: &str, lowered: &str) -> bool {
        match self {
            PathPattern::Any => true,
            PathPattern::Exact(e) => lowered.trim_end_matches('/') == e,
            PathPattern::Prefix(p) => lowered.starts_with(p.as_str()),
            PathPattern::Regex(r) => r.is_match(path) || r.is_match(lowered),
        }
    }
}

#[derive(Debug, Clone)]
struct Tier {
    value: String,
    allowance: Allowance,
}

#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    paths: Vec<PathPattern>,
    methods: Option<Vec<String>>,
    by: CountBy,
    /// `by` as charges and store keys spell it.
    by_label: Box<str>,
    callers: Callers,
    cost: u64,
    allowance: Allowance,
    tier_attribute: Option<String>,
    tiers: Vec<Tier>,
}

impl Rule {
    fn matches(&self, method: &str, path: &str, lowered: &str, anonymous: bool) -> bool {
        let callers = match self.callers {
            Callers::All => true,
            Callers::Authenticated => !anonymous,
            Callers::Anonymous => anonymous,
        };
        let method_ok = self.methods.as_ref().is_none_or(|m| {
            m.iter().any(|m| {
                m == "*" || m.eq_ignore_ascii_case(method) || (m == "GET" && method.eq_ignore_ascii_case("HEAD"))
            })
        });
        callers && method_ok && self.paths.iter().any(|p| p.matches(path, lowered))
    }

    fn allowance_for(&self, principal: Option<&Principal>) -> Allowance {
        let (Some(attribute), Some(p)) = (&self.tier_attribute, principal) else { return self.allowance };
        if p.is_unknown(attribute) {
            return self.allowance;
        }
        let have = p.attributes.get(attribute).map(Vec::as_slice).unwrap_or_default();
        match self.tiers.iter().find(|t| have.contains(&t.value)) {
            Some(tier) => Allowance {
                rate: tier.allowance.rate.or(self.allowance.rate),
                daily: tier.allowance.daily.or(self.allowance.daily),
                monthly: tier.allowance.monthly.or(self.allowance.monthly),
            },
            None => self.allowance,
        }
    }
}

/// What one charge is against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// A rate: microseconds between requests, and the burst.
    Rate {
        /// Microseconds between two requests at the steady rate.
        interval_us: u64,
        /// Requests that may come at once.
        burst: u64,
    },
    /// A calendar quota in the period ending at `end_us`.
    Quota {
        /// Units per period.
        limit: u64,
        /// When the period ends.
        end_us: u64,
    },
}

/// Which count of a rule a charge goes to: its rate, or its quota of one
/// UTC day or month (a new period is a new count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The rule's rate.
    Rate,
    /// A quota, in the period numbered `id` (days, or months, since 1970-01).
    Quota {
        /// Day or month.
        period: Period,
        /// Which one.
        id: u64,
    },
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Rate => f.write_str("rate"),
            Component::Quota { period, id } => write!(f, "{}:{id}", period.as_str()),
        }
    }
}

/// One charge of one decision: `cost` units against `limit` for the bucket
/// of (`rule`, `component`, `by`, `value`). Two charges of one decision
/// never share a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge<'a> {
    /// The rule's name ([`KEY_RULE`] for an API key's own limits).
    pub rule: &'a str,
    /// Its rate, or a quota's period.
    pub component: Component,
    /// What is counted: `key`, `principal`, `tenant`, `client_ip` or `attribute NAME`.
    pub by: &'a str,
    /// The counted value (a principal, key id, address…); never a token.
    pub value: Cow<'a, str>,
    /// What the bucket allows.
    pub limit: Limit,
    /// Units this request counts as.
    pub cost: u64,
    /// The rule's position ([`Limits`]' rules, then the key rule): its metric.
    rule_index: usize,
    /// What the limit is, for the `RateLimit` fields.
    quota: u64,
    window_secs: u64,
    rate: Option<Rate>,
}

impl Charge<'_> {
    /// `rule|component|by|value`: a `|` in the value cannot forge another
    /// bucket, as the value comes last and the rest holds no `|` (names are checked).
    pub fn key(&self) -> String {
        format!("{}|{}|{}|{}", self.rule, self.component, self.by, self.value)
    }

    fn period(&self) -> Option<Period> {
        match self.component {
            Component::Rate => None,
            Component::Quota { period, .. } => Some(period),
        }
    }
}

/// Whether a decision charges what it counts, or only says what the limits
/// would decide ([`RequestContext::peek_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Charge every limit when every one has room.
    Charge,
    /// Charge nothing; answer as [`Commit::Charge`] would have.
    Peek,
}

/// A store that makes a limit decision for every replica at once: all
/// `charges` are applied if every one fits, none otherwise, atomically
/// (the Redis store: one script); with [`Commit::Peek`], none ever.
/// Results are in the order of `charges`.
#[async_trait::async_trait]
pub trait SharedLimitStore: Send + Sync + 'static {
    /// Applies `charges` all or none; `now_us` is this replica's clock, for
    /// a store that keeps none of its own.
    async fn charge(&self, charges: &[Charge<'_>], now_us: u64, commit: Commit) -> Result<Vec<ChargeResult>, String>;
}

/// A source of the time, microseconds since the Unix epoch (tests set it).
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now_us(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or_default()
    }
}

/// The outcomes a decision is counted under, in the order of [`RuleMetrics`].
const OUTCOMES: [&str; 3] = ["allowed", "limited", "dry_run_limited"];

/// A rule's `tokengate_limit_decisions_total` keys, one per outcome, built
/// once: a decision then registers with whatever recorder is in effect
/// (the global one, or a test's local one) without building a label.
type RuleMetrics = [metrics::Key; 3];

static METRIC_METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

fn rule_metrics(rule: &str) -> RuleMetrics {
    OUTCOMES.map(|outcome| {
        metrics::Key::from_parts(
            LIMIT_DECISIONS_TOTAL,
            vec![metrics::Label::new("rule", rule.to_string()), metrics::Label::from_static_parts("outcome", outcome)],
        )
    })
}

/// The compiled `limits` section: rules, mode, and the stores.
pub struct Limits {
    rules: Vec<Rule>,
    /// Per rule, then the key rule's.
    metrics: Vec<RuleMetrics>,
    mode: LimitMode,
    on_store_error: OnLimitStoreError,
    local: LocalStore,
    shared: Option<Arc<dyn SharedLimitStore>>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("rules", &self.rules.iter().map(|r| &*r.name).collect::<Vec<_>>())
            .field("mode", &self.mode)
            .field("on_store_error", &self.on_store_error)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn allowance(
    rate: Option<&str>,
    daily: Option<u64>,
    monthly: Option<u64>,
    at: &dyn Fn(&str) -> String,
) -> Result<Allowance, ConfigError> {
    let rate = rate.map(Rate::parse).transpose().map_err(|m| ConfigError::new(at("rate"), m))?;
    for (field, value) in [("daily_quota", daily), ("monthly_quota", monthly)] {
        if value.is_some_and(|v| !(1..=MAX_COUNT).contains(&v)) {
            return Err(ConfigError::new(at(field), format!("must be 1 to {MAX_COUNT}")));
        }
    }
    Ok(Allowance { rate, daily, monthly })
}

impl Limits {
    /// Compiles `config`; errors name the field under `limits`.
    pub fn from_config(config: &LimitsConfig) -> Result<Limits, ConfigError> {
        let mut rules: Vec<Rule> = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.iter().enumerate() {
            let at = |field: &str| format!("rules[{i}].{field}");
            if !valid_name(&r.name) {
                return Err(ConfigError::new(
                    at("name"),
                    "must be 1 to 64 letters, digits, `_`, `-` or `.` (it goes into headers and metric labels)",
                ));
            }
            if r.name == KEY_RULE {
                return Err(ConfigError::new(
                    at("name"),
                    "`key` is the name of an API key's own limits; choose another",
                ));
            }
            if rules.iter().any(|other| *other.name == *r.name) {
                return Err(ConfigError::new(at("name"), format!("`{}` names an earlier rule too", r.name)));
            }
            let patterns: Vec<String> = match (&r.path, &r.paths) {
                (Some(_), Some(_)) => return Err(ConfigError::new(at("paths"), "set `path` or `paths`, not both")),
                (Some(p), None) => vec![p.clone()],
                (None, Some(list)) if list.is_empty() => {
                    return Err(ConfigError::new(at("paths"), "is empty: no request would be counted"))
                }
                (None, Some(list)) => list.clone(),
                (None, None) => vec!["*".to_string()],
            };
            let paths = patterns
                .iter()
                .map(|p| PathPattern::compile(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| ConfigError::new(at("paths"), m))?;
            let methods = match &r.methods {
                Some(list) if list.is_empty() => {
                    return Err(ConfigError::new(at("methods"), "is empty: no request would be counted"))
                }
                Some(list) => Some(list.iter().map(|m| m.trim().to_ascii_uppercase()).collect()),
                None => None,
            };
            let callers = match (r.callers, &r.by) {
                (None, CountBy::ClientIp) => Callers::All,
                (None, _) => Callers::Authenticated,
                (Some(callers), CountBy::ClientIp) => callers,
                (Some(Callers::Authenticated), _) => Callers::Authenticated,
                (Some(_), by) => {
                    return Err(ConfigError::new(
                        at("callers"),
                        format!("anonymous requests have no {by} to count by; count them `by: client_ip`"),
                    ))
                }
            };
            let base = allowance(r.rate.as_deref(), r.daily_quota, r.monthly_quota, &at)?;
            let cost = r.cost.unwrap_or(1);
            if !(1..=MAX_COUNT).contains(&cost) {
                return Err(ConfigError::new(at("cost"), format!("must be 1 to {MAX_COUNT}")));
            }
            let (tier_attribute, tiers) = match &r.tiers {
                None => (None, Vec::new()),
                Some(t) if t.values.is_empty() => return Err(ConfigError::new(at("tiers.values"), "is empty")),
                Some(t) => {
                    let mut tiers = Vec::with_capacity(t.values.len());
                    for (j, tier) in t.values.iter().enumerate() {
                        let tier_at = |field: &str| format!("rules[{i}].tiers.values[{j}].{field}");
                        let allowance =
                            allowance(tier.rate.as_deref(), tier.daily_quota, tier.monthly_quota, &tier_at)?;
                        if allowance.is_empty() {
                            return Err(ConfigError::new(tier_at("value"), "sets no rate and no quota"));
                        }
                        tiers.push(Tier { value: tier.value.clone(), allowance });
                    }
                    (Some(t.attribute.clone()), tiers)
                }
            };
            if base.is_empty() && tiers.is_empty() {
                return Err(ConfigError::new(at("rate"), "the rule sets no rate, daily_quota or monthly_quota"));
            }
            for a in std::iter::once(&base).chain(tiers.iter().map(|t| &t.allowance)) {
                if cost > a.least_burst() {
                    return Err(ConfigError::new(
                        at("cost"),
                        format!("{cost} is more than a burst or quota of the rule allows at once: no request would ever fit"),
                    ));
                }
            }
            rules.push(Rule {
                name: Arc::from(r.name.as_str()),
                paths,
                methods,
                by_label: r.by.to_string().into(),
                by: r.by.clone(),
                callers,
                cost,
                allowance: base,
                tier_attribute,
                tiers,
            });
        }
        let metrics = rules.iter().map(|r| &*r.name).chain([KEY_RULE]).map(rule_metrics).collect();
        Ok(Limits {
            rules,
            metrics,
            mode: config.mode,
            on_store_error: config.on_store_error,
            local: LocalStore::default(),
            shared: None,
            clock: Arc::new(SystemClock),
        })
    }

    /// Decides through `store` (shared by replicas); this replica's own
    /// counts stand in when it fails, as `on_store_error` says.
    pub fn with_shared_store(mut self, store: Arc<dyn SharedLimitStore>) -> Self {
        self.shared = Some(store);
        self
    }

    /// Reads the time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The number of configured rules (an API key's own limits are not among them).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Whether a rule counts by client address.
    pub fn counts_client_ip(&self) -> bool {
        self.rules.iter().any(|r| r.by == CountBy::ClientIp)
    }

    /// Whether the limits refuse (`enforce`) or only report (`dry_run`).
    pub fn mode(&self) -> LimitMode {
        self.mode
    }

    /// Counts the request `ctx` of `principal` (`None`: anonymous) against
    /// every rule that matches it; a 429 when one has no room (in `enforce`
    /// mode). With [`RequestContext::peek_limits`] the answer is the same
    /// and nothing is charged (`tokengate check` and `explain`).
    pub async fn check(&self, ctx: &RequestContext, principal: Option<&Principal>) -> Result<(), AuthError> {
        let now = self.clock.now_us();
        let commit = if ctx.peek_limits { Commit::Peek } else { Commit::Charge };
        let charges = self.charges(ctx, principal, now)?;
        if charges.is_empty() {
            ctx.trace.check("limits", true, || "no limit applies to this request".into());
            return Ok(());
        }
        let results = match &self.shared {
            None => self.local.charge(&charges, now, commit),
            Some(shared) => match shared.charge(&charges, now, commit).await {
                Ok(results) if results.len() == charges.len() => results,
                outcome => {
                    let why = match outcome {
                        Err(e) => e,
                        Ok(_) => "the store answered for another number of limits".to_string(),
                    };
                    match self.on_store_error {
                        OnLimitStoreError::Local => {
                            metrics::counter!(LIMIT_STORE_FALLBACKS_TOTAL, "fallback" => "local").increment(1);
                            self.local.charge(&charges, now, commit)
                        }
                        OnLimitStoreError::Allow => {
                            metrics::counter!(LIMIT_STORE_FALLBACKS_TOTAL, "fallback" => "allow").increment(1);
                            ctx.trace.check("limits", true, || {
                                format!("the shared store failed ({why}); on_store_error: allow")
                            });
                            return Ok(());
                        }
                        OnLimitStoreError::Deny => {
                            metrics::counter!(LIMIT_STORE_FALLBACKS_TOTAL, "fallback" => "deny").increment(1);
                            return Err(ctx.trace.failed(
                                "limits",
                                AuthError::unavailable(format!(
                                    "the usage-limit store cannot decide ({why}); limits.on_store_error: deny"
                                )),
                            ));
                        }
                    }
                }
            },
        };
        self.conclude(ctx, principal, &charges, &results, commit)
    }

    fn conclude(
        &self,
        ctx: &RequestContext,
        principal: Option<&Principal>,
        charges: &[Charge<'_>],
        results: &[ChargeResult],
        commit: Commit,
    ) -> Result<(), AuthError> {
        let refused = results.iter().position(|r| !r.allowed);
        let peeked = match commit {
            Commit::Charge => "",
            Commit::Peek => " (a peek: nothing was charged)",
        };
        if commit == Commit::Charge {
            let outcome = match (refused, self.mode) {
                (None, _) => 0,
                (Some(_), LimitMode::Enforce) => 1,
                (Some(_), LimitMode::DryRun) => 2,
            };
            // A rule's charges are next to each other: one count per rule.
            let mut previous = None;
            for c in charges {
                if previous != Some(c.rule_index) {
                    previous = Some(c.rule_index);
                    if let Some(keys) = self.metrics.get(c.rule_index) {
                        metrics::with_recorder(|r| r.register_counter(&keys[outcome], &METRIC_METADATA)).increment(1);
                    }
                }
            }
        }
        let Some(index) = refused else {
            ctx.trace.check("limits", true, || {
                let mut rules: Vec<&str> = charges.iter().map(|c| c.rule).collect();
                rules.dedup();
                format!("within every limit (rules: {}){peeked}", rules.join(", "))
            });
            return Ok(());
        };
        let c = &charges[index];
        let result = &results[index];
        let detail = match (c.period(), c.rate) {
            (Some(period), _) => format!(
                "limits rule `{}`: the {} quota of {} is used up until {}",
                c.rule,
                if period == Period::Day { "daily" } else { "monthly" },
                c.quota,
                utc_timestamp(self.clock.now_us() + result.retry_us)
            ),
            (None, Some(rate)) => {
                format!("limits rule `{}`: rate {rate} exceeded; retry in {}s", c.rule, ceil_secs(result.retry_us))
            }
            (None, None) => format!("limits rule `{}` exceeded", c.rule),
        };
        if self.mode == LimitMode::DryRun {
            if commit == Commit::Charge {
                tracing::warn!(
                    target: "tokengate::limits",
                    rule = c.rule, principal = principal.map(|p| p.principal.as_str()), path = ctx.path.as_str(),
                    reason = detail.as_str(), "dry run: this request would have been refused (429)"
                );
            }
            ctx.trace.check("limits", true, || format!("dry run, let in: {detail}{peeked}"));
            return Ok(());
        }
        // The refusing limit first; then the others, as the draft lists every policy that applied.
        let policies = std::iter::once(index)
            .chain((0..charges.len()).filter(|&i| i != index))
            .map(|i| LimitPolicy {
                name: match charges[i].period() {
                    None => charges[i].rule.to_string(),
                    Some(p) => format!("{}:{}", charges[i].rule, p.as_str()),
                },
                quota: charges[i].quota,
                window_secs: charges[i].window_secs,
                remaining: results[i].remaining,
                reset_secs: ceil_secs(results[i].reset_us),
            })
            .collect();
        let reason = if c.period().is_some() { Reason::QuotaExceeded } else { Reason::RateLimited };
        let retry = Duration::from_secs(ceil_secs(result.retry_us).max(1));
        ctx.trace.check("limits", false, || format!("{detail}{peeked}"));
        Err(AuthError::rate_limited(detail, reason, retry, RateLimitInfo { policies }))
    }

    /// The charges a request makes; empty when no rule applies.
    fn charges<'a>(
        &'a self,
        ctx: &'a RequestContext,
        principal: Option<&'a Principal>,
        now: u64,
    ) -> Result<Vec<Charge<'a>>, AuthError> {
        let path = matched_path(&ctx.path)?;
        let lowered = lower_case(&path);
        let anonymous = principal.is_none();
        let mut charges = Vec::new();
        let mut highest_cost = 0;
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matches(&ctx.method, &path, &lowered, anonymous) {
                continue;
            }
            highest_cost = highest_cost.max(rule.cost);
            let allowance = rule.allowance_for(principal);
            let bucket =
                RuleCharges { rule_index: index, rule: &rule.name, by: &rule.by_label, allowance, cost: rule.cost };
            match counted(rule, ctx, principal)? {
                Counted::One(value) => bucket.push_charges(&mut charges, value, now),
                Counted::Each(values) => {
                    for value in values {
                        bucket.push_charges(&mut charges, Cow::Borrowed(value), now);
                    }
                }
            }
        }
        if let Some(credential) = principal.and_then(|p| p.credential.as_deref()) {
            let rate = match credential.rate_limit.as_deref() {
                Some(text) => Some(Rate::parse(text).map_err(|m| {
                    AuthError::config(format!("API key `{}`: its rate_limit cannot be read: {m}", credential.key_id))
                })?),
                None => None,
            };
            let own = Allowance { rate, daily: credential.daily_quota, monthly: credential.monthly_quota };
            if !own.is_empty() {
                let cost = highest_cost.max(1).min(own.least_burst().max(1));
                let bucket =
                    RuleCharges { rule_index: self.rules.len(), rule: KEY_RULE, by: "key", allowance: own, cost };
                bucket.push_charges(&mut charges, Cow::Borrowed(&credential.key_id), now);
            }
        }
        Ok(charges)
    }
}

/// A rule's charges for one request, before the value they count.
struct RuleCharges<'a> {
    rule_index: usize,
    rule: &'a str,
    by: &'a str,
    allowance: Allowance,
    cost: u64,
}

impl<'a> RuleCharges<'a> {
    fn push_charges(&self, charges: &mut Vec<Charge<'a>>, value: Cow<'a, str>, now: u64) {
        let charge = |component, limit, quota, window_secs, rate| Charge {
            rule: self.rule,
            component,
            by: self.by,
            value: value.clone(),
            limit,
            cost: self.cost,
            rule_index: self.rule_index,
            quota,
            window_secs,
            rate,
        };
        if let Some(rate) = self.allowance.rate {
            let limit = Limit::Rate { interval_us: rate.interval_us(), burst: rate.burst };
            charges.push(charge(Component::Rate, limit, rate.count, rate.window_secs, Some(rate)));
        }
        for (period, quota) in [(Period::Day, self.allowance.daily), (Period::Month, self.allowance.monthly)] {
            let Some(limit) = quota else { continue };
            let span = period.at(now);
            let component = Component::Quota { period, id: span.id };
            let window_secs = (span.end_us - span.start_us) / SECOND_US;
            charges.push(charge(component, Limit::Quota { limit, end_us: span.end_us }, limit, window_secs, None));
        }
    }
}

/// The request path in canonical form, matched against the rules: borrowed
/// when it is canonical already, as every front end passes it.
fn matched_path(path: &str) -> Result<Cow<'_, str>, AuthError> {
    if plainly_canonical(path) {
        return Ok(Cow::Borrowed(path));
    }
    crate::path::canonical_path(path).map(Cow::Owned).map_err(|e| {
        AuthError::invalid_request(format!("the path cannot be matched against limits: {e}")).because(Reason::Request)
    })
}

/// Whether `path` is canonical ([`crate::path::canonical_path`] gives it
/// back unchanged) by its bytes alone: `/`, then segments of unreserved and
/// sub-delimiter ASCII, none empty but a trailing one, none ending in `.`.
/// `false` means "look closer", not "not canonical".
fn plainly_canonical(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    let plain = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'/' | b'-' | b'_' | b'~' | b'.' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*')
            || matches!(b, b'+' | b',' | b'=' | b':' | b'@')
    };
    if !rest.bytes().all(plain) {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment.ends_with('.') {
            return false;
        }
    }
    true
}

/// `path` in lower case, borrowed when it is already.
fn lower_case(path: &str) -> Cow<'_, str> {
    match path.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        true => Cow::Owned(path.to_lowercase()),
        false => Cow::Borrowed(path),
    }
}

/// Stands in for a missing value: no real value of any kind starts with NUL.
const NO_VALUE: &str = "\u{0}none";
const UNKNOWN_VALUE: &str = "\u{0}unknown";

/// What a rule counts one request under.
enum Counted<'a> {
    One(Cow<'a, str>),
    /// Each value of an attribute, sorted, without repeats.
    Each(Vec<&'a str>),
}

fn counted<'a>(rule: &Rule, ctx: &RequestContext, principal: Option<&'a Principal>) -> Result<Counted<'a>, AuthError> {
    let Some(p) = principal else {
        // Anonymous: only `client_ip` rules match (checked at load).
        return Ok(Counted::One(Cow::Owned(client_ip_value(rule, ctx)?)));
    };
    Ok(match &rule.by {
        CountBy::Key => Counted::One(Cow::Borrowed(p.key_id().unwrap_or(&p.principal))),
        CountBy::Principal => Counted::One(Cow::Borrowed(&p.principal)),
        CountBy::Tenant => Counted::One(Cow::Borrowed(p.tenant.as_deref().unwrap_or(NO_VALUE))),
        CountBy::ClientIp => Counted::One(Cow::Owned(client_ip_value(rule, ctx)?)),
        CountBy::Attribute(a) if p.is_unknown(a) => Counted::One(Cow::Borrowed(UNKNOWN_VALUE)),
        CountBy::Attribute(a) => match p.attributes.get(a) {
            Some(values) if !values.is_empty() => {
                let mut values: Vec<&str> = values.iter().map(String::as_str).collect();
                values.sort_unstable();
                values.dedup();
                Counted::Each(values)
            }
            _ => Counted::One(Cow::Borrowed(NO_VALUE)),
        },
    })
}

fn client_ip_value(rule: &Rule, ctx: &RequestContext) -> Result<String, AuthError> {
    match ctx.client_ip {
        Some(ip) => Ok(client_bucket(ip)),
        None => Err(AuthError::config(format!(
            "limits rule `{}` counts by client IP, but this request's client address is unknown: for \
             `tokengate serve`, set forward_auth.proxy to the proxy in front (nginx, traefik, caddy, envoy), \
             which writes the address tokengate reads; for the tower layer, serve with connect info",
            rule.name
        ))),
    }
}

/// The address a client is counted under: IPv4 whole, IPv6 by its /64
/// (an IPv4-mapped IPv6 address as the IPv4 one).
pub fn client_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn ceil_secs(us: u64) -> u64 {
    us.div_ceil(SECOND_US)
}

#[cfg(test)]
mod tests;
