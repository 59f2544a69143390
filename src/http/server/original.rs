//! The request a forward-auth decision is about: its method, path and host
//! from the headers `forward_auth.proxy` names (nginx's `X-Original-*`,
//! Traefik's and Caddy's `X-Forwarded-*`), or the decision request itself
//! (Envoy), with `auto` refusing anything that could mean two requests.

use crate::config::Proxy;
use http::header::{HeaderMap, HeaderName};
use http::Method;
use tokengate_api::{AuthError, RequestContext};

/// The original-request headers of both families. The context a provider
/// sees never holds them: the method, path and host it gets are the
/// resolved ones.
const ORIGINAL_REQUEST_HEADERS: [HeaderName; 6] =
    [X_ORIGINAL_URI, X_ORIGINAL_METHOD, X_FORWARDED_URI, X_FORWARDED_METHOD, X_FORWARDED_HOST, X_FORWARDED_PROTO];
// Names, not strings: a `&str` name is parsed again on every lookup.
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Where the original request's method and target come from.
struct Original<'a> {
    method: Option<&'a str>,
    /// `None`: the decision request's own path and query (Envoy).
    target: Option<&'a str>,
    host: Option<&'a str>,
    proto: Option<&'a str>,
}

impl Original<'_> {
    /// The decision request itself is the original (Envoy `ext_authz`).
    const OWN: Original<'static> = Original { method: None, target: None, host: None, proto: None };
}

/// The provider's view of the request the proxy is asking about.
///
/// Which headers describe it is `proxy`'s choice alone (see [`Proxy`]); with
/// `auto`, anything that could have two meanings is refused with
/// `invalid_request` (400) rather than decided on another path.
pub(super) fn original_request(
    parts: &http::request::Parts,
    proxy: Proxy,
    path_prefix: Option<&str>,
) -> Result<RequestContext, AuthError> {
    let headers = &parts.headers;
    crate::http::credential::refuse_method_override(headers)?;
    let original = match proxy {
        Proxy::Nginx => Original {
            method: Some(required(headers, &X_ORIGINAL_METHOD, proxy)?),
            target: Some(required(headers, &X_ORIGINAL_URI, proxy)?),
            host: single(headers, &X_FORWARDED_HOST)?,
            proto: None,
        },
        Proxy::Traefik | Proxy::Caddy => Original {
            method: Some(required(headers, &X_FORWARDED_METHOD, proxy)?),
            target: Some(required(headers, &X_FORWARDED_URI, proxy)?),
            host: single(headers, &X_FORWARDED_HOST)?,
            proto: single(headers, &X_FORWARDED_PROTO)?,
        },
        Proxy::Envoy => Original::OWN,
        // A path prefix is Envoy's: its client may send any header `allowed_headers` lets through.
        Proxy::Auto if path_prefix.is_some() => Original::OWN,
        Proxy::Auto => auto_detect(headers)?,
    };
    let method = match original.method {
        Some(m) => Method::from_bytes(m.as_bytes())
            .map_err(|_| AuthError::invalid_request("the original request's method is not an HTTP method"))?,
        None => parts.method.clone(),
    };
    let (path, query) = match original.target {
        Some(raw) => crate::http::credential::route_target(raw)?,
        None => {
            let path = parts.uri.path();
            let path = match path_prefix {
                None => path,
                Some(prefix) => match path.strip_prefix(prefix) {
                    Some(rest) if rest.starts_with('/') => rest,
                    Some("") => "/",
                    // A decision request outside the prefix is not one Envoy sends.
                    _ => {
                        return Err(AuthError::invalid_request(
                            "the decision request's path does not start with forward_auth.path_prefix",
                        ))
                    }
                },
            };
            (crate::http::credential::canonical_route(path)?, parts.uri.query().map(str::to_string))
        }
    };
    let mut ctx = crate::http::context::request_context(
        method.as_str(),
        path,
        query.as_deref(),
        headers,
        &ORIGINAL_REQUEST_HEADERS,
        crate::http::context::peer(&parts.extensions),
    );
    if let Some(host) = original.host {
        ctx.set_header("host", host);
    }
    if let Some(proto) = original.proto {
        ctx.set_header(X_FORWARDED_PROTO.as_str(), proto);
    }
    // The TCP peer is the proxy, never the client.
    ctx.client_ip = client_ip(headers, proxy)?;
    Ok(ctx)
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address, for limits counted by it: the last hop of
/// `X-Forwarded-For`, which each named proxy writes itself (the nginx
/// snippet's `$proxy_add_x_forwarded_for`, Traefik's and Caddy's
/// forward-auth requests, Envoy with `use_remote_address: true`), so it is
/// the address the proxy saw; every earlier hop is the client's to write.
/// Under `auto` no proxy says it wrote any hop: `None`. A repeated header,
/// or a last hop that is not one IP address, is refused, never guessed around.
fn client_ip(headers: &HeaderMap, proxy: Proxy) -> Result<Option<std::net::IpAddr>, AuthError> {
    if proxy == Proxy::Auto {
        return Ok(None);
    }
    let Some(hops) = single(headers, &X_FORWARDED_FOR)? else { return Ok(None) };
    let last = hops.rsplit(',').next().unwrap_or_default().trim_matches([' ', '\t']);
    last.parse().map(Some).map_err(|_| {
        AuthError::invalid_request(format!(
            "the last X-Forwarded-For hop, which forward_auth.proxy {} writes, is not an IP address",
            proxy.as_str()
        ))
    })
}

/// `auto`: nginx's `X-Original-*` or Traefik/Caddy's `X-Forwarded-*`, each
/// complete (URI and method); both only when they agree exactly; neither
/// means the decision request itself is the original (Envoy).
fn auto_detect(headers: &HeaderMap) -> Result<Original<'_>, AuthError> {
    let nginx = (single(headers, &X_ORIGINAL_URI)?, single(headers, &X_ORIGINAL_METHOD)?);
    let forwarded = (single(headers, &X_FORWARDED_URI)?, single(headers, &X_FORWARDED_METHOD)?);
    let host = single(headers, &X_FORWARDED_HOST)?;
    let proto = single(headers, &X_FORWARDED_PROTO)?;
    let complete = |(uri, method): (Option<&str>, Option<&str>), family: &str| match (uri, method) {
        (Some(_), Some(_)) | (None, None) => Ok(()),
        _ => Err(AuthError::invalid_request(format!(
            "{family} URI and method must come together; set forward_auth.proxy to say which proxy is in front"
        ))),
    };
    complete(nginx, "X-Original-*")?;
    complete(forwarded, "X-Forwarded-*")?;
    let chosen = match (nginx.0.is_some(), forwarded.0.is_some()) {
        (true, true) if nginx != forwarded => {
            return Err(AuthError::invalid_request(
                "X-Original-URI/-Method and X-Forwarded-Uri/-Method disagree; set forward_auth.proxy to say which \
                 proxy is in front",
            ))
        }
        (true, _) => nginx,
        (false, true) => forwarded,
        (false, false) => return Ok(Original::OWN),
    };
    Ok(Original { method: chosen.1, target: chosen.0, host, proto })
}

/// The one value of header `name`, if present: repeated, empty or not
/// visible ASCII is `invalid_request`, never "absent".
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AuthError::invalid_request(format!("the {name} header is repeated")));
    }
    let text = value
        .to_str()
        .ok()
        .filter(|v| v.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or_else(|| AuthError::invalid_request(format!("the {name} header has characters outside visible ASCII")))?
        .trim_matches([' ', '\t']);
    if text.is_empty() {
        return Err(AuthError::invalid_request(format!("the {name} header is empty")));
    }
    Ok(Some(text))
}

fn required<'a>(headers: &'a HeaderMap, name: &HeaderName, proxy: Proxy) -> Result<&'a str, AuthError> {
    single(headers, name)?.ok_or_else(|| {
        AuthError::invalid_request(format!(
            "no {name} header, which forward_auth.proxy {} always sends",
            proxy.as_str()
        ))
    })
}
