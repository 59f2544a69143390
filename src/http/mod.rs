//! The HTTP front ends: the tower layer and the forward-auth server, and what
//! they share — the one front door ([`admission`]: [`gate::Gate::admit`] and
//! its [`admission::Admission`]), reading the credential and the route ([`credential`]), asking
//! the pipeline and recording the decision ([`gate`]), answering refusals the
//! RFC 6750 way ([`rejection`]), and the extractors handlers take ([`extract`]).
//!
//! May import: [`crate::config`], [`crate::pipeline`], [`crate::ops`],
//! [`crate::path`]. Nothing below imports this module.

pub mod admission;
pub mod context;
pub mod credential;
pub mod extract;
pub mod gate;
pub mod layer;
#[cfg(feature = "server")]
pub mod listener;
pub mod rejection;
#[cfg(feature = "server")]
pub mod server;
