//! Arbitrary text through the path canonicalizer (`tokengate::path`) and
//! through `route_target`, which every front end uses to read a request
//! target before route rules and open paths see it.
//!
//! Invariants: no panic; a canonical path is canonical again and has none of
//! what the canonicalizer exists to refuse (`..`, `//`, `;`, backslashes,
//! encoded separators, control characters, an escape that a second decoding
//! would act on); and it names the same route as a back end that decodes the
//! raw path once and resolves dot segments (as proxies and servlet
//! containers do).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::http::credential::route_target;
use tokengate::path::{canonical_path, is_canonical};

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if let Ok(canonical) = canonical_path(&raw) {
        check_canonical(&raw, &canonical);
        assert_eq!(route(&raw), route(&canonical), "{raw:?} and its canonical form {canonical:?} route apart");
    }
    if let Ok((path, query)) = route_target(&raw) {
        check_canonical(&raw, &path);
        assert!(!raw.contains('#'), "a target with `#` was read: {raw:?}");
        if let Some(query) = query {
            assert!(raw.contains(&format!("?{query}")), "query {query:?} is not the target's: {raw:?}");
        }
    }
});

fn check_canonical(raw: &str, canonical: &str) {
    assert_eq!(canonical_path(canonical).as_deref(), Ok(canonical), "not idempotent: {raw:?} -> {canonical:?}");
    assert!(is_canonical(canonical), "is_canonical disagrees: {raw:?} -> {canonical:?}");
    assert!(canonical.starts_with('/'), "not absolute: {raw:?} -> {canonical:?}");
    assert!(!canonical.contains("//"), "repeated slash: {raw:?} -> {canonical:?}");
    for segment in canonical.split('/') {
        assert!(segment != "." && segment != "..", "dot segment: {raw:?} -> {canonical:?}");
    }
    for forbidden in [';', '\\', '?', '#'] {
        assert!(!canonical.contains(forbidden), "{forbidden:?} in {canonical:?} (from {raw:?})");
    }
    assert!(!canonical.chars().any(char::is_control), "control character: {raw:?} -> {canonical:?}");
    // The only escape left is `%25`, a literal `%`; the text it stands for holds no escape.
    let bytes = canonical.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            assert_eq!(bytes.get(i + 1..i + 3), Some(&b"25"[..]), "escape other than %25: {raw:?} -> {canonical:?}");
        }
    }
    let literal = canonical.replace("%25", "%");
    assert!(!has_escape(literal.as_bytes()), "decodes twice: {raw:?} -> {canonical:?}");
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some())
}

/// The segments a back end that decodes once (an encoded `/` becoming a
/// separator) and then resolves `.`/`..` routes to. For a canonical path,
/// `%25` is the literal `%` and decodes to it.
fn route(path: &str) -> Vec<Vec<u8>> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
            {
                decoded.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for segment in decoded.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            s => out.push(s.to_vec()),
        }
    }
    out
}
