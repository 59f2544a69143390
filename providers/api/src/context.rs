use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What a provider may know about the request that carried the token.
///
/// Headers never include `Authorization` (nor `Proxy-Authorization`,
/// `X-API-Key` or cookies): a provider that forwards the context, such as
/// `custom`, must not forward credentials it was not given.
///
/// Headers and query parameters are read exactly, as UTF-8, or not at all: a
/// value that is not UTF-8 (a Latin-1 byte, a truncated sequence) is recorded
/// as unreadable, and [`RequestContext::header`], [`RequestContext::headers`]
/// and [`RequestContext::params`] refuse it with `invalid_request` rather than
/// answer as if it were absent. An identity header skipped in silence would
/// read as "no groups" or "one copy" (issue #20).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestContext {
    /// The request's method (`GET`).
    pub method: String,
    /// The request's path, without the query.
    pub path: String,
    /// Lower-cased header names; repeated headers joined with `, `. Only
    /// names whose every copy is UTF-8: see `unreadable_headers`.
    headers: BTreeMap<String, String>,
    /// Lower-cased names of headers with a copy that is not UTF-8. They are
    /// never in `headers`, and they count toward `repeated_headers`.
    #[serde(skip)]
    unreadable_headers: BTreeSet<String>,
    /// Query parameters, name → every value in order, when every name and
    /// value decodes to UTF-8.
    params: BTreeMap<String, Vec<String>>,
    /// Whether a query parameter's name or value did not decode to UTF-8
    /// (`%FF`); `params` then misses it.
    #[serde(skip)]
    unreadable_query: bool,
    /// The TCP peer, when known.
    #[serde(skip)]
    pub peer: Option<SocketAddr>,
    /// The client's address as the front end established it: the TCP peer
    /// for the tower layer; for `tokengate serve`, the hop the configured
    /// proxy profile writes (never a header the client could set), `None`
    /// when the profile names none. Usage limits counted by client IP read it.
    #[serde(skip)]
    pub client_ip: Option<std::net::IpAddr>,
    /// Lower-cased names of headers that came more than once, readable or
    /// not. Joined in `headers`, a repeat cannot be told from one value
    /// holding a comma; identity headers (`upstream_header`) must refuse
    /// repeats, since a proxy that appends instead of overwriting passes a
    /// client's own copy along.
    #[serde(skip)]
    pub repeated_headers: BTreeSet<String>,
    /// Where providers record their checks when someone asks (`tokengate
    /// explain`); off, and free, otherwise.
    #[serde(skip)]
    pub trace: Trace,
    /// Whether usage limits only say what they would decide, charging
    /// nothing: set by `tokengate check` and `explain`, which must not spend
    /// the real caller's rate or quota (shared in Redis) by asking. Front ends
    /// serving requests never set it.
    #[serde(skip)]
    pub peek_limits: bool,
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

/// `name` lower-cased, copied only when it has an upper-case letter (names
/// from an HTTP library are lower-case already).
fn lower(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

fn is_credential(name: &str) -> bool {
    CREDENTIAL_HEADERS.iter().any(|c| c.eq_ignore_ascii_case(name))
}

fn unreadable_header(name: &str) -> crate::AuthError {
    crate::AuthError::invalid_request(format!(
        "the {name} header is not UTF-8 text; it is refused rather than read as absent"
    ))
    .because(crate::Reason::Request)
}

impl RequestContext {
    /// A context for `method` and `path`, with no headers or query.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        RequestContext { method: method.into(), path: path.into(), ..Default::default() }
    }

    /// Adds one copy of a header unless it carries credentials.
    pub fn add_header(&mut self, name: &str, value: &str) {
        self.add_header_bytes(name, value.as_bytes());
    }

    /// Adds one copy of a header, as it came on the wire, unless it carries
    /// credentials: UTF-8 is kept as its text (obs-text bytes included);
    /// anything else marks the name unreadable. Either way the copy counts
    /// toward [`RequestContext::repeated_headers`].
    pub fn add_header_bytes(&mut self, name: &str, value: &[u8]) {
        if is_credential(name) {
            return;
        }
        let name = lower(name);
        let seen = self.headers.contains_key(name.as_ref()) || self.unreadable_headers.contains(name.as_ref());
        match std::str::from_utf8(value) {
            Ok(text) => match self.headers.get_mut(name.as_ref()) {
                Some(v) => {
                    v.push_str(", ");
                    v.push_str(text);
                }
                // A readable copy after an unreadable one stays out: the name as a whole is unreadable.
                None if self.unreadable_headers.contains(name.as_ref()) => {}
                None => {
                    self.headers.insert(name.clone().into_owned(), text.to_string());
                }
            },
            Err(_) => {
                self.headers.remove(name.as_ref());
                self.unreadable_headers.insert(name.clone().into_owned());
            }
        }
        if seen {
            self.repeated_headers.insert(name.into_owned());
        }
    }

    /// Sets header `name` to the one value `value`, replacing every copy the
    /// request had (readable or not): for a header the front end resolved
    /// itself, such as `host` from `X-Forwarded-Host`.
    pub fn set_header(&mut self, name: &str, value: &str) {
        if is_credential(name) {
            return;
        }
        let name = lower(name);
        self.unreadable_headers.remove(name.as_ref());
        self.repeated_headers.remove(name.as_ref());
        self.headers.insert(name.into_owned(), value.to_string());
    }

    /// The value of header `name` (any case; repeated copies joined with
    /// `, `, see [`RequestContext::repeated_headers`]), `Ok(None)` when the
    /// request has none; `invalid_request` when a copy is not UTF-8, which is
    /// never read as absent.
    pub fn header(&self, name: &str) -> Result<Option<&str>, crate::AuthError> {
        let name = lower(name);
        if self.unreadable_headers.contains(name.as_ref()) {
            return Err(unreadable_header(&name));
        }
        Ok(self.headers.get(name.as_ref()).map(String::as_str))
    }

    /// Every header but credentials, for a provider that passes the request
    /// on (`custom`); `invalid_request` when one is not UTF-8, since the
    /// receiver would judge a request without it.
    pub fn headers(&self) -> Result<&BTreeMap<String, String>, crate::AuthError> {
        match self.unreadable_headers.first() {
            Some(name) => Err(unreadable_header(name)),
            None => Ok(&self.headers),
        }
    }

    /// Every query parameter, name → every value in order; `invalid_request`
    /// when one does not decode to UTF-8, since a lossy reading would make
    /// `%FF` and `%FE` the same value.
    pub fn params(&self) -> Result<&BTreeMap<String, Vec<String>>, crate::AuthError> {
        if self.unreadable_query {
            return Err(crate::AuthError::invalid_request(
                "a query parameter does not decode to UTF-8 text; it is refused rather than read as another value",
            )
            .because(crate::Reason::Request));
        }
        Ok(&self.params)
    }

    /// Parses a raw query string (`a=1&b=2&a=3`, `+` for a space) into its
    /// parameters, decoding each name and value exactly (see
    /// [`RequestContext::params`] for one that is not UTF-8).
    pub fn set_query(&mut self, query: &str) {
        self.params.clear();
        self.unreadable_query = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (form_decode(name), form_decode(value)) {
                (Some(name), Some(value)) => self.params.entry(name).or_default().push(value),
                _ => self.unreadable_query = true,
            }
        }
    }

    /// Splits a request target (`/path?query`) into `path` and its parameters.
    pub fn set_target(&mut self, target: &str) {
        match target.split_once('?') {
            Some((path, query)) => {
                self.path = path.to_string();
                self.set_query(query);
            }
            None => {
                self.path = target.to_string();
                self.params.clear();
                self.unreadable_query = false;
            }
        }
    }
}

/// One `application/x-www-form-urlencoded` name or value: `+` is a space,
/// `%XX` a byte; `None` when the bytes are not UTF-8. A `%` without two hex
/// digits stays as it is (as the WHATWG URL standard and `form_urlencoded` have it).
fn form_decode(text: &str) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b))) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
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
        assert_eq!(c.headers().unwrap().keys().collect::<Vec<_>>(), ["x-trace"]);
        assert_eq!(c.header("x-trace").unwrap(), Some("1, 2"));
        assert!(c.repeated_headers.contains("x-trace"));
        assert!(!c.repeated_headers.contains("authorization"));
    }

    #[test]
    fn target_splits_path_and_repeated_params() {
        let mut c = RequestContext::default();
        c.set_target("/v1/models?a=1&b=x%20y&a=3&c=x+y&d=%zz&&e");
        assert_eq!(c.path, "/v1/models");
        let params = c.params().unwrap();
        assert_eq!(params["a"], vec!["1", "3"]);
        assert_eq!(params["b"], vec!["x y"]);
        assert_eq!(params["c"], vec!["x y"]);
        assert_eq!(params["d"], vec!["%zz"]);
        assert_eq!(params["e"], vec![""]);
    }

    #[test]
    fn utf8_header_values_are_read_as_their_text() {
        let mut c = RequestContext::new("GET", "/");
        c.add_header_bytes("X-Forwarded-Groups", "contractors,équipe".as_bytes());
        assert_eq!(c.header("x-forwarded-groups").unwrap(), Some("contractors,équipe"));
        assert_eq!(c.header("X-Forwarded-Groups").unwrap(), Some("contractors,équipe"));
        assert_eq!(c.header("x-other").unwrap(), None);
        assert!(c.repeated_headers.is_empty());
    }

    #[test]
    fn a_header_that_is_not_utf8_is_refused_never_absent() {
        let copies: [&[&[u8]]; 4] = [&[b"caf\xe9"], &[b"admin", b"\xff"], &[b"\xc3", b"admin"], &[b"\xe9", b"\xe9"]];
        for copies in copies {
            let mut c = RequestContext::new("GET", "/");
            for copy in copies {
                c.add_header_bytes("x-forwarded-user", copy);
            }
            let e = c.header("x-forwarded-user").unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{copies:?}");
            assert_eq!(c.headers().unwrap_err().code(), "invalid_request");
            assert_eq!(c.repeated_headers.contains("x-forwarded-user"), copies.len() > 1, "{copies:?}");
        }
    }

    #[test]
    fn a_resolved_header_replaces_every_copy() {
        let mut c = RequestContext::new("GET", "/");
        c.add_header_bytes("host", b"\xff");
        c.add_header_bytes("host", b"tokengate");
        c.set_header("host", "api.example.com");
        assert_eq!(c.header("host").unwrap(), Some("api.example.com"));
        assert!(!c.repeated_headers.contains("host"));
    }

    #[test]
    fn a_query_that_is_not_utf8_is_refused() {
        for query in ["group=%FF", "%FE=x", "a=1&b=caf%E9", "a=%C3"] {
            let mut c = RequestContext::default();
            c.set_query(query);
            assert_eq!(c.params().unwrap_err().code(), "invalid_request", "{query}");
            c.set_query("a=1");
            assert_eq!(c.params().unwrap()["a"], vec!["1"], "a new query forgets the old one");
        }
        let mut c = RequestContext::default();
        c.set_query("g=%C3%A9quipe");
        assert_eq!(c.params().unwrap()["g"], vec!["équipe"]);
    }

    proptest::proptest! {
        /// Wherever the query is UTF-8, the reading is `form_urlencoded`'s (the url crate's).
        #[test]
        fn query_reading_is_form_urlencoded_where_utf8(query in "[a-z=&+%0-9A-Fé ]{0,40}") {
            let mut c = RequestContext::default();
            c.set_query(&query);
            let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                expected.entry(k.into_owned()).or_default().push(v.into_owned());
            }
            // The generator never writes U+FFFD: in `expected` it stands for bytes that were not UTF-8.
            let lossy = expected.iter().any(|(k, vs)| k.contains('\u{fffd}') || vs.iter().any(|v| v.contains('\u{fffd}')));
            match c.params() {
                Ok(params) => proptest::prop_assert_eq!(params, &expected),
                Err(_) => proptest::prop_assert!(lossy, "{query:?} refused, but it decodes to {expected:?}"),
            }
            proptest::prop_assert_eq!(c.params().is_err(), lossy);
        }
    }
}
