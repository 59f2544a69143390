//! Reading the request: the credential (`Authorization: Bearer`, else
//! `X-API-Key`), the route it asks for, and headers that would make a back end
//! run something other than what route rules judged.
//!
//! Every refusal here is `invalid_request` (400) with a [`Reason::Request`],
//! and never quotes the header it refuses.

use http::header::{HeaderMap, AUTHORIZATION};
use tokengate_api::{AuthError, Reason};

/// The header API keys travel in when there is no `Authorization` header.
pub const API_KEY_HEADER: &str = tokengate_api_key::API_KEY_HEADER;

fn refused(detail: impl Into<String>) -> AuthError {
    AuthError::invalid_request(detail).because(Reason::Request)
}

/// The canonical form of a request path (see [`crate::path`]), or the
/// `invalid_request` (400) a path without one single meaning gets.
pub fn canonical_route(path: &str) -> Result<String, AuthError> {
    crate::path::canonical_path(path).map_err(|e| refused(format!("refused request path: {e}")))
}

/// Headers that ask a back end to run another method than the request's.
const METHOD_OVERRIDES: &[&str] = &["x-http-method-override", "x-http-method", "x-method-override"];

/// `invalid_request` when the request asks for another method than it has:
/// route rules judge the real method, a back end honouring the override
/// would run another.
///
/// Underscore spellings count too: CGI-style gateways (PHP, some WSGI
/// servers) read `X_HTTP_Method_Override` as the same variable.
pub fn refuse_method_override(headers: &HeaderMap) -> Result<(), AuthError> {
    let dashed = |b: u8| if b == b'_' { b'-' } else { b };
    let is_override = |name: &str| METHOD_OVERRIDES.iter().any(|o| o.bytes().eq(name.bytes().map(dashed)));
    match headers.keys().find(|name| is_override(name.as_str())) {
        Some(name) => Err(refused(format!("the request carries {name}, which route rules cannot judge"))),
        None => Ok(()),
    }
}

/// A request target (`/path?query`, or absolute-form `https://host/path?query`)
/// as the canonical path and the raw query. A `#` is refused: URI parsers drop
/// what follows it, while some back ends route on the whole target
/// (`/public/x#/../../admin`).
pub fn route_target(raw: &str) -> Result<(String, Option<String>), AuthError> {
    if raw.contains('#') {
        return Err(refused("the request target has a `#`, which back ends read differently"));
    }
    let uri = raw.parse::<http::Uri>().ok().filter(|u| u.path().starts_with('/') && u.path_and_query().is_some());
    let Some(uri) = uri else {
        return Err(refused("the original request's URI is not a request target"));
    };
    Ok((canonical_route(uri.path())?, uri.query().map(str::to_string)))
}

/// The credential in `headers`: the bearer token of `Authorization`, else the
/// `X-API-Key` value; `Ok(None)` when there is neither.
///
/// `X-API-Key` must be exactly one header of visible ASCII without spaces;
/// errors never quote it.
pub fn credential(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    if headers.contains_key(AUTHORIZATION) {
        return bearer_token(headers);
    }
    let mut values = headers.get_all(API_KEY_HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(refused("several X-API-Key headers"));
    }
    let key = value
        .to_str()
        .map_err(|_| refused("the X-API-Key header has characters outside visible ASCII"))?
        .trim_matches([' ', '\t']);
    if key.is_empty() {
        return Err(refused("the X-API-Key header is empty"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refused("the X-API-Key header has spaces or control characters inside the key"));
    }
    Ok(Some(key))
}

/// The bearer token in `headers`: `Ok(None)` when there is no `Authorization`
/// header; for another scheme (`Basic …`, or a token where the scheme should
/// be) a 401 without an `error` attribute, as RFC 6750 §3.1 has it for a
/// request that carries no Bearer credential (and as OGX answers); an
/// `invalid_request` (400) when it is a malformed `Bearer` header: repeated,
/// unreadable, empty or outside token68 (scheme case-insensitive, §2.1).
///
/// Error details never quote the header: a client that forgot the scheme puts
/// its token where the scheme should be.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(refused("several Authorization headers"));
    }
    // The usual `Bearer <token68>` in one pass over its bytes; anything else takes
    // the careful path below, which words the refusal.
    if let Some(token) = plain_bearer(value.as_bytes()) {
        return Ok(Some(token));
    }
    let value = value
        .to_str()
        .map_err(|_| refused("the Authorization header has characters outside visible ASCII"))?
        .trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::invalid_token("the Authorization header does not carry a Bearer token")
            .because(Reason::MissingCredential));
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(refused("the Bearer token is empty"));
    }
    if !is_token68(token) {
        return Err(refused("the Bearer token has characters outside the token68 syntax (RFC 6750 section 2.1)"));
    }
    Ok(Some(token))
}

/// Whether every byte is of the token68 syntax (RFC 7235 §2.1) but `=`, which may only end it.
///
/// Compares without branching or an early exit, a chunk at a time, which the
/// compiler turns into vector compares: a token is most of a request's bytes
/// and is read on every request.
fn all_token68(bytes: &[u8]) -> bool {
    let fits = |b: u8| {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        letter | digit | (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/')
    };
    bytes.chunks(32).all(|chunk| chunk.iter().fold(true, |all, &b| all & fits(b)))
}

/// `Bearer <token68>` exactly (one space, no padding around it), else `None`.
fn plain_bearer(value: &[u8]) -> Option<&str> {
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme[..6].eq_ignore_ascii_case(b"bearer") || scheme[6] != b' ' {
        return None;
    }
    let body_len = token.iter().rposition(|&b| b != b'=')? + 1;
    if !all_token68(&token[..body_len]) {
        return None;
    }
    // Only ASCII is left, so this cannot fail.
    std::str::from_utf8(token).ok()
}

fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && all_token68(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    fn auth(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn token68_is_exactly_its_bytes() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(all_token68(&[b]), expected, "{b:#04x}");
            // In every position of a chunk and across chunk boundaries.
            for at in [0, 31, 32, 33, 63, 64, 100] {
                let mut token = vec![b'a'; 101];
                token[at] = b;
                assert_eq!(all_token68(&token), expected, "{b:#04x} at {at}");
            }
        }
        assert!(all_token68(b""));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(&HeaderMap::new()).unwrap(), None);
        assert_eq!(bearer_token(&auth(&["Bearer abc.def-_~+/=="])).unwrap(), Some("abc.def-_~+/=="));
        assert_eq!(bearer_token(&auth(&["bEaReR   tok"])).unwrap(), Some("tok"));
        for other in ["Basic dXNlcjpwYXNz", "InvalidFormat x", "eyJabc", ""] {
            let e = bearer_token(&auth(&[other])).unwrap_err();
            assert_eq!((e.code(), e.reason()), ("invalid_token", &Reason::MissingCredential), "{other:?}");
        }
        for bad in ["Bearer", "Bearer ", "Bearer a b", "Bearer a=b", "Bearer ="] {
            let e = bearer_token(&auth(&[bad])).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{bad:?}");
        }
        assert_eq!(bearer_token(&auth(&["Bearer a", "Bearer b"])).unwrap_err().code(), "invalid_request");
    }

    /// The fast path accepts nothing the careful path refuses, and reads the same token.
    #[test]
    fn the_fast_path_agrees_with_the_careful_one() {
        let alphabet = [b'a', b'Z', b'0', b'-', b'.', b'_', b'~', b'+', b'/', b'=', b' ', b'\t', b'%', b',', 0xC3];
        let mut seed = 7u64;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (seed >> 33) as usize % 8;
            let mut value = if seed & 1 == 0 { b"Bearer ".to_vec() } else { b"bearer ".to_vec() };
            for i in 0..len {
                value.push(alphabet[((seed >> (i * 4 + 3)) as usize) % alphabet.len()]);
            }
            let Some(fast) = plain_bearer(&value) else { continue };
            let Ok(header) = HeaderValue::from_bytes(&value) else { continue };
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, header);
            assert_eq!(bearer_token(&h).unwrap(), Some(fast), "{value:?}");
        }
        assert_eq!(plain_bearer(b"Bearer abc.def=="), Some("abc.def=="));
        for other in
            [&b"Bearer "[..], b"Bearer =", b"Bearer a=b", b"Bearer  a", b"Basic abc", b"Bearer a b", b"Bearer\ta"]
        {
            assert_eq!(plain_bearer(other), None, "{other:?}");
        }
    }

    #[test]
    fn x_api_key_when_no_authorization() {
        let mut h = HeaderMap::new();
        h.insert(API_KEY_HEADER, HeaderValue::from_static("tg_key-1"));
        assert_eq!(credential(&h).unwrap(), Some("tg_key-1"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        assert_eq!(credential(&h).unwrap(), Some("other"), "Authorization wins");
        let mut h = HeaderMap::new();
        h.append(API_KEY_HEADER, HeaderValue::from_static("a"));
        h.append(API_KEY_HEADER, HeaderValue::from_static("b"));
        assert_eq!(credential(&h).unwrap_err().detail(), "several X-API-Key headers");
        for bad in ["", "  ", "a b"] {
            let mut h = HeaderMap::new();
            h.insert(API_KEY_HEADER, HeaderValue::from_str(bad).unwrap());
            let e = credential(&h).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{bad:?}");
            assert!(bad.trim().is_empty() || !e.detail().contains(bad), "{e}");
        }
        assert_eq!(credential(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn scheme_errors_never_echo_the_header() {
        let e = bearer_token(&auth(&["eyJsecret-token-value"])).unwrap_err();
        assert!(!e.detail().contains("eyJ"), "{e}");
    }
}
