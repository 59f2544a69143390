use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What a provider may know about the request that carried the token.
///
/// `headers` never contains `Authorization` (nor `Proxy-Authorization`,
/// `X-API-Key` or cookies): a provider that forwards the context, such as
/// `custom`, must not forward credentials it was not given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestContext {
    /// The request's method (`GET`).
    pub method: String,
    /// The request's path, without the query.
    pub path: String,
    /// Lower-cased header names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// Query parameters, name → every value in order.
    pub params: BTreeMap<String, Vec<String>>,
    /// The TCP peer, when known.
    #[serde(skip)]
    pub peer: Option<SocketAddr>,
    /// Lower-cased names of headers that came more than once. Joined in
    /// `headers`, a repeat cannot be told from one value holding a comma;
    /// identity headers (`upstream_header`) must refuse repeats, since a proxy
    /// that appends instead of overwriting passes a client's own copy along.
    #[serde(skip)]
    pub repeated_headers: BTreeSet<String>,
    /// Where providers record their checks when someone asks (`tokengate
    /// explain`); off, and free, otherwise.
    #[serde(skip)]
    pub trace: Trace,
}

/// One check a stage made, and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`signature`, `exp`, `route_policy`, …).
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, for humans.
    pub detail: String,
}

/// Where one attribute value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TracedAttribute {
    /// The attribute (`roles`).
    pub attribute: String,
    /// One of its values.
    pub value: String,
    /// The claim it was read from, when it came from one.
    pub claim: Option<String>,
    /// The rule that produced it (`claims_mapping: groups -> teams`).
    pub rule: String,
}

#[derive(Debug, Default)]
struct TraceLog {
    checks: Vec<Check>,
    attributes: Vec<TracedAttribute>,
}

/// A record of the checks made for one request, shared by the stages that
/// make them. [`Trace::default`] is off: recording then costs one branch and
/// builds no text.
#[derive(Debug, Clone, Default)]
pub struct Trace(Option<Arc<Mutex<TraceLog>>>);

impl Trace {
    /// A trace that records.
    pub fn on() -> Self {
        Trace(Some(Arc::default()))
    }

    /// Whether checks are recorded.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    fn with(&self, f: impl FnOnce(&mut TraceLog)) {
        if let Some(log) = &self.0 {
            f(&mut log.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// Records a check; `detail` is only called when the trace is on.
    pub fn check(&self, check: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.with(|log| log.checks.push(Check { check: check.to_string(), ok, detail: detail() }));
    }

    /// Records a failed check with the error's own detail, and hands the error back.
    pub fn failed(&self, check: &str, error: crate::AuthError) -> crate::AuthError {
        self.check(check, false, || error.detail().to_string());
        error
    }

    /// Records where an attribute value came from.
    pub fn attribute(&self, attribute: &str, value: &str, claim: Option<&str>, rule: impl FnOnce() -> String) {
        self.with(|log| {
            // The first rule to yield a value is the one that put it there.
            if !log.attributes.iter().any(|a| a.attribute == attribute && a.value == value) {
                log.attributes.push(TracedAttribute {
                    attribute: attribute.to_string(),
                    value: value.to_string(),
                    claim: claim.map(str::to_string),
                    rule: rule(),
                });
            }
        });
    }

    /// A point to [`Trace::rewind`] to: checks made on a pass that is then
    /// made again (after a key-set refresh) are not listed twice.
    pub fn mark(&self) -> usize {
        let mut n = 0;
        self.with(|log| n = log.checks.len());
        n
    }

    /// Forgets the checks recorded since `mark`.
    pub fn rewind(&self, mark: usize) {
        self.with(|log| log.checks.truncate(mark));
    }

    /// The checks recorded so far.
    pub fn checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        self.with(|log| out = log.checks.clone());
        out
    }

    /// The attribute sources recorded so far.
    pub fn attributes(&self) -> Vec<TracedAttribute> {
        let mut out = Vec::new();
        self.with(|log| out = log.attributes.clone());
        out
    }
}

/// Header names that carry credentials and never reach a provider's context.
///
/// `x-api-key` is here because servers read API keys from it (see
/// `tokengate_api_key::API_KEY_HEADER`) and pass them as the token: a provider
/// that forwards its context (`custom`) must not forward the key a second way.
pub const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key"];

impl RequestContext {
    /// A context for `method` and `path`, with no headers or query.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        RequestContext { method: method.into(), path: path.into(), ..Default::default() }
    }

    /// Adds a header unless it carries credentials.
    pub fn add_header(&mut self, name: &str, value: &str) {
        if CREDENTIAL_HEADERS.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            return;
        }
        // Names from an HTTP library are lower-case already: those are not copied to compare.
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(name.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(name)
        };
        match self.headers.get_mut(name.as_ref()) {
            Some(v) => {
                v.push_str(", ");
                v.push_str(value);
                self.repeated_headers.insert(name.into_owned());
            }
            None => {
                self.headers.insert(name.into_owned(), value.to_string());
            }
        }
    }

    /// Parses a raw query string (`a=1&b=2&a=3`) into `params`.
    pub fn set_query(&mut self, query: &str) {
        self.params.clear();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            self.params.entry(k.into_owned()).or_default().push(v.into_owned());
        }
    }

    /// Splits a request target (`/path?query`) into `path` and `params`.
    pub fn set_target(&mut self, target: &str) {
        match target.split_once('?') {
            Some((path, query)) => {
                self.path = path.to_string();
                self.set_query(query);
            }
            None => {
                self.path = target.to_string();
                self.params.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_enter_the_context() {
        let mut c = RequestContext::new("GET", "/");
        c.add_header("Authorization", "Bearer abc");
        c.add_header("X-Trace", "1");
        c.add_header("x-trace", "2");
        c.add_header("COOKIE", "s=1");
        c.add_header("X-Api-Key", "k");
        c.add_header("proxy-authorization", "Basic x");
        assert_eq!(c.headers.keys().collect::<Vec<_>>(), ["x-trace"]);
        assert_eq!(c.headers["x-trace"], "1, 2");
        assert!(c.repeated_headers.contains("x-trace"));
        assert!(!c.repeated_headers.contains("authorization"));
    }

    #[test]
    fn target_splits_path_and_repeated_params() {
        let mut c = RequestContext::default();
        c.set_target("/v1/models?a=1&b=x%20y&a=3");
        assert_eq!(c.path, "/v1/models");
        assert_eq!(c.params["a"], vec!["1", "3"]);
        assert_eq!(c.params["b"], vec!["x y"]);
    }
}
