//! What tokengate's HTTP-backed providers share, beside the contract.
//!
//! `tokengate-api` is the contract (the `AuthProvider` trait, `Principal`,
//! errors, `RequestContext`, claims mapping, builders) and nothing else, so a
//! provider that needs only the contract never sees an HTTP client, a cache
//! or a metrics crate. This crate owns the machinery a provider that calls an
//! identity service over HTTP needs:
//!
//! - [`HttpClientOptions`]: one reqwest client per provider (rustls, timeouts,
//!   a custom CA, redirect rules), and [`HttpFailure`], which words transport
//!   failures (a TLS failure by its rustls type) so an unreachable service is
//!   never mistaken for a bad token; bounded body reads
//!   ([`read_body_limited`], [`read_json_limited`]);
//! - [`UpstreamLimit`]: the cap on calls in flight to the identity service;
//! - [`RemoteResultCache`] and [`CacheConfig`]: the remote-result cache, keyed
//!   by [`token_hash`] or [`request_key`], single-flight, optionally backed by
//!   the replicas' shared store;
//! - [`shared_scope`] and [`for_section`]: each provider's scope in that
//!   shared store (the store's trait itself is the contract's,
//!   [`tokengate_api::SharedResultStore`]);
//! - [`duration`]: durations in config files (`30`, `"30s"`, `"5m"`).
//!
//! Imports: `tokengate-api` and third-party crates only, never `tokengate`
//! or a provider crate, so every provider can depend on it.

#![deny(missing_docs)]

mod cache;
pub mod duration;
mod http;
mod shared;

pub use cache::{request_key, token_hash, CacheConfig, RemoteResultCache, Validated};
pub use http::{
    host_of, is_loopback, read_body_limited, read_json_limited, redirect_failure, HttpClientOptions, HttpFailure,
    UpstreamLimit, UpstreamPermit, DEFAULT_MAX_CONCURRENT_REQUESTS,
};
pub use shared::{for_section, shared_scope};
