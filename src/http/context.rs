//! The provider's view of a request ([`RequestContext`]), built the same way
//! by both front ends: the tower layer and the forward-auth server.

use axum::extract::ConnectInfo;
use http::header::{HeaderMap, HeaderName};
use http::Extensions;
use std::net::SocketAddr;
use tokengate_api::RequestContext;

/// A context for `method`, `path` and `query`, with every copy of every
/// header in `headers` but those in `except`, and the peer (credentials
/// never reach it: [`RequestContext::add_header_bytes`] leaves them out).
///
/// Each copy goes in as its bytes ([`RequestContext::add_header_bytes`]):
/// UTF-8 (obs-text included) is read as its text, anything else is recorded
/// as unreadable and refused by whoever reads it, and every copy counts
/// toward the repeated-header check. A copy left out here would read as
/// absent to a provider that takes identity from headers (issue #20).
pub fn request_context(
    method: &str,
    path: impl Into<String>,
    query: Option<&str>,
    headers: &HeaderMap,
    except: &[HeaderName],
    peer: Option<SocketAddr>,
) -> RequestContext {
    let mut ctx = RequestContext::new(method, path);
    if let Some(query) = query {
        ctx.set_query(query);
    }
    for (name, value) in headers {
        if !except.contains(name) {
            ctx.add_header_bytes(name.as_str(), value.as_bytes());
        }
    }
    ctx.peer = peer;
    // In front of an application (the tower layer) the peer is the client;
    // `tokengate serve` replaces it with what its proxy profile trusts.
    ctx.client_ip = ctx.peer.map(|p| p.ip());
    ctx
}

/// The peer a server recorded in `extensions`: axum's
/// `ConnectInfo<SocketAddr>`, or a plain `SocketAddr` (hyper users).
pub fn peer(extensions: &Extensions) -> Option<SocketAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0).or_else(|| extensions.get::<SocketAddr>().copied())
}
