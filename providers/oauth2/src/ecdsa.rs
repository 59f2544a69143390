//! ECDSA low-S arithmetic, re-exported from [`tokengate_kit::ecdsa`] (where
//! the token identity that maps both S forms to one token needs it), under
//! the path test fixtures, benches and examples have always used.

pub use tokengate_kit::ecdsa::*;
