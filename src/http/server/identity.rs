//! The answer to an allowed decision: the identity headers (`X-Auth-Principal`,
//! `X-Auth-Tenant`, `X-Auth-Attributes`, `X-Auth-Attr-<name>`, `X-Auth-Unknown-Attributes`),
//! percent-encoded so they decode back exactly, and the principal as JSON.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use tokengate_api::{AuthError, Principal};

/// An open path without a (valid) token: the identity headers are still sent,
/// empty, so a proxy that only overrides what tokengate returns (Envoy)
/// replaces a client's own copies of them too. An empty principal is never
/// an authenticated one (those are refused). The tenant is tenancy
/// `single`'s, else empty.
pub(super) fn anonymous(tenant: Option<&str>) -> Response {
    let mut out = RenderBuffer(BytesMut::new());
    let Some(tenant) = out.value(|b| percent_encode_into(b, tenant.unwrap_or_default())) else {
        return unrenderable("X-Auth-Tenant");
    };
    let mut headers = HeaderMap::new();
    headers.insert(X_AUTH_PRINCIPAL, HeaderValue::from_static(""));
    headers.insert(X_AUTH_ATTRIBUTES, HeaderValue::from_static("{}"));
    headers.insert(X_AUTH_TENANT, tenant);
    headers.insert(X_AUTH_UNKNOWN_ATTRIBUTES, HeaderValue::from_static(""));
    (StatusCode::OK, headers).into_response()
}

pub(super) fn allowed(principal: &Principal, names: &AttributeHeaderNames) -> Response {
    // Every value and the body are written into one buffer and handed out as
    // slices of it: a decision is on the path of every request, and a few
    // dozen small allocations per answer were a tenth of its cost.
    let mut out = RenderBuffer::for_principal(principal);
    // Room for the usual few; a provider may return any number of attributes.
    let mut headers = HeaderMap::with_capacity((6 + principal.attributes.len()).min(64));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Always present: behind Envoy a header left out is one the client may supply.
    let Some(name) = out.value(|b| percent_encode_into(b, &principal.principal)) else {
        return unrenderable("X-Auth-Principal");
    };
    headers.insert(X_AUTH_PRINCIPAL, name);
    // Always present, empty without a tenant; a tenant id never needs encoding, but it goes the same way.
    let tenant = principal.tenant.as_deref().unwrap_or("");
    let Some(tenant) = out.value(|b| percent_encode_into(b, tenant)) else {
        return unrenderable("X-Auth-Tenant");
    };
    headers.insert(X_AUTH_TENANT, tenant);
    let attributes = out.json(&principal.attributes);
    let Some(attributes_header) = attributes.clone().and_then(|json| HeaderValue::from_maybe_shared(json).ok()) else {
        return unrenderable("X-Auth-Attributes");
    };
    headers.insert(X_AUTH_ATTRIBUTES, attributes_header);
    // Unknown is not empty: the app must be able to tell "no teams" from
    // "teams could not be determined" (the attribute has no X-Auth-Attr-* header then).
    // Always present, empty when everything is known: a proxy that copies it
    // then replaces a client's own copy every time, and Caddy before 2.8.5
    // would copy its literal placeholder for a header the answer lacks.
    let Some(unknown) = out.value(|b| percent_encode_list(b, &principal.unknown_attributes)) else {
        return unrenderable("X-Auth-Unknown-Attributes");
    };
    headers.insert(X_AUTH_UNKNOWN_ATTRIBUTES, unknown);
    for (name, values) in &principal.attributes {
        let Some(header) = names.get(name) else { continue };
        // `[]` and `[""]` would both be an empty header; X-Auth-Attributes tells them apart.
        if values.is_empty() || (values.len() == 1 && values[0].is_empty()) {
            continue;
        }
        let Some(value) = out.value(|b| percent_encode_list(b, values)) else {
            return unrenderable("X-Auth-Attr-*");
        };
        // Past what a header map holds, refuse rather than leave some out: behind
        // Envoy the client's own copy of a missing one would stand in.
        if headers.try_insert(header, value).is_err() {
            tracing::error!("more X-Auth-Attr-* headers than an answer can hold; refusing rather than omitting some");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let body = attributes.and_then(|attributes| out.principal_json(principal, &attributes));
    let body = body.unwrap_or_else(|| Bytes::from_static(b"{}"));
    let mut response = Response::new(Body::from(body));
    *response.headers_mut() = headers;
    response
}

/// An identity header that cannot be sent exactly is a 500, never an answer
/// without it or with it empty: behind Envoy the client's own copy would stand
/// in, and an empty `X-Auth-Principal` is what an anonymous answer sends.
fn unrenderable(header: &str) -> Response {
    tracing::error!("{header} is not a valid header value; refusing rather than sending it wrong or not at all");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The headers of an answer under the name tokengate gives each (the
/// `X-Auth-Attr-` family is [`ATTRIBUTE_HEADERS`]), lower-case.
const SET_BY_TOKENGATE: [(&str, &str); 4] = [
    ("x-auth-principal", "X-Auth-Principal"),
    ("x-auth-tenant", "X-Auth-Tenant"),
    ("x-auth-attributes", "X-Auth-Attributes"),
    ("x-auth-unknown-attributes", "X-Auth-Unknown-Attributes"),
];
/// What every `X-Auth-Attr-<name>` starts with, lower-case.
const ATTRIBUTE_HEADERS: &str = "x-auth-attr-";

/// Which of the headers tokengate sets `name` stands for to some back end,
/// in tokengate's spelling; `None` for any other name. Case is ignored, and
/// every character but a letter or digit reads as `-`: CGI-style readers
/// (PHP-FPM, CGI, WSGI) fold `-` and `_` into one, PHP also turns `.` into
/// `_`, and a name no back end is known to fold is still no name to let
/// through beside tokengate's own.
fn set_by_tokengate(name: &str) -> Option<&'static str> {
    // Header names are ASCII; nothing else folds to one of these.
    let fold = |b: u8| if b.is_ascii_alphanumeric() { b.to_ascii_lowercase() } else { b'-' };
    let folds_to =
        |target: &str| name.len() >= target.len() && name.bytes().zip(target.bytes()).all(|(b, t)| fold(b) == t);
    if folds_to(ATTRIBUTE_HEADERS) {
        return Some("X-Auth-Attr-*");
    }
    SET_BY_TOKENGATE.iter().find(|(lower, _)| name.len() == lower.len() && folds_to(lower)).map(|(_, shown)| *shown)
}

/// Refuses (400 `invalid_request`) a decision request that carries a header
/// tokengate sets in its answer, under any name that folds to one
/// ([`set_by_tokengate`]), whatever its value, empty included.
///
/// The proxy asking passes the client's headers along (nginx `auth_request`,
/// Traefik `forwardAuth`, Caddy `forward_auth` all do), so such a header is a
/// client's copy its recipe did not remove: an `X-Auth-Attr-*` that the
/// nginx snippet does not list, a `_` spelling that nginx passes with
/// `ignore_invalid_headers off`. Behind the proxy it would reach the
/// application beside, or instead of, tokengate's own (issue #20); refusing
/// the decision keeps it from there whatever the recipe missed. `exempt`
/// are the exact names a provider reads identity from (an `upstream_header`
/// behind an authenticating proxy that sets `X-Auth-Attributes`, as OGX
/// configures it): those are the proxy's to set, as for any other name
/// that provider reads.
pub(super) fn refuse_identity_copies(headers: &HeaderMap, exempt: &[HeaderName]) -> Result<(), AuthError> {
    for name in headers.keys() {
        let Some(shown) = set_by_tokengate(name.as_str()) else { continue };
        if exempt.contains(name) {
            continue;
        }
        // A header name is visible ASCII without separators: nothing in it needs escaping.
        tracing::warn!(
            header = name.as_str(),
            "decision request carries its own {shown} header; the proxy must remove client copies"
        );
        return Err(AuthError::invalid_request(format!(
            "the request carries its own {shown} header (as {name}), which only tokengate sets; the proxy must \
             remove client copies"
        )));
    }
    Ok(())
}

const X_AUTH_PRINCIPAL: HeaderName = HeaderName::from_static("x-auth-principal");
const X_AUTH_TENANT: HeaderName = HeaderName::from_static("x-auth-tenant");
const X_AUTH_ATTRIBUTES: HeaderName = HeaderName::from_static("x-auth-attributes");
const X_AUTH_UNKNOWN_ATTRIBUTES: HeaderName = HeaderName::from_static("x-auth-unknown-attributes");

/// One allocation for every rendered value of an answer.
struct RenderBuffer(BytesMut);

impl RenderBuffer {
    fn for_principal(p: &Principal) -> Self {
        // Each value appears twice (headers and body); room for some escaping.
        // A short guess only costs a reallocation.
        let text: usize = p.principal.len()
            + p.attributes
                .iter()
                .map(|(k, v)| k.len() + 8 + v.iter().map(|v| v.len() + 4).sum::<usize>())
                .sum::<usize>()
            + p.unknown_attributes.iter().map(|n| n.len() + 4).sum::<usize>();
        RenderBuffer(BytesMut::with_capacity(3 * text + 128))
    }

    /// What `write` appends, as a header value; `None` when it is not one
    /// (the encoders here write only visible ASCII, so that would be a bug).
    fn value(&mut self, write: impl FnOnce(&mut BytesMut)) -> Option<HeaderValue> {
        write(&mut self.0);
        HeaderValue::from_maybe_shared(self.0.split().freeze()).ok()
    }

    /// [`write_ascii_json`] of `value`.
    fn json<T: serde::Serialize>(&mut self, value: &T) -> Option<Bytes> {
        let written = write_ascii_json((&mut self.0).writer(), value);
        let json = self.0.split().freeze();
        written.then_some(json)
    }

    /// [`write_ascii_json`] of `principal`, with its attributes' JSON already
    /// written for `X-Auth-Attributes` copied in rather than written again.
    fn principal_json(&mut self, principal: &Principal, attributes: &[u8]) -> Option<Bytes> {
        // Every field named: one added to `Principal` does not compile until it is rendered here.
        // `credential` is tokengate's bookkeeping (key id, limits), never sent upstream.
        let Principal { principal, attributes: _, unknown_attributes, tenant, credential: _ } = principal;
        let out = &mut self.0;
        out.put_slice(b"{\"principal\":");
        let mut written = write_ascii_json(out.writer(), principal);
        out.put_slice(b",\"attributes\":");
        out.put_slice(attributes);
        // As serde writes it: these two are left out when empty.
        if !unknown_attributes.is_empty() {
            out.put_slice(b",\"unknown_attributes\":");
            written &= write_ascii_json(out.writer(), unknown_attributes);
        }
        if let Some(tenant) = tenant {
            out.put_slice(b",\"tenant\":");
            written &= write_ascii_json(out.writer(), tenant);
        }
        out.put_u8(b'}');
        let body = out.split().freeze();
        written.then_some(body)
    }
}

/// `x-auth-attr-<name>` for each attribute name seen, made once: attribute
/// names come from the configuration's mapping, so the same few recur.
/// Only names that make a header and are short are kept, and at most
/// [`AttributeHeaderNames::KEPT`] of them, so a provider that returns
/// arbitrary names cannot make it hold much.
#[derive(Default)]
pub(super) struct AttributeHeaderNames(std::sync::RwLock<std::collections::HashMap<String, HeaderName>>);

impl AttributeHeaderNames {
    const KEPT: usize = 256;
    const LONGEST_KEPT: usize = 64;

    fn get(&self, name: &str) -> Option<HeaderName> {
        let full = match self.0.read() {
            Ok(known) => match known.get(name) {
                Some(header) => return Some(header.clone()),
                None => known.len() >= Self::KEPT,
            },
            Err(_) => true,
        };
        let header = attribute_header_name(name)?;
        if !full && name.len() <= Self::LONGEST_KEPT {
            if let Ok(mut known) = self.0.write() {
                if known.len() < Self::KEPT {
                    known.insert(name.to_string(), header.clone());
                }
            }
        }
        Some(header)
    }

    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.0.read().map(|known| known.len()).unwrap_or_default()
    }
}

/// Every byte that is not visible ASCII, plus `%` and `,`, as `%XX` (UTF-8).
///
/// The one encoding of every `X-Auth-*` value but `X-Auth-Attributes`: a
/// plain value never holds `%`, so percent-decoding gives back exactly what
/// the provider produced, and a list (`,`-joined) splits back into its values.
pub fn percent_encoded(value: &str) -> String {
    let mut out = BytesMut::with_capacity(value.len());
    percent_encode_into(&mut out, value);
    // Only ASCII was written.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

fn percent_encode_into(out: &mut BytesMut, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' && b != b',' {
            out.put_u8(b);
        } else {
            out.put_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
}

/// Each of `values`, [`percent_encoded`], joined with `,`.
fn percent_encode_list<'v>(out: &mut BytesMut, values: impl IntoIterator<Item = &'v String>) {
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        percent_encode_into(out, value);
    }
}

/// The inverse of [`percent_encoded`], for applications reading `X-Auth-*`
/// headers (split a list on `,` first); `None` for a bad escape or bytes that
/// are not UTF-8, which tokengate never sends.
pub fn percent_decoded(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits, nothing else: `from_str_radix` also takes a sign (`%+5`).
            let hex = value.get(i + 1..i + 3).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `x-auth-attr-<name>` for names that are already lower-case header tokens
/// (no `%`): header names are case-insensitive, so `Roles` and `roles` would
/// share one. Other names travel in `X-Auth-Attributes` only.
pub(super) fn attribute_header_name(name: &str) -> Option<HeaderName> {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$&'*+^`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(ok) {
        return None;
    }
    HeaderName::from_bytes(format!("x-auth-attr-{name}").as_bytes()).ok()
}

/// Writes `value` as compact JSON with every non-ASCII character escaped, so
/// that it is always a valid header value; false when it cannot be serialised.
pub(super) fn write_ascii_json<T: serde::Serialize>(out: impl std::io::Write, value: &T) -> bool {
    value.serialize(&mut serde_json::Serializer::with_formatter(out, AsciiFormatter)).is_ok()
}

struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // DEL is ASCII but no header value may hold it.
        let plain = |b: u8| b < 0x7f;
        if fragment.bytes().all(plain) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && plain(c as u8) {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_is_not_a_hex_digit() {
        // `u8::from_str_radix` takes a leading `+`: `%+5` would decode to U+0005.
        assert_eq!(percent_decoded("%+5"), None);
        assert_eq!(percent_decoded("a%2Cb%C3%A9").as_deref(), Some("a,bé"));
    }

    #[test]
    fn a_value_that_is_no_header_value_is_none_not_empty() {
        let mut out = RenderBuffer(BytesMut::new());
        assert!(out.value(|b| b.put_slice(b"line\nbreak")).is_none());
        assert_eq!(
            out.value(|b| percent_encode_into(b, "a\nb")).as_ref().map(HeaderValue::as_bytes),
            Some(&b"a%0Ab"[..])
        );
    }
}
