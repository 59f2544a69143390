//! What a handler behind [`super::layer::AuthLayer`] takes: the principal
//! the layer put in the request's extensions.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;
use std::convert::Infallible;
use tokengate_api::Principal;

/// The authenticated principal, for axum handlers behind [`AuthLayer`].
///
/// Without a principal in the request (no layer, or an open path reached
/// without a valid token) the handler is not called and the client gets a
/// 500: that is a wiring mistake, and failing closed is the safe way to
/// surface it. Use [`MaybeAuthenticated`] or `Option<Authenticated>` on open paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub Principal);

impl std::ops::Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Principal>() {
            Some(p) => Ok(Authenticated(p.clone())),
            None => {
                tracing::error!(
                    path = parts.uri.path(),
                    "a handler takes `Authenticated` but no principal is present: is the route behind AuthLayer, or on an open path?"
                );
                let body = serde_json::json!({"error": {"code": "server_error", "message": "Authentication is misconfigured on this server"}});
                Err((StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response())
            }
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Authenticated {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned().map(Authenticated))
    }
}

/// The principal when there is one (open paths, routes outside the layer): never rejects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MaybeAuthenticated(pub Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthenticated {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeAuthenticated(parts.extensions.get::<Principal>().cloned()))
    }
}
