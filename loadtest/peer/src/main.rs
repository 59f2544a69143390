//! The comparison server of `scripts/loadtest.sh` (issue #14): axum with a bare
//! `jwt-authorizer` layer, no logs, no metrics, no identity headers.
//!
//! ```text
//! tokengate-loadtest-peer --jwks-url URL [--issuer ISS] [--audience AUD] [--listen 127.0.0.1:0]
//! ```
//!
//! Prints `listening on http://ADDR` on stdout once it accepts connections.
//! `GET /healthz` answers 200 without auth; `GET /auth` answers 200 with an
//! empty body when the bearer token verifies against the JWKS and passes `exp`,
//! `nbf` (30 s leeway, as tokengate's default) and, when given, `iss` and `aud`;
//! else jwt-authorizer's own 401/403. The key set is fetched over plain http (no TLS
//! feature: see Cargo.toml).

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jwt_authorizer::{AuthError, IntoLayer, JwtAuthorizer, RegisteredClaims, Validation};
use tower::ServiceBuilder;

/// jwt-authorizer 0.15 is built on axum 0.7: its `From<AuthError>` is for
/// axum 0.7's `Response`. This local response type carries axum 0.8's through
/// the layer; a refusal becomes a bodyless 401 (or 403 for claims/authorizer
/// refusals, 500 for key-set trouble), as jwt-authorizer answers them.
struct Answer(Response);

impl From<AuthError> for Answer {
    fn from(e: AuthError) -> Self {
        use axum::http::StatusCode;
        let status = match e {
            AuthError::JwksRefreshError(_) | AuthError::InvalidKey(_) | AuthError::JwksSerialisationError(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            AuthError::InvalidClaims() | AuthError::NoAuthorizer() => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        Answer(status.into_response())
    }
}

fn usage() -> ! {
    eprintln!("usage: tokengate-loadtest-peer --jwks-url URL [--issuer ISS] [--audience AUD] [--listen ADDR]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let (mut jwks, mut issuer, mut audience, mut listen) = (None, None, None, "127.0.0.1:0".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--jwks-url" => jwks = Some(value),
            "--issuer" => issuer = Some(value),
            "--audience" => audience = Some(value),
            "--listen" => listen = value,
            _ => usage(),
        }
    }
    let jwks = jwks.unwrap_or_else(|| usage());

    let mut validation = Validation::new().exp(true).nbf(true).leeway(30);
    if let Some(iss) = issuer {
        validation = validation.iss(&[iss]);
    }
    if let Some(aud) = audience {
        validation = validation.aud(&[aud]);
    }
    let authorizer = JwtAuthorizer::<RegisteredClaims>::from_jwks_url(&jwks)
        .validation(validation)
        .build()
        .await
        .unwrap_or_else(|e| panic!("jwt-authorizer: {e}"));

    let auth = ServiceBuilder::new().map_response(|a: Answer| a.0).layer(authorizer.into_layer()).map_response(Answer);
    let app =
        Router::new().route("/auth", get(|| async {}).route_layer(auth)).route("/healthz", get(|| async { "ok\n" }));

    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap_or_else(|e| panic!("bind {listen}: {e}"));
    println!("listening on http://{}", listener.local_addr().expect("local addr"));
    axum::serve(listener, app).await.expect("serve");
}
