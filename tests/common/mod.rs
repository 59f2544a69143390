//! Shared fixtures: a real ES256 identity provider on a real socket, an
//! `oauth2_token` provider trusting it, and a recording provider.
#![allow(dead_code)]

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokengate::dev::{DevIssuer, DEV_AUDIENCE};
use tokengate::{Attributes, AuthError, AuthProvider, DynProvider, Principal, Registry, RequestContext};

/// An identity provider: the dev issuer's key, JWKS and discovery served on 127.0.0.1.
pub struct Idp {
    pub issuer: Arc<DevIssuer>,
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Idp {
    pub async fn start() -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = Arc::new(DevIssuer::generate(tokengate::dev::base_url(addr)).unwrap());
        let app = tokengate::dev::issuer_router(issuer.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        Idp { issuer, addr, task: Some(task) }
    }

    /// An issuer whose address has nothing listening: every key fetch fails to connect.
    pub async fn unreachable() -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let issuer = Arc::new(DevIssuer::generate(tokengate::dev::base_url(addr)).unwrap());
        Idp { issuer, addr, task: None }
    }

    pub fn url(&self) -> String {
        self.issuer.issuer().to_string()
    }

    /// The `oauth2_token` section trusting this issuer (explicit JWKS URI, no discovery).
    pub fn provider_config(&self) -> Value {
        json!({
            "type": "oauth2_token",
            "issuer": self.url(),
            "audience": DEV_AUDIENCE,
            "jwks": {"uri": self.issuer.jwks_uri()},
            "claims_mapping": {"groups": "groups", "scope": "scopes"},
        })
    }

    /// The provider, built through the registry like a config file would.
    pub fn provider(&self) -> DynProvider {
        Registry::with_builtins()
            .build(&self.provider_config(), &tokengate::BuildContext::default())
            .expect("oauth2_token provider (are the built-in providers registered?)")
    }

    pub fn token(&self, sub: &str) -> String {
        let mut claims = Map::new();
        claims.insert("groups".into(), json!(["ml", "ops"]));
        claims.insert("scope".into(), json!("read write"));
        self.issuer.mint(sub, &claims, Duration::from_secs(600)).unwrap()
    }

    pub fn expired_token(&self, sub: &str) -> String {
        let mut claims = Map::new();
        claims.insert("exp".into(), json!(1_000_000_000u64));
        claims.insert("iat".into(), json!(999_999_000u64));
        claims.insert("nbf".into(), json!(999_999_000u64));
        self.issuer.mint(sub, &claims, Duration::from_secs(600)).unwrap()
    }

    /// Stops serving keys.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The same token with one signature character changed.
pub fn tamper(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    // Not the last character: its low bits may be padding that decoders ignore.
    let i = chars.len() - 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// A provider whose answers depend on the token, and which records every context it sees.
pub struct Recording {
    name: &'static str,
    pub seen: Mutex<Vec<RequestContext>>,
    pub closed: AtomicBool,
}

impl Recording {
    pub fn new(name: &'static str) -> Arc<Recording> {
        Arc::new(Recording { name, seen: Mutex::new(Vec::new()), closed: AtomicBool::new(false) })
    }

    pub fn last(&self) -> RequestContext {
        self.seen.lock().unwrap().last().cloned().expect("the provider saw a request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

pub fn attrs(pairs: &[(&str, &[&str])]) -> Attributes {
    pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
}

#[async_trait]
impl AuthProvider for Recording {
    fn type_name(&self) -> &str {
        self.name
    }

    async fn validate(&self, token: &str, ctx: &RequestContext) -> Result<Principal, AuthError> {
        self.seen.lock().unwrap().push(ctx.clone());
        match token {
            "good" => {
                Ok(Principal::new("alice").with_attributes(attrs(&[("roles", &["admin", "dev"]), ("teams", &["ml"])])))
            }
            "weird" => Ok(Principal::new("bob\r\nX-Evil: 1").with_attributes(attrs(&[
                ("ok", &["fine", "line\nbreak", "josé"]),
                ("bad name", &["x"]),
                ("bad\nname", &["x"]),
                ("all-bad", &["\u{1}"]),
                ("unicode", &["ünï"]),
            ]))),
            "encoded" => Ok(Principal::new("josé,admin 100%").with_attributes(attrs(&[
                ("groups", &["ml,platform-admins", "line\nbreak", "", "%41", "del\u{7f}"]),
                ("Mixed", &["x"]),
                ("empty", &[]),
            ]))),
            "quoted" => Err(AuthError::invalid_token("audience \"x\" is not \\ one of\r\n[\"y\"]")),
            "scope" => Err(AuthError::insufficient_scope("needs scope admin")),
            "down" => Err(AuthError::unavailable("idp answered 502").with_retry_after(Duration::from_secs(7))),
            "down-default" => Err(AuthError::unavailable("connection refused")),
            "broken" => Err(AuthError::config("jwks.uri missing")),
            _ => Err(AuthError::invalid_token("token not recognized")),
        }
    }

    fn error_message(&self) -> String {
        "Send a test token".to_string()
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// A reqwest client that never follows redirects nor reuses stale connections.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Parses an `{"error": {...}}` body.
pub async fn json(res: reqwest::Response) -> Value {
    let text = res.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

/// The challenge prefix for an `invalid_token` refusal with some description.
pub fn invalid_token_challenge(realm: &str) -> String {
    format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"")
}
