//! Arbitrary decision requests through the reading of the original request
//! (`tokengate serve`'s first step), for every `forward_auth.proxy` and with
//! and without an Envoy `path_prefix`.
//!
//! Input: one mode byte (proxy, prefix), then `\n`-separated lines: the
//! decision request's `METHOD target`, then `name:value` headers (raw bytes,
//! obs-text included, as hyper would hand them over).
//!
//! Invariants: no panic; a refusal is `invalid_request` (400); an accepted
//! request has a canonical path and a real method, taken from the headers the
//! chosen proxy sets and from nowhere else, each present exactly once; no
//! original-request or credential header reaches the provider's context; a
//! method override is never accepted; and every other header the client sent
//! is in the context, counted once per copy (an identity header is read or
//! refused, never absent).
#![no_main]

use http::header::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tokengate::config::Proxy;
use tokengate::http::server::fuzzing::original_request;
use tokengate::path::is_canonical;
use tokengate::ErrorKind;

const PROXIES: [Proxy; 5] = [Proxy::Nginx, Proxy::Traefik, Proxy::Caddy, Proxy::Envoy, Proxy::Auto];
const NGINX: [&str; 2] = ["x-original-uri", "x-original-method"];
const FORWARDED: [&str; 2] = ["x-forwarded-uri", "x-forwarded-method"];
/// Never copied into the context as the client sent them (host and proto are set from what was read).
const ORIGINAL: [&str; 6] = [
    "x-original-uri",
    "x-original-method",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-host",
    "x-forwarded-proto",
];
const CREDENTIALS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "x-api-key"];
const OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let proxy = PROXIES[usize::from(mode % 5)];
    let path_prefix = ((mode / 5) % 2 == 1).then_some("/ext_authz");
    let mut lines = rest.split(|b| *b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    let (method, target) = match request_line.iter().position(|b| *b == b' ') {
        Some(i) => (&request_line[..i], &request_line[i + 1..]),
        None => (&b"GET"[..], request_line),
    };
    let Ok(method) = http::Method::from_bytes(method) else { return };
    let Ok(uri) = http::Uri::try_from(target) else { return };
    let mut builder = http::Request::builder().method(method).uri(uri);
    let mut sent: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for line in lines.take(64) {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let Ok(name) = HeaderName::from_bytes(&line[..colon]) else { continue };
        // As hyper: optional whitespace around the value is not part of it.
        let value = line[colon + 1..].trim_ascii();
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        builder = builder.header(name.clone(), value.clone());
        sent.push((name, value));
    }
    let Ok(request) = builder.body(()) else { return };
    let (parts, ()) = request.into_parts();

    let ctx = match original_request(&parts, proxy, path_prefix) {
        Ok(ctx) => ctx,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "a malformed request is a 400, not {e}");
            return;
        }
    };
    let copies = |name: &str| sent.iter().filter(|(n, _)| n.as_str() == name).count();
    let value_of =
        |name: &str| sent.iter().find(|(n, _)| n.as_str() == name).and_then(|(_, v)| v.to_str().ok()).map(|v| v.trim());

    assert!(is_canonical(&ctx.path), "path {:?} is not canonical ({proxy:?})", ctx.path);
    assert!(http::Method::from_bytes(ctx.method.as_bytes()).is_ok(), "method {:?}", ctx.method);
    let dashed = |name: &str| name.replace('_', "-");
    assert!(
        !sent.iter().any(|(n, _)| OVERRIDES.contains(&dashed(n.as_str()).as_str())),
        "a method override was accepted ({proxy:?})"
    );

    // Which headers the method came from, and that they came once.
    let own = matches!(proxy, Proxy::Envoy) || (matches!(proxy, Proxy::Auto) && path_prefix.is_some());
    let family: Option<[&str; 2]> = match proxy {
        Proxy::Nginx => Some(NGINX),
        Proxy::Traefik | Proxy::Caddy => Some(FORWARDED),
        _ if own => None,
        _ => match (copies(NGINX[0]) > 0, copies(FORWARDED[0]) > 0) {
            (true, true) => {
                assert_eq!(value_of(NGINX[0]), value_of(FORWARDED[0]), "auto chose between disagreeing URIs");
                assert_eq!(value_of(NGINX[1]), value_of(FORWARDED[1]), "auto chose between disagreeing methods");
                Some(NGINX)
            }
            (true, false) => Some(NGINX),
            (false, true) => Some(FORWARDED),
            (false, false) => None,
        },
    };
    match family {
        Some([uri, method]) => {
            assert_eq!(copies(uri), 1, "{uri} sent {} times, accepted ({proxy:?})", copies(uri));
            assert_eq!(copies(method), 1, "{method} sent {} times, accepted ({proxy:?})", copies(method));
            assert_eq!(Some(ctx.method.as_str()), value_of(method), "method not from {method} ({proxy:?})");
        }
        None => {
            assert_eq!(ctx.method, parts.method.as_str(), "method not the decision request's own ({proxy:?})");
            if !own {
                for name in NGINX.iter().chain(&FORWARDED) {
                    assert_eq!(copies(name), 0, "{name} sent without its pair, accepted ({proxy:?})");
                }
            }
        }
    }
    if !own {
        assert!(copies("x-forwarded-host") <= 1, "repeated X-Forwarded-Host accepted ({proxy:?})");
    }

    // What the provider's context holds.
    let header = |name: &str| ctx.header(name).map(|v| v.map(str::to_string)).map_err(|e| e.kind());
    for name in ORIGINAL.iter().filter(|n| **n != "x-forwarded-proto").chain(&CREDENTIALS) {
        assert_eq!(header(name), Ok(None), "{name} reached the context ({proxy:?})");
    }
    let reads_proto = !own && !matches!(proxy, Proxy::Nginx) && family.is_some();
    let proto = reads_proto.then(|| value_of("x-forwarded-proto").map(str::to_string)).flatten();
    assert_eq!(header("x-forwarded-proto"), Ok(proto), "X-Forwarded-Proto not as read ({proxy:?})");
    if !own && family.is_some() && copies("x-forwarded-host") == 1 {
        let host = value_of("x-forwarded-host").map(str::to_string);
        assert_eq!(header("host"), Ok(host), "host is not X-Forwarded-Host's ({proxy:?})");
    }
    for (name, _) in &sent {
        let name = name.as_str();
        if ORIGINAL.contains(&name) || CREDENTIALS.contains(&name) || name == "host" {
            continue;
        }
        let values: Vec<&HeaderValue> = sent.iter().filter(|(n, _)| n.as_str() == name).map(|(_, v)| v).collect();
        if values.len() > 1 {
            assert!(ctx.repeated_headers.contains(name), "{name} sent {} times, not counted as repeated", values.len());
        }
        let texts: Option<Vec<&str>> = values.iter().map(|v| std::str::from_utf8(v.as_bytes()).ok()).collect();
        match texts {
            Some(texts) => {
                assert_eq!(header(name), Ok(Some(texts.join(", "))), "{name}: UTF-8 sent, not read as it is")
            }
            None => assert_eq!(header(name), Err(ErrorKind::InvalidRequest), "{name}: not UTF-8, not refused"),
        }
    }
});
