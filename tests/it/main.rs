//! The root package's integration tests: one test binary (one link step),
//! one fixtures module. Each module says what it checks; `cargo test --test it
//! <module>::` runs one of them.
//!
//! A test that needs an external program (`redis-server`) gets it through
//! [`fixtures::require_service`]: skipped with a note on a developer's
//! machine when the program is missing, a failure under `CI=true`.

mod fixtures;

mod api_key_header;
mod api_key_lifecycle;
mod api_key_redis;
mod attack_alg_confusion;
mod attack_claims;
mod attack_encoding;
mod attack_header_keys;
mod attack_hmac;
mod attack_signatures;
mod attack_sizes;
mod attack_unreadable_headers;
mod audit;
mod chain;
mod cli_check;
mod dev;
mod example_configs;
mod explain;
mod front_door;
mod fuzz_regressions;
mod layer;
mod limits;
mod ogx_conformance;
mod ogx_gateway;
mod redis;
mod review_round2;
mod revocation;
mod route_policy;
mod secrets_never_leak;
mod serve;
mod tenancy;
mod tls;
mod upstream_header;
