//! Any principal (name, attributes, unknown attributes, tenant) through the
//! answer `tokengate serve` gives when it allows a request, read back the way
//! an application behind the proxy reads it.
//!
//! Invariants: the answer is a 200 whose header values are all visible ASCII;
//! `X-Auth-Principal` and `X-Auth-Tenant` percent-decode to exactly the
//! principal and tenant; `X-Auth-Attributes` parses to exactly the
//! attributes; each `X-Auth-Attr-<name>` splits on `,` and decodes to exactly
//! that attribute's values, and exists only for such an attribute;
//! `X-Auth-Unknown-Attributes` decodes to exactly the unknown names; the body
//! is the principal as JSON. Plus `percent_decoded`'s own contract: a `%`
//! that does not start two hex digits is `None`, never a guess.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use tokengate::http::server::fuzzing::allowed;
use tokengate::http::server::{percent_decoded, percent_encoded};
use tokengate::Principal;

type Input = (String, Vec<(String, Vec<String>)>, Vec<String>, Option<String>, String);

fuzz_target!(|input: Input| {
    let (name, attributes, unknown, tenant, loose) = input;
    check_decoder(&loose);
    let principal = Principal {
        principal: name,
        attributes: attributes.into_iter().take(64).collect(),
        unknown_attributes: unknown.into_iter().take(16).collect(),
        tenant,
        credential: None,
    };
    let response = allowed(&principal);
    assert_eq!(response.status(), 200, "no answer for {principal:?}");
    let headers = response.headers();
    let text = |name: &str| -> Option<&str> {
        let mut values = headers.get_all(name).iter();
        let value = values.next()?;
        assert!(values.next().is_none(), "{name} sent twice");
        let text = value.to_str().unwrap_or_else(|_| panic!("{name} is not visible ASCII: {value:?}"));
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{name} is not visible ASCII: {text:?}");
        Some(text)
    };
    let decode =
        |name: &str, value: &str| percent_decoded(value).unwrap_or_else(|| panic!("{name}: {value:?} does not decode"));
    let decode_list = |name: &str, value: &str| -> Vec<String> { value.split(',').map(|v| decode(name, v)).collect() };

    let sent_principal = text("x-auth-principal").expect("X-Auth-Principal is always sent");
    assert_eq!(decode("X-Auth-Principal", sent_principal), principal.principal);
    let sent_tenant = text("x-auth-tenant").expect("X-Auth-Tenant is always sent");
    assert_eq!(decode("X-Auth-Tenant", sent_tenant), principal.tenant.clone().unwrap_or_default());

    let sent_attributes = text("x-auth-attributes").expect("X-Auth-Attributes is always sent");
    let read: BTreeMap<String, Vec<String>> =
        serde_json::from_str(sent_attributes).unwrap_or_else(|e| panic!("X-Auth-Attributes {sent_attributes:?}: {e}"));
    assert_eq!(read, principal.attributes, "X-Auth-Attributes");

    for (attribute, values) in &principal.attributes {
        let Some(header) = per_attribute_header(attribute) else { continue };
        match text(&header) {
            Some(value) => assert_eq!(&decode_list(&header, value), values, "{header}"),
            None => assert!(values.is_empty() || values == &[String::new()], "{header} missing for {values:?}"),
        }
    }
    for header in headers.keys().filter_map(|n| n.as_str().strip_prefix("x-auth-attr-")) {
        assert!(
            principal
                .attributes
                .keys()
                .any(|a| per_attribute_header(a).as_deref() == Some(&format!("x-auth-attr-{header}"))),
            "x-auth-attr-{header} for no attribute"
        );
    }

    // Sent empty or not at all when nothing is unknown (issue 20.5 makes it always sent).
    let unknown: BTreeSet<String> = match text("x-auth-unknown-attributes") {
        Some("") if !principal.unknown_attributes.contains("") => BTreeSet::new(),
        Some(value) => decode_list("X-Auth-Unknown-Attributes", value).into_iter().collect(),
        None => BTreeSet::new(),
    };
    assert_eq!(unknown, principal.unknown_attributes, "X-Auth-Unknown-Attributes");

    let body = body_bytes(response);
    let read: Principal = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("body {body:?}: {e}"));
    assert_eq!(read, principal, "the body");
});

/// `x-auth-attr-<name>` for the names that get one (lower-case header tokens).
fn per_attribute_header(name: &str) -> Option<String> {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$&'*+^`|~".contains(&b);
    (!name.is_empty() && name.bytes().all(ok)).then(|| format!("x-auth-attr-{name}"))
}

fn check_decoder(value: &str) {
    let bytes = value.as_bytes();
    let hex = |b: Option<&u8>| b.is_some_and(u8::is_ascii_hexdigit);
    let bad_escape = (0..bytes.len()).any(|i| bytes[i] == b'%' && !(hex(bytes.get(i + 1)) && hex(bytes.get(i + 2))));
    let decoded = percent_decoded(value);
    if bad_escape {
        assert_eq!(decoded, None, "{value:?} has a bad escape, decoded anyway");
    }
    if let Some(decoded) = &decoded {
        assert_eq!(percent_decoded(&percent_encoded(decoded)).as_ref(), Some(decoded), "{value:?}");
    }
    assert_eq!(percent_decoded(&percent_encoded(value)).as_deref(), Some(value), "{value:?} does not round-trip");
}

fn body_bytes(response: axum::response::Response) -> Vec<u8> {
    let body = response.into_body();
    tokengate_fuzz::RUNTIME.block_on(axum::body::to_bytes(body, usize::MAX)).expect("the body is in memory").to_vec()
}
