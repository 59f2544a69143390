//! The answer to an allowed decision: the identity headers (`X-Auth-Principal`,
//! `X-Auth-Tenant`, `X-Auth-Attributes`, `X-Auth-Attr-<name>`, `X-Auth-Unknown-Attributes`),
//! percent-encoded so they decode back exactly, and the principal as JSON.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use tokengate_api::Principal;

/// An open path without a (valid) token: the identity headers are still sent,
/// empty, so a proxy that only overrides what tokengate returns (Envoy)
/// replaces a client's own `X-Auth-Principal` too. An empty principal is
/// never an authenticated one (those are refused).
/// The tenant is tenancy `single`'s, else empty.
pub(super) fn anonymous(tenant: Option<&str>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("x-auth-principal"), HeaderValue::from_static(""));
    headers.insert(HeaderName::from_static("x-auth-attributes"), HeaderValue::from_static("{}"));
    headers.insert(HeaderName::from_static("x-auth-tenant"), header_text(tenant.unwrap_or_default()));
    (StatusCode::OK, headers).into_response()
}

pub(super) fn allowed(principal: &Principal) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Always present: behind Envoy a header left out is one the client may supply.
    headers.insert(HeaderName::from_static("x-auth-principal"), header_text(&principal.principal));
    // Always present, empty without a tenant; a tenant id never needs encoding, but it goes the same way.
    headers.insert(HeaderName::from_static("x-auth-tenant"), header_text(principal.tenant.as_deref().unwrap_or("")));
    match HeaderValue::from_str(&ascii_json(&principal.attributes)) {
        Ok(v) => {
            headers.insert(HeaderName::from_static("x-auth-attributes"), v);
        }
        // Never an allow without it: behind Envoy the client's copy would stand in.
        Err(_) => {
            tracing::error!("X-Auth-Attributes is not a valid header value; refusing rather than omitting it");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    // Unknown is not empty: the app must be able to tell "no teams" from
    // "teams could not be determined" (the attribute has no X-Auth-Attr-* header then).
    if !principal.unknown_attributes.is_empty() {
        let names: Vec<String> = principal.unknown_attributes.iter().map(|n| percent_encoded(n)).collect();
        if let Ok(v) = HeaderValue::from_str(&names.join(",")) {
            headers.insert(HeaderName::from_static("x-auth-unknown-attributes"), v);
        }
    }
    for (name, values) in &principal.attributes {
        let Some(header) = attribute_header_name(name) else { continue };
        // `[]` and `[""]` would both be an empty header; X-Auth-Attributes tells them apart.
        if values.is_empty() || (values.len() == 1 && values[0].is_empty()) {
            continue;
        }
        let joined = values.iter().map(|v| percent_encoded(v)).collect::<Vec<_>>().join(",");
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(header, v);
        }
    }
    let body = ascii_json(principal);
    (StatusCode::OK, headers, Body::from(body)).into_response()
}

/// Every byte that is not visible ASCII, plus `%` and `,`, as `%XX` (UTF-8).
///
/// The one encoding of every `X-Auth-*` value but `X-Auth-Attributes`: a
/// plain value never holds `%`, so percent-decoding gives back exactly what
/// the provider produced, and a list (`,`-joined) splits back into its values.
pub fn percent_encoded(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' && b != b',' {
            out.push(b as char);
        } else {
            out.extend(['%', HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 0xf)] as char]);
        }
    }
    out
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
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn header_text(value: &str) -> HeaderValue {
    // Only visible ASCII is left after encoding, which is always a valid header value.
    HeaderValue::from_str(&percent_encoded(value)).unwrap_or_else(|_| HeaderValue::from_static(""))
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

/// Compact JSON with every non-ASCII character escaped, so it is always a valid header value.
pub(super) fn ascii_json<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    if value.serialize(&mut ser).is_err() {
        return "{}".to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| "{}".to_string())
}

struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            // DEL is ASCII but no header value may hold it.
            if c.is_ascii() && c != '\u{7f}' {
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
