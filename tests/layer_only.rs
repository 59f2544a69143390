//! The tower layer in a build without the `server`, `redis` and `cli`
//! features (`cargo test --no-default-features --test layer_only`): a config
//! builds, a real HS256 token is accepted through an axum app on 127.0.0.1,
//! a forged one is refused with RFC 6750's challenge.

use axum::routing::get;
use axum::Router;
use std::time::{SystemTime, UNIX_EPOCH};
use tokengate::{AuthLayer, Authenticated, Config, Format, Registry};

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";

fn token(secret: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "app", "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

#[tokio::test]
async fn the_layer_works_without_the_optional_features() {
    let yaml = format!(
        "provider_config:\n  type: oauth2_token\n  issuer: https://issuer.test\n  audience: app\n  secret: \"{SECRET}\"\n"
    );
    let config = Config::parse(&yaml, Format::Yaml).unwrap();
    let layer = AuthLayer::from_config(&config, &Registry::with_builtins()).unwrap();
    let app =
        Router::new().route("/whoami", get(|Authenticated(p): Authenticated| async move { p.principal })).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/whoami", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();

    let ok = client.get(&url).bearer_auth(token(SECRET)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "alice");

    let forged = client.get(&url).bearer_auth(token("another-secret-of-at-least-32-bytes!!!")).send().await.unwrap();
    assert_eq!(forged.status(), 401);
    let challenge = forged.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Bearer realm=\"tokengate\", error=\"invalid_token\""), "{challenge}");
}
