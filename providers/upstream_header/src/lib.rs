//! `upstream_header`: the identity asserted by a trusted authenticating proxy.
//!
//! An authenticating proxy in front of the service (oauth2-proxy, an ingress
//! with external auth, a service mesh) has already logged the user in and says
//! who it is in request headers (`X-Forwarded-User`, `X-Forwarded-Groups`…).
//! Those headers are believed **only** when the TCP peer is one of
//! `trusted_proxy_cidrs`; from anyone else they are ignored and the request is
//! refused with 403, since anyone can send such headers.
//!
//! This provider does not use the bearer token at all: it says so with
//! [`AuthProvider::needs_token`], and the layer/server then call
//! [`AuthProvider::validate`] even when a request carries no token (with an
//! empty one), and fill [`RequestContext::peer`]. The proxy must *set* (overwrite) the identity
//! headers, never pass a client's own copies through.
//!
//! A principal or attribute header that arrives more than once is refused
//! with 400 `invalid_request`: a proxy that *appends* its value to a client's
//! `X-Forwarded-Groups: admins` would otherwise hand over both, and which copy
//! is the proxy's cannot be told. 400, not 401: the credential is not bad, the
//! request is malformed (and the proxy misconfigured), and a 401 would only
//! send the user to log in again at a proxy that has already logged them in.
//!
//! Identity headers are read exactly, as UTF-8 (`X-Forwarded-Groups:
//! contractors,équipe` is two teams), or refused with 400: a copy that is not
//! UTF-8 is never read as absent, and it counts as a copy for the repeat
//! check above; a control character, or a Unicode space at an edge of a
//! value, is refused too (see `identity_text`).
//!
//! Imports: the contract (`tokengate-api`) and third-party crates only.

#![warn(missing_docs)]

use async_trait::async_trait;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use tokengate_api::Description;
use tokengate_api::{
    parse_provider_config, Attributes, AuthError, AuthProvider, BuildContext, ConfigError, DynProvider, ErrorKind,
    Ownership, Principal, ProviderBuilder, RequestContext,
};

/// `provider_config` for `type: upstream_header`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamHeaderConfig {
    /// The header naming the principal (default `x-forwarded-user`).
    #[serde(default = "default_principal_header")]
    pub principal_header: String,
    /// Header → attribute (e.g. `x-forwarded-groups: teams`). A value that is
    /// a JSON array gives its items; otherwise, in tokengate's own config, the
    /// value is split on commas and trimmed, and in a run.yaml (as OGX) it is
    /// one value.
    #[serde(default)]
    pub attribute_headers: BTreeMap<String, String>,
    /// A header carrying a JSON object of attributes (`{"roles": ["admin"],
    /// "team": "ml"}`: lists or single strings), merged with `attribute_headers`;
    /// a value that is not such an object is refused (401). OGX's field.
    #[serde(default)]
    pub attributes_header: Option<String>,
    /// A header naming the tenant (`x-auth-tenant`). Lower-cased; a value that
    /// is not a tenant id is refused (401). Absent or empty: no tenant.
    #[serde(default)]
    pub tenant_header: Option<String>,
    /// Peers whose headers are believed: CIDRs (`10.0.0.0/8`, `fd00::/8`) or
    /// single addresses. Required and non-empty.
    pub trusted_proxy_cidrs: Vec<String>,
}

fn default_principal_header() -> String {
    "x-forwarded-user".to_string()
}

impl UpstreamHeaderConfig {
    /// Every header this config reads identity from, lower-cased as the
    /// provider reads them. `tokengate serve` lets a decision request carry
    /// these even where they are names its own answer sets (`x-auth-attributes`
    /// as OGX configures it): the authenticating proxy in front sets them.
    pub fn identity_headers(&self) -> Vec<String> {
        std::iter::once(&self.principal_header)
            .chain(self.attribute_headers.keys())
            .chain(self.attributes_header.as_ref())
            .chain(self.tenant_header.as_ref())
            .map(|name| name.trim().to_ascii_lowercase())
            .collect()
    }
}

/// The headers `tokengate serve` sets in its answer (`X-Auth-Attr-` is a
/// family), lower-case; kept in step with `src/http/server/identity.rs`.
const SET_BY_TOKENGATE: [&str; 4] =
    ["x-auth-principal", "x-auth-tenant", "x-auth-attributes", "x-auth-unknown-attributes"];
const ATTRIBUTE_HEADERS: &str = "x-auth-attr-";

/// Builds `type: upstream_header` providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamHeaderBuilder;

impl ProviderBuilder for UpstreamHeaderBuilder {
    fn type_name(&self) -> &'static str {
        "upstream_header"
    }

    fn build(&self, config: serde_json::Value, ctx: &BuildContext) -> Result<DynProvider, ConfigError> {
        let mut provider = UpstreamHeaderProvider::from_config(parse_provider_config(config)?)?;
        provider.comma_lists = !ctx.llama_stack_defaults;
        Ok(Arc::new(provider))
    }
}

/// Takes the identity from a trusted proxy's headers. See the crate docs.
#[derive(Debug)]
pub struct UpstreamHeaderProvider {
    principal_header: String,
    /// (lower-cased header, attribute), in config order.
    attribute_headers: Vec<(String, String)>,
    /// The JSON-object header, lower-cased.
    attributes_header: Option<String>,
    /// The tenant header, lower-cased.
    tenant_header: Option<String>,
    /// Whether a plain `attribute_headers` value is a comma-separated list (tokengate) or one value (OGX).
    comma_lists: bool,
    trusted: Vec<IpNet>,
}

/// An attribute value as text: a string, number or boolean.
fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The refusal of an identity header whose value is not the JSON it must be.
fn not_an_attribute(header: &str) -> AuthError {
    AuthError::invalid_token(format!("the {header} header is not a JSON object of attribute lists or strings"))
        .because(tokengate_api::Reason::Malformed)
}

/// The refusal of an `attribute_headers` value that is a JSON list of something else than strings.
fn not_a_list_of_values(header: &str) -> AuthError {
    AuthError::invalid_token(format!("the {header} header is a JSON list, but not of strings, numbers or booleans"))
        .because(tokengate_api::Reason::Malformed)
}

/// An identity value as the proxy meant it: HTTP's own padding (spaces and
/// tabs) taken off, and nothing else. A control character, or another Unicode
/// space at either end, is refused: readers trim those differently (Python's
/// `strip()` takes U+00A0 off, HTTP does not), so `admin\u{a0}` would be
/// one account here and `admin` behind.
fn identity_text<'a>(header: &str, value: &'a str) -> Result<&'a str, AuthError> {
    let text = value.trim_matches([' ', '\t']);
    let spaced = text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace);
    if spaced || text.chars().any(|c| c.is_control() || tokengate_api::is_invisible_or_bidi(c)) {
        return Err(AuthError::invalid_request(format!(
            "the {header} header has a control, invisible or bidirectional character, or a Unicode space at an \
             edge of a value, which readers show or trim differently"
        )));
    }
    Ok(text)
}

/// A header name as [`RequestContext::header`] reads it (lower-cased),
/// refusing names that are invalid or never reach providers.
fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let lower = name.trim().to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err(ConfigError::new(field, format!("`{name}` is not a valid HTTP header name")));
    }
    // Never in the context (see its docs): the provider would wait for a header that never comes.
    if tokengate_api::CREDENTIAL_HEADERS.contains(&lower.as_str()) {
        return Err(ConfigError::new(
            field,
            format!("`{name}` carries credentials and is never passed to providers; use the header your proxy sets"),
        ));
    }
    // `x_auth_principal` is X-Auth-Principal to a back end that reads headers
    // CGI-style (PHP also reads `.` as `_`): beside tokengate's own answer it
    // would be a second one, and `tokengate serve` refuses any decision
    // request carrying it. Folded as serve folds: any character but a letter
    // or digit is `-`.
    let folded: String = lower.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    if folded != lower && (SET_BY_TOKENGATE.contains(&folded.as_str()) || folded.starts_with(ATTRIBUTE_HEADERS)) {
        return Err(ConfigError::new(
            field,
            format!(
                "`{name}` is `{folded}` to back ends that read `_` or `.` as `-`, a header tokengate itself sets; \
                 write it `{folded}`"
            ),
        ));
    }
    Ok(lower)
}

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        // `10.1.2.3/8` means 10.0.0.0/8 to every proxy config format; store it so.
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{text}` is not a CIDR (like 10.0.0.0/8 or fd00::/8) or an IP address"))
}

impl UpstreamHeaderProvider {
    /// Checks the header names and `trusted_proxy_cidrs` (required: never believe anyone's headers).
    pub fn from_config(config: UpstreamHeaderConfig) -> Result<Self, ConfigError> {
        let principal_header = header_name("principal_header", &config.principal_header)?;
        let mut attribute_headers = Vec::new();
        for (header, attribute) in &config.attribute_headers {
            let field = format!("attribute_headers.{header}");
            let name = header_name(&field, header)?;
            if name == principal_header {
                return Err(ConfigError::new(field, "is also the principal_header"));
            }
            if attribute.trim().is_empty() {
                return Err(ConfigError::new(field, "the attribute name is empty"));
            }
            attribute_headers.push((name, attribute.trim().to_string()));
        }
        if config.trusted_proxy_cidrs.is_empty() {
            return Err(ConfigError::new(
                "trusted_proxy_cidrs",
                "is empty; list the addresses of the proxy that sets the identity headers (believing them from \
                 anyone would let every client choose who it is)",
            ));
        }
        let mut trusted = Vec::new();
        for (i, text) in config.trusted_proxy_cidrs.iter().enumerate() {
            let net = parse_cidr(text).map_err(|m| ConfigError::new(format!("trusted_proxy_cidrs[{i}]"), m))?;
            if net.prefix_len() == 0 {
                tracing::warn!(
                    cidr = %net,
                    "upstream_header trusts identity headers from every address; only safe if nothing but the proxy can reach this server"
                );
            }
            trusted.push(net);
        }
        // Each identity header is one of its own: the same header read twice would be ambiguous.
        let unique = |field: &str, name: &Option<String>, taken: &[String]| -> Result<Option<String>, ConfigError> {
            let Some(name) = name else { return Ok(None) };
            let name = header_name(field, name)?;
            let other =
                name == principal_header || attribute_headers.iter().any(|(h, _)| *h == name) || taken.contains(&name);
            if other {
                return Err(ConfigError::new(field, "is also another identity header"));
            }
            Ok(Some(name))
        };
        let attributes_header = unique("attributes_header", &config.attributes_header, &[])?;
        let tenant_header = unique("tenant_header", &config.tenant_header, attributes_header.as_slice())?;
        Ok(UpstreamHeaderProvider {
            principal_header,
            attribute_headers,
            attributes_header,
            tenant_header,
            comma_lists: true,
            trusted,
        })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

#[async_trait]
impl AuthProvider for UpstreamHeaderProvider {
    /// Ignores `token`: the identity is in the proxy's headers.
    async fn validate(&self, _token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        let Some(peer) = ctx.peer else {
            return Err(AuthError::new(
                ErrorKind::InsufficientScope,
                "the request's peer address is unknown; identity headers are believed only from trusted_proxy_cidrs",
            ));
        };
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; compare
        // them as the IPv4 addresses they are, so 10.0.0.0/8 still matches.
        let ip = peer.ip().to_canonical();
        if !self.is_trusted(ip) {
            return Err(AuthError::new(
                ErrorKind::InsufficientScope,
                format!("peer {ip} is not a trusted proxy; identity headers ignored"),
            ));
        }
        let identity_headers = std::iter::once(&self.principal_header)
            .chain(self.attribute_headers.iter().map(|(h, _)| h))
            .chain(self.attributes_header.as_ref())
            .chain(self.tenant_header.as_ref());
        for header in identity_headers {
            if ctx.repeated_headers.contains(header) {
                tracing::warn!(
                    header = %header,
                    proxy = %ip,
                    "identity header sent more than once; the proxy must overwrite it, not append a client's copy"
                );
                return Err(AuthError::invalid_request(format!(
                    "the {header} header arrived more than once; the proxy at {ip} must set it, not pass a client's \
                     copy along"
                )));
            }
        }
        // Every identity header is read exactly or refused: one that is not UTF-8 is an error, never absent.
        let principal = identity_text(&self.principal_header, ctx.header(&self.principal_header)?.unwrap_or_default())?;
        if principal.is_empty() {
            return Err(AuthError::invalid_token(format!(
                "trusted proxy {ip} sent no {} header (the user is not logged in at the proxy)",
                self.principal_header
            )));
        }
        let mut attributes = Attributes::new();
        let mut add = |header: &str, attribute: &str, item: &str| -> Result<(), AuthError> {
            let values = attributes.entry(attribute.to_string()).or_default();
            let item = identity_text(header, item)?;
            if !item.is_empty() && !values.iter().any(|v| v == item) {
                values.push(item.to_string());
            }
            Ok(())
        };
        for (header, attribute) in &self.attribute_headers {
            let Some(value) = ctx.header(header)? else {
                continue;
            };
            // Only a value that looks like a JSON array is parsed as one (the usual plain value is not).
            let items = value
                .trim_matches([' ', '\t'])
                .starts_with('[')
                .then(|| serde_json::from_str::<Vec<serde_json::Value>>(value));
            match items {
                Some(Ok(items)) => {
                    for item in &items {
                        add(header, attribute, &scalar(item).ok_or_else(|| not_a_list_of_values(header))?)?;
                    }
                }
                // Looks like a JSON list but is not one (`["contractors", staff]`): split on
                // commas it would be other values than written, so it is refused, not guessed.
                Some(Err(_)) => return Err(not_a_list_of_values(header)),
                None if self.comma_lists => value.split(',').try_for_each(|item| add(header, attribute, item))?,
                None => add(header, attribute, value)?,
            }
        }
        if let Some(header) = &self.attributes_header {
            // Present but empty is absent, as OGX reads it: a proxy may always set the header.
            if let Some(value) = ctx.header(header)?.filter(|v| !v.trim_matches([' ', '\t']).is_empty()) {
                // A key written twice is refused: which copy the proxy meant is not guessed.
                let Ok(serde_json::Value::Object(map)) = tokengate_api::json_with_unique_keys(value) else {
                    return Err(not_an_attribute(header));
                };
                for (attribute, v) in &map {
                    match v {
                        serde_json::Value::Array(items) => {
                            for item in items {
                                add(header, attribute, &scalar(item).ok_or_else(|| not_an_attribute(header))?)?;
                            }
                        }
                        other => add(header, attribute, &scalar(other).ok_or_else(|| not_an_attribute(header))?)?,
                    }
                }
            }
        }
        attributes.retain(|_, values| !values.is_empty());
        let tenant = match &self.tenant_header {
            Some(header) => match ctx.header(header)?.map(|v| identity_text(header, v)).transpose()? {
                None | Some("") => None,
                Some(value) => Some(tokengate_api::tenant_id(value, &format!("the {header} header"))?),
            },
            None => None,
        };
        Ok(Principal::new(principal).with_attributes(attributes).with_tenant(tenant))
    }

    /// The identity is in the proxy's headers: requests without a token are ours to judge.
    fn describe(&self) -> Description {
        Description::new("upstream_header")
            .with_message(format!(
                "Authentication required. This service trusts the identity its authenticating proxy asserts in the \
                 `{}` header; send the request through that proxy and log in there",
                self.principal_header
            ))
            .accepting(format!("the `{}` header from a trusted proxy", self.principal_header))
            .without_token()
    }

    /// Every request is this provider's: it needs no token, so no token's
    /// shape can say otherwise.
    fn ownership(&self, _token: &str) -> Ownership {
        Ownership::Mine
    }
}

#[cfg(test)]
mod tests;
