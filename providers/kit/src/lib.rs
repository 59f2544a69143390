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
//! - [`identity`]: what makes two tokens the same token ([`token_identity`]:
//!   SHA-256 of the canonical form, the same for a JWS and its re-encoded or
//!   ECDSA-malleated twins), which every cache, revocation and the audit log
//!   ask; [`ecdsa`]: the low-S arithmetic it needs;
//! - [`RemoteResultCache`] and [`CacheConfig`]: the remote-result cache, keyed
//!   by [`token_identity`] or [`request_key`], single-flight, optionally backed
//!   by the replicas' shared store;
//! - [`shared_scope`] and [`for_section`]: each provider's scope in that
//!   shared store (the store's trait itself is the contract's,
//!   [`tokengate_api::SharedResultStore`]);
//! - [`duration`]: durations in config files (`30`, `"30s"`, `"5m"`);
//! - [`defaults`]: the transport settings' defaults, for providers' own config fields;
//! - [`file::read_document`]: a reloadable YAML or JSON file (size cap, empty
//!   file refused, errors located by field).
//!
//! Imports: `tokengate-api` and third-party crates only, never `tokengate`
//! or a provider crate, so every provider can depend on it.

#![deny(missing_docs)]

mod cache;
pub mod defaults;
pub mod duration;
pub mod ecdsa;
pub mod file;
mod http;
pub mod identity;
mod shared;

pub use cache::{request_key, token_and_prefix_hash, token_hash, CacheConfig, RemoteResultCache, Validated};
pub use http::{
    host_of, is_loopback, json_type, read_body_limited, read_json_limited, redirect_failure, HttpClientOptions,
    HttpFailure, UpstreamLimit, UpstreamPermit, DEFAULT_MAX_CONCURRENT_REQUESTS,
};
pub use identity::{identify, token_identity, Identity};
pub use shared::{for_section, shared_scope};
