//! Helpers for the issue #7 tests (chains, route policy, revocation, audit,
//! explain, API-key header, upstream headers): configs written to real files,
//! the forward-auth server and the layer on 127.0.0.1, the real binary.
#![allow(dead_code)]

use axum::routing::any;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tokengate::layer::{AuthLayer, Authenticated};
use tokengate::server::{self, ServeOptions};
use tokengate::{Config, Registry};

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn load(path: &Path) -> Config {
    Config::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A running server and how to stop it.
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops the server and waits for it (and its provider's `close`).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

/// `tokengate serve` for `config`, as the binary wires it (audit included).
pub async fn serve_config(config: &Config) -> Running {
    let provider = config.build(&Registry::with_builtins()).unwrap();
    let mut options = ServeOptions::from_config(config);
    options.audit = config.audit_log().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server::serve(listener, provider, options, async move {
        let _ = rx.await;
    }));
    Running { base, stop: Some(tx), done: Some(done) }
}

async fn whoami(Authenticated(p): Authenticated) -> Json<tokengate::Principal> {
    Json(p)
}

/// An axum app behind `AuthLayer::from_config(config)`: every path answers
/// with the principal. Peer addresses are recorded (`ConnectInfo`).
pub async fn serve_layer(config: &Config) -> String {
    let layer = AuthLayer::from_config(config, &Registry::with_builtins()).unwrap();
    let app = Router::new().fallback(any(whoami)).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    format!("http://{addr}")
}

/// Runs the binary off the async runtime so in-process servers keep serving.
pub async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("tokengate runs")
    })
    .await
    .unwrap()
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Retries `f` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An `api_key` section (prefix `tg_`) holding `keys` as (key, principal, roles).
pub fn api_key_yaml(indent: &str, keys: &[(&str, &str, &[&str])]) -> String {
    let mut out = format!("{indent}type: api_key\n{indent}prefix: tg_\n{indent}keys:\n");
    for (key, principal, roles) in keys {
        out.push_str(&format!(
            "{indent}  - hash: {}\n{indent}    principal: {principal}\n{indent}    attributes: {{roles: [{}]}}\n",
            tokengate_api_key::hash_key(key),
            roles.join(", ")
        ));
    }
    out
}

/// An `oauth2_token` section for a test IdP, with a claims mapping whose attribute names show which issuer mapped it.
pub fn oauth2_yaml(indent: &str, issuer: &str, jwks: &str, mapping: &[(&str, &str)]) -> String {
    let mut out = format!(
        "{indent}type: oauth2_token\n{indent}issuer: {issuer}\n{indent}audience: tokengate-dev\n{indent}jwks:\n{indent}  uri: {jwks}\n{indent}claims_mapping:\n"
    );
    for (claim, attribute) in mapping {
        out.push_str(&format!("{indent}  {claim}: {attribute}\n"));
    }
    out
}

/// A `providers:` list item: the section with `- ` before its first line.
pub fn list_item(section: &str) -> String {
    let mut out = String::new();
    for (i, line) in section.lines().enumerate() {
        let body = line.strip_prefix("    ").unwrap_or(line);
        out.push_str(if i == 0 { "  - " } else { "    " });
        out.push_str(body);
        out.push('\n');
    }
    out
}
