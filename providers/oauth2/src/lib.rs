//! `oauth2_token`: JWTs verified against a key set, or opaque tokens checked by
//! RFC 7662 introspection.

pub mod config;
