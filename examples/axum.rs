//! An axum service behind tokengate's `AuthLayer`.
//!
//! ```text
//! cargo run --example axum                      # self-contained: a dev issuer on a side port
//! cargo run --example axum -- tokengate.yaml    # any tokengate config
//! EXAMPLE_LISTEN=127.0.0.1:0 cargo run --example axum
//! ```
//!
//! It prints the address (and, in the self-contained mode, a token); then
//! `curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/whoami`.

use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use tokengate::{AuthLayer, Authenticated, MaybeAuthenticated};

/// The application: `/whoami` needs a principal, `/hello` greets anyone, `/healthz` is open.
pub fn app(auth: AuthLayer) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/hello", get(hello))
        .route("/healthz", get(|| async { "ok" }))
        .layer(auth.open_path("/healthz").open_path("/hello"))
}

async fn whoami(Authenticated(principal): Authenticated) -> Json<tokengate::Principal> {
    Json(principal)
}

async fn hello(MaybeAuthenticated(principal): MaybeAuthenticated) -> String {
    match principal {
        Some(p) => format!("hello, {}\n", p.principal),
        None => "hello, stranger\n".to_string(),
    }
}

/// No identity provider at hand: run tokengate's dev issuer on its own port
/// and trust it with the ordinary `oauth2_token` provider. Returns the layer
/// and a token it accepts.
pub async fn dev_setup() -> Result<(AuthLayer, String), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let dev = tokengate::dev::DevServer::new(listener.local_addr()?, &tokengate::Registry::with_builtins())?;
    let issuer = dev.issuer_router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, issuer.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    let token = dev.sample_token()?;
    Ok((AuthLayer::new(dev.pipeline().clone()).realm("example"), token))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let auth = match std::env::args().nth(1) {
        Some(path) => {
            let config = tokengate::Config::load(path.as_ref())?;
            AuthLayer::from_config(&config, &tokengate::Registry::with_builtins())?
        }
        None => {
            let (auth, token) = dev_setup().await?;
            println!("token: {token}");
            auth
        }
    };
    let pipeline = auth.pipeline().clone();
    let listen = std::env::var("EXAMPLE_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_string());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(auth).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(tokengate::http::server::shutdown_signal())
        .await?;
    pipeline.close().await;
    Ok(())
}
