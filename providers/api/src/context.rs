use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// What a provider may know about the request that carried the token.
///
/// `headers` never contains `Authorization` (nor `Proxy-Authorization`,
/// `X-API-Key` or cookies): a provider that forwards the context, such as
/// `custom`, must not forward credentials it was not given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestContext {
    pub method: String,
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
}

/// Header names that carry credentials and never reach a provider's context.
///
/// `x-api-key` is here because servers read API keys from it (see
/// `tokengate_api_key::API_KEY_HEADER`) and pass them as the token: a provider
/// that forwards its context (`custom`) must not forward the key a second way.
pub const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key"];

impl RequestContext {
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        RequestContext { method: method.into(), path: path.into(), ..Default::default() }
    }

    /// Adds a header unless it carries credentials.
    pub fn add_header(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            return;
        }
        match self.headers.get_mut(&name) {
            Some(v) => {
                v.push_str(", ");
                v.push_str(value);
                self.repeated_headers.insert(name);
            }
            None => {
                self.headers.insert(name, value.to_string());
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
        assert!(!c.headers.contains_key("authorization"));
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
